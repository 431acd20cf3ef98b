"""Echo servers under load, one per style -- sock_* calls, streams, a
Protocol, a BufferedProtocol -- each serving many concurrent clients (of
the same style) on loopback for a fixed count of round trips, on casyncio
and on stock asyncio.  Every byte is checked; any error in the loop's
exception handler fails the test (conftest), as does a leaked fd."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from net_helpers import (
    HOST,
    echo_stream,
    no_fd_leak,  # noqa: F401  (fixture, applied below)
    payload,
    run,
    server_clients,
)

pytestmark = pytest.mark.usefixtures("no_fd_leak")

CLIENTS = 100
ROUNDS = 100
# Message sizes cycle through these: one byte up to more than a socket
# buffer, so that partial sends and reads happen too.
SIZES = [1, 17, 100, 1000, 4000, 16000, 100_000]
BLOB = payload(max(SIZES) + len(SIZES) * CLIENTS + ROUNDS, seed=77)


def message(client: int, rnd: int) -> bytes:
    size = SIZES[(client + rnd) % len(SIZES)]
    start = (client * 7 + rnd) % (len(BLOB) - size)
    return BLOB[start : start + size]


# ---- sock_* ----------------------------------------------------------------------


async def sock_server(loop, lsock: socket.socket, handlers: set) -> None:
    async def handle(conn: socket.socket) -> None:
        with conn:
            buf = bytearray(65536)
            view = memoryview(buf)
            while n := await loop.sock_recv_into(conn, buf):
                await loop.sock_sendall(conn, view[:n])

    while True:
        conn, _ = await loop.sock_accept(lsock)
        task = asyncio.ensure_future(handle(conn))
        handlers.add(task)
        task.add_done_callback(handlers.discard)


async def sock_client(loop, address, client: int, rounds: int) -> int:
    with socket.socket() as s:
        s.setblocking(False)
        await loop.sock_connect(s, address)
        for rnd in range(rounds):
            msg = message(client, rnd)
            await loop.sock_sendall(s, msg)
            got = bytearray()
            while len(got) < len(msg):
                chunk = await loop.sock_recv(s, 65536)
                assert chunk, "server closed early"
                got += chunk
            assert got == msg
        return rounds


async def run_sock_style(loop, rounds: int) -> int:
    handlers: set[asyncio.Task] = set()
    with socket.socket() as lsock:
        lsock.bind((HOST, 0))
        lsock.listen(CLIENTS)
        lsock.setblocking(False)
        server = asyncio.ensure_future(sock_server(loop, lsock, handlers))
        try:
            done = await asyncio.gather(
                *(sock_client(loop, lsock.getsockname(), i, rounds) for i in range(CLIENTS))
            )
        finally:
            server.cancel()
            with pytest.raises(asyncio.CancelledError):
                await server
        # The handlers saw their clients' EOF and ended by themselves.
        while handlers:
            await asyncio.gather(*handlers)
    return sum(done)


# ---- streams -----------------------------------------------------------------------


async def stream_client(address, client: int, rounds: int) -> int:
    reader, writer = await asyncio.open_connection(*address)
    for rnd in range(rounds):
        msg = message(client, rnd)
        writer.write(msg)
        await writer.drain()
        assert await reader.readexactly(len(msg)) == msg
    writer.close()
    await writer.wait_closed()
    return rounds


async def run_stream_style(loop, rounds: int) -> int:
    server = await asyncio.start_server(echo_stream, HOST, 0, backlog=CLIENTS)
    async with server:
        address = server.sockets[0].getsockname()
        done = await asyncio.gather(*(stream_client(address, i, rounds) for i in range(CLIENTS)))
    return sum(done)


# ---- protocols -------------------------------------------------------------------------


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class BufferedEchoProtocol(asyncio.BufferedProtocol):
    def __init__(self) -> None:
        self.buf = bytearray(65536)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        # write() copies what it cannot send at once: the buffer is free
        # for the next read as soon as this returns.
        self.transport.write(memoryview(self.buf)[:nbytes])


class ClientProtocol(asyncio.Protocol):
    def __init__(self, loop) -> None:
        self.loop = loop
        self.buf = bytearray()
        self.want = 0
        self.waiter: asyncio.Future | None = None
        self.lost = loop.create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.waiter is not None and len(self.buf) >= self.want:
            self.waiter.set_result(None)
            self.waiter = None

    def connection_lost(self, exc) -> None:
        self.lost.set_result(exc)
        if self.waiter is not None:
            self.waiter.set_exception(ConnectionError("lost"))

    async def round_trip(self, msg: bytes) -> bytes:
        self.buf.clear()
        self.want = len(msg)
        self.waiter = self.loop.create_future()
        self.transport.write(msg)
        await self.waiter
        return bytes(self.buf)


async def protocol_client(loop, address, client: int, rounds: int) -> int:
    transport, proto = await loop.create_connection(lambda: ClientProtocol(loop), *address)
    for rnd in range(rounds):
        msg = message(client, rnd)
        assert await proto.round_trip(msg) == msg
    transport.close()
    assert await proto.lost is None
    return rounds


async def run_protocol_style(loop, rounds: int, factory) -> int:
    made: list[Any] = []

    def tracking_factory():
        proto = factory()
        made.append(proto)
        return proto

    server = await loop.create_server(tracking_factory, HOST, 0, backlog=CLIENTS)
    async with server:
        address = server.sockets[0].getsockname()
        done = await asyncio.gather(
            *(protocol_client(loop, address, i, rounds) for i in range(CLIENTS))
        )
        # Every server-side transport ends with its client.
        while server_clients(server):
            await asyncio.sleep(0.001)
    assert len(made) == CLIENTS
    return sum(done)


STYLES = {
    "sock": run_sock_style,
    "streams": run_stream_style,
    "protocol": lambda loop, rounds: run_protocol_style(loop, rounds, EchoProtocol),
    "buffered-protocol": lambda loop, rounds: run_protocol_style(
        loop, rounds, BufferedEchoProtocol
    ),
}


@pytest.mark.parametrize("style", list(STYLES))
def test_echo_server_under_load(loop, style):
    # Debug mode (the suite's PYTHONASYNCIODEBUG=1 run) records a traceback
    # for every future and handle: a quarter of the load proves it there.
    rounds = ROUNDS // 4 if loop.get_debug() else ROUNDS
    assert run(loop, STYLES[style](loop, rounds), timeout=60) == CLIENTS * rounds
