"""`rig decode`: .npy/.csv/.wav in, characters, frames, measurements and VCD out."""
import json
import wave

import numpy as np
import pytest

from conftest import decode_in_process as run
from rig.physical.synth import Break, synthesize


@pytest.fixture
def wave_(tmp_path):
    w = synthesize([*b"/?!\r\n", Break(20), *b"\x06051\r\n"], "optical", baud=9600, samples_per_bit=10,
                   noise=20.0)
    p = tmp_path / "cap.npy"
    w.write_npy(p, chunk=1000)
    return w, p


def test_json(wave_, capsys):
    w, p = wave_
    rc, out = run([str(p), "--option", "optical", "--sample-rate", str(w.sample_rate), "--json",
                   "--chunk", "777"], capsys)
    obj = json.loads(out.out)
    assert {"chars", "baud", "jitter_rms_ui", "levels", "measurements"} <= set(obj)
    assert [c["value"] for c in obj["chars"]] == [c.value for c in w.chars]
    assert all(set(c) >= {"value", "t_start_s", "parity_ok", "framing_ok"} for c in obj["chars"])
    assert obj["chars"][0]["t_start_s"] == pytest.approx(w.chars[0].t_start_ns / 1e9, abs=1 / w.sample_rate)
    assert obj["baud"] == pytest.approx(9600, rel=0.005)
    assert all(m["verdict"] in ("pass", "fail", "info") for m in obj["measurements"])
    assert rc == (0 if all(m["verdict"] != "fail" for m in obj["measurements"]) else 1)


def test_text_report_and_vcd(wave_, capsys, tmp_path):
    w, p = wave_
    vcd = tmp_path / "out.vcd"
    rc, out = run([str(p), "--option", "optical", "--baud", "9600", "--sample-rate", str(w.sample_rate),
                   "--vcd", str(vcd)], capsys)
    assert "/?!<CR><LF><BREAK><ACK>051<CR><LF>" in out.out
    assert "measurements:" in out.out and "mark_level" in out.out
    text = vcd.read_text()
    assert "$enddefinitions $end" in text and 's/ "' in text and "sBREAK" in text


def test_csv_and_wav(tmp_path, capsys):
    w = synthesize(b"ABC", "current-loop", baud=1200, samples_per_bit=10)
    x = w.samples
    t = np.arange(len(x)) / w.sample_rate
    csv = tmp_path / "c.csv"
    np.savetxt(csv, np.c_[t, x], delimiter=",", header="time,current", comments="")
    rc, out = run([str(csv), "--json"], capsys)
    assert bytes(c["value"] for c in json.loads(out.out)["chars"]) == b"ABC"
    wav = tmp_path / "c.wav"
    with wave.open(str(wav), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(int(w.sample_rate))
        f.writeframes(np.rint(x * 1000).astype("<i2").tobytes())
    rc, out = run([str(wav), "--json", "--scale", "0.001"], capsys)
    assert bytes(c["value"] for c in json.loads(out.out)["chars"]) == b"ABC"


def test_errors_are_clear(tmp_path, capsys):
    p = tmp_path / "c.npy"
    np.save(p, np.zeros(100, np.float32))
    rc, out = run([str(p)], capsys)
    assert rc == 2 and "sample rate" in out.err
    rc, out = run([str(tmp_path / "missing.npy"), "--sample-rate", "1000"], capsys)
    assert rc == 2 and "missing.npy" in out.err
