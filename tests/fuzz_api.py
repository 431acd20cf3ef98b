"""A differential fuzz of the loop's scheduling calls, Future, Task and Handle.

Each case, from its seed, makes one object (the loop, a Future, a Task, or a
Handle) and calls a few of its methods with arguments drawn from a pool of
odd values (wrong types, huge and non-finite numbers, objects whose
comparisons or repr raise, futures of other loops...), then runs the loop a
little.  The same case runs on stock asyncio and on casyncio, and what each
step did (returned, or which exception type it raised), which callbacks ran
and what reached the exception handler are compared.  Messages are not.

Besides agreeing with stock asyncio, casyncio's loop must run a callback
and a future to completion after every case: a bad argument never leaves it
unusable.

Run by tests/test_fuzz_api.py in a child process (a crash fails the test
rather than the session):

    python tests/fuzz_api.py FIRST_SEED COUNT [debug]

prints one JSON line per difference that is not a known one (``KNOWN``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import gc
import io
import json
import logging
import os
import random
import sys
import warnings
from collections.abc import Callable
from typing import Any, NoReturn

import casyncio


class Weird:
    """Comparisons, float() and index() all raise."""

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq")

    def __lt__(self, other: object) -> bool:
        raise RuntimeError("lt")

    def __float__(self) -> float:
        raise RuntimeError("float")

    def __index__(self) -> int:
        raise RuntimeError("index")


class BadRepr:
    def __str__(self) -> str:
        raise RuntimeError("str")

    def __repr__(self) -> str:
        raise RuntimeError("repr")


class FakeLoop:
    def get_debug(self) -> bool:
        return False


class Side:
    """One implementation's side of a case: its loop and types, and what
    happened (callbacks run, exception handler calls)."""

    def __init__(self, kind: str, debug: bool) -> None:
        mod: Any = asyncio if kind == "asyncio" else casyncio
        # epoll, as stock's selector, whatever CASYNCIO_POLLER says: poll(2)
        # takes fds epoll refuses (/dev/null as stdin, regular files).
        self.loop = (
            casyncio.new_event_loop(poller="epoll") if mod is casyncio else mod.new_event_loop()
        )
        self.loop.set_debug(debug)
        self.loop.slow_callback_duration = 60.0
        self.Future, self.Task = mod.Future, mod.Task
        self.Handle, self.TimerHandle = mod.Handle, mod.TimerHandle
        self.other = asyncio.new_event_loop()
        self.ran: list[tuple] = []
        self.handler_calls: list[str | None] = []
        self.loop.set_exception_handler(self._handler)

    def _handler(self, loop: Any, context: dict) -> None:
        exc = context.get("exception")
        self.handler_calls.append(type(exc).__name__ if exc is not None else None)

    def callback(self, tag: str) -> Callable[..., None]:
        def cb(*args: Any) -> None:
            self.ran.append((tag, len(args)))

        return cb

    def raising(self) -> Callable[..., None]:
        def cb(*args: Any) -> None:
            self.ran.append(("raise", len(args)))
            raise ValueError("boom")

        return cb

    async def coro(self) -> int:
        self.ran.append(("coro",))
        await asyncio.sleep(0)
        return 5

    async def coro_raising(self) -> None:
        self.ran.append(("coro-raise",))
        raise KeyError("k")

    def close(self) -> None:
        if not self.loop.is_closed():
            with contextlib.suppress(BaseException):  # a case may have broken it
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()
        self.other.close()


def _done(fut: Any) -> Any:
    fut.set_result(1)
    return fut


# The pool of arguments: (label, maker), made afresh for each side.
VALUES: list[tuple[str, Callable[[Side], Any]]] = [
    ("None", lambda s: None),
    ("0", lambda s: 0),
    ("-1", lambda s: -1),
    ("2**70", lambda s: 2**70),
    ("1.5", lambda s: 1.5),
    ("nan", lambda s: float("nan")),
    ("inf", lambda s: float("inf")),
    ("-inf", lambda s: float("-inf")),
    ("True", lambda s: True),
    ("str", lambda s: "x"),
    ("bytes", lambda s: b"x"),
    ("list", lambda s: []),
    ("tuple", lambda s: ()),
    ("dict", lambda s: {}),
    ("object", lambda s: object()),
    ("weird", lambda s: Weird()),
    ("badrepr", lambda s: BadRepr()),
    ("callback", lambda s: s.callback("cb")),
    ("raising", lambda s: s.raising()),
    ("len", lambda s: len),
    ("int-type", lambda s: int),
    ("corofunc", lambda s: Side.coro),
    ("coro", lambda s: s.coro()),
    ("context", lambda s: contextvars.copy_context()),
    ("exception", lambda s: ValueError("v")),
    ("exception-type", lambda s: ValueError),
    ("stopiteration", lambda s: StopIteration(1)),
    ("keyboardinterrupt", lambda s: KeyboardInterrupt()),
    ("cancellederror", lambda s: asyncio.CancelledError()),
    ("loop", lambda s: s.loop),
    ("other-loop", lambda s: s.other),
    ("fake-loop", lambda s: FakeLoop()),
    ("future", lambda s: s.Future(loop=s.loop)),
    ("done-future", lambda s: _done(s.Future(loop=s.loop))),
    ("stock-future", lambda s: asyncio.Future(loop=s.loop)),
    ("other-loop-future", lambda s: asyncio.Future(loop=s.other)),
    ("task", lambda s: s.loop.create_task(s.coro())),
    ("handle", lambda s: s.loop.call_soon(s.callback("h"))),
    ("timer", lambda s: s.loop.call_later(0, s.callback("t"))),
    ("file", lambda s: io.StringIO()),
]


def make_value(side: Side, index: int) -> Any:
    try:
        return VALUES[index][1](side)
    except Exception as exc:  # noqa: BLE001 - e.g. a task on a closed loop
        return f"<could not make: {type(exc).__name__}>"


Op = tuple[str, tuple[int, int], list[str], Callable[[Side, Any, list, dict], Any]]


def method(name: str) -> Callable[[Side, Any, list, dict], Any]:
    return lambda s, obj, args, kwargs: getattr(obj, name)(*args, **kwargs)


def setter(name: str) -> Callable[[Side, Any, list, dict], Any]:
    return lambda s, obj, args, kwargs: setattr(obj, name, args[0])


def kind_of(name: str) -> Callable[[Side, Any, list, dict], Any]:
    """Calls the method, reporting only the type of what it returned."""
    return lambda s, obj, args, kwargs: type(getattr(obj, name)(*args, **kwargs))


def run_until_complete(s: Side, loop: Any, args: list, kwargs: dict) -> Any:
    stop = loop.call_later(0.01, loop.stop)  # a future never done: stop, as stock
    try:
        return loop.run_until_complete(*args, **kwargs)
    finally:
        stop.cancel()  # left pending, it could stop a later run on one side


LOOP_OPS: list[Op] = [
    ("call_soon", (0, 3), ["context"], method("call_soon")),
    ("call_soon_threadsafe", (0, 3), ["context"], method("call_soon_threadsafe")),
    ("call_later", (0, 3), ["context"], method("call_later")),
    ("call_at", (0, 3), ["context"], method("call_at")),
    ("create_future", (0, 1), [], method("create_future")),
    ("create_task", (0, 2), ["name", "context"], method("create_task")),
    ("set_task_factory", (0, 2), [], method("set_task_factory")),
    ("get_task_factory", (0, 1), [], method("get_task_factory")),
    ("call_exception_handler", (0, 2), [], method("call_exception_handler")),
    ("default_exception_handler", (0, 2), [], method("default_exception_handler")),
    ("set_exception_handler", (0, 2), [], method("set_exception_handler")),
    ("add_reader", (0, 3), [], method("add_reader")),
    ("remove_reader", (0, 2), [], method("remove_reader")),
    ("add_writer", (0, 3), [], method("add_writer")),
    ("remove_writer", (0, 2), [], method("remove_writer")),
    ("run_until_complete", (0, 2), [], run_until_complete),
    ("set_default_executor", (0, 2), [], method("set_default_executor")),
    ("stop", (0, 1), [], method("stop")),
    ("time", (0, 1), [], kind_of("time")),
    ("is_running", (0, 1), [], method("is_running")),
    ("is_closed", (0, 1), [], method("is_closed")),
    ("get_debug", (0, 1), [], kind_of("get_debug")),
    ("close", (0, 1), [], method("close")),
]

FUTURE_OPS: list[Op] = [
    ("set_result", (0, 2), [], method("set_result")),
    ("set_exception", (0, 2), [], method("set_exception")),
    ("cancel", (0, 2), ["msg"], method("cancel")),
    ("result", (0, 1), [], kind_of("result")),
    ("exception", (0, 1), [], kind_of("exception")),
    ("done", (0, 1), [], method("done")),
    ("cancelled", (0, 1), [], method("cancelled")),
    ("get_loop() is loop", (0, 1), [], lambda s, o, a, k: o.get_loop(*a, **k) is s.loop),
    ("add_done_callback", (0, 2), ["context"], method("add_done_callback")),
    ("remove_done_callback", (0, 2), [], method("remove_done_callback")),
    (
        "next(__await__())",
        (0, 0),
        [],
        lambda s, o, a, k: kind_of("__next__")(s, o.__await__(), a, k),
    ),
    ("__await__().send", (0, 1), [], lambda s, o, a, k: kind_of("send")(s, o.__await__(), a, k)),
    ("__await__().throw", (1, 1), [], lambda s, o, a, k: o.__await__().throw(*a)),
    ("_state =", (1, 1), [], setter("_state")),
    ("_log_traceback =", (1, 1), [], setter("_log_traceback")),
    ("_asyncio_future_blocking =", (1, 1), [], setter("_asyncio_future_blocking")),
    ("_cancel_message =", (1, 1), [], setter("_cancel_message")),
    ("len(_callbacks)", (0, 0), [], lambda s, o, a, k: len(o._callbacks or ())),
    ("_exception", (0, 0), [], lambda s, o, a, k: type(o._exception)),
    ("_loop is loop", (0, 0), [], lambda s, o, a, k: o._loop is s.loop),
    ("_make_cancelled_error", (0, 0), [], kind_of("_make_cancelled_error")),
    ("repr", (0, 0), [], lambda s, o, a, k: type(repr(o))),
    ("__init__", (0, 1), ["loop"], method("__init__")),
    ("__del__", (0, 0), [], method("__del__")),
]

TASK_OPS: list[Op] = FUTURE_OPS + [
    ("get_name", (0, 1), [], kind_of("get_name")),
    ("set_name", (0, 2), [], method("set_name")),
    ("get_coro", (0, 1), [], kind_of("get_coro")),
    ("get_stack", (0, 1), ["limit"], lambda s, o, a, k: len(o.get_stack(*a, **k))),
    (
        "print_stack",
        (0, 1),
        ["limit", "file"],
        lambda s, o, a, k: o.print_stack(*a, **{**k, "file": k.get("file") or io.StringIO()}),
    ),
    ("uncancel", (0, 1), [], method("uncancel")),
    ("cancelling", (0, 1), [], method("cancelling")),
    ("_must_cancel =", (1, 1), [], setter("_must_cancel")),
    ("_log_destroy_pending =", (1, 1), [], setter("_log_destroy_pending")),
    ("_fut_waiter is None", (0, 0), [], lambda s, o, a, k: o._fut_waiter is None),
    ("__init__(coro...)", (0, 2), ["loop", "name", "context"], method("__init__")),
]

HANDLE_OPS: list[Op] = [
    ("cancel", (0, 1), [], method("cancel")),
    ("cancelled", (0, 1), [], method("cancelled")),
    ("_run", (0, 1), [], method("_run")),
    ("repr", (0, 0), [], lambda s, o, a, k: type(repr(o))),
    ("when", (0, 1), [], kind_of("when")),
    ("<", (1, 1), [], lambda s, o, a, k: o < a[0]),
    ("<=", (1, 1), [], lambda s, o, a, k: o <= a[0]),
    (">", (1, 1), [], lambda s, o, a, k: o > a[0]),
    ("==", (1, 1), [], lambda s, o, a, k: o == a[0]),
    ("!=", (1, 1), [], lambda s, o, a, k: o != a[0]),
    ("hash", (0, 0), [], lambda s, o, a, k: type(hash(o))),
    ("_callback is None", (0, 0), [], lambda s, o, a, k: o._callback is None),
    ("_args is None", (0, 0), [], lambda s, o, a, k: o._args is None),
    ("_cancelled", (0, 0), [], lambda s, o, a, k: o._cancelled),
]

TARGETS = ["loop", "future", "task", "handle", "handle", "loop", "future", "task"]


def make_target(rng: random.Random, side: Side, target: str) -> tuple[Any, list[Op]]:
    if target == "loop":
        return side.loop, LOOP_OPS
    if target == "future":
        if rng.random() < 0.3:
            return side.Future(loop=make_value(side, rng.randrange(len(VALUES)))), FUTURE_OPS
        return side.Future(loop=side.loop), FUTURE_OPS
    if target == "task":
        r = rng.random()
        coro = side.coro() if r < 0.7 else side.coro_raising() if r < 0.85 else None
        if coro is None:
            coro = make_value(side, rng.randrange(len(VALUES)))
        return side.Task(coro, loop=side.loop), TASK_OPS
    if rng.random() < 0.5:
        return side.Handle(side.callback("H"), (1,), side.loop), HANDLE_OPS
    return side.TimerHandle(side.loop.time(), side.callback("T"), (), side.loop), HANDLE_OPS


def outcome(call: Callable[[], Any]) -> str:
    try:
        result = call()
    except Exception as exc:  # noqa: BLE001
        return "raise " + type(exc).__name__
    except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt thrown in
        return "raise " + type(exc).__name__
    if isinstance(result, (asyncio.TimerHandle, casyncio.TimerHandle)):
        return "ok TimerHandle"
    if isinstance(result, (asyncio.Handle, casyncio.Handle)):
        return "ok Handle"  # 3.14's call_soon_threadsafe() makes a subclass
    if isinstance(result, type):
        return "ok " + result.__name__
    if result is None or isinstance(result, (bool, int, str)):
        return "ok " + repr(result)
    return "ok " + type(result).__name__


_UNINITIALIZED: list[Any] = []


def _init_failed(steps: list[tuple]) -> bool:
    return any(step[0].startswith("__init__") and step[-1].startswith("raise") for step in steps)


def run_case(kind: str, seed: int, debug: bool) -> list[tuple]:
    """What the case did on `kind` ("asyncio" or "casyncio"), step by step."""
    rng = random.Random(seed)
    side = Side(kind, debug)
    steps: list[tuple] = []
    target = rng.choice(TARGETS)
    try:
        obj, ops = make_target(rng, side, target)
        steps.append(("make", target, "ok"))
    except Exception as exc:  # noqa: BLE001
        steps.append(("make", target, "raise " + type(exc).__name__))
        obj, ops = None, []
    for _ in range(rng.randint(1, 5) if ops else 0):
        name, (low, high), keywords, call = ops[rng.randrange(len(ops))]
        picks = [rng.randrange(len(VALUES)) for _ in range(rng.randint(low, high))]
        kwpicks = {kw: rng.randrange(len(VALUES)) for kw in keywords if rng.random() < 0.25}
        if name == "close" and rng.random() < 0.7:
            continue  # a closed loop ends the case: not too often
        if name == "__del__" and _init_failed(steps):
            continue  # CPython 3.14's finalizer crashes on it (see below)
        args = [make_value(side, i) for i in picks]
        kwargs = {kw: make_value(side, i) for kw, i in kwpicks.items()}
        labels = [VALUES[i][0] for i in picks] + [
            f"{kw}={VALUES[i][0]}" for kw, i in kwpicks.items()
        ]
        steps.append(
            (name, tuple(labels), outcome(functools.partial(call, side, obj, args, kwargs)))
        )
    if _init_failed(steps):
        # Left uninitialized (on stock, or when no loop could be found):
        # CPython 3.14's C Task finalizer reads such a task's NULL loop and
        # crashes, so these are never freed (main() ends with os._exit()).
        _UNINITIALIZED.append(obj)
    loop = side.loop
    if not loop.is_closed() and not loop.is_running():

        async def spin() -> None:
            for _ in range(3):
                await asyncio.sleep(0)

        steps.append(("run the loop", outcome(lambda: loop.run_until_complete(spin()))))
    steps.append(("callbacks ran", tuple(side.ran)))
    steps.append(("exception handler got", tuple(side.handler_calls)))
    if not loop.is_closed():

        def still_usable() -> Any:
            fut = loop.create_future()
            loop.call_soon(fut.set_result, 7)
            return loop.run_until_complete(fut)

        steps.append(("usable", outcome(still_usable)))
    side.close()
    return steps


# Differences known and kept, each with its reason.  A predicate gets the
# first step that differs, on stock and on casyncio, and the steps before it.
Known = Callable[[tuple, tuple, list[tuple]], bool]


def _scheduling_checked_up_front(stock: tuple, ours: tuple, before: list[tuple]) -> bool:
    # casyncio checks context= and when at the call, in every mode
    # (tests/test_bad_input.py); stock asyncio never does, and fails later,
    # or leaves a TimerHandle its heap cannot compare.  (The callback both
    # check in debug mode only.)
    scheduling = {"call_soon", "call_soon_threadsafe", "call_later", "call_at"}
    return stock[0] in scheduling and ours[-1] in ("raise TypeError", "raise RuntimeError")


def _task_context_checked_up_front(stock: tuple, ours: tuple, before: list[tuple]) -> bool:
    # The same for a task's context= (create_task(), Task()): stock keeps
    # any object, and its task fails every step; casyncio raises TypeError.
    tasks = {"create_task", "__init__(coro...)"}
    has_context = any(label.startswith("context=") for label in stock[1])
    return stock[0] in tasks and has_context and ours[-1] == "raise TypeError"


def _stock_timer_heap_broken(stock: tuple, ours: tuple, before: list[tuple]) -> bool:
    # call_at() with a deadline that is not a number: stock's heap holds a
    # TimerHandle it cannot compare (it raised TypeError at the call, or
    # fails at the next timer), so running stock's loop raises TypeError;
    # casyncio refused the deadline and runs on.
    return stock == ("run the loop", "raise TypeError") and ours == ("run the loop", "ok None")


def _not_a_context_run(stock: tuple, ours: tuple, before: list[tuple]) -> bool:
    # add_done_callback(context=x) and create_task(context=x) keep any x on
    # both; running the callback, stock calls x.run() (AttributeError),
    # casyncio enters it (TypeError).  Either is reported to the handler; a
    # task whose step failed so is destroyed pending, which casyncio reports
    # (None: no exception) within the case, stock later.
    if stock[0] != "exception handler got" or "AttributeError" not in stock[1]:
        return False
    return [c for c in stock[1] if c not in ("AttributeError", None)] == [
        c for c in ours[1] if c not in ("TypeError", None)
    ]


def _cancelled_handle_run(stock: tuple, ours: tuple, before: list[tuple]) -> bool:
    # handle._run() after cancel(): stock calls the None it left in place of
    # the callback and reports a TypeError; casyncio does nothing.  Only the
    # loop calls _run(), and never on a cancelled handle.
    return stock[0] == "exception handler got" and stock[1] == ("TypeError",) and ours[1] == ()


def _callback_whose_repr_raises(stock: tuple, ours: tuple, before: list[tuple]) -> bool:
    # A callback that is not callable and whose repr() raises (a done
    # callback, or one scheduled outside debug mode): stock's report of the
    # TypeError calls repr() and lets its RuntimeError out of the loop (or
    # out of cancel() in debug mode); casyncio reports the TypeError
    # (unraisable if it cannot describe the callback) and runs on.
    adders = {"add_done_callback", "call_soon", "call_soon_threadsafe", "call_later", "call_at"}
    added = any(step[0] in adders and "badrepr" in step[1] for step in before)
    return added and stock[-1] == "raise RuntimeError"


def _stock_uninitialized_by_failed_init(stock: tuple, ours: tuple, before: list[tuple]) -> bool:
    # A second __init__() that fails (3.14: no loop given, none running)
    # leaves stock's C Future uninitialized (it clears itself first), so
    # what follows raises RuntimeError; casyncio's keeps its state.
    failed_init = any(
        step[0].startswith("__init__") and step[-1].startswith("raise") for step in before
    )
    return failed_init and stock[-1] == "raise RuntimeError"


KNOWN: list[Known] = [
    _scheduling_checked_up_front,
    _task_context_checked_up_front,
    _stock_timer_heap_broken,
    _not_a_context_run,
    _cancelled_handle_run,
    _callback_whose_repr_raises,
    _stock_uninitialized_by_failed_init,
]


def first_difference(stock: list[tuple], ours: list[tuple]) -> int | None:
    """The index of the first step that differs (or of the first step one
    side has and the other has not)."""
    for i, (a, b) in enumerate(zip(stock, ours)):
        if a != b:
            return i
    return None if len(stock) == len(ours) else min(len(stock), len(ours))


def main(argv: list[str]) -> NoReturn:
    first, count = int(argv[0]), int(argv[1])
    debug = "debug" in argv[2:]
    warnings.simplefilter("ignore")  # never-awaited coroutines, by design
    logging.disable(logging.CRITICAL)
    for seed in range(first, first + count):
        stock = run_case("asyncio", seed, debug)
        ours = run_case("casyncio", seed, debug)
        usable = [s for s in ours if s[0] == "usable"]
        if usable and usable[0][1] != "ok 7":
            print(json.dumps({"seed": seed, "unusable": usable[0][1], "steps": ours}))
        i = first_difference(stock, ours)
        if i is None:
            continue
        a = stock[i] if i < len(stock) else ("(no step)",)
        b = ours[i] if i < len(ours) else ("(no step)",)
        if not any(known(a, b, stock[:i]) for known in KNOWN):
            print(json.dumps({"seed": seed, "stock": stock, "casyncio": ours, "first": i}))
        gc.collect()
    sys.stdout.flush()
    os._exit(0)  # no collection at exit: it would free _UNINITIALIZED


if __name__ == "__main__":
    main(sys.argv[1:])
