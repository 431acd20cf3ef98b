"""Bad input gets the exception asyncio raises, and the loop stays usable.

After every rejected call the test proves the loop still runs callbacks,
timers and coroutines (``assert_loop_usable``)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import errno
import functools
import gc
import signal
import socket
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import assert_loop_usable, run_briefly, run_python

import casyncio


async def coro_func() -> None:
    pass


class NoFileno:
    pass


class BadFileno:
    def fileno(self) -> str:
        return "not an int"


NOT_CALLABLE = [None, 1, "callback", object()]
SCHEDULERS: dict[str, Callable[..., Any]] = {
    "call_soon": lambda lp, cb: lp.call_soon(cb),
    "call_soon_threadsafe": lambda lp, cb: lp.call_soon_threadsafe(cb),
    "call_later": lambda lp, cb: lp.call_later(0, cb),
    "call_at": lambda lp, cb: lp.call_at(lp.time(), cb),
}


@pytest.fixture
def checking_loop(loop):
    """The loop in debug mode, where asyncio checks callbacks at the call."""
    loop.set_debug(True)
    return loop


@pytest.mark.parametrize("method", SCHEDULERS)
@pytest.mark.parametrize("bad", NOT_CALLABLE, ids=repr)
def test_non_callable_is_rejected(checking_loop, method, bad):
    with pytest.raises(TypeError, match="a callable object was expected"):
        SCHEDULERS[method](checking_loop, bad)
    assert_loop_usable(checking_loop)


@pytest.mark.loop_errors
@pytest.mark.parametrize("method", SCHEDULERS)
@pytest.mark.parametrize("bad", NOT_CALLABLE, ids=repr)
def test_non_callable_fails_when_called_in_normal_mode(loop, method, bad):
    """Outside debug mode asyncio keeps any callback: calling it fails, and the
    exception handler is told (sanic's tests pass a Task to call_later())."""
    loop.set_debug(False)
    handle = SCHEDULERS[method](loop, bad)
    loop.run_until_complete(asyncio.sleep(0.01))
    [context] = loop.handler_calls
    assert context["message"].startswith("Exception in callback ")
    assert isinstance(context["exception"], TypeError)
    assert context["handle"] is handle
    loop.handler_calls.clear()
    assert_loop_usable(loop)


@pytest.mark.parametrize("method", SCHEDULERS)
def test_coroutine_function_is_called_in_normal_mode(loop, method):
    """A coroutine function is called like any callback outside debug mode:
    the coroutine it returns is never awaited."""
    loop.set_debug(False)
    SCHEDULERS[method](loop, coro_func)
    with pytest.warns(RuntimeWarning, match="was never awaited"):
        loop.run_until_complete(asyncio.sleep(0.01))
    assert_loop_usable(loop)


@pytest.mark.parametrize("method", SCHEDULERS)
def test_coroutine_function_is_rejected(checking_loop, method):
    with pytest.raises(TypeError, match="coroutines cannot be used"):
        SCHEDULERS[method](checking_loop, coro_func)
    assert_loop_usable(checking_loop)


@pytest.mark.parametrize("method", SCHEDULERS)
def test_coroutine_object_is_rejected(checking_loop, method):
    c = coro_func()
    try:
        with pytest.raises(TypeError, match="coroutines cannot be used"):
            SCHEDULERS[method](checking_loop, c)
    finally:
        c.close()
    assert_loop_usable(checking_loop)


@pytest.mark.parametrize("method", SCHEDULERS)
def test_bound_coroutine_method_is_rejected(checking_loop, method):
    class C:
        async def meth(self) -> None:
            pass

    with pytest.raises(TypeError, match="coroutines cannot be used"):
        SCHEDULERS[method](checking_loop, C().meth)
    assert_loop_usable(checking_loop)


@pytest.mark.parametrize("method", SCHEDULERS)
def test_partial_of_coroutine_function_is_rejected_in_debug_mode(loop, method):
    loop.set_debug(True)
    with pytest.raises(TypeError, match="coroutines cannot be used"):
        SCHEDULERS[method](loop, functools.partial(coro_func))
    assert_loop_usable(loop)


def test_call_soon_without_callback(loop):
    with pytest.raises(TypeError):
        loop.call_soon()
    with pytest.raises(TypeError):
        loop.call_later(1)
    with pytest.raises(TypeError):
        loop.call_at(1)
    assert_loop_usable(loop)


def test_unknown_keyword_is_rejected(loop):
    with pytest.raises(TypeError):
        loop.call_soon(print, foo=1)
    with pytest.raises(TypeError):
        loop.call_later(0, print, foo=1)
    assert_loop_usable(loop)


@pytest.mark.parametrize("bad", [None, "1", b"1", [1], object()], ids=repr)
def test_bad_delay_is_rejected(loop, bad):
    with pytest.raises(TypeError):
        loop.call_later(bad, print)
    assert_loop_usable(loop)


def test_none_when_is_rejected(loop):
    with pytest.raises(TypeError):
        loop.call_at(None, print)
    assert_loop_usable(loop)


@pytest.mark.parametrize("bad", ["1", object()], ids=repr)
def test_non_numeric_when_is_rejected(loop, loop_kind, request, bad):
    if loop_kind == "asyncio":
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason="stock asyncio's call_at() checks only for None; a non-number "
                "deadline is pushed on its heap and fails later in _run_once",
            )
        )
    with pytest.raises(TypeError):
        loop.call_at(bad, print)
    assert_loop_usable(loop)


@pytest.mark.parametrize("bad", [1, "ctx", {}], ids=repr)
def test_bad_context_is_rejected(loop, loop_kind, request, bad):
    if loop_kind == "asyncio":
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason="stock asyncio stores any context= object and fails only when the "
                "callback runs (AttributeError: no .run, reported to the exception handler)",
            )
        )
    ran: list[str] = []
    with pytest.raises(TypeError):
        loop.call_soon(ran.append, "x", context=bad)
    with pytest.raises(TypeError):
        loop.call_later(0, ran.append, "x", context=bad)
    with pytest.raises(TypeError):
        loop.call_at(loop.time(), ran.append, "x", context=bad)
    with pytest.raises(TypeError):
        loop.call_soon_threadsafe(ran.append, "x", context=bad)
    coro = coro_func()
    with pytest.raises(TypeError):
        loop.create_task(coro, context=bad)
    coro.close()
    assert_loop_usable(loop)
    assert ran == []


def test_context_none_means_copy_of_current(loop):
    ran: list[str] = []
    loop.call_soon(ran.append, "x", context=None)
    loop.call_later(0, ran.append, "y", context=None)
    assert_loop_usable(loop)
    assert ran == ["x", "y"]


def test_empty_context_is_accepted(loop):
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("outer")
    seen: list[str] = []
    loop.call_soon(lambda: seen.append(var.get()), context=contextvars.Context())
    assert_loop_usable(loop)
    assert seen == ["unset"]


# ---- fd watchers -------------------------------------------------------------


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
@pytest.mark.parametrize(
    "bad",
    [-1, -100, -(2**70), NoFileno(), BadFileno(), 1.5, "3"],
    ids=["-1", "-100", "-2**70", "nofileno", "badfileno", "float", "str"],
)
def test_add_watcher_bad_fd_raises_value_error(fd_loop, method, bad):
    ran: list[str] = []
    with pytest.raises(ValueError):
        getattr(fd_loop, method)(bad, ran.append, "x")
    assert_loop_usable(fd_loop)
    assert ran == []


@pytest.mark.loop_errors
@pytest.mark.parametrize("debug", [False, True], ids=["normal", "debug"])
@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_watcher_callback_is_not_checked(fd_loop, method, debug):
    """asyncio keeps any fd callback, in every mode: one that is not callable
    fails when the fd is ready, and the exception handler is told."""
    fd_loop.set_debug(debug)
    a, b = socket.socketpair()
    try:
        b.send(b"x")
        getattr(fd_loop, method)(a, 42)
        run_briefly(fd_loop)
        getattr(fd_loop, method.replace("add", "remove"))(a)
    finally:
        a.close()
        b.close()
    assert fd_loop.handler_calls
    assert all(isinstance(c["exception"], TypeError) for c in fd_loop.handler_calls)
    fd_loop.handler_calls.clear()
    assert_loop_usable(fd_loop)


@pytest.mark.parametrize("method", ["remove_reader", "remove_writer"])
@pytest.mark.parametrize("bad", [-1, -(2**70), NoFileno()], ids=["-1", "-2**70", "nofileno"])
def test_remove_watcher_bad_fd_raises_value_error(fd_loop, method, bad):
    with pytest.raises(ValueError):
        getattr(fd_loop, method)(bad)
    assert_loop_usable(fd_loop)


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
@pytest.mark.parametrize("fd", [2**31, 2**70], ids=["2**31", "2**70"])
def test_add_watcher_fd_beyond_a_c_int_raises_overflow_error(fd_loop, method, fd):
    with pytest.raises(OverflowError):
        getattr(fd_loop, method)(fd, print)
    assert_loop_usable(fd_loop)


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_add_watcher_on_a_far_unopened_fd_raises_ebadf(fd_loop, method):
    """No fd has this number: the loop says so, rather than first making
    room in its fd table for a number that high."""
    with pytest.raises(OSError) as info:
        getattr(fd_loop, method)(2**31 - 1, print)
    assert info.value.errno == errno.EBADF
    assert_loop_usable(fd_loop)


@pytest.mark.parametrize("method", ["remove_reader", "remove_writer"])
@pytest.mark.parametrize("fd", [2**31 - 1, 2**31, 2**70], ids=["2**31-1", "2**31", "2**70"])
def test_remove_watcher_of_an_fd_that_cannot_be_watched_returns_false(fd_loop, method, fd):
    assert getattr(fd_loop, method)(fd) is False
    assert_loop_usable(fd_loop)


@pytest.mark.parametrize("method", ["add_reader", "add_writer", "remove_reader", "remove_writer"])
def test_bad_file_object_on_a_closed_loop_raises_value_error(loop, method):
    """asyncio looks at the file object before it looks at the loop (and at
    the fd's number after)."""
    loop.close()
    args = (NoFileno(), print) if method.startswith("add") else (NoFileno(),)
    with pytest.raises(ValueError, match="Invalid file object"):
        getattr(loop, method)(*args)
    if method.startswith("add"):
        with pytest.raises(RuntimeError, match="Event loop is closed"):
            getattr(loop, method)(-1, print)
    else:
        assert getattr(loop, method)(-1) is False


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_add_watcher_on_a_closed_fd_raises_os_error(fd_loop, method):
    a, b = socket.socketpair()
    fd = a.fileno()
    a.close()
    b.close()
    ran: list[str] = []
    try:
        with pytest.raises(OSError):
            getattr(fd_loop, method)(fd, ran.append, "x")
    finally:
        getattr(fd_loop, method.replace("add", "remove"))(fd)
    assert_loop_usable(fd_loop)
    assert ran == []


# ---- closed loop ---------------------------------------------------------------


def _closed_loop_calls(lp: asyncio.AbstractEventLoop) -> dict[str, Callable[[], Any]]:
    return {
        "call_soon": lambda: lp.call_soon(print),
        "call_soon_threadsafe": lambda: lp.call_soon_threadsafe(print),
        "call_later": lambda: lp.call_later(0, print),
        "call_at": lambda: lp.call_at(lp.time(), print),
        "run_forever": lambda: lp.run_forever(),
        "run_in_executor": lambda: lp.run_in_executor(None, print),
        "add_reader": lambda: lp.add_reader(0, print),
        "add_writer": lambda: lp.add_writer(1, print),
        "add_signal_handler": lambda: lp.add_signal_handler(signal.SIGUSR1, print),
    }


CLOSED_LOOP_CALLS = list(_closed_loop_calls(None))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", CLOSED_LOOP_CALLS)
def test_calls_on_a_closed_loop_raise_runtime_error(loop, name):
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        _closed_loop_calls(loop)[name]()
    assert loop.is_closed()
    loop.close()


def test_create_task_on_a_closed_loop_raises_runtime_error(loop):
    loop.close()
    c = coro_func()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.create_task(c)
    c.close()


def test_remove_watchers_on_a_closed_loop_return_false(loop):
    a, b = socket.socketpair()
    with a, b:
        loop.add_reader(a, print)
        loop.close()
        assert loop.remove_reader(a) is False
        assert loop.remove_writer(a) is False


# ---- transports whose loop was closed under them ----------------------------------


@contextlib.contextmanager
def _unclosed_transport_dropped() -> Iterator[None]:
    """For dropping (``del``) a transport that cannot be closed any more
    (closing schedules connection_lost on its closed loop) without its
    ResourceWarning: freed inside, and collected before the filter goes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        yield
        gc.collect()


@pytest.mark.parametrize("call", ["resume_reading", "write", "writelines"])
def test_stream_transport_that_must_watch_after_its_loop_closed_raises(loop, call):
    """Resuming, or writing more than the socket takes, needs the loop to
    watch the fd: on a closed loop that is asyncio's RuntimeError."""
    a, b = socket.socketpair()
    with a, b:
        transport, _ = loop.run_until_complete(loop.connect_accepted_socket(asyncio.Protocol, a))
        transport.pause_reading()
        loop.close()
        big = b"x" * (8 << 20)  # more than a socketpair's buffers hold
        with pytest.raises(RuntimeError, match="Event loop is closed"):
            if call == "resume_reading":
                transport.resume_reading()
            elif call == "write":
                transport.write(big)
            else:
                transport.writelines([big])
        with _unclosed_transport_dropped():
            del transport


def test_datagram_transport_resuming_after_its_loop_closed_raises(loop):
    transport, _ = loop.run_until_complete(
        loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    )
    transport.pause_reading()
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        transport.resume_reading()
    with _unclosed_transport_dropped():
        del transport


# ---- handlers, executors, factories ----------------------------------------------


@pytest.mark.parametrize("bad", [1, "handler", object()], ids=repr)
def test_bad_exception_handler_is_rejected(loop, bad):
    handler = loop.get_exception_handler()
    with pytest.raises(TypeError):
        loop.set_exception_handler(bad)
    assert loop.get_exception_handler() is handler
    assert_loop_usable(loop)


@pytest.mark.parametrize("bad", [1, "factory"], ids=repr)
def test_bad_task_factory_is_rejected(loop, bad):
    with pytest.raises(TypeError):
        loop.set_task_factory(bad)
    assert loop.get_task_factory() is None
    assert_loop_usable(loop)


def test_set_default_executor_rejects_non_thread_pools(loop):
    with (
        concurrent.futures.ProcessPoolExecutor(max_workers=1) as pool,
        pytest.raises(TypeError, match="ThreadPoolExecutor"),
    ):
        loop.set_default_executor(pool)
    with pytest.raises(TypeError, match="ThreadPoolExecutor"):
        loop.set_default_executor(object())
    # The default executor still works.
    assert loop.run_until_complete(loop.run_in_executor(None, sum, [1, 2])) == 3
    assert_loop_usable(loop)


def test_run_in_executor_rejects_coroutine_function_in_debug_mode(loop):
    loop.set_debug(True)
    with pytest.raises(TypeError, match="coroutines cannot be used"):
        loop.run_in_executor(None, coro_func)
    assert_loop_usable(loop)


def test_failing_fileno_error_other_than_type_propagates(fd_loop):
    class Exploding:
        def fileno(self) -> int:
            raise OSError("fileno failed")

    # selectors only translates AttributeError/TypeError/ValueError.
    with pytest.raises(OSError, match="fileno failed"):
        fd_loop.add_reader(Exploding(), print)
    assert_loop_usable(fd_loop)


def test_task_init_failing_on_its_name_keeps_no_references():
    # A name whose str() raises fails Task.__init__; calling __init__ again
    # and again must not leak what the earlier calls took (CPython's
    # test_proper_refcounts, gh-126083, checks the same of asyncio.Task).
    # From 3.15 the calls after the first are refused (gh-142615).
    class Break:
        def __str__(self) -> str:
            raise RuntimeError("break")

    ctx = contextvars.Context()
    before = sys.getrefcount(ctx)
    loop = casyncio.new_event_loop()
    try:
        c = coro_func()
        task = casyncio.Task.__new__(casyncio.Task)
        for i in range(5):
            refused = i > 0 and sys.version_info >= (3, 15)
            with pytest.raises(RuntimeError, match="already initialized" if refused else "break"):
                task.__init__(c, loop=loop, context=ctx, name=Break())
        c.close()
        del task
    finally:
        loop.close()
    assert sys.getrefcount(ctx) == before


SECOND_INIT = pytest.mark.skipif(
    sys.version_info < (3, 15), reason="before 3.15, __init__ may be called again (gh-142615)"
)


@SECOND_INIT
def test_future_second_init_is_refused():
    loop = casyncio.new_event_loop()
    try:
        fut = loop.create_future()
        fut.set_result(1)
        with pytest.raises(RuntimeError, match="Future object is already initialized"):
            fut.__init__(loop=loop)
        assert fut.result() == 1
    finally:
        loop.close()


@SECOND_INIT
def test_task_second_init_is_refused():
    loop = casyncio.new_event_loop()
    try:
        task = casyncio.Task(coro_func(), loop=loop, name="first")
        other = coro_func()
        with pytest.raises(RuntimeError, match="Task object is already initialized"):
            task.__init__(other, loop=loop, name="second")
        other.close()
        assert task.get_name() == "first"
        loop.run_until_complete(task)
    finally:
        loop.close()


class NotALoop:
    pass


@pytest.mark.loop_errors
@pytest.mark.skipif(
    sys.version_info >= (3, 15),
    reason="3.15 refuses a second __init__ (gh-142615), the one way to give a task a bad loop",
)
def test_step_failing_inside_is_reported_to_the_loop_running_it(loop, loop_kind):
    """A step that fails inside (here because a failed second ``__init__``
    left the task's loop something that is not a loop) is reported to the
    exception handler of the loop whose queue ran it, as a failing callback
    is, and the loop goes on."""

    async def yields() -> None:
        await asyncio.sleep(0)  # the next step goes through task._loop

    task_type = asyncio.Task if loop_kind == "asyncio" else casyncio.Task
    task = task_type(yields(), loop=loop)
    with pytest.raises(AttributeError):
        task.__init__(print, loop=NotALoop())
    loop.run_until_complete(asyncio.sleep(0.01))
    # What fails first differs between Python versions (3.11: the task's
    # loop has no call_soon; 3.14: asyncio's current-task bookkeeping).
    [call] = loop.handler_calls
    assert call["message"].startswith("Exception in callback")
    assert isinstance(call["exception"], (AttributeError, RuntimeError))
    loop.handler_calls.clear()
    task._log_destroy_pending = False
    task.get_coro().close()  # 3.14 fails the step before the coroutine starts
    assert_loop_usable(loop)


UNINITIALIZED_TASK = """
import asyncio, casyncio
asyncio.set_event_loop(None)  # from now on, asyncio finds no loop to give
loop = casyncio.new_event_loop()
calls = []
loop.set_exception_handler(lambda lp, c: calls.append(type(c.get("exception")).__name__))

async def spins():
    while True:
        await asyncio.sleep(0)

task = loop.create_task(spins())
loop.run_until_complete(asyncio.sleep(0))
coro = spins()
try:
    task.__init__(coro)  # no loop given, none to find
except RuntimeError:
    pass
else:
    raise SystemExit("the second __init__ did not fail")
coro.close()
loop.run_until_complete(asyncio.sleep(0.01))
print(calls)
task._log_destroy_pending = False
loop.close()
"""


@pytest.mark.skipif(
    sys.version_info >= (3, 15), reason="3.15 refuses a second __init__ (gh-142615) first"
)
def test_task_left_uninitialized_by_a_failed_init_fails_its_queued_step():
    """A second ``__init__`` that finds no loop (3.14 has no implicit one)
    leaves the task uninitialized, as asyncio's; its step, queued before,
    then fails with RuntimeError, reported to the loop running it (it read
    the missing loop and crashed)."""
    assert run_python(UNINITIALIZED_TASK).split() == ["['RuntimeError']"]


class LyingSocket(socket.socket):
    """send() and recv_into() that return counts no socket could."""

    def send(self, data: Any, *args: Any) -> int:
        return -1

    def recv_into(self, buf: Any, *args: Any) -> int:
        return -5


class IntoBuffer(asyncio.BufferedProtocol):
    def __init__(self, lost: asyncio.Future) -> None:
        self.lost = lost

    def get_buffer(self, sizehint: int) -> bytearray:
        return bytearray(100)

    def buffer_updated(self, nbytes: int) -> None:
        raise AssertionError("no bytes can have come")

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)


def test_socket_subclass_methods_returning_nonsense_end_the_connection():
    """casyncio calls a socket subclass's own send()/recv_into(): a count
    they cannot have done is a ValueError that ends the connection (stock
    asyncio takes the count as it is), and the loop goes on."""
    loop = casyncio.new_event_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    a, b = socket.socketpair()
    lying = LyingSocket(a.family, a.type, fileno=a.detach())

    async def main() -> tuple[Any, Any]:
        lost_w = loop.create_future()
        tw, _ = await loop.create_connection(lambda: IntoBuffer(lost_w), sock=lying)
        tw.write(b"x")
        exc_w = await lost_w
        c, d = socket.socketpair()
        reader = LyingSocket(c.family, c.type, fileno=c.detach())
        lost_r = loop.create_future()
        await loop.create_connection(lambda: IntoBuffer(lost_r), sock=reader)
        d.send(b"data")  # readable: recv_into() is called
        exc_r = await lost_r
        d.close()
        return exc_w, exc_r

    try:
        exc_w, exc_r = loop.run_until_complete(asyncio.wait_for(main(), 10))
        assert isinstance(exc_w, ValueError) and "send() returned -1" in str(exc_w)
        assert isinstance(exc_r, ValueError) and "recv_into() returned -5" in str(exc_r)
        assert len(errors) == 2
        assert_loop_usable(loop)
    finally:
        b.close()
        loop.close()


# A Future or Task whose __init__ never ran (a subclass that forgot to call
# it, or __new__ alone): each use raises what stock asyncio's raises.
UNINITIALIZED_USES: dict[str, Callable[[Any], object]] = {
    "repr": repr,
    "_state": lambda f: f._state,
    "_result": lambda f: f._result,
    "_exception": lambda f: f._exception,
    "_callbacks": lambda f: f._callbacks,
    "_log_traceback": lambda f: f._log_traceback,
    "result": lambda f: f.result(),
    "exception": lambda f: f.exception(),
    "add_done_callback": lambda f: f.add_done_callback(print),
    "remove_done_callback": lambda f: f.remove_done_callback(print),
    "get_loop": lambda f: f.get_loop(),
    "set_result": lambda f: f.set_result(1),
    "set_exception": lambda f: f.set_exception(ValueError()),
    "await": lambda f: next(iter(f.__await__())),
    "done": lambda f: f.done(),
    "cancelled": lambda f: f.cancelled(),
}


@pytest.mark.parametrize("kind", ["Future", "Task"])
@pytest.mark.parametrize("use", sorted(UNINITIALIZED_USES))
def test_uninitialized_future_raises_as_stock(kind, use):
    def outcome(cls: type) -> tuple[type, str] | None:
        obj = cls.__new__(cls)
        try:
            UNINITIALIZED_USES[use](obj)
        except Exception as exc:  # noqa: BLE001 (whatever it raises is compared)
            return type(exc), str(exc)
        return None

    assert outcome(getattr(casyncio, kind)) == outcome(getattr(asyncio, kind))
