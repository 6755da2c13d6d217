"""`rig report` of every shipped plan, and of sweeps over every kind of value (numbers, integers,
names, two dimensions, steps that could not be carried out, steps a stop condition left out).

Each shipped plan is run small, as a user makes a plan quick: repeats and counts cut down, each
sweep cut to its first values (the same cases, benches and kinds of sweep). The conformance plan
leaves out the cases that only wait out silences (tt, tr_max after a BreakCommand); their data is
of the kinds the other cases record. The `electrical-port` plan needs `rig bench serve`: its report
is checked in tests/test_campaign_port_bench.py."""
import tomllib

import pytest
from tomli_w import dumps

from reportrun import Page, rig
from rig.campaign.plan import PLANS_DIR, load_plan, shipped_plans
from rig.campaign.runner import Runner, start_run
from rig.campaign.store import Store

SLOW_CONFORMANCE = {"meter/6.7/tt", "meter/6.6/break", "meter/6.4/messages", "meter/6.6/token_lockout",
                    "hhu/6.7/timing"}
SMALL = {"reads": 2, "tokens": 1, "exchanges": 1}


def small_plan(name: str) -> dict:
    """A shipped plan made quick: one repeat, small counts, each sweep's first three values."""
    data = tomllib.loads((PLANS_DIR / f"{name}.toml").read_text())
    cases = []
    for c in data["case"]:
        if name == "conformance" and c["use"] in SLOW_CONFORMANCE:
            continue
        c = dict(c)
        c["repeat"] = min(c.get("repeat", 1), 2)
        c["params"] = {k: (min(v, SMALL[k]) if k in SMALL else v) for k, v in c.get("params", {}).items()}
        sweep = {}
        for k, v in c.get("sweep", {}).items():
            if isinstance(v, list):
                sweep[k] = v[:3]
            else:
                sign = 1 if v["stop"] >= v["start"] else -1
                sweep[k] = {**v, "stop": v["start"] + sign * 2 * v["step"]}
        if sweep:
            c["sweep"] = sweep
        cases.append(c)
    data["case"] = cases
    return data


def run_small(tmp_path, data: dict, name: str = "plan"):
    path = tmp_path / f"{name}.toml"
    path.write_text(dumps(data))
    plan = load_plan(path)
    store_path = tmp_path / f"{name}.sqlite"
    with Store(store_path) as store:
        run_id = start_run(plan, store)
        verdict = Runner(plan, store, run_id).run()
    return plan, store_path, run_id, verdict


def report(tmp_path, store_path, run_id) -> tuple[str, Page]:
    out = tmp_path / "report.html"
    r = rig("report", run_id, "--store", store_path, "--out", out)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    text = out.read_text(encoding="utf-8")
    return text, Page(text)


@pytest.mark.parametrize("name", [p for p in shipped_plans() if p != "electrical-port"])
def test_every_shipped_plan_reports(tmp_path, name):
    plan, store_path, run_id, verdict = run_small(tmp_path, small_plan(name), name)
    text, page = report(tmp_path, store_path, run_id)
    shown = {cells[1] for _, cells in page.tables["summary-cases"][1:]}
    assert shown == {c.key for c in plan.cases}
    # every swept case is drawn, with its values on the axis
    swept = [c for c in plan.cases if c.sweep]
    sweeps = text[text.index('id="plot-sweeps"'):text.index('id="measurements"')]
    for c in swept:
        assert c.key in sweeps, c.key
    # the record names the DUT as it identified itself
    assert "record-dut" in page.ids
    duts = {cells[0]: cells for _, cells in page.tables["record-dut"][1:]}
    meter = next(b for b, spec in plan.benches.items() if spec.role == "meter-dut")
    assert duts[meter][1:4] == ["/RIg5RIG STS EMULATOR", "RIG0000000000001", "RIG-EMU 0.1"]


NAMES = '''
name = "sweep-kinds"
[profile.identification]
manufacturer = "RIg"
[profile.emulator]
execution_ms = 50
[profile.timing]
not_ready_poll_ms = 20

[[bench]]
name = "meter"
kind = "embedded"
role = "meter-dut"

[[case]]                       # names
use = "faults/line"
sweep = { kind = ["bit_flip", "drop"] }

[[case]]                       # integers, from a list
use = "meter/6.7/timing"
sweep = { reads = [1, 2] }

[[case]]                       # numbers from a range; a stop condition leaves the last ones out
use = "electrical/margin"
name = "margin/baud-error"
params = { quantity = "baud_error", exchanges = 1, repeats = 0 }
sweep = { amount = { start = 0.0, stop = 16.0, step = 8.0 } }
stop = { below = { measurement = "success_rate", value = 1.0 } }

[[case]]                       # two dimensions: a number and a name
use = "electrical/margin"
name = "margin/two"
params = { quantity = "baud_error", exchanges = 1, repeats = 0 }
sweep = { amount = [0.0, 1.0], direction = ["to_meter", "to_hhu"] }

[[case]]                       # steps that cannot be carried out (loop currents over the DUT's limit)
use = "electrical/margin"
name = "margin/impossible"
params = { quantity = "loop_current", interface = "current-loop", exchanges = 1 }
sweep = { amount = [40, 35] }
'''


@pytest.fixture(scope="module")
def kinds(tmp_path_factory):
    d = tmp_path_factory.mktemp("kinds")
    plan, store_path, run_id, verdict = run_small(d, tomllib.loads(NAMES), "kinds")
    text, page = report(d, store_path, run_id)
    return plan, store_path, run_id, text, page


def series_of(store_path, run_id):
    from rig.campaign.html_report import _RunData, sweep_series
    with Store(store_path) as store:
        return {s.title: s for s in sweep_series(_RunData(store, run_id))}


def stored(store_path, run_id, case: str) -> dict:
    """step key -> (verdict, success_rate or None) as the store has them."""
    with Store(store_path) as store:
        c = next(c for c in store.cases(run_id) if c["key"] == case)
        return {s["key"]: (s["verdict"], next((m.value for m in store.measurements(s["id"])
                                               if m.name == "success_rate"), None))
                for s in store.steps(c["id"]) if s["key"] != "summary"}


def test_a_sweep_over_names_is_drawn_on_its_names(kinds):
    plan, store_path, run_id, text, page = kinds
    s = series_of(store_path, run_id)["faults/line"]
    assert s.categories == ["bit_flip", "drop"] and s.x == [0.0, 1.0]
    steps = stored(store_path, run_id, "faults/line")
    assert s.rate == "steps passed"
    assert s.success == [1.0 if steps[f"kind={k},rep=0"][0] == "pass" else 0.0 for k in ("bit_flip", "drop")]
    if s.success == [1.0, 1.0]:
        assert "faults/line: every step passed at all 2 values" in text


def test_sweeps_over_integers_and_two_dimensions_give_one_series_each(kinds):
    _, store_path, run_id, _, _ = kinds
    series = series_of(store_path, run_id)
    assert series["meter/6.7/timing"].x == [1.0, 2.0] and series["meter/6.7/timing"].categories is None
    two = {t: s for t, s in series.items() if t.startswith("margin/two")}
    assert set(two) == {"margin/two (direction=to_meter)", "margin/two (direction=to_hhu)"}
    steps = stored(store_path, run_id, "margin/two")
    for d in ("to_meter", "to_hhu"):
        s = two[f"margin/two (direction={d})"]
        assert s.x == [0.0, 1.0]
        assert s.success == [steps[f"amount={a},direction={d},rep=0"][1] for a in ("0", "1")]


def test_sweep_steps_not_run_are_not_drawn_as_zero(kinds):
    _, store_path, run_id, text, _ = kinds
    s = series_of(store_path, run_id)["margin/baud-error"]
    # 8 % fails (success rate 0, measured); the stop condition leaves 16 % out: not a rate of 0
    assert s.x == [0.0, 8.0] and s.success == [1.0, 0.0]
    assert s.not_run == [16.0] and 16.0 not in s.x
    assert "margin/baud-error: fails at 8 %, 1 not run" in text


def test_steps_that_could_not_be_carried_out_are_marked_not_drawn(kinds):
    _, store_path, run_id, text, page = kinds
    s = series_of(store_path, run_id)["margin/impossible"]
    assert s.x == [] and s.errors == [35.0, 40.0]
    verdicts = {cells[1]: cells[0] for _, cells in page.tables["summary-cases"][1:]}
    assert verdicts["margin/impossible"] == "error"


def test_a_margin_with_no_requirement_is_info_not_pass(kinds):
    plan, store_path, run_id, text, page = kinds
    verdicts = {cells[1]: cells[0] for _, cells in page.tables["summary-cases"][1:]}
    # no must_work_at: the amounts are recorded, nothing is judged
    assert verdicts["margin/baud-error"] == "info" and verdicts["margin/two"] == "info"
    assert verdicts["faults/line"] == "pass"
    with Store(store_path) as store:
        case = next(c for c in store.cases(run_id) if c["key"] == "margin/two")
        assert {s["verdict"] for s in store.steps(case["id"])} == {"info"}


def test_info_is_a_passed_testcase_in_junit_that_says_so(kinds, tmp_path):
    import xml.etree.ElementTree as ET
    _, store_path, run_id, _, _ = kinds
    out = tmp_path / "j.xml"
    r = rig("report", run_id, "--store", store_path, "--out", tmp_path / "r.html", "--junit", out)
    assert r.returncode == 0, r.stderr
    cases = [tc for tc in ET.parse(out).iter("testcase") if tc.get("classname", "").startswith("margin/two")]
    assert cases and all(tc.find("failure") is None and tc.find("error") is None for tc in cases)
    props = {p.get("name"): p.get("value") for p in cases[0].iter("property")}
    assert props["verdict"].startswith("info")


def test_a_run_of_info_cases_exits_0(tmp_path):
    plan = tmp_path / "info.toml"
    plan.write_text('''
[[bench]]
name = "meter"
[[case]]
use = "electrical/margin"
params = { quantity = "baud_error", exchanges = 1, repeats = 0 }
sweep = { amount = [0.0] }
''')
    r = rig("run", plan, "--store", tmp_path / "s.sqlite", "--no-progress")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "verdict info" in r.stdout
