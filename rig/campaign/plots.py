"""Plots of a stored run for the HTML report, drawn with matplotlib's Agg canvas (no pyplot, no
global state) and returned as PNG bytes.

Each ``*_figure`` function takes plain data (arrays, measurements, the interface option) and returns
PNG bytes; the HTML report (rig.campaign.html_report) pulls the data from the store and decides
what to leave out when there is none. What is computed here from a capture:

- the eye diagram: every bit of every decoded character, folded on its character's fitted bit
  period, over the option's limit mask (``eye_mask``);
- bit widths and jitter: the decoder's own values edge by edge (``bit_timing``, from the decode's
  ``fit_edges``), the ones whose extremes and rms its measurements judge: each run of equal bits
  between two edges of a character over its number of bits, in nominal bit times (UI); each edge's
  deviation from its character's grid at the decoder's bit period, in UI.
"""
from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from rig.physical.options import InterfaceOption

PASS_COLOUR = "#1b7f3b"
FAIL_COLOUR = "#c62828"
LIMIT_COLOUR = "#c62828"
MASK_COLOUR = "#e53935"
TRACE_COLOUR = "#1565c0"
PALETTE = ("#1565c0", "#ef6c00", "#2e7d32", "#6a1b9a", "#00838f", "#ad1457", "#5d4037", "#455a64")

_STYLE = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.grid": True, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False, "figure.dpi": 100,
}


# --- rendering -----------------------------------------------------------------------------------
# matplotlib (about half a second to import) is imported where a figure is drawn, never at the
# module's top: loading the report layer costs nothing until a plot is made
def _styled(fn):
    """Run a figure function in the report's matplotlib style (rcParams restored afterwards)."""
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        import matplotlib
        with matplotlib.rc_context(_STYLE):
            return fn(*a, **kw)
    return wrapper


def _figure(width: float, height: float, rows: int = 1, cols: int = 1):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False)


def _png(fig) -> bytes:
    """The figure as PNG, drawn by the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf, metadata={"Software": None})
    return buf.getvalue()


# --- what a capture decodes to ---------------------------------------------------------------------


@dataclass
class BitTiming:
    """The decoder's bit widths and jitter of one decoded capture, in UI, one value per bit run and per
    edge: their extremes and rms are its bit_width_min/max, jitter_peak and jitter_rms measurements."""
    widths_ui: np.ndarray
    jitter_ui: np.ndarray


def _char_windows(res):
    """(start sample, bit period in samples, bits per character) of each decoded character (no breaks)."""
    c = res.chars
    if not len(c):
        return np.zeros(0), np.zeros(0), res.fmt.frame_bits
    c = c[c["is_break"] == 0]
    fs = res.sample_rate
    start = c["t_start_ns"].astype(np.float64) * fs / 1e9
    period = c["bit_ns"].astype(np.float64) * fs / 1e9
    return start, period, res.fmt.frame_bits


def bit_timing(res) -> BitTiming:
    """Bit widths and jitter as the decoder measured them (rig.physical.analysis.decode with
    ``keep_edges=True``: its ``fit_edges``), in UI; nothing is worked out again here. A capture
    decoded part by part at its own speeds gives each part's values at that part's speed; one decoded
    from bit averages (heavy noise) has no edge timing, so none."""
    got = [_decoder_timing(r) for _a, _b, r in res.parts] if res.parts else [_decoder_timing(res)]
    return BitTiming(np.concatenate([g.widths_ui for g in got]), np.concatenate([g.jitter_ui for g in got]))


def _decoder_timing(res) -> BitTiming:
    """Jitter over the decoder's bit period T; bit widths over the nominal bit time (as its
    bit_width_min/max measurements)."""
    f = res.fit_edges
    if f is None or not len(f):
        return BitTiming(np.zeros(0), np.zeros(0))
    t_nom = res.sample_rate / res.nominal_baud if res.nominal_baud else res.stats["T"]
    w = f["width"][~np.isnan(f["width"])]
    return BitTiming(w / t_nom, f["jitter"] / res.stats["T"])


def eye_traces(samples: np.ndarray, res, max_traces: int = 800, points_per_ui: int = 120):
    """(x in UI from -0.5 to 1.5, traces[n, points]): each bit of each character, from half a bit
    before its start to half a bit after its end, resampled on the character's bit period."""
    starts, periods, nbits = _char_windows(res)
    x = np.linspace(-0.5, 1.5, 2 * points_per_ui + 1)
    if not len(starts):
        return x, np.zeros((0, len(x)))
    k = np.arange(nbits, dtype=np.float64)
    s = (starts[:, None] + (k[None, :] - 0.5) * periods[:, None]).ravel()
    T = np.repeat(periods, nbits)
    keep = (s >= 0) & (s + 2 * T <= len(samples) - 1)
    s, T = s[keep][:max_traces], T[keep][:max_traces]
    idx = s[:, None] + (x[None, :] + 0.5) * T[:, None]
    y = np.interp(idx.ravel(), np.arange(len(samples), dtype=np.float64),
                  np.asarray(samples, dtype=np.float64)).reshape(idx.shape)
    return x, y


@dataclass
class EyeMask:
    """The region a trace must not enter (a hexagon in the eye's opening) and the levels it must
    not exceed, from the option's transmitter limits and the timing limits (jitter_peak, rise_time)."""
    inner: np.ndarray                 # polygon vertices (x in UI, level)
    above: float | None               # no trace above this level
    below: float | None               # no trace below this level
    text: str


def _high(opt: InterfaceOption, name: str, otherwise: float) -> float:
    """The option's upper limit on `name`, or `otherwise` (the mask's drawing default) where it states none."""
    lim = opt.limits.get(name)
    return otherwise if lim is None or lim.high is None else lim.high


def eye_mask(opt: InterfaceOption) -> EyeMask:
    """Levels: between the transmitter's space and mark limits (what a sender meeting the option
    never dwells in once settled); time: an edge may move by the jitter_peak limit and take the
    rise_time limit to settle."""
    hi_sym, lo_sym = (opt.tx_mark, opt.tx_space) if opt.mark_is_high else (opt.tx_space, opt.tx_mark)
    lo_level = lo_sym.high               # the lower symbol's highest allowed level
    hi_level = hi_sym.low                # the upper symbol's lowest allowed level
    assert lo_level is not None and hi_level is not None, f"{opt.name}: a symbol's inner side is unbounded"
    jit = _high(opt, "jitter_peak", 0.15)
    rise = _high(opt, "rise_time", 0.10)
    a, b = jit, jit + rise
    mid = (lo_level + hi_level) / 2
    inner = np.array([(a, mid), (b, hi_level), (1 - b, hi_level), (1 - a, mid), (1 - b, lo_level),
                      (b, lo_level)])
    above, below = hi_sym.high, lo_sym.low
    u = opt.unit
    text = (f"mask: {lo_level:g} .. {hi_level:g} {u} from {b:g} to {1 - b:g} UI "
            f"(edges ±{jit:g} UI, transitions ≤ {rise:g} UI)")
    if above is not None:
        text += f"; max {above:g} {u}"
    if below is not None:
        text += f"; min {below:g} {u}"
    return EyeMask(inner, above, below, text)


def mask_hits(x: np.ndarray, traces: np.ndarray, mask: EyeMask) -> int:
    """How many traces enter the mask."""
    if not len(traces):
        return 0
    from matplotlib.path import Path
    pts = np.column_stack([np.broadcast_to(x, traces.shape).ravel(), traces.ravel()])
    inside = Path(mask.inner).contains_points(pts).reshape(traces.shape).any(axis=1)
    if mask.above is not None:
        inside |= (traces > mask.above).any(axis=1)
    if mask.below is not None:
        inside |= (traces < mask.below).any(axis=1)
    return int(inside.sum())


# --- figures ---------------------------------------------------------------------------------------
@_styled
def eye_figure(x: np.ndarray, traces: np.ndarray, opt: InterfaceOption, title: str,
               baud: float, disturbed: bool = False) -> tuple[bytes, int, str]:
    """The eye of one capture over the option's mask; returns (PNG, traces in the mask, the mask
    in words). `disturbed`: the captures of a margin sweep, disturbed on purpose: traces in the
    mask are what the sweep looks for, not a failure (the title is not coloured)."""
    from matplotlib.collections import LineCollection
    from matplotlib.patches import Polygon
    mask = eye_mask(opt)
    hits = mask_hits(x, traces, mask)
    fig, axes = _figure(5.6, 3.6)
    ax = axes[0, 0]
    n = len(traces)
    alpha = float(min(0.5, max(0.04, 25.0 / max(n, 1))))
    segs = np.stack([np.broadcast_to(x, traces.shape), traces], axis=-1)
    ax.add_collection(LineCollection(list(segs), colors=TRACE_COLOUR, linewidths=0.8, alpha=alpha))
    ax.add_patch(Polygon(mask.inner, closed=True, facecolor=MASK_COLOUR, alpha=0.25,
                         edgecolor=MASK_COLOUR, linewidth=1.0, label="mask"))
    lo = min(float(traces.min()), float(mask.inner[:, 1].min()))
    hi = max(float(traces.max()), float(mask.inner[:, 1].max()))
    pad = (hi - lo) * 0.12 or 1.0
    ylim = (lo - pad, hi + pad)
    if mask.above is not None and mask.above < ylim[1]:
        ax.axhspan(mask.above, ylim[1], color=MASK_COLOUR, alpha=0.25, linewidth=0)
    if mask.below is not None and mask.below > ylim[0]:
        ax.axhspan(ylim[0], mask.below, color=MASK_COLOUR, alpha=0.25, linewidth=0)
    ax.set_xlim(-0.5, 1.5)
    ax.set_ylim(*ylim)
    ax.set_xlabel("time (UI, one bit)")
    ax.set_ylabel(f"{opt.quantity.split(' (')[0].split(' at ')[0]} ({opt.unit})")
    verdict = "no trace in the mask" if hits == 0 else f"{hits} of {n} traces in the mask"
    if len(title) > 60:
        title = title[:59] + "…"
    colour = "#333" if disturbed else PASS_COLOUR if hits == 0 else FAIL_COLOUR
    ax.set_title(f"{title}\n{n} bits at {baud:.0f} Bd: {verdict}", color=colour)
    return _png(fig), hits, mask.text


def _limits(ax, limits, data_lo: float, data_hi: float, unit: str, fixed: tuple[float, float] | None = None):
    """Draw each (label, value) limit as a dashed vertical line when it lies near the data (within
    a factor of three of its range, or inside a fixed range); a limit far off is named in the legend
    as off scale. Returns (x range, legend handles for the limits)."""
    from matplotlib.lines import Line2D
    if fixed is not None:
        lo, hi = min(fixed[0], data_lo), max(fixed[1], data_hi)
    else:
        span = data_hi - data_lo
        pad = max(span * 0.1, abs(data_hi) * 0.05, 1e-9)
        lo, hi = data_lo - pad, data_hi + pad
    handles = []
    limits = [(label, v) for label, v in limits if v is not None and math.isfinite(v)]
    near = []
    for label, v in limits:
        if fixed is not None:
            ok = lo <= v <= hi
        else:
            w_lo = min(data_lo - 2 * span, data_lo / 3 if data_lo > 0 else data_lo * 3)
            w_hi = max(data_hi + 2 * span, data_hi * 3 if data_hi > 0 else data_hi / 3)
            ok = w_lo <= v <= w_hi
            if ok:
                lo, hi = min(lo, v - pad), max(hi, v + pad)
        if ok:
            near.append((label, v))
    for i, (label, v) in enumerate(limits):
        style: dict[str, Any] = dict(color=LIMIT_COLOUR, linestyle="--" if i % 2 == 0 else "-.", linewidth=1.3)
        if (label, v) in near:
            handles.append(ax.axvline(v, label=f"{label} {v:g} {unit}", **style))
        else:
            side = "→" if v > hi else "←"
            handles.append(Line2D([], [], label=f"{label} {v:g} {unit} (off scale {side})", **style))
    return (lo, hi), handles


@_styled
def histogram_figure(series: dict[str, np.ndarray], unit: str, xlabel: str, title: str, limits=(),
                     bins: int = 40, fixed_range: tuple[float, float] | None = None, marks=()) -> bytes:
    """A histogram of one quantity, one colour per series (stacked), with its limits drawn, and
    `marks` ((label, value): percentiles) as dotted lines labelled at the top."""
    fig, axes = _figure(5.6, 3.6)
    ax = axes[0, 0]
    allv = np.concatenate([np.asarray(v, dtype=float) for v in series.values()])
    allv = allv[np.isfinite(allv)]
    (lo, hi), lim_handles = _limits(ax, limits, float(allv.min()), float(allv.max()), unit, fixed_range)
    names = list(series)
    data = [np.asarray(series[k], dtype=float) for k in names]
    ax.hist(data, bins=bins, range=(lo, hi), stacked=True, label=[n or "_nolegend_" for n in names],
            color=[PALETTE[i % len(PALETTE)] for i in range(len(names))], edgecolor="white", linewidth=0.3)
    ax.set_xlim(lo, hi)
    mark_styles = ((0, (1, 1)), (0, (3, 1, 1, 1)), (0, (5, 2)))
    for i, (label, v) in enumerate(marks):
        if v is not None and lo <= v <= hi:
            lim_handles.append(ax.axvline(v, color="#333", linestyle=mark_styles[i % 3], linewidth=1.1,
                                          label=f"{label} {v:.4g} {unit}"))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    from matplotlib.ticker import MaxNLocator
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title)
    handles = [h for h in ax.get_legend_handles_labels()[0] if h not in lim_handles] + lim_handles
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=3 if len(handles) > 4 else 2, frameon=False)
    return _png(fig)


@dataclass
class LevelsPanel:
    """One step's measured mark and space levels with the option's limits."""
    title: str
    opt: InterfaceOption
    mark: float | None
    space: float | None
    mark_ok: bool
    space_ok: bool


@_styled
def levels_figure(panels: list[LevelsPanel]) -> bytes:
    """Mark and space levels against the transmitter limits (bands) and receiver thresholds (dashed)."""
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = _figure(3.3 * cols + 0.6, 3.4 * rows, rows, cols)
    for i, p in enumerate(panels):
        ax = axes[i // cols, i % cols]
        o = p.opt
        vals = [v for v in (p.mark, p.space) if v is not None and math.isfinite(v)]
        edges = [x for lim in (o.tx_mark, o.tx_space, o.rx_mark, o.rx_space) for x in (lim.low, lim.high)
                 if x is not None] + vals
        lo, hi = min(edges), max(edges)
        pad = (hi - lo) * 0.08 or 1.0
        lo, hi = lo - pad, hi + pad
        for xi, lim, name in ((0, o.tx_mark, "mark"), (1, o.tx_space, "space")):
            a = lo if lim.low is None else lim.low
            b = hi if lim.high is None else lim.high
            ax.fill_between([xi - 0.35, xi + 0.35], a, b, color=PASS_COLOUR, alpha=0.15, linewidth=0)
        rx = [(v, lim, txt) for lim, txt in ((o.rx_mark, "receiver: surely mark"), (o.rx_space, "receiver: surely space"))
              if (v := lim.low if lim.low is not None else lim.high) is not None]
        for k, (v, lim, txt) in enumerate(sorted(rx, key=lambda r: r[0])):   # lower label below its line
            ax.axhline(v, color="#555", linestyle=":", linewidth=1.0)
            ax.annotate(f"{txt} {'≥' if lim.low is not None else '≤'} {v:g}", (1.5, v), fontsize=6.5,
                        color="#555", ha="right", va="top" if k == 0 else "bottom")
        for xi, v, ok in ((0, p.mark, p.mark_ok), (1, p.space, p.space_ok)):
            if v is None or not math.isfinite(v):
                ax.annotate("not measured", (xi, (lo + hi) / 2), ha="center", color=FAIL_COLOUR, fontsize=8)
                continue
            ax.plot([xi - 0.3, xi + 0.3], [v, v], color=PASS_COLOUR if ok else FAIL_COLOUR, linewidth=3)
            ax.annotate(f"{v:.4g}", (xi + 0.32, v), fontsize=8, va="center",
                        color=PASS_COLOUR if ok else FAIL_COLOUR)
        ax.set_xlim(-0.6, 1.6)
        ax.set_ylim(lo, hi)
        ax.set_xticks([0, 1], [f"mark\n({o.mark_meaning})", f"space\n({o.space_meaning})"])
        ax.set_ylabel(o.unit)
        ax.set_title(p.title, fontsize=9)
        ax.grid(axis="x", visible=False)
    for j in range(len(panels), rows * cols):
        axes[j // cols, j % cols].set_visible(False)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    fig.legend(handles=[Patch(color=PASS_COLOUR, alpha=0.15, label="transmitter limits"),
                        Line2D([], [], color="#555", linestyle=":", label="receiver thresholds"),
                        Line2D([], [], color=PASS_COLOUR, linewidth=3, label="measured (red: fails)")],
               loc="outside lower center", ncols=3 if cols > 1 else 2, frameon=False, fontsize=7)
    return _png(fig)


@dataclass
class SweepSeries:
    """One swept case: amounts (x), success and completion rates at each, and its marks."""
    title: str
    quantity: str
    unit: str
    x: list[float]
    success: list[float]
    completion: list[float | None]
    threshold: float | None = None
    must_work_at: float | None = None
    not_run: list[float] | None = None        # values (positions) of steps not run: a stop condition
    errors: list[float] | None = None         # values (positions) of steps that could not be carried out
    categories: list[str] | None = None   # a sweep over names: x is the position in this list
    rate: str = "success rate"         # what y is ("steps passed" when the steps measure no rate)


@_styled
def sweeps_figure(series: list[SweepSeries]) -> bytes:
    """Success rate (or the share of steps passed) against the swept value, a number or a name,
    one panel per sweep; steps not run or not carried out are marked above the axis."""
    cols = min(2, len(series))
    rows = math.ceil(len(series) / cols)
    fig, axes = _figure(4.6 * cols + 0.4, 3.2 * rows, rows, cols)
    for i, s in enumerate(series):
        ax = axes[i // cols, i % cols]
        order = np.argsort(s.x)
        x = np.asarray(s.x, dtype=float)[order]
        y = np.asarray(s.success, dtype=float)[order]
        style = "o" if s.categories is not None else "o-"      # names are not a continuum
        label = "success (first try)" if s.rate == "success rate" else "steps passed"
        ax.plot(x, y, style, color=TRACE_COLOUR, label=label, linewidth=1.5, markersize=5)
        if any(v is not None for v in s.completion):
            c = np.asarray([np.nan if v is None else v for v in s.completion], dtype=float)[order]
            ax.plot(x, c, "s--" if s.categories is None else "s", color=PALETTE[1], label="completed (with repeats)",
                    linewidth=1, markersize=3, alpha=0.8)
        # nothing was measured at these: marked above the plot, never drawn as a rate of 0
        if s.not_run:
            ax.plot(s.not_run, [1.08] * len(s.not_run), "v", color="#777", markersize=7, label="not run (stopped)",
                    clip_on=False)
        if s.errors:
            ax.plot(s.errors, [1.08] * len(s.errors), "X", color="#e65100", markersize=6,
                    label="could not be carried out", clip_on=False)
        every = [*s.x, *(s.not_run or ()), *(s.errors or ())]
        if s.categories is None and every:
            lo_x, hi_x = min(every), max(every)
            pad = (hi_x - lo_x) * 0.05 or 1.0
            ax.set_xlim(lo_x - pad, hi_x + pad)
        if s.categories is not None:
            ax.set_xticks(range(len(s.categories)), s.categories, rotation=35, ha="right", fontsize=7)
            ax.set_xlim(-0.6, len(s.categories) - 0.4)
            ax.grid(axis="x", visible=False)
        if s.threshold is not None:
            ax.axvline(s.threshold, color=FAIL_COLOUR, linestyle="-", linewidth=1.2)
            ax.annotate(f"fails at {s.threshold:g}", (s.threshold, 0.5), rotation=90, fontsize=7,
                        color=FAIL_COLOUR, ha="right", va="center", xytext=(-2, 0), textcoords="offset points")
        if s.must_work_at is not None:
            ax.axvline(s.must_work_at, color=PASS_COLOUR, linestyle="--", linewidth=1.2)
            ax.annotate(f"must work at {s.must_work_at:g}", (s.must_work_at, 0.5), rotation=90, fontsize=7,
                        color=PASS_COLOUR, ha="left", va="center", xytext=(2, 0), textcoords="offset points")
        ax.set_ylim(-0.05, 1.13)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
        ax.set_xlabel(f"{s.quantity} [{s.unit}]" if s.unit else s.quantity)
        ax.set_ylabel(s.rate)
        ax.set_title(s.title, fontsize=9)
    for j in range(len(series), rows * cols):
        axes[j // cols, j % cols].set_visible(False)
    seen: dict[str, Any] = {}
    for ax in axes.ravel():
        for h, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, h)
    fig.legend(list(seen.values()), list(seen), loc="outside lower center", ncols=3, frameon=False, fontsize=7)
    return _png(fig)
