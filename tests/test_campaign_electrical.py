"""The electrical plan on the embedded default goes through the virtual bench's instruments: it
passes, its levels come from a scope capture, the loop-current sweep fails where the loop model's
receiver stops reading mark surely (9 mA), and the noise sweep finds a failure amplitude."""
from pathlib import Path

import pytest

pytest.importorskip("pyvisa")

from rig.campaign.plan import load_plan  # noqa: E402
from rig.campaign.runner import Runner, start_run  # noqa: E402
from rig.campaign.store import Store  # noqa: E402
from rig.physical.options import CURRENT_LOOP, OPTICAL  # noqa: E402

PLAN = Path(__file__).resolve().parents[1] / "rig" / "plans" / "electrical.toml"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    plan = load_plan(PLAN)
    store = Store(tmp_path_factory.mktemp("electrical") / "e.sqlite")
    run_id = start_run(plan, store)
    verdict = Runner(plan, store, run_id).run()
    cases = {c["key"]: c for c in store.cases(run_id)}
    steps = {k: {s["key"]: s for s in store.steps(c["id"])} for k, c in cases.items()}
    return store, verdict, cases, steps


def measurements(store, step):
    return {m.name: m for m in store.measurements(step["id"])}


def test_the_electrical_plan_passes_on_the_embedded_default(run):
    store, verdict, cases, steps = run
    failed = {k: c["verdict"] for k, c in cases.items() if c["verdict"] not in ("pass", "info")}
    assert verdict == "pass" and not failed, failed
    # margins with no amount they must work at are recorded, not judged
    assert cases["margin/noise"]["verdict"] == cases["margin/level"]["verdict"] == "info"
    assert {"levels/optical", "levels/current-loop", "levels/voltage", "margin/baud-error",
            "margin/loop-current", "margin/noise", "margin/level"} <= set(cases)


@pytest.mark.parametrize("option", ["optical", "current-loop", "voltage"])
def test_level_measurements_come_from_a_scope_capture(run, option):
    store, _, _, steps = run
    (step,) = steps[f"levels/{option}"].values()
    ms = store.measurements(step["id"])
    judged = [m for m in ms if m.low is not None or m.high is not None]
    assert judged and all(m.verdict == "pass" for m in judged)
    decoded = next(m for m in ms if m.name == "characters decoded as on the wire")
    assert decoded.value == decoded.low > 0 and "scope" in decoded.basis
    # the level measurements name the scope they were taken with
    levels = [m for m in judged if m.name != "characters decoded as on the wire" and "(meter)" not in m.name]
    assert levels and all("scope" in m.basis for m in levels)
    # the capture itself is stored with the step, named after the scope and its channel
    rows = store.db.execute("SELECT id, name, option FROM captures WHERE step_id=?", (step["id"],)).fetchall()
    assert len(rows) == 1 and rows[0]["name"].startswith("scope ") and rows[0]["option"] == option
    samples, rate = store.capture(rows[0]["id"])
    assert len(samples) > 1000 and rate > 0


def test_loop_current_sweep_fails_near_the_receivers_mark_threshold(run):
    store, _, cases, steps = run
    summary = measurements(store, steps["margin/loop-current"]["summary"])
    threshold = summary["failure threshold"].value
    step = 2.0                                    # the plan's sweep step
    assert threshold is not None
    assert abs(threshold - CURRENT_LOOP.rx_mark.low) <= step + 1e-9, threshold
    assert summary["last amount that communicated"].value >= CURRENT_LOOP.rx_mark.low
    # the loop current at each step was read with the meter, and the supply set it
    for key, s in steps["margin/loop-current"].items():
        if key == "summary":
            continue
        m = measurements(store, s)
        assert m["loop current (meter)"].value == pytest.approx(m["amount"].value, abs=0.05)


def test_noise_sweep_through_the_generator_finds_a_failure_amplitude(run):
    store, _, _, steps = run
    summary = measurements(store, steps["margin/noise"]["summary"])
    threshold = summary["failure threshold"].value
    assert threshold is not None and 0 < threshold <= 20
    assert summary["failure threshold"].unit.startswith("Vpp")
    assert summary["last amount that communicated"].value < threshold


def test_level_sweep_through_the_generators_offset_fails_where_the_receiver_threshold_is_crossed(run):
    """The optical idle (OFF) level pushed up by the generator's d.c. offset: communication stops
    once it crosses the middle of the receiver's thresholds (the virtual bench's receiver)."""
    store, _, _, steps = run
    summary = measurements(store, steps["margin/level"]["summary"])
    mid = (OPTICAL.nominal_mark + OPTICAL.nominal_space) / 2
    expected = 1 - (sum(OPTICAL.receiver_thresholds()) / 2 - OPTICAL.nominal_mark) / (mid - OPTICAL.nominal_mark)
    threshold = summary["failure threshold"].value
    assert threshold is not None and expected - 0.05 - 1e-9 <= threshold <= expected, (threshold, expected)
    for key, s in steps["margin/level"].items():
        if key == "summary":
            continue
        m = measurements(store, s)
        assert m["generator d.c. offset"].value == pytest.approx((1 - m["amount"].value) * mid / 100.0)   # 100 µW/cm² per V
        assert (m["bit_errors"].value > 0) == (m["success_rate"].value < 1.0)


def test_a_margin_sweep_opens_the_generator_once_and_each_step_leaves_its_output_off(tmp_path, monkeypatch):
    """The generator is opened once for the bench, not per sweep step (its identity check, clear
    and error check are not repeated every step), and every step ends with its output off, as the
    instrument itself sees it when the step is recorded."""
    from rig.bench.virtual.generator import VirtualGenerator

    received = []          # every program message unit the virtual generator got
    gens = []
    execute = VirtualGenerator.execute

    def spy(self, units):
        if self not in gens:
            gens.append(self)
        received.extend(bytes(u).strip().upper() for u in units)
        return execute(self, units)

    monkeypatch.setattr(VirtualGenerator, "execute", spy)
    at_step_end = []
    record_step = Store.record_step

    def recorded(self, case_id, step):
        at_step_end.append([bool(g.output(ch)) for g in gens for ch in g.model.channels])
        return record_step(self, case_id, step)

    monkeypatch.setattr(Store, "record_step", recorded)
    plan_file = tmp_path / "noise.toml"
    plan_file.write_text(PLAN.read_text().split("[[case]]")[0] + """
[[case]]
use = "electrical/margin"
name = "margin/noise"
params = { quantity = "noise", interface = "current-loop", exchanges = 1, repeats = 0 }
sweep = { amount = { start = 0.0, stop = 8.0, step = 4.0 } }
""")
    plan = load_plan(plan_file)
    store = Store(tmp_path / "n.sqlite")
    run_id = start_run(plan, store)
    Runner(plan, store, run_id).run()
    (case,) = store.cases(run_id)
    steps = [s for s in store.steps(case["id"]) if s["key"] != "summary"]
    assert len(steps) == 3 and all(s["error"] is None for s in steps), steps
    assert sum(1 for u in received if u.startswith(b"*IDN?")) == 1
    assert any(b"NOIS" in u for u in received)                      # the noise was applied,
    assert any(u.startswith(b"OUTP") and u.endswith(b" ON") for u in received)   # with the output on
    assert len(at_step_end) >= 3 and gens and not any(any(s) for s in at_step_end), at_step_end
