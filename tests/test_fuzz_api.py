"""The differential fuzz of tests/fuzz_api.py over a fixed range of seeds:
odd calls to the loop's scheduling API, Future, Task and Handle do on
casyncio what they do on stock asyncio (or differ only as fuzz_api.KNOWN
says, and why), and leave casyncio's loop usable.  It runs in a child
process, so that a crash fails the test instead of ending the session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_python

CASES = 3000  # about 3 s per mode; 20,000 per mode ran clean on 3.11, 10,000 on 3.12-3.15

RUN = "import sys; sys.path.insert(0, sys.argv[1]); import fuzz_api; fuzz_api.main(sys.argv[2:])"


@pytest.mark.parametrize("mode", ["normal", "debug"])
def test_odd_calls_do_what_they_do_on_stock_asyncio(mode):
    args = [str(Path(__file__).parent), "0", str(CASES)] + (["debug"] if mode == "debug" else [])
    out = run_python(RUN, *args, timeout=240)
    found = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    report = "\n".join(json.dumps(case) for case in found[:5])
    assert not found, f"{len(found)} cases differ from stock asyncio; the first:\n{report}"
