"""TCP: create_connection, create_server and the Server object,
connect_accepted_socket, and the stream transport (writes, writelines,
write_eof, reading pause, write flow control, close/abort, extra info,
BufferedProtocol, TCP_NODELAY), on casyncio and on stock asyncio."""

from __future__ import annotations

import array
import asyncio
import contextlib
import contextvars
import errno
import gc
import logging
import os
import socket
import sys
import time
from asyncio.trsock import TransportSocket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from net_helpers import (
    HOST,
    Collector,
    Recorder,
    assert_same_bytes,
    close_transport,
    is_casyncio,
    kept_connections,
    kernel_has_data,
    needs_ipv6,
    no_fd_leak,  # noqa: F401  (fixture, applied below)
    payload,
    refused_port,
    run,
    server_clients,
    small_buffers,
    tcp_connection,
    wait_for_condition,
    xfail_if_stock_keeps_written_buffer,
)

pytestmark = pytest.mark.usefixtures("no_fd_leak")

STREAM_INFO = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "")


# ---- connecting ------------------------------------------------------------------


def test_round_trip_and_callback_order(loop):
    async def main() -> None:
        async with tcp_connection(loop) as c:
            assert isinstance(c.client_t, asyncio.Transport)
            assert isinstance(c.server_t, asyncio.Transport)
            assert c.client_t.get_protocol() is c.client_p
            assert c.server_t.get_protocol() is c.server_p
            c.client_t.write(b"hello")
            assert await c.server_p.wait_bytes(5) == b"hello"
            c.server_t.write(b"world")
            assert await c.client_p.wait_bytes(5) == b"world"
            c.client_t.close()
            assert await c.client_p.lost is None
            assert await c.server_p.lost is None
            assert c.client_p.events == ["made", "data", "lost"]
            assert c.server_p.events == ["made", "data", "eof", "lost"]

    run(loop, main())


def test_get_extra_info(loop):
    async def main() -> None:
        async with tcp_connection(loop) as c:
            server_addr = c.server.sockets[0].getsockname()
            csock = c.client_t.get_extra_info("socket")
            ssock = c.server_t.get_extra_info("socket")
            assert isinstance(csock, TransportSocket)
            assert isinstance(ssock, TransportSocket)
            assert csock.family == socket.AF_INET
            assert csock.type == socket.SOCK_STREAM
            assert c.client_t.get_extra_info("peername") == server_addr
            assert c.client_t.get_extra_info("sockname") == csock.getsockname()
            assert c.server_t.get_extra_info("peername") == csock.getsockname()
            assert c.server_t.get_extra_info("sockname") == server_addr
            assert c.client_t.get_extra_info("no such key") is None
            assert c.client_t.get_extra_info("no such key", 42) == 42
            assert c.client_t.get_extra_info("sslcontext") is None

    run(loop, main())


@pytest.mark.parametrize(
    "host", [HOST, pytest.param("::1", marks=needs_ipv6)], ids=["ipv4", "ipv6"]
)
def test_accepted_connections_share_equal_addresses(loop, host):
    """A server's connections have one sockname and, here, one peer host.
    Each transport reports them as the socket module gives them; casyncio's
    share the equal objects (immutable: about 200 bytes per idle connection
    saved), stock asyncio's each hold their own copies."""

    async def main() -> None:
        async with kept_connections(lambda keep: loop.create_server(keep, host, 0)) as (
            server,
            accepted,
        ):
            listening = server.sockets[0].getsockname()
            clients = [socket.create_connection(listening[:2]) for _ in range(3)]
            try:
                await wait_for_condition(loop, lambda: len(accepted) == len(clients))
                socknames = [t.get_extra_info("sockname") for t in accepted]
                peernames = [t.get_extra_info("peername") for t in accepted]
                assert socknames == [listening] * len(clients)
                assert sorted(peernames) == sorted(c.getsockname() for c in clients)
                assert len({p[1] for p in peernames}) == len(clients)
                if is_casyncio(loop):
                    assert all(s is socknames[0] for s in socknames)
                    assert all(p[0] is peernames[0][0] for p in peernames)
            finally:
                for c in clients:
                    c.close()

    run(loop, main())


class _AcceptCountingSocket(socket.socket):
    """A listener whose accept() the loop must call, as asyncio does."""

    accepted = 0

    def accept(self):  # type: ignore[no-untyped-def]
        type(self).accepted += 1
        return super().accept()


@pytest.mark.parametrize("cls", [socket.socket, _AcceptCountingSocket], ids=["socket", "subclass"])
def test_accepted_connection_is_non_blocking(loop, cls):
    # casyncio accepts on a plain listener with accept4(SOCK_NONBLOCK) in C;
    # a subclass's own accept() is called, then setblocking(False), as
    # asyncio does.  Either way the connection is non-blocking, in Python's
    # eyes and at the fd, and reads as a TCP socket.
    async def main() -> None:
        listener = cls(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((HOST, 0))
        async with kept_connections(lambda keep: loop.create_server(keep, sock=listener)) as (
            _,
            accepted,
        ):
            _AcceptCountingSocket.accepted = 0
            with socket.create_connection(listener.getsockname()) as client:
                await wait_for_condition(loop, lambda: len(accepted) == 1)
                sock = accepted[0].get_extra_info("socket")
                assert sock.gettimeout() == 0 and not os.get_blocking(sock.fileno())
                assert sock.family is socket.AF_INET and sock.type is socket.SOCK_STREAM
                assert accepted[0].get_extra_info("peername") == client.getsockname()
                # Called until it raises BlockingIOError: at least once.
                assert (_AcceptCountingSocket.accepted > 0) == (cls is _AcceptCountingSocket)

    run(loop, main())


def test_tcp_nodelay_on_both_ends(loop):
    async def main() -> None:
        async with tcp_connection(loop) as c:
            for t in (c.client_t, c.server_t):
                sock = t.get_extra_info("socket")
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0

    run(loop, main())


class _CountingSocket(socket.socket):
    """A socket.socket subclass, as a library might pass in with sock=."""


@pytest.mark.parametrize("cls", [socket.socket, _CountingSocket], ids=["socket", "subclass"])
@pytest.mark.parametrize("proto", [socket.IPPROTO_TCP, 0], ids=["tcp", "proto0"])
def test_tcp_nodelay_on_a_given_socket(loop, cls, proto):
    # casyncio reads a plain socket's family, type and proto itself and sets
    # the option on the fd; other sockets go through asyncio's _set_nodelay().
    # Either way the rule is asyncio's: Nagle goes off only for a socket made
    # with proto IPPROTO_TCP (create_connection()'s come from getaddrinfo()),
    # not for one made with the default 0.  The socket's properties still
    # read as enums.
    async def main() -> None:
        server = await loop.create_server(lambda: Recorder(loop), HOST, 0)
        async with server:
            sock = cls(socket.AF_INET, socket.SOCK_STREAM, proto)
            sock.connect(server.sockets[0].getsockname())
            t, p = await loop.create_connection(lambda: Recorder(loop), sock=sock)
            nodelay = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            assert nodelay == (proto == socket.IPPROTO_TCP)
            assert sock.family is socket.AF_INET and sock.type is socket.SOCK_STREAM
            await close_transport(t, p)

    run(loop, main())


def test_create_connection_makes_a_non_blocking_socket(loop):
    # The socket create_connection() makes is non-blocking at the fd (the
    # loop never blocks in it) and in Python's eyes (timeout 0), and reads
    # as a plain SOCK_STREAM (casyncio makes it with SOCK_NONBLOCK).
    async def main() -> None:
        async with tcp_connection(loop) as c:
            sock = c.client_t.get_extra_info("socket")
            assert sock.gettimeout() == 0
            assert not os.get_blocking(sock.fileno())
            assert sock.type is socket.SOCK_STREAM

    run(loop, main())


def test_create_connection_calls_a_replaced_sock_connect(loop, monkeypatch):
    """create_connection() connects through loop.sock_connect(): one
    replaced on the instance sees each attempt with the resolved address
    (casyncio skips the call only for its own method)."""
    seen: list[Any] = []
    original = loop.sock_connect

    async def spy(sock: socket.socket, address: Any) -> None:
        seen.append(address)
        await original(sock, address)

    monkeypatch.setattr(loop, "sock_connect", spy)

    async def main() -> None:
        async with tcp_connection(loop) as c:
            assert seen == [c.client_t.get_extra_info("peername")]

    run(loop, main())


def test_create_connection_sock(loop):
    async def main() -> None:
        server = await loop.create_server(lambda: Recorder(loop), HOST, 0)
        async with server:
            sock = socket.create_connection(server.sockets[0].getsockname())
            assert sock.gettimeout() is None  # blocking, as the caller made it
            t, p = await loop.create_connection(lambda: Recorder(loop), sock=sock)
            assert sock.gettimeout() == 0  # the loop made it non-blocking
            assert t.get_extra_info("socket").fileno() == sock.fileno()
            assert t.get_extra_info("peername") == server.sockets[0].getsockname()
            t.write(b"x")
            await close_transport(t, p)
            assert sock.fileno() == -1  # the transport closed it

    run(loop, main())


def test_create_connection_numeric_host_no_executor(loop, monkeypatch):
    """Both loops connect to an IP literal without resolving it in a thread
    (asyncio short-circuits numeric addresses in _ensure_resolved)."""
    calls: list[Any] = []
    original = loop.run_in_executor

    def spy(*args: Any) -> Any:
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(loop, "run_in_executor", spy)

    async def main() -> None:
        async with tcp_connection(loop, local_addr=(HOST, 0)):
            pass

    run(loop, main())
    assert calls == []
    assert loop._default_executor is None


def test_create_connection_host_name(loop):
    async def main() -> None:
        server = await loop.create_server(lambda: Recorder(loop), HOST, 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            t, p = await loop.create_connection(
                lambda: Recorder(loop), "localhost", port, family=socket.AF_INET
            )
            assert t.get_extra_info("peername") == (HOST, port)
            await close_transport(t, p)

    run(loop, main())


def test_create_connection_local_addr(loop):
    # 127.0.0.2 is on the loopback interface too: the source address shows
    # that local_addr was bound.
    async def main() -> None:
        async with tcp_connection(loop, local_addr=("127.0.0.2", 0)) as c:
            assert c.client_t.get_extra_info("sockname")[0] == "127.0.0.2"
            assert c.server_t.get_extra_info("peername")[0] == "127.0.0.2"

    run(loop, main())


def test_create_connection_local_addr_in_use(loop):
    async def main() -> None:
        server = await loop.create_server(lambda: Recorder(loop), HOST, 0)
        async with server:
            with socket.socket() as busy:
                busy.bind((HOST, 0))
                busy.listen(1)
                with pytest.raises(OSError) as info:
                    await loop.create_connection(
                        lambda: Recorder(loop),
                        HOST,
                        server.sockets[0].getsockname()[1],
                        local_addr=busy.getsockname(),
                    )
                assert info.value.errno == errno.EADDRINUSE
                assert "error while attempting to bind on address" in str(info.value)

    run(loop, main())


def test_create_connection_refused(loop):
    async def main() -> None:
        with refused_port() as port, pytest.raises(ConnectionRefusedError):
            await loop.create_connection(lambda: Recorder(loop), HOST, port)

    run(loop, main())


@contextlib.contextmanager
def blackhole() -> Iterator[tuple[str, int]]:
    """An address whose connect() hangs: a listener with backlog 0 whose one
    queue slot is taken, so the kernel drops further SYNs (and retries only
    after a second)."""
    lsock = socket.socket()
    filler = socket.socket()
    try:
        lsock.bind((HOST, 0))
        lsock.listen(0)
        filler.connect(lsock.getsockname())
        yield lsock.getsockname()
    finally:
        filler.close()
        lsock.close()


def fake_resolver(loop, monkeypatch, infos: list[tuple]) -> None:
    """Make the loop resolve any name to `infos`."""

    async def getaddrinfo(host, port, *, family=0, type=0, proto=0, flags=0):
        return list(infos)

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)


def record_connects(loop, monkeypatch) -> list:
    attempts: list = []
    original = loop.sock_connect

    async def sock_connect(sock, address):
        attempts.append(address)
        return await original(sock, address)

    monkeypatch.setattr(loop, "sock_connect", sock_connect)
    return attempts


def test_happy_eyeballs_second_address_wins_while_first_hangs(loop, monkeypatch):
    async def main() -> None:
        server = await loop.create_server(lambda: Recorder(loop), HOST, 0)
        async with server:
            good = server.sockets[0].getsockname()
            with blackhole() as hole:
                fake_resolver(loop, monkeypatch, [(*STREAM_INFO, hole), (*STREAM_INFO, good)])
                attempts = record_connects(loop, monkeypatch)
                start = time.monotonic()
                t, p = await loop.create_connection(
                    lambda: Recorder(loop), "eyeballs.test", 80, happy_eyeballs_delay=0.05
                )
                elapsed = time.monotonic() - start
                assert t.get_extra_info("peername") == good
                assert attempts == [hole, good]
                # Well before the kernel's first SYN retry to the black hole.
                assert elapsed < 0.9
                await close_transport(t, p)

    run(loop, main())


@pytest.mark.parametrize("delay", [None, 0.25], ids=["sequential", "happy-eyeballs"])
def test_connect_error_is_not_kept_referenced(loop, delay):
    """The error create_connection raises is referenced by nothing but the
    caller: no list of the attempts' errors outlives the call (CPython 3.13's
    test_open_connection_happy_eyeball_refcycles)."""
    if delay is not None and sys.version_info < (3, 13, 1):
        pytest.skip(
            "before 3.13.1 (CPython gh-124858), asyncio.staggered (which both loops race "
            "the attempts with) keeps the error in a list its own frames hold, a cycle "
            "left to the collector"
        )

    caught: list[OSError] = []

    async def main() -> None:
        with refused_port() as port:
            try:
                await loop.create_connection(
                    asyncio.Protocol, HOST, port, happy_eyeballs_delay=delay
                )
            except OSError as exc:
                caught.append(exc)

    run(loop, main())
    error = caught.pop()
    assert gc.get_referrers(error) == []


@needs_ipv6
@pytest.mark.parametrize(
    ("kwargs", "order"),
    [
        ({}, ["v6a", "v6b", "v4a", "v4b", "good"]),
        ({"interleave": 1}, ["v6a", "v4a", "v6b", "v4b", "good"]),
        ({"interleave": 2}, ["v6a", "v6b", "v4a", "v4b", "good"]),
        ({"happy_eyeballs_delay": 0.2}, ["v6a", "v4a", "v6b", "v4b", "good"]),
        ({"happy_eyeballs_delay": 0.2, "interleave": 2}, ["v6a", "v6b", "v4a", "v4b", "good"]),
    ],
    ids=["plain", "interleave1", "interleave2", "eyeballs-default-interleave", "eyeballs-2"],
)
def test_interleave_order(loop, monkeypatch, kwargs, order):
    async def main() -> None:
        server = await loop.create_server(lambda: Recorder(loop), HOST, 0)
        async with server:
            good = server.sockets[0].getsockname()
            with contextlib.ExitStack() as stack:
                names: dict[Any, str] = {good: "good"}
                infos = []
                for name, fam, host in [
                    ("v6a", socket.AF_INET6, "::1"),
                    ("v6b", socket.AF_INET6, "::1"),
                    ("v4a", socket.AF_INET, HOST),
                    ("v4b", socket.AF_INET, HOST),
                ]:
                    port = stack.enter_context(refused_port(fam, host))
                    addr = (host, port, 0, 0) if fam == socket.AF_INET6 else (host, port)
                    names[addr] = name
                    infos.append((fam, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", addr))
                infos.append((*STREAM_INFO, good))
                fake_resolver(loop, monkeypatch, infos)
                attempts = record_connects(loop, monkeypatch)
                t, p = await loop.create_connection(
                    lambda: Recorder(loop), "order.test", 80, **kwargs
                )
                assert [names[a] for a in attempts] == order
                await close_transport(t, p)

    run(loop, main())


def test_several_failures_make_one_oserror(loop, monkeypatch):
    async def main() -> None:
        with refused_port() as p1, refused_port() as p2:
            fake_resolver(
                loop, monkeypatch, [(*STREAM_INFO, (HOST, p1)), (*STREAM_INFO, (HOST, p2))]
            )
            with pytest.raises(OSError) as info:
                await loop.create_connection(lambda: Recorder(loop), "two.test", 80)
            assert type(info.value) is OSError
            assert str(info.value).startswith("Multiple exceptions: ")
            assert str(p1) in str(info.value) and str(p2) in str(info.value)

    run(loop, main())


def test_all_errors(loop, monkeypatch):
    if sys.version_info < (3, 12):
        # The keyword came in 3.12: 3.11 refuses it at the call, on both loops.
        with pytest.raises(TypeError, match="all_errors"):
            loop.create_connection(lambda: Recorder(loop), HOST, 80, all_errors=True)
        return

    async def main() -> None:
        with refused_port() as p1, refused_port() as p2:
            fake_resolver(
                loop, monkeypatch, [(*STREAM_INFO, (HOST, p1)), (*STREAM_INFO, (HOST, p2))]
            )
            with pytest.raises(ExceptionGroup) as info:
                await loop.create_connection(
                    lambda: Recorder(loop), "two.test", 80, all_errors=True
                )
            errors = info.value.exceptions
            assert len(errors) == 2
            assert all(isinstance(e, ConnectionRefusedError) for e in errors)

    run(loop, main())


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"host": HOST, "port": 1, "sock": "placeholder"}, ValueError),
        ({}, ValueError),
        ({"sock": "dgram"}, ValueError),
        ({"host": HOST, "port": 1, "server_hostname": "x"}, ValueError),
        ({"host": HOST, "port": 1, "ssl_handshake_timeout": 1.0}, ValueError),
        ({"host": HOST, "port": 1, "ssl_shutdown_timeout": 1.0}, ValueError),
    ],
    ids=[
        "host-and-sock",
        "nothing",
        "dgram-sock",
        "server_hostname-without-ssl",
        "handshake-timeout-without-ssl",
        "shutdown-timeout-without-ssl",
    ],
)
def test_create_connection_bad_arguments(loop, kwargs, exc):
    with contextlib.ExitStack() as stack:
        if "sock" in kwargs:
            kind = socket.SOCK_DGRAM if kwargs["sock"] == "dgram" else socket.SOCK_STREAM
            kwargs = {**kwargs, "sock": stack.enter_context(socket.socket(type=kind))}
        with pytest.raises(exc):
            run(loop, loop.create_connection(asyncio.Protocol, **kwargs))


# ---- writing -----------------------------------------------------------------


def test_write_sends_at_once(loop):
    async def main() -> None:
        async with tcp_connection(loop) as c:
            c.client_t.write(b"x" * 100)
            # Nothing waits for the next loop iteration.
            assert c.client_t.get_write_buffer_size() == 0
            assert kernel_has_data(c.server_t.get_extra_info("socket"))
            assert await c.server_p.wait_bytes(100) == b"x" * 100

    run(loop, main())


def test_big_reads_come_in_chunks_of_at_most_256_kib(loop):
    """With a lot queued in the kernel, data_received() gets it in reads of
    at most 256 KiB (asyncio's max_size), in order: casyncio reads a big
    stream's next chunk straight into its bytes, sized by what is queued."""
    data = payload(3_000_000, seed=9)
    chunks: list[int] = []

    class Chunks(Recorder):
        def data_received(self, data: bytes) -> None:
            chunks.append(len(data))
            super().data_received(data)

    async def main() -> None:
        async with tcp_connection(loop, server_factory=lambda: Chunks(loop)) as c:
            c.server_t.pause_reading()
            c.client_t.write(data)
            await asyncio.sleep(0.05)  # let the kernel queue what it takes
            c.server_t.resume_reading()
            assert_same_bytes(await c.server_p.wait_bytes(len(data)), data)

    run(loop, main())
    assert max(chunks) <= 256 * 1024
    assert sum(size > 32 * 1024 for size in chunks) >= 2, chunks


def test_eof_after_big_reads_follows_all_the_data(loop):
    """The peer's EOF right after big reads (on casyncio, the read after a
    big one asks how much is queued, and finds nothing) ends the data:
    eof_received() once, after every byte, then connection_lost(None)."""
    data = payload(1_000_000, seed=10)

    async def main() -> None:
        async with tcp_connection(loop) as c:
            c.server_t.pause_reading()
            c.client_t.write(data)
            c.client_t.write_eof()
            await asyncio.sleep(0.05)  # let the kernel queue data and EOF
            c.server_t.resume_reading()
            await c.server_p.lost
            assert_same_bytes(bytes(c.server_p.data), data)
            assert c.server_p.events == ["made", "data", "eof", "lost"]
            assert c.server_p.lost.result() is None

    run(loop, main())


def test_big_write_buffers_only_the_remainder(loop):
    data = payload(4_000_000, seed=1)

    async def main() -> None:
        async with tcp_connection(loop, small_bufs=True) as c:
            c.server_t.pause_reading()
            c.client_t.write(data)
            buffered = c.client_t.get_write_buffer_size()
            # The kernel took part of it at once; the rest waits.
            assert 0 < buffered < len(data)
            assert kernel_has_data(c.server_t.get_extra_info("socket"))
            c.server_t.resume_reading()
            assert_same_bytes(await c.server_p.wait_bytes(len(data)), data)
            await wait_for_condition(loop, lambda: c.client_t.get_write_buffer_size() == 0)

    run(loop, main())


def test_writes_keep_their_order_while_buffered(loop):
    pieces = [payload(50_000 + i, seed=i) for i in range(40)]

    async def main() -> None:
        async with tcp_connection(loop, small_bufs=True) as c:
            for piece in pieces:
                c.client_t.write(piece)
                c.client_t.writelines([piece[:10], bytearray(piece[10:20])])
            expected = b"".join(p + p[:20] for p in pieces)
            assert_same_bytes(await c.server_p.wait_bytes(len(expected)), expected)

    run(loop, main())


def test_buffered_bytearray_is_copied(loop, request):
    xfail_if_stock_keeps_written_buffer(loop, request)

    async def main() -> None:
        async with tcp_connection(loop, small_bufs=True) as c:
            c.server_t.pause_reading()
            filler = payload(1_000_000)
            c.client_t.write(filler)
            assert c.client_t.get_write_buffer_size() > 0
            mutable = bytearray(b"A" * 1000)
            c.client_t.write(mutable)
            c.client_t.write(memoryview(mutable))
            mutable[:] = b"B" * 1000
            c.server_t.resume_reading()
            got = await c.server_p.wait_bytes(len(filler) + 2000)
            assert_same_bytes(got, filler + b"A" * 2000)

    run(loop, main())


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_write_accepts_buffers(loop, kind):
    async def main() -> None:
        async with tcp_connection(loop) as c:
            c.client_t.write(kind(b"buf"))
            assert await c.server_p.wait_bytes(3) == b"buf"

    run(loop, main())


def test_write_empty_is_a_no_op(loop):
    async def main() -> None:
        async with tcp_connection(loop) as c:
            c.client_t.write(b"")
            c.client_t.writelines([])
            c.client_t.writelines([b"", b""])
            assert c.client_t.get_write_buffer_size() == 0
            c.client_t.write(b"end")
            assert await c.server_p.wait_bytes(3) == b"end"

    run(loop, main())


def test_writelines_queued_with_empty_pieces_still_drains(loop, request):
    """Empty pieces queued behind data that could not go at once are no
    write to wait for: the buffer drains and close() completes."""
    if not is_casyncio(loop) and (3, 12) <= sys.version_info < (3, 15):
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason="stock asyncio 3.12-3.14 queues the empty piece and never drains "
                "it, so close() never ends the connection (gh-155888; 3.11 joined the pieces)",
            )
        )
    big = payload(1 << 20)

    async def main() -> None:
        async with tcp_connection(loop, small_bufs=True) as c:
            c.client_t.writelines([big, b""])
            assert c.client_t.get_write_buffer_size() > 0
            c.client_t.writelines([b"", b"end", b""])
            c.client_t.close()
            try:
                await asyncio.wait_for(c.client_p.lost, 5.0)
            finally:
                if not c.client_p.lost.done():
                    c.client_t.abort()  # a stuck close() would never end the connection
            assert_same_bytes(await c.server_p.wait_bytes(len(big) + 3), big + b"end")

    run(loop, main())


def test_writelines_small_pieces_nothing_buffered(loop):
    # Any bytes-like piece, where write() takes only bytes, bytearray and
    # memoryview.
    pieces = [
        b"alpha",
        bytearray(b"beta"),
        memoryview(b"gamma"),
        b"",
        array.array("B", b"epsilon"),
        b"delta" * 100,
    ]

    async def main() -> None:
        async with tcp_connection(loop) as c:
            c.client_t.writelines(pieces)
            assert c.client_t.get_write_buffer_size() == 0
            expected = b"".join(bytes(p) for p in pieces)
            assert_same_bytes(await c.server_p.wait_bytes(len(expected)), expected)

    run(loop, main())


def test_writelines_many_pieces_in_order(loop):
    # More pieces than one writev() takes (IOV_MAX): all of them, in order.
    pieces = [i.to_bytes(4, "big") * 25 for i in range(5000)]

    async def main() -> None:
        async with tcp_connection(loop) as c:
            c.client_t.writelines(pieces)
            c.client_t.writelines(iter(pieces[:3]))  # any iterable
            expected = b"".join(pieces) + b"".join(pieces[:3])
            assert_same_bytes(await c.server_p.wait_bytes(len(expected)), expected)

    run(loop, main())


def test_writelines_while_buffered(loop):
    async def main() -> None:
        async with tcp_connection(loop, small_bufs=True) as c:
            c.server_t.pause_reading()
            big = payload(1_000_000, seed=5)
            c.client_t.write(big)
            before = c.client_t.get_write_buffer_size()
            assert before > 0
            c.client_t.writelines([b"tail1", b"tail2"])
            if sys.version_info < (3, 12):
                # writelines() queues behind what is queued, as write() does.
                assert c.client_t.get_write_buffer_size() == before + 10
            else:
                # 3.12's writelines() also tries to send at once.
                assert c.client_t.get_write_buffer_size() <= before + 10
            c.server_t.resume_reading()
            got = await c.server_p.wait_bytes(len(big) + 10)
            assert got == big + b"tail1tail2"

    run(loop, main())


# ---- write_eof -------------------------------------------------------------------


def test_write_eof(loop):
    async def main() -> None:
        async with tcp_connection(loop) as c:
            assert c.client_t.can_write_eof() is True
            assert c.server_t.can_write_eof() is True
            c.client_t.write(b"last words")
            c.client_t.write_eof()
            c.client_t.write_eof()  # again: nothing
            await c.server_p.eof
            assert bytes(c.server_p.data) == b"last words"
            with pytest.raises(RuntimeError, match="write_eof"):
                c.client_t.write(b"more")
            assert not c.client_t.is_closing()
            # The server's eof_received() returned False: it closed, and
            # the client saw the end of the stream.
            assert await c.server_p.lost is None
            await c.client_p.eof
            assert await c.client_p.lost is None
            assert c.server_p.events == ["made", "data", "eof", "lost"]

    run(loop, main())


def test_write_eof_waits_for_the_buffer(loop):
    data = payload(2_000_000, seed=7)

    async def main() -> None:
        async with tcp_connection(loop, small_bufs=True) as c:
            c.server_t.pause_reading()
            c.client_t.write(data)
            assert c.client_t.get_write_buffer_size() > 0
            c.client_t.write_eof()
            c.server_t.resume_reading()
            await c.server_p.eof
            assert_same_bytes(c.server_p.data, data)

    run(loop, main())


def test_half_close_keeps_the_other_direction_open(loop):
    """eof_received() returning True: the side that got EOF may still
    write, and the peer reads it all."""

    async def main() -> None:
        async with tcp_connection(
            loop, server_factory=lambda: Recorder(loop, keep_open_on_eof=True)
        ) as c:
            c.client_t.write(b"question")
            c.client_t.write_eof()
            await c.server_p.eof
            assert not c.server_t.is_closing()
            c.server_t.write(b"answer")
            assert await c.client_p.wait_bytes(6) == b"answer"
            c.server_t.close()
            await c.client_p.eof
            assert await c.client_p.lost is None
            assert await c.server_p.lost is None
            assert c.server_p.events == ["made", "data", "eof", "lost"]
            assert c.client_p.events == ["made", "data", "eof", "lost"]

    run(loop, main())


# ---- reading -----------------------------------------------------------------------


def test_pause_and_resume_reading(loop):
    async def main() -> None:
        async with tcp_connection(loop) as c:
            assert c.server_t.is_reading()
            c.server_t.pause_reading()
            c.server_t.pause_reading()  # twice: no error
            assert not c.server_t.is_reading()
            c.client_t.write(b"held back")
            await asyncio.sleep(0)  # casyncio sends a write when its callback returns
            assert kernel_has_data(c.server_t.get_extra_info("socket"))
            for _ in range(5):
                await asyncio.sleep(0)
            assert c.server_p.data == b""
            c.server_t.resume_reading()
            c.server_t.resume_reading()
            assert c.server_t.is_reading()
            assert await c.server_p.wait_bytes(9) == b"held back"

    run(loop, main())


def test_paused_transport_still_sees_eof_after_resume(loop):
    async def main() -> None:
        async with tcp_connection(loop) as c:
            c.server_t.pause_reading()
            c.client_t.write(b"data")
            c.client_t.write_eof()
            assert kernel_has_data(c.server_t.get_extra_info("socket"))
            for _ in range(5):
                await asyncio.sleep(0)
            assert not c.server_p.eof.done()
            c.server_t.resume_reading()
            await c.server_p.eof
            assert c.server_p.data == b"data"

    run(loop, main())


def test_is_reading_false_once_closing(loop):
    async def main() -> None:
        async with tcp_connection(loop) as c:
            c.client_t.close()
            assert not c.client_t.is_reading()
            c.client_t.resume_reading()  # no effect, no error
            assert not c.client_t.is_reading()

    run(loop, main())


def test_set_protocol_switches_the_receiver(loop):
    async def main() -> None:
        async with tcp_connection(loop) as c:
            c.client_t.write(b"one")
            await c.server_p.wait_bytes(3)
            other = Recorder(loop)
            c.server_t.set_protocol(other)
            assert c.server_t.get_protocol() is other
            c.client_t.write(b"two")
            assert await other.wait_bytes(3) == b"two"
            assert c.server_p.data == b"one"
            c.server_t.set_protocol(c.server_p)

    run(loop, main())


# ---- write flow control --------------------------------------------------------------


def test_write_buffer_limits(loop):
    async def main() -> None:
        async with tcp_connection(loop) as c:
            t = c.client_t
            assert t.get_write_buffer_limits() == (16384, 65536)
            t.set_write_buffer_limits(high=1000)
            assert t.get_write_buffer_limits() == (250, 1000)
            t.set_write_buffer_limits(low=100)
            assert t.get_write_buffer_limits() == (100, 400)
            t.set_write_buffer_limits(high=300, low=200)
            assert t.get_write_buffer_limits() == (200, 300)
            t.set_write_buffer_limits(high=0)
            assert t.get_write_buffer_limits() == (0, 0)
            t.set_write_buffer_limits()
            assert t.get_write_buffer_limits() == (16384, 65536)
            with pytest.raises(ValueError):
                t.set_write_buffer_limits(high=1, low=2)
            with pytest.raises(ValueError):
                t.set_write_buffer_limits(high=-1)
            with pytest.raises(TypeError):
                t.set_write_buffer_limits(high="big")
            assert t.get_write_buffer_limits() == (16384, 65536)
            # Nothing buffered, so lowering the limits does not pause.
            assert c.client_p.pauses == 0

    run(loop, main())


def test_write_buffer_limits_take_any_number_as_asyncio(loop):
    """asyncio computes with the numbers it is given and keeps them: a
    float, or an int beyond any size (flow control off, in effect), works."""
    big = 2**70

    async def main() -> None:
        async with tcp_connection(loop) as c:
            t = c.client_t
            t.set_write_buffer_limits(high=1e6)
            assert t.get_write_buffer_limits() == (250000.0, 1e6)
            t.set_write_buffer_limits(high=big)
            assert t.get_write_buffer_limits() == (big // 4, big)
            t.write(b"x" * 100_000)
            t.set_write_buffer_limits(high=float("inf"), low=0)
            assert t.get_write_buffer_limits() == (0, float("inf"))
            for bad in ({"high": float("inf")}, {"low": float("nan")}, {"low": -big}):
                with pytest.raises(ValueError):
                    t.set_write_buffer_limits(**bad)
            assert t.get_write_buffer_limits() == (0, float("inf"))
            assert c.client_p.pauses == 0

    run(loop, main())


def test_pause_and_resume_writing(loop):
    data = payload(3_000_000, seed=2)

    async def main() -> None:
        async with tcp_connection(loop, small_bufs=True) as c:
            c.client_t.set_write_buffer_limits(high=64 * 1024, low=16 * 1024)
            c.server_t.pause_reading()
            c.client_t.write(b"small")
            assert c.client_p.pauses == 0
            c.client_t.write(data)
            # pause_writing() is called from inside write().
            assert c.client_p.pauses == 1
            assert c.client_t.get_write_buffer_size() > 64 * 1024
            c.client_t.write(b"more")  # still paused: not called again
            assert c.client_p.pauses == 1
            assert c.client_p.resumes == 0
            c.server_t.resume_reading()
            await c.client_p.resumed_event
            assert c.client_t.get_write_buffer_size() <= 16 * 1024
            assert_same_bytes(await c.server_p.wait_bytes(len(data) + 9), b"small" + data + b"more")
            assert (c.client_p.pauses, c.client_p.resumes) == (1, 1)
            assert c.client_p.events == ["made", "pause", "resume"]

    run(loop, main())


def test_lowering_the_high_water_mark_pauses(loop):
    async def main() -> None:
        async with tcp_connection(loop, small_bufs=True) as c:
            c.server_t.pause_reading()
            c.client_t.set_write_buffer_limits(high=10_000_000)
            c.client_t.write(payload(1_000_000))
            size = c.client_t.get_write_buffer_size()
            assert size > 0
            assert c.client_p.pauses == 0
            c.client_t.set_write_buffer_limits(high=size)  # not over it: nothing
            assert c.client_p.pauses == 0
            c.client_t.set_write_buffer_limits(high=0)
            assert c.client_p.pauses == 1
            c.server_t.resume_reading()
            await c.client_p.resumed_event
            assert c.client_t.get_write_buffer_size() == 0

    run(loop, main())


@pytest.mark.loop_errors
def test_pause_writing_raising_goes_to_the_exception_handler(loop):
    class Failing(Recorder):
        def pause_writing(self) -> None:
            super().pause_writing()
            raise ZeroDivisionError("pause")

    async def main() -> None:
        async with tcp_connection(loop, client_factory=lambda: Failing(loop), small_bufs=True) as c:
            c.server_t.pause_reading()
            c.client_t.write(payload(1_000_000))
            assert c.client_p.pauses == 1
            assert not c.client_t.is_closing()  # not fatal
            c.server_t.resume_reading()
            await c.server_p.wait_bytes(1_000_000)

    run(loop, main())
    [ctx] = loop.handler_calls
    assert ctx["message"] == "protocol.pause_writing() failed"
    assert isinstance(ctx["exception"], ZeroDivisionError)
    assert isinstance(ctx["protocol"], Recorder)
    assert ctx["transport"] is ctx["protocol"].transport


# ---- close / abort -------------------------------------------------------------------


def test_close_flushes_the_buffer_first(loop):
    data = payload(2_000_000, seed=4)

    async def main() -> None:
        async with tcp_connection(loop, small_bufs=True) as c:
            c.server_t.pause_reading()
            c.client_t.write(data)
            assert c.client_t.get_write_buffer_size() > 0
            c.client_t.close()
            assert c.client_t.is_closing()
            c.client_t.close()  # again: nothing
            for _ in range(3):
                await asyncio.sleep(0)
            assert not c.client_p.lost.done()  # still flushing
            c.server_t.resume_reading()
            await c.server_p.eof
            assert_same_bytes(c.server_p.data, data)
            assert await c.client_p.lost is None
            assert c.client_p.events.count("lost") == 1

    run(loop, main())


def test_abort_drops_the_buffer(loop):
    async def main() -> None:
        async with tcp_connection(loop, small_bufs=True) as c:
            c.server_t.pause_reading()
            data = payload(2_000_000)
            c.client_t.write(data)
            assert c.client_t.get_write_buffer_size() > 0
            c.client_t.abort()
            assert c.client_t.is_closing()
            assert c.client_t.get_write_buffer_size() == 0
            assert await c.client_p.lost is None
            c.server_t.resume_reading()
            await c.server_p.lost
            assert len(c.server_p.data) < len(data)
            assert c.client_p.events == ["made", "pause", "lost"]  # no resume_writing()

    run(loop, main())


def test_connection_lost_once_and_socket_closed(loop):
    async def main() -> None:
        async with tcp_connection(loop) as c:
            sock = c.client_t.get_extra_info("socket")
            c.client_t.close()
            c.client_t.abort()
            c.client_t.close()
            await c.client_p.lost
            for _ in range(3):
                await asyncio.sleep(0)
            assert c.client_p.events.count("lost") == 1
            assert sock.fileno() == -1

    run(loop, main())


def test_write_after_close_is_dropped_with_a_warning(loop, caplog):
    async def main() -> None:
        async with tcp_connection(loop) as c:
            c.client_t.close()
            await c.client_p.lost
            with caplog.at_level(logging.WARNING, logger="asyncio"):
                for _ in range(6):
                    c.client_t.write(b"into the void")
            await c.server_p.eof
            assert c.server_p.data == b""

    run(loop, main())
    warnings = [r for r in caplog.records if r.getMessage() == "socket.send() raised exception."]
    # asyncio counts the writes after the end and warns from the 5th count on.
    assert len(warnings) == 2


@pytest.mark.loop_errors
def test_connection_made_and_lost_raising(loop):
    """Exceptions from connection_made()/connection_lost() go to the exception
    handler (they run as loop callbacks); the socket is closed and the
    server forgets the connection all the same."""

    class Raising(asyncio.Protocol):
        def __init__(self) -> None:
            self.lost = loop.create_future()

        def connection_made(self, transport) -> None:
            raise ValueError("made")

        def connection_lost(self, exc) -> None:
            self.lost.set_result(exc)
            raise KeyError("lost")

    protos: list[Raising] = []

    def factory() -> Raising:
        protos.append(Raising())
        return protos[-1]

    async def main() -> None:
        server: Any = await loop.create_server(factory, HOST, 0)
        async with server:
            raw = socket.create_connection(server.sockets[0].getsockname())
            await wait_for_condition(loop, lambda: len(loop.handler_calls) == 1)
            raw.close()
            await protos[0].lost
            await wait_for_condition(loop, lambda: server_clients(server) == 0)

    run(loop, main())
    made, lost = loop.handler_calls
    assert isinstance(made["exception"], ValueError)
    assert made["message"].startswith("Exception in callback")
    assert isinstance(lost["exception"], KeyError)
    assert lost["message"].startswith("Exception in callback")


# ---- BufferedProtocol ---------------------------------------------------------------


class BufRecorder(asyncio.BufferedProtocol):
    def __init__(self, loop, size: int = 1000) -> None:
        self.loop = loop
        self.buf = bytearray(size)
        self.data = bytearray()
        self.hints: set[int] = set()
        self.transport: Any = None
        self.made = loop.create_future()
        self.eof = loop.create_future()
        self.lost = loop.create_future()
        self.events: list[str] = []

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.events.append("made")
        self.made.set_result(transport)

    def get_buffer(self, sizehint: int):
        self.hints.add(sizehint)
        return memoryview(self.buf)

    def buffer_updated(self, nbytes: int) -> None:
        assert 0 < nbytes <= len(self.buf)
        if self.events[-1] != "data":
            self.events.append("data")
        self.data += self.buf[:nbytes]

    def eof_received(self) -> None:
        self.events.append("eof")
        self.eof.set_result(None)

    def connection_lost(self, exc) -> None:
        self.events.append("lost")
        self.lost.set_result(exc)


def test_buffered_protocol_receives_everything(loop):
    data = payload(1_000_000, seed=9)
    protos: list[BufRecorder] = []

    def factory() -> BufRecorder:
        protos.append(BufRecorder(loop))
        return protos[-1]

    async def main() -> None:
        server = await loop.create_server(factory, HOST, 0)
        async with server:
            t, p = await loop.create_connection(
                lambda: Recorder(loop), HOST, server.sockets[0].getsockname()[1]
            )
            t.write(data)
            t.write_eof()
            [bp] = protos
            await bp.eof
            assert_same_bytes(bp.data, data)
            assert bp.events == ["made", "data", "eof"]
            assert await bp.lost is None
            assert bp.hints == {-1}
            await close_transport(t, p)

    run(loop, main())


def test_switch_to_buffered_protocol(loop):
    async def main() -> None:
        async with tcp_connection(loop) as c:
            c.client_t.write(b"plain")
            await c.server_p.wait_bytes(5)
            bp = BufRecorder(loop, size=3)
            bp.events.append("data")  # as if it had been there all along
            c.server_t.set_protocol(bp)
            c.client_t.write(b"buffered")
            await wait_for_condition(loop, lambda: len(bp.data) >= 8)
            assert bytes(bp.data) == b"buffered"
            c.server_t.set_protocol(c.server_p)

    run(loop, main())


def _server_protocol_lost_on_data(loop, protocol: type[BufRecorder]) -> BaseException | None:
    """Serves one connection with `protocol`, sends it a few bytes, and
    returns what its connection_lost() got, once both sides are closed."""
    protos: list[BufRecorder] = []

    def factory() -> BufRecorder:
        protos.append(protocol(loop))
        return protos[-1]

    async def main() -> BaseException | None:
        server = await loop.create_server(factory, HOST, 0)
        async with server:
            t, p = await loop.create_connection(
                lambda: Recorder(loop), HOST, server.sockets[0].getsockname()[1]
            )
            t.write(b"boom")
            [bp] = protos
            exc = await bp.lost
            await p.lost  # the server side closed the connection
            return exc

    return run(loop, main())


@pytest.mark.loop_errors
@pytest.mark.parametrize("method", ["get_buffer", "get_buffer_empty", "buffer_updated"])
def test_buffered_protocol_errors_are_fatal(loop, method):
    class Broken(BufRecorder):
        def get_buffer(self, sizehint):
            if method == "get_buffer":
                raise ZeroDivisionError(method)
            if method == "get_buffer_empty":
                return bytearray()
            return super().get_buffer(sizehint)

        def buffer_updated(self, nbytes):
            raise ZeroDivisionError(method)

    exc = _server_protocol_lost_on_data(loop, Broken)
    [ctx] = loop.handler_calls
    name = "get_buffer" if method.startswith("get_buffer") else method
    assert ctx["message"] == f"Fatal error: protocol.{name}() call failed."
    assert ctx["exception"] is exc
    expected = RuntimeError if method == "get_buffer_empty" else ZeroDivisionError
    assert isinstance(exc, expected)
    assert isinstance(ctx["protocol"], BufRecorder)


@pytest.mark.loop_errors
@pytest.mark.parametrize(
    "buffer",
    [b"read-only", memoryview(b"read-only"), memoryview(bytearray(64))[::2]],
    ids=["bytes", "read-only-view", "strided-view"],
)
def test_buffered_protocol_buffer_that_cannot_be_read_into_is_fatal(loop, buffer):
    """As recv_into() refuses it: TypeError, a read error, not the
    protocol's."""

    class Unwritable(BufRecorder):
        def get_buffer(self, sizehint):
            return buffer

    exc = _server_protocol_lost_on_data(loop, Unwritable)
    [ctx] = loop.handler_calls
    assert ctx["message"] == "Fatal read error on socket transport"
    assert isinstance(exc, TypeError)
    assert ctx["exception"] is exc


@pytest.mark.loop_errors
@pytest.mark.parametrize("method", ["data_received", "eof_received"])
def test_protocol_errors_are_fatal(loop, method):
    class Broken(Recorder):
        def data_received(self, data):
            if method == "data_received":
                raise ZeroDivisionError(method)
            super().data_received(data)

        def eof_received(self):
            super().eof_received()
            raise ZeroDivisionError(method)

    async def main() -> Exception:
        async with tcp_connection(loop, server_factory=lambda: Broken(loop)) as c:
            c.client_t.write(b"data")
            c.client_t.write_eof()
            exc = await c.server_p.lost
            await c.client_p.lost
            return exc

    exc = run(loop, main())
    [ctx] = loop.handler_calls
    assert ctx["message"] == f"Fatal error: protocol.{method}() call failed."
    assert isinstance(exc, ZeroDivisionError) and exc is ctx["exception"]
    assert isinstance(ctx["protocol"], Recorder)


# ---- what the protocol's callbacks see ------------------------------------------------

cvar: contextvars.ContextVar[str] = contextvars.ContextVar("cvar", default="outside")


class ContextRecorder(asyncio.Protocol):
    """Records the value of `cvar` each callback sees."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.seen: dict[str, str] = {}
        self.lost = loop.create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.seen["made"] = cvar.get()

    def data_received(self, data: bytes) -> None:
        self.seen.setdefault("data", cvar.get())

    def resume_writing(self) -> None:
        self.seen["resume"] = cvar.get()

    def eof_received(self) -> None:
        self.seen["eof"] = cvar.get()

    def connection_lost(self, exc: Exception | None) -> None:
        self.seen["lost"] = cvar.get()
        self.lost.set_result(exc)


def test_protocol_callbacks_run_in_the_context_they_were_set_up_in(loop):
    """As asyncio's add_reader()/add_writer() Handles: reading events run in
    (a copy of) the context that made the transport, writing events in the
    one that wrote when the buffer filled.  From 3.15 (gh-140947) every
    event runs in the transport's one context, a copy of its maker's."""
    a, b = socket.socketpair()

    async def fill_buffer(transport: Any) -> None:
        cvar.set("writer")
        transport.set_write_buffer_limits(high=256, low=128)
        while not transport.get_write_buffer_size():
            transport.write(b"q" * 65536)

    async def main() -> dict[str, str]:
        cvar.set("creator")
        t, p = await loop.create_connection(lambda: ContextRecorder(loop), sock=a)
        b.send(b"x")
        await wait_for_condition(loop, lambda: "data" in p.seen)
        await loop.create_task(fill_buffer(t))
        b.setblocking(False)
        while "resume" not in p.seen:
            with contextlib.suppress(BlockingIOError):
                while b.recv(1 << 20):
                    pass
            await asyncio.sleep(0.005)
        b.shutdown(socket.SHUT_WR)
        await p.lost
        return p.seen

    with b:
        seen = run(loop, main())
    assert seen == {
        "made": "creator",
        "data": "creator",
        "resume": "creator" if sys.version_info >= (3, 15) else "writer",
        "eof": "creator",
        "lost": "creator",
    }


def test_server_connections_run_in_copies_of_the_server_context(loop):
    """Each accepted connection starts from the context the server was made
    in, whatever was set after.  From 3.15 (gh-140947) all of a connection's
    events share one copy of it, so what connection_made() sets,
    data_received() sees; before, each callback ran in a copy of its own."""

    class Setter(ContextRecorder):
        number = 0

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            Setter.number += 1
            cvar.set(f"connection {Setter.number}")

    async def main() -> list[dict[str, str]]:
        protocols: list[Setter] = []

        def factory() -> Setter:
            protocols.append(Setter(loop))
            return protocols[-1]

        cvar.set("server made")
        server = await loop.create_server(factory, HOST, 0)
        cvar.set("after the server")
        async with server:
            port = server.sockets[0].getsockname()[1]
            for _ in range(2):
                _r, w = await asyncio.open_connection(HOST, port)
                w.write(b"x")
                await wait_for_condition(loop, lambda: "data" in protocols[-1].seen)
                w.close()
                await w.wait_closed()
                await protocols[-1].lost
        assert cvar.get() == "after the server"
        return [p.seen for p in protocols]

    seen = run(loop, main())
    if sys.version_info >= (3, 15):
        later = ["connection 1", "connection 2"]
    else:
        later = ["server made", "server made"]
    assert [(s["made"], s["data"], s["lost"]) for s in seen] == [
        ("server made", value, value) for value in later
    ]


def test_a_server_protocol_factory_runs_in_the_connections_context(loop):
    """What a server's protocol factory sets in the context, that
    connection's callbacks see, and neither the server nor the next
    connection does (stock makes each connection in a task, in a copy of
    the server's context; casyncio makes a plain one in the accept
    callback, in such a copy)."""
    seen: list[tuple[str, str]] = []

    class Recorder(ContextRecorder):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            transport.close()

    async def main() -> list[tuple[str, str]]:
        protocols: list[Recorder] = []

        def factory() -> Recorder:
            seen.append(("factory", cvar.get()))
            cvar.set(f"factory {len(protocols)}")
            protocols.append(Recorder(loop))
            return protocols[-1]

        cvar.set("server made")
        server = await loop.create_server(factory, HOST, 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            for _ in range(2):
                reader, w = await asyncio.open_connection(HOST, port)
                assert await reader.read() == b""
                w.close()
                await w.wait_closed()
                await protocols[-1].lost
        assert cvar.get() == "server made"
        return seen + [("made", p.seen["made"]) for p in protocols]

    assert run(loop, main()) == [
        ("factory", "server made"),
        ("factory", "server made"),
        ("made", "factory 0"),
        ("made", "factory 1"),
    ]


@pytest.mark.loop_errors
@pytest.mark.parametrize("debug", [False, True], ids=["normal", "debug"])
# Stock's unclosed socket, when the collector finds it (see below).
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_failing_server_protocol_factory_drops_that_connection(loop, debug):
    """A protocol factory that raises costs the server that one connection,
    and in debug mode the exception handler hears of it.  The server goes on
    accepting.  casyncio closes that connection's socket at once; stock
    leaves it to the garbage collector (its task's frame holds it, and in
    debug mode the report's cycle does), so the client's read is only
    awaited on casyncio."""
    reports: list[tuple[str, type]] = []
    calls = 0

    def factory() -> asyncio.Protocol:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("no protocol")
        return EchoOnce()

    class EchoOnce(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)
            self.transport.close()

    async def main() -> bytes:
        loop.set_debug(debug)
        loop.set_exception_handler(
            lambda lp, ctx: reports.append((ctx["message"], type(ctx.get("exception"))))
        )
        server = await loop.create_server(factory, HOST, 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            reader, w = await asyncio.open_connection(HOST, port)
            if is_casyncio(loop):
                with contextlib.suppress(ConnectionResetError):
                    assert await reader.read() == b""
            w.close()
            await w.wait_closed()
            reader, w = await asyncio.open_connection(HOST, port)
            w.write(b"ping")
            echoed = await reader.read()
            w.close()
            await w.wait_closed()
        return echoed

    assert run(loop, main()) == b"ping"
    expected = [("Error on transport creation for incoming connection", ValueError)]
    assert [r for r in reports if r[0].startswith("Error on transport")] == (
        expected if debug else []
    )


@pytest.mark.loop_errors
def test_protocol_without_data_received_fails_when_data_comes(loop):
    """asyncio looks data_received() up when data arrives: a protocol
    without one is connected, then ended by the AttributeError."""

    class NoDataReceived(asyncio.BaseProtocol):
        def __init__(self) -> None:
            self.events: list[str] = []
            self.lost = loop.create_future()

        def connection_made(self, transport: Any) -> None:
            self.events.append("made")

        def connection_lost(self, exc: Exception | None) -> None:
            self.events.append("lost")
            self.lost.set_result(exc)

    a, b = socket.socketpair()

    async def main() -> tuple[list[str], Exception | None]:
        _, p = await loop.create_connection(NoDataReceived, sock=a)
        b.send(b"x")
        return p.events, await p.lost

    with b:
        events, exc = run(loop, main())
    assert events == ["made", "lost"]
    assert isinstance(exc, AttributeError)
    [ctx] = loop.handler_calls
    assert ctx["message"] == "Fatal error: protocol.data_received() call failed."


def test_data_received_is_looked_up_at_each_call(loop):
    async def main() -> tuple[bytes, list[bytes]]:
        async with tcp_connection(loop) as c:
            c.client_t.write(b"first")
            await c.server_p.wait_bytes(5)
            later: list[bytes] = []
            c.server_p.data_received = later.append  # replaced on the instance
            c.client_t.write(b"second")
            await wait_for_condition(loop, lambda: bool(later))
            return bytes(c.server_p.data), later

    assert run(loop, main()) == (b"first", [b"second"])


# ---- servers ---------------------------------------------------------------------------


async def connect_and_echo(loop, address) -> Recorder:
    """Connect, check that the server accepted (its protocol saw us), and
    close again."""
    t, p = await loop.create_connection(lambda: Recorder(loop), *address[:2])
    t.write(b"hi")
    await close_transport(t, p)
    return p


def test_create_server_several_hosts(loop):
    accepted: list[Recorder] = []

    def factory() -> Recorder:
        accepted.append(Recorder(loop))
        return accepted[-1]

    async def main() -> None:
        server = await loop.create_server(factory, [HOST, "127.0.0.2"], 0)
        async with server:
            hosts = sorted(s.getsockname()[0] for s in server.sockets)
            assert hosts == [HOST, "127.0.0.2"]
            for s in server.sockets:
                await connect_and_echo(loop, s.getsockname())
            await wait_for_condition(
                loop, lambda: len(accepted) == 2 and all(p.lost.done() for p in accepted)
            )
            local = sorted(p.transport.get_extra_info("sockname")[0] for p in accepted)
            assert local == [HOST, "127.0.0.2"]

    run(loop, main())


@needs_ipv6
def test_create_server_ipv4_and_ipv6(loop):
    async def main() -> None:
        server = await loop.create_server(lambda: Recorder(loop), [HOST, "::1"], 0)
        async with server:
            families = sorted(s.family for s in server.sockets)
            assert families == [socket.AF_INET, socket.AF_INET6]
            for s in server.sockets:
                if s.family == socket.AF_INET6:
                    # One socket per family: the IPv6 one is IPv6-only.
                    assert s.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
                await connect_and_echo(loop, s.getsockname())

    run(loop, main())


def test_create_server_all_interfaces(loop):
    async def main() -> None:
        server = await loop.create_server(lambda: Recorder(loop), None, 0, family=socket.AF_INET)
        async with server:
            [s] = server.sockets
            assert s.getsockname()[0] == "0.0.0.0"
            await connect_and_echo(loop, (HOST, s.getsockname()[1]))

    run(loop, main())


@pytest.mark.parametrize("reuse", [None, True, False])
def test_create_server_reuse_address(loop, reuse):
    async def main() -> int:
        server = await loop.create_server(asyncio.Protocol, HOST, 0, reuse_address=reuse)
        async with server:
            return server.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)

    value = run(loop, main())
    # None means "the platform default": on for POSIX.
    assert bool(value) is (reuse is not False)


def test_create_server_reuse_port(loop):
    async def main() -> None:
        first = await loop.create_server(asyncio.Protocol, HOST, 0, reuse_port=True)
        async with first:
            sock = first.sockets[0]
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) != 0
            port = sock.getsockname()[1]
            second = await loop.create_server(asyncio.Protocol, HOST, port, reuse_port=True)
            async with second:
                assert second.sockets[0].getsockname()[1] == port
            with pytest.raises(OSError) as info:
                await loop.create_server(asyncio.Protocol, HOST, port)
            assert info.value.errno == errno.EADDRINUSE
            assert "error while attempting to bind on address" in str(info.value)

    run(loop, main())


@pytest.mark.parametrize("backlog", [None, 7])
def test_create_server_backlog(loop, monkeypatch, backlog):
    listened: list[int] = []
    original = socket.socket.listen

    def listen(self, *args):
        listened.extend(args)
        return original(self, *args)

    monkeypatch.setattr(socket.socket, "listen", listen)
    kwargs = {} if backlog is None else {"backlog": backlog}

    async def main() -> None:
        server = await loop.create_server(asyncio.Protocol, HOST, 0, **kwargs)
        async with server:
            pass

    run(loop, main())
    assert listened == [100 if backlog is None else backlog]


def test_create_server_start_serving_false(loop):
    async def main() -> None:
        server = await loop.create_server(lambda: Recorder(loop), HOST, 0, start_serving=False)
        async with server:
            assert not server.is_serving()
            address = server.sockets[0].getsockname()
            with pytest.raises(ConnectionRefusedError):
                await loop.create_connection(asyncio.Protocol, *address)
            await server.start_serving()
            assert server.is_serving()
            await server.start_serving()  # again: nothing
            await connect_and_echo(loop, address)

    run(loop, main())


def test_create_server_sock(loop):
    async def main() -> None:
        sock = socket.socket()
        sock.bind((HOST, 0))
        server = await loop.create_server(lambda: Recorder(loop), sock=sock)
        async with server:
            [s] = server.sockets
            assert s.fileno() == sock.fileno()
            assert sock.gettimeout() == 0
            await connect_and_echo(loop, sock.getsockname())
        assert sock.fileno() == -1  # closing the server closed it

    run(loop, main())


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({}, ValueError),
        ({"host": HOST, "port": 0, "sock": "stream"}, ValueError),
        ({"sock": "dgram"}, ValueError),
        ({"host": HOST, "port": 0, "ssl": True}, TypeError),
        ({"host": HOST, "port": 0, "ssl_handshake_timeout": 1}, ValueError),
        ({"host": HOST, "port": 0, "ssl_shutdown_timeout": 1}, ValueError),
    ],
    ids=[
        "nothing",
        "host-and-sock",
        "dgram-sock",
        "ssl-bool",
        "handshake-timeout",
        "shutdown-timeout",
    ],
)
def test_create_server_bad_arguments(loop, kwargs, exc):
    with contextlib.ExitStack() as stack:
        if "sock" in kwargs:
            kind = socket.SOCK_DGRAM if kwargs["sock"] == "dgram" else socket.SOCK_STREAM
            kwargs = {**kwargs, "sock": stack.enter_context(socket.socket(type=kind))}
        with pytest.raises(exc):
            run(loop, loop.create_server(asyncio.Protocol, **kwargs))


def test_server_object(loop):
    async def main() -> None:
        server = await loop.create_server(lambda: Recorder(loop), HOST, 0)
        assert issubclass(type(server), asyncio.AbstractServer)
        assert server.get_loop() is loop
        assert server.is_serving()
        [s] = server.sockets
        assert isinstance(s, TransportSocket)
        assert "sockets=" in repr(server)
        address = s.getsockname()
        await connect_and_echo(loop, address)
        server.close()
        assert not server.is_serving()
        assert server.sockets == ()
        await server.wait_closed()
        server.close()  # again: nothing
        with pytest.raises(ConnectionRefusedError):
            await loop.create_connection(asyncio.Protocol, *address)
        with pytest.raises(RuntimeError, match="is closed"):
            await server.serve_forever()

    run(loop, main())


def test_server_async_with(loop):
    async def main() -> None:
        server: Any
        async with await loop.create_server(asyncio.Protocol, HOST, 0) as server:
            assert server.is_serving()
            address = server.sockets[0].getsockname()
        assert not server.is_serving()
        assert server.sockets == ()
        with pytest.raises(ConnectionRefusedError):
            await loop.create_connection(asyncio.Protocol, *address)

    run(loop, main())


def test_serve_forever(loop):
    async def main() -> None:
        server = await loop.create_server(lambda: Recorder(loop), HOST, 0, start_serving=False)
        task = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)
        assert server.is_serving()
        await connect_and_echo(loop, server.sockets[0].getsockname())
        with pytest.raises(RuntimeError, match="already being awaited"):
            await server.serve_forever()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not server.is_serving()
        assert server.sockets == ()

    run(loop, main())


def test_wait_closed_waits_for_the_connections(loop):
    """wait_closed() awaited before close() finishes only when the server is
    closed and its last connection is gone: the transports detach from the
    server when they end."""

    async def main() -> None:
        async with tcp_connection(loop) as c:
            waiter = asyncio.ensure_future(c.server.wait_closed())
            await asyncio.sleep(0)
            c.server.close()
            for _ in range(5):
                await asyncio.sleep(0)
            assert not waiter.done()
            # The open connection still works after close().
            c.client_t.write(b"still here")
            assert await c.server_p.wait_bytes(10) == b"still here"
            c.client_t.close()
            await c.server_p.lost
            await asyncio.wait_for(waiter, 5)

    run(loop, main())


# ---- connect_accepted_socket -----------------------------------------------------------


def test_connect_accepted_socket(loop):
    async def main() -> None:
        with socket.socket() as lsock:
            lsock.bind((HOST, 0))
            lsock.listen(1)
            client = socket.create_connection(lsock.getsockname())
            with client:
                conn, _ = lsock.accept()
                t, p = await loop.connect_accepted_socket(lambda: Recorder(loop), conn)
                assert isinstance(t, asyncio.Transport)
                assert t.get_extra_info("peername") == client.getsockname()
                assert conn.gettimeout() == 0
                client.sendall(b"in")
                assert await p.wait_bytes(2) == b"in"
                t.write(b"out")
                await asyncio.sleep(0)  # casyncio sends a write when its callback returns
                assert client.recv(3) == b"out"
                await close_transport(t, p)
                assert client.recv(10) == b""

    run(loop, main())


@pytest.mark.parametrize(
    ("kind", "kwargs"),
    [(socket.SOCK_DGRAM, {}), (socket.SOCK_STREAM, {"ssl_handshake_timeout": 1})],
    ids=["dgram", "handshake-timeout-without-ssl"],
)
def test_connect_accepted_socket_bad_arguments(loop, kind, kwargs):
    with socket.socket(type=kind) as s, pytest.raises(ValueError):
        run(loop, loop.connect_accepted_socket(asyncio.Protocol, s, **kwargs))


# ---- a socket class with its own recv()/send() ---------------------------------
# asyncio's transports call the socket's methods; casyncio's make the system
# calls on the fd unless the socket's class overrides them (websockets'
# test_explicit_socket tracks a socket this way).


class TrackedSocket(socket.socket):
    """Counts what goes through recv(), recv_into(), send() and sendmsg()."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received = self.sent = 0
        self.calls: set[str] = set()

    def recv(self, *args: Any, **kwargs: Any) -> bytes:
        self.calls.add("recv")
        data = super().recv(*args, **kwargs)
        self.received += len(data)
        return data

    def recv_into(self, *args: Any, **kwargs: Any) -> int:
        self.calls.add("recv_into")
        n = super().recv_into(*args, **kwargs)
        self.received += n
        return n

    def send(self, *args: Any, **kwargs: Any) -> int:
        self.calls.add("send")
        n = super().send(*args, **kwargs)
        self.sent += n
        return n

    def sendmsg(self, *args: Any, **kwargs: Any) -> int:
        self.calls.add("sendmsg")
        n = super().sendmsg(*args, **kwargs)
        self.sent += n
        return n


class EchoProtocol(asyncio.Protocol):
    """Echoes what it gets; adds itself to `made`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, made: list[EchoProtocol]) -> None:
        self.lost = loop.create_future()
        made.append(self)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)


# From 3.12 on, asyncio sends its buffer and writelines() with sendmsg().
GATHERED_SEND = "sendmsg" if sys.version_info >= (3, 12) else "send"


@contextlib.asynccontextmanager
async def connected_to_echo(loop: asyncio.AbstractEventLoop, sock: socket.socket, factory: Any):
    """``sock`` connected to an echo server and a transport made on it:
    yields (transport, protocol); on leaving, closes the transport and waits
    until both ends are lost."""
    echoes: list[EchoProtocol] = []
    server = await loop.create_server(lambda: EchoProtocol(loop, echoes), HOST, 0)
    async with server:
        sock.connect(server.sockets[0].getsockname())
        t, p = await loop.create_connection(factory, sock=sock)
        yield t, p
        t.close()
        await p.lost
        await echoes[0].lost


@pytest.mark.parametrize("buffered", [False, True], ids=["protocol", "buffered"])
def test_a_socket_subclass_recv_and_send_are_called(loop, buffered):
    """A big write (queued behind small kernel buffers, so flushed later by
    the transport) and the echo of it go through the tracked socket's own
    methods, byte for byte: write() tries send(); the flush sends with
    send() before 3.12 and with sendmsg() from 3.12 on, as asyncio does."""
    data = payload(300_000, seed=7)

    async def main() -> None:
        sock = TrackedSocket(socket.AF_INET, socket.SOCK_STREAM)
        small_buffers(sock)
        factory: Callable[[], Any]
        if buffered:
            factory = lambda: Collector(loop, len(data))
        else:
            factory = lambda: Recorder(loop)
        async with connected_to_echo(loop, sock, factory) as (t, p):
            t.write(data)
            assert t.get_write_buffer_size() > 0  # the rest is flushed later
            got = await (p.done if buffered else p.wait_bytes(len(data)))
            assert_same_bytes(got, data)
            assert sock.sent == sock.received == len(data)
            assert sock.calls == {"send", GATHERED_SEND, "recv_into" if buffered else "recv"}

    run(loop, main())


def test_a_socket_subclass_writelines_goes_through_its_methods(loop):
    """writelines() on an idle connection sends with the socket's own
    sendmsg() from 3.12 on, and with its send() before, as asyncio does."""

    async def main() -> None:
        sock = TrackedSocket(socket.AF_INET, socket.SOCK_STREAM)
        async with connected_to_echo(loop, sock, lambda: Recorder(loop)) as (t, p):
            t.writelines([b"one ", b"two ", b"three"])
            assert await p.wait_bytes(13) == b"one two three"
            assert sock.sent == 13
            assert sock.calls - {"recv"} == {GATHERED_SEND}

    run(loop, main())


class SocketWrapper:
    """A socket-like object that is no socket.socket: it hands every
    attribute on to the socket it wraps, and notes the I/O methods taken
    (aioesphomeapi's tests give the loop a mock socket of this kind)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.calls: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        if name in {"recv", "recv_into", "send", "sendmsg", "recvfrom", "sendto"}:
            self.calls.add(name)
        return getattr(self._sock, name)


@pytest.mark.parametrize("buffered", [False, True], ids=["protocol", "buffered"])
def test_a_socket_like_object_carries_a_connection(loop, buffered):
    """create_connection(sock=) takes an object that only has a socket's
    methods, as asyncio does, and its transport reads and writes through
    them."""
    data = payload(50_000, seed=3)

    async def main() -> None:
        sock = SocketWrapper(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        factory: Callable[[], Any]
        if buffered:
            factory = lambda: Collector(loop, len(data))
        else:
            factory = lambda: Recorder(loop)
        async with connected_to_echo(loop, sock, factory) as (t, p):  # type: ignore[arg-type]
            t.write(data)
            got = await (p.done if buffered else p.wait_bytes(len(data)))
            assert_same_bytes(got, data)
            assert "send" in sock.calls
            assert ("recv_into" if buffered else "recv") in sock.calls

    run(loop, main())


def test_a_socket_subclass_recv_error_ends_the_connection(loop):
    """What the overridden recv() raises reaches connection_lost(), as a
    failing recv(2) would; a BlockingIOError from it only means "later"."""

    class FlakySocket(socket.socket):
        attempts = 0

        def recv(self, *args: Any, **kwargs: Any) -> bytes:
            FlakySocket.attempts += 1
            if FlakySocket.attempts == 1:
                raise BlockingIOError
            raise ConnectionResetError("reset by the test")

    async def main() -> None:
        sock = FlakySocket(socket.AF_INET, socket.SOCK_STREAM)
        async with connected_to_echo(loop, sock, lambda: Recorder(loop)) as (t, p):
            t.write(b"ping")  # the echo makes the socket readable
            exc = await p.lost
            assert isinstance(exc, ConnectionResetError)
            assert str(exc) == "reset by the test"
            assert FlakySocket.attempts >= 2
            assert p.data == b""

    run(loop, main())
