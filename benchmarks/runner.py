"""The orchestrating side: start one worker per loop, run the rounds, collect.

Within a round every workload runs on every loop before the next workload
starts, and the order of the loops rotates from round to round, so a slow
drift of the machine (thermal, a background job) spreads over all loops
instead of landing on one.  Measurements never overlap: the machine has two
cores, and a second benchmark would be noise for the first.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from . import loops
from .registry import Mode, Workload

REPO = Path(__file__).resolve().parents[1]

# Variables that would change what is measured (debug mode, tracing) are not
# passed on to the workers.
_DROP_ENV = (
    "PYTHONASYNCIODEBUG",
    "PYTHONDEVMODE",
    "PYTHONTRACEMALLOC",
    "CASYNCIO_STATS",
    "PYTHONMALLOC",
    "PYTHONWARNINGS",
)


def worker_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
    env["PYTHONHASHSEED"] = "0"
    return env


class WorkerError(Exception):
    """The worker process died, timed out, or said something unreadable."""


# How a worker starts: not ``-m benchmarks.worker`` from the repository root,
# which would put the root first on sys.path, so that ``import casyncio``
# would find the source tree (which has no compiled extension) before the
# installed package.  -P keeps the current directory off sys.path, and the
# root goes last, only to find ``benchmarks``.
_BOOT = (
    f"import sys; sys.path.append({str(REPO)!r}); "
    "from benchmarks.worker import main; raise SystemExit(main())"
)


class LoopServer:
    """One worker process (``benchmarks/worker.py``) and its pipes."""

    def __init__(self, loop: str, log: IO[bytes], fork: bool = True) -> None:
        cmd = [sys.executable, "-P", "-c", _BOOT, loop]
        if not fork:
            cmd.append("--no-fork")
        # Own session: on a timeout the whole group (server and its forked
        # child) is killed, and only it.
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=worker_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
        )
        self._buf = b""

    def read_line(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise WorkerError(f"timed out after {timeout:.0f} s")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                code = self.proc.wait()
                raise WorkerError(f"worker exited with code {code}")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            answer: dict[str, Any] = json.loads(line)
        except ValueError as exc:
            raise WorkerError(f"unreadable answer {line[:200]!r}") from exc
        return answer

    def request(self, workload: str, mode: Mode, timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"workload": workload, "mode": mode}).encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError as exc:
            raise WorkerError("worker is gone") from exc
        return self.read_line(timeout)

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, 9)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.close()
                self.proc.wait(10)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.kill()


@dataclass
class Cell:
    """Everything measured for one (workload, loop)."""

    status: str = "pending"  # ok, n/a, error, crash, timeout, unavailable
    samples: list[float] = field(default_factory=list)
    ops: int = 0
    n: int = 0
    extras: list[dict[str, Any]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    # Wall seconds each request took, warm-up and set-up included: what the
    # suite's own running time is made of.
    costs: list[float] = field(default_factory=list)
    # Why later rounds skipped this cell, if they did.
    skipped: str = ""

    def add(self, answer: dict[str, Any]) -> None:
        if answer["status"] == "ok":
            self.samples.append(float(answer["value"]))
            self.ops = int(answer["ops"])
            self.n = int(answer["n"])
            self.extras.append(answer.get("extra", {}))
            self.status = "ok"
        else:
            self.reasons.append(str(answer.get("reason", "")))
            if self.status != "ok":
                self.status = answer["status"]

    def samples_for(self, clock: str) -> list[float]:
        """The samples by ``clock``: "wall", or "cpu" (this process's CPU
        seconds, for time workloads; other kinds have only one kind of value)."""
        if clock == "cpu" and self.extras and all("cpu_s" in e for e in self.extras):
            return [float(e["cpu_s"]) for e in self.extras]
        return self.samples

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "samples": self.samples,
            "ops": self.ops,
            "n": self.n,
            "extras": self.extras,
            "reasons": sorted(set(self.reasons)),
            "costs": [round(c, 3) for c in self.costs],
            "skipped": self.skipped,
        }


class Progress:
    """What runs now, on stderr: one line rewritten in place with ``\\r`` on a
    terminal; elsewhere (a log, CI) one line per workload and round."""

    def __init__(self, total: int, enabled: bool | None = None) -> None:
        self.total = total
        self.done = 0
        self.start = time.monotonic()
        self.enabled = True if enabled is None else enabled
        self.tty = sys.stderr.isatty()
        self._last_group = ""

    def show(self, text: str, group: str = "") -> None:
        """Say that ``text`` runs now; off a terminal, only when ``group`` changes."""
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.start
        eta = ""
        if self.done:
            eta = f", ~{elapsed / self.done * (self.total - self.done):.0f}s left"
        line = f"[{self.done + 1}/{self.total} {elapsed:.0f}s{eta}] {text}"
        if self.tty:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            sys.stderr.write("\r" + line[:width].ljust(width))
        elif group != self._last_group:
            self._last_group = group
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def step(self) -> None:
        self.done += 1

    def clear(self) -> None:
        if self.enabled and self.tty:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            sys.stderr.write("\r" + " " * width + "\r")
            sys.stderr.flush()


@dataclass
class LoopInfo:
    name: str
    available: bool
    version: str = ""
    reason: str = ""
    description: str = ""
    origin: str = ""  # the file the loop's module was imported from


# A measurement that takes longer than this is not repeated in later rounds:
# workloads are sized to take a second or two on stock asyncio, so such a run
# is a pathology of that loop, and repeating it would stretch the suite by
# minutes without changing the verdict.
SLOW_S = 15.0


class Runner:
    def __init__(
        self,
        loop_names: list[str],
        workloads: list[Workload],
        mode: Mode,
        rounds: int,
        log_dir: Path,
        timeout: float,
        spawn: bool = False,
        progress: bool | None = None,
    ) -> None:
        self.loop_names = loop_names
        self.workloads = workloads
        self.mode = mode
        self.rounds = rounds
        self.timeout = timeout
        self.spawn = spawn
        self.progress_enabled = progress
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = log_dir
        self.servers: dict[str, LoopServer] = {}
        self.logs: dict[str, IO[bytes]] = {}
        self._files = contextlib.ExitStack()
        self.info: dict[str, LoopInfo] = {}
        self.cells: dict[str, dict[str, Cell]] = {w.name: {} for w in workloads}

    # ---- workers ---------------------------------------------------------------

    def _log(self, loop: str) -> IO[bytes]:
        if loop not in self.logs:
            log = (self.log_dir / f"{loop}.log").open("ab")
            self.logs[loop] = self._files.enter_context(log)
        return self.logs[loop]

    def _start(self, loop: str) -> LoopServer:
        server = LoopServer(loop, self._log(loop), fork=not self.spawn)
        try:
            hello = server.read_line(120)
        except WorkerError as exc:
            server.kill()
            raise WorkerError(f"did not start: {exc}") from exc
        if not hello.get("ready"):
            server.close()
            raise WorkerError(str(hello.get("reason", "not ready")))
        spec = loops.KNOWN.get(loop)
        self.info[loop] = LoopInfo(
            loop,
            True,
            str(hello.get("version", "")),
            origin=str(hello.get("origin", "")),
            description=spec.description if spec else "not a loop: the call_soon floor",
        )
        return server

    def start_all(self, names: list[str]) -> None:
        """Start (or, with --spawn, probe) a worker per loop; drop those that fail."""
        for name in names:
            try:
                server = self._start(name)
            except WorkerError as exc:
                spec = loops.KNOWN.get(name)
                self.info[name] = LoopInfo(
                    name, False, reason=str(exc), description=spec.description if spec else ""
                )
                continue
            if self.spawn:
                server.close()
            else:
                self.servers[name] = server

    def _measure(self, loop: str, workload: str) -> dict[str, Any]:
        try:
            if self.spawn:
                server = self._start(loop)
                try:
                    return server.request(workload, self.mode, self.timeout)
                finally:
                    server.close()
            server = self.servers.get(loop) or self._start(loop)
            self.servers[loop] = server
            return server.request(workload, self.mode, self.timeout)
        except WorkerError as exc:
            self.servers.pop(loop, None)  # a fresh one next time
            status = "timeout" if "timed out" in str(exc) else "crash"
            return {"status": status, "reason": str(exc)}

    def close(self) -> None:
        for server in self.servers.values():
            server.close()
        self.servers.clear()
        self._files.close()
        self.logs.clear()

    # ---- rounds -------------------------------------------------------------------

    def _rounds_for(self, w: Workload) -> int:
        return min(self.rounds, w.max_rounds.get(self.mode, self.rounds))

    def _loops_for(self, w: Workload) -> list[str]:
        names = list(w.only_on) if w.only_on is not None else self.loop_names
        return [n for n in names if self.info.get(n, LoopInfo(n, False)).available]

    def run(self) -> dict[str, dict[str, Cell]]:
        wanted = list(self.loop_names)
        for w in self.workloads:
            for name in w.only_on or ():
                if name not in wanted:
                    wanted.append(name)
        self.start_all(wanted)
        for w in self.workloads:
            for name in w.only_on if w.only_on is not None else self.loop_names:
                info = self.info[name]
                if not info.available:
                    self.cells[w.name][name] = Cell("unavailable", reasons=[info.reason])
        total = sum(self._rounds_for(w) * len(self._loops_for(w)) for w in self.workloads)
        progress = Progress(total, self.progress_enabled)
        try:
            for r in range(self.rounds):
                for w in self.workloads:
                    if r >= self._rounds_for(w):
                        continue
                    names = self._loops_for(w)
                    k = r % len(names) if names else 0
                    for loop in names[k:] + names[:k]:
                        cell = self.cells[w.name].setdefault(loop, Cell())
                        if cell.status in ("n/a", "timeout") or cell.skipped:
                            # Not implemented (or too slow) does not change between rounds.
                            progress.step()
                            continue
                        progress.show(
                            f"round {r + 1}/{self.rounds}: {w.name} on {loop}",
                            group=f"{r}:{w.name}",
                        )
                        t0 = time.monotonic()
                        cell.add(self._measure(loop, w.name))
                        cell.costs.append(time.monotonic() - t0)
                        if cell.costs[-1] > SLOW_S and r + 1 < self._rounds_for(w):
                            cell.skipped = (
                                f"measured once: one run took {cell.costs[-1]:.0f} s "
                                f"(runs over {SLOW_S:.0f} s are not repeated)"
                            )
                        progress.step()
        finally:
            progress.clear()
            self.close()
        return self.cells
