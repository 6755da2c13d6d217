"""Third-party drivers against the virtual bench over real TCP (pyvisa-py, ``TCPIP::127.0.0.1::PORT::SOCKET``).

What a test engineer does with each instrument, through drivers that share no code with the rig:
QCoDeS ``RigolDS1074Z``, ``Keysight33522B`` (KeysightAgilent_33XXX), ``RigolDP832`` (DP8xx) and
``Keysight34461A`` (344xxA); pymeasure ``Agilent33500`` and ``Agilent34410A``; PyPI ``ds1054z``.
Every operation of the table is attempted; the test prints the ones that failed with their reason
and asserts at least 95 % work.  The operations a driver has no method for are sent through that
driver's own write/query (said in the row).

``ds1054z`` speaks VXI-11 through python-vxi11; its transport (``write_raw``/``read_raw``/``ask_raw``)
is replaced here by a pyvisa-py socket session, the driver's commands and parsing unchanged.
"""
from __future__ import annotations

import itertools
import logging
import math

import pytest

pyvisa = pytest.importorskip("pyvisa")
qcodes = pytest.importorskip("qcodes")
pymeasure = pytest.importorskip("pymeasure")
ds1054z = pytest.importorskip("ds1054z")

from conftest import wait_for  # noqa: E402
from rig.bench.virtual import VirtualBench  # noqa: E402
from rig.link import VirtualLine  # noqa: E402

logging.getLogger("qcodes").setLevel(logging.ERROR)
_names = itertools.count()


class Table:
    """Operations attempted: (instrument, driver, operation) -> None (worked) or the reason."""

    def __init__(self):
        self.rows: list[tuple[str, str, str, str | None]] = []

    def op(self, inst: str, driver: str, what: str, fn) -> None:
        try:
            r = fn()
            reason = None if r is None or r is True else f"check failed: {r!r}"
        except Exception as e:   # each operation's failure is a row, not the end of the test
            reason = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
        self.rows.append((inst, driver, what, reason))

    def failures(self):
        return [r for r in self.rows if r[3] is not None]


def check(got, want, tol=1e-9):
    if isinstance(want, float):
        return True if math.isclose(float(got), want, rel_tol=1e-6, abs_tol=tol) else (got, want)
    if isinstance(want, str):     # the same word, or its SCPI short form (NEG for NEGative)
        g = str(got).strip().strip('"').upper()
        w = want.upper()
        return True if (g == w or (len(g) >= 3 and w.startswith(g))) else (got, want)
    return True if got == want else (got, want)


@pytest.fixture
def bench():
    with VirtualLine() as line, VirtualBench(line, settings={"memory_depth": 30_000}) as b:
        yield b


@pytest.fixture
def table():
    t = Table()
    yield t
    # the report: every row, failures with their reasons
    fails = t.failures()
    print(f"\nthird-party operations: {len(t.rows) - len(fails)}/{len(t.rows)} worked")
    for inst, drv, what, why in fails:
        print(f"  FAILED {inst} / {drv} / {what}: {why}")


def qname(prefix: str) -> str:
    return f"{prefix}{next(_names)}"


# --------------------------------------------------------------------------- ds1054z over a pyvisa socket
def ds1054z_class():
    import vxi11

    class PyvisaSocket(vxi11.Instrument):
        """python-vxi11's Instrument with its transport replaced by a pyvisa-py socket session."""

        def __init__(self, host, *args, **kwargs):
            self.host = host
            self.client = self.link = None      # no RPC client: vxi11's properties and __del__ see none
            self._timeout = 5
            rm = pyvisa.ResourceManager("@py")
            self._res = rm.open_resource(host, read_termination="\n", write_termination="\n", timeout=5000)

        def open(self):
            pass

        def close(self):
            self._res.close()

        def write_raw(self, data, *a, **k):
            self._res.write_raw(bytes(data) + (b"" if bytes(data).endswith(b"\n") else b"\n"))

        def read_raw(self, num=-1, *a, **k):
            first = self._res.read_bytes(1)
            if first == b"#":       # a definite-length block: header, then exactly its bytes and the newline
                nd = int(self._res.read_bytes(1))
                n = int(self._res.read_bytes(nd)) if nd else 0
                body = self._res.read_bytes(n + 1)
                return b"#" + str(nd).encode() + str(n).zfill(nd).encode() + body[:-1]
            rest = self._res.read_raw() if first != b"\n" else b"\n"
            return (first + rest).rstrip(b"\n")

        def ask_raw(self, data, num=-1, *a, **k):
            self.write_raw(data)
            return self.read_raw(num)

        def ask(self, message, num=-1, encoding="utf-8"):
            return self.ask_raw(message.encode(encoding), num).decode(encoding)

        def write(self, message, encoding="utf-8"):
            self.write_raw(message.encode(encoding))

    class DS(ds1054z.DS1054Z, PyvisaSocket):
        pass

    return DS


# --------------------------------------------------------------------------- the scope
def scope_operations(bench, table):
    from qcodes.instrument_drivers.rigol import RigolDS1074Z

    res = bench.resources["scope"]
    T = table.op
    drv = "qcodes RigolDS1074Z"
    q = None

    def make():
        nonlocal q
        q = RigolDS1074Z(qname("scope"), res, visalib="@py", terminator="\n")
        return check(q.IDN()["vendor"], "RIGOL TECHNOLOGIES")
    T("scope", drv, "identify (construct, *IDN?)", make)
    if q is not None:
        T("scope", drv, "channel scale set+get", lambda: (q.channels[0].vertical_scale(0.5),
                                                          check(q.channels[0].vertical_scale(), 0.5))[1])
        T("scope", drv, "trigger mode set+get", lambda: (q.trigger_mode("edge"), check(q.trigger_mode(), "EDGE"))[1])
        T("scope", drv, "trigger source set+get", lambda: (q.trigger_edge_source("ch2"),
                                                           check(q.trigger_edge_source(), "ch2"))[1])
        T("scope", drv, "trigger slope set+get", lambda: (q.trigger_edge_slope("negative"),
                                                          check(q.trigger_edge_slope(), "NEG"))[1])
        T("scope", drv, "trigger level set+get", lambda: (q.trigger_level(1.5), check(q.trigger_level(), 1.5))[1])
        T("scope", drv, "waveform source set+get", lambda: (q.data_source("ch1"), check(q.data_source(), "ch1"))[1])
        T("scope", drv, "preamble fields (x/y origin, increment, reference)",
          lambda: check(all(math.isfinite(p()) for p in (q.waveform_xorigin, q.waveform_xincrem, q.waveform_yorigin,
                                                        q.waveform_yincrem, q.waveform_yref)), True))
        T("scope", drv, "screen waveform read (WORD)",
          lambda: check(len(q.channels[0].trace()) == q.waveform_npoints() == 1200, True))
        q.close()

    drv = "ds1054z"
    s = None

    def make_ds():
        nonlocal s
        s = ds1054z_class()(res)
        return check(s.product, "DS1104Z")
    T("scope", drv, "identify (construct, *IDN?)", make_ds)
    if s is None:
        return
    T("scope", drv, "channel scale set+get", lambda: (s.set_channel_scale(1, 0.2), check(s.get_channel_scale(1), 0.2))[1])
    T("scope", drv, "channel offset set+get", lambda: (s.set_channel_offset(1, -0.4), check(s.get_channel_offset(1), -0.4))[1])
    T("scope", drv, "probe ratio set+get", lambda: (s.set_probe_ratio(2, 10), check(s.get_probe_ratio(2), 10.0))[1])
    T("scope", drv, "channel coupling set+get (driver's write/query)",
      lambda: (s.write(":CHANnel1:COUPling AC"), check(s.query(":CHANnel1:COUPling?"), "AC"),
               s.write(":CHAN1:COUP DC"))[1])
    T("scope", drv, "channel display set+get", lambda: (s.display_channel(3, False),
                                                        check("CHAN3" not in s.displayed_channels, True),
                                                        s.display_channel(3, True))[1])
    T("scope", drv, "timebase scale set+get", lambda: (setattr(s, "timebase_scale", 2e-3),
                                                       check(s.timebase_scale, 2e-3))[1])
    T("scope", drv, "timebase offset set+get", lambda: (setattr(s, "timebase_offset", 1e-3),
                                                        check(s.timebase_offset, 1e-3))[1])
    T("scope", drv, "trigger sweep set+get (driver's write/query)",
      lambda: (s.write(":TRIGger:SWEep NORMal"), check(s.query(":TRIG:SWE?"), "NORM"))[1])
    T("scope", drv, "memory depth set+get", lambda: (setattr(s, "memory_depth", 30_000),
                                                     check(s.memory_depth, 30_000))[1])
    T("scope", drv, "sample rate", lambda: check(s.sample_rate, 30_000 / (12 * 2e-3)))
    T("scope", drv, "run: trigger status says running", lambda: (s.run(), check(s.running, True))[1])
    T("scope", drv, "stop: trigger status STOP", lambda: (s.stop(), check(s.query(":TRIGger:STATus?"), "STOP"))[1])
    T("scope", drv, "single: armed (RUN or WAIT)", lambda: (s.single(),
                                                            check(s.query(":TRIGger:STATus?") in ("RUN", "WAIT"), True))[1])
    T("scope", drv, "force trigger: TD then STOP", lambda: (s.tforce(), check(wait_for(lambda: s.query(":TRIG:STAT?") == "STOP", 5.0), True))[1])
    T("scope", drv, "preamble with integer fields", lambda: check(isinstance(s.waveform_preamble_dict["pnts"], int), True))
    T("scope", drv, "screen waveform read (NORMal) with scaling",
      lambda: check(len(s.get_waveform_samples(1, mode="NORMal")) == 1200, True))
    T("scope", drv, "RAW waveform read (memory, chunked)",
      lambda: check(len(s.get_waveform_bytes(1, mode="RAW")) == s.memory_depth, True))
    T("scope", drv, "built-in measurement (statistic item)",
      lambda: check(s.get_channel_measurement(1, "vmax") is not None, True))
    T("scope", drv, "RAW read after :RUN (the driver stops first)",
      lambda: (s.run(), check(len(s.get_waveform_bytes(1, mode="RAW")) == 30_000 and not s.running, True))[1])
    s.close()


# --------------------------------------------------------------------------- the generator
def generator_operations(bench, table):
    from qcodes.instrument_drivers.Keysight import Keysight33522B
    from pymeasure.instruments.agilent import Agilent33500

    res = bench.resources["generator"]
    T = table.op
    drv = "qcodes Keysight33522B"
    g = None

    def make():
        nonlocal g
        g = Keysight33522B(qname("gen"), res, visalib="@py", terminator="\n", silent=True)
        return check(g.IDN()["model"], "33522B")
    T("generator", drv, "identify (construct, *IDN?)", make)
    if g is not None:
        c = g.ch1
        T("generator", drv, "function set+get", lambda: (c.function_type("SQU"), check(c.function_type(), "SQU"))[1])
        T("generator", drv, "frequency set+get", lambda: (c.frequency(2500.0), check(c.frequency(), 2500.0))[1])
        T("generator", drv, "amplitude set+get", lambda: (c.amplitude(1.5), check(c.amplitude(), 1.5))[1])
        T("generator", drv, "offset set+get", lambda: (c.offset(0.25), check(c.offset(), 0.25))[1])
        T("generator", drv, "output on+get", lambda: (c.output("ON"), check(c.output(), "ON"))[1])
        T("generator", drv, "output off+get", lambda: (c.output("OFF"), check(c.output(), "OFF"))[1])
        T("generator", drv, "burst mode set+get", lambda: (c.burst_mode("N Cycle"), check(c.burst_mode(), "N Cycle"))[1])
        T("generator", drv, "burst cycles set+get", lambda: (c.burst_ncycles(5), check(c.burst_ncycles(), 5))[1])
        T("generator", drv, "burst state set+get", lambda: (c.burst_state("ON"), check(c.burst_state(), "ON"),
                                                            c.burst_state("OFF"))[1])
        T("generator", drv, "trigger source set+get", lambda: (c.trigger_source("BUS"), check(c.trigger_source(), "BUS"))[1])
        T("generator", drv, "pulse width set+get", lambda: (c.pulse_width(2e-5), check(c.pulse_width(), 2e-5))[1])
        T("generator", drv, "burst period set+get", lambda: (c.burst_int_period(0.5), check(c.burst_int_period(), 0.5))[1])
        T("generator", drv, "channel 2 frequency set+get", lambda: (g.ch2.frequency(7e3), check(g.ch2.frequency(), 7e3))[1])
        T("generator", drv, "sync output set+get", lambda: (g.sync.output("OFF"), check(g.sync.output(), "OFF"))[1])
        T("generator", drv, "software trigger (*TRG)", lambda: (g.force_trigger(), check(g.ask("SYST:ERR?"), '+0,"No error"'))[1])
        g.close()

    drv = "pymeasure Agilent33500"
    p = None

    def make_pm():
        nonlocal p
        p = Agilent33500(res, visa_library="@py", read_termination="\n", write_termination="\n")
        return check("33522B" in p.id, True)
    T("generator", drv, "identify (construct, *IDN?)", make_pm)
    if p is None:
        return
    T("generator", drv, "shape set+get", lambda: (setattr(p, "shape", "SIN"), check(p.shape, "SIN"))[1])
    T("generator", drv, "frequency set+get", lambda: (setattr(p, "frequency", 1234.5), check(p.frequency, 1234.5))[1])
    T("generator", drv, "amplitude set+get", lambda: (setattr(p, "amplitude", 0.8), check(p.amplitude, 0.8))[1])
    T("generator", drv, "offset set+get", lambda: (setattr(p, "offset", -0.1), check(p.offset, -0.1))[1])
    T("generator", drv, "output on+get", lambda: (setattr(p, "output", True), check(p.output, True))[1])
    T("generator", drv, "output off+get", lambda: (setattr(p, "output", False), check(p.output, False))[1])
    T("generator", drv, "burst cycles set+get", lambda: (setattr(p, "burst_ncycles", 3), check(p.burst_ncycles, 3))[1])
    T("generator", drv, "burst state set+get", lambda: (setattr(p, "burst_state", True), check(p.burst_state, True),
                                                        setattr(p, "burst_state", False))[1])
    T("generator", drv, "burst mode set+get", lambda: (setattr(p, "burst_mode", "TRIG"), check(p.burst_mode, "TRIG"))[1])
    T("generator", drv, "burst period set+get", lambda: (setattr(p, "burst_period", 0.25), check(p.burst_period, 0.25))[1])
    T("generator", drv, "pulse width set+get", lambda: (setattr(p, "pulse_width", 3e-5), check(p.pulse_width, 3e-5))[1])
    T("generator", drv, "trigger source set+get", lambda: (setattr(p, "trigger_source", "BUS"), check(p.trigger_source, "BUS"))[1])
    T("generator", drv, "software trigger (*TRG;*WAI)", lambda: p.trigger())
    T("generator", drv, "channel 2 amplitude set+get", lambda: (setattr(p.ch_2, "amplitude", 0.4),
                                                                check(p.ch_2.amplitude, 0.4))[1])
    T("generator", drv, "error queue empty after all this",
      lambda: check(p.ask("SYST:ERR?").strip(), '+0,"No error"'))
    p.adapter.close()


# --------------------------------------------------------------------------- the supply
def supply_operations(bench, table):
    from qcodes.instrument_drivers.rigol import RigolDP832

    res = bench.resources["supply"]
    T = table.op
    drv = "qcodes RigolDP832"
    s = None

    def make():
        nonlocal s
        s = RigolDP832(qname("sup"), res, visalib="@py", terminator="\n")
        return check(s.IDN()["model"], "DP832")
    T("supply", drv, "identify (construct, *IDN?, *OPT?)", make)
    if s is None:
        return
    for n, v, i in ((1, 12.0, 0.05), (2, 5.5, 0.5), (3, 3.3, 1.0)):
        ch = getattr(s, f"ch{n}")
        T("supply", drv, f"ch{n} voltage set+get", lambda ch=ch, v=v: (ch.set_voltage(v), check(ch.set_voltage(), v))[1])
        T("supply", drv, f"ch{n} current set+get", lambda ch=ch, i=i: (ch.set_current(i), check(ch.set_current(), i))[1])
        T("supply", drv, f"ch{n} output on+get", lambda ch=ch: (ch.state("on"), check(ch.state(), "ON"))[1])
        T("supply", drv, f"ch{n} measure voltage", lambda ch=ch, v=v: check(ch.voltage() <= v + 1e-6 and ch.voltage() >= 0, True))
        T("supply", drv, f"ch{n} measure current", lambda ch=ch, i=i: check(0 <= ch.current() <= i + 1e-6, True))
        T("supply", drv, f"ch{n} output off+get", lambda ch=ch: (ch.state("off"), check(ch.state(), "OFF"))[1])
    T("supply", drv, "over-voltage protection set+get", lambda: (s.ch1.ovp_value(20.0), check(s.ch1.ovp_value(), 20.0))[1])
    T("supply", drv, "over-voltage protection state set+get", lambda: (s.ch1.ovp_state("on"), check(s.ch1.ovp_state(), "ON"))[1])
    T("supply", drv, "over-current protection set+get", lambda: (s.ch2.ocp_value(1.5), check(s.ch2.ocp_value(), 1.5))[1])
    T("supply", drv, "output mode (CV/CC/UR) of an output off", lambda: check(s.ch1.mode(), "Unregulated"))
    T("supply", drv, "measure power", lambda: check(s.ch1.power() >= 0, True))
    T("supply", drv, "error queue empty after all this", lambda: check(s.ask(":SYST:ERR?"), '0,"No error"'))
    s.close()


# --------------------------------------------------------------------------- the meter
def meter_operations(bench, table):
    from qcodes.instrument_drivers.Keysight import Keysight34461A
    from pymeasure.instruments.agilent import Agilent34410A

    res = bench.resources["meter"]
    T = table.op
    drv = "qcodes Keysight34461A"
    m = None

    def make():
        nonlocal m
        m = Keysight34461A(qname("dmm"), res, visalib="@py", terminator="\n")
        return check(m.IDN()["model"], "34461A")
    T("meter", drv, "identify (construct, *IDN?, *OPT?)", make)
    loop = bench.loop
    if m is not None:
        T("meter", drv, "configure DC volts (sense function) set+get",
          lambda: (m.sense_function("DC Voltage"), check(m.sense_function(), "DC Voltage"))[1])
        T("meter", drv, "NPLC set+get", lambda: (m.NPLC(1), check(m.NPLC(), 1.0))[1])
        T("meter", drv, "range set+get", lambda: (m.range(100.0), check(m.range(), 100.0))[1])
        T("meter", drv, "read DC volts", lambda: check(m.volt(), loop.terminal_v, tol=1e-3))
        T("meter", drv, "configure DC current set+get",
          lambda: (m.sense_function("DC Current"), check(m.sense_function(), "DC Current"))[1])
        T("meter", drv, "read DC current", lambda: check(m.curr(), loop.mark_ma / 1e3, tol=1e-5))
        T("meter", drv, "autorange set+get", lambda: (m.autorange("ON"), check(m.autorange(), "ON"))[1])
        T("meter", drv, "trigger source set+get", lambda: (m.trigger.source("BUS"), check(m.trigger.source(), "BUS"),
                                                           m.trigger.source("IMM"))[1])
        T("meter", drv, "trigger count set+get", lambda: (m.trigger.count(1), check(m.trigger.count(), 1.0))[1])
        T("meter", drv, "sample count set+get", lambda: (m.sample.count(1), check(m.sample.count(), 1))[1])
        T("meter", drv, "INITiate then FETCh?", lambda: (m.init_measurement(),
                                                         check(float(m.fetch()[0]), loop.mark_ma / 1e3, tol=1e-5))[1])
        T("meter", drv, "display text set+get", lambda: (m.display.text("RIG"), check(m.display.text(), "RIG"))[1])
        T("meter", drv, "error queue empty after all this", lambda: check(m.ask("SYST:ERR?"), '+0,"No error"'))
        m.close()

    drv = "pymeasure Agilent34410A"
    p = None

    def make_pm():
        nonlocal p
        p = Agilent34410A(res, visa_library="@py", read_termination="\n", write_termination="\n")
        return check("34461A" in p.id, True)
    T("meter", drv, "identify (construct, *IDN?)", make_pm)
    if p is None:
        return
    T("meter", drv, "measure DC volts (MEAS:VOLT:DC? DEF,DEF)", lambda: check(p.voltage_dc, loop.terminal_v, tol=1e-3))
    T("meter", drv, "measure DC current (MEAS:CURR:DC? DEF,DEF)", lambda: check(p.current_dc, loop.mark_ma / 1e3, tol=1e-5))
    T("meter", drv, "error queue empty after all this", lambda: check(p.ask("SYST:ERR?").strip(), '+0,"No error"'))
    p.adapter.close()


# --------------------------------------------------------------------------- the verdict
def test_at_least_95_percent_of_the_operations_work(bench, table):
    for operations in (scope_operations, generator_operations, supply_operations, meter_operations):
        operations(bench, table)
    n = len(table.rows)
    fails = table.failures()
    assert n >= 100, f"only {n} operations attempted"
    worked = (n - len(fails)) / n
    assert worked >= 0.95, f"{worked:.1%} of {n} operations worked; failures: " + \
        "; ".join(f"{i}/{d}/{w}: {r}" for i, d, w, r in fails)
