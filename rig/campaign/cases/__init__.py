"""The case library, each case named after the clause it checks.

A case is a function run once per step with a StepContext (the bench, the step's parameters, and
where its measurements, exchanges and captures go), plus an optional summary computed from all its
recorded steps (so a resumed run summarises exactly as an uninterrupted one). Verdicts come only
from measurements with limits (rig.measurement).

    @case("meter/6.6/undefined", clause="IEC 62055-52 §6.6 undefined-command processing",
          roles=("meter-dut",), params={"letters": ["X1", "E2"]})
    def undefined(ctx): ...
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from rig.campaign.store import Capture, StepRecord
from rig.measurement import Measurement

LIBRARY: dict[str, "Case"] = {}
STAND_IN = "stand_in"       # the step note naming what stood in for a measurement (StepContext.stand_in)


@dataclass
class Case:
    id: str
    clause: str
    title: str
    roles: tuple[str, ...]
    params: dict[str, Any]
    run: Callable
    summary: Callable | None = None
    choices: dict[str, tuple] = field(default_factory=dict)

    def check_param(self, name: str, value, fail):
        default = self.params[name]
        if name in self.choices and value not in self.choices[name]:
            raise fail(f"one of {', '.join(map(repr, self.choices[name]))}")
        if isinstance(default, bool):
            if type(value) is not bool:
                raise fail("true or false")
        elif isinstance(default, int) and not isinstance(default, bool):
            if type(value) is not int:
                raise fail("an integer")
        elif isinstance(default, float):
            if type(value) not in (int, float):
                raise fail("a number")
            value = float(value)
        elif isinstance(default, str):
            if not isinstance(value, str):
                raise fail("a string")
        elif isinstance(default, list):
            if not isinstance(value, list):
                raise fail("a list")
        elif isinstance(default, dict):
            if not isinstance(value, dict):
                raise fail("a table")
        return value


def case(id: str, *, clause: str, title: str, roles=("meter-dut",), params=None, choices=None):
    def deco(fn):
        LIBRARY[id] = Case(id, clause, title, tuple(roles), dict(params or {}), fn, None, dict(choices or {}))
        return fn
    return deco


def summary(id: str):
    def deco(fn):
        LIBRARY[id].summary = fn
        return fn
    return deco


class StepContext:
    """What a case's step works with, and where its results go."""

    def __init__(self, bench, params: dict, record: StepRecord, case_key: str):
        self.bench = bench
        self.profile = bench.profile
        self.params = params
        self.record = record
        self.case_key = case_key

    def measure(self, name, value, unit="", low=None, high=None, basis="") -> Measurement:
        m = Measurement(name, value, unit, low, high, basis)
        self.record.measurements.append(m)
        return m

    def check(self, name: str, ok: bool, basis: str = "") -> Measurement:
        """A yes/no requirement as a measurement: 1 passes, 0 fails."""
        return self.measure(name, 1 if ok else 0, "bool", 1, 1, basis)

    def info(self, name, value, unit="") -> Measurement:
        return self.measure(name, value, unit)

    def exchanges(self, exs, measure: bool = False) -> None:
        """Keep exchanges with the step; measure=True also judges their tr and ta measurements."""
        for e in exs:
            if any(e is x for x in self.record.exchanges):
                continue
            self.record.exchanges.append(e)
            if measure:
                for m in e.measurements:
                    self.measure(f"{e.name}: {m.name}", m.value, m.unit, m.low, m.high, exchange_basis(self.profile, m))

    def capture(self, name: str, samples, sample_rate: float, option: str = "") -> None:
        self.record.captures.append(Capture(name, samples, sample_rate, option))

    def note(self, **kw) -> None:
        self.record.notes.update(kw)

    def stand_in(self, what: str) -> None:
        """Say that this step measured a stand-in, not the DUT's own signal or the instrument the
        case names (e.g. a capture synthesised from the virtual line's wire record): the report
        marks the step and its case."""
        self.record.notes[STAND_IN] = what


#: the basis rig.client once wrote for the tr and ta limits it takes from the profile, whatever the
#: profile's own source for them
_CLIENT_TIMING_BASIS = "IEC 62056-21 §5 (profile)"


def exchange_basis(profile, m: Measurement) -> str:
    """The basis of an exchange's tr or ta measurement as the profile has it: the profile's own
    source for the limits (IEC 62056-21 §6.4 in the default), or the user profile or plan that
    overrode them (Profile.basis)."""
    if m.basis != _CLIENT_TIMING_BASIS:
        return m.basis
    if m.name == "tr":
        t = profile.timing
        fast = m.low is not None and round(m.low * 1e6) == t.tr_min_fast_ns != t.tr_min_ns
        return profile.basis("timing.tr_min_fast" if fast else "timing.tr_min", "timing.tr_max")
    if m.name == "ta max":
        return profile.basis("timing.ta")
    return m.basis


@dataclass
class RecordedStep:
    """A step as the store has it, for summaries and stop conditions."""
    key: str
    params: dict
    verdict: str
    measurements: list[Measurement]

    def value(self, name: str):
        return next((m.value for m in self.measurements if m.name == name), None)


def now_s() -> float:
    return time.time()


# the library's modules register their cases on import
from rig.campaign.cases import conformance, electrical, stress, faults, benchmark, hhu  # noqa: E402,F401
