"""Executors (run_in_executor, shutdown_default_executor) and async
generator hooks (firstiter/finalizer, shutdown_asyncgens).  On casyncio and
on stock asyncio."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import sys
import threading
import time

import pytest
from conftest import assert_loop_usable


class Boom(Exception):
    pass


def _whoami(x: int) -> tuple[int, str, int]:
    return threading.get_ident(), threading.current_thread().name, x * 2


# ---- executors -----------------------------------------------------------------


def test_run_in_default_executor(loop):
    ident, name, value = loop.run_until_complete(loop.run_in_executor(None, _whoami, 21))
    assert value == 42
    assert ident != threading.get_ident()
    assert name.startswith("asyncio")


def test_run_in_executor_returns_an_asyncio_future(loop):
    fut = loop.run_in_executor(None, _whoami, 1)
    assert asyncio.isfuture(fut)
    assert loop.run_until_complete(fut)[2] == 2


def test_run_in_explicit_executor(loop):
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mine") as ex:
        _ident, name, value = loop.run_until_complete(loop.run_in_executor(ex, _whoami, 2))
    assert value == 4
    assert name.startswith("mine")


def test_set_default_executor(loop):
    ex = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="custom-default")
    loop.set_default_executor(ex)
    try:
        _ident, name, _ = loop.run_until_complete(loop.run_in_executor(None, _whoami, 0))
        assert name.startswith("custom-default")
    finally:
        ex.shutdown(wait=True)


def test_run_in_executor_exception_propagates(loop):
    def fail() -> None:
        raise Boom("in thread")

    with pytest.raises(Boom, match="in thread"):
        loop.run_until_complete(loop.run_in_executor(None, fail))
    assert_loop_usable(loop)


def test_many_executor_jobs(loop):
    async def main() -> list[int]:
        futs = [loop.run_in_executor(None, pow, i, 2) for i in range(50)]
        return list(await asyncio.gather(*futs))

    assert loop.run_until_complete(main()) == [i * i for i in range(50)]


def test_shutdown_default_executor_waits_for_jobs(loop):
    done: list[str] = []

    def job() -> None:
        time.sleep(0.05)
        done.append("job")

    async def main() -> None:
        fut = loop.run_in_executor(None, job)
        await loop.shutdown_default_executor()
        # The job finished before shutdown returned.
        assert done == ["job"]
        await fut

    loop.run_until_complete(main())


def test_run_in_default_executor_after_shutdown_raises(loop):
    loop.run_until_complete(loop.run_in_executor(None, _whoami, 0))
    loop.run_until_complete(loop.shutdown_default_executor())
    with pytest.raises(RuntimeError, match="Executor shutdown has been called"):
        loop.run_in_executor(None, _whoami, 0)
    # An explicit executor still works.
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        assert loop.run_until_complete(loop.run_in_executor(ex, _whoami, 3))[2] == 6
    assert_loop_usable(loop)


def test_shutdown_default_executor_without_one(loop):
    loop.run_until_complete(loop.shutdown_default_executor())
    with pytest.raises(RuntimeError, match="Executor shutdown has been called"):
        loop.run_in_executor(None, _whoami, 0)


def test_close_shuts_down_the_default_executor(loop):
    loop.run_until_complete(loop.run_in_executor(None, _whoami, 0))
    executor = loop._default_executor
    assert executor is not None
    loop.close()
    with pytest.raises(RuntimeError):
        executor.submit(_whoami, 0)


def test_to_thread_runs_on_the_loop(loop):
    async def main() -> int:
        return (await asyncio.to_thread(_whoami, 5))[2]

    assert loop.run_until_complete(main()) == 10


# ---- async generators --------------------------------------------------------------


def test_asyncgen_hooks_installed_while_running(loop):
    outside = sys.get_asyncgen_hooks()
    seen: list[object] = []
    loop.call_soon(lambda: seen.append(sys.get_asyncgen_hooks()))
    loop.call_soon(loop.stop)
    loop.run_forever()
    hooks = seen[0]
    assert hooks.firstiter is not None and hooks.finalizer is not None
    assert hooks.firstiter.__self__ is loop
    assert hooks.finalizer.__self__ is loop
    # Restored afterwards.
    assert sys.get_asyncgen_hooks() == outside


def test_asyncgen_hooks_restored_after_exception(loop):
    outside = sys.get_asyncgen_hooks()

    def fatal() -> None:
        raise KeyboardInterrupt

    loop.call_soon(fatal)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert sys.get_asyncgen_hooks() == outside


def test_shutdown_asyncgens_closes_suspended_generators(loop):
    events: list[str] = []

    async def agen(name: str):
        try:
            yield 1
            yield 2
        finally:
            events.append(f"closed {name}")

    gens = [agen("a"), agen("b")]

    async def start() -> None:
        for g in gens:
            assert await g.__anext__() == 1

    loop.run_until_complete(start())
    assert events == []
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert sorted(events) == ["closed a", "closed b"]


def test_shutdown_asyncgens_with_nothing_to_close(loop):
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert_loop_usable(loop)


@pytest.mark.loop_errors
def test_shutdown_asyncgens_reports_errors_in_aclose(loop):
    async def agen():
        try:
            yield 1
        finally:
            raise Boom("in finally")

    g = agen()

    async def start() -> None:
        await g.__anext__()

    loop.run_until_complete(start())
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert len(loop.handler_calls) == 1
    ctx = loop.handler_calls[0]
    assert ctx["message"].startswith("an error occurred during closing of asynchronous generator")
    assert isinstance(ctx["exception"], Boom)
    assert ctx["asyncgen"] is g


def test_firstiter_after_shutdown_warns(loop):
    async def agen():
        yield 1

    loop.run_until_complete(loop.shutdown_asyncgens())
    g = agen()

    async def use() -> int:
        return await g.__anext__()

    with pytest.warns(ResourceWarning, match=r"was scheduled after loop.shutdown_asyncgens\(\)"):
        assert loop.run_until_complete(use()) == 1
    loop.run_until_complete(g.aclose())


def test_finalizer_hook_closes_dropped_generator(loop):
    events: list[str] = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            events.append("closed")

    async def main() -> None:
        g = agen()
        await g.__anext__()
        del g
        gc.collect()
        # The finalizer schedules aclose() on the loop; let it run.
        for _ in range(10):
            if events:
                break
            await asyncio.sleep(0)

    loop.run_until_complete(main())
    assert events == ["closed"]


def test_async_for_on_the_loop(loop):
    async def agen(n: int):
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    async def main() -> list[int]:
        return [x async for x in agen(5)]

    assert loop.run_until_complete(main()) == [0, 1, 2, 3, 4]
