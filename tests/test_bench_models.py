"""Instrument models as data: the shipped YAML files, rendering and matching of commands, malformed
files refused with file / key / reason, and each model's pyvisa-sim device answering its commands."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from rig.bench import models
from rig.bench.models import (
    CAPABILITIES,
    VOCABULARY,
    InstrumentModel,
    ModelError,
    load_file,
    load_model,
    load_models,
    sim_resource,
    write_sim_library,
)

REPO = Path(__file__).resolve().parent.parent


def _data(name: str) -> dict:
    return yaml.safe_load(load_model(name).path.read_text(encoding="utf-8"))


def _write(tmp_path, stem: str, data) -> Path:
    p = tmp_path / f"{stem}.yaml"
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return p


# --------------------------------------------------------------------------- the shipped models
def test_shipped_models_cover_every_capability_from_the_repo_instruments_dir():
    ms = load_models()
    assert {m.capability for m in ms.values()} == set(CAPABILITIES)
    assert {"rigol-ds1000z", "keysight-33500b", "rigol-dp832", "keysight-34461a"} <= set(ms)
    for name, m in ms.items():
        assert m.name == name and m.path.parent == REPO / "instruments"
        assert m.source and m.idn and m.model
        assert m.read_termination == "\n" and m.write_termination == "\n"
        required = {k for k, spec in VOCABULARY[m.capability].items() if spec.required}
        assert required <= set(m.commands)


def test_api_fields_of_a_model():
    m = load_model("rigol-ds1000z")
    assert isinstance(m, InstrumentModel)
    assert (m.name, m.capability) == ("rigol-ds1000z", "scope")
    assert m.facts["channels"] == 4 and m.channels == [1, 2, 3, 4]
    assert m.commands["channel_scale"] == ":CHANnel{ch}:SCALe {value}"
    assert m.sim["dialogues"]
    assert m.idn_matches("RIGOL TECHNOLOGIES,DS1104Z,DS1ZA123,00.04.04")
    assert not m.idn_matches("RIGOL TECHNOLOGIES,DP832,DP8C1,00.01.14")
    assert load_model(m) is m
    assert load_model(m.path).name == m.name
    assert load_model("rigol-dp832").channel_facts(3)["voltage_max"] == 5.0


def test_command_renders_templates_and_refuses_missing_or_unknown_fields():
    m = load_model("rigol-ds1000z")
    assert m.command("channel_scale", ch=1, value=0.5) == ":CHANnel1:SCALe 0.5"
    assert m.command("timebase_scale", value=1e-6) == ":TIMebase:MAIN:SCALe 1e-06"
    assert m.command("measure_amplitude?", ch=2) == ":MEASure:ITEM? VAMP,CHANnel2"
    with pytest.raises(ModelError, match=r"commands\.channel_scale: command needs the field 'value'"):
        m.command("channel_scale", ch=1)
    with pytest.raises(ModelError, match=r"unknown field"):
        m.command("single", ch=1)
    with pytest.raises(ModelError, match=r"commands\.output_on: not a scope command"):
        m.command("output_on", ch=1)
    g = load_model("keysight-33500b")
    assert g.command("arb_upload", ch=1, name="RIG") == "SOURce1:DATA:ARBitrary:DAC RIG,"
    assert g.command_bytes("arb_upload", ch=1, name="RIG", block=b"\x01\x02") == \
        b"SOURce1:DATA:ARBitrary:DAC RIG,#12\x01\x02"


def test_match_accepts_short_and_long_forms_any_case_and_optional_root_colon():
    m = load_model("rigol-ds1000z")
    expected = ("channel_scale", {"ch": 1, "value": "0.5"})
    for line in (":CHAN1:SCAL 0.5", ":CHANnel1:SCALe 0.5", "chan1:scal 0.5", ":CHANNEL1:SCALE   0.5\n",
                 ":Chan1:Scale 0.5"):
        assert m.match(line) == expected, line
    assert m.match(":CHAN:SCAL?") == ("channel_scale?", {"ch": 1})       # suffix left out = 1
    assert m.match(":MEAS:ITEM? VAMP,CHAN3") == ("measure_amplitude?", {"ch": 3})
    assert m.match(":meas:item? rtim, chan1") == ("measure_rise_time?", {"ch": 1})
    assert m.match(":CHA1:SCAL 0.5") is None          # neither short nor long form
    assert m.match(":CHANNE1:SCAL 0.5") is None
    assert m.match(":CHAN1:SCALE") is None             # a setter without its value
    assert m.match(":WAV:DATA?") == ("waveform_data?", {})
    assert m.match(b"*idn?\n") == ("idn?", {})


def test_match_reads_a_binary_block_and_refuses_a_short_one():
    g = load_model("keysight-33500b")
    payload = bytes(range(256)) + b"\n;"
    line = b"SOUR1:DATA:ARB:DAC RIG," + b"#3" + b"%03d" % len(payload) + payload + b"\n"
    assert g.match(line) == ("arb_upload", {"ch": 1, "name": "RIG", "block": payload})
    assert g.match(b"SOUR1:DATA:ARB:DAC RIG,#3010abc\n") is None
    assert g.match(b"SOUR1:DATA:ARB:DAC RIG,#x010abc\n") is None


@pytest.mark.parametrize("name", ["rigol-ds1000z", "keysight-33500b", "rigol-dp832", "keysight-34461a"])
def test_every_command_round_trips_through_match(name):
    m = load_model(name)
    for key, template in m.commands.items():
        fields = {}
        if "{ch}" in template:
            fields["ch"] = m.channels[-1]
        if "{value}" in template:
            fields["value"] = "2.5"
        if "{name}" in template:
            fields["name"] = "WAVE1"
        if "{block}" in template:
            fields["block"] = b"\x00\xff#9\n"
        line = m.command_bytes(key, **fields)
        assert m.match(line) == (key, fields), (key, line)
        assert m.match(line.lower() if b"{block}" not in template.encode() and "block" not in fields else line)[0] == key


# --------------------------------------------------------------------------- malformed files
def _refused(tmp_path, data, key_re: str, reason_re: str, stem="bad-model"):
    p = _write(tmp_path, stem, data)
    with pytest.raises(ModelError) as ei:
        load_file(p)
    e = ei.value
    assert str(p) in str(e)
    assert e.key is not None and __import__("re").search(key_re, e.key), e
    assert __import__("re").search(reason_re, e.reason), e
    return e


def test_bad_yaml_is_refused_with_file_and_line(tmp_path):
    p = _write(tmp_path, "broken", "model: X\ncapability: scope\ncommands: {a: [\n")
    with pytest.raises(ModelError, match=r"broken\.yaml:\d+: not valid YAML"):
        load_file(p)


def test_unknown_capability_is_refused(tmp_path):
    d = _data("rigol-dp832")
    d["capability"] = "oven"
    _refused(tmp_path, d, r"^capability$", r"unknown capability 'oven'.*scope")


def test_missing_required_command_is_refused(tmp_path):
    d = _data("rigol-dp832")
    del d["commands"]["measure_current?"]
    _refused(tmp_path, d, r"^commands\.measure_current\?$", r"missing")


def test_unknown_command_key_is_refused(tmp_path):
    d = _data("keysight-34461a")
    d["commands"]["measure_resistance?"] = "MEASure:RESistance?"
    _refused(tmp_path, d, r"^commands\.measure_resistance\?$", r"unknown command key for a meter")


@pytest.mark.parametrize("template, reason", [
    (":SOURce{ch}:VOLTage {volts}", r"bad placeholder \{volts\}"),
    (":SOURce{ch}:VOLTage {value:.3f}", r"must be bare"),
    (":SOURce{ch}:VOLTage", r"lacks the placeholder \{value\}"),
    (":SOURce{ch}:VOLTage {value", r"bad template"),
    (":SOURce{ch}:VOLTage {name}", r"not a field of this command"),
    (":SOURce{ch}:VOLTage? {value}", r"not a query but the template has a '\?'"),
])
def test_bad_template_placeholder_is_refused(tmp_path, template, reason):
    d = _data("rigol-dp832")
    d["commands"]["voltage"] = template
    _refused(tmp_path, d, r"^commands\.voltage$", reason)


def test_query_template_without_question_mark_and_block_not_last_are_refused(tmp_path):
    d = _data("rigol-dp832")
    d["commands"]["voltage?"] = ":SOURce{ch}:VOLTage"
    _refused(tmp_path, d, r"^commands\.voltage\?$", r"query")
    g = _data("keysight-33500b")
    g["commands"]["arb_upload"] = "DATA:ARB {block},{name} CH{ch}"
    _refused(tmp_path, g, r"^commands\.arb_upload$", r"\{block\} must end")


def test_missing_top_level_keys_facts_and_bad_sim_are_refused(tmp_path):
    d = _data("rigol-ds1000z")
    del d["idn"]
    _refused(tmp_path, d, r"^idn$", r"missing")
    d = _data("rigol-ds1000z")
    del d["facts"]["waveform"]
    _refused(tmp_path, d, r"^facts\.waveform$", r"missing")
    d = _data("rigol-ds1000z")
    d["termination"] = {"read": "\n"}
    _refused(tmp_path, d, r"^termination\.write$", r"non-empty string")
    d = _data("rigol-ds1000z")
    d["sim"]["dialogues"][0]["r"] = "SOMEONE ELSE,X1,0,0"
    _refused(tmp_path, d, r"^sim\.dialogues\[0\]$", r"does not match idn")
    d = _data("rigol-ds1000z")
    d["colour"] = "blue"
    _refused(tmp_path, d, r"^colour$", r"unknown key")


def test_extra_directories_add_and_override_models(tmp_path, monkeypatch):
    d = copy.deepcopy(_data("rigol-dp832"))
    d["model"] = "Rigol DP832A"
    _write(tmp_path, "rigol-dp832a", d)
    ms = load_models(tmp_path)
    assert ms["rigol-dp832a"].model == "Rigol DP832A" and "rigol-ds1000z" in ms
    monkeypatch.setenv("RIG_INSTRUMENTS_PATH", str(tmp_path))
    assert load_model("rigol-dp832a").path == tmp_path / "rigol-dp832a.yaml"
    with pytest.raises(ModelError, match=r"no such instrument model; known models: \["):
        load_model("tektronix-nothing")
    _write(tmp_path, "zz-broken", "model: [\n")
    with pytest.raises(ModelError, match=r"zz-broken\.yaml"):
        load_models()


def test_installed_layout_is_used_without_a_checkout(tmp_path, monkeypatch):
    """In a wheel install, the models are package data: rig/instruments/*.yaml."""
    import rig

    pkg = tmp_path / "site" / "rig"
    (pkg / "instruments").mkdir(parents=True)
    (pkg / "instruments" / "rigol-dp832.yaml").write_text(load_model("rigol-dp832").path.read_text())
    monkeypatch.setattr(rig, "__file__", str(pkg / "__init__.py"))
    assert models.model_dirs() == [pkg / "instruments"]
    assert list(load_models()) == ["rigol-dp832"]


def test_a_model_file_loaded_again_unchanged_is_not_parsed_again(tmp_path, monkeypatch):
    p = _write(tmp_path, "rigol-dp832", _data("rigol-dp832"))
    first = load_file(p)
    parsed = []
    for f in ("load", "safe_load"):                                           # a parse would be seen
        monkeypatch.setattr(yaml, f, lambda text, *a, **k: parsed.append(text))
    assert load_file(p) is first and load_model(p) is first and not parsed


def test_a_model_file_changed_on_disk_is_read_again_even_with_the_same_size_and_time(tmp_path):
    import os

    d = _data("rigol-dp832")
    d["model"] = "Rigol DP832A"
    p = _write(tmp_path, "dp", d)
    st = p.stat()
    assert load_file(p).model == "Rigol DP832A"
    d["model"] = "Rigol DP832B"                 # same length: only the text tells them apart
    _write(tmp_path, "dp", d)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert p.stat().st_size == st.st_size and p.stat().st_mtime_ns == st.st_mtime_ns
    assert load_file(p).model == "Rigol DP832B"
    p.write_text("model: [\n", encoding="utf-8")
    with pytest.raises(ModelError, match=r"dp\.yaml:\d+: not valid YAML"):
        load_file(p)


# --------------------------------------------------------------------------- the sim devices
def test_every_sim_device_accepts_every_setting_and_answers_every_query(tmp_path):
    import pyvisa

    lib = write_sim_library(tmp_path / "sim.yaml")
    rm = pyvisa.ResourceManager(f"{lib}@sim")
    words = {"channel_coupling": "DC", "trigger_edge_slope": "POSitive", "trigger_sweep": "SINGle",
             "burst_state": "ON", "channel_display": "ON"}
    for m in load_models().values():
        r = rm.open_resource(sim_resource(m), read_termination=m.read_termination,
                             write_termination=m.write_termination, timeout=200)
        assert m.idn_matches(r.query(m.commands["idn?"]))
        for key, template in m.commands.items():
            if "{block}" in template:
                continue
            fields = {"ch": m.channels[0]} if "{ch}" in template else {}
            if "{value}" in template:
                fields["value"] = words.get(key, 1)
            if "{name}" in template:
                fields["name"] = "RIG"
            if key.endswith("?"):
                assert r.query(m.command(key, **fields)), (m.name, key)
            else:
                r.write(m.command(key, **fields))
                assert r.query(m.commands["error?"]).lstrip("+").startswith("0,"), (m.name, key)
        r.close()


@pytest.mark.parametrize("edit, key, marker", [
    (lambda d: d["facts"]["channels"][2].update(voltage_max="thirty"), "facts.channels.2.voltage_max",
     "voltage_max: thirty"),
    (lambda d: d["commands"].update({"output_on": ""}), "commands.output_on", "output_on: ''"),
    (lambda d: d["sim"]["dialogues"].insert(1, {"r": "x"}), "sim.dialogues[1]", "- r: x"),
])
def test_a_model_file_mistake_names_its_line(tmp_path, edit, key, marker):
    # the line is where the key is written, found here by its text (the loader uses yaml's marks)
    d = _data("rigol-dp832")
    edit(d)
    p = _write(tmp_path, "dp-line", d)
    line = next(n for n, t in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if t.strip() == marker)
    with pytest.raises(ModelError) as ei:
        load_file(p)
    assert (ei.value.key, ei.value.line) == (key, line), ei.value
    assert str(ei.value).startswith(f"{p}:{line}: {key}: ")
