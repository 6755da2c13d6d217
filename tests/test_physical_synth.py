"""The waveform synthesiser: levels, polarity, timing, determinism whatever the chunking."""
import numpy as np
import pytest

from rig.physical.options import OPTIONS
from rig.physical.synth import Break, synthesize


@pytest.mark.parametrize("name", list(OPTIONS))
def test_idle_is_mark_and_start_bit_is_space(name):
    opt = OPTIONS[name]
    w = synthesize(b"\x00", name, baud=1200, samples_per_bit=20)
    x = w.samples
    assert x.dtype == np.float32
    assert x[0] == pytest.approx(opt.nominal_mark)              # idle
    t_start = w.chars[0].t_start_ns
    i_mid_start = int((t_start + 0.5e9 / 1200) * w.sample_rate / 1e9)
    assert x[i_mid_start] == pytest.approx(opt.nominal_space)   # start bit
    assert len(x) == w.n_samples


def test_bit_timing_and_baud_error():
    w = synthesize(b"U", "current-loop", baud=9600, samples_per_bit=100, baud_error=0.05)
    # 'U' = 0x55 -> alternating bits: transitions one (fast) bit apart
    d = np.diff(w.edge_ns[:8])
    assert np.allclose(d, 1e9 / (9600 * 1.05))


def test_render_is_the_same_in_any_chunking():
    w = synthesize(b"hello", "voltage", baud=9600, samples_per_bit=13, noise=0.5, rise_time=8e-6,
                   jitter=0.05, sag=0.2, glitches=2, ambient=0.3, seed=5)
    whole = w.render()
    for chunk in (1, 7, 100, 65536 + 3):
        assert np.array_equal(np.concatenate(list(w.chunks(chunk))), whole)


@pytest.mark.parametrize("name", list(OPTIONS))
def test_sharp_edges_render_each_sample_at_the_level_of_the_last_edge(name):
    """Without rise time or sag (the virtual scope's default), a sample is the level set by the last
    edge at or before it: checked against a plain per-sample model, in any chunking."""
    opt = OPTIONS[name]
    w = synthesize(b"\x00U\x7fA", name, baud=9600, samples_per_bit=7.3, jitter=0.05, glitches=1, seed=3)
    x = w.render()
    dt = 1e9 / w.sample_rate
    level = {1: opt.nominal_mark, 0: opt.nominal_space}
    want = []
    for k in range(w.n_samples):
        t, last = k * dt, None
        for e, lv in zip(w.edge_ns, w.edge_logic):
            if e <= t:
                last = lv
            else:
                break
        want.append(opt.nominal_mark if last is None else level[int(last)])
    assert np.array_equal(x, np.asarray(want, dtype=np.float32))
    assert np.array_equal(np.concatenate(list(w.chunks(5))), x)


def test_smooth_edges_and_sag_render_as_a_per_sample_model():
    """Rise and fall times and sag: each sample from its last edge (found sample by sample here,
    a plain model of the first-order response), whatever the chunk."""
    import math

    w = synthesize(b"\x00U", "voltage", baud=9600, samples_per_bit=9.7, rise_time=8e-6, fall_time=3e-6,
                   jitter=0.05, sag=0.2, glitches=1, seed=4)
    dt_s = 1e9 / w.sample_rate
    mid = 0.5 * (w.mark + w.space)
    want = []
    for j in range(w.n_samples):
        t = j * dt_s
        k = max((n for n, e in enumerate(w.edge_ns) if e <= t), default=None)
        if k is None:
            want.append(w.mark)
            continue
        tgt = w.mark if w.edge_logic[k] == 1 else w.space
        tau = w._tau[k]
        d = t - w.edge_ns[k]
        v = tgt + (w._y0[k] - tgt) * (math.exp(-d / tau) if tau > 0 else 0.0)
        v = mid + (v - mid) * (1.0 - w.sag * (1.0 - math.exp(-d / (w.sag_tau_bits * w.bit_ns))))
        want.append(v)
    x = w.render()
    assert np.allclose(x, np.asarray(want, dtype=np.float32), rtol=0, atol=1e-5)
    assert np.array_equal(np.concatenate([w.render(0, 50), w.render(50, 51), w.render(51)]), x)


def test_noise_is_bounded_and_ambient_is_an_offset():
    w0 = synthesize(b"A", "optical", baud=300, samples_per_bit=10)
    w1 = synthesize(b"A", "optical", baud=300, samples_per_bit=10, noise=20.0, ambient=7.0)
    dev = w1.samples.astype(np.float64) - w0.samples - 7.0
    assert np.abs(dev).max() <= 60.0 + 1e-3 and dev.std() > 10.0


def test_rise_time_is_10_to_90_percent():
    w = synthesize(b"\x00", "current-loop", baud=300, sample_rate=10e6, rise_time=50e-6, fall_time=20e-6)
    x = w.samples.astype(np.float64)
    lo, hi = 1.0, 20.0
    p10, p90 = lo + 0.1 * (hi - lo), lo + 0.9 * (hi - lo)
    # the last rise (end of the all-space frame back to mark)
    i90 = np.flatnonzero(x >= p90)[-1]
    up = np.flatnonzero((x[:-1] < p10) & (x[1:] >= p10))[-1]
    up90 = np.flatnonzero((x[:-1] < p90) & (x[1:] >= p90))[-1]
    assert (up90 - up) / 10e6 == pytest.approx(50e-6, rel=0.01)
    assert i90 > up90


def test_wire_record_places_characters_at_their_times():
    rec = [(0, 0x2F), (5_000_000, b"?!")]
    w = synthesize(rec, "current-loop", baud=9600, samples_per_bit=10)
    starts = [c.t_start_ns for c in w.chars]
    assert [c.value for c in w.chars] == [0x2F, 0x3F, 0x21]
    assert starts[1] - starts[0] == pytest.approx(5_000_000, abs=1)
    assert starts[2] - starts[1] == pytest.approx(10 * 1e9 / 9600, abs=1)


def test_break_in_truth():
    w = synthesize([0x41, Break(30), 0x42], "current-loop", baud=2400, samples_per_bit=10)
    assert [c.is_break for c in w.chars] == [False, True, False]
    assert w.chars[1].length_ns == pytest.approx(30e9 / 2400, abs=1)
