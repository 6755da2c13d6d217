"""The virtual 33500B-style generator: its output disturbs the line through a coupling network
(rig.bench.loop): noise with the output on is a noise fault (bit error rate from the amplitude
relative to the interface's swing), pulses are glitches (a bit error rate from their duty), a burst
(burst on, then a trigger) is a noise window of cycles / frequency; output off removes them."""
from __future__ import annotations

import numpy as np

import rig.bench.loop as loopmodel
from rig.bench.scpi import ScpiError
from rig.bench.virtual.base import ChannelView, VirtualInstrument

FUNCTIONS = {"SINusoid": "sine", "SQUare": "square", "TRIangle": "triangle", "NOISe": "noise", "PULSe": "pulse",
             "DC": "dc", "ARB": "arbitrary"}


class VirtualGenerator(VirtualInstrument):
    """The virtual generator: its output disturbs the line (noise, pulses, bursts) through the coupling network."""

    capability = "generator"

    def reset(self) -> None:
        super().reset()
        self.arbs: dict[tuple[int, str], np.ndarray] = {}

    def changed(self) -> None:
        self.bench.generator_changed(self)

    # -- state the bench reads: {channel: value}, or called with a channel
    @property
    def function(self) -> ChannelView:
        """sine | square | ... | noise | pulse | dc | arbitrary."""
        return self.per_channel("function", lambda f: FUNCTIONS.get(f, f.lower()))

    @property
    def output(self) -> ChannelView:
        return self.per_channel("output", bool)

    @property
    def burst(self) -> ChannelView:
        return self.per_channel("burst_state", bool)

    @property
    def vpp(self) -> ChannelView:
        return self.per_channel("amplitude", float)

    @property
    def offset(self) -> ChannelView:
        return self.per_channel("offset", float)

    # -- checks the instrument makes
    def _load_factor(self, ch: int) -> float:
        """Displayed over open-circuit volts: the levels are set as seen across the LOAD setting
        (50 ohm: half the open-circuit value; INFinity: all of it) behind the 50 ohm output."""
        load = self.get("load", ch)
        r_out = float(self.model.facts.get("output_impedance_ohm", 50))
        return 1.0 if load == "INFinity" else float(load) / (float(load) + r_out)

    def _check_levels(self, ch: int) -> None:
        """Amplitude and offset within what the output can give at the load setting: a peak of
        facts.max_output_v open-circuit, amplitude within facts.amplitude_vpp (33500B: 20 Vpp, 10 V
        peak into high impedance; half into 50 ohm).  Otherwise -221, the setting refused."""
        self.channel(ch)
        k = self._load_factor(ch)
        peak = float(self.model.facts.get("max_output_v", 10.0)) * k
        lo, hi = (float(x) * k for x in self.model.facts.get("amplitude_vpp", (0.002, 20.0)))
        vpp, off = self.vpp(ch), self.offset(ch)
        if self.get("function", ch) == "DC":
            vpp = 0.0               # d.c.: the amplitude plays no part, the offset is the level
        elif not lo * 0.999 <= vpp <= hi * 1.001:
            raise ScpiError(-222, f"amplitude {vpp:g} Vpp outside {lo:g}..{hi:g} at this load")
        if abs(off) + vpp / 2 > peak * 1.0001:
            raise ScpiError(-221, f"offset {off:g} V with {vpp:g} Vpp exceeds the {peak:g} V peak at this load")

    def on_amplitude(self, sfx, v):
        self._check_levels(sfx[0])

    def on_offset(self, sfx, v):
        self._check_levels(sfx[0])

    def on_load(self, sfx, v):
        self._check_levels(sfx[0])

    def q_load(self, sfx, p):
        v = self.get("load", sfx[0])
        return "+9.900000000000000E+37" if v == "INFinity" else self.tree.format(float(v))

    # -- triggers
    def do__trg(self, sfx, p):
        self.bench.generator_trigger(self)

    def do_trigger_immediate(self, sfx, p):
        self.bench.generator_trigger(self)

    # -- arbitrary waveforms: DAC codes (facts.arb) scaled to +-Vpp/2 around the offset
    def do_arb_clear(self, sfx, p):
        ch = self.channel(sfx[0])
        self.arbs = {k: v for k, v in self.arbs.items() if k[0] != ch}
        self.values.pop(("arb_select", (ch,)), None)

    def do_arb_upload(self, sfx, p):
        ch = self.channel(sfx[0])
        name, data = p
        a = self.model.facts.get("arb") or {}
        dt = np.dtype(a.get("datatype", "h"))
        swapped = self.get("byte_order") == "SWAPped"
        order = a.get("byte_order", "little") if swapped else "big"
        dt = dt.newbyteorder("<" if order == "little" else ">")
        if len(data) % dt.itemsize:
            raise ScpiError(-160, f"{len(data)} bytes is not a whole number of {dt.itemsize}-byte codes")
        codes = np.frombuffer(data, dtype=dt).astype(np.float64)
        lo, hi = float(a.get("dac_min", -32767)), float(a.get("dac_max", 32767))
        n_min, n_max = int(a.get("min_points", 1)), int(a.get("max_points", 1 << 24))
        if not n_min <= len(codes) <= n_max:
            raise ScpiError(-222, f"{len(codes)} points; {n_min}..{n_max}")
        if codes.min() < lo or codes.max() > hi:
            raise ScpiError(-222, f"DAC codes outside {lo:g}..{hi:g}")
        self.arbs[(ch, name.upper())] = codes / max(abs(lo), abs(hi))

    def on_arb_select(self, sfx, name):
        ch = self.channel(sfx[0])
        if (ch, name.upper()) not in self.arbs:
            raise ScpiError(-224, f"no waveform {name!r} in volatile memory")

    def arb_volts(self, ch: int) -> np.ndarray | None:
        name = self.values.get(("arb_select", (ch,)))
        if name is None or (ch, name.upper()) not in self.arbs:
            return None
        return self.arbs[(ch, name.upper())] * self.vpp(ch) / 2 + self.offset(ch)

    def effect(self, ch: int, option, loop) -> float:
        """The bit error rate channel ``ch`` causes on the line right now (0: none)."""
        if not self.output(ch):
            return 0.0
        fn = self.function(ch)
        if fn == "noise":
            return loopmodel.noise_ber(option, self.vpp(ch), self.offset(ch), loop)
        if fn == "pulse":
            return loopmodel.glitch_ber(option, self.vpp(ch), self.get("frequency", ch),
                                        self.get("pulse_width", ch), loop)
        if fn == "dc":
            return loopmodel.noise_ber(option, 0.0, self.offset(ch), loop)
        if fn == "arbitrary":
            v = self.arb_volts(ch)
            return 0.0 if v is None else loopmodel.waveform_ber(option, v, loop)
        return 0.0   # a sine or square wave: not modelled as a disturbance (assumed)

    def burst_ns(self, ch: int) -> int:
        """A burst lasts cycles periods: of the arbitrary waveform (points / sample rate), else of
        the frequency (for noise, the burst's carrier; assumed)."""
        v = self.arb_volts(ch) if self.function(ch) == "arbitrary" else None
        period = len(v) / self.get("arb_sample_rate", ch) if v is not None else 1.0 / self.get("frequency", ch)
        cycles = self.get("burst_cycles", ch)
        cycles = 1e8 if cycles == "INFinity" else float(cycles)
        return max(1, int(round(cycles * period * 1e9)))
