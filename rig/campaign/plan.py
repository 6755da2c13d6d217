"""Plans: what a campaign runs, in TOML; validated with the file, line, key and what was expected.

    name = "conformance"
    description = "..."

    [profile]                       # optional: a profile file and/or overrides in profile syntax
    file = "my-meter.toml"          #   relative to the plan
    [profile.emulator]
    execution_ms = 200

    [[bench]]                       # one or more; cases on different benches may run in parallel
    name = "embedded"
    kind = "embedded"               # embedded: the meter emulator (or HHU stand-in) on a virtual line
                                    # port: a real line at `port` (any pyserial URL)
    role = "meter-dut"              # meter-dut: the rig plays the client; hhu-dut: the rig plays the server
    interface = "optical"           # optical | current-loop | voltage (default: the bench_config's option)
    # kind = "port" only: the bench's instruments, driven by the electrical cases (rig.bench.drivers)
    bench_config = "lab-bench.toml" # a bench configuration (rig.bench.config; relative to the plan), as
                                    #   `rig bench serve --write-config` writes and pytest --rig-bench reads
    instruments = { scope = "TCPIP::192.168.1.5::INSTR" }     # and/or inline: role = VISA resource (the
                                    #   shipped model for the role), or role = { model, resource, channel, ... }
    probes = { to_meter = 2, to_hhu = 3 }   # scope channel per direction (default 2, 3; "both" 1)
    probe_gain = 0.1                # V at the scope per unit of the option (default: the bench file's scope probe_gain)

    [[case]]
    use = "meter/6.4/messages"      # a case of the library (rig.campaign.cases.LIBRARY)
    name = "messages"               # unique in the plan; default: `use`
    bench = "embedded"              # default: the first bench
    repeat = 1
    params = { register = "tokenStatus" }
    sweep = { percent = { start = 0.0, stop = 8.0, step = 0.5 } }   # or a list of values
    stop = { below = { measurement = "success_rate", value = 0.5 }, max_failures = 3, max_duration_s = 60 }

Everything is checked before anything runs: unknown keys, wrong types, unknown cases, parameters a
case does not take, benches that do not exist, a role the case cannot play.
"""
from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

from rig.bench.config import VIRTUAL_MODELS, BenchConfig, ConfigError, load_bench, parse_bench
from rig.bench.models import ModelError
from rig.bench.safety import DutLimits
from rig.campaign.cases import LIBRARY
from rig.campaign.errors import PlanError
from rig.campaign.profiles import profile_for_plan
from rig.campaign.spec import PLANS_DIR, BenchSpec, CaseSpec, Plan, Stop, _fmt, key_line, shipped_plans
from rig.config_check import Checker, read_toml
from rig.profile import ProfileError

__all__ = ["BENCH_KEYS", "CASE_KEYS", "PLAN_KEYS", "PLANS_DIR", "STOP_KEYS", "SWEEP_RANGE_KEYS", "BenchSpec",
           "CaseSpec", "Plan", "PlanError", "Stop", "key_line", "load_plan", "resolve_plan", "shipped_plans"]

ROLES = ("meter-dut", "hhu-dut")
KINDS = ("embedded", "port")
INTERFACES = ("optical", "current-loop", "voltage")
POLICIES = ("typical", "min", "max")


# Every key of a plan, with what it takes: the loader checks against these, and the plan-format
# reference (docs/plan-format.md, `rig cases --markdown`) is written from them.
PLAN_KEYS = {
    "name": ("string", "the plan's name, shown in `rig runs` and the reports; default: the file's stem"),
    "description": ("string", "one line on what the plan checks"),
    "profile": ("string or table", "a profile file (relative to the plan), or a table of profile overrides in "
                "profile syntax (`[profile.timing] tr_max_ms = 800`) with an optional `file` key"),
    "bench": ("table or array of tables", "the benches (`[[bench]]`); default: one embedded meter-dut bench"),
    "case": ("array of tables", "the cases to run (`[[case]]`), in order; at least one"),
    "stop_on_failure": ("boolean", "stop the run after the first case that does not pass; default false"),
    "parallel": ("boolean", "run the cases of different benches in parallel threads; default true"),
}
BENCH_KEYS = {
    "name": ("string", "unique in the plan; default `embedded` for the first bench, `bench<i>` for the others"),
    "kind": ("embedded | port", "embedded: the meter emulator (or HHU stand-in) on a virtual line with a "
             "virtual instrument bench; port: a real line at `port`; default embedded"),
    "role": ("meter-dut | hhu-dut", "meter-dut: the DUT is a meter, the rig plays the HHU; hhu-dut: the DUT is "
             "an HHU, the rig plays the meter; default meter-dut"),
    "interface": ("optical | current-loop | voltage", "the interface option; default: the bench_config's "
                  "option, else optical"),
    "port": ("string", "kind = port only: the DUT's line, any pyserial URL (`/dev/ttyUSB0`, `socket://host:port`)"),
    "policy": ("typical | min | max", "embedded meter: its reaction time tr (typical, at the minimum, at the "
               "maximum); default typical"),
    "instruments": ("table", "kind = port only: role (scope, generator, supply, meter) = a VISA resource, "
                    "or a table {model, resource, channel, backend, timeout} as in a bench file"),
    "bench_config": ("string", "kind = port only: a bench file (`rig bench serve --write-config` writes one), "
                     "relative to the plan"),
    "probes": ("table", "kind = port only: scope channel per direction {to_meter, to_hhu, both}; default 2, 3"),
    "probe_gain": ("number > 0", "kind = port only: volts at the scope per unit of the interface option"),
}
CASE_KEYS = {
    "use": ("string", "the case of the library (`rig cases`); required"),
    "name": ("string", "unique in the plan (give it to use one case twice); default: `use`"),
    "bench": ("string", "the bench it runs on; default: the first"),
    "repeat": ("integer >= 1", "how many times each step (each sweep point) is run; default 1"),
    "params": ("table", "the case's parameters (see each case below); default: the case's defaults"),
    "sweep": ("table", "parameter = a list of values, or {start, stop, step}: one step per value (several "
              "parameters: every combination)"),
    "stop": ("table", "stop conditions, ending the case early (the steps left are recorded as skipped)"),
}
SWEEP_RANGE_KEYS = {
    "start": ("number", "the first value"),
    "stop": ("number", "the last value (included; below start sweeps down)"),
    "step": ("number > 0", "the distance between values; integers throughout give integers; at most 10000 points"),
}
STOP_KEYS = {
    "below": ("table {measurement, value}", "stop once a step's measurement of that name is below value"),
    "max_failures": ("integer >= 1", "stop after this many failed or erroneous steps"),
    "max_duration_s": ("number > 0", "start no step after the case has run this long (seconds)"),
}


# ---------------------------------------------------------------------------------------------
# loading

def load_plan(source: str | Path, *, text: str | None = None, base_dir: str | None = None) -> Plan:
    """A plan from a file, a shipped plan's name (`conformance`), or `text` (resume: the text stored
    with the run), checked whole (its profile and bench files too) before anything runs. Raises
    PlanError in the one format of rig.config_check: `file:line: key: what is wrong (expected ...)`."""

    path = resolve_plan(source) if text is None else Path(source)
    file = str(source if text is not None else path)
    data, text = read_toml(file, PlanError, text=text)
    c = Checker(file, text, error=PlanError)
    c.keys(data, (), tuple(PLAN_KEYS))
    if "case" not in data:
        raise PlanError(file, None, "no cases: a plan runs one or more [[case]] tables, e.g.\n\n"
                        "    [[case]]\n    use = \"meter/6.4/messages\"\n\n(`rig cases` lists them)")
    name = c.text_(data.get("name"), ("name",), default=Path(file).stem)
    description = c.text_(data.get("description"), ("description",), default="")
    stop_on_failure = c.bool_(data.get("stop_on_failure"), ("stop_on_failure",), False)
    parallel = c.bool_(data.get("parallel"), ("parallel",), True)

    # profile
    prof = data.get("profile", {})
    profile_file, overrides = None, {}
    if isinstance(prof, str):
        profile_file = prof
    elif isinstance(prof, dict):
        overrides = dict(prof)
        profile_file = overrides.pop("file", None)
        if profile_file is not None and not isinstance(profile_file, str):
            raise c.fail(("profile", "file"), "a path to a profile file", profile_file)
    else:
        raise c.fail(("profile",), "a profile file path or a table of profile overrides", prof)
    base = base_dir or str(Path(file).resolve().parent)

    # benches
    raw_benches = data.get("bench", [{"name": "embedded"}])
    one_table = isinstance(raw_benches, dict)  # [bench] rather than [[bench]]: its key has no index
    if one_table:
        raw_benches = [raw_benches]
    if not isinstance(raw_benches, list) or not raw_benches:
        raise c.fail(("bench",), "a [bench] table or [[bench]] tables", raw_benches)
    benches: dict[str, BenchSpec] = {}
    for i, b in enumerate(raw_benches):
        p: tuple[str | int, ...] = ("bench",) if one_table else ("bench", i)
        c.keys(b, p, tuple(BENCH_KEYS))
        bname = c.text_(b.get("name"), p + ("name",), default="embedded" if i == 0 else f"bench{i}")
        if bname in benches:
            raise c.fail(p + ("name",), "a bench name not used by another bench", bname)
        kind = c.text_(b.get("kind"), p + ("kind",), KINDS, "embedded")
        role = c.text_(b.get("role"), p + ("role",), ROLES, "meter-dut")
        interface = c.text_(b.get("interface"), p + ("interface",), INTERFACES)
        policy = c.text_(b.get("policy"), p + ("policy",), POLICIES, "typical")
        port = c.text_(b.get("port"), p + ("port",))
        if kind == "port" and not port:
            raise c.fail(p + ("port",), "a pyserial URL for kind = 'port'")
        if kind == "embedded" and port:
            raise c.fail(p + ("port",), "no port for kind = 'embedded' (it makes its own virtual line)", port)
        inst = b.get("instruments", {})
        c.keys(inst, p + ("instruments",), ("scope", "generator", "supply", "meter"))
        for k in ("bench_config", "instruments", "probes", "probe_gain"):
            if kind == "embedded" and k in b:
                raise c.fail(p + (k,), f"no {k} for kind = 'embedded' (it starts its own virtual bench on "
                                       "its virtual line); instruments are for kind = 'port'", b[k])
        config, config_file = _bench_instruments(c, b, p, interface, base_dir or str(Path(file).resolve().parent))
        if config is not None:
            interface = interface or config.option
        interface = interface or "optical"
        probes = b.get("probes", {})
        c.keys(probes, p + ("probes",), ("to_meter", "to_hhu", "both"))
        for k, v in probes.items():
            c.int_(v, p + ("probes", k), 1)
            scope = config.instruments.get("scope") if config is not None else None
            if scope is not None and v not in scope.model.channels:
                raise c.fail(p + ("probes", k), f"a channel of the scope {scope.model.name} "
                                                f"({', '.join(map(str, scope.model.channels))})", v)
        probe_gain = c.num_(b.get("probe_gain"), p + ("probe_gain",), positive=True)
        benches[bname] = BenchSpec(bname, kind, role, interface, port, policy, dict(inst), config_file,
                                   dict(probes), probe_gain, config)

    # cases
    raw_cases = data["case"]
    if not isinstance(raw_cases, list) or not raw_cases:
        raise c.fail(("case",), "one or more [[case]] tables", raw_cases)
    cases: list[CaseSpec] = []
    seen: set[str] = set()
    first_bench = next(iter(benches))
    for i, rc in enumerate(raw_cases):
        p = ("case", i)
        c.keys(rc, p, tuple(CASE_KEYS), ("use",))
        use = c.text_(rc["use"], p + ("use",))
        if use not in LIBRARY:
            raise c.fail(p + ("use",), f"a case of the library ({', '.join(sorted(LIBRARY))})", use)
        case = LIBRARY[use]
        key = c.text_(rc.get("name"), p + ("name",), default=use)
        if key in seen:
            raise c.fail(p + ("name",), f"a case name not used by another case (give `name` to use {use!r} twice)", key)
        seen.add(key)
        bench = c.text_(rc.get("bench"), p + ("bench",), tuple(benches), first_bench)
        if benches[bench].role not in case.roles:
            raise c.fail(p + ("use",), f"a case for a bench with role {benches[bench].role!r} "
                         f"(bench {bench!r}); {use!r} is for {', '.join(case.roles)}", use)
        bench_key = p + ("bench",) if "bench" in rc else p + ("use",)
        repeat = c.int_(rc.get("repeat"), p + ("repeat",), 1, 1)
        params = rc.get("params", {})
        c.keys(params, p + ("params",), tuple(case.params))
        merged = dict(case.params)
        for k, v in params.items():
            merged[k] = case.check_param(k, v, c, p + ("params", k))
        sweep_raw = rc.get("sweep", {})
        c.keys(sweep_raw, p + ("sweep",), tuple(case.params))
        sweep: dict[str, list] = {}
        for k, spec in sweep_raw.items():
            sp = p + ("sweep", k)
            if isinstance(spec, list):
                if not spec:
                    raise c.fail(sp, "a non-empty list of values", spec)
                values = spec
            elif isinstance(spec, dict):
                c.keys(spec, sp, tuple(SWEEP_RANGE_KEYS), tuple(SWEEP_RANGE_KEYS))
                start, stop_ = c.num_(spec["start"], sp + ("start",)), c.num_(spec["stop"], sp + ("stop",))
                step = c.num_(spec["step"], sp + ("step",), positive=True)
                n = int(round(abs(stop_ - start) / step)) + 1
                if n > 10_000:
                    raise c.fail(sp + ("step",), "at most 10000 points", n)
                sign = 1 if stop_ >= start else -1
                values = [round(start + sign * j * step, 9) for j in range(n)]
                if all(type(spec[x]) is int for x in ("start", "stop", "step")):
                    values = [int(v) for v in values]
            else:
                raise c.fail(sp, "a list of values or a table {start, stop, step}", spec)
            sweep[k] = [case.check_param(k, v, c, sp) for v in values]
        st = rc.get("stop", {})
        c.keys(st, p + ("stop",), tuple(STOP_KEYS))
        below = None
        if "below" in st:
            b = st["below"]
            c.keys(b, p + ("stop", "below"), ("measurement", "value"), ("measurement", "value"))
            below = (c.text_(b["measurement"], p + ("stop", "below", "measurement")),
                     c.num_(b["value"], p + ("stop", "below", "value")))
        stop = Stop(below, c.int_(st.get("max_failures"), p + ("stop", "max_failures"), 1),
                    c.num_(st.get("max_duration_s"), p + ("stop", "max_duration_s"), positive=True))
        spec = CaseSpec(key, use, bench, repeat, merged, sweep, stop, key_line(text, p) or 0)
        # what the case needs of its bench, for every step's parameters (a swept quantity too)
        for _, step_params in spec.steps()[:: max(1, repeat)]:
            why = case.cannot_run(benches[bench], step_params)
            if why:
                at = ", ".join(f"{k}={_fmt(step_params[k])}" for k in sweep)
                raise c.refuse(bench_key, f"{use!r} cannot run on bench {bench!r}"
                                          f"{f' (at {at})' if at else ''}: {why}")
        cases.append(spec)
    plan = Plan(name, description, benches, cases, profile_file, overrides, text, str(path), base,
                stop_on_failure, parallel)
    # the profile must load too (its errors name the plan)
    profile = _check_profile(plan, ("profile",) if isinstance(prof, str) else ("profile", "file"))
    _check_profile_names(c, plan, profile)
    return plan


def _check_profile(plan: Plan, file_key: tuple):
    """The plan's profile; an error in its [profile] table names the plan's file and line, one in
    its profile file names that file, behind the plan's key naming it (`file_key`)."""
    try:
        return profile_for_plan(plan)
    except ProfileError as e:
        if str(e.path) == str(plan.path):
            raise PlanError(e.path, e.parts or None, e.problem, e.expected, line=e.line) from None
        raise PlanError(plan.path, file_key, str(e), line=key_line(plan.text, file_key)) from None


def _check_profile_names(c: Checker, plan: Plan, profile) -> None:
    """Parameters that name something of the profile (a register) name one it has."""
    for i, spec in enumerate(plan.cases):
        for name, kind in LIBRARY[spec.use].param_kinds.items():
            if kind != "register":
                continue
            swept = name in spec.sweep
            values = spec.sweep[name] if swept else [spec.params[name]]
            for v in values:
                for reg in (v if isinstance(v, list) else [v]):
                    if reg not in profile.registers:
                        where = ("case", i, "sweep" if swept else "params", name)
                        raise c.fail(where if swept or name in _raw_params(plan, i) else ("case", i, "use"),
                                     f"a register of the profile ({', '.join(profile.registers)})", reg)


def _raw_params(plan: Plan, i: int) -> dict:
    """The params the plan's i-th case gives itself (not the case's defaults)."""
    try:
        return tomllib.loads(plan.text)["case"][i].get("params", {})
    except (KeyError, IndexError, tomllib.TOMLDecodeError):
        return {}


def _bench_instruments(c: Checker, b: dict, p: tuple, interface: str | None, base: str):
    """The instruments of a port bench as one rig.bench.config.BenchConfig: the bench_config file,
    then the inline `instruments` (a VISA resource string: that resource for the role, with the
    file's model or else the shipped one; a table: the role's entry as in a bench file).  Returns
    (config or None, the resolved file path or None); errors name the plan's line and key."""
    file = c.text_(b.get("bench_config"), p + ("bench_config",))
    inline = b.get("instruments", {})
    if file is None and not inline:
        return None, None
    config = None
    path = None
    if file is not None:
        path = str(Path(base, file)) if not Path(file).is_absolute() else file
        try:
            config = load_bench(path)
        except (ConfigError, ModelError) as e:
            raise c.refuse(p + ("bench_config",), str(e)) from None     # the bench file's own error
        if interface is not None and interface != config.option:
            raise c.fail(p + ("interface",), f"the option of its bench_config {file!r} "
                                             f"({config.option!r}), or no interface key", interface)
    option = (config.option if config is not None else None) or interface or "optical"
    if config is None:
        config = BenchConfig(option, DutLimits.for_option(option), {})
    for role, v in inline.items():
        where = p + ("instruments", role)
        if isinstance(v, str):
            table = {"resource": v}
        elif isinstance(v, dict):
            table = dict(v)
        else:
            raise c.fail(where, "a VISA resource string or a table {model, resource, channel, backend, timeout}", v)
        known = config.instruments.get(role)
        table.setdefault("model", known.model.name if known is not None else VIRTUAL_MODELS[role])
        if known is not None and table["model"] == known.model.name:
            for k in ("resource", "channel", "backend", "timeout", "probe_gain", "loop_voltage",
                      "loop_current_limit"):   # the file's entry, changed inline
                if k not in table and getattr(known, k) is not None:
                    table[k] = getattr(known, k)
        try:
            one = parse_bench({"bench": {"option": option}, "instruments": {role: table}}, "<plan>")
        except (ConfigError, ModelError) as e:
            key = e.key or ""
            parts = tuple(key.split(".")[2:3]) if key.startswith(f"instruments.{role}.") else ()
            raise c.refuse(where + parts, e.problem, e.expected) from None
        config = replace(config, instruments={**config.instruments, role: one.instruments[role]})
    for role, ic in config.instruments.items():
        if not ic.resource:
            at = p + ("instruments", role) if role in inline else p + ("bench_config",)
            raise c.fail(at, f"a VISA resource for the {role} ({ic.model.name})", ...)
    return config, path


def resolve_plan(source: str | Path) -> Path:
    """A path, or the name of a shipped plan (`conformance` -> rig/plans/conformance.toml)."""
    p = Path(source)
    if p.exists() or p.suffix or "/" in str(source):
        return p
    shipped = PLANS_DIR / f"{source}.toml"
    if shipped.exists():
        return shipped
    raise PlanError(source, None, "no such plan file, and not a shipped plan",
                    f"a plan file or one of {', '.join(shipped_plans())}")
