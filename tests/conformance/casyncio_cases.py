"""CPython's test mixins parametrized with casyncio, as CPython does it for its
C and Python implementations.

test_futures and test_tasks write every Future/Task test once, in a mixin
(``BaseFutureTests``, ``BaseTaskTests``...), and mix it into one class per
implementation: ``CFutureTests`` with ``cls = _CFuture``, ``PyFutureTests``
with ``cls = _PyFuture``, and for tasks every Task/Future pairing
(``CTask_PyFuture_Tests``, ``PyTask_CFuture_Tests``...), since a task must
be able to await any implementation's future.  Here casyncio is a third
implementation: its own pairs, plus casyncio paired with each of asyncio's
two, both ways round.  The classes only exist when casyncio has the types;
until then one explicit skipped test says which type is missing.

test_events writes the loop tests once in ``EventLoopTestsMixin`` and mixes
them into one class per selector (SelectEventLoopTests, EPollEventLoopTests,
...); here the same class with a casyncio loop, once per casyncio poller
(``per_poller``; the networking modules are built the same way).

Each function takes the imported CPython test module and returns the classes.
They import casyncio when called, in the child process that runs the suite:
the parent, started from the repository root, must not import it (the
source tree's casyncio/ would shadow an installed, built casyncio).
"""

from __future__ import annotations

import asyncio
import re
import unittest
from asyncio import futures, tasks
from types import ModuleType

# Where a type comes from, for class names: casyncio's, asyncio's C
# accelerator (_asyncio) and asyncio's pure-Python fallback.
_C_FUTURE = getattr(futures, "_CFuture", None)
_C_TASK = getattr(tasks, "_CTask", None)
_PY_FUTURE = futures._PyFuture
_PY_TASK = tasks._PyTask


def _named(cls: type, name: str) -> type:
    cls.__name__ = cls.__qualname__ = name
    return cls


def _not_implemented(name: str, *missing: str) -> type:
    """One skipped test standing for the classes that need missing types."""
    what = " and ".join(f"casyncio.{m}" for m in missing)

    @unittest.skip(f"{what} not implemented yet (issue 3)")
    class Placeholder(unittest.TestCase):
        def test_not_implemented(self) -> None:
            """Placeholder."""

    Placeholder.conformance_placeholder = True
    return _named(Placeholder, name)


# ---- per-loop mixins (test_events and the networking modules) -------------


def per_poller(*bases: str, loop_method: str = "create_event_loop", also: tuple[str, ...] = ()):
    """A ``cases`` function for a module that writes its loop tests once and
    runs them in one class per stock loop (SelectEventLoopTests,
    EPollEventLoopTests...): one class per casyncio poller instead, deriving
    from ``bases`` (names in the module, dotted for ``test_utils.TestCase``)
    with ``loop_method`` returning a casyncio loop; plus the module's classes
    named in ``also``, which get their loops from the policy.

    Deriving from CPython's own per-selector class (rather than from its
    mixin) keeps the tests and tweaks that class adds to the mixin."""

    def cases(mod: ModuleType) -> list[type]:
        import casyncio

        base_classes = []
        for dotted in bases:
            obj = mod
            for part in dotted.split("."):
                obj = getattr(obj, part)
            base_classes.append(obj)
        classes = [getattr(mod, name) for name in also]
        stem = re.sub(r"Selector|Select|^Base|Mixin$", "", bases[0])
        for poller in ("epoll", "poll"):

            def make_loop(self, poller=poller):
                return casyncio.new_event_loop(poller=poller)

            name = f"Casyncio{poller.capitalize()}{stem}"
            classes.append(type(name, tuple(base_classes), {loop_method: make_loop}))
        return classes

    return cases


# Classes of test_events that get their loops from the policy, so run on
# casyncio here: the get_event_loop/get_running_loop tests (with asyncio's C
# and Python implementations of those functions), the policy tests (which
# then test casyncio.EventLoopPolicy), and TestServer.  Left out: the
# per-selector classes (stock loops by construction), HandleTests and
# TimerTests (asyncio.Handle itself), AbstractEventLoopTests and
# TestAbstractServer (abstract base classes, no loop).
EVENTS_MODULE_LOOP_CLASSES = (
    "TestPyGetEventLoop",
    "TestCGetEventLoop",
    "PolicyTests",
    "TestServer",
)

# CPython's SelectEventLoopTests (EventLoopTestsMixin, SubprocessTestsMixin
# and the child watcher set-up of UnixEventLoopTestsMixin) on a casyncio
# loop, once per poller backend, and the classes above.
event_loop_cases = per_poller("SelectEventLoopTests", also=EVENTS_MODULE_LOOP_CLASSES)


# ---- test_futures --------------------------------------------------------


def future_cases(mod: ModuleType) -> list[type]:
    """BaseFutureTests, BaseFutureDoneCallbackTests and
    BaseFutureInheritanceTests with casyncio.Future and a subclass of it
    (CPython: CFutureTests, CSubFutureTests, CFutureDoneCallbackTests,
    CSubFutureDoneCallbackTests, CFutureInheritanceTests)."""
    import casyncio

    if not hasattr(casyncio, "Future"):
        return [_not_implemented("CasyncioFutureTests", "Future")]
    fut_cls = casyncio.Future
    test_utils = mod.test_utils

    class CasyncioFutureTests(mod.BaseFutureTests, test_utils.TestCase):
        cls = fut_cls
        # A C-implementation test (deleting C-level attributes must raise,
        # not crash); it applies to casyncio's C Future as to _CFuture.
        test_future_del_segfault = mod.CFutureTests.test_future_del_segfault

    class CasyncioSubFuture(fut_cls):
        pass

    class CasyncioSubFutureTests(mod.BaseFutureTests, test_utils.TestCase):
        cls = CasyncioSubFuture

    class CasyncioFutureDoneCallbackTests(mod.BaseFutureDoneCallbackTests, test_utils.TestCase):
        def _new_future(self):
            return fut_cls(loop=self.loop)

    class CasyncioSubFutureDoneCallbackTests(mod.BaseFutureDoneCallbackTests, test_utils.TestCase):
        def _new_future(self):
            class CasyncioSubFuture(fut_cls):
                pass

            return CasyncioSubFuture(loop=self.loop)

    class CasyncioFutureInheritanceTests(mod.BaseFutureInheritanceTests, test_utils.TestCase):
        def _get_future_cls(self):
            return fut_cls

    return [
        _named(CasyncioFutureTests, "CasyncioFutureTests"),
        _named(CasyncioSubFutureTests, "CasyncioSubFutureTests"),
        _named(CasyncioFutureDoneCallbackTests, "CasyncioFutureDoneCallbackTests"),
        _named(CasyncioSubFutureDoneCallbackTests, "CasyncioSubFutureDoneCallbackTests"),
        _named(CasyncioFutureInheritanceTests, "CasyncioFutureInheritanceTests"),
    ]


def futures2_cases(mod: ModuleType) -> list[type]:
    """test_futures2.FutureTests with casyncio.Task (CPython: CFutureTests,
    whose ``cls`` is _CTask)."""
    import casyncio

    if not hasattr(casyncio, "Task"):
        return [_not_implemented("CasyncioFutureTests", "Task")]

    class CasyncioFutureTests(mod.FutureTests, unittest.IsolatedAsyncioTestCase):
        cls = casyncio.Task

    return [_named(CasyncioFutureTests, "CasyncioFutureTests")]


def eager_task_cases(mod: ModuleType) -> list[type]:
    """test_eager_task_factory (Python 3.12+) with casyncio.Task as the Task
    the eager factory builds (CPython: the C and Python task classes); the
    whole module runs too, its asyncio tasks on casyncio loops."""
    import casyncio

    classes = []
    for base in ("EagerTaskFactoryLoopTests", "BaseEagerTaskFactoryTests"):
        name = "Casyncio" + base.removeprefix("Base")

        class Case(getattr(mod, base), mod.test_utils.TestCase):
            Task = casyncio.Task

        classes.append(_named(Case, name))

    class NonEager(mod.BaseNonEagerTaskFactoryTests, mod.test_utils.TestCase):
        Task = casyncio.Task

    classes.append(_named(NonEager, "CasyncioNonEagerTaskFactoryTests"))
    return classes


# ---- test_tasks ----------------------------------------------------------

# Classes of test_tasks that run on ``asyncio.new_event_loop()``, i.e. on a
# casyncio loop here, with asyncio's own types: asyncio's functions
# (run_coroutine_threadsafe, sleep), and asyncio's C and Python tasks on a
# casyncio loop (the CurrentLoop tests, CTask_Future_Tests).  The other
# classes are left out: they run on test_utils.TestLoop and check only
# asyncio's own types (gather, introspection) or its build (GenericTaskTests).
_TASKS_MODULE_LOOP_CLASSES = (
    "RunCoroutineThreadsafeTests",
    "SleepTests",
    "CompatibilityTests",
    "CTask_Future_Tests",
    "PyCurrentLoopTests",
    "CCurrentLoopTests",
)


def _asyncio_function(name: str, python: bool):
    """asyncio's public function `name`, or with `python` its pure-Python
    version where asyncio keeps one (tasks._py_<name>; 3.12 has no
    _py_all_tasks)."""
    public = getattr(asyncio, name)
    return getattr(asyncio.tasks, f"_py_{name}", public) if python else public


def _task_classes(mod: ModuleType, pairings: list[tuple]) -> list[type]:
    """One class per (class name, Task, Future, extra mixins, subclass tests?)
    pairing, as CPython builds CTask_CFuture_Tests and its siblings."""
    import casyncio

    classes = []
    for name, task_cls, future_cls, mixins, subclass in pairings:
        # 3.14's mixin calls self.current_task and self.all_tasks: asyncio's
        # Python ones for its Python Task (which keeps to them), as CPython's
        # own classes pick; asyncio's public ones, which see any task, else.
        py = task_cls is _PY_TASK
        namespace = {
            "Task": task_cls,
            "Future": future_cls,
            "current_task": staticmethod(_asyncio_function("current_task", py)),
            "all_tasks": staticmethod(_asyncio_function("all_tasks", py)),
        }
        if task_cls is casyncio.Task and future_cls is casyncio.Future and not subclass:
            # The C-implementation tests of CTask_CFuture_Tests (deleting a
            # C-level attribute must raise; __init__ must not leak refs, up
            # to 3.14; get_context() on a task never initialized, from 3.15),
            # those this Python has.
            for test in (
                "test_del__log_destroy_pending_segfault",
                "test_refleaks_in_task___init__",
                "test_get_context_uninitialized_segfault",
            ):
                if hasattr(mod.CTask_CFuture_Tests, test):
                    namespace[test] = getattr(mod.CTask_CFuture_Tests, test)
        cls = type(name, (mod.BaseTaskTests, *mixins, mod.test_utils.TestCase), namespace)
        if subclass:
            cls = mod.add_subclass_tests(cls)
        classes.append(cls)
    return classes


def task_cases(mod: ModuleType) -> list[type]:
    """casyncio.Task: BaseTaskTests (+ SetMethodsTest, + the subclass tests)
    awaiting casyncio's, asyncio's C and asyncio's Python futures;
    BaseCurrentLoopTests with casyncio.Task; and the classes listed above."""
    import casyncio

    classes: list[type] = [getattr(mod, name) for name in _TASKS_MODULE_LOOP_CLASSES]
    missing = [name for name in ("Task", "Future") if not hasattr(casyncio, name)]
    if missing:
        return [*classes, _not_implemented("CasyncioTaskTests", *missing)]
    task, future = casyncio.Task, casyncio.Future
    classes += _task_classes(
        mod,
        [
            ("CasyncioTask_CasyncioFuture_Tests", task, future, (mod.SetMethodsTest,), False),
            ("CasyncioTask_CasyncioFuture_SubclassTests", task, future, (), True),
            ("CasyncioTask_CFuture_Tests", task, _C_FUTURE, (), False),
            ("CasyncioTask_CFutureSubclass_Tests", task, _C_FUTURE, (), True),
            ("CasyncioTask_PyFuture_Tests", task, _PY_FUTURE, (), False),
            ("CasyncioTaskSubclass_PyFuture_Tests", task, _PY_FUTURE, (), True),
        ],
    )

    class CasyncioCurrentLoopTests(mod.BaseCurrentLoopTests, mod.test_utils.TestCase):
        # 3.13's mixin calls self.current_task (its subclasses pick the C or
        # the Python one); 3.11's calls asyncio.current_task.
        current_task = staticmethod(asyncio.current_task)

        def new_task(self, coro):
            return task(coro, loop=self.loop)

    classes.append(_named(CasyncioCurrentLoopTests, "CasyncioCurrentLoopTests"))
    return classes


def asyncio_task_cases(mod: ModuleType) -> list[type]:
    """asyncio's C and Python Tasks (and subclasses) awaiting casyncio.Future
    (a separate suite from task_cases only to split test_tasks' run time)."""
    import casyncio

    if not hasattr(casyncio, "Future"):
        return [_not_implemented("AsyncioTask_CasyncioFuture_Tests", "Future")]
    future = casyncio.Future
    return _task_classes(
        mod,
        [
            ("CTask_CasyncioFuture_Tests", _C_TASK, future, (), False),
            ("CTaskSubclass_CasyncioFuture_Tests", _C_TASK, future, (), True),
            ("PyTask_CasyncioFuture_Tests", _PY_TASK, future, (), False),
            ("PyTask_CasyncioFutureSubclass_Tests", _PY_TASK, future, (), True),
        ],
    )


# ---- test_graph (3.14) -----------------------------------------------------


def graph_cases(mod: ModuleType) -> list[type]:
    """asyncio.graph's call-graph tests on casyncio's loop, tasks and futures
    (the module's own classes swap in asyncio's C or Python types)."""

    class CasyncioCallStackTests(mod.CallStackTestBase, unittest.IsolatedAsyncioTestCase):
        pass

    return [_named(CasyncioCallStackTests, "CasyncioCallStackTests")]
