"""Subprocesses on both loops: exec and shell, pipes both ways, exit codes,
signals, and the protocol call order asyncio defines."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from casyncio._versions import since


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, 30))


def test_exec_communicate_round_trip(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import sys; data = sys.stdin.read(); print(data.upper())",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await proc.communicate(b"hello from the parent")
        return proc.returncode, out, err

    code, out, err = run(loop, main())
    assert (code, out.strip(), err) == (0, b"HELLO FROM THE PARENT", b"")


def test_shell_exit_status_and_stderr(loop):
    async def main():
        proc = await asyncio.create_subprocess_shell(
            "echo oops >&2; exit 7", stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await proc.communicate()
        return proc.returncode, out, err

    assert run(loop, main()) == (7, b"", b"oops\n")


def test_kill_a_running_child(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import time; print('up', flush=True); time.sleep(60)",
            stdout=subprocess.PIPE,
        )
        assert await proc.stdout.readline() == b"up\n"
        proc.send_signal(signal.SIGTERM)
        return await proc.wait()

    assert run(loop, main()) == -signal.SIGTERM


def test_wait_without_pipes(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "raise SystemExit(3)")
        return await proc.wait()

    assert run(loop, main()) == 3


def test_protocol_call_order(loop):
    calls: list[tuple] = []
    done = loop.create_future()

    class Proto(asyncio.SubprocessProtocol):
        def connection_made(self, transport):
            calls.append(("connection_made",))

        def pipe_data_received(self, fd, data):
            calls.append(("data", fd, data))

        def pipe_connection_lost(self, fd, exc):
            calls.append(("pipe_lost", fd))

        def process_exited(self):
            calls.append(("exited",))

        def connection_lost(self, exc):
            calls.append(("connection_lost",))
            done.set_result(None)

    async def main():
        transport, _ = await loop.subprocess_exec(
            Proto, sys.executable, "-c", "print('x')", stdin=None, stderr=None
        )
        await done
        code = transport.get_returncode()
        transport.close()
        return code

    assert run(loop, main()) == 0
    assert calls[0] == ("connection_made",)
    assert b"".join(c[2] for c in calls if c[0] == "data") == b"x\n"
    assert calls[-1] == ("connection_lost",)
    assert {c[0] for c in calls} == {
        "connection_made",
        "data",
        "pipe_lost",
        "exited",
        "connection_lost",
    }


TRANSPORT_ABCS = (
    asyncio.BaseTransport,
    asyncio.ReadTransport,
    asyncio.WriteTransport,
    asyncio.Transport,
    asyncio.DatagramTransport,
    asyncio.SubprocessTransport,
)


def _abcs(transport) -> set[str]:
    return {abc.__name__ for abc in TRANSPORT_ABCS if isinstance(transport, abc)}


def test_pipe_and_subprocess_transport_classes(loop):
    """The transports are instances of the same asyncio ABCs as stock
    asyncio's: a write pipe is a full Transport (stock's derives from
    asyncio.Transport through its flow-control mixin), so the reading half
    exists and, as in asyncio.ReadTransport, raises NotImplementedError; a
    read pipe is a ReadTransport only."""

    async def main():
        r, w = os.pipe()
        wt, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, os.fdopen(w, "wb"))
        rt, _ = await loop.connect_read_pipe(asyncio.Protocol, os.fdopen(r, "rb"))
        try:
            pipes = {"write": _abcs(wt), "read": _abcs(rt)}
            for method in ("pause_reading", "resume_reading", "is_reading"):
                with pytest.raises(NotImplementedError):
                    getattr(wt, method)()
            assert rt.is_reading()
        finally:
            wt.close()
            rt.close()
            await asyncio.sleep(0)

        done = loop.create_future()

        class Proto(asyncio.SubprocessProtocol):
            def connection_lost(self, exc):
                done.set_result(None)

        proc, _ = await loop.subprocess_exec(
            Proto,
            sys.executable,
            "-c",
            "import sys; sys.stdin.read()",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
        )
        child = {
            "process": _abcs(proc),
            "stdin": _abcs(proc.get_pipe_transport(0)),
            "stdout": _abcs(proc.get_pipe_transport(1)),
        }
        proc.get_pipe_transport(0).close()  # the child reads EOF and exits
        await done
        proc.close()
        return pipes, child

    pipes, child = run(loop, main())
    full = {"BaseTransport", "ReadTransport", "WriteTransport", "Transport"}
    read_only = {"BaseTransport", "ReadTransport"}
    assert pipes == {"write": full, "read": read_only}
    assert child == {
        "process": {"BaseTransport", "SubprocessTransport"},
        "stdin": full,
        "stdout": read_only,
    }


def test_read_pipe_reads_at_most_max_size(loop):
    """asyncio's read pipe transport reads `max_size` bytes at a time, a
    public attribute that programs and tests set on the transport."""

    class Chunks(asyncio.Protocol):
        def __init__(self) -> None:
            self.chunks: list[bytes] = []
            self.eof = loop.create_future()

        def data_received(self, data: bytes) -> None:
            self.chunks.append(data)

        def eof_received(self) -> None:
            self.eof.set_result(None)

    async def main() -> list[bytes]:
        r, w = os.pipe()
        transport, proto = await loop.connect_read_pipe(Chunks, os.fdopen(r, "rb"))
        assert transport.max_size == 256 * 1024
        transport.max_size = 4
        os.write(w, b"0123456789")
        os.close(w)
        await proto.eof
        transport.close()
        await asyncio.sleep(0)
        return proto.chunks

    assert run(loop, main()) == [b"0123", b"4567", b"89"]


def test_pipe_transport_reprs(loop):
    """What asyncio's pipe transports show (class names and fds left out):
    whether the loop watches the fd ("polling") or not ("idle"), the write
    buffer, closing and closed."""

    def shown(transport) -> str:
        words = repr(transport).strip("<>").split()[1:]
        return " ".join("fd" if word.startswith("fd=") else word for word in words)

    async def main() -> list[str]:
        seen = []
        r, w = os.pipe()
        rt, _ = await loop.connect_read_pipe(asyncio.Protocol, os.fdopen(r, "rb"))
        seen.append(shown(rt))
        rt.pause_reading()
        seen.append(shown(rt))
        wt, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, os.fdopen(w, "wb"))
        seen.append(shown(wt))
        wt.set_write_buffer_limits(high=1 << 30)
        chunk = b"x" * 65536
        while wt.get_write_buffer_size() == 0:  # until the pipe is full
            wt.write(chunk)
        seen.append(shown(wt).replace(f"bufsize={wt.get_write_buffer_size()}", "bufsize=N"))
        wt.abort()
        rt.close()
        seen.append(shown(rt))
        await asyncio.sleep(0)
        seen += [shown(rt), shown(wt)]
        return seen

    assert run(loop, main()) == [
        "fd polling",
        "fd idle",
        "fd idle bufsize=0",
        "fd polling bufsize=N",
        "closing fd idle",
        "closed fd closed",
        "closed fd closed",
    ]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"universal_newlines": True}, "universal_newlines must be False"),
        ({"bufsize": 1}, "bufsize must be 0"),
        ({"text": True}, "text must be False"),
        ({"encoding": "utf-8"}, "encoding must be None"),
        ({"shell": True}, "shell must be False"),
    ],
)
def test_exec_rejects_bad_arguments(loop, kwargs, message):
    with pytest.raises(ValueError, match=message):
        run(loop, loop.subprocess_exec(asyncio.SubprocessProtocol, sys.executable, **kwargs))


@pytest.mark.parametrize("failing", ["connect_read_pipe", "connect_write_pipe"])
def test_start_failing_while_connecting_pipes_kills_the_child(loop, loop_kind, request, failing):
    """When connecting the child's pipes fails (here: is cancelled), the
    start raises at once: the child is killed and waited for, and its pipes
    are closed.  (Stock asyncio waited for pipes that never connected, for
    ever, before 3.14 and 3.13.10, and left unconnected ones open before
    3.14.7.)"""
    if loop_kind == "asyncio" and not since((3, 13, 10), (3, 14, 0)):
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                raises=TimeoutError,
                reason="stock asyncio before 3.14 and 3.13.10 waits for the unconnected pipes "
                "to close (gh-103847)",
            )
        )
    started: list[subprocess.Popen] = []

    async def cancelled(*args, **kwargs):
        raise asyncio.CancelledError

    async def main():
        setattr(loop, failing, cancelled)
        real_popen = subprocess.Popen

        def popen(*args, **kwargs):
            started.append(real_popen(*args, **kwargs))
            return started[-1]

        subprocess.Popen = popen
        try:
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(
                    asyncio.create_subprocess_exec(
                        sys.executable,
                        "-c",
                        "import time; time.sleep(60)",
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                    ),
                    5.0,
                )
        finally:
            subprocess.Popen = real_popen

    try:
        run(loop, main())
    finally:
        for proc in started:
            proc.kill()
            proc.wait()
    [proc] = started
    assert proc.returncode == -signal.SIGKILL
    if loop_kind == "casyncio" or sys.version_info >= (3, 14, 7):
        # Stock closes the pipes it never connected from 3.14.7 on; casyncio
        # does on every version.
        assert proc.stdin.closed and proc.stdout.closed


@pytest.mark.skipif(
    not since((3, 13, 15), (3, 14, 7)),
    reason="before 3.14.7 and 3.13.15 (gh-119710), wait() also waits for the pipes to "
    "close, as stock does",
)
def test_wait_returns_at_exit_while_a_grandchild_holds_the_pipe(loop):
    grandchild = (
        "import subprocess, sys; subprocess.run([sys.executable, '-c', "
        "\"import sys; sys.stdout.write('ready'); sys.stdout.flush(); sys.stdin.read()\"])"
    )

    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", grandchild, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        waiting = asyncio.ensure_future(proc.wait())
        assert await proc.stdout.readexactly(5) == b"ready"
        proc.kill()
        code = await asyncio.wait_for(waiting, 10.0)
        proc.stdin.close()  # the grandchild exits at its stdin's end
        await proc.stdout.read()
        return code

    assert run(loop, main()) == -signal.SIGKILL


def test_without_pidfd_the_exit_is_reaped_and_published_together(loop, loop_kind, monkeypatch):
    """Where pidfd_open() is missing a thread waits for the child, without
    reaping it: until the loop publishes the exit, the pid is still the
    child's (a zombie), so a signal sent meanwhile cannot reach another
    process that took the pid over (CPython gh-127049)."""
    if loop_kind == "asyncio":
        pytest.skip("casyncio's own fallback; stock picks its child watcher by other means")

    def no_pidfd(pid, flags=0):
        raise OSError(38, "pidfd_open not here")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)

    def block_until_the_thread_is_done(pid: int) -> None:
        # Blocks the loop on purpose: the child exits and the waiting thread
        # ends, having only queued the publication of the exit.
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        for _ in range(500):
            if not [t for t in threading.enumerate() if t.name.endswith(f"-{pid}")]:
                return
            time.sleep(0.01)
        pytest.fail("the waiting thread did not end")

    def assert_not_reaped(pid: int) -> None:
        # waitid() raises ChildProcessError for a pid no longer our child's.
        assert os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None

    async def main():
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
        block_until_the_thread_is_done(proc.pid)
        assert proc.returncode is None
        assert_not_reaped(proc.pid)
        return await proc.wait()

    assert run(loop, main()) == 0
