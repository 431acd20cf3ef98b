"""TLS on casyncio is asyncio's SSLProtocol with casyncio's own read loop
(casyncio/_tls.py), which stops when nothing is left to decrypt rather than
when a read raises SSLWantReadError.

The read loop is held to the running Python's own SSLProtocol: each test
gives both protocols the same TLS stream from an in-memory peer, cut into
chunks at the same places of its record structure, and the application's
protocol must see the same calls, with the same bytes, in the same order.
"""

from __future__ import annotations

import array
import asyncio
import ssl
from asyncio import sslproto
from collections.abc import Callable
from typing import Any

import pytest
from net_helpers import (
    HOST,
    echo_stream,
    is_casyncio,
    no_fd_leak,  # noqa: F401  (fixture, applied below)
    payload,
    run,
    tls_contexts,
    wait_for_condition,
)

from casyncio._tls import TLSProtocol

pytestmark = pytest.mark.usefixtures("no_fd_leak")

# What the peer sends after the handshake: small and large messages, one
# larger than a TLS record (16 KiB of plaintext), then its close_notify.
MESSAGES = [b"hello", payload(1024, seed=1), payload(20000, seed=2), b"!"]


class Wire:
    """The transport under a TLS protocol: it keeps what it is asked to send."""

    def __init__(self) -> None:
        self.sent = bytearray()
        self.closing = False

    def write(self, data: bytes) -> None:
        self.sent += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    abort = close

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class CopiedApp(asyncio.Protocol):
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.calls.append(("made",))

    def data_received(self, data: bytes) -> None:
        self.calls.append(("data", bytes(data)))

    def eof_received(self) -> None:
        self.calls.append(("eof",))

    def connection_lost(self, exc: Exception | None) -> None:
        self.calls.append(("lost", type(exc)))


class BufferedApp(CopiedApp, asyncio.BufferedProtocol):
    """Gives the same buffer each time: a memoryview of a bytearray, or
    with ``view=False`` the bytearray itself."""

    def __init__(self, size: int, *, view: bool = True) -> None:
        super().__init__()
        self.buf = bytearray(size)
        self.given = memoryview(self.buf) if view else self.buf

    def get_buffer(self, sizehint: int) -> memoryview | bytearray:
        self.calls.append(("get_buffer",))
        return self.given

    def buffer_updated(self, nbytes: int) -> None:
        self.calls.append(("data", bytes(self.buf[:nbytes])))


class CountingSSLObject:
    """Stands in for the protocol's SSLObject and counts the reads that
    raised SSLWantReadError."""

    def __init__(self, sslobj: ssl.SSLObject) -> None:
        self._sslobj = sslobj
        self.reads_again = 0

    def read(self, *args: Any) -> Any:
        try:
            return self._sslobj.read(*args)
        except ssl.SSLWantReadError:
            self.reads_again += 1
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sslobj, name)


def record_ends(stream: bytes) -> list[int]:
    """The offsets where each TLS record of ``stream`` ends (a record is a
    5-byte header whose last two bytes are the length, then the body)."""
    ends, at = [], 0
    while at < len(stream):
        at += 5 + int.from_bytes(stream[at + 3 : at + 5], "big")
        ends.append(at)
    assert at == len(stream)
    return ends


def whole_records(stream: bytes) -> list[int]:
    return record_ends(stream)


def all_at_once(stream: bytes) -> list[int]:
    return [len(stream)]


def mid_body(stream: bytes) -> list[int]:
    """Each record cut in the middle of its body: every chunk but the
    first ends a record and begins the next."""
    cuts, start = [], 0
    for end in record_ends(stream):
        cuts.append(start + 5 + (end - start - 5) // 2)
        start = end
    return cuts + [len(stream)]


def mid_header(stream: bytes) -> list[int]:
    """Each cut after the first two bytes of a record's header."""
    return [end + 2 for end in [0, *record_ends(stream)[:-1]]] + [len(stream)]


def seven_bytes(stream: bytes) -> list[int]:
    return [*range(7, len(stream), 7), len(stream)]


CUTS = [whole_records, all_at_once, mid_body, mid_header, seven_bytes]


def feed(proto: sslproto.SSLProtocol, data: bytes) -> None:
    """Hand ``data`` to the protocol as a transport would."""
    if data:
        buf = proto.get_buffer(len(data))
        buf[: len(data)] = data
        proto.buffer_updated(len(data))


async def settle(app: CopiedApp) -> None:
    """Let the callbacks the protocol scheduled run, until three loop
    iterations in a row bring the application nothing new (a small buffer
    takes one iteration per refill)."""
    quiet = 0
    while quiet < 3:
        before = len(app.calls)
        await asyncio.sleep(0)
        quiet = quiet + 1 if len(app.calls) == before else 0


async def connect(
    protocol_class: type[sslproto.SSLProtocol], app: CopiedApp, version: str = "TLSv1_3"
) -> tuple[sslproto.SSLProtocol, ssl.SSLObject, ssl.MemoryBIO]:
    """Connect ``app`` through a ``protocol_class`` client to an in-memory
    TLS server speaking at most ``version``; returns the client's protocol
    once its handshake is done, the server's SSLObject and the BIO holding
    what the server sends."""
    server_ctx, client_ctx = tls_contexts()
    server_ctx.maximum_version = ssl.TLSVersion[version]
    loop = asyncio.get_running_loop()
    peer_in, peer_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    peer = server_ctx.wrap_bio(peer_in, peer_out, server_side=True)
    waiter = loop.create_future()
    proto = protocol_class(loop, app, client_ctx, waiter, server_side=False, server_hostname=HOST)
    wire = Wire()
    proto.connection_made(wire)
    handshaken = False
    for _ in range(10):
        peer_in.write(bytes(wire.sent))
        wire.sent.clear()
        try:
            peer.do_handshake()
            handshaken = True
        except ssl.SSLWantReadError:
            pass
        feed(proto, peer_out.read())
        await settle(app)
        if handshaken and waiter.done():
            break
    await waiter
    return proto, peer, peer_out


async def session(
    protocol_class: type[sslproto.SSLProtocol],
    app: CopiedApp,
    cut: Callable[[bytes], list[int]],
    version: str = "TLSv1_3",
    ending: str = "close_notify",
) -> int:
    """Connect ``app`` (see connect()); the server sends MESSAGES and ends
    with a close_notify, or with ``ending="eof"`` the connection ends
    without one (the transport's eof_received()).  The stream reaches the
    client cut where ``cut`` says.  Returns how many of the client's reads
    raised SSLWantReadError after the handshake."""
    proto, peer, peer_out = await connect(protocol_class, app, version)
    counting = CountingSSLObject(proto._sslobj)
    proto._sslobj = counting

    for message in MESSAGES:
        peer.write(message)
    if ending == "close_notify":
        with pytest.raises(ssl.SSLWantReadError):
            peer.unwrap()  # sends close_notify, then waits for the client's
    stream = peer_out.read()
    start = 0
    for end in cut(stream):
        feed(proto, stream[start:end])
        start = end
        await settle(app)
    assert start == len(stream)
    if ending == "eof":
        proto.eof_received()
        await settle(app)
    proto.connection_lost(None)
    await settle(app)
    return counting.reads_again


def received(app: CopiedApp) -> bytes:
    return b"".join(call[1] for call in app.calls if call[0] == "data")


VERSIONS = pytest.mark.parametrize("version", ["TLSv1_3", "TLSv1_2"])


@pytest.mark.parametrize("ending", ["close_notify", "eof"])
@VERSIONS
@pytest.mark.parametrize("cut", CUTS, ids=[c.__name__ for c in CUTS])
def test_copied_reads_match_stock(loop, cut, version, ending) -> None:
    """Also when the connection ends without a close_notify: the protocol
    then reads what is left while it flushes."""
    stock, ours = CopiedApp(), CopiedApp()
    run(loop, session(sslproto.SSLProtocol, stock, cut, version, ending))
    run(loop, session(TLSProtocol, ours, cut, version, ending))
    assert received(ours) == b"".join(MESSAGES)
    assert ours.calls[0] == ("made",) and ours.calls[-1] == ("lost", type(None))
    assert ("eof",) in ours.calls
    assert ours.calls == stock.calls


@pytest.mark.parametrize("size", [100, 1024, 65536])
@VERSIONS
@pytest.mark.parametrize("cut", CUTS, ids=[c.__name__ for c in CUTS])
def test_buffered_reads_match_stock(loop, cut, version, size) -> None:
    """Buffers smaller than a record are filled up before the next read (a
    full buffer makes the protocol come back for the rest)."""
    stock, ours = BufferedApp(size), BufferedApp(size)
    run(loop, session(sslproto.SSLProtocol, stock, cut, version))
    run(loop, session(TLSProtocol, ours, cut, version))
    assert received(ours) == b"".join(MESSAGES)
    # (A read the protocol scheduled may still ask for a buffer after EOF.)
    ends = [call for call in ours.calls if call[0] != "get_buffer"][-2:]
    assert ends == [("eof",), ("lost", type(None))]
    assert ours.calls == stock.calls


def test_buffered_reads_into_a_bytearray_keep_every_byte(loop) -> None:
    """A bytearray buffer, filled by several records in one read loop: stock
    asyncio loses all but the first record's bytes there (CPython
    gh-156275), casyncio's protocol keeps them."""
    ours = BufferedApp(65536, view=False)
    run(loop, session(TLSProtocol, ours, all_at_once))
    assert received(ours) == b"".join(MESSAGES)
    assert [call[0] for call in ours.calls].count("data") == 1


class ArrayApp(BufferedApp):
    """Gives an array of 4-byte items as its buffer."""

    def __init__(self, items: int) -> None:
        super().__init__(0)
        self.given = self.buf = array.array("I", bytes(4 * items))

    def buffer_updated(self, nbytes: int) -> None:
        self.calls.append(("data", self.buf.tobytes()[:nbytes]))


def test_buffered_reads_into_an_array_count_bytes(loop) -> None:
    """buffer_updated() counts bytes, also for an array of wider items (as
    the socket transport fills one); stock asyncio reads the second record
    of a read loop into a copy there too."""
    ours = ArrayApp(16384)
    run(loop, session(TLSProtocol, ours, all_at_once))
    assert received(ours) == b"".join(MESSAGES)


@pytest.mark.parametrize("app", [CopiedApp, lambda: BufferedApp(65536)], ids=["copied", "buffered"])
def test_whole_records_are_read_without_sslwantreaderror(loop, app) -> None:
    """The point of casyncio's read loop: when whole records arrive, no
    read ends in an exception.  (Stock asyncio's ends every read loop with
    one; only the cuts inside a record leave a read nothing to return.)"""
    assert run(loop, session(TLSProtocol, app(), whole_records)) == 0
    assert run(loop, session(TLSProtocol, app(), mid_body)) > 0


class DecryptedAhead:
    """An SSLObject holding decrypted bytes of which each read() returns one
    piece, with nothing left in the incoming BIO.  (OpenSSL holds records
    ahead of the reads only with read-ahead on, which Python's ssl module
    leaves off: the pending() check in casyncio's read loop is a safeguard,
    and this test is what holds it.)"""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = list(pieces)

    def pending(self) -> int:
        return sum(map(len, self.pieces))

    def read(self, n: int, buf: Any = None) -> Any:
        if not self.pieces:
            raise ssl.SSLWantReadError
        piece = self.pieces.pop(0)[:n]
        if buf is None:
            return piece
        buf[: len(piece)] = piece
        return len(piece)


@pytest.mark.parametrize("app", [CopiedApp, lambda: BufferedApp(65536)], ids=["copied", "buffered"])
def test_decrypted_bytes_in_the_sslobject_are_read_too(loop, app) -> None:
    pieces = [b"first", b"second", b"third"]

    async def main(protocol_class: type[sslproto.SSLProtocol]) -> list[tuple]:
        application = app()
        proto, _, _ = await connect(protocol_class, application)
        real = proto._sslobj
        proto._sslobj = DecryptedAhead(pieces)
        proto._do_read()  # as buffer_updated() would
        proto._sslobj = real
        proto.connection_lost(None)
        return application.calls

    stock = run(loop, main(sslproto.SSLProtocol))
    ours = run(loop, main(TLSProtocol))
    assert ("data", b"firstsecondthird") in ours
    assert ours == stock


def test_connections_use_casyncios_tls_protocol(loop) -> None:
    """create_connection(ssl=), start_server(ssl=) and start_tls() all put
    casyncio's TLSProtocol (an asyncio SSLProtocol) under the TLS transport
    on casyncio, and stock's SSLProtocol on stock asyncio.  Inside TLS, the
    outer protocol decrypts into the buffer the inner one hands out (on
    casyncio the loop's shared one): a message larger than that buffer
    crosses intact."""
    server_ctx, client_ctx = tls_contexts()
    message = payload(600_000, seed=7)
    expected = TLSProtocol if is_casyncio(loop) else sslproto.SSLProtocol
    seen: list[type] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(type(writer.transport._ssl_protocol))
        await writer.start_tls(server_ctx)
        seen.append(type(writer.transport._ssl_protocol))
        writer.write(await reader.readexactly(len(message)))
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main() -> None:
        server = await asyncio.start_server(handler, HOST, 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(HOST, port, ssl=client_ctx)
        seen.append(type(writer.transport._ssl_protocol))
        await writer.start_tls(client_ctx)  # TLS inside TLS
        seen.append(type(writer.transport._ssl_protocol))
        writer.write(message)
        assert await reader.readexactly(len(message)) == message
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    run(loop, main())
    assert seen == [expected] * 4
    assert all(issubclass(t, sslproto.SSLProtocol) for t in seen)


def test_many_connections_echo_every_byte(loop) -> None:
    """Eight TLS connections at once, each echoing messages of its own
    sizes (up to beyond the 256 KiB read buffer) through a streams server:
    on casyncio their reads share one buffer, and no connection may see
    another's bytes."""
    server_ctx, client_ctx = tls_contexts()
    sizes = [1, 1000, 17000, 70000, 300000]

    async def client(port: int, seed: int) -> None:
        reader, writer = await asyncio.open_connection(HOST, port, ssl=client_ctx)
        for size in sizes[seed % 2 :] + sizes:
            message = payload(size, seed=seed * 100 + size)
            writer.write(message)
            await writer.drain()
            assert await reader.readexactly(size) == message
        writer.close()
        await writer.wait_closed()

    async def main() -> None:
        server = await asyncio.start_server(echo_stream, HOST, 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        await asyncio.gather(*(client(port, seed) for seed in range(8)))
        server.close()
        await server.wait_closed()

    run(loop, main(), timeout=60)


def test_connections_share_the_loops_read_buffer(loop) -> None:
    """On casyncio a TLS connection holds no read buffer of its own:
    creating ten (both ends) allocates well under one of asyncio's 256 KiB
    buffers each."""
    if not is_casyncio(loop):
        pytest.skip("stock asyncio gives each TLS connection its own 256 KiB buffer")
    import tracemalloc

    server_ctx, client_ctx = tls_contexts()
    accepted: list[asyncio.StreamWriter] = []

    async def keep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    async def connect(port: int) -> asyncio.StreamWriter:
        _, writer = await asyncio.open_connection(HOST, port, ssl=client_ctx)
        return writer

    async def main() -> int:
        server = await asyncio.start_server(keep, HOST, 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        writers = [await connect(port)]  # the first makes the loop's buffer
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            writers += [await connect(port) for _ in range(10)]
            await wait_for_condition(asyncio.get_running_loop(), lambda: len(accepted) == 11)
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        protocols = {w.transport._ssl_protocol for w in writers + accepted}
        assert len({id(p._ssl_buffer) for p in protocols}) == 1
        for w in writers + accepted:
            w.close()
        for w in writers + accepted:
            await w.wait_closed()
        server.close()
        await server.wait_closed()
        return grown

    grown = run(loop, main())
    assert grown < 20 * 64 * 1024, grown  # 20 protocols: under 64 KiB each
