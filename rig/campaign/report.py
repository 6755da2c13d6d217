"""Reports of a run: a text table of cases (clause, verdict, failed measurements) and a JSON summary."""
from __future__ import annotations

import json

from rig.campaign.store import Store


def run_summary(store: Store, run_id: int) -> dict:
    row = dict(store.run(run_id))
    row.pop("plan_text", None)
    cases = []
    for c in store.cases(run_id):
        steps = store.steps(c["id"])
        failed = []
        for s in steps:
            for m in store.measurements(s["id"]):
                if m.verdict == "fail":
                    failed.append({"step": s["key"], **m.as_dict()})
            if s["error"]:
                failed.append({"step": s["key"], "error": s["error"]})
        cases.append({"case": c["key"], "use": c["use"], "clause": c["clause"], "bench": c["bench"],
                      "status": c["status"], "verdict": c["verdict"], "steps": len(steps),
                      "planned_steps": c["planned_steps"], "stop_reason": c["stop_reason"],
                      "failures": failed, "params": json.loads(c["params"] or "{}")})
    row["cases"] = cases
    row["store"] = store.path
    return row


def report(store: Store, run_id: int) -> str:
    s = run_summary(store, run_id)
    lines = [f"run {run_id} {s['name']}: {s['status']}, verdict {s['verdict'] or '-'}"]
    for c in s["cases"]:
        lines.append(f"  {c['verdict'] or c['status']:<7} {c['case']:<28} {c['steps']:>4}/{c['planned_steps']:<4} "
                     f"{c['clause']}")
        if c["stop_reason"]:
            lines.append(f"          stopped: {c['stop_reason']}")
        for f in c["failures"][:5]:
            if "error" in f:
                lines.append(f"          {f['step']}: error: {f['error']}")
            else:
                lines.append(f"          {f['step']}: {f['name']} = {f['value']} {f['unit']} "
                             f"[{'' if f['low'] is None else f['low']} .. {'' if f['high'] is None else f['high']}]")
        if len(c["failures"]) > 5:
            lines.append(f"          ... {len(c['failures']) - 5} more")
    return "\n".join(lines)
