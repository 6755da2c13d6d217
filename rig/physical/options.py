"""The three electrical interface options of IEC 62056-21 §4 (IEC 62055-52 §6.2) as data.

Every limit says where it comes from: ``IEC 62056-21 §4`` for the numbers in FACTS.md §6, ``assumed``
for everything else (timing limits, absolute maximums the standard does not state).  A measurement
is made by ``option.measure(name, value)``, which returns a :class:`rig.measurement.Measurement` whose
verdict is computed from the limit.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from rig.measurement import Measurement

S = "IEC 62056-21 §4"
S5 = "IEC 62056-21 §5"
A = "assumed"


@dataclass(frozen=True)
class Limit:
    """Inclusive limits of one quantity; ``None`` = no limit on that side."""

    low: float | None
    high: float | None
    unit: str
    basis: str
    note: str = ""

    def measure(self, name: str, value) -> Measurement:
        """`value` as measurement `name`, judged against this limit."""
        return Measurement(name, value, self.unit, self.low, self.high, self.basis)


@dataclass(frozen=True)
class InterfaceOption:
    """One interface option: units, polarity, idle state, thresholds, absolute maximums, limits."""

    name: str
    number: int
    quantity: str
    unit: str
    mark_is_high: bool          # True: the mark (1, idle) level is the numerically higher one
    mark_meaning: str
    space_meaning: str
    nominal_mark: float         # typical levels, used by the synthesiser
    nominal_space: float
    tx_mark: Limit              # transmitter levels
    tx_space: Limit
    rx_mark: Limit              # receiver: level surely read as mark / as space
    rx_space: Limit
    absolute_max: dict[str, Limit]
    limits: dict[str, Limit] = field(default_factory=dict)  # measurement name -> limit
    max_baud: int = 19200
    idle: str = "mark"

    @property
    def swing(self) -> float:
        """|nominal mark - nominal space|, in the option's unit."""
        return abs(self.nominal_mark - self.nominal_space)

    def receiver_thresholds(self) -> tuple[float, float]:
        """(low, high) comparator thresholds of a receiver meeting the option: between the
        'surely space' and 'surely mark' levels."""
        lo, hi = ((self.rx_space.high, self.rx_mark.low) if self.mark_is_high
                  else (self.rx_mark.high, self.rx_space.low))
        assert lo is not None and hi is not None, f"{self.name}: a receiver limit without its threshold side"
        return (lo, hi)

    def measure(self, name: str, value) -> Measurement:
        """A measurement of ``name`` against this option's limit for it (``info`` if it has none)."""
        lim = self.limits.get(name)
        if lim is None:
            return Measurement(name, value, _UNITS.get(name, ""), None, None, "")
        return lim.measure(name, value)

    def measurement_names(self) -> list[str]:
        """The measurements this option has limits for."""
        return list(self.limits)


def _timing_limits() -> dict[str, Limit]:
    """Timing limits common to the options: none of them is stated by IEC 62056-21; all assumed."""
    return {
        "rise_time": Limit(None, 0.10, "UI", A, "10-90 % transition, at most a tenth of a bit"),
        "fall_time": Limit(None, 0.10, "UI", A, "90-10 % transition, at most a tenth of a bit"),
        "baud_error": Limit(-2.0, 2.0, "%", A, "measured vs nominal speed"),
        "bit_width_min": Limit(0.85, None, "UI", A, "shortest bit seen, in nominal bit times"),
        "bit_width_max": Limit(None, 1.15, "UI", A, "longest single bit seen (per-bit width)"),
        "jitter_rms": Limit(None, 0.05, "UI", A, "edge deviation from the fitted bit grid, rms"),
        "jitter_peak": Limit(None, 0.15, "UI", A, "largest edge deviation from the fitted grid"),
        "glitches": Limit(None, 0, "count", A, "pulses shorter than the glitch width"),
        "break_length": Limit(10.0, None, "UI", A, "a break holds space for at least one frame"),
        "parity_errors": Limit(None, 0, "count", S5, "7E1 character format"),
        "framing_errors": Limit(None, 0, "count", S5, "stop bit must be mark"),
    }


_UNITS = {"baud": "Bd", "bit_width": "ns", "characters": "count", "jitter_pp": "UI",
          "rise_time_max": "UI", "fall_time_max": "UI"}


def _with_levels(mark: Limit, space: Limit, extra: dict[str, Limit]) -> dict[str, Limit]:
    d = {"mark_level": mark, "space_level": space}
    d.update(extra)
    d.update(_timing_limits())
    return d


OPTICAL = InterfaceOption(
    name="optical", number=1, quantity="irradiance at 10 ± 1 mm, 800-1000 nm", unit="µW/cm²",
    mark_is_high=False, mark_meaning="light OFF", space_meaning="light ON",
    nominal_mark=0.0, nominal_space=1500.0,
    tx_mark=Limit(None, 10.0, "µW/cm²", S, "transmitter OFF"),
    tx_space=Limit(500.0, 5000.0, "µW/cm²", S, "transmitter ON"),
    rx_mark=Limit(None, 20.0, "µW/cm²", S, "receiver surely OFF"),
    rx_space=Limit(200.0, None, "µW/cm²", S, "receiver surely ON"),
    absolute_max={
        "irradiance": Limit(None, 5000.0, "µW/cm²", A,
                            "no absolute maximum stated; the transmitter ON maximum is used"),
        "ambient_light": Limit(None, 16000.0, "lx", S, "receiver immune up to this ambient light"),
    },
    limits=_with_levels(Limit(None, 10.0, "µW/cm²", S, "transmitter OFF"),
                        Limit(500.0, 5000.0, "µW/cm²", S, "transmitter ON"),
                        {"peak_level": Limit(None, 5000.0, "µW/cm²", A, "absolute maximum (assumed)")}),
)

CURRENT_LOOP = InterfaceOption(
    name="current-loop", number=2, quantity="loop current", unit="mA",
    mark_is_high=True, mark_meaning="current flowing", space_meaning="no current",
    nominal_mark=20.0, nominal_space=1.0,
    tx_mark=Limit(11.0, 30.0, "mA", S, "sender mark ≥ 11 mA with ≤ 2 V drop; loop current ≤ 30 mA"),
    tx_space=Limit(None, 2.5, "mA", S, "sender space ≤ 2.5 mA"),
    rx_mark=Limit(9.0, None, "mA", S, "receiver mark ≥ 9 mA with ≤ 3 V drop"),
    rx_space=Limit(None, 3.0, "mA", S, "receiver space ≤ 3 mA"),
    absolute_max={
        "loop_current": Limit(None, 30.0, "mA", S, "loop current"),
        "open_circuit_voltage": Limit(None, 30.0, "V", S, "d.c., open circuit"),
        "sender_drop": Limit(None, 2.0, "V", S, "voltage drop across the sender at mark"),
        "receiver_drop": Limit(None, 3.0, "V", S, "voltage drop across the receiver at mark"),
    },
    limits=_with_levels(Limit(11.0, 30.0, "mA", S), Limit(None, 2.5, "mA", S),
                        {"peak_level": Limit(None, 30.0, "mA", S, "loop current ≤ 30 mA")}),
)

VOLTAGE = InterfaceOption(
    name="voltage", number=3, quantity="line voltage (ITU-T V.28, circuits 102/103/104)", unit="V",
    mark_is_high=False, mark_meaning="negative voltage", space_meaning="positive voltage",
    nominal_mark=-12.0, nominal_space=12.0,
    tx_mark=Limit(-15.0, -3.0, "V", S, "V.28 mark"),
    tx_space=Limit(3.0, 15.0, "V", S, "V.28 space"),
    rx_mark=Limit(None, -3.0, "V", S, "V.28 mark"),
    rx_space=Limit(3.0, None, "V", S, "V.28 space"),
    absolute_max={
        "voltage": Limit(-25.0, 25.0, "V", A, "V.28 receiver withstand; not in IEC 62056-21"),
    },
    limits=_with_levels(Limit(-15.0, -3.0, "V", S), Limit(3.0, 15.0, "V", S),
                        {"peak_level": Limit(-25.0, 25.0, "V", A, "absolute maximum (assumed)")}),
    max_baud=20000,
)

OPTIONS: dict[str, InterfaceOption] = {o.name: o for o in (OPTICAL, CURRENT_LOOP, VOLTAGE)}


def get_option(name: str | int | InterfaceOption) -> InterfaceOption:
    """The option by name ("optical", "current-loop", "voltage"), number (1, 2, 3) or itself."""
    if isinstance(name, InterfaceOption):
        return name
    if isinstance(name, int) or (isinstance(name, str) and name.isdigit()):
        for o in OPTIONS.values():
            if o.number == int(name):
                return o
    key = str(name).lower().replace("_", "-").replace(" ", "-")
    if key in ("current", "loop", "20ma", "20-ma"):
        key = "current-loop"
    if key in ("v28", "v.28", "v.24"):
        key = "voltage"
    try:
        return OPTIONS[key]
    except KeyError:
        raise ValueError(f"unknown interface option {name!r}; expected one of {sorted(OPTIONS)}") from None
