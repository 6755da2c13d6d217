"""Campaign bench: where the default `rig run` spends its wall time.

Runs `rig run` (the conformance and electrical plans against the embedded default) as a user does,
into a new store, then prints how each run's wall time divides (rig.campaign.timesplit, as the run
recorded it): characters on the line, the waits the protocol and the profile impose (reaction tr,
answers waited out, polls, pacing, the speed-switch guard, a case's own waits such as tt), and the
rig's own overhead (what none of these covers: Python, the store, starting benches, the virtual
bench's instruments). The target: the rig's overhead under 5 % of the run.

Run: python benches/campaign.py [--rounds 1] [--plan conformance --plan electrical]
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 0.05


def one_round(plans: list[str]) -> list[dict]:
    from rig.campaign.store import Store
    with tempfile.TemporaryDirectory() as d:
        store = Path(d) / "bench.sqlite"
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "rig", "run", *plans, "--store", str(store), "--json"],
                           capture_output=True, text=True, timeout=1800)
        took = time.monotonic() - t0
        if r.returncode not in (0, 1):
            raise SystemExit(f"rig run failed (exit {r.returncode}): {r.stderr[-2000:]}")
        runs = json.loads(r.stdout)
        runs = runs if isinstance(runs, list) else [runs]
        out = []
        with Store(store) as s:
            for run in runs:
                (t,) = s.record(run["id"])["time"]
                out.append({"name": run["name"], "verdict": run["verdict"], "wall_s": t["wall_s"],
                            "split": t["split"]})
        out.append({"name": "(whole command)", "wall_s": took})
        return out


def main() -> int:
    from rig.campaign.timesplit import CATEGORIES, LINE, OVERHEAD, PROTOCOL_WAITS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--plan", action="append", help="plans to run (default: those of `rig run`)")
    args = ap.parse_args()
    plans = args.plan or []
    totals: dict[str, dict] = {}
    command = []
    for _ in range(args.rounds):
        res = one_round(plans)
        command.append(res[-1]["wall_s"])
        print("verdicts: " + ", ".join(f"{run['name']} {run['verdict']}" for run in res[:-1]))
        for run in res[:-1]:
            t = totals.setdefault(run["name"], {"wall_s": 0.0, **dict.fromkeys(CATEGORIES, 0.0)})
            t["wall_s"] += run["wall_s"]
            for k, v in run["split"].items():
                t[k] += v
    all_runs = {"wall_s": sum(t["wall_s"] for t in totals.values()),
                **{c: sum(t[c] for t in totals.values()) for c in CATEGORIES}}
    rows = [*totals.items(), ("all runs", all_runs)]
    print(f"rig run {' '.join(plans) or '(default: conformance, electrical)'}, {args.rounds} round(s); "
          f"the whole command took {sum(command) / len(command):.1f} s per round (Python start and imports included)")
    head = f"{'':<42}" + "".join(f"{name:>14}" for name, _ in rows)
    print(head)
    for c in CATEGORIES:
        print(f"{c[:41]:<42}" + "".join(f"{t[c] / args.rounds:>9.2f} s {t[c] / t['wall_s']:>3.0%}" for _, t in rows))
    print(f"{'wall time':<42}" + "".join(f"{t['wall_s'] / args.rounds:>12.2f} s" for _, t in rows))
    print(f"{'  on the line':<42}" + "".join(f"{t[LINE] / t['wall_s']:>13.1%} " for _, t in rows))
    print(f"{'  protocol waits':<42}" + "".join(
        f"{sum(t[c] for c in PROTOCOL_WAITS) / t['wall_s']:>13.1%} " for _, t in rows))
    print(f"{'  rig overhead (target < 5 %)':<42}" + "".join(f"{t[OVERHEAD] / t['wall_s']:>13.1%} " for _, t in rows))
    share = all_runs[OVERHEAD] / all_runs["wall_s"]
    print(f"rig overhead over all runs: {share:.1%} of the wall time: "
          + ("within" if share < TARGET else "ABOVE") + f" the {TARGET:.0%} target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
