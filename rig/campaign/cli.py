"""`rig run`, `rig runs`, `rig resume`, `rig export`, `rig report`: the campaign commands.

rig/cli.py wires them in with `rig.campaign.cli.add_parsers(subparsers)`; each parser's `func`
takes the parsed arguments and returns the exit code: 0 only when every case passed, 1 when a
case failed or could not be carried out (or the run was stopped), 2 for bad input (a plan or
store that cannot be used; the message says which file, line and key).
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from rig.campaign.plan import PlanError, load_plan, shipped_plans
from rig.campaign.store import Store, StoreError, default_path

DEFAULT_PLANS = ("conformance", "electrical")
OK_VERDICTS = ("pass", "info")      # exit 0: nothing failed (info: values recorded, no requirement to judge)


def add_parsers(subparsers) -> None:
    store_help = f"result store (SQLite; default $RIG_STORE or ./{Path(default_path()).name})"
    p = subparsers.add_parser("run", help="run a campaign plan (default: conformance and electrical "
                              "against the embedded default)")
    p.add_argument("plan", nargs="*", help=f"plan files or shipped plans ({', '.join(shipped_plans())})")
    p.add_argument("--store", help=store_help)
    p.add_argument("--json", action="store_true", help="print the results as JSON (no progress bars)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--junit", metavar="FILE.xml", help="also write the results as JUnit XML (Jenkins, GitLab)")
    p.set_defaults(func=cmd_run)

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


def _err(msg: str) -> int:
    print(f"rig: {msg}", file=sys.stderr)
    return 2


def _open_store(args) -> Store:
    return Store.open(args.store)


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


def _execute(plan, store, run_id, args) -> str:
    from rig.campaign.runner import Runner
    progress = not args.json and not args.no_progress and sys.stderr.isatty()
    echo = None if args.json else (lambda s: print(s, flush=True))
    runner = Runner(plan, store, run_id, progress=progress, echo=None if progress else echo)
    with _CleanStop(runner):
        return runner.run()


def cmd_run(args) -> int:
    from rig.campaign.report import print_summary, run_summary
    from rig.campaign.runner import start_run
    sources = args.plan or list(DEFAULT_PLANS)
    try:
        plans = [load_plan(s) for s in sources]
        store = _open_store(args)
    except (PlanError, StoreError) as e:
        return _err(str(e))
    results = []
    code = 0
    with store:
        for plan in plans:
            run_id = start_run(plan, store)
            if not args.json:
                print(f"run {run_id}: plan {plan.name} ({plan.path}) -> {store.path}", flush=True)
            try:
                verdict = _execute(plan, store, run_id, args)
            except OSError as e:  # a port or instrument of the bench that cannot be reached
                _err(f"plan {plan.name}: {e}; what was recorded is kept: fix the bench and "
                     f"`rig resume {run_id}`")
                return 2
            results.append(run_summary(store, run_id))
            if not args.json:
                print_summary(store, run_id)
            if verdict not in OK_VERDICTS:
                code = 1
            if verdict == "stopped":
                break
        if getattr(args, "junit", None) and results:
            from rig.junit import write_junit
            write_junit(store, [r["id"] for r in results], args.junit)
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2, default=str))
    return code


def cmd_resume(args) -> int:
    from rig.campaign.report import print_summary, run_summary
    try:
        store = _open_store(args)
        with store:
            row = store.run(args.run)
            from rig.campaign.store import is_alive
            import os
            if row["status"] == "running" and row["pid"] != os.getpid() and is_alive(row):
                return _err(f"run {args.run} is still running (pid {row['pid']})")
            plan = load_plan(row["plan_path"] or f"run-{args.run}.toml", text=row["plan_text"],
                             base_dir=row["plan_dir"])
            verdict = _execute(plan, store, args.run, args)
            if args.json:
                print(json.dumps(run_summary(store, args.run), indent=2, default=str))
            else:
                print_summary(store, args.run)
    except (PlanError, StoreError) as e:
        return _err(str(e))
    return 0 if verdict in OK_VERDICTS else 1


def cmd_runs(args) -> int:
    try:
        store = _open_store(args)
    except StoreError as e:
        return _err(str(e))
    with store:
        runs = store.runs()
    if args.json:
        print(json.dumps(runs, indent=2, default=str))
        return 0
    if not runs:
        print(f"no runs in {store.path}")
    import time
    for r in runs:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["started_at"]))
        print(f"{r['id']:>4}  {when}  {r['name']:<14} {r['status']:<12} {r['verdict'] or '-':<10} "
              f"cases {r['cases']} (pass {r['passed']}, fail {r['failed']}, error {r['errors']}), steps {r['steps']}")
    return 0


def cmd_export(args) -> int:
    from rig.campaign.export import ExportError, export
    try:
        store = _open_store(args)
        with store:
            store.run(args.run)
            out = Path(args.out or f"rig-run-{args.run}-{args.format}")
            files = export(store, args.run, out, args.format)
    except (StoreError, ExportError) as e:
        return _err(str(e))
    if args.json:
        print(json.dumps({"run": args.run, "format": args.format, "files": [str(f) for f in files]}))
    else:
        for f in files:
            print(f)
    return 0


def cmd_report(args) -> int:
    from rig.campaign.html_report import ReportError, default_out, write_report
    path = args.store or default_path()
    if not Path(path).is_file():
        return _err(f"{path}: no result store there, so no run {args.run} to report "
                    "(--store or $RIG_STORE names it)")
    try:
        store = _open_store(args)
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
    except (StoreError, ReportError) as e:
        return _err(str(e))
    return 0


def main(argv=None) -> int:
    """For trying the commands before rig/cli.py wires them in: python -m rig.campaign.cli run ..."""
    parser = argparse.ArgumentParser(prog="rig")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
