"""The virtual DP832-style supply: its loop channel powers the current loop (rig.bench.loop); the
supply's voltage and current limit give the loop current; below the receiver's 9 mA bits err, at
or below 3 mA every character is lost.  Other channels drive a plain resistive load."""
from __future__ import annotations

import rig.bench.loop as loopmodel
from rig.bench.scpi import ScpiError
from rig.bench.virtual.base import ChannelView, VirtualInstrument


class VirtualSupply(VirtualInstrument):
    """The virtual supply: its loop channel powers the current loop."""

    capability = "supply"

    def __init__(self, role, model, bench):
        super().__init__(role, model, bench)
        # power-on state of the virtual bench: the loop channel powered as an HHU powers it
        init = bench.supply_power_on
        ch = bench.loop_channel
        self.set("voltage", init.voltage, ch)
        self.set("current_limit", init.current_limit, ch)
        self.set("output", init.output, ch)

    def reset(self) -> None:
        """*RST: every output off (the loop goes dead, as with a real supply)."""
        super().reset()
        self.selected = 1

    def changed(self) -> None:
        self.bench.loop_changed()

    # -- state the bench reads: {channel: value}, or called with a channel
    @property
    def volts(self) -> ChannelView:
        return self.per_channel("voltage", float)

    @property
    def limit(self) -> ChannelView:
        return self.per_channel("current_limit", float)

    @property
    def output(self) -> ChannelView:
        return self.per_channel("output", bool)

    def default_suffix(self) -> int:
        return self.selected

    # -- channel selection
    def on_instrument_select(self, sfx, v):
        self.selected = self.channel(int(v[2:]))

    def q_instrument_select(self, sfx, p):
        return f"CH{self.selected}"

    def on_instrument_nselect(self, sfx, v):
        self.selected = self.channel(int(v))

    def q_instrument_nselect(self, sfx, p):
        return str(self.selected)

    # -- limits of each channel (facts.channels)
    def _limit(self, ch: int, fact: str, v: float, unit: str) -> None:
        self.channel(ch)
        top = self.model.channel_facts(ch).get(fact)
        if top is not None and v > float(top) * 1.07:      # the DP832 accepts up to 7 % over the rating
            raise ScpiError(-222, f"{v:g} {unit} on channel {ch}; at most {float(top) * 1.07:g}")

    def on_voltage(self, sfx, v):
        self._limit(sfx[0], "voltage_max", v, "V")

    def on_current_limit(self, sfx, v):
        self._limit(sfx[0], "current_max", v, "A")

    def on_over_voltage_protection(self, sfx, v):
        self._limit(sfx[0], "ovp_max", v, "V")

    def on_over_current_protection(self, sfx, v):
        self._limit(sfx[0], "ocp_max", v, "A")

    def on_output(self, sfx, v):
        self.channel(sfx[0])

    # -- what the output does
    def state(self, ch: int) -> loopmodel.LoopState:
        return loopmodel.loop_state(self.get("voltage", ch), self.get("current_limit", ch),
                                    bool(self.get("output", ch)), r_loop_ohm=self.bench.r_loop_ohm)

    def q_measure_voltage(self, sfx, p):
        return f"{self.state(self.channel(sfx[0])).terminal_v:.4f}"

    def q_measure_current(self, sfx, p):
        return f"{self.state(self.channel(sfx[0])).mark_ma / 1e3:.4f}"

    def q_measure_power(self, sfx, p):
        s = self.state(self.channel(sfx[0]))
        return f"{s.terminal_v * s.mark_ma / 1e3:.4f}"

    def q_measure_all(self, sfx, p):
        s = self.state(self.channel(sfx[0]))
        return f"{s.terminal_v:.4f},{s.mark_ma / 1e3:.4f},{s.terminal_v * s.mark_ma / 1e3:.4f}"

    def q_output_mode(self, sfx, p):
        ch = self.channel(sfx[0])
        s = self.state(ch)
        if not self.get("output", ch):
            return "UR"
        return "CC" if s.mark_ma / 1e3 >= self.get("current_limit", ch) * 0.999 else "CV"

    def do_apply(self, sfx, p):
        ch = self.channel(sfx[0])
        if len(p) > 0 and p[0] is not None:
            self._limit(ch, "voltage_max", p[0], "V")
        if len(p) > 1 and p[1] is not None:
            self._limit(ch, "current_max", p[1], "A")
        if len(p) > 0 and p[0] is not None:
            self.set("voltage", p[0], ch)
        if len(p) > 1 and p[1] is not None:
            self.set("current_limit", p[1], ch)

    def q_apply(self, sfx, p):
        ch = self.channel(sfx[0])
        f = self.model.channel_facts(ch)
        rating = f"CH{ch}:{f.get('voltage_max', 30):g}V/{f.get('current_max', 3):g}A"
        return f"{rating},{self.get('voltage', ch):.3f},{self.get('current_limit', ch):.4f}"
