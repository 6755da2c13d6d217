"""Safety: the DUT's electrical maximums, enforced before a command is sent, and outputs off on every exit.

:class:`DutLimits` holds the maximums the bench may apply to the DUT's interface: the voltage range
and the current.  Defaults come from the interface option (FACTS.md §6, IEC 62056-21 §4; each limit
says its basis, ``assumed`` where the standard states nothing); a bench configuration may restate
them.  A driver asks :meth:`DutLimits.check_voltage` / :meth:`check_current` / :meth:`check_span`
before it writes a setting, so a refused setting never reaches the instrument.

:data:`OUTPUTS` is the registry of open instruments with outputs (generators, supplies).  It switches
every output off at interpreter exit (atexit), on SIGINT (before the ``KeyboardInterrupt`` is raised,
so a Ctrl-C anywhere leaves the bench off) and on SIGTERM; the drivers also switch off on close and
context-manager exit (``finally``).
"""
from __future__ import annotations

import atexit
import math
import signal
import threading
from dataclasses import dataclass, field, replace

from rig.errors import RigError
from rig.physical.options import CURRENT_LOOP, VOLTAGE, get_option

S = "IEC 62056-21 §4"
A = "assumed"


class SafetyError(RigError, ValueError):
    """A setting refused because it would exceed a DUT limit; nothing was sent."""


class LimitError(RigError, ValueError):
    """A DUT limit that cannot be used (not finite, not positive, beyond the option's allowance):
    ``key`` names the limit (``current_max``), ``reason`` says why."""

    def __init__(self, key: str, reason: str):
        self.key, self.reason = key, reason
        super().__init__(f"{key}: {reason}")


@dataclass(frozen=True)
class DutLimits:
    """What the bench may apply to the DUT's interface (volts, amperes), with where each comes from."""

    option: str                      # interface option: "optical", "current-loop", "voltage"
    label: str                       # how messages name the interface, e.g. "current loop"
    voltage_max: float
    voltage_min: float
    current_max: float
    voltage_max_what: str = "voltage"     # what the limit is, e.g. "open-circuit"
    voltage_min_what: str = "voltage"
    current_max_what: str = "current"
    basis: dict[str, str] = field(default_factory=dict)   # field name -> "IEC 62056-21 §4" | "assumed" | "bench configuration"

    def __post_init__(self) -> None:
        for k in ("voltage_max", "voltage_min", "current_max"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise LimitError(k, f"expected a finite number, got {v!r}")
        if self.voltage_max <= 0 or self.current_max <= 0:
            raise LimitError("voltage_max" if self.voltage_max <= 0 else "current_max", "expected a positive number")

    @staticmethod
    def allowance(option) -> dict[str, tuple[float, str]]:
        """What a bench configuration may restate at most for an interface option: limit name ->
        (bound, basis); ``voltage_min`` is a floor, the others ceilings.  The current loop's come
        from IEC 62056-21 §4 (30 V open circuit, 30 mA); the V.28 option's voltage from its assumed
        absolute maximum; where nothing is stated, the option's default limit is the bound."""
        opt = get_option(option)
        d = DutLimits.for_option(opt)
        if opt.name == "current-loop":
            v = CURRENT_LOOP.absolute_max["open_circuit_voltage"]
            i = CURRENT_LOOP.absolute_max["loop_current"]
            return {"voltage_max": (_stated(v.high), v.basis), "voltage_min": (-_stated(v.high), A),
                    "current_max": (_stated(i.high) / 1000.0, i.basis)}
        if opt.name == "voltage":
            v = VOLTAGE.absolute_max["voltage"]
            return {"voltage_max": (_stated(v.high), v.basis), "voltage_min": (_stated(v.low), v.basis),
                    "current_max": (d.current_max, d.basis["current_max"])}
        return {k: (getattr(d, k), d.basis[k]) for k in ("voltage_max", "voltage_min", "current_max")}

    @classmethod
    def for_option(cls, option, **overrides) -> DutLimits:
        """The defaults for an interface option (name, number or InterfaceOption), then ``overrides``
        (field name -> value; each overridden limit's basis becomes "bench configuration")."""
        opt = get_option(option)
        if opt.name == "current-loop":
            v = _stated(CURRENT_LOOP.absolute_max["open_circuit_voltage"].high)
            i = _stated(CURRENT_LOOP.absolute_max["loop_current"].high) / 1000.0
            lim = cls("current-loop", "current loop", v, -v, i, "open-circuit", "reverse open-circuit", "loop current",
                      {"voltage_max": S, "voltage_min": A, "current_max": S})
        elif opt.name == "voltage":
            lim = cls("voltage", "V.28", _stated(VOLTAGE.tx_space.high), _stated(VOLTAGE.tx_mark.low), 0.1,
                      "V.28 space", "V.28 mark", "driver current",
                      {"voltage_max": S, "voltage_min": S, "current_max": A})
        else:
            # The optical head's own supply: IEC 62056-21 states nothing; a 5 V head is assumed.
            lim = cls("optical", "optical head", 5.5, 0.0, 0.15, "head supply", "head supply (no reverse)",
                      "head supply current", {"voltage_max": A, "voltage_min": A, "current_max": A})
        return lim.with_overrides(**overrides) if overrides else lim

    def with_overrides(self, **values) -> DutLimits:
        """A copy with some limits restated (a bench configuration).  Each must be a finite number,
        ``voltage_max`` and ``current_max`` positive, and within :meth:`allowance` for the option
        (a restated limit may only be tighter than what the interface allows): :class:`LimitError`
        naming the limit otherwise."""
        unknown = set(values) - {"voltage_max", "voltage_min", "current_max"}
        if unknown:
            raise LimitError(sorted(unknown)[0], "unknown DUT limit; expected voltage_max, voltage_min, current_max")
        allow = self.allowance(self.option)
        units = {"voltage_max": "V", "voltage_min": "V", "current_max": "A"}
        clean: dict[str, float] = {}
        for k, v in values.items():
            try:
                x = float(v)
            except (TypeError, ValueError):
                raise LimitError(k, f"expected a number ({units[k]}), got {v!r}") from None
            if isinstance(v, bool) or not math.isfinite(x):
                raise LimitError(k, f"expected a finite number ({units[k]}), got {v!r}")
            bound, basis = allow[k]
            if k != "voltage_min" and x <= 0:
                raise LimitError(k, f"expected a positive number ({units[k]}), got {v!r}")
            if k == "voltage_min" and x < bound:
                raise LimitError(k, f"{x:g} V is below what the {self.label} allows, {bound:g} V ({basis})")
            if k != "voltage_min" and x > bound:
                shown = f"{x * 1000:g} mA is above what the {self.label} allows, {bound * 1000:g} mA" \
                    if k == "current_max" else f"{x:g} V is above what the {self.label} allows, {bound:g} V"
                raise LimitError(k, f"{shown} ({basis})")
            clean[k] = x
        bases = dict(self.basis)
        bases.update({k: "bench configuration" for k in clean})
        new = replace(self, basis=bases, voltage_max=clean.get("voltage_max", self.voltage_max),
                      voltage_min=clean.get("voltage_min", self.voltage_min),
                      current_max=clean.get("current_max", self.current_max))
        if new.voltage_min > new.voltage_max:
            raise LimitError("voltage_min", f"{new.voltage_min:g} V is above voltage_max {new.voltage_max:g} V")
        return new

    # -- checks (raise SafetyError; the caller has sent nothing yet)
    def check_voltage(self, who: str, volts: float) -> None:
        """SafetyError naming ``who`` and the limit's basis unless ``volts`` is finite and within
        voltage_min..voltage_max."""
        _finite(who, volts, "V")
        if volts > self.voltage_max:
            raise SafetyError(f"{who}: {_g(volts)} V exceeds the DUT's {_g(self.voltage_max)} V "
                              f"{self.voltage_max_what} limit ({self.label}; {self.basis.get('voltage_max', '')})")
        if volts < self.voltage_min:
            raise SafetyError(f"{who}: {_g(volts)} V is below the DUT's {_g(self.voltage_min)} V "
                              f"{self.voltage_min_what} limit ({self.label}; {self.basis.get('voltage_min', '')})")

    def check_current(self, who: str, amps: float) -> None:
        """SafetyError naming ``who`` and the limit's basis unless ``amps`` is finite and at most
        current_max in magnitude."""
        _finite(who, amps, "A")
        if abs(amps) > self.current_max:
            raise SafetyError(f"{who}: {_g(amps * 1000)} mA exceeds the DUT's {_g(self.current_max * 1000)} mA "
                              f"{self.current_max_what} limit ({self.label}; {self.basis.get('current_max', '')})")

    def check_span(self, who: str, amplitude_vpp: float, offset: float) -> None:
        """A waveform of ``amplitude_vpp`` peak-to-peak around ``offset``: both peaks within limits."""
        _finite(who, amplitude_vpp, "Vpp")
        _finite(who, offset, "V")
        hi, lo = offset + abs(amplitude_vpp) / 2, offset - abs(amplitude_vpp) / 2
        try:
            self.check_voltage(who, hi)
            self.check_voltage(who, lo)
        except SafetyError as e:
            raise SafetyError(f"{e} (amplitude {_g(amplitude_vpp)} Vpp, offset {_g(offset)} V)") from None

    def as_dict(self) -> dict:
        """The limits and their bases, as recorded with a run."""
        return {"option": self.option, "voltage_max": self.voltage_max, "voltage_min": self.voltage_min,
                "current_max": self.current_max, "basis": dict(self.basis)}


def _stated(side: float | None) -> float:
    """A side of an option's limit that rig.physical.options states (a bound the DUT limits use)."""
    assert side is not None, "rig.physical.options: a DUT limit's side is not stated"
    return side


def _g(x: float) -> str:
    return f"{x:g}"


def _finite(who: str, value, unit: str) -> None:
    """NaN and infinity pass every comparison with a limit: refuse them first."""
    try:
        ok = math.isfinite(float(value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise SafetyError(f"{who}: {value!r} {unit} is not a finite number; nothing was sent")


# --------------------------------------------------------------------------- outputs off on every exit
class OutputRegistry:
    """Open instruments with outputs; :meth:`all_off` switches every one off (best effort, never raises).

    An instrument registers with ``register(instr)``; it must have ``emergency_off(flush=False)``
    (switch all outputs off without raising; ``flush`` after a signal) and a ``name``.  :meth:`install` hooks atexit, SIGINT and SIGTERM
    once (signals only from the main thread; elsewhere atexit alone)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._items: dict[int, object] = {}
        self._installed = False
        self._prev: dict[int, object] = {}
        self.log: list[str] = []        # what all_off did, for diagnostics

    def register(self, instr) -> None:
        """Add an instrument with outputs (and install the exit and signal hooks, once)."""
        with self._lock:
            self._items[id(instr)] = instr
        self.install()

    def unregister(self, instr) -> None:
        """Forget an instrument (closed: its outputs are already off)."""
        with self._lock:
            self._items.pop(id(instr), None)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        with self._lock:
            return iter(list(self._items.values()))

    def all_off(self, why: str = "") -> list[str]:
        """Switch every registered output off; returns the failures (instrument: reason)."""
        failures = []
        interrupted = why in ("SIGINT", "SIGTERM")
        for instr in list(self):
            try:
                instr.emergency_off(flush=interrupted)
                self.log.append(f"off ({why}): {getattr(instr, 'name', instr)}")
            except BaseException as e:      # noqa: BLE001 - keep going through every instrument
                failures.append(f"{getattr(instr, 'name', instr)}: {e}")
        return failures

    def install(self) -> None:
        """Hook :meth:`all_off` to atexit, SIGINT and SIGTERM (once; signals from the main thread only),
        chaining to the handlers there were."""
        with self._lock:
            if self._installed:
                return
            self._installed = True
        atexit.register(self.all_off, "exit")
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._prev[sig] = signal.getsignal(sig)
                signal.signal(sig, self._on_signal)
            except (ValueError, OSError):   # not allowed here (embedded interpreter, ...)
                pass

    def _on_signal(self, signum, frame) -> None:
        self.all_off(signal.Signals(signum).name)
        prev = self._prev.get(signum)
        if callable(prev):
            return prev(signum, frame)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        if prev == signal.SIG_IGN:
            return None
        raise SystemExit(128 + signum)


#: The process-wide registry the drivers use.
OUTPUTS = OutputRegistry()
