"""The pure-C core's unit tests (csrc/core/tests/test_core.c), run from pytest.

The core is built on its own with CMake (no Python involved, which also
proves it does not depend on Python.h), then each C test runs in its own
child process with a timeout, so a crash or hang fails just that test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "csrc" / "core"


def _build(tmp: Path) -> Path:
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake is not installed: cannot build the C core's tests")
    flags = "-Wall -Wextra -Werror -g"
    sanitize = os.environ.get("CASYNCIO_SANITIZE")
    if sanitize:
        flags += f" -fsanitize={sanitize} -fno-omit-frame-pointer"
    subprocess.run(
        [
            cmake,
            "-S",
            str(CORE),
            "-B",
            str(tmp),
            "-DCASYNCIO_CORE_TESTS=ON",
            f"-DCMAKE_C_FLAGS={flags}",
            "-DCMAKE_BUILD_TYPE=Debug",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run([cmake, "--build", str(tmp)], check=True, capture_output=True)
    return tmp / "test_core"


@pytest.fixture(scope="session")
def core_binary(tmp_path_factory) -> Path:
    try:
        return _build(tmp_path_factory.mktemp("core"))
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"building the C core failed:\n{exc.stdout.decode()}\n{exc.stderr.decode()}")


def _list_tests() -> list[str]:
    # Names come from the source so that collection needs no build; the
    # binary's own --list must agree (test_list_matches_source).
    names = []
    in_table = False
    for line in (CORE / "tests" / "test_core.c").read_text().splitlines():
        line = line.strip()
        if line.startswith("static const test_case tests[]"):
            in_table = True
        elif in_table and line.startswith("};"):
            break
        elif in_table and line.startswith("T("):
            names.append(line[2 : line.index(")")])
        elif in_table and line.startswith("TB("):
            name = line[3 : line.index(")")]
            names += [f"epoll_{name}", f"poll_{name}"]
        elif in_table and line.startswith('{"'):
            names.append(line[2 : line.index('"', 2)])
    return names


CORE_TESTS = _list_tests()


def test_list_matches_source(core_binary):
    out = subprocess.run([core_binary, "--list"], check=True, capture_output=True, text=True)
    assert out.stdout.split() == CORE_TESTS


@pytest.mark.parametrize("name", CORE_TESTS)
def test_core(core_binary, name):
    proc = subprocess.run(
        [core_binary, name], check=False, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == f"{name}: ok"


def test_unknown_test_name_fails(core_binary):
    proc = subprocess.run(
        [core_binary, "no_such_test"], check=False, capture_output=True, text=True
    )
    assert proc.returncode == 2
