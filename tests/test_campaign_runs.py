"""Campaign runs end to end: the default run, a run killed with SIGKILL and resumed, a fault
campaign's account of tokens, and a sweep that finds the virtual line's failure threshold."""
import json
import signal
import sqlite3
import time

import pytest

from conftest import QUICK, run_rig, start_rig, wait_for
from rig.campaign.plan import load_plan
from rig.campaign.runner import Runner, start_run
from rig.campaign.store import Store
from rig.link import sample_char

def rig(*args, timeout=300):
    return run_rig(*args, timeout=timeout, module="rig.campaign.cli")


def run_plan(tmp_path, text, name="plan"):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    plan = load_plan(path)
    store = Store(tmp_path / f"{name}.sqlite")
    run_id = start_run(plan, store)
    verdict = Runner(plan, store, run_id).run()
    return plan, store, run_id, verdict


def results(store, run_id):
    """What a user compares between runs: every step's verdict and its measurements' names and verdicts."""
    out = {}
    for c in store.cases(run_id):
        for s in store.steps(c["id"]):
            out[(c["key"], s["key"])] = (s["verdict"], tuple((m.name, m.verdict) for m in store.measurements(s["id"])))
    return out


def test_default_run_passes_and_exports(tmp_path):
    store = tmp_path / "r.sqlite"
    t0 = time.monotonic()
    r = rig("run", "--store", str(store), "--json")
    took = time.monotonic() - t0
    try:
        runs = json.loads(r.stdout)
    except ValueError:
        raise AssertionError(f"rig run printed no JSON (exit {r.returncode}): {r.stderr[-3000:]}") from None
    failed = [(c["case"], c.get("failures")) for run in runs for c in run["cases"]
              if c["verdict"] not in ("pass", "info")]
    assert r.returncode == 0 and not failed, failed
    assert [x["name"] for x in runs] == ["conformance", "electrical"]
    for run in runs:
        assert run["verdict"] == "pass" and run["status"] == "done"
        # info: a margin with no amount it must work at (recorded, not judged)
        assert all(c["verdict"] == "pass" or c["verdict"] == "info" and c["use"] == "electrical/margin"
                   for c in run["cases"])
    clauses = {c["clause"] for c in runs[0]["cases"]}
    assert any("§6.4" in c for c in clauses) and any("§7" in c for c in clauses)
    assert took < 90
    listed = json.loads(rig("runs", "--store", str(store), "--json").stdout)
    assert [x["status"] for x in listed] == ["done", "done"]
    out = tmp_path / "csv"
    r = rig("export", str(runs[0]["id"]), "--format", "csv", "--out", str(out), "--store", str(store))
    assert r.returncode == 0, r.stderr
    header = (out / "measurements.csv").read_text().splitlines()[0]
    assert header.split(",")[4:10] == ["name", "value", "unit", "low", "high", "verdict"]
    pytest.importorskip("pyarrow")
    r = rig("export", str(runs[1]["id"]), "--format", "parquet", "--out", str(tmp_path / "pq"), "--store", str(store))
    assert r.returncode == 0, r.stderr
    import pyarrow.parquet as pq
    assert pq.read_table(tmp_path / "pq" / "measurements.parquet").num_rows > 0


KILLABLE = 'name = "killable"\n' + QUICK + '''
[[case]]
use = "benchmark/reaction_time"
repeat = 8
params = { reads = 2 }
[[case]]
use = "meter/6.6/read"
[[case]]
use = "stress/back_to_back"
repeat = 4
params = { exchanges = 3 }
'''


def steps_recorded(db_path) -> int:
    try:
        with sqlite3.connect(db_path, timeout=5) as db:
            return db.execute("SELECT count(*) FROM steps").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_a_run_killed_with_sigkill_resumes_to_the_same_results_without_repeating_a_step(tmp_path):
    plan_path = tmp_path / "killable.toml"
    plan_path.write_text(KILLABLE)
    db = tmp_path / "killed.sqlite"
    proc = start_rig("run", plan_path, "--store", db, "--no-progress", module="rig.campaign.cli")
    # wait, with a deadline, until the run is well under way (or it ended: a failure)
    ended_or_under_way = wait_for(lambda: steps_recorded(db) >= 4 or proc.poll() is not None, 60.0)
    assert steps_recorded(db) >= 4, proc.communicate() if ended_or_under_way else "the run recorded no steps"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    before = steps_recorded(db)
    with Store(db) as store:  # a store left by a killed run opens cleanly
        runs = store.runs()
        assert runs[0]["status"] == "interrupted"
        kept = results(store, 1)
    assert len(kept) == before and 4 <= before < 8 + 1 + 1 + 4
    r = rig("resume", "1", "--store", str(db), "--json")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    with Store(db) as store:
        resumed = results(store, 1)
        keys = [(s["case_id"], s["key"]) for c in store.cases(1) for s in store.steps(c["id"])]
        assert store.runs()[0]["status"] == "done"
    assert len(keys) == len(set(keys))              # no step twice
    for k, v in kept.items():                       # nothing recorded was lost or redone
        assert resumed[k] == v
    _, store, run_id, verdict = run_plan(tmp_path, KILLABLE, "uninterrupted")
    assert verdict == "pass"
    assert results(store, run_id) == resumed        # same final results as an uninterrupted run


FAULTS = 'name = "faults"\n' + QUICK + '''
[[case]]
use = "faults/line"
sweep = { kind = ["bit_flip", "parity", "drop", "truncate", "insert", "baud_error"] }
[[case]]
use = "faults/generator"
sweep = { kind = ["burst"] }
'''


def test_fault_campaign_accounts_for_every_token(tmp_path):
    plan, store, run_id, verdict = run_plan(tmp_path, FAULTS)
    assert verdict == "pass", results(store, run_id)
    cases = {c["key"]: c for c in store.cases(run_id)}
    steps = {s["key"]: s for s in store.steps(cases["faults/line"]["id"])}
    for key, s in steps.items():
        names = {m.name: m for m in store.measurements(s["id"])}
        if key == "summary":
            assert names["tokens applied twice"].value == 0
            continue
        notes = json.loads(s["notes"])
        applied = names["token applied"].value
        if key.startswith("kind=baud_error"):
            assert notes["outcome"] == "failed" and applied == 0     # a clear failure, nothing applied
        else:
            assert notes["outcome"] == "recovered" and applied == 1  # recovered, applied exactly once


def uart_threshold_percent() -> float:
    """The virtual line's configured limit: the smallest baud error (in 0.01 %) at which its UART
    model misreads some character."""
    for hundredths in range(0, 1000):
        r = 1 + hundredths / 10000
        if any(sample_char(w, 9600 * r, 9600) != (w, True) for w in range(256)):
            return hundredths / 100
    raise AssertionError


def test_a_baud_error_sweep_finds_the_virtual_lines_failure_threshold(tmp_path):
    plan_text = 'name = "threshold"\n' + QUICK + '''
[[case]]
use = "electrical/margin"
params = { quantity = "baud_error", exchanges = 1, repeats = 0 }
sweep = { amount = { start = 3.0, stop = 8.0, step = 0.25 } }
stop = { below = { measurement = "success_rate", value = 1.0 } }
'''
    plan, store, run_id, verdict = run_plan(tmp_path, plan_text)
    case = store.cases(run_id)[0]
    summary = next(s for s in store.steps(case["id"]) if s["key"] == "summary")
    found = {m.name: m.value for m in store.measurements(summary["id"])}
    expected = uart_threshold_percent()
    assert abs(found["failure threshold"] - expected) <= 0.25 + 1e-9, (found, expected)
    assert found["last amount that communicated"] < expected
    assert "below" in case["stop_reason"]           # the sweep stopped once communication failed
