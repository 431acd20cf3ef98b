"""The demo of ``python -m casyncio``: the chess exhibition, on two loops.

The asyncio walkthrough pictures concurrency as a chess master playing many
boards at once: her moves block (only one at a time, the CPU-bound part);
her opponents think meanwhile (the waiting an event loop overlaps).  The same
exhibition program runs first on stock asyncio, then on casyncio, each timed
with ``time.perf_counter``.

Two rows are printed:

* the exhibition of the story, scaled down: its time is set by the master's
  moves, so both loops take about the same; the point is the synchronous
  figure it avoids (computed from the story's numbers, not run);
* the same program with thousands of boards and instant moves, where nothing
  but the loop's own scheduling costs time: what a C loop buys.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from ._runner import new_event_loop

LoopFactory = Callable[[], asyncio.AbstractEventLoop]

# One unit of the story (1 s there) in seconds here: the story's exhibition
# lasts 3600 units, so 1/3000 s makes it 1.2 s on each loop.
UNIT = 1 / 3000

LOOPS: dict[str, LoopFactory] = {
    "asyncio": asyncio.SelectorEventLoop,
    "casyncio": new_event_loop,
}


@dataclass(frozen=True)
class Exhibition:
    """One master against ``boards`` opponents, ``move_pairs`` moves each.

    ``master_move`` and ``opponent_think`` are in seconds.
    """

    boards: int
    move_pairs: int
    master_move: float
    opponent_think: float

    def synchronous_seconds(self) -> float:
        """One game after the other: every move and every thought in turn."""
        return self.boards * self.move_pairs * (self.master_move + self.opponent_think)

    def concurrent_seconds(self) -> float:
        """Round after round: each round she moves at every board, and an
        opponent's thinking costs time only if she comes back before it ends."""
        round_time = max(self.boards * self.master_move, self.master_move + self.opponent_think)
        return self.move_pairs * round_time


STORY = Exhibition(boards=24, move_pairs=30, master_move=5 * UNIT, opponent_think=55 * UNIT)
# Instant moves: the master's move is done at once and the opponent answers
# on the next loop iteration (asyncio.sleep(0)), so only scheduling costs time.
CROWD = Exhibition(boards=10_000, move_pairs=30, master_move=0.0, opponent_think=0.0)
CROWD_REPEATS = 3


def master_moves(seconds: float) -> None:
    """The master's move: blocking, CPU-bound work of a fixed duration."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


async def game(exhibition: Exhibition) -> None:
    for _ in range(exhibition.move_pairs):
        master_moves(exhibition.master_move)
        await asyncio.sleep(exhibition.opponent_think)


async def play(exhibition: Exhibition) -> None:
    """Every board at once: the loop lets her move on while opponents think."""
    await asyncio.gather(*(game(exhibition) for _ in range(exhibition.boards)))


def timed(exhibition: Exhibition, loop_factory: LoopFactory) -> float:
    """Seconds it takes to play ``exhibition`` on a loop from ``loop_factory``.

    Debug mode stays off even under PYTHONASYNCIODEBUG or -X dev: it would
    time asyncio's debugging aids (a stack captured per callback), not the
    loops.
    """
    with asyncio.Runner(debug=False, loop_factory=loop_factory) as runner:
        start = time.perf_counter()
        runner.run(play(exhibition))
        return time.perf_counter() - start


def best_times(exhibition: Exhibition, repeats: int) -> dict[str, float]:
    """The best of ``repeats`` runs on each loop, the loops taking turns so
    that neither gets a warmer machine."""
    best = dict.fromkeys(LOOPS, float("inf"))
    for _ in range(repeats):
        for name, factory in LOOPS.items():
            best[name] = min(best[name], timed(exhibition, factory))
    return best


def row(label: str, seconds: dict[str, float]) -> str:
    return f"{label:<30}" + "".join(f"{seconds[name]:>12.2f} s" for name in LOOPS)


def main() -> None:
    print("casyncio demo: the chess exhibition of the asyncio walkthrough, on two loops")
    print()
    print(
        f"One master plays {STORY.boards} boards, {STORY.move_pairs} move pairs each. "
        f"Her move takes {STORY.master_move / UNIT:.0f} units and\nblocks (CPU-bound); "
        f"each opponent thinks {STORY.opponent_think / UNIT:.0f} units, awaited. "
        f"1 unit = {UNIT * 1000:.2f} ms here\n(1 s in the story)."
    )
    print()
    print(f"{'':<30}" + "".join(f"{name:>14}" for name in LOOPS))
    print(row(f"exhibition, {STORY.boards} boards", best_times(STORY, repeats=1)))
    print(
        f"  playing concurrently she needs {STORY.concurrent_seconds():.2f} s; one game at "
        f"a time would take {STORY.synchronous_seconds():.2f} s (computed, not run)"
    )
    crowd = best_times(CROWD, repeats=CROWD_REPEATS)
    print(row(f"{CROWD.boards} boards, instant moves", crowd))
    print(
        "  nothing but the loop's own work: casyncio is "
        f"{crowd['asyncio'] / crowd['casyncio']:.2f}x as fast (best of {CROWD_REPEATS} runs each)"
    )
