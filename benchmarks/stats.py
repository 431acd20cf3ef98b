"""Medians, spreads, ratios and target checks over the collected samples."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

from .registry import Workload

BASE = "casyncio"


@dataclass
class Summary:
    n: int
    median: float
    min: float
    max: float
    q1: float
    q3: float

    @property
    def spread_pct(self) -> float:
        """Half the min-max range, as a percentage of the median."""
        if self.median == 0:
            return 0.0
        return 100.0 * (self.max - self.min) / 2 / abs(self.median)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["spread_pct"] = self.spread_pct
        return d


def summarize(samples: list[float]) -> Summary:
    if not samples:
        raise ValueError("no samples")
    if len(samples) >= 2:
        q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    else:
        q1 = q3 = samples[0]
    return Summary(
        n=len(samples),
        median=statistics.median(samples),
        min=min(samples),
        max=max(samples),
        q1=q1,
        q3=q3,
    )


@dataclass
class Check:
    """One target: what was compared, the number, the bound, and the verdict."""

    workload: str
    what: str  # e.g. "asyncio/casyncio", "casyncio/floor", "growth on uvloop"
    value: float
    bound: float
    op: str  # ">=" or "<="
    ok: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ratio(peer: Summary | None, base: Summary | None) -> float | None:
    """peer median / casyncio median, for lower-is-better values: above 1 means
    casyncio is faster (or smaller).  None when either side is missing."""
    if peer is None or base is None or base.median <= 0 or peer.median <= 0:
        return None
    return peer.median / base.median


def checks_for(
    w: Workload,
    summaries: dict[str, Summary],
    floors: dict[str, tuple[Workload, Summary]],
) -> list[Check]:
    """The target checks that workload ``w``'s results allow."""
    out: list[Check] = []
    base = summaries.get(BASE)
    if w.kind in ("time", "memory"):
        for peer, target in w.targets.items():
            r = ratio(summaries.get(peer), base)
            if r is not None:
                out.append(Check(w.name, f"{peer}/{BASE}", r, target, ">=", r >= target))
    if w.kind == "growth" and w.max_growth is not None:
        for loop, s in summaries.items():
            out.append(
                Check(
                    w.name,
                    f"growth on {loop}",
                    s.median,
                    w.max_growth,
                    "<=",
                    s.median <= w.max_growth,
                )
            )
    floor = floors.get(w.name)
    if floor is not None and base is not None:
        fw, fs = floor
        if fs.median > 0 and fw.floor_factor is not None:
            r = base.median / fs.median
            out.append(
                Check(w.name, f"{BASE}/floor", r, fw.floor_factor, "<=", r <= fw.floor_factor)
            )
    return out
