"""``python -m casyncio`` runs a program as plain ``python`` would, on casyncio.

Each test runs the same program both ways, ``python ARGS`` and
``python -m casyncio ARGS``, and compares what the program saw (sys.argv,
``__main__``, ``__file__``, sys.path[0]...), its output, its exit status and
its traceback.  The one intended difference is the event loop: under the
runner, ``asyncio.run()`` and ``asyncio.new_event_loop()`` make casyncio loops.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import casyncio
from casyncio import _demo

TIMEOUT = 60.0  # seconds for any one program; they take well under one
RUNNER = ["-m", "casyncio"]
CASYNCIO_LOOP = f"{casyncio.Loop.__module__}.{casyncio.Loop.__qualname__}"
STATS_LINE = re.compile(r"casyncio: loops_created=(\d+) iterations=(\d+) callbacks=(\d+)")

# Prints, as JSON, what a program can see of how it was started.  The loop
# types are the intended difference and are checked apart from the rest.
PROBE = '''\
"""The probe's docstring."""
import asyncio
import json
import sys

_top_level_names = sorted(globals())


def _type_name(obj):
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


async def _running_loop_type():
    return _type_name(asyncio.get_running_loop())


def _new_loop_type():
    loop = asyncio.new_event_loop()
    try:
        return _type_name(loop)
    finally:
        loop.close()


facts = {
    "argv": sys.argv,
    "name": __name__,
    "file": __file__,
    "path0": sys.path[0],
    "top_level_names": _top_level_names,
    "doc": __doc__,
    "package": __package__,
    "cached": globals().get("__cached__", "<none>"),  # none from 3.15
    "spec": None if __spec__ is None else [__spec__.name, __spec__.origin],
    "loader": type(__loader__).__name__,
    "builtins": type(__builtins__).__name__,
    "is_sys_modules_main": sys.modules["__main__"] is sys.modules[__name__],
    "running_loop": asyncio.run(_running_loop_type()),
    "new_event_loop": _new_loop_type(),
}
print(json.dumps(facts))
'''

LOOP_FACTS = ("running_loop", "new_event_loop")
# What the __main__ module holds before the program's first line; checked by
# its own test so that a difference there does not hide the others.
NAMESPACE_FACTS = ("top_level_names", "builtins")


@dataclass
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (
            f"$ {' '.join(self.argv)}  [exit {self.returncode}]\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )


def _env(stats: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CASYNCIO_STATS"}
    if stats:
        env["CASYNCIO_STATS"] = "1"
    return env


def run_both(
    args: list[str], cwd: Path, *, stdin: str | None = None, stats: bool = False
) -> tuple[Result, Result]:
    """``python ARGS`` and ``python -m casyncio ARGS``, run side by side."""
    argvs = [[sys.executable, *args], [sys.executable, *RUNNER, *args]]
    procs = [
        subprocess.Popen(
            argv,
            cwd=cwd,
            env=_env(stats),
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in argvs
    ]
    results = []
    for argv, proc in zip(argvs, procs):
        try:
            out, err = proc.communicate(stdin, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        results.append(Result(argv, proc.returncode, out, err))
    return results[0], results[1]


def _stats(stderr: str) -> list[tuple[int, int, int]]:
    return [
        tuple(int(n) for n in m.groups())  # type: ignore[misc]
        for m in map(STATS_LINE.fullmatch, stderr.splitlines())
        if m
    ]


def facts(result: Result, *, namespace: bool = False) -> dict[str, object]:
    """What the probe saw; only the __main__ namespace facts if ``namespace``."""
    assert result.returncode == 0, result
    seen = json.loads(result.stdout)
    return {key: value for key, value in seen.items() if (key in NAMESPACE_FACTS) == namespace}


def assert_same_facts(plain: Result, cas: Result) -> dict[str, object]:
    """Both runs saw the same start-up; plain python ran stock asyncio and
    the runner ran casyncio.  Returns plain python's facts."""
    seen_plain, seen_cas = facts(plain), facts(cas)
    loops_plain = {key: seen_plain.pop(key) for key in LOOP_FACTS}
    loops_cas = {key: seen_cas.pop(key) for key in LOOP_FACTS}
    assert seen_cas == seen_plain
    assert all(not name.startswith("casyncio") for name in loops_plain.values()), loops_plain
    assert loops_cas == dict.fromkeys(LOOP_FACTS, CASYNCIO_LOOP)
    return seen_plain


# ---- scripts ----------------------------------------------------------------


@pytest.mark.parametrize("args", [[], ["a", "b c", "-x", "--flag", "-m", "--", "-"]])
@pytest.mark.parametrize("where", ["relative", "subdir", "absolute", "symlink"])
def test_script_runs_as_main(tmp_path: Path, where: str, args: list[str]) -> None:
    real = tmp_path / "src" / "probe.py"
    real.parent.mkdir()
    real.write_text(PROBE)
    if where == "symlink":
        (tmp_path / "link.py").symlink_to(real)
    script = {
        "relative": "probe.py",
        "subdir": "src/probe.py",
        "absolute": str(real),
        "symlink": "link.py",
    }[where]
    cwd = real.parent if where == "relative" else tmp_path
    plain, cas = run_both([script, *args], cwd)
    facts = assert_same_facts(plain, cas)
    assert facts["argv"] == [script, *args]
    assert facts["name"] == "__main__"


def test_runs_on_the_c_loop(tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text(PROBE)
    plain, cas = run_both(["probe.py"], tmp_path, stats=True)
    assert_same_facts(plain, cas)
    assert _stats(plain.stderr) == [], plain
    [(loops, iterations, callbacks)] = _stats(cas.stderr)
    assert loops >= 2 and iterations > 0 and callbacks > 0, cas.stderr


@pytest.mark.parametrize("kind", ["directory", "zipapp"])
def test_directory_or_zipapp_runs_as_main(tmp_path: Path, kind: str) -> None:
    if kind == "directory":
        target = tmp_path / "app"
        target.mkdir()
        (target / "__main__.py").write_text(PROBE)
    else:
        target = tmp_path / "app.pyz"
        with zipfile.ZipFile(target, "w") as archive:
            archive.writestr("__main__.py", PROBE)
    plain, cas = run_both([target.name, "arg"], tmp_path)
    assert_same_facts(plain, cas)


# `python -c` sets no __file__.
COMMAND_PROBE = PROBE.replace('"file": __file__', '"file": globals().get("__file__", "<none>")')


@pytest.mark.parametrize("args", [[], ["a", "-x", "-c", "--"]])
@pytest.mark.parametrize("attached", [False, True])
def test_command(tmp_path: Path, args: list[str], attached: bool) -> None:
    """``python -c command args``, and ``-ccommand`` as python takes it."""
    option = ["-c" + COMMAND_PROBE] if attached else ["-c", COMMAND_PROBE]
    plain, cas = run_both([*option, *args], tmp_path)
    seen = assert_same_facts(plain, cas)
    assert seen["argv"] == ["-c", *args]
    assert facts(cas, namespace=True) == facts(plain, namespace=True)


def test_command_option_without_a_command(tmp_path: Path) -> None:
    plain, cas = run_both(["-c"], tmp_path)
    assert plain.returncode == 2, plain
    assert cas.returncode == 2 and cas.stdout == "", cas
    assert "Argument expected for the -c option" in cas.stderr, cas


def test_script_from_stdin(tmp_path: Path) -> None:
    """``python - args`` runs the program read from stdin."""
    plain, cas = run_both(["-", "arg"], tmp_path, stdin=PROBE)
    assert_same_facts(plain, cas)


@pytest.mark.parametrize("mode", ["script", "module"])
def test_main_namespace(tmp_path: Path, mode: str) -> None:
    """The __main__ module starts with what python puts there: the same
    names (``__annotations__`` among them on 3.11), ``__builtins__`` the
    builtins module."""
    (tmp_path / "probe.py").write_text(PROBE)
    plain, cas = run_both(["probe.py"] if mode == "script" else ["-m", "probe"], tmp_path)
    assert facts(cas, namespace=True) == facts(plain, namespace=True)


# ---- modules ----------------------------------------------------------------


@pytest.mark.parametrize("module", ["topmod", "pkg.mod", "pkg"])
def test_module_runs_as_main(tmp_path: Path, module: str) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for path in (tmp_path / "topmod.py", package / "mod.py", package / "__main__.py"):
        path.write_text(PROBE)
    args = ["a", "b c", "-m", "--"]
    plain, cas = run_both(["-m", module, *args], tmp_path)
    facts = assert_same_facts(plain, cas)
    assert facts["name"] == "__main__"
    assert facts["argv"][1:] == args


def test_missing_module(tmp_path: Path) -> None:
    plain, cas = run_both(["-m", "no_such_module_here"], tmp_path)
    assert plain.returncode == 1, plain
    assert (cas.returncode, cas.stdout, cas.stderr) == (1, plain.stdout, plain.stderr)


# ---- exit status and tracebacks ---------------------------------------------

NESTED_ERROR = """\
def inner():
    raise ValueError("boom")


def outer():
    try:
        inner()
    except ValueError as exc:
        raise RuntimeError("wrapped") from exc


print("before")
outer()
"""

ASYNC_ERROR = """\
import asyncio


async def inner():
    await asyncio.sleep(0)
    raise ValueError("deep")


async def main():
    await asyncio.gather(inner())


asyncio.run(main())
"""

OWN_EXCEPTHOOK = """\
import sys
import traceback


def hook(exc_type, exc, tb):
    names = [frame.name for frame in traceback.extract_tb(tb)]
    print("hook:", exc_type.__name__, exc, names, file=sys.stderr)


sys.excepthook = hook


def fail():
    raise LookupError("mine")


fail()
"""

# name: (program, exit status plain python gives it)
PROGRAMS: dict[str, tuple[str, int]] = {
    "falls-off-the-end": ("print('done')\n", 0),
    "sys.exit(0)": ("import sys\nsys.exit(0)\n", 0),
    "sys.exit(3)": ("import sys\nprint('out')\nsys.exit(3)\n", 3),
    "sys.exit(message)": ("import sys\nsys.exit('message for stderr')\n", 1),
    "exception": (NESTED_ERROR, 1),
    "own-excepthook": (OWN_EXCEPTHOOK, 1),
    "KeyboardInterrupt": ("print('x')\nraise KeyboardInterrupt\n", -signal.SIGINT),
    "sys.exit(4)-in-a-task": (
        "import asyncio, sys\n\nasync def main():\n    sys.exit(4)\n\nasyncio.run(main())\n",
        4,
    ),
}


@pytest.mark.parametrize("mode", ["script", "module", "command"])
@pytest.mark.parametrize("name", PROGRAMS)
def test_exit_status_and_traceback(tmp_path: Path, name: str, mode: str) -> None:
    source, status = PROGRAMS[name]
    (tmp_path / "prog.py").write_text(source)
    args = {"script": ["prog.py"], "module": ["-m", "prog"], "command": ["-c", source]}[mode]
    plain, cas = run_both(args, tmp_path)
    assert plain.returncode == status, plain
    assert (cas.returncode, cas.stdout, cas.stderr) == (
        plain.returncode,
        plain.stdout,
        plain.stderr,
    ), f"{plain}\n{cas}"


# Frames of the event loop's own code: which loop runs differs by design.
LOOP_FRAME = re.compile(r'  File ".*(/asyncio/base_events\.py|/casyncio/[^/"]+)", line ')


def without_loop_frames(traceback_text: str) -> str:
    """The traceback with the loop's own frames (asyncio's BaseEventLoop or
    casyncio's Loop) left out; every other line is kept."""
    kept, skipping = [], False
    for line in traceback_text.splitlines(keepends=True):
        if line.startswith("  File "):
            skipping = bool(LOOP_FRAME.match(line))
        elif not line.startswith("    "):
            skipping = False
        if not skipping:
            kept.append(line)
    return "".join(kept)


def test_exception_in_a_coroutine(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text(ASYNC_ERROR)
    plain, cas = run_both(["prog.py"], tmp_path)
    assert plain.returncode == 1 and "ValueError: deep" in plain.stderr, plain
    assert cas.returncode == 1, cas
    assert without_loop_frames(cas.stderr) == without_loop_frames(plain.stderr)


SLEEPER = """\
import asyncio


async def main():
    print("sleeping", flush=True)
    await asyncio.sleep(60)


asyncio.run(main())
"""


def _interrupted(argv: list[str], cwd: Path) -> Result:
    """Run ``argv``, wait for its "sleeping" line, send SIGINT."""
    proc = subprocess.Popen(
        argv, cwd=cwd, env=_env(False), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        first = proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT / 3)
    finally:
        proc.kill()
        proc.wait()
    return Result(argv, proc.returncode, first + out, err)


def test_ctrl_c_interrupts_a_sleeping_loop(tmp_path: Path) -> None:
    """SIGINT reaches a loop blocked in the poller; asyncio.run turns it into
    a KeyboardInterrupt and the process dies of SIGINT, as plain python."""
    (tmp_path / "prog.py").write_text(SLEEPER)
    plain = _interrupted([sys.executable, "prog.py"], tmp_path)
    cas = _interrupted([sys.executable, *RUNNER, "prog.py"], tmp_path)
    assert plain.stdout == "sleeping\n" and plain.returncode == -signal.SIGINT, plain
    assert (cas.returncode, cas.stdout) == (plain.returncode, plain.stdout), cas
    assert without_loop_frames(cas.stderr) == without_loop_frames(plain.stderr)


# ---- the runner's own command line ------------------------------------------


@pytest.mark.parametrize("option", ["-h", "--help"])
def test_help(tmp_path: Path, option: str) -> None:
    _, cas = run_both([option], tmp_path)
    assert cas.returncode == 0, cas
    assert cas.stdout.startswith("usage:"), cas
    assert "-m module" in cas.stdout and "script" in cas.stdout, cas
    assert cas.stderr == ""


def test_unknown_option(tmp_path: Path) -> None:
    plain, cas = run_both(["--no-such-option"], tmp_path)
    assert plain.returncode == 2, plain
    assert cas.returncode == 2, cas
    assert "--no-such-option" in cas.stderr and cas.stdout == "", cas


def test_module_option_without_a_name(tmp_path: Path) -> None:
    plain, cas = run_both(["-m"], tmp_path)
    assert plain.returncode == 2, plain
    assert cas.returncode == 2 and cas.stdout == "", cas


def test_missing_script(tmp_path: Path) -> None:
    plain, cas = run_both(["no_such_script.py", "arg"], tmp_path)
    assert plain.returncode == 2, plain
    assert (cas.returncode, cas.stdout, cas.stderr) == (2, "", plain.stderr)


# ---- the demo ---------------------------------------------------------------

TIMING_ROW = re.compile(r"(?P<label>\S.*?)\s+(?P<stock>\d+\.\d+) s\s+(?P<cas>\d+\.\d+) s")


def test_demo_times_both_loops(tmp_path: Path) -> None:
    """With no arguments: the chess exhibition on stock asyncio and on
    casyncio, honestly timed, in a few seconds."""
    proc = subprocess.run(
        [sys.executable, *RUNNER],
        cwd=tmp_path,
        env=_env(True),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert ["asyncio", "casyncio"] in [line.split() for line in lines], proc.stdout
    rows = [m for m in map(TIMING_ROW.fullmatch, lines) if m]
    assert len(rows) == 2, proc.stdout
    story, crowd = ({k: float(row[k]) for k in ("stock", "cas")} for row in rows)
    # The master's moves block, so no loop can beat their total; any loop
    # that overlaps the opponents' thinking stays far below the synchronous
    # figure.
    fastest = _demo.STORY.boards * _demo.STORY.move_pairs * _demo.STORY.master_move
    for seconds in story.values():
        assert fastest <= seconds < 0.5 * _demo.STORY.synchronous_seconds(), proc.stdout
    assert f"{_demo.STORY.synchronous_seconds():.2f} s" in proc.stdout
    assert all(seconds > 0 for seconds in crowd.values()), proc.stdout
    [(loops, _, callbacks)] = _stats(proc.stderr)
    assert loops >= 1 + _demo.CROWD_REPEATS and callbacks > 0, proc.stderr
