"""Corked writes: a stream transport's write() of bytes made by a callback
is held until the callback returns, and sent then together with the rest
of what the callback wrote (one system call for uvicorn's headers and
body).  asyncio sends at write().  These tests hold on both loops, except
the ones that count casyncio's system calls: the data arrives whole and in
order, it is in the kernel before the next callback runs, and nothing the
transport reports (buffer size, flow control, close, abort, write_eof) can
tell that the system call came later."""

from __future__ import annotations

import asyncio
import contextvars
import socket
import sys
from collections.abc import Callable
from typing import Any

import pytest
from net_helpers import Recorder, kernel_has_data, run, tcp_connection

from casyncio import _casyncio


def stream_sends() -> int:
    return _casyncio._stats()["stream_sends"]


async def in_one_callback(loop: asyncio.AbstractEventLoop, fn: Callable[[], Any]) -> Any:
    """Run fn in a callback of its own (not a task step) and return what it
    returned, once it has returned."""
    done = loop.create_future()
    loop.call_soon(lambda: done.set_result(fn()))
    return await done


def test_writes_of_one_callback_arrive_whole_and_in_order(loop):
    async def main() -> None:
        async with tcp_connection(loop) as c:
            t = c.client_t

            def writes() -> None:
                t.write(b"a")
                t.write(bytearray(b"b"))
                t.writelines([b"c", memoryview(b"d")])
                t.write(b"e")
                t.write(memoryview(b"xfx")[1:2])
                t.write(b"")

            await in_one_callback(loop, writes)
            # And in a task step: the same.
            t.write(b"g")
            t.write(b"h")
            assert await c.server_p.wait_bytes(8) == b"abcdefgh"

    run(loop, main())


def test_a_callbacks_writes_are_in_the_kernel_when_the_next_callback_runs(loop):
    async def main() -> None:
        async with tcp_connection(loop) as c:
            peer = c.server_t.get_extra_info("socket")
            c.server_t.pause_reading()
            seen = loop.create_future()
            loop.call_soon(c.client_t.write, b"ping")
            loop.call_soon(lambda: seen.set_result(kernel_has_data(peer, timeout=5)))
            assert await seen
            c.server_t.resume_reading()
            assert await c.server_p.wait_bytes(4) == b"ping"

    run(loop, main())


@pytest.mark.parametrize("loop_kind", ["casyncio"], indirect=True)
def test_two_writes_of_one_callback_make_one_send(loop):
    async def main() -> None:
        async with tcp_connection(loop) as c:
            t = c.client_t
            before = stream_sends()
            await in_one_callback(loop, lambda: (t.write(b"head"), t.write(b"body")))
            assert stream_sends() - before == 1
            assert await c.server_p.wait_bytes(8) == b"headbody"

    run(loop, main())


@pytest.mark.parametrize("loop_kind", ["casyncio"], indirect=True)
def test_writes_outside_a_running_loop_are_sent_at_once(loop):
    """No callback is running: nothing would send corked data later."""
    a, b = socket.socketpair()
    with a, b:
        b.settimeout(5)
        t, p = loop.run_until_complete(loop.create_connection(lambda: Recorder(loop), sock=a))
        before = stream_sends()
        t.write(b"one")
        t.write(b"two")
        assert stream_sends() - before == 2
        assert b.recv(6, socket.MSG_WAITALL) == b"onetwo"
        t.close()
        loop.run_until_complete(p.lost)


def test_a_socket_with_its_own_send_is_called_per_write(loop):
    """A socket class with its own send() sees the calls asyncio makes."""
    calls: list[bytes] = []

    class CountingSocket(socket.socket):
        def send(self, data, *args):  # type: ignore[override]
            calls.append(bytes(data))
            return super().send(data, *args)

    a_plain, b = socket.socketpair()
    a = CountingSocket(fileno=a_plain.detach())
    with a, b:
        b.settimeout(5)

        async def main() -> None:
            t, p = await loop.create_connection(lambda: Recorder(loop), sock=a)
            await in_one_callback(loop, lambda: (t.write(b"one"), t.write(b"two")))
            assert b.recv(6, socket.MSG_WAITALL) == b"onetwo"
            t.close()
            await p.lost

        run(loop, main())
    assert calls == [b"one", b"two"]


def test_write_buffer_size_after_a_write_the_kernel_took_is_zero(loop):
    async def main() -> None:
        async with tcp_connection(loop) as c:
            t = c.client_t
            size = await in_one_callback(
                loop, lambda: (t.write(b"x" * 1000), t.get_write_buffer_size())[1]
            )
            assert size == 0
            assert await c.server_p.wait_bytes(1000) == b"x" * 1000

    run(loop, main())


@pytest.mark.parametrize("end", ["close", "abort", "write_eof"])
def test_data_written_before_the_end_in_one_callback_arrives_first(loop, end):
    """write(); close() (or abort(), or write_eof()) in one callback: the
    peer gets the data, then the end of the stream; abort() too, since the
    kernel had taken the data at write()."""

    async def main() -> None:
        async with tcp_connection(loop) as c:
            t = c.client_t
            await in_one_callback(loop, lambda: (t.write(b"last"), getattr(t, end)()))
            await c.server_p.eof
            assert bytes(c.server_p.data) == b"last"
            if end != "write_eof":
                assert await c.client_p.lost is None
                assert c.client_p.events == ["made", "lost"]

    run(loop, main())


def test_lowering_the_high_water_mark_after_a_write_does_not_pause(loop):
    """asyncio had sent the data at write(): with nothing buffered, a high
    water mark of 0 pauses nothing."""

    async def main() -> None:
        async with tcp_connection(loop) as c:
            t = c.client_t
            await in_one_callback(
                loop, lambda: (t.write(b"x" * 100), t.set_write_buffer_limits(high=0))
            )
            assert c.client_p.pauses == 0
            assert await c.server_p.wait_bytes(100) == b"x" * 100

    run(loop, main())


def test_many_small_writes_in_one_callback_pass_the_high_water_mark_unpaused(loop):
    """The kernel takes 16 KiB at once: asyncio never pauses the protocol,
    and corking (held up to the mark, then sent) must not either."""

    async def main() -> None:
        async with tcp_connection(loop) as c:
            t = c.client_t
            t.set_write_buffer_limits(high=2048)
            chunks = [bytes([65 + i % 26]) * 512 for i in range(32)]

            def writes() -> int:
                for chunk in chunks:
                    t.write(chunk)
                return t.get_write_buffer_size()

            assert await in_one_callback(loop, writes) == 0
            assert c.client_p.pauses == 0
            assert await c.server_p.wait_bytes(16384) == b"".join(chunks)

    run(loop, main())


@pytest.mark.loop_errors
def test_a_callback_that_raises_after_writing_still_sends(loop):
    async def main() -> None:
        async with tcp_connection(loop) as c:
            t = c.client_t

            def write_then_fail() -> None:
                t.write(b"sent")
                raise ZeroDivisionError

            loop.call_soon(write_then_fail)
            assert await c.server_p.wait_bytes(4) == b"sent"

    run(loop, main())
    [ctx] = loop.handler_calls
    assert isinstance(ctx["exception"], ZeroDivisionError)


def test_a_write_to_a_closed_peer_ends_the_connection_with_the_send_error(loop):
    """The peer is gone: the send fails and connection_lost() gets its
    error, whether the send came at write() or after the callback."""
    a, b = socket.socketpair()
    with a:

        async def main() -> None:
            t, p = await loop.create_connection(lambda: Recorder(loop), sock=a)
            b.close()
            await in_one_callback(loop, lambda: t.write(b"x"))
            assert isinstance(await p.lost, BrokenPipeError)
            assert t.is_closing()

        run(loop, main())


@pytest.mark.parametrize("writer", ["callback", "task"])
def test_a_failed_sends_connection_lost_sees_the_writers_context(loop, writer):
    """A send that fails schedules connection_lost() in a copy of the
    current context: asyncio's is the writer's, at write(), and a corked
    send is made back in that context.  From 3.15 a transport runs its
    protocol's callbacks in its own context instead."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="loop")
    seen: list[str] = []

    class Seeing(Recorder):
        def connection_lost(self, exc: Exception | None) -> None:
            seen.append(var.get())
            super().connection_lost(exc)

    def write(t: asyncio.Transport) -> None:
        var.set("writer")
        t.write(b"x")

    async def write_in_task(t: asyncio.Transport) -> None:
        write(t)

    a, b = socket.socketpair()
    with a:

        async def main() -> None:
            t, p = await loop.create_connection(lambda: Seeing(loop), sock=a)
            b.close()
            if writer == "task":
                await loop.create_task(write_in_task(t), context=contextvars.copy_context())
            else:
                loop.call_soon(write, t, context=contextvars.copy_context())
            assert isinstance(await p.lost, BrokenPipeError)

        run(loop, main())
    assert seen == (["loop"] if sys.version_info >= (3, 15) else ["writer"])


def test_a_failed_send_from_data_received_sees_its_context(loop):
    """The same for a write from data_received(), which runs in the context
    the transport's read events run in: connection_lost() sees what
    data_received() set there, on both loops and every Python."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="loop")
    seen: list[str] = []

    class WritesBack(Recorder):
        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            var.set("reader")
            self.transport.write(b"x")

        def connection_lost(self, exc: Exception | None) -> None:
            seen.append(var.get())
            super().connection_lost(exc)

    a, b = socket.socketpair()
    with a, b:

        async def main() -> None:
            _, p = await loop.create_connection(lambda: WritesBack(loop), sock=a)
            b.send(b"ping")
            b.shutdown(socket.SHUT_RD)  # a's sends fail with EPIPE; no EOF
            assert isinstance(await p.lost, BrokenPipeError)

        run(loop, main())
    assert seen == ["reader"]
