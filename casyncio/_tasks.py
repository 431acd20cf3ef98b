"""Making asyncio's task introspection see casyncio's tasks.

asyncio keeps tasks in a WeakSet that all_tasks() reads: a module global of
asyncio.tasks up to 3.13 (_all_tasks on 3.11, _scheduled_tasks on 3.12-3.13),
and on 3.14, whose all_tasks() is C, a set in the _asyncio module's state for
tasks that are not asyncio's own.  Joining it costs each task a Python call and
a weakref; casyncio's tasks instead sit in a C list of live tasks, and this
module gives that WeakSet the class TasksWeakSet, which iterates, counts and
searches the C list as well.  Where the set cannot be found or its class
cannot be assigned, tasks register with asyncio the usual way.

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


class TasksWeakSet(weakref.WeakSet):
    """The class asyncio's task WeakSet takes on: the same set, plus every
    live casyncio Task when iterated, counted or asked.  Only the set that
    install() gave this class adds them: a copy of it (copy(), union() and the
    like make one of the same class) has them as members already."""

    def __iter__(self) -> Iterator:
        if self is not _installed:
            return super().__iter__()
        return iter([*super().__iter__(), *_casyncio._all_tasks()])

    def __len__(self) -> int:
        if self is not _installed:
            return super().__len__()
        return super().__len__() + len(_casyncio._all_tasks())

    def __contains__(self, task) -> bool:
        if super().__contains__(task):
            return True
        return self is _installed and task in _casyncio._all_tasks()


_installed: TasksWeakSet | None = None


def task_set() -> weakref.WeakSet | None:
    """The WeakSet asyncio.all_tasks() reads, or None if it cannot be told.

    A Python all_tasks() (3.11-3.13) names the module global it reads.  3.14's
    C all_tasks() lists the tasks it knows of in C and, for any other task
    type, those in a WeakSet in its module state: the one WeakSet among the
    _asyncio module's references (its garbage-collector traversal)."""
    code = getattr(_asyncio_tasks.all_tasks, "__code__", None)
    if code is not None:
        for name in ("_all_tasks", "_scheduled_tasks"):
            found = getattr(_asyncio_tasks, name, None)
            if isinstance(found, weakref.WeakSet) and name in code.co_names:
                return found
        return None
    try:
        import _asyncio
    except ImportError:
        return None
    if _asyncio_tasks.all_tasks is not getattr(_asyncio, "all_tasks", None):
        return None
    sets = [o for o in gc.get_referents(_asyncio) if isinstance(o, weakref.WeakSet)]
    return sets[0] if len(sets) == 1 else None


def install() -> bool:
    """Make the set all_tasks() reads a TasksWeakSet; True if all_tasks() now
    sees casyncio tasks without per-task registration."""
    found = task_set()
    if found is None:
        return False
    global _installed
    if found is _installed:
        return True
    if type(found) is not weakref.WeakSet:
        return False
    try:
        found.__class__ = TasksWeakSet
    except TypeError:  # a WeakSet whose class cannot be assigned
        return False
    _installed = found
    return True


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
