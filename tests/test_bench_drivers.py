"""Bench drivers against their pyvisa-sim devices (real pyvisa, ``@sim`` backend, devices generated from
the model YAML), IEEE 488.2 blocks, identity and error-queue checks, timeouts, DUT limits refused
before sending, outputs off on close / failure / Ctrl-C (a subprocess against a loopback SCPI stub)."""
from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from rig.bench.drivers import Generator, InstrumentError, Meter, Scope, Supply, open_instrument
from rig.bench.models import load_file, load_model, sim_resource, write_sim_library
from rig.bench.safety import OUTPUTS, DutLimits, SafetyError
from rig.measurement import FAIL, INFO, PASS

REPO = Path(__file__).resolve().parent.parent
T = 0.2     # seconds: every sim answer is immediate, so a short timeout keeps failures quick
LOOP = DutLimits.for_option("current-loop")
V28 = DutLimits.for_option("voltage")


def variant(tmp_path, name: str, edit) -> object:
    """A copy of model ``name`` edited by ``edit(data)``, loaded from tmp_path (its own sim device)."""
    data = yaml.safe_load(load_model(name).path.read_text(encoding="utf-8"))
    edit(data)
    p = tmp_path / f"{name}-variant.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_file(p)


def dialogue(data: dict, query: str, answer: str) -> None:
    for d in data["sim"]["dialogues"]:
        if d["q"] == query:
            d["r"] = answer
            return
    data["sim"]["dialogues"].append({"q": query, "r": answer})


@pytest.fixture
def simlib(tmp_path):
    """One pyvisa-sim library shared by several opens (device state persists between them)."""
    return write_sim_library(tmp_path / "bench-sim.yaml")


# --------------------------------------------------------------------------- each driver on its sim
def test_scope_configures_triggers_captures_and_scales_the_waveform():
    with Scope(None, "rigol-ds1000z", sim=True, timeout=T) as s:
        assert s.idn.startswith("RIGOL TECHNOLOGIES,DS1104Z")
        s.configure_channel(1, scale=0.5, offset=0.25, coupling="AC")
        assert (s.ch(1).scale, s.ch(1).offset, s.ch(1).coupling) == (0.5, 0.25, "AC")
        assert s.ch(2).scale == 1.0
        s.configure_timebase(1e-4, offset=0.0)
        assert s.timebase == 1e-4
        s.edge_trigger(1, level=0.4, slope="falling")
        assert s.trigger_level == 0.4
        assert ":TRIGger:EDGe:SLOPe NEGative" in s.sent and ":TRIGger:SWEep SINGle" in s.sent
        s.serial_trigger(1, baud=300, fmt="7E1", level=0.5)
        assert ":TRIGger:RS232:BAUD USER;:TRIGger:RS232:BUSer 300" in s.sent
        assert ":TRIGger:RS232:PARity EVEN" in s.sent and ":TRIGger:RS232:WIDTh 7" in s.sent
        s.acquire(timeout=1.0)
        w = s.waveform(1)
        assert len(w) == 20 and w.dt == 1e-6 and w.sample_rate == 1e6
        np.testing.assert_allclose(w.volts, [-0.8] * 10 + [0.8] * 10)
        np.testing.assert_allclose(w.times[:2], [0.0, 1e-6])
        assert ":WAVeform:SOURce CHANnel1" in s.sent and ":WAVeform:FORMat BYTE" in s.sent


def test_scope_builtin_measurements_are_measurements_with_computed_verdicts():
    with Scope(None, "rigol-ds1000z", sim=True, timeout=T) as s:
        amp = s.measure_amplitude(1, low=1.0, high=2.0, basis="assumed")
        assert (amp.name, amp.value, amp.unit, amp.verdict) == ("amplitude", 1.6, "V", PASS)
        rise = s.measure_rise_time(1, high=1e-6)
        assert (rise.value, rise.unit, rise.verdict) == (2.1e-6, "s", FAIL)
        freq = s.measure_frequency(1)
        assert (freq.value, freq.unit, freq.verdict) == (2400.0, "Hz", INFO)
        over = s.measure_amplitude(2, low=1.0)        # 9.9E37: nothing measurable on CH2
        assert over.value is None and over.verdict == FAIL


def test_scope_wait_for_trigger_has_a_deadline(tmp_path):
    m = variant(tmp_path, "rigol-ds1000z",
                lambda d: d["sim"]["properties"]["trigger_status"].update(default="WAIT"))
    with Scope(None, m, sim=True, timeout=T) as s:
        s.single()
        t0 = time.monotonic()
        with pytest.raises(InstrumentError, match=r"scope Rigol DS1000Z at .*: no trigger within 0.05 s"):
            s.wait_triggered(timeout=0.05)
        assert time.monotonic() - t0 < 1.0


def test_generator_uploads_arbitrary_waveform_as_a_binary_block_and_sets_modes():
    with Generator(None, "keysight-33500b", sim=True, timeout=T, limits=V28) as g:
        # the simulator reads blocks as UTF-8 text: codes whose bytes are ASCII (0, 8192, 16384)
        g.arbitrary(1, [0, 0.25, 0.5, 0.25] * 4, sample_rate=1e5, amplitude=10.0, offset=0.0)
        upload = [c for c in g.sent if "DATA:ARBitrary:DAC" in c]
        assert upload == ["SOURce1:DATA:ARBitrary:DAC RIG,<block of 32 bytes>"]
        assert "SOURce1:FUNCtion ARB" in g.sent and "SOURce1:FUNCtion:ARBitrary RIG" in g.sent
        assert (g.ch(1).amplitude, g.ch(1).offset) == (10.0, 0.0)
        g.noise(2, amplitude=2.0, bandwidth=1e5)
        g.pulse(1, frequency=1000, width=1e-4, low=-5, high=5)
        g.burst(1, cycles=3)
        assert "SOURce1:BURSt:STATe ON" in g.sent and "TRIGger1:SOURce BUS" in g.sent
        g.output_on(1)
        assert g.output_state(1) is True
    assert g.sent[-2:] == ["OUTPut1 OFF", "OUTPut2 OFF"]      # off on context exit


def test_generator_block_codes_are_little_endian_dac_codes():
    g = load_model("keysight-33500b")
    # what the driver puts on the wire for a full-scale ramp, matched back by the model
    from rig.bench.models import encode_block

    codes = np.array([-32767, 0, 32767], dtype="<i2").tobytes()
    line = g.command("arb_upload", ch=1, name="RIG").encode() + encode_block(codes)
    key, fields = g.match(line)
    assert key == "arb_upload" and np.frombuffer(fields["block"], "<i2").tolist() == [-32767, 0, 32767]


def test_supply_sets_measures_and_switches_off_on_close(simlib):
    with Supply(None, "rigol-dp832", sim_library=simlib, timeout=T, limits=LOOP) as p:
        p.configure(1, voltage=24.0, current_limit=0.02)
        assert (p.ch(1).voltage, p.ch(1).current_limit) == (24.0, 0.02)
        assert ":SOURce1:VOLTage:PROTection 30" in p.sent and ":SOURce1:CURRent:PROTection 0.03" in p.sent
        p.output_on(1)
        assert p.output_state(1) is True
        assert p.measure_voltage(1, low=23.0, high=25.0).value == 11.9987      # the sim's fixed reading
        i = p.measure_current(1, high=0.03)
        assert (i.value, i.unit, i.verdict) == (0.0201, "A", PASS)
    assert p.sent[-3:] == [":OUTPut CH1,OFF", ":OUTPut CH2,OFF", ":OUTPut CH3,OFF"]
    with Supply(None, "rigol-dp832", sim_library=simlib, timeout=T) as again:   # same sim device
        assert again.output_state(1) is False


def test_meter_reads_dc_voltage_and_current():
    with Meter(None, "keysight-34461a", sim=True, timeout=T) as m:
        m.configure_voltage_dc(10)
        assert m.sent[-2:] == ["CONFigure:VOLTage:DC 10", "SYSTem:ERRor?"]
        assert m.read() == pytest.approx(0.019987)
        v = m.voltage_dc(low=11.5, high=12.5)
        assert (v.value, v.unit, v.verdict) == (11.9987, "V", PASS)
        m.configure_current_dc("AUTO")
        assert m.current_dc(high=0.03).verdict == PASS
        with pytest.raises(ValueError, match=r"range 2000 is above the largest, 1000"):
            m.configure_voltage_dc(2000)


def test_open_instrument_picks_the_driver_and_refuses_a_model_of_another_capability():
    with open_instrument(None, "keysight-34461a", sim=True, timeout=T) as m:
        assert isinstance(m, Meter)
    with pytest.raises(InstrumentError, match=r"rigol-dp832 \(Rigol DP832\) is a supply, not a scope"):
        Scope(None, "rigol-dp832", sim=True)


# --------------------------------------------------------------------------- identity, errors, timeouts
def test_idn_mismatch_names_resource_model_and_answer(simlib):
    wrong = sim_resource("rigol-dp832")
    with pytest.raises(InstrumentError) as ei:
        Scope(wrong, "rigol-ds1000z", sim_library=simlib, timeout=T)
    msg = str(ei.value)
    assert wrong in msg and "Rigol DS1000Z" in msg and "rigol-ds1000z" in msg
    assert "'RIGOL TECHNOLOGIES,DP832,DP8C000000000,00.01.14'" in msg


def test_a_nonzero_error_queue_after_configuration_is_an_error(tmp_path):
    # a dialect slip: the simulated scope does not know this header, answers nothing, queues -113
    m = variant(tmp_path, "rigol-ds1000z",
                lambda d: (d["commands"].update(timebase_offset=":TIMebase:DELay:OFFSet {value}"),
                           d.pop("scpi")))   # a file without a command tree: the slip is not caught at load
    with Scope(None, m, sim=True, timeout=T) as s:
        with pytest.raises(InstrumentError, match=r'error after configuring the timebase .*'
                                                  r'-113,"Undefined header"'):
            s.configure_timebase(1e-3, offset=0.0)
        s.check_errors()                  # the queue was drained


def test_an_instrument_that_does_not_answer_is_a_clear_error_and_outputs_are_left_off(tmp_path):
    # the simulated supply has no answer for the measurement query (its canned dialogue removed)
    m = variant(tmp_path, "rigol-dp832",
                lambda d: d["sim"].update(dialogues=[x for x in d["sim"]["dialogues"]
                                                     if x["q"] != ":MEASure:VOLTage? CH1"]))
    lib = write_sim_library(tmp_path / "sim.yaml", [m])
    p = Supply(None, m, sim_library=lib, timeout=T, limits=LOOP)
    try:
        p.configure(1, 12.0, 0.02)
        p.output_on(1)
        with pytest.raises(InstrumentError, match=r"supply Rigol DP832 at .*: ':MEASure:VOLTage\? CH1': "
                                                  r"no answer within 0.2 s \(timeout\)"):
            p.ch(1).measured_voltage
        assert p.sent[-3:] == [":OUTPut CH1,OFF", ":OUTPut CH2,OFF", ":OUTPut CH3,OFF"]
        assert p.output_state(1) is False
    finally:
        p.close()


def test_garbage_and_short_blocks_are_errors_naming_instrument_and_command(tmp_path):
    m = variant(tmp_path, "rigol-ds1000z",
                lambda d: (dialogue(d, ":WAVeform:DATA?", "#9000000020PPPP"),
                           dialogue(d, ":MEASure:ITEM? VAMP,CHANnel1", "hello")))
    with Scope(None, m, sim=True, timeout=T) as s:
        with pytest.raises(InstrumentError, match=r"scope Rigol DS1000Z at .*: ':WAVeform:DATA\?': reading the binary "
                                                  r"block: short or missing binary block: no data within 0.2 s \(timeout\)"):
            s.waveform(1)
        with pytest.raises(InstrumentError, match=r"':MEASure:ITEM\? VAMP,CHANnel1': garbage answer 'hello'"):
            s.measure_amplitude(1)
    m2 = variant(tmp_path, "rigol-ds1000z", lambda d: dialogue(d, ":WAVeform:DATA?", "1,2,3,4"))
    with Scope(None, m2, sim=True, timeout=T) as s:
        with pytest.raises(InstrumentError, match=r"':WAVeform:DATA\?': reading the binary block: not an IEEE 488.2 "
                                                  r"definite-length block"):
            s.waveform(1)


def test_garbage_answer_from_a_supply_switches_its_outputs_off(tmp_path):
    m = variant(tmp_path, "rigol-dp832", lambda d: dialogue(d, ":MEASure:CURRent? CH1", "\x7f?!"))
    with Supply(None, m, sim=True, timeout=T, limits=LOOP) as p:
        p.configure(1, 5.0, 0.01)
        p.output_on(1)
        with pytest.raises(InstrumentError, match=r"garbage answer"):
            p.ch(1).measured_current
        assert p.output_state(1) is False


# --------------------------------------------------------------------------- DUT limits
def test_supply_setting_above_the_dut_limit_is_refused_before_sending():
    with Supply(None, "rigol-dp832", sim=True, timeout=T, limits=LOOP) as p:
        before = list(p.sent)
        with pytest.raises(SafetyError, match=r"^supply DP832 CH1: 35 V exceeds the DUT's 30 V open-circuit "
                                              r"limit \(current loop; IEC 62056-21 §4\)$"):
            p.configure(1, voltage=35.0, current_limit=0.02)
        with pytest.raises(SafetyError, match=r"supply DP832 CH2: 50 mA exceeds the DUT's 30 mA loop current"):
            p.ch(2).current_limit = 0.05
        with pytest.raises(SafetyError, match=r"-31 V is below the DUT's -30 V"):
            p.ch(1).voltage = -31
        assert p.sent == before                       # nothing was written
        assert p.ch(1).voltage == 0.0                 # the simulated supply still holds its default


def test_supply_output_on_refuses_a_setting_left_above_the_limit():
    with Supply(None, "rigol-dp832", sim=True, timeout=T, limits=DutLimits.for_option("optical")) as p:
        p.send(":SOURce2:VOLTage 12")           # e.g. left over from another bench session
        with pytest.raises(SafetyError, match=r"supply DP832 CH2: 12 V exceeds the DUT's 5.5 V head supply "
                                              r"limit \(optical head; assumed\)"):
            p.output_on(2)
        assert ":OUTPut CH2,ON" not in p.sent and p.output_state(2) is False


def test_generator_levels_beyond_v28_are_refused_before_sending():
    with Generator(None, "keysight-33500b", sim=True, timeout=T, limits=V28) as g:
        before = list(g.sent)
        with pytest.raises(SafetyError, match=r"generator 33500B CH1: 16 V exceeds the DUT's 15 V V.28 space "
                                              r"limit .*\(amplitude 20 Vpp, offset 6 V\)"):
            g.set_levels(1, amplitude=20.0, offset=6.0)
        with pytest.raises(SafetyError, match=r"-16 V is below the DUT's -15 V V.28 mark limit"):
            g.noise(2, amplitude=12.0, offset=-10.0)
        with pytest.raises(SafetyError):
            g.arbitrary(1, [0.0] * 8, sample_rate=1e5, amplitude=4.0, offset=14.0)
        assert g.sent == before
        g.set_levels(1, amplitude=20.0, offset=0.0)     # within the generator's 20 Vpp and ±15 V
        with pytest.raises(SafetyError):
            g.ch(1).offset = 6.0                        # the remembered 20 Vpp makes 16 V
        assert "SOURce1:VOLTage:OFFSet 6" not in g.sent


def test_dut_limits_defaults_and_overrides():
    assert (LOOP.voltage_max, LOOP.current_max, LOOP.basis["voltage_max"]) == (30.0, 0.030, "IEC 62056-21 §4")
    assert (V28.voltage_min, V28.voltage_max) == (-15.0, 15.0)
    opt = DutLimits.for_option(1)
    assert opt.basis == {"voltage_max": "assumed", "voltage_min": "assumed", "current_max": "assumed"}
    lim = LOOP.with_overrides(voltage_max=24)
    assert lim.voltage_max == 24.0 and lim.basis["voltage_max"] == "bench configuration"
    with pytest.raises(ValueError, match=r"unknown DUT limit"):
        LOOP.with_overrides(watts=3)


# --------------------------------------------------------------------------- the bench configuration
def test_bench_config_from_toml_and_the_virtual_default(tmp_path):
    from rig.bench.config import ConfigError, load_bench

    p = tmp_path / "bench.toml"
    p.write_text(textwrap.dedent("""
        [bench]
        option = "voltage"
        [dut]
        current_max = 0.05
        [instruments.supply]
        model = "rigol-dp832"
        channel = 3
        timeout = 0.2
    """))
    b = load_bench(p)
    assert b.option == "voltage" and b.limits.current_max == 0.05 and b.limits.voltage_max == 15.0
    assert b.instruments["supply"].channel == 3 and b.instruments["supply"].model.name == "rigol-dp832"
    with b.open("supply", sim=True) as s:
        assert s.limits is b.limits and s.role == "supply"
    v = load_bench()
    assert v.virtual and set(v.instruments) == {"scope", "generator", "supply", "meter"}
    with pytest.raises(ConfigError, match=r"instruments.meter.resource: no VISA resource yet"):
        v.open("meter")
    filled = v.with_resources({"meter": "TCPIP::127.0.0.1::5025::SOCKET"})
    assert filled.instruments["meter"].resource == "TCPIP::127.0.0.1::5025::SOCKET"
    assert v.instruments["meter"].resource is None
    for text, where in [('[bench]\noption = "usb"', r"bench.option: got 'usb' \(expected optical, current-loop or voltage"),
                        ('[instruments.scope]\nmodel = "rigol-dp832"', r"instruments.scope.model: rigol-dp832 is "
                                                                       r"a supply, not a scope"),
                        ('[instruments.oven]\nmodel = "x"', r"instruments.oven: unknown role"),
                        ('[dut]\nvoltage_max = "30"', r"dut.voltage_max: got '30' \(expected a number\)"),
                        ('[instruments.meter]\nresource = "x"', r"instruments.meter.model: missing"),
                        ('[bench\n', r"not valid TOML")]:
        p.write_text(text)
        with pytest.raises(ConfigError, match=str(p).replace(".", r"\.") + r":\d+: " + where):
            load_bench(p)


def test_the_wiring_is_the_bench_files_and_a_missing_figure_names_the_file_and_key(tmp_path):
    # the probe's gain and the loop's supply are the user's: read from the bench file, never a default
    from rig.bench.config import ConfigError, load_bench

    p = tmp_path / "bench.toml"
    p.write_text('[instruments.scope]\nmodel = "rigol-ds1000z"\nprobe_gain = 0.05\n'
                 '[instruments.supply]\nmodel = "rigol-dp832"\nloop_voltage = 20\n')
    b = load_bench(p)
    assert b.wiring("scope", "probe_gain") == 0.05 and b.wiring("supply", "loop_voltage") == 20.0
    with pytest.raises(ConfigError, match=str(p).replace(".", r"\.") + r": instruments.supply.loop_current_limit: "
                                          r"missing: the supply's current limit on the current loop \(A\)"):
        b.wiring("supply", "loop_current_limit")
    for text, where in [('[instruments.scope]\nmodel = "rigol-ds1000z"\nprobe_gain = 0',
                         r"3: instruments.scope.probe_gain: got 0 \(expected a number \(V/unit\) > 0\)"),
                        ('[instruments.supply]\nmodel = "rigol-dp832"\nloop_voltage = nan',
                         r"3: instruments.supply.loop_voltage: got nan \(expected a number \(V\) > 0, finite\)"),
                        ('[instruments.meter]\nmodel = "keysight-34461a"\nprobe_gain = 0.1',
                         r"3: instruments.meter.probe_gain: unknown key")]:
        p.write_text(text)
        with pytest.raises(ConfigError, match=str(p).replace(".", r"\.") + ":" + where):
            load_bench(p)


# --------------------------------------------------------------------------- a loopback SCPI stub
class ScpiStub:
    """A tiny SCPI instrument on loopback TCP serving a model: answers *IDN? and the error queue,
    remembers settings, echoes queries, and records every line received."""

    def __init__(self, model):
        self.model = load_model(model)
        self.idn = next(d["r"] for d in self.model.sim["dialogues"] if d["q"] == "*IDN?")
        self.lines: list[str] = []
        self.state: dict = {}
        self.frozen: dict = {}      # settings it answers whatever was set (an instrument ignoring them)
        self.cond = threading.Condition()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.resource = f"TCPIP::127.0.0.1::{self.port}::SOCKET"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn):
        buf = b""
        with conn:
            while True:
                try:
                    data = conn.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while b"\n" in buf:
                    raw, buf = buf.split(b"\n", 1)
                    line = raw.decode("latin-1").strip()
                    if not line:
                        continue
                    answer = self._answer(line)
                    with self.cond:
                        self.lines.append(line)
                        self.cond.notify_all()
                    if answer is not None:
                        conn.sendall(answer.encode() + b"\n")

    def _answer(self, line):
        hit = self.model.match(line)
        if hit is None:
            return None
        key, f = hit
        ch = f.get("ch")
        if key == "idn?":
            return self.idn
        if key == "error?":
            return '0,"No error"'
        if key == "opc?":
            return "1"
        if key in ("output_on", "output_off"):
            self.state[("output", ch)] = "ON" if key == "output_on" else "OFF"
        elif key.endswith("?"):
            if (key[:-1], ch) in self.frozen:
                return self.frozen[(key[:-1], ch)]
            return self.state.get((key[:-1], ch), "OFF" if key == "output?" else "0")
        elif "value" in f:
            self.state[(key, ch)] = f["value"]
        return None

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self.lines), timeout)

    def close(self):
        self.sock.close()


def test_supply_over_tcp_with_pyvisa_py_switches_off_on_close():
    stub = ScpiStub("rigol-dp832")
    try:
        with Supply(stub.resource, "rigol-dp832", timeout=2.0, limits=LOOP) as p:
            p.configure(1, 12.0, 0.02)
            p.output_on(1)
            assert p.output_state(1) is True
            assert OUTPUTS and p in list(OUTPUTS)
        # every output off, then *OPC?: close returns once the instrument has done it
        assert stub.wait_for(lambda lines: lines[-4:] == [":OUTPut CH1,OFF", ":OUTPut CH2,OFF",
                                                          ":OUTPut CH3,OFF", "*OPC?"])
        assert p not in list(OUTPUTS)
    finally:
        stub.close()



def test_settings_over_a_raw_socket_are_sent_at_once_not_held_by_nagle():
    """A setting and its error check (a write with no answer, then a query) must not wait for the
    instrument's delayed ACK: the drivers open raw-socket resources with VI_ATTR_TCPIP_NODELAY on,
    as NI-VISA does by default (pyvisa-py does not); read back from the socket itself."""
    from pyvisa import constants

    stub = ScpiStub("rigol-dp832")
    try:
        with Supply(stub.resource, "rigol-dp832", timeout=2.0, limits=LOOP) as p:
            nodelay = p._res.get_visa_attribute(constants.ResourceAttribute.tcpip_nodelay)
            assert nodelay == constants.VisaBoolean.true
            p.configure(1, 12.0, 0.02)       # settings, each followed by its SYST:ERR? check, still work
            assert p.model.command("error?") in p.sent
    finally:
        stub.close()


CHILD = """
import sys, time
from rig.bench.drivers import Supply
from rig.bench.safety import DutLimits
p = Supply(sys.argv[1], "rigol-dp832", timeout=2.0, limits=DutLimits.for_option("current-loop"))
p.configure(1, 12.0, 0.02)
p.output_on(1)
print("on", flush=True)
while True:          # no with-block, no finally: only the SIGINT handling may switch off
    time.sleep(0.05)
"""


def test_ctrl_c_in_a_subprocess_leaves_the_outputs_off():
    stub = ScpiStub("rigol-dp832")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, stub.resource], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=str(REPO))
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20.0)
        assert ready, "the child did not switch on within 20 s"
        assert proc.stdout.readline().strip() == b"on", proc.stderr.read().decode()
        assert stub.wait_for(lambda lines: ":OUTPut CH1,ON" in lines)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        assert proc.returncode != 0 and b"KeyboardInterrupt" in proc.stderr.read()
        assert stub.wait_for(lambda lines: ":OUTPut CH1,OFF" in lines[lines.index(":OUTPut CH1,ON"):])
        assert stub.state[("output", 1)] == "OFF"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stub.close()


# --------------------------------------------------------------------------- what real firmware needs (issue 14 §2)
def test_trigger_status_td_is_still_running_not_captured(tmp_path):
    # a DS1000Z says TD once triggered while the memory still fills: reading it then gives a short,
    # partly old record; only STOP means the acquisition is complete
    m = variant(tmp_path, "rigol-ds1000z",
                lambda d: d["sim"]["properties"]["trigger_status"].update(default="TD"))
    with Scope(None, m, sim=True, timeout=T) as s:
        assert s.trigger_status() == "TD" and s.triggered() is False
        with pytest.raises(InstrumentError, match=r"no trigger within 0.05 s"):
            s.acquire(timeout=0.05)
    with Scope(None, "rigol-ds1000z", sim=True, timeout=T) as s:       # the sim's default: STOP
        assert s.triggered() is True


def test_raw_read_stops_the_scope_and_writes_the_window_before_the_read():
    with Scope(None, "rigol-ds1000z", sim=True, timeout=T) as s:
        n = len(s.sent)
        assert len(s.waveform(1)) == 20
        # RAW: stopped before anything else (a DS1000Z reads its memory only when stopped); the window
        # of the preamble's 20 points written before the DATA? query, whatever window was left before
        assert s.sent[n:n + 9] == [":STOP", ":WAVeform:SOURce CHANnel1", ":WAVeform:MODE RAW",
                                   ":WAVeform:FORMat BYTE", ":WAVeform:PREamble?", ":WAVeform:STARt 1",
                                   ":WAVeform:STOP 20", ":WAVeform:DATA?", ":SYSTem:ERRor?"]


def test_short_waveform_answer_is_an_error_naming_scope_and_command(tmp_path):
    # the preamble announces 20 points, the block holds 5 (a stale or cut window): never a short waveform
    m = variant(tmp_path, "rigol-ds1000z", lambda d: dialogue(d, ":WAVeform:DATA?", "#15PPPPP"))
    with Scope(None, m, sim=True, timeout=T) as s:
        with pytest.raises(InstrumentError, match=r"scope Rigol DS1000Z at .*: ':WAVeform:DATA\?': 5 points returned "
                                                  r"for points 1\.\.20 \(20 expected; the preamble announces 20\)"):
            s.waveform(1)


def test_preamble_integer_fields_are_integers(tmp_path):
    with Scope(None, "rigol-ds1000z", sim=True, timeout=T) as s:
        pre = s.preamble()
    for k in ("format", "type", "points", "count", "x_reference", "y_origin", "y_reference"):
        assert type(pre[k]) is int, (k, pre[k])
    assert (pre["points"], pre["y_reference"], pre["x_increment"]) == (20, 100, 1e-6)
    m = variant(tmp_path, "rigol-ds1000z", lambda d: dialogue(
        d, ":WAVeform:PREamble?", "0,2,20.5,1,1.000000e-06,0.000000e+00,0,4.000000e-02,0,100"))
    with Scope(None, m, sim=True, timeout=T) as s:
        with pytest.raises(InstrumentError, match=r"':WAVeform:PREamble\?': garbage preamble .*points = '20.5' "
                                                  r"is not an integer"):
            s.waveform(1)


def test_memory_depth_and_sample_rate():
    with Scope(None, "rigol-ds1000z", sim=True, timeout=T) as s:
        assert s.memory_depth == "AUTO"
        s.memory_depth = 120_000
        assert ":ACQuire:MDEPth 120000" in s.sent and s.memory_depth == 120_000
        before = list(s.sent)
        for bad in (7, 125_000, float("nan"), "lots"):
            with pytest.raises(ValueError):
                s.memory_depth = bad
        assert s.sent == before                                   # refused before sending
        s.memory_depth = "auto"
        assert s.memory_depth == "AUTO"
        assert s.sample_rate() == 1e6


def test_meter_nplc_values_checked_before_sending():
    with Meter(None, "keysight-34461a", sim=True, timeout=T) as m:
        assert m.nplc == 10.0
        m.configure_voltage_dc(10, nplc=0.2)
        assert "SENSe:VOLTage:DC:NPLCycles 0.2" in m.sent and m.nplc == 0.2
        before = list(m.sent)
        with pytest.raises(ValueError, match=r"5 PLC is not one of the values the instrument accepts, "
                                             r"0.02, 0.2, 1, 10, 100"):
            m.configure_voltage_dc(10, nplc=5)
        from rig.bench.safety import SafetyError as SE
        with pytest.raises(SE, match=r"not a finite number"):
            m.configure_voltage_dc(10, nplc=float("nan"))
        with pytest.raises(SE, match=r"not a finite number"):
            m.configure_voltage_dc(float("inf"))
        assert m.sent == before                                   # nothing reached the meter
        m.configure_voltage_dc("AUTO", nplc="MAX")
        assert m.sent[-2] == "SENSe:VOLTage:DC:NPLCycles MAX"


def test_stale_waveform_window_not_reused():
    """Over real TCP against the virtual DS1000Z: a 600 000-point RAW read in chunks, then a window left
    behind (by the last chunk, or by another program) must not shrink the next read to 1 sample."""
    from rig.bench.virtual import VirtualBench
    from rig.link import VirtualLine

    with VirtualLine() as line, VirtualBench(line, models={"scope": "rigol-ds1000z"},
                                             settings={"memory_depth": 600_000, "scope_noise": 0.05}) as bench:
        with bench.bench().open("scope", timeout=5.0) as s:
            s.configure_timebase(1e-3)
            s.stop()
            full = s.waveform(1)
            assert len(full) == 600_000 == full.preamble["points"]
            chunks = [c for c in s.sent if c.startswith(":WAVeform:STARt")]
            assert chunks[-3:] == [":WAVeform:STARt 1", ":WAVeform:STARt 250001", ":WAVeform:STARt 500001"]
            part = s.waveform(1, points=120_000)
            assert len(part) == 120_000
            np.testing.assert_array_equal(part.volts, full.volts[:120_000])
            s.send(":WAVeform:STARt 599999")          # a window someone else left
            s.send(":WAVeform:STOP 599999")
            again = s.waveform(1)
            assert len(again) == 600_000
            np.testing.assert_array_equal(again.volts, full.volts)
            assert np.std(full.volts) > 0             # the noisy record, not a constant that matches anyway


def test_scope_shows_the_generators_noise():
    """Over real TCP: the generator's noise on the line is in the scope's waveform (not only in the bit
    errors it causes), at the rms the loop model couples it with, and gone once the output is off."""
    from rig.bench import loop as loopmodel
    from rig.bench.virtual import VirtualBench
    from rig.link import VirtualLine

    with VirtualLine() as line, VirtualBench(line) as bench:
        b = bench.bench()
        with b.open("scope", timeout=5.0) as s, b.open("generator", timeout=5.0) as g:
            s.configure_channel(1, scale=bench.probe_gain() * 5.0, offset=-bench.probe_gain() * 20.0)
            s.configure_timebase(1e-4)

            def rms() -> float:
                s.run()
                return float(np.std(s.waveform(1).volts)) / bench.probe_gain()     # option unit (mA)

            quiet = rms()
            g.noise(1, amplitude=6.0, offset=0.0)
            g.output_on(1)
            want = loopmodel.COUPLING["current-loop"] * 6.0 / loopmodel.NOISE_CREST
            noisy = rms()
            g.output_off(1)
            g.wait_complete()       # the generator has done it (*OPC?) before the scope looks again
            assert quiet < 0.1 * want
            assert noisy == pytest.approx(want, rel=0.15)
            assert rms() < 0.1 * want


def test_supply_protection_read_back_mode_and_power_over_tcp():
    """Over real TCP against the virtual DP832: the protection levels set are read back and
    verified, the regulation mode and the power are read as a DP832 answers them."""
    from rig.bench.virtual import VirtualBench
    from rig.link import VirtualLine

    with VirtualLine() as line, VirtualBench(line, models={"supply": "rigol-dp832"}) as bench:
        with bench.bench().open("supply", timeout=5.0) as p:
            p.configure(2, voltage=12.0, current_limit=0.02)
            assert ":SOURce2:VOLTage:PROTection?" in p.sent and ":SOURce2:CURRent:PROTection?" in p.sent
            assert p.mode(2) == "UR"                       # off: unregulated
            p.output_on(2)
            assert p.mode(2) in ("CV", "CC")
            pw = p.measure_power(2)
            assert pw.unit == "W" and pw.value is not None and pw.value >= 0


def test_supply_protection_level_not_taken_is_an_error_and_output_stays_off():
    stub = ScpiStub("rigol-dp832")
    try:
        with Supply(stub.resource, "rigol-dp832", timeout=2.0, limits=LOOP) as p:
            stub.frozen[("over_voltage_protection", 1)] = "33.000"     # a supply that kept its own level
            with pytest.raises(SafetyError, match=r"supply DP832 CH1: the over-voltage protection level read back "
                                                  r"is 33 V, not the 30 V set; the output stays off"):
                p.configure(1, 12.0, 0.02)
        assert stub.state[("output", 1)] == "OFF" and ":OUTPut CH1,ON" not in stub.lines
    finally:
        stub.close()


def test_meter_configuration_read_back():
    # CONFigure? as a 34461A answers it (the sim's canned answer)
    with Meter(None, "keysight-34461a", sim=True, timeout=T) as m:
        assert m.configuration() == ("VOLT", 10.0)


def test_virtual_meter_answers_conf_query_not_taken_for_configure_voltage():
    """CONF? is :CONFigure?, not :CONFigure[:VOLTage][:DC] with both optional nodes left out (the
    virtual 34461A answered nothing and queued -230)."""
    from rig.bench.virtual import VirtualBench
    from rig.link import VirtualLine

    with VirtualLine() as line, VirtualBench(line) as bench:
        with bench.bench().open("meter", timeout=5.0) as m:
            m.configure_current_dc()
            assert m.configuration()[0] == "CURR"
            m.configure_voltage_dc()
            assert m.configuration()[0] == "VOLT"
