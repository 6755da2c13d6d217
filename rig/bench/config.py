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

``load_bench(None)`` is the virtual bench: every role with the shipped models and no resource yet;
the virtual bench fills the resource strings at run time with :meth:`BenchConfig.with_resources`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from rig.bench.models import CAPABILITIES, InstrumentModel, ModelError, load_model
from rig.bench.safety import DutLimits, LimitError
from rig.config_check import Checker, FileError, read_toml
from rig.physical.options import get_option

ROLES = CAPABILITIES    # a role is the capability the instrument plays on the bench

#: The virtual bench: one shipped model per role.
VIRTUAL_MODELS = {"scope": "rigol-ds1000z", "generator": "keysight-33500b", "supply": "rigol-dp832",
                  "meter": "keysight-34461a"}


class ConfigError(FileError):
    """A bench configuration that cannot be used: `file:line: key: what is wrong (expected ...)`
    (rig.config_check)."""


@dataclass(frozen=True)
class InstrumentConfig:
    role: str
    model: InstrumentModel
    resource: str | None = None
    channel: int | None = None
    backend: str | None = None
    timeout: float = 2.0


@dataclass(frozen=True)
class BenchConfig:
    option: str
    limits: DutLimits
    instruments: dict[str, InstrumentConfig] = field(default_factory=dict)
    path: Path | None = None

    @property
    def virtual(self) -> bool:
        return self.path is None

    def with_resources(self, resources: dict[str, str], backend: str | None = None) -> "BenchConfig":
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

    def open(self, role: str, **kw):
        """The driver for ``role``, opened with the bench's DUT limits."""
        from rig.bench.drivers import DRIVERS

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


def _expect(c: Checker, key: tuple, value, types, what):
    types = types if isinstance(types, tuple) else (types,)
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise c.fail(key, what, value)
    return value


def parse_bench(data: dict, path: Path | str, *, text: str | None = None) -> BenchConfig:
    """A bench configuration from parsed TOML `data` of `path` (its `text`, if given, puts the line
    in errors); raises ConfigError naming the file, line and key."""
    c = Checker(path, text, error=ConfigError)
    top = set(data) - {"bench", "dut", "instruments"}
    if top:
        raise c.unknown((sorted(top)[0],), ("[bench]", "[dut]", "[instruments.<role>]"))
    bench = _expect(c, ("bench",), data.get("bench", {}), dict, "a table")
    unknown = set(bench) - {"option", "name"}
    if unknown:
        raise c.unknown(("bench", sorted(unknown)[0]), ("option", "name"))
    option = bench.get("option", "current-loop")
    try:
        opt = get_option(option)
    except ValueError:
        raise c.fail(("bench", "option"), "optical, current-loop or voltage (or 1, 2, 3)", option) from None
    dut = _expect(c, ("dut",), data.get("dut", {}), dict, "a table")
    overrides = {}
    for k, v in dut.items():
        if k not in ("voltage_max", "voltage_min", "current_max"):
            raise c.unknown(("dut", k), ("voltage_max", "voltage_min (V)", "current_max (A)"))
        overrides[k] = _expect(c, ("dut", k), v, (int, float), "a number")
    try:
        limits = DutLimits.for_option(opt, **overrides)
    except LimitError as e:
        raise c.refuse(("dut", e.key), e.reason) from None
    insts = _expect(c, ("instruments",), data.get("instruments", {}), dict, "a table of roles")
    out = {}
    for role, t in insts.items():
        where = ("instruments", role)
        if role not in ROLES:
            raise c.refuse(where, "unknown role", f"one of {list(ROLES)}")
        _expect(c, where, t, dict, "a table")
        unknown = set(t) - {"model", "resource", "channel", "backend", "timeout"}
        if unknown:
            raise c.unknown(where + (sorted(unknown)[0],), ("model", "resource", "channel", "backend", "timeout"))
        if "model" not in t:
            raise c.fail(where + ("model",), "an instrument model name (instruments/*.yaml stem)")
        name = _expect(c, where + ("model",), t["model"], str, "a model name")
        try:
            model = load_model(name)
        except ModelError as e:
            raise c.refuse(where + ("model",), str(e)) from None
        if model.capability != role:
            raise c.refuse(where + ("model",), f"{name} is a {model.capability}, not a {role}", f"a {role} model")
        resource = t.get("resource")
        if resource is not None:
            _expect(c, where + ("resource",), resource, str, "a VISA resource string")
        channel = t.get("channel")
        if channel is not None:
            _expect(c, where + ("channel",), channel, int, "a channel number")
            if channel not in model.channels:
                raise c.fail(where + ("channel",), f"one of {model.channels} ({model.model})", channel)
        backend = t.get("backend")
        if backend is not None:
            _expect(c, where + ("backend",), backend, str, "a pyvisa backend such as '@py'")
        timeout = _expect(c, where + ("timeout",), t.get("timeout", 2.0), (int, float), "seconds")
        if not timeout > 0 or timeout == float("inf"):
            raise c.fail(where + ("timeout",), "seconds > 0", timeout)
        out[role] = InstrumentConfig(role, model, resource, channel, backend, float(timeout))
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
