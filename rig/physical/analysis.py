"""Capture analysis: a scope capture becomes characters, bit timings, levels and measurements.

:func:`decode` drives the Cython decoder (``rig._uart.UartDecoder``) chunk by chunk over an array, a
memory-mapped array or a capture file, so memory stays bounded by a few chunks whatever the capture
size, and turns its raw statistics into :class:`rig.measurement.Measurement` values with the
interface option's limits.  :func:`load_capture` reads .npy, .csv and .wav captures.
"""
from __future__ import annotations

import json
import math
import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from rig.errors import RigError
from rig.measurement import Measurement
from rig.physical.charformat import CharFormat
from rig.physical.options import InterfaceOption, get_option

DEFAULT_CHUNK = 1 << 20
STANDARD_BAUDS = (300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)


class CaptureError(RigError, ValueError):
    """A capture that cannot be decoded truthfully (empty, no finite sample, flat, levels not found, a
    speed that does not fit it): the message says why.  Never "0 characters" with verdicts."""


@dataclass
class DecodeResult:
    """What a capture decodes to.  Times are integer ns (``chars['t_start_ns']``)."""

    chars: np.ndarray                 # structured, rig._uart.CHAR_DTYPE
    option: InterfaceOption
    fmt: CharFormat
    sample_rate: float
    nominal_baud: float
    stats: dict
    levels: dict                      # mark, space, thresholds, ... in the option's unit
    measurements: list[Measurement]
    glitches: np.ndarray
    edges: np.ndarray | None = None   # pos (samples), mark (1/0) when keep_edges
    level_source: str = ""
    frames: list = field(default_factory=list)
    parts: list = field(default_factory=list)     # [(first sample, end sample, DecodeResult)] by speed
    fit_edges: np.ndarray | None = None    # when keep_edges: the edges of each character's fit, with the
    #                                        decoder's jitter and bit widths (rig._uart.FIT_DTYPE)

    @property
    def values(self) -> bytes:
        """The decoded character values (breaks left out), as bytes when they fit."""
        v = self.chars["value"][self.chars["is_break"] == 0]
        return bytes((v & 0xFF).astype(np.uint8).tolist())

    @property
    def baud(self) -> float:
        """The measured speed in Bd (the fitted bit period), NaN without one."""
        T = self.bit_period_samples
        return self.sample_rate / T if T > 0 else float("nan")

    @property
    def bit_period_samples(self) -> float:
        """The bit period in samples, a least-squares fit of the edges' positions (the nominal period
        without one)."""
        s = self.stats
        return s["sxy"] / s["sxx"] if s["sxx"] > 0 else s["T"]

    @property
    def jitter_rms_ui(self) -> float:
        """The edges' RMS jitter in unit intervals (NaN without edges)."""
        s = self.stats
        return math.sqrt(s["jit_sum2"] / s["jit_n"]) / s["T"] if s["jit_n"] else float("nan")

    def measurement(self, name: str) -> Measurement | None:
        """The measurement named `name`, or None."""
        for m in self.measurements:
            if m.name == name:
                return m
        return None

    @property
    def passed(self) -> bool:
        """No measurement failed its limits."""
        return all(m.passed for m in self.measurements)

    def to_json_obj(self) -> dict:
        """The result as `rig decode --json` prints it (non-finite numbers as null)."""
        c = self.chars
        chars = [{"value": int(v), "t_start_s": int(t) / 1e9, "parity_ok": bool(p), "framing_ok": bool(f),
                  **({"break": True} if b else {})}
                 for v, t, p, f, b in zip(c["value"], c["t_start_ns"], c["parity_ok"], c["framing_ok"],
                                          c["is_break"])]
        return {
            "chars": chars,
            "baud": _finite(self.baud),
            "jitter_rms_ui": _finite(self.jitter_rms_ui),
            "levels": {k: _finite(v) if isinstance(v, float) else v for k, v in self.levels.items()},
            "measurements": [
                {**m.as_dict(), "value": _finite(m.value) if isinstance(m.value, float) else m.value}
                for m in self.measurements],
            "option": self.option.name,
            "format": str(self.fmt),
            "sample_rate": self.sample_rate,
            "frames": [_frame_obj(f) for f in self.frames],
            **({"parts": [{"start_sample": a, "end_sample": b, "nominal_baud": r.nominal_baud,
                           "characters": int(len(r.chars))} for a, b, r in self.parts]} if self.parts else {}),
        }

    def to_json(self, **kw) -> str:
        """to_json_obj() as JSON text (`kw` for json.dumps)."""
        return json.dumps(self.to_json_obj(), **kw)


def _finite(v):
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _frame_obj(f) -> dict:
    return {"kind": f.kind, "start": f.start, "end": f.end, "ok": bool(f.ok),
            "errors": list(f.errors_list()), "data": bytes(f.data).decode("latin-1")}


# --- reading captures ------------------------------------------------------------------------------
@dataclass
class Capture:
    """A capture on disk or in memory: ``chunks()`` yields it piece by piece."""

    source: str | Path | np.ndarray
    sample_rate: float | None
    n: int
    dtype: np.dtype
    scale: float = 1.0
    offset: float = 0.0
    _npy_offset: int = 0

    def chunks(self, chunk: int = DEFAULT_CHUNK) -> Iterator[np.ndarray]:
        """The samples chunk by chunk.  A .npy file is read through a memory map."""
        if isinstance(self.source, (str, Path)):
            yield from _read_npy_chunks(self.source, self._npy_offset, self.n, self.dtype, chunk)
            return
        arr = self.source
        mm = getattr(arr, "_mmap", None) if isinstance(arr, np.memmap) else None
        for s in range(0, self.n, chunk):
            yield arr[s:s + chunk]
            if mm is not None and hasattr(mm, "madvise"):
                try:  # let the kernel drop the pages already decoded
                    mm.madvise(mmap.MADV_DONTNEED)
                except (OSError, ValueError):
                    pass


def _read_npy_chunks(path, offset, n, dtype, chunk):
    """The samples of a .npy file in chunks: views of a read-only memory map of the file (no copy);
    each chunk's pages are dropped from the process (MADV_DONTNEED, they stay in the page cache) once
    the next is asked for, so the resident size stays a few chunks whatever the file size.  Where the
    file cannot be mapped, read() into one reused buffer."""
    size = os.path.getsize(path)
    if n and offset + n * dtype.itemsize > size:
        raise ValueError(f"{path}: file ends after {(size - offset) // dtype.itemsize} samples, header says {n}")
    with open(path, "rb", buffering=0) as f:
        try:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if n else None
        except (OSError, ValueError):
            mm = None
        if mm is None:
            yield from _read_npy_chunks_read(f, path, offset, n, dtype, chunk)
            return
        page = mmap.PAGESIZE
        drop = hasattr(mm, "madvise")
        try:
            x = np.frombuffer(mm, dtype=dtype, count=n, offset=offset)
            dropped = 0
            for s in range(0, n, chunk):
                yield x[s:s + chunk]
                end = (offset + min(n, s + chunk) * dtype.itemsize) // page * page
                if drop and end > dropped:
                    try:
                        mm.madvise(mmap.MADV_DONTNEED, dropped, end - dropped)
                    except (OSError, ValueError):
                        drop = False
                    dropped = end
            del x
        finally:
            try:
                mm.close()
            except BufferError:   # a chunk still referenced elsewhere: the map goes with it
                pass


def _read_npy_chunks_read(f, path, offset, n, dtype, chunk):
    buf = np.empty(chunk, dtype=dtype)
    f.seek(offset)
    done = 0
    while done < n:
        k = min(chunk, n - done)
        view = memoryview(buf[:k]).cast("B")
        got = 0
        while got < view.nbytes:
            r = f.readinto(view[got:])
            if not r:
                raise ValueError(f"{path}: file ends after {done + got // dtype.itemsize} samples, "
                                 f"header says {n}")
            got += r
        yield buf[:k]
        done += k


def load_capture(path, sample_rate: float | None = None, column: int | None = None) -> Capture:
    """Open a capture: .npy (read in chunks, never whole), .csv (time,value or value per line), .wav."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext == ".npy":
        with open(p, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            off = f.tell()
        if len(shape) != 1:
            if len(shape) == 2 and 1 in shape:
                shape = (shape[0] * shape[1],)
            else:
                raise ValueError(f"{path}: expected a 1-D capture, found shape {shape}")
        dtype = np.dtype(dtype)
        if fortran and len(shape) > 1:
            raise ValueError(f"{path}: Fortran-ordered capture")
        if dtype.byteorder == ">" or dtype.kind not in "fi" or dtype.itemsize > 8:
            arr = np.load(p, mmap_mode="r").reshape(-1).astype(np.float64)
            return Capture(arr, sample_rate, len(arr), arr.dtype)
        return Capture(str(p), sample_rate, int(shape[0]), dtype, _npy_offset=off)
    if ext == ".csv":
        rows = np.genfromtxt(p, delimiter=",", comments="#", dtype=np.float64, invalid_raise=False)
        if rows.ndim == 2 and rows.shape[1] >= 2 and np.isnan(rows[0]).all():
            rows = rows[1:]
        if rows.ndim == 1:
            vals = rows[~np.isnan(rows)]
        else:
            col = rows.shape[1] - 1 if column is None else column
            vals = rows[:, col]
            if sample_rate is None and rows.shape[1] >= 2:
                dt = np.diff(rows[:, 0])
                dt = dt[np.isfinite(dt)]
                if len(dt) and np.median(dt) > 0:
                    sample_rate = 1.0 / float(np.median(dt))
        vals = np.ascontiguousarray(vals, dtype=np.float64)
        return Capture(vals, sample_rate, len(vals), vals.dtype)
    if ext == ".wav":
        import wave
        with wave.open(str(p), "rb") as w:
            sr = w.getframerate()
            nch, width, nfr = w.getnchannels(), w.getsampwidth(), w.getnframes()
            raw = w.readframes(nfr)
        wav_dt = {1: np.uint8, 2: np.int16, 4: np.int32}.get(width)
        if wav_dt is None:
            raise ValueError(f"{path}: {8 * width}-bit WAV samples are not supported")
        a = np.frombuffer(raw, dtype=wav_dt).reshape(-1, nch)[:, 0 if column is None else column]
        if wav_dt == np.uint8:
            a = (a.astype(np.int16) - 128).astype(np.int8)
        elif wav_dt == np.int32:
            a = a.astype(np.float64)
        a = np.ascontiguousarray(a)
        return Capture(a, sample_rate or float(sr), len(a), a.dtype)
    raise ValueError(f"{path}: unknown capture format {ext!r} (expected .npy, .csv or .wav)")


def as_capture(capture, sample_rate=None) -> Capture:
    """A Capture from a Capture, a file path (load_capture) or an array of samples."""
    if isinstance(capture, Capture):
        return capture
    if isinstance(capture, (str, Path)):
        return load_capture(capture, sample_rate)
    arr = capture if isinstance(capture, np.ndarray) else np.asarray(capture)
    arr = arr.reshape(-1)
    return Capture(arr, sample_rate, len(arr), arr.dtype)


# --- decoding ----------------------------------------------------------------------------------------
def decode(capture, sample_rate: float | None = None, option="current-loop", baud=None, fmt="7E1", *,
           thresholds=None, scale: float = 1.0, offset: float = 0.0, hysteresis: float = 1.0 / 6,
           glitch_ui: float = 0.35, chunk: int = DEFAULT_CHUNK, keep_edges: bool = False,
           analysis_samples: int = 1 << 18, find_frames: bool = False) -> DecodeResult:
    """Decode a capture (array, np.memmap, path, or :class:`Capture`) on an interface option.

    Values are physical = raw × ``scale`` + ``offset`` in the option's unit.  ``baud`` None or "auto"
    detects the speed; a number is the nominal speed, refined from the edges.  ``thresholds`` (low,
    high) in physical units override the ones set from the levels.

    Raises :class:`CaptureError` (with the reason) for a capture that is empty, has no finite sample,
    or shows no two levels and no character (without ``thresholds``: a flat capture), and for a
    ``baud`` that does not fit (every character a BREAK, or nothing but glitches).  With ``baud``
    auto, a capture whose speed changes (IEC 62056-21 mode C: 300 Bd, then the agreed speed) is
    decoded part by part, each at its own speed (``parts``).
    """
    cap = as_capture(capture, sample_rate)
    fs = cap.sample_rate if cap.sample_rate else sample_rate
    if not fs:
        raise ValueError("the sample rate is not known: give sample_rate (--sample-rate)")
    if not math.isfinite(float(fs)) or float(fs) <= 0:
        raise CaptureError(f"sample rate {fs!r} is not a positive finite number")
    if cap.n == 0:
        raise CaptureError("empty capture: no samples")
    opt = get_option(option)
    cf = CharFormat.parse(fmt)
    if baud is not None and not (isinstance(baud, str) and baud.lower() == "auto"):
        baud = float(baud)
        if not math.isfinite(baud) or baud <= 0:
            raise CaptureError(f"baud {baud!r} is not a positive finite speed")
    else:
        baud = None
    kw = dict(thresholds=thresholds, scale=scale, offset=offset, hysteresis=hysteresis, glitch_ui=glitch_ui,
              keep_edges=keep_edges, analysis_samples=analysis_samples)
    res = _decode_run(cap.chunks(chunk), float(fs), opt, cf, baud, **kw)
    if thresholds is None and (res.level_source != "histogram" or _suspect(res)):
        noisy = _bit_average_result(cap, float(fs), opt, cf, baud, res, scale, offset, analysis_samples,
                                    find_frames)
        if noisy is not None:
            return noisy
    _check_truth(res, cap, baud, thresholds, scale, offset, chunk)
    if baud is None and _suspect(res):
        parts = speed_parts(cap, float(fs), opt, cf, chunk=chunk, **{k: kw[k] for k in (
            "thresholds", "scale", "offset", "hysteresis", "analysis_samples")})
        if len(parts) > 1:
            res = _decode_parts(cap, parts, float(fs), opt, cf, kw)
    if find_frames:
        res.frames = frames_in(res.chars, cf)
    return res


def _bit_average_result(cap: Capture, fs: float, opt, cf, baud, res: DecodeResult, scale, offset,
                        analysis_samples: int, find_frames: bool) -> DecodeResult | None:
    """Under heavy noise (rig.physical.robust.NOISE_RATIO of the swing, rms, or more, measured on the
    first ``analysis_samples``), the characters decided from bit averages instead of the comparator's
    edges; None for a capture below that noise (the comparator decoder's result stands).  Edge timings
    (rise and fall times, jitter, bit widths) are not measured then: the noise hides them."""
    from rig.physical import robust

    arr = _array_of(cap)
    head = np.asarray(arr[:max(analysis_samples, 1 << 16)], dtype=np.float64) * scale + offset
    head = head[np.isfinite(head)]
    if len(head) < 64:
        return None
    # the noise first, on the bit the comparator decoder saw (cheap); the speed only for a noisy capture
    guess = baud or res.nominal_baud or nearest_standard(res.baud) or 9600.0
    lv = robust.robust_levels(head, fs / guess)
    ratio = robust.noise_ratio(head, lv)
    if lv is None or not ratio >= robust.NOISE_RATIO:
        return None
    b = baud or robust.robust_baud(head, fs, cf, mark_is_high=opt.mark_is_high)
    if not b:
        return None
    lv = robust.robust_levels(head, fs / b)
    ratio = robust.noise_ratio(head, lv)
    if lv is None or not ratio >= robust.NOISE_RATIO:
        return None
    if not robust.levels_separated(ratio, fs / b):
        return None                  # noise alone (Otsu splits any histogram): no levels
    sigma = ratio * abs(lv[1] - lv[0])
    x = np.asarray(arr, dtype=np.float64) * scale + offset
    chars, lv = robust.decode_bit_average(x, fs, b, cf, mark_is_high=opt.mark_is_high, levels=lv)
    assert lv is not None                      # the levels given come back
    ratio = sigma / abs(lv[1] - lv[0]) if lv[1] != lv[0] else ratio     # against the levels the bits show
    mark, space = (lv[1], lv[0]) if opt.mark_is_high else (lv[0], lv[1])
    T = fs / b
    nb = chars["is_break"] == 0
    st = dict(res.stats)
    st.update(T=T, sxy=0.0, sxx=0.0, jit_n=0, glitches=0, breaks=int((~nb).sum()))
    levels = {"mark": float(mark), "space": float(space), "threshold_low": 0.5 * (mark + space),
              "threshold_high": 0.5 * (mark + space), "unit": opt.unit,
              "source": f"bit averages (noise {ratio:.2f} of the swing, rms)"}
    basis = "edge timings not measured: the noise hides them"
    M = [Measurement("characters", int(len(chars)), "count"),
         opt.measure("mark_level", float(mark)), opt.measure("space_level", float(space)),
         Measurement("noise_rms", ratio, "of swing", basis=basis),
         Measurement("nominal_baud", float(b), "Bd", basis="given" if baud else "best bit-average decode"),
         opt.measure("parity_errors", int(((chars["parity_ok"] == 0) & nb).sum())),
         opt.measure("framing_errors", int(((chars["framing_ok"] == 0) & nb).sum()))]
    out = DecodeResult(chars, opt, cf, fs, float(b), st, levels, M, np.zeros(0, dtype=res.glitches.dtype), None,
                       levels["source"])
    if find_frames:
        out.frames = frames_in(out.chars, cf)
    return out


def _decode_run(chunks, fs: float, opt, cf, baud, *, thresholds, scale, offset, hysteresis, glitch_ui,
                keep_edges, analysis_samples, t0_ns: int = 0) -> DecodeResult:
    """One decoder over ``chunks`` (an iterable of arrays), its result."""
    from rig._uart import UartDecoder

    dec = UartDecoder(fs, baud, data_bits=cf.data_bits, parity=cf.parity, stop_bits=cf.stop_bits,
                      mark_is_high=opt.mark_is_high, thresholds=thresholds, hysteresis=hysteresis,
                      glitch_ui=glitch_ui, analysis_samples=analysis_samples, scale=scale, offset=offset,
                      fallback_thresholds=opt.receiver_thresholds(), keep_edges=keep_edges, t0_ns=t0_ns)
    edge_parts, fit_parts = [], []
    for c in chunks:
        dec.feed(c, False)        # the characters stay in the decoder: one array at the end, no copy
        if keep_edges:
            edge_parts.append(dec.take_edges())
            fit_parts.append(dec.take_fit_edges())
    chars = dec.finish()
    if keep_edges:
        edge_parts.append(dec.take_edges())
        fit_parts.append(dec.take_fit_edges())
    edges = np.concatenate(edge_parts) if keep_edges else None
    fit_edges = np.concatenate(fit_parts) if keep_edges else None
    return build_result(chars, dec.stats(), dec.histogram(), dec.take_glitches(), opt, cf, fs,
                        baud, scale, offset, dec.level_source or "", edges, fit_edges)


def _check_truth(res: DecodeResult, cap: Capture, baud, thresholds, scale, offset, chunk) -> None:
    """Refuse a result that would not be the truth: no levels and no character (the reason found by
    one more pass over the samples: no finite sample, or one level only), or a given speed that
    does not fit the capture."""
    n_chars = len(res.chars)
    if n_chars == 0 and thresholds is None and res.level_source not in ("histogram",):
        finite = 0
        lo, hi = math.inf, -math.inf
        for c in cap.chunks(chunk):
            x = np.asarray(c, dtype=np.float64)
            ok = np.isfinite(x)
            k = int(ok.sum())
            if k:
                finite += k
                lo, hi = min(lo, float(x[ok].min())), max(hi, float(x[ok].max()))
        unit = res.option.unit
        if finite == 0:
            raise CaptureError(f"no finite sample in the capture ({cap.n} samples, all NaN or infinite): "
                               f"no levels to decode")
        plo, phi = sorted((lo * scale + offset, hi * scale + offset))
        if hi <= lo:
            raise CaptureError(f"flat capture: all {finite} finite samples are {plo:.6g} {unit}: no two levels, "
                               f"no transition to decode")
        raise CaptureError(f"the levels cannot be found: the samples ({plo:.6g} .. {phi:.6g} {unit}) show no two "
                           f"separated levels and cross no receiver threshold ({res.levels['threshold_low']:.6g} / "
                           f"{res.levels['threshold_high']:.6g} {unit}); give --thresholds if the line is there")
    if baud is not None:
        breaks = int(res.chars["is_break"].sum()) if n_chars else 0
        what = None
        if n_chars and breaks == n_chars:
            what = f"all {n_chars} characters are BREAKs"
        elif n_chars == 0 and int(res.stats["glitches"]) > 0:
            what = f"no character, {int(res.stats['glitches'])} pulses shorter than a bit (glitches)"
        if what:
            # a line stuck at space, or drowned in noise, is BREAKs and glitches at any speed: the
            # given speed is wrong only if another one the edges fit reads the characters right
            for other in dict.fromkeys(b for b in _edge_bauds(cap, res, thresholds, scale, offset, chunk)
                                       if b != nearest_standard(baud) and 2 * b <= res.sample_rate):
                r = _decode_run(cap.chunks(chunk), res.sample_rate, res.option, res.fmt, other,
                                thresholds=thresholds, scale=scale, offset=offset, hysteresis=1.0 / 6,
                                glitch_ui=0.35, keep_edges=False, analysis_samples=1 << 18)
                c = r.chars
                good = int(((c["parity_ok"] == 1) & (c["framing_ok"] == 1) & (c["is_break"] == 0)).sum())
                if good >= 2 and good >= 0.8 * len(c):
                    raise CaptureError(f"the capture does not fit {baud:g} Bd: {what}; at {other:g} Bd, which "
                                       f"its edges fit, {good} of {len(c)} characters have parity and stop bits "
                                       f"right; try --baud auto")


def _edge_bauds(cap, res: DecodeResult, thresholds, scale, offset, chunk) -> list[float]:
    """The standard speeds the capture's edges fit, part by part ([] if none can be told)."""
    try:
        parts = speed_parts(cap, res.sample_rate, res.option, res.fmt, chunk=chunk, thresholds=thresholds,
                            scale=scale, offset=offset)
    except (ValueError, ArithmeticError):
        return []
    return [b for _, _, b in parts if b]


def _suspect(res: DecodeResult) -> bool:
    """Signs that part of an auto-baud capture was at another speed: glitches, breaks or errors."""
    st = res.stats
    return bool(int(st["glitches"]) or int(st["breaks"]) or int(st.get("char_parity_errors", 0))
                or int(st.get("char_framing_errors", 0)))


def _array_of(cap: Capture):
    """The whole capture as an array (a read-only memory map of a .npy file: nothing read yet)."""
    if isinstance(cap.source, (str, Path)):
        return np.lib.format.open_memmap(cap.source, mode="r").reshape(-1)
    return cap.source


def speed_parts(cap, fs: float, opt, cf, *, chunk: int = DEFAULT_CHUNK, thresholds=None, scale: float = 1.0,
                offset: float = 0.0, hysteresis: float = 1.0 / 6, analysis_samples: int = 1 << 18,
                gap_bits: float = 12.0, min_edges: int = 6) -> list[tuple[int, int, float]]:
    """The parts of a capture at one speed each: ``[(first sample, end sample, standard baud)]``.

    Every comparator edge is found (no glitch filter); the line is cut into bursts at idle gaps
    longer than ``gap_bits`` of the shorter pulse on either side (within a character no level lasts
    that long); each burst with ``min_edges`` edges gets the standard speed its edges fit
    (rig._uart.estimate_bit_period) when 80 % of its intervals are whole bits of it, the others that
    of the burst before; consecutive bursts at one speed are one part, cut in the middle of the gap
    between parts.  One part: no switch; speed 0: none fits (noise)."""
    from rig._uart import estimate_bit_period

    res = _decode_run(cap.chunks(chunk), fs, opt, cf, None, thresholds=thresholds, scale=scale, offset=offset,
                      hysteresis=hysteresis, glitch_ui=0.0, keep_edges=True, analysis_samples=analysis_samples)
    assert res.edges is not None               # keep_edges=True
    pos = np.asarray(res.edges["pos"], dtype=np.float64)
    if len(pos) < 2 * min_edges:
        return [(0, cap.n, 0.0)]
    d = np.diff(pos)
    w = 8
    pad = np.concatenate([np.full(w, np.inf), d, np.full(w, np.inf)])
    win = np.lib.stride_tricks.sliding_window_view(pad, w)
    left = win[:len(d)].min(axis=1)            # shortest of the w intervals before interval i
    right = win[w + 1:w + 1 + len(d)].min(axis=1)
    gap = d > gap_bits * np.minimum(left, right)
    cuts = np.flatnonzero(gap)                  # interval i is a gap: a burst ends at edge i
    starts = np.concatenate([[0], cuts + 1])
    ends = np.concatenate([cuts + 1, [len(pos)]])
    bursts = []
    for a, b in zip(starts, ends):
        baud = 0.0
        if b - a >= min_edges:
            T = estimate_bit_period(pos[a:b], fs, 0.0, 0.35)
            if T > 0:
                r = np.diff(pos[a:b]) / T
                k = np.rint(r)
                fit = float(((k >= 1) & (k <= 12) & (np.abs(r - k) < 0.2)).mean())
                if fit >= 0.8:          # noise crossing the thresholds fits no bit grid: no speed
                    baud = nearest_standard(fs / T)
        bursts.append([int(a), int(b), baud])
    known = [x[2] for x in bursts if x[2]]
    if not known:
        return [(0, cap.n, 0.0)]
    prev = known[0]
    for x in bursts:
        if x[2]:
            prev = x[2]
        else:
            x[2] = prev
    parts: list[list] = []
    for a, b, baud in bursts:
        if parts and parts[-1][2] == baud:
            parts[-1][1] = b
        else:
            parts.append([a, b, baud])
    out = []
    for k, (a, b, baud) in enumerate(parts):
        lo = 0 if k == 0 else int((pos[a - 1] + pos[a]) / 2)
        hi = cap.n if k == len(parts) - 1 else int((pos[b - 1] + pos[b]) / 2)
        out.append((lo, hi, float(baud)))
    return out


def _decode_parts(cap: Capture, parts, fs: float, opt, cf, kw) -> DecodeResult:
    """Each part decoded at its own speed; the characters (times from the capture's start), edges
    and glitches joined; the measurements of part k named ``part<k>.<name>``."""
    arr = _array_of(cap)
    ns = 1e9 / fs
    results = []
    for a, b, baud in parts:
        x = arr[a:b]
        r = _decode_run([x], fs, opt, cf, baud or None, t0_ns=int(round(a * ns)), **kw)
        _check_truth(r, as_capture(x, fs), baud or None, kw["thresholds"], kw["scale"], kw["offset"], len(x) or 1)
        results.append((a, b, r))
    chars = np.concatenate([r.chars for _, _, r in results])
    M = [Measurement("characters", int(len(chars)), "count")]
    for k, (a, b, r) in enumerate(results, 1):
        M += [replace_name(m, f"part{k}.{m.name}") for m in r.measurements]
    glitches = np.concatenate([_shift(r.glitches, a) for a, _, r in results])
    edges = fit_edges = None
    if kw["keep_edges"]:
        edges = np.concatenate([_shift(r.edges, a) for a, _, r in results])
        fits, n_e, n_c = [], 0, 0
        for _, _, r in results:      # indexes into the joined edges and characters
            assert r.fit_edges is not None and r.edges is not None      # keep_edges=True
            f = r.fit_edges.copy()
            f["edge"] += n_e
            f["char"] += n_c
            fits.append(f)
            n_e, n_c = n_e + len(r.edges), n_c + len(r.chars)
        fit_edges = np.concatenate(fits)
    main = max(results, key=lambda t: t[1] - t[0])[2]
    return DecodeResult(chars, opt, cf, fs, 0.0, main.stats, main.levels, M, glitches, edges,
                        main.level_source, parts=results, fit_edges=fit_edges)


def _shift(rec, a: int):
    if rec is None or not len(rec):
        return rec
    out = rec.copy()
    out["pos"] += a
    return out


def replace_name(m: Measurement, name: str) -> Measurement:
    """The measurement `m` under another name."""
    from dataclasses import replace
    return replace(m, name=name)


def levels_from_histogram(hist, hmin, hscale, mid) -> tuple[float, float]:
    """Medians of the samples below and above ``mid`` (raw units) from a strided histogram."""
    counts = np.asarray(hist, dtype=np.int64)
    if counts.sum() == 0:
        return float("nan"), float("nan")
    centres = hmin + (np.arange(len(counts)) + 0.5) / hscale
    if hscale == 1.0 and hmin in (-128.0, -32768.0):   # integer bins hold exact values
        centres = hmin + np.arange(len(counts), dtype=np.float64)
    below = centres < mid

    def med(mask):
        h = counts[mask]
        if h.sum() == 0:
            return float("nan")
        cs = np.cumsum(h)
        return float(centres[mask][int(np.searchsorted(cs, cs[-1] / 2.0))])

    return med(below), med(~below)


def build_result(chars, st, histogram, glitches, opt: InterfaceOption, cf: CharFormat, fs: float,
                 nominal_baud, scale, offset, level_source, edges=None, fit_edges=None) -> DecodeResult:
    """A DecodeResult from the decoder's outputs: levels in the option's unit (raw * scale + offset),
    speed and jitter, and the measurements judged against the option's limits."""
    T = st["T"]
    hist, hmin, hscale = histogram
    raw_lo, raw_hi = levels_from_histogram(hist, hmin, hscale, st["mid"])

    def phys(v):
        return v * scale + offset

    mark_raw, space_raw = (raw_hi, raw_lo) if st["mark_high_raw"] else (raw_lo, raw_hi)
    th = sorted((phys(st["lo"]), phys(st["hi"])))
    levels = {"mark": phys(mark_raw), "space": phys(space_raw), "threshold_low": th[0],
              "threshold_high": th[1], "unit": opt.unit, "source": level_source}
    T_meas = st["sxy"] / st["sxx"] if st["sxx"] > 0 else T
    baud_meas = fs / T_meas if T_meas > 0 else float("nan")
    nominal = nominal_baud if nominal_baud else nearest_standard(baud_meas)
    T_nom = fs / nominal if nominal else T
    ns = 1e9 / fs
    M = []
    M.append(Measurement("characters", int(len(chars)), "count"))
    M.append(opt.measure("mark_level", _nan(levels["mark"])))
    M.append(opt.measure("space_level", _nan(levels["space"])))
    pk = max(phys(st["vmin"]), phys(st["vmax"]), key=abs)
    M.append(opt.measure("peak_level", float(pk)))
    # physical rising = raw rising when scale > 0
    rise = (st["sum_rise"], st["n_rise"], st["max_rise"])
    fall = (st["sum_fall"], st["n_fall"], st["max_fall"])
    if scale < 0:
        rise, fall = fall, rise
    M.append(opt.measure("rise_time", rise[0] / rise[1] / T if rise[1] else float("nan")))
    M.append(opt.measure("fall_time", fall[0] / fall[1] / T if fall[1] else float("nan")))
    M.append(Measurement("baud", baud_meas, "Bd"))
    M.append(Measurement("nominal_baud", float(nominal) if nominal else float("nan"), "Bd"))
    M.append(opt.measure("baud_error", (baud_meas / nominal - 1.0) * 100.0 if nominal else float("nan")))
    M.append(Measurement("bit_width", T_meas * ns, "ns"))
    if st["bw_max"] >= st["bw_min"]:
        M.append(opt.measure("bit_width_min", st["bw_min"] / T_nom))
        M.append(opt.measure("bit_width_max", st["bw_max"] / T_nom))
    if st["jit_n"]:
        M.append(opt.measure("jitter_rms", math.sqrt(st["jit_sum2"] / st["jit_n"]) / T))
        M.append(opt.measure("jitter_peak", st["jit_peak"] / T))
        M.append(Measurement("jitter_pp", (st["jit_max"] - st["jit_min"]) / T, "UI"))
    M.append(opt.measure("glitches", int(st["glitches"])))
    if st["breaks"]:
        M.append(opt.measure("break_length", st["break_min"] / T))
    if "char_parity_errors" in st:   # counted by the decoder as the characters went out
        n_par, n_fram = int(st["char_parity_errors"]), int(st["char_framing_errors"])
    else:
        nb = chars["is_break"] == 0
        n_par = int(((chars["parity_ok"] == 0) & nb).sum())
        n_fram = int(((chars["framing_ok"] == 0) & nb).sum())
    M.append(opt.measure("parity_errors", n_par))
    M.append(opt.measure("framing_errors", n_fram))
    return DecodeResult(chars, opt, cf, fs, float(nominal) if nominal else 0.0, st, levels, M,
                        glitches, edges, level_source, fit_edges=fit_edges)


def _nan(v):
    return float("nan") if v is None else float(v)


def nearest_standard(baud: float) -> float:
    """The standard speed nearest to `baud` (by ratio); 0 for none or a non-finite one."""
    if not baud or not math.isfinite(baud):
        return 0.0
    return float(min(STANDARD_BAUDS, key=lambda b: abs(math.log(b / baud))))


def frames_in(chars, cf: CharFormat) -> list:
    """The frames the framing engine (rig._framing) finds in the decoded characters; [] if it is
    not built."""
    try:
        from rig._framing import Framer
    except ImportError:
        return []
    data = bytes((chars["value"][chars["is_break"] == 0] & 0x7F).astype(np.uint8).tolist())
    fr = Framer(parity="none")
    return list(fr.feed(data)) + list(fr.flush())
