"""The loop's low-level socket operations (sock_recv, sock_recv_into,
sock_recvfrom, sock_recvfrom_into, sock_sendall, sock_sendto, sock_connect,
sock_accept) and address resolution (getaddrinfo, getnameinfo), on casyncio
and on stock asyncio.  sock_sendfile is in test_net_sendfile.py; closed
loops, blocking sockets and wrong argument types in test_net_faults.py."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Iterator

import pytest
from net_helpers import (
    HOST,
    assert_same_bytes,
    is_casyncio,
    needs_ipv6,
    no_fd_leak,  # noqa: F401  (fixture, applied below)
    payload,
    refused_port,
    run,
    small_buffers,
)

pytestmark = pytest.mark.usefixtures("no_fd_leak")


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


@pytest.fixture
def udp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for s in (a, b):
            s.setblocking(False)
            s.bind((HOST, 0))
        yield a, b
    finally:
        a.close()
        b.close()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    s = socket.socket()
    try:
        s.bind((HOST, 0))
        s.listen(8)
        s.setblocking(False)
        yield s
    finally:
        s.close()


# ---- sock_recv / sock_sendall ------------------------------------------------


def test_sock_recv_data_already_there(loop, pair):
    a, b = pair
    b.send(b"ready")
    assert run(loop, loop.sock_recv(a, 100)) == b"ready"


def test_sock_recv_waits_for_data(loop, pair):
    a, b = pair

    async def main() -> bytes:
        task = asyncio.ensure_future(loop.sock_recv(a, 100))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert not task.done()
        b.send(b"later")
        return await task

    assert run(loop, main()) == b"later"


def test_sock_recv_returns_at_most_n_bytes_and_keeps_the_rest(loop, pair):
    a, b = pair
    b.send(b"0123456789")

    async def main() -> list[bytes]:
        return [await loop.sock_recv(a, 4), await loop.sock_recv(a, 4), await loop.sock_recv(a, 4)]

    assert run(loop, main()) == [b"0123", b"4567", b"89"]


def test_sock_recv_large_n(loop, pair):
    # More than any internal read buffer: the whole of what arrived comes back.
    a, b = pair
    data = payload(200_000)

    async def main() -> bytes:
        got = bytearray()
        send = asyncio.ensure_future(loop.sock_sendall(b, data))
        while len(got) < len(data):
            chunk = await loop.sock_recv(a, 1 << 20)
            assert chunk
            got += chunk
        await send
        return bytes(got)

    assert_same_bytes(run(loop, main()), data)


def test_sock_recv_after_a_big_read_still_takes_at_most_n(loop, pair):
    # After a read of 32 KiB or more, casyncio reads the socket's next one
    # straight into a bytes object sized by what the kernel has queued: n
    # still caps it, and a small read after it goes back to the usual path.
    a, b = pair
    data = payload(100_000, seed=3)
    assert b.send(data) == len(data)

    async def main() -> list[bytes]:
        return [
            await loop.sock_recv(a, 50_000),
            await loop.sock_recv(a, 1000),
            await loop.sock_recv(a, 1 << 20),
        ]

    chunks = run(loop, main())
    assert [len(c) for c in chunks] == [50_000, 1000, 49_000]
    assert_same_bytes(b"".join(chunks), data)


def test_sock_recv_empty_at_eof(loop, pair):
    a, b = pair
    b.shutdown(socket.SHUT_WR)
    assert run(loop, loop.sock_recv(a, 10)) == b""


def test_sock_recv_zero_bytes(loop, pair):
    a, b = pair
    b.send(b"x")
    assert run(loop, loop.sock_recv(a, 0)) == b""


def test_zero_byte_receives_with_nothing_queued_return_at_once(loop, pair):
    """As socket.recv(0) and recv_into() of an empty buffer do: no wait
    for data that was not asked for."""
    a, _ = pair

    async def both() -> tuple[bytes, int]:
        data = await asyncio.wait_for(loop.sock_recv(a, 0), 5)
        count = await asyncio.wait_for(loop.sock_recv_into(a, bytearray(0)), 5)
        return data, count

    assert run(loop, both()) == (b"", 0)


def test_sock_recv_cancelled_leaves_data_for_the_next_call(loop, pair):
    a, b = pair

    async def main() -> bytes:
        task = asyncio.ensure_future(loop.sock_recv(a, 100))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        b.send(b"kept")
        # The cancelled operation must not have swallowed this.
        return await loop.sock_recv(a, 100)

    assert run(loop, main()) == b"kept"


def test_sock_recv_wait_for_timeout_then_socket_still_usable(loop, pair):
    a, b = pair

    async def main() -> bytes:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(loop.sock_recv(a, 10), 0.01)
        # Nothing of the timed-out operation watches the fd any more.
        assert not loop.remove_reader(a.fileno())
        b.send(b"after")
        return await loop.sock_recv(a, 10)

    assert run(loop, main()) == b"after"


def test_sock_recv_connection_reset(loop, listener):
    async def main() -> None:
        client = socket.socket()
        client.setblocking(False)
        try:
            await loop.sock_connect(client, listener.getsockname())
            conn, _ = await loop.sock_accept(listener)
            with conn:
                # SO_LINGER 0: close() sends a RST.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                conn.close()
                with pytest.raises(ConnectionResetError):
                    await loop.sock_recv(client, 10)
        finally:
            client.close()

    run(loop, main())


def test_sock_sendall_small(loop, pair):
    a, b = pair
    assert run(loop, loop.sock_sendall(a, b"hello")) is None
    assert b.recv(100) == b"hello"


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_sock_sendall_accepts_buffers(loop, pair, kind):
    a, b = pair
    run(loop, loop.sock_sendall(a, kind(b"buffer")))
    assert b.recv(100) == b"buffer"


def test_sock_sendall_empty(loop, pair):
    a, _b = pair
    assert run(loop, loop.sock_sendall(a, b"")) is None


@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_DGRAM], ids=["tcp", "udp"])
def test_sock_sendall_empty_on_an_unconnected_socket_fails_as_send_does(loop, kind):
    with socket.socket(socket.AF_INET, kind) as s:
        s.setblocking(False)
        with pytest.raises(OSError) as direct:
            s.send(b"")
        with pytest.raises(type(direct.value)) as info:
            run(loop, loop.sock_sendall(s, b""))
        assert info.value.errno == direct.value.errno


def test_sock_sendall_more_than_the_kernel_takes(loop, pair):
    # The send blocks part way: the rest goes out as the reader drains.
    a, b = pair
    small_buffers(a)
    small_buffers(b)
    data = payload(2_000_000, seed=3)

    async def main() -> bytes:
        send = asyncio.ensure_future(loop.sock_sendall(a, data))
        await asyncio.sleep(0)
        assert not send.done()  # it had to wait for the reader
        got = bytearray()
        while len(got) < len(data):
            got += await loop.sock_recv(b, 65536)
        await send
        return bytes(got)

    assert_same_bytes(run(loop, main()), data)


def test_sock_sendall_to_a_closed_peer(loop, pair):
    a, b = pair
    b.close()

    async def main() -> None:
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for _ in range(100):
                await loop.sock_sendall(a, b"x" * 65536)

    run(loop, main())


def test_sock_sendall_cancelled_stops_sending(loop, pair):
    a, b = pair
    small_buffers(a)
    small_buffers(b)

    async def main() -> None:
        send = asyncio.ensure_future(loop.sock_sendall(a, b"x" * 4_000_000))
        await asyncio.sleep(0)
        assert not send.done()
        send.cancel()
        with pytest.raises(asyncio.CancelledError):
            await send
        # The fd is not watched for writing any more.
        assert not loop.remove_writer(a.fileno())

    run(loop, main())


# ---- sock_recv_into ------------------------------------------------------------


def test_sock_recv_into_bytearray(loop, pair):
    a, b = pair
    b.send(b"abcdef")
    buf = bytearray(10)
    assert run(loop, loop.sock_recv_into(a, buf)) == 6
    assert buf == b"abcdef\0\0\0\0"


def test_sock_recv_into_memoryview_slice_waits(loop, pair):
    a, b = pair
    buf = bytearray(b"..........")

    async def main() -> int:
        task = asyncio.ensure_future(loop.sock_recv_into(a, memoryview(buf)[2:5]))
        await asyncio.sleep(0)
        assert not task.done()
        b.send(b"XYZW")
        return await task

    assert run(loop, main()) == 3
    assert buf == b"..XYZ....."


def test_sock_recv_into_at_eof(loop, pair):
    a, b = pair
    b.shutdown(socket.SHUT_WR)
    assert run(loop, loop.sock_recv_into(a, bytearray(4))) == 0


# ---- datagrams: sock_sendto / sock_recvfrom / sock_recvfrom_into ---------------


def test_sock_sendto_and_recvfrom(loop, udp_pair):
    a, b = udp_pair

    async def main() -> tuple[int, tuple[bytes, tuple]]:
        sent = await loop.sock_sendto(a, b"datagram", b.getsockname())
        return sent, await loop.sock_recvfrom(b, 100)

    sent, (data, addr) = run(loop, main())
    assert sent == 8
    assert data == b"datagram"
    assert addr == a.getsockname()


def test_sock_recvfrom_waits_and_truncates(loop, udp_pair):
    a, b = udp_pair

    async def main() -> tuple[bytes, tuple]:
        task = asyncio.ensure_future(loop.sock_recvfrom(b, 4))
        await asyncio.sleep(0)
        assert not task.done()
        a.sendto(b"longer than four", b.getsockname())
        return await task

    data, addr = run(loop, main())
    assert data == b"long"
    assert addr == a.getsockname()


def test_sock_recvfrom_into(loop, udp_pair):
    a, b = udp_pair
    buf = bytearray(16)

    async def main() -> tuple[int, tuple]:
        task = asyncio.ensure_future(loop.sock_recvfrom_into(b, buf))
        await asyncio.sleep(0)
        assert not task.done()
        a.sendto(b"into", b.getsockname())
        return await task

    n, addr = run(loop, main())
    assert (n, bytes(buf[:n]), addr) == (4, b"into", a.getsockname())


def test_sock_recvfrom_into_nbytes(loop, udp_pair):
    a, b = udp_pair
    a.sendto(b"0123456789", b.getsockname())
    buf = bytearray(10)
    n, addr = run(loop, loop.sock_recvfrom_into(b, buf, 3))
    assert (n, bytes(buf), addr) == (3, b"012\0\0\0\0\0\0\0", a.getsockname())


@needs_ipv6
def test_sock_sendto_recvfrom_ipv6(loop):
    a = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    with a, b:
        for s in (a, b):
            s.setblocking(False)
            s.bind(("::1", 0))

        async def main() -> tuple[bytes, tuple]:
            await loop.sock_sendto(a, b"six", b.getsockname())
            return await loop.sock_recvfrom(b, 10)

        data, addr = run(loop, main())
        assert data == b"six"
        assert addr[:2] == a.getsockname()[:2]


def test_sock_sendto_unix_datagram(loop, tmp_path):
    path = str(tmp_path / "dgram.sock")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    with rx, tx:
        rx.bind(path)
        rx.setblocking(False)
        tx.setblocking(False)

        async def main() -> tuple[int, bytes]:
            sent = await loop.sock_sendto(tx, b"unix", path)
            data, _addr = await loop.sock_recvfrom(rx, 10)
            return sent, data

        assert run(loop, main()) == (4, b"unix")


# ---- sock_connect / sock_accept --------------------------------------------------


def test_sock_connect_and_accept(loop, listener):
    async def main() -> None:
        client = socket.socket()
        client.setblocking(False)
        with client:
            accept = asyncio.ensure_future(loop.sock_accept(listener))
            await asyncio.sleep(0)
            assert not accept.done()
            assert await loop.sock_connect(client, listener.getsockname()) is None
            conn, addr = await accept
            with conn:
                assert addr == client.getsockname()
                assert conn.getpeername() == client.getsockname()
                # asyncio hands out the accepted socket non-blocking.
                assert conn.gettimeout() == 0
                await loop.sock_sendall(client, b"ping")
                assert await loop.sock_recv(conn, 10) == b"ping"
                await loop.sock_sendall(conn, b"pong")
                assert await loop.sock_recv(client, 10) == b"pong"

    run(loop, main())


def test_sock_accept_connection_already_waiting(loop, listener):
    client = socket.create_connection(listener.getsockname())
    with client:
        conn, addr = run(loop, loop.sock_accept(listener))
        with conn:
            assert addr == client.getsockname()
            assert conn.gettimeout() == 0


def test_sock_accept_cancelled(loop, listener):
    async def main() -> None:
        task = asyncio.ensure_future(loop.sock_accept(listener))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not loop.remove_reader(listener.fileno())
        # The connection that arrives later goes to the next accept.
        client = socket.socket()
        client.setblocking(False)
        with client:
            await loop.sock_connect(client, listener.getsockname())
            conn, _ = await loop.sock_accept(listener)
            conn.close()

    run(loop, main())


def test_sock_connect_refused(loop):
    async def main() -> None:
        with refused_port() as port, socket.socket() as s:
            s.setblocking(False)
            with pytest.raises(ConnectionRefusedError) as info:
                await loop.sock_connect(s, (HOST, port))
            assert info.value.errno == errno.ECONNREFUSED

    run(loop, main())


def test_sock_connect_resolves_a_host_name(loop, listener):
    # "localhost" is not numeric: it goes through getaddrinfo().
    async def main() -> None:
        with socket.socket() as s:
            s.setblocking(False)
            await loop.sock_connect(s, ("localhost", listener.getsockname()[1]))
            assert s.getpeername() == listener.getsockname()
            conn, _ = await loop.sock_accept(listener)
            conn.close()

    run(loop, main())


@needs_ipv6
def test_sock_connect_and_accept_ipv6(loop):
    async def main() -> None:
        with socket.socket(socket.AF_INET6) as lsock, socket.socket(socket.AF_INET6) as c:
            lsock.bind(("::1", 0))
            lsock.listen(1)
            lsock.setblocking(False)
            c.setblocking(False)
            # The full (host, port, flowinfo, scope_id) form.
            await loop.sock_connect(c, ("::1", lsock.getsockname()[1], 0, 0))
            conn, addr = await loop.sock_accept(lsock)
            with conn:
                assert addr[:2] == c.getsockname()[:2]

    run(loop, main())


def test_sock_connect_and_accept_unix(loop, tmp_path):
    path = str(tmp_path / "s.sock")

    async def main() -> None:
        with socket.socket(socket.AF_UNIX) as lsock, socket.socket(socket.AF_UNIX) as c:
            lsock.bind(path)
            lsock.listen(1)
            lsock.setblocking(False)
            c.setblocking(False)
            await loop.sock_connect(c, path)
            conn, _addr = await loop.sock_accept(lsock)
            with conn:
                await loop.sock_sendall(c, b"unix")
                assert await loop.sock_recv(conn, 10) == b"unix"

    run(loop, main())


def test_sock_connect_unix_missing_path(loop, tmp_path):
    async def main() -> None:
        with socket.socket(socket.AF_UNIX) as c:
            c.setblocking(False)
            with pytest.raises(FileNotFoundError):
                await loop.sock_connect(c, str(tmp_path / "absent"))

    run(loop, main())


# ---- getaddrinfo / getnameinfo -------------------------------------------------


def _count_executor_calls(loop, monkeypatch) -> list[tuple]:
    """Record every run_in_executor() call the loop makes."""
    calls: list[tuple] = []
    original = loop.run_in_executor

    def spy(executor, func, *args):
        calls.append((func, args))
        return original(executor, func, *args)

    monkeypatch.setattr(loop, "run_in_executor", spy)
    return calls


GAI_CASES = [
    pytest.param((HOST, 80), {"type": socket.SOCK_STREAM}, id="ipv4-int-port"),
    pytest.param(
        (HOST, "8080"),
        {"family": socket.AF_INET, "type": socket.SOCK_DGRAM},
        id="ipv4-str-port-dgram",
    ),
    pytest.param((b"127.0.0.1", 0), {"type": socket.SOCK_STREAM}, id="bytes-host"),
    pytest.param(
        (None, 0),
        {"family": socket.AF_INET, "type": socket.SOCK_STREAM, "flags": socket.AI_PASSIVE},
        id="none-host-passive",
    ),
    pytest.param((HOST, None), {"type": socket.SOCK_STREAM}, id="no-port"),
    pytest.param(("::1", 443), {"type": socket.SOCK_STREAM}, id="ipv6", marks=needs_ipv6),
    pytest.param((HOST, 80), {"type": socket.SOCK_STREAM, "proto": socket.IPPROTO_TCP}, id="proto"),
    pytest.param(
        (HOST, 80), {"type": socket.SOCK_STREAM, "flags": socket.AI_CANONNAME}, id="canonname"
    ),
]


@pytest.mark.parametrize(("address", "kwargs"), GAI_CASES)
def test_getaddrinfo_numeric_matches_socket_module(loop, address, kwargs):
    expected = socket.getaddrinfo(*address, **kwargs)
    assert run(loop, loop.getaddrinfo(*address, **kwargs)) == expected


@pytest.mark.parametrize(("address", "kwargs"), GAI_CASES)
def test_getaddrinfo_numeric_host_executor_use(loop, monkeypatch, address, kwargs):
    """casyncio answers numeric hosts and ports without the executor.  Stock
    asyncio's getaddrinfo() always runs socket.getaddrinfo in the default
    executor (it only short-circuits numeric addresses inside
    create_connection & co, see test_create_connection_numeric_host_no_executor
    in test_net_tcp.py), so there the call is expected."""
    calls = _count_executor_calls(loop, monkeypatch)
    run(loop, loop.getaddrinfo(*address, **kwargs))
    if is_casyncio(loop):
        assert calls == []
        assert loop._default_executor is None
    else:
        # (In debug mode asyncio runs a timing wrapper of socket.getaddrinfo.)
        assert [args[:2] for _, args in calls] == [address]


def _gai_outcome(call) -> tuple:
    """A getaddrinfo() call's result, or the type and args of what it raised
    (gaierror's args are its errno and message)."""
    try:
        return ("ok", call())
    except OSError as exc:
        return ("raised", type(exc), exc.args)


# Ports and hosts at the edges of what the numeric fast path may answer: each
# must give exactly what socket.getaddrinfo() gives, error or addresses.
GAI_EDGE_CASES = [
    pytest.param((None, None), {}, id="no-host-no-port"),
    pytest.param((None, None), {"type": socket.SOCK_STREAM}, id="no-host-no-port-stream"),
    pytest.param(("", None), {}, id="empty-host-no-port"),
    pytest.param((None, ""), {}, id="no-host-empty-port"),
    pytest.param((None, b""), {"type": socket.SOCK_STREAM}, id="no-host-empty-bytes-port"),
    pytest.param((None, None), {"flags": socket.AI_PASSIVE}, id="no-host-no-port-passive"),
    pytest.param((HOST, ""), {"type": socket.SOCK_STREAM}, id="empty-port"),
    pytest.param((HOST, " 80"), {"type": socket.SOCK_STREAM}, id="port-leading-space"),
    pytest.param((HOST, "8_0"), {"type": socket.SOCK_STREAM}, id="port-underscore"),
    pytest.param((HOST, 80.0), {"type": socket.SOCK_STREAM}, id="float-port"),
    pytest.param((HOST, True), {"type": socket.SOCK_STREAM}, id="bool-port"),
    pytest.param((HOST, 70000), {"type": socket.SOCK_STREAM}, id="port-out-of-range"),
    pytest.param((HOST, -1), {"type": socket.SOCK_STREAM}, id="negative-port"),
]


@pytest.mark.parametrize(("address", "kwargs"), GAI_EDGE_CASES)
def test_getaddrinfo_edge_cases_match_socket_module(loop, address, kwargs):
    expected = _gai_outcome(lambda: socket.getaddrinfo(*address, **kwargs))
    assert _gai_outcome(lambda: run(loop, loop.getaddrinfo(*address, **kwargs))) == expected


def test_getaddrinfo_host_name_uses_the_executor(loop, monkeypatch):
    calls = _count_executor_calls(loop, monkeypatch)
    infos = run(loop, loop.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM))
    assert infos == socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
    assert [args[:2] for _, args in calls] == [("localhost", 80)]


def test_getaddrinfo_service_name(loop):
    infos = run(loop, loop.getaddrinfo(HOST, "http", type=socket.SOCK_STREAM))
    assert [info[4] for info in infos] == [(HOST, 80)]


def test_getaddrinfo_error(loop):
    with pytest.raises(socket.gaierror):
        run(loop, loop.getaddrinfo(HOST, "no-such-service-xyz", type=socket.SOCK_STREAM))


def test_getnameinfo(loop):
    flags = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
    assert run(loop, loop.getnameinfo((HOST, 80), flags)) == (HOST, "80")


def test_getnameinfo_runs_in_the_executor(loop, monkeypatch):
    calls = _count_executor_calls(loop, monkeypatch)
    result = run(loop, loop.getnameinfo((HOST, 80)))
    assert result == socket.getnameinfo((HOST, 80), 0)
    assert [func for func, _ in calls] == [socket.getnameinfo]


def test_getnameinfo_bad_argument(loop):
    with pytest.raises(TypeError):
        run(loop, loop.getnameinfo("not a tuple"))


# ---- a socket that belongs to a transport -------------------------------------


@pytest.mark.parametrize("op", ["sock_recv", "add_reader", "add_writer", "remove_reader"])
def test_fd_used_by_a_transport(loop, op):
    """The fd of a transport cannot be watched or read by anyone else."""

    async def main() -> None:
        server = await loop.create_server(asyncio.Protocol, HOST, 0)
        async with server:
            sock = socket.create_connection(server.sockets[0].getsockname())
            t, _p = await loop.create_connection(asyncio.Protocol, sock=sock)
            calls = {
                "sock_recv": lambda: loop.sock_recv(sock, 10),
                "add_reader": lambda: loop.add_reader(sock.fileno(), print),
                "add_writer": lambda: loop.add_writer(sock, print),
                "remove_reader": lambda: loop.remove_reader(sock.fileno()),
            }
            try:
                with pytest.raises(RuntimeError, match="is used by transport"):
                    result = calls[op]()
                    if asyncio.iscoroutine(result):
                        await result
            finally:
                t.close()
                await asyncio.sleep(0)

    run(loop, main())
