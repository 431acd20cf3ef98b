"""The only place where tests are excused, each with its reason.

Keys are ``<suite>.<Class>.<test_method>`` (shell-style wildcards allowed),
as printed by ``python -m tests.conformance --list``.  A value is the reason,
or ``Only(mode, reason)`` for an entry that applies in one mode
(``"normal"`` or ``"debug"``, i.e. PYTHONASYNCIODEBUG=1) only, or
``Backported(reason)`` for a test that CPython added in a micro release, so
that an earlier micro release of the same Python has nothing to match.

EXCLUDED: tests that check a private detail of stock asyncio's own
implementation (``loop._selector``, ``loop._ready``, patching
``asyncio.base_events`` internals...), which casyncio has no reason to copy.
They are not run.  (Tests needing a loop feature casyncio has not
implemented yet are excluded by the rule in harness.NeedsRule, not here.)

EXPECTED_FAILURES: known casyncio bugs, to be fixed.  They run as
``unittest.expectedFailure``; one that passes fails the run, so that the
entry gets removed.  An entry that matches no test also fails the run
(but for a ``Backported`` one).

RACY: tests with a race of their own, in their setup rather than in the
loop, that fails them now and then on any loop, stock asyncio's too.  They
run as usual; one that fails is run once more, alone, and counts by that
second run.  The report lists every such rerun with its first failure.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Only:
    modes: tuple[str, ...] | str
    reason: str

    def __post_init__(self) -> None:
        if isinstance(self.modes, str):
            object.__setattr__(self, "modes", (self.modes,))


@dataclass(frozen=True)
class Backported:
    reason: str


EXCLUDED: dict[str, str | Only | Backported] = {
    "test_events.Casyncio*EventLoopTests.test_create_server_multiple_hosts_ipv*": (
        "mock-patches asyncio.base_events.socket, the socket module of stock "
        "BaseEventLoop.create_server, plus loop._start_serving/_stop_serving, so that "
        "binding 1.2.3.4:80 and ::2:80 'succeeds'.  casyncio's create_server is its "
        "own code: the patch does not reach it and the real bind fails (EADDRNOTAVAIL)."
    ),
    "testasync.AsyncMockTest.test_future_isfuture": (
        "makes AsyncMock(fut) of a loop.create_future() and expects an asyncio.Future "
        "instance.  unittest.mock takes the spec's class as type(fut), casyncio.Future, "
        "which is not a subclass of asyncio.Future (README, known gaps: isinstance() of "
        "the future itself holds through its __class__, which mock does not ask)."
    ),
    "test_ssl.TestSSL.test_remote_shutdown_receives_trailing_data_on_slow_socket": Backported(
        "swaps the socket inside stock's _SelectorSocketTransport (its _sock) for a wrapper "
        "whose send() takes half, once the transport's _read_ready_cb is None, to reach a "
        "branch of stock's own write path (gh-115514).  casyncio's transport has neither "
        "attribute and makes the send() call in C.  The same shutdown with trailing data "
        "runs in test_remote_shutdown_receives_trailing_data, which passes."
    ),
}

if sys.version_info < (3, 14):  # child watchers were removed in 3.14
    EXCLUDED.update(
        {
            "test_subprocess.GenericWatcherTests.test_create_subprocess_fails_with_inactive_watcher": (
                "sets a mock child watcher that says it is inactive and expects "
                "create_subprocess_exec() to refuse to start.  casyncio does not use "
                "asyncio's child watchers (deprecated in 3.12, gone in 3.14): it waits for "
                "its children through a pidfd on the loop, so a watcher set by the program "
                "is not consulted.  The subprocess tests of the same module pass."
            ),
        }
    )

if sys.version_info >= (3, 13):
    EXCLUDED.update(
        {
            "test_runners.RunTests.test_loop_factory_default_event_loop": (
                "checks that asyncio.EventLoop, stock asyncio's own alias, is its "
                "SelectorEventLoop: a statement about stock asyncio, with a stock loop."
            ),
            "test_async_case.TestAsyncCase.test_loop_factory": (
                "runs a test case whose loop_factory is asyncio.EventLoop, stock asyncio's "
                "own loop, to check that the policy stays unset: a stock loop by design.  "
                "One of casyncio's (casyncio.Loop) is run by tests/test_policy_runner.py."
            ),
        }
    )
if (3, 13, 1) <= sys.version_info < (3, 15):  # gh-126083; 3.15 refuses a second __init__
    EXCLUDED.update(
        {
            f"{suite}.*.test_proper_refcounts": (
                "builds asyncio.Task by name in every class, so it checks stock "
                "asyncio's Task whichever Task and Future the class is for.  casyncio.Task is checked the same way in "
                "tests/test_bad_input.py."
            )
            for suite in ("test_tasks", "test_tasks_asyncio_task")
        }
    )

if sys.version_info >= (3, 14):
    EXCLUDED.update(
        {
            "test_events.TestPyGetEventLoop.*": (
                "swaps asyncio's running-loop functions for their Python fallbacks "
                "(events._py__set_running_loop) and asyncio.Task for _PyTask, which "
                "stock's loop builds by name.  A casyncio loop makes casyncio.Task, "
                "which enters asyncio's C current-task bookkeeping; from 3.14 that "
                "checks the C running loop, which the Python fallback never sets, so "
                "every step is refused (stock's C Task would be refused the same way). "
                "TestCGetEventLoop runs the same tests on the C functions and passes."
            ),
            "test_events.Casyncio*EventLoopTests.test_call_soon_threadsafe_handle_*": (
                "asserts that call_soon_threadsafe() returns stock's private "
                "events._ThreadSafeHandle (3.14, gh-128340), a Handle with a lock held "
                "while it runs so that cancel() cannot slip between the loop's "
                "cancelled-check and the call.  casyncio makes that check and the call "
                "in C without letting go of the GIL, so the race cannot happen; what "
                "differs is that cancel()/cancelled() from another thread do not wait "
                "for a callback already running (README, known gaps).  The assertion "
                "fails in a helper thread, which then never stops the loop."
            ),
            "test_subprocess.Subprocess*WatcherTests.test_watcher_implementation": (
                "asserts the class of stock's private loop._watcher (3.14's internal "
                "pidfd or thread child watcher).  casyncio's loop has no watcher object: "
                "it watches each child's pidfd itself (a thread where pidfd_open() is "
                "missing); the subprocess tests of both classes pass."
            ),
            "test_subprocess.SubprocessThreadedWatcherTests."
            "test_pid_not_reaped_before_exit_published": Backported(
                "takes the thread of stock's private loop._watcher._threads to check that "
                "its threaded watcher waits without reaping (gh-127049).  casyncio has no "
                "watcher object; its own fallback thread (used where pidfd_open() is "
                "missing) waits the same way: tests/test_subprocess.py checks it."
            ),
            "test_free_threading.Test*PyFreeThreading.test_all_tasks_from_other_thread_"
            "includes_eager_tasks": Backported(
                "swaps asyncio.all_tasks for its Python fallback (_py_all_tasks), which "
                "lists only tasks in asyncio's Python registry; a casyncio task enters "
                "3.14's C registry (as stock's own C Task does), so the fallback does not "
                "list it.  The same test with asyncio's C all_tasks (Test*CFreeThreading) "
                "passes on casyncio."
            ),
            "test_graph.CasyncioCallStackTests.test_stack_future": (
                "awaits a stock asyncio.Future() from two tasks and expects both in its "
                "call graph.  Stock's Future records only asyncio's own tasks as its "
                "awaiters (asyncio's future_add_to_awaited_by() ignores any other), so "
                "casyncio's tasks cannot appear there.  A casyncio future "
                "(loop.create_future()) records them: tests/test_call_graph.py."
            ),
        }
    )

EXPECTED_FAILURES: dict[str, str | Only] = {}

RACY: dict[str, str] = {
    "test_events.Casyncio*EventLoopTests.test_create_connection_local_addr_skip_different_family": (
        "connects to 'localhost' at a port that socket_helper.find_unused_port() found "
        "free, from a local address its fake getaddrinfo() gives with port 0, so the "
        "kernel picks the local port.  Now and then (1 in about 20000 here) it picks "
        "that same just-freed port, and Linux lets a socket connect to itself (TCP "
        "simultaneous open): the OSError the test expects never comes.  A listener "
        "another test opens on the port in between does the same."
    ),
}
