"""The benchmark suite's machinery, on a tiny workload size, so it does not rot.

One run of ``python -m benchmarks --tiny`` over every workload on casyncio
and stock asyncio (two rounds, interleaved, each measurement in its own
process) checks the JSON, the table and the ratios; the chart is drawn from
that JSON when matplotlib is installed.  A fake loop whose networking raises
NotImplementedError checks that such a loop gets "n/a", not a crash.  The C
HTTP load client is checked against a server in a thread: it counts a request
only once a whole 200 response with a Content-Length came back.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import platform
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
# Last, not first: the repository root holds the casyncio sources, which must
# not shadow the installed package.
sys.path.append(str(REPO))

from benchmarks import report as bench_report
from benchmarks import stats, worker
from benchmarks.cli import select_workloads
from benchmarks.registry import all_workloads
from benchmarks.workloads.echo import c_program


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--tiny",
            "--rounds",
            "2",
            "--loops",
            "casyncio,asyncio",
            "--out",
            str(out),
            "--no-chart",
            "--no-progress",
        ],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    files = sorted(out.glob("bench-tiny-*.json"))
    assert len(files) == 1, list(out.iterdir())
    return json.loads(files[0].read_text()), proc.stdout, out


def test_every_workload_runs_on_both_loops(tiny_run: tuple[dict[str, Any], str, Path]) -> None:
    data, _, _ = tiny_run
    assert set(data["workloads"]) == set(all_workloads())
    for name, w in data["workloads"].items():
        results = w["results"]
        if w["floor_of"]:
            assert results["deque"]["status"] == "ok", (name, results)
            continue
        if name == "http_uvicorn" and importlib.util.find_spec("uvicorn") is None:
            # uvicorn is in the test and bench extras; without it the row says so.
            for loop in ("asyncio", "casyncio"):
                assert results[loop]["status"] == "n/a", (name, results[loop])
                assert any("uvicorn is not installed" in r for r in results[loop]["reasons"])
            continue
        assert results["asyncio"]["status"] == "ok", (name, results["asyncio"])
        assert len(results["asyncio"]["samples"]) == 2
        # casyncio may not implement everything yet; it must never break the run.
        assert results["casyncio"]["status"] in ("ok", "n/a"), (name, results["casyncio"])


def test_ratios_and_checks(tiny_run: tuple[dict[str, Any], str, Path]) -> None:
    data, _, _ = tiny_run
    chain = data["workloads"]["call_soon_chain"]
    res = chain["results"]
    expected = res["asyncio"]["summary"]["median"] / res["casyncio"]["summary"]["median"]
    assert chain["ratios"]["asyncio"] == pytest.approx(expected)
    whats = {c["what"] for c in chain["checks"]}
    assert {"asyncio/casyncio", "casyncio/floor"} <= whats
    assert data["checks_total"] == len(data["checks"]) > 0
    for key in ("cpu", "cores", "python", "date", "git_commit"):
        assert key in data["machine"]
    assert data["loops"]["asyncio"]["version"] == platform.python_version()


def test_table_printed(tiny_run: tuple[dict[str, Any], str, Path]) -> None:
    _, stdout, out = tiny_run
    assert "asyncio/casyncio" in stdout
    assert "> 1 means casyncio is faster" in stdout
    assert "call_soon_chain" in stdout and "Floor of call_soon_chain" in stdout
    # An echo floor says how close every loop's echo comes to it.
    for floor, bounded in (
        ("echo_floor_1k", "echo_protocol_1k"),
        ("server_floor_1k", "server_protocol_1k"),
    ):
        assert re.search(
            rf"Floor of {bounded} \({floor}\): .*; casyncio reaches \d+% of it \(asyncio \d+%\)",
            stdout,
        ), stdout
    assert list(out.glob("bench-tiny-*.txt"))


def test_chart(tiny_run: tuple[dict[str, Any], str, Path], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib draws the chart (the bench extra)")
    data, _, _ = tiny_run
    png = tmp_path / "ratios.png"
    bench_report.chart(data, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class _NoNetworkLoop(asyncio.SelectorEventLoop):
    async def create_server(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


def test_not_implemented_is_na_not_error() -> None:
    result = worker.measure(_NoNetworkLoop, "echo_protocol_1k", "tiny")
    assert result["status"] == "n/a"
    assert "not implemented" in result["reason"]


def test_summaries_and_selection() -> None:
    s = stats.summarize([3.0, 1.0, 2.0])
    assert (s.median, s.min, s.max) == (2.0, 1.0, 3.0)
    assert s.spread_pct == pytest.approx(50.0)
    assert stats.ratio(stats.summarize([4.0]), stats.summarize([2.0])) == 2.0
    assert stats.ratio(None, s) is None
    names = [w.name for w in select_workloads("echo_streams,sleep0")]
    assert names == ["sleep0", "echo_streams_1k", "echo_streams_10k", "echo_streams_100k"]


def test_a_build_older_than_the_sources_is_flagged(tmp_path: Path) -> None:
    package = tmp_path / "site" / "casyncio"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    extension = package / "_casyncio.cpython-311-x86_64-linux-gnu.so"
    extension.write_bytes(b"")
    checkout = tmp_path / "checkout"
    (checkout / "csrc").mkdir(parents=True)
    source = checkout / "csrc" / "loop.c"
    source.write_text("")
    origin = str(package / "__init__.py")

    os.utime(extension, (2_000_000_000, 2_000_000_000))
    os.utime(source, (1_000_000_000, 1_000_000_000))
    fresh = bench_report.casyncio_build(origin, checkout)
    assert fresh["stale"] is False and fresh["newest_source"] == "csrc/loop.c"
    assert bench_report.stale_build_note({"casyncio_build": fresh}) == ""

    os.utime(source, (3_000_000_000, 3_000_000_000))  # edited after the build
    stale = bench_report.casyncio_build(origin, checkout)
    assert stale["stale"] is True
    assert "older than this checkout's csrc/loop.c" in bench_report.stale_build_note(
        {"casyncio_build": stale}
    )
    # An editable install keeps no extension beside the package: nothing to say.
    assert bench_report.casyncio_build(str(checkout / "casyncio" / "__init__.py"), checkout) == {}


# The HTTP load client counts a request only once its whole 200 response is in.
_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


@pytest.mark.parametrize(
    ("replies", "error"),
    [
        # The response in two pieces, as a server that writes headers then body sends it.
        ([_OK[:20], _OK[20:]], None),
        (
            [b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"],
            "not an HTTP/1.1 200",
        ),
        ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"], "without Content-Length"),
        ([_OK + b"x"], "bytes after the response"),
    ],
)
def test_http_load_client_checks_every_response(replies: list[bytes], error: str | None) -> None:
    try:
        client = c_program("http_load")
    except NotImplementedError as exc:  # no C compiler
        pytest.skip(str(exc))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    requests: list[int] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            buf = b""
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    _, buf = buf.split(b"\r\n\r\n", 1)
                    requests.append(1)
                    for piece in replies:
                        conn.sendall(piece)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        # One connection, 3 timed requests after the untimed one.
        proc = subprocess.run(
            [str(client), str(port), "1", "3"],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        listener.close()
    if error is None:
        assert proc.returncode == 0, proc.stderr
        count, seconds = proc.stdout.split()
        assert int(count) == 3 and float(seconds) > 0
        server.join(10)
        assert len(requests) == 4
    else:
        assert proc.returncode == 1
        assert error in proc.stderr
