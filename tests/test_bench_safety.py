"""Safety without holes (issue 14 §4), checked on the instrument's side over real TCP: what a refused
setting leaves on the virtual instruments (nothing received, function and levels unchanged, outputs
off), readbacks that cannot be verified, and bench / model files that must fail at load."""
from __future__ import annotations

import math
import re
import textwrap

import pytest
import yaml

from rig.bench.config import ConfigError, load_bench
from rig.bench.models import ModelError, load_file, load_model
from rig.bench.safety import DutLimits, LimitError, SafetyError
from rig.bench.virtual import VirtualBench
from rig.link import VirtualLine
from test_bench_drivers import ScpiStub

NAN, INF = float("nan"), float("inf")


@pytest.fixture
def bench():
    """The virtual bench on the optical option (DUT limit 5.5 V): a 20 Vpp output would be harmful."""
    with VirtualLine() as line, VirtualBench(line, option="optical") as b:
        yield b


def generator_side(b) -> dict:
    """What the virtual generator holds: function, levels and output of each channel, and how many
    program message units it has received."""
    g = b.instruments["generator"]
    with g.lock:
        return {"function": dict(g.function), "vpp": dict(g.vpp), "offset": dict(g.offset),
                "output": dict(g.output), "received": g.commands_seen}


def supply_side(b) -> dict:
    s = b.instruments["supply"]
    with s.lock:
        return {"volts": dict(s.volts), "limit": dict(s.limit), "output": dict(s.output),
                "received": s.commands_seen}


# --------------------------------------------------------------------------- NaN / inf never sent
@pytest.mark.parametrize("call", [
    lambda g: g.set_levels(1, 20.0, NAN),
    lambda g: g.set_levels(1, NAN, 0.0),
    lambda g: g.set_levels(1, 1.0, INF),
    lambda g: g.set_levels(1, -INF, 0.0),
    lambda g: g.noise(1, NAN),
    lambda g: g.noise(1, 1.0, 0.5, bandwidth=NAN),
    lambda g: g.arbitrary(1, [0.0, 0.5, -0.5, 0.0] * 4, sample_rate=1e5, amplitude=INF),
    lambda g: g.arbitrary(1, [0.0, 0.5, -0.5, 0.0] * 4, sample_rate=NAN, amplitude=1.0, offset=0.5),
    lambda g: g.pulse(1, frequency=1e3, width=1e-4, low=0.0, high=NAN),
    lambda g: g.pulse(1, frequency=NAN, width=1e-4, low=0.0, high=1.0),
    lambda g: g.dc(1, NAN),
    lambda g: setattr(g.ch(1), "offset", NAN),
    lambda g: setattr(g.ch(1), "amplitude", INF),
    lambda g: g.burst(1, cycles=3, period=NAN),
], ids=["levels-offset-nan", "levels-amplitude-nan", "levels-offset-inf", "levels-amplitude-minus-inf",
        "noise-nan", "noise-bandwidth-nan", "arb-amplitude-inf", "arb-rate-nan", "pulse-high-nan",
        "pulse-frequency-nan", "dc-nan", "offset-nan", "amplitude-inf", "burst-period-nan"])
def test_nan_level_refused_before_anything_sent(bench, call):
    with bench.bench().open("generator", timeout=5.0) as g:
        before = generator_side(bench)
        with pytest.raises(ValueError, match=r"not a finite number|not a number"):
            call(g)
        after = generator_side(bench)
        assert after == before                    # the instrument received nothing and holds what it held
        assert after["vpp"][1] <= 5.5 and after["output"][1] is False


def test_refused_noise_and_arbitrary_leave_the_function_unchanged(bench):
    with bench.bench().open("generator", timeout=5.0) as g:
        g.set_levels(1, 2.0, 1.0)
        before = generator_side(bench)
        assert before["function"][1] == "sine"
        with pytest.raises(SafetyError, match=r"exceeds the DUT's 5.5 V head supply limit"):
            g.noise(1, amplitude=20.0)
        with pytest.raises(SafetyError, match=r"exceeds the DUT's 5.5 V head supply limit"):
            g.arbitrary(1, [0.0, 0.5, -0.5, 0.0] * 4, sample_rate=1e5, amplitude=12.0)
        with pytest.raises(SafetyError, match=r"exceeds the DUT's 5.5 V head supply limit"):
            g.pulse(1, frequency=1e3, width=1e-4, low=0.0, high=12.0)
        assert generator_side(bench) == before    # still a sine, same levels, nothing received


def test_nan_supply_settings_refused_before_anything_sent(bench):
    with bench.bench().open("supply", timeout=5.0) as p:
        before = supply_side(bench)
        for call in (lambda: p.configure(1, NAN, 0.01), lambda: p.configure(1, 5.0, NAN),
                     lambda: setattr(p.ch(1), "voltage", INF), lambda: setattr(p.ch(2), "current_limit", NAN)):
            with pytest.raises(SafetyError, match=r"not a finite number"):
                call()
        assert supply_side(bench) == before


# --------------------------------------------------------------------------- readbacks that cannot be verified
@pytest.mark.parametrize("answer", ["9.9E37", "+9.91000000E+37", "NAN", "nan"])
def test_overload_readback_keeps_output_off(answer):
    """A supply whose set voltage reads back as overload or NaN: that is not 0 V, the output stays off."""
    stub = ScpiStub("rigol-dp832")
    try:
        with load_bench(None).with_resources({"supply": stub.resource}).open("supply", timeout=2.0) as p:
            stub.state[("voltage", 1)] = answer
            with pytest.raises(SafetyError, match=r"supply DP832 CH1: the set voltage read back with "
                                                  r"':SOURce1:VOLTage\?' is .* cannot be checked against the "
                                                  r"DUT's limits; the output stays off"):
                p.output_on(1)
        assert ":OUTPut CH1,ON" not in stub.lines
        assert stub.state[("output", 1)] == "OFF"
    finally:
        stub.close()


def test_generator_overload_readback_is_not_zero():
    stub = ScpiStub("keysight-33500b")
    try:
        lim = DutLimits.for_option("optical")
        with load_bench(None).with_resources({"generator": stub.resource}).open("generator", timeout=2.0,
                                                                               limits=lim) as g:
            stub.state[("amplitude", 1)] = "9.9E37"
            stub.state[("offset", 1)] = "0"
            with pytest.raises(SafetyError, match=r"the amplitude read back with 'SOURce1:VOLTage\?' is '9.9E37'"):
                g.output_on(1)
            # levels written on top of an amplitude nobody knows: refused, not computed against 0 Vpp
            n = len(stub.lines)
            with pytest.raises(SafetyError, match=r"the amplitude read back"):
                g.set_levels(1, 2.0, 1.0)
            assert not any(line.startswith("SOURce1:VOLTage ") or "OFFSet " in line for line in stub.lines[n:])
        assert not any(line.startswith("OUTPut1 ON") for line in stub.lines)
        assert stub.state[("output", 1)] == "OFF"
    finally:
        stub.close()


# --------------------------------------------------------------------------- the bench file's DUT limits
def bench_file(tmp_path, text: str):
    p = tmp_path / "bench.toml"
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


@pytest.mark.parametrize("dut, key, reason", [
    ("current_max = 30", "current_max", r"30000 mA is above what the current loop allows, 30 mA \(IEC 62056-21 §4\)"),
    ("current_max = nan", "current_max", r"expected a finite number \(A\), got nan"),
    ("voltage_max = inf", "voltage_max", r"expected a finite number \(V\), got inf"),
    ("voltage_max = 31.0", "voltage_max", r"31 V is above what the current loop allows, 30 V \(IEC 62056-21 §4\)"),
    ("voltage_max = -5", "voltage_max", r"expected a positive number \(V\), got -5"),
    ("current_max = 0", "current_max", r"expected a positive number \(A\), got 0"),
    ("voltage_min = -40", "voltage_min", r"-40 V is below what the current loop allows, -30 V"),
    ('voltage_max = "thirty"', "voltage_max", r"got 'thirty' \(expected a number\)"),
])
def test_dut_limits_beyond_the_interface_refused_naming_file_and_key(tmp_path, dut, key, reason):
    p = bench_file(tmp_path, f'[bench]\noption = "current-loop"\n[dut]\n{dut}\n')
    with pytest.raises(ConfigError) as ei:
        load_bench(p)
    assert ei.value.path == p and ei.value.key == f"dut.{key}"
    assert str(ei.value).startswith(f"{p}:4: dut.{key}: ")
    assert re.search(reason, ei.value.reason), ei.value.reason


def test_dut_limits_within_the_allowance_are_kept(tmp_path):
    b = load_bench(bench_file(tmp_path, '[bench]\noption = "current-loop"\n[dut]\n'
                                        'voltage_max = 24.0\ncurrent_max = 0.025\n'))
    assert (b.limits.voltage_max, b.limits.current_max) == (24.0, 0.025)
    assert b.limits.basis["current_max"] == "bench configuration"
    with pytest.raises(LimitError, match=r"^current_max: 200 mA is above what the V.28 allows, 100 mA \(assumed\)$"):
        DutLimits.for_option("voltage").with_overrides(current_max=0.2)
    lim = DutLimits.for_option("optical")
    for bad in (NAN, INF, -INF):
        with pytest.raises(SafetyError, match=r"not a finite number"):
            lim.check_voltage("x", bad)
        with pytest.raises(SafetyError, match=r"not a finite number"):
            lim.check_current("x", bad)
        with pytest.raises(SafetyError, match=r"not a finite number"):
            lim.check_span("x", 1.0, bad)
    assert math.isfinite(lim.voltage_max)


def test_non_utf8_bench_file_fails_at_load_naming_the_file(tmp_path):
    p = tmp_path / "bench.toml"
    p.write_bytes(b'[bench]\noption = "current-loop"\n# Pr\xfcfplatz 3\n')
    with pytest.raises(ConfigError, match=r"bench.toml:3: not UTF-8 text: byte 0xfc"):
        load_bench(p)


# --------------------------------------------------------------------------- model files
def model_variant(tmp_path, name: str, edit):
    data = yaml.safe_load(load_model(name).path.read_text(encoding="utf-8"))
    edit(data)
    p = tmp_path / f"{name}-variant.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return p


def test_non_utf8_model_file_fails_at_load_naming_the_file(tmp_path):
    p = tmp_path / "meter.yaml"
    p.write_bytes(load_model("keysight-34461a").path.read_bytes().replace(b"digital multimeter",
                                                                          b"Digitalmultimeter f\xfcr"))
    with pytest.raises(ModelError, match=r"meter.yaml:1: not UTF-8 text: byte 0xfc"):
        load_file(p)


@pytest.mark.parametrize("edit, key, reason", [
    (lambda d: d["facts"]["channels"][1].update(voltage_max="thirty"), "facts.channels.1.voltage_max",
     "got 'thirty' (expected a finite positive number)"),
    (lambda d: d["facts"]["channels"][2].update(current_max=float("nan")), "facts.channels.2.current_max",
     "got nan (expected a finite positive number)"),
])
def test_wrongly_typed_supply_facts_fail_at_load_with_file_and_key(tmp_path, edit, key, reason):
    p = model_variant(tmp_path, "rigol-dp832", edit)
    with pytest.raises(ModelError) as ei:
        load_file(p)
    assert (ei.value.path, ei.value.key, ei.value.reason) == (p, key, reason)
    # and through a bench file naming that model: the bench file's key, then the model file's
    b = bench_file(tmp_path, f'[instruments.supply]\nmodel = "{p}"\n')
    with pytest.raises(ConfigError, match=r"bench.toml:\d+: instruments.supply.model: .*rigol-dp832-variant.yaml:\d+: "
                                          + key.replace(".", r"\.")):
        load_bench(b)


@pytest.mark.parametrize("name, edit, key", [
    ("keysight-33500b", lambda d: d["facts"].update(amplitude_vpp=[0.002, "20"]), "facts.amplitude_vpp"),
    ("keysight-33500b", lambda d: d["facts"]["arb"].update(dac_max="32767"), "facts.arb.dac_max"),
    ("keysight-34461a", lambda d: d["facts"].update(nplc=[0.02, "ten"]), "facts.nplc"),
    ("rigol-ds1000z", lambda d: d["facts"]["waveform"].update(max_points_per_read="250k"),
     "facts.waveform.max_points_per_read"),
    ("rigol-ds1000z", lambda d: d["facts"].update(vertical_scale=[10.0, 0.001]), "facts.vertical_scale"),
])
def test_wrongly_typed_facts_fail_at_load(tmp_path, name, edit, key):
    with pytest.raises(ModelError) as ei:
        load_file(model_variant(tmp_path, name, edit))
    assert ei.value.key == key


@pytest.mark.parametrize("call", [
    lambda s: s.configure_channel(1, scale=NAN),
    lambda s: s.configure_channel(1, scale=0.5, offset=INF),
    lambda s: s.configure_timebase(NAN),
    lambda s: s.configure_timebase(1e-3, offset=NAN),
    lambda s: s.edge_trigger(1, level=NAN),
    lambda s: s.serial_trigger(1, baud=NAN),
    lambda s: s.serial_trigger(1, baud=300, level=INF),
    lambda s: setattr(s, "trigger_level", NAN),
], ids=["scale", "offset", "timebase", "timebase-offset", "edge-level", "serial-baud", "serial-level",
        "trigger-level"])
def test_nan_scope_setting_refused_before_anything_sent(bench, call):
    with bench.bench().open("scope", timeout=5.0) as s:
        scope = bench.instruments["scope"]
        before = scope.commands_seen
        with pytest.raises(ValueError, match=r"not a finite number"):
            call(s)
        assert scope.commands_seen == before       # the scope received nothing, not even the mode


def test_dut_limits_built_directly_are_checked_too():
    with pytest.raises(LimitError, match=r"^current_max: expected a finite number, got nan$"):
        DutLimits("optical", "optical head", 5.5, 0.0, NAN)
    with pytest.raises(LimitError, match=r"^voltage_max: expected a positive number$"):
        DutLimits("optical", "optical head", -1.0, -2.0, 0.1)


def test_a_bench_file_mistake_names_its_line(tmp_path):
    p = bench_file(tmp_path, '[bench]\noption = "current-loop"\n\n[instruments.scope]\nmodel = "rigol-ds1000z"\n'
                             'channel = 9\n')
    with pytest.raises(ConfigError) as ei:
        load_bench(p)
    assert str(ei.value).startswith(f"{p}:6: instruments.scope.channel: got 9 (expected one of 1, 2, 3, 4 (Rigol DS1000Z))")
    assert (ei.value.line, ei.value.key, ei.value.problem) == (6, "instruments.scope.channel", "got 9")


def test_a_bench_file_written_with_a_quote_in_a_value_reads_back(tmp_path):
    # `rig bench serve --write-config` writes through tomli-w: quotes, backslashes and non-ASCII survive
    from dataclasses import replace

    from rig.bench_cli import bench_config_text
    v = load_bench()
    odd = 'TCPIP::lab-"süd"\\rack::INSTR'
    cfg = replace(v, instruments={**v.instruments, "scope": replace(v.instruments["scope"], resource=odd,
                                                                     backend="C:\\visa\\@py")})
    p = bench_file(tmp_path, bench_config_text(cfg))
    back = load_bench(p)
    assert back.instruments["scope"].resource == odd and back.instruments["scope"].backend == "C:\\visa\\@py"
    assert back.option == v.option and set(back.instruments) == set(v.instruments)
