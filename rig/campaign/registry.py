"""The case registry: `@case`, `@params`, `@needs`, `@summary`, LIBRARY, and what a case's step works
with (StepContext). The cases themselves, each named after the clause it checks, are in
rig.campaign.cases, which fills LIBRARY on import.

A case is a function run once per step with a StepContext (the bench, the step's parameters, and
where its measurements, exchanges and captures go), plus an optional summary computed from all its
recorded steps (so a resumed run summarises exactly as an uninterrupted one). Verdicts come only
from measurements with limits (rig.measurement).

    @case("meter/6.6/undefined", clause="IEC 62055-52 §6.6 undefined-command processing",
          roles=("meter-dut",), params={"letters": ["X1", "E2"]})
    def undefined(ctx): ...
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from rig.campaign.store import Capture, StepRecord
from rig.config_check import Checker
from rig.measurement import Measurement

LIBRARY: dict[str, "Case"] = {}
STAND_IN = "stand_in"       # the step note naming what stood in for a measurement (StepContext.stand_in)


@dataclass
class Case:
    """One case of the library: its name, the clause it checks, its parameters with their defaults,
    the step function, and what it needs of a bench (filled by @case, @params, @needs, @summary)."""

    id: str
    clause: str
    title: str
    roles: tuple[str, ...]
    params: dict[str, Any]
    run: Callable
    summary: Callable | None = None
    choices: dict[str, tuple] = field(default_factory=dict)
    # name -> (what it sets, unit): the parameters' description, for `rig cases` and the plan docs
    param_doc: dict[str, tuple[str, str]] = field(default_factory=dict)
    # what the case needs of its bench, beyond its role: (what, test(bench spec, step params) -> why
    # not, or None); checked when a plan is loaded, so a plan is refused before anything runs
    needs: list[tuple[str, Callable]] = field(default_factory=list)
    # name -> what its values name, checked against the plan's profile when the plan is loaded:
    # "register" (a register of the profile's table; a list: each of them)
    param_kinds: dict[str, str] = field(default_factory=dict)

    def param_type(self, name: str) -> str:
        """The TOML type a plan gives parameter `name` in, from its default ("integer", "list", ...)."""
        d = self.params[name]
        kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
                dict: "table"}.get(type(d), type(d).__name__)
        return kind

    def cannot_run(self, bench, params: dict) -> str | None:
        """Why this case cannot run on `bench` (a rig.campaign.spec.BenchSpec) with `params`, or None."""
        if bench.role not in self.roles:
            return f"it is for a bench with role {' or '.join(self.roles)}, bench {bench.name!r} is {bench.role}"
        for _what, test in self.needs:
            why = test(bench, params)
            if why:
                return why
        return None

    def describe(self) -> dict:
        """The case as `rig cases --json` prints it."""
        return {
            "name": self.id, "clause": self.clause, "checks": self.title, "roles": list(self.roles),
            "benches": _benches_text(self),
            "needs": [w for w, _ in self.needs],
            "params": [{"name": n, "type": self.param_type(n), "default": d,
                        "unit": self.param_doc.get(n, ("", ""))[1],
                        "choices": list(self.choices[n]) if n in self.choices else None,
                        "description": self.param_doc.get(n, ("", ""))[0],
                        "names": self.param_kinds.get(n)}
                       for n, d in self.params.items()],
            "summary_step": self.summary is not None,
        }

    def check_param(self, name: str, value, checker: Checker, path: tuple):
        """`value` for the parameter `name`, checked as a plan gives it (one of its choices, else of
        the kind of its default); `checker` raises at `path` in the plan."""
        if name in self.choices and value not in self.choices[name]:
            raise checker.fail(path, f"one of {', '.join(map(repr, self.choices[name]))}", value)
        return checker.like(value, path, self.params[name])


def case(id: str, *, clause: str, title: str, roles=("meter-dut",), params=None, choices=None):
    """Register the decorated function as case `id` in LIBRARY: run once per step with a StepContext,
    on benches of `roles`; `params` the parameters with their defaults (which give their types),
    `choices` the values a parameter may take."""
    def deco(fn):
        LIBRARY[id] = Case(id, clause, title, tuple(roles), dict(params or {}), fn, None, dict(choices or {}))
        return fn
    return deco


def params(**doc):
    """Describe a case's parameters: `@params(reads=("reads per step", ""), margin_ms=("...", "ms"),
    register=("the register read", "", "register"))` above its `@case`: (meaning, unit[, kind])."""
    def deco(fn):
        c = next(c for c in LIBRARY.values() if c.run is fn)
        unknown = set(doc) - set(c.params)
        assert not unknown, f"{c.id}: described parameters it does not take: {unknown}"
        for k, v in doc.items():
            v = (v, "") if isinstance(v, str) else tuple(v)
            c.param_doc[k] = v[:2]
            if len(v) > 2:
                c.param_kinds[k] = v[2]
        return fn
    return deco


def needs(what: str, test: Callable):
    """What a case needs of its bench beyond its role, with the test that tells (above its `@case`):
    test(bench spec, step params) -> why it cannot run there, or None."""
    def deco(fn):
        c = next(c for c in LIBRARY.values() if c.run is fn)
        c.needs.append((what, test))
        return fn
    return deco


# the common needs
def virtual_line(why: str) -> Callable:
    """Only on an embedded bench: the case needs the virtual line (faults, the wire record) or the
    emulator (issued tokens, power cycle, the token account)."""
    def test(bench, params):
        if bench.kind != "embedded":
            return f"{why}: needs the embedded bench's virtual line (bench {bench.name!r} is kind = {bench.kind!r})"
        return None
    return test


def virtual_line_unless(param: str, why: str) -> Callable:
    """As virtual_line, unless the plan gives `param` (e.g. a token the real meter accepts)."""
    base = virtual_line(why)

    def test(bench, params):
        if params.get(param):
            return None
        why_not = base(bench, params)
        return None if why_not is None else f"{why_not}; or give the case's `{param}` parameter"
    return test


def _benches_text(c: Case) -> str:
    if not c.needs:
        return "embedded and port"
    return "; ".join(w for w, _ in c.needs)


def summary(id: str):
    """Register the decorated function as case `id`'s summary step: called with the StepContext and the
    case's recorded steps (RecordedStep, from the store, so a resumed run summarises the same)."""
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
        """Record a measurement of the step; with `low`/`high` its verdict is judged against them
        (`basis`: where the limits come from)."""
        m = Measurement(name, value, unit, low, high, basis)
        self.record.measurements.append(m)
        return m

    def check(self, name: str, ok: bool, basis: str = "") -> Measurement:
        """A yes/no requirement as a measurement: 1 passes, 0 fails."""
        return self.measure(name, 1 if ok else 0, "bool", 1, 1, basis)

    def info(self, name, value, unit="") -> Measurement:
        """Record a value without limits: shown and stored, no verdict."""
        return self.measure(name, value, unit)

    def exchanges(self, exs, measure: bool = False) -> None:
        """Keep exchanges with the step; measure=True also judges their tr and ta measurements."""
        for e in exs:
            if any(e is x for x in self.record.exchanges):
                continue
            self.record.exchanges.append(e)
            if measure:
                for m in e.measurements:
                    self.measure(f"{e.name}: {m.name}", m.value, m.unit, m.low, m.high, m.basis)

    def capture(self, name: str, samples, sample_rate: float, option: str = "") -> None:
        """Keep a waveform with the step (stored compressed, plotted in the report); `option`: the
        interface option it was taken on."""
        self.record.captures.append(Capture(name, samples, sample_rate, option))

    def note(self, **kw) -> None:
        """Store facts about the step with it (JSON values, by name)."""
        self.record.notes.update(kw)

    def stand_in(self, what: str) -> None:
        """Say that this step measured a stand-in, not the DUT's own signal or the instrument the
        case names (e.g. a capture synthesised from the virtual line's wire record): the report
        marks the step and its case."""
        self.record.notes[STAND_IN] = what


@dataclass
class RecordedStep:
    """A step as the store has it, for summaries and stop conditions."""
    key: str
    params: dict
    verdict: str
    measurements: list[Measurement]

    def value(self, name: str):
        """The value of measurement `name` in this step, or None."""
        return next((m.value for m in self.measurements if m.name == name), None)
