"""`rig run`, `rig runs`, `rig resume`, `rig export`, `rig report`, `rig cases`, `rig check`,
`rig init`: the campaign commands.

rig/cli.py wires them in with `rig.campaign.cli.add_parsers(subparsers)`; each parser's `func`
takes the parsed arguments and returns the exit code: 0 only when every case passed, 1 when a
case failed or could not be carried out, 2 for bad input (a plan or store that cannot be used;
the message says which file, line and key), 130 when stopped by Ctrl-C (`rig resume N` goes on).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import replace
from fnmatch import fnmatchcase
from pathlib import Path

from rig.campaign.errors import PlanError
from rig.campaign.spec import PLANS_DIR, shipped_plans
from rig.campaign.store import Store, StoreError, StoreWriteError, default_path, is_alive
from rig.errors import RigError
from rig.measurement import ERROR, FAIL, STOPPED, is_ok
from rig.profile import DEFAULT_PATH as DEFAULT_PROFILE

# The case library, the runner, the reports and the plan loader are imported by the commands that use
# them: they bring numpy, pyvisa, the instrument models, Jinja2 (some 0.2 s), which every other `rig`
# command (`rig --help`, `rig parse`) would pay for at start.

DEFAULT_PLANS = ("conformance", "electrical")
INTERRUPTED = 130        # the shell's code for a command ended by Ctrl-C (128 + SIGINT)


def add_parsers(subparsers) -> None:
    store_help = f"result store (SQLite; default $RIG_STORE or ./{Path(default_path()).name})"
    p = subparsers.add_parser("run", help="run a campaign plan (default: conformance and electrical "
                              "against the embedded default)")
    p.add_argument("plan", nargs="*", help=f"plan files or shipped plans ({', '.join(shipped_plans())})")
    p.add_argument("--store", help=store_help)
    p.add_argument("--json", action="store_true", help="print the results as JSON (no progress bars)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--junit", metavar="FILE.xml", help="also write the results as JUnit XML (Jenkins, GitLab)")
    p.add_argument("--case", "-k", action="append", metavar="PATTERN", dest="cases",
                   help="run only the cases whose name or `use` matches (a glob such as 'meter/6.6/*', "
                        "or a part of the name); repeatable")
    p.add_argument("--rerun-failed", type=int, metavar="RUN",
                   help="run again the cases that failed or had errors in run RUN (its plan, as stored)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the plans and print what would run, without touching a port or the store")
    p.set_defaults(func=cmd_run)

    p = subparsers.add_parser("check", help="check plans without running them (no port, no store)",
                              description="Load each plan as `rig run` would (keys, types, cases, "
                                          "parameters, sweeps, the profile, the bench files, what each case "
                                          "needs of its bench) and print what it would run. Exit code 0 when "
                                          "every plan is good, 2 otherwise.")
    p.add_argument("plan", nargs="+", help="plan files or shipped plans")
    p.add_argument("--case", "-k", action="append", metavar="PATTERN", dest="cases", help="as rig run --case")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)

    p = subparsers.add_parser("cases", help="list the case library: clause, what it checks, parameters",
                              description="The cases a plan can `use`: name, clause, what it checks, its "
                                          "parameters (type, default, unit), the roles and benches it runs on.")
    p.add_argument("pattern", nargs="*", help="only the cases matching (as rig run --case); all by default")
    p.add_argument("-v", "--verbose", action="store_true", help="with the parameters and benches")
    p.add_argument("--json", action="store_true", help="everything, as JSON")
    p.add_argument("--markdown", action="store_true",
                   help="the plan-format reference (docs/plan-format.md) with every case")
    p.set_defaults(func=cmd_cases)

    p = subparsers.add_parser("init", help="write a commented plan, profile or bench file to start from",
                              description="Write a commented template (or with --from, a copy of a shipped "
                                          "plan or profile) to FILE; an existing FILE is not overwritten.")
    p.add_argument("what", choices=("plan", "profile", "bench"))
    p.add_argument("file", metavar="FILE")
    p.add_argument("--from", dest="source", metavar="NAME",
                   help=f"copy a shipped plan ({', '.join(shipped_plans())}) or the default profile "
                        "(iec62055-52)")
    p.add_argument("--force", action="store_true", help="overwrite FILE")
    p.set_defaults(func=cmd_init)

    p = subparsers.add_parser("runs", help="list the runs in the store")
    p.add_argument("--store", help=store_help)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)

    p = subparsers.add_parser("resume", help="continue a stopped, crashed or killed run")
    p.add_argument("run", type=int, help="run id (see `rig runs`)")
    p.add_argument("--store", help=store_help)
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_resume)

    p = subparsers.add_parser("export", help="export a run's results to CSV or Parquet")
    p.add_argument("run", type=int)
    p.add_argument("--format", choices=("csv", "parquet"), default="csv")
    p.add_argument("--out", help="directory to write (default: rig-run-<id>-<format>)")
    p.add_argument("--store", help=store_help)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)

    p = subparsers.add_parser("report", help="write a run's report: one self-contained HTML file with plots "
                              "(and JUnit XML with --junit)")
    p.add_argument("run", type=int, help="run id (see `rig runs`)")
    p.add_argument("--out", metavar="FILE.html", help="HTML file to write (default: rig-run-<id>.html)")
    p.add_argument("--store", help=store_help)
    p.add_argument("--junit", metavar="FILE.xml", help="also write the run as JUnit XML (as `rig run --junit`)")
    p.set_defaults(func=cmd_report)


def load_plan(source, **kw):
    """rig.campaign.plan.load_plan, imported when a command reads a plan: the loader brings the case
    library and the instrument models (numpy, pyvisa), which `rig --help` and `rig parse` do without."""
    from rig.campaign.plan import load_plan as load
    return load(source, **kw)


def _err(msg: str) -> int:
    print(f"rig: {msg}", file=sys.stderr)
    return 2


def _open_store(args, *, read_only: bool = False, create: bool = True) -> Store:
    return Store.open(args.store, create=create and not read_only, read_only=read_only)


# --- choosing cases -------------------------------------------------------------------------------
def _name_matches(pattern: str, *names: str) -> bool:
    """A glob over any of the names; without glob characters, a part of one."""
    if any(ch in pattern for ch in "*?["):
        return any(fnmatchcase(n, pattern) for n in names)
    return any(pattern in n for n in names)


def _matches(pattern: str, spec) -> bool:
    """A case of a plan, by its name or `use`."""
    return _name_matches(pattern, spec.key, spec.use)


def select_cases(plan, patterns, keys=None):
    """The plan with only the cases matching any of `patterns` (and among `keys`, if given)."""
    chosen = [c for c in plan.cases
              if (not patterns or any(_matches(p, c) for p in patterns)) and (keys is None or c.key in keys)]
    return replace(plan, cases=chosen)


def _plan_control(plan) -> dict:
    """A plan as a run keeps the plans to run after it: its text and the cases chosen."""
    return {"path": plan.path, "text": plan.text, "base_dir": plan.base_dir, "cases": [c.key for c in plan.cases]}


def _describe_plan(plan) -> dict:
    from rig.campaign.cases import LIBRARY
    return {"plan": plan.name, "file": plan.path,
            "benches": {n: {"kind": b.kind, "role": b.role, "interface": b.interface,
                            **({"port": b.port} if b.port else {})} for n, b in plan.benches.items()},
            "cases": [{"name": c.key, "use": c.use, "bench": c.bench,
                       "steps": len(c.steps()) + (1 if LIBRARY[c.use].summary else 0)} for c in plan.cases]}


def _print_plan(d: dict) -> None:
    benches = ", ".join(f"{n} ({b['kind']}, {b['role']}, {b['interface']}{', ' + b['port'] if 'port' in b else ''})"
                        for n, b in d["benches"].items())
    steps = sum(c["steps"] for c in d["cases"])
    print(f"{d['file']}: plan {d['plan']}: {len(d['cases'])} case(s), {steps} step(s); benches {benches}")
    for c in d["cases"]:
        print(f"  {c['name']:<34} {c['steps']:>5} step(s)  on {c['bench']}")


def _load_selected(sources, patterns, plans=None):
    """The plans, with only the cases chosen; a pattern that matches nothing anywhere is refused."""
    plans = [load_plan(s) for s in sources] if plans is None else plans
    if patterns:
        for pat in patterns:
            if not any(_matches(pat, c) for p in plans for c in p.cases):
                names = sorted({c.key for p in plans for c in p.cases})
                raise PlanError(f"--case {pat!r}: no case of {', '.join(p.name for p in plans)} matches "
                                f"(its cases: {', '.join(names)})")
        plans = [p for p in (select_cases(p, patterns) for p in plans) if p.cases]
    return plans


def cmd_check(args) -> int:
    out, code, loaded = [], 0, []
    for source in args.plan:            # every plan checked, each error named
        try:
            loaded.append(load_plan(source))
        except PlanError as e:
            print(f"rig: {e}", file=sys.stderr)
            out.append({"file": source, "ok": False, "error": str(e)})
            code = 2
    try:
        plans = _load_selected(None, args.cases, loaded)
    except PlanError as e:
        print(f"rig: {e}", file=sys.stderr)
        plans, code = [], 2
    for plan in plans:
        d = _describe_plan(plan)
        out.append({"ok": True, **d})
        if not args.json:
            _print_plan(d)
    if args.json:
        print(json.dumps(out, indent=1))
    return code


def cmd_cases(args) -> int:
    from rig.campaign import catalog
    from rig.campaign.cases import LIBRARY
    if args.markdown:
        print(catalog.plan_format_markdown())
        return 0
    chosen = [c for c in LIBRARY.values() if not args.pattern or any(_name_matches(p, c.id) for p in args.pattern)]
    if not chosen:
        return _err(f"no case matches {' '.join(args.pattern)} (`rig cases` lists them all)")
    if args.json:
        print(catalog.cases_json(chosen))
    else:
        print(catalog.cases_text(chosen, verbose=args.verbose or bool(args.pattern)))
    return 0


# --- rig init -------------------------------------------------------------------------------------
PLAN_TEMPLATE = """\
# A campaign plan (`rig run THIS-FILE`; `rig check THIS-FILE` checks it without running anything).
# The format, every key and every case's parameters: docs/plan-format.md, or `rig cases -v`.
name = "my-meter"
description = "conformance of my meter"

# Profile: what IEC 62055-52 leaves open, for this meter (`rig init profile` writes one to fill in).
# [profile]
# file = "my-meter-profile.toml"     # relative to this plan
# [profile.timing]
# tr_max_ms = 1500                   # or overrides right here, in profile syntax

# The bench: the embedded default (the meter emulator on a virtual line), or a real meter on a port.
[[bench]]
name = "meter"
kind = "embedded"                    # "port" for a real meter, with:
# port = "/dev/ttyUSB0"              #   its line, any pyserial URL (socket://host:port, rfc2217://...)
role = "meter-dut"                   # the rig plays the HHU; "hhu-dut": the rig plays the meter
interface = "optical"                # optical | current-loop | voltage
# bench_config = "lab-bench.toml"    # kind = "port": the instruments (`rig init bench`)

# The cases, in order (`rig cases` lists them all).
[[case]]
use = "meter/6.4/messages"

[[case]]
use = "meter/6.7/timing"
params = { reads = 10 }              # the case's parameters (rig cases meter/6.7/timing)
repeat = 3                           # each step three times

# [[case]]
# use = "electrical/margin"          # a sweep: one step per amount, stopped once reads fail
# params = { quantity = "baud_error", exchanges = 3 }
# sweep = { amount = { start = 0.0, stop = 10.0, step = 1.0 } }
# stop = { below = { measurement = "success_rate", value = 0.5 } }
"""

BENCH_TEMPLATE = """\
# A bench file: the interface option, the DUT's electrical limits and the instruments by role.
# `rig bench list --config THIS-FILE` asks each instrument for *IDN?; a plan's port bench names it
# with bench_config = "THIS-FILE". Models: the instruments/*.yaml files shipped with rig.
[bench]
option = "current-loop"              # optical | current-loop | voltage

# [dut]                              # optional: the DUT's maximums (defaults: the option's)
# voltage_max = 30.0                 # V
# voltage_min = -30.0                # V
# current_max = 0.030                # A

[instruments.scope]
model = "rigol-ds1000z"
resource = "TCPIP::192.168.1.20::INSTR"
probe_gain = 0.1                     # V at the scope per unit of the option: YOUR probe (here a
                                     #   100 ohm shunt in the loop, V/mA); the cases refuse to guess it

# [instruments.generator]
# model = "keysight-33500b"
# resource = "TCPIP::192.168.1.21::INSTR"
# channel = 1

# [instruments.supply]
# model = "rigol-dp832"
# resource = "TCPIP::192.168.1.22::INSTR"
# channel = 1
# loop_voltage = 24.0                # V it powers the current loop with, as an HHU does (<= 30 V)
# loop_current_limit = 0.030         # A, its current limit on the loop (<= 30 mA)

# [instruments.meter]
# model = "keysight-34461a"
# resource = "TCPIP::192.168.1.23::INSTR"
"""


def _profile_template() -> str:
    """The default profile with every value commented out: uncomment and change what differs."""
    lines = ["# A profile of your own: only what differs from the default (rig/profiles/iec62055-52.toml).",
             "# Uncomment a value and change it; give the file to `--profile`, or a plan's [profile] file = ...",
             "# Your values are recorded with the source \"user profile <this file>\".", ""]
    for raw in Path(DEFAULT_PROFILE).read_text(encoding="utf-8").splitlines():
        s = raw.strip()
        lines.append(raw if not s or s.startswith("#") else "# " + raw)
    return "\n".join(lines) + "\n"


def cmd_init(args) -> int:
    out = Path(args.file)
    if out.exists() and not args.force:
        return _err(f"{out}: exists; not overwritten (--force overwrites it)")
    if not out.parent.is_dir():
        return _err(f"{out}: no directory {str(out.parent)!r}")
    if args.source:
        if args.what == "plan":
            src = PLANS_DIR / f"{args.source}.toml"
            if not src.is_file():
                return _err(f"--from {args.source}: not a shipped plan ({', '.join(shipped_plans())})")
        elif args.what == "profile":
            src = Path(DEFAULT_PROFILE)
            if args.source not in (src.stem, src.name):
                return _err(f"--from {args.source}: not a shipped profile ({src.stem})")
        else:
            return _err("--from: no bench files are shipped; `rig bench serve --write-config FILE` writes "
                        "the virtual bench's, `rig init bench FILE` a template")
        text = src.read_text(encoding="utf-8")
    else:
        text = {"plan": PLAN_TEMPLATE, "bench": BENCH_TEMPLATE}.get(args.what) or _profile_template()
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        return _err(f"{out}: cannot write: {e.strerror or e}")
    print(f"{out}: {'a copy of ' + args.source if args.source else 'a commented ' + args.what + ' template'}; "
          + {"plan": f"`rig check {out}` checks it", "profile": f"`--profile {out}` uses it",
             "bench": f"`rig bench list --config {out}` checks it"}[args.what])
    return 0


class _CleanStop:
    """First Ctrl-C: finish the step under way, then stop; the second: stop at once."""

    def __init__(self, runner):
        self.runner = runner
        self.count = 0

    def __enter__(self):
        self.old = signal.signal(signal.SIGINT, self.handle)
        return self

    def handle(self, signum, frame):
        self.count += 1
        self.runner.stop.set()
        if self.count == 1:
            print("\nrig: stopping after the step under way (Ctrl-C again to stop at once)", file=sys.stderr)
        else:
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self.old)
        return False


def _execute(plan, store, run_id, args) -> tuple[str, bool]:
    """Run (or go on with) a run: (its verdict, whether Ctrl-C stopped it)."""
    from rig.campaign.runner import Runner
    quiet = getattr(args, "quiet", 0)
    progress = not args.json and not args.no_progress and not quiet and sys.stderr.isatty()
    echo = None if args.json or quiet else (lambda s: print(s, flush=True))
    runner = Runner(plan, store, run_id, progress=progress, echo=None if progress else echo)
    with _CleanStop(runner) as stop:
        verdict = runner.run()
    return verdict, stop.count > 0


def _store_opt(args) -> str:
    """The --store option to repeat in a command printed for the user."""
    return f" --store {args.store}" if getattr(args, "store", None) else ""


def _stopped(run_id: int, args) -> int:
    print(f"rig: run {run_id} stopped; what was recorded is kept: `rig resume {run_id}{_store_opt(args)}` "
          "goes on with it", file=sys.stderr, flush=True)
    return INTERRUPTED


class _Campaign:
    """Runs plans one after the other into one store; each run keeps the plans still to run after it
    (Store.set_control), so `rig resume` of any of them goes on to the plans not started."""

    def __init__(self, store, args):
        self.store, self.args = store, args
        self.results: list[dict] = []
        self.code = 0
        self.current: int | None = None      # the run under way

    def guarded(self, fn, *a) -> int:
        """fn(*a), with a write the store refuses (disk full) ending the campaign clearly: exit 2,
        the run resumable."""
        try:
            return fn(*a)
        except StoreWriteError as e:
            if self.current is None:
                return _err(str(e))
            return _err(f"{e}\nrun {self.current} ended; every step recorded before is kept: free some space, "
                        f"then `rig resume {self.current}{_store_opt(self.args)}`")

    def start(self, plans) -> int:
        """Run `plans` from the first; returns the exit code."""
        from rig.campaign.runner import start_run
        for i, plan in enumerate(plans):
            run_id = start_run(plan, self.store)
            self.current = run_id
            control = {"cases": [c.key for c in plan.cases], "then": [_plan_control(p) for p in plans[i + 1:]]}
            self.store.set_control(run_id, control)
            if i > 0 and self.results:   # the previous run's plans-to-come now belong to this one
                self._clear_then(self.results[-1]["id"])
            code = self.go_on(plan, run_id)
            if code is not None:
                return code
        return self.code

    def _clear_then(self, run_id: int) -> None:
        ctl = self.store.control(run_id)
        if ctl.get("then"):
            ctl["then"] = []
            self.store.set_control(run_id, ctl)

    def go_on(self, plan, run_id: int) -> int | None:
        """Run (or resume) one run; None to go on to the next plan, else the exit code to end with."""
        from rig.campaign.report import print_summary, run_summary
        args = self.args
        self.current = run_id
        if not args.json and not getattr(args, "quiet", 0):
            print(f"run {run_id}: plan {plan.name} ({plan.path}) -> {self.store.path}", flush=True)
        try:
            verdict, interrupted = _execute(plan, self.store, run_id, args)
        except OSError as e:  # a port or instrument of the bench that cannot be reached
            _err(f"plan {plan.name}: {e}; what was recorded is kept: fix the bench and "
                 f"`rig resume {run_id}{_store_opt(args)}`")
            return 2
        self.results.append(run_summary(self.store, run_id))
        if not args.json:
            print_summary(self.store, run_id)
        if interrupted:
            return _stopped(run_id, args)
        if not is_ok(verdict):
            self.code = 1
        if verdict == STOPPED:       # stop_on_failure
            return self.code
        return None

    def then(self, run_id: int) -> int:
        """The plans still to run after run_id, each a new run."""
        ctl = self.store.control(run_id)
        rest = ctl.get("then") or []
        if not rest:
            return self.code
        plans = []
        for p in rest:
            try:
                plan = load_plan(p["path"] or "plan.toml", text=p["text"], base_dir=p["base_dir"])
                plans.append(select_cases(plan, None, set(p["cases"])) if p.get("cases") is not None else plan)
            except PlanError as e:
                return _err(str(e))
        self._clear_then(run_id)
        return self.start(plans)

    def finish(self) -> None:
        args = self.args
        if getattr(args, "junit", None) and self.results:
            from rig.junit import write_junit
            write_junit(self.store, [r["id"] for r in self.results], args.junit)
        if args.json and self.results:
            print(json.dumps(self.results if len(self.results) > 1 else self.results[0], indent=2, default=str))


def cmd_run(args) -> int:
    if args.rerun_failed is not None:
        return _rerun_failed(args)
    sources = args.plan or list(DEFAULT_PLANS)
    try:
        plans = _load_selected(sources, args.cases)
    except PlanError as e:
        return _err(str(e))
    if args.dry_run:
        described = [_describe_plan(p) for p in plans]
        if args.json:
            print(json.dumps(described if len(described) > 1 else described[0], indent=1))
            return 0
        for d in described:
            _print_plan(d)
        print("dry run: nothing was run, no port opened, nothing stored")
        return 0
    try:
        store = _open_store(args)
    except StoreError as e:
        return _err(str(e))
    with store:
        c = _Campaign(store, args)
        try:
            code = c.guarded(c.start, plans)
        finally:
            c.guarded(c.finish)
    return code


def _rerun_failed(args) -> int:
    """A new run of run RUN's plan with only the cases that failed or had errors (pytest --lf)."""
    if args.plan:
        return _err("--rerun-failed RUN takes the plan stored with run RUN; give no PLAN")
    try:
        store = _open_store(args, create=False)
    except StoreError as e:
        return _err(str(e))
    with store:
        try:
            row = store.run(args.rerun_failed)
            plan = load_plan(row["plan_path"] or f"run-{row['id']}.toml", text=row["plan_text"],
                             base_dir=row["plan_dir"])
        except RigError as e:
            return _err(str(e))
        failed = [c["key"] for c in store.cases(row["id"]) if c["verdict"] in (FAIL, ERROR)]
        if not failed:
            print(f"run {row['id']}: no case failed or had errors; nothing to run again"
                  + ("" if row["status"] == "done" else f" (it did not finish: `rig resume {row['id']}{_store_opt(args)}`)"))
            return 0
        plan = select_cases(plan, args.cases, set(failed))
        if not plan.cases:
            return _err(f"--case: none of the failed cases of run {row['id']} matches ({', '.join(failed)})")
        if args.dry_run:
            d = _describe_plan(plan)
            print(json.dumps(d, indent=1)) if args.json else _print_plan(d)
            return 0
        c = _Campaign(store, args)
        try:
            code = c.guarded(c.start, [plan])
        finally:
            c.guarded(c.finish)
    return code


def cmd_resume(args) -> int:
    try:
        store = _open_store(args, create=False)
    except StoreError as e:
        return _err(str(e))
    with store:
        c = _Campaign(store, args)
        try:
            row = store.run(args.run)
            if row["status"] == "running" and row["pid"] != os.getpid() and is_alive(row):
                return _err(f"run {args.run} is still running (pid {row['pid']})")
            ctl = store.control(args.run)
            if row["status"] == "done":
                if not ctl.get("then"):
                    print(f"run {args.run} is finished (verdict {row['verdict']}): nothing to resume; "
                          f"`rig report {args.run}{_store_opt(args)}` writes its report, `rig run --rerun-failed "
                          f"{args.run}{_store_opt(args)}` runs its failed cases again")
                    return 0
                c.code = 0 if is_ok(row["verdict"]) else 1
                try:
                    return c.guarded(c.then, args.run)
                finally:
                    c.guarded(c.finish)
            plan = load_plan(row["plan_path"] or f"run-{args.run}.toml", text=row["plan_text"],
                             base_dir=row["plan_dir"])
            if ctl.get("cases") is not None:
                plan = select_cases(plan, None, set(ctl["cases"]))
        except RigError as e:
            return _err(str(e))
        def go():
            code = c.go_on(plan, args.run)
            return c.then(args.run) if code is None else code
        try:
            code = c.guarded(go)
        finally:
            c.guarded(c.finish)
    return code


def cmd_runs(args) -> int:
    try:
        store = _open_store(args, read_only=True)
    except StoreError as e:
        return _err(str(e))
    with store:
        runs = store.runs()
    if args.json:
        print(json.dumps(runs, indent=2, default=str))
        return 0
    if not runs:
        print(f"no runs in {store.path}")
    for r in runs:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["started_at"]))
        print(f"{r['id']:>4}  {when}  {r['name']:<14} {r['status']:<12} {r['verdict'] or '-':<10} "
              f"cases {r['cases']} (pass {r['passed']}, fail {r['failed']}, error {r['errors']}), steps {r['steps']}")
    return 0


def cmd_export(args) -> int:
    from rig.campaign.export import export
    try:
        store = _open_store(args, read_only=True)
        with store:
            store.run(args.run)
            out = Path(args.out or f"rig-run-{args.run}-{args.format}")
            files = export(store, args.run, out, args.format)
    except RigError as e:
        return _err(str(e))
    if args.json:
        print(json.dumps({"run": args.run, "format": args.format, "files": [str(f) for f in files]}))
    else:
        for f in files:
            print(f)
    return 0


def cmd_report(args) -> int:
    from rig.campaign.html_report import ReportError, default_out, write_report
    try:
        store = _open_store(args, read_only=True)
    except StoreError as e:
        return _err(f"{e}; so no run {args.run} to report")
    try:
        with store:
            store.run(args.run)
            html = write_report(store, args.run, args.out or default_out(args.run))
            print(f"report: {html}")
            if args.junit:
                from rig.junit import write_junit
                try:
                    xml = write_junit(store, [args.run], args.junit)
                except OSError as e:
                    raise ReportError(f"cannot write the JUnit XML to {args.junit}: {e.strerror or e}") from None
                print(f"junit: {xml}")
    except RigError as e:
        return _err(str(e))
    return 0


def main(argv=None) -> int:
    """For trying the commands before rig/cli.py wires them in: python -m rig.campaign.cli run ..."""
    parser = argparse.ArgumentParser(prog="rig")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except RigError as e:
        return _err(str(e))


if __name__ == "__main__":
    sys.exit(main())
