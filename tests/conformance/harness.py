"""Running one conformance suite in this process and accounting for every test.

* ``make_casyncio_the_default()``: asyncio's default loop becomes casyncio's.
  CPython's test modules create loops through the policy
  (``asyncio.new_event_loop()``, ``asyncio.run()``, ``asyncio.Runner`` and so
  ``IsolatedAsyncioTestCase``) and reset it often: ``tearDown`` and
  ``tearDownModule`` call ``asyncio.set_event_loop_policy(None)``, which
  would drop a policy set once.  A reset policy is rebuilt from
  ``asyncio.DefaultEventLoopPolicy`` (``asyncio.events._init_event_loop_policy``
  imports that name from the package each time), so that one name is
  replaced by ``casyncio.EventLoopPolicy`` for the whole run.
* ``LoopCensus`` proves it: per test it counts the casyncio loops created (the
  C loop's own counter) and every stock loop (``BaseEventLoop.__init__``).
  A stock loop other than ``test_utils.TestLoop`` — the virtual-time loop the
  Future/Task mixins drive every implementation on — fails the test's suite.
* Marks: excluded tests (``EXCLUDED``, and the ``NeedsRule`` selection rule)
  are skipped before their setUp runs, expected failures are run as
  ``unittest.expectedFailure``; entries that match nothing are reported.
  A racy test (``RACY``) that fails is run once more, alone, and counts by
  that run; the report keeps its first failure under ``reruns``.
* ``ConformanceResult`` records one outcome per test and the counts.
"""

from __future__ import annotations

import asyncio
import faulthandler
import fnmatch
import functools
import inspect
import io
import os
import re
import sys
import threading
import time
import traceback
import unittest
from asyncio import base_events
from collections import Counter
from collections.abc import Iterator
from typing import Any

import casyncio
from casyncio import _casyncio

from . import expected_failures
from .suites import Suite

MODES = ("normal", "debug")
# Seconds a single test may take before it counts as hung (run.py reads the
# same variable to explain a child that died of it).
TEST_TIMEOUT = float(os.environ.get("CASYNCIO_CONFORMANCE_TEST_TIMEOUT", "60"))


# ---- casyncio as the default loop -------------------------------------------


def make_casyncio_the_default(mode: str | None = None) -> None:
    """Make every policy-made loop a casyncio loop until the process ends;
    check that its debug mode is the one ``mode`` asks for."""
    # A reset policy (the suites' tearDownModule sets None) is made from
    # asyncio.DefaultEventLoopPolicy up to 3.13, and from 3.14 on from
    # unix_events' private _DefaultEventLoopPolicy (the public name warns).
    if "DefaultEventLoopPolicy" in vars(asyncio):
        asyncio.DefaultEventLoopPolicy = casyncio.EventLoopPolicy
    else:
        asyncio.unix_events._DefaultEventLoopPolicy = casyncio.EventLoopPolicy
    getattr(asyncio.events, "_set_event_loop_policy", asyncio.set_event_loop_policy)(None)
    loop = asyncio.new_event_loop()
    try:
        if not isinstance(loop, casyncio.Loop):
            raise TypeError(f"asyncio.new_event_loop() made {loop!r}, not a casyncio loop")
        if mode is not None and loop.get_debug() != (mode == "debug"):
            raise RuntimeError(f"{mode} mode, but a new loop has get_debug()={loop.get_debug()}")
    finally:
        loop.close()


def casyncio_loops_created() -> int:
    return _casyncio._stats()["loops_created"]


class LoopCensus:
    """Counts loops as they are created: casyncio's by the C counter, stock
    asyncio's by wrapping ``BaseEventLoop.__init__`` (which every stock loop,
    selector, proactor or test loop, runs)."""

    def __init__(self) -> None:
        self.stock: list[type] = []
        census = self
        original = base_events.BaseEventLoop.__init__

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            census.stock.append(type(self))
            original(self, *args, **kwargs)

        base_events.BaseEventLoop.__init__ = __init__

    def snapshot(self) -> tuple[int, int]:
        return casyncio_loops_created(), len(self.stock)

    def since(self, snap: tuple[int, int]) -> tuple[int, list[type]]:
        return casyncio_loops_created() - snap[0], self.stock[snap[1] :]


def allowed_stock_loop(loop_type: type) -> bool:
    """Loops a test may make besides casyncio's: test_utils.TestLoop, and the
    stub loops a test module defines for itself that can do no I/O (3.13's
    test_futures runs futures on deliberately misbehaving BaseEventLoop
    subclasses); never asyncio's selector loops."""
    from test.test_asyncio import utils as test_utils

    if issubclass(loop_type, test_utils.TestLoop):
        return True
    return loop_type.__module__.startswith("test.test_asyncio.") and not issubclass(
        loop_type, asyncio.selector_events.BaseSelectorEventLoop
    )


# ---- selection rule: tests needing what casyncio does not implement yet -------

# asyncio functions that are thin wrappers over one loop method.
_ASYNCIO_WRAPPERS = {
    "open_connection": "create_connection",
    "start_server": "create_server",
    "open_unix_connection": "create_unix_connection",
    "start_unix_server": "create_unix_server",
    "create_subprocess_exec": "subprocess_exec",
    "create_subprocess_shell": "subprocess_shell",
}


def unimplemented_loop_methods() -> set[str]:
    """AbstractEventLoop methods casyncio.Loop still inherits unchanged, i.e.
    that raise NotImplementedError on a casyncio loop."""
    abstract = asyncio.AbstractEventLoop
    return {
        name
        for name, value in vars(abstract).items()
        if callable(value)
        and not name.startswith("_")
        and getattr(casyncio.Loop, name, None) is value
    }


class NeedsRule:
    """The rule: a test is excluded while its source — its method and, through
    ``self.<name>``, the helper methods of its class it calls, transitively —
    names a loop method casyncio does not implement (``.create_server``,
    ``.sock_recv``, ``.connect_read_pipe``, ``.subprocess_exec``...) or an
    asyncio wrapper of one (``asyncio.open_connection``...).  As casyncio
    implements a method, the tests using it join the run by themselves."""

    def __init__(self) -> None:
        missing = unimplemented_loop_methods()
        self.missing = missing
        wrappers = {w: m for w, m in _ASYNCIO_WRAPPERS.items() if m in missing}
        names = sorted(missing) + sorted(wrappers)
        self._wrappers = wrappers
        alternatives = "|".join(map(re.escape, names))
        self._pattern = re.compile(rf"\.({alternatives})\b") if names else None
        self._self_call = re.compile(r"\bself\.(\w+)\b")

    def _names_in(self, cls: type, attr: str, seen: set[str]) -> set[str]:
        seen.add(attr)
        func = inspect.getattr_static(cls, attr, None)
        func = getattr(func, "__func__", func)  # staticmethod, classmethod
        found: set[str] = set()
        if inspect.isfunction(func) and not func.__module__.startswith("unittest"):
            try:
                source = inspect.getsource(func)
            except (OSError, TypeError):
                source = ""
            found.update(self._wrappers.get(n, n) for n in self._pattern.findall(source))
            for helper in self._self_call.findall(source):
                if helper not in seen:
                    found |= self._names_in(cls, helper, seen)
        return found

    def reason(self, test: unittest.TestCase) -> str | None:
        if self._pattern is None:
            return None
        names = self._names_in(type(test), test._testMethodName, set())
        if not names:
            return None
        calls = ", ".join(f"loop.{n}()" for n in sorted(names))
        return f"needs {calls}, not implemented in casyncio yet"


# ---- marks: exclusions and expected failures ----------------------------------


def case_key(suite: Suite, test: unittest.TestCase) -> str:
    """The name used in expected_failures.py: suite.Class.test_method."""
    return f"{suite.name}.{type(test).__qualname__}.{test._testMethodName}"


def iter_tests(suite: unittest.TestSuite) -> Iterator[unittest.TestCase]:
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from iter_tests(item)
        else:
            yield item


def _entries(table: dict[str, Any], suite: Suite, mode: str) -> dict[str, str]:
    """The entries of one table for this suite and mode: pattern -> reason."""
    out = {}
    for pattern, value in table.items():
        if not pattern.startswith(suite.name + "."):
            continue
        if isinstance(value, expected_failures.Only):
            if mode not in value.modes:
                continue
            value = value.reason
        elif isinstance(value, expected_failures.Backported):
            value = value.reason
        out[pattern] = value
    return out


def _excluded_method(reason: str):
    def excluded() -> None:
        """Replaced by the harness: this test is excluded.  It skips from
        its body, so that its class's setUp() and tearDown() still run: the
        tests after it see the state a full run leaves them (test_subprocess's
        pidfd test relies on the tearDown() of the one before it)."""
        raise unittest.SkipTest(f"excluded: {reason}")

    return excluded


class Marks:
    """What the run does with each test of a suite in a mode: run it, skip
    it as excluded (with the reason), or expect it to fail."""

    def __init__(self, suite: Suite, mode: str, crashed: set[str] = frozenset()) -> None:
        self.suite = suite
        self.crashed = crashed
        self.excluded_table = _entries(expected_failures.EXCLUDED, suite, mode)
        self.xfail_table = _entries(expected_failures.EXPECTED_FAILURES, suite, mode)
        self.racy_table = _entries(expected_failures.RACY, suite, mode)
        self.backported = {
            pattern
            for table in (expected_failures.EXCLUDED, expected_failures.EXPECTED_FAILURES)
            for pattern, value in table.items()
            if isinstance(value, expected_failures.Backported)
        }
        self.rule = NeedsRule()
        self.excluded: dict[str, str] = {}  # test key -> reason
        self.xfail: dict[str, str] = {}
        self.racy: dict[str, str] = {}  # test key -> why it may fail by itself
        self.placeholders: dict[str, str] = {}  # test key -> what is missing
        self.used: set[str] = set()

    def _match(self, table: dict[str, str], key: str) -> str | None:
        for pattern, reason in table.items():
            if fnmatch.fnmatchcase(key, pattern):
                self.used.add(pattern)
                return reason
        return None

    def apply(self, tests: list[unittest.TestCase]) -> None:
        for test in tests:
            key = case_key(self.suite, test)
            if getattr(type(test), "conformance_placeholder", False):
                self.placeholders[key] = type(test).__unittest_skip_why__
                continue
            if key in self.crashed:
                setattr(test, test._testMethodName, _excluded_method("crashed in an earlier run"))
                continue
            reason = self._match(self.excluded_table, key) or self.rule.reason(test)
            if reason is not None:
                self.excluded[key] = reason
                setattr(test, test._testMethodName, _excluded_method(reason))
                continue
            reason = self._match(self.xfail_table, key)
            if reason is not None:
                self.xfail[key] = reason
                test.__unittest_expecting_failure__ = True
                continue
            reason = self._match(self.racy_table, key)
            if reason is not None:
                self.racy[key] = reason

    def stale(self) -> list[str]:
        """Entries matching no test of the suite: fixed, renamed or mistyped
        (a Backported one may match nothing: this micro release lacks its test)."""
        if self.placeholders:
            # Entries for casyncio classes that do not exist yet cannot match.
            return []
        tables = list(self.excluded_table) + list(self.xfail_table) + list(self.racy_table)
        return [p for p in tables if p not in self.used and p not in self.backported]


# ---- the result --------------------------------------------------------------

_BAD = {"failed", "error", "crashed", "xpass"}
_RANK = {
    "passed": 0,
    "skipped": 0,
    "excluded": 0,
    "xfail": 1,
    "xpass": 2,
    "failed": 3,
    "error": 4,
    "crashed": 5,
}
OUTCOMES = ("passed", "failed", "error", "crashed", "skipped", "xfail", "xpass", "excluded")


class ConformanceResult(unittest.TextTestResult):
    """A TextTestResult that also keeps one outcome per test, the loops each
    test created, and the tracebacks of the bad outcomes."""

    def __init__(
        self,
        stream,
        descriptions,
        verbosity,
        *,
        suite: Suite,
        marks: Marks,
        census,
        progress,
        watchdog: Watchdog,
    ):
        super().__init__(stream, descriptions, verbosity)
        self.progress = progress
        self.watchdog = watchdog
        self.suite = suite
        self.marks = marks
        self.census = census
        self.outcomes: dict[str, str] = {}
        self.details: dict[str, str] = {}
        self.stock_loop_tests: dict[str, list[str]] = {}
        self.casyncio_loops = 0
        self.stock_loops: Counter[str] = Counter()
        self._snap: tuple[int, int] | None = None
        self._started = 0.0
        self.durations: dict[str, float] = {}

    def _key(self, test) -> str:
        if isinstance(test, unittest.TestCase):
            return case_key(self.suite, test)
        return f"{self.suite.name}.{test.id()}"  # a class or module fixture

    def _record(self, test, outcome: str, err=None) -> None:
        key = self._key(test)
        old = self.outcomes.get(key)
        if old is None or _RANK[outcome] > _RANK[old]:
            self.outcomes[key] = outcome
        if err is not None and outcome in _BAD:
            text = self._exc_info_to_string(err, test) if isinstance(err, tuple) else err
            self.details[key] = self.details.get(key, "") + text

    def startTest(self, test) -> None:
        super().startTest(test)
        if self.progress is not None:
            # Which test a crash happened in, for the parent to report.
            self.progress.seek(0)
            self.progress.write(self._key(test))
            self.progress.truncate()
            self.progress.flush()
        self.watchdog.arm()
        self._snap = self.census.snapshot()
        self._started = time.monotonic()

    def stopTest(self, test) -> None:
        self.watchdog.disarm()
        if self._snap is None:
            # Python 3.12.1 calls stopTest() without startTest() for a
            # skipped test (CPython gh-113267, mended in 3.12.2): it ran
            # nothing to count.
            super().stopTest(test)
            return
        self.durations[self._key(test)] = time.monotonic() - self._started
        made, stock = self.census.since(self._snap)
        self._snap = None
        self.casyncio_loops += made
        for t in stock:
            self.stock_loops[f"{t.__module__}.{t.__qualname__}"] += 1
        bad = [t.__qualname__ for t in stock if not allowed_stock_loop(t)]
        if bad:
            self.stock_loop_tests[self._key(test)] = bad
        super().stopTest(test)

    def addSuccess(self, test) -> None:
        super().addSuccess(test)
        self._record(test, "passed")

    def addFailure(self, test, err) -> None:
        super().addFailure(test, err)
        self._record(test, "failed", err)

    def addError(self, test, err) -> None:
        super().addError(test, err)
        self._record(test, "error", err)

    def addSubTest(self, test, subtest, err) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = "failed" if issubclass(err[0], test.failureException) else "error"
            self._record(test, kind, (err[0], err[1], err[2]))

    def addSkip(self, test, reason) -> None:
        super().addSkip(test, reason)
        key = self._key(test)
        if key in self.marks.crashed:
            self._record(test, "crashed")
        else:
            self._record(test, "excluded" if key in self.marks.excluded else "skipped")

    def addExpectedFailure(self, test, err) -> None:
        super().addExpectedFailure(test, err)
        self._record(test, "xfail")

    def addUnexpectedSuccess(self, test) -> None:
        super().addUnexpectedSuccess(test)
        key = self._key(test)
        self._record(
            test,
            "xpass",
            f"listed as an expected failure ({self.marks.xfail.get(key)!r}) but passed: "
            "remove it from expected_failures.py\n",
        )


# ---- the hung-test watchdog -----------------------------------------------------


class Watchdog:
    """Prints every thread's stack and ends the process when a test runs
    past TEST_TIMEOUT; the parent then reruns the suite without it.

    One thread for the whole run, which looks at the running test's deadline
    once a second and does nothing else: faulthandler's
    dump_traceback_later() would start a thread for every test, and a test
    that forks while that thread is starting can hand the child a lock the
    thread holds.  AddressSanitizer's allocator, which has no fork handler,
    did that to test_get_event_loop_new_process: its worker waited for ever
    on the allocator lock the new thread had taken.  A hang that keeps the
    GIL stops this thread too; run.py's limit for the whole suite ends it."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._deadline: float | None = None
        threading.Thread(target=self._watch, name="conformance-watchdog", daemon=True).start()

    def arm(self) -> None:
        self._deadline = time.monotonic() + self.timeout

    def disarm(self) -> None:
        self._deadline = None

    def _watch(self) -> None:
        while True:
            time.sleep(1.0)
            deadline = self._deadline
            if deadline is not None and time.monotonic() > deadline:
                break
        sys.stderr.write(f"\nTimeout: a test ran past {self.timeout:g} s\n")
        sys.stderr.flush()
        faulthandler.dump_traceback(all_threads=True)
        os._exit(1)


@functools.cache
def process_watchdog() -> Watchdog:
    """The process's one watchdog, started by the first suite run in it."""
    return Watchdog(TEST_TIMEOUT)


# ---- running a suite ------------------------------------------------------------


def run_suite(
    suite: Suite,
    mode: str,
    *,
    verbosity: int = 1,
    stream=None,
    progress: str | None = None,
    crashed: set[str] = frozenset(),
) -> dict:
    """Run one suite here and return its report (plain data, for JSON).
    ``progress``: a file kept holding the key of the test running;
    ``crashed``: tests not to run, because they killed an earlier child."""
    stream = stream if stream is not None else sys.stderr
    started = time.monotonic()
    problems: list[str] = []
    census = LoopCensus()
    try:
        make_casyncio_the_default(mode)
        loaded = suite.load()
    except Exception:  # noqa: BLE001 -- any failure here is reported as the suite's problem
        problems.append("could not set up the suite:\n" + traceback.format_exc())
        loaded = unittest.TestSuite()
    tests = list(iter_tests(loaded))
    marks = Marks(suite, mode, crashed)
    marks.apply(tests)

    progress_file = open(progress, "w") if progress else None  # noqa: SIM115
    runner = unittest.TextTestRunner(stream=stream, verbosity=verbosity)
    watchdog = process_watchdog()
    runner.resultclass = lambda *a: ConformanceResult(
        *a, suite=suite, marks=marks, census=census, progress=progress_file, watchdog=watchdog
    )
    try:
        result = runner.run(unittest.TestSuite(tests))
        reruns = _rerun_racy(tests, marks, result)
    finally:
        if progress_file is not None:
            progress_file.close()

    counts = Counter(result.outcomes.values())
    counts = {name: counts.get(name, 0) for name in OUTCOMES}
    counts["ran"] = sum(counts[k] for k in ("passed", "failed", "error", "xfail", "xpass"))
    placeholders_only = bool(marks.placeholders) and counts["ran"] == 0
    if counts["ran"] == 0 and not placeholders_only:
        problems.append("no test ran: the suite selected nothing")
    for name in ("failed", "error", "crashed", "xpass"):
        if counts[name]:
            problems.append(f"{counts[name]} test(s) {name}")
    for pattern in marks.stale():
        problems.append(f"expected_failures.py entry matches no test: {pattern}")
    if result.stock_loop_tests:
        shown = list(result.stock_loop_tests.items())[:5]
        problems.append(
            f"{len(result.stock_loop_tests)} test(s) got a stock asyncio loop, so casyncio "
            "was not the default loop for them: "
            + "; ".join(f"{key} made {types}" for key, types in shown)
            + ("; ..." if len(result.stock_loop_tests) > len(shown) else "")
        )
    if suite.uses_default_loop and result.casyncio_loops == 0 and not placeholders_only:
        problems.append("no casyncio loop was created: the suite did not run on casyncio")

    return {
        "suite": suite.name,
        "mode": mode,
        "counts": counts,
        "problems": problems,
        "placeholders_only": placeholders_only,
        "placeholders": sorted(marks.placeholders.values()),
        "bad": {
            k: {"outcome": v, "detail": result.details.get(k, "")}
            for k, v in result.outcomes.items()
            if v in _BAD
        },
        "reruns": reruns,
        "xfail": marks.xfail,
        "excluded": marks.excluded,
        "casyncio_loops": result.casyncio_loops,
        "stock_loops": dict(result.stock_loops),
        "seconds": round(time.monotonic() - started, 2),
        "slowest": [
            [key, round(seconds, 3)]
            for key, seconds in sorted(result.durations.items(), key=lambda kv: -kv[1])[:10]
        ],
    }


def _rerun_racy(tests: list[unittest.TestCase], marks: Marks, result) -> dict[str, str]:
    """Run each RACY test that failed once more, alone, in a new instance
    of its class; it counts by that run.  Returns key -> first failure."""
    reruns = {}
    for test in tests:
        key = case_key(marks.suite, test)
        if key not in marks.racy or result.outcomes.get(key) not in ("failed", "error"):
            continue
        del result.outcomes[key]
        reruns[key] = result.details.pop(key, "")
        # As a run of its own: the class's and the module's fixtures again.
        result._previousTestClass = None
        unittest.TestSuite([type(test)(test._testMethodName)]).run(result)
    return reruns


def list_suite(suite: Suite, mode: str) -> str:
    """What a run would do with each test, without running any."""
    make_casyncio_the_default()
    tests = list(iter_tests(suite.load()))
    marks = Marks(suite, mode)
    marks.apply(tests)
    out = io.StringIO()
    for test in tests:
        key = case_key(suite, test)
        if key in marks.excluded:
            out.write(f"EXCLUDED {key}: {marks.excluded[key]}\n")
        elif key in marks.xfail:
            out.write(f"XFAIL    {key}: {marks.xfail[key]}\n")
        elif key in marks.racy:
            out.write(f"RACY     {key}: {marks.racy[key]}\n")
        elif key in marks.placeholders:
            out.write(f"MISSING  {key}\n")
        else:
            out.write(f"RUN      {key}\n")
    for pattern in marks.stale():
        out.write(f"STALE    {pattern}\n")
    return out.getvalue()
