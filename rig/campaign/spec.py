"""A plan as data: its benches, its cases and their steps (what rig.campaign.plan loads and checks),
and where a key is in the plan's text (`key_line`), for messages. Imports nothing of the campaign,
so the bench, the cases, the profile merge and the runner all build on it."""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


# ---------------------------------------------------------------------------------------------
# locating keys in the text, for messages

def key_line(text: str, path: tuple) -> int | None:
    """The line (1-based) where a dotted key path is defined, best effort: `case`, 2, `repeat`
    finds the third [[case]] table's `repeat`; the deepest part found wins."""
    lines = text.splitlines()
    best = None
    table: tuple = ()
    counts: dict[str, int] = {}
    for n, raw in enumerate(lines, 1):
        s = raw.split("#", 1)[0].strip() if not raw.strip().startswith(("'", '"')) else raw.strip()
        if not s:
            continue
        m = re.match(r"^\[\[\s*([A-Za-z0-9_.\-\"]+)\s*\]\]$", s)
        if m:
            name = m.group(1)
            counts[name] = counts.get(name, -1) + 1
            parts = name.split(".")
            table = tuple(parts[:-1]) + (parts[-1], counts[name])
            if _prefix(table, path):
                best = _better(best, n, len(table), path)
            continue
        m = re.match(r"^\[\s*([A-Za-z0-9_.\-\"]+)\s*\]$", s)
        if m:
            parts = m.group(1).replace('"', "").split(".")
            # [case.sweep] after [[case]] belongs to the latest case
            if parts[0] in counts:
                table = (parts[0], counts[parts[0]], *parts[1:])
            else:
                table = tuple(parts)
            if _prefix(table, path):
                best = _better(best, n, len(table), path)
            continue
        m = re.match(r'^("?)([A-Za-z0-9_\-.]+)\1\s*=', s)
        if m:
            full = table + tuple(m.group(2).split("."))
            if _prefix(full, path):
                best = _better(best, n, len(full), path)
                # an inline table, `params = { x = 1 }`: the inner key on the same line
                if len(path) > len(full) and isinstance(path[len(full)], str) \
                        and re.search(rf"[{{,]\s*{re.escape(path[len(full)])}\s*=", s):
                    best = _better(best, n, len(full) + 1, path)
    return best[0] if best else None


def _prefix(a: tuple, b: tuple) -> bool:
    return len(a) <= len(b) and tuple(b[: len(a)]) == tuple(a)


def _better(best, line, depth, path):
    if best is None or depth > best[1]:
        return (line, depth)
    return best
