"""Waveform synthesis: the signal a probe would see on an interface option.

From a byte string (or a wire record of timed characters) build the ideal line, then render it as
float32 samples at a sample rate, with first-order rise and fall, noise, baud error, jitter, level sag,
glitches and an ambient offset.  Rendering is by sample range, deterministic whatever the chunking
(noise comes from fixed 65536-sample blocks seeded from (seed, block)), so a capture larger than memory
can be written chunk by chunk into a memory-mapped .npy (:meth:`Waveform.write_npy`).

The ground truth (characters with their start times, breaks, glitches, line transitions) comes with it;
the tests check the decoder against it.  Times are integer nanoseconds in the truth records.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from rig.physical.charformat import CharFormat
from rig.physical.options import InterfaceOption, get_option

NOISE_BLOCK = 1 << 16
LN9 = math.log(9.0)


@dataclass(frozen=True)
class Char:
    """A character to send, optionally with a wrong parity bit or a space stop bit."""

    value: int
    bad_parity: bool = False
    bad_stop: bool = False


@dataclass(frozen=True)
class Break:
    """The line held at space for ``bits`` bit times (a break)."""

    bits: float = 20.0


@dataclass(frozen=True)
class TrueChar:
    """A character as synthesised (the ground truth a decoder is checked against): value, start time,
    the errors put into it, and whether it is a break."""
    value: int
    t_start_ns: int
    parity_ok: bool = True
    framing_ok: bool = True
    is_break: bool = False
    length_ns: int = 0


@dataclass(frozen=True)
class Glitch:
    """A short pulse to the other level: its start and width in ns."""
    t_ns: int
    width_ns: int


@dataclass
class Waveform:
    """A synthesised capture: call :meth:`render` / :attr:`samples` for the float32 samples."""

    option: InterfaceOption
    sample_rate: float
    baud: float
    fmt: CharFormat
    n_samples: int
    mark: float
    space: float
    edge_ns: np.ndarray            # ideal transition times (float64 ns, sorted), after jitter/glitches
    edge_logic: np.ndarray         # line logic after each transition (1 = mark)
    chars: list[TrueChar]
    glitches: list[Glitch]
    rise_time_s: float = 0.0
    fall_time_s: float = 0.0
    noise_rms: float = 0.0
    noise_clip: float | None = 3.0
    sag: float = 0.0
    sag_tau_bits: float = 20.0
    ambient: float = 0.0
    seed: int = 0
    _y0: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)   # filtered level at each transition

    @property
    def swing(self) -> float:
        """|mark - space|, in the option's unit."""
        return abs(self.mark - self.space)

    @property
    def bit_ns(self) -> float:
        """Actual bit time (with the baud error) in ns."""
        return 1e9 / self.baud

    def __post_init__(self) -> None:
        tgt = np.where(self.edge_logic == 1, self.mark, self.space).astype(np.float64)
        self._tgt = tgt
        n = len(tgt)
        taus = np.zeros(n)
        if n:
            prev = np.concatenate(([self.mark], tgt[:-1]))
            rising = tgt > prev
            tr = self.rise_time_s * 1e9 / LN9
            tf = self.fall_time_s * 1e9 / LN9
            taus = np.where(rising, tr, tf)
        self._tau = taus
        # filtered level at each transition (first-order recurrence over transitions)
        y0 = np.empty(n)
        y = self.mark
        prev_t = -1e300
        prev_tgt, prev_tau = self.mark, 0.0
        for k in range(n):
            t = self.edge_ns[k]
            if prev_tau > 0.0 and k > 0 and (t - prev_t) < 700.0 * prev_tau:
                y = prev_tgt + (y - prev_tgt) * math.exp(-(t - prev_t) / prev_tau)
            else:
                y = prev_tgt
            y0[k] = y
            prev_t, prev_tgt, prev_tau = float(t), float(tgt[k]), float(taus[k])
        self._y0 = y0

    # -- rendering -------------------------------------------------------------------------------
    def render(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Samples [start, stop) as float32."""
        stop = self.n_samples if stop is None else min(stop, self.n_samples)
        start = max(0, start)
        if stop <= start:
            return np.zeros(0, np.float32)
        t = np.arange(start, stop, dtype=np.float64) * (1e9 / self.sample_rate)
        # each edge's level lasts from the first sample at or after it to the next edge's: runs of
        # samples, so a sample's last edge is found per edge (len(edges) searches), not per sample
        first = np.searchsorted(t, self.edge_ns, side="left")
        runs = np.diff(first, prepend=0, append=len(t))      # before the first edge, then each edge's
        k0 = int(runs[0])
        y = np.empty(t.shape, dtype=np.float64)
        y[:k0] = self.mark
        if k0 < len(t):
            runs = runs[1:]
            tgt = np.repeat(self._tgt, runs)
            if not self.sag and not self._tau.any():
                y[k0:] = tgt            # sharp edges, no sag: each level is its target at once
            else:
                dt = t[k0:] - np.repeat(self.edge_ns, runs)
                tau = np.repeat(self._tau, runs)
                with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                    decay = np.where(tau > 0, np.exp(-dt / np.where(tau > 0, tau, 1.0)), 0.0)
                v = tgt + (np.repeat(self._y0, runs) - tgt) * decay
                if self.sag:
                    mid = 0.5 * (self.mark + self.space)
                    tau_s = self.sag_tau_bits * self.bit_ns
                    v = mid + (v - mid) * (1.0 - self.sag * (1.0 - np.exp(-dt / tau_s)))
                y[k0:] = v
        if self.noise_rms:
            y += self._noise(start, stop)
        if self.ambient:
            y += self.ambient
        return y.astype(np.float32)

    @property
    def samples(self) -> np.ndarray:
        """The whole capture rendered at once (float32)."""
        return self.render()

    def _noise(self, start: int, stop: int) -> np.ndarray:
        out = np.empty(stop - start)
        b0, b1 = start // NOISE_BLOCK, (stop - 1) // NOISE_BLOCK
        for b in range(b0, b1 + 1):
            rng = np.random.default_rng([self.seed, 7, b])
            blk = rng.standard_normal(NOISE_BLOCK)
            if self.noise_clip is not None:
                blk = np.clip(blk, -self.noise_clip, self.noise_clip)
            blk *= self.noise_rms
            lo, hi = max(start, b * NOISE_BLOCK), min(stop, (b + 1) * NOISE_BLOCK)
            out[lo - start:hi - start] = blk[lo - b * NOISE_BLOCK:hi - b * NOISE_BLOCK]
        return out

    def chunks(self, chunk: int = 1 << 20) -> Iterable[np.ndarray]:
        """The capture rendered `chunk` samples at a time (the same samples as `samples`)."""
        for s in range(0, self.n_samples, chunk):
            yield self.render(s, s + chunk)

    def write_npy(self, path, chunk: int = 1 << 20, dtype=np.float32, scale: float = 1.0,
                  offset: float = 0.0) -> None:
        """Write the capture to a .npy file chunk by chunk (memory bounded by one chunk).
        Integer dtypes store round((value - offset) / scale)."""
        mm = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(self.n_samples,))
        for s in range(0, self.n_samples, chunk):
            v = self.render(s, s + chunk)
            if np.dtype(dtype).kind == "i":
                info = np.iinfo(dtype)
                v = np.clip(np.rint((v - offset) / scale), info.min, info.max)
            mm[s:s + len(v)] = v
        mm.flush()
        del mm

    @property
    def values(self) -> list[int]:
        """The character values sent (breaks left out)."""
        return [c.value for c in self.chars if not c.is_break]


def synthesize(data, option="current-loop", *, baud: float = 9600, sample_rate: float | None = None,
               samples_per_bit: float | None = None, fmt="7E1", levels: tuple[float, float] | None = None,
               rise_time: float = 0.0, fall_time: float | None = None, noise: float = 0.0,
               baud_error: float = 0.0, jitter: float = 0.0, sag: float = 0.0, sag_tau_bits: float = 20.0,
               glitches: int | list = 0, glitch_width: float = 0.1, ambient: float = 0.0,
               idle_before: float = 12.0, idle_after: float = 12.0, gap: float | tuple = 0.0,
               noise_clip: float | None = 3.0, seed: int = 0) -> Waveform:
    """Synthesise the line for ``data`` on ``option``.

    data: bytes (each masked to the data bits), or a list mixing ints, :class:`Char`, :class:`Break`;
    or a wire record: a sequence of (t_ns, value) pairs / objects with ``t_ns`` and ``value``
    (``value`` an int or bytes), each character starting at its time (relative to the record's first).

    levels: (mark, space) in the option's unit (default the option's nominal levels).
    rise_time / fall_time: 10-90 % times in seconds of a first-order response (fall = rise if None).
    noise: rms of Gaussian noise in the option's unit, clipped at ±``noise_clip`` rms (default 3, so
    the peak is 3 × noise; None leaves it unclipped).
    baud_error: relative error of the actual speed (0.05 = 5 % fast).  jitter: rms edge jitter in UI
    (clipped at ±3 rms).  sag: the level droops toward mid-swing by this fraction of its deviation
    during a run (time constant ``sag_tau_bits``).  glitches: a count placed at random bit centres, or a
    list of (t_s, width_s); glitch_width in UI.  ambient: offset added to every sample (e.g. ambient
    light).  idle_before/after, gap: idle bits around the data and between characters (gap may be a
    (min, max) range drawn per character).
    """
    opt = get_option(option)
    cf = CharFormat.parse(fmt)
    if sample_rate is None:
        sample_rate = baud * (samples_per_bit or 10.0)
    mark, space = levels if levels is not None else (opt.nominal_mark, opt.nominal_space)
    actual_baud = baud * (1.0 + baud_error)
    T = 1e9 / actual_baud
    rng = np.random.default_rng([seed, 1])

    trans_t: list[float] = []
    trans_v: list[int] = []
    chars: list[TrueChar] = []
    level = 1

    def put_bits(t0: float, bits) -> None:
        nonlocal level
        for k, b in enumerate(bits):
            if b != level:
                trans_t.append(t0 + k * T)
                trans_v.append(b)
                level = b

    items = _items(data, T)
    t = idle_before * T
    wire_t0 = None
    for when, item in items:
        if when is not None:
            if wire_t0 is None:
                wire_t0 = when
            t = max(t, idle_before * T + (when - wire_t0))
        if isinstance(item, Break):
            put_bits(t, [0])
            length = item.bits * T
            chars.append(TrueChar(0, int(round(t)), cf.parity_bit(0) == 0, False, True, int(round(length))))
            t += length
            put_bits(t, [1])
            t += 2 * T
            continue
        c = item if isinstance(item, Char) else Char(int(item))
        v = c.value & ((1 << cf.data_bits) - 1)
        put_bits(t, cf.bits(v, c.bad_parity, c.bad_stop))
        chars.append(TrueChar(v, int(round(t)), not c.bad_parity, not c.bad_stop))
        t += cf.frame_bits * T
        if c.bad_stop:
            put_bits(t, [1])
            t += T
        g = gap if not isinstance(gap, tuple) else rng.uniform(*gap)
        t += g * T
    t += idle_after * T
    total_ns = t

    et = np.asarray(trans_t, dtype=np.float64)
    ev = np.asarray(trans_v, dtype=np.int8)
    if jitter and len(et):
        et = et + np.clip(rng.standard_normal(len(et)), -3, 3) * jitter * T
        # start times in the truth follow the jittered start edges
        pos = np.searchsorted(np.asarray(trans_t), [c.t_start_ns for c in chars])
        chars = [TrueChar(c.value, int(round(et[min(p, len(et) - 1)])) if p < len(et) and
                          abs(trans_t[p] - c.t_start_ns) < 1 else c.t_start_ns,
                          c.parity_ok, c.framing_ok, c.is_break, c.length_ns)
                 for c, p in zip(chars, pos)]
    glist: list[Glitch] = []
    if isinstance(glitches, int) and glitches > 0:
        nb = int(total_ns // T)
        centres = (rng.choice(nb - 2, size=min(glitches, nb - 2), replace=False) + 1.5) * T
        glist = [Glitch(int(round(c - glitch_width * T / 2)), int(round(glitch_width * T)))
                 for c in np.sort(centres)]
    elif not isinstance(glitches, int):
        glist = [Glitch(int(round(ts * 1e9)), int(round(w * 1e9))) for ts, w in glitches]
    if glist:
        et, ev = _insert_glitches(et, ev, glist)
    n = int(math.ceil(total_ns * sample_rate / 1e9))
    return Waveform(opt, float(sample_rate), actual_baud, cf, n, float(mark), float(space), et, ev,
                    chars, glist, rise_time, rise_time if fall_time is None else fall_time, noise,
                    noise_clip, sag, sag_tau_bits, ambient, seed)


def _items(data, T):
    """(time_ns or None, item) for each thing to send."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return [(None, b) for b in bytes(data)]
    out = []
    for it in data:
        if isinstance(it, (Char, Break, int)):
            out.append((None, it))
            continue
        if isinstance(it, tuple):
            when, val = it[0], it[1]
        else:
            when, val = getattr(it, "t_ns"), getattr(it, "value", None)
            if val is None:
                val = getattr(it, "data")
        if isinstance(val, (bytes, bytearray)):
            for k, b in enumerate(val):
                out.append((None if k else int(when), b))
        else:
            out.append((int(when), val))
    return out


def _insert_glitches(et, ev, glist):
    t = list(et)
    v = list(ev)
    for g in glist:
        i = int(np.searchsorted(et, g.t_ns, side="right"))
        cur = int(ev[i - 1]) if i > 0 else 1
        t += [float(g.t_ns), float(g.t_ns + g.width_ns)]
        v += [1 - cur, cur]
    order = np.argsort(np.asarray(t), kind="stable")
    return np.asarray(t)[order], np.asarray(v, dtype=np.int8)[order]


_WIRE = CharFormat(8, "N", 1)      # the line bits of a wire byte: start, 8 bits (7E1: parity is bit 7), stop
_7E1 = CharFormat.parse("7E1")


# --------------------------------------------------------------------------- a wire record as a waveform
def line_edges(record, directions: Iterable[str], t0_ns: int, t1_ns: int):
    """Transitions of the line in [t0_ns, t1_ns) as seen by a probe on ``directions`` (one
    direction, or both: on the shared line a sender at space pulls it to space, so the logic is the
    AND of the senders; assumed).  Returns (level at t0 (1 = mark), [(t_ns, level), ...]).

    Characters come from the wire record: a character whose ``line`` is -1 was never on the wire;
    a break holds space from its start to its end; a character is start bit, the 8 bits of its wire
    byte LSB first, stop bit, over t_start..t_end."""
    dirs = set(directions)
    per: dict[str, list[tuple[int, int, list[int]]]] = {d: [] for d in dirs}
    for c in record:
        if c.direction not in dirs or c.line < 0 or c.t_end_ns <= c.t_start_ns:
            continue
        if c.t_end_ns < t0_ns or c.t_start_ns >= t1_ns:
            continue   # over before the screen (the line back at mark), or after it
        if c.index == -1 and "break" in c.faults:
            per[c.direction].append((c.t_start_ns, c.t_end_ns, [0]))
        else:
            per[c.direction].append((c.t_start_ns, c.t_end_ns, _WIRE.bits(c.line)))
    events: list[tuple[int, str, int]] = []
    for d, chars in per.items():
        chars.sort(key=lambda x: x[0])
        for ts, te, bits in chars:
            step = (te - ts) / len(bits) if len(bits) > 1 else (te - ts)
            prev = None
            for k, b in enumerate(bits):
                if b != prev:
                    events.append((ts + int(round(k * step)), d, b))
                    prev = b
            if prev != 1:
                events.append((te, d, 1))
    events.sort(key=lambda e: e[0])
    level = {d: 1 for d in dirs}
    start_level = 1
    out: list[tuple[int, int]] = []
    cur = 1
    for t, d, b in events:
        level[d] = b
        new = 1 if all(level.values()) else 0
        if t < t0_ns:
            start_level = cur = new
            continue
        if t >= t1_ns:
            break
        if new != cur:
            out.append((t, new))
            cur = new
    return start_level, out


def line_chars(record, directions: Iterable[str], t0_ns: int, t1_ns: int) -> list:
    """The wire record's characters on the line (``line`` >= 0) lying wholly inside [t0, t1)."""
    dirs = set(directions)
    return [c for c in record if c.direction in dirs and c.line >= 0 and c.index >= 0
            and c.t_start_ns >= t0_ns and c.t_end_ns <= t1_ns]


def line_waveform(record, option, t0_ns: int, duration_ns: int, n_samples: int,
                  directions: Iterable[str] = ("to_meter", "to_hhu"), levels=None,
                  rise_time_s: float = 0.0, noise_rms: float = 0.0, seed: int = 0) -> Waveform:
    """The line [t0, t0 + duration) as a rig.physical.synth Waveform of ``n_samples`` samples
    (sample 0 at t0), in the option's unit.  ``levels``: (mark, space), default the option's
    nominal ones.  Its ``chars`` are the ground truth (start times relative to t0)."""
    opt = get_option(option)
    mark, space = levels if levels is not None else (opt.nominal_mark, opt.nominal_space)
    t1 = t0_ns + duration_ns
    start, edges = line_edges(record, directions, t0_ns, t1)
    et = [float(t - t0_ns) for t, _ in edges]
    ev = [lv for _, lv in edges]
    if start == 0:
        et.insert(0, 0.0)
        ev.insert(0, 0)
    truth = []
    bauds = []
    for c in line_chars(record, directions, t0_ns, t1):
        v = c.line & 0x7F
        truth.append(TrueChar(v, c.t_start_ns - t0_ns, _7E1.parity_bit(v) == (c.line >> 7) & 1, True))
        bauds.append(c.baud)
    baud = float(np.median(bauds)) if bauds else 300.0
    sample_rate = n_samples * 1e9 / duration_ns
    return Waveform(opt, sample_rate, baud, _7E1, int(n_samples), float(mark), float(space),
                    np.asarray(et, dtype=np.float64), np.asarray(ev, dtype=np.int8), truth, [],
                    rise_time_s, rise_time_s, noise_rms, 3.0, 0.0, 20.0, 0.0, seed)
