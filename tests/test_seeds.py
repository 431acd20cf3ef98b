"""The seed examples run unchanged on casyncio: same output, same timing shape.

Every script in ``../shared/seed_examples`` (found by glob, so a new seed is
picked up) runs twice, as ``python script [args]`` and as
``python -m casyncio script [args]``, and the two runs are compared:

* stdout: the same lines in the same order.  Decimal numbers in the text are
  measured times ("executed in 1.00 seconds", "in 0.00012 seconds") and are
  compared within ``TIME_TOLERANCE``; ``datetime.now()`` stamps are compared
  as offsets from the run's first stamp, within the same tolerance.  Values
  random by design (``RANDOM_BY_DESIGN``) are replaced by the order in which
  they first appear, so that "the consumer got the item the producer added"
  is still checked.  Everything else must be identical.
* stderr: the same, once casyncio's ``CASYNCIO_STATS`` line is taken out.
* a seed whose output depends on which of two timers due together fires
  first (``TIMER_TIES``: load can flip that on stock asyncio too) is run a
  second time, both sides, when the first pair's text differs; the second
  pair is judged, and its failure messages show the first.
* exit status: 0 for both.
* the C loop really ran: the casyncio run prints the stats line with
  ``loops_created >= 1`` and ``callbacks > 0``; the stock run prints none.
* timing: the program's running time (its first line of output to its exit,
  so that interpreter start-up under load does not count) is the expected
  one, and each line appears as long after the first as under stock asyncio.

The runs are sleep-dominated, so all of them start at once (one session
fixture) and the whole module takes about as long as the longest seed.
"""

from __future__ import annotations

import ast
import datetime
import difflib
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import SEEDS

# Arguments for seeds that take them: the ones the seed README times.
SEED_ARGS: dict[str, list[str]] = {
    "chained.py": ["9", "6", "3"],
    "asyncq.py": ["-p", "2", "-c", "3"],
}

# How long each seed runs on stock asyncio (the seed README's figures, and
# for chained.py with 9 6 3 what stock asyncio takes with random.seed(444)).
EXPECTED_SECONDS: dict[str, float] = {
    "asyncq.py": 26.0,
    "chained.py": 11.0,
    "coroutines_and_generators.py": 0.0,
    "countasync.py": 1.0,
    "countsync.py": 3.0,
    "factorial_async_sleep.py": 3.0,
    "factorial_blocking_sleep.py": 5.0,
    "rand.py": 12.0,
}

# Text that differs between any two runs by design, per seed.
RANDOM_BY_DESIGN: dict[str, re.Pattern[str]] = {
    "asyncq.py": re.compile(r"(?<=<)[0-9a-f]{10}(?=>)"),  # os.urandom(5).hex()
}

# Seeds whose output load can change on any loop, and why.  When the two
# runs' stdout differs for one of them, the pair is run once more (both sides
# at once, after the other seeds finished) and the second pair is judged.
TIMER_TIES: dict[str, str] = {
    "rand.py": (
        "three tasks sleep 1, 2 and 3 s by turns and draw from one random generator: "
        "at 2 s, 3 s, 4 s... two or three of them are due together, and which wakes first "
        "(and so gets which number) is decided by sub-millisecond wake-up latencies, "
        "which load flips on stock asyncio too (seen: 1 of 8 stock runs beside 15 other "
        "interpreters and 2 busy processes)"
    ),
}

TIME_TOLERANCE = 0.1  # seconds, for times printed by the seeds
SHAPE_TOLERANCE = 0.25  # seconds, for when a line appears after the first one
DURATION_SLACK = 0.5  # seconds a run may take beyond the expected time
# Seconds for start-up: every seed starts at once, 16 interpreters on as few
# as 2 cores (and with an editable install each casyncio import first checks
# whether the extension needs rebuilding).
STARTUP_SLACK = 6.0
RUN_TIMEOUT = 120.0  # seconds; no seed comes near it

STATS_LINE = re.compile(r"casyncio: loops_created=(\d+) iterations=(\d+) callbacks=(\d+)")
MODES = {"stock": [], "casyncio": ["-m", "casyncio"]}


def _seed_names() -> list[str | None]:
    if not SEEDS.is_dir():
        return [None]  # one test that skips, saying why
    return [path.name for path in sorted(SEEDS.glob("*.py"))] or [None]


SEED_NAMES = _seed_names()


@dataclass
class Run:
    """One finished run of a seed: its output, status and timings."""

    argv: list[str]
    started: float  # time.monotonic() just before the process was spawned
    lines: list[tuple[float, str]] = field(default_factory=list)  # (arrival, text)
    stderr: str = ""
    returncode: int | None = None
    ended: float = 0.0
    timed_out: bool = False
    note: str = ""  # how this run came to be the one judged, if not the first

    @property
    def stdout_lines(self) -> list[str]:
        return [text for _, text in self.lines]

    @property
    def wall_seconds(self) -> float:
        return self.ended - self.started

    @property
    def running_seconds(self) -> float:
        """From the first line of output to the exit: the program's own time."""
        first = self.lines[0][0] if self.lines else self.ended
        return self.ended - first

    def line_offsets(self) -> list[float]:
        first = self.lines[0][0] if self.lines else 0.0
        return [arrival - first for arrival, _ in self.lines]

    def describe(self) -> str:
        """The run for a failure message: stdout lines with their offsets."""
        stdout = "\n".join(
            f"+{offset:7.3f} s | {text}"
            for offset, text in zip(self.line_offsets(), self.stdout_lines)
        )
        return (
            f"$ {' '.join(self.argv)}\n{self.note}[exit {self.returncode}, "
            f"wall {self.wall_seconds:.2f} s, running {self.running_seconds:.2f} s]\n"
            f"--- stdout\n{stdout}\n--- stderr\n{self.stderr}"
        )


def _read_lines(run: Run, proc: subprocess.Popen[str]) -> None:
    """Collect stdout line by line with arrival times, stderr whole, then the
    exit status."""
    stderr_parts: list[str] = []
    stderr_thread = threading.Thread(target=lambda: stderr_parts.append(proc.stderr.read()))
    stderr_thread.start()
    for line in proc.stdout:
        run.lines.append((time.monotonic(), line.rstrip("\n")))
    proc.wait()
    run.ended = time.monotonic()
    stderr_thread.join()
    run.stderr = "".join(stderr_parts)
    run.returncode = proc.returncode


def _start(argv: list[str], cwd: Path) -> tuple[Run, subprocess.Popen[str], threading.Thread]:
    env = dict(os.environ, CASYNCIO_STATS="1", PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
    run = Run(argv=argv, started=time.monotonic())
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    reader = threading.Thread(target=_read_lines, args=(run, proc))
    reader.start()
    return run, proc, reader


def _selected_seeds(session: pytest.Session) -> set[str]:
    """The seeds whose tests this session runs, so `-k countasync` does not
    wait for every other seed."""
    names = set()
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and item.module.__name__ == __name__:
            seed = callspec.params.get("seed")
            if seed is not None:
                names.add(seed)
    return names


def _command(seed: str, mode: str) -> list[str]:
    return [sys.executable, *MODES[mode], str(SEEDS / seed), *SEED_ARGS.get(seed, [])]


@pytest.fixture(scope="session")
def seed_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str], Run]:
    """Every selected seed in both modes, all started at once, all finished."""
    if not SEEDS.is_dir():
        pytest.skip(f"seed examples not found at {SEEDS} (../shared is absent)")
    cwd = tmp_path_factory.mktemp("seed-runs")
    seeds = sorted(_selected_seeds(request.session))
    runs = _run_all([(seed, mode) for seed in seeds for mode in MODES], cwd)
    again = [seed for seed in seeds if _needs_second_run(seed, runs)]
    for key, run in _run_all([(seed, mode) for seed in again for mode in MODES], cwd).items():
        run.note = (
            f"[second run: the first runs' stdout differed, and {key[0]}'s output depends "
            f"on timer ties (TIMER_TIES); first {key[1]} run: "
            f"{' | '.join(runs[key].stdout_lines[:12])}]\n"
        )
        runs[key] = run
    return runs


def _run_all(keys: list[tuple[str, str]], cwd: Path) -> dict[tuple[str, str], Run]:
    """Runs every (seed, mode) at once; all finished (or killed on timeout)."""
    started = {key: _start(_command(*key), cwd) for key in keys}
    deadline = time.monotonic() + RUN_TIMEOUT
    for run, proc, reader in started.values():
        reader.join(max(0.0, deadline - time.monotonic()))
        if reader.is_alive():
            run.timed_out = True
            proc.kill()
            reader.join()
    return {key: run for key, (run, _, _) in started.items()}


def _needs_second_run(seed: str, runs: dict[tuple[str, str], Run]) -> bool:
    """A seed with timer ties whose two runs printed different text."""
    stock, cas = runs[seed, "stock"], runs[seed, "casyncio"]
    return (
        seed in TIMER_TIES
        and not stock.timed_out
        and not cas.timed_out
        and bool(_same_lines(stock.stdout_lines, cas.stdout_lines, seed))
    )


@pytest.fixture(params=SEED_NAMES, ids=lambda name: name or "no-seed-examples")
def seed(request: pytest.FixtureRequest, seeds_dir: Path) -> str:
    if request.param is None:
        pytest.fail(f"no seed scripts (*.py) in {seeds_dir}")
    return request.param


@pytest.fixture
def runs(seed: str, seed_runs: dict[tuple[str, str], Run]) -> tuple[Run, Run]:
    """(stock run, casyncio run) of this seed; neither may have hung."""
    stock, cas = seed_runs[seed, "stock"], seed_runs[seed, "casyncio"]
    for run in (stock, cas):
        assert not run.timed_out, f"killed after {RUN_TIMEOUT} s:\n{run.describe()}"
    return stock, cas


# ---- comparing text with measured times in it -----------------------------

DATETIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}")
DECIMAL = re.compile(r"\d+\.\d+")


@dataclass
class Line:
    """A line split into its exact text and the times measured in it."""

    template: str
    times: list[float]


def _split_times(text: str, first_stamp: list[datetime.datetime]) -> Line:
    """Replace datetimes (as seconds since the run's first one) and decimal
    numbers by placeholders, keeping their values."""
    times: list[float] = []

    def stamp(match: re.Match[str]) -> str:
        value = datetime.datetime.fromisoformat(match.group())
        if not first_stamp:
            first_stamp.append(value)
        times.append((value - first_stamp[0]).total_seconds())
        return "<datetime>"

    def decimal(match: re.Match[str]) -> str:
        times.append(float(match.group()))
        return "<time>"

    template = DECIMAL.sub(decimal, DATETIME.sub(stamp, text))
    return Line(template, times)


def _name_random_values(lines: list[str], pattern: re.Pattern[str] | None) -> list[str]:
    """Replace each random value by its rank of first appearance: <random1>..."""
    if pattern is None:
        return lines
    ranks: dict[str, int] = {}

    def rank(match: re.Match[str]) -> str:
        return f"random{ranks.setdefault(match.group(), len(ranks) + 1)}"

    return [pattern.sub(rank, line) for line in lines]


def _normalise(lines: list[str], seed: str) -> list[Line]:
    first_stamp: list[datetime.datetime] = []
    named = _name_random_values(lines, RANDOM_BY_DESIGN.get(seed))
    return [_split_times(line, first_stamp) for line in named]


def _same_lines(stock: list[str], cas: list[str], seed: str) -> list[str]:
    """The differences between two outputs, as messages; none if they match."""
    a, b = _normalise(stock, seed), _normalise(cas, seed)
    templates_a, templates_b = [x.template for x in a], [x.template for x in b]
    if templates_a != templates_b:
        diff = difflib.unified_diff(templates_a, templates_b, "stock", "casyncio", lineterm="")
        return ["text differs:", *diff]
    problems = []
    for number, (x, y) in enumerate(zip(a, b), start=1):
        for t_stock, t_cas in zip(x.times, y.times):
            if abs(t_stock - t_cas) > TIME_TOLERANCE:
                problems.append(
                    f"line {number}: time {t_cas} (casyncio) vs {t_stock} (stock): "
                    f"{stock[number - 1]!r} / {cas[number - 1]!r}"
                )
    return problems


def _without_stats(stderr: str) -> tuple[str, list[re.Match[str]]]:
    kept, stats = [], []
    for line in stderr.splitlines(keepends=True):
        match = STATS_LINE.fullmatch(line.rstrip("\n"))
        if match:
            stats.append(match)
        else:
            kept.append(line)
    return "".join(kept), stats


def _uses_asyncio(seed: str) -> bool:
    """Whether the seed imports asyncio (countsync.py, the blocking version,
    does not, so it creates no loop on either side)."""
    tree = ast.parse((SEEDS / seed).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name == "asyncio" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "asyncio":
            return True
    return False


# ---- the comparison itself can fail ----------------------------------------


def test_compare_times_within_tolerance() -> None:
    stock = ["took 8.01 s", "SLEEP 2026-11-21 06:21:43.309499", "SLEEP 2026-11-21 06:21:44.310212"]
    cas = ["took 8.00 s", "SLEEP 2026-11-21 06:21:45.896474", "SLEEP 2026-11-21 06:21:46.900640"]
    assert _same_lines(stock, cas, "x.py") == []


def test_compare_reports_a_time_out_of_tolerance() -> None:
    assert _same_lines(["took 8.01 seconds."], ["took 8.31 seconds."], "x.py")
    stamps = ["2026-11-21 06:21:43.309499", "2026-11-21 06:21:44.309499"]
    late = ["2026-11-21 06:21:43.309499", "2026-11-21 06:21:44.609499"]
    assert _same_lines(stamps, late, "x.py")


def test_compare_reports_other_text() -> None:
    assert _same_lines(["One", "Two"], ["Two", "One"], "x.py")
    assert _same_lines(["sleeping for 4 seconds."], ["sleeping for 5 seconds."], "x.py")
    assert _same_lines(["a"], ["a", "b"], "x.py")


def test_compare_random_values_by_order_of_appearance() -> None:
    stock = ["added <1f3ed91d4a>", "added <213136a475>", "got <1f3ed91d4a>"]
    same_flow = ["added <f00c8d85b8>", "added <a1a6afbe9b>", "got <f00c8d85b8>"]
    other_item = ["added <f00c8d85b8>", "added <a1a6afbe9b>", "got <a1a6afbe9b>"]
    assert _same_lines(stock, same_flow, "asyncq.py") == []
    assert _same_lines(stock, other_item, "asyncq.py")
    assert _same_lines(stock, same_flow, "rand.py"), "random only where declared"


def test_second_run_only_for_timer_ties_that_differ() -> None:
    def pair(stock: list[str], cas: list[str], seed: str) -> dict[tuple[str, str], Run]:
        runs = {}
        for mode, lines in (("stock", stock), ("casyncio", cas)):
            runs[seed, mode] = Run(argv=[seed], started=0.0, lines=[(0.0, t) for t in lines])
        return runs

    tie = next(iter(TIMER_TIES))
    assert _needs_second_run(tie, pair(["a 1", "b 2"], ["b 2", "a 1"], tie))
    assert not _needs_second_run(tie, pair(["a 1", "b 2"], ["a 1", "b 2"], tie))
    assert not _needs_second_run("x.py", pair(["a 1", "b 2"], ["b 2", "a 1"], "x.py"))


# ---- the seeds -------------------------------------------------------------


@pytest.mark.seed
def test_exit_status(runs: tuple[Run, Run]) -> None:
    stock, cas = runs
    assert stock.returncode == 0, stock.describe()
    assert cas.returncode == stock.returncode, cas.describe()


@pytest.mark.seed
def test_same_stdout(seed: str, runs: tuple[Run, Run]) -> None:
    stock, cas = runs
    assert stock.lines, f"the seed printed nothing:\n{stock.describe()}"
    problems = _same_lines(stock.stdout_lines, cas.stdout_lines, seed)
    assert not problems, "\n".join(problems) + f"\n\n{stock.describe()}\n\n{cas.describe()}"


@pytest.mark.seed
def test_same_stderr(seed: str, runs: tuple[Run, Run]) -> None:
    stock, cas = runs
    stock_err, stock_stats = _without_stats(stock.stderr)
    cas_err, _ = _without_stats(cas.stderr)
    assert not stock_stats, f"the plain python run loaded casyncio:\n{stock.stderr}"
    problems = _same_lines(stock_err.splitlines(), cas_err.splitlines(), seed)
    assert not problems, "\n".join(problems) + f"\n\n{stock.describe()}\n\n{cas.describe()}"


@pytest.mark.seed
def test_ran_on_the_c_loop(seed: str, runs: tuple[Run, Run]) -> None:
    _, cas = runs
    _, stats = _without_stats(cas.stderr)
    assert len(stats) == 1, f"expected one CASYNCIO_STATS line:\n{cas.describe()}"
    loops, iterations, callbacks = (int(n) for n in stats[0].groups())
    if _uses_asyncio(seed):
        assert loops >= 1 and iterations > 0 and callbacks > 0, stats[0].group()
    else:
        assert (loops, callbacks) == (0, 0), f"{seed} has no event loop: {stats[0].group()}"


@pytest.mark.seed
def test_expected_duration(seed: str, runs: tuple[Run, Run]) -> None:
    if seed not in EXPECTED_SECONDS:
        pytest.skip(f"no expected running time recorded for {seed} in EXPECTED_SECONDS")
    expected = EXPECTED_SECONDS[seed]
    for run in runs:
        assert expected - 0.05 <= run.running_seconds <= expected + DURATION_SLACK, (
            f"ran {run.running_seconds:.2f} s, expected {expected} s:\n{run.describe()}"
        )
        assert run.wall_seconds <= expected + STARTUP_SLACK, run.describe()


@pytest.mark.seed
def test_same_timing_shape(runs: tuple[Run, Run]) -> None:
    """Each line appears as long after the first as under stock asyncio, and
    the program runs as long: the same concurrency, not just the same text."""
    stock, cas = runs
    assert abs(cas.running_seconds - stock.running_seconds) <= SHAPE_TOLERANCE, (
        f"casyncio ran {cas.running_seconds:.2f} s, stock {stock.running_seconds:.2f} s"
    )
    if len(stock.lines) != len(cas.lines):
        pytest.fail("different number of lines (see test_same_stdout)")
    late = [
        f"line {n}: +{c:.3f} s on casyncio, +{s:.3f} s on stock: {text!r}"
        for n, (s, c, text) in enumerate(
            zip(stock.line_offsets(), cas.line_offsets(), stock.stdout_lines), start=1
        )
        if abs(s - c) > SHAPE_TOLERANCE
    ]
    assert not late, "\n".join(late)
