"""Shared pieces of the networking tests (tests/test_net_*.py).

The tests take conftest's ``loop`` fixture, so each one runs on casyncio and
on stock asyncio.  This module adds what they have in common:

- ``no_fd_leak``: a fixture that counts this process's file descriptors
  before the test (before its loop exists) and after it (after the loop was
  closed and garbage collected), and fails the test if they differ.  Each
  test module applies it to all its tests with ``pytestmark``.
- ``Recorder``: a Protocol that records its callbacks and offers futures to
  wait on (connection made / lost, EOF, "n bytes received"); ``Collector``,
  a BufferedProtocol that gathers what it receives.
- ``tcp_connection``: an async context manager that makes a server and one
  connection to it, with a Recorder at each end, and tears both down.
- ``run``: run_until_complete with a time limit, so a hang fails fast.
- ``assert_same_bytes``: compare payloads with a short report on a mismatch.
- ``echo_stream``: a start_server() handler that echoes until EOF;
  ``tls_contexts``: a server and a client SSLContext for TLS tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

HOST = "127.0.0.1"
# Generous: a test that needs this long is hanging, not slow.
TIMEOUT = 15.0


def fd_count() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def open_fds() -> dict[int, str]:
    """fd -> what it points to, for a readable leak report."""
    result = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            result[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass
    return result


@pytest.fixture
def no_fd_leak() -> Iterator[None]:
    """Fail the test if it leaves a file descriptor open (its loop included:
    this fixture is set up before the loop and torn down after it)."""
    gc.collect()
    before = open_fds()
    yield
    gc.collect()
    after = open_fds()
    leaked = {fd: what for fd, what in after.items() if before.get(fd) != what}
    # The listdir() of each call shows up as its own fd; ignore that one.
    leaked = {fd: what for fd, what in leaked.items() if not what.startswith("/proc/")}
    assert not leaked, f"file descriptors leaked: {leaked}"


def run(loop: asyncio.AbstractEventLoop, coro: Awaitable[T], timeout: float = TIMEOUT) -> T:
    """loop.run_until_complete(coro), failing with TimeoutError after
    `timeout` seconds instead of hanging the suite."""
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def is_casyncio(loop: asyncio.AbstractEventLoop) -> bool:
    return type(loop).__module__.startswith("casyncio")


def xfail_if_stock_keeps_written_buffer(loop: asyncio.AbstractEventLoop, request) -> None:
    """Since Python 3.12 (zero-copy writes, gh-91166), stock asyncio's socket
    transport queues the very object given to write() when the socket is
    full, not a copy, so changing a bytearray after write() changes what is
    sent later.  casyncio copies, as 3.11 did; a test that checks that
    expects stock asyncio to fail there."""
    if not is_casyncio(loop) and sys.version_info >= (3, 12):
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason="stock asyncio 3.12+ sends a written bytearray's later contents",
            )
        )


def ipv6_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not ipv6_available(), reason="::1 is not available here")


@contextlib.contextmanager
def refused_port(family: int = socket.AF_INET, host: str = HOST) -> Iterator[int]:
    """A port on `host` where nothing listens, kept bound (not listening) for
    the duration so that no other process can start listening there."""
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        yield s.getsockname()[1]


def small_buffers(sock: socket.socket | Any, sndbuf: int = 4096, rcvbuf: int = 4096) -> None:
    """Shrink a socket's kernel buffers so that writes soon would block."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic pseudo-random bytes: corruption or reordering of
    chunks shows up in a comparison."""
    return random.Random(seed).randbytes(size)


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server and a client SSLContext with the CPython test suite's own
    certificate, through its helpers (the test is skipped without them)."""
    try:
        from test.test_asyncio import utils as test_utils
    except ImportError:
        pytest.skip("needs the interpreter's test package (test.test_asyncio)")
    return test_utils.simple_server_sslcontext(), test_utils.simple_client_sslcontext()


async def echo_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A start_server() handler that echoes what it reads until EOF, then
    closes."""
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


def assert_same_bytes(got: bytes | bytearray, expected: bytes) -> None:
    """``assert got == expected`` for payloads: on a mismatch, say the lengths
    and the first offset where they part.  (A plain assert of two long byte
    strings makes pytest diff their reprs in full when CI is set in the
    environment: minutes for a megabyte, which an expected failure on stock
    asyncio pays on every run.)"""
    if got == expected:
        return
    at = next(
        (i for i, (a, b) in enumerate(zip(got, expected)) if a != b),
        min(len(got), len(expected)),
    )
    raise AssertionError(
        f"got {len(got)} bytes, expected {len(expected)}; they part at offset {at}: "
        f"{bytes(got[at : at + 16])!r}... != {expected[at : at + 16]!r}..."
    )


class Collector(asyncio.BufferedProtocol):
    """A BufferedProtocol that gathers what it receives in ``data``;
    ``done`` is set (to the bytes) once ``want`` bytes came, ``lost`` at
    connection_lost()."""

    def __init__(self, loop: asyncio.AbstractEventLoop, want: int) -> None:
        self.buf = bytearray(65536)
        self.data = bytearray()
        self.want = want
        self.done = loop.create_future()
        self.lost = loop.create_future()

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        self.data += self.buf[:nbytes]
        if len(self.data) >= self.want and not self.done.done():
            self.done.set_result(bytes(self.data))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)


class Recorder(asyncio.Protocol):
    """Records its callbacks in ``events`` (consecutive data_received calls
    collapse into one 'data') and exposes futures to wait on."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, keep_open_on_eof: bool = False):
        self.loop = loop
        self.transport: Any = None
        self.events: list[str] = []
        self.data = bytearray()
        self.keep_open_on_eof = keep_open_on_eof
        self.made: asyncio.Future = loop.create_future()
        self.eof: asyncio.Future = loop.create_future()
        # The result is connection_lost()'s argument (an exception or None).
        self.lost: asyncio.Future = loop.create_future()
        self.pauses = 0
        self.resumes = 0
        self.paused_event: asyncio.Future = loop.create_future()
        self.resumed_event: asyncio.Future = loop.create_future()
        self._waiters: list[tuple[int, asyncio.Future]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.events.append("made")
        self.transport = transport
        self.made.set_result(transport)

    def data_received(self, data: bytes) -> None:
        assert isinstance(data, bytes), type(data)
        if not self.events or self.events[-1] != "data":
            self.events.append("data")
        self.data += data
        self._wake()

    def eof_received(self) -> bool:
        self.events.append("eof")
        self.eof.set_result(None)
        self._wake()
        return self.keep_open_on_eof

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")
        self.lost.set_result(exc)
        self._wake()

    def pause_writing(self) -> None:
        self.events.append("pause")
        self.pauses += 1
        if not self.paused_event.done():
            self.paused_event.set_result(None)

    def resume_writing(self) -> None:
        self.events.append("resume")
        self.resumes += 1
        if not self.resumed_event.done():
            self.resumed_event.set_result(None)

    def _wake(self) -> None:
        ended = self.eof.done() or self.lost.done()
        for n, fut in list(self._waiters):
            if fut.done():
                self._waiters.remove((n, fut))
            elif len(self.data) >= n or ended:
                self._waiters.remove((n, fut))
                fut.set_result(None)

    async def wait_bytes(self, n: int) -> bytes:
        """Wait until at least n bytes arrived (or the stream ended) and
        return everything received so far."""
        if len(self.data) < n and not (self.eof.done() or self.lost.done()):
            fut = self.loop.create_future()
            self._waiters.append((n, fut))
            await fut
        return bytes(self.data)


@dataclass
class Connection:
    """A server with one connection to it: both ends' transports and
    Recorders."""

    server: Any  # an asyncio.Server
    client_t: Any
    client_p: Recorder
    server_t: Any
    server_p: Recorder
    server_protocols: list[Recorder] = field(default_factory=list)


async def close_transport(transport: Any, protocol: Recorder) -> None:
    """Close a transport (if it is not closing already) and wait for its
    connection_lost()."""
    if not transport.is_closing():
        transport.close()
    await protocol.lost


@contextlib.asynccontextmanager
async def tcp_connection(
    loop: asyncio.AbstractEventLoop,
    *,
    client_factory: Callable[[], Recorder] | None = None,
    server_factory: Callable[[], Recorder] | None = None,
    small_bufs: bool = False,
    **connect_kwargs: Any,
) -> AsyncIterator[Connection]:
    """A server on 127.0.0.1 and one create_connection() to it; on exit,
    both transports are closed (and their connection_lost() awaited) and
    the server is closed.  small_bufs: both sockets get small kernel
    buffers from the start (the client connects with sock=), so that
    writing a few hundred kilobytes leaves data in the transport."""
    server_protocols: list[Recorder] = []
    first_server_proto: asyncio.Future = loop.create_future()

    def make_server_proto() -> Recorder:
        proto = server_factory() if server_factory else Recorder(loop)
        server_protocols.append(proto)
        if not first_server_proto.done():
            first_server_proto.set_result(proto)
        return proto

    server = await loop.create_server(make_server_proto, HOST, 0)
    try:
        port = server.sockets[0].getsockname()[1]
        factory = client_factory or (lambda: Recorder(loop))
        if small_bufs:
            # Accepted sockets inherit the listening socket's buffer sizes.
            small_buffers(server.sockets[0])
            sock = socket.socket()
            small_buffers(sock)
            # Blocking, but the kernel completes it at once (the server listens).
            sock.connect((HOST, port))
            client_t, client_p = await loop.create_connection(factory, sock=sock)
        else:
            client_t, client_p = await loop.create_connection(factory, HOST, port, **connect_kwargs)
        try:
            server_p = await first_server_proto
            server_t = await server_p.made
            conn = Connection(server, client_t, client_p, server_t, server_p, server_protocols)
            try:
                yield conn
            finally:
                for proto in server_protocols:
                    if proto.transport is not None:
                        await close_transport(proto.transport, proto)
        finally:
            await close_transport(client_t, client_p)
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def kept_connections(
    serve: Callable[[Callable[[], asyncio.Protocol]], Awaitable[asyncio.Server]],
) -> AsyncIterator[tuple[asyncio.Server, list[asyncio.BaseTransport]]]:
    """A server started by serve(protocol_factory), and the transports of
    the connections it accepts, in order; on leaving, both are closed."""
    accepted: list[asyncio.BaseTransport] = []

    class Keep(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted.append(transport)

    server = await serve(Keep)
    try:
        yield server, accepted
    finally:
        for t in accepted:
            t.close()
        server.close()
        await server.wait_closed()


async def wait_for_condition(
    loop: asyncio.AbstractEventLoop, predicate: Callable[[], bool], iterations: int = 10000
) -> None:
    """Let the loop run (one iteration at a time) until predicate() holds.
    For state that has no future to wait on; bounded, so it cannot hang."""
    for _ in range(iterations):
        if predicate():
            return
        await asyncio.sleep(0)
    # Then let real time pass as well (a peer's packets, a thread).
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never became true")


def kernel_has_data(sock: Any, timeout: float = 5.0) -> bool:
    """Block (outside the loop) until the kernel has something to read on
    sock, so a test knows data arrived without running the loop."""
    import select

    readable, _, _ = select.select([sock.fileno()], [], [], timeout)
    return bool(readable)


def server_clients(server: asyncio.Server) -> int:
    """How many connections an asyncio.Server counts as attached: the
    ``_active_count`` private of 3.11/3.12, the ``_clients`` WeakSet of 3.13+."""
    clients = getattr(server, "_clients", None)
    if clients is not None:
        return len(clients)
    return server._active_count
