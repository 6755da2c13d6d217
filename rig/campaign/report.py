"""Reports of a run: the run's summary (cases, clauses, verdicts, failed measurements), as JSON,
as plain text, and as a rich table on a terminal after `rig run` and `rig resume`.

The HTML report with plots (`rig report`) is rig.campaign.html_report; it builds on run_summary.
"""
from __future__ import annotations

import json
import re
import shlex
import sys

from rig.campaign.registry import STAND_IN
from rig.campaign.store import Store, default_path
from rig.campaign.timesplit import ACQUISITION, LINE, OVERHEAD, PROTOCOL_WAITS, merge
from rig.measurement import ERROR, FAIL, INFO, PASS, combine, format_limits, format_value

MAX_FAILURES = 5      # failed measurements listed per case in the terminal summaries
MAX_FAILURES_HTML = 10   # ... and in the HTML report's summary (all are in its measurement tables)
PERCENTILES = ("p50", "p90", "p99")


def run_summary(store: Store, run_id: int) -> dict:
    """A run as a JSON-able dict (`rig run --json`, the summaries, the HTML report): the run's row,
    its cases (verdict, steps run and planned, stop reason, failed measurements and step errors,
    stand-ins, parameters), the store's path and the run's record."""
    row = dict(store.run(run_id))
    row.pop("plan_text", None)
    cases = []
    for c in store.cases(run_id):
        steps = store.steps(c["id"])
        failed = []
        stand_in = []
        for s in steps:
            notes = json.loads(s["notes"] or "{}") or {}
            if isinstance(notes, dict) and notes.get(STAND_IN):
                stand_in.append(notes[STAND_IN])
            for m in store.measurements(s["id"]):
                if m.verdict == FAIL:
                    failed.append({"step": s["key"], **m.as_dict()})
            if s["error"]:
                failed.append({"step": s["key"], "error": s["error"]})
        cases.append({"case": c["key"], "use": c["use"], "clause": c["clause"], "bench": c["bench"],
                      "status": c["status"], "verdict": c["verdict"], "steps": len(steps),
                      "planned_steps": c["planned_steps"], "stop_reason": c["stop_reason"],
                      "failures": failed, "params": json.loads(c["params"] or "{}"),
                      "stand_in": "; ".join(dict.fromkeys(stand_in))})
    row["cases"] = cases
    row["store"] = store.path
    row["record"] = store.record(run_id)      # what was tested and how (rig.campaign.record)
    return row


def benchmark_rows(store: Store, run_id: int) -> list[dict]:
    """The distributions a run's summaries computed (`<name> n`, `<name> p50` ... `<name> max`): one
    row per case and quantity with n, p50, p90, p99, min, max, unit and the verdict of its limits."""
    cols, rows = store.table(run_id, "measurements")
    found: dict[tuple, dict] = {}
    for r in rows:
        m = dict(zip(cols, r))
        name, _, stat = m["name"].rpartition(" ")
        if not name or stat not in ("n", *PERCENTILES, "min", "max"):
            continue
        d = found.setdefault((m["case_key"], m["step_key"], name),
                             {"case": m["case_key"], "name": name, "unit": "", "verdicts": []})
        d[stat] = m["value"]
        if stat != "n":
            d["unit"] = d["unit"] or m["unit"] or ""
        d["verdicts"].append(m["verdict"])
    out = []
    for d in found.values():
        if all(k in d for k in PERCENTILES):
            out.append({"n": None, "min": None, "max": None, **d, "verdict": combine(d.pop("verdicts"))})
    return out


def time_rows(record: dict) -> tuple[list[dict], float, int]:
    """How the run's wall time divided (all its executions added up): ([{name, s, sub}], total
    seconds, executions); empty when the store kept no time split for the run."""
    times = record.get("time") or []
    if not times:
        return [], 0.0, 0
    split = merge(t["split"] for t in times)
    total = sum(split.values())
    if total <= 0:
        return [], 0.0, len(times)
    waits = sum(split.get(c, 0.0) for c in PROTOCOL_WAITS)
    rows: list[dict] = [{"name": LINE, "s": split.get(LINE, 0.0), "sub": False},
            {"name": "protocol waits the profile imposes", "s": waits, "sub": False}]
    rows += [{"name": f"  {c}", "s": split[c], "sub": True} for c in PROTOCOL_WAITS if split.get(c, 0.0) > 0]
    known = {LINE, OVERHEAD, ACQUISITION, *PROTOCOL_WAITS}
    rows += [{"name": k, "s": v, "sub": False} for k, v in split.items() if k not in known and v > 0]  # another version's
    if split.get(ACQUISITION, 0.0) > 0:
        rows.append({"name": ACQUISITION, "s": split[ACQUISITION], "sub": False})
    rows.append({"name": OVERHEAD, "s": split.get(OVERHEAD, 0.0), "sub": False})
    return rows, total, len(times)


def record_lines(store: Store, run_id: int) -> list[str]:
    """The run's record, short: the DUT's identity, what the profile changes, the time split."""
    rec = store.record(run_id)
    lines = []
    for key, v in rec.items():
        if key.startswith("dut."):
            for ident in v:
                if "IDResponse" in ident:
                    lines.append(f"DUT on {key[4:]}: {ident['IDResponse']}, FOIN {ident.get('FOIN', '-')}, "
                                 f"softwareVersion {ident.get('softwareVersion', '-')}"
                                 + (" (the rig's emulator)" if ident.get("emulated") else ""))
    diff = (rec.get("profile") or {}).get("differences")
    if isinstance(diff, list):
        lines.append("profile: the shipped default" if not diff else
                     "profile: " + ", ".join(f"{d['key']} = {d['value']}" for d in diff[:6])
                     + (f" and {len(diff) - 6} more" if len(diff) > 6 else "")
                     + f" ({'; '.join(dict.fromkeys(d['source'] for d in diff))})")
    rows, total, _ = time_rows(rec)
    if rows:
        by = {r["name"]: r["s"] for r in rows}
        waits = by["protocol waits the profile imposes"]
        inst = by.get(ACQUISITION, 0.0)
        lines.append(f"time: {total:.1f} s = on the line {by[LINE]:.1f} s ({by[LINE] / total:.0%}) + protocol waits "
                     f"{waits:.1f} s ({waits / total:.0%})"
                     + (f" + scope acquisitions {inst:.1f} s ({inst / total:.0%})" if inst else "")
                     + f" + rig overhead {by[OVERHEAD]:.1f} s ({by[OVERHEAD] / total:.1%})")
    return lines


def clause_order(clause: str | None):
    """Sort key: IEC 62055-52 §6.3 before §6.10, then §7; clauses without a § last."""
    clause = clause or ""
    m = re.search(r"§(\d+(?:\.\d+)*)", clause)
    return (0, tuple(int(x) for x in m.group(1).split(".")), clause) if m else (1, (), clause)


def report_command(store: Store, run_id: int) -> str:
    """The command that writes this run's HTML report."""
    where = "" if store.path == default_path() else f" --store {shlex.quote(store.path)}"
    return f"rig report {run_id}{where}"


def report(store: Store, run_id: int) -> str:
    """The plain-text summary (no terminal, or a log)."""
    s = run_summary(store, run_id)
    lines = [f"run {run_id} {s['name']}: {s['status']}, verdict {s['verdict'] or '-'}"]
    for c in s["cases"]:
        lines.append(f"  {c['verdict'] or c['status']:<7} {c['case']:<28} {c['steps']:>4}/{c['planned_steps']:<4} "
                     f"{c['clause']}")
        if c["stop_reason"]:
            lines.append(f"          stopped: {c['stop_reason']}")
        if c["stand_in"]:
            lines.append(f"          {c['stand_in']}")
        for f in c["failures"][:MAX_FAILURES]:
            if "error" in f:
                lines.append(f"          {f['step']}: error: {f['error']}")
            else:
                # the value as stored, all its digits: this text goes to logs
                value = "n/a" if f["value"] is None else f["value"]
                lines.append(f"          {f['step']}: {f['name']} = {value} {f['unit']} "
                             f"{format_limits(f['low'], f['high'])}")
        if len(c["failures"]) > MAX_FAILURES:
            lines.append(f"          ... {len(c['failures']) - MAX_FAILURES} more")
    lines += record_lines(store, run_id)
    lines.append(f"results in {store.path}; HTML report: {report_command(store, run_id)}")
    return "\n".join(lines)


_COLOURS = {PASS: "bold green", FAIL: "bold red", ERROR: "bold dark_orange", INFO: "bold blue"}


# rich is imported where used: `rig run --json`, the JUnit and HTML writers never load it
def _verdict(v: str | None):
    from rich.text import Text
    v = v or "-"
    return Text(v, style=_COLOURS.get(v, "dim"))


def summary_renderable(store: Store, run_id: int):
    """The run's summary for a terminal: cases by clause with coloured verdicts, the counts, the
    failed measurements with their limits, where the results are and how to get the HTML report."""
    from rich import box
    from rich.console import Group, RenderableType
    from rich.table import Table
    from rich.text import Text
    s = run_summary(store, run_id)
    cases = s["cases"]
    head = Text.assemble((f"run {run_id} {s['name']}", "bold"), f": {s['status']}, verdict ",
                         _verdict(s["verdict"] or s["status"]))
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=False)
    table.add_column("clause", overflow="fold", ratio=3)
    table.add_column("case", overflow="fold", ratio=2)
    table.add_column("verdict", no_wrap=True)
    table.add_column("steps", justify="right", no_wrap=True)
    table.add_column("failed", justify="right", no_wrap=True)
    by_clause: dict[str, list] = {}
    for c in cases:
        by_clause.setdefault(c["clause"] or "", []).append(c)
    for clause in sorted(by_clause, key=clause_order):
        for j, c in enumerate(by_clause[clause]):
            nfail = len(c["failures"])
            table.add_row(clause if j == 0 else "", c["case"], _verdict(c["verdict"] or c["status"]),
                          f"{c['steps']}/{c['planned_steps'] or '?'}",
                          Text(str(nfail), style="red" if nfail else "dim"))
    shown = (PASS, FAIL, ERROR) + ((INFO,) if any(c["verdict"] == INFO for c in cases) else ())
    counts = {v: sum(1 for c in cases if c["verdict"] == v) for v in shown}
    count_line = Text.assemble(f"{len(cases)} cases: ", *[
        (f"{counts[v]} {v}" + (", " if v != shown[-1] else ""), _COLOURS[v] if counts[v] else "dim")
        for v in shown])
    parts: list[RenderableType] = [head, table, count_line]
    for c in cases:
        if c["stand_in"]:
            parts.append(Text.assemble((c["case"], "bold"), ": ", (c["stand_in"], "yellow")))
    failing = [c for c in cases if c["failures"]]
    if failing:
        ft = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title="failed measurements",
                   title_justify="left", title_style="bold red", expand=False)
        for name in ("case", "step", "measurement", "value", "limits", "basis"):
            ft.add_column(name, overflow="fold", justify="right" if name == "value" else "left")
        for c in failing:
            for f in c["failures"][:MAX_FAILURES]:
                if "error" in f:
                    ft.add_row(c["case"], f["step"], Text(f"error: {f['error']}", style="dark_orange"), "", "", "")
                else:
                    ft.add_row(c["case"], f["step"], f["name"], Text(format_value(f["value"], f["unit"]), style="red"),
                               format_limits(f["low"], f["high"]), f["basis"] or "")
            if len(c["failures"]) > MAX_FAILURES:
                ft.add_row(c["case"], "", Text(f"... {len(c['failures']) - MAX_FAILURES} more", style="dim"),
                           "", "", "")
            if c["stop_reason"]:
                ft.add_row(c["case"], "", Text(f"stopped: {c['stop_reason']}", style="dim"), "", "", "")
        parts += [Text(""), ft]
    for line in record_lines(store, run_id):
        parts.append(Text(line, style="dim"))
    parts.append(Text.assemble(("results ", "dim"), store.path, ("  HTML report: ", "dim"),
                               (report_command(store, run_id), "bold cyan")))
    return Group(*parts)


def print_summary(store: Store, run_id: int, file=None, console=None) -> None:
    """After `rig run` and `rig resume`: the rich summary on a terminal (or the console given),
    the plain text otherwise."""
    out = file or sys.stdout
    if console is None:
        isatty = getattr(out, "isatty", None)
        if not (isatty and isatty()):
            print(report(store, run_id), file=out, flush=True)
            return
        from rich.console import Console
        console = Console(file=out)
    console.print(summary_renderable(store, run_id))


# ---------------------------------------------------------------------------------------------
# exchanges as text: the failed-step excerpt of the HTML report and of JUnit XML

MAX_EXCHANGES = 5   # exchanges quoted in a failure


def _bytes(b) -> str:
    if b is None:
        return "-"
    return repr(bytes(b))[1:]      # printable, with \x01 for control characters


def exchange_text(e: dict) -> str:
    """One exchange as text: outcome, tr, ta, attempts, NAKs, the bytes both ways, errors."""
    tr = "-" if e["tr_ns"] is None else f"{e['tr_ns'] / 1e6:.3f} ms"
    ta = "-" if e["max_ta_ns"] is None else f"{e['max_ta_ns'] / 1e6:.3f} ms"
    lines = [f"exchange {e['seq']} {e['name'] or ''}: {'ok' if e['ok'] else 'FAILED'}, answer {e['answer_kind'] or '-'}, "
             f"tr {tr}, max ta {ta}, attempts {e['attempts']}, NAKs sent {e['naks_sent']} "
             f"received {e['naks_received']}",
             f"  request: {_bytes(e['request'])}",
             f"  answer:  {_bytes(e['answer'])}"]
    for key in ("errors", "recovered"):
        v = json.loads(e[key]) if e[key] else None
        if v:
            lines.append(f"  {key}: {v}")
    return "\n".join(lines)


def failed_exchanges(store: Store, step_id: int, limit: int = MAX_EXCHANGES) -> tuple[list[dict], int, bool]:
    """(the first `limit` exchanges that failed, how many more failed, whether these are failures):
    when every exchange went through, the first ones are shown instead (what the measurements judge)
    and the third item is False."""
    ex = store.exchanges(step_id)
    bad = [e for e in ex if not e["ok"]]
    shown = bad or ex
    return shown[:limit], max(0, len(shown) - limit), bool(bad)


def excerpt_text(store: Store, step_id: int, ellipsis: str = "...") -> str:
    """The failed-step excerpt: the first failed exchanges as text, and how many more failed."""
    shown, more, failed = failed_exchanges(store, step_id)
    text = "\n\n".join(exchange_text(e) for e in shown)
    if more:
        text += f"\n\n{ellipsis} and {more} more {'failed ' if failed else ''}exchange(s)"
    return text
