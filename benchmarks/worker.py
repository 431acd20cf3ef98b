"""The measuring side: one process per loop, one fresh process per measurement.

The worker for LOOP (started by the runner, or by hand with
``python -m benchmarks.worker LOOP``) imports the loop and the workloads, runs
a smoke test, says it is ready (one JSON line on stdout), then reads requests
(one JSON line each: workload and mode) from stdin.  For each it forks a
child, which runs the measurement and dies: so every measurement starts from
the same clean process that has imported only the loop and the workloads,
without paying interpreter start-up (and an editable build's import-time
rebuild check) each time.  With ``--no-fork`` the request runs in the server
process itself: the orchestrator's ``--spawn`` mode starts one such server
per measurement.  The answer is one JSON line on stdout.  The child's own
stdout goes to stderr, so nothing a loop prints can garble the answers.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any

from . import loops
from .registry import LoopFactory, Mode, all_workloads


def _not_implemented(exc: BaseException) -> NotImplementedError | None:
    """The NotImplementedError behind ``exc``, if any (raised directly,
    chained, or inside an exception group)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, NotImplementedError):
            return e
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
        for nxt in (e.__cause__, e.__context__):
            if nxt is not None:
                todo.append(nxt)
    return None


def _where(exc: BaseException) -> str:
    """The innermost frame of ``exc``'s traceback, as ``file:line in func``."""
    tb = traceback.extract_tb(exc.__traceback__)
    if not tb:
        return "?"
    f = tb[-1]
    return f"{os.path.basename(f.filename)}:{f.lineno} in {f.name}"


def measure(factory: LoopFactory, workload: str, mode: Mode) -> dict[str, Any]:
    """Run one workload once (after its warm-up) and say what happened."""
    w = all_workloads()[workload]
    n = w.sizes.for_mode(mode)
    try:
        if w.kind == "time" and w.warmup:
            w.fn(factory, max(1, n // 10))
        gc.collect()
        m = w.fn(factory, n)
    except Exception as exc:  # noqa: BLE001  (a failing loop is a result, not a crash)
        nie = _not_implemented(exc)
        if nie is not None:
            what = f": {nie}" if str(nie) else ""
            return {"status": "n/a", "reason": f"not implemented{what} ({_where(nie)})"}
        traceback.print_exc()
        return {"status": "error", "reason": f"{type(exc).__name__}: {exc} ({_where(exc)})"}
    return {"status": "ok", "value": m.value, "ops": m.ops, "n": n, "extra": m.extra}


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _smoke(factory: LoopFactory) -> dict[str, Any]:
    try:
        loops.smoke_test(factory)
    except Exception as exc:  # noqa: BLE001  (reported: the loop is left out)
        return {"status": "error", "reason": f"smoke test failed: {type(exc).__name__}: {exc}"}
    return {"status": "ok"}


def _forked(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run()`` in a forked child; its answer, or why there is none."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(r)
            os.dup2(2, 1)
            _write_all(w, json.dumps(run()).encode())
        except BaseException:  # noqa: BLE001  (the child must reach os._exit)
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(w)
    chunks = []
    with os.fdopen(r, "rb") as f:
        while chunk := f.read(65536):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if chunks:
        result: dict[str, Any] = json.loads(b"".join(chunks))
        return result
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        return {"status": "crash", "reason": f"measuring process killed by {sig}"}
    return {
        "status": "crash",
        "reason": f"measuring process exited {os.waitstatus_to_exitcode(status)}",
    }


def serve(loop_name: str, fork: bool) -> int:
    out = sys.stdout
    sys.stdout = sys.stderr  # only answers go to the real stdout
    try:
        factory, version, origin = loops.load(loop_name)
        all_workloads()
    except Exception as exc:  # noqa: BLE001  (reported: the loop is left out)
        out.write(json.dumps({"ready": False, "reason": f"{type(exc).__name__}: {exc}"}) + "\n")
        out.flush()
        return 1
    if loop_name != loops.PSEUDO:
        # In a child, like the measurements, so that this process never
        # makes a loop and every measurement forks from the same clean state.
        smoke = _forked(lambda: _smoke(factory)) if fork else _smoke(factory)
        if smoke["status"] != "ok":
            out.write(json.dumps({"ready": False, "reason": smoke["reason"]}) + "\n")
            out.flush()
            return 1
    out.write(json.dumps({"ready": True, "version": version, "origin": origin}) + "\n")
    out.flush()
    for line in sys.stdin:
        req = json.loads(line)
        workload: str = req["workload"]
        mode: Mode = req["mode"]
        if fork:
            result = _forked(functools.partial(measure, factory, workload, mode))
        else:
            result = measure(factory, workload, mode)
        out.write(json.dumps(result) + "\n")
        out.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    p.add_argument("loop")
    p.add_argument("--no-fork", action="store_true", help="measure in this process")
    args = p.parse_args(argv)
    return serve(args.loop, fork=not args.no_fork)


if __name__ == "__main__":
    raise SystemExit(main())
