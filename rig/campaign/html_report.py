"""`rig report RUN`: one self-contained HTML file per stored run.

    path = write_report(store, run_id, "rig-run-2.html")

Everything is in the file (styles inline, plots as base64 PNG, no script, no external URL), so it
can be mailed, attached to a CI job or opened years later. It holds:

- a summary: the run (plan, status, verdict, times, host, store), verdicts by clause and by case,
  and every failed measurement with its limits;
- plots (rig.campaign.plots), each in a section with a fixed id; a plot with no data in the run is
  left out with a one-line note:
  ``plot-eye`` eye diagrams of the stored captures over the interface option's limit mask,
  ``plot-bit-width`` and ``plot-jitter`` from decoding the captures, ``plot-levels`` mark and space
  levels against the option's limits and receiver thresholds, ``plot-tr`` the reaction times of the
  recorded exchanges with the profile's tr limits, ``plot-execution`` token execution times with
  their limit, ``plot-sweeps`` success rate against the amount of each swept disturbance;
- the measurements of every case, step by step, with limits and verdicts (failed rows
  highlighted), and the exchanges that failed.

The run's profile (for the tr limits) is the one its stored plan names; the summary itself comes
from rig.campaign.report.run_summary.
"""
from __future__ import annotations

import base64
import html
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rig.campaign.report import clause_order, run_summary
from rig.campaign.store import ERROR, Store, combine, is_alive
from rig.measurement import FAIL, PASS

PLOT_SECTIONS = ("plot-eye", "plot-bit-width", "plot-jitter", "plot-levels", "plot-tr", "plot-execution",
                 "plot-sweeps")
EXECUTION_NAMES = ("message execution time", "execution")
NO_CAPTURE = "No capture is stored with this run's steps (the electrical levels cases store scope captures)."
MAX_EYES = 24          # eye diagrams drawn; the captures beyond are named in a note


class ReportError(Exception):
    """A report that cannot be made or written; the message names what and where."""


def default_out(run_id: int) -> str:
    return f"rig-run-{run_id}.html"


# --- plot sections -----------------------------------------------------------------------------------
@dataclass
class Figure:
    png: bytes
    alt: str
    caption: str = ""
    wide: bool = False                 # several panels: the whole width of the page


@dataclass
class PlotSection:
    id: str
    title: str
    about: str
    figures: list[Figure] = field(default_factory=list)
    note: str = ""                     # why there is no plot (no data in this run)
    remarks: list[str] = field(default_factory=list)   # captures that could not be used, and why


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
        self.exchanges = [dict(r) for r in store.db.execute(
            "SELECT c.key AS case_key, c.bench, e.name, e.tr_ns FROM exchanges e JOIN steps s ON e.step_id=s.id "
            "JOIN cases c ON s.case_id=c.id WHERE c.run_id=? AND e.tr_ns IS NOT NULL "
            "ORDER BY c.position, s.position, e.seq", (run_id,))]
        self.decoded = []              # (capture row, samples, DecodeResult)
        self.capture_remarks = []
        self._decode()

    def _decode(self) -> None:
        from rig.physical.analysis import decode
        from rig.physical.options import get_option
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
                res = decode(samples, rate, opt.name, keep_edges=True)
            except Exception as e:  # noqa: BLE001 - one bad capture must not lose the report
                self.capture_remarks.append(f"{where}: cannot be decoded: {type(e).__name__}: {e}")
                continue
            if not len(res.chars):
                self.capture_remarks.append(f"{where}: no character decoded")
                continue
            self.decoded.append((c, samples, res))

    def label(self, c: dict) -> str:
        """A capture, short: its case and step, and which of the step's captures (the direction in
        its name, e.g. "(to_meter)", or its name)."""
        same_step = [x for x in self.captures if x["case_key"] == c["case_key"] and x["step_key"] == c["step_key"]]
        label = c["case_key"] if c["step_key"] in ("rep=0", "") else f"{c['case_key']} {c['step_key']}"
        if len(same_step) == 1:
            return label
        m = re.search(r"\(([^)]*)\)", c["name"] or "")
        return f"{label} ({m.group(1)})" if m else f"{label}: {c['name']}"


def _run_profile(row, run_id: int):
    """(profile, note, plan): the profile the run's stored plan names, else the default one."""
    from rig.campaign.plan import load_plan
    from rig.profile import load_profile
    try:
        plan = load_plan(row["plan_path"] or f"run-{run_id}.toml", text=row["plan_text"], base_dir=row["plan_dir"])
        return plan.load_profile(), "", plan
    except Exception as e:  # noqa: BLE001 - the report still shows what was stored
        return load_profile(), (f"the run's plan could not be read again ({e}); the default profile's "
                                "limits are shown"), None


def _stats(v: np.ndarray, unit: str, digits: int = 4) -> str:
    if not len(v):
        return ""
    return (f"n {len(v)}, min {v.min():.{digits}g}, median {np.median(v):.{digits}g}, "
            f"max {v.max():.{digits}g} {unit}").rstrip()


def _eye_section(d: _RunData) -> PlotSection:
    from rig.campaign import plots
    sec = PlotSection("plot-eye", "Eye diagrams",
                      "Every bit of every decoded character of each stored capture, folded on its character's "
                      "bit period, over the interface option's limit mask (red: no trace may enter).")
    for c, samples, res in d.decoded[:MAX_EYES]:
        x, traces = plots.eye_traces(samples, res)
        if not len(traces):
            sec.remarks.append(f"capture {c['id']} ({d.label(c)}): no whole bit inside the capture")
            continue
        png, hits, mask_text = plots.eye_figure(x, traces, res.option, d.label(c), res.baud)
        sec.figures.append(Figure(png, f"eye diagram of {d.label(c)}",
                                  f"{d.label(c)} — {res.option.name}, {len(res.chars)} characters, "
                                  f"{c['sample_rate'] / 1e6:g} MS/s; {mask_text}; "
                                  f"{'no trace in the mask' if hits == 0 else f'{hits} trace(s) in the mask'}"))
    if len(d.decoded) > MAX_EYES:
        sec.remarks.append(f"{len(d.decoded) - MAX_EYES} more capture(s) not drawn (the first {MAX_EYES} are), "
                           f"from {d.label(d.decoded[MAX_EYES][0])} on")
    sec.remarks += d.capture_remarks
    if not sec.figures:
        sec.note = (NO_CAPTURE if not d.captures else
                    "No capture in this run could be drawn (see below).")
    return sec


def _timing_sections(d: _RunData) -> tuple[PlotSection, PlotSection]:
    from rig.campaign import plots
    bw = PlotSection("plot-bit-width", "Bit widths",
                     "Each run of equal bits between two edges of a character, divided by its number of bits, "
                     "in nominal bit times (UI), with the option's limits.")
    jit = PlotSection("plot-jitter", "Jitter",
                      "Each edge's deviation from the straight line fitted through its character's edges, in UI, "
                      "with the option's jitter_peak limit.")
    widths, jitter = {}, {}
    lim_w, lim_j = {}, {}
    for c, _samples, res in d.decoded:
        t = plots.bit_timing(res)
        if len(t.widths_ui):
            widths.setdefault(c["case_key"], []).append(t.widths_ui)
            lim_w.update({"bit_width_min": res.option.limits["bit_width_min"].low,
                          "bit_width_max": res.option.limits["bit_width_max"].high})
        if len(t.jitter_ui):
            jitter.setdefault(c["case_key"], []).append(t.jitter_ui)
            pk = res.option.limits["jitter_peak"].high
            lim_j.update({"-jitter_peak": -pk, "jitter_peak": pk})
    widths = {k: np.concatenate(v) for k, v in widths.items()}     # one series per case
    jitter = {k: np.concatenate(v) for k, v in jitter.items()}
    if widths:
        allw = np.concatenate(list(widths.values()))
        png = plots.histogram_figure(widths, "UI", "bit width (UI)", "bit widths of the decoded captures",
                                     list(lim_w.items()), bins=61, fixed_range=(0.8, 1.2))
        bw.figures.append(Figure(png, "histogram of bit widths", _stats(allw, "UI")))
    else:
        bw.note = NO_CAPTURE if not d.captures else "No bit widths: no decoded capture with two edges in a character."
    if jitter:
        allj = np.concatenate(list(jitter.values()))
        rms = float(np.sqrt(np.mean(allj ** 2)))
        png = plots.histogram_figure(jitter, "UI", "edge deviation from the fitted bit grid (UI)",
                                     "jitter of the decoded captures", list(lim_j.items()), bins=61,
                                     fixed_range=(-0.2, 0.2))
        jit.figures.append(Figure(png, "histogram of edge jitter",
                                  f"{len(allj)} edges, rms {rms:.3g} UI, peak {np.abs(allj).max():.3g} UI"))
    else:
        jit.note = NO_CAPTURE if not d.captures else "No jitter: no decoded capture with two edges in a character."
    for sec in (bw, jit):
        sec.remarks += d.capture_remarks
    return bw, jit


def _levels_section(d: _RunData) -> PlotSection:
    from rig.campaign import plots
    from rig.physical.options import OPTIONS, get_option
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
                                  "; ".join(f"{p.title}: mark {_num(p.mark)}, space {_num(p.space)} {p.opt.unit}"
                                            for p in panels), wide=len(panels) > 1))
    else:
        sec.note = "No mark or space level was measured in this run."
    return sec


def _tr_section(d: _RunData) -> PlotSection:
    from rig.campaign import plots
    t = d.profile.timing
    tr_min = t.tr_min_for(d.profile.identification.manufacturer) / 1e6
    tr_max = t.tr_max_ns / 1e6
    sec = PlotSection("plot-tr", "Reaction time tr",
                      "The reaction time of every recorded exchange (end of request to start of answer), "
                      "with the profile's tr limits.")
    series: dict[str, list] = {}
    for e in d.exchanges:
        series.setdefault(f"bench {e['bench']}", []).append(e["tr_ns"] / 1e6)
    if not series:
        sec.note = "No exchange with a reaction time was recorded in this run."
        return sec
    if len(series) == 1:
        series = {"": next(iter(series.values()))}
    arrays = {k: np.asarray(v) for k, v in series.items()}
    allv = np.concatenate(list(arrays.values()))
    png = plots.histogram_figure(arrays, "ms", "tr (ms)", "reaction time of the recorded exchanges",
                                 [("tr_min", tr_min), ("tr_max", tr_max)])
    src = d.profile.source("timing.tr_max")
    sec.figures.append(Figure(png, "histogram of reaction times",
                              f"{_stats(allv, 'ms')}; limits tr_min {tr_min:g} ms, tr_max {tr_max:g} ms ({src})"
                              + (f"; {d.profile_note}" if d.profile_note else "")))
    return sec


def _execution_section(d: _RunData) -> PlotSection:
    from rig.campaign import plots
    sec = PlotSection("plot-execution", "Token execution time",
                      "From writing TokenData to the first tokenStatus other than Not ready, with its limit.")
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
    png = plots.histogram_figure({"": v}, "ms", "execution time (ms)", "token execution time", limits,
                                 bins=min(40, max(10, len(v))))
    sec.figures.append(Figure(png, "histogram of token execution times",
                              f"{_stats(v, 'ms')}; limit {', '.join(f'{h:g}' for h in sorted(highs))} ms"))
    return sec


def _sweep_section(d: _RunData) -> PlotSection:
    from rig.campaign import plots
    sec = PlotSection("plot-sweeps", "Sweeps: success rate against the disturbance",
                      "For each swept case, the rate of exchanges that went through at the first try "
                      "(and with repeats) at each amount; the failure threshold and the amount the plan "
                      "requires to work are marked.")
    meas: dict[tuple, dict] = {}
    for m in d.measurements:
        meas.setdefault((m["case_key"], m["step_key"]), {})[m["name"]] = m
    planned = {}
    if d.plan is not None:
        planned = {spec.key: spec.steps() for spec in d.plan.cases}
    series = []
    for case in d.cases:
        steps = [s for s in d.steps if s["case_key"] == case["key"] and s["key"] != "summary"]
        dims = [p.split("=", 1)[0] for p in (steps[0]["key"].split(",") if steps else []) if "=" in p]
        dims = [n for n in dims if n != "rep"]
        if not dims:
            continue
        x_name = dims[0]
        groups: dict[tuple, dict[float, list]] = {}
        for s in steps:
            p = json.loads(s["params"] or "{}")
            if x_name not in p:
                continue
            other = tuple((n, p.get(n)) for n in dims[1:])
            ms = meas.get((case["key"], s["key"]), {})
            succ = ms.get("success_rate")
            comp = ms.get("completion_rate")
            y = succ["value"] if succ else (1.0 if s["verdict"] == PASS else 0.0)
            groups.setdefault(other, {}).setdefault(float(p[x_name]), []).append(
                (y, comp["value"] if comp else None))
        summary = meas.get((case["key"], "summary"), {})
        thr = summary.get("failure threshold")
        params = json.loads(case["params"] or "{}")
        must = params.get("must_work_at")
        recorded = {s["key"] for s in steps}
        not_run = sorted({float(p[x_name]) for k, p in planned.get(case["key"], []) if k not in recorded and x_name in p})
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
                threshold=thr["value"] if thr and thr["value"] is not None else None,
                must_work_at=must if isinstance(must, (int, float)) and must >= 0 else None,
                not_run=not_run))
    if not series:
        sec.note = "No case in this run swept a parameter."
        return sec
    sec.figures.append(Figure(plots.sweeps_figure(series), "success rate against the swept amount",
                              "; ".join(f"{s.title}: fails at {_num(s.threshold)} {s.unit}".rstrip()
                                        for s in series), wide=len(series) > 1))
    return sec


def plot_sections(store: Store, run_id: int) -> list[PlotSection]:
    d = _RunData(store, run_id)
    bw, jit = _timing_sections(d)
    return [_eye_section(d), bw, jit, _levels_section(d), _tr_section(d), _execution_section(d), _sweep_section(d)]


# --- HTML --------------------------------------------------------------------------------------------
_CSS = """
:root { --pass: #1b7f3b; --fail: #c62828; --error: #e65100; --skip: #757575; --line: #d9dde3; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1d2329;
       margin: 0; background: #f6f7f9; }
header { background: #23303d; color: #fff; padding: 18px 28px 14px; }
header h1 { margin: 0 0 6px; font-size: 22px; font-weight: 600; }
header .meta { display: flex; flex-wrap: wrap; gap: 4px 22px; font-size: 13px; color: #cfd8e0; }
header .meta b { color: #fff; font-weight: 600; }
nav { background: #fff; border-bottom: 1px solid var(--line); padding: 8px 28px; position: sticky; top: 0; z-index: 2; }
nav a { margin-right: 16px; color: #23507a; text-decoration: none; font-size: 13px; }
nav a:hover { text-decoration: underline; }
main { padding: 8px 28px 40px; max-width: 1500px; }
section { margin-top: 18px; }
h2 { font-size: 18px; margin: 22px 0 10px; border-bottom: 2px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
p.about { margin: 0 0 8px; color: #4a5560; font-size: 13px; }
p.note { margin: 4px 0; color: #5f6b76; font-style: italic; }
ul.remarks { margin: 4px 0; color: #8a5a00; font-size: 12.5px; }
table { border-collapse: collapse; background: #fff; font-size: 13px; margin: 4px 0 10px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #eef1f4; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.fail td { background: #fde7e7; }
td.step { background: #fafbfc !important; font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }
tr.first td { border-top: 2px solid #b8c0c8; }
tr.error td { background: #fff0e0; }
tr.fail td.verdict, tr.error td.verdict { font-weight: 700; }
.badge { display: inline-block; min-width: 44px; text-align: center; padding: 1px 7px; border-radius: 10px;
         font-size: 12px; font-weight: 600; color: #fff; background: var(--skip); }
.badge.pass { background: var(--pass); } .badge.fail { background: var(--fail); }
.badge.error { background: var(--error); }
.big { font-size: 15px; padding: 3px 14px; }
.counts span { margin-right: 14px; font-weight: 600; }
.counts .pass { color: var(--pass); } .counts .fail { color: var(--fail); } .counts .error { color: var(--error); }
.counts .zero { color: var(--skip); font-weight: 400; }
.badge.info { background: transparent; color: var(--skip); font-weight: 400; }
#plots > .sections { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 0 22px; }
#plots section.wide { grid-column: 1 / -1; }
figure.wide { grid-column: 1 / -1; justify-self: start; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 14px; }
figure { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption { font-size: 12px; color: #4a5560; margin-top: 4px; }
details { background: #fff; border: 1px solid var(--line); border-radius: 6px; margin: 8px 0; padding: 4px 10px; }
details > summary { cursor: pointer; padding: 4px 0; font-weight: 600; }
details > summary .clause { font-weight: 400; color: #4a5560; margin-left: 8px; }
pre { background: #f3f4f6; padding: 6px 8px; font-size: 12px; overflow-x: auto; white-space: pre-wrap; }
footer { color: #6b7680; font-size: 12px; padding: 0 28px 24px; }
"""


def _e(v) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def _num(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "NaN" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def _lim(v) -> str:
    return "" if v is None else _num(v)


def _badge(verdict: str | None, big: bool = False) -> str:
    v = verdict or "-"
    return f'<span class="badge {_e(v)}{" big" if big else ""}">{_e(v)}</span>'


def _when(t) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def _img(fig: Figure) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    cls = ' class="wide"' if fig.wide else ""
    return (f'<figure{cls}><img src="data:image/png;base64,{data}" alt="{_e(fig.alt)}">'
            f'<figcaption>{_e(fig.caption)}</figcaption></figure>')


def _summary_html(s: dict, run_id: int) -> str:
    cases = s["cases"]
    counts = {v: sum(1 for c in cases if c["verdict"] == v) for v in (PASS, FAIL, ERROR)}
    other = len(cases) - sum(counts.values())
    out = ['<section id="summary"><h2>Summary</h2>',
           f'<p class="counts">{len(cases)} case(s): '
           + "".join(f'<span class="{v}{"" if counts[v] else " zero"}">{counts[v]} {v}</span>'
                     for v in (PASS, FAIL, ERROR))
           + (f'<span>{other} not finished</span>' if other else "") + "</p>"]
    clauses: dict[str, list] = {}
    for c in cases:
        clauses.setdefault(c["clause"] or "(no clause)", []).append(c)
    out.append('<h3>By clause</h3><table id="summary-clauses"><thead><tr><th>clause</th><th>verdict</th>'
               '<th>cases</th><th>pass</th><th>fail</th><th>error</th></tr></thead><tbody>')
    for clause in sorted(clauses, key=clause_order):
        cs = clauses[clause]
        v = combine(c["verdict"] for c in cs) if all(c["verdict"] for c in cs) else "incomplete"
        out.append(f'<tr class="{_e(v)}"><td>{_e(clause)}</td><td class="verdict">{_badge(v)}</td>'
                   f'<td class="num">{len(cs)}</td>'
                   + "".join(f'<td class="num">{sum(1 for c in cs if c["verdict"] == x)}</td>'
                             for x in (PASS, FAIL, ERROR)) + "</tr>")
    out.append("</tbody></table>")
    out.append('<h3>By case</h3><table id="summary-cases"><thead><tr><th>verdict</th><th>case</th><th>clause</th>'
               '<th>steps</th><th>failed</th><th>stopped</th></tr></thead><tbody>')
    for i, c in enumerate(cases):
        v = c["verdict"] or c["status"]
        out.append(f'<tr class="{_e(v)}"><td class="verdict">{_badge(v)}</td>'
                   f'<td><a href="#case-{i}">{_e(c["case"])}</a></td><td>{_e(c["clause"])}</td>'
                   f'<td class="num">{c["steps"]}/{c["planned_steps"] or "?"}</td>'
                   f'<td class="num">{len(c["failures"])}</td><td>{_e(c["stop_reason"] or "")}</td></tr>')
    out.append("</tbody></table>")
    failures = [(c, f) for c in cases for f in c["failures"]]
    out.append('<h3 id="failures">Failures</h3>')
    if not failures:
        out.append('<p class="note">No measurement failed and every step could be carried out.</p>')
    else:
        out.append('<table id="failures-table"><thead><tr><th>case</th><th>step</th><th>measurement</th>'
                   '<th>value</th><th>unit</th><th>low</th><th>high</th><th>basis</th></tr></thead><tbody>')
        for c, f in failures:
            if "error" in f:
                out.append(f'<tr class="error"><td>{_e(c["case"])}</td><td>{_e(f["step"])}</td>'
                           f'<td colspan="6">error: {_e(f["error"])}</td></tr>')
            else:
                out.append(f'<tr class="fail"><td>{_e(c["case"])}</td><td>{_e(f["step"])}</td><td>{_e(f["name"])}</td>'
                           f'<td class="num">{_e(_num(f["value"]))}</td><td>{_e(f["unit"])}</td>'
                           f'<td class="num">{_e(_lim(f["low"]))}</td><td class="num">{_e(_lim(f["high"]))}</td>'
                           f'<td>{_e(f["basis"])}</td></tr>')
        out.append("</tbody></table>")
    out.append("</section>")
    return "".join(out)


def _plots_html(sections: list[PlotSection]) -> str:
    out = ['<section id="plots"><h2>Plots</h2><div class="sections">']
    for sec in sections:
        wide = len(sec.figures) > 1 or any(f.wide for f in sec.figures)
        cls = "plot" + (" nodata" if not sec.figures else "") + (" wide" if wide else "")
        out.append(f'<section id="{sec.id}" class="{cls}">'
                   f'<h3>{_e(sec.title)}</h3><p class="about">{_e(sec.about)}</p>')
        if sec.figures:
            out.append('<div class="grid">' + "".join(_img(f) for f in sec.figures) + "</div>")
        else:
            out.append(f'<p class="note">{_e(sec.note)}</p>')
        if sec.remarks:
            out.append('<ul class="remarks">' + "".join(f"<li>{_e(r)}</li>" for r in sec.remarks) + "</ul>")
        out.append("</section>")
    out.append("</div></section>")
    return "".join(out)


def _measurements_html(store: Store, run_id: int, s: dict) -> str:
    from rig.junit import exchange_text, failing_exchanges
    out = ['<section id="measurements"><h2>Measurements</h2>'
           '<p class="about">Every step of every case with what it measured, the limits and the verdict; '
           'failed rows are highlighted. Cases that did not pass are open.</p>']
    for i, (case, c) in enumerate(zip(store.cases(run_id), s["cases"])):
        v = c["verdict"] or c["status"]
        opened = " open" if v != PASS else ""
        out.append(f'<details id="case-{i}" class="case {_e(v)}"{opened}><summary>{_badge(v)} {_e(c["case"])}'
                   f'<span class="clause">{_e(c["clause"])} — {c["steps"]}/{c["planned_steps"] or "?"} steps</span>'
                   "</summary>")
        if case["title"]:
            out.append(f'<p class="about">{_e(case["title"])}</p>')
        if c["stop_reason"]:
            out.append(f'<p class="note">stopped: {_e(c["stop_reason"])}</p>')
        rows = []
        failed_steps = []
        for step in store.steps(case["id"]):
            ms = store.measurements(step["id"])
            n = len(ms) + (1 if step["error"] else 0)
            first = f'<td class="step" rowspan="{n}">{_e(step["key"])}</td>' if n else ""
            if step["error"]:
                rows.append(f'<tr class="error first">{first}<td colspan="6">error: '
                            f'{_e(step["error"])}</td><td class="verdict">{_badge(ERROR)}</td></tr>')
                first = ""
            for m in ms:
                cls = ("fail" if m.verdict == FAIL else "") + (" first" if first else "")
                rows.append(f'<tr class="{cls.strip()}">{first}<td>{_e(m.name)}</td>'
                            f'<td class="num">{_e(_num(m.value))}</td><td>{_e(m.unit)}</td>'
                            f'<td class="num">{_e(_lim(m.low))}</td><td class="num">{_e(_lim(m.high))}</td>'
                            f'<td>{_e(m.basis)}</td><td class="verdict">{_badge(m.verdict)}</td></tr>')
                first = ""
            if step["verdict"] in (FAIL, ERROR):
                failed_steps.append(step)
        if rows:
            out.append('<table class="measurements"><thead><tr><th>step</th><th>measurement</th><th>value</th>'
                       '<th>unit</th><th>low</th><th>high</th><th>basis</th><th>verdict</th></tr></thead><tbody>'
                       + "".join(rows) + "</tbody></table>")
        else:
            out.append('<p class="note">No step recorded.</p>')
        for step in failed_steps:
            ex = failing_exchanges(store, step["id"])
            if ex:
                out.append(f'<p>Exchanges of the failed step {_e(step["key"])}:</p><pre>'
                           + _e("\n\n".join(exchange_text(e) for e in ex)) + "</pre>")
        out.append("</details>")
    out.append("</section>")
    return "".join(out)


def render_html(store: Store, run_id: int) -> str:
    """The report of one run as one HTML document."""
    import rig
    s = run_summary(store, run_id)
    row = store.run(run_id)
    status = s["status"]
    if status == "running" and not is_alive(row):
        status = "interrupted"
    sections = plot_sections(store, run_id)
    took = (s["finished_at"] - s["started_at"]) if s["finished_at"] else None
    verdict = s["verdict"] or ("-" if status == "done" else status)
    meta = [("plan", s["plan_path"] or s["name"]), ("status", status), ("started", _when(s["started_at"])),
            ("finished", _when(s["finished_at"])), ("took", f"{took:.1f} s" if took is not None else "-"),
            ("host", s["host"] or "-"), ("store", s["store"])]
    if s.get("note"):
        meta.append(("note", s["note"]))
    title = f"rig run {run_id}: {s['name']}"
    body = [f"<header><h1>{_e(title)} {_badge(verdict, big=True)}</h1><div class=\"meta\">"
            + "".join(f"<span>{_e(k)} <b>{_e(v)}</b></span>" for k, v in meta) + "</div></header>",
            '<nav><a href="#summary">Summary</a><a href="#failures">Failures</a><a href="#plots">Plots</a>'
            + "".join(f'<a href="#{sec.id}">{_e(sec.title.split(":")[0])}</a>' for sec in sections)
            + '<a href="#measurements">Measurements</a></nav><main>',
            _summary_html(s, run_id), _plots_html(sections), _measurements_html(store, run_id, s), "</main>",
            f"<footer>Made by rig {_e(getattr(rig, '__version__', ''))} at {_e(_when(time.time()))} from "
            f"{_e(s['store'])}, run {run_id}. Self-contained: no script, no external resource.</footer>"]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<link rel=\"icon\" href=\"data:,\">"
            f"<title>{_e(title)} ({_e(verdict)})</title><style>{_CSS}</style></head><body>"
            + "".join(body) + "</body></html>\n")


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
