"""Plan validation: a bad plan fails before anything runs, naming file, line, key and what was expected."""
import pytest

from conftest import run_rig
from rig.campaign.plan import PlanError, load_plan, shipped_plans

GOOD = '''
name = "t"
[[bench]]
name = "m"
[[case]]
use = "meter/6.6/read"
[[case]]
use = "electrical/margin"
params = { quantity = "baud_error" }
sweep = { amount = { start = 0.0, stop = 2.0, step = 0.5 } }
'''


def write(tmp_path, text):
    p = tmp_path / "plan.toml"
    p.write_text(text)
    return p


def test_a_good_plan_loads_with_its_steps(tmp_path):
    plan = load_plan(write(tmp_path, GOOD))
    margin = plan.cases[1]
    assert [p["amount"] for _, p in margin.steps()] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert margin.steps()[0][0] == "amount=0,rep=0"


@pytest.mark.parametrize("name", shipped_plans())
def test_every_shipped_plan_is_valid(name):
    assert load_plan(name).cases


@pytest.mark.parametrize("change, says", [
    (("use = \"meter/6.6/read\"", "use = \"meter/6.6/nope\""), r"plan.toml:6: case\[0\].use: got 'meter/6.6/nope' \(expected a case of the library"),
    (("[[case]]\nuse = \"meter/6.6/read\"", "[[case]]\nuse = \"meter/6.6/read\"\nrepeat = 0"),
     r"plan.toml:7: case\[0\].repeat: got 0 \(expected an integer >= 1\)"),
    (("quantity = \"baud_error\"", "quantity = \"sunshine\""),
     r"plan.toml:9: case\[1\].params.quantity: got 'sunshine' \(expected one of 'baud_error'"),
    (("step = 0.5", "step = 0"), r"plan.toml:10: case\[1\].sweep.amount.step: got 0 \(expected a number > 0\)"),
    (("name = \"m\"", "name = \"m\"\ncolour = \"red\""), r"plan.toml:5: bench\[0\].colour: unknown key \(expected one of: name, kind"),
    (("name = \"m\"", "name = \"m\"\nkind = \"port\""), r"plan.toml:3: bench\[0\].port: missing \(expected a pyserial URL for kind = 'port'\)"),
    (("name = \"t\"", "name = \"t\"\n[profile.timing]\nta_ms = \"fast\""),
     r"plan.toml:4: profile.timing.ta_ms: got 'fast' \(expected an integer 1..60000 \(milliseconds\)\)"),
    (("[[case]]\nuse = \"meter/6.6/read\"", "[[case]]\nuse = \"hhu/6.4/session\""),
     r"case\[0\].use: got 'hhu/6.4/session' \(expected a case for a bench with role 'meter-dut'"),
    (("name = \"t\"", "name = = \"t\""), r"plan.toml:2: not valid TOML"),
])
def test_bad_plans_name_file_line_key_and_expectation(tmp_path, change, says):
    old, new = change
    assert old in GOOD
    with pytest.raises(PlanError, match=says):
        load_plan(write(tmp_path, GOOD.replace(old, new, 1)))


def test_unknown_plan_name_lists_the_shipped_ones():
    with pytest.raises(PlanError, match="not a shipped plan .*conformance"):
        load_plan("no-such-plan")


@pytest.mark.parametrize("role, use, code", [("meter-dut", "meter/6.6/read", 1), ("hhu-dut", "hhu/6.4/session", 2)])
def test_a_bench_port_that_cannot_be_opened_is_a_clear_error(tmp_path, role, use, code):
    """Recorded as the step's error where a case opens the port (exit 1), or refused before any
    step where the bench itself opens it (exit 2); never a traceback."""
    plan = tmp_path / "p.toml"
    plan.write_text(f'name = "p"\n[[bench]]\nname = "m"\nkind = "port"\nrole = "{role}"\n'
                    f'port = "/dev/nonexistent-tty"\n[[case]]\nuse = "{use}"\nbench = "m"\n')
    r = run_rig("run", plan, "--store", tmp_path / "s.sqlite", "--no-progress", timeout=120)
    assert r.returncode == code
    assert "/dev/nonexistent-tty: cannot open" in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr


@pytest.mark.parametrize("written", ['profile = "mine.toml"', '[profile]\nfile = "mine.toml"'])
def test_a_mistake_in_the_plans_profile_file_names_both_files_and_lines(tmp_path, written):
    (tmp_path / "mine.toml").write_text("[timing]\n\nta_ms = 0\n")
    text = GOOD.replace('name = "t"', f'name = "t"\n{written}', 1)
    key = "profile" if written.startswith("profile") else "profile.file"
    with pytest.raises(PlanError) as e:
        load_plan(write(tmp_path, text))
    line = 3 if key == "profile" else 4
    assert str(e.value).startswith(f"{tmp_path / 'plan.toml'}:{line}: {key}: {tmp_path / 'mine.toml'}:3: "
                                   f"timing.ta_ms: got 0 (expected an integer 1..60000")


def test_a_bad_value_in_the_profile_file_is_refused_even_where_the_plan_overrides_it(tmp_path):
    (tmp_path / "mine.toml").write_text('[timing]\nta_ms = "x"\n')
    text = GOOD.replace('name = "t"', 'name = "t"\n[profile]\nfile = "mine.toml"\n[profile.timing]\nta_ms = 5', 1)
    with pytest.raises(PlanError, match=r"plan.toml:4: profile.file: .*mine.toml:2: timing.ta_ms: got 'x'"):
        load_plan(write(tmp_path, text))
