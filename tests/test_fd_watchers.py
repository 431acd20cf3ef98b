"""add_reader / add_writer / remove_reader / remove_writer on socketpairs.

Run on stock asyncio and on casyncio with each poller backend (epoll,
poll), through the ``fd_loop`` fixture."""

from __future__ import annotations

import asyncio
import contextvars
import socket
from collections.abc import Iterator

import pytest
from conftest import assert_loop_usable, run_briefly


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


def fill(sock: socket.socket) -> None:
    """Write until the socket's buffer is full, so it is not writable."""
    chunk = b"x" * 65536
    try:
        while True:
            sock.send(chunk)
    except BlockingIOError:
        pass


def test_add_reader_returns_none_and_fires_when_readable(fd_loop, pair):
    a, b = pair
    fut = fd_loop.create_future()

    def on_readable() -> None:
        fut.set_result(a.recv(100))
        fd_loop.remove_reader(a)

    assert fd_loop.add_reader(a.fileno(), on_readable) is None
    fd_loop.call_soon(b.send, b"hello")
    assert fd_loop.run_until_complete(fut) == b"hello"


def test_reader_with_socket_object_and_args(fd_loop, pair):
    a, b = pair
    got: list[tuple] = []
    fd_loop.add_reader(a, lambda *args: (got.append(args), fd_loop.remove_reader(a)), 1, "x")
    b.send(b"!")
    run_briefly(fd_loop, 2)
    assert got == [(1, "x")]


def test_reader_not_called_while_nothing_to_read(fd_loop, pair):
    a, _b = pair
    calls: list[int] = []
    fd_loop.add_reader(a, calls.append, 1)
    run_briefly(fd_loop, 3)
    assert calls == []
    assert fd_loop.remove_reader(a) is True


def test_reader_is_level_triggered(fd_loop, pair):
    # Unread data keeps the reader firing, once per iteration.
    a, b = pair
    calls: list[int] = []
    fd_loop.add_reader(a, calls.append, 1)
    b.send(b"data")
    run_briefly(fd_loop, 4)
    assert len(calls) >= 3
    assert fd_loop.remove_reader(a) is True


def test_reader_stops_firing_once_drained(fd_loop, pair):
    a, b = pair
    calls: list[bytes] = []

    def on_readable() -> None:
        calls.append(a.recv(100))

    fd_loop.add_reader(a, on_readable)
    b.send(b"once")
    run_briefly(fd_loop, 4)
    assert calls == [b"once"]
    fd_loop.remove_reader(a)


def test_writer_fires_when_writable(fd_loop, pair):
    a, _b = pair
    calls: list[str] = []

    def on_writable() -> None:
        calls.append("w")
        assert fd_loop.remove_writer(a) is True

    assert fd_loop.add_writer(a.fileno(), on_writable) is None
    run_briefly(fd_loop, 3)
    assert calls == ["w"]


def test_writer_waits_for_buffer_space(fd_loop, pair):
    a, b = pair
    fill(a)
    calls: list[str] = []
    fd_loop.add_writer(a, calls.append, "w")
    run_briefly(fd_loop, 2)
    assert calls == []

    fut = fd_loop.create_future()

    def drain() -> None:
        try:
            while b.recv(1 << 20):
                pass
        except BlockingIOError:
            pass
        fd_loop.remove_reader(b)
        fd_loop.call_later(0.001, fut.set_result, None)

    fd_loop.add_reader(b, drain)
    fd_loop.run_until_complete(fut)
    run_briefly(fd_loop)
    assert calls and set(calls) == {"w"}
    assert fd_loop.remove_writer(a) is True


def test_remove_return_values(fd_loop, pair):
    a, _b = pair
    assert fd_loop.remove_reader(a) is False
    assert fd_loop.remove_writer(a) is False
    fd_loop.add_reader(a, print)
    assert fd_loop.remove_writer(a) is False
    assert fd_loop.remove_reader(a) is True
    assert fd_loop.remove_reader(a) is False
    fd_loop.add_writer(a, print)
    assert fd_loop.remove_reader(a.fileno()) is False
    assert fd_loop.remove_writer(a.fileno()) is True
    assert fd_loop.remove_writer(a) is False


def test_reader_and_writer_on_the_same_fd_are_independent(fd_loop, pair):
    a, b = pair
    calls: list[str] = []
    fd_loop.add_reader(a, calls.append, "r")
    fd_loop.add_writer(a, calls.append, "w")
    assert fd_loop.remove_reader(a) is True
    b.send(b"x")
    run_briefly(fd_loop)
    # Only the writer is left; the reader's removal did not drop it.
    assert calls == ["w"]
    assert fd_loop.remove_writer(a) is True
    assert fd_loop.remove_reader(a) is False


def test_reader_and_writer_fire_in_the_same_iteration(fd_loop, pair):
    a, b = pair
    calls: list[str] = []
    fd_loop.add_reader(a, calls.append, "r")
    fd_loop.add_writer(a, calls.append, "w")
    b.send(b"x")
    run_briefly(fd_loop)
    # asyncio queues the reader before the writer for one fd.
    assert calls == ["r", "w"]
    fd_loop.remove_reader(a)
    fd_loop.remove_writer(a)


def test_replacing_a_reader(fd_loop, pair):
    a, b = pair
    calls: list[str] = []
    fd_loop.add_reader(a, calls.append, "old")
    fd_loop.add_reader(a, calls.append, "new")
    b.send(b"x")
    run_briefly(fd_loop)
    assert calls == ["new"]
    assert fd_loop.remove_reader(a) is True
    assert fd_loop.remove_reader(a) is False


def test_replacing_a_writer(fd_loop, pair):
    a, _b = pair
    calls: list[str] = []
    fd_loop.add_writer(a, calls.append, "old")
    fd_loop.add_writer(a, calls.append, "new")
    run_briefly(fd_loop)
    assert calls == ["new"]
    assert fd_loop.remove_writer(a) is True


def test_replacing_a_reader_whose_event_is_already_queued(fd_loop, pair):
    a, b = pair
    calls: list[str] = []

    def replace() -> None:
        calls.append("first")
        fd_loop.add_reader(a, calls.append, "second")

    fd_loop.add_reader(a, replace)
    b.send(b"x")
    run_briefly(fd_loop, 2)
    assert calls[0] == "first"
    assert set(calls[1:]) == {"second"}
    fd_loop.remove_reader(a)


def test_reader_runs_after_earlier_call_soon_and_before_due_timers(fd_loop, pair):
    a, b = pair
    order: list[str] = []
    b.send(b"x")
    fd_loop.call_later(0, order.append, "timer")
    fd_loop.call_soon(order.append, "soon")

    def reader() -> None:
        order.append("reader")
        fd_loop.call_soon(order.append, "soon-from-reader")
        fd_loop.remove_reader(a)

    fd_loop.add_reader(a, reader)
    run_briefly(fd_loop, 2)
    # One iteration: the ready queue, then I/O callbacks, then due timers;
    # what they schedule runs in the next iteration.
    assert order == ["soon", "reader", "timer", "soon-from-reader"]


def test_reader_after_callback_scheduled_in_previous_iteration(fd_loop, pair):
    a, b = pair
    order: list[str] = []

    def first() -> None:
        order.append("first")
        b.send(b"x")
        fd_loop.call_soon(order.append, "second")

    fd_loop.add_reader(a, lambda: (order.append("reader"), fd_loop.remove_reader(a)))
    fd_loop.call_soon(first)
    run_briefly(fd_loop, 3)
    assert order == ["first", "second", "reader"]


def test_remove_reader_inside_its_callback(fd_loop, pair):
    a, b = pair
    calls: list[str] = []

    def once() -> None:
        calls.append("r")
        assert fd_loop.remove_reader(a) is True

    fd_loop.add_reader(a, once)
    b.send(b"unread data")
    run_briefly(fd_loop, 4)
    assert calls == ["r"]


def test_reader_removing_the_queued_writer(fd_loop, pair):
    a, b = pair
    calls: list[str] = []

    def reader() -> None:
        calls.append("r")
        fd_loop.remove_writer(a)
        fd_loop.remove_reader(a)

    fd_loop.add_reader(a, reader)
    fd_loop.add_writer(a, calls.append, "w")
    b.send(b"x")
    run_briefly(fd_loop, 3)
    # The writer's event was already queued behind the reader: removing it
    # cancels it, so it never runs.
    assert calls == ["r"]


def test_readers_removing_each_other_in_one_iteration(fd_loop):
    a1, b1 = socket.socketpair()
    a2, b2 = socket.socketpair()
    calls: list[str] = []
    with a1, b1, a2, b2:

        def make(name: str, other: socket.socket, own: socket.socket):
            def cb() -> None:
                calls.append(name)
                fd_loop.remove_reader(other)
                fd_loop.remove_reader(own)

            return cb

        fd_loop.add_reader(a1, make("one", a2, a1))
        fd_loop.add_reader(a2, make("two", a1, a2))
        b1.send(b"x")
        b2.send(b"x")
        run_briefly(fd_loop, 3)
    # Whichever ran first removed the other, whose queued event is dropped.
    assert len(calls) == 1


def test_reader_on_peer_close_sees_eof(fd_loop, pair):
    a, b = pair
    fut = fd_loop.create_future()

    def on_readable() -> None:
        fd_loop.remove_reader(a)
        fut.set_result(a.recv(10))

    fd_loop.add_reader(a, on_readable)
    fd_loop.call_soon(b.close)
    assert fd_loop.run_until_complete(fut) == b""


def test_watched_fd_closed_without_removal(fd_loop):
    a, b = socket.socketpair()
    fd = a.fileno()
    calls: list[str] = []
    fd_loop.add_reader(fd, calls.append, "r")
    a.close()
    b.close()
    run_briefly(fd_loop, 3)
    # The kernel forgot the closed fd: nothing fires, and removal still
    # reports that the loop had a watcher for it.
    assert calls == []
    assert fd_loop.remove_reader(fd) is True
    assert_loop_usable(fd_loop)


def test_fd_number_reused_after_remove(fd_loop):
    a, b = socket.socketpair()
    fd = a.fileno()
    fd_loop.add_reader(fd, print)
    assert fd_loop.remove_reader(fd) is True
    a.close()
    b.close()
    c, d = socket.socketpair()
    with c, d:
        if c.fileno() != fd:
            c, d = d, c
        fut = fd_loop.create_future()
        fd_loop.add_reader(c, lambda: (fd_loop.remove_reader(c), fut.set_result(c.recv(9))))
        d.send(b"reused")
        assert fd_loop.run_until_complete(fut) == b"reused"


@pytest.mark.parametrize("which", ["reader", "writer"])
def test_remove_by_a_closed_socket_object(fd_loop, which):
    """Closing a socket before removing its watcher (anyio does) makes
    fileno() -1: the loop still finds the fd by the object it was given, and
    the fd number, once reused, can be watched again."""
    add = getattr(fd_loop, f"add_{which}")
    remove = getattr(fd_loop, f"remove_{which}")
    a, b = socket.socketpair()
    fd = a.fileno()
    add(a, print)
    a.close()
    b.close()
    assert remove(a) is True
    with pytest.raises(ValueError, match="Invalid file descriptor: -1"):
        remove(a)  # now forgotten, as any closed socket
    c, d = socket.socketpair()
    with c, d:
        if c.fileno() != fd:
            c, d = d, c
        assert c.fileno() == fd
        fut = fd_loop.create_future()
        if which == "reader":
            d.send(b"x")
        add(c, lambda: (remove(c), fut.set_result("fired")))
        assert fd_loop.run_until_complete(asyncio.wait_for(fut, 5)) == "fired"


def test_remove_by_a_closed_socket_never_watched(fd_loop, pair):
    a, _ = pair
    fd_loop.add_reader(a, print)
    other, peer = socket.socketpair()
    other.close()
    peer.close()
    with pytest.raises(ValueError, match="Invalid file descriptor: -1"):
        fd_loop.remove_reader(other)
    assert fd_loop.remove_reader(a) is True
    assert_loop_usable(fd_loop)


def test_reader_runs_in_context_of_add_reader(fd_loop, pair):
    a, b = pair
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    token = var.set("at-add")
    seen: list[str] = []
    try:
        fd_loop.add_reader(a, lambda: (seen.append(var.get()), fd_loop.remove_reader(a)))
    finally:
        var.reset(token)
    b.send(b"x")
    run_briefly(fd_loop, 2)
    assert seen == ["at-add"]


def test_reader_exception_is_reported_and_loop_continues(fd_loop, pair, request):
    request.applymarker(pytest.mark.loop_errors)
    a, b = pair

    def bad() -> None:
        fd_loop.remove_reader(a)
        raise ZeroDivisionError

    fd_loop.add_reader(a, bad)
    b.send(b"x")
    run_briefly(fd_loop, 2)
    assert len(fd_loop.handler_calls) == 1
    ctx = fd_loop.handler_calls[0]
    assert isinstance(ctx["exception"], ZeroDivisionError)
    assert ctx["message"].startswith("Exception in callback")
    assert_loop_usable(fd_loop)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_in_reader_propagates(fd_loop, pair, exc_type):
    a, b = pair

    def fatal() -> None:
        fd_loop.remove_reader(a)
        raise exc_type

    fd_loop.add_reader(a, fatal)
    b.send(b"x")
    with pytest.raises(exc_type):
        fd_loop.run_forever()
    assert not fd_loop.is_running()
    assert_loop_usable(fd_loop)


def test_many_fds(fd_loop):
    pairs = [socket.socketpair() for _ in range(50)]
    got: list[int] = []
    try:
        for i, (a, _b) in enumerate(pairs):
            fd_loop.add_reader(a, lambda i=i, a=a: (got.append(i), fd_loop.remove_reader(a)))
        for _a, b in pairs[::2]:
            b.send(b"x")
        run_briefly(fd_loop, 2)
        assert sorted(got) == list(range(0, 50, 2))
        for a, _b in pairs[1::2]:
            assert fd_loop.remove_reader(a) is True
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_close_drops_watchers(fd_loop, pair):
    a, _b = pair
    calls: list[str] = []
    fd_loop.add_reader(a, calls.append, "r")
    fd_loop.add_writer(a, calls.append, "w")
    fd_loop.close()
    assert fd_loop.remove_reader(a) is False
    assert fd_loop.remove_writer(a) is False
    assert calls == []


def test_sock_recv_style_future_wakeup(fd_loop, pair):
    # The pattern asyncio's own code uses: a reader that completes a future.
    a, b = pair

    async def recv() -> bytes:
        fut = fd_loop.create_future()
        fd_loop.add_reader(a, lambda: fut.done() or fut.set_result(None))
        try:
            await fut
        finally:
            fd_loop.remove_reader(a)
        return a.recv(100)

    async def main() -> bytes:
        task = asyncio.ensure_future(recv())
        await asyncio.sleep(0.001)
        b.send(b"ping")
        return await task

    assert fd_loop.run_until_complete(main()) == b"ping"
