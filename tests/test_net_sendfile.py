"""sendfile: loop.sock_sendfile on sockets and loop.sendfile on transports,
zero-copy (os.sendfile) for regular files and the read-and-send fallback
otherwise, on casyncio and on stock asyncio."""

from __future__ import annotations

import asyncio
import io
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from net_helpers import (
    HOST,
    Recorder,
    assert_same_bytes,
    close_transport,
    no_fd_leak,  # noqa: F401  (fixture, applied below)
    payload,
    run,
    small_buffers,
    tcp_connection,
    xfail_if_stock_keeps_written_buffer,
)

import casyncio
from casyncio import _casyncio
from casyncio._versions import since

pytestmark = pytest.mark.usefixtures("no_fd_leak")

SIZE = 1_500_000
DATA = payload(SIZE, seed=42)


@pytest.fixture
def data_file(tmp_path: Path) -> Iterator[io.BufferedReader]:
    path = tmp_path / "data.bin"
    path.write_bytes(DATA)
    with open(path, "rb") as f:
        yield f


@pytest.fixture
def sendfile_calls(monkeypatch, loop_kind) -> Callable[[], int]:
    """How many sendfile(2) calls the loop has made since the test began:
    stock asyncio's go through os.sendfile (spied on here, looked up on the
    os module at call time), casyncio makes them in C and counts them in
    _casyncio._stats()."""
    if loop_kind.startswith("casyncio"):
        before = _casyncio._stats()["sendfile_calls"]
        return lambda: _casyncio._stats()["sendfile_calls"] - before
    calls: list[tuple] = []
    original = os.sendfile

    def spy(out_fd, in_fd, offset, count):
        calls.append((out_fd, in_fd, offset, count))
        return original(out_fd, in_fd, offset, count)

    monkeypatch.setattr(os, "sendfile", spy)
    return lambda: len(calls)


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    # Small buffers, set before connecting (shrinking a TCP window that was
    # already advertised stalls the connection): sendfile has to wait for
    # the reader part way.
    with socket.socket() as lsock, socket.socket() as a:
        small_buffers(lsock)  # accepted sockets inherit it
        lsock.bind((HOST, 0))
        lsock.listen(1)
        small_buffers(a)
        a.connect(lsock.getsockname())
        b, _ = lsock.accept()
        with b:
            a.setblocking(False)
            b.setblocking(False)
            yield a, b


async def read_all(loop, sock: socket.socket, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        chunk = await loop.sock_recv(sock, 65536)
        if not chunk:
            break
        got += chunk
    return bytes(got)


# ---- sock_sendfile ------------------------------------------------------------


def test_sock_sendfile_zero_copy(loop, tcp_pair, data_file, sendfile_calls):
    a, b = tcp_pair

    async def main() -> tuple[int, bytes]:
        reader = asyncio.ensure_future(read_all(loop, b, SIZE))
        sent = await loop.sock_sendfile(a, data_file)
        return sent, await reader

    sent, got = run(loop, main())
    assert sent == SIZE
    assert_same_bytes(got, DATA)
    assert data_file.tell() == SIZE
    assert sendfile_calls() > 0, "sendfile(2) was not used"
    # The small buffers made it wait for the reader part way.
    assert sendfile_calls() > 1


def test_sock_sendfile_offset_and_count(loop, tcp_pair, data_file, sendfile_calls):
    a, b = tcp_pair

    async def main() -> tuple[int, bytes]:
        sent = await loop.sock_sendfile(a, data_file, 1000, 5000)
        return sent, await read_all(loop, b, 5000)

    sent, got = run(loop, main())
    assert sent == 5000
    assert_same_bytes(got, DATA[1000:6000])
    assert data_file.tell() == 6000
    assert sendfile_calls() > 0


def test_sock_sendfile_count_past_the_end(loop, tcp_pair, data_file):
    a, b = tcp_pair

    async def main() -> tuple[int, bytes]:
        sent = await loop.sock_sendfile(a, data_file, SIZE - 10, 1000)
        return sent, await read_all(loop, b, 10)

    assert run(loop, main()) == (10, DATA[-10:])
    assert data_file.tell() == SIZE


def test_sock_sendfile_count_beyond_a_c_ssize_t(loop, tcp_pair, data_file, sendfile_calls):
    a, b = tcp_pair

    async def main() -> tuple[int, bytes]:
        sent = await loop.sock_sendfile(a, data_file, SIZE - 10, 2**70)
        return sent, await read_all(loop, b, 10)

    if not since((3, 13, 0)):
        # Before 3.13 (CPython gh-107056), os.sendfile() refused the count.
        with pytest.raises(OverflowError):
            run(loop, main())
        return
    assert run(loop, main()) == (10, DATA[-10:])
    assert data_file.tell() == SIZE
    assert sendfile_calls() > 0


def test_sock_sendfile_empty_file(loop, tcp_pair, tmp_path):
    a, _b = tcp_pair
    path = tmp_path / "empty"
    path.write_bytes(b"")
    with open(path, "rb") as f:
        assert run(loop, loop.sock_sendfile(a, f)) == 0


def test_sock_sendfile_cancelled_part_way_moves_the_file_by_what_went(tcp_pair, data_file):
    """Cancelled while waiting for the reader: what was sent stays sent and
    the file's position is just past it, so the rest can follow.  (casyncio
    only: stock asyncio has code for this, but it removes its writer when
    the future is cancelled, so that code never runs and the position stays
    where it was.)"""
    a, b = tcp_pair
    loop = casyncio.new_event_loop()

    async def drain() -> bytes:
        got = bytearray()
        while True:
            try:
                got += await asyncio.wait_for(loop.sock_recv(b, 65536), 0.2)
            except TimeoutError:
                return bytes(got)

    async def main() -> bytes:
        sending = asyncio.ensure_future(loop.sock_sendfile(a, data_file))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not sending.done()  # the small buffers are full: it waits
        sending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sending
        return await drain()

    try:
        got = run(loop, main())
    finally:
        loop.close()
    assert 0 < len(got) < SIZE
    assert_same_bytes(got, DATA[: len(got)])
    assert os.lseek(data_file.fileno(), 0, os.SEEK_CUR) == len(got)


@pytest.mark.parametrize("fallback", [True, False])
def test_sock_sendfile_not_a_regular_file(loop, tcp_pair, sendfile_calls, fallback):
    a, b = tcp_pair
    f = io.BytesIO(DATA[:100_000])

    async def main() -> tuple[int, bytes]:
        reader = asyncio.ensure_future(read_all(loop, b, 100_000))
        try:
            sent = await loop.sock_sendfile(a, f, fallback=fallback)
        except BaseException:
            reader.cancel()
            raise
        # Not cancelled once all was sent: the reader may still be taking in
        # the last bytes (the fallback's final empty read in the executor
        # can come back first, when the thread gets the GIL on a busy machine).
        return sent, await reader

    if fallback:
        sent, got = run(loop, main())
        assert sent == 100_000
        assert_same_bytes(got, DATA[:100_000])
        assert f.tell() == 100_000
    else:
        with pytest.raises(asyncio.SendfileNotAvailableError):
            run(loop, main())
    assert sendfile_calls() == 0


# From 3.14.6 and 3.13.14 (CPython gh-150107) offset 0 means the file's start
# on both paths, and the file is left at offset + sent; before, the
# plain-send fallback read from wherever the file was when offset was 0.
ALWAYS_SEEKS = since((3, 13, 14), (3, 14, 6))


@pytest.mark.parametrize("fallback_only", [False, True], ids=["sendfile(2)", "plain-send"])
def test_sock_sendfile_offset_zero_on_a_file_moved_on(loop, tcp_pair, data_file, fallback_only):
    a, b = tcp_pair
    data_file.seek(SIZE - 10)
    if fallback_only:
        # A file object whose fileno() fails takes the plain-send path.
        f = io.BufferedReader(io.BytesIO(DATA))
        f.seek(SIZE - 10)
    else:
        f = data_file

    async def main() -> tuple[int, bytes]:
        reader = asyncio.ensure_future(read_all(loop, b, SIZE))
        sent = await loop.sock_sendfile(a, f, 0)
        a.shutdown(socket.SHUT_WR)
        return sent, await reader

    sent, got = run(loop, main())
    if fallback_only and not ALWAYS_SEEKS:
        # The last 10 bytes, and then the file goes to offset + sent.
        assert (sent, got, f.tell()) == (10, DATA[-10:], 10)
    else:
        assert (sent, f.tell()) == (SIZE, SIZE)
        assert_same_bytes(got, DATA)


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"offset": -1}, ValueError),
        ({"offset": 1.5}, TypeError),
        ({"count": 0}, ValueError),
        ({"count": -5}, ValueError),
        ({"count": "10"}, TypeError),
    ],
    ids=["negative-offset", "float-offset", "zero-count", "negative-count", "str-count"],
)
def test_sock_sendfile_bad_arguments(loop, tcp_pair, data_file, kwargs, exc):
    a, _b = tcp_pair
    with pytest.raises(exc):
        run(loop, loop.sock_sendfile(a, data_file, **kwargs))


def test_sock_sendfile_text_file(loop, tcp_pair, tmp_path):
    a, _b = tcp_pair
    path = tmp_path / "text.txt"
    path.write_text("text")
    with open(path) as f, pytest.raises(ValueError, match="binary mode"):
        run(loop, loop.sock_sendfile(a, f))


def test_sock_sendfile_datagram_socket(loop, data_file):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        with pytest.raises(ValueError, match="SOCK_STREAM"):
            run(loop, loop.sock_sendfile(s, data_file))


def test_sock_sendfile_unix_socket(loop, data_file, sendfile_calls):
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        b.setblocking(False)

        async def main() -> tuple[int, bytes]:
            reader = asyncio.ensure_future(read_all(loop, b, SIZE))
            return await loop.sock_sendfile(a, data_file), await reader

        sent, got = run(loop, main())
        assert sent == SIZE
        assert_same_bytes(got, DATA)
        assert sendfile_calls() > 0


# ---- loop.sendfile on transports ------------------------------------------------


def test_transport_sendfile_zero_copy(loop, data_file, sendfile_calls):
    async def main() -> None:
        async with tcp_connection(loop) as c:
            c.client_t.write(b"header:")
            sent = await loop.sendfile(c.client_t, data_file)
            assert sent == SIZE
            assert data_file.tell() == SIZE
            c.client_t.write(b":trailer")
            expected = b"header:" + DATA + b":trailer"
            assert_same_bytes(await c.server_p.wait_bytes(len(expected)), expected)
            # Reading was resumed afterwards.
            assert c.client_t.is_reading()
            c.server_t.write(b"ack")
            assert await c.client_p.wait_bytes(3) == b"ack"

    run(loop, main())
    assert sendfile_calls() > 0


def test_transport_sendfile_waits_for_the_write_buffer(loop, data_file):
    head = payload(1_000_000, seed=8)

    async def main() -> None:
        async with tcp_connection(loop, small_bufs=True) as c:
            c.server_t.pause_reading()
            c.client_t.write(head)
            assert c.client_t.get_write_buffer_size() > 0
            task = asyncio.ensure_future(loop.sendfile(c.client_t, data_file, 0, 200_000))
            await asyncio.sleep(0)
            with pytest.raises(RuntimeError, match="sendfile is in progress"):
                c.client_t.write(b"not now")
            c.server_t.resume_reading()
            assert await task == 200_000
            expected = head + DATA[:200_000]
            assert_same_bytes(await c.server_p.wait_bytes(len(expected)), expected)

    run(loop, main())


def test_transport_sendfile_waiting_for_the_buffer_fails_when_the_transport_is_aborted(
    loop, data_file
):
    async def main() -> None:
        async with tcp_connection(loop, small_bufs=True) as c:
            c.server_t.pause_reading()
            c.client_t.write(payload(1_000_000, seed=9))
            assert c.client_t.get_write_buffer_size() > 0
            task = asyncio.ensure_future(loop.sendfile(c.client_t, data_file))
            await asyncio.sleep(0)
            assert not task.done()
            c.client_t.abort()
            with pytest.raises(ConnectionError, match="closed by peer"):
                await asyncio.wait_for(task, 5)

    run(loop, main())


@pytest.mark.parametrize("fallback", [True, False])
def test_transport_sendfile_fallback(loop, sendfile_calls, fallback, request):
    if fallback:
        # Stock's fallback reads each block into the same buffer and writes
        # a view of it: a block still queued is overwritten by the next.
        xfail_if_stock_keeps_written_buffer(loop, request)
    f = io.BytesIO(DATA)

    async def main() -> None:
        async with tcp_connection(loop, small_bufs=True) as c:
            c.client_t.set_write_buffer_limits(high=32 * 1024)
            if not fallback:
                with pytest.raises(asyncio.SendfileNotAvailableError):
                    await loop.sendfile(c.client_t, f, fallback=False)
                return
            sent = await loop.sendfile(c.client_t, f, 100, 500_000)
            assert sent == 500_000
            assert f.tell() == 500_100
            assert_same_bytes(await c.server_p.wait_bytes(500_000), DATA[100:500_100])
            # The transport has its own protocol back and is usable.
            assert c.client_t.get_protocol() is c.client_p
            c.client_t.write(b"after")
            assert_same_bytes(await c.server_p.wait_bytes(500_005), DATA[100:500_100] + b"after")

    run(loop, main())
    assert sendfile_calls() == 0


def test_transport_sendfile_closing_transport(loop, data_file):
    async def main() -> None:
        async with tcp_connection(loop) as c:
            c.client_t.close()
            with pytest.raises(RuntimeError, match="closing"):
                await loop.sendfile(c.client_t, data_file)

    run(loop, main())


def test_transport_sendfile_datagram_unsupported(loop, data_file):
    async def main() -> None:
        t, _p = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=(HOST, 0))
        try:
            with pytest.raises(RuntimeError, match="not supported"):
                await loop.sendfile(t, data_file)
        finally:
            t.close()
            await asyncio.sleep(0)

    run(loop, main())


def test_transport_sendfile_unix(loop, tmp_path, data_file, sendfile_calls):
    path = str(tmp_path / "sf.sock")
    accepted: list[Recorder] = []

    def factory() -> Recorder:
        accepted.append(Recorder(loop))
        return accepted[-1]

    async def main() -> None:
        server = await loop.create_unix_server(factory, path)
        async with server:
            t, p = await loop.create_unix_connection(lambda: Recorder(loop), path)
            assert await loop.sendfile(t, data_file) == SIZE
            t.write_eof()
            while not accepted:
                await asyncio.sleep(0)
            await accepted[0].eof
            assert_same_bytes(accepted[0].data, DATA)
            await close_transport(t, p)

    run(loop, main())
    assert sendfile_calls() > 0
