"""The virtual 34461A-style meter: in series with the loop for current, across the supply's
terminals for voltage (assumed wiring)."""
from __future__ import annotations

from rig.bench.scpi import ScpiError, mnemonic
from rig.bench.virtual.base import VirtualInstrument

#: integration times the 34461A has, in power-line cycles (its SCPI reference, [SENSe:]VOLTage:NPLC)
NPLC = (0.02, 0.2, 1.0, 10.0, 100.0)
FUNCTIONS = (("VOLTage:AC", "VOLT:AC"), ("VOLTage[:DC]", "VOLT"), ("CURRent:AC", "CURR:AC"),
             ("CURRent[:DC]", "CURR"), ("RESistance", "RES"), ("FRESistance", "FRES"))


def _function(text: str) -> str:
    """A sense function in its canonical answer form: 'volt:dc' -> 'VOLT'."""
    words = text.strip().strip("\"'").split(":")
    for spec, canon in FUNCTIONS:
        parts = spec.replace("[", "").replace("]", "").split(":")
        need = spec.split("[")[0].split(":")
        if len(need) <= len(words) <= len(parts) and all(mnemonic(p, w) for p, w in zip(parts, words)):
            return canon
    raise ScpiError(-224, f"function {text[:20]!r}")


class VirtualMeter(VirtualInstrument):
    """The virtual multimeter: reads the loop current and the supply's terminal voltage."""

    capability = "meter"

    def reset(self) -> None:
        super().reset()
        self.last: str | None = None

    def on_function(self, sfx, v):
        canon = _function(v)
        if canon not in ("VOLT", "CURR"):
            raise ScpiError(-221, f"{canon} is not modelled by the virtual meter")
        self.set("function", canon)

    def _nplc(self, v: float) -> float:
        # the meter takes the next integration time at or above the value asked (assumed rounding)
        for n in sorted(float(x) for x in self.model.facts.get("nplc") or NPLC):
            if v <= n * 1.0001:
                return n
        raise ScpiError(-222, f"NPLC {v:g}; at most {max(self.model.facts.get('nplc') or NPLC):g}")

    def on_nplc(self, sfx, v):
        self.set("nplc", self._nplc(v))

    def on_current_nplc(self, sfx, v):
        self.set("current_nplc", self._nplc(v))

    def do_configure_voltage_dc(self, sfx, p):
        self.set("function", "VOLT")
        if p and p[0] is not None and p[0] != "AUTO":
            self.set("voltage_range", p[0])
            self.set("voltage_range_auto", False)
        else:
            self.set("voltage_range_auto", True)

    def do_configure_current_dc(self, sfx, p):
        self.set("function", "CURR")
        if p and p[0] is not None and p[0] != "AUTO":
            self.set("current_range", p[0])
            self.set("current_range_auto", False)
        else:
            self.set("current_range_auto", True)

    def q_configure(self, sfx, p):
        f = self.get("function")
        rng = self.get("voltage_range" if f == "VOLT" else "current_range")
        return f'"{f} {self.tree.format(float(rng))},{self.tree.format(3.0e-6 if f == "VOLT" else 3.0e-8)}"'

    def _reading(self, function: str) -> str:
        s = self.bench.loop
        v = s.terminal_v if function == "VOLT" else s.mark_ma / 1e3
        rng = self.get("voltage_range" if function == "VOLT" else "current_range")
        auto = self.get("voltage_range_auto" if function == "VOLT" else "current_range_auto")
        if not auto and abs(v) > 1.2 * float(rng):
            v = 9.9e37                      # overload: what the meter answers beyond 120 % of range
        self.last = self.tree.format(float(v))
        return self.last

    def q_read(self, sfx, p):
        return self._reading(self.get("function"))

    def do_initiate(self, sfx, p):
        self._reading(self.get("function"))

    def q_fetch(self, sfx, p):
        if self.last is None:
            raise ScpiError(-230, "no reading: INITiate first")
        return self.last

    def q_measure_voltage_dc(self, sfx, p):
        self.do_configure_voltage_dc(sfx, p)
        return self._reading("VOLT")

    def q_measure_current_dc(self, sfx, p):
        self.do_configure_current_dc(sfx, p)
        return self._reading("CURR")

    def q_line_frequency(self, sfx, p):
        return self.tree.format(50.0)
