"""``python -m benchmarks``: parse the command line, run, write the report."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

from . import loops as loop_registry
from .registry import MODES, Mode, Workload, all_workloads
from .report import build, chart, machine_info, table
from .runner import REPO, Runner

DEFAULT_ROUNDS: dict[Mode, int] = {"tiny": 1, "quick": 3, "full": 5}
DEFAULT_TIMEOUT: dict[Mode, float] = {"tiny": 60, "quick": 120, "full": 600}


def select_workloads(only: str | None) -> list[Workload]:
    """All workloads, or those named in ``only``: names, groups (``echo``,
    ``memory``...) or name prefixes (``echo_streams``), comma-separated."""
    every = list(all_workloads().values())
    if not only:
        return every
    picked: list[Workload] = []
    for word in (x.strip() for x in only.split(",") if x.strip()):
        hits = [w for w in every if w.name == word or w.group == word or w.name.startswith(word)]
        if not hits:
            raise SystemExit(f"no workload matches {word!r}; try --list")
        picked.extend(h for h in hits if h not in picked)
    return [w for w in every if w in picked]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run every workload on every loop, interleaved, and compare each peer "
        "with casyncio.",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        dest="mode",
        action="store_const",
        const="quick",
        help="small sizes, 3 rounds, casyncio/asyncio/uvloop (the default)",
    )
    size.add_argument(
        "--full",
        dest="mode",
        action="store_const",
        const="full",
        help="README sizes, 5 rounds, every loop installed",
    )
    size.add_argument(
        "--tiny", dest="mode", action="store_const", const="tiny", help=argparse.SUPPRESS
    )  # seconds-long, for the smoke test
    p.set_defaults(mode="quick")
    p.add_argument(
        "--loops",
        help="comma-separated loops (default: quick: "
        f"{','.join(loop_registry.CORE)}; full: every one of "
        f"{','.join(loop_registry.KNOWN)} that imports)",
    )
    p.add_argument("--only", help="comma-separated workloads, groups or name prefixes")
    p.add_argument("--rounds", type=int, help="rounds (default: quick 3, full 5)")
    p.add_argument(
        "--out",
        type=Path,
        default=REPO / "benchmarks" / "results",
        help="where the JSON, table and chart go (default: benchmarks/results)",
    )
    p.add_argument(
        "--spawn",
        action="store_true",
        help="a new interpreter per measurement instead of a fork of a clean one",
    )
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="time workloads by wall-clock time (the default) or by the measuring "
        "process's CPU time, which other programs on a busy machine disturb less "
        "(both are kept in the JSON)",
    )
    p.add_argument("--timeout", type=float, help="seconds allowed per measurement")
    p.add_argument("--no-chart", action="store_true", help="skip the PNG")
    p.add_argument("--no-progress", action="store_true", help="no progress line")
    p.add_argument("--list", action="store_true", help="list the workloads and exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    mode: Mode = args.mode
    assert mode in MODES
    if args.list:
        for w in all_workloads().values():
            print(f"{w.name:22} [{w.group}] {w.doc}")
        return 0
    workloads = select_workloads(args.only)
    if args.loops:
        loop_names = [x.strip() for x in args.loops.split(",") if x.strip()]
        unknown = [x for x in loop_names if x not in loop_registry.KNOWN]
        if unknown:
            raise SystemExit(f"unknown loop(s) {unknown}; known: {', '.join(loop_registry.KNOWN)}")
    else:
        loop_names = list(loop_registry.CORE if mode != "full" else loop_registry.KNOWN)
    if loop_registry.CORE[0] not in loop_names:
        loop_names.insert(0, loop_registry.CORE[0])  # the ratios need casyncio
    rounds = args.rounds or DEFAULT_ROUNDS[mode]
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    runner = Runner(
        loop_names,
        workloads,
        mode,
        rounds,
        log_dir=out / "logs" / stamp,
        timeout=args.timeout or DEFAULT_TIMEOUT[mode],
        spawn=args.spawn,
        progress=False if args.no_progress else None,
    )
    cells = runner.run()
    machine["load_avg_end"] = os.getloadavg()
    peers = [n for n in loop_names if n != "casyncio"]
    report = build(workloads, cells, runner.info, peers, mode, rounds, machine, args.clock)
    report["command"] = " ".join(["python -m benchmarks", *(argv or sys.argv[1:])])
    text = table(report)
    print(text)
    base = out / f"bench-{mode}-{stamp}"
    json_path = base.with_suffix(".json")
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    base.with_suffix(".txt").write_text(text + "\n")
    written = [json_path, base.with_suffix(".txt")]
    if not args.no_chart:
        try:
            chart(report, base.with_suffix(".png"))
            written.append(base.with_suffix(".png"))
        except ImportError:
            print("no chart: matplotlib is not installed (pip install matplotlib)", file=sys.stderr)
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 0
