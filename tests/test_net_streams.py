"""asyncio's streams (open_connection, start_server, open_unix_connection,
start_unix_server) run unchanged on casyncio's transports: the same
programs, on casyncio and on stock asyncio."""

from __future__ import annotations

import asyncio
import socket

import pytest
from net_helpers import (
    HOST,
    assert_same_bytes,
    no_fd_leak,  # noqa: F401  (fixture, applied below)
    payload,
    run,
    small_buffers,
    tls_contexts,
)

from casyncio._versions import since

pytestmark = pytest.mark.usefixtures("no_fd_leak")


async def echo_lines(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo each line, upper-cased, until EOF."""
    try:
        while line := await reader.readline():
            writer.write(line.upper())
            await writer.drain()
    finally:
        writer.close()
        await writer.wait_closed()


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    await writer.wait_closed()


def test_open_connection_start_server(loop):
    async def main() -> None:
        server = await asyncio.start_server(echo_lines, HOST, 0)
        async with server:
            assert server.get_loop() is loop
            address = server.sockets[0].getsockname()
            reader, writer = await asyncio.open_connection(*address)
            assert isinstance(writer.transport, asyncio.Transport)
            assert writer.get_extra_info("peername") == address
            writer.write(b"hello\n")
            writer.writelines([b"wor", b"ld\n"])
            await writer.drain()
            assert await reader.readline() == b"HELLO\n"
            assert await reader.readexactly(6) == b"WORLD\n"
            writer.write(b"a\nb\n")
            assert await reader.readuntil(b"\n") == b"A\n"
            assert await reader.read(2) == b"B\n"
            assert writer.can_write_eof()
            writer.write_eof()
            assert await reader.read() == b""
            assert reader.at_eof()
            await close_writer(writer)

    run(loop, main())


def test_streams_big_payload(loop):
    data = payload(5_000_000, seed=21)

    async def handler(reader, writer) -> None:
        received = await reader.read()
        writer.write(len(received).to_bytes(8, "big") + received[::-1])
        await writer.drain()
        await close_writer(writer)

    async def main() -> None:
        server = await asyncio.start_server(handler, HOST, 0)
        async with server:
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
            writer.write(data)
            await writer.drain()
            writer.write_eof()
            size = int.from_bytes(await reader.readexactly(8), "big")
            assert size == len(data)
            assert_same_bytes(await reader.readexactly(size), data[::-1])
            assert await reader.read() == b""
            await close_writer(writer)

    run(loop, main())


def test_streams_limit(loop):
    async def handler(reader, writer) -> None:
        writer.write(b"x" * 100 + b"\n")
        await writer.drain()
        await close_writer(writer)

    async def main() -> None:
        server = await asyncio.start_server(handler, HOST, 0)
        async with server:
            reader, writer = await asyncio.open_connection(
                *server.sockets[0].getsockname(), limit=10
            )
            with pytest.raises(asyncio.LimitOverrunError):
                await reader.readuntil(b"\n")
            with pytest.raises(ValueError):
                await reader.readline()
            await close_writer(writer)

    run(loop, main())


def test_streams_incomplete_read(loop):
    async def handler(reader, writer) -> None:
        writer.write(b"short")
        await close_writer(writer)

    async def main() -> None:
        server = await asyncio.start_server(handler, HOST, 0)
        async with server:
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
            with pytest.raises(asyncio.IncompleteReadError) as info:
                await reader.readexactly(10)
            assert info.value.partial == b"short"
            await close_writer(writer)

    run(loop, main())


def test_streams_server_serve_forever(loop):
    async def main() -> None:
        server = await asyncio.start_server(echo_lines, HOST, 0, start_serving=False)
        async with server:
            task = asyncio.ensure_future(server.serve_forever())
            await asyncio.sleep(0)
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
            writer.write(b"served\n")
            assert await reader.readline() == b"SERVED\n"
            await close_writer(writer)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not server.is_serving()

    run(loop, main())


def test_streams_many_clients(loop):
    async def client(address, i: int) -> bytes:
        reader, writer = await asyncio.open_connection(*address)
        try:
            writer.write(f"client {i}\n".encode())
            return await reader.readline()
        finally:
            await close_writer(writer)

    async def main() -> None:
        server = await asyncio.start_server(echo_lines, HOST, 0)
        async with server:
            address = server.sockets[0].getsockname()
            replies = await asyncio.gather(*(client(address, i) for i in range(30)))
            assert replies == [f"CLIENT {i}\n".encode() for i in range(30)]

    run(loop, main())


def test_unix_streams(loop, tmp_path):
    path = str(tmp_path / "streams.sock")

    async def main() -> None:
        server = await asyncio.start_unix_server(echo_lines, path)
        async with server:
            reader, writer = await asyncio.open_unix_connection(path)
            assert writer.get_extra_info("peername") == path
            writer.write(b"over unix\n")
            assert await reader.readline() == b"OVER UNIX\n"
            writer.write_eof()
            assert await reader.read() == b""
            await close_writer(writer)

    run(loop, main())


def test_streams_open_connection_refused(loop):
    async def main() -> None:
        server = await asyncio.start_server(echo_lines, HOST, 0)
        address = server.sockets[0].getsockname()
        server.close()
        await server.wait_closed()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(*address)

    run(loop, main())


def test_streams_drain_pauses_and_resumes(loop):
    """drain() blocks while the peer does not read, and returns once it does:
    the transport's pause_writing/resume_writing reach StreamWriter."""

    release = None

    async def handler(reader, writer) -> None:
        await release
        got = await reader.read()
        writer.write(len(got).to_bytes(8, "big"))
        await close_writer(writer)

    async def main() -> None:
        nonlocal release
        release = loop.create_future()
        server = await asyncio.start_server(handler, HOST, 0)
        async with server:
            small_buffers(server.sockets[0])  # accepted sockets inherit it
            sock = socket.socket()
            small_buffers(sock)
            sock.connect(server.sockets[0].getsockname())
            reader, writer = await asyncio.open_connection(sock=sock)
            writer.transport.set_write_buffer_limits(high=1024)
            data = payload(3_000_000)
            writer.write(data)
            drain = asyncio.ensure_future(writer.drain())
            for _ in range(5):
                await asyncio.sleep(0)
            assert not drain.done()
            release.set_result(None)
            await drain
            writer.write_eof()
            assert int.from_bytes(await reader.readexactly(8), "big") == len(data)
            await close_writer(writer)

    run(loop, main())


def test_server_start_tls_takes_the_bytes_already_read(loop_kind, loop):
    """The client's TLS hello arrives before the server calls start_tls():
    it sits in the StreamReader's buffer, and the handshake must use it
    (CPython gh-142352, fixed in stock asyncio 3.14.3 and 3.13.13; before,
    the server waits for a hello that never comes again)."""
    if loop_kind == "asyncio" and not since((3, 13, 13), (3, 14, 3)):
        pytest.skip("stock asyncio hands buffered bytes to TLS from 3.14.3 and 3.13.13")
    server_ctx, client_ctx = tls_contexts()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader._wait_for_data("test")  # the hello is in the buffer now
        assert reader._buffer
        await writer.start_tls(server_ctx)
        assert await reader.readline() == b"ping\n"
        writer.write(b"pong\n")
        await writer.drain()
        await close_writer(writer)

    async def main() -> None:
        server = await asyncio.start_server(handler, HOST, 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        await writer.start_tls(client_ctx)
        writer.write(b"ping\n")
        assert await reader.readline() == b"pong\n"
        await close_writer(writer)
        server.close()
        await server.wait_closed()

    errors: list[dict] = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    run(loop, main())
    assert errors == []
