"""The virtual DS1000Z-style scope: channels probing the virtual line, acquisitions, transfers.

It behaves as the DS1000Z firmware does where a driver can tell (programming guide, :TRIGger:STATus?,
:WAVeform:DATA?, :ACQuire:MDEPth):

- ``:TRIGger:STATus?`` answers ``RUN`` (armed, pre-trigger memory filling), ``WAIT`` (armed, waiting
  for the trigger), ``TD`` (triggered, memory after the trigger still filling), ``AUTO`` (running in
  auto sweep without a trigger) or ``STOP``; only ``STOP`` means an acquisition is complete;
- the internal memory (``:WAVeform:MODE RAW``) is read only when stopped: a RAW ``:WAVeform:DATA?``
  while running answers an empty block and queues -221 "Settings conflict";
- each ``:WAVeform:DATA?`` returns points ``STARt``..``STOP`` of the mode's points (at most
  ``max_points_per_read`` in BYTE format, else -222 and an empty block), as the real one does;
- ``:ACQuire:MDEPth`` takes the depths of the enabled channel count; ``:ACQuire:SRATe?`` is depth
  over the screen time; the preamble's integer fields are integers.

Waveforms are synthesised from the line's wire record (rig.physical.synth.line_waveform).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rig import _clock
from rig.bench.scpi import ScpiError, block, short_form
from rig.bench.virtual.base import VirtualInstrument
from rig.physical.synth import Waveform, line_chars, line_edges, line_waveform

SETTLE_NS = 2_000_000   # the bridge has recorded everything up to 2 ms ago


@dataclass
class Acquisition:
    """One acquisition: the screen [t0, t0 + duration) of every channel, frozen."""

    t0_ns: int
    duration_ns: int
    trigger_ns: int
    record: list
    levels: tuple[float, float]
    noise: float = 0.0                 # rms, option unit: the generator's noise on the line then

    def xorigin(self) -> float:
        """The first point's time relative to the trigger, in seconds (the preamble's x origin)."""
        return (self.t0_ns - self.trigger_ns) / 1e9


def _channel_number(word: str) -> int:
    """``CHANnel3`` -> 3."""
    return int(short_form(word)[4:]) if short_form(word).startswith("CHAN") else 0


def _pre(v) -> str:
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return f"{v:.6e}"


class VirtualScope(VirtualInstrument):
    """A scope whose channels probe the virtual line (setting ``probes``) through a probe of
    ``probe_gain`` volts per unit of the option.  With ``:ACQuire:MDEPth AUTO`` the memory holds
    the bench setting ``memory_depth`` points (default 120 000) over the screen (divisions x
    timebase scale); the screen transfer (mode NORMal) has the model's ``screen_points``."""

    capability = "scope"

    def reset(self) -> None:
        """*RST: the defaults, running, no acquisition yet."""
        super().reset()
        div = self.model.facts.get("divisions") or {}
        self.hdivs = float(div.get("horizontal", 12))
        self.state = "run"                 # run | wait (single armed) | stop
        self.armed_ns = _clock.now_ns()
        self.trigger_ns: int | None = None
        self.acq: Acquisition | None = None
        self._wf: tuple[Acquisition, tuple[int, int], Waveform] | None = None   # the last synthesis

    def _wfacts(self) -> dict:
        return self.model.facts.get("waveform") or {}

    # -- channels and timebase
    def on_channel_scale(self, sfx, v):
        """channel_scale: volts per division within the model's vertical range at the channel's probe ratio (-222)."""
        self.channel(sfx[0])
        probe = self.get("channel_probe", sfx[0])
        lo, hi = self.model.facts.get("vertical_scale") or (1e-3, 10.0)
        if not lo * probe * 0.999 <= v <= hi * probe * 1.001:
            raise ScpiError(-222, f"{v:g} V/div outside {lo * probe:g}..{hi * probe:g} at probe {probe:g}x")

    def on_channel_probe(self, sfx, v):
        """channel_probe: the probe ratio of an existing channel (its scale follows)."""
        # the scale follows the probe (the screen keeps its volts per division at the tip x ratio)
        self.channel(sfx[0])

    def q_channel_range(self, sfx, p):
        """channel_range?: the screen's full height, 8 divisions x the scale."""
        return self.tree.format(8 * self.get("channel_scale", sfx[0]))

    def do_channel_range(self, sfx, p):
        """channel_range v: the scale set to v / 8, refused as channel_scale would be."""
        self.set("channel_scale", p[0] / 8, sfx[0])
        try:
            self.on_channel_scale(sfx, p[0] / 8)
        except ScpiError:
            self.values.pop(("channel_scale", (sfx[0],)), None)
            raise

    def enabled_channels(self) -> int:
        """How many channels are shown (at least 1): the memory depths allowed depend on it."""
        return max(1, sum(1 for c in self.model.channels if self.get("channel_display", c)))

    # -- memory
    def on_memory_depth(self, sfx, v):
        """memory_depth: AUTO, or a depth the model allows for the channels shown (-224)."""
        if v == "AUTO":
            return
        n = self.enabled_channels()
        table = {int(k): [int(x) for x in r] for k, r in (self.model.facts.get("memory_depths") or {}).items()}
        if not table:
            return
        row = table.get(n) or table[min((k for k in table if k >= n), default=max(table))]
        if int(v) not in row:
            raise ScpiError(-224, f"{v} points with {n} channel(s) on; one of {row}")

    def mdepth(self) -> int:
        """The memory depth in points (AUTO: the bench's memory_depth setting)."""
        v = self.get("memory_depth")
        if v == "AUTO" or v is None:
            return self.bench.memory_depth
        return int(v)

    def q_memory_depth(self, sfx, p):
        """memory_depth?: AUTO, or the depth in points."""
        return "AUTO" if self.get("memory_depth") in ("AUTO", None) else str(self.mdepth())

    def q_sample_rate(self, sfx, p):
        """sample_rate?: the memory depth over the screen's time."""
        return _pre(self.mdepth() / (self._screen_ns() / 1e9))

    # -- trigger and acquisition
    def on_trigger_sweep(self, sfx, v):
        """trigger_sweep: SINGle arms a single acquisition."""
        if v == "SINGle":
            self.do_single(sfx, [])

    def do_run(self, sfx, p):
        """run: acquire continuously."""
        self.state = "run"
        self.armed_ns = _clock.now_ns()
        self.trigger_ns = None

    def do_stop(self, sfx, p):
        """stop: keep the acquisition a single trigger has completed, else the screen as it is now."""
        if self.state != "stop":
            self._progress()
            if self.state != "stop":
                self._acquire_now()
        self.state = "stop"

    def do_single(self, sfx, p):
        """single: arm one acquisition, which stops at the next trigger."""
        self.state = "wait"
        self.armed_ns = _clock.now_ns()
        self.trigger_ns = None

    def do_tforce(self, sfx, p):
        """tforce: a forced trigger now (an armed single acquisition triggers; running: the screen now)."""
        if self.state == "wait" and self.trigger_ns is None:
            self.trigger_ns = _clock.now_ns()
        elif self.state == "run":
            self._acquire_now()

    def do_autoscale(self, sfx, p):
        """autoscale: back to running (the virtual scope's settings are left as they are)."""
        self.do_run(sfx, p)

    def do_clear(self, sfx, p):
        """clear: the acquisition shown is discarded."""
        self.acq = None

    def q_trigger_status(self, sfx, p):
        """RUN / WAIT / TD / AUTO while acquiring, STOP once an acquisition is complete."""
        self._progress()
        now = _clock.now_ns()
        if self.state == "stop":
            return "STOP"
        pre = self._screen_ns() // 2 - int(round(self.get("timebase_offset") * 1e9))
        if now - self.armed_ns < max(0, pre):
            return "RUN"                 # the pre-trigger part of the memory is filling
        if self.state == "wait":
            return "TD" if self.trigger_ns is not None else "WAIT"
        # running: triggered (an edge in the last screen), else waiting or auto-triggering
        t = self._find_trigger(max(self.armed_ns, now - self._screen_ns()), now)
        if t is not None:
            return "TD"
        return "AUTO" if self.get("trigger_sweep") == "AUTO" else "WAIT"

    def _screen_ns(self) -> int:
        return int(round(self.hdivs * self.get("timebase_scale") * 1e9))

    def _acquire(self, trigger_ns: int) -> Acquisition:
        screen = self._screen_ns()
        t0 = trigger_ns + int(round(self.get("timebase_offset") * 1e9)) - screen // 2
        self.acq = Acquisition(t0, screen, trigger_ns, self.bench.line.record(), self.bench.line_levels(),
                               self.bench.generator_noise())
        return self.acq

    def _acquire_now(self) -> Acquisition:
        """The screen ending now (an auto or forced trigger, a stop, or a screen read while running)."""
        now = _clock.now_ns()
        screen = self._screen_ns()
        return self._acquire(now - (screen - screen // 2) - int(round(self.get("timebase_offset") * 1e9)))

    def _progress(self) -> None:
        """Advance a single acquisition: look for the trigger, finish once the screen passed."""
        if self.state != "wait":
            return
        now = _clock.now_ns()
        if self.trigger_ns is None:
            self.trigger_ns = self._find_trigger(self.armed_ns, now)
            if self.trigger_ns is None:
                return
        end = self.trigger_ns + int(round(self.get("timebase_offset") * 1e9)) + self._screen_ns() // 2
        if now >= end + SETTLE_NS:
            self._acquire(self.trigger_ns)
            self.state = "stop"

    def _find_trigger(self, t_from: int, t_to: int) -> int | None:
        record = self.bench.line.record()
        if self.get("trigger_mode") == "RS232":
            src = _channel_number(self.get("trigger_serial_source")) or 1
            when = self.get("trigger_serial_when")
            bits = int(self.get("trigger_serial_bits"))
            data = int(self.get("trigger_serial_data"))
            for c in line_chars(record, self._dirs(src), t_from, 1 << 62):
                if c.t_start_ns > t_to:
                    break
                if when == "STARt" or (when == "DATA" and (c.line & ((1 << bits) - 1)) == data):
                    return c.t_start_ns
            return None
        src = _channel_number(self.get("trigger_edge_source"))
        if not src:
            return None
        gain = self.bench.probe_gain()
        mark, space = self.bench.line_levels()
        lo, hi = sorted((mark * gain, space * gain))
        level = self.get("trigger_edge_level")
        if not lo < level < hi:
            return None
        slope = self.get("trigger_edge_slope")
        _, edges = line_edges(record, self._dirs(src), t_from, t_to)
        for t, lv in edges:
            rising = (lv == 1) == (mark >= space)
            if slope == "RFALl" or (slope == "POSitive") == rising:
                return t
        return None

    def _dirs(self, ch: int) -> tuple[str, ...]:
        d = self.bench.probes.get(ch, "both")
        return ("to_meter", "to_hhu") if d == "both" else (d,)

    # -- transfer
    def _source(self) -> int:
        ch = _channel_number(self.get("waveform_source"))
        if not ch:
            raise ScpiError(-221, "MATH is not modelled by the virtual scope")
        return ch

    def _mode(self) -> str:
        return self.get("waveform_mode")

    def _points(self) -> int:
        """Points of the current mode: the screen (NORMal, or MAXimum while running) or the memory."""
        mode = self._mode()
        if mode == "NORMal" or (mode == "MAXimum" and self.state != "stop"):
            return int(self._wfacts().get("screen_points", 1200))
        return self.mdepth()

    def _acq(self) -> Acquisition:
        self._progress()
        if self.state != "stop" or self.acq is None:
            return self._acquire_now()    # running (or still waiting): what the screen shows now
        return self.acq

    def _yscale(self, ch: int) -> tuple[float, int, int]:
        """(y_increment, y_origin, y_reference) of BYTE/WORD codes for a channel:
        volts = (code - y_origin - y_reference) x y_increment (the DS1000Z preamble), 25 codes a
        division around code 127 at the screen centre, which shows -offset volts."""
        yinc = self.get("channel_scale", ch) / 25.0
        return yinc, int(round(self.get("channel_offset", ch) / yinc)), 127

    def _window(self, total: int) -> tuple[int, int]:
        start = min(max(int(self.get("waveform_start")), 1), total)
        stop = min(max(int(self.get("waveform_stop")), start), total)
        return start, stop

    def _xinc(self, acq: Acquisition) -> float:
        return acq.duration_ns / 1e9 / self._points()

    def q_waveform_preamble(self, sfx, p):
        """The preamble of the whole transfer (every point of the mode, whatever STARt/STOP say):
        x_origin is the first point's time relative to the trigger."""
        acq = self._acq()
        src = self._source()
        total = self._points()
        yinc, yorig, yref = self._yscale(src)
        fmt = self.get("waveform_format")
        fields = {
            "format": {"BYTE": 0, "WORD": 1, "ASCii": 2}[fmt],
            "type": {"NORMal": 0, "MAXimum": 1, "RAW": 2}[self._mode()],
            "points": total, "count": 1, "x_increment": self._xinc(acq),
            "x_origin": acq.xorigin(), "x_reference": 0,
            "y_increment": yinc, "y_origin": yorig, "y_reference": yref,
        }
        order = self._wfacts().get("preamble") or list(fields)
        return ",".join(_pre(fields.get(k, 0)) for k in order)

    def q_waveform_xincrement(self, sfx, p):
        """waveform_xincrement?: the time between two points of the current mode, s."""
        return _pre(self._xinc(self._acq()))

    def q_waveform_xorigin(self, sfx, p):
        """waveform_xorigin?: the first point's time relative to the trigger, s."""
        return _pre(self._acq().xorigin())

    def q_waveform_xreference(self, sfx, p):
        """waveform_xreference?: 0."""
        return "0"

    def q_waveform_yincrement(self, sfx, p):
        """waveform_yincrement?: volts per code of the source channel."""
        return _pre(self._yscale(self._source())[0])

    def q_waveform_yorigin(self, sfx, p):
        """waveform_yorigin?: the source channel's code offset."""
        return _pre(self._yscale(self._source())[1])

    def q_waveform_yreference(self, sfx, p):
        """waveform_yreference?: the code at the screen's centre (127)."""
        return _pre(self._yscale(self._source())[2])

    def on_waveform_points(self, sfx, n):
        """POINts n: the next reads return n points from STARt (STOP follows)."""
        self.set("waveform_stop", int(self.get("waveform_start")) + int(n) - 1)

    def q_waveform_points(self, sfx, p):
        """waveform_points?: how many points the next read returns (STARt..STOP of the mode's points)."""
        start, stop = self._window(self._points())
        return str(stop - start + 1)

    def samples(self, ch: int | None = None, start: int = 1, stop: int | None = None) -> np.ndarray:
        """Volts at the probe tip of channel ``ch`` for points start..stop (1-based, inclusive)
        of the current acquisition."""
        ch = self._source() if ch is None else ch
        acq = self._acq()
        total = self._points()
        stop = total if stop is None else stop
        key = (ch, total)
        if self._wf is None or self._wf[0] is not acq or self._wf[1] != key:   # one synthesis per acquisition
            sig = self.bench.line_signal
            self._wf = (acq, key, line_waveform(acq.record, self.bench.option, acq.t0_ns, acq.duration_ns,
                                                total, self._dirs(ch), acq.levels, sig.rise_time_s,
                                                math.hypot(sig.noise, acq.noise), self.bench.seed))
        return self._wf[2].render(start - 1, stop).astype(np.float64) * self.bench.probe_gain()

    def q_waveform_data(self, sfx, p):
        """waveform_data?: the source channel's points STARt..STOP as a block (BYTE, WORD or ASCii);
        an empty block and an error queued when RAW is read while running or the read is too long."""
        if self._mode() == "RAW":
            self._progress()
            if self.state != "stop":
                # the internal memory is read only in the STOP state (programming guide, :WAVeform:DATA?)
                self.push_error(-221, "RAW waveform read while running; send :STOP first")
                return block(b"")
        total = self._points()
        start, stop = self._window(total)
        fmt = self.get("waveform_format")
        limit = int(self._wfacts().get("max_points_per_read") or 0)
        if fmt == "WORD":
            limit //= 2
        if limit and fmt != "ASCii" and stop - start + 1 > limit:
            self.push_error(-222, f"{stop - start + 1} points in one read; at most {limit}")
            return block(b"")
        src = self._source()
        v = self.samples(src, start, stop)
        if fmt == "ASCii":
            return block(",".join(f"{x:.6e}" for x in v).encode())
        yinc, yorig, yref = self._yscale(src)
        codes = np.divide(v, yinc, out=v)       # v / yinc + yorig + yref, rounded, in place
        codes += yorig
        codes += yref
        np.clip(np.rint(codes, out=codes), 0, 255, out=codes)
        return block(codes.astype(np.uint8).tobytes() if fmt == "BYTE" else codes.astype("<u2").tobytes())

    # -- built-in measurements (on the current acquisition of a channel)
    def q_measure_item(self, sfx, p):
        """measure_item? item[,source]: a built-in measurement of the current acquisition (9.9e37: cannot measure)."""
        item = p[0]
        ch = _channel_number(p[1]) if len(p) > 1 and p[1] else _channel_number(self.get("measure_source"))
        self.channel(ch)
        if item in ("VMAX", "VTOP"):
            return _pre(float(self.samples(ch).max()))
        if item in ("VMIN", "VBASe"):
            return _pre(float(self.samples(ch).min()))
        if item in ("VAMP", "VPP"):
            v = self.samples(ch)
            return _pre(float(np.percentile(v, 99) - np.percentile(v, 1)))
        if item == "VAVG":
            return _pre(float(self.samples(ch).mean()))
        if item in ("RTIMe", "FTIMe"):
            acq = self._acq()
            return _pre(max(self.bench.line_signal.rise_time_s, acq.duration_ns / 1e9 / self._points()))
        if item in ("FREQuency", "PERiod"):
            acq = self._acq()
            chars = line_chars(acq.record, self._dirs(ch), acq.t0_ns, acq.t0_ns + acq.duration_ns)
            if not chars:
                return _pre(9.9e37)   # what the scope answers when it cannot measure
            f = float(np.median([c.baud for c in chars])) / 2
            return _pre(f if item == "FREQuency" else 1 / f)
        return _pre(9.9e37)

    def q_measure_statistic_item(self, sfx, p):
        """Statistics over the acquisitions measured: the virtual scope measures the current one, so
        every statistic is its value (the deviation 0)."""
        return _pre(0.0) if p[0] == "DEViation" else self.q_measure_item(sfx, p[1:])

    def do_measure_item(self, sfx, p):
        """measure_item item[,source]: shows the measurement on the screen (nothing to do here)."""
        pass   # shows the measurement on the screen
