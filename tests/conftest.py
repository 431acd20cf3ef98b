"""Shared fixtures: loops of both kinds, and the checks every loop test gets.

Behavioural tests take the ``loop`` fixture and run once on casyncio and once
on stock asyncio, so a difference between the two shows up as one failing
parameter.  Every such loop records calls to its exception handler; a test
that did not declare it expects them (``@pytest.mark.loop_errors``) fails if
any happened.  casyncio's live-object counters must return to where they
started, or the test leaked a Handle or a loop.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import casyncio
from casyncio import _casyncio

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SEEDS = SHARED / "seed_examples"

# A shell starts a background job with SIGINT ignored, and Python then leaves
# it ignored: Ctrl-C tests (ours, and test_runners' in the conformance run)
# would wait for a KeyboardInterrupt that never comes.  Restore Python's
# usual handler; the interpreters the tests start then get SIGINT's default
# disposition back, and install theirs.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

LOOP_KINDS = ["casyncio", "asyncio"]
# fd tests also run casyncio on each poller backend explicitly.
FD_LOOP_KINDS = ["casyncio-epoll", "casyncio-poll", "asyncio"]


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "loop_errors: the test expects its loop's exception handler to be called"
    )


# Reference-leak tests count with sys.gettotalrefcount(), which only a debug
# CPython (--with-pydebug) has: elsewhere they are deselected, not run and
# skipped, and the report's header says so.  CI's last stage runs them.
COUNTS_REFERENCES = hasattr(sys, "gettotalrefcount")


def pytest_report_header(config):
    if not COUNTS_REFERENCES:
        return "refleak tests deselected: they need a debug CPython (sys.gettotalrefcount)"
    return None


def pytest_collection_modifyitems(config, items):
    if COUNTS_REFERENCES:
        return
    keep = [item for item in items if item.get_closest_marker("refleak") is None]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep


def make_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "casyncio":
        return casyncio.new_event_loop()
    if kind.startswith("casyncio-"):
        return casyncio.new_event_loop(poller=kind.partition("-")[2])
    if kind == "asyncio":
        return asyncio.SelectorEventLoop()
    raise ValueError(kind)


@pytest.fixture(params=LOOP_KINDS)
def loop_kind(request) -> str:
    return request.param


def _forget_captured_records(item) -> None:
    """Log records captured for the report keep their exc_info, whose
    traceback keeps the test's frames (and its loop) alive, and their args
    (asyncio's debug-mode warnings pass the transport, which keeps its loop):
    once the test ran, drop both, the message formatted first (the report's
    log text is kept separately)."""
    try:
        from _pytest.logging import caplog_records_key
    except ImportError:  # pragma: no cover - pytest internals moved
        return
    for records in item.stash.get(caplog_records_key, {}).values():
        for record in records:
            record.exc_info = None
            if record.args:
                record.msg, record.args = record.getMessage(), None


def _forget_last_failure() -> None:
    """pytest keeps the last failure's traceback in sys.last_* (for post
    mortems), and with it the frames and the loop of a failed test: drop it,
    or one failure would show up as a leak in this test and the next."""
    for name in ("last_type", "last_value", "last_traceback", "last_exc"):
        if hasattr(sys, name):
            setattr(sys, name, None)


@pytest.fixture
def _live_counts_check(request):
    """casyncio's live-object counters (Handles, loops, Futures...) must
    return to where they started.  Loop fixtures request this one first, so
    its teardown runs after theirs, once pytest's own cache has let go of
    the loop."""
    _forget_last_failure()
    gc.collect()
    # What survived the collection is not this test's business: freezing it
    # keeps the collections below (twice per test) from walking the whole
    # session's heap again, which otherwise dominates the suite's run time.
    gc.freeze()
    before = _casyncio._live_counts()
    yield
    _forget_last_failure()
    # pytest keeps every fixture value in item.funcargs until the whole
    # teardown is over; the loop (under whatever fixture name holds it) must
    # be allowed to die before we count.
    funcargs = getattr(request.node, "funcargs", None)
    if funcargs:
        funcargs.clear()
    _forget_captured_records(request.node)
    gc.collect()
    after = _casyncio._live_counts()
    # Every live-object counter (handles, loops, futures, ...); the free
    # lists' lengths are caches, not live objects.
    for name, count in before.items():
        if not name.endswith("_freelist"):
            assert after[name] == count, f"{name} leaked: {before} -> {after}"


def _checked_loop(kind: str, request):
    """The body of the loop fixtures: a fresh loop of `kind`, closed
    afterwards, with its exception handler calls recorded in
    ``loop.handler_calls``."""
    lp = make_loop(kind)
    calls: list[dict] = []
    lp.set_exception_handler(lambda _loop, context: calls.append(context))
    lp.handler_calls = calls  # type: ignore[attr-defined]
    yield lp
    if not lp.is_closed():
        lp.close()
    if not request.node.get_closest_marker("loop_errors"):
        assert calls == [], f"unexpected calls to the loop's exception handler: {calls}"


@pytest.fixture
def loop(_live_counts_check, loop_kind, request):
    """A fresh loop of each kind, closed afterwards, with its exception
    handler calls recorded in ``loop.handler_calls``."""
    yield from _checked_loop(loop_kind, request)


@pytest.fixture(params=FD_LOOP_KINDS)
def fd_loop_kind(request) -> str:
    return request.param


@pytest.fixture
def fd_loop(_live_counts_check, fd_loop_kind, request):
    """As ``loop``, with casyncio once per poller backend (epoll, poll)."""
    yield from _checked_loop(fd_loop_kind, request)


def future_and_task_classes(lp: asyncio.AbstractEventLoop) -> tuple[type, type]:
    """The Future and Task classes the loop's own futures and tasks have."""
    if isinstance(lp, casyncio.Loop):
        return casyncio.Future, casyncio.Task
    return asyncio.Future, asyncio.Task


def run_briefly(lp: asyncio.AbstractEventLoop, iterations: int = 1) -> None:
    """Run `iterations` iterations of the loop: stop() is scheduled from a
    callback chain, so each link runs in the next iteration."""

    def link(n: int) -> None:
        if n <= 1:
            lp.stop()
        else:
            lp.call_soon(link, n - 1)

    lp.call_soon(link, iterations)
    lp.run_forever()


def assert_loop_usable(lp: asyncio.AbstractEventLoop) -> None:
    """Prove the loop still runs callbacks, timers and coroutines."""
    ran: list[str] = []
    lp.call_soon(ran.append, "soon")
    lp.call_later(0, ran.append, "later")
    lp.call_at(lp.time() - 1, ran.append, "at")

    async def coro() -> str:
        await asyncio.sleep(0)
        return "coro"

    assert lp.run_until_complete(coro()) == "coro"
    assert sorted(ran) == ["at", "later", "soon"]
    assert not lp.is_running()


@pytest.fixture
def seeds_dir() -> Path:
    if not SEEDS.is_dir():
        pytest.skip(f"seed examples not found at {SEEDS} (../shared is absent)")
    return SEEDS


def _without_deprecation_warning(fn: Callable[..., Any], *args: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return fn(*args)


@pytest.fixture(autouse=True)
def _no_event_loop_policy_leak():
    """A test that installs casyncio's policy must not leave it behind.  (The
    policy functions are deprecated from 3.14: this check is no use of them
    worth a warning in every test's report.)"""
    policy = _without_deprecation_warning(asyncio.get_event_loop_policy)
    yield
    if _without_deprecation_warning(asyncio.get_event_loop_policy) is not policy:
        _without_deprecation_warning(asyncio.set_event_loop_policy, None)


def poller_name() -> str:
    return os.environ.get("CASYNCIO_POLLER") or "epoll"


def run_python(
    code: str, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> str:
    """Run `python -c code args` in a fresh interpreter and return what it
    printed; the test fails with the interpreter's stderr if it exits with an
    error.  It runs in an empty directory: `python -c` puts its working
    directory on sys.path, and the checkout's casyncio/ (which holds no built
    extension when casyncio is installed rather than editable) would shadow
    the installed package."""
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.run(
            [sys.executable, "-c", code, *args],
            env=env,
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
        )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
