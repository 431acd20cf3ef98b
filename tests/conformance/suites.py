"""The registry of conformance suites: adding a CPython test module is one line.

A suite names a module of ``test.test_asyncio`` (or another package) and says which of its tests
run: the whole module (the default), or the classes a ``cases`` function
returns (casyncio-parametrized versions of the module's mixins, see
``casyncio_cases.py``), plus ``extra`` classes added to the whole module.
``adapt`` patches the module's own loop construction where it builds a
stock loop by hand (see ``adapters.py``).  Every suite runs with casyncio as
asyncio's default loop, so ``asyncio.new_event_loop()``, ``asyncio.run()``,
``asyncio.Runner`` and ``IsolatedAsyncioTestCase`` all get casyncio loops.

This module is imported by the parent process too (the CLI, pytest), which
imports neither casyncio nor the test modules: both happen when a suite is
loaded, in the child (see casyncio_cases.py for why).
"""

from __future__ import annotations

import importlib
import sys
import unittest
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from . import adapters, casyncio_cases
from .casyncio_cases import per_poller

CPYTHON_PACKAGE = "test.test_asyncio"


@dataclass(frozen=True)
class Suite:
    name: str
    """The pytest id and the prefix of this suite's keys in
    expected_failures.py; also the ``test.test_asyncio`` module it runs,
    unless ``module`` says otherwise."""

    module: str | None = None
    """The module, when one is split into several suites."""

    cases: Callable[[ModuleType], list[type]] | None = None
    """Run only these classes (built from the module) instead of the module."""

    extra: Callable[[ModuleType], list[type]] | None = None
    """Classes run in addition to the whole module."""

    adapt: Callable[[ModuleType], None] | None = None
    """Called with the imported module before its tests are loaded."""

    uses_default_loop: bool = True
    """The run must create at least one casyncio loop (False for suites whose
    tests all drive test_utils.TestLoop, like the Future mixins)."""

    package: str = CPYTHON_PACKAGE
    """Where the module is: CPython tests of asyncio outside test_asyncio
    live elsewhere (``test.test_asyncgen``)."""

    def import_module(self) -> ModuleType:
        return importlib.import_module(f"{self.package}.{self.module or self.name}")

    def load(self) -> unittest.TestSuite:
        mod = self.import_module()
        if self.adapt is not None:
            self.adapt(mod)
        loader = unittest.TestLoader()
        if self.cases is not None:
            classes = self.cases(mod)
            return unittest.TestSuite(loader.loadTestsFromTestCase(c) for c in classes)
        suite = loader.loadTestsFromModule(mod)
        if self.extra is not None:
            suite.addTests(loader.loadTestsFromTestCase(c) for c in self.extra(mod))
        return suite


SUITES: list[Suite] = [
    # Whole modules, casyncio as the default loop.
    Suite("test_locks"),
    Suite("test_queues"),
    Suite("test_timeouts"),
    Suite("test_taskgroups", adapt=adapters.taskgroups),
    Suite("test_waitfor"),
    Suite("test_pep492", adapt=adapters.pep492),
    Suite("test_context"),
    Suite("test_runners", adapt=adapters.runners),
    Suite("test_futures2", extra=casyncio_cases.futures2_cases),
    Suite("test_threads"),
    # Mixins parametrized with casyncio's loop and types.
    Suite("test_events", cases=casyncio_cases.event_loop_cases),
    Suite("test_futures", cases=casyncio_cases.future_cases, uses_default_loop=False),
    Suite("test_tasks", cases=casyncio_cases.task_cases, adapt=adapters.event_loop_alias),
    Suite(
        "test_tasks_asyncio_task",
        "test_tasks",
        cases=casyncio_cases.asyncio_task_cases,
        adapt=adapters.event_loop_alias,
    ),
    # Networking: the per-selector class of each module with casyncio loops,
    # or the whole module where its loops come from the policy.
    Suite("test_sock_lowlevel", cases=per_poller("SelectEventLoopTests")),
    Suite("test_streams"),
    Suite("test_server", cases=per_poller("SelectorStartServerTests", loop_method="new_loop")),
    Suite("test_protocols", uses_default_loop=False),  # abstract protocol classes, no loop
    Suite(
        "test_buffered_proto",
        cases=per_poller("BufferedProtocolSelectorTests", loop_method="new_loop"),
    ),
    Suite("test_sendfile", cases=per_poller("SelectEventLoopTests")),
    Suite("test_ssl"),
    Suite(
        "test_sslproto",
        cases=per_poller("SelectorStartTLSTests", loop_method="new_loop"),
    ),
    Suite("test_subprocess"),
    Suite("test_transports", uses_default_loop=False),  # abstract transport classes, no loop
    # CPython's tests of asyncio outside test_asyncio: asynchronous generators
    # on the loop (its asyncgen hooks, shutdown_asyncgens()), unittest's
    # IsolatedAsyncioTestCase, which runs each test on an asyncio.Runner, and
    # unittest.mock's AsyncMock, awaited on loops of the policy's.
    Suite("test_asyncgen", package="test"),
    Suite(
        "test_async_case",
        package="unittest.test" if sys.version_info < (3, 12) else "test.test_unittest",
    ),
    Suite(
        "testasync",
        package="unittest.test.testmock"
        if sys.version_info < (3, 12)
        else "test.test_unittest.testmock",
    ),
]
if sys.version_info >= (3, 12):
    SUITES.append(
        Suite(
            "test_eager_task_factory",
            extra=casyncio_cases.eager_task_cases,
            adapt=adapters.event_loop_alias,
        )
    )

if sys.version_info >= (3, 13):
    SUITES.append(Suite("test_staggered"))

if sys.version_info >= (3, 14):
    SUITES.append(Suite("test_graph", cases=casyncio_cases.graph_cases))
    SUITES.append(Suite("test_free_threading"))

if sys.version_info >= (3, 15):
    SUITES.append(Suite("test_server_context"))

BY_NAME: dict[str, Suite] = {s.name: s for s in SUITES}
