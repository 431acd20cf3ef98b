"""Turning the collected cells into the JSON file, the table and the chart."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from .registry import Workload
from .runner import REPO, Cell, LoopInfo
from .stats import BASE, Check, Summary, checks_for, ratio, summarize

# ---- machine ---------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def machine_info() -> dict[str, Any]:
    cpu = ""
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "cpu": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor").strip(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "python_build": " ".join(platform.python_build()),
        "implementation": platform.python_implementation(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_avg": os.getloadavg(),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }


# ---- assembling ------------------------------------------------------------------------


def build(
    workloads: list[Workload],
    cells: dict[str, dict[str, Cell]],
    loops: dict[str, LoopInfo],
    peers: list[str],
    mode: str,
    rounds: int,
    machine: dict[str, Any],
    clock: str = "wall",
) -> dict[str, Any]:
    """The whole report as plain data (what goes into the JSON file)."""
    summaries: dict[str, dict[str, Summary]] = {}
    for w in workloads:
        summaries[w.name] = {
            loop: summarize(c.samples_for(clock)) for loop, c in cells[w.name].items() if c.samples
        }
    floors = {
        w.floor_of: (w, summaries[w.name]["deque"])
        for w in workloads
        if w.floor_of and "deque" in summaries[w.name]
    }
    checks: list[Check] = []
    out_workloads: dict[str, Any] = {}
    for w in workloads:
        s = summaries[w.name]
        results = {}
        for loop, cell in cells[w.name].items():
            entry = cell.as_dict()
            if loop in s:
                entry["summary"] = s[loop].as_dict()
                if w.kind == "time":
                    entry["ops_per_s"] = cell.ops / s[loop].median
            results[loop] = entry
        ratios: dict[str, float | None] = {}
        if w.kind in ("time", "memory") and w.only_on is None:
            ratios = {p: ratio(s.get(p), s.get(BASE)) for p in peers}
        wchecks = checks_for(w, s, floors)
        checks.extend(wchecks)
        out_workloads[w.name] = {
            "doc": w.doc,
            "group": w.group,
            "kind": w.kind,
            "unit": w.unit,
            "targets": w.targets,
            "max_growth": w.max_growth,
            "floor_of": w.floor_of,
            "floor_factor": w.floor_factor,
            "results": results,
            "ratios": ratios,
            "checks": [c.as_dict() for c in wchecks],
        }
    return {
        "suite": "casyncio benchmarks",
        "mode": mode,
        "rounds": rounds,
        "clock": clock,
        "base": BASE,
        "peers": peers,
        "ratio_meaning": (
            "peer median / casyncio median of seconds (time) or bytes (memory): "
            "above 1 means casyncio is faster or smaller"
        ),
        "machine": machine,
        "loops": {
            name: {
                "available": i.available,
                "version": i.version,
                "description": i.description,
                "reason": i.reason,
                "origin": i.origin,
            }
            for name, i in loops.items()
        },
        "workloads": out_workloads,
        "checks": [c.as_dict() for c in checks],
        "checks_passed": sum(c.ok for c in checks),
        "checks_total": len(checks),
        "casyncio_build": casyncio_build(loops["casyncio"].origin) if "casyncio" in loops else {},
    }


def busy_note(m: dict[str, Any]) -> str:
    """A warning when other programs were using the CPUs while the suite ran."""
    start = m.get("load_avg", [0.0])[0]
    end = m.get("load_avg_end", [0.0])[0]
    others = max(start, end - 1.0)  # the suite itself adds about 1 to the load
    if others <= 0.5:
        return ""
    return (
        f"WARNING: the machine was busy (1-minute load {start:.1f} before, {end:.1f} after, "
        f"on {m.get('cores')} cores): wall-clock numbers are noisy; rerun on an idle machine, "
        "or with --clock cpu."
    )


def casyncio_build(origin: str, checkout: Path = REPO) -> dict[str, Any]:
    """When the measured casyncio's extension was built, and whether this
    checkout's sources changed after that (then the table is of an older
    build than the commit it names).  Empty when the extension is not beside
    the package (an editable install rebuilds on import) or the checkout has
    no sources."""
    extensions = sorted(Path(origin).parent.glob("_casyncio*.so")) if origin else []
    sources = [
        p
        for pattern in ("csrc/**/*.[ch]", "casyncio/*.py", "CMakeLists.txt")
        for p in checkout.glob(pattern)
    ]
    if not extensions or not sources:
        return {}
    built = extensions[0].stat().st_mtime
    newest = max(sources, key=lambda p: p.stat().st_mtime)
    changed = newest.stat().st_mtime
    return {
        "extension": str(extensions[0]),
        "built": datetime.datetime.fromtimestamp(built, datetime.UTC).isoformat(timespec="seconds"),
        "newest_source": str(newest.relative_to(checkout)),
        "stale": changed > built,
    }


def stale_build_note(report: dict[str, Any]) -> str:
    """A warning when the casyncio measured is older than this checkout's sources."""
    b = report.get("casyncio_build") or {}
    if not b.get("stale"):
        return ""
    return (
        f"WARNING: the casyncio measured ({b['extension']}, built {b['built']}) is older than "
        f"this checkout's {b['newest_source']}: reinstall (pip install .) to measure this commit."
    )


# ---- table --------------------------------------------------------------------------


def _si(x: float) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def _bytes(x: float) -> str:
    if abs(x) >= 1024 * 1024:
        return f"{x / 1024 / 1024:.1f} MiB"
    if abs(x) >= 10 * 1024:
        return f"{x / 1024:.0f} KiB"
    return f"{x:.0f} B"


_STATUS = {
    "n/a": "n/a (not impl.)",
    "error": "error",
    "crash": "crash",
    "timeout": "timeout",
    "unavailable": "-",
    "pending": "-",
}


def _value_cell(kind: str, entry: dict[str, Any]) -> str:
    if entry["status"] != "ok" or "summary" not in entry:
        status = str(entry["status"])
        return _STATUS.get(status, status)
    s = entry["summary"]
    spread = f" +-{s['spread_pct']:.0f}%"
    if kind == "time":
        return _si(entry["ops_per_s"]) + spread
    if kind == "memory":
        return _bytes(s["median"]) + spread
    return "+" + _bytes(s["median"])


def _metric(w: dict[str, Any]) -> str:
    if w["kind"] == "time":
        return f"{w['unit']}/s"
    if w["kind"] == "memory":
        return f"bytes/{w['unit']}"
    return "RSS growth"


def _ratio_cell(w: dict[str, Any], peer: str) -> str:
    if w["kind"] == "growth":
        for c in w["checks"]:
            if c["what"] == f"growth on {peer}":
                return "flat" if c["ok"] else "GROWS"
        return ""
    r = w["ratios"].get(peer)
    if r is None:
        return "n/a" if w["ratios"] else ""
    target = w["targets"].get(peer)
    if target is None:
        return f"{r:.2f}"
    verdict = "ok" if r >= target else "MISS"
    return f"{r:.2f} (>={target:g} {verdict})"


def table(report: dict[str, Any]) -> str:
    m = report["machine"]
    loops = [name for name, i in report["loops"].items() if i["available"] and name != "deque"]
    peers = [p for p in report["peers"] if p in loops]
    lines = [
        f"casyncio benchmarks: {report['mode']} mode, {report['rounds']} rounds, {m['date']}",
        (
            f"{m['cpu']} ({m['cores']} cores), Linux {m['kernel']}, Python {m['python']}, "
            f"commit {m['git_commit'][:10]}{' (dirty)' if m['git_dirty'] else ''}"
        ),
        "loops: " + ", ".join(f"{n} {report['loops'][n]['version']}" for n in loops),
        (
            f"Values: throughput (or bytes), median over rounds, +- half the min-max range; "
            f"clock: {report['clock']}"
            + (" (CPU seconds of the measuring process)" if report["clock"] == "cpu" else "")
            + "."
        ),
        (
            "Ratios peer/casyncio: peer time (or bytes) / casyncio's, so > 1 means casyncio is "
            "faster (or smaller); (>=T) is the target."
        ),
        "",
    ]
    for warning in (stale_build_note(report), busy_note(m)):
        if warning:
            lines.insert(-1, warning)
    header = ["workload", "metric", *loops, *[f"{p}/casyncio" for p in peers]]
    rows: list[list[str]] = []
    notes: list[str] = []
    for name, w in report["workloads"].items():
        if w["floor_of"]:
            continue
        res = w["results"]
        rows.append(
            [name, _metric(w)]
            + [_value_cell(w["kind"], res[lp]) if lp in res else "" for lp in loops]
            + [_ratio_cell(w, p) for p in peers]
        )
        for lp, entry in res.items():
            if entry["status"] in ("error", "crash", "timeout") and not entry["samples"]:
                notes.append(f"{name} on {lp}: {entry['status']}: {'; '.join(entry['reasons'])}")
            if entry.get("skipped"):
                notes.append(f"{name} on {lp}: {entry['skipped']}")
            if entry["status"] == "ok" and entry["reasons"]:
                notes.append(
                    f"{name} on {lp}: {len(entry['reasons'])} failed round(s): "
                    + "; ".join(entry["reasons"])
                )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:{'<' if i < 2 else '>'}{wd}}}" for i, wd in enumerate(widths))
    lines.append(fmt.format(*header))
    lines.append("  ".join("-" * wd for wd in widths))
    lines.extend(fmt.format(*r) for r in rows)
    lines.append("")
    for name, w in report["workloads"].items():
        if not w["floor_of"]:
            continue
        entry = w["results"].get("deque")
        if entry is None or "summary" not in entry:
            lines.append(f"Floor ({name}): not measured")
            continue
        floor_ops = entry["ops_per_s"]
        base_check = [
            c
            for c in report["checks"]
            if c["workload"] == w["floor_of"] and c["what"].endswith("/floor")
        ]
        text = (
            f"Floor of {w['floor_of']} ({name}): "
            f"{_si(floor_ops)} {w['unit']}/s +-{entry['summary']['spread_pct']:.0f}%"
        )
        bounded = report["workloads"].get(w["floor_of"], {}).get("results", {})
        base = bounded.get(report["base"])
        if base_check:
            c = base_check[0]
            text += (
                f"; casyncio takes {c['value']:.2f}x the floor's time "
                f"(target <= {c['bound']:g}: {'ok' if c['ok'] else 'MISS'})"
            )
        elif base is not None and "ops_per_s" in base:
            text += f"; casyncio reaches {base['ops_per_s'] / floor_ops:.0%} of it"
            peers = [
                f"{lp} {e['ops_per_s'] / floor_ops:.0%}"
                for lp, e in bounded.items()
                if lp != report["base"] and "ops_per_s" in e
            ]
            if peers:
                text += f" ({', '.join(peers)})"
        lines.append(text)
    unavailable = [f"{n} ({i['reason']})" for n, i in report["loops"].items() if not i["available"]]
    if unavailable:
        lines.append("Not available: " + "; ".join(unavailable))
    lines.append(f"Targets met: {report['checks_passed']}/{report['checks_total']}")
    missed = [c for c in report["checks"] if not c["ok"]]
    for c in missed:
        lines.append(
            f"  missed: {c['workload']}: {c['what']} = {c['value']:.3g} "
            f"(target {c['op']} {c['bound']:g})"
        )
    if notes:
        lines.append("Notes:")
        lines.extend(f"  {n}" for n in notes)
    return "\n".join(lines)


# ---- chart --------------------------------------------------------------------------


def chart(report: dict[str, Any], path: Path) -> None:
    """A horizontal bar chart of every ratio peer/casyncio, log scale, with the
    targets drawn as black ticks across their bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    peers = [p for p in report["peers"] if report["loops"].get(p, {}).get("available")]
    rows = [
        (name, w) for name, w in report["workloads"].items() if w["ratios"] and not w["floor_of"]
    ]
    if not rows or not peers:
        return
    bar_h = 0.8 / len(peers)
    fig_h = max(3.0, 0.32 * len(rows) * max(2, len(peers)) + 1.5)
    fig, ax = plt.subplots(figsize=(10, fig_h))
    colors = [plt.get_cmap("tab10")(i) for i in range(10)]
    values = []
    for j, peer in enumerate(peers):
        ys, xs = [], []
        for i, (_, w) in enumerate(rows):
            y = i + (j - (len(peers) - 1) / 2) * bar_h
            r = w["ratios"].get(peer)
            if r is None:
                ax.text(1.0, y, " n/a", va="center", fontsize=7, color="grey")
                continue
            ys.append(y)
            xs.append(r)
            values.append(r)
            target = w["targets"].get(peer)
            if target is not None:
                ax.plot([target, target], [y - bar_h / 2, y + bar_h / 2], color="black", lw=1.5)
            ax.text(r, y, f" {r:.2f}", va="center", fontsize=7)
        ax.barh(
            ys, xs, height=bar_h * 0.9, color=colors[j % len(colors)], label=f"{peer} / casyncio"
        )
    ax.axvline(1.0, color="grey", lw=1, ls="--")
    ax.set_xscale("log")
    lo, hi = min([*values, 0.5]) / 1.3, max([*values, 6.0]) * 2.0
    ax.set_xlim(lo, hi)
    ticks = [
        t for t in (0.1, 0.2, 0.5, 1, 1.5, 2, 3, 5, 10, 20, 50, 100, 200, 500) if lo <= t <= hi
    ]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([name for name, _ in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("peer time (or bytes) / casyncio's  —  > 1: casyncio faster (or smaller)")
    m = report["machine"]
    ax.set_title(
        f"casyncio vs peers ({report['mode']}, {report['rounds']} rounds, medians); "
        f"black ticks: targets\n{m['cpu']}, {m['cores']} cores, Python {m['python']}, "
        f"{m['date'][:10]}",
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
