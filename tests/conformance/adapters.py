"""Per-module adaptations: where a CPython test module builds a stock loop by
hand instead of asking asyncio for one, give it a casyncio loop instead.

Each function takes the imported test module and replaces exactly the one
method that constructs the loop; the tests themselves are untouched.  The
stock versions construct ``asyncio.BaseEventLoop()`` and mock its private
``_selector``/``_process_events``/``_write_to_self`` so that it can run
without a selector; a casyncio loop is a complete loop and needs none of that.
(casyncio is imported when they are called, in the child; see casyncio_cases.)
"""

from __future__ import annotations

from types import ModuleType


def pep492(mod: ModuleType) -> None:
    """test_pep492.BaseTest.setUp: a casyncio loop as ``self.loop``."""
    import casyncio

    base = mod.test_utils.TestCase

    def setUp(self) -> None:
        base.setUp(self)
        self.loop = casyncio.new_event_loop()
        self.set_event_loop(self.loop)

    mod.BaseTest.setUp = setUp


def runners(mod: ModuleType) -> None:
    """test_runners.BaseTest.new_loop: the loop its TestPolicy hands to
    asyncio.run()/Runner.  The stock version replaces shutdown_asyncgens()
    with a stub recording that it ran (BaseTest.tearDown checks the flag);
    here the real method runs and the flag is recorded around it."""
    import casyncio

    def new_loop(self):
        loop = casyncio.new_event_loop()
        loop.shutdown_ag_run = False
        real_shutdown_asyncgens = loop.shutdown_asyncgens

        async def shutdown_asyncgens() -> None:
            loop.shutdown_ag_run = True
            await real_shutdown_asyncgens()

        loop.shutdown_asyncgens = shutdown_asyncgens
        return loop

    mod.BaseTest.new_loop = new_loop


def taskgroups(mod: ModuleType) -> None:
    """3.13's test_taskgroups runs its IsolatedAsyncioTestCases with
    ``loop_factory = asyncio.EventLoop`` (and an eager-task variant), which
    makes stock loops whatever the policy says: casyncio loops instead."""
    import asyncio

    import casyncio

    if getattr(mod.TestTaskGroup, "loop_factory", None) is not None:  # 3.13+
        mod.TestTaskGroup.loop_factory = staticmethod(casyncio.new_event_loop)
    if getattr(mod, "TestEagerTaskTaskGroup", None) is not None:

        def eager_loop() -> asyncio.AbstractEventLoop:
            loop = casyncio.new_event_loop()
            loop.set_task_factory(asyncio.eager_task_factory)
            return loop

        mod.TestEagerTaskTaskGroup.loop_factory = staticmethod(eager_loop)


def event_loop_alias(mod: ModuleType) -> None:
    """3.14's test_tasks and test_eager_task_factory run a few tests with
    ``asyncio.run(main(), loop_factory=asyncio.EventLoop)``, which makes a
    stock loop whatever the policy says.  The module's ``asyncio`` becomes a
    view of asyncio whose ``EventLoop`` is ``casyncio.Loop``; every other
    name, read or assigned, is asyncio's own."""
    import asyncio
    import types

    import casyncio

    if not hasattr(asyncio, "EventLoop"):  # before 3.13
        return

    class AsyncioWithCasyncioEventLoop(types.ModuleType):
        def __getattr__(self, name: str):
            return getattr(asyncio, name)

        def __setattr__(self, name: str, value) -> None:
            setattr(asyncio, name, value)

    view = AsyncioWithCasyncioEventLoop("asyncio")
    view.__dict__["EventLoop"] = casyncio.Loop
    mod.asyncio = view
