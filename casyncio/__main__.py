"""python -m casyncio: run an unchanged asyncio program on casyncio.

    python -m casyncio script.py [args...]
    python -m casyncio -m package.module [args...]
    python -m casyncio -c command [args...]
    python -m casyncio                      # the demo

The program runs as it would under plain ``python``: the same sys.argv,
``__main__`` module, sys.path[0], output, exit status and traceback; the one
difference is that asyncio.run() and asyncio.new_event_loop() make casyncio
loops (through asyncio's event loop policy, where it has one).
"""

from __future__ import annotations

import builtins
import importlib.machinery
import linecache
import os
import runpy
import sys
import types

USAGE = """\
usage: python -m casyncio [script.py | - | -m module | -c command] [args...]

Run an unchanged asyncio program with casyncio's C event loop: asyncio.run(),
asyncio.new_event_loop() and asyncio.get_event_loop() all make casyncio loops.
The program sees the same sys.argv, __main__ and sys.path[0] as under plain
`python`, and exits with the same status and traceback.

  script.py [args...]   run a script, as `python script.py [args...]`
  - [args...]           run the program read from stdin, as `python - [args...]`
  -m module [args...]   run a module, as `python -m module [args...]`
  -c command [args...]  run the command, as `python -c command [args...]`
  (no arguments)        demo: the chess exhibition of the asyncio walkthrough,
                        timed on stock asyncio and on casyncio side by side
  -h, --help            show this help

Environment: CASYNCIO_POLLER=poll selects the poll(2) backend instead of epoll.
"""


def _use_casyncio() -> None:
    from ._runner import use_for_unchanged_programs

    use_for_unchanged_programs()


def _strip_runner_frames(tb, runner_code):
    """The traceback from just after the runner's frame (the one executing
    runner_code) on, so that it reads as under plain python; unchanged if
    that frame is not found."""
    t = tb
    while t is not None:
        if t.tb_frame.f_code is runner_code and t.tb_next is not None:
            return t.tb_next
        t = t.tb_next
    return tb


def _report_through_stripped_hook(runner_code) -> None:
    """Wrap the current sys.excepthook (the program may have set its own) so
    that the interpreter's report of the exception now propagating leaves out
    this runner's frames."""
    hook = sys.excepthook

    def excepthook(exc_type, exc, tb):
        sys.excepthook = hook
        tb = _strip_runner_frames(tb, runner_code)
        if isinstance(exc, BaseException):
            # The default hook prints the exception's own __traceback__.
            exc = exc.with_traceback(tb)
        hook(exc_type, exc, tb)

    sys.excepthook = excepthook


def _fresh_main(**attrs: object) -> types.ModuleType:
    """A new __main__ module with what the interpreter's own one has."""
    main = types.ModuleType("__main__")
    main.__builtins__ = builtins
    if sys.version_info < (3, 14):
        # 3.14 makes a module's __annotations__ on first use (PEP 649).
        main.__annotations__ = {}
    if sys.version_info >= (3, 15):
        # 3.15 sets no __cached__ on modules (gh-65961).
        attrs.pop("__cached__", None)
    for name, value in attrs.items():
        setattr(main, name, value)
    sys.modules["__main__"] = main
    return main


def _exec_main(code, main: types.ModuleType) -> None:
    _use_casyncio()
    try:
        exec(code, main.__dict__)  # noqa: S102 - running the program is the point
    except SystemExit:
        raise
    except BaseException:
        _report_through_stripped_hook(_exec_main.__code__)
        raise


def _run_source(argv0: str, source, filename: str, args: list[str], **main_attrs) -> None:
    """Run a program given as source, as `python -` and `python -c` do: with
    the current directory first on sys.path, in a __main__ whose loader is
    BuiltinImporter (the interpreter's own __main__'s)."""
    sys.argv = [argv0, *args]
    sys.path[0] = ""
    code = compile(source, filename, "exec", dont_inherit=True)
    if argv0 == "-c":
        _keep_command_source(code, source)
    main = _fresh_main(**main_attrs, __loader__=importlib.machinery.BuiltinImporter, __spec__=None)
    _exec_main(code, main)


def _keep_command_source(code, command: str) -> None:
    """From 3.13, python -c keeps the command for its traceback to quote:
    in linecache under the command's code objects (3.13.x later, 3.14+), or
    under the name "<string>" (3.13.0)."""
    if hasattr(linecache, "_interactive_cache"):
        linecache._register_code(code, command, "<string>")
    elif sys.version_info >= (3, 13):
        lines = [line + "\n" for line in command.splitlines()]
        linecache.cache["<string>"] = (len(command), None, lines, "<string>")


def _run_path(path: str, args: list[str]) -> None:
    if not os.path.exists(path):
        print(
            f"{sys.executable}: can't open file {os.path.abspath(path)!r}: "
            f"[Errno 2] No such file or directory",
            file=sys.stderr,
        )
        sys.exit(2)
    sys.argv = [path, *args]
    if os.path.isdir(path) or not path.endswith((".py", ".pyw")) and _is_zip(path):
        # A directory or zip application: python puts it first on sys.path
        # and runs its __main__ module with runpy, leaving argv alone.
        sys.path[0] = os.path.abspath(path)
        _run_module("__main__", args, alter_argv=False)
        return
    filename = os.path.abspath(path)
    sys.path[0] = os.path.dirname(os.path.realpath(path))
    with open(filename, "rb") as f:
        code = compile(f.read(), filename, "exec", dont_inherit=True)
    main = _fresh_main(
        __file__=filename,
        __cached__=None,
        __loader__=importlib.machinery.SourceFileLoader("__main__", filename),
        __spec__=None,
    )
    _exec_main(code, main)


def _is_zip(path: str) -> bool:
    import zipfile

    return zipfile.is_zipfile(path)


def _run_module(name: str, args: list[str], alter_argv: bool = True) -> None:
    if alter_argv:
        sys.argv = [name, *args]
    # What `python -m` does: a fresh __main__, then runpy's own entry point
    # (whose frames a `python -m` traceback shows, so ours must too).
    _fresh_main()
    _use_casyncio()
    run_as_main = getattr(runpy, "_run_module_as_main", None)
    try:
        if run_as_main is not None:
            run_as_main(name, alter_argv=alter_argv)
        else:
            runpy.run_module(name, run_name="__main__", alter_sys=alter_argv)
    except SystemExit:
        raise
    except BaseException:
        _report_through_stripped_hook(_run_module.__code__)
        raise


def main(argv: list[str]) -> None:
    if not argv:
        from ._demo import main as demo

        demo()
        return
    if argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return
    if argv[0] == "-m":
        if len(argv) < 2:
            print("python -m casyncio: -m needs a module name\n", file=sys.stderr)
            print(USAGE, end="", file=sys.stderr)
            sys.exit(2)
        _run_module(argv[1], argv[2:])
        return
    if argv[0] == "-":
        stdin = sys.stdin.buffer.read()
        _run_source("-", stdin, "<stdin>", argv[1:], __file__="<stdin>", __cached__=None)
        return
    if argv[0].startswith("-c"):
        # As python takes it: `-c command` or `-ccommand`.
        rest = argv[1:] if argv[0] == "-c" else [argv[0][2:], *argv[1:]]
        if not rest:
            print("Argument expected for the -c option", file=sys.stderr)
            print(USAGE, end="", file=sys.stderr)
            sys.exit(2)
        _run_source("-c", rest[0], "<string>", rest[1:])
        return
    if argv[0].startswith("-"):
        print(f"python -m casyncio: unknown option {argv[0]}\n", file=sys.stderr)
        print(USAGE, end="", file=sys.stderr)
        sys.exit(2)
    _run_path(argv[0], argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
