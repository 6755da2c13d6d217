"""The 20 mA current loop and the line disturbances of the virtual bench, as plain models.

Numbers stated by IEC 62056-21 §4 (FACTS.md §6) come from :data:`rig.physical.options.CURRENT_LOOP`;
every other constant here is *assumed* and says so.  No I/O and no clock: the virtual bench
(rig.bench.virtual) asks these models what the line does and turns the answer into line faults.

The loop (IEC 62056-21 §4: the HHU powers the loop, the meter side is passive)::

    supply (V, current limit) --- R_LOOP --- sender switch (SENDER_DROP at mark) ---
         receiver (RECEIVER_DROP at mark) --- back to the supply

- mark current = (V - SENDER_DROP - RECEIVER_DROP) / R_LOOP, at most the supply's current limit,
  0 when the supply's output is off or V is below the drops.  When the current limit holds, the
  supply is in constant current and its terminal voltage is I x R_LOOP + drops.
- space current = SPACE_CURRENT (the sender's switch open).
- The receiver reads mark surely at >= 9 mA and space surely at <= 3 mA (IEC 62056-21 §4).  So:
  mark current >= 9 mA: characters get through; <= 3 mA: the receiver sees space all the time and
  every character is lost; in between its threshold may be anywhere: bits err with a probability
  rising linearly from 0 at 9 mA to 0.5 at 3 mA (assumed).

Noise and glitches from the generator (:func:`noise_ber`, :func:`glitch_ber`): the generator's
output is coupled into the line with a gain in the option's unit per volt (:data:`COUPLING`,
assumed); Gaussian noise of Vpp volts has an rms of Vpp / 6 (crest factor 3, as
rig.physical.synth clips its noise); the receiver decides each bit once, at mid-bit, against the
middle of its surely-mark and surely-space levels; the bit error rate is the mean of the two
levels' tail probabilities.  A pulse train of frequency f and width w that reaches over the
threshold disturbs the fraction f x w of the time, and each mid-bit sample in a pulse is wrong.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from rig.measurement import Measurement
from rig.physical.options import CURRENT_LOOP, InterfaceOption, get_option

A = "assumed"
S = "IEC 62056-21 §4"

HHU_SUPPLY_V = 24.0        # assumed: the virtual supply powers the loop as an HHU does (§4: <= 30 V open circuit)
HHU_CURRENT_LIMIT_A = 0.030  # assumed: its current limit at the loop's maximum (§4: loop current <= 30 mA)
R_LOOP_OHM = 1000.0        # assumed: current-limiting resistor plus wiring of the loop
SENDER_DROP_V = 1.5        # assumed; IEC 62056-21 §4 allows <= 2 V at mark
RECEIVER_DROP_V = 2.0      # assumed; IEC 62056-21 §4 allows <= 3 V at mark
SPACE_CURRENT_MA = 0.0     # assumed; IEC 62056-21 §4 allows <= 2.5 mA from the sender at space
MARGINAL_BER_MAX = 0.5     # assumed: bit error rate at the surely-space current (3 mA)
NOISE_CREST = 6.0          # assumed: Vpp of the generator's noise = 6 x rms (clipped at 3 rms)

# generator output -> line, in the option's unit per volt (assumed coupling networks)
COUPLING = {
    "current-loop": 1.0,     # mA/V: 1 kΩ from the generator into the loop
    "voltage": 1.0,          # V/V: straight onto the V.28 line
    "optical": 100.0,        # µW/cm² per V: an LED driven next to the optical head
}
# scope probe: volts at the scope per unit of the option (assumed)
PROBE_GAIN = {
    "current-loop": 0.1,     # V/mA: a 100 Ω shunt in the loop
    "voltage": 1.0,          # V/V: a 1:1 probe
    "optical": 0.001,        # V per µW/cm²: a photodiode amplifier, 1 V per mW/cm²
}


@dataclass(frozen=True)
class LoopState:
    """The loop at one supply setting: currents in mA, voltages in V."""

    supply_v: float
    current_limit_a: float
    output: bool
    mark_ma: float
    space_ma: float
    terminal_v: float
    constant_current: bool

    @property
    def link(self) -> str:
        """'ok' (receiver reads mark surely), 'marginal' (between its thresholds), 'broken'."""
        surely_space, surely_mark = CURRENT_LOOP.receiver_thresholds()
        if self.mark_ma >= surely_mark:
            return "ok"
        if self.mark_ma <= surely_space:
            return "broken"
        return "marginal"

    @property
    def ber(self) -> float:
        """Bit error rate the receiver suffers (0 when ok; 1.0 stands for 'every character lost')."""
        lo, hi = CURRENT_LOOP.receiver_thresholds()
        if self.mark_ma >= hi:
            return 0.0
        if self.mark_ma <= lo:
            return 1.0
        return MARGINAL_BER_MAX * (hi - self.mark_ma) / (hi - lo)

    def measurements(self) -> list[Measurement]:
        """The loop against IEC 62056-21 §4: sender mark current, loop current, open-circuit voltage."""
        o = CURRENT_LOOP
        return [
            o.tx_mark.measure("mark_current", self.mark_ma),
            o.absolute_max["loop_current"].measure("loop_current", self.mark_ma),
            o.absolute_max["open_circuit_voltage"].measure(
                "open_circuit_voltage", self.supply_v if self.output else 0.0),
        ]


def loop_state(supply_v: float, current_limit_a: float = 0.1, output: bool = True, *,
               r_loop_ohm: float = R_LOOP_OHM) -> LoopState:
    """The loop powered by a supply at ``supply_v`` with a current limit (A) and output on/off."""
    drops = SENDER_DROP_V + RECEIVER_DROP_V
    if not output or supply_v <= drops:
        v = supply_v if output else 0.0
        return LoopState(supply_v, current_limit_a, output, 0.0, 0.0, max(v, 0.0), False)
    i = (supply_v - drops) / r_loop_ohm
    cc = i > current_limit_a
    if cc:
        i = max(current_limit_a, 0.0)
    terminal = i * r_loop_ohm + drops if cc else supply_v
    return LoopState(supply_v, current_limit_a, output, i * 1e3, min(SPACE_CURRENT_MA, i * 1e3),
                     terminal, cc)


def q(x: float) -> float:
    """Gaussian tail probability P(N(0,1) > x)."""
    return 0.5 * math.erfc(x / math.sqrt(2.0))


def levels(option, loop: LoopState | None = None) -> tuple[float, float]:
    """(mark, space) on the line in the option's unit: the current loop's from the loop model."""
    opt = get_option(option)
    if opt.name == "current-loop" and loop is not None:
        return loop.mark_ma, loop.space_ma
    return opt.nominal_mark, opt.nominal_space


def _threshold(opt: InterfaceOption) -> float:
    lo, hi = opt.receiver_thresholds()
    return 0.5 * (lo + hi)


def noise_ber(option, vpp: float, offset_v: float = 0.0, loop: LoopState | None = None) -> float:
    """Bit error rate of Gaussian noise of ``vpp`` volts (plus a d.c. offset) from the generator."""
    opt = get_option(option)
    k = COUPLING[opt.name]
    mark, space = levels(opt, loop)
    th = _threshold(opt)
    sign = 1.0 if opt.mark_is_high else -1.0
    d_mark = sign * (mark + k * offset_v - th)     # > 0: the mark level is on its side
    d_space = sign * (th - space - k * offset_v)
    sigma = k * abs(vpp) / NOISE_CREST
    if sigma <= 0.0:
        p = 0.5 * ((d_mark <= 0) + (d_space <= 0))
    else:
        p = 0.5 * (q(d_mark / sigma) + q(d_space / sigma))
    return min(p, 0.5)


def glitch_ber(option, vpp: float, frequency_hz: float, width_s: float,
               loop: LoopState | None = None) -> float:
    """Bit error rate of a pulse train that reaches over the receiver's threshold (else 0)."""
    opt = get_option(option)
    mark, space = levels(opt, loop)
    th = _threshold(opt)
    reach = COUPLING[opt.name] * abs(vpp)
    if reach < min(abs(mark - th), abs(th - space)):
        return 0.0
    return max(0.0, min(0.5, frequency_hz * width_s))


def waveform_ber(option, volts, loop: LoopState | None = None) -> float:
    """Bit error rate of an arbitrary waveform (generator volts, any number of samples played
    over and over): the fraction of mid-bit samples at which the disturbed mark or space level is
    on the wrong side of the receiver's threshold, averaged over both levels."""
    import numpy as np

    opt = get_option(option)
    d = COUPLING[opt.name] * np.asarray(volts, dtype=np.float64)
    if not d.size:
        return 0.0
    mark, space = levels(opt, loop)
    th = _threshold(opt)
    sign = 1.0 if opt.mark_is_high else -1.0
    p_mark = float(np.mean(sign * (mark + d - th) <= 0))
    p_space = float(np.mean(sign * (th - space - d) <= 0))
    return min(0.5, 0.5 * (p_mark + p_space))
