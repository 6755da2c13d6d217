"""`rig decode` takes the sample rate and interface option from the sidecar `rig bench capture` writes."""
import json

from conftest import run_rig
from rig.physical.synth import synthesize


def test_decode_reads_the_capture_sidecar(tmp_path):
    msg = b"\x01R1\x0204()\x03g"
    w = synthesize(msg, "voltage", baud=9600, samples_per_bit=16, noise=0.05)
    out = tmp_path / "cap.npy"
    w.write_npy(out)
    (tmp_path / "cap.json").write_text(json.dumps({"sample_rate": w.sample_rate, "option": "voltage"}))
    r = run_rig("decode", out, "--json", timeout=60)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert bytes(c["value"] for c in res["chars"]) == msg
    assert abs(res["baud"] - 9600) < 10
    bad = tmp_path / "bad.npy"
    w.write_npy(bad)
    (tmp_path / "bad.json").write_text("{not json")
    r = run_rig("decode", bad, timeout=60)
    assert r.returncode == 2 and "bad.json" in r.stderr
