"""Pure scheduling: the loop's own cost per callback, timer and task switch."""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable

from ..registry import (
    SCHEDULING_TARGETS,
    LoopFactory,
    Measurement,
    Sizes,
    Stopwatch,
    run_loop,
    workload,
)


def make_chain(
    schedule: Callable[[Callable[[], None]], object], n: int, done: Callable[[], None]
) -> Callable[[], None]:
    """The callback that the call_soon chain and its floor both run: it counts
    down and schedules itself again with ``schedule`` until ``n`` calls ran."""
    remaining = n

    def step() -> None:
        nonlocal remaining
        remaining -= 1
        if remaining:
            schedule(step)
        else:
            done()

    return step


# The chain and its floor run the same number of the same callbacks.
CHAIN_SIZES = Sizes(tiny=2_000, quick=250_000, full=1_000_000)


@workload(
    "call_soon_chain",
    group="scheduling",
    kind="time",
    sizes=CHAIN_SIZES,
    unit="callbacks",
    targets=SCHEDULING_TARGETS,
)
def call_soon_chain(new_loop: LoopFactory, n: int) -> Measurement:
    """A chain of n callbacks, each scheduling the next with loop.call_soon, so
    every loop iteration runs exactly one callback."""
    loop = new_loop()
    try:
        step = make_chain(loop.call_soon, n, loop.stop)
        loop.call_soon(step)
        sw = Stopwatch()
        loop.run_forever()
        sw.stop()
    finally:
        loop.close()
    return sw.measurement(n)


@workload(
    "call_soon_floor",
    group="floor",
    kind="time",
    sizes=CHAIN_SIZES,
    unit="callbacks",
    only_on=("deque",),
    floor_of="call_soon_chain",
    floor_factor=2.0,
)
def call_soon_floor(new_loop: LoopFactory, n: int) -> Measurement:
    """The call_soon chain's own callbacks driven by a bare collections.deque
    trampoline instead of a loop: the floor a loop's call_soon is judged against."""
    del new_loop  # not a loop: this is what a loop could cost at best
    ready: deque[Callable[[], None]] = deque()
    step = make_chain(ready.append, n, lambda: None)
    ready.append(step)
    popleft = ready.popleft
    sw = Stopwatch()
    while ready:
        popleft()()
    return sw.stop().measurement(n)


@workload(
    "call_later_timers",
    group="scheduling",
    kind="time",
    sizes=Sizes(tiny=2_000, quick=50_000, full=200_000),
    unit="timers",
    targets=SCHEDULING_TARGETS,
)
def call_later_timers(new_loop: LoopFactory, n: int) -> Measurement:
    """n call_later timers with random delays under 1 ms (same seed on every
    loop), half of them cancelled at random, timed until the last one fires."""
    rng = random.Random(1234)
    delays = [rng.random() * 0.001 for _ in range(n)]
    cancel = [rng.random() < 0.5 for _ in range(n)]
    expected = n - sum(cancel)
    loop = new_loop()
    fired = 0

    def fire() -> None:
        nonlocal fired
        fired += 1
        if fired == expected:
            loop.stop()

    try:
        sw = Stopwatch()
        call_later = loop.call_later
        handles = [call_later(d, fire) for d in delays]
        for handle, c in zip(handles, cancel):
            if c:
                handle.cancel()
        del handles
        if expected:
            loop.run_forever()
        sw.stop()
    finally:
        loop.close()
    if fired != expected:
        raise RuntimeError(f"{fired} timers fired, expected {expected}")
    return sw.measurement(n, fired=fired)


@workload(
    "sleep0",
    group="scheduling",
    kind="time",
    sizes=Sizes(tiny=2_000, quick=100_000, full=400_000),
    unit="switches",
    targets=SCHEDULING_TARGETS,
)
def sleep0(new_loop: LoopFactory, n: int) -> Measurement:
    """One task doing n times ``await asyncio.sleep(0)``, a full trip through
    the loop each time."""

    async def main() -> Stopwatch:
        sleep = asyncio.sleep
        sw = Stopwatch()
        for _ in range(n):
            await sleep(0)
        return sw.stop()

    sw: Stopwatch = run_loop(new_loop, main)
    return sw.measurement(n)


@workload(
    "future_pingpong",
    group="scheduling",
    kind="time",
    sizes=Sizes(tiny=1_000, quick=50_000, full=200_000),
    unit="exchanges",
    targets=SCHEDULING_TARGETS,
)
def future_pingpong(new_loop: LoopFactory, n: int) -> Measurement:
    """Two tasks passing a ball n times each way: each awaits a future from
    loop.create_future, then resolves the other's."""

    async def main() -> Stopwatch:
        loop = asyncio.get_running_loop()
        waiting = {"a": loop.create_future(), "b": loop.create_future()}

        async def player(me: str, other: str) -> None:
            for _ in range(n):
                await waiting[me]
                waiting[me] = loop.create_future()
                waiting[other].set_result(None)

        sw = Stopwatch()
        tasks = [loop.create_task(player("a", "b")), loop.create_task(player("b", "a"))]
        waiting["a"].set_result(None)  # serve
        await asyncio.gather(*tasks)
        return sw.stop()

    sw: Stopwatch = run_loop(new_loop, main)
    return sw.measurement(2 * n)
