"""Task-heavy work where asyncio's Python code (gather, Queue, Task) dominates."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ..registry import (
    PYTHON_TARGETS,
    LoopFactory,
    Measurement,
    Sizes,
    Stopwatch,
    run_loop,
    workload,
)

GATHER_BATCH = 100


async def _short(i: int) -> int:
    await asyncio.sleep(0)
    return i


@workload(
    "gather_tasks",
    group="python",
    kind="time",
    sizes=Sizes(tiny=1_000, quick=30_000, full=150_000),
    unit="tasks",
    targets=PYTHON_TARGETS,
)
def gather_tasks(new_loop: LoopFactory, n: int) -> Measurement:
    """n short tasks (each one ``sleep(0)`` then return) created and awaited
    with asyncio.gather, 100 at a time."""

    async def main() -> Stopwatch:
        gather = asyncio.gather
        sw = Stopwatch()
        for start in range(0, n, GATHER_BATCH):
            results = await gather(*[_short(i) for i in range(start, start + GATHER_BATCH)])
            assert results[-1] == start + GATHER_BATCH - 1
        return sw.stop()

    n -= n % GATHER_BATCH
    sw: Stopwatch = run_loop(new_loop, main)
    return sw.measurement(n)


def _producer_consumer(n: int, maxsize: int) -> Callable[[], Awaitable[Stopwatch]]:
    async def main() -> Stopwatch:
        q: asyncio.Queue[int | None] = asyncio.Queue(maxsize=maxsize)

        async def producer() -> None:
            put = q.put
            for i in range(n):
                await put(i)
            await put(None)

        async def consumer() -> int:
            get = q.get
            count = 0
            while await get() is not None:
                count += 1
            return count

        sw = Stopwatch()
        _, count = await asyncio.gather(producer(), consumer())
        sw.stop()
        assert count == n
        return sw

    return main


@workload(
    "queue",
    group="python",
    kind="time",
    sizes=Sizes(tiny=1_000, quick=150_000, full=600_000),
    unit="items",
    targets=PYTHON_TARGETS,
)
def queue(new_loop: LoopFactory, n: int) -> Measurement:
    """One producer task putting n items into an asyncio.Queue(maxsize=64) and
    one consumer task getting them (the tasks switch about once per 64 items)."""
    sw: Stopwatch = run_loop(new_loop, _producer_consumer(n, 64))
    return sw.measurement(n)


@workload(
    "queue_handoff",
    group="python",
    kind="time",
    sizes=Sizes(tiny=1_000, quick=30_000, full=120_000),
    unit="items",
    targets=PYTHON_TARGETS,
)
def queue_handoff(new_loop: LoopFactory, n: int) -> Measurement:
    """The same producer and consumer over an asyncio.Queue(maxsize=1), so every
    item is a hand-off between the two tasks."""
    sw: Stopwatch = run_loop(new_loop, _producer_consumer(n, 1))
    return sw.measurement(n)


SPAWN_PRODUCERS = 10
SPAWN_PER_ROUND = 10


@workload(
    "spawn_consumers",
    group="python",
    kind="time",
    sizes=Sizes(tiny=1_000, quick=40_000, full=200_000),
    unit="consumers",
    targets=PYTHON_TARGETS,
)
def spawn_consumers(new_loop: LoopFactory, n: int) -> Measurement:
    """10 producer tasks that, round after round, each spawn 10 consumer tasks
    waiting on futures the producer then resolves, and await them: n consumers
    in all."""

    async def consume(fut: asyncio.Future[int]) -> int:
        return await fut + 1

    async def produce(rounds: int) -> int:
        loop = asyncio.get_running_loop()
        total = 0
        for _ in range(rounds):
            futs = [loop.create_future() for _ in range(SPAWN_PER_ROUND)]
            consumers = [loop.create_task(consume(f)) for f in futs]
            await asyncio.sleep(0)  # let the consumers start and block
            for i, f in enumerate(futs):
                f.set_result(i)
            for c in consumers:
                total += await c
        return total

    per_producer = n // (SPAWN_PRODUCERS * SPAWN_PER_ROUND)

    async def main() -> Stopwatch:
        sw = Stopwatch()
        totals = await asyncio.gather(*[produce(per_producer) for _ in range(SPAWN_PRODUCERS)])
        sw.stop()
        per_round = sum(range(1, SPAWN_PER_ROUND + 1))
        assert totals == [per_round * per_producer] * SPAWN_PRODUCERS
        return sw

    done = per_producer * SPAWN_PRODUCERS * SPAWN_PER_ROUND
    sw: Stopwatch = run_loop(new_loop, main)
    return sw.measurement(done)


FANOUT = 4


@workload(
    "fanout_callbacks",
    group="python",
    kind="time",
    sizes=Sizes(tiny=1_000, quick=15_000, full=60_000),
    unit="tasks",
    targets=PYTHON_TARGETS,
)
def fanout_callbacks(new_loop: LoopFactory, n: int) -> Measurement:
    """A tree of n short tasks grown from done-callbacks: each finished task's
    callback spawns 4 children until n tasks ran, and the last sets a future."""

    async def main() -> Stopwatch:
        loop = asyncio.get_running_loop()
        finished = loop.create_future()
        spawned = 0
        completed = 0

        async def leaf() -> None:
            await asyncio.sleep(0)

        def on_done(task: asyncio.Task[None]) -> None:
            nonlocal spawned, completed
            completed += 1
            for _ in range(FANOUT):
                if spawned == n:
                    break
                spawned += 1
                loop.create_task(leaf()).add_done_callback(on_done)
            if completed == n:
                finished.set_result(None)

        sw = Stopwatch()
        spawned = 1
        loop.create_task(leaf()).add_done_callback(on_done)
        await finished
        return sw.stop()

    sw: Stopwatch = run_loop(new_loop, main)
    return sw.measurement(n)
