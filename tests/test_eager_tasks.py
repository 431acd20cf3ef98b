"""Eager tasks (Python 3.12+): Task(..., eager_start=True) on a running loop
runs the coroutine's first step inside the constructor, as the loop's
current task, and schedules the task only if that step did not finish it.

Each test runs casyncio.Task on a casyncio loop and asyncio.Task on stock
asyncio's, so a difference shows as one failing parameter."""

from __future__ import annotations

import asyncio
import contextvars
import sys

import pytest
from conftest import future_and_task_classes

needs_eager = pytest.mark.skipif(
    sys.version_info < (3, 12), reason="eager tasks (eager_start=) are new in Python 3.12"
)
needs_create_task_kwargs = pytest.mark.skipif(
    sys.version_info < (3, 13, 3),
    reason="stock asyncio's create_task(**kwargs) is new in Python 3.13.3 (CPython gh-128308)",
)

# Stock asyncio's C Task before 3.12.5 dereferences the coroutine it dropped
# after an eager finish (CPython gh-122332): get_coro() crashes the process.
STOCK_GET_CORO_CRASHES = (3, 12) <= sys.version_info < (3, 12, 5)


def task_class(loop: asyncio.AbstractEventLoop) -> type:
    return future_and_task_classes(loop)[1]


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="Python 3.12+ has eager_start")
def test_eager_start_is_rejected_before_3_12(loop):
    async def coro() -> None:
        pass

    c = coro()
    with pytest.raises(TypeError):
        task_class(loop)(c, loop=loop, eager_start=True)
    c.close()


@needs_eager
def test_eager_first_step_runs_in_the_constructor(loop):
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="parent")
    log: list[object] = []

    async def child(suspend: bool) -> str:
        log.append(("child runs as current task", asyncio.current_task() is not parent))
        log.append(
            ("child sees itself in all_tasks()", asyncio.current_task() in asyncio.all_tasks())
        )
        var.set("child")
        if suspend:
            await asyncio.sleep(0)
        return "done"

    async def main() -> None:
        factory = asyncio.create_eager_task_factory(task_class(loop))
        asyncio.get_running_loop().set_task_factory(factory)
        finished = asyncio.create_task(child(False))
        assert asyncio.current_task() is parent
        assert finished.done() and finished.result() == "done"
        if not (type(finished) is asyncio.Task and STOCK_GET_CORO_CRASHES):
            assert finished.get_coro() is None  # asyncio drops it after an eager finish
        waiting = asyncio.create_task(child(True))
        assert asyncio.current_task() is parent
        assert not waiting.done()
        assert waiting.get_coro() is not None
        assert waiting in asyncio.all_tasks()
        assert await waiting == "done"
        assert var.get() == "parent"  # the child ran in a copy of the context

    parent = None

    async def start() -> None:
        nonlocal parent
        parent = asyncio.current_task()
        await main()

    loop.run_until_complete(start())
    assert (
        log
        == [
            ("child runs as current task", True),
            ("child sees itself in all_tasks()", True),
        ]
        * 2
    )


@needs_eager
def test_eager_step_that_raises_sets_the_exception(loop):
    async def boom() -> None:
        raise ValueError("eager")

    async def main() -> None:
        task = task_class(loop)(boom(), loop=loop, eager_start=True)
        assert task.done()
        with pytest.raises(ValueError, match="eager"):
            task.result()

    loop.run_until_complete(main())


@needs_eager
def test_eager_start_on_a_loop_that_is_not_running_schedules_the_task(loop):
    ran: list[str] = []

    async def child() -> None:
        ran.append("child")

    task = task_class(loop)(child(), loop=loop, eager_start=True)
    assert ran == [] and not task.done()
    loop.run_until_complete(task)
    assert ran == ["child"]


@needs_create_task_kwargs
def test_create_task_takes_eager_start_and_passes_keywords_to_the_factory(loop):
    seen: list[list[str]] = []

    async def child() -> int:
        return 1

    async def main() -> None:
        running = asyncio.get_running_loop()
        task = running.create_task(child(), eager_start=True, name="eager")
        assert task.done() and task.get_name() == "eager"
        unused = child()
        with pytest.raises(TypeError):
            running.create_task(unused, bogus=1)
        unused.close()

        def factory(lp, coro, **kwargs):
            seen.append(sorted(kwargs))
            return task_class(lp)(coro, loop=lp, **kwargs)

        running.set_task_factory(factory)
        task = running.create_task(child(), eager_start=True, context=None, name="f")
        assert task.done() and task.get_name() == "f"
        running.set_task_factory(None)

    loop.run_until_complete(main())
    # 3.13 takes name and a None context out and sets the name after the
    # factory; 3.14 passes every keyword on as given (gh-128308).
    if sys.version_info >= (3, 14):
        assert seen == [["context", "eager_start", "name"]]
    else:
        assert seen == [["eager_start"]]
