"""asyncio.all_tasks() sees every pending task of the loop it is asked about.

casyncio's tasks do not register with asyncio one by one: they sit in a C
list that casyncio/_tasks.py shows asyncio's all_tasks() (by giving the
WeakSet it reads, a module global up to 3.13 and a set in _asyncio on 3.14,
a subclass that adds the list).
These tests hold on every version, on both loops, whichever way is taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import textwrap
import threading
import weakref

from conftest import make_loop, run_python


async def _forever() -> None:
    await asyncio.Event().wait()


def test_pending_tasks_are_listed_and_done_ones_are_not(loop):
    async def main() -> None:
        me = asyncio.current_task()
        waiting = [asyncio.create_task(_forever()) for _ in range(3)]
        finished = asyncio.create_task(asyncio.sleep(0))
        await finished
        assert asyncio.all_tasks() == {me, *waiting}
        assert asyncio.all_tasks(loop) == {me, *waiting}
        waiting[0].cancel()
        await asyncio.sleep(0)
        assert asyncio.all_tasks() == {me, *waiting[1:]}
        for task in waiting[1:]:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        assert asyncio.all_tasks() == {me}

    loop.run_until_complete(main())


def test_a_task_not_yet_started_is_listed(loop):
    task = loop.create_task(_forever())
    assert asyncio.all_tasks(loop) == {task}
    task.cancel()
    loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
    assert asyncio.all_tasks(loop) == set()


def test_each_loop_lists_only_its_own_tasks(loop_kind):
    first, second = make_loop(loop_kind), make_loop(loop_kind)
    try:
        mine = first.create_task(_forever())
        theirs = second.create_task(_forever())
        assert asyncio.all_tasks(first) == {mine}
        assert asyncio.all_tasks(second) == {theirs}
        for lp, task in ((first, mine), (second, theirs)):
            task.cancel()
            lp.run_until_complete(asyncio.gather(task, return_exceptions=True))
    finally:
        first.close()
        second.close()


def test_a_loop_running_in_another_thread_is_seen_from_here(loop):
    started = threading.Event()
    tasks: list[asyncio.Task] = []

    async def main() -> None:
        tasks.append(asyncio.create_task(_forever()))
        started.set()
        with contextlib.suppress(asyncio.CancelledError):
            await tasks[0]

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),))
    thread.start()
    try:
        assert started.wait(10)
        seen = asyncio.all_tasks(loop)
        assert tasks[0] in seen
        assert len(seen) == 2  # main() and the task it waits for
    finally:
        loop.call_soon_threadsafe(tasks[0].cancel)
        thread.join(10)
    assert not thread.is_alive()
    assert asyncio.all_tasks(loop) == set()


def test_tasks_of_other_types_are_listed_beside_the_loops_own(loop):
    async def main() -> None:
        ours = asyncio.create_task(_forever())
        stock = asyncio.Task(_forever(), loop=loop)  # asyncio's own Task type
        assert asyncio.all_tasks() == {asyncio.current_task(), ours, stock}
        for task in (ours, stock):
            task.cancel()
        await asyncio.gather(ours, stock, return_exceptions=True)

    loop.run_until_complete(main())


def test_runner_cancels_the_tasks_left_behind(loop_kind):
    cancelled: list[str] = []

    async def left_behind(name: str) -> None:
        try:
            await _forever()
        except asyncio.CancelledError:
            cancelled.append(name)
            raise

    async def main() -> None:
        for name in ("a", "b"):
            asyncio.create_task(left_behind(name))
        await asyncio.sleep(0)

    with asyncio.Runner(loop_factory=lambda: make_loop(loop_kind)) as runner:
        runner.run(main())
    assert sorted(cancelled) == ["a", "b"]


def test_a_freed_task_leaves_the_list(loop):
    async def main() -> None:
        task = asyncio.create_task(asyncio.sleep(0))
        await task
        ref = weakref.ref(task)
        del task
        await asyncio.sleep(0)  # the wake-up that brought us here holds it
        gc.collect()
        assert ref() is None
        assert asyncio.all_tasks() == {asyncio.current_task()}

    loop.run_until_complete(main())


def test_on_the_supported_pythons_the_task_set_itself_lists_casyncio_tasks():
    """The fast path holds on 3.11 to 3.15: asyncio's task set is a
    TasksWeakSet, so no casyncio task registers with asyncio by itself."""
    from casyncio import _tasks

    assert _tasks.install()
    assert isinstance(_tasks.task_set(), _tasks.TasksWeakSet)


def test_a_copy_of_the_task_set_lists_each_task_once(loop):
    """copy(), union() and the like make a set of the same class, holding
    casyncio's tasks as members: it must not add them a second time.  (3.14's
    stock Tasks are listed in C, in no WeakSet, so none holds them.)"""
    from casyncio import _tasks

    async def main() -> None:
        task = asyncio.create_task(_forever())
        task_set = _tasks.task_set()
        assert task_set is not None
        listed = task in task_set
        assert listed or type(task) is asyncio.Task
        for copy in (task_set.copy(), task_set.union([]), task_set - set()):
            members = list(copy)
            assert (task in copy) == listed
            assert members.count(task) == int(listed)
            assert len(copy) == len(members) == len(set(members))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    loop.run_until_complete(main())


def test_tasks_register_one_by_one_where_no_task_set_can_be_reached():
    """Where casyncio finds no task set to extend (here asyncio.all_tasks() is
    wrapped before casyncio is imported), each task joins asyncio's own."""
    code = textwrap.dedent(
        """
        import asyncio

        original = asyncio.tasks.all_tasks

        def all_tasks(loop=None):
            return original(loop)

        asyncio.tasks.all_tasks = asyncio.all_tasks = all_tasks

        import casyncio
        from casyncio import _tasks

        async def main():
            task = asyncio.create_task(asyncio.sleep(1))
            seen = asyncio.all_tasks()
            task.cancel()
            return seen == {asyncio.current_task(), task}

        print(_tasks.install(), casyncio.run(main()))
        """
    )
    assert run_python(code).split() == ["False", "True"]
