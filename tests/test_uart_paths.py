"""The fast paths of rig._uart's float32 decoder (ext/uart_simd.h, ext/uart_sm.h) against the plain numpy
model and against each other: every instruction-set level the CPU has, chunk cuts at and next to the
64-sample block boundaries, long quiet stretches (the block skip), NaN and infinite samples (the
fourteen-compare path), thresholds that are floats, more than eight flips in a block, glitches, edges
exactly on a bit centre (the one-by-one centre count), the characters kept in the decoder and handed
over, and the memory-mapped reader."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rig import _uart
from rig._uart import UartDecoder
from rig.physical.analysis import decode
from rig.physical.model import decode_model
from rig.physical.options import OPTIONS
from rig.physical.synth import Break, Char, synthesize

LEVELS = list(range(_uart._simd_level(-1) + 1))
FIELDS = ("value", "t_start_ns", "t_end_ns", "parity_ok", "framing_ok", "is_break", "n_edges")
EXACT_STATS = ("T", "lo", "mid", "hi", "p10", "p90", "n_rise", "n_fall", "max_rise", "max_fall", "jit_n",
               "bw_min", "bw_max", "glitches", "breaks", "break_min", "false_starts", "n_samples")


@pytest.fixture(autouse=True)
def _best_level_after():
    yield
    _uart._simd_level(-1)


def run(x, fs, baud, cuts, level, mod=_uart, **kw):
    """Decode x cut at cuts with the comparator at most at instruction-set level (of the build ``mod``);
    every output."""
    mod._simd_level(level)
    d = mod.UartDecoder(fs, baud, keep_edges=True, **kw)
    parts, edges, fits = [], [], []
    for a, b in zip([0] + cuts, cuts + [len(x)]):
        parts.append(d.feed(x[a:b]))
        edges.append(d.take_edges())
        fits.append(d.take_fit_edges())
    parts.append(d.finish())
    edges.append(d.take_edges())
    fits.append(d.take_fit_edges())
    h = d.histogram()
    return (np.concatenate(parts), np.concatenate(edges), d.stats(), d.take_glitches(), h[0], np.concatenate(fits))


def same(a, b):
    """Bit for bit (NaN included)."""
    assert a[0].tobytes() == b[0].tobytes()
    assert a[1].tobytes() == b[1].tobytes()
    assert a[3].tobytes() == b[3].tobytes()
    assert a[4].tobytes() == b[4].tobytes()
    assert a[5].tobytes() == b[5].tobytes()
    assert a[2].keys() == b[2].keys()
    for k in a[2]:
        u, v = a[2][k], b[2][k]
        assert u == v or (isinstance(u, float) and math.isnan(u) and math.isnan(v)), k


def against_model(res, x, fs, baud, **kw):
    """The same as the numpy model."""
    chars, edges, st_, gl, _, fits = res
    mchars, medges, mst, mgl = decode_model(x, fs, baud, **kw)
    same_fit_edges(fits, mst["fit_edges"], st_)
    assert len(chars) == len(mchars)
    for f in FIELDS:
        assert chars[f].tolist() == [int(c[f]) for c in mchars], f
    assert np.array_equal(edges["pos"], medges["pos"]) and np.array_equal(edges["mark"], medges["mark"])
    assert gl["pos"].tolist() == [g[0] for g in mgl]
    for k in EXACT_STATS:
        assert st_[k] == mst[k] or (math.isinf(st_[k]) and math.isinf(mst[k])), k
    for k in ("sum_rise", "sum_fall", "jit_sum2", "sxy", "sxx", "jit_peak", "jit_min", "jit_max"):
        assert math.isclose(st_[k], mst[k], rel_tol=1e-9, abs_tol=1e-9), k
    return True


def same_fit_edges(fits, model_fits, stats):
    """The edges of the characters' fits as the numpy model's (jitter: its mean is added up in another
    order), and the jitter and bit-width statistics are over them."""
    assert fits[["edge", "char", "k"]].tolist() == model_fits[["edge", "char", "k"]].tolist()
    assert np.array_equal(fits["width"], model_fits["width"], equal_nan=True)
    assert np.allclose(fits["jitter"], model_fits["jitter"], rtol=1e-9, atol=1e-9)
    assert len(fits) == stats["jit_n"]
    if len(fits):
        j, w = fits["jitter"], fits["width"][~np.isnan(fits["width"])]
        assert (np.abs(j).max(), j.min(), j.max()) == (stats["jit_peak"], stats["jit_min"], stats["jit_max"])
        assert math.isclose((j * j).sum(), stats["jit_sum2"], rel_tol=1e-9, abs_tol=1e-9)
        if len(w):
            assert (w.min(), w.max()) == (stats["bw_min"], stats["bw_max"])


items = st.one_of(st.integers(0, 255), st.builds(Char, st.integers(0, 255), st.booleans(), st.booleans()),
                  st.builds(Break, st.floats(11, 40)))


@st.composite
def captures(draw):
    fmt = draw(st.sampled_from(["7E1", "8N1", "7O1", "8E2"]))
    name = draw(st.sampled_from(list(OPTIONS)))
    opt = OPTIONS[name]
    baud = draw(st.sampled_from([1200, 9600]))
    kw = dict(baud=baud, fmt=fmt, samples_per_bit=draw(st.floats(2.5, 120.0)),
              noise=draw(st.floats(0, 0.15)) * opt.swing, baud_error=draw(st.floats(-0.05, 0.05)),
              jitter=draw(st.floats(0, 0.06)), glitches=draw(st.integers(0, 4)),
              glitch_width=draw(st.floats(0.05, 0.3)), gap=(0.0, draw(st.floats(0, 40))),
              seed=draw(st.integers(0, 10_000)))
    kw["rise_time"] = draw(st.floats(0, 0.3)) / baud
    w = synthesize(draw(st.lists(items, min_size=1, max_size=14)), name, **kw)
    x = w.samples.astype(np.float32)
    dkw = dict(data_bits=int(fmt[0]), parity=fmt[1], stop_bits=int(fmt[2]), mark_is_high=opt.mark_is_high,
               analysis_samples=draw(st.sampled_from([64, 500, 1 << 20])),
               fallback_thresholds=opt.receiver_thresholds(), hysteresis=draw(st.sampled_from([1 / 6, 0.05, 0.42])))
    if draw(st.booleans()):   # thresholds that are floats, and a mid that is one
        m = round((opt.nominal_mark + opt.nominal_space) / 2)
        h = opt.swing / 8
        dkw["thresholds"] = (m - h, m + h)
    n = len(x)
    k = draw(st.integers(0, 3))
    if k == 0:
        cuts = []
    elif k == 1:   # at and next to block boundaries
        cuts = sorted({min(n, max(0, 64 * b + e)) for b, e in draw(
            st.lists(st.tuples(st.integers(0, n // 64 + 1), st.sampled_from([-1, 0, 1])), max_size=12))})
    elif k == 2:
        cuts = sorted(set(draw(st.lists(st.integers(0, n), max_size=10))))
    else:
        step = draw(st.sampled_from([1, 7, 63, 64, 65, 200]))
        cuts = list(range(step, n, step))[:400]
    baud_arg = draw(st.sampled_from([None, float(baud)]))
    return x, w.sample_rate, baud_arg, cuts, dkw


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(captures())
def test_every_level_and_chunking_gives_the_model_result(cap):
    x, fs, baud, cuts, kw = cap
    whole = run(x, fs, baud, [], LEVELS[-1], **kw)
    against_model(whole, x, fs, baud, **kw)
    for level in LEVELS:
        same(run(x, fs, baud, cuts, level, **kw), whole)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(captures(), st.lists(st.integers(0, 1 << 30), min_size=1, max_size=8),
       st.sampled_from([np.nan, np.inf, -np.inf, 1e30]))
def test_nan_and_extreme_samples_the_same_at_every_level(cap, where, bad):
    x, fs, baud, cuts, kw = cap
    x = x.copy()
    pre = min(len(x), kw["analysis_samples"])   # (the prefix analysis rejects a non-finite range)
    if len(x) > pre:
        x[[pre + w % (len(x) - pre) for w in where]] = bad
    whole = run(x, fs, baud, [], 0, **kw)
    for level in LEVELS:
        same(run(x, fs, baud, cuts, level, **kw), whole)


def square(bits_samples, lo=0.0, hi=20.0, idle=40):
    """A two-level line, instant transitions: (level, samples) runs after an idle mark."""
    out = [np.full(idle, hi, np.float32)]
    for level, k in bits_samples:
        out.append(np.full(k, hi if level else lo, np.float32))
    out.append(np.full(idle, hi, np.float32))
    return np.concatenate(out)


def test_edge_exactly_on_a_bit_centre():
    """Thresholds 5/15 (mid 10) on 0/20 levels put every edge half way between two samples and the bit
    period comes out exactly 10: an edge 15 samples after the previous one lies exactly on a bit centre,
    where the count has to be done one centre at a time."""
    runs = []
    for _ in range(40):
        runs += [(0, 10), (1, 15), (0, 10), (1, 20), (0, 25), (1, 20)]
    x = square(runs)
    kw = dict(data_bits=7, parity="E", stop_bits=1, thresholds=(5.0, 15.0), analysis_samples=1 << 20)
    whole = run(x, 96000.0, 9600.0, [], LEVELS[-1], **kw)
    assert whole[2]["T"] == 10.0 and whole[2]["mid"] == 10.0
    assert against_model(whole, x, 96000.0, 9600.0, **kw)
    for level in LEVELS:
        same(run(x, 96000.0, 9600.0, list(range(64, len(x), 64)), level, **kw), whole)


def test_more_than_eight_flips_in_a_block_and_a_noisy_line():
    rng = np.random.default_rng(5)
    w = synthesize(b"noisy line" * 20, "voltage", baud=9600, samples_per_bit=4, noise=3.0, noise_clip=None, seed=3)
    x = w.samples.astype(np.float32)
    x[2000:2600] = np.where(rng.random(600) < 0.5, -12.0, 12.0).astype(np.float32)   # a flip every sample or two
    kw = dict(mark_is_high=False, hysteresis=0.05, glitch_ui=0.0)
    whole = run(x, w.sample_rate, 9600.0, [], LEVELS[-1], **kw)
    assert max(whole[0]["n_edges"]) > 20   # counted beyond the 20 a character's fit keeps
    assert against_model(whole, x, w.sample_rate, 9600.0, **kw)
    for level in LEVELS:
        same(run(x, w.sample_rate, 9600.0, [1000, 2047, 2048, 2049, 3000], level, **kw), whole)


def test_characters_kept_in_the_decoder_and_handed_over():
    w = synthesize(bytes(range(32, 127)) * 400, "current-loop", baud=9600, samples_per_bit=10, noise=0.4, seed=2)
    x = w.samples
    ref = UartDecoder(w.sample_rate, 9600)
    per_feed = np.concatenate([ref.feed(x[s:s + 50_000]) for s in range(0, len(x), 50_000)] + [ref.finish()])
    d = UartDecoder(w.sample_rate, 9600)
    for s in range(0, len(x), 50_000):
        assert d.feed(x[s:s + 50_000], take=False) is None
    kept = d.finish()
    assert len(kept) >= 32768   # large enough to be handed over rather than copied
    assert kept.tobytes() == per_feed.tobytes() and kept.dtype == per_feed.dtype
    assert d.stats() == ref.stats()
    del d
    assert kept["value"].tolist() == [c.value for c in w.chars]


def test_prefix_histogram_is_numpys():
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(4, 3000))
        kind = int(rng.integers(4))
        x = [rng.normal(size=n).astype(np.float32), (rng.normal(size=n) * 1e6),
             rng.integers(-32768, 32767, n).astype(np.int16),
             (np.round(rng.normal(size=n) * 7) / 8).astype(np.float32)][kind]   # many values on edges
        mn, mx = float(x.min()), float(x.max())
        if not mx > mn:
            continue
        nb = int(rng.choice([1024, 7, 1000]))
        h1, e1 = np.histogram(x.astype(np.float64), bins=nb, range=(mn, mx))
        h2, e2 = _uart._histogram(x, nb, mn, mx)
        assert np.array_equal(h1, h2) and np.array_equal(e1, e2)


def test_character_error_counts_leave_breaks_out():
    items_ = [Char(65, True, False), Char(66, False, True), Break(20), 67, Char(0, True, True)] * 20
    for fmt in ("7E1", "7O1", "8N1"):
        w = synthesize(items_, "current-loop", fmt=fmt, baud=9600, samples_per_bit=10, noise=0.4)
        res = decode(w.samples, w.sample_rate, "current-loop", 9600, fmt)
        nb = res.chars["is_break"] == 0
        assert res.stats["char_parity_errors"] == int(((res.chars["parity_ok"] == 0) & nb).sum())
        assert res.stats["char_framing_errors"] == int(((res.chars["framing_ok"] == 0) & nb).sum())


@pytest.mark.parametrize("chunk", [1000, 4096, 1 << 20])
def test_memory_mapped_reader_gives_the_in_memory_result(tmp_path, chunk):
    w = synthesize(b"/?!\r\n" * 300, "current-loop", baud=9600, samples_per_bit=10, noise=0.3, seed=4)
    p = tmp_path / "c.npy"
    w.write_npy(p, chunk=777)
    a = decode(str(p), w.sample_rate, "current-loop", 9600, chunk=chunk)
    c = decode(w.samples, w.sample_rate, "current-loop", 9600, chunk=chunk)
    assert a.chars.tobytes() == c.chars.tobytes()
    assert a.stats == c.stats
    assert a.values == b"/?!\r\n" * 300


def test_truncated_npy_file_is_a_clear_error(tmp_path):
    w = synthesize(b"abc", "current-loop", baud=9600, samples_per_bit=10)
    p = tmp_path / "c.npy"
    w.write_npy(p)
    data = p.read_bytes()
    p.write_bytes(data[:-400])
    with pytest.raises(ValueError, match="file ends after"):
        decode(str(p), w.sample_rate, "current-loop", 9600)
