"""Threads and signals: debug mode's thread check, add/remove_signal_handler,
and Ctrl-C interrupting a loop asleep in its poller (in child processes).
On casyncio and on stock asyncio."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import assert_loop_usable, run_briefly

# ---- debug mode: the thread check --------------------------------------------------


def test_non_threadsafe_calls_from_another_thread_raise_in_debug_mode(loop):
    loop.set_debug(True)
    results: dict[str, Exception | None] = {}

    def from_thread(done) -> None:
        calls = {
            "call_soon": lambda: loop.call_soon(print),
            "call_later": lambda: loop.call_later(10, print),
            "call_at": lambda: loop.call_at(loop.time() + 10, print),
        }
        for name, call in calls.items():
            try:
                handle = call()
            except Exception as exc:  # noqa: BLE001 - recorded, checked below
                results[name] = exc
            else:
                results[name] = None
                handle.cancel()
        loop.call_soon_threadsafe(done.set_result, None)

    async def main() -> None:
        done = loop.create_future()
        th = threading.Thread(target=from_thread, args=(done,))
        th.start()
        await done
        th.join()

    loop.run_until_complete(main())
    assert set(results) == {"call_soon", "call_later", "call_at"}
    for name, exc in results.items():
        assert isinstance(exc, RuntimeError), (name, exc)
        assert "Non-thread-safe operation" in str(exc)
    assert_loop_usable(loop)


def test_calls_from_another_thread_allowed_when_loop_not_running(loop):
    loop.set_debug(True)
    ran: list[str] = []
    th = threading.Thread(target=lambda: loop.call_soon(ran.append, "x"))
    th.start()
    th.join()
    run_briefly(loop)
    assert ran == ["x"]


def test_loop_running_in_another_thread(loop):
    started = threading.Event()
    result: list[object] = []

    def run() -> None:
        loop.call_soon(started.set)
        loop.run_forever()
        result.append("stopped")

    th = threading.Thread(target=run)
    th.start()
    assert started.wait(10)
    assert loop.is_running()
    fut = __import__("asyncio").run_coroutine_threadsafe(_double(21), loop)
    assert fut.result(10) == 42
    loop.call_soon_threadsafe(loop.stop)
    th.join(10)
    assert result == ["stopped"]


async def _double(x: int) -> int:
    return x * 2


# ---- signal handlers ---------------------------------------------------------------


@pytest.fixture
def restore_signals() -> Iterator[None]:
    """Put the signal dispositions back.  Tests request it before ``loop``,
    so this runs after the loop's close() has removed its own handlers."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)
    signal.set_wakeup_fd(-1)


def test_signal_handler_runs_in_the_loop(restore_signals, loop):
    got: list[tuple] = []
    fut = loop.create_future()

    def on_signal(*args: object) -> None:
        got.append(args)
        fut.set_result(threading.get_ident())

    loop.add_signal_handler(signal.SIGUSR1, on_signal, "a", 1)
    loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
    assert loop.run_until_complete(fut) == threading.get_ident()
    assert got == [("a", 1)]
    assert loop.remove_signal_handler(signal.SIGUSR1) is True


def test_signal_wakes_a_sleeping_loop(restore_signals, loop):
    fut = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, lambda: fut.set_result("signalled"))
    far = loop.call_later(30, loop.stop)

    def send() -> None:
        time.sleep(0.02)  # let the loop go to sleep; not needed for correctness
        os.kill(os.getpid(), signal.SIGUSR1)

    th = threading.Thread(target=send)
    t0 = time.monotonic()
    th.start()
    assert loop.run_until_complete(fut) == "signalled"
    th.join()
    assert time.monotonic() - t0 < 5
    far.cancel()
    loop.remove_signal_handler(signal.SIGUSR1)


@pytest.mark.parametrize("loop_kind", ["casyncio"], indirect=True)
def test_call_soon_from_a_plain_signal_handler_runs_at_once(restore_signals, loop):
    """A signal.signal() handler (not add_signal_handler()) that calls
    call_soon() while the loop sleeps: casyncio's poll returns after the
    signal, runs the handler and then the callback.  Stock asyncio's selector
    goes back to sleep after the handler (PEP 475), so the callback waits for
    the poll's timeout (README, known gaps; ipykernel's interrupt of a cell
    does this through tornado's add_callback())."""
    fut = loop.create_future()
    previous = signal.signal(signal.SIGUSR1, lambda *_: loop.call_soon(fut.set_result, "woken"))
    far = loop.call_later(30, loop.stop)
    th = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR1))
    t0 = time.monotonic()
    th.start()
    try:
        assert loop.run_until_complete(fut) == "woken"
    finally:
        th.join()
        signal.signal(signal.SIGUSR1, previous)  # it holds the loop
    assert time.monotonic() - t0 < 5
    far.cancel()


@pytest.mark.loop_errors
def test_signal_handler_exception_is_reported(restore_signals, loop):
    fut = loop.create_future()

    def bad() -> None:
        loop.call_soon(fut.set_result, None)
        raise ZeroDivisionError

    loop.add_signal_handler(signal.SIGUSR1, bad)
    loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
    loop.run_until_complete(fut)
    assert len(loop.handler_calls) == 1
    assert isinstance(loop.handler_calls[0]["exception"], ZeroDivisionError)
    assert loop.handler_calls[0]["message"].startswith("Exception in callback")
    assert_loop_usable(loop)


def test_sigint_in_the_poller_raises_keyboard_interrupt_and_loop_stays_usable(
    restore_signals, loop
):
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's default handler here")
    fut = loop.create_future()
    far = loop.call_later(30, fut.cancel)

    def send() -> None:
        time.sleep(0.02)  # let the loop go to sleep; not needed for correctness
        os.kill(os.getpid(), signal.SIGINT)

    th = threading.Thread(target=send)
    loop.call_soon(th.start)
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(fut)
    th.join()
    assert time.monotonic() - t0 < 5
    assert not loop.is_running()
    far.cancel()
    assert_loop_usable(loop)


def test_two_signals_two_handlers(restore_signals, loop):
    got: list[str] = []
    done = loop.create_future()

    def on(name: str) -> None:
        got.append(name)
        if len(got) == 2:
            done.set_result(None)

    loop.add_signal_handler(signal.SIGUSR1, on, "usr1")
    loop.add_signal_handler(signal.SIGUSR2, on, "usr2")
    loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
    loop.call_soon(os.kill, os.getpid(), signal.SIGUSR2)
    loop.run_until_complete(done)
    assert sorted(got) == ["usr1", "usr2"]


def test_replacing_a_signal_handler(restore_signals, loop):
    got: list[str] = []
    fut = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, got.append, "old")
    loop.add_signal_handler(signal.SIGUSR1, lambda: (got.append("new"), fut.set_result(None)))
    loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
    loop.run_until_complete(fut)
    assert got == ["new"]


def test_remove_signal_handler_return_values_and_restores_default(restore_signals, loop):
    assert loop.remove_signal_handler(signal.SIGUSR1) is False
    loop.add_signal_handler(signal.SIGUSR1, print)
    assert signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, signal.SIG_IGN)
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert loop.remove_signal_handler(signal.SIGUSR1) is False
    assert_loop_usable(loop)


def test_removing_the_sigint_handler_restores_keyboard_interrupt(restore_signals, loop):
    loop.add_signal_handler(signal.SIGINT, print)
    assert loop.remove_signal_handler(signal.SIGINT) is True
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_close_removes_signal_handlers(restore_signals, loop):
    loop.add_signal_handler(signal.SIGUSR1, print)
    loop.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    # No wakeup fd is left pointing at the closed loop.
    assert signal.set_wakeup_fd(-1) == -1


@pytest.mark.parametrize("sig", [-1, 0, 1000, signal.NSIG], ids=repr)
def test_bad_signal_numbers_raise_value_error(restore_signals, loop, sig):
    with pytest.raises(ValueError):
        loop.add_signal_handler(sig, print)
    with pytest.raises(ValueError):
        loop.remove_signal_handler(sig)
    assert_loop_usable(loop)


@pytest.mark.parametrize("sig", ["SIGUSR1", 10.0, None], ids=repr)
def test_non_int_signals_raise_type_error(restore_signals, loop, sig):
    with pytest.raises(TypeError):
        loop.add_signal_handler(sig, print)
    with pytest.raises(TypeError):
        loop.remove_signal_handler(sig)
    assert_loop_usable(loop)


def test_uncatchable_signal_raises_runtime_error(restore_signals, loop):
    with pytest.raises(RuntimeError):
        loop.add_signal_handler(signal.SIGKILL, print)
    # The failed attempt left no wakeup fd behind.
    assert signal.set_wakeup_fd(-1) == -1
    assert_loop_usable(loop)


async def _coro_handler() -> None:
    pass


def test_coroutine_signal_callback_raises_type_error(restore_signals, loop):
    with pytest.raises(TypeError, match="coroutines cannot be used"):
        loop.add_signal_handler(signal.SIGUSR1, _coro_handler)
    c = _coro_handler()
    try:
        with pytest.raises(TypeError, match="coroutines cannot be used"):
            loop.add_signal_handler(signal.SIGUSR1, c)
    finally:
        c.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert_loop_usable(loop)


def test_add_signal_handler_outside_main_thread_raises(restore_signals, loop):
    errors: list[Exception] = []

    def in_thread() -> None:
        try:
            loop.add_signal_handler(signal.SIGUSR1, print)
        except Exception as exc:  # noqa: BLE001 - recorded, checked below
            errors.append(exc)

    th = threading.Thread(target=in_thread)
    th.start()
    th.join()
    assert len(errors) == 1
    assert isinstance(errors[0], RuntimeError)
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert_loop_usable(loop)


# ---- Ctrl-C while the loop sleeps in the poller (child processes) -----------------

CHILD = textwrap.dedent(
    """
    import asyncio, os, sys, warnings

    warnings.filterwarnings("ignore", "'asyncio.set_event_loop_policy'", DeprecationWarning)

    mode = sys.argv[1]
    if mode != "stock":
        import casyncio

    def say_sleeping() -> None:
        loop = asyncio.get_running_loop()
        print("sleeping", type(loop).__module__, flush=True)

    async def main() -> None:
        asyncio.get_running_loop().call_soon(say_sleeping)
        await asyncio.sleep(60)

    if mode in ("stock", "policy"):
        if mode == "policy":
            asyncio.set_event_loop_policy(casyncio.EventLoopPolicy())
        asyncio.run(main())
    elif mode == "casyncio.run":
        casyncio.run(main())
    elif mode in ("stock-run_forever", "casyncio-run_forever"):
        if mode == "stock-run_forever":
            loop = asyncio.SelectorEventLoop()
        else:
            loop = casyncio.new_event_loop()
        loop.call_soon(lambda: print("sleeping", type(loop).__module__, flush=True))
        try:
            loop.run_forever()
        finally:
            loop.close()
    print("returned normally", flush=True)
    """
)


def _sleeping_in_kernel(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: fall back on the "sleeping" line alone
    return stat.rsplit(")", 1)[1].split()[0] == "S"


def _interrupt_child(mode: str, poller: str | None) -> tuple[int, str, str]:
    env = dict(os.environ)
    env.pop("PYTHONASYNCIODEBUG", None)
    if poller is not None:
        env["CASYNCIO_POLLER"] = poller
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # Not the repository: `python -c` puts the cwd on sys.path, and the
        # source tree's casyncio/ (no compiled module) would shadow the
        # installed package.
        cwd=tempfile.gettempdir(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("sleeping"), (line, proc.stderr.read() if proc.stderr else "")
        # Wait until the child is blocked in the kernel (its poller), so the
        # signal interrupts the wait rather than Python code.
        deadline = time.monotonic() + 10
        while not _sleeping_in_kernel(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.001)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, line + out, err


def _exception_lines(text: str) -> list[str]:
    """A traceback's unindented lines but the "Traceback" headers: the
    exceptions, in chain order, and the "During handling" separators."""
    return [
        ln
        for ln in text.splitlines()
        if ln.strip() and not ln.startswith((" ", "Traceback (most recent call last)"))
    ]


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


@pytest.fixture(scope="module")
def stock_interrupted() -> dict[str, tuple[int, str, str]]:
    return {
        "run": _interrupt_child("stock", None),
        "run_forever": _interrupt_child("stock-run_forever", None),
    }


@pytest.mark.parametrize("poller", ["epoll", "poll"])
@pytest.mark.parametrize("mode", ["policy", "casyncio.run", "casyncio-run_forever"])
def test_ctrl_c_interrupts_sleeping_loop_like_stock(stock_interrupted, mode, poller):
    code, out, err = _interrupt_child(mode, poller)
    stock_code, _stock_out, stock_err = stock_interrupted[
        "run_forever" if mode.endswith("run_forever") else "run"
    ]
    assert "casyncio" in out.splitlines()[0], out
    assert "returned normally" not in out
    assert _last_line(err) == _last_line(stock_err) == "KeyboardInterrupt", err
    assert _exception_lines(err) == _exception_lines(stock_err), err
    assert code == stock_code, (code, stock_code, err)
    # Stock Python dies of the SIGINT it re-raises at exit.
    assert stock_code == -signal.SIGINT
