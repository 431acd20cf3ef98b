"""The garbage collector and casyncio's scheduled timers.

A TimerHandle waiting in the loop's heap is not on the collector's lists
(nor is the context copy made for it): the loop reports their references as
its own.  These tests pin what that must not break: cycles through a
scheduled timer are still collected, a handle or context that leaves the
heap -- fired, cancelled, or handed out by get_context() -- is tracked again.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import warnings
import weakref

import pytest

import casyncio
from casyncio import _casyncio


def test_dropped_loop_with_a_timer_pointing_back_at_it_is_collected():
    gc.collect()
    before = _casyncio._live_counts()["loops"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        loop = casyncio.new_event_loop()
        loop.call_later(3600, loop.stop)  # loop -> timer -> loop.stop -> loop
        del loop
        gc.collect()
    assert _casyncio._live_counts()["loops"] == before


def test_cycle_through_a_scheduled_timer_is_collected_once_the_loop_closes():
    class Owner:
        def tick(self):
            pass

    loop = casyncio.new_event_loop()
    try:
        owner = Owner()
        owner.timer = loop.call_later(3600, owner.tick)  # owner -> timer -> owner
        probe = weakref.ref(owner)
        del owner
        gc.collect()
        assert probe() is not None  # still scheduled: alive through the loop
    finally:
        loop.close()
    gc.collect()
    assert probe() is None


def test_scheduled_timer_and_its_context_are_untracked_then_tracked_again():
    loop = casyncio.new_event_loop()
    try:
        h = loop.call_later(3600, lambda: None)
        assert not gc.is_tracked(h)
        ctx = h.get_context()  # the context escapes: it must be tracked
        assert gc.is_tracked(ctx)
        h.cancel()  # out of the heap: the handle is tracked again
        assert gc.is_tracked(h)
    finally:
        loop.close()


def test_fired_timer_is_tracked_again():
    loop = casyncio.new_event_loop()
    try:
        h = loop.call_later(0, loop.stop)
        assert not gc.is_tracked(h)
        loop.run_forever()
        assert gc.is_tracked(h)
    finally:
        loop.close()


def test_given_context_is_never_untracked():
    loop = casyncio.new_event_loop()
    try:
        ctx = contextvars.copy_context()
        loop.call_later(3600, lambda: None, context=ctx)
        assert gc.is_tracked(ctx)  # not ours alone: left alone
    finally:
        loop.close()


def test_timers_run_in_their_context_after_being_untracked():
    var = contextvars.ContextVar("var")
    seen = []
    loop = casyncio.new_event_loop()
    try:
        var.set("at schedule time")
        loop.call_later(0.001, lambda: seen.append(var.get()))
        var.set("later")
        loop.call_later(0.002, loop.stop)
        gc.collect()  # the copy must survive a collection while untracked
        loop.run_forever()
    finally:
        loop.close()
    assert seen == ["at schedule time"]


def test_cycle_through_a_fired_timers_context_is_collected():
    """After it fired, a timer's context copy stays off the GC's lists while
    only its handle holds it; the handle reports what the context refers to,
    so a cycle handle -> context -> value -> handle is still found."""
    import weakref

    var = contextvars.ContextVar("var")

    class Box:
        handle = None

    loop = casyncio.new_event_loop()
    try:
        box = Box()
        probe = weakref.ref(box)
        holder = [box]

        def callback():
            # Afterwards only the handle's context refers to box.
            var.set(holder.pop())

        h = loop.call_later(0, callback)
        box.handle = h  # ...and box refers to the handle: a cycle
        loop.call_later(0.001, loop.stop)
        loop.run_forever()
        assert gc.is_tracked(h)
        del box, h
        gc.collect()
        assert probe() is None
    finally:
        loop.close()


@pytest.mark.loop_errors
@pytest.mark.parametrize("debug", [False, True], ids=["nodebug", "debug"])
@pytest.mark.parametrize("foreign", [False, True], ids=["own", "foreign"])
def test_pending_task_dropped_with_its_loop_is_destroyed_at_once(loop, debug, foreign):
    """A task whose next step is queued when the loop closes is freed then,
    with the collector off, as on stock asyncio: the bound methods a step
    goes through in debug mode (and the wakeup method a future of asyncio's
    own type gets) must not hold the task in a cycle."""
    loop.set_debug(debug)

    async def spins() -> None:
        if foreign:
            fut = asyncio.Future(loop=loop)  # asyncio's type, not casyncio's
            loop.call_soon(fut.set_result, None)
            await fut
        while True:
            await asyncio.sleep(0)

    gc.disable()
    try:
        task = loop.create_task(spins())
        for _ in range(3):
            loop.run_until_complete(asyncio.sleep(0))
        probe = weakref.ref(task)
        del task
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # never awaited
            loop.close()
        messages = [c["message"] for c in loop.handler_calls]
        assert messages == ["Task was destroyed but it is pending!"]
        loop.handler_calls.clear()  # its context holds the task
        assert probe() is None
    finally:
        gc.enable()


def test_finished_task_that_awaited_a_foreign_future_in_debug_mode_needs_no_collector():
    """A task that went through bound step/wakeup methods (debug mode, a
    future of asyncio's own type) keeps none of them: with the collector
    off, releasing the last reference frees it, as on stock asyncio."""
    loop = casyncio.new_event_loop()
    loop.set_debug(True)
    gc.disable()
    try:

        async def waits_on_foreign() -> int:
            fut = asyncio.Future(loop=loop)  # asyncio's type, not casyncio's
            loop.call_soon(fut.set_result, 7)
            return await fut

        task = loop.create_task(waits_on_foreign())
        assert loop.run_until_complete(task) == 7
        probe = weakref.ref(task)
        del task
        assert probe() is None
    finally:
        gc.enable()
        loop.close()
