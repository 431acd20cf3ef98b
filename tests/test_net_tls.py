"""TLS on casyncio is asyncio's SSLProtocol with its per-record steps in C
(csrc/tls.c) and casyncio's own read loop (casyncio/_tls.py), which stops
when nothing is left to decrypt rather than when a read raises
SSLWantReadError.

Both are held to the running Python's own SSLProtocol.  The read tests give
both protocols the same TLS stream from an in-memory peer, cut into chunks
at the same places of its record structure, and the application's protocol
must see the same calls, with the same bytes, in the same order; the write
and flow-control tests (at the end) run the same script over both and
compare what the application, the wire and the peer saw.
"""

from __future__ import annotations

import array
import asyncio
import functools
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
    """The transport under a TLS protocol: it keeps what it is asked to send,
    and notes the other calls the protocol makes on it."""

    def __init__(self) -> None:
        self.sent = bytearray()
        self.closing = False
        self.calls: list[tuple] = []

    def write(self, data: bytes) -> None:
        self.sent += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    abort = close

    def _force_close(self, exc: BaseException | None) -> None:
        self.calls.append(("force_close", type(exc)))
        self.closing = True

    def pause_reading(self) -> None:
        self.calls.append(("pause_reading",))

    def resume_reading(self) -> None:
        self.calls.append(("resume_reading",))

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

    def pause_writing(self) -> None:
        self.calls.append(("pause_writing",))

    def resume_writing(self) -> None:
        self.calls.append(("resume_writing",))


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
) -> tuple[sslproto.SSLProtocol, ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]:
    """Connect ``app`` through a ``protocol_class`` client to an in-memory
    TLS server speaking at most ``version``; returns the client's protocol
    once its handshake is done, the server's SSLObject, the BIO holding
    what the server sends and the one it reads from."""
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
    return proto, peer, peer_out, peer_in


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
    proto, peer, peer_out, _ = await connect(protocol_class, app, version)
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
        proto, *_ = await connect(protocol_class, application)
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


# ---- the write side and flow control -------------------------------------------
# casyncio's TLSProtocol makes the per-record steps in C (csrc/tls.c) and hands
# the rare cases (a flow-control mark crossed, a write after close, an error in
# the application) to asyncio's methods.  Each test below runs the same script
# over stock's SSLProtocol and over casyncio's and compares what the
# application, the wire under the protocol and the peer saw.


def decrypt(peer: ssl.SSLObject, peer_in: ssl.MemoryBIO, wire: Wire) -> bytes:
    """What the client sent so far, as the in-memory server reads it."""
    peer_in.write(bytes(wire.sent))
    wire.sent.clear()
    plain = bytearray()
    while True:
        try:
            chunk = peer.read(1 << 20)
        except ssl.SSLWantReadError:
            return bytes(plain)
        if not chunk:
            return bytes(plain)
        plain += chunk


WRITES: list[Any] = [
    b"a",
    bytearray(b"bb"),
    memoryview(b"ccc"),
    b"",
    bytearray(),
    payload(20000, seed=3),  # more than one record
    memoryview(b"-xyz-")[1:4],
    None,
    "text",
    123,
]


def outcome(call: Callable[[], Any]) -> tuple:
    """("ok", what call() returned), or the type and text of what it raised."""
    try:
        return ("ok", call())
    except Exception as exc:  # noqa: BLE001 (any error is an outcome to compare)
        return (type(exc), str(exc))


def test_writes_match_stock(loop) -> None:
    """write() of each bytes-like type, empty writes, wrong types (the same
    TypeError), data passed by name, and writelines() of a list and of a
    generator: the peer decrypts the same bytes, the buffer sizes and errors
    are the same."""

    async def main(protocol_class: type[sslproto.SSLProtocol]) -> tuple:
        app = CopiedApp()
        proto, peer, _, peer_in = await connect(protocol_class, app)
        transport, wire = proto._app_transport, proto._transport
        seen = []
        for data in WRITES:
            seen.append(outcome(functools.partial(transport.write, data)))
            seen.append(transport.get_write_buffer_size())
        seen.append(outcome(functools.partial(transport.write, data=b"kw")))
        # (The messages name the method differently: compare the type.)
        seen.append(outcome(functools.partial(transport.write, b"", data=b""))[0])
        transport.writelines([b"l1", bytearray(b"l2"), memoryview(b"l3")])
        transport.writelines(piece for piece in (b"g1", b"", b"g2"))
        seen.append(outcome(lambda: transport.writelines([b"ok", 5])))
        plain = decrypt(peer, peer_in, wire)
        proto.connection_lost(None)
        return seen, plain, app.calls, wire.calls

    stock = run(loop, main(sslproto.SSLProtocol))
    ours = run(loop, main(TLSProtocol))
    # (writelines() stops at the 5, with b"ok" in the backlog, unsent.)
    assert ours[1] == b"abbccc" + payload(20000, seed=3) + b"xyzkwl1l2l3g1g2"
    assert (TypeError, "data: expecting a bytes-like instance, got NoneType") in ours[0]
    assert ours == stock


@pytest.mark.parametrize("limits", [(4096, 1024), (0, 0), (100_000, 50_000)])
def test_write_flow_control_matches_stock(loop, limits) -> None:
    """While the socket transport has paused the protocol (pause_writing()),
    records stay in the outgoing BIO and count against the app's write
    limits: the app is paused at the high-water mark and resumed, once the
    socket takes writes again, at the low one."""
    high, low = limits

    async def main(protocol_class: type[sslproto.SSLProtocol]) -> tuple:
        app = CopiedApp()
        proto, peer, _, peer_in = await connect(protocol_class, app)
        transport, wire = proto._app_transport, proto._transport
        transport.set_write_buffer_limits(high=high, low=low)
        proto.pause_writing()
        for i in range(8):
            transport.write(payload(1500, seed=i))
            app.calls.append(("size", transport.get_write_buffer_size(), len(wire.sent)))
        proto.resume_writing()
        app.calls.append(("size", transport.get_write_buffer_size(), len(wire.sent)))
        await settle(app)
        plain = decrypt(peer, peer_in, wire)
        proto.connection_lost(None)
        return app.calls, plain

    stock = run(loop, main(sslproto.SSLProtocol))
    ours = run(loop, main(TLSProtocol))
    assert ours[1] == b"".join(payload(1500, seed=i) for i in range(8))
    if high == 4096:
        assert ("pause_writing",) in ours[0] and ("resume_writing",) in ours[0]
    assert ours == stock


def test_read_flow_control_matches_stock(loop) -> None:
    """With the app's reading paused, records pile up in the incoming BIO
    until the socket transport is paused at the read high-water mark;
    resuming delivers them and resumes the socket at the low one."""

    async def main(protocol_class: type[sslproto.SSLProtocol]) -> tuple:
        app = CopiedApp()
        proto, peer, peer_out, _ = await connect(protocol_class, app)
        transport, wire = proto._app_transport, proto._transport
        transport.set_read_buffer_limits(high=4096, low=1024)
        transport.pause_reading()
        for i in range(6):
            peer.write(payload(1500, seed=i))
            feed(proto, peer_out.read())
            wire.calls.append(("buffered", transport.get_read_buffer_size()))
        transport.resume_reading()
        await settle(app)
        proto.connection_lost(None)
        return app.calls, wire.calls

    stock = run(loop, main(sslproto.SSLProtocol))
    ours = run(loop, main(TLSProtocol))
    assert ("pause_reading",) in ours[1] and ("resume_reading",) in ours[1]
    assert received_calls(ours[0]) == b"".join(payload(1500, seed=i) for i in range(6))
    assert ours == stock


def received_calls(calls: list[tuple]) -> bytes:
    return b"".join(call[1] for call in calls if call[0] == "data")


def test_writes_after_close_match_stock(loop, caplog) -> None:
    """Writes once the app transport is closing are dropped, and from the
    fifth on each logs 'SSL connection is closed'."""

    async def main(protocol_class: type[sslproto.SSLProtocol]) -> tuple:
        app = CopiedApp()
        proto, *_ = await connect(protocol_class, app)
        transport, wire = proto._app_transport, proto._transport
        transport.close()
        caplog.clear()
        sent = len(wire.sent)
        for _ in range(8):
            transport.write(b"late")
        warnings = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
        grew = len(wire.sent) - sent
        proto.connection_lost(None)
        return warnings, grew, proto._conn_lost

    with caplog.at_level("WARNING", logger="asyncio"):
        stock = run(loop, main(sslproto.SSLProtocol))
        ours = run(loop, main(TLSProtocol))
    assert ours[0] == ["SSL connection is closed"] * 3
    assert ours == stock


class FailingApp(CopiedApp):
    """Raises ``error`` from data_received()."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        raise self.error


class Stop(BaseException):
    pass


def app_error_outcome(
    loop: asyncio.AbstractEventLoop,
    protocol_class: type[sslproto.SSLProtocol],
    make_app: Callable[[], CopiedApp],
) -> tuple:
    """What the app, the wire and the exception handler saw when the app
    failed while a record was read, and what the read raised."""

    async def main() -> tuple:
        reports: list[tuple] = []
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, context: reports.append(
                (context["message"], type(context.get("exception")))
            )
        )
        app = make_app()
        proto, peer, peer_out, _ = await connect(protocol_class, app)
        app.armed = True  # the handshake's own reads are not the test
        wire = proto._transport
        peer.write(b"boom")
        raised = outcome(lambda: feed(proto, peer_out.read()))
        await settle(app)
        proto.connection_lost(None)
        await settle(app)
        asyncio.get_running_loop().set_exception_handler(None)
        return raised, app.calls, wire.calls, reports

    try:
        return run(loop, main())
    except Stop:
        return ("Stop escaped",)


@pytest.mark.parametrize("error_type", [ValueError, OSError, Stop], ids=lambda t: t.__name__)
def test_errors_in_the_app_match_stock(loop, error_type) -> None:
    """An Exception from data_received() is the protocol's fatal error: the
    wire is force-closed and, but for an OSError, the loop's exception
    handler hears of it.  Any other BaseException goes up through
    buffer_updated() to the transport, as in asyncio."""

    def make_app() -> CopiedApp:
        return FailingApp(error_type("from the app"))

    stock = app_error_outcome(loop, sslproto.SSLProtocol, make_app)
    ours = app_error_outcome(loop, TLSProtocol, make_app)
    if error_type is Stop:
        assert ours == ("Stop escaped",)
    else:
        assert ("force_close", error_type) in ours[2]
        assert bool(ours[3]) == (error_type is not OSError)
    assert ours == stock


class FailingBufferedApp(BufferedApp):
    """A BufferedProtocol app whose get_buffer() or buffer_updated() fails:
    it raises, or get_buffer() gives what is no writable buffer."""

    def __init__(self, how: str) -> None:
        super().__init__(64)
        self.how = how
        self.armed = False

    def get_buffer(self, sizehint: int) -> Any:
        given = super().get_buffer(sizehint)
        if not self.armed:
            return given
        if self.how == "get_buffer raises":
            raise ValueError("no buffer")
        if self.how == "get_buffer raises Stop":
            raise Stop
        return {"gives None": None, "gives bytes": b"x" * 64, "gives nothing": bytearray()}.get(
            self.how, given
        )

    def buffer_updated(self, nbytes: int) -> None:
        super().buffer_updated(nbytes)
        if self.armed and self.how == "buffer_updated raises":
            raise OSError("not taken")


@pytest.mark.parametrize(
    "how",
    [
        "get_buffer raises",
        "get_buffer raises Stop",
        "gives None",
        "gives bytes",
        "gives nothing",
        "buffer_updated raises",
    ],
)
def test_errors_in_a_buffered_app_match_stock(loop, how) -> None:
    """A BufferedProtocol app that fails in get_buffer() or buffer_updated(),
    or hands out no writable buffer (or an empty one), gets what stock's
    protocol gives it."""
    stock = app_error_outcome(loop, sslproto.SSLProtocol, lambda: FailingBufferedApp(how))
    ours = app_error_outcome(loop, TLSProtocol, lambda: FailingBufferedApp(how))
    assert ours == stock


@pytest.mark.parametrize("n", [0, -1, 1, 1000, 262144, 262145, 10**30, 2.5])
def test_get_buffer_matches_stock(loop, n) -> None:
    """get_buffer(n) gives a buffer of at least n bytes, up to max_size (and
    max_size for n <= 0), for any number n."""

    async def main(protocol_class: type[sslproto.SSLProtocol]) -> Any:
        proto, *_ = await connect(protocol_class, CopiedApp())
        size = outcome(lambda: len(proto.get_buffer(n)))
        by_name = outcome(lambda: len(proto.get_buffer(n=n)))
        proto.connection_lost(None)
        return size, by_name

    assert run(loop, main(TLSProtocol)) == run(loop, main(sslproto.SSLProtocol))
