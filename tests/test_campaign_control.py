"""Campaign control as a test engineer uses it: `rig cases`, `rig check`, `rig run --case`,
`--rerun-failed`, `--dry-run`, `rig init`, Ctrl-C and `rig resume`; all as subprocesses."""
from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path


from conftest import run_rig as rig
from conftest import quick_profile, start_rig
from rig.campaign.cases import LIBRARY
from rig.campaign.catalog import plan_format_markdown
from rig.campaign.plan import load_plan, shipped_plans

ROOT = Path(__file__).resolve().parent.parent
QUICK = quick_profile(execution_ms=150, not_ready_poll_ms=50)


def plan_file(tmp_path, name, body):
    f = tmp_path / f"{name}.toml"
    f.write_text(f'name = "{name}"\n' + QUICK + body)
    return f


def runs(store) -> list[dict]:
    r = rig("runs", "--json", "--store", store)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def case_keys(store, run_id) -> list[str]:
    with sqlite3.connect(store) as db:
        return [k for (k,) in db.execute("SELECT key FROM cases WHERE run_id=? ORDER BY position", (run_id,))]


# --- rig cases and the plan-format reference ------------------------------------------------------
def test_cases_json_lists_every_case_with_clause_params_and_benches():
    r = rig("cases", "--json")
    assert r.returncode == 0, r.stderr
    cases = {c["name"]: c for c in json.loads(r.stdout)}
    assert set(cases) == set(LIBRARY)
    for name, c in cases.items():
        assert c["clause"] and c["checks"] and c["roles"] and c["benches"], name
        for p in c["params"]:
            assert p["type"] in ("boolean", "integer", "number", "string", "list", "table"), (name, p)
            assert p["description"], f"{name}: parameter {p['name']} has no description"
    margin = {p["name"]: p for p in cases["electrical/margin"]["params"]}
    assert margin["quantity"]["choices"] == ["baud_error", "ber", "noise", "level", "loop_current"]
    assert cases["meter/6.7/tt"]["params"][0] | {"description": ""} == {
        "name": "margin_ms", "type": "integer", "default": 100, "unit": "ms", "choices": None, "description": "",
        "names": None}
    assert {p["name"]: p["names"] for p in cases["meter/7/maintained"]["params"]} == {"registers": "register"}
    assert "embedded" in cases["faults/line"]["benches"]


def test_cases_text_shows_one_case_with_its_parameters():
    r = rig("cases", "meter/6.7/tt")
    assert r.returncode == 0, r.stderr
    assert "IEC 62055-52 §6.7" in r.stdout and "margin_ms (integer, default 100 [ms])" in r.stdout
    assert "meter/6.6/read" not in r.stdout
    r = rig("cases", "no/such/case")
    assert r.returncode == 2 and "no case matches" in r.stderr


def test_plan_format_doc_is_the_one_generated_from_the_registry():
    committed = (ROOT / "docs" / "plan-format.md").read_text(encoding="utf-8")
    assert committed.rstrip("\n") == plan_format_markdown().rstrip("\n"), \
        "docs/plan-format.md is stale: rig cases --markdown > docs/plan-format.md"
    for name in LIBRARY:
        assert f"### `{name}`" in committed


# --- rig check, rig run --dry-run -------------------------------------------------------------------
def test_check_accepts_every_shipped_plan_and_a_port_bench_without_touching_it(tmp_path):
    r = rig("check", *shipped_plans())
    assert r.returncode == 0, r.stderr
    port = tmp_path / "port.toml"
    port.write_text('[[bench]]\nname = "lab"\nkind = "port"\nport = "/dev/ttyNOSUCHPORT"\n\n'
                    '[[case]]\nuse = "meter/6.4/messages"\n')
    r = rig("check", port)
    assert r.returncode == 0, r.stderr
    assert "1 case(s)" in r.stdout and "/dev/ttyNOSUCHPORT" in r.stdout


def test_a_case_the_bench_cannot_run_is_refused_at_load_with_file_line_and_key(tmp_path):
    f = tmp_path / "lab.toml"
    f.write_text('[[bench]]\nname = "lab"\nkind = "port"\nport = "/dev/ttyUSB0"\n\n'
                 '[[case]]\nuse = "meter/6.6/read"\n\n'
                 '[[case]]\nuse = "faults/line"\nparams = { kind = "parity" }\n')
    r = rig("check", f)
    assert r.returncode == 2
    assert f"{f}:10: case[1].use: 'faults/line' cannot run on bench 'lab'" in r.stderr
    assert "virtual line" in r.stderr
    # a swept parameter that needs what the bench lacks: the sweep point is named
    f.write_text('[[bench]]\nname = "lab"\nkind = "port"\nport = "/dev/ttyUSB0"\n\n'
                 '[[case]]\nuse = "electrical/margin"\nbench = "lab"\n'
                 'sweep = { quantity = ["noise", "baud_error"] }\n')
    r = rig("run", "--dry-run", "--store", tmp_path / "s.sqlite", f)
    assert r.returncode == 2
    assert f"{f}:8: case[0].bench:" in r.stderr and "(at quantity=noise)" in r.stderr
    assert "instruments" in r.stderr
    assert not (tmp_path / "s.sqlite").exists()


def test_a_register_the_profile_does_not_have_is_refused_at_load(tmp_path):
    f = tmp_path / "reg.toml"
    f.write_text('name = "reg"\n\n[[case]]\nuse = "stress/session_cycling"\nparams = { register = "tokenStatuss" }\n\n'
                 '[[case]]\nuse = "meter/7/maintained"\nsweep = { registers = [["FOIN"], ["FOIN", "nope"]] }\n')
    r = rig("check", f)
    assert r.returncode == 2
    assert f"{f}:5: case[0].params.register: got 'tokenStatuss' (expected a register of the profile (" in r.stderr
    f.write_text(f.read_text().replace("tokenStatuss", "tokenStatus"))
    r = rig("check", f)
    assert r.returncode == 2 and f"{f}:9: case[1].sweep.registers:" in r.stderr and "got 'nope'" in r.stderr


def test_a_plan_without_cases_is_refused_clearly(tmp_path):
    f = tmp_path / "nocase.toml"
    f.write_text('name = "nocase"\n')
    r = rig("check", f)
    assert r.returncode == 2
    assert f"{f}: no cases" in r.stderr and "[[case]]" in r.stderr and "rig cases" in r.stderr


def test_check_with_case_selects_across_the_plans():
    r = rig("check", "conformance", "faults", "-k", "faults/line")
    assert r.returncode == 0, r.stderr
    assert "plan faults: 1 case(s), 12 step(s)" in r.stdout and "plan conformance" not in r.stdout


def test_dry_run_prints_what_would_run_and_stores_nothing(tmp_path):
    store = tmp_path / "s.sqlite"
    r = rig("run", "--dry-run", "--case", "meter/6.6/*", "--store", store)
    assert r.returncode == 0, r.stderr
    assert "meter/6.6/read" in r.stdout and "meter/6.4/messages" not in r.stdout
    assert "electrical" not in r.stdout          # no case of it matches: the plan is left out
    assert "nothing was run" in r.stdout and not store.exists()


# --- rig run --case, --rerun-failed ------------------------------------------------------------------
def test_run_case_runs_only_the_matching_cases(tmp_path):
    store = tmp_path / "s.sqlite"
    r = rig("run", "--no-progress", "-k", "6.6/read", "--case", "meter/7/*", "conformance", "--store", store)
    assert r.returncode in (0, 1) and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert case_keys(store, 1) == ["meter/6.6/read", "meter/7/maintained"]
    r = rig("run", "-k", "nothing-like-this", "conformance", "--store", store)
    assert r.returncode == 2 and "no case of conformance matches" in r.stderr and "meter/6.6/read" in r.stderr


def test_rerun_failed_runs_again_only_the_failed_cases(tmp_path):
    store = tmp_path / "s.sqlite"
    f = plan_file(tmp_path, "mixed", '[[case]]\nuse = "meter/6.6/read"\n\n'
                  '[[case]]\nuse = "faults/line"\nparams = { kind = "baud_error", expect = "recovered" }\n')
    r = rig("run", "--no-progress", f, "--store", store)
    assert r.returncode == 1, r.stdout + r.stderr
    r = rig("run", "--no-progress", "--rerun-failed", "1", "--store", store)
    assert r.returncode == 1, r.stdout + r.stderr
    assert case_keys(store, 2) == ["faults/line"]
    assert [x["name"] for x in runs(store)] == ["mixed", "mixed"]
    r = rig("run", "--rerun-failed", "1", "--case", "meter/*", "--store", store)
    assert r.returncode == 2 and "none of the failed cases of run 1 matches" in r.stderr


# --- Ctrl-C and rig resume ---------------------------------------------------------------------------
def test_ctrl_c_exits_130_and_resume_goes_on_to_the_plans_not_started(tmp_path):
    store = tmp_path / "s.sqlite"
    first = plan_file(tmp_path, "first", "".join(f'[[case]]\nuse = "{u}"\n' for u in (
        "meter/6.6/read", "meter/6.6/write", "meter/6.6/break", "meter/6.6/undefined")))
    second = plan_file(tmp_path, "second", '[[case]]\nuse = "meter/7/maintained"\n')
    proc = start_rig("run", "--no-progress", first, second, "--store", store)
    try:
        assert proc.stdout.readline().startswith("run 1: plan first")
        assert proc.stdout.readline().startswith("pass")        # the first case is done
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    stopped = int(err.split("`rig resume ")[1].split()[0])
    assert f"`rig resume {stopped} --store {store}`" in err and "Traceback" not in err
    r = rig("resume", stopped, "--no-progress", "--store", store)
    # (the verdicts are the emulator's; under heavy load a session can time out: what is checked
    # here is that every plan ran to its end, once)
    assert r.returncode in (0, 1) and "Traceback" not in r.stderr, r.stdout + r.stderr
    done = runs(store)
    assert [(x["name"], x["status"]) for x in done] == [("first", "done"), ("second", "done")]
    assert case_keys(store, 1) == ["meter/6.6/read", "meter/6.6/write", "meter/6.6/break", "meter/6.6/undefined"]
    assert case_keys(store, 2) == ["meter/7/maintained"]
    r = rig("resume", "1", "--store", store)
    assert r.returncode == 0 and f"run 1 is finished (verdict {done[0]['verdict']})" in r.stdout
    assert len(runs(store)) == 2                               # nothing started twice


def test_resume_of_a_selection_keeps_the_selection(tmp_path):
    """A run of some cases (--case) of two plans, stopped: resumed, those cases only, in both plans."""
    store = tmp_path / "s.sqlite"
    proc = start_rig("run", "--no-progress", "-k", "meter/6.6/*", "-k", "levels/optical", "conformance", "electrical",
                     "--store", store)
    try:
        assert proc.stdout.readline().startswith("run 1")
        assert proc.stdout.readline().startswith("pass")
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    r = rig("resume", "1", "--no-progress", "--store", store)
    assert r.returncode in (0, 1) and "Traceback" not in r.stderr, r.stdout + r.stderr
    wanted = [c.key for c in load_plan("conformance").cases if c.key.startswith("meter/6.6/")]
    assert sorted(case_keys(store, 1)) == sorted(wanted)
    assert case_keys(store, 2) == ["levels/optical"]
    assert [x["name"] for x in runs(store)] == ["conformance", "electrical"]


# --- rig init -------------------------------------------------------------------------------------
def test_init_writes_templates_that_load(tmp_path):
    from rig.bench.config import load_bench
    from rig.profile import load_profile
    plan, prof, bench = tmp_path / "p.toml", tmp_path / "prof.toml", tmp_path / "b.toml"
    for what, f in (("plan", plan), ("profile", prof), ("bench", bench)):
        r = rig("init", what, f)
        assert r.returncode == 0, r.stderr
        assert f.read_text().startswith("#")
    assert rig("check", plan).returncode == 0
    assert load_profile(prof).timing == load_profile(None).timing      # every value commented out
    assert load_bench(bench).option == "current-loop"
    r = rig("init", "plan", plan)
    assert r.returncode == 2 and "exists; not overwritten" in r.stderr


def test_init_from_a_shipped_plan_copies_it(tmp_path):
    f = tmp_path / "mine.toml"
    r = rig("init", "plan", "--from", "faults", f)
    assert r.returncode == 0, r.stderr
    assert f.read_text() == (ROOT / "rig" / "plans" / "faults.toml").read_text()
    r = rig("init", "plan", "--from", "nosuch", tmp_path / "x.toml")
    assert r.returncode == 2 and "not a shipped plan" in r.stderr


# --- -q, -v, --log-file ------------------------------------------------------------------------------
def test_log_file_has_iso_times_and_each_step(tmp_path):
    store, log = tmp_path / "s.sqlite", tmp_path / "rig.log"
    r = rig("run", "-q", "--log-file", log, "-k", "6.6/read", "conformance", "--store", store)
    assert r.returncode == 0, r.stderr
    assert "pass   meter/6.6/read" not in r.stdout        # -q: no per-case lines
    text = log.read_text()
    import re
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d DEBUG rig.campaign: run 1: "
                     r"meter/6.6/read \[rep=0\]: pass", text, re.M), text
    assert "run 1: case meter/6.6/read: pass" in text
