"""Where I/O readiness lands among ready callbacks.

asyncio queues an fd's readiness behind the callbacks that were already
ready when the poller returned, so those run first: a task scheduled before
the data arrived gets to set up what the protocol's callback completes.  A
callback that stops the watcher first (pause_reading, a cancelled sock_recv)
means the queued readiness is dropped.  casyncio runs transports during
dispatch only when nothing was queued; these tests pin the order where
something was, on both pollers and on stock asyncio."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import run_briefly
from net_helpers import assert_same_bytes, no_fd_leak, run  # noqa: F401  (fixture, applied below)

pytestmark = pytest.mark.usefixtures("no_fd_leak")


class Recorder(asyncio.Protocol):
    def __init__(self, order: list[str]) -> None:
        self.order = order

    def data_received(self, data: bytes) -> None:
        self.order.append(f"data {data!r}")


@contextlib.contextmanager
def recorded_connection(loop, order: list[str]) -> Iterator[tuple[Any, socket.socket]]:
    """A transport over one end of a socketpair, reading (data_received
    appends to `order`), and the other end."""
    a, b = socket.socketpair()
    with b:
        tr, _ = run(loop, loop.create_connection(lambda: Recorder(order), sock=a))
        run_briefly(loop)
        try:
            yield tr, b
        finally:
            tr.close()
            run_briefly(loop)


def test_callback_queued_before_data_runs_first(fd_loop):
    order: list[str] = []
    with recorded_connection(fd_loop, order) as (_, b):

        def send_and_schedule() -> None:
            b.send(b"x")  # readable before the next poll
            fd_loop.call_soon(order.append, "callback")

        fd_loop.call_soon(send_and_schedule)
        run_briefly(fd_loop, 3)
        assert order == ["callback", "data b'x'"]


def test_timer_due_as_data_arrives_runs_before_what_the_data_schedules(fd_loop):
    """Data and a due timer at one poll: asyncio runs data_received(), then
    the timer, then (an iteration later) what data_received() scheduled.  So
    a wait_for() whose deadline passed as the data came still times out."""
    order: list[str] = []
    done = fd_loop.create_future()
    done.add_done_callback(lambda _: order.append("future's callback"))

    class Completing(Recorder):
        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            done.set_result(data)

    a, b = socket.socketpair()
    with b:
        tr, _ = run(fd_loop, fd_loop.create_connection(lambda: Completing(order), sock=a))
        run_briefly(fd_loop)

        def send_and_block() -> None:
            b.send(b"x")
            time.sleep(0.03)  # the timer below is due by the next poll

        # With nothing else ready at that poll (no run_briefly() chain).
        fd_loop.call_later(0.005, send_and_block)
        fd_loop.call_later(0.01, order.append, "timer")
        fd_loop.run_until_complete(asyncio.sleep(0.06))
        tr.close()
        run_briefly(fd_loop)
    assert order == ["data b'x'", "timer", "future's callback"]


def test_callback_from_a_thread_during_the_poll_runs_before_the_data(fd_loop):
    """A thread queues a callback while the loop sleeps in its poller, and that
    poll reports data too: the callback was queued first, so it runs first.
    The thread makes the data readable without letting go of the GIL, so the
    loop cannot handle it before the callback is queued."""
    write = ctypes.PyDLL(None).write  # PyDLL: called with the GIL held
    write.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t)
    write.restype = ctypes.c_ssize_t
    order: list[str] = []
    written: list[int] = []
    queued = fd_loop.create_future()

    def callback() -> None:
        order.append("callback")
        queued.set_result(None)

    with recorded_connection(fd_loop, order) as (_, b):

        def from_thread() -> None:
            time.sleep(0.05)  # the loop is in its poller by now
            written.append(write(b.fileno(), b"x", 1))
            fd_loop.call_soon_threadsafe(callback)

        thread = threading.Thread(target=from_thread)
        switch_interval = sys.getswitchinterval()
        # Nothing may let go of the GIL between the write and the call: not
        # the switch interval, not a collection running finalizers, and not
        # debug mode's source traceback for the callback (it stats files).
        sys.setswitchinterval(1.0)
        gc.collect()
        gc.disable()
        debug = fd_loop.get_debug()
        fd_loop.set_debug(False)
        try:
            thread.start()
            run(fd_loop, queued)
        finally:
            thread.join()
            sys.setswitchinterval(switch_interval)
            gc.enable()
            fd_loop.set_debug(debug)
        run_briefly(fd_loop, 2)
        assert written == [1]
        assert order == ["callback", "data b'x'"]


def test_task_scheduled_before_datagram_sees_it(fd_loop):
    # The shape of CPython 3.13's test_datagram_send_to_non_listening_address:
    # the datagram is sent before the task that waits for it first runs.
    class Waiter(asyncio.DatagramProtocol):
        received: asyncio.Future[bytes] | None = None

        def datagram_received(self, data: bytes, addr: Any) -> None:
            assert self.received is not None, "datagram before the waiting task ran"
            self.received.set_result(data)

        async def wait(self) -> bytes:
            self.received = fd_loop.create_future()
            return await asyncio.wait_for(self.received, 5)

    def endpoint() -> tuple[Any, Waiter, Any]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        tr, proto = run(fd_loop, fd_loop.create_datagram_endpoint(Waiter, sock=sock))
        return tr, proto, sock.getsockname()

    tr1, proto1, addr1 = endpoint()
    tr2, proto2, addr2 = endpoint()
    for sender, receiver, addr, payload in ((tr1, proto2, addr2, b"a"), (tr2, proto1, addr1, b"b")):
        sender.sendto(payload, addr)
        # Not run(): its wait_for() would add a task step in between.
        assert_same_bytes(fd_loop.run_until_complete(receiver.wait()), payload)
    tr1.close()
    tr2.close()
    run_briefly(fd_loop)


def test_readiness_queued_behind_pause_reading_is_dropped(fd_loop):
    order: list[str] = []
    with recorded_connection(fd_loop, order) as (tr, b):

        def send_and_pause() -> None:
            b.send(b"x")
            fd_loop.call_soon(tr.pause_reading)

        fd_loop.call_soon(send_and_pause)
        run_briefly(fd_loop, 5)
        assert order == []
        tr.resume_reading()
        run_briefly(fd_loop, 3)
        assert order == ["data b'x'"]


def test_readiness_queued_behind_sock_recv_cancel_leaves_the_data(fd_loop):
    a, b = socket.socketpair()
    a.setblocking(False)
    with a, b:
        recv = asyncio.ensure_future(fd_loop.sock_recv(a, 10), loop=fd_loop)
        run_briefly(fd_loop)

        def send_and_cancel() -> None:
            b.send(b"x")
            fd_loop.call_soon(recv.cancel)

        fd_loop.call_soon(send_and_cancel)
        run_briefly(fd_loop, 5)
        assert recv.cancelled()
        assert a.recv(10) == b"x"
