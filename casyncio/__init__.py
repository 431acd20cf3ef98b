"""casyncio: asyncio's event loop, Handle, TimerHandle, Future and Task in C.

Switch an unchanged asyncio program over with one of::

    casyncio.run(main())                        # like asyncio.run
    asyncio.run(main(), loop_factory=casyncio.new_event_loop)   # Python 3.12+
    asyncio.Runner(loop_factory=casyncio.new_event_loop)
    casyncio.install()                          # sets the event loop policy
    python -m casyncio script.py [args...]      # from the command line
"""

from __future__ import annotations

import os as _os

from . import _tasks  # noqa: F401  (lets asyncio.all_tasks() see our tasks)
from ._casyncio import Future, Handle, Task, TimerHandle
from ._loop import Loop
from ._runner import HAS_POLICIES as _HAS_POLICIES
from ._runner import install, new_event_loop, run

if _HAS_POLICIES:
    # Not on Python 3.16, which removes asyncio's policy system.
    from ._runner import EventLoopPolicy

__version__ = "0.1.0"

if _os.environ.get("CASYNCIO_STATS"):
    # Opt-in proof that a program ran on casyncio: at exit, stderr gets the
    # C loop's totals (loops created, iterations, callbacks run).
    import atexit as _atexit
    import sys as _sys

    from ._casyncio import _stats

    def _print_stats() -> None:
        s = _stats()
        print(
            f"casyncio: loops_created={s['loops_created']} "
            f"iterations={s['iterations']} callbacks={s['callbacks']}",
            file=_sys.stderr,
        )

    _atexit.register(_print_stats)

__all__ = [
    "Future",
    "Handle",
    "Loop",
    "Task",
    "TimerHandle",
    "install",
    "new_event_loop",
    "run",
]
if _HAS_POLICIES:
    __all__ += ["EventLoopPolicy"]
