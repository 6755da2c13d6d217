"""`rig report RUN`: one self-contained HTML file per stored run.

    path = write_report(store, run_id, "rig-run-2.html")

Everything is in the file (styles inline, plots as base64 PNG, no script, no external URL), so it
can be mailed, attached to a CI job or opened years later. The page comes from the Jinja2 template
templates/report.html.j2 with autoescaping (a DUT's or a plan's text is never markup), and reads
the store through the Store API only. It holds:

- a summary: the run (plan, status, verdict, times, host, store), verdicts by clause and by case,
  benchmark percentiles, and the failed measurements (the first ones of each case, and how many more);
- the record of what was tested and how (rig.campaign.record): the DUT's identity as read from it,
  what the effective profile changes from the default and where each value comes from, the plan's
  overrides, the bench with each instrument's *IDN?, rig's version and host;
- where the wall time went (rig.campaign.timesplit): on the line, protocol waits, rig overhead;
- plots (rig.campaign.plots), each in a section with a fixed id; a plot with no data in the run is
  left out with a one-line note:
  ``plot-eye`` one eye diagram per interface option and direction over the option's limit mask,
  ``plot-bit-width`` and ``plot-jitter`` from decoding the captures, one series per interface,
  ``plot-levels`` mark and space levels against the option's limits and receiver thresholds,
  ``plot-tr`` the reaction times of the recorded exchanges per interface with the profile's tr
  limits and the percentiles, ``plot-execution`` token execution times with their limit and
  percentiles, ``plot-sweeps`` success rate (or the steps' verdicts) against each swept value,
  numbers or names, steps not run marked apart (never drawn as 0);
- the measurements of every case, step by step, with limits and verdicts (failed rows
  highlighted, stand-in measurements marked), and the first exchanges of each failed step.

The run's profile (for the tr limits) is the one its stored plan names; the summary itself comes
from rig.campaign.report.run_summary.
"""
from __future__ import annotations

import base64
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

import rig
from rig.campaign import plots
from rig.campaign.plan import load_plan
from rig.campaign.profiles import profile_for_plan
from rig.campaign.report import (MAX_FAILURES_HTML, benchmark_rows, clause_order, excerpt_text, failed_exchanges,
                                 run_summary, time_rows)
from rig.campaign.store import Store, is_alive
from rig.campaign.timesplit import ACQUISITION, LINE, OVERHEAD
from rig.errors import RigError
from rig.measurement import ERROR, FAIL, VERDICTS, combine_finished, format_number, is_ok
from rig.physical.analysis import DecodeResult, decode
from rig.physical.options import OPTIONS, get_option
from rig.profile import load_profile

PLOT_SECTIONS = ("plot-eye", "plot-bit-width", "plot-jitter", "plot-levels", "plot-tr", "plot-execution",
                 "plot-sweeps")
EXECUTION_NAMES = ("message execution time", "execution")
NO_CAPTURE = "No capture is stored with this run's steps (the electrical levels cases store scope captures)."
MAX_TRACES = 1200      # traces in one eye diagram, taken evenly from its captures
TEMPLATES = Path(__file__).with_name("templates")


class ReportError(RigError):
    """A report that cannot be made or written; the message names what and where."""


def default_out(run_id: int) -> str:
    """The report's file name when --out is not given."""
    return f"rig-run-{run_id}.html"


# --- plot sections -----------------------------------------------------------------------------------
@dataclass
class Figure:
    """One plot of a section: the PNG, its alt text and its caption."""
    png: bytes
    alt: str
    caption: str = ""
    wide: bool = False                 # several panels: the whole width of the page

    @property
    def src(self) -> str:
        """The PNG as a data: URL for the img element."""
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass
class PlotSection:
    """A plot section of the report (fixed id): its figures, or the note saying why there is none."""
    id: str
    title: str
    about: str
    figures: list[Figure] = field(default_factory=list)
    note: str = ""                     # why there is no plot (no data in this run)
    remarks: list[str] = field(default_factory=list)   # captures that could not be used, and why

    @property
    def wide(self) -> bool:
        """Does the section take the page's whole width (several figures, or a wide one)?"""
        return len(self.figures) > 1 or any(f.wide for f in self.figures)


def direction_of(name: str) -> str:
    """The direction a capture's name gives ("to_hhu", "to_meter", "both"), or "" when none."""
    m = re.search(r"\bto_(hhu|meter)\b", name or "")
    return m.group(0) if m else ("both" if re.search(r"\bboth\b", name or "") else "")


class _RunData:
    """What the plots need, read from the store once."""

    def __init__(self, store: Store, run_id: int):
        self.store = store
        self.run_id = run_id
        self.row = store.run(run_id)
        self.profile, self.profile_note, self.plan = _run_profile(self.row, run_id)
        cols, rows = store.table(run_id, "measurements")
        self.measurements = [dict(zip(cols, r)) for r in rows]
        cols, rows = store.table(run_id, "steps")
        self.steps = [dict(zip(cols, r)) for r in rows]
        cols, rows = store.table(run_id, "captures")
        self.captures = [dict(zip(cols, r)) for r in rows]
        self.cases = store.cases(run_id)
        self.exchanges = [e for e in store.run_exchanges(run_id) if e["tr_ns"] is not None]
        self.decoded: list[tuple[dict, np.ndarray, DecodeResult]] = []   # (capture row, samples, its decode)
        self.capture_remarks: list[str] = []
        self._decode()

    def bench_interface(self, bench: str) -> str:
        spec = self.plan.benches.get(bench) if self.plan is not None else None
        return spec.interface if spec is not None else ""

    def _decode(self) -> None:
        """Each capture decoded as its case decoded it (at the speed its step noted), so the bit widths
        and jitter drawn are the ones the case's measurements judged."""
        notes = {(s["case_key"], s["key"]): s["notes"] for s in self.steps}
        for c in self.captures:
            where = f"capture {c['id']} ({c['case_key']} {c['step_key']}: {c['name']})"
            try:
                opt = get_option(c["option"]) if c["option"] else None
            except ValueError:
                opt = None
            if opt is None:
                self.capture_remarks.append(f"{where}: no interface option recorded ({c['option'] or 'none'}); "
                                            "not decoded")
                continue
            try:
                samples, rate = self.store.capture(c["id"])
                res = decode(samples, rate, opt.name, _noted_baud(notes.get((c["case_key"], c["step_key"]))),
                             keep_edges=True)
            except Exception as e:  # noqa: BLE001 - one bad capture must not lose the report
                self.capture_remarks.append(f"{where}: cannot be decoded: {type(e).__name__}: {e}")
                continue
            if not len(res.chars):
                self.capture_remarks.append(f"{where}: no character decoded")
                continue
            self.decoded.append((c, samples, res))


def _noted_baud(notes: str | None) -> float | None:
    """The speed a step's notes say its capture was decoded at (the levels cases note it), else None (auto)."""
    try:
        baud: Any = (json.loads(notes or "{}") or {}).get("baud")
    except (ValueError, AttributeError):
        return None
    if not _is_number(baud) or not math.isfinite(baud) or baud <= 0:
        return None
    return float(baud)


def _run_profile(row, run_id: int):
    """(profile, note, plan): the profile the run's stored plan names, else the default one."""
    try:
        plan = load_plan(row["plan_path"] or f"run-{run_id}.toml", text=row["plan_text"], base_dir=row["plan_dir"])
        return profile_for_plan(plan), "", plan
    except Exception as e:  # noqa: BLE001 - the report still shows what was stored
        return load_profile(), (f"the run's plan could not be read again ({e}); the default profile's "
                                "limits are shown"), None


def _stats(v: np.ndarray, unit: str, digits: int = 4) -> str:
    if not len(v):
        return ""
    return (f"n {len(v)}, min {v.min():.{digits}g}, median {np.median(v):.{digits}g}, "
            f"max {v.max():.{digits}g} {unit}").rstrip()


def _percentiles(v: np.ndarray) -> list[tuple[str, float]]:
    return [(f"p{q}", float(np.percentile(v, q))) for q in (50, 90, 99)] if len(v) else []


def _eye_section(d: _RunData) -> PlotSection:
    sec = PlotSection("plot-eye", "Eye diagrams",
                      "One eye per interface option and direction: every bit of the decoded characters of its "
                      "captures, folded on each character's bit period, over the option's limit mask (red: no "
                      "trace may enter); a margin sweep's captures, disturbed on purpose, in eyes of their own.")
    swept = {c["key"] for c in d.cases if c["use"] == "electrical/margin"}
    groups: dict[tuple[str, str, str], list] = {}
    for c, samples, res in d.decoded:
        # a margin sweep's captures are disturbed on purpose: an eye of their own per case
        sweep = c["case_key"] if c["case_key"] in swept else ""
        groups.setdefault((res.option.name, direction_of(c["name"]), sweep), []).append((c, samples, res))
    for (option, direction, sweep), items in sorted(groups.items(), key=lambda g: (g[0][2], g[0][0], g[0][1])):
        per = max(1, MAX_TRACES // len(items))
        xs, parts, chars, bauds = None, [], 0, set()
        for c, samples, res in items:
            x, traces = plots.eye_traces(samples, res, max_traces=per)
            if not len(traces):
                sec.remarks.append(f"capture {c['id']} ({c['case_key']} {c['step_key']}): no whole bit inside it")
                continue
            xs = x
            parts.append(traces)
            chars += len(res.chars)
            bauds.add(round(res.baud))
        if not parts:
            continue
        traces = np.vstack(parts)
        res = items[0][2]
        label = f"{option}, {direction or 'direction not named'}" + (f" — {sweep}, disturbed" if sweep else "")
        png, hits, mask_text = plots.eye_figure(xs, traces, res.option, label, max(bauds), disturbed=bool(sweep))
        steps = sorted({f"{c['case_key']} {c['step_key']}" for c, _, _ in items})
        sec.figures.append(Figure(png, f"eye diagram of {label}",
                                  f"{label} — {len(items)} capture(s) ({'; '.join(steps[:4])}"
                                  f"{f' and {len(steps) - 4} more' if len(steps) > 4 else ''}), {chars} characters at "
                                  f"{', '.join(f'{b:g}' for b in sorted(bauds))} Bd; {mask_text}; "
                                  f"{'no trace in the mask' if hits == 0 else f'{hits} trace(s) in the mask'}"
                                  + (" (disturbed on purpose by the sweep: traces in the mask are what it looks for)"
                                     if sweep and hits else "")))
    sec.remarks += d.capture_remarks
    if not sec.figures:
        sec.note = (NO_CAPTURE if not d.captures else
                    "No capture in this run could be drawn (see below).")
    return sec


def _timing_sections(d: _RunData) -> tuple[PlotSection, PlotSection]:
    bw = PlotSection("plot-bit-width", "Bit widths",
                     "Each run of equal bits between two edges of a character, divided by its number of bits, "
                     "in nominal bit times (UI), as the decoder measured them (their extremes are the "
                     "bit_width_min and bit_width_max measurements), with the option's limits; one colour per "
                     "interface option.")
    jit = PlotSection("plot-jitter", "Jitter",
                      "Each edge's deviation from its character's bit grid at the decoder's bit period, in UI, "
                      "as the decoder measured it (its peak and rms are the jitter_peak and jitter_rms measurements), "
                      "with the option's jitter_peak limit; one colour per interface option.")
    width_runs: dict[str, list[np.ndarray]] = {}    # interface option -> each capture's
    jitter_runs: dict[str, list[np.ndarray]] = {}
    lim_w, lim_j = {}, {}
    for c, _samples, res in d.decoded:
        t = plots.bit_timing(res)
        key = res.option.name
        if len(t.widths_ui):
            width_runs.setdefault(key, []).append(t.widths_ui)
            lim_w.update({"bit_width_min": res.option.limits["bit_width_min"].low,
                          "bit_width_max": res.option.limits["bit_width_max"].high})
        if len(t.jitter_ui):
            jitter_runs.setdefault(key, []).append(t.jitter_ui)
            pk = res.option.limits["jitter_peak"].high
            if pk is not None:
                lim_j.update({"-jitter_peak": -pk, "jitter_peak": pk})
    widths = {k: np.concatenate(v) for k, v in width_runs.items()}     # one series per interface option
    jitter = {k: np.concatenate(v) for k, v in jitter_runs.items()}
    if widths:
        png = plots.histogram_figure(widths, "UI", "bit width (UI)", "bit widths of the decoded captures",
                                     list(lim_w.items()), bins=61, fixed_range=(0.8, 1.2))
        bw.figures.append(Figure(png, "histogram of bit widths",
                                 "; ".join(f"{k}: {_stats(v, 'UI')}" for k, v in widths.items())))
    else:
        bw.note = NO_CAPTURE if not d.captures else "No bit widths: no decoded capture with two edges in a character."
    if jitter:
        png = plots.histogram_figure(jitter, "UI", "edge deviation from the fitted bit grid (UI)",
                                     "jitter of the decoded captures", list(lim_j.items()), bins=61,
                                     fixed_range=(-0.2, 0.2))
        jit.figures.append(Figure(png, "histogram of edge jitter", "; ".join(
            f"{k}: {len(v)} edges, rms {float(np.sqrt(np.mean(v ** 2))):.3g} UI, peak {np.abs(v).max():.3g} UI"
            for k, v in jitter.items())))
    else:
        jit.note = NO_CAPTURE if not d.captures else "No jitter: no decoded capture with two edges in a character."
    for sec in (bw, jit):
        sec.remarks += d.capture_remarks
    return bw, jit


def _levels_section(d: _RunData) -> PlotSection:
    sec = PlotSection("plot-levels", "Mark and space levels",
                      "Measured mark and space levels against the option's transmitter limits (green bands) "
                      "and the receiver's thresholds (dotted).")
    by_step: dict[tuple, dict] = {}
    for m in d.measurements:
        if m["name"] in ("mark_level", "space_level"):
            by_step.setdefault((m["case_key"], m["step_key"]), {})[m["name"]] = m
    notes = {(s["case_key"], s["key"]): json.loads(s["notes"] or "{}") or {} for s in d.steps}
    cap_opt = {(c["case_key"], c["step_key"]): c["option"] for c in d.captures if c["option"]}
    panels = []
    for (case_key, step_key), ms in by_step.items():
        name = cap_opt.get((case_key, step_key)) or notes.get((case_key, step_key), {}).get("option")
        unit = next(iter(ms.values()))["unit"]
        try:
            opt = get_option(name) if name else next(o for o in OPTIONS.values() if o.unit == unit)
        except (ValueError, StopIteration):
            sec.remarks.append(f"{case_key} {step_key}: interface option unknown; levels not drawn")
            continue
        mk, sp = ms.get("mark_level"), ms.get("space_level")
        title = case_key if step_key == "rep=0" else f"{case_key} {step_key}"
        panels.append(plots.LevelsPanel(title, opt, mk and mk["value"], sp and sp["value"],
                                        not mk or mk["verdict"] != FAIL, not sp or sp["verdict"] != FAIL))
    if panels:
        sec.figures.append(Figure(plots.levels_figure(panels), "mark and space levels against their limits",
                                  "; ".join(f"{p.title}: mark {format_number(p.mark)}, space {format_number(p.space)} {p.opt.unit}"
                                            for p in panels), wide=len(panels) > 1))
    else:
        sec.note = "No mark or space level was measured in this run."
    return sec


def _tr_section(d: _RunData) -> PlotSection:
    t = d.profile.timing
    tr_min = t.tr_min_for(d.profile.identification.manufacturer) / 1e6
    tr_max = t.tr_max_ns / 1e6
    sec = PlotSection("plot-tr", "Reaction time tr",
                      "The reaction time of every recorded exchange (end of request to start of answer), one "
                      "colour per interface, with the profile's tr limits and the percentiles p50, p90, p99.")
    series: dict[str, list] = {}
    benches = {e["bench"] for e in d.exchanges}
    for e in d.exchanges:
        iface = d.bench_interface(e["bench"]) or "interface unknown"
        key = iface if len(benches) == 1 or len({d.bench_interface(b) for b in benches}) == len(benches) \
            else f"{iface} (bench {e['bench']})"
        series.setdefault(key, []).append(e["tr_ns"] / 1e6)
    if not series:
        sec.note = "No exchange with a reaction time was recorded in this run."
        return sec
    arrays = {k: np.asarray(v) for k, v in series.items()}
    allv = np.concatenate(list(arrays.values()))
    pct = _percentiles(allv)
    png = plots.histogram_figure(arrays, "ms", "tr (ms)", "reaction time of the recorded exchanges",
                                 [("tr_min", tr_min), ("tr_max", tr_max)], marks=pct)
    src = d.profile.basis("timing.tr_min_fast" if tr_min * 1e6 == t.tr_min_fast_ns else "timing.tr_min",
                          "timing.tr_max")
    sec.figures.append(Figure(png, "histogram of reaction times",
                              f"{_stats(allv, 'ms')}; " + ", ".join(f"{k} {v:.4g}" for k, v in pct)
                              + f" ms; limits tr_min {tr_min:g} ms, tr_max {tr_max:g} ms ({src})"
                              + (f"; {d.profile_note}" if d.profile_note else "")))
    return sec


def _execution_section(d: _RunData) -> PlotSection:
    sec = PlotSection("plot-execution", "Token execution time",
                      "From writing TokenData to the first tokenStatus other than Not ready, with its limit and "
                      "the percentiles p50, p90, p99.")
    vals, lows, highs = [], set(), set()
    for m in d.measurements:
        if m["name"] in EXECUTION_NAMES and m["value"] is not None:
            k = 1000.0 if m["unit"] == "s" else 1.0
            vals.append(m["value"] * k)
            if m["low"] is not None:
                lows.add(m["low"] * k)
            if m["high"] is not None:
                highs.add(m["high"] * k)
    if not vals:
        sec.note = "No token was executed in this run."
        return sec
    if not highs:
        highs.add(d.profile.timing.execution_limit_ns / 1e6)
    limits = [("low limit", v) for v in sorted(lows) if v > 0] + [("execution limit", v) for v in sorted(highs)]
    v = np.asarray(vals)
    pct = _percentiles(v)
    png = plots.histogram_figure({"": v}, "ms", "execution time (ms)", "token execution time", limits,
                                 bins=min(40, max(10, len(v))), marks=pct)
    sec.figures.append(Figure(png, "histogram of token execution times",
                              f"{_stats(v, 'ms')}; " + ", ".join(f"{k} {x:.4g}" for k, x in pct)
                              + f" ms; limit {', '.join(f'{h:g}' for h in sorted(highs))} ms "
                              f"({d.profile.basis('timing.execution_limit')})"))
    return sec


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _sweep_section(d: _RunData) -> PlotSection:
    series = sweep_series(d)
    sec = PlotSection("plot-sweeps", "Sweeps: outcome against the swept value",
                      "For each swept case, the rate of exchanges that went through at the first try (and with "
                      "repeats) at each amount, or, where a step measures no rate, the share of its steps that "
                      "passed at each value; the failure threshold and the amount the plan requires to work are "
                      "marked. Steps not run (a stop condition) and steps that could not be carried out are "
                      "marked apart, above the plot: they measured nothing.")
    if not series:
        sec.note = "No case in this run swept a parameter."
        return sec
    sec.figures.append(Figure(plots.sweeps_figure(series), "outcome against the swept value", "; ".join(
        (f"{s.title}: fails at {format_number(s.threshold)} {s.unit}".rstrip() if s.categories is None else
         f"{s.title}: " + (f"every step passed at all {len(s.x)} values" if all(y >= 1 for y in s.success) else
                           f"failed steps at {sum(1 for y in s.success if y < 1)} of {len(s.x)} values"))
        + (f", {len(s.not_run)} not run" if s.not_run else "") + (f", {len(s.errors)} could not be carried out"
                                                                  if s.errors else "")
        for s in series), wide=len(series) > 1))
    return sec


def sweep_series(d: _RunData) -> list:
    """One rig.campaign.plots.SweepSeries per swept case (and per value of its other swept
    parameters): the first swept parameter on x (numbers as they are, names by their position in the
    plan), y the success rate its steps measured, else the share of its steps that passed; steps
    not run and steps that could not be carried out apart (they measured nothing)."""
    meas: dict[tuple, dict] = {}
    for m in d.measurements:
        meas.setdefault((m["case_key"], m["step_key"]), {})[m["name"]] = m
    planned = {}
    if d.plan is not None:
        planned = {spec.key: spec.steps() for spec in d.plan.cases}
    series = []
    for case in d.cases:
        steps = [s for s in d.steps if s["case_key"] == case["key"] and s["key"] != "summary"]
        spec_steps = planned.get(case["key"], [])
        keys = [k for k, _ in spec_steps] or [s["key"] for s in steps]
        dims = [p.split("=", 1)[0] for p in (keys[0].split(",") if keys else []) if "=" in p]
        dims = [n for n in dims if n != "rep"]
        if not dims:
            continue
        x_name = dims[0]
        order = []                                  # the swept values in the plan's order
        for _, p in spec_steps:
            if x_name in p and p[x_name] not in order:
                order.append(p[x_name])
        for s in steps:
            v = json.loads(s["params"] or "{}").get(x_name)
            if v is not None and v not in order:
                order.append(v)
        numeric = all(_is_number(v) for v in order)
        pos = (lambda v: float(v)) if numeric else (lambda v: float(order.index(v)))
        groups: dict[tuple, dict[float, list]] = {}
        errors: dict[tuple, set] = {}
        rated = any("success_rate" in meas.get((case["key"], s["key"]), {}) for s in steps)
        for s in steps:
            p = json.loads(s["params"] or "{}")
            if x_name not in p:
                continue
            other = tuple((n, p.get(n)) for n in dims[1:])
            ms = meas.get((case["key"], s["key"]), {})
            succ, comp = ms.get("success_rate"), ms.get("completion_rate")
            if s["verdict"] == ERROR or (rated and (succ is None or succ["value"] is None)):
                errors.setdefault(other, set()).add(pos(p[x_name]))     # measured nothing
                groups.setdefault(other, {})
                continue
            y = succ["value"] if succ else (1.0 if is_ok(s["verdict"]) else 0.0)
            groups.setdefault(other, {}).setdefault(pos(p[x_name]), []).append((y, comp["value"] if comp else None))
        summary = meas.get((case["key"], "summary"), {})
        thr = summary.get("failure threshold")
        params = json.loads(case["params"] or "{}")
        must = params.get("must_work_at")
        recorded = {s["key"] for s in steps}
        not_run = sorted({pos(p[x_name]) for k, p in spec_steps if k not in recorded and x_name in p})
        amount_unit = next((m["unit"] for (ck, _), ms in meas.items() if ck == case["key"]
                            for n, m in ms.items() if n == x_name), "")
        quantity = params.get("quantity", x_name) if x_name == "amount" else x_name
        for other, pts in groups.items():
            xs = sorted(pts)
            title = case["key"] + ("" if not other else " (" + ", ".join(f"{n}={v}" for n, v in other) + ")")
            comps = [[c for _, c in pts[x] if c is not None] for x in xs]
            series.append(plots.SweepSeries(
                title, str(quantity), amount_unit, xs, [float(np.mean([y for y, _ in pts[x]])) for x in xs],
                [float(np.mean(c)) if c else None for c in comps],
                threshold=thr["value"] if numeric and thr and thr["value"] is not None else None,
                must_work_at=must if numeric and _is_number(must) and must >= 0 else None,
                not_run=not_run, errors=sorted(errors.get(other, ())),
                categories=None if numeric else [str(v) for v in order],
                rate="success rate" if rated else "steps passed"))
    return series


def plot_sections(store: Store, run_id: int) -> list[PlotSection]:
    """The report's plot sections of a run, in PLOT_SECTIONS order."""
    d = _RunData(store, run_id)
    bw, jit = _timing_sections(d)
    return [_eye_section(d), bw, jit, _levels_section(d), _tr_section(d), _execution_section(d), _sweep_section(d)]


# --- the page ----------------------------------------------------------------------------------------
def _lim(v) -> str:
    return "" if v is None else format_number(v)


def _json_text(v) -> str:
    return json.dumps(v, ensure_ascii=False, default=str)


def _when(t) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def _env():
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(("html", "j2")),
                      undefined=StrictUndefined, trim_blocks=False, lstrip_blocks=False)
    env.filters.update(num=format_number, lim=_lim, tojson_text=_json_text)
    return env


def _failures(cases: list[dict]) -> list[dict]:
    """The summary's failure rows: the first MAX_FAILURES_HTML of each case, then how many more."""
    out = []
    for c in cases:
        for f in c["failures"][:MAX_FAILURES_HTML]:
            out.append({"case": c["case"], "more": 0, "error": f.get("error"), **f})
        if len(c["failures"]) > MAX_FAILURES_HTML:
            out.append({"case": c["case"], "more": len(c["failures"]) - MAX_FAILURES_HTML, "error": None})
    return out


def _case_view(store: Store, case: dict, c: dict) -> dict:
    rows, excerpts = [], []
    for step in store.steps(case["id"]):
        ms = store.measurements(step["id"])
        n = len(ms) + (1 if step["error"] else 0)
        if n:
            rows.append({"key": step["key"], "n": n, "error": step["error"], "measurements": ms})
        if step["verdict"] in (FAIL, ERROR):
            shown, more, failed = failed_exchanges(store, step["id"])
            if shown:
                excerpts.append({"title": f"{'Failed exchanges' if failed else 'Exchanges'} of the "
                                          f"{step['verdict']} step {step['key']}" + (" (the first ones)" if more else ""),
                                 "text": excerpt_text(store, step["id"], ellipsis="…")})
    verdict = c["verdict"] or c["status"]
    return {**c, "verdict": verdict, "title": case["title"], "rows": rows, "excerpts": excerpts,
            "open": verdict in (FAIL, ERROR)}


def _record_view(record: dict) -> dict:
    duts = []
    for key, v in record.items():
        if key.startswith("dut."):
            for ident in (v if isinstance(v, list) else [v]):
                duts.append({"bench": key[4:], "IDResponse": "", "FOIN": "", "softwareVersion": "", "read": "",
                             "emulated": "", "note": "", **ident})
    benches = [{"name": k[6:], "kind": "", "role": "", "interface": "", "policy": "", "port": "", "bench_config": "",
                "probes": {}, "probe_gain": None, "instruments": [], "error": "", **v}
               for k, v in record.items() if k.startswith("bench.")]
    for b in benches:
        b["instruments"] = [{"option": "", "channel": None, "virtual": False, "resource": "", "idn": "", **i}
                            for i in b["instruments"]]
    plan = {"path": "", "profile_file": None, "profile_overrides": {}, "cases": {}, **(record.get("plan") or {})}
    profile = record.get("profile") or {}
    rig_runs = [{"started": "", "version": "", "python": "", "host": "", "platform": "", "command": "", **r}
                for r in record.get("rig") or []]
    return {"duts": duts, "benches": benches, "plan": plan, "profile_diff": profile.get("differences", []),
            "rig_runs": rig_runs}


def _time_view(record: dict) -> dict | None:
    rows, total, executions = time_rows(record)
    if not rows:
        return None
    pct = {r["name"]: r["s"] / total * 100 for r in rows}
    waits = sum(r["s"] for r in rows if r["sub"]) / total * 100
    view_rows = [{"name": r["name"], "s": r["s"], "pct": r["s"] / total * 100,
                  "cls": "sub" if r["sub"] else ""} for r in rows]
    return {"rows": view_rows, "executions": executions, "line_pct": pct.get(LINE, 0.0), "waits_pct": waits,
            "instruments_pct": pct.get(ACQUISITION, 0.0), "overhead_pct": pct.get(OVERHEAD, 0.0)}


def render_html(store: Store, run_id: int) -> str:
    """The report of one run as one HTML document."""
    s = run_summary(store, run_id)
    row = store.run(run_id)
    status = s["status"]
    if status == "running" and not is_alive(row):
        status = "interrupted"
    sections = plot_sections(store, run_id)
    record = store.record(run_id)
    took = (s["finished_at"] - s["started_at"]) if s["finished_at"] else None
    verdict = s["verdict"] or ("-" if status == "done" else status)
    meta = [("plan", s["plan_path"] or s["name"]), ("status", status), ("started", _when(s["started_at"])),
            ("finished", _when(s["finished_at"])), ("took", f"{took:.1f} s" if took is not None else "-"),
            ("host", s["host"] or "-"), ("store", s["store"])]
    if s.get("note"):
        meta.append(("note", s["note"]))
    cases = [_case_view(store, case, c) for case, c in zip(store.cases(run_id), s["cases"])]
    clauses: dict[str, list] = {}
    for c in cases:
        clauses.setdefault(c["clause"] or "(no clause)", []).append(c)
    clause_rows = []
    for clause in sorted(clauses, key=clause_order):
        cs = clauses[clause]
        clause_rows.append({"clause": clause, "verdict": combine_finished(c["verdict"] for c in cs), "n": len(cs),
                            "counts": [sum(1 for c in cs if c["verdict"] == x) for x in VERDICTS]})
    counts = [(v, sum(1 for c in cases if c["verdict"] == v)) for v in VERDICTS]
    page = dict(
        title=f"rig run {run_id}: {s['name']}", verdict=verdict, meta=meta, sections=sections, cases=cases,
        counts=counts, other=len(cases) - sum(n for _, n in counts), verdict_names=VERDICTS, clauses=clause_rows,
        failures=_failures(s["cases"]), benchmarks=benchmark_rows(store, run_id),
        standins=sum(1 for c in cases if c["stand_in"]), record=record, time=_time_view(record),
        css=(TEMPLATES / "report.css").read_text(encoding="utf-8"), version=getattr(rig, "__version__", ""),
        made=_when(time.time()), store=s["store"], run_id=run_id, **_record_view(record))
    return _env().get_template("report.html.j2").render(page) + "\n"


def _writable(path: Path) -> Path:
    """Check that path can be written before the work of making the report; a temporary file next to it."""
    if path.is_dir():
        raise ReportError(f"cannot write the report to {path}: it is a directory")
    try:
        if path.parent != Path(""):
            path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb"):
            pass
    except OSError as e:
        raise ReportError(f"cannot write the report to {path}: {e.strerror or e}") from None
    return tmp


def write_report(store: Store, run_id: int, path: str | os.PathLike[str]) -> Path:
    """Write the HTML report of a run to path (whole: a temporary file, renamed)."""
    path = Path(path)
    store.run(run_id)           # StoreError naming the run and the store before anything else
    tmp = _writable(path)
    try:
        tmp.write_text(render_html(store, run_id), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        raise ReportError(f"cannot write the report to {path}: {e.strerror or e}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
