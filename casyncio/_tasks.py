"""Making asyncio.all_tasks() see casyncio's tasks without asyncio's WeakSet.

asyncio keeps every task in a WeakSet that all_tasks() reads through a
module global of asyncio.tasks (_all_tasks on 3.11, _scheduled_tasks on
3.12-3.13).  Joining it costs each task a Python call and a weakref;
casyncio's tasks instead sit in a C list of live tasks, and this module puts
a view in that global which iterates the WeakSet and the C list alike, and
forwards add()/discard() to the WeakSet.  On a Python whose all_tasks() does
not read such a global, nothing is replaced and tasks register with asyncio
the usual way.
"""

from __future__ import annotations

import weakref
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


def install() -> bool:
    """Put the view in place; True if all_tasks() now sees casyncio tasks
    without per-task registration."""
    for name in ("_all_tasks", "_scheduled_tasks"):
        current = getattr(_asyncio_tasks, name, None)
        if isinstance(current, AllTasksView):
            return True
        if (
            isinstance(current, weakref.WeakSet)
            and name in _asyncio_tasks.all_tasks.__code__.co_names
        ):
            setattr(_asyncio_tasks, name, AllTasksView(current))
            return True
    return False


if install():
    _casyncio._set_register_tasks(False)
