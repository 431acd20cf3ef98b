"""Unix stream sockets: create_unix_server, create_unix_connection and
their transports, on casyncio and on stock asyncio."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import stat
from pathlib import Path

import pytest
from net_helpers import (
    Recorder,
    assert_same_bytes,
    close_transport,
    kept_connections,
    no_fd_leak,  # noqa: F401  (fixture, applied below)
    payload,
    run,
    wait_for_condition,
)

import casyncio

pytestmark = pytest.mark.usefixtures("no_fd_leak")


def test_unix_round_trip(loop, tmp_path):
    path = tmp_path / "srv.sock"
    accepted: list[Recorder] = []

    def factory() -> Recorder:
        accepted.append(Recorder(loop))
        return accepted[-1]

    async def main() -> None:
        server = await loop.create_unix_server(factory, str(path))
        async with server:
            assert stat.S_ISSOCK(os.stat(path).st_mode)
            [s] = server.sockets
            assert s.family == socket.AF_UNIX
            assert s.getsockname() == str(path)
            t, p = await loop.create_unix_connection(lambda: Recorder(loop), str(path))
            assert isinstance(t, asyncio.Transport)
            assert t.get_extra_info("peername") == str(path)
            t.write(b"over unix")
            await wait_for_condition(loop, lambda: len(accepted) == 1)
            sp = accepted[0]
            assert await sp.wait_bytes(9) == b"over unix"
            assert sp.transport.get_extra_info("sockname") == str(path)
            sp.transport.write(b"reply")
            assert await p.wait_bytes(5) == b"reply"
            await close_transport(t, p)
            await sp.lost
            assert sp.events == ["made", "data", "eof", "lost"]

    run(loop, main())


def test_unix_path_like_and_large_transfer(loop, tmp_path):
    path: Path = tmp_path / "pathlike.sock"
    data = payload(3_000_000, seed=11)
    accepted: list[Recorder] = []

    def factory() -> Recorder:
        accepted.append(Recorder(loop))
        return accepted[-1]

    async def main() -> None:
        server = await loop.create_unix_server(factory, path)
        async with server:
            t, p = await loop.create_unix_connection(lambda: Recorder(loop), path)
            t.write(data)
            t.write_eof()
            await wait_for_condition(loop, lambda: len(accepted) == 1)
            await accepted[0].eof
            assert_same_bytes(accepted[0].data, data)
            await close_transport(t, p)

    run(loop, main())


@pytest.mark.parametrize("client_name", ["unnamed", "abstract"])
def test_unix_accepted_connection_address_and_blocking(loop, tmp_path, client_name):
    # What an accepted Unix connection reports as its peer, as the socket
    # module's accept() gives it: '' for a client that bound no name, bytes
    # for one bound in Linux's abstract namespace.  Its socket is
    # non-blocking, in Python's eyes and at the fd.
    path = str(tmp_path / "srv.sock")

    async def main() -> None:
        async with kept_connections(lambda keep: loop.create_unix_server(keep, path)) as (
            _,
            accepted,
        ):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                if client_name == "abstract":
                    client.bind(b"\0casyncio-test-" + str(os.getpid()).encode())
                client.connect(path)
                await wait_for_condition(loop, lambda: len(accepted) == 1)
                [t] = accepted
                assert t.get_extra_info("peername") == client.getsockname()
                assert type(t.get_extra_info("peername")) is type(client.getsockname())
                sock = t.get_extra_info("socket")
                assert sock.gettimeout() == 0 and not os.get_blocking(sock.fileno())
                assert sock.family is socket.AF_UNIX and sock.type is socket.SOCK_STREAM

    run(loop, main())


def test_unix_transport_no_tcp_options(loop, tmp_path):
    # TCP_NODELAY is for TCP only: a Unix transport is made without trying.
    path = str(tmp_path / "nodelay.sock")

    async def main() -> None:
        server = await loop.create_unix_server(asyncio.Protocol, path)
        async with server:
            t, p = await loop.create_unix_connection(lambda: Recorder(loop), path)
            sock = t.get_extra_info("socket")
            assert sock.family == socket.AF_UNIX
            assert t.can_write_eof()
            await close_transport(t, p)

    run(loop, main())


def test_unix_connection_sock(loop, tmp_path):
    path = str(tmp_path / "sock.sock")

    async def main() -> None:
        server = await loop.create_unix_server(lambda: Recorder(loop), path)
        async with server:
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(path)
            t, p = await loop.create_unix_connection(lambda: Recorder(loop), sock=sock)
            assert sock.gettimeout() == 0
            assert t.get_extra_info("socket").fileno() == sock.fileno()
            await close_transport(t, p)
            assert sock.fileno() == -1

    run(loop, main())


def test_unix_server_sock(loop, tmp_path):
    path = str(tmp_path / "pre.sock")

    async def main() -> None:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(path)
        server = await loop.create_unix_server(lambda: Recorder(loop), sock=sock)
        async with server:
            assert server.sockets[0].fileno() == sock.fileno()
            t, p = await loop.create_unix_connection(lambda: Recorder(loop), path)
            await close_transport(t, p)

    run(loop, main())


def test_unix_server_replaces_a_stale_socket_file(loop, tmp_path):
    path = str(tmp_path / "stale.sock")
    with socket.socket(socket.AF_UNIX) as old:
        old.bind(path)  # left behind, as by a crashed process

    async def main() -> None:
        server = await loop.create_unix_server(lambda: Recorder(loop), path)
        async with server:
            t, p = await loop.create_unix_connection(lambda: Recorder(loop), path)
            await close_transport(t, p)

    run(loop, main())


def test_unix_server_on_a_path_taken_by_a_file(loop, tmp_path):
    path = tmp_path / "taken"
    path.write_bytes(b"not a socket")

    with pytest.raises(OSError, match="already in use") as info:
        run(loop, loop.create_unix_server(asyncio.Protocol, str(path)))
    assert info.value.errno == errno.EADDRINUSE
    assert path.read_bytes() == b"not a socket"  # left alone
    # no_fd_leak: the socket made for it was closed


def test_unix_server_on_a_fresh_path_does_not_stat_it(tmp_path, monkeypatch):
    """casyncio looks for a stale socket file only once bind() found the
    path taken (stock asyncio stat()s first): one syscall fewer, and none
    that a blocking-call detector (blockbuster) flags."""
    path = str(tmp_path / "fresh.sock")
    looked_at: list[object] = []
    real_stat = os.stat

    def spy(target, *args, **kwargs):
        looked_at.append(target)
        return real_stat(target, *args, **kwargs)

    monkeypatch.setattr(os, "stat", spy)
    loop = casyncio.new_event_loop()

    async def main() -> None:
        server = await loop.create_unix_server(asyncio.Protocol, path)
        server.close()
        await server.wait_closed()

    try:
        run(loop, main())
    finally:
        loop.close()
    assert path not in looked_at


def test_unix_server_start_serving_false(loop, tmp_path):
    path = str(tmp_path / "later.sock")

    async def main() -> None:
        server = await loop.create_unix_server(lambda: Recorder(loop), path, start_serving=False)
        async with server:
            assert not server.is_serving()
            with pytest.raises(ConnectionRefusedError):
                await loop.create_unix_connection(asyncio.Protocol, path)
            await server.start_serving()
            assert server.is_serving()
            t, p = await loop.create_unix_connection(lambda: Recorder(loop), path)
            await close_transport(t, p)

    run(loop, main())


def test_unix_abstract_namespace(loop):
    name = f"\0casyncio-test-{os.getpid()}-{id(loop)}"

    async def main() -> None:
        server = await loop.create_unix_server(lambda: Recorder(loop), name)
        async with server:
            t, p = await loop.create_unix_connection(lambda: Recorder(loop), name)
            t.write(b"abstract")
            await close_transport(t, p)

    run(loop, main())


def test_unix_write_eof_and_half_close(loop, tmp_path):
    path = str(tmp_path / "half.sock")
    accepted: list[Recorder] = []

    def factory() -> Recorder:
        accepted.append(Recorder(loop, keep_open_on_eof=True))
        return accepted[-1]

    async def main() -> None:
        server = await loop.create_unix_server(factory, path)
        async with server:
            t, p = await loop.create_unix_connection(lambda: Recorder(loop), path)
            t.write(b"request")
            t.write_eof()
            await wait_for_condition(loop, lambda: len(accepted) == 1)
            sp = accepted[0]
            await sp.eof
            sp.transport.write(b"response")
            sp.transport.close()
            await p.eof
            assert p.data == b"response"
            assert await p.lost is None
            assert await sp.lost is None

    run(loop, main())


def test_unix_connection_missing_path(loop, tmp_path):
    with pytest.raises(FileNotFoundError):
        run(loop, loop.create_unix_connection(asyncio.Protocol, str(tmp_path / "none")))


def test_unix_connection_not_a_listener(loop, tmp_path):
    path = str(tmp_path / "bound-only.sock")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(path)
        with pytest.raises(ConnectionRefusedError):
            run(loop, loop.create_unix_connection(asyncio.Protocol, path))


def test_unix_server_path_is_a_directory(loop, tmp_path):
    with pytest.raises(OSError):
        run(loop, loop.create_unix_server(asyncio.Protocol, str(tmp_path)))


@pytest.mark.parametrize(
    ("call", "kwargs", "exc"),
    [
        ("connection", {}, ValueError),
        ("connection", {"path": "x", "sock": "unix"}, ValueError),
        ("connection", {"sock": "inet"}, ValueError),
        ("connection", {"sock": "unix-dgram"}, ValueError),
        ("connection", {"path": "x", "server_hostname": "h"}, ValueError),
        ("connection", {"path": "x", "ssl_handshake_timeout": 1}, ValueError),
        ("connection", {"path": 5}, TypeError),
        ("server", {}, ValueError),
        ("server", {"path": "x", "sock": "unix"}, ValueError),
        ("server", {"sock": "inet"}, ValueError),
        ("server", {"path": "x", "ssl": True}, TypeError),
        ("server", {"path": "x", "ssl_handshake_timeout": 1}, ValueError),
        ("server", {"path": 5}, TypeError),
    ],
)
def test_unix_bad_arguments(loop, tmp_path, call, kwargs, exc):
    kwargs = dict(kwargs)  # the parameter is shared between the loops
    socks = []
    for key, value in list(kwargs.items()):
        if key == "path" and value == "x":
            kwargs[key] = str(tmp_path / "x.sock")
        if key == "sock":
            family, kind = {
                "unix": (socket.AF_UNIX, socket.SOCK_STREAM),
                "unix-dgram": (socket.AF_UNIX, socket.SOCK_DGRAM),
                "inet": (socket.AF_INET, socket.SOCK_STREAM),
            }[value]
            socks.append(socket.socket(family, kind))
            kwargs[key] = socks[-1]
    method = loop.create_unix_connection if call == "connection" else loop.create_unix_server
    try:
        with pytest.raises(exc):
            run(loop, method(asyncio.Protocol, **kwargs))
    finally:
        for s in socks:
            s.close()
