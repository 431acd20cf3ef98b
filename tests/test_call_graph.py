"""asyncio.graph (Python 3.14): the call graph of a task or future names the
tasks awaiting it, through TaskGroup, gather() and plain awaits, the same on
casyncio's loop and types as on stock asyncio's."""

from __future__ import annotations

import asyncio
import sys

import pytest

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 14), reason="asyncio.graph is new in Python 3.14"
)


def shape(graph) -> list:
    """A call graph as names: the future ('F' or the task's name), the
    coroutine names on its stack, and the same for each awaiter, sorted."""
    fut = graph.future
    name = fut.get_name() if isinstance(fut, asyncio.Task) else "F"
    stack = [entry.frame.f_code.co_name for entry in graph.call_stack]
    return [name, stack, sorted((shape(g) for g in graph.awaited_by), key=str)]


def test_future_awaited_by_two_tasks_in_a_task_group(loop):
    seen = []

    async def inner(fut) -> None:
        await fut

    async def outer(fut) -> None:
        await inner(fut)

    async def main() -> None:
        fut = asyncio.get_running_loop().create_future()
        async with asyncio.TaskGroup() as group:
            group.create_task(outer(fut), name="A")
            group.create_task(inner(fut), name="B")
            for _ in range(3):
                await asyncio.sleep(0)
            seen.append(shape(asyncio.capture_call_graph(fut)))
            fut.set_result(None)
        seen.append(bool(fut._asyncio_awaited_by))  # the tasks woke: none left

    loop.run_until_complete(loop.create_task(main(), name="main"))
    parent = ["main", ["main"], []]
    assert seen == [
        ["F", [], [["A", ["inner", "outer"], [parent]], ["B", ["inner"], [parent]]]],
        False,
    ]


def test_gather_records_its_children_as_awaited_by_the_caller(loop):
    seen = []

    async def child() -> None:
        await asyncio.sleep(0)
        seen.append(shape(asyncio.capture_call_graph()))

    async def main() -> None:
        await asyncio.gather(asyncio.create_task(child(), name="child"))

    loop.run_until_complete(loop.create_task(main(), name="main"))
    assert seen == [["child", ["child"], [["main", ["main"], []]]]]


def test_print_call_graph_inside_a_task(loop, capsys):
    async def leaf() -> None:
        asyncio.print_call_graph()

    async def main() -> None:
        await asyncio.create_task(leaf(), name="leaf")

    loop.run_until_complete(loop.create_task(main(), name="main"))
    out = capsys.readouterr().out
    assert "Task(name='leaf'" in out
    assert "Awaited by:" in out and "Task(name='main'" in out


def test_awaited_by_functions_take_two_arguments_and_pass_others_on(loop):
    fut = loop.create_future()
    with pytest.raises(TypeError):
        asyncio.future_add_to_awaited_by(fut)
    with pytest.raises(TypeError):
        asyncio.future_discard_from_awaited_by(fut, fut, fut)
    # Not a future: not recorded, no error (as asyncio's own).
    asyncio.future_add_to_awaited_by(fut, object())
    asyncio.future_add_to_awaited_by(object(), fut)
    assert fut._asyncio_awaited_by is None
    waiter = loop.create_future()
    asyncio.future_add_to_awaited_by(fut, waiter)
    asyncio.future_add_to_awaited_by(fut, waiter)
    assert fut._asyncio_awaited_by == frozenset({waiter})
    other = loop.create_future()
    asyncio.future_add_to_awaited_by(fut, other)
    assert fut._asyncio_awaited_by == frozenset({waiter, other})
    asyncio.future_discard_from_awaited_by(fut, waiter)
    asyncio.future_discard_from_awaited_by(fut, waiter)
    assert fut._asyncio_awaited_by == frozenset({other})
    for f in (fut, waiter, other):
        f.cancel()
