"""casyncio.Loop: the C loop core plus the cold parts asyncio does in Python.

The hot paths (scheduling, the iteration, fd watching) are methods of the C
base type ``_casyncio.LoopBase``.  This module adds what runs once per
program or per rare event: run_forever's set-up, run_until_complete, close,
the exception handler API, executors, async generator hooks, signals and
debug-mode helpers.  Behaviour follows asyncio's BaseEventLoop and
_UnixSelectorEventLoop; the code is our own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import errno
import logging
import signal
import socket
import sys
import threading
import traceback
import warnings
import weakref
from asyncio import coroutines, events, futures, tasks
from collections.abc import Callable
from typing import Any

from . import _casyncio
from ._net import NetworkMixin
from ._pipes import PipesMixin
from ._subprocess import SubprocessMixin

logger = logging.getLogger("asyncio")

# asyncio.constants.DEBUG_STACK_DEPTH
_DEBUG_STACK_DEPTH = 10

# The callback check asyncio's own loop makes: 3.14 deprecates the public
# iscoroutinefunction (a warning per call) and keeps this private one.
_iscoroutinefunction = getattr(coroutines, "_iscoroutinefunction", coroutines.iscoroutinefunction)


def _run_until_complete_cb(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        exc = fut.exception()
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            # The loop already stopped by itself: it let the exception out.
            return
    futures._get_loop(fut).stop()


def _sighandler_noop(signum, frame):
    """Python-level handler that only makes CPython write the wakeup fd."""


def _format_handle(handle) -> str:
    task = getattr(getattr(handle, "_callback", None), "__self__", None)
    if isinstance(task, (asyncio.Task, _casyncio.Task)):
        # A task step: the task says more than its bound __step method.
        return repr(task)
    return str(handle)


def _failed_in(context: dict[str, Any]) -> contextvars.Context | None:
    """The contextvars context of what failed: the first of the task, future
    or handle that ``context`` names, if it has one.  Since 3.12 (gh-96704)
    asyncio runs a custom exception handler in it."""
    for key in ("task", "future", "handle"):
        failed = context.get(key)
        if failed is not None:
            get_context = getattr(failed, "get_context", None)
            ctx = get_context() if get_context is not None else None
            return ctx if hasattr(ctx, "run") else None
    return None


class Loop(
    _casyncio.LoopBase, NetworkMixin, PipesMixin, SubprocessMixin, asyncio.AbstractEventLoop
):
    """An asyncio event loop implemented in C.

    ``Loop(poller=None)``: ``poller`` picks the I/O backend, ``"epoll"`` (the
    default) or ``"poll"``; the environment variable ``CASYNCIO_POLLER``
    sets the default.
    """

    def __init__(self, *, poller: str | None = None) -> None:
        super().__init__(poller=poller)
        self._default_executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._executor_shutdown_called = False
        self._exception_handler: Callable[..., Any] | None = None
        self._asyncgens: weakref.WeakSet = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._coroutine_origin_tracking_enabled = False
        self._coroutine_origin_tracking_saved_depth: int | None = None
        self._signal_handlers: dict[int, _casyncio.Handle] = {}
        self._ssock: socket.socket | None = None
        self._csock: socket.socket | None = None
        self.set_debug(coroutines._is_debug_mode())

    # ---- running -------------------------------------------------------

    def _check_running(self) -> None:
        if self.is_running():
            raise RuntimeError("This event loop is already running")
        if events._get_running_loop() is not None:
            raise RuntimeError("Cannot run the event loop while another loop is running")

    def _check_closed(self) -> None:
        if self.is_closed():
            raise RuntimeError("Event loop is closed")

    def run_forever(self) -> None:
        """Run until stop() is called."""
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self._debug)
        old_hooks = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(
            firstiter=self._asyncgen_firstiter_hook,
            finalizer=self._asyncgen_finalizer_hook,
        )
        try:
            events._set_running_loop(self)
            self._run()
        finally:
            self._stopping = False
            events._set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*old_hooks)

    def run_until_complete(self, future):
        """Run until the future (or coroutine, wrapped in a Task) is done and
        return its result, or raise its exception."""
        self._check_closed()
        self._check_running()
        wrapped = not futures.isfuture(future)
        future = tasks.ensure_future(future, loop=self)
        if wrapped:
            # Our own task: if it does not finish we raise, so the "destroyed
            # but pending" warning would only repeat that.
            future._log_destroy_pending = False
        future.add_done_callback(_run_until_complete_cb)
        try:
            self.run_forever()
        except BaseException:
            if wrapped and future.done() and not future.cancelled():
                # The coroutine raised a BaseException that stopped the loop;
                # the caller has no handle on our task, so mark it retrieved.
                future.exception()
            raise
        finally:
            future.remove_done_callback(_run_until_complete_cb)
        if not future.done():
            raise RuntimeError("Event loop stopped before Future completed.")
        return future.result()

    def close(self) -> None:
        """Close the loop: drop pending callbacks, release the poller, shut
        down the default executor without waiting.  Not while running."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        if self._debug:
            logger.debug("Close %r", self)
        for sig in list(self._signal_handlers):
            self.remove_signal_handler(sig)
        self._close()
        for sock in (self._ssock, self._csock):
            if sock is not None:
                sock.close()
        self._ssock = self._csock = None
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)

    # ---- debug -------------------------------------------------------------

    def set_debug(self, enabled: bool) -> None:
        self._debug = enabled
        if self.is_running():
            self.call_soon_threadsafe(self._set_coroutine_origin_tracking, enabled)

    def _set_coroutine_origin_tracking(self, enabled: bool) -> None:
        if bool(enabled) == bool(self._coroutine_origin_tracking_enabled):
            return
        if enabled:
            self._coroutine_origin_tracking_saved_depth = sys.get_coroutine_origin_tracking_depth()
            sys.set_coroutine_origin_tracking_depth(_DEBUG_STACK_DEPTH)
        else:
            sys.set_coroutine_origin_tracking_depth(self._coroutine_origin_tracking_saved_depth)
        self._coroutine_origin_tracking_enabled = enabled

    def _log_slow_callback(self, ran, seconds: float, io: str | None = None) -> None:
        # `ran`: a handle; or, with `io` ("read" or "write"), a transport or
        # sock_*() operation whose I/O the C loop ran (stock asyncio runs
        # that as a _read_ready/_write_ready handle).
        what = _format_handle(ran) if io is None else f"<{io} ready: {ran!r}>"
        logger.warning("Executing %s took %.3f seconds", what, seconds)

    def _check_callback(self, callback, method: str) -> None:
        if coroutines.iscoroutine(callback) or _iscoroutinefunction(callback):
            raise TypeError(f"coroutines cannot be used with {method}()")
        if not callable(callback):
            raise TypeError(f"a callable object was expected by {method}(), got {callback!r}")

    # ---- exception handling --------------------------------------------------

    def get_exception_handler(self):
        return self._exception_handler

    def set_exception_handler(self, handler) -> None:
        if handler is not None and not callable(handler):
            raise TypeError(f"A callable object or None is expected, got {handler!r}")
        self._exception_handler = handler

    def default_exception_handler(self, context: dict) -> None:
        """Log the context: its message, the exception's traceback, and the
        other keys, with where the object involved was created in debug mode."""
        message = context.get("message") or "Unhandled exception in event loop"
        exception = context.get("exception")
        exc_info = (type(exception), exception, exception.__traceback__) if exception else False
        current = self._current_handle
        if (
            "source_traceback" not in context
            and current is not None
            and getattr(current, "_source_traceback", None)
        ):
            context["handle_traceback"] = current._source_traceback
        lines = [message]
        for key in sorted(context):
            if key in ("message", "exception"):
                continue
            value = context[key]
            if key in ("source_traceback", "handle_traceback"):
                what = "Object" if key == "source_traceback" else "Handle"
                tb = "".join(traceback.format_list(value)).rstrip()
                value = f"{what} created at (most recent call last):\n{tb}"
            else:
                value = repr(value)
            lines.append(f"{key}: {value}")
        logger.error("\n".join(lines), exc_info=exc_info)

    def call_exception_handler(self, context: dict) -> None:
        """Pass the context to the handler set with set_exception_handler(),
        or to default_exception_handler(); errors in them are logged, never
        raised (except SystemExit and KeyboardInterrupt)."""
        if self._exception_handler is None:
            try:
                self.default_exception_handler(context)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.exception("Exception in default exception handler")
            return
        try:
            where = _failed_in(context) if sys.version_info >= (3, 12) else None
            if where is None:
                self._exception_handler(self, context)
            else:
                where.run(self._exception_handler, self, context)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            try:
                self.default_exception_handler(
                    {
                        "message": "Unhandled error in exception handler",
                        "exception": exc,
                        "context": context,
                    }
                )
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.exception(
                    "Exception in default exception handler while handling an "
                    "unexpected error in custom exception handler"
                )

    # ---- executors -----------------------------------------------------------

    def run_in_executor(self, executor, func, *args):
        """Run func(*args) in an executor (the default thread pool for None);
        return an asyncio future for its result."""
        self._check_closed()
        if self._debug:
            self._check_callback(func, "run_in_executor")
        if executor is None:
            if self._executor_shutdown_called:
                raise RuntimeError("Executor shutdown has been called")
            executor = self._default_executor
            if executor is None:
                executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="asyncio")
                self._default_executor = executor
        return futures.wrap_future(executor.submit(func, *args), loop=self)

    def set_default_executor(self, executor) -> None:
        if not isinstance(executor, concurrent.futures.ThreadPoolExecutor):
            raise TypeError("executor must be ThreadPoolExecutor instance")
        self._default_executor = executor

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        """Shut the default executor down, waiting for its threads in a
        helper thread so that the loop keeps running meanwhile; after
        ``timeout`` seconds (3.12's parameter, which asyncio.Runner passes)
        warn and stop waiting."""
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is None:
            return
        done = self.create_future()

        def shutdown() -> None:
            try:
                executor.shutdown(wait=True)
            except Exception as exc:
                if not self.is_closed():
                    self.call_soon_threadsafe(_set_exception_unless_done, done, exc)
            else:
                if not self.is_closed():
                    self.call_soon_threadsafe(_set_result_unless_done, done, None)

        thread = threading.Thread(target=shutdown)
        thread.start()
        try:
            async with asyncio.timeout(timeout):
                await done
        except TimeoutError:
            warnings.warn(
                f"The executor did not finishing joining its threads within {timeout} seconds.",
                RuntimeWarning,
                stacklevel=2,
            )
            executor.shutdown(wait=False)
        else:
            thread.join()

    # ---- async generators ----------------------------------------------------

    def _asyncgen_firstiter_hook(self, agen) -> None:
        if self._asyncgens_shutdown_called:
            warnings.warn(
                f"asynchronous generator {agen!r} was scheduled after "
                f"loop.shutdown_asyncgens() call",
                ResourceWarning,
                source=self,
            )
        self._asyncgens.add(agen)

    def _asyncgen_finalizer_hook(self, agen) -> None:
        self._asyncgens.discard(agen)
        if not self.is_closed():
            self.call_soon_threadsafe(self.create_task, agen.aclose())

    async def shutdown_asyncgens(self) -> None:
        """Close every async generator still alive on this loop."""
        self._asyncgens_shutdown_called = True
        if not len(self._asyncgens):
            return
        agens = list(self._asyncgens)
        self._asyncgens.clear()
        results = await tasks.gather(*[ag.aclose() for ag in agens], return_exceptions=True)
        for result, agen in zip(results, agens):
            if isinstance(result, Exception):
                self.call_exception_handler(
                    {
                        "message": f"an error occurred during closing of "
                        f"asynchronous generator {agen!r}",
                        "exception": result,
                        "asyncgen": agen,
                    }
                )

    # ---- signals -------------------------------------------------------------

    def _check_signal(self, sig) -> None:
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig}")

    def _ensure_self_pipe(self) -> None:
        if self._ssock is None:
            self._ssock, self._csock = socket.socketpair()
            self._ssock.setblocking(False)
            self._csock.setblocking(False)
            self.add_reader(self._ssock.fileno(), self._read_signals)

    def _read_signals(self) -> None:
        # CPython's C-level signal handler wrote one byte per signal number.
        while True:
            try:
                data = self._ssock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            if not data:
                return
            for signum in data:
                handle = self._signal_handlers.get(signum)
                if handle is None:
                    continue
                if handle.cancelled():
                    self.remove_signal_handler(signum)
                else:
                    self._add_handle(handle)

    def add_signal_handler(self, sig, callback, *args) -> None:
        """Run callback(*args) in the loop when signal sig arrives.
        Main thread only (RuntimeError otherwise)."""
        if coroutines.iscoroutine(callback) or _iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        self._ensure_self_pipe()
        try:
            # Fails outside the main thread, which is the check we want.
            signal.set_wakeup_fd(self._csock.fileno())
        except (ValueError, OSError) as exc:
            raise RuntimeError(str(exc))
        handle = _casyncio.Handle(callback, args, self, None)
        self._signal_handlers[sig] = handle
        try:
            signal.signal(sig, _sighandler_noop)
            # SA_RESTART: fewer EINTRs in the rest of the program.
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._signal_handlers[sig]
            if not self._signal_handlers:
                try:
                    signal.set_wakeup_fd(-1)
                except (ValueError, OSError) as nexc:
                    logger.info("set_wakeup_fd(-1) failed: %s", nexc)
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig} cannot be caught")
            raise

    def remove_signal_handler(self, sig) -> bool:
        """Remove the handler for sig; True if there was one."""
        self._check_signal(sig)
        handle = self._signal_handlers.pop(sig, None)
        if handle is None:
            return False
        handle.cancel()
        handler = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, handler)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig} cannot be caught")
            raise
        if not self._signal_handlers:
            try:
                signal.set_wakeup_fd(-1)
            except (ValueError, OSError) as exc:
                logger.info("set_wakeup_fd(-1) failed: %s", exc)
        return True


def _set_result_unless_done(fut, result) -> None:
    if not fut.done():
        fut.set_result(result)


def _set_exception_unless_done(fut, exc) -> None:
    if not fut.done():
        fut.set_exception(exc)
