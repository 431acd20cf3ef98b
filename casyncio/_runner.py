"""Plugging casyncio into asyncio: the loop factory, the policy, run()."""

from __future__ import annotations

import asyncio
import sys
import warnings
from collections.abc import Coroutine
from typing import Any, TypeVar

from ._loop import Loop

_T = TypeVar("_T")


def new_event_loop(*, poller: str | None = None) -> Loop:
    """A new casyncio loop (``poller``: ``"epoll"``, the default, or
    ``"poll"``)."""
    return Loop(poller=poller)


# asyncio's default policy class on POSIX under its private name: Python 3.14
# deprecates the public asyncio.DefaultEventLoopPolicy (a warning on access).
# Python 3.16 removes the policy system: there both are None, casyncio has no
# EventLoopPolicy, and run(), loop_factory= and `python -m casyncio` remain.
_DefaultPolicy = getattr(asyncio.unix_events, "_UnixDefaultEventLoopPolicy", None)
_set_event_loop_policy = getattr(
    asyncio.events, "_set_event_loop_policy", getattr(asyncio.events, "set_event_loop_policy", None)
)
HAS_POLICIES = _DefaultPolicy is not None and _set_event_loop_policy is not None

if HAS_POLICIES:

    class EventLoopPolicy(_DefaultPolicy):  # type: ignore[misc, valid-type]
        """asyncio's default policy, making casyncio loops.

        ``asyncio.set_event_loop_policy(casyncio.EventLoopPolicy())`` (or
        ``casyncio.install()``) makes ``asyncio.run()``, ``asyncio.new_event_loop()``
        and ``asyncio.get_event_loop()`` use casyncio.
        """

        def _loop_factory(self) -> Loop:  # type: ignore[override]
            return new_event_loop()


def install() -> None:
    """Make casyncio asyncio's default loop by setting the event loop policy.

    Python 3.12 and later steer away from policies; there, prefer
    ``casyncio.run()`` or ``loop_factory=casyncio.new_event_loop``. On a
    Python without policies (3.16) this raises RuntimeError.
    """
    if not HAS_POLICIES:
        raise RuntimeError(
            f"Python {sys.version_info.major}.{sys.version_info.minor}'s asyncio has no "
            "event loop policies for casyncio.install() to set: use casyncio.run(), "
            "asyncio.run(..., loop_factory=casyncio.new_event_loop) or "
            "`python -m casyncio`"
        )
    if sys.version_info >= (3, 12):
        warnings.warn(
            "casyncio.install() is deprecated in favor of casyncio.run() "
            "starting with Python 3.12.",
            DeprecationWarning,
            stacklevel=2,
        )
    _set_event_loop_policy(EventLoopPolicy())


def use_for_unchanged_programs() -> None:
    """What ``python -m casyncio`` does before running the program: make
    ``asyncio.run()`` and ``asyncio.new_event_loop()`` make casyncio loops.

    Through the policy where asyncio has one (without Python 3.14's
    deprecation warning: the program did not ask for a policy). Without one,
    asyncio's ``new_event_loop()``, which ``asyncio.run()`` and
    ``asyncio.Runner`` call when given no loop factory, is replaced by
    casyncio's."""
    if HAS_POLICIES:
        _set_event_loop_policy(EventLoopPolicy())
    else:
        asyncio.events.new_event_loop = asyncio.new_event_loop = new_event_loop


def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None, **run_kwargs: Any) -> _T:
    """Run a coroutine on a new casyncio loop, like ``asyncio.run()``:
    cancel what is left, close async generators and the default executor,
    then close the loop."""
    if asyncio.events._get_running_loop() is not None:
        # Checked before a loop exists, as asyncio.run() does: a Runner
        # would make a loop only to fail closing it.
        raise RuntimeError("casyncio.run() cannot be called from a running event loop")
    with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main, **run_kwargs)
