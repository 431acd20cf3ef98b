"""What a loop's futures and tasks are, as libraries check and use them:
isinstance(fut, asyncio.Future) and isinstance(task, asyncio.Task) hold on
casyncio as on stock asyncio, while type() gives casyncio's own classes;
both take attributes set from Python.

Each test runs on casyncio and on stock asyncio (the ``loop`` fixture)."""

from __future__ import annotations

import asyncio
import gc
import sys
import weakref

import pytest
from conftest import future_and_task_classes


def test_futures_and_tasks_are_asyncios(loop):
    future_cls, task_cls = future_and_task_classes(loop)

    async def main() -> None:
        fut = loop.create_future()
        task = asyncio.current_task()
        assert type(fut) is future_cls
        assert type(task) is task_cls
        assert isinstance(fut, asyncio.Future)
        assert not isinstance(fut, asyncio.Task)
        assert isinstance(task, asyncio.Task)
        assert isinstance(task, asyncio.Future)
        assert isinstance(fut, future_cls)
        assert not isinstance(fut, task_cls)
        assert isinstance(task, (future_cls, task_cls))
        fut.cancel()

    loop.run_until_complete(main())


def test_a_subclass_reports_itself(loop):
    future_cls, _ = future_and_task_classes(loop)

    class Sub(future_cls):
        pass

    fut = Sub(loop=loop)
    assert fut.__class__ is Sub
    assert type(fut) is Sub
    assert isinstance(fut, future_cls)


def test_the_future_a_woken_task_waited_for(loop):
    """anyio's cancellation leaves alone a task whose awaited future is done
    already (it was woken and has not run yet), and tells that by
    isinstance(task._fut_waiter, asyncio.Future); otherwise the result that
    woke the task is lost to the cancellation."""

    async def main() -> None:
        event = asyncio.Event()

        async def waiter() -> str:
            await event.wait()
            return "woken"

        task = loop.create_task(waiter())
        await asyncio.sleep(0)
        event.set()
        waited_for = task._fut_waiter
        assert isinstance(waited_for, asyncio.Future)
        assert waited_for.done()
        assert await task == "woken"

    loop.run_until_complete(main())


def test_class_cannot_be_reassigned(loop):
    """Neither stock asyncio's C futures nor casyncio's accept a new class."""
    fut = loop.create_future()
    with pytest.raises((TypeError, AttributeError)):
        fut.__class__ = asyncio.Future
    assert type(fut) is future_and_task_classes(loop)[0]


def test_attributes_can_be_set(loop):
    """Libraries tag futures and tasks with their own attributes (proxy.py
    sets task._work_id), as stock asyncio's C futures allow; a cycle through
    such an attribute is collected."""

    class Tag:
        pass

    async def main() -> None:
        fut = loop.create_future()
        task = asyncio.current_task()
        fut.tag = "f"
        task._work_id = 7
        assert (fut.tag, task._work_id) == ("f", 7)
        del task._work_id
        assert not hasattr(task, "_work_id")
        tag = Tag()
        fut.tag = tag
        fut.me = fut
        watched = weakref.ref(tag)
        fut.cancel()
        del fut, tag
        gc.collect()
        assert watched() is None

    loop.run_until_complete(main())


@pytest.mark.parametrize("awaited", ["task", "future"])
def test_cancel_set_on_the_awaited_instance_is_what_cancel_forwards_to(loop, awaited):
    """Task.cancel() cancels what the task awaits through its cancel
    attribute, so a replacement set on that instance decides (aiotools'
    ShieldScope defers cancellation this way)."""
    calls: list[object] = []

    async def main() -> None:
        async def inner() -> str:
            await asyncio.sleep(0.01)
            return "done"

        if awaited == "task":
            target = asyncio.ensure_future(inner())
        else:
            target = loop.create_future()
            loop.call_later(0.01, target.set_result, "done")

        def deferring(msg=None) -> bool:
            calls.append(msg)
            return True  # accepted, but not cancelled now

        target.cancel = deferring
        outer = asyncio.ensure_future(_await(target))
        await asyncio.sleep(0)
        assert outer.cancel("stop") is True
        assert await outer == "done"
        assert not outer.cancelled() and not target.cancelled()
        del target.cancel

    loop.run_until_complete(main())
    assert calls == ["stop"]


async def _await(awaitable):
    return await awaitable


# CPython gh-112182, in 3.12.6: a StopIteration set on a future is stored as
# a RuntimeError caused by it; before, StopIteration itself was refused.
STOPITERATION_WRAPPED = sys.version_info >= (3, 12, 6)


class MyStop(StopIteration):
    pass


@pytest.mark.parametrize("exc", [StopIteration, StopIteration("x"), MyStop()])
def test_a_stopiteration_set_on_a_future_follows_the_running_python(loop, exc):
    fut = loop.create_future()
    if STOPITERATION_WRAPPED:
        fut.set_exception(exc)
        stored = fut.exception()
        assert type(stored) is RuntimeError
        assert "cannot be raised into a Future" in str(stored)
        assert isinstance(stored.__cause__, StopIteration)
        assert stored.__context__ is stored.__cause__
    elif type(exc) is MyStop:  # only StopIteration itself was refused
        fut.set_exception(exc)
        assert fut.exception() is exc
    else:
        with pytest.raises(TypeError, match="cannot be raised into a Future"):
            fut.set_exception(exc)
        assert not fut.done()
        fut.cancel()


RESULTS = [None, 0, "x", (1, 2), StopIteration("inner")]


@pytest.mark.parametrize("result", RESULTS, ids=repr)
def test_the_iterator_of_a_done_future_ends_with_its_result(loop, result):
    """However a done future's iterator is driven, it ends with the result:
    as the value of `await` and `yield from`, and as StopIteration's value
    from next(), __next__() and send() (casyncio's raises none inside
    `await` when the result is None, which the interpreter reads as None)."""

    def done() -> asyncio.Future:
        fut = loop.create_future()
        fut.set_result(result)
        return fut

    def take_stop(step) -> object:
        with pytest.raises(StopIteration) as info:
            step()
        return info.value.value

    assert take_stop(lambda: next(done().__await__())) is result
    assert take_stop(done().__await__().__next__) is result
    assert take_stop(lambda: done().__await__().send(None)) is result
    assert list(done().__await__()) == []

    def delegate():
        return (yield from done().__await__())

    gen = delegate()
    assert take_stop(lambda: gen.send(None)) is result

    async def awaiter() -> object:
        return await done()

    assert loop.run_until_complete(awaiter()) is result
