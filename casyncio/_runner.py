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
_DefaultPolicy = asyncio.unix_events._UnixDefaultEventLoopPolicy


class EventLoopPolicy(_DefaultPolicy):
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
    ``casyncio.run()`` or ``loop_factory=casyncio.new_event_loop``.
    """
    if sys.version_info >= (3, 12):
        warnings.warn(
            "casyncio.install() is deprecated in favor of casyncio.run() "
            "starting with Python 3.12.",
            DeprecationWarning,
            stacklevel=2,
        )
    set_policy(EventLoopPolicy())


def set_policy(policy: asyncio.events.AbstractEventLoopPolicy | None) -> None:
    """asyncio.set_event_loop_policy() without Python 3.14's deprecation
    warning (install() gives its own; the ``-m`` runner needs none)."""
    setter = getattr(asyncio.events, "_set_event_loop_policy", asyncio.set_event_loop_policy)
    setter(policy)


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
