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
from pathlib import Path

import pytest

import casyncio
from casyncio import _casyncio

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SEEDS = SHARED / "seed_examples"

LOOP_KINDS = ["casyncio", "asyncio"]


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "loop_errors: the test expects its loop's exception handler to be called"
    )


def make_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "casyncio":
        return casyncio.new_event_loop()
    if kind == "asyncio":
        return asyncio.SelectorEventLoop()
    raise ValueError(kind)


@pytest.fixture(params=LOOP_KINDS)
def loop_kind(request) -> str:
    return request.param


@pytest.fixture
def loop(loop_kind, request):
    """A fresh loop of each kind, closed afterwards, with its exception
    handler calls recorded in ``loop.handler_calls``."""
    gc.collect()
    before = _casyncio._live_counts()
    lp = make_loop(loop_kind)
    calls: list[dict] = []
    lp.set_exception_handler(lambda _loop, context: calls.append(context))
    lp.handler_calls = calls  # type: ignore[attr-defined]
    yield lp
    if not lp.is_closed():
        lp.close()
    if not request.node.get_closest_marker("loop_errors"):
        assert calls == [], f"unexpected calls to the loop's exception handler: {calls}"
    del lp, calls
    gc.collect()
    after = _casyncio._live_counts()
    assert after["handles"] == before["handles"], f"Handles leaked: {before} -> {after}"
    assert after["loops"] == before["loops"], f"loops leaked: {before} -> {after}"


@pytest.fixture
def seeds_dir() -> Path:
    if not SEEDS.is_dir():
        pytest.skip(f"seed examples not found at {SEEDS} (../shared is absent)")
    return SEEDS


@pytest.fixture(autouse=True)
def _no_event_loop_policy_leak():
    """A test that installs casyncio's policy must not leave it behind."""
    policy = asyncio.get_event_loop_policy()
    yield
    if asyncio.get_event_loop_policy() is not policy:
        asyncio.set_event_loop_policy(None)


def poller_name() -> str:
    return os.environ.get("CASYNCIO_POLLER") or "epoll"
