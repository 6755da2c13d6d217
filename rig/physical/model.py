"""Plain numpy model of the UART waveform decoder (ext/uart.pyx), one piece, no speed tricks.

Same rules, written the straightforward way: the comparator with hysteresis as a forward fill,
threshold crossings found with array operations, then the glitch filter and the start-stop machine
as a Python loop over the edges.  The tests hold rig._uart to the same characters, edges and
statistics; benches/waveform.py measures both.  The prefix analysis (levels and bit period) is
shared: ``levels_from_samples`` and ``estimate_bit_period`` from rig._uart.

``hysteresis=0`` and ``glitch_ui=0`` make it the single-threshold decoder the tests show failing
on noisy captures.
"""
from __future__ import annotations

import math

import numpy as np

HSTRIDE = 16
# a character's bit-period fit and jitter come from its first 20 edges (ext/uart_sm.h RIG_NCE); its
# n_edges counts them all, up to 255
FIT_EDGES = 20


def _comparator(x: np.ndarray, lo: float, mid: float, hi: float):
    """Raw comparator state before each sample (``before``) and after (``after``)."""
    z = np.full(len(x), -1, dtype=np.int8)
    s0 = 1 if x[0] > mid else 0
    z[x > hi] = 1
    z[x < lo] = 0
    # the state only changes on the sample that crosses the far threshold: hold otherwise
    known = z >= 0
    idx = np.where(known, np.arange(len(x)), -1)
    np.maximum.accumulate(idx, out=idx)
    after = np.where(idx >= 0, z[np.maximum(idx, 0)], s0).astype(np.int8)
    before = np.empty_like(after)
    before[0] = s0
    before[1:] = after[:-1]
    return before, after


def _crossings(x, pv, level, up: bool, mask):
    """Interpolated positions of crossings of ``level`` (upward or downward) where ``mask``."""
    if up:
        c = (pv < level) & (x >= level) & mask
    else:
        c = (pv > level) & (x <= level) & mask
    j = np.flatnonzero(c)
    pos = (j - 1).astype(np.float64) + (level - pv[j]) / (x[j] - pv[j])
    return j, pos


def comparator_edges(x, lo, mid, hi, p10, p90):
    """Edges (position, raw level after) and the rise/fall statistics, as the Cython loop finds them."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    pv = np.empty(n)
    pv[0] = x[0]
    pv[1:] = x[:-1]
    before, after = _comparator(x, lo, mid, hi)
    trig = np.flatnonzero(before != after)
    rising = after[trig] == 1
    low_before = before == 0
    high_before = before == 1
    ju_mid, pu_mid = _crossings(x, pv, mid, True, low_before)
    jd_mid, pd_mid = _crossings(x, pv, mid, False, high_before)
    ju10, pu10 = _crossings(x, pv, p10, True, low_before)
    jd90, pd90 = _crossings(x, pv, p90, False, high_before)
    # the last crossing at or before the trigger sample (initial value: position 0)
    def last(js, ps, at):
        k = np.searchsorted(js, at, side="right") - 1
        return np.where(k >= 0, ps[np.maximum(k, 0)] if len(ps) else 0.0, 0.0)

    pos = np.where(rising, last(ju_mid, pu_mid, trig), last(jd_mid, pd_mid, trig))
    # rise: from the last upward p10 crossing to the first upward p90 crossing at or after the
    # trigger and before the next trigger; fall likewise with p90 down then p10 down
    ju90, pu90 = _crossings(x, pv, p90, True, np.ones(n, bool))
    jd10, pd10 = _crossings(x, pv, p10, False, np.ones(n, bool))
    nxt = np.append(trig[1:], n)
    rise, fall = [], []
    for t, nt, r in zip(trig, nxt, rising):
        if r:
            k = np.searchsorted(ju90, t, side="left")
            if k < len(ju90) and ju90[k] < nt:
                rise.append(pu90[k] - float(last(ju10, pu10, np.array([t]))[0]))
        else:
            k = np.searchsorted(jd10, t, side="left")
            if k < len(jd10) and jd10[k] < nt:
                fall.append(pd10[k] - float(last(jd90, pd90, np.array([t]))[0]))
    return pos, after[trig].astype(np.int64), np.asarray(rise), np.asarray(fall)


def _parity(v, nbits, kind):
    ones = bin(v & ((1 << nbits) - 1)).count("1")
    return {1: (ones & 1) ^ 1, 2: ones & 1, 3: 1, 4: 0}[kind]


def decode_model(x, sample_rate, baud=None, *, data_bits=7, parity="E", stop_bits=1, mark_is_high=True,
                 thresholds=None, hysteresis=1.0 / 6, glitch_ui=0.35, analysis_samples=1 << 20, scale=1.0,
                 offset=0.0, fallback_thresholds=None, t0_ns=0):
    """Decode a whole capture; returns (chars as a list of dicts, edges, stats dict, glitches).
    ``stats["fit_edges"]``: the edges of each character's fit with their jitter and bit widths, as
    rig._uart's ``take_fit_edges`` gives them (FIT_DTYPE fields)."""
    from rig._uart import FIT_DTYPE, estimate_bit_period, levels_from_samples

    x = np.asarray(x).reshape(-1)
    xf = x.astype(np.float64)
    n = len(xf)
    pk = {"N": 0, "O": 1, "E": 2, "M": 3, "S": 4, "NONE": 0, "ODD": 1, "EVEN": 2, "MARK": 3,
          "SPACE": 4}[parity.upper()]
    frame_bits = 1 + data_bits + (1 if pk else 0) + stop_bits
    mark_high = bool(mark_is_high) == (scale > 0)
    auto = baud is None or baud == 0 or (isinstance(baud, str) and baud.lower() == "auto")
    nominal = 0.0 if auto else float(baud)
    pre = x[:max(16, analysis_samples)]
    lv = levels_from_samples(pre)
    raw = lambda p: (p - offset) / scale  # noqa: E731
    if thresholds is not None:
        a, b = raw(thresholds[0]), raw(thresholds[1])
        lo, hi = min(a, b), max(a, b)
        if lv is None:
            lv = (lo - (hi - lo), hi + (hi - lo))
    elif lv is not None:
        sw = lv[1] - lv[0]
        m = 0.5 * (lv[0] + lv[1])
        lo, hi = m - hysteresis * sw, m + hysteresis * sw
    elif fallback_thresholds is not None:
        a, b = raw(fallback_thresholds[0]), raw(fallback_thresholds[1])
        lo, hi = min(a, b), max(a, b)
        lv = (lo - (hi - lo), hi + (hi - lo))
    else:
        mn, mx = float(pre.min()), float(pre.max())
        if mx <= mn:
            mx = mn + 1.0
        lv = (mn, mx)
        sw = mx - mn
        lo, hi = mn + (0.5 - hysteresis) * sw, mn + (0.5 + hysteresis) * sw
    mid = 0.5 * (lo + hi)
    sw = lv[1] - lv[0]
    p10, p90 = lv[0] + 0.1 * sw, lv[0] + 0.9 * sw
    pre_pos, _, _, _ = comparator_edges(pre.astype(np.float64), lo, mid, hi, p10, p90)
    T = estimate_bit_period(pre_pos, float(sample_rate), nominal, glitch_ui)
    pos, raw_lvl, rise, fall = comparator_edges(xf, lo, mid, hi, p10, p90)
    logic = raw_lvl if mark_high else 1 - raw_lvl
    ns_per = 1e9 / sample_rate

    def ns(p):
        return int(math.floor(p * ns_per + 0.5)) + t0_ns

    # glitch filter
    gmax = glitch_ui * T
    kept, glitches = [], []
    pend = None
    for p, lg in zip(pos.tolist(), logic.tolist()):
        if pend is not None:
            if p - pend[0] < gmax:
                glitches.append((pend[0], p - pend[0]))
                pend = None
                continue
            kept.append(pend)
        pend = (p, lg)
    if pend is not None:
        kept.append(pend)

    # start-stop machine
    chars = []
    st = {"jit_sum2": 0.0, "jit_n": 0, "jit_peak": 0.0, "jit_min": math.inf, "jit_max": -math.inf,
          "sxy": 0.0, "sxx": 0.0, "bw_min": math.inf, "bw_max": -math.inf, "breaks": 0,
          "break_min": math.inf, "false_starts": 0}
    fits = []        # (edge, char, k, jitter, width) of each fit edge
    m = {"level": 1, "in_char": False, "in_break": False, "t_start": 0.0, "next": 0.0, "idx": 0,
         "value": 0, "par": 0, "stop_bad": False, "ce": [], "break_start": 0.0, "first": 0}

    def emit(t_end, is_break):
        ce = m["ce"][:FIT_EDGES]
        pok = (m["par"] == _parity(m["value"], data_bits, pk)) if pk else True
        bit_ns = float("nan")
        if len(ce) >= 2:
            ks = np.array([k for _, k in ce], float)
            ts = np.array([t for t, _ in ce])
            kb, tb = ks.mean(), ts.mean()
            sxx = ((ks - kb) ** 2).sum()
            if sxx > 0:
                bit_ns = ((ks - kb) * (ts - tb)).sum() / sxx * ns_per
            if not is_break:
                a = (ts - ks * T).mean()
                d = ts - ks * T - a
                st["jit_sum2"] += float((d * d).sum())
                st["jit_n"] += len(d)
                st["jit_peak"] = max(st["jit_peak"], float(np.abs(d).max()))
                st["jit_min"] = min(st["jit_min"], float(d.min()))
                st["jit_max"] = max(st["jit_max"], float(d.max()))
                st["sxy"] += float(((ks - kb) * (ts - tb)).sum())
                st["sxx"] += float(sxx)
                dk = np.diff(ks)
                w = np.diff(ts)[dk > 0] / dk[dk > 0]
                if len(w):
                    st["bw_min"] = min(st["bw_min"], float(w.min()))
                    st["bw_max"] = max(st["bw_max"], float(w.max()))
                wj = np.full(len(ks), math.nan)
                wj[1:][dk > 0] = w
                fits.extend((m["first"] + j, len(chars), int(ks[j]), float(d[j]), float(wj[j]))
                            for j in range(len(ks)))
        if is_break:
            st["breaks"] += 1
            st["break_min"] = min(st["break_min"], t_end - m["t_start"])
        chars.append({"value": m["value"], "t_start_ns": ns(m["t_start"]), "t_end_ns": ns(t_end),
                      "parity_ok": bool(pok), "framing_ok": not m["stop_bad"], "is_break": is_break,
                      "n_edges": min(len(m["ce"]), 255), "bit_ns": bit_ns})

    def advance(t):
        while m["in_char"] and m["next"] < t:
            b, i = m["level"], m["idx"]
            if i == 0:
                if b == 1:
                    m["in_char"] = False
                    st["false_starts"] += 1
                    return
            elif i <= data_bits:
                m["value"] |= b << (i - 1)
            elif pk and i == data_bits + 1:
                m["par"] = b
            elif b == 0:
                m["stop_bad"] = True
            m["idx"] += 1
            m["next"] += T
            if m["idx"] == frame_bits:
                m["in_char"] = False
                if (m["stop_bad"] and m["value"] == 0 and (pk == 0 or m["par"] == 0) and m["level"] == 0
                        and len(m["ce"]) == 1):
                    m["in_break"] = True
                else:
                    emit(m["next"] - 0.5 * T, False)

    for e, (t, lg) in enumerate(kept):
        advance(t)
        if m["in_char"]:
            m["ce"].append((t, m["idx"]))
            m["next"] = t + 0.5 * T
            m["level"] = lg
        elif m["in_break"]:
            m["level"] = lg
            if lg == 1:
                m["in_break"] = False
                emit(t, True)
        else:
            m["level"] = lg
            if lg == 0:
                m.update(in_char=True, t_start=t, idx=0, next=t + 0.5 * T, value=0, par=0,
                         stop_bad=False, ce=[(t, 0)], first=e)
    advance(float(n))
    if m["in_break"]:
        m["in_break"] = False
        emit(float(n), True)

    st.update({"T": T, "lo": lo, "mid": mid, "hi": hi, "p10": p10, "p90": p90,
               "n_rise": len(rise), "sum_rise": float(rise.sum()), "max_rise": float(rise.max()) if len(rise) else 0.0,
               "n_fall": len(fall), "sum_fall": float(fall.sum()), "max_fall": float(fall.max()) if len(fall) else 0.0,
               "glitches": len(glitches), "n_samples": n, "fs": float(sample_rate), "frame_bits": frame_bits,
               "mark_high_raw": mark_high,
               "fit_edges": np.array(fits, dtype=FIT_DTYPE)})
    edges = np.array(kept, dtype=[("pos", "<f8"), ("mark", "<i8")]) if kept else np.zeros(
        0, dtype=[("pos", "<f8"), ("mark", "<i8")])
    return chars, edges, st, glitches
