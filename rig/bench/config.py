"""Bench configuration (TOML): the interface option, the DUT's electrical limits, the instruments by role.

::

    [bench]
    option = "current-loop"          # optical | current-loop | voltage (or 1, 2, 3)

    [dut]                            # optional: restate the DUT's maximums (defaults: FACTS.md §6)
    voltage_max = 30.0               # V
    voltage_min = -30.0              # V
    current_max = 0.030              # A

    [instruments.supply]             # roles: scope, generator, supply, meter (each optional)
    model = "rigol-dp832"            # an instruments/*.yaml stem (or a path to a model file)
    resource = "TCPIP::192.168.1.20::INSTR"
    channel = 1                      # optional: the channel wired to the DUT
    backend = "@py"                  # optional: pyvisa backend override
    timeout = 2.0                    # optional: seconds per answer
    loop_voltage = 24.0              # supply only: V it powers the current loop with, as an HHU does
    loop_current_limit = 0.030       # supply only: A, its current limit on the loop

    [instruments.scope]
    probe_gain = 0.1                 # scope only: V at the scope per unit of the option (0.1 V/mA:
                                     #   a 100 Ω shunt in the loop)

The wiring keys (``probe_gain``, ``loop_*``) are the user's: nothing defaults them on a real bench
(a case that needs one and finds none says which file and key); the virtual bench states its own.

``load_bench(None)`` is the virtual bench: every role with the shipped models and no resource yet;
the virtual bench fills the resource strings at run time with :meth:`BenchConfig.with_resources`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from rig.bench.drivers import DRIVERS
from rig.bench.models import CAPABILITIES, InstrumentModel, ModelError, load_model
from rig.bench.safety import DutLimits, LimitError
from rig.config_check import Checker, Choice, FileError, Num, Text, read_toml
from rig.physical.options import get_option

ROLES = CAPABILITIES    # a role is the capability the instrument plays on the bench

#: The virtual bench: one shipped model per role.
VIRTUAL_MODELS = {"scope": "rigol-ds1000z", "generator": "keysight-33500b", "supply": "rigol-dp832",
                  "meter": "keysight-34461a"}


class ConfigError(FileError):
    """A bench configuration that cannot be used: `file:line: key: what is wrong (expected ...)`
    (rig.config_check)."""


#: Keys of an instrument's table beyond the common ones, by role: how it is wired to the line
#: (name -> (what it is, unit)).
WIRING = {
    "scope": {"probe_gain": ("volts at the scope per unit of the interface option", "V/unit")},
    "supply": {"loop_voltage": ("the voltage the supply powers the current loop with", "V"),
               "loop_current_limit": ("the supply's current limit on the current loop", "A")},
}


@dataclass(frozen=True)
class InstrumentConfig:
    """One instrument of a bench: its role, model, VISA resource and how it is wired (``WIRING``)."""

    role: str
    model: InstrumentModel
    resource: str | None = None
    channel: int | None = None
    backend: str | None = None
    timeout: float = 2.0
    probe_gain: float | None = None           # scope: V per unit of the option
    loop_voltage: float | None = None         # supply: V powering the current loop
    loop_current_limit: float | None = None   # supply: A


@dataclass(frozen=True)
class BenchConfig:
    """A bench: the interface option, the DUT's limits and the instruments by role (``path``: the
    bench file it was read from; None for the virtual bench's own)."""

    option: str
    limits: DutLimits
    instruments: dict[str, InstrumentConfig] = field(default_factory=dict)
    path: Path | None = None

    @property
    def virtual(self) -> bool:
        """Whether this is the virtual bench's own configuration (read from no file)."""
        return self.path is None

    def with_resources(self, resources: dict[str, str], backend: str | None = None) -> BenchConfig:
        """A copy with the VISA resource string of each role in ``resources`` (and, if given, the
        backend), e.g. ``{"scope": "TCPIP::127.0.0.1::5025::SOCKET"}``."""
        unknown = set(resources) - set(self.instruments)
        if unknown:
            raise ConfigError(self.path or "<virtual bench>", "instruments",
                              f"no instrument for role(s) {sorted(unknown)}; roles are {sorted(self.instruments)}")
        inst = dict(self.instruments)
        for role, res in resources.items():
            inst[role] = replace(inst[role], resource=res, backend=backend or inst[role].backend)
        return replace(self, instruments=inst)

    def wiring(self, role: str, key: str) -> float:
        """A wiring value (``WIRING``) of the instrument of ``role``; ConfigError naming the file and
        key when the bench file does not give it."""
        ic = self.instruments.get(role)
        if ic is None:
            raise ConfigError(self.path or "<virtual bench>", f"instruments.{role}",
                              f"no instrument for this role; roles are {sorted(self.instruments)}")
        v = getattr(ic, key)
        if v is None:
            what, unit = WIRING[role][key]
            raise ConfigError(self.path or "<virtual bench>", f"instruments.{role}.{key}",
                              f"missing: {what} ({unit}), your bench's own figure; nothing defaults it")
        return v

    def open(self, role: str, **kw):
        """The driver for ``role``, opened with the bench's DUT limits."""
        try:
            ic = self.instruments[role]
        except KeyError:
            raise ConfigError(self.path or "<virtual bench>", f"instruments.{role}",
                              f"no instrument for this role; roles are {sorted(self.instruments)}") from None
        if ic.resource is None and not kw.get("sim"):
            raise ConfigError(self.path or "<virtual bench>", f"instruments.{role}.resource",
                              "no VISA resource yet (the virtual bench fills it with with_resources())")
        kw.setdefault("limits", self.limits)
        kw.setdefault("timeout", ic.timeout)
        if ic.backend:
            kw.setdefault("backend", ic.backend)
        return DRIVERS[ic.model.capability](ic.resource, ic.model, role=role, **kw)


def parse_bench(data: dict, path: Path | str, *, text: str | None = None) -> BenchConfig:
    """A bench configuration from parsed TOML `data` of `path` (its `text`, if given, puts the line
    in errors); raises ConfigError naming the file, line and key."""
    c = Checker(path, text, error=ConfigError)
    c.keys(data, (), ("bench", "dut", "instruments"))
    bench = data.get("bench", {})
    c.keys(bench, ("bench",), ("option", "name"))
    option = bench.get("option", "current-loop")
    try:
        opt = get_option(option)
    except ValueError:
        raise c.fail(("bench", "option"), "optical, current-loop or voltage (or 1, 2, 3)", option) from None
    dut = data.get("dut", {})
    c.keys(dut, ("dut",), ("voltage_max", "voltage_min", "current_max"))
    overrides = {k: c.check(v, ("dut", k), Num()) for k, v in dut.items()}
    try:
        limits = DutLimits.for_option(opt, **overrides)
    except LimitError as e:
        raise c.refuse(("dut", e.key), e.reason) from None
    insts = data.get("instruments", {})
    if not isinstance(insts, dict):
        raise c.fail(("instruments",), "a table of roles", insts)
    out = {}
    for role, t in insts.items():
        where = ("instruments", role)
        if role not in ROLES:
            raise c.refuse(where, "unknown role", f"one of {list(ROLES)}")
        wiring = WIRING.get(role, {})
        c.keys(t, where, ("model", "resource", "channel", "backend", "timeout", *wiring), ("model",))
        name = c.check(t["model"], where + ("model",), Text(what="an instruments/*.yaml stem or a model file"))
        try:
            model = load_model(name)
        except ModelError as e:
            raise c.refuse(where + ("model",), str(e)) from None
        if model.capability != role:
            raise c.refuse(where + ("model",), f"{name} is a {model.capability}, not a {role}", f"a {role} model")
        resource = t.get("resource")
        if resource is not None:
            c.check(resource, where + ("resource",), Text(what="a VISA resource"))
        channel = t.get("channel")
        if channel is not None:
            c.check(channel, where + ("channel",), Choice(tuple(model.channels), model.model))
        backend = t.get("backend")
        if backend is not None:
            c.check(backend, where + ("backend",), Text(what="a pyvisa backend such as '@py'"))
        timeout = c.check(t.get("timeout", 2.0), where + ("timeout",), Num(positive=True, what="seconds"))
        if not math.isfinite(timeout):          # NaN passes "> 0" unseen
            raise c.fail(where + ("timeout",), "seconds > 0, finite", timeout)
        wired = {}
        for k, (_, unit) in wiring.items():
            if k in t:
                v = c.check(t[k], where + (k,), Num(positive=True, what=f"a number ({unit})"))
                if not math.isfinite(v):
                    raise c.fail(where + (k,), f"a number ({unit}) > 0, finite", v)
                wired[k] = float(v)
        out[role] = InstrumentConfig(role, model, resource, channel, backend, float(timeout), **wired)
    return BenchConfig(opt.name, limits, out, Path(path) if not str(path).startswith("<") else None)


def load_bench(path: Path | str | None = None) -> BenchConfig:
    """A bench from a TOML file; None: the virtual bench (shipped models, resources to be filled in).
    Raises ConfigError (or the ModelError of a model file it names) with the file, line and key."""
    if path is None:
        return BenchConfig("current-loop", DutLimits.for_option("current-loop"),
                           {r: InstrumentConfig(r, load_model(m)) for r, m in VIRTUAL_MODELS.items()})
    p = Path(path)
    data, text = read_toml(p, ConfigError)
    return parse_bench(data, p, text=text)
