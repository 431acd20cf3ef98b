"""Handle and TimerHandle: cancel, context, repr, debug-mode source
tracebacks, and no leaks across 100k callbacks (casyncio and stock)."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import logging
import re
import sys
from asyncio import format_helpers

import pytest
from conftest import run_briefly

import casyncio
from casyncio import _casyncio

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

# Since Python 3.13.4 and 3.12.11, a callback's arguments appear in a
# handle's repr only in debug mode (they may hold secrets): "f()" instead of
# "f(1, 'a')".  Those versions give format_helpers a debug= keyword.
ARGS_IN_REPR = "debug" not in (format_helpers._format_callback_source.__kwdefaults__ or {})


def named_callback(*args: object) -> None:
    pass


def source_of(func) -> str:
    code = func.__code__
    return f"{code.co_filename}:{code.co_firstlineno}"


def normalize(text: str) -> str:
    # Deadlines differ between runs; addresses too.
    text = re.sub(r"when=[-+0-9.e]+|when=nan|when=inf", "when=WHEN", text)
    return re.sub(r"0x[0-9a-f]+", "0xADDR", text)


# ---- types -------------------------------------------------------------------


def test_call_soon_returns_a_handle_and_call_later_a_timer_handle(loop, loop_kind):
    h = loop.call_soon(named_callback)
    t = loop.call_later(1, named_callback)
    a = loop.call_at(loop.time() + 1, named_callback)
    assert type(h).__name__ == "Handle"
    assert type(t).__name__ == "TimerHandle"
    assert type(a) is type(t)
    assert isinstance(t, type(h))
    if loop_kind == "casyncio":
        assert type(h) is casyncio.Handle
        assert type(t) is casyncio.TimerHandle
    t.cancel()
    a.cancel()
    run_briefly(loop)


# ---- cancel --------------------------------------------------------------------


def test_cancel_and_cancelled(loop):
    ran: list[str] = []
    h = loop.call_soon(ran.append, "x")
    assert h.cancelled() is False
    h.cancel()
    assert h.cancelled() is True
    h.cancel()  # idempotent
    assert h.cancelled() is True
    run_briefly(loop)
    assert ran == []


def test_cancel_from_an_earlier_callback_in_the_same_batch(loop):
    ran: list[str] = []
    later: list[asyncio.Handle] = []
    loop.call_soon(lambda: later[0].cancel())
    later.append(loop.call_soon(ran.append, "victim"))
    loop.call_soon(ran.append, "bystander")
    run_briefly(loop)
    assert ran == ["bystander"]


def test_handle_cancelling_itself_while_running(loop):
    ran: list[str] = []
    me: list[asyncio.Handle] = []

    def cb(x: str) -> None:
        me[0].cancel()
        ran.append(x)

    me.append(loop.call_soon(cb, "ran"))
    run_briefly(loop)
    assert ran == ["ran"]
    assert me[0].cancelled()


def test_cancel_after_running_is_harmless(loop):
    ran: list[str] = []
    h = loop.call_soon(ran.append, "x")
    run_briefly(loop)
    h.cancel()
    assert h.cancelled()
    assert ran == ["x"]


def test_cancel_drops_callback_references(loop):
    class Big:
        pass

    obj = Big()
    alone = sys.getrefcount(obj)  # 2 up to 3.13; 3.14 passes the local borrowed
    h = loop.call_soon(named_callback, obj)
    t = loop.call_later(10, named_callback, obj)
    assert sys.getrefcount(obj) > alone
    h.cancel()
    t.cancel()
    assert sys.getrefcount(obj) == alone
    run_briefly(loop)


def test_handle_keeps_args_and_callback(loop):
    h = loop.call_soon(named_callback, 1, 2)
    assert h._callback is named_callback
    assert h._args == (1, 2)
    h.cancel()
    assert h._callback is None
    assert h._args is None


def test_timer_handle_when_and_ordering(loop):
    t1 = loop.call_at(100.0, named_callback)
    t2 = loop.call_at(200.0, named_callback)
    assert t1.when() == 100.0
    assert t1 < t2 and t2 > t1 and t1 <= t2 and t1 != t2
    t1.cancel()
    t2.cancel()


def test_handles_are_instances_of_asyncios_classes(loop, loop_kind):
    """isinstance() with asyncio's Handle and TimerHandle holds for the
    handles either loop returns (casyncio's through their __class__; type()
    stays casyncio's).  A subclass of casyncio's Handle is itself."""
    h = loop.call_soon(named_callback)
    t = loop.call_later(10, named_callback)
    assert isinstance(h, asyncio.Handle) and not isinstance(h, asyncio.TimerHandle)
    assert isinstance(t, asyncio.TimerHandle) and isinstance(t, asyncio.Handle)
    if loop_kind == "casyncio":
        assert (type(h), type(t)) == (casyncio.Handle, casyncio.TimerHandle)

        class Mine(casyncio.TimerHandle):
            pass

        mine = Mine(1.0, named_callback, (), loop)
        assert mine.__class__ is Mine and not isinstance(mine, asyncio.TimerHandle)
    h.cancel()
    t.cancel()


def pending_timers(loop) -> list:
    """loop._scheduled as a helper reading it sees it: stock keeps cancelled
    timers there until it drops them, which such helpers skip."""
    return [t for t in loop._scheduled if not t.cancelled()]


def test_scheduled_holds_the_pending_timers_as_a_heap(loop, loop_kind):
    """loop._scheduled, which test helpers read (Home Assistant's, python-
    zeroconf's), holds the pending TimerHandles as a heap: the first is the
    next to fire.  casyncio's is a new list, in firing order, on each read
    (and changing it changes nothing in the loop)."""
    timers = [loop.call_at(when, named_callback) for when in (30.0, 10.0, 20.0, 10.0, 5.0)]
    timers[2].cancel()
    pending = pending_timers(loop)
    assert {id(t) for t in pending} == {id(t) for i, t in enumerate(timers) if i != 2}
    assert pending[0] is timers[4]
    whens = [t.when() for t in loop._scheduled]
    assert all(whens[(i - 1) // 2] <= w for i, w in enumerate(whens) if i)
    if loop_kind == "casyncio":
        assert pending == [timers[4], timers[1], timers[3], timers[0]]
        loop._scheduled.clear()
        assert len(loop._scheduled) == 4
    for t in timers:
        t.cancel()
    assert pending_timers(loop) == []


def test_timers_fired_by_a_helper_through_scheduled(loop):
    """What Home Assistant's async_fire_time_changed() does with the loop's
    timers: for each pending TimerHandle due by a given time, _run() it and
    cancel() it.  The right callbacks run, once, and the rest still fire
    when due."""
    ran: list[str] = []
    now = loop.time()
    for name, delay in [("late", 1000.0), ("a", 50.0), ("b", 60.0), ("gone", 55.0)]:
        handle = loop.call_at(now + delay, ran.append, name)
        if name == "gone":
            handle.cancel()
    loop.call_later(0.001, ran.append, "soon")

    for timer in list(loop._scheduled):
        if not isinstance(timer, asyncio.TimerHandle) or timer.cancelled():
            continue
        if timer.when() <= now + 100.0 and timer._callback == ran.append:
            timer._run()
            timer.cancel()
    assert sorted(ran) == ["a", "b", "soon"]
    loop.run_until_complete(asyncio.sleep(0.01))
    assert sorted(ran) == ["a", "b", "soon"]
    assert [t._args for t in pending_timers(loop)] == [("late",)]
    pending_timers(loop)[0].cancel()


# ---- context -------------------------------------------------------------------


@pytest.mark.parametrize("cls", [casyncio.TimerHandle, asyncio.TimerHandle])
def test_timer_handle_built_directly_keeps_an_int_deadline(loop, cls):
    """TimerHandle(when, ...) keeps the deadline it got, as call_at() does."""
    by_int = cls(100, print, (), loop)
    by_float = cls(100.0, print, (), loop)
    assert type(by_int.when()) is int and by_int.when() == 100
    assert type(by_float.when()) is float
    assert by_int == by_float


def get_context(handle, loop_kind: str) -> contextvars.Context:
    """Handle.get_context() (Python 3.12+, and casyncio on every version);
    stock 3.11 only has the ``_context`` attribute, which both must agree
    with."""
    ctx = handle._context
    if loop_kind == "casyncio" or sys.version_info >= (3, 12):
        assert handle.get_context() is ctx
    return ctx


def test_get_context_returns_the_given_context(loop, loop_kind):
    ctx = contextvars.copy_context()
    h = loop.call_soon(named_callback, context=ctx)
    t = loop.call_later(0, named_callback, context=ctx)
    assert get_context(h, loop_kind) is ctx
    assert get_context(t, loop_kind) is ctx
    run_briefly(loop)


def test_get_context_defaults_to_a_copy_of_the_current_one(loop, loop_kind):
    token = var.set("current")
    try:
        h = loop.call_soon(named_callback)
    finally:
        var.reset(token)
    ctx = get_context(h, loop_kind)
    assert isinstance(ctx, contextvars.Context)
    assert ctx[var] == "current"
    run_briefly(loop)


def test_callback_runs_in_a_copy_of_the_context_at_scheduling(loop):
    seen: list[str] = []
    token = var.set("at-schedule")
    try:
        loop.call_soon(lambda: seen.append(var.get()))
        loop.call_later(0, lambda: seen.append(var.get()))
        var.set("changed-after")
    finally:
        var.reset(token)
    run_briefly(loop)
    assert seen == ["at-schedule", "at-schedule"]


def test_callback_changes_stay_in_its_own_copy(loop):
    seen: list[str] = []

    def writer() -> None:
        var.set("written")

    loop.call_soon(writer)
    loop.call_soon(lambda: seen.append(var.get()))
    run_briefly(loop)
    assert seen == ["unset"]
    assert var.get() == "unset"


def test_callbacks_sharing_an_explicit_context_share_changes(loop):
    ctx = contextvars.Context()
    seen: list[str] = []

    def writer() -> None:
        var.set("shared")

    loop.call_soon(writer, context=ctx)
    loop.call_soon(lambda: seen.append(var.get()), context=ctx)
    loop.call_at(loop.time(), lambda: seen.append(var.get()), context=ctx)
    run_briefly(loop)
    assert seen == ["shared", "shared"]
    assert ctx[var] == "shared"
    assert var.get() == "unset"


def test_call_soon_threadsafe_context(loop):
    ctx = contextvars.Context()
    ctx.run(var.set, "threadsafe")
    seen: list[str] = []
    loop.call_soon_threadsafe(lambda: seen.append(var.get()), context=ctx)
    run_briefly(loop)
    assert seen == ["threadsafe"]


def test_context_is_exited_after_callback_raises(loop, request):
    request.applymarker(pytest.mark.loop_errors)
    ctx = contextvars.Context()
    seen: list[str] = []

    def bad() -> None:
        var.set("inside")
        raise ValueError

    loop.call_soon(bad, context=ctx)
    loop.call_soon(lambda: seen.append(var.get()))
    run_briefly(loop)
    assert seen == ["unset"]
    assert ctx[var] == "inside"
    assert len(loop.handler_calls) == 1


def test_handle_run_in_an_already_entered_context_is_reported(loop, request, caplog):
    # Running a handle whose context is entered already (here: by the
    # callback that runs it) cannot enter it again; the error goes to the
    # exception handler and the loop goes on.
    request.applymarker(pytest.mark.loop_errors)
    ctx = contextvars.Context()
    ran: list[str] = []
    inner = loop.call_later(3600, ran.append, "inner", context=ctx)
    loop.call_soon(inner._run, context=ctx)
    loop.call_soon(ran.append, "after")
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        run_briefly(loop)
    inner.cancel()
    assert ran == ["after"]
    if sys.version_info >= (3, 12):
        # 3.12+ runs the exception handler in the failed handle's context,
        # which cannot be entered either: that second failure is logged,
        # with the report the handler was to get.
        assert loop.handler_calls == []
        [record] = [r for r in caplog.records if r.name == "asyncio"]
        assert record.getMessage().startswith("Unhandled error in exception handler")
        assert "'handle': <TimerHandle when=" in record.getMessage()
        assert isinstance(record.exc_info[1], RuntimeError)
        return
    [report] = loop.handler_calls
    assert isinstance(report["exception"], RuntimeError)
    assert report["handle"] is inner


# ---- repr ------------------------------------------------------------------------


def test_repr_of_handle(loop):
    loop.set_debug(False)
    h = loop.call_soon(named_callback, 1, "a")
    args = "(1, 'a')" if ARGS_IN_REPR else "()"
    assert repr(h) == f"<Handle named_callback{args} at {source_of(named_callback)}>"
    h.cancel()
    assert repr(h) == "<Handle cancelled>"


def test_repr_of_timer_handle(loop):
    loop.set_debug(False)
    t = loop.call_at(12345.5, named_callback)
    assert repr(t) == f"<TimerHandle when=12345.5 named_callback() at {source_of(named_callback)}>"
    t.cancel()
    assert repr(t) == "<TimerHandle cancelled when=12345.5>"


def test_repr_of_partial_and_method_callbacks(loop):
    loop.set_debug(False)
    p = functools.partial(named_callback, 1)
    h = loop.call_soon(p, 2)
    src = source_of(named_callback)
    args = "(1)(2)" if ARGS_IN_REPR else "()()"
    assert repr(h) == f"<Handle named_callback{args} at {src}>"
    m = loop.call_soon(loop.stop)
    assert normalize(repr(m)).startswith("<Handle ")
    assert "stop()" in repr(m)
    h.cancel()
    m.cancel()


def test_repr_in_debug_mode_has_creation_site(loop):
    loop.set_debug(True)
    line = sys._getframe().f_lineno + 1
    h = loop.call_soon(named_callback, 1)
    expected_site = f"created at {__file__}:{line}"
    # Debug mode shows the arguments on every version.
    assert repr(h) == f"<Handle named_callback(1) at {source_of(named_callback)} {expected_site}>"
    h.cancel()
    # The repr is kept at cancel() in debug mode, cancelled flag included.
    assert repr(h) == (
        f"<Handle cancelled named_callback(1) at {source_of(named_callback)} {expected_site}>"
    )


def test_repr_matches_stock_shape():
    # The same calls on casyncio and on a stock loop give the same repr, up
    # to deadlines and line numbers.
    loop = casyncio.new_event_loop()
    stock = asyncio.SelectorEventLoop()
    try:
        for lp in (loop, stock):
            lp.set_debug(True)
        pairs = []
        for lp in (loop, stock):
            hs = [
                lp.call_soon(named_callback, "x"),
                lp.call_later(5, named_callback),
                lp.call_soon(print),
            ]
            hs[2].cancel()
            pairs.append([normalize(repr(h)).replace(f":{_line(h)}", ":LINE") for h in hs])
            for h in hs:
                h.cancel()
        assert pairs[0] == pairs[1]
    finally:
        loop.close()
        stock.close()


def _line(h) -> int:
    tb = h._source_traceback
    return tb[-1].lineno if tb else -1


# ---- debug-mode source traceback -----------------------------------------------------


def test_source_traceback_only_in_debug_mode(loop):
    loop.set_debug(False)
    h = loop.call_soon(named_callback)
    assert h._source_traceback is None
    loop.set_debug(True)
    line = sys._getframe().f_lineno + 1
    h2 = loop.call_soon(named_callback)
    t2 = loop.call_later(0, named_callback)
    for handle, lineno in ((h2, line), (t2, line + 1)):
        tb = handle._source_traceback
        assert tb, handle
        frame = tb[-1]
        assert frame.filename == __file__
        assert frame.lineno == lineno
        assert frame.name == "test_source_traceback_only_in_debug_mode"
    run_briefly(loop)


# ---- leaks -------------------------------------------------------------------------


def test_100k_callbacks_and_timers_leave_no_live_handles():
    """casyncio's live counters go up while Handles exist and return to their
    baseline once the callbacks ran, were cancelled, or the loop closed."""
    gc.collect()
    base = _casyncio._live_counts()
    lp = casyncio.new_event_loop()
    n = 100_000
    count = [0]

    def tick() -> None:
        count[0] += 1

    kept = [lp.call_soon(tick) for _ in range(n)]
    now = lp.time()
    kept += [lp.call_at(now - 1, tick) for _ in range(n)]
    counts = _casyncio._live_counts()
    assert counts["handles"] - base["handles"] >= 2 * n
    assert counts["loops"] - base["loops"] == 1
    lp.call_soon(lp.stop)
    lp.run_forever()
    assert count[0] == 2 * n
    del kept

    # Dropped without being kept, cancelled, thread-safe, and left pending
    # at close.
    for _ in range(n // 4):
        lp.call_soon(tick)
        lp.call_later(0, tick)
        lp.call_soon_threadsafe(tick)
        lp.call_later(3600, tick).cancel()
    for _ in range(1000):
        lp.call_later(3600, tick)
        lp.call_soon(tick)
    lp.call_soon(lp.stop)
    lp.run_forever()
    assert count[0] == 2 * n + 3 * (n // 4) + 1000
    lp.close()
    del lp
    gc.collect()
    after = _casyncio._live_counts()
    assert after["handles"] == base["handles"], (base, after)
    assert after["loops"] == base["loops"], (base, after)


def test_failing_callbacks_leave_no_live_handles():
    gc.collect()
    base = _casyncio._live_counts()
    lp = casyncio.new_event_loop()
    reports: list[dict] = []
    lp.set_exception_handler(lambda _lp, ctx: reports.append(ctx))

    def bad() -> None:
        raise ValueError

    for _ in range(1000):
        lp.call_soon(bad)
        lp.call_later(0, bad)
    lp.call_soon(lp.stop)
    lp.run_forever()
    assert len(reports) == 2000
    reports.clear()
    lp.close()
    del lp
    gc.collect()
    after = _casyncio._live_counts()
    assert after["handles"] == base["handles"], (base, after)
    assert after["loops"] == base["loops"], (base, after)
