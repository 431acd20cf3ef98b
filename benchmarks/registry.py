"""What a workload is, and the table of all of them.

A workload is a plain function ``fn(new_loop, n) -> Measurement``: it creates
its loop(s) with ``new_loop`` (the loop factory under test), does a fixed
amount of work ``n`` and reports what it measured.  The same function runs on
every loop; nothing in it knows which loop it is given.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

LoopFactory = Callable[[], asyncio.AbstractEventLoop]

Mode = Literal["tiny", "quick", "full"]
MODES: tuple[Mode, ...] = ("tiny", "quick", "full")

# How a workload's value reads:
#   "time"   seconds for ``ops`` operations (lower is better; shown as ops/s),
#   "memory" bytes per item (lower is better),
#   "growth" bytes of RSS growth over the run (lower is better; judged
#            against an absolute bound, not against casyncio).
Kind = Literal["time", "memory", "growth"]


@dataclass
class Measurement:
    """What one run of a workload reports."""

    value: float  # seconds ("time"), bytes per item ("memory"), bytes ("growth")
    ops: int  # operations done in the timed part, or items measured
    extra: dict[str, Any] = field(default_factory=dict)


class Stopwatch:
    """Wall time (what is reported) and this process's CPU time (kept in the
    JSON: when wall time is well above it, the run waited, or the machine
    was busy with something else)."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self._wall0 = time.perf_counter()
        self._cpu0 = time.process_time()

    def stop(self) -> Stopwatch:
        self.wall = time.perf_counter() - self._wall0
        self.cpu = time.process_time() - self._cpu0
        return self

    def measurement(self, ops: int, **extra: Any) -> Measurement:
        return Measurement(self.wall, ops, {"cpu_s": self.cpu, **extra})


@dataclass(frozen=True)
class Sizes:
    """The fixed amount of work ``n`` for each mode."""

    tiny: int
    quick: int
    full: int

    def for_mode(self, mode: Mode) -> int:
        return int(getattr(self, mode))


@dataclass(frozen=True)
class Workload:
    name: str
    fn: Callable[[LoopFactory, int], Measurement]
    group: str  # "scheduling", "python", "echo", "memory", "floor"
    kind: Kind
    sizes: Sizes
    unit: str  # what one op is, for the table ("calls", "round trips", "task", ...)
    # Minimum ratio peer/casyncio that the project aims for, per peer.
    targets: dict[str, float] = field(default_factory=dict)
    # For kind "growth": the largest growth (bytes) that still counts as flat.
    max_growth: float | None = None
    # Warm up with a run of n // warmup_div before the measured run (time workloads).
    warmup: bool = True
    # None: runs on every loop.  Otherwise the pseudo-loops it runs on instead
    # (the deque trampoline floor is not a loop).
    only_on: tuple[str, ...] | None = None
    # For the floor: the casyncio workload it bounds, and by how much at most.
    floor_of: str | None = None
    floor_factor: float | None = None
    # Rounds at most, per mode (a mode not listed: every round).  The memory
    # workloads repeat to within a few percent and are the slowest, so they
    # run fewer rounds.
    max_rounds: dict[str, int] = field(default_factory=dict)

    @property
    def doc(self) -> str:
        text = (self.fn.__doc__ or "").strip()
        return " ".join(text.split("\n\n")[0].split())


WORKLOADS: dict[str, Workload] = {}

# Targets from the issue, by group: peer -> minimum ratio peer/casyncio.
SCHEDULING_TARGETS = {"asyncio": 5.0, "uvloop": 1.5}
PYTHON_TARGETS = {"asyncio": 2.0, "uvloop": 1.5}
ECHO_TARGETS = {"asyncio": 1.5, "uvloop": 1.25}
MEMORY_TARGETS = {"asyncio": 1.0}


def workload(
    name: str,
    *,
    group: str,
    kind: Kind,
    sizes: Sizes,
    unit: str,
    targets: dict[str, float] | None = None,
    max_growth: float | None = None,
    warmup: bool = True,
    only_on: tuple[str, ...] | None = None,
    floor_of: str | None = None,
    floor_factor: float | None = None,
    max_rounds: dict[str, int] | None = None,
) -> Callable[
    [Callable[[LoopFactory, int], Measurement]], Callable[[LoopFactory, int], Measurement]
]:
    """Register ``fn`` as a workload (used as a decorator)."""

    def register(
        fn: Callable[[LoopFactory, int], Measurement],
    ) -> Callable[[LoopFactory, int], Measurement]:
        if name in WORKLOADS:
            raise ValueError(f"workload {name!r} registered twice")
        if not (fn.__doc__ or "").strip():
            raise ValueError(f"workload {name!r} needs a one-sentence docstring")
        WORKLOADS[name] = Workload(
            name=name,
            fn=fn,
            group=group,
            kind=kind,
            sizes=sizes,
            unit=unit,
            targets=dict(targets or {}),
            max_growth=max_growth,
            warmup=warmup,
            only_on=only_on,
            floor_of=floor_of,
            floor_factor=floor_factor,
            max_rounds=dict(max_rounds or {}),
        )
        return fn

    return register


GROUP_ORDER = ("scheduling", "floor", "python", "echo", "server", "memory")


def all_workloads() -> dict[str, Workload]:
    """Every registered workload, in table order: by group, then as registered."""
    from . import workloads  # noqa: F401  (importing registers them)

    order = sorted(WORKLOADS.values(), key=lambda w: GROUP_ORDER.index(w.group))
    return {w.name: w for w in order}


def run_loop(new_loop: LoopFactory, main: Callable[[], Any]) -> Any:
    """Run the coroutine ``main()`` to completion on a fresh loop, then close it."""
    loop = new_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()
