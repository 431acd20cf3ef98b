"""Making asyncio's task introspection see casyncio's tasks.

asyncio keeps every task in a WeakSet that all_tasks() reads through a
module global of asyncio.tasks (_all_tasks on 3.11, _scheduled_tasks on
3.12-3.13).  Joining it costs each task a Python call and a weakref;
casyncio's tasks instead sit in a C list of live tasks, and this module puts
a view in that global which iterates the WeakSet and the C list alike, and
forwards add()/discard() to the WeakSet.  3.14's all_tasks() is C and reads
a WeakSet of its own (for tasks that are not asyncio's) that no global names:
there that WeakSet is found among the _asyncio module's references and made a
TasksWeakSet, which iterates casyncio's list too.  Where neither can be done,
tasks register with asyncio the usual way.

On 3.14 it also gives asyncio.graph the record of who awaits a casyncio
future (install_call_graph).
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from asyncio import futures
from asyncio import tasks as _asyncio_tasks
from collections.abc import Iterator

from . import _casyncio


class AllTasksView:
    """asyncio's task WeakSet, plus every live casyncio Task."""

    def __init__(self, weakset: weakref.WeakSet) -> None:
        self._weakset = weakset

    def __iter__(self) -> Iterator:
        return iter([*self._weakset, *_casyncio._all_tasks()])

    def __len__(self) -> int:
        return len(self._weakset) + len(_casyncio._all_tasks())

    def __contains__(self, task) -> bool:
        return task in self._weakset or task in _casyncio._all_tasks()

    def add(self, task) -> None:
        self._weakset.add(task)

    def discard(self, task) -> None:
        self._weakset.discard(task)

    def __repr__(self) -> str:
        return f"<casyncio all-tasks view of {self._weakset!r}>"


class TasksWeakSet(weakref.WeakSet):
    """The class _asyncio's WeakSet of foreign tasks takes on (3.14+): the same
    set, plus every live casyncio Task when iterated, counted or asked."""

    def __iter__(self) -> Iterator:
        return iter([*super().__iter__(), *_casyncio._all_tasks()])

    def __len__(self) -> int:
        return super().__len__() + len(_casyncio._all_tasks())

    def __contains__(self, task) -> bool:
        return super().__contains__(task) or task in _casyncio._all_tasks()


def install_in_c_asyncio() -> bool:
    """3.14's C all_tasks() lists the tasks it knows of in C and, for any other
    task type, those in a WeakSet in its module state, which it iterates.  Give
    that set the class TasksWeakSet; True if all_tasks() now sees casyncio
    tasks.  The set is the one WeakSet among the module's references (its
    garbage-collector traversal); if there is not exactly one, False."""
    try:
        import _asyncio
    except ImportError:
        return False
    if _asyncio_tasks.all_tasks is not getattr(_asyncio, "all_tasks", None):
        return False
    sets = [o for o in gc.get_referents(_asyncio) if isinstance(o, weakref.WeakSet)]
    if len(sets) != 1:
        return False
    if type(sets[0]) is weakref.WeakSet:
        try:
            sets[0].__class__ = TasksWeakSet
        except TypeError:  # a WeakSet whose class cannot be assigned
            return False
    return isinstance(sets[0], TasksWeakSet)


def install() -> bool:
    """Put the view (or, on 3.14+, TasksWeakSet) in place; True if
    all_tasks() now sees casyncio tasks without per-task registration."""
    for name in ("_all_tasks", "_scheduled_tasks"):
        current = getattr(_asyncio_tasks, name, None)
        if isinstance(current, AllTasksView):
            return True
        # A Python all_tasks() (3.11-3.13) names the global it reads; 3.14's
        # is C and keeps its own set, so nothing there can be replaced.
        code = getattr(_asyncio_tasks.all_tasks, "__code__", None)
        if isinstance(current, weakref.WeakSet) and code and name in code.co_names:
            setattr(_asyncio_tasks, name, AllTasksView(current))
            return True
    return install_in_c_asyncio()


def install_call_graph() -> bool:
    """Python 3.14's asyncio.graph follows futures to their awaiters, which
    asyncio's gather(), TaskGroup and staggered_race record through
    asyncio.future_add_to_awaited_by() and future_discard_from_awaited_by().
    Put casyncio's pair in their place: they keep the record on casyncio's
    futures and hand any other future to asyncio's own.  False where asyncio
    has no such functions (before 3.14)."""
    add = getattr(futures, "future_add_to_awaited_by", None)
    if add is None:
        return False
    if add is not _casyncio.future_add_to_awaited_by:
        _casyncio._set_awaited_by_fallbacks(add, futures.future_discard_from_awaited_by)
        for module in (futures, asyncio):
            module.future_add_to_awaited_by = _casyncio.future_add_to_awaited_by
            module.future_discard_from_awaited_by = _casyncio.future_discard_from_awaited_by
    return True


if install():
    _casyncio._set_register_tasks(False)
install_call_graph()
