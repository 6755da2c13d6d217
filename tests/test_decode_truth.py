"""Captures decoded truthfully (issue 14 §5): degenerate captures are refused with the reason, a speed
that does not fit says so, and a capture spanning the IEC 62056-21 speed switch decodes part by part.
Through `rig decode` as a user runs it and through decode()."""
import json
import re

import numpy as np
import pytest

from conftest import decode_in_process as run
from rig.physical.analysis import CaptureError, decode
from rig.physical.synth import synthesize

FS = 9600 * 16


def save(tmp_path, x, name="cap.npy"):
    p = tmp_path / name
    np.save(p, np.asarray(x))
    return p


# --------------------------------------------------------------------------- degenerate captures
@pytest.mark.parametrize("samples, reason", [
    (np.zeros(0, np.float32), r"empty capture: no samples"),
    (np.full(20_000, 20.0, np.float32), r"flat capture: all 20000 finite samples are 20 mA: no two levels"),
    (np.full(20_000, np.nan, np.float32), r"no finite sample in the capture \(20000 samples, all NaN or infinite\)"),
    (np.where(np.arange(20_000) % 2, np.nan, 20.0).astype(np.float32), r"flat capture: all 10000 finite samples"),
    (20.0 + np.random.default_rng(1).normal(0, 0.5, 20_000).astype(np.float32),
     r"the levels cannot be found: the samples \(1\d\.\d+ .. 2\d\.\d+ mA\) show no two separated levels and cross no "
     r"receiver threshold \(3 / 9 mA\); give --thresholds if the line is there"),
], ids=["empty", "flat", "all-nan", "flat-with-nan", "no-levels"])
def test_flat_capture_refused(tmp_path, capsys, samples, reason):
    with pytest.raises(CaptureError, match=reason):
        decode(samples, FS, "current-loop")
    p = save(tmp_path, samples)
    rc, out = run([str(p), "--sample-rate", str(FS)], capsys)
    assert rc == 2 and out.out == ""                       # no "0 characters", no verdict
    assert out.err.startswith(f"rig decode: {p}: ") and "verdict" not in out.err


def test_idle_line_with_given_thresholds_is_zero_characters():
    # with the receiver's thresholds the flat line is known: an idle line, 0 characters (a DUT that
    # did not answer), not an error
    res = decode(np.full(20_000, 20.0, np.float32), FS, "current-loop", 9600, thresholds=(3.0, 9.0))
    assert len(res.chars) == 0


# --------------------------------------------------------------------------- a speed that does not fit
def test_baud_that_does_not_fit_is_refused_not_passed(tmp_path, capsys):
    w = synthesize(b"/?!\r\n", baud=300, sample_rate=FS, seed=1)
    p = save(tmp_path, w.samples)
    rc, out = run([str(p), "--sample-rate", str(FS), "--baud", "9600"], capsys)
    assert rc == 2 and "verdict: pass" not in out.out
    assert re.search(r"the capture does not fit 9600 Bd: all \d+ characters are BREAKs; at 300 Bd, which its edges "
                     r"fit, 5 of 5 characters have parity and stop bits right; try --baud auto", out.err), out.err
    fast = synthesize(b"\x02C.1.0(12345678)\r\n!\r\n\x03x", baud=9600, sample_rate=FS, seed=2)
    with pytest.raises(CaptureError, match=r"does not fit 300 Bd: no character, \d+ pulses shorter than a bit "
                                           r"\(glitches\); at 9600 Bd, which its edges fit, \d+ of \d+ characters"):
        decode(fast.samples, FS, "current-loop", 300)
    rc, out = run([str(p), "--sample-rate", str(FS), "--baud", "300"], capsys)   # the right speed
    assert rc == 0 and "/?!<CR><LF>" in out.out and "verdict: pass" in out.out


# --------------------------------------------------------------------------- 300 Bd, then the agreed speed
def mode_c_capture():
    """An IEC 62056-21 mode C exchange as one capture: request, identification and option select at
    300 Bd, then the data message at 9600 Bd (Z = 5)."""
    parts = [synthesize(b"/?!\r\n", baud=300, sample_rate=FS, idle_after=60, seed=1),
             synthesize(b"/RIG5METER\r\n", baud=300, sample_rate=FS, idle_after=60, seed=2),
             synthesize(b"\x06050\r\n", baud=300, sample_rate=FS, idle_after=60, seed=3),
             synthesize(b"\x02C.1.0(12345678)\r\n1.8.0(001234.5*kWh)\r\n!\r\n\x03x", baud=9600, sample_rate=FS,
                        idle_before=600, seed=4)]
    x = np.concatenate([w.samples for w in parts]).astype(np.float32)
    starts, n = [], 0
    for w in parts:
        starts += [n / FS * 1e9 + c.t_start_ns for c in w.chars]
        n += len(w.samples)
    text = b"".join(bytes(c.value for c in w.chars) for w in parts)
    return x, text, np.array(starts)


def test_baud_switch_capture_decoded_per_part(tmp_path, capsys):
    x, text, starts = mode_c_capture()
    res = decode(x, FS, "current-loop", "auto")
    assert res.values == text
    slow = len(b"/?!\r\n/RIG5METER\r\n\x06050\r\n")
    assert [(r.nominal_baud, len(r.chars)) for _, _, r in res.parts] == [(300.0, slow), (9600.0, len(text) - slow)]
    (a1, b1, _), (a2, b2, _) = res.parts
    # cut in the idle gap: after the last 300 Bd character (11 bits of 512 samples), before the first 9600 Bd one
    assert a1 == 0 and b1 == a2 and b2 == len(x)
    assert starts[slow - 1] * FS / 1e9 + 11 * FS / 300 < a2 < starts[slow] * FS / 1e9
    # times from the capture's start, within a sample of where each character was put
    np.testing.assert_allclose(res.chars["t_start_ns"], starts, atol=1e9 / FS)
    assert int(res.chars["is_break"].sum()) == 0 and len(res.glitches) == 0 and res.passed
    p = save(tmp_path, x)
    rc, out = run([str(p), "--sample-rate", str(FS), "--json"], capsys)
    obj = json.loads(out.out)
    assert rc == 0 and bytes(c["value"] for c in obj["chars"]) == text
    assert [q["nominal_baud"] for q in obj["parts"]] == [300.0, 9600.0]
    rc, out = run([str(p), "--sample-rate", str(FS)], capsys)
    assert "2 parts at their own speeds" in out.out and "300 Bd nominal" in out.out and "9600 Bd nominal" in out.out


def test_one_speed_capture_is_not_split():
    # a clean capture at one speed decodes exactly as before: one decoder, no parts
    w = synthesize(b"\x02C.1.0(12345678)\r\n!\r\n\x03x", baud=9600, sample_rate=FS, noise=0.5, seed=5)
    res = decode(w.samples, FS, "current-loop", "auto")
    assert res.parts == [] and res.values == bytes(c.value for c in w.chars)


def test_line_stuck_at_space_is_breaks_not_a_wrong_speed():
    # a loop whose mark current is below the receiver's threshold reads space throughout: what the
    # receiver reads (nothing, or BREAKs) is the truth at the right speed, not "does not fit"
    w = synthesize(b"/?!\r\n", baud=300, sample_rate=FS, levels=(2.0, 1.0), seed=6)
    res = decode(w.samples, FS, "current-loop", 300, thresholds=(3.0, 9.0))
    assert not (res.chars["is_break"] == 0).any()
    w = synthesize([0x2F, 0x3F, 0x21, 0x0D, 0x0A], baud=300, sample_rate=FS, idle_before=40, seed=6)
    x = w.samples.copy()
    x[int(w.chars[1].t_start_ns * FS / 1e9) + 512:] = 1.0     # the loop opens in the second character
    res = decode(x, FS, "current-loop", 300)
    assert res.chars["is_break"][-1] == 1 and res.chars["value"][0] == 0x2F


# --------------------------------------------------------------------------- heavy noise
def mid_bit_errors(w, data, fs, baud):
    """Characters a receiver sampling once at each bit's middle reads wrong, given the true timing
    (an independent reference: one sample per bit against mid-swing)."""
    T = fs / baud
    mid = 10.5                                           # current loop: mark 20 mA, space 1 mA
    x = w.samples
    bad = 0
    for c in w.chars:
        t0 = c.t_start_ns * fs / 1e9
        bits = [x[int(t0 + (k + 0.5) * T)] > mid for k in range(1, 8)]
        bad += sum(b << k for k, b in enumerate(bits)) != c.value
    return bad


@pytest.mark.parametrize("spb, baud", [(10, 9600), (16, 9600), (16, "auto")])
def test_heavy_noise_decoded_where_a_mid_bit_sampler_fails(spb, baud):
    data = bytes(np.random.default_rng(7).integers(0x20, 0x7F, 300).tolist())
    w = synthesize(data, baud=9600, samples_per_bit=spb, noise=0.4 * 19.0, noise_clip=None, seed=3)
    assert mid_bit_errors(w, data, w.sample_rate, 9600) > 0.1 * len(data)      # one in ten and more wrong
    res = decode(w.samples, w.sample_rate, "current-loop", baud)
    assert res.values == data
    assert res.values == data and res.nominal_baud == 9600
    assert res.level_source.startswith("bit averages (noise 0.4")
    lv = {m.name: m.value for m in res.measurements}
    assert lv["mark_level"] == pytest.approx(20.0, abs=0.3) and lv["space_level"] == pytest.approx(1.0, abs=0.3)
    assert "rise_time" not in lv and "jitter_rms" not in lv           # not measured under this noise


def test_clean_capture_decoded_exactly_as_the_comparator_decoder_does():
    from rig._uart import UartDecoder

    data = bytes(np.random.default_rng(8).integers(0x20, 0x7F, 200).tolist())
    w = synthesize(data, baud=9600, samples_per_bit=10, noise=0.05 * 19.0, seed=4)
    res = decode(w.samples, w.sample_rate, "current-loop", 9600)
    dec = UartDecoder(w.sample_rate, 9600, analysis_samples=1 << 18, fallback_thresholds=(3.0, 9.0))
    dec.feed(w.samples, False)
    assert res.level_source == "histogram" and res.chars.tobytes() == dec.finish().tobytes()


@pytest.mark.parametrize("baud, spb, noise, seed", [(300, 100, 0.5, 0), (300, 100, 0.8, 0), (300, 100, 0.5, 2),
                                                    (9600, 16, 1.0, 9)])
def test_noisy_capture_read_by_a_receiver_is_not_called_a_wrong_speed(baud, spb, noise, seed):
    # a receiver with fixed thresholds on a line drowned in noise reads breaks, glitches and garbage:
    # that is the receiver's truth (the electrical margin sweep counts it), not "does not fit"; noise
    # edges happen to fit a fast bit grid, but no speed reads characters from them
    w = synthesize(b"/?!\r\n" * 3, baud=baud, samples_per_bit=spb, noise=noise * 19.0, seed=seed)
    res = decode(w.samples, w.sample_rate, "current-loop", baud, thresholds=(3.0, 9.0))
    assert res.values != b"/?!\r\n" * 3


def test_heavy_noise_capture_through_the_cli_with_vcd(tmp_path, capsys):
    data = b"/?!\r\n" * 10
    w = synthesize(data, baud=9600, samples_per_bit=16, noise=0.4 * 19.0, noise_clip=None, seed=10)
    p = save(tmp_path, w.samples.astype(np.float32))
    vcd = tmp_path / "out.vcd"
    rc, out = run([str(p), "--sample-rate", str(w.sample_rate), "--baud", "9600", "--vcd", str(vcd)], capsys)
    assert "/?!<CR><LF>" * 10 in out.out and "levels from bit averages (noise 0.4" in out.out
    assert rc == 0 and "s/ \"" in vcd.read_text()


@pytest.mark.parametrize("slow, fast", [(300, 1200), (300, 4800), (300, 19200), (600, 9600)])
def test_speed_switch_to_each_agreed_speed_decoded_per_part(slow, fast):
    fs = fast * 12
    rng = np.random.default_rng(fast)
    a, b = bytes(rng.integers(0x20, 0x7F, 20).tolist()), bytes(rng.integers(0x20, 0x7F, 60).tolist())
    x = np.concatenate([synthesize(a, baud=slow, sample_rate=fs, idle_after=40, seed=1).samples,
                        synthesize(b, baud=fast, sample_rate=fs, idle_before=400, noise=0.3, seed=2).samples])
    res = decode(x, fs, "current-loop", "auto")
    assert res.values == a + b
    assert [(r.nominal_baud, len(r.chars)) for _, _, r in res.parts] == [(slow, len(a)), (fast, len(b))]
