"""Subprocesses for casyncio.Loop: subprocess_exec() and subprocess_shell().

A cold path, so Python: the process is started with subprocess.Popen, its
pipes become the loop's pipe transports (casyncio/_pipes.py), and its exit is
seen through a pidfd watched by the loop -- no SIGCHLD handler, no child
watcher, no thread -- with a waiting thread only where pidfd_open() is
missing.  The transport and the order of protocol calls (connection_made,
pipe data, process_exited, pipe_connection_lost, connection_lost) follow
asyncio's own subprocess transport.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import subprocess
import threading
import warnings
from typing import Any

from ._versions import since

logger = logging.getLogger("asyncio")

# From 3.14.7 and 3.13.15 on (CPython gh-119710, in 3.15 and backported),
# wait() returns once the process has exited, even while a pipe stays open (a
# grandchild holding it); before, it waited for the pipes to close too.
# (3.14.5 has the old behaviour; 3.14.6 was not checked.)
_WAIT_ENDS_AT_EXIT = since((3, 13, 15), (3, 14, 7))


def _returncode_of(status: int) -> int:
    return os.waitstatus_to_exitcode(status)


def watch_child(loop, proc: subprocess.Popen, callback) -> None:
    """Call callback(returncode) in the loop once proc has exited, reaping
    it."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        _watch_with_thread(loop, proc, callback)
        return

    def exited() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        callback(_reap(proc))

    loop.add_reader(pidfd, exited)


def _reap(proc: subprocess.Popen) -> int:
    try:
        _, status = os.waitpid(proc.pid, 0)
    except ChildProcessError:
        # Reaped already (proc.poll() by someone): Popen knows the code.
        if proc.returncode is not None:
            return proc.returncode
        logger.warning("Unknown child process pid %d, will report returncode 255", proc.pid)
        return 255
    return _returncode_of(status)


def _watch_with_thread(loop, proc: subprocess.Popen, callback) -> None:
    # The thread waits without reaping (WNOWAIT): the pid stays the child's
    # until the loop reaps it and publishes the exit in one step, so a
    # signal sent in between cannot reach a process that took the pid over
    # (as stock's threaded watcher from 3.14.7 and 3.15, gh-127049).
    def wait() -> None:
        try:
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass  # reaped by someone else: _reap() finds the code in proc
        try:
            loop.call_soon_threadsafe(lambda: callback(_reap(proc)))
        except RuntimeError:  # the loop is closed: reap it here
            _reap(proc)

    threading.Thread(target=wait, name=f"casyncio-waitpid-{proc.pid}", daemon=True).start()


class _PipeProtocol(asyncio.Protocol):
    """Connects one of the child's pipes to the subprocess transport."""

    def __init__(self, proc: SubprocessTransport, fd: int) -> None:
        self.proc: SubprocessTransport | None = proc
        self.fd = fd
        self.pipe = None
        self.disconnected = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} fd={self.fd} pipe={self.pipe!r}>"

    def connection_made(self, transport) -> None:
        self.pipe = transport

    def connection_lost(self, exc) -> None:
        self.disconnected = True
        if self.proc is not None:
            self.proc._pipe_connection_lost(self.fd, exc)
        self.proc = None

    def pause_writing(self) -> None:
        if self.proc is not None:
            self.proc._protocol.pause_writing()

    def resume_writing(self) -> None:
        if self.proc is not None:
            self.proc._protocol.resume_writing()

    def data_received(self, data) -> None:
        if self.proc is not None:
            self.proc._pipe_data_received(self.fd, data)


class SubprocessTransport(asyncio.SubprocessTransport):
    """A child process and its standard streams."""

    def __init__(
        self,
        loop,
        protocol,
        args,
        shell,
        stdin,
        stdout,
        stderr,
        bufsize,
        waiter=None,
        extra=None,
        **kwargs,
    ) -> None:
        super().__init__(extra)
        self._closed = False
        self._protocol = protocol
        self._loop = loop
        self._proc: subprocess.Popen | None = None
        self._pid: int | None = None
        self._returncode: int | None = None
        self._exit_waiters: set | None = set()
        # Calls made before the pipes are connected are replayed after.
        self._pending_calls: collections.deque | None = collections.deque()
        self._pipes: dict[int, _PipeProtocol | None] = {}
        self._pipes_connected = False
        self._finished = False
        for fd, spec in ((0, stdin), (1, stdout), (2, stderr)):
            if spec == subprocess.PIPE:
                self._pipes[fd] = None
        try:
            self._proc = subprocess.Popen(
                args,
                shell=shell,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                universal_newlines=False,
                bufsize=bufsize,
                **kwargs,
            )
        except BaseException:
            self.close()
            raise
        self._pid = self._proc.pid
        self._extra["subprocess"] = self._proc
        if loop.get_debug():
            program = args if isinstance(args, (bytes, str)) else args[0]
            logger.debug("process %r created: pid %s", program, self._pid)
        loop.create_task(self._connect_pipes(waiter))

    def __repr__(self) -> str:
        info = [type(self).__name__]
        if self._closed:
            info.append("closed")
        if self._pid is not None:
            info.append(f"pid={self._pid}")
        if self._returncode is not None:
            info.append(f"returncode={self._returncode}")
        elif self._pid is not None:
            info.append("running")
        else:
            info.append("not started")
        for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
            proto = self._pipes.get(fd)
            if proto is not None:
                info.append(f"{name}={proto.pipe}")
        return "<{}>".format(" ".join(info))

    def set_protocol(self, protocol) -> None:
        self._protocol = protocol

    def get_protocol(self):
        return self._protocol

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for proto in self._pipes.values():
            if proto is not None and proto.pipe is not None:
                proto.pipe.close()
        if self._proc is not None and self._returncode is None and self._proc.poll() is None:
            if self._loop is not None and self._loop.get_debug():
                logger.warning("Close running child process: kill %r", self)
            try:
                self._proc.kill()
            except ProcessLookupError:
                pass

    def __del__(self, _warn=warnings.warn) -> None:
        if not self._closed:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self.close()

    def get_pid(self):
        return self._pid

    def get_returncode(self):
        return self._returncode

    def get_pipe_transport(self, fd):
        proto = self._pipes.get(fd)
        return proto.pipe if proto is not None else None

    def _check_proc(self) -> subprocess.Popen:
        if self._proc is None:
            raise ProcessLookupError()
        return self._proc

    def send_signal(self, signal) -> None:
        self._check_proc().send_signal(signal)

    def terminate(self) -> None:
        self._check_proc().terminate()

    def kill(self) -> None:
        self._check_proc().kill()

    async def _connect_pipes(self, waiter) -> None:
        try:
            proc, loop = self._proc, self._loop
            if proc.stdin is not None:
                _, self._pipes[0] = await loop.connect_write_pipe(
                    lambda: _PipeProtocol(self, 0), proc.stdin
                )
            if proc.stdout is not None:
                _, self._pipes[1] = await loop.connect_read_pipe(
                    lambda: _PipeProtocol(self, 1), proc.stdout
                )
            if proc.stderr is not None:
                _, self._pipes[2] = await loop.connect_read_pipe(
                    lambda: _PipeProtocol(self, 2), proc.stderr
                )
            loop.call_soon(self._protocol.connection_made, self)
            for callback, data in self._pending_calls:
                loop.call_soon(callback, *data)
            self._pending_calls = None
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            # The pipes connected before the failure (or cancellation) and
            # the raw ones are closed: nothing else would (as 3.14.7 and 3.15).
            for proto in self._pipes.values():
                if proto is not None:
                    proto.pipe.close()
            for raw in (proc.stdin, proc.stdout, proc.stderr):
                if raw is not None:
                    raw.close()
            if waiter is not None and not waiter.cancelled():
                waiter.set_exception(exc)
        else:
            self._pipes_connected = True
            if waiter is not None and not waiter.cancelled():
                waiter.set_result(None)

    def _call(self, cb, *data) -> None:
        if self._pending_calls is not None:
            self._pending_calls.append((cb, data))
        else:
            self._loop.call_soon(cb, *data)

    def _pipe_connection_lost(self, fd, exc) -> None:
        self._call(self._protocol.pipe_connection_lost, fd, exc)
        self._try_finish()

    def _pipe_data_received(self, fd, data) -> None:
        self._call(self._protocol.pipe_data_received, fd, data)

    def _process_exited(self, returncode: int) -> None:
        if self._loop is not None and self._loop.get_debug():
            logger.info("%r exited with return code %r", self, returncode)
        self._returncode = returncode
        if self._proc.returncode is None:
            self._proc.returncode = returncode
        self._call(self._protocol.process_exited)
        if _WAIT_ENDS_AT_EXIT or not self._pipes_connected:
            # Pipes that never got connected (a failed or cancelled start)
            # will never close: wait() cannot wait for them (as 3.14).
            self._wake_exit_waiters()
        self._try_finish()

    async def _wait(self):
        """Wait for the process to exit; return its return code."""
        if self._returncode is not None:
            return self._returncode
        waiter = self._loop.create_future()
        self._exit_waiters.add(waiter)
        try:
            return await waiter
        finally:
            if self._exit_waiters is not None:
                self._exit_waiters.discard(waiter)

    def _wake_exit_waiters(self) -> None:
        if self._exit_waiters is None:
            return
        for waiter in self._exit_waiters:
            if not waiter.done():
                waiter.set_result(self._returncode)
        self._exit_waiters = None

    def _try_finish(self) -> None:
        if self._returncode is None or self._finished:
            return
        if all(p is not None and p.disconnected for p in self._pipes.values()):
            self._finished = True
            self._call(self._call_connection_lost, None)

    def _call_connection_lost(self, exc) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            # Before 3.14.7, wait() returns once the pipes are closed too.
            self._wake_exit_waiters()
            self._loop = None
            self._proc = None
            self._protocol = None


def _check_subprocess_args(universal_newlines, bufsize, encoding, errors, text) -> None:
    if universal_newlines:
        raise ValueError("universal_newlines must be False")
    if bufsize != 0:
        raise ValueError("bufsize must be 0")
    if text:
        raise ValueError("text must be False")
    if encoding is not None:
        raise ValueError("encoding must be None")
    if errors is not None:
        raise ValueError("errors must be None")


class SubprocessMixin:
    """subprocess_exec() and subprocess_shell() for casyncio.Loop."""

    async def subprocess_shell(
        self,
        protocol_factory,
        cmd,
        *,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=False,
        shell=True,
        bufsize=0,
        encoding=None,
        errors=None,
        text=None,
        **kwargs,
    ):
        """Run cmd in the shell; return (transport, protocol)."""
        if not isinstance(cmd, (bytes, str)):
            raise ValueError("cmd must be a string")  # noqa: TRY004 - asyncio raises ValueError
        if universal_newlines:
            raise ValueError("universal_newlines must be False")
        if not shell:
            raise ValueError("shell must be True")
        _check_subprocess_args(False, bufsize, encoding, errors, text)
        protocol = protocol_factory()
        transport = await self._make_subprocess_transport(
            protocol, cmd, True, stdin, stdout, stderr, bufsize, **kwargs
        )
        if self._debug:
            logger.info("run shell command %r: %r", cmd, transport)
        return transport, protocol

    async def subprocess_exec(
        self,
        protocol_factory,
        program,
        *args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=False,
        shell=False,
        bufsize=0,
        encoding=None,
        errors=None,
        text=None,
        **kwargs,
    ):
        """Run program with args; return (transport, protocol)."""
        if universal_newlines:
            raise ValueError("universal_newlines must be False")
        if shell:
            raise ValueError("shell must be False")
        _check_subprocess_args(False, bufsize, encoding, errors, text)
        protocol = protocol_factory()
        transport = await self._make_subprocess_transport(
            protocol, (program, *args), False, stdin, stdout, stderr, bufsize, **kwargs
        )
        if self._debug:
            logger.info("execute program %r: %r", program, transport)
        return transport, protocol

    async def _make_subprocess_transport(
        self, protocol, args, shell, stdin, stdout, stderr, bufsize, extra=None, **kwargs
    ) -> Any:
        waiter = self.create_future()
        transport = SubprocessTransport(
            self,
            protocol,
            args,
            shell,
            stdin,
            stdout,
            stderr,
            bufsize,
            waiter=waiter,
            extra=extra,
            **kwargs,
        )
        watch_child(self, transport._proc, transport._process_exited)
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transport.close()
            await transport._wait()
            raise
        return transport
