"""Decoding a UART capture under heavy noise: every sample of a bit decides it, not one at mid-bit.

The comparator decoder (``rig._uart``, :mod:`rig.physical.model`) follows the line's edges; with noise
of some 0.3 of the swing (rms) and more, noise crosses its thresholds inside the bits and a receiver
sampling once at mid-bit is wrong on one bit in ten or more.  Here instead:

- the levels come from a moving average over half a bit (noise divided by the root of its length):
  Otsu's split of its histogram, each level the median of its side (found whatever the spread);
- a character starts where that average crosses mid-swing going from mark to space after the line
  was at mark (hysteresis: a quarter of the swing on each side);
- each bit is the mean of every sample in its cell (an integrate-and-dump receiver), a guard of
  ``guard`` of a bit left out at each end for the uncertainty of the start edge, compared with
  mid-swing; parity and stop bits are checked as the comparator decoder checks them.

Plain numpy, one pass over the edges in Python (a few thousand characters a second of capture):
:func:`rig.physical.analysis.decode` uses it for the captures whose measured noise the comparator
decoder does not survive (:func:`noise_ratio`), so clean captures are decoded exactly as before.
"""
from __future__ import annotations

import math

import numpy as np

from rig.physical.charformat import CharFormat

#: noise rms / swing from which :func:`rig.physical.analysis.decode` decodes from bit averages (the
#: comparator decoder is exact to 0.2 of the swing at 10 and 16 samples per bit, benches/README.md)
NOISE_RATIO = 0.2


def moving_average(x: np.ndarray, n: int) -> np.ndarray:
    """Centred moving average over ``n`` samples (the ends use the samples there are)."""
    x = np.asarray(x, dtype=np.float64)
    n = max(1, min(int(n), len(x)))
    if n == 1:
        return x.copy()
    c = np.concatenate([[0.0], np.cumsum(x)])
    h = (n - 1) // 2
    i = np.arange(len(x))
    lo = np.maximum(i - h, 0)
    hi = np.minimum(i - h + n, len(x))
    return (c[hi] - c[lo]) / (hi - lo)


def robust_levels(x: np.ndarray, bit: float, nbins: int = 1024) -> tuple[float, float] | None:
    """(low, high) levels from the half-bit moving average: Otsu's split of its histogram, the median
    of each side; None for a capture without two sides."""
    y = moving_average(x[np.isfinite(x)], max(1, int(bit / 2)))
    if len(y) < 4:
        return None
    mn, mx = float(y.min()), float(y.max())
    if not mx > mn:
        return None
    h, edges = np.histogram(y, nbins, (mn, mx))
    h = h.astype(np.float64)
    c = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(h)
    w1 = w0[-1] - w0
    m0 = np.cumsum(h * c)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = w0 * w1 * (m0 / w0 - (m0[-1] - m0) / w1) ** 2
    between[~np.isfinite(between)] = -1
    k = int(np.argmax(between))
    if w0[k] <= 0 or w1[k] <= 0:
        return None

    def median(lo, hi):
        cs = np.cumsum(h[lo:hi])
        return float(c[lo + int(np.searchsorted(cs, cs[-1] / 2.0))])

    return median(0, k + 1), median(k + 1, nbins)


def noise_ratio(x: np.ndarray, levels: tuple[float, float] | None) -> float:
    """Noise rms over the swing: the spread of sample-to-sample differences (median absolute
    deviation, robust to the edges, which are rare), over sqrt(2) for white noise."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if levels is None or len(x) < 3:
        return float("nan")
    d = np.diff(x)
    sigma = 1.4826 * float(np.median(np.abs(d - np.median(d)))) / math.sqrt(2.0)
    swing = abs(levels[1] - levels[0])
    return sigma / swing if swing > 0 else float("inf")


def levels_separated(ratio: float, bit: float) -> bool:
    """Whether two levels ``1 / ratio`` noise rms apart are two levels, not the halves Otsu's split
    makes of noise alone: at least 4 rms of the half-bit average apart."""
    return math.isfinite(ratio) and ratio > 0 and 1.0 / ratio >= 4.0 / math.sqrt(max(1, int(bit / 2)))


def decode_bit_average(x: np.ndarray, fs: float, baud: float, fmt="7E1", *, mark_is_high: bool = True,
                       levels: tuple[float, float] | None = None, guard: float = 0.05,
                       t0_ns: int = 0) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Characters of ``x`` (raw samples) at ``baud``, each bit decided by the mean of its samples.

    Returns (characters as a ``rig._uart.CHAR_DTYPE`` array, (low, high) levels: the mean of the
    cells read as each level once there are characters, else those the decision used).  No levels:
    no characters."""
    from rig._uart import CHAR_DTYPE

    cf = CharFormat.parse(fmt)
    x = np.asarray(x, dtype=np.float64)
    T = fs / float(baud)
    lv = levels if levels is not None else robust_levels(x, T)
    out = np.zeros(0, dtype=CHAR_DTYPE)
    if lv is None or len(x) < 2 * T:
        return out, lv
    lo_l, hi_l = sorted(lv)
    mid, sw = 0.5 * (lo_l + hi_l), hi_l - lo_l
    # the line in "mark = 1" terms: the polarity of the option
    y = moving_average(x, max(1, int(T / 2)))
    if not mark_is_high:
        y, xs, mid_s = -y, -x, -mid
    else:
        xs, mid_s = x, mid
    c = np.concatenate([[0.0], np.cumsum(xs)])
    nb = cf.frame_bits
    g = guard * T
    rows = []
    ns = 1e9 / fs
    # the step detector: mean of the half bit before j minus the half bit after (mark = high);
    # a start edge is where it exceeds half the swing, refined to its peak within half a bit
    h = max(1, int(T / 2))
    js = np.arange(h, len(x) - h + 1)
    step = np.zeros(len(x) + 1)
    step[js] = ((c[js] - c[js - h]) - (c[js + h] - c[js])) / h
    above = np.flatnonzero(step[:len(x)] > sw / 2)

    def cells(t_edge: float) -> np.ndarray:
        """The frame's bits on the grid starting at ``t_edge``: each the mean of its cell."""
        a = t_edge + np.arange(nb) * T + g
        b = t_edge + (np.arange(nb) + 1) * T - g
        ia = np.clip(np.ceil(a).astype(np.int64), 0, len(x))
        ib = np.clip(np.floor(b).astype(np.int64) + 1, 0, len(x))
        means = (c[ib] - c[ia]) / np.maximum(ib - ia, 1)
        cell[:] = means
        return (means > mid_s).astype(np.int64)

    cell = np.zeros(nb)
    sums = np.zeros(2)                       # cell means of the bits read as space (0) and mark (1)
    counts = np.zeros(2)
    free_from = 0.0                          # a start edge is looked for from here (previous stop bit)
    expect = None                            # where a character right after the last one would start
    while True:
        j = None
        if expect is not None:               # back to back: the edge a quarter of the swing suffices for
            lo_j, hi_j = max(h, int(expect - h / 2)), min(len(x) - h, int(expect + h / 2) + 1)
            if hi_j > lo_j:
                jj = lo_j + int(np.argmax(step[lo_j:hi_j]))
                if step[jj] > sw / 4:
                    j = j0 = jj
        if j is None:
            i = int(np.searchsorted(above, math.ceil(free_from)))
            if i >= len(above):
                break
            j0 = int(above[i])
            j = j0 + int(np.argmax(step[j0:j0 + h + 1]))
        expect = None
        t_edge = j - 0.5
        if t_edge + nb * T > len(x):
            break
        bits = cells(t_edge)
        # decision-directed timing: the character's every transition (start edge and those between
        # its bits) votes for where the bit grid lies; the bits are decided again on that grid
        if bits[0] == 0:
            m = np.flatnonzero(bits[1:] != bits[:-1]) + 1
            sign = np.concatenate([[1.0], np.where(bits[m] == 0, 1.0, -1.0)])
            at = t_edge + 0.5 + np.concatenate([[0], m]) * T
            shifts = np.arange(-(h // 2), h // 2 + 1)
            where = np.clip(np.rint(at[None, :] + shifts[:, None]).astype(np.int64), 0, len(x))
            score = (step[where] * sign[None, :]).sum(axis=1)
            best = int(shifts[int(np.argmax(score))])
            if best:
                t_edge += best
                j += best
                bits = cells(t_edge)
        if bits[0] != 0:                     # the start bit is not space over its cell: a false start
            free_from = max(j, j0) + 1
            continue
        sums += np.bincount(bits, weights=cell, minlength=2)
        counts += np.bincount(bits, minlength=2)
        data = bits[1:1 + cf.data_bits]
        value = int(sum(int(v) << i for i, v in enumerate(data)))
        pos = 1 + cf.data_bits
        parity_ok = True
        if cf.has_parity:
            parity_ok = int(bits[pos]) == cf.parity_bit(value)
            pos += 1
        stops = bits[pos:pos + cf.stop_bits]
        framing_ok = bool(stops.all())
        is_break = (not framing_ok) and not bits.any()
        t_start = t_edge
        t_end = t_edge + nb * T
        if is_break:                         # a break lasts until the line returns to mark
            back = np.flatnonzero(y[int(t_end):] > mid_s)
            t_end = float(int(t_end) + back[0]) if len(back) else float(len(x))
            value, parity_ok, framing_ok = 0, True, True
        rows.append((t0_ns + int(round(t_start * ns)), t0_ns + int(round(t_end * ns)), T * ns, value,
                     parity_ok, framing_ok, is_break, 0, 0, 0))
        # the next start is looked for from the middle of the stop bit (or the end of a break)
        free_from = t_end if is_break else t_edge + (nb - 0.5) * T
        expect = None if is_break else t_edge + 0.5 + nb * T
    if rows:
        out = np.array(rows, dtype=CHAR_DTYPE)
    if counts.all():                         # the levels the decided bits show (noise averaged out)
        space, mark = sums / counts
        lv = tuple(sorted((mark, space) if mark_is_high else (-mark, -space)))
    return out, lv


def good_fraction(chars: np.ndarray) -> float:
    """Share of the characters with parity and stop bits right (breaks count as bad)."""
    if not len(chars):
        return 0.0
    ok = (chars["parity_ok"] == 1) & (chars["framing_ok"] == 1) & (chars["is_break"] == 0)
    return float(ok.mean())


def robust_baud(x: np.ndarray, fs: float, fmt="7E1", *, mark_is_high: bool = True,
                bauds: tuple = (300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200),
                min_samples_per_bit: float = 4.0) -> float:
    """The standard speed at which the bit-average decoder reads ``x`` best: the slowest whose share
    of characters with right parity and stop bits is within 10 % of the best (a speed twice too fast
    also reads some characters right); 0.0 when none reads any."""
    scores = []
    for b in bauds:
        if fs / b < min_samples_per_bit:
            continue
        ch, _ = decode_bit_average(x, fs, b, fmt, mark_is_high=mark_is_high)
        scores.append((b, good_fraction(ch) if len(ch) >= 3 else 0.0))
    if not scores or max(s for _, s in scores) <= 0:
        return 0.0
    best = max(s for _, s in scores)
    return float(min(b for b, s in scores if s >= 0.9 * best))
