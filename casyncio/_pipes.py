"""Pipe transports for casyncio.Loop: connect_read_pipe(), connect_write_pipe().

Pipes are a cold path (a subprocess's stdio, a FIFO), so these transports
are Python over the loop's add_reader()/add_writer(); the socket transports
are the C ones.  Semantics follow asyncio's Unix pipe transports: a read pipe
ends with eof_received() then connection_lost(); a write pipe watches its fd
for reading too, which is how a closed reader end shows up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import selectors
import stat
import sys
import warnings

logger = logging.getLogger("asyncio")

_CONNLOST_WARN_AFTER = 5  # asyncio.constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES


def _set_result_unless_cancelled(fut, result) -> None:
    if not fut.cancelled():
        fut.set_result(result)


def _check_pipe_mode(fileno: int) -> tuple[bool, bool, bool]:
    mode = os.fstat(fileno).st_mode
    return stat.S_ISCHR(mode), stat.S_ISFIFO(mode), stat.S_ISSOCK(mode)


class _PipeTransportBase:
    """What both pipe transports share: their state, the close path and reporting."""

    def __init__(self, loop, pipe, protocol, extra) -> None:
        super().__init__(extra)
        self._extra["pipe"] = pipe
        self._loop = loop
        self._pipe = pipe
        self._fileno = pipe.fileno()
        self._protocol = protocol
        self._closing = False  # close() (or, for a writer, write_eof()) was called

    def set_protocol(self, protocol) -> None:
        self._protocol = protocol

    def get_protocol(self):
        return self._protocol

    def is_closing(self) -> bool:
        return self._closing

    def __del__(self, _warn=warnings.warn) -> None:
        if getattr(self, "_pipe", None) is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._pipe.close()

    def _fatal_error(self, exc, message="Fatal error on pipe transport") -> None:
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=exc)
        else:
            self._loop.call_exception_handler(
                {
                    "message": message,
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )
        self._close(exc)

    def _close(self, exc=None) -> None:
        raise NotImplementedError

    def _call_connection_lost(self, exc) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._pipe.close()
            self._pipe = None
            self._protocol = None
            self._loop = None

    def _describe(self, event: int, *more: str) -> str:
        """What asyncio's pipe transports show: open or closed, whether the
        loop watches the fd for `event` ("polling") or not ("idle")."""
        info = [type(self).__name__]
        if self._pipe is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._fileno}")
        selector = getattr(self._loop, "_selector", None)
        if self._pipe is None:
            info.append("closed")
        elif selector is None:  # the loop is closed
            info.append("open")
        else:
            try:
                watched = selector.get_key(self._fileno).events & event
            except (KeyError, ValueError):
                watched = 0
            info += ["polling" if watched else "idle", *more]
        return "<{}>".format(" ".join(info))


class ReadPipeTransport(_PipeTransportBase, asyncio.ReadTransport):
    """The read end of a pipe, FIFO, socket or character device."""

    max_size = 256 * 1024  # bytes per read; public in asyncio's read pipe transport too

    def __init__(self, loop, pipe, protocol, waiter=None, extra=None) -> None:
        super().__init__(loop, pipe, protocol, extra)
        self._paused = False
        is_char, is_fifo, is_socket = _check_pipe_mode(self._fileno)
        if not (is_char or is_fifo or is_socket):
            self._pipe = None
            raise ValueError("Pipe transport is for pipes/sockets only.")
        os.set_blocking(self._fileno, False)
        loop.call_soon(protocol.connection_made, self)
        # Reading starts after connection_made(), as for sockets.
        loop.call_soon(self._start_reading)
        if waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, waiter, None)

    def __repr__(self) -> str:
        return self._describe(selectors.EVENT_READ)

    def _start_reading(self) -> None:
        if not self._closing and not self._paused:
            self._loop.add_reader(self._fileno, self._read_ready)

    def _read_ready(self) -> None:
        try:
            data = os.read(self._fileno, self.max_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal_error(exc, "Fatal read error on pipe transport")
            return
        if data:
            self._protocol.data_received(data)
            return
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        self._closing = True
        self._loop.remove_reader(self._fileno)
        self._loop.call_soon(self._protocol.eof_received)
        self._loop.call_soon(self._call_connection_lost, None)

    def pause_reading(self) -> None:
        if self._closing or self._paused:
            return
        self._paused = True
        self._loop.remove_reader(self._fileno)
        if self._loop.get_debug():
            logger.debug("%r pauses reading", self)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._loop.add_reader(self._fileno, self._read_ready)
        if self._loop.get_debug():
            logger.debug("%r resumes reading", self)

    def is_reading(self) -> bool:
        return not self._paused and not self._closing

    def close(self) -> None:
        if not self._closing:
            self._close(None)

    def _close(self, exc=None) -> None:
        self._closing = True
        self._loop.remove_reader(self._fileno)
        self._loop.call_soon(self._call_connection_lost, exc)


class WritePipeTransport(_PipeTransportBase, asyncio.Transport):
    """The write end of a pipe, FIFO, socket or character device.

    A full asyncio.Transport, not only a WriteTransport, because stock
    asyncio's write-pipe transport is one (through its flow-control mixin):
    isinstance() checks agree, and pause_reading()/resume_reading()/
    is_reading() are asyncio.ReadTransport's, which raise NotImplementedError.
    """

    def __init__(self, loop, pipe, protocol, waiter=None, extra=None) -> None:
        super().__init__(loop, pipe, protocol, extra)
        self._buffer = bytearray()
        self._conn_lost = 0
        self._protocol_paused = False
        self._high_water = 64 * 1024
        self._low_water = self._high_water // 4
        is_char, is_fifo, is_socket = _check_pipe_mode(self._fileno)
        if not (is_char or is_fifo or is_socket):
            self._pipe = None
            raise ValueError("Pipe transport is only for pipes, sockets and character devices")
        os.set_blocking(self._fileno, False)
        loop.call_soon(protocol.connection_made, self)
        if is_socket or (is_fifo and not sys.platform.startswith("aix")):
            # The write end turns "readable" when the reader goes away.
            loop.call_soon(self._watch_peer)
        if waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, waiter, None)

    def __repr__(self) -> str:
        return self._describe(selectors.EVENT_WRITE, f"bufsize={self.get_write_buffer_size()}")

    def _watch_peer(self) -> None:
        if self._pipe is not None and not self._closing:
            self._loop.add_reader(self._fileno, self._read_ready)

    def _read_ready(self) -> None:
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        self._close(BrokenPipeError() if self._buffer else None)

    # -- flow control (as asyncio's transports) --

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low_water, self._high_water)

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high_water, self._low_water = high, low
        self._maybe_pause_protocol()

    def _maybe_pause_protocol(self) -> None:
        if len(self._buffer) > self._high_water and not self._protocol_paused:
            self._protocol_paused = True
            self._tell_protocol("pause_writing")

    def _maybe_resume_protocol(self) -> None:
        if self._protocol_paused and len(self._buffer) <= self._low_water:
            self._protocol_paused = False
            self._tell_protocol("resume_writing")

    def _tell_protocol(self, method: str) -> None:
        """Call protocol.<method>(); a failure goes to the exception handler."""
        try:
            getattr(self._protocol, method)()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler(
                {
                    "message": f"protocol.{method}() failed",
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )

    # -- writing --

    def write(self, data) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}"
            )
        if isinstance(data, bytearray):
            data = memoryview(data)
        if not data:
            return
        if self._conn_lost or self._closing:
            if self._conn_lost >= _CONNLOST_WARN_AFTER:
                logger.warning("pipe closed by peer or os.write(pipe, data) raised exception.")
            self._conn_lost += 1
            return
        if not self._buffer:
            try:
                n = os.write(self._fileno, data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._conn_lost += 1
                self._fatal_error(exc, "Fatal write error on pipe transport")
                return
            if n == len(data):
                return
            data = memoryview(data)[n:]
            self._loop.add_writer(self._fileno, self._write_ready)
        self._buffer += data
        self._maybe_pause_protocol()

    def _write_ready(self) -> None:
        try:
            n = os.write(self._fileno, self._buffer)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._buffer.clear()
            self._conn_lost += 1
            self._loop.remove_writer(self._fileno)
            self._fatal_error(exc, "Fatal write error on pipe transport")
            return
        del self._buffer[:n]
        if self._buffer:
            return
        self._loop.remove_writer(self._fileno)
        self._maybe_resume_protocol()  # may write more
        if self._closing and not self._buffer:
            self._loop.remove_reader(self._fileno)
            self._call_connection_lost(None)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._closing:
            return
        self._closing = True
        if not self._buffer:
            self._loop.remove_reader(self._fileno)
            self._loop.call_soon(self._call_connection_lost, None)

    def close(self) -> None:
        if self._pipe is not None and not self._closing:
            self.write_eof()

    def abort(self) -> None:
        self._close(None)

    def _close(self, exc=None) -> None:
        self._closing = True
        if self._buffer:
            self._loop.remove_writer(self._fileno)
        self._buffer.clear()
        self._loop.remove_reader(self._fileno)
        self._loop.call_soon(self._call_connection_lost, exc)


class PipesMixin:
    """connect_read_pipe() and connect_write_pipe() for casyncio.Loop."""

    async def connect_read_pipe(self, protocol_factory, pipe):
        """Wrap the read end of a pipe (a file object) in a transport."""
        return await self._connect_pipe(ReadPipeTransport, "Read", protocol_factory, pipe)

    async def connect_write_pipe(self, protocol_factory, pipe):
        """Wrap the write end of a pipe (a file object) in a transport."""
        return await self._connect_pipe(WritePipeTransport, "Write", protocol_factory, pipe)

    async def _connect_pipe(self, transport_class, kind, protocol_factory, pipe):
        protocol = protocol_factory()
        waiter = self.create_future()
        transport = transport_class(self, pipe, protocol, waiter)
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        if self._debug:
            logger.debug("%s pipe %r connected: (%r, %r)", kind, pipe.fileno(), transport, protocol)
        return transport, protocol
