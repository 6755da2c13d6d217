"""The run's record (what was tested and how) and its honest figures: the DUT's identity as read
from it, the effective profile with sources, the plan's overrides, the bench with each
instrument's *IDN?, rig's version and host, where the time went; tr and ta limits citing the
profile's own source; the failed-step excerpt showing the first failures and how many more;
stand-in measurements marked; a store from before the record still read."""
import html
import sqlite3

import pytest

from reportrun import Page, rig
from rig.campaign.html_report import write_report
from rig.campaign.plan import load_plan
from rig.campaign.runner import Runner, start_run
from rig.campaign.store import StepRecord, Store
from rig.campaign.timesplit import CASE_WAITS, LINE, OVERHEAD, PACING, POLLS, REACTION, TimeLedger
from rig.exchange import Exchange
from rig.measurement import Measurement
from rig.profile import load_profile

PLAN = '''
name = "record-demo"
[profile.identification]
manufacturer = "RIg"
[profile.emulator]
execution_ms = 60
[profile.timing]
not_ready_poll_ms = 20
tr_max_ms = 1200

[[bench]]
name = "meter"
kind = "embedded"
role = "meter-dut"
interface = "current-loop"

[[bench]]
name = "hhu"
kind = "embedded"
role = "hhu-dut"

[[case]]
use = "meter/6.6/read"

[[case]]
use = "meter/6.7/timing"
params = { reads = 2 }

[[case]]
use = "electrical/levels"
name = "levels/current-loop"

[[case]]
use = "hhu/6.4/session"
bench = "hhu"

[[case]]
use = "electrical/levels"
name = "levels/hhu"
bench = "hhu"
params = { direction = "to_meter" }
'''


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("record")
    path = d / "record-demo.toml"
    path.write_text(PLAN)
    plan = load_plan(path)
    store_path = d / "record.sqlite"
    with Store(store_path) as store:
        run_id = start_run(plan, store)
        Runner(plan, store, run_id).run()
        html_path = write_report(store, run_id, d / "record.html")
    text = html_path.read_text(encoding="utf-8")
    return plan, store_path, run_id, text, Page(text)


def test_the_record_names_the_dut_as_read_from_it(run):
    _, store_path, run_id, _, page = run
    with Store(store_path) as store:
        rec = store.record(run_id)
    (meter,) = rec["dut.meter"]
    assert meter["IDResponse"] == "/RIg5RIG STS EMULATOR"
    values = load_profile().emulator.register_values       # what the emulator answers
    assert meter["FOIN"] == values["FOIN"] and meter["softwareVersion"] == values["softwareVersion"]
    (hhu,) = rec["dut.hhu"]
    assert "HHU" in hhu["note"]
    rows = {cells[0]: cells for _, cells in page.tables["record-dut"][1:]}
    assert rows["meter"][1:4] == ["/RIg5RIG STS EMULATOR", values["FOIN"], values["softwareVersion"]]


def test_the_record_holds_the_profile_differences_with_sources_and_the_plans_overrides(run):
    plan, store_path, run_id, _, page = run
    with Store(store_path) as store:
        rec = store.record(run_id)
    diff = {d["key"]: d for d in rec["profile"]["differences"]}
    assert set(diff) == {"identification.manufacturer", "emulator.execution_ms", "timing.not_ready_poll_ms",
                         "timing.tr_max_ms"}
    assert diff["timing.tr_max_ms"]["value"] == 1200 and diff["timing.tr_max_ms"]["default"] == 1500
    assert all(d["source"] == f"plan {plan.path} [profile]" for d in diff.values())
    assert rec["plan"]["profile_overrides"]["timing"] == {"not_ready_poll_ms": 20, "tr_max_ms": 1200}
    assert rec["plan"]["cases"]["meter/6.7/timing"] == {"params": {"reads": 2}}
    shown = {cells[0]: cells for _, cells in page.tables["record-profile"][1:]}
    assert shown["timing.tr_max_ms"][1:] == ["1200", "1500", f"plan {plan.path} [profile]"]


def test_the_record_holds_the_bench_with_each_instruments_idn(run):
    _, store_path, run_id, text, page = run
    from rig.bench.models import load_model
    with Store(store_path) as store:
        rec = store.record(run_id)
    bench = rec["bench.meter"]
    assert bench["kind"] == "embedded" and bench["interface"] == "current-loop"
    insts = {i["role"]: i for i in bench["instruments"]}
    assert set(insts) == {"scope", "generator", "supply", "meter"}
    for role, i in insts.items():
        assert i["resource"].startswith("TCPIP::127.0.0.1::") and i["virtual"]
        assert load_model(i["model"]).idn_matches(i["idn"]), (role, i["idn"])
        assert html.escape(i["idn"]) in text or i["idn"] in html.unescape(text)
    assert bench["probes"]["to_hhu"] and bench["probe_gain"] > 0
    (r,) = rec["rig"]
    import rig as rig_pkg
    assert r["version"] == rig_pkg.__version__ and r["host"] and r["python"]


def test_the_time_split_adds_up_to_the_wall_time(run):
    _, store_path, run_id, text, page = run
    with Store(store_path) as store:
        (t,) = store.record(run_id)["time"]
    split = t["split"]
    assert sum(split.values()) == pytest.approx(t["wall_s"], rel=1e-6)
    assert split[LINE] > 0 and split[REACTION] > 0 and split[OVERHEAD] >= 0
    rows = {cells[0].strip(): cells for _, cells in page.tables["time-table"][1:]}
    assert {LINE, OVERHEAD, "protocol waits the profile imposes"} <= set(rows)


def test_time_split_counts_each_moment_once_by_priority():
    ledger = TimeLedger()
    ms = 1_000_000
    ledger.add(0, 10 * ms, LINE)
    ledger.add(5 * ms, 30 * ms, POLLS)          # overlaps the line: counted from 10 ms on
    ledger.add(20 * ms, 40 * ms, PACING)        # under the poll until 30 ms
    ledger.add(50 * ms, 60 * ms, CASE_WAITS)
    split = ledger.split(0, 100 * ms)
    assert split[LINE] == pytest.approx(0.010) and split[POLLS] == pytest.approx(0.020)
    assert split[PACING] == pytest.approx(0.010) and split[CASE_WAITS] == pytest.approx(0.010)
    assert split[OVERHEAD] == pytest.approx(0.050)
    assert sum(split.values()) == pytest.approx(0.100)


def test_tr_and_ta_limits_cite_the_profiles_source_or_the_override(run):
    plan, store_path, run_id, _, _ = run
    with Store(store_path) as store:
        case = next(c for c in store.cases(run_id) if c["key"] == "meter/6.7/timing")
        ms = [m for s in store.steps(case["id"]) for m in store.measurements(s["id"])]
    tr = [m for m in ms if m.name.endswith(": tr")]
    ta = [m for m in ms if m.name.endswith(": ta max")]
    assert tr and ta
    # tr_min (fast: lower-case third letter) is the default's, tr_max the plan's
    assert {m.basis for m in tr} == {f"IEC 62056-21 §6.4 (profile); plan {plan.path} [profile]"}
    assert {m.basis for m in ta} == {"IEC 62056-21 §6.4 (profile)"}
    assert not any("§5" in m.basis for m in tr + ta)


def test_profile_basis_names_the_default_source_or_the_user_profile(tmp_path):
    mine = tmp_path / "mine.toml"
    mine.write_text("[timing]\nta_ms = 1000\n")
    p = load_profile(mine)
    assert load_profile().basis("timing.tr_max") == "IEC 62056-21 §6.4 (profile)"
    assert load_profile().basis("timing.execution_limit") == "assumed (profile)"
    assert p.basis("timing.ta") == f"user profile {mine}"
    assert p.differences() == [{"key": "timing.ta_ms", "value": 1000, "default": 1500,
                                "source": f"user profile {mine}"}]


def test_stand_in_measurements_are_marked(run):
    _, store_path, run_id, text, page = run
    # the HHU bench has no instruments: its levels come from a capture synthesised from the wire record
    with Store(store_path) as store:
        case = next(c for c in store.cases(run_id) if c["key"] == "levels/hhu")
        (step,) = store.steps(case["id"])
        ms = store.measurements(step["id"])
    assert any("stand-in" in m.basis for m in ms if m.name == "mark_level")
    rows = {cells[1]: cells for _, cells in page.tables["summary-cases"][1:]}
    assert "stand-in" in rows["levels/hhu"][0] and "stand-in" not in rows["levels/current-loop"][0]


def _exchange(i: int, ok: bool) -> Exchange:
    e = Exchange(f"read {i}", request=b"\x01R1\x02C.1()\x03", request_start_ns=i, request_end_ns=i + 1,
                 attempts=1)
    if not ok:
        e.errors.append(f"no answer to request {i}")
    return e


def test_the_failed_step_excerpt_shows_the_first_failures_and_how_many_more(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        run = store.new_run("excerpt", "name = 'excerpt'", None, None)
        c = store.ensure_case(run, "stress", "stress/back_to_back", "(clause)", "t", "meter", 0, 1, {})
        exs = [_exchange(i, ok=i not in range(3, 11)) for i in range(14)]      # 3..10 failed: 8
        ms = [Measurement(f"m{i}", 0, "bool", 1, 1) for i in range(13)]        # 13 failed measurements
        store.record_step(c, StepRecord("rep=0", 0, {}, ms, exs))
        store.finish_case(c, "done", "fail")
        store.finish_run(run, "done", "fail")
        text = html.unescape(write_report(store, run, tmp_path / "r.html").read_text(encoding="utf-8"))
        from rig.junit import junit_xml
        xml = junit_xml(store, [run]).decode()
    excerpt = text[text.index("Failed exchanges of the fail step rep=0"):]
    excerpt = excerpt[:excerpt.index("</pre>")]
    assert [f"exchange {i} " in excerpt for i in range(14)] == [i in range(3, 8) for i in range(14)]
    assert "… and 3 more failed exchange(s)" in excerpt
    assert "no answer to request 3" in xml and "... and 3 more failed exchange(s)" in xml
    page = Page(text)
    rows = page.tables["failures-table"][1:]
    assert [cells[2] for _, cells in rows[:10]] == [f"m{i}" for i in range(10)]
    assert "more" in rows[10][0] and "3 more failure(s)" in rows[10][1][1]


def test_a_store_from_before_the_record_is_read_and_says_so(tmp_path):
    path = tmp_path / "old.sqlite"
    with Store(path) as store:            # a schema-1 store: no run_record table, version 1
        run = store.new_run("old", "name = 'old'", None, None)
        c = store.ensure_case(run, "meter/6.6/read", "meter/6.6/read", "(clause)", "read", "meter", 0, 1, {})
        store.record_step(c, StepRecord("rep=0", 0, {}, [Measurement("answered", 1, "bool", 1, 1)]))
        store.finish_case(c, "done", "pass")
        store.finish_run(run, "done", "pass")
    db = sqlite3.connect(path)
    db.execute("DROP TABLE run_record")
    db.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    db.commit()
    db.close()
    r = rig("report", "1", "--store", path, "--out", tmp_path / "old.html")
    assert r.returncode == 0, r.stderr
    text = html.unescape((tmp_path / "old.html").read_text(encoding="utf-8"))
    assert "stored before rig kept a record of what was tested" in text
    db = sqlite3.connect(path)             # the report only read it: the old store is as it was
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("1",)
    assert db.execute("SELECT name FROM sqlite_master WHERE name='run_record'").fetchone() is None
    db.close()
    with Store(path):                      # opened for writing (a run, a resume): brought up to schema 2
        pass
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("2",)
    assert db.execute("SELECT count(*) FROM run_record").fetchone() == (0,)


def test_the_text_summary_shows_the_dut_the_profile_and_the_time(run):
    from rig.campaign.report import report
    _, store_path, run_id, _, _ = run
    with Store(store_path) as store:
        text = report(store, run_id)
    assert "DUT on meter: /RIg5RIG STS EMULATOR, FOIN RIG0000000000001" in text
    assert "profile: " in text and "timing.tr_max_ms = 1200" in text
    assert "time: " in text and "on the line" in text and "rig overhead" in text


def test_text_from_a_plan_or_a_dut_is_never_markup_and_the_styles_are_intact(tmp_path):
    evil = '<img src=x onerror="alert(1)">'
    with Store(tmp_path / "s.sqlite") as store:
        run = store.new_run(evil, "name = 'x'", None, None)
        c = store.ensure_case(run, evil, "meter/6.6/read", evil, evil, "meter", 0, 1, {})
        store.record_step(c, StepRecord("rep=0", 0, {}, [Measurement(evil, 1, evil, 1, 1, evil)], error=evil))
        store.set_record(run, "dut.meter", [{"IDResponse": evil, "FOIN": evil, "softwareVersion": evil}])
        store.finish_case(c, "done", "error")
        store.finish_run(run, "done", "error")
        text = write_report(store, run, tmp_path / "r.html").read_text(encoding="utf-8")
    assert evil not in text and "&lt;img src=x" in text
    page = Page(text)
    assert not any(u == "x" for u in page.urls)
    style = text[text.index("<style>"):text.index("</style>")]
    assert '"Segoe UI"' in style and "&#34;" not in style and "&quot;" not in style


def test_junit_names_the_dut_and_rig(run):
    import xml.etree.ElementTree as ET
    from rig.junit import junit_xml
    _, store_path, run_id, _, _ = run
    with Store(store_path) as store:
        suite = ET.fromstring(junit_xml(store, [run_id])).find("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["dut meter"] == "IDResponse /RIg5RIG STS EMULATOR, FOIN RIG0000000000001, softwareVersion RIG-EMU 0.1"
    assert props["rig"].startswith("0.1.0 on ")


def test_the_summary_marks_stand_ins(run):
    from rig.campaign.report import report
    _, store_path, run_id, _, _ = run
    with Store(store_path) as store:
        text = report(store, run_id)
    after = text[text.index("levels/hhu"):]
    assert after.splitlines()[1].strip().startswith("stand-in: a capture synthesised from the virtual line's wire record")
