"""The exception handler API, how failing callbacks are reported, what
escapes the loop (KeyboardInterrupt, SystemExit), and debug mode's reports
(slow callbacks, source tracebacks).  On casyncio and on stock asyncio."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import socket
import sys
import time
from asyncio import format_helpers

import pytest
from conftest import assert_loop_usable, run_briefly, run_python


class Boom(Exception):
    pass


def failing(*args: object) -> None:
    raise Boom("callback failed")


def asyncio_errors(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR]


# ---- the handler API ---------------------------------------------------------


def test_get_and_set_exception_handler(loop):
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None

    def handler(lp, context) -> None:
        pass

    loop.set_exception_handler(handler)
    assert loop.get_exception_handler() is handler
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None


def test_call_exception_handler_calls_the_custom_handler(loop):
    got: list[tuple] = []
    loop.set_exception_handler(lambda lp, ctx: got.append((lp, ctx)))
    context = {"message": "hello", "extra": 1}
    loop.call_exception_handler(context)
    assert got == [(loop, context)]
    assert got[0][1] is context


def test_default_exception_handler_logs_to_asyncio_logger(loop, caplog):
    loop.set_exception_handler(None)
    exc = Boom("logged")
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_exception_handler(
            {"message": "Something broke", "exception": exc, "zeta": 2, "alpha": "a"}
        )
    records = asyncio_errors(caplog)
    assert len(records) == 1
    rec = records[0]
    assert rec.levelno == logging.ERROR
    # The message, then the other keys sorted, each as key: repr(value).
    assert rec.getMessage() == "Something broke\nalpha: 'a'\nzeta: 2"
    assert rec.exc_info is not None and rec.exc_info[1] is exc


def test_default_exception_handler_without_message_or_exception(loop, caplog):
    loop.set_exception_handler(None)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.default_exception_handler({})
    records = asyncio_errors(caplog)
    assert [r.getMessage() for r in records] == ["Unhandled exception in event loop"]
    assert not records[0].exc_info


def test_subclass_may_call_default_exception_handler(loop, caplog):
    seen: list[dict] = []

    def handler(lp, context) -> None:
        seen.append(context)
        lp.default_exception_handler(context)

    loop.set_exception_handler(handler)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(failing)
        run_briefly(loop)
    assert len(seen) == 1
    assert any("Exception in callback" in r.getMessage() for r in asyncio_errors(caplog))


# ---- failing callbacks -----------------------------------------------------------


@pytest.mark.loop_errors
def test_callback_exception_is_reported_and_loop_keeps_going(loop):
    loop.set_debug(False)
    ran: list[str] = []
    h = loop.call_soon(failing, 1, "a")
    loop.call_soon(ran.append, "next")
    run_briefly(loop)
    assert ran == ["next"]
    assert len(loop.handler_calls) == 1
    ctx = loop.handler_calls[0]
    source = format_helpers._format_callback_source(failing, (1, "a"))
    assert ctx["message"] == f"Exception in callback {source}"
    assert isinstance(ctx["exception"], Boom)
    assert ctx["handle"] is h
    assert "source_traceback" not in ctx
    assert_loop_usable(loop)


@pytest.mark.loop_errors
def test_timer_callback_exception_is_reported_with_its_timer_handle(loop):
    t = loop.call_later(0, failing)
    run_briefly(loop)
    assert len(loop.handler_calls) == 1
    assert loop.handler_calls[0]["handle"] is t
    assert isinstance(loop.handler_calls[0]["exception"], Boom)


@pytest.mark.loop_errors
def test_many_failures_each_reported(loop):
    for _ in range(10):
        loop.call_soon(failing)
        loop.call_at(loop.time(), failing)
    run_briefly(loop)
    assert len(loop.handler_calls) == 20
    assert_loop_usable(loop)


@pytest.mark.loop_errors
def test_reported_exception_has_its_traceback(loop):
    loop.call_soon(failing)
    run_briefly(loop)
    exc = loop.handler_calls[0]["exception"]
    tb = exc.__traceback__
    names = []
    while tb is not None:
        names.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert names[-1] == "failing"


@pytest.mark.loop_errors
def test_finalizer_reports_have_asyncio_s_keys_in_its_order(loop):
    """A handler that reads the context in order sees what stock asyncio gives it."""

    async def forever() -> None:
        await asyncio.sleep(3600)

    task = loop.create_task(forever())
    run_briefly(loop)
    fut = loop.create_future()
    fut.set_exception(Boom("never retrieved"))
    del fut
    gc.collect()
    loop.close()  # drops the sleep's timer: now only `task` holds the task
    del task
    gc.collect()
    # (Debug mode adds "source_traceback" at the end.)
    keys = [[k for k in ctx if k != "source_traceback"] for ctx in loop.handler_calls]
    assert keys == [["message", "exception", "future"], ["message", "task"]]
    assert loop.handler_calls[1]["message"] == "Task was destroyed but it is pending!"


@pytest.mark.loop_errors
def test_source_traceback_in_context_in_debug_mode(loop):
    loop.set_debug(True)
    line = sys._getframe().f_lineno + 1
    loop.call_soon(failing)
    run_briefly(loop)
    ctx = loop.handler_calls[0]
    tb = ctx["source_traceback"]
    assert tb[-1].filename == __file__
    assert tb[-1].lineno == line
    assert tb[-1].name == "test_source_traceback_in_context_in_debug_mode"


def test_default_handler_shows_where_the_object_was_created(loop, caplog):
    loop.set_exception_handler(None)
    loop.set_debug(True)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(failing)
        run_briefly(loop)
    msgs = [r.getMessage() for r in asyncio_errors(caplog)]
    assert len(msgs) == 1
    assert msgs[0].startswith("Exception in callback failing()")
    assert "Object created at (most recent call last):" in msgs[0]
    assert "test_default_handler_shows_where_the_object_was_created" in msgs[0]


def test_default_handler_adds_the_running_handles_traceback(loop, caplog):
    # In debug mode a report made from inside a callback, without its own
    # source_traceback, shows where the running handle was created.
    loop.set_exception_handler(None)
    loop.set_debug(True)

    def report() -> None:
        loop.call_exception_handler({"message": "from a callback"})

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(report)
        run_briefly(loop)
    msgs = [r.getMessage() for r in asyncio_errors(caplog)]
    assert len(msgs) == 1
    assert msgs[0].startswith("from a callback\nhandle_traceback: Handle created at")


def test_error_in_custom_handler_is_logged(loop, caplog):
    def bad_handler(lp, context) -> None:
        raise Boom("handler failed")

    loop.set_exception_handler(bad_handler)
    ran: list[str] = []
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(failing)
        loop.call_soon(ran.append, "after")
        run_briefly(loop)
    records = asyncio_errors(caplog)
    assert len(records) == 1
    msg = records[0].getMessage()
    assert msg.startswith("Unhandled error in exception handler")
    assert "context: {'message': 'Exception in callback failing()" in msg
    assert str(records[0].exc_info[1]) == "handler failed"
    assert ran == ["after"]
    loop.set_exception_handler(None)
    assert_loop_usable(loop)


def test_error_in_default_handler_is_logged(loop, caplog):
    class BadRepr:
        def __repr__(self) -> str:
            raise Boom("repr failed")

    loop.set_exception_handler(None)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_exception_handler({"message": "m", "bad": BadRepr()})
    msgs = [r.getMessage() for r in asyncio_errors(caplog)]
    assert msgs == ["Exception in default exception handler"]


def test_error_in_default_handler_after_custom_handler_failed(loop, caplog):
    class BadRepr:
        def __repr__(self) -> str:
            raise Boom("repr failed")

    def bad_handler(lp, context) -> None:
        raise Boom("handler failed")

    loop.set_exception_handler(bad_handler)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_exception_handler({"message": "m", "bad": BadRepr()})
    msgs = [r.getMessage() for r in asyncio_errors(caplog)]
    assert msgs == [
        (
            "Exception in default exception handler while handling an unexpected "
            "error in custom exception handler"
        )
    ]


# ---- what escapes the loop ------------------------------------------------------


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_in_callback_propagates_from_run_forever(loop, exc_type):
    ran: list[str] = []

    def fatal() -> None:
        raise exc_type("out")

    loop.call_soon(ran.append, "before")
    loop.call_soon(fatal)
    loop.call_soon(ran.append, "after")
    with pytest.raises(exc_type):
        loop.run_forever()
    assert not loop.is_running()
    assert ran == ["before"]
    assert asyncio._get_running_loop() is None
    # The rest of the batch is still queued and runs next time.
    run_briefly(loop)
    assert ran == ["before", "after"]
    assert_loop_usable(loop)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_in_timer_propagates(loop, exc_type):
    def fatal() -> None:
        raise exc_type

    loop.call_later(0, fatal)
    with pytest.raises(exc_type):
        loop.run_forever()
    assert_loop_usable(loop)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_in_coroutine_propagates_from_run_until_complete(loop, exc_type):
    async def coro() -> None:
        await asyncio.sleep(0)
        raise exc_type

    with pytest.raises(exc_type):
        loop.run_until_complete(coro())
    assert not loop.is_running()
    assert_loop_usable(loop)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_base_exception_from_custom_handler_propagates(loop, exc_type):
    def handler(lp, context) -> None:
        raise exc_type

    loop.set_exception_handler(handler)
    loop.call_soon(failing)
    with pytest.raises(exc_type):
        loop.run_forever()
    loop.set_exception_handler(None)
    assert_loop_usable(loop)


def test_base_exception_from_call_exception_handler_propagates(loop):
    def handler(lp, context) -> None:
        raise KeyboardInterrupt

    loop.set_exception_handler(handler)
    with pytest.raises(KeyboardInterrupt):
        loop.call_exception_handler({"message": "x"})


# ---- debug mode: slow callbacks -------------------------------------------------------


def slow_callback() -> None:
    time.sleep(0.03)


def test_slow_callback_warning_in_debug_mode(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.call_soon(slow_callback)
        run_briefly(loop)
    msgs = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    slow = [m for m in msgs if m.startswith("Executing")]
    assert len(slow) == 1, msgs
    assert re.fullmatch(
        r"Executing <Handle slow_callback\(\) at .+:\d+ created at .+:\d+> "
        r"took \d+\.\d{3} seconds",
        slow[0],
    ), slow[0]
    rec = next(r for r in caplog.records if r.getMessage().startswith("Executing"))
    assert rec.levelno == logging.WARNING


def test_slow_timer_callback_warning(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.call_later(0, slow_callback)
        run_briefly(loop)
    slow = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Executing")]
    assert len(slow) == 1
    assert slow[0].startswith("Executing <TimerHandle when=")


def test_no_slow_callback_warning_for_fast_callbacks(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 10.0
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.call_soon(slow_callback)
        run_briefly(loop)
    assert not [r for r in caplog.records if r.getMessage().startswith("Executing")]


def test_no_slow_callback_warning_outside_debug_mode(loop, caplog):
    loop.set_debug(False)
    loop.slow_callback_duration = 0.0
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.call_soon(slow_callback)
        run_briefly(loop)
    assert not [r for r in caplog.records if r.getMessage().startswith("Executing")]


def test_slow_task_step_warning_names_the_task(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01

    async def slow_coro() -> None:
        time.sleep(0.03)  # noqa: ASYNC251 - a task step that blocks is the point

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_until_complete(slow_coro())
    slow = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Executing")]
    assert len(slow) == 1
    assert slow[0].startswith("Executing <Task ")
    assert "slow_coro()" in slow[0]


def test_slow_data_received_warning_names_the_transport(loop, caplog):
    # Stock asyncio runs a transport's reads as a _read_ready handle, so a
    # slow data_received() is reported like a slow callback; casyncio runs
    # them in C and reports them too.
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01
    got = loop.create_future()

    class SlowProtocol(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            time.sleep(0.03)
            got.set_result(data)

    async def main() -> None:
        a, b = socket.socketpair()
        with b:
            transport, _ = await loop.create_connection(SlowProtocol, sock=a)
            b.send(b"x")
            assert await asyncio.wait_for(got, 5) == b"x"
            transport.close()
            await asyncio.sleep(0)

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_until_complete(main())
    # Only the read is slow on purpose; on a loaded machine a step of main()
    # may pass the 10 ms mark too, and is reported as itself.
    slow = [
        r.getMessage()
        for r in caplog.records
        if r.getMessage().startswith("Executing") and "main()" not in r.getMessage()
    ]
    assert len(slow) == 1, slow
    assert re.search(r"_read_ready\(\)|<read ready: <SocketTransport fd=\d+ ", slow[0]), slow[0]
    assert re.search(r"took \d+\.\d{3} seconds$", slow[0]), slow[0]


def test_slow_callback_duration_default(loop):
    assert loop.slow_callback_duration == 0.1
    loop.slow_callback_duration = 0.5
    assert loop.slow_callback_duration == 0.5


def test_debug_flag(loop):
    # The default follows PYTHONASYNCIODEBUG / -X dev, as asyncio's does.
    assert loop.get_debug() is asyncio.coroutines._is_debug_mode()
    loop.set_debug(True)
    assert loop.get_debug() is True
    loop.set_debug(False)
    assert loop.get_debug() is False


def test_coroutine_origin_tracking_in_debug_mode(loop):
    loop.set_debug(True)
    outside = sys.get_coroutine_origin_tracking_depth()
    seen: list[int] = []
    loop.call_soon(lambda: seen.append(sys.get_coroutine_origin_tracking_depth()))
    run_briefly(loop)
    assert seen == [10]
    assert sys.get_coroutine_origin_tracking_depth() == outside


def test_pythonasynciodebug_env_enables_debug(monkeypatch, loop_kind):
    monkeypatch.setenv("PYTHONASYNCIODEBUG", "1")
    code = (
        "import asyncio, casyncio\n"
        "lp = casyncio.new_event_loop() if KIND == 'casyncio' else asyncio.SelectorEventLoop()\n"
        "print(lp.get_debug()); lp.close()\n"
    ).replace("KIND", repr(loop_kind))
    assert run_python(code).strip() == "True"
