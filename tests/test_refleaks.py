"""Reference leaks, counted by a debug CPython's sys.gettotalrefcount().

Each scenario runs the same calls over and over on one casyncio loop: the
happy paths and the ones that raise, get cancelled or fail on the peer.
Once the interpreter's caches are warm, the total reference count must stop
growing.  A reference leaked per call grows it by at least one per
iteration in every round; caches grow less and less and then stop (the
type attribute cache, which keeps each name it was last looked up by, is
emptied before each count).  So a scenario leaks when every round grows
the count by half a reference per iteration or more.

A release build has no such count: CI runs this file on a CPython built
``--with-pydebug`` (``.ci/run``), which also checks the C API's use with
its own assertions while the whole suite runs.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable

import pytest
from net_helpers import HOST, Collector, echo_stream, tls_contexts

import casyncio

# Deselected where sys.gettotalrefcount() is missing (tests/conftest.py).
pytestmark = pytest.mark.refleak

WARM = 100
ROUNDS = 5
PER_ROUND = 60

Scenario = Callable[[asyncio.AbstractEventLoop], Awaitable[None]]


def growth_per_round(scenario: Scenario, *, clear_type_cache: bool = True) -> list[int]:
    loop = casyncio.new_event_loop()
    # A context reported to the handler is dropped at once; it must not
    # leak either.
    loop.set_exception_handler(lambda lp, ctx: None)
    counts = [0] * (ROUNDS + 1)
    try:
        for _ in range(WARM):
            loop.run_until_complete(scenario(loop))
        for r in range(ROUNDS + 1):
            if r:
                for _ in range(PER_ROUND):
                    loop.run_until_complete(scenario(loop))
            # The type attribute cache keeps a reference to each name it
            # was last looked up by, up to 4096 of them: empty it, so that
            # the count is of what the calls themselves kept.
            if clear_type_cache or r == 0:
                sys._clear_type_cache()
            gc.collect()
            counts[r] = sys.gettotalrefcount()
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
    return [counts[r + 1] - counts[r] for r in range(ROUNDS)]


def assert_no_leak(scenario: Scenario) -> None:
    growth = growth_per_round(scenario)
    assert min(growth) < PER_ROUND // 2, f"references grew by {growth} per {PER_ROUND} runs"


# ---- scenarios -------------------------------------------------------------------------

VAR: contextvars.ContextVar[int] = contextvars.ContextVar("VAR")


def fail() -> None:
    raise ZeroDivisionError


async def scheduling(loop: asyncio.AbstractEventLoop) -> None:
    done = loop.create_future()
    loop.call_soon(print, "never").cancel()
    loop.call_later(10, print).cancel()
    loop.call_at(loop.time() + 10, print).cancel()
    loop.call_soon(fail)  # to the exception handler
    loop.call_soon(VAR.set, 1, context=contextvars.copy_context())
    loop.call_soon_threadsafe(done.set_result, None)
    loop.call_later(0, lambda: None)
    await done


async def futures_and_tasks(loop: asyncio.AbstractEventLoop) -> None:
    fut = loop.create_future()
    fut.add_done_callback(lambda f: None)
    fut.remove_done_callback(print)
    fut.set_exception(ValueError("x"))
    with pytest.raises(ValueError):
        await fut
    cancelled = loop.create_future()
    cancelled.cancel("why")
    with pytest.raises(asyncio.CancelledError):
        await cancelled

    async def child(i: int) -> int:
        VAR.set(i)
        await asyncio.sleep(0)
        if i == 2:
            raise KeyError(i)
        return i

    await asyncio.gather(*(child(i) for i in range(4)), return_exceptions=True)
    task = loop.create_task(asyncio.sleep(10), name="sleeper")
    await asyncio.sleep(0)
    task.cancel("stop")
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.sleep(10), 0.0001)
    async with asyncio.TaskGroup() as group:
        group.create_task(child(0))
        group.create_task(child(1))
    with pytest.raises(ExceptionGroup):
        async with asyncio.TaskGroup() as group:
            group.create_task(child(2))
            group.create_task(asyncio.sleep(10))
    await asyncio.shield(child(3))


async def bad_arguments(loop: asyncio.AbstractEventLoop) -> None:
    coro = asyncio.sleep(0)
    with pytest.raises(TypeError):
        loop.call_soon(print, context=1)
    with pytest.raises(TypeError):
        loop.call_at("soon", print)
    with pytest.raises(TypeError):
        loop.create_task(1)
    with pytest.raises(TypeError):
        casyncio.Task(coro, loop=loop, context=1)
    coro.close()
    fut = loop.create_future()
    fut.set_result(1)
    with pytest.raises(asyncio.InvalidStateError):
        fut.set_result(2)
    with pytest.raises(AttributeError):
        await loop.sock_recv(None, 1)
    with pytest.raises(ValueError):
        loop.add_signal_handler(0, print)
    with pytest.raises(TypeError):
        await loop.run_in_executor(None, 1)


async def sockets(loop: asyncio.AbstractEventLoop) -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        b.setblocking(False)
        await loop.sock_sendall(a, b"hello")
        assert await loop.sock_recv(b, 10) == b"hello"
        await loop.sock_sendall(a, b"again")
        buf = bytearray(10)
        assert await loop.sock_recv_into(b, buf) == 5
        waiting = loop.create_task(loop.sock_recv(b, 10))
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen()
        listener.setblocking(False)
        with socket.socket() as client:
            client.setblocking(False)
            connect = loop.create_task(loop.sock_connect(client, listener.getsockname()))
            conn, _ = await loop.sock_accept(listener)
            await connect
            conn.close()
    with socket.socket() as refused:
        refused.setblocking(False)
        with pytest.raises(OSError):
            await loop.sock_connect(refused, (HOST, 1))


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> None:
        self.transport.close()


async def tcp(loop: asyncio.AbstractEventLoop) -> None:
    server = await loop.create_server(Echo, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        transport, proto = await loop.create_connection(lambda: Collector(loop, 9000), HOST, port)
        transport.set_write_buffer_limits(high=1024)
        transport.write(b"x" * 5000)
        transport.writelines([b"y" * 2000, memoryview(b"z" * 2000)])
        transport.pause_reading()
        transport.resume_reading()
        await proto.done
        with pytest.raises(TypeError):
            transport.write("text")
        transport.write_eof()
        await proto.lost
        transport.close()
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"line\n" * 100)
        await writer.drain()
        assert await reader.readline() == b"line\n"
        writer.transport.abort()
        await writer.wait_closed()
        with pytest.raises(OSError):
            await asyncio.open_connection(HOST, 1)


async def tls(loop: asyncio.AbstractEventLoop) -> None:
    # The per-record steps of casyncio's TLS protocol are C (csrc/tls.c),
    # their flow control and error paths included.
    server_ctx, client_ctx = tls_contexts()
    server = await asyncio.start_server(echo_stream, HOST, 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await asyncio.open_connection(HOST, port, ssl=client_ctx)
        writer.write(b"x" * 5000)
        writer.writelines([b"y" * 20000, memoryview(b"z" * 2000)])
        await writer.drain()
        assert len(await reader.readexactly(27000)) == 27000
        with pytest.raises(TypeError):
            writer.write("text")
        writer.transport.set_write_buffer_limits(high=1024)
        writer.write(b"w" * 50000)
        await writer.drain()
        assert len(await reader.readexactly(50000)) == 50000
        # As in asyncio, the 5 joins the backlog before len() refuses it,
        # and the next write fails on it: the connection's fatal error.
        with pytest.raises(TypeError):
            writer.writelines([b"ok", 5])
        writer.write(b"!")
        writer.close()
        with pytest.raises(TypeError):
            await writer.wait_closed()
        # A BufferedProtocol app: records decrypted into its small buffer,
        # and a get_buffer() that fails (the connection's fatal error).
        for fail in (False, True):
            transport, app = await loop.create_connection(
                functools.partial(BufferedTLSApp, loop, fail), HOST, port, ssl=client_ctx
            )
            transport.write(b"b" * 3000)
            await app.done
            transport.close()
            await app.lost


class BufferedTLSApp(asyncio.BufferedProtocol):
    def __init__(self, loop: asyncio.AbstractEventLoop, fail: bool) -> None:
        self.buf, self.got, self.fail = bytearray(1000), 0, fail
        self.done, self.lost = loop.create_future(), loop.create_future()

    def get_buffer(self, sizehint: int) -> bytearray:
        if self.fail and not self.done.done():
            self.done.set_result(None)
            raise ValueError("no buffer")
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        self.got += nbytes
        if self.got == 3000:
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(None)


async def unix(loop: asyncio.AbstractEventLoop) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "s")
        server = await asyncio.start_unix_server(lambda r, w: w.close(), path)
        async with server:
            reader, writer = await asyncio.open_unix_connection(path)
            assert await reader.read() == b""
            writer.close()
            await writer.wait_closed()


async def udp(loop: asyncio.AbstractEventLoop) -> None:
    got = loop.create_future()

    class Receive(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            if not got.done():
                got.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Receive, local_addr=(HOST, 0))
    try:
        transport.sendto(b"ping", transport.get_extra_info("sockname"))
        assert await got == b"ping"
        # A bad address: the error goes to the exception handler, as stock's.
        transport.sendto(b"x", (HOST,))
    finally:
        transport.close()
    connected, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=(HOST, 9)
    )
    connected.sendto(b"x")
    await asyncio.sleep(0)
    connected.abort()


async def pipes_and_processes(loop: asyncio.AbstractEventLoop) -> None:
    rfd, wfd = os.pipe()
    rt, _ = await loop.connect_read_pipe(asyncio.Protocol, os.fdopen(rfd, "rb", 0))
    wt, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(wfd, "wb", 0))
    wt.write(b"abc")
    wt.close()
    rt.close()
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", "cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate(b"data")
    assert out == b"data" and proc.returncode == 0
    with pytest.raises(FileNotFoundError):
        await asyncio.create_subprocess_exec("/nonexistent/program")


async def executor_and_signals(loop: asyncio.AbstractEventLoop) -> None:
    assert await loop.run_in_executor(None, sum, [1, 2]) == 3
    with pytest.raises(ZeroDivisionError):
        await loop.run_in_executor(None, fail)
    seen = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, seen.set_result, "usr1")
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert await seen == "usr1"
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)


SCENARIOS: dict[str, Scenario] = {
    "scheduling": scheduling,
    "futures-and-tasks": futures_and_tasks,
    "bad-arguments": bad_arguments,
    "sockets": sockets,
    "tcp": tcp,
    "tls": tls,
    "unix": unix,
    "udp": udp,
    "pipes-and-processes": pipes_and_processes,
    "executor-and-signals": executor_and_signals,
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_no_reference_leak(name: str) -> None:
    assert_no_leak(SCENARIOS[name])


@pytest.mark.parametrize("name", [name for name in SCENARIOS if name != "bad-arguments"])
def test_no_name_string_made_per_call(name: str) -> None:
    """A C call that looks an attribute up by a C string (PyObject_CallMethod,
    PyObject_GetAttrString) makes the name afresh each time, and CPython's
    type attribute cache keeps the new name in a slot chosen by its address:
    each such call on a calls' path fills one more slot, where interned
    names fill none once warm.  (The bad-arguments scenario is left out:
    its error paths may spend a string.)"""
    kept = growth_per_round(SCENARIOS[name], clear_type_cache=False)
    own = growth_per_round(SCENARIOS[name])
    per_run = (sum(kept) - sum(own)) / (ROUNDS * PER_ROUND)
    assert per_run < 0.2, f"{per_run:.2f} type cache slots filled per run"


def test_a_leak_is_caught() -> None:
    # The check itself: a scenario that keeps one object per run fails it.
    kept: list[object] = []

    async def leaky(loop: asyncio.AbstractEventLoop) -> None:
        kept.append(object())
        await asyncio.sleep(0)

    with pytest.raises(AssertionError, match="references grew"):
        assert_no_leak(leaky)
