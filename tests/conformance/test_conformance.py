"""pytest entry point of the conformance harness: one test per suite and mode.

Each runs its suite of CPython's test.test_asyncio in a child process (see
run.py), so a crash or a hang fails that one test, and fails on any problem
the harness reports: a failing or crashing test, an expected failure that
passed, an expected_failures.py entry matching nothing, a run that ran no
test or made no casyncio loop, a test that got a stock asyncio loop.  The
counts are printed (shown with ``pytest -rP`` or ``-s``) and recorded as the
test's ``counts`` property (for ``--junitxml``).
"""

from __future__ import annotations

import pytest

from .run import DEFAULT_TIMEOUT, format_problems, format_reruns, format_table, run_child
from .suites import SUITES


@pytest.mark.timeout(DEFAULT_TIMEOUT + 60)
@pytest.mark.parametrize("mode", ["normal", "debug"])
@pytest.mark.parametrize("suite", [s.name for s in SUITES])
def test_conformance(suite: str, mode: str, record_property) -> None:
    report, output = run_child(suite, mode)
    record_property("counts", report["counts"])
    print(format_table([report]))
    if report.get("reruns"):
        print(format_reruns(report))
    if report["problems"]:
        message = format_problems(report)
        if report["counts"].get("crashed") or not report["bad"]:
            # A crash or a harness problem: the child's output (faulthandler's
            # stacks, the unittest log) is the only clue.
            message += f"\n\n----- child output (tail) -----\n{output[-20000:]}"
        pytest.fail(message, pytrace=False)
    if report["placeholders_only"]:
        pytest.skip("; ".join(report["placeholders"]))
