"""run_forever / run_until_complete / close: what they return and raise,
on casyncio and on stock asyncio."""

from __future__ import annotations

import asyncio

import pytest
from conftest import assert_loop_usable, make_loop, run_briefly


class Boom(Exception):
    pass


def test_run_until_complete_coroutine_returns_its_result(loop):
    async def coro(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    assert loop.run_until_complete(coro(21)) == 42


def test_run_until_complete_future(loop):
    fut = loop.create_future()
    loop.call_soon(fut.set_result, "value")
    assert loop.run_until_complete(fut) == "value"


def test_run_until_complete_already_done_future(loop):
    fut = loop.create_future()
    fut.set_result(7)
    assert loop.run_until_complete(fut) == 7


def test_run_until_complete_awaitable_object(loop):
    class Awaitable:
        def __await__(self):
            yield from asyncio.sleep(0).__await__()
            return "awaited"

    assert loop.run_until_complete(Awaitable()) == "awaited"


def test_run_until_complete_future_that_fails(loop):
    fut = loop.create_future()
    loop.call_soon(fut.set_exception, Boom("failed"))
    with pytest.raises(Boom, match="failed"):
        loop.run_until_complete(fut)
    assert_loop_usable(loop)


def test_run_until_complete_coroutine_that_raises(loop):
    async def coro() -> None:
        await asyncio.sleep(0)
        raise Boom("from coroutine")

    with pytest.raises(Boom, match="from coroutine"):
        loop.run_until_complete(coro())
    assert_loop_usable(loop)


def test_run_until_complete_cancelled_future(loop):
    fut = loop.create_future()
    loop.call_soon(fut.cancel)
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(fut)
    assert_loop_usable(loop)


def test_run_until_complete_loop_stopped_before_future_done(loop):
    fut = loop.create_future()
    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError, match="Event loop stopped before Future completed"):
        loop.run_until_complete(fut)
    assert not fut.done()
    # The future can still complete in a later run.
    loop.call_soon(fut.set_result, "later")
    assert loop.run_until_complete(fut) == "later"


def test_run_until_complete_stopped_before_coroutine_done(loop):
    resume = loop.create_future()

    async def coro() -> str:
        return await resume

    task = loop.create_task(coro())
    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError, match="Event loop stopped before Future completed"):
        loop.run_until_complete(task)
    loop.call_soon(resume.set_result, "done")
    assert loop.run_until_complete(task) == "done"


def test_run_until_complete_rejects_non_awaitables(loop):
    with pytest.raises(TypeError):
        loop.run_until_complete(42)
    assert_loop_usable(loop)


def test_run_until_complete_rejects_a_future_of_another_loop(loop, loop_kind):
    other = make_loop(loop_kind)
    try:
        fut = other.create_future()
        with pytest.raises(ValueError):
            loop.run_until_complete(fut)
    finally:
        other.close()
    assert_loop_usable(loop)


def test_run_until_complete_does_not_leave_its_callback_on_the_future(loop):
    fut = loop.create_future()
    loop.call_soon(fut.set_result, None)
    loop.run_until_complete(fut)
    # A second run on the same done future: no stale stop() from the first.
    ran: list[str] = []
    loop.call_soon(ran.append, "x")
    loop.run_until_complete(fut)
    run_briefly(loop)
    assert ran == ["x"]


def test_run_forever_while_running_raises(loop):
    errors: list[BaseException] = []

    def nested() -> None:
        try:
            loop.run_forever()
        except RuntimeError as exc:
            errors.append(exc)
        loop.stop()

    loop.call_soon(nested)
    loop.run_forever()
    assert len(errors) == 1
    assert "already running" in str(errors[0])
    assert_loop_usable(loop)


def test_run_until_complete_while_running_raises(loop):
    errors: list[BaseException] = []

    def nested() -> None:
        fut = loop.create_future()
        fut.set_result(None)
        try:
            loop.run_until_complete(fut)
        except RuntimeError as exc:
            errors.append(exc)
        loop.stop()

    loop.call_soon(nested)
    loop.run_forever()
    assert len(errors) == 1
    assert "already running" in str(errors[0])
    assert_loop_usable(loop)


def test_running_another_loop_inside_a_running_loop_raises(loop, loop_kind):
    other = make_loop(loop_kind)
    errors: list[BaseException] = []

    def nested() -> None:
        # If run_forever() wrongly ran, this stop() would end it.
        other.call_soon(other.stop)
        try:
            other.run_forever()
        except RuntimeError as exc:
            errors.append(exc)
        loop.stop()

    try:
        loop.call_soon(nested)
        loop.run_forever()
        assert len(errors) == 1
        assert "another loop is running" in str(errors[0])
        # Both loops are fine afterwards (the first run consumes the stop()).
        run_briefly(other)
        assert_loop_usable(other)
    finally:
        other.close()
    assert_loop_usable(loop)


def test_run_forever_on_closed_loop_raises(loop):
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.run_forever()


def test_run_until_complete_on_closed_loop_raises(loop):
    loop.close()

    async def coro() -> None:
        pass

    c = coro()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.run_until_complete(c)
    c.close()


def test_close_while_running_raises(loop):
    errors: list[BaseException] = []

    def try_close() -> None:
        try:
            loop.close()
        except RuntimeError as exc:
            errors.append(exc)
        loop.stop()

    loop.call_soon(try_close)
    loop.run_forever()
    assert len(errors) == 1
    assert not loop.is_closed()
    assert_loop_usable(loop)


def test_close_is_idempotent_and_drops_pending_callbacks(loop):
    ran: list[str] = []
    loop.call_soon(ran.append, "soon")
    loop.call_later(0, ran.append, "timer")
    loop.close()
    loop.close()
    assert loop.is_closed()
    assert ran == []


def test_loop_can_run_many_times(loop):
    for i in range(5):
        assert loop.run_until_complete(asyncio.sleep(0, result=i)) == i


def test_run_forever_sets_and_resets_the_running_loop(loop):
    seen: list[object] = []

    async def main() -> None:
        seen.append(asyncio.get_running_loop())
        seen.append(asyncio.get_event_loop())

    loop.run_until_complete(main())
    assert seen == [loop, loop]
    assert asyncio._get_running_loop() is None


def test_sleep_and_gather_on_the_loop(loop):
    async def worker(i: int) -> int:
        await asyncio.sleep(0.001 * (5 - i))
        return i

    async def main() -> list[int]:
        return await asyncio.gather(*(worker(i) for i in range(5)))

    assert loop.run_until_complete(main()) == [0, 1, 2, 3, 4]
