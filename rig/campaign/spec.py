"""A plan as data: its benches, its cases and their steps (what rig.campaign.plan loads and checks).
Imports nothing of the campaign, so the bench, the cases, the profile merge and the runner all build
on it. Where a key is in the plan's text (`key_line`) is rig.config_check's, shared with every user
file."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rig.config_check import key_line

__all__ = ["PLANS_DIR", "BenchSpec", "CaseSpec", "Plan", "Stop", "key_line", "shipped_plans"]

PLANS_DIR = Path(__file__).resolve().parent.parent / "plans"     # the shipped plans


def shipped_plans() -> list[str]:
    return sorted(p.stem for p in PLANS_DIR.glob("*.toml"))


@dataclass(frozen=True)
class BenchSpec:
    name: str
    kind: str = "embedded"
    role: str = "meter-dut"
    interface: str = "optical"
    port: str | None = None
    policy: str = "typical"
    instruments: dict = field(default_factory=dict)   # as written in the plan (role -> resource or table)
    bench_config: str | None = None                   # the bench configuration file, resolved
    probes: dict = field(default_factory=dict)        # direction -> scope channel (as written)
    probe_gain: float | None = None
    # the instruments as one rig.bench.config.BenchConfig (file, then inline), or None
    config: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Stop:
    below: tuple[str, float] | None = None      # stop once this measurement of a step is below value
    max_failures: int | None = None             # stop after this many failed steps
    max_duration_s: float | None = None         # stop starting steps after this long


@dataclass(frozen=True)
class CaseSpec:
    key: str
    use: str
    bench: str
    repeat: int
    params: dict
    sweep: dict            # param -> list of values (in order)
    stop: Stop
    line: int              # where it is in the plan

    def steps(self) -> list[tuple[str, dict]]:
        """(step key, parameters) for every step: the sweep's points in order, each `repeat` times."""
        names = list(self.sweep)
        points = list(itertools.product(*(self.sweep[n] for n in names))) if names else [()]
        out = []
        for point in points:
            p = dict(zip(names, point))
            for rep in range(self.repeat):
                key = ",".join([f"{n}={_fmt(v)}" for n, v in p.items()] + [f"rep={rep}"])
                out.append((key, {**self.params, **p, "rep": rep}))
        return out


@dataclass(frozen=True)
class Plan:
    name: str
    description: str
    benches: dict[str, BenchSpec]
    cases: list[CaseSpec]
    profile_file: str | None
    profile_overrides: dict
    text: str
    path: str | None
    base_dir: str
    stop_on_failure: bool = False
    parallel: bool = True


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)
