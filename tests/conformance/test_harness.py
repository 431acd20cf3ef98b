"""The harness's own checks can fail: each test here builds a situation the
harness must reject (an expected failure that passes, a stale entry, a suite
that runs nothing, a test that got a stock loop) and checks that it does.

Each runs the harness in a child process, like the conformance run itself:
the harness patches asyncio's globals, which must not leak into pytest.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

from .run import TESTS_DIR, child_env, stacks_then_kill

PASSING = "test_context.DecimalContextTest.test_asyncio_task_decimal_context"


def run_harness(tmp_path, body: str) -> dict:
    """Run ``body`` (which sets ``suite``, and may edit the tables) in a
    child, then the suite; return the report."""
    proc = run_harness_child(tmp_path, body)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def run_harness_child(tmp_path, body: str) -> subprocess.CompletedProcess:
    script = (
        textwrap.dedent(
            """
        import io, json, sys
        from conformance import expected_failures as ef, harness, suites
        from conformance.suites import Suite
        suite = suites.BY_NAME["test_context"]
        """
        )
        + textwrap.dedent(body)
        + textwrap.dedent(
            """
        report = harness.run_suite(suite, "normal", stream=io.StringIO())
        print(json.dumps(report))
        """
        )
    )
    return subprocess.run(
        [sys.executable, "-P", "-c", script],
        cwd=tmp_path,
        env=child_env("normal"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_clean_suite_has_no_problem(tmp_path):
    report = run_harness(tmp_path, "")
    assert report["problems"] == []
    assert report["counts"]["passed"] == report["counts"]["ran"] == 1
    assert report["casyncio_loops"] >= 1


def test_expected_failure_that_passes_fails_the_run(tmp_path):
    report = run_harness(tmp_path, f"ef.EXPECTED_FAILURES[{PASSING!r}] = 'bogus'")
    assert report["counts"]["xpass"] == 1
    assert "1 test(s) xpass" in report["problems"]
    assert "remove it from expected_failures.py" in report["bad"][PASSING]["detail"]


def test_stale_entry_fails_the_run(tmp_path):
    report = run_harness(tmp_path, "ef.EXCLUDED['test_context.NoSuchClass.test_x'] = 'stale'")
    assert report["problems"] == [
        "expected_failures.py entry matches no test: test_context.NoSuchClass.test_x"
    ]


def test_backported_entry_may_match_nothing(tmp_path):
    # An entry for a test that only later micro releases have: on this one
    # nothing matches it, and that is no problem; matching, it excludes.
    report = run_harness(
        tmp_path, "ef.EXCLUDED['test_context.NoSuchClass.test_x'] = ef.Backported('later')"
    )
    assert report["problems"] == []
    report = run_harness(tmp_path, f"ef.EXCLUDED[{PASSING!r}] = ef.Backported('here')")
    assert report["excluded"] == {PASSING: "here"}


FAILS_FIRST = textwrap.dedent(
    """
    from test.test_asyncio import test_context as module
    case = module.DecimalContextTest
    passing = case.test_asyncio_task_decimal_context
    calls = []

    def racy(self):
        calls.append(self)
        if len(calls) <= FAILURES:
            self.fail(f"lost the race, run {len(calls)}")
        passing(self)

    case.test_asyncio_task_decimal_context = racy
    ef.RACY[PASSING] = "demo"
    """
)


def test_racy_test_that_fails_once_counts_by_its_rerun(tmp_path):
    report = run_harness(tmp_path, f"PASSING = {PASSING!r}; FAILURES = 1\n" + FAILS_FIRST)
    assert report["problems"] == []
    assert report["counts"]["passed"] == report["counts"]["ran"] == 1
    assert list(report["reruns"]) == [PASSING]
    assert "lost the race, run 1" in report["reruns"][PASSING]


def test_racy_test_that_fails_twice_fails_the_run(tmp_path):
    report = run_harness(tmp_path, f"PASSING = {PASSING!r}; FAILURES = 2\n" + FAILS_FIRST)
    assert "1 test(s) failed" in report["problems"]
    assert "lost the race, run 2" in report["bad"][PASSING]["detail"]
    assert "lost the race, run 1" in report["reruns"][PASSING]


def test_racy_entry_is_not_a_pass(tmp_path):
    # Listed but never failing: run once, no rerun; listed and matching
    # nothing: stale, like any other entry.
    report = run_harness(tmp_path, f"ef.RACY[{PASSING!r}] = 'demo'")
    assert report["problems"] == [] and report["reruns"] == {}
    report = run_harness(tmp_path, "ef.RACY['test_context.NoSuchClass.test_x'] = 'stale'")
    assert report["problems"] == [
        "expected_failures.py entry matches no test: test_context.NoSuchClass.test_x"
    ]


def test_excluded_test_does_not_run_and_nothing_left_fails(tmp_path):
    report = run_harness(tmp_path, "ef.EXCLUDED['test_context.*'] = 'demo'")
    assert report["counts"]["excluded"] == 1
    assert report["counts"]["ran"] == 0
    assert report["excluded"] == {PASSING: "demo"}
    assert "no test ran: the suite selected nothing" in report["problems"]


def test_suite_selecting_nothing_fails(tmp_path):
    report = run_harness(tmp_path, "suite = Suite('test_context', cases=lambda mod: [])")
    assert "no test ran: the suite selected nothing" in report["problems"]


def test_stock_default_loop_is_caught(tmp_path):
    # Without the harness making casyncio the default, the test gets stock
    # loops: the census must notice, per test and for the suite.
    report = run_harness(tmp_path, "harness.make_casyncio_the_default = lambda mode=None: None")
    assert report["counts"]["passed"] == 1
    assert report["casyncio_loops"] == 0
    assert any(f"{PASSING} made ['_UnixSelectorEventLoop']" in p for p in report["problems"])
    assert "no casyncio loop was created: the suite did not run on casyncio" in report["problems"]


def test_selection_rule_names_unimplemented_loop_methods(tmp_path):
    # Pretend casyncio lacks create_server: the tests reaching it (here
    # through asyncio.start_server) drop out, with it named as the reason;
    # the start_unix_server tests stay.
    report = run_harness(
        tmp_path,
        """
        import asyncio, casyncio
        casyncio.Loop.create_server = asyncio.AbstractEventLoop.create_server
        suite = suites.BY_NAME["test_server"]
        """,
    )
    assert report["problems"] == []
    assert report["counts"]["ran"] == 2
    assert report["counts"]["excluded"] == 2
    reasons = set(report["excluded"].values())
    assert reasons == {"needs loop.create_server(), not implemented in casyncio yet"}
    assert all("unix" not in key for key in report["excluded"])


def test_a_hung_test_ends_the_child_with_every_threads_stack(tmp_path):
    # run.py takes exit code 1 (and the progress file) as "this test hung"
    # and reruns the suite without it.
    proc = run_harness_child(
        tmp_path,
        """
        import time
        from test.test_asyncio import test_context
        def hangs(self):
            time.sleep(600)
        test_context.DecimalContextTest.test_asyncio_task_decimal_context = hangs
        harness.TEST_TIMEOUT = 2
        """,
    )
    assert proc.returncode == 1
    assert "a test ran past 2 s" in proc.stderr
    assert "in hangs" in proc.stderr  # the hung test's frame, from faulthandler


def test_a_suite_out_of_time_prints_every_threads_stack_before_it_is_killed():
    # A hang that holds the GIL (here a C sleep called with it held) stops the
    # harness's watchdog thread too; faulthandler's C handler still prints.
    script = textwrap.dedent(
        """
        import ctypes, faulthandler, sys
        from conformance.run import STACKS_SIGNAL
        faulthandler.register(STACKS_SIGNAL, all_threads=True)
        def holds_the_gil():
            print("hanging", flush=True)
            while True:  # a signal ends sleep() early
                ctypes.PyDLL(None).sleep(600)
        holds_the_gil()
        """
    )
    with subprocess.Popen(
        [sys.executable, "-P", "-c", script],
        env=child_env("normal"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        assert proc.stdout.readline() == "hanging\n"
        output = stacks_then_kill(proc)
    assert proc.returncode == -signal.SIGKILL
    assert "in holds_the_gil" in output


def test_child_env_sets_the_mode():
    assert child_env("debug")["PYTHONASYNCIODEBUG"] == "1"
    assert "PYTHONASYNCIODEBUG" not in child_env("normal")
    assert str(TESTS_DIR) in child_env("normal")["PYTHONPATH"]
