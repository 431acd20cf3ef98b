"""The command line: run suites, each in its own child process, and report.

A child runs one suite in one mode (``--child``) and writes its report as
JSON; a crash or a hang there fails that suite only (a hung test is cut short
by the harness's watchdog, which prints every thread's stack first; a suite
that runs out of its time is sent STACKS_SIGNAL for the same print before it
is killed).  The parent prints one line of counts per suite and mode, a
total, and every problem; it exits non-zero if any suite has one.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .suites import BY_NAME, SUITES

# The child imports this package as ``conformance`` from the tests directory,
# with -P so that neither the repository root (whose casyncio/ source tree
# would shadow an installed casyncio) nor the working directory is on
# sys.path; it runs in a scratch directory, where tests may create files.
TESTS_DIR = Path(__file__).resolve().parents[1]
DEFAULT_TIMEOUT = float(os.environ.get("CASYNCIO_CONFORMANCE_TIMEOUT", "240"))
TEST_TIMEOUT = float(os.environ.get("CASYNCIO_CONFORMANCE_TEST_TIMEOUT", "60"))
# faulthandler prints every thread's stack on this signal in a child, from
# its C handler: it needs no GIL, so it works where the harness's watchdog
# thread cannot run (a hang that holds the GIL).  No test_asyncio test uses it.
STACKS_SIGNAL = signal.SIGUSR2
COLUMNS = ("ran", "passed", "failed", "error", "crashed", "skipped", "xfail", "xpass", "excluded")


def child_command(*args: str) -> list[str]:
    return [sys.executable, "-P", "-X", "faulthandler", "-m", "conformance", *args]


def child_env(mode: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))
    env.pop("PYTHONASYNCIODEBUG", None)
    # Unbuffered, so that the output before a crash is not lost with it.
    env["PYTHONUNBUFFERED"] = "1"
    if mode == "debug":
        env["PYTHONASYNCIODEBUG"] = "1"
    return env


def _empty_report(suite: str, mode: str) -> dict:
    return {
        "suite": suite,
        "mode": mode,
        "counts": {c: 0 for c in COLUMNS},
        "problems": [],
        "bad": {},
        "reruns": {},
        "xfail": {},
        "excluded": {},
        "placeholders_only": False,
        "placeholders": [],
        "casyncio_loops": 0,
        "stock_loops": {},
    }


MAX_CRASHES = 5


def stacks_then_kill(proc: subprocess.Popen) -> str:
    """Kill a hung child and return its output, which ends with every
    thread's stack if the child printed them on STACKS_SIGNAL."""
    proc.send_signal(STACKS_SIGNAL)
    # The child prints and hangs on (the signal kills it only if a test took
    # the handler away): give it a moment to print, then kill it.
    try:
        output, _ = proc.communicate(timeout=3)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
    return output


def run_child(
    suite: str, mode: str, *, timeout: float = DEFAULT_TIMEOUT, verbosity: int = 1
) -> tuple[dict, str]:
    """Run one suite in a child process: (its report, its output).

    If the child dies in a test (a crash, or a test hanging past
    TEST_TIMEOUT), the suite is run again without that test, which is
    reported as "crashed", so that one crash does not hide the other results.
    """
    deadline = time.monotonic() + timeout
    crashed: dict[str, str] = {}  # test key -> how the child died
    outputs: list[str] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="casyncio-conformance-") as tmp:
        report_path = Path(tmp) / "report.json"
        progress_path = Path(tmp) / "progress"
        while True:
            cmd = child_command(
                "--child", suite, "--mode", mode, "--json", str(report_path),
                "--progress", str(progress_path), f"--verbosity={verbosity}",
            )  # fmt: skip
            for key in crashed:
                cmd += ["--crashed", key]
            remaining = max(1.0, deadline - time.monotonic())
            for path in (report_path, progress_path):
                path.unlink(missing_ok=True)
            with subprocess.Popen(
                cmd,
                cwd=tmp,
                env=child_env(mode),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            ) as proc:
                try:
                    output, _ = proc.communicate(timeout=remaining)
                    code = proc.returncode
                except subprocess.TimeoutExpired:
                    output, code = stacks_then_kill(proc), None
            outputs.append(output)
            if report_path.exists():
                report = json.loads(report_path.read_text())
                break
            last = progress_path.read_text() if progress_path.exists() else ""
            if code is None:
                how = f"the suite ran out of its {timeout:.0f}s"
            elif code < 0:
                how = f"the interpreter died of signal {-code}"
            else:
                how = f"the child exited with code {code} (a test hanging past {TEST_TIMEOUT:g}s?)"
            if last and last not in crashed and code is not None and len(crashed) < MAX_CRASHES:
                crashed[last] = how
                continue
            report = _empty_report(suite, mode)
            where = f", in or after {last}" if last else ""
            report["problems"].append(f"{how}{where}; see its output")
            break
    for key, how in crashed.items():
        report["problems"].insert(0, f"{key} crashed: {how}; the suite was rerun without it")
        report["bad"][key] = {"outcome": "crashed", "detail": how}
    report["counts"]["crashed"] = max(report["counts"].get("crashed", 0), len(crashed))
    report["wall_seconds"] = round(time.monotonic() - started, 2)
    return report, "\n".join(outputs)


def format_table(reports: list[dict]) -> str:
    head = f"{'suite':<24} {'mode':<6} " + " ".join(f"{c:>8}" for c in COLUMNS)
    head += f" {'loops':>6} {'time':>7}  status"
    lines = [head, "-" * len(head)]
    total = {c: 0 for c in COLUMNS}
    total_time = 0.0
    for r in reports:
        counts = r["counts"]
        for c in COLUMNS:
            total[c] += counts.get(c, 0)
        seconds = r.get("wall_seconds", r.get("seconds", 0.0))
        total_time += seconds
        status = (
            "FAIL" if r["problems"] else ("not implemented" if r["placeholders_only"] else "ok")
        )
        lines.append(
            f"{r['suite']:<24} {r['mode']:<6} "
            + " ".join(f"{counts.get(c, 0):>8}" for c in COLUMNS)
            + f" {r.get('casyncio_loops', 0):>6} {seconds:>6.1f}s  {status}"
        )
    lines.append("-" * len(head))
    lines.append(
        f"{'TOTAL':<24} {'':<6} "
        + " ".join(f"{total[c]:>8}" for c in COLUMNS)
        + f" {'':>6} {total_time:>6.1f}s"
    )
    return "\n".join(lines)


def format_problems(report: dict, *, details: bool = True) -> str:
    lines = []
    for problem in report["problems"]:
        lines.append(f"[{report['suite']} {report['mode']}] {problem}")
    if details:
        for key, bad in report["bad"].items():
            lines.append(f"--- {bad['outcome'].upper()}: {key}")
            lines.append(bad["detail"].rstrip())
    return "\n".join(lines)


def format_reruns(report: dict) -> str:
    """The RACY tests that failed once and were run again (their first failure)."""
    lines = []
    for key, first in report.get("reruns", {}).items():
        outcome = report["bad"].get(key, {}).get("outcome", "passed")
        lines.append(
            f"[{report['suite']} {report['mode']}] rerun, {outcome} the second time: {key}"
        )
        lines.append(first.rstrip())
    return "\n".join(lines)


def _child_main(args: argparse.Namespace) -> int:
    from . import harness

    # Started from a shell's background job, the child ignores SIGINT, and
    # test_runners' Ctrl-C tests would hang: give it Python's usual handler
    # (as tests/conftest.py does for pytest).
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    faulthandler.register(STACKS_SIGNAL, all_threads=True)
    debug_env = bool(os.environ.get("PYTHONASYNCIODEBUG"))
    if debug_env != (args.mode == "debug"):
        print(f"mode {args.mode} but PYTHONASYNCIODEBUG={os.environ.get('PYTHONASYNCIODEBUG')!r}")
        return 2
    report = harness.run_suite(
        BY_NAME[args.child],
        args.mode,
        verbosity=args.verbosity,
        stream=sys.stdout,
        progress=args.progress,
        crashed=set(args.crashed),
    )
    Path(args.json).write_text(json.dumps(report, indent=1))
    return 1 if report["problems"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.conformance",
        description="Run CPython's test.test_asyncio against casyncio.",
    )
    parser.add_argument(
        "suites",
        nargs="*",
        metavar="suite",
        help=f"suites to run (default: all): {', '.join(BY_NAME)}",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--debug", action="store_true", help="run with PYTHONASYNCIODEBUG=1")
    mode.add_argument("--both", action="store_true", help="run in normal and in debug mode")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="child processes at once")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every test's outcome")
    parser.add_argument(
        "--list",
        action="store_true",
        help="list each test with what the run would do with it, run nothing",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds per suite before it counts as hung",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument(
        "--mode", default="normal", choices=("normal", "debug"), help=argparse.SUPPRESS
    )
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument("--progress", help=argparse.SUPPRESS)
    parser.add_argument("--crashed", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--verbosity", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child and args.list:
        from . import harness

        print(harness.list_suite(BY_NAME[args.child], args.mode), end="")
        return 0
    if args.child:
        return _child_main(args)

    unknown = [s for s in args.suites if s not in BY_NAME]
    if unknown:
        parser.error(f"unknown suite(s) {unknown}; known: {', '.join(BY_NAME)}")
    names = args.suites or [s.name for s in SUITES]
    modes = ["normal", "debug"] if args.both else ["debug" if args.debug else "normal"]

    if args.list:
        for name in names:
            with tempfile.TemporaryDirectory(prefix="casyncio-conformance-") as tmp:
                cmd = child_command("--child", name, "--mode", modes[0], "--list")
                code = subprocess.call(cmd, cwd=tmp, env=child_env(modes[0]))
            if code:
                return code
        return 0

    jobs = [(name, m) for m in modes for name in names]
    verbosity = 2 if args.verbose else 1

    def one(job: tuple[str, str]) -> tuple[dict, str]:
        return run_child(job[0], job[1], timeout=args.timeout, verbosity=verbosity)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(one, jobs))
    reports = [r for r, _ in results]
    for report, output in results:
        if args.verbose or report["problems"]:
            print(f"===== {report['suite']} ({report['mode']}) =====")
            print(output.rstrip())
    print(format_table(reports))
    print(f"wall time {time.monotonic() - started:.1f}s")
    for r in reports:
        if r.get("reruns"):
            print(format_reruns(r))
    failed = [r for r in reports if r["problems"]]
    for r in failed:
        print(format_problems(r, details=False))
    return 1 if failed else 0
