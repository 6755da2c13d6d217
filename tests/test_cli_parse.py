"""`rig parse` as a user runs it: a real process on the shipped sample logs."""
import json
from pathlib import Path

import pytest

from conftest import run_rig
from rig.samples import generate

SAMPLES = Path(generate.__file__).parent


def rig(*args, stdin=None):
    return run_rig(*args, stdin=stdin, text=False, timeout=60)


def test_samples_are_what_the_generator_makes():
    assert (SAMPLES / "meter-session.bin").read_bytes() == generate.clean()
    assert (SAMPLES / "noisy-session.bin").read_bytes() == generate.noisy()


def test_clean_session_parses_with_every_frame_ok():
    r = rig("parse", "--json", "--parity", "even", SAMPLES / "meter-session.bin")
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(recs) == len(generate.session())
    assert all(rec["ok"] and rec["errors"] == [] for rec in recs)
    assert [rec["message"]["type"] for rec in recs[:3]] == ["IDRequest", "IDResponse", "OptionSelect"]
    write = next(rec for rec in recs if rec["message"]["type"] == "WriteCommand")
    assert write["message"]["data"] == f"10({generate.TOKEN})"


def test_noisy_session_reports_each_fault_where_it_is():
    r = rig("parse", "--json", "--parity", "even", SAMPLES / "noisy-session.bin")
    assert r.returncode == 1
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    bad = [rec for rec in recs if not rec["ok"]]
    assert [rec["kind"] for rec in bad] == ["command", "garbage", "data"]
    assert bad[0]["errors"][0] == "parity: 1 character(s), first at offset 74"
    assert bad[0]["errors"][1].startswith("bcc: expected")
    assert "cut short" in bad[2]["errors"][0]
    # the repeat after the NAK is whole
    i = recs.index(bad[0])
    assert recs[i + 1]["kind"] == "nak" and recs[i + 2]["ok"]


def test_text_output_and_summary():
    r = rig("parse", "--parity", "even", SAMPLES / "noisy-session.bin")
    out = r.stdout.decode()
    assert "FAIL parity: 1 character(s), first at offset 74" in out
    assert "22 frame(s), 19 ok, 3 with errors" in r.stderr.decode()


def test_hex_log_from_stdin_without_parity():
    hex_text = b"# a read and its answer\n01 52 31 02 31 2e 38 2e 30 28 29 03 5a\n02:31:28:32:29:03:01  # data\n"
    r = rig("parse", "--hex", "--json", "-", stdin=hex_text)
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["message"]["type"] for x in recs] == ["ReadCommand", "Data"]


@pytest.mark.parametrize("args, content, needle", [
    (["--hex"], b"01 02\nzz 03\n", "line 2: not hex bytes (character 'z')"),
    (["--hex"], b"012\n", "line 1: not hex bytes (an odd number of hex digits)"),
])
def test_bad_hex_names_the_file_and_line(tmp_path, args, content, needle):
    f = tmp_path / "log.hex"
    f.write_bytes(content)
    r = rig("parse", *args, f)
    assert r.returncode == 2
    assert f"{f}: {needle}" in r.stderr.decode()


def test_missing_file_and_bad_profile_are_clear_errors(tmp_path):
    r = rig("parse", tmp_path / "nope.bin")
    assert r.returncode == 2 and "nope.bin: cannot read" in r.stderr.decode()
    prof = tmp_path / "p.toml"
    prof.write_text("[timing]\nta_ms = 'fast'\n")
    r = rig("parse", "--profile", prof, SAMPLES / "meter-session.bin")
    assert r.returncode == 2
    assert str(prof) in r.stderr.decode() and "timing.ta_ms" in r.stderr.decode()


def test_profile_limits_apply(tmp_path):
    from rig import _framing
    prof = tmp_path / "p.toml"
    prof.write_text("[limits]\nvalue_max_programming = 20\nvalue_max = 20\n")
    log = (_framing.encode_data("10(" + "1" * 20 + ")") + _framing.encode_data("10(" + "1" * 21 + ")")).hex()
    r = rig("parse", "--json", "--hex", "--profile", prof, "-", stdin=log.encode())
    first, second = [json.loads(line) for line in r.stdout.splitlines()]
    assert first["ok"]
    assert not second["ok"] and second["errors"] == ["syntax: field too long '1' in value at offset 51"]
