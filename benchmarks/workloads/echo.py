"""TCP echo over loopback: server and clients both on the loop under test.

Three server styles, each with clients written in the same style: the
``sock_*`` coroutines on non-blocking sockets, streams (``start_server`` /
``open_connection``), and a Protocol.  Several clients run at once, each
doing a fixed number of round trips (send a message, read back all of it).
Only the round trips are timed: not the server start, not the connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import cast

from ..registry import (
    ECHO_TARGETS,
    LoopFactory,
    Measurement,
    Sizes,
    Stopwatch,
    run_loop,
    workload,
)

CLIENTS = 4
HOST = "127.0.0.1"
READ_SIZE = 256 * 1024

# One client's round-trip body: takes the message, returns after n round trips.
RoundTrips = Callable[[bytes, int], Awaitable[None]]


def _message(size: int) -> bytes:
    # Not all one byte, so a loop that mixed up buffers would fail the check.
    return bytes(range(256)) * (size // 256) + b"x" * (size % 256)


def _nodelay(sock: socket.socket) -> None:
    # Transports set TCP_NODELAY themselves (asyncio and uvloop both do), so
    # the raw-socket style sets it too, to compare like with like.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _timed_clients(clients: list[RoundTrips], msg: bytes, n: int) -> Stopwatch:
    """Run every client's n round trips at once; the time they took."""
    sw = Stopwatch()
    await asyncio.gather(*[c(msg, n) for c in clients])
    return sw.stop()


# ---- the servers, one per style ------------------------------------------------
# Each is an async context manager that serves echo on HOST and yields its port;
# the clients are in this process (the echo_* rows) or in another one (server_*).


@contextlib.asynccontextmanager
async def _sock_server() -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((HOST, 0))
    lsock.listen(128)
    lsock.setblocking(False)
    handlers: list[asyncio.Task[None]] = []

    async def serve_one(conn: socket.socket) -> None:
        with conn:
            while True:
                data = await loop.sock_recv(conn, READ_SIZE)
                if not data:
                    return
                await loop.sock_sendall(conn, data)

    async def accept_all() -> None:
        while True:
            conn, _ = await loop.sock_accept(lsock)
            conn.setblocking(False)
            _nodelay(conn)
            handlers.append(loop.create_task(serve_one(conn)))

    acceptor = loop.create_task(accept_all())
    try:
        yield lsock.getsockname()[1]
    finally:
        acceptor.cancel()
        lsock.close()
        # Collect the server tasks (and the acceptor's error, if any) so that
        # a failed run does not end with "exception was never retrieved".
        await asyncio.gather(acceptor, *handlers, return_exceptions=True)


async def _serve_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def _streams_server(tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    server = await asyncio.start_server(_serve_stream, HOST, 0, ssl=tls)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


class _EchoServer(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # cast, not isinstance: uvloop's transports do not subclass asyncio's.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


@contextlib.asynccontextmanager
async def _protocol_server() -> AsyncIterator[int]:
    server = await asyncio.get_running_loop().create_server(_EchoServer, HOST, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


# ---- clients in this process, one style each -------------------------------------


async def _sock_echo(size: int, n: int) -> Stopwatch:
    loop = asyncio.get_running_loop()
    socks: list[socket.socket] = []
    async with _sock_server() as port:
        try:
            for _ in range(CLIENTS):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.setblocking(False)
                _nodelay(s)
                await loop.sock_connect(s, (HOST, port))

            def client(s: socket.socket) -> RoundTrips:
                async def round_trips(msg: bytes, count: int) -> None:
                    size = len(msg)
                    for _ in range(count):
                        await loop.sock_sendall(s, msg)
                        got = 0
                        while got < size:
                            chunk = await loop.sock_recv(s, READ_SIZE)
                            if not chunk:
                                raise ConnectionError("server closed early")
                            got += len(chunk)

                return round_trips

            clients = [client(s) for s in socks]
            # One untimed round trip each: the server has accepted them all.
            await _timed_clients(clients, b"x", 1)
            sw = await _timed_clients(clients, _message(size), n)
        finally:
            for s in socks:
                s.close()
    return sw


async def _streams_echo(size: int, n: int, tls: bool = False) -> Stopwatch:
    server_tls, client_tls = _tls_contexts() if tls else (None, None)
    writers: list[asyncio.StreamWriter] = []
    async with _streams_server(server_tls) as port:
        try:
            conns = [
                await asyncio.open_connection(HOST, port, ssl=client_tls) for _ in range(CLIENTS)
            ]
            writers = [w for _, w in conns]

            def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> RoundTrips:
                async def round_trips(msg: bytes, count: int) -> None:
                    size = len(msg)
                    for _ in range(count):
                        writer.write(msg)
                        await writer.drain()
                        await reader.readexactly(size)

                return round_trips

            sw = await _timed_clients([client(r, w) for r, w in conns], _message(size), n)
        finally:
            for w in writers:
                w.close()
            for w in writers:
                await w.wait_closed()
    return sw


class _EchoClient(asyncio.Protocol):
    """Sends a message, and resolves ``waiter`` once all of it came back."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.expected = 0
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # cast, not isinstance: uvloop's transports do not subclass asyncio's.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.expected -= len(data)
        if self.expected <= 0 and self.waiter is not None:
            self.waiter.set_result(None)
            self.waiter = None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def round_trip(self, msg: bytes) -> asyncio.Future[None]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.expected = len(msg)
        self.transport.write(msg)
        return self.waiter


async def _protocol_echo(size: int, n: int) -> Stopwatch:
    loop = asyncio.get_running_loop()
    protos: list[_EchoClient] = []
    async with _protocol_server() as port:
        try:
            for _ in range(CLIENTS):
                _, proto = await loop.create_connection(_EchoClient, HOST, port)
                protos.append(proto)

            def client(p: _EchoClient) -> RoundTrips:
                async def round_trips(msg: bytes, count: int) -> None:
                    for _ in range(count):
                        await p.round_trip(msg)

                return round_trips

            sw = await _timed_clients([client(p) for p in protos], _message(size), n)
        finally:
            for p in protos:
                if p.transport is not None:
                    p.transport.close()
            for p in protos:
                await p.closed
    return sw


# ---- registration -------------------------------------------------------------

STYLES: dict[str, Callable[[int, int], Awaitable[Stopwatch]]] = {
    "sock": _sock_echo,
    "streams": _streams_echo,
    "protocol": _protocol_echo,
}

# Round trips per client for each message size: fixed counts, smaller for
# bigger messages so each row takes a similar time.
KIB = 1024
ROUND_TRIPS = {
    1: Sizes(tiny=50, quick=1_000, full=5_000),
    10: Sizes(tiny=20, quick=600, full=3_000),
    100: Sizes(tiny=5, quick=300, full=1_000),
}

_DOCS = {
    "sock": "loop.sock_recv/sock_sendall on non-blocking sockets",
    "streams": "asyncio streams (start_server, open_connection, readexactly)",
    "protocol": "an asyncio.Protocol server and Protocol clients",
}


def _echo_row(
    name: str, doc: str, body: Callable[[int, int], Awaitable[Stopwatch]], kib: int
) -> Callable[[LoopFactory, int], Measurement]:
    """A workload running body(message size, n) on a fresh loop, counted in
    round trips of CLIENTS clients."""
    size = kib * KIB

    def run(new_loop: LoopFactory, n: int) -> Measurement:
        sw: Stopwatch = run_loop(new_loop, lambda: body(size, n))
        trips = n * CLIENTS
        return sw.measurement(trips, bytes_per_s=2 * size * trips / sw.wall)

    run.__name__ = run.__qualname__ = name
    run.__doc__ = doc
    return run


def _make(style: str, kib: int) -> Callable[[LoopFactory, int], Measurement]:
    doc = (
        f"TCP echo of {kib} KiB messages over loopback with {_DOCS[style]}: "
        f"{CLIENTS} concurrent clients, n round trips each."
    )
    return _echo_row(f"echo_{style}_{kib}k", doc, STYLES[style], kib)


def _register_echo_rows(
    prefix: str,
    styles: Iterable[str],
    round_trips: dict[int, Sizes],
    make: Callable[[str, int], Callable[[LoopFactory, int], Measurement]],
) -> None:
    """One workload per style and message size, ``{prefix}_{style}_{kib}k``,
    in group `prefix`, held to the echo targets."""
    for style in styles:
        for kib, sizes in round_trips.items():
            workload(
                f"{prefix}_{style}_{kib}k",
                group=prefix,
                kind="time",
                sizes=sizes,
                unit="round trips",
                targets=ECHO_TARGETS,
            )(make(style, kib))


_register_echo_rows("echo", STYLES, ROUND_TRIPS, _make)


# ---- TLS ------------------------------------------------------------------------
# Not in the list either, so no target.  Every loop here puts TLS
# between its socket transport and the streams as a protocol: stock asyncio
# runs asyncio's own SSLProtocol (Python code), casyncio a subclass of it,
# uvloop its compiled one.  The handshakes happen before the clock starts.

# A self-signed certificate for 127.0.0.1, key included: loopback use only.
TLS_CERT = Path(__file__).with_name("tls_localhost.pem")


def _tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with TLS_CERT, and a client context that verifies it."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(TLS_CERT)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(TLS_CERT)
    return server, client


def _tls_streams_echo(size: int, n: int) -> Awaitable[Stopwatch]:
    return _streams_echo(size, n, tls=True)


def _make_tls(kib: int) -> Callable[[LoopFactory, int], Measurement]:
    doc = (
        f"TLS echo of {kib} KiB messages over loopback with asyncio streams "
        f"(start_server and open_connection with ssl=): {CLIENTS} concurrent "
        "clients, n round trips each."
    )
    return _echo_row(f"echo_tls_{kib}k", doc, _tls_streams_echo, kib)


for _kib in (1, 100):
    workload(
        f"echo_tls_{_kib}k",
        group="echo",
        kind="time",
        sizes=ROUND_TRIPS[_kib],
        unit="round trips",
    )(_make_tls(_kib))


# ---- datagrams ------------------------------------------------------------------
# Not in the list, so no target: UDP is where the loop's datagram
# transport shows (it once was 4x slower than uvloop's, unseen by the TCP rows).

DATAGRAM_SIZE = 100


class _UdpEchoServer(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)


class _UdpClient(asyncio.DatagramProtocol):
    """Sends a datagram each time the previous one came back, n times."""

    def __init__(self, msg: bytes, n: int) -> None:
        self.msg = msg
        self.left = n
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.left -= 1
        if self.left == 0:
            self.done.set_result(None)
        else:
            self.transport.sendto(self.msg)


@workload(
    "udp_echo",
    group="echo",
    kind="time",
    sizes=Sizes(tiny=100, quick=5_000, full=25_000),
    unit="round trips",
)
def udp_echo(new_loop: LoopFactory, n: int) -> Measurement:
    """UDP echo of 100-byte datagrams over loopback, DatagramProtocol server and
    4 connected DatagramProtocol clients on the loop under test, n round trips each."""

    async def main() -> Stopwatch:
        loop = asyncio.get_running_loop()
        msg = _message(DATAGRAM_SIZE)
        server, _ = await loop.create_datagram_endpoint(_UdpEchoServer, local_addr=(HOST, 0))
        address = server.get_extra_info("sockname")
        clients = [
            await loop.create_datagram_endpoint(lambda: _UdpClient(msg, n), remote_addr=address)
            for _ in range(CLIENTS)
        ]
        try:
            sw = Stopwatch()
            for transport, _ in clients:
                transport.sendto(msg)
            await asyncio.gather(*[p.done for _, p in clients])
            sw.stop()
        finally:
            for transport, _ in clients:
                transport.close()
            server.close()
        return sw

    sw: Stopwatch = run_loop(new_loop, main)
    return sw.measurement(n * CLIENTS)


# ---- connections ----------------------------------------------------------------
# Not in the list, so no target: the cost of opening and closing a
# connection, which the echo rows (a few long-lived connections) never show.

CHURN_CLIENTS = 8
CHURN_WATCHDOG_S = 30.0


class _OneShotServer(asyncio.Protocol):
    """Echoes the first data it gets, then closes (as an HTTP/1.0 server does)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)
        self.transport.close()


class _OneShotClient(asyncio.Protocol):
    """Sends a message on connecting; ``done`` resolves once the server has
    echoed it and closed, with what came back."""

    def __init__(self, msg: bytes) -> None:
        self.msg = msg
        self.got = bytearray()
        self.done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).write(self.msg)

    def data_received(self, data: bytes) -> None:
        self.got += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(bytes(self.got))


@workload(
    "connection_churn",
    group="echo",
    kind="time",
    sizes=Sizes(tiny=5, quick=250, full=1_000),
    unit="connections",
)
def connection_churn(new_loop: LoopFactory, n: int) -> Measurement:
    """TCP connections opened, used for one 16-byte round trip and closed, over
    loopback: a Protocol server that closes after its reply, 8 concurrent
    create_connection() clients on the loop under test, n connections each."""

    async def main() -> Stopwatch:
        loop = asyncio.get_running_loop()
        msg = _message(16)
        server = await loop.create_server(_OneShotServer, HOST, 0, backlog=128)
        port = server.sockets[0].getsockname()[1]

        async def client() -> None:
            for _ in range(n):
                _, proto = await loop.create_connection(lambda: _OneShotClient(msg), HOST, port)
                if await proto.done != msg:
                    raise ConnectionError("the echo came back wrong")

        try:
            sw = Stopwatch()
            # A loop that never reports a closed connection fails in seconds,
            # not at the suite's timeout (rloop 0.5 gives no connection_lost()
            # to a client whose server closed).
            try:
                async with asyncio.timeout(CHURN_WATCHDOG_S):
                    await asyncio.gather(*[client() for _ in range(CHURN_CLIENTS)])
            except TimeoutError:
                raise TimeoutError(
                    f"connections still open after {CHURN_WATCHDOG_S:.0f} s "
                    "(was connection_lost() called after the server closed?)"
                ) from None
            sw.stop()
        finally:
            server.close()
            await server.wait_closed()
        return sw

    sw: Stopwatch = run_loop(new_loop, main)
    return sw.measurement(n * CHURN_CLIENTS)


# ---- the floor: the same echo in C, no loop, no Python ---------------------------

C_PROGRAMS = Path(__file__).resolve().parents[1] / "floor"


def c_program(name: str) -> Path:
    """benchmarks/floor/<name>.c, compiled once per machine (the binary is
    cached in the temp dir under the source's hash)."""
    source = C_PROGRAMS / f"{name}.c"
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise NotImplementedError(f"no C compiler to build {source.name}")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    binary = Path(tempfile.gettempdir()) / f"casyncio-{name}-{digest}"
    if not binary.exists():
        partial = binary.with_name(f"{binary.name}.{os.getpid()}")
        subprocess.run(
            [cc, "-O2", "-o", str(partial), str(source)], check=True, capture_output=True
        )
        os.replace(partial, binary)
    return binary


def _floor_binary() -> Path:
    return c_program("tcp_echo")


def _floor_clients(size: int, n: int, clients: int, port: str | None = None) -> Measurement:
    """The C program's clients, n round trips each: with its own echo server in
    the same process, or against the one listening on `port`."""
    args = [str(_floor_binary()), str(size), str(n), str(clients)]
    out = subprocess.run(
        args + ([port] if port else []), check=True, capture_output=True, text=True
    )
    trips, seconds = out.stdout.split()
    return Measurement(float(seconds), int(trips), {})


def _register_floor_rows(
    prefix: str,
    round_trips: dict[int, Sizes],
    bounds: str,
    make: Callable[[int], Callable[[LoopFactory, int], Measurement]],
) -> None:
    """One floor row per message size, ``{prefix}_{kib}k``, bounding ``{bounds}_{kib}k``."""
    for kib, sizes in round_trips.items():
        workload(
            f"{prefix}_{kib}k",
            group="floor",
            kind="time",
            sizes=sizes,
            unit="round trips",
            only_on=("deque",),
            floor_of=f"{bounds}_{kib}k",
        )(make(kib))


def _make_floor(kib: int) -> Callable[[LoopFactory, int], Measurement]:
    size = kib * KIB

    def run(new_loop: LoopFactory, n: int) -> Measurement:
        del new_loop  # not a loop: what any loop could reach at best
        return _floor_clients(size, n, CLIENTS)

    run.__name__ = run.__qualname__ = f"echo_floor_{kib}k"
    run.__doc__ = (
        f"The {kib} KiB echo done in C with the same system calls (non-blocking sockets, "
        f"one epoll set, {CLIENTS} clients, one thread), no loop and no Python: the floor "
        f"every loop's echo rows sit above."
    )
    return run


_register_floor_rows("echo_floor", ROUND_TRIPS, "echo_protocol", _make_floor)


# ---- a server under load: the clients in another process ---------------------------
# The C floor program above, in client mode, drives an echo server on the loop
# under test: the loop serves and nothing else, as when a uvloop user swaps one
# import in a server.  The client times its own round trips.

SERVERS: dict[str, Callable[[], contextlib.AbstractAsyncContextManager[int]]] = {
    "sock": _sock_server,
    "streams": _streams_server,
    "protocol": _protocol_server,
}
LOAD_CLIENTS = 32
_SERVER_DOCS = {
    "sock": "loop.sock_accept, sock_recv and sock_sendall",
    "streams": "asyncio.start_server, reader.read and writer.drain",
    "protocol": "an asyncio.Protocol",
}
LOAD_ROUND_TRIPS = {
    1: Sizes(tiny=5, quick=125, full=600),
    10: Sizes(tiny=3, quick=75, full=400),
    100: Sizes(tiny=1, quick=40, full=125),
}


async def run_load_client(args: list[str], what: str) -> Measurement:
    """Runs a load client from floor/ in another process while the running loop
    serves, and reports the work it timed."""
    loop = asyncio.get_running_loop()
    sw = Stopwatch()
    # Popen, not the loop's subprocess support: every loop starts the client
    # the same way, and the loop only serves meanwhile.
    proc = subprocess.Popen(  # noqa: ASYNC220
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    out, err = await loop.run_in_executor(None, proc.communicate)
    sw.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"the {what} client failed: {err.strip()}")
    count, seconds = out.split()
    # Wall time: the client's own clock over its timed work.  CPU time: this
    # process's over the client's whole run (its start included).
    return Measurement(float(seconds), int(count), {"cpu_s": sw.cpu})


async def _serve_load(style: str, size: int, n: int) -> Measurement:
    client = [str(_floor_binary()), str(size), str(n), str(LOAD_CLIENTS)]
    async with SERVERS[style]() as port:
        return await run_load_client([*client, str(port)], "echo")


def _make_server(style: str, kib: int) -> Callable[[LoopFactory, int], Measurement]:
    size = kib * KIB

    def run(new_loop: LoopFactory, n: int) -> Measurement:
        m: Measurement = run_loop(new_loop, lambda: _serve_load(style, size, n))
        m.extra["bytes_per_s"] = 2 * size * m.ops / m.value
        return m

    run.__name__ = run.__qualname__ = f"server_{style}_{kib}k"
    run.__doc__ = (
        f"An echo server ({_SERVER_DOCS[style]}) on the loop under test, loaded with {kib} KiB "
        f"messages by {LOAD_CLIENTS} connections from a C client in another process "
        f"(benchmarks/floor/tcp_echo.c), n round trips each."
    )
    return run


_register_echo_rows("server", SERVERS, LOAD_ROUND_TRIPS, _make_server)


# ---- the server's floor: the same load on an echo server in C -------------------------


def _make_server_floor(kib: int) -> Callable[[LoopFactory, int], Measurement]:
    size = kib * KIB

    def run(new_loop: LoopFactory, n: int) -> Measurement:
        del new_loop  # not a loop: what any loop's echo server could reach at best
        # The server echoes until its stdin closes.
        with subprocess.Popen(
            [str(_floor_binary()), str(size), "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as server:
            assert server.stdin is not None and server.stdout is not None
            try:
                port = server.stdout.readline().strip()
                measured = _floor_clients(size, n, LOAD_CLIENTS, port)
            finally:
                server.stdin.close()
        if server.returncode != 0:
            raise RuntimeError(f"the C echo server exited with {server.returncode}")
        return measured

    run.__name__ = run.__qualname__ = f"server_floor_{kib}k"
    run.__doc__ = (
        f"The server_* load ({kib} KiB messages, {LOAD_CLIENTS} connections from the C client "
        f"in another process) on an echo server written in C with the same system calls, no "
        f"loop and no Python: the floor every loop's echo server sits above."
    )
    return run


_register_floor_rows("server_floor", LOAD_ROUND_TRIPS, "server_protocol", _make_server_floor)
