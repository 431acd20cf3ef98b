"""Plugging casyncio into asyncio: the Loop type, new_event_loop, the policy,
install(), run(), asyncio.Runner, task factories, create_task, and the
unclosed-loop ResourceWarning."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import sys
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from conftest import make_loop, run_python

import casyncio
from casyncio import _casyncio

# These tests call asyncio's policy functions as programs do.  Python 3.14
# deprecates them (to be removed in 3.16): asyncio's warning, not casyncio's.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:'asyncio\.[gs]et_event_loop_policy' is deprecated:DeprecationWarning"
)


class Boom(Exception):
    pass


# ---- the type and the factory ------------------------------------------------------


def test_loop_is_an_abstract_event_loop():
    assert issubclass(casyncio.Loop, asyncio.AbstractEventLoop)
    lp = casyncio.new_event_loop()
    try:
        assert isinstance(lp, casyncio.Loop)
        assert isinstance(lp, asyncio.AbstractEventLoop)
        assert not lp.is_running() and not lp.is_closed()
    finally:
        lp.close()


@pytest.mark.parametrize("poller", ["epoll", "poll"])
def test_new_event_loop_poller(poller):
    lp = casyncio.new_event_loop(poller=poller)
    try:
        assert lp._poller == poller
        assert lp.run_until_complete(asyncio.sleep(0, result="ok")) == "ok"
    finally:
        lp.close()


def test_new_event_loop_unknown_poller():
    with pytest.raises(ValueError):
        casyncio.new_event_loop(poller="kqueue-on-linux")


def test_poller_env_variable(monkeypatch):
    monkeypatch.setenv("CASYNCIO_POLLER", "poll")
    lp = casyncio.new_event_loop()
    try:
        assert lp._poller == "poll"
    finally:
        lp.close()


def test_live_loop_counter():
    gc.collect()
    base = _casyncio._live_counts()["loops"]
    lp = casyncio.new_event_loop()
    assert _casyncio._live_counts()["loops"] == base + 1
    lp.close()
    del lp
    gc.collect()
    assert _casyncio._live_counts()["loops"] == base


# ---- the policy and install() ----------------------------------------------------------


def test_policy_makes_casyncio_loops():
    asyncio.set_event_loop_policy(casyncio.EventLoopPolicy())
    seen: list[object] = []

    async def main() -> None:
        seen.append(asyncio.get_running_loop())

    asyncio.run(main())
    assert isinstance(seen[0], casyncio.Loop)
    assert seen[0].is_closed()

    lp = asyncio.new_event_loop()
    try:
        assert isinstance(lp, casyncio.Loop)
    finally:
        lp.close()


def test_policy_get_event_loop():
    policy = casyncio.EventLoopPolicy()
    asyncio.set_event_loop_policy(policy)
    if sys.version_info >= (3, 14):
        # 3.14's policies no longer make a loop on get_event_loop().
        with pytest.raises(RuntimeError, match="no current event loop"):
            asyncio.get_event_loop()
        asyncio.set_event_loop(asyncio.new_event_loop())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        lp = asyncio.get_event_loop()
    try:
        assert isinstance(lp, casyncio.Loop)
        assert policy.get_event_loop() is lp
    finally:
        asyncio.set_event_loop(None)
        lp.close()


def test_install_sets_the_policy():
    with warnings.catch_warnings():
        if sys.version_info < (3, 12):
            warnings.simplefilter("error")
        else:
            warnings.simplefilter("ignore", DeprecationWarning)
        casyncio.install()
    assert isinstance(asyncio.get_event_loop_policy(), casyncio.EventLoopPolicy)
    lp = asyncio.new_event_loop()
    try:
        assert isinstance(lp, casyncio.Loop)
    finally:
        lp.close()


# Python 3.16 removes asyncio's policy system.  No 3.16 is built here, so this
# takes the policy system out of the running asyncio, in a child process, and
# gives it what 3.16 keeps: a new_event_loop() that makes asyncio's own loop and
# a per-thread set_event_loop().
_WITHOUT_POLICIES = """
import asyncio, asyncio.events as ev, asyncio.unix_events as ue, threading

for module in (asyncio, ev, ue):
    for name in list(vars(module)):
        if "olicy" in name:
            delattr(module, name)
local = threading.local()

def new_event_loop():
    return asyncio.SelectorEventLoop()

def set_event_loop(loop):
    local.loop = loop

for module in (asyncio, ev):
    module.new_event_loop = new_event_loop
    module.set_event_loop = set_event_loop

import casyncio

assert not hasattr(casyncio, "EventLoopPolicy") and "EventLoopPolicy" not in casyncio.__all__
try:
    casyncio.install()
except RuntimeError as e:
    print("install:", e)

async def main():
    return type(asyncio.get_running_loop()).__name__

print("casyncio.run:", casyncio.run(main()))
print("loop_factory:", asyncio.Runner(loop_factory=casyncio.new_event_loop).run(main()))
print("stock before -m casyncio:", asyncio.run(main()))
from casyncio.__main__ import _use_casyncio

_use_casyncio()
print("after -m casyncio:", asyncio.run(main()), type(asyncio.new_event_loop()).__name__)
"""


def test_without_a_policy_system():
    out = run_python(_WITHOUT_POLICIES)
    lines = out.splitlines()
    assert lines[0].startswith("install: ") and "casyncio.run()" in lines[0]
    assert lines[1:] == [
        "casyncio.run: Loop",
        "loop_factory: Loop",
        "stock before -m casyncio: _UnixSelectorEventLoop",
        "after -m casyncio: Loop Loop",
    ]


# ---- run() ----------------------------------------------------------------------------

RUNNERS: dict[str, Callable[..., Any]] = {
    "casyncio.run": casyncio.run,
    "asyncio.run+policy": asyncio.run,
    "asyncio.run": asyncio.run,
}


@pytest.fixture(params=list(RUNNERS))
def runner(request) -> Callable[..., Any]:
    """casyncio.run(), asyncio.run() under casyncio's policy, and stock
    asyncio.run() for comparison."""
    if request.param == "asyncio.run+policy":
        asyncio.set_event_loop_policy(casyncio.EventLoopPolicy())
    run = RUNNERS[request.param]
    run.expect_casyncio = request.param != "asyncio.run"  # type: ignore[attr-defined]
    return run


def _check_loop_type(run, lp) -> None:
    if run.expect_casyncio:
        assert isinstance(lp, casyncio.Loop)
    else:
        assert not isinstance(lp, casyncio.Loop)


def test_run_returns_the_result_and_closes_the_loop(runner):
    seen: list[Any] = []

    async def main(x: int) -> int:
        seen.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        return x + 1

    assert runner(main(41)) == 42
    _check_loop_type(runner, seen[0])
    assert seen[0].is_closed()


def test_run_propagates_exceptions(runner):
    async def main() -> None:
        await asyncio.sleep(0)
        raise Boom("from main")

    with pytest.raises(Boom, match="from main"):
        runner(main())


def test_run_debug_flag(runner):
    seen: list[bool] = []

    async def main() -> None:
        seen.append(asyncio.get_running_loop().get_debug())

    runner(main(), debug=True)
    runner(main(), debug=False)
    assert seen == [True, False]


# What asyncio.run() refuses: anything but a coroutine up to 3.13; from 3.14
# it also takes any awaitable, and refuses the rest with a TypeError.
if sys.version_info >= (3, 14):
    NOT_RUNNABLE = (TypeError, "a coroutine or an awaitable is required")
else:
    NOT_RUNNABLE = (ValueError, "a coroutine was expected")


def test_run_refuses_a_non_coroutine(runner):
    async def main() -> None:
        pass

    error, message = NOT_RUNNABLE
    with pytest.raises(error, match=message):
        runner(main)
    with pytest.raises(error, match=message):
        runner(42)


@pytest.mark.skipif(sys.version_info < (3, 14), reason="asyncio.run() takes awaitables from 3.14")
def test_run_takes_an_awaitable(runner):
    class Answer:
        def __await__(self):
            yield from asyncio.sleep(0).__await__()
            return 42

    assert runner(Answer()) == 42


def test_run_refuses_to_run_inside_a_running_loop(runner):
    errors: list[BaseException] = []

    async def inner() -> None:
        pass

    async def outer() -> None:
        c = inner()
        try:
            runner(c)
        except RuntimeError as exc:
            errors.append(exc)
        finally:
            c.close()

    runner(outer())
    assert len(errors) == 1
    assert "cannot be called from a running event loop" in str(errors[0])


def test_run_cancels_leftover_tasks_and_closes_asyncgens(runner):
    events: list[str] = []

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            events.append("task cancelled")
            raise

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            events.append("agen closed")

    gens: list[Any] = []

    async def main() -> None:
        asyncio.ensure_future(forever())
        g = agen()
        gens.append(g)
        await g.__anext__()
        await asyncio.sleep(0)

    runner(main())
    assert sorted(events) == ["agen closed", "task cancelled"]


def test_run_shuts_down_the_default_executor(runner):
    seen: list[Any] = []

    async def main() -> int:
        lp = asyncio.get_running_loop()
        seen.append(lp)
        return await lp.run_in_executor(None, sum, [1, 2, 3])

    assert runner(main()) == 6
    with pytest.raises(RuntimeError):
        seen[0].run_in_executor(None, sum, [1])


def test_asyncio_runner_with_loop_factory():
    seen: list[Any] = []

    async def main(x: int) -> int:
        seen.append(asyncio.get_running_loop())
        return x

    with asyncio.Runner(loop_factory=casyncio.new_event_loop) as r:
        lp = r.get_loop()
        assert isinstance(lp, casyncio.Loop)
        assert r.run(main(1)) == 1
        assert r.run(main(2)) == 2
    # One loop for both runs, closed with the runner.
    assert seen == [lp, lp]
    assert lp.is_closed()


def test_isolated_async_test_case_runs_on_casyncio():
    """unittest's IsolatedAsyncioTestCase on a casyncio loop: through its
    loop_factory (3.13+; a class, as a function would be bound as a method),
    and on every version through the policy (the test leaves none behind:
    see conftest)."""
    import unittest

    seen: list[Any] = []

    class Case(unittest.IsolatedAsyncioTestCase):
        async def asyncSetUp(self) -> None:
            seen.append(asyncio.get_running_loop())

        async def test_demo(self) -> None:
            seen.append(asyncio.get_running_loop())
            await asyncio.sleep(0)

    class WithFactory(Case):
        loop_factory = casyncio.Loop

    routes = ["policy"] + (["loop_factory"] if sys.version_info >= (3, 13) else [])
    for route in routes:
        seen.clear()
        policy = asyncio.events._event_loop_policy
        if route == "policy":
            asyncio.set_event_loop_policy(casyncio.EventLoopPolicy())
            try:
                result = Case("test_demo").run()
            finally:
                asyncio.set_event_loop_policy(None)
        else:
            result = WithFactory("test_demo").run()
            # A loop_factory leaves the policy as it was.
            assert asyncio.events._event_loop_policy is policy
        assert result.wasSuccessful(), result.errors + result.failures
        # The test and its setup ran on one casyncio loop, closed after it.
        assert len(seen) == 2 and seen[0] is seen[1], route
        assert isinstance(seen[0], casyncio.Loop) and seen[0].is_closed(), route


# ---- task factory and create_task -------------------------------------------------------


def test_task_factory(loop):
    calls: list[tuple] = []

    def factory(lp, coro, **kwargs):
        calls.append((lp, kwargs))
        return asyncio.Task(coro, loop=lp, **kwargs)

    assert loop.get_task_factory() is None
    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory

    async def coro() -> str:
        return "ok"

    task = loop.create_task(coro(), name="named")
    assert task.get_name() == "named"
    assert loop.run_until_complete(task) == "ok"
    ctx = contextvars.copy_context()
    assert loop.run_until_complete(loop.create_task(coro(), context=ctx)) == "ok"
    if sys.version_info >= (3, 14):
        # 3.14 passes create_task()'s keywords to the factory as given.
        assert calls == [(loop, {"name": "named"}), (loop, {"context": ctx})]
    else:
        # Before, the name is set on the task after the factory made it.
        assert calls == [(loop, {}), (loop, {"context": ctx})]
    # Coroutines run by run_until_complete go through the factory too.
    assert loop.run_until_complete(coro()) == "ok"
    assert len(calls) == 3
    loop.set_task_factory(None)
    assert loop.get_task_factory() is None


var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


def test_create_task_name_and_context(loop):
    async def read_var() -> str:
        await asyncio.sleep(0)
        return var.get()

    ctx = contextvars.Context()
    ctx.run(var.set, "in ctx")
    task = loop.create_task(read_var(), name="reader", context=ctx)
    assert task.get_name() == "reader"
    assert loop.run_until_complete(task) == "in ctx"

    token = var.set("current")
    try:
        task2 = loop.create_task(read_var())
    finally:
        var.reset(token)
    assert loop.run_until_complete(task2) == "current"
    assert task2.get_name().startswith("Task-")


def test_current_task_and_all_tasks(loop):
    async def main() -> tuple[Any, set]:
        return asyncio.current_task(), asyncio.all_tasks()

    task = loop.create_task(main())
    current, all_tasks = loop.run_until_complete(task)
    assert current is task
    assert task in all_tasks


# ---- unclosed loop -------------------------------------------------------------------


def _drop(holder: list[Any]) -> None:
    """Drop the only reference to a loop and collect (stock loops sit in a
    reference cycle with their self-pipe reader)."""
    holder.clear()
    gc.collect()


def test_unclosed_loop_resource_warning(loop_kind):
    gc.collect()
    base = _casyncio._live_counts()["loops"]
    holder = [make_loop(loop_kind)]
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        _drop(holder)
    assert _casyncio._live_counts()["loops"] == base


def test_closed_loop_no_resource_warning(loop_kind):
    holder = [make_loop(loop_kind)]
    holder[0].close()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        _drop(holder)
