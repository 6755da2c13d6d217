"""JUnit XML of runs in the store: one testsuite per run, one testcase per case and step, failures
with the measurement, its limits and the exchange that failed, validated against tests/junit.xsd."""
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import QUICK, run_rig
from rig.campaign.store import StepRecord, Store
from rig.exchange import Exchange
from rig.junit import junit_xml, measurement_value, write_junit
from rig.measurement import Measurement

XSD = Path(__file__).with_name("junit.xsd")


def validate(xml: bytes) -> None:
    etree = pytest.importorskip("lxml.etree")
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    doc = etree.fromstring(xml)
    if not schema.validate(doc):
        raise AssertionError(str(schema.error_log))


def fill(store: Store) -> int:
    run = store.new_run("demo", "name = 'demo'", "plans/demo.toml", None)
    c1 = store.ensure_case(run, "meter/6.6/read", "meter/6.6/read", "IEC 62055-52 §6.6 ReadCommand processing",
                           "read", "meter", 0, 2, {})
    ok = Exchange("read tokenStatus", request=b"\x01R1\x02C.1()\x03\x11", answer=b"\x02C.1(0)\x03\x1f",
                  answer_kind="data", tr_ns=25_000_000, attempts=1)
    bad = Exchange("read protocolVersion", request=b"\x01R1\x02C.2()\x03\x12", answer=b"", answer_kind="",
                   attempts=3, errors=["no answer within ta"])
    store.record_step(c1, StepRecord("register=tokenStatus", 0, {"register": "tokenStatus"},
                                     [Measurement("tr", 0.025, "s", 0.02, 1.5, "IEC 62056-21 §6.3.14")], [ok],
                                     started_at=100.0, finished_at=100.5))
    store.record_step(c1, StepRecord("register=protocolVersion", 1, {"register": "protocolVersion"},
                                     [Measurement("tr", 2.0, "s", 0.02, 1.5, "IEC 62056-21 §6.3.14"),
                                      Measurement("attempts", 3)], [ok, bad], started_at=101.0, finished_at=103.0))
    store.finish_case(c1, "done", "fail")
    c2 = store.ensure_case(run, "meter/6.6/break", "meter/6.6/break", "IEC 62055-52 §6.6 break", "b", "meter",
                           1, 3, {})
    store.record_step(c2, StepRecord("break", 0, error="PortError: line gone", started_at=104.0, finished_at=104.1))
    store.finish_case(c2, "done", "error", "too many failures; 2 step(s) skipped")
    store.finish_run(run, "done", "error")
    return run


def test_one_suite_per_run_one_testcase_per_step_with_failures_errors_and_skips(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        r1, r2 = fill(store), fill(store)
        path = write_junit(store, [r1, r2], tmp_path / "out" / "junit.xml")
        xml = path.read_bytes()
    validate(xml)
    root = ET.fromstring(xml)
    assert root.tag == "testsuites" and root.get("tests") == "8" and root.get("failures") == "2"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [f"run {r1} demo", f"run {r2} demo"]
    s = suites[0]
    assert (s.get("tests"), s.get("failures"), s.get("errors"), s.get("skipped")) == ("4", "1", "1", "1")
    props = {p.get("name"): p.get("value") for p in s.find("properties")}
    assert props["plan"] == "plans/demo.toml" and props["verdict"] == "error"
    cases = s.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("meter/6.6/read (IEC 62055-52 §6.6 ReadCommand processing)", "register=tokenStatus"),
        ("meter/6.6/read (IEC 62055-52 §6.6 ReadCommand processing)", "register=protocolVersion"),
        ("meter/6.6/break (IEC 62055-52 §6.6 break)", "break"),
        ("meter/6.6/break (IEC 62055-52 §6.6 break)", "(steps not run)")]
    passed, failed, error, skipped = cases
    assert passed.find("failure") is None and passed.get("time") == "0.500"
    assert {p.get("name"): p.get("value") for p in passed.find("properties")}["tr"] == \
        "0.025 s [0.02 .. 1.5] pass (IEC 62056-21 §6.3.14)"
    f = failed.find("failure")
    assert f.get("message") == "tr = 2 s [0.02 .. 1.5] fail (IEC 62056-21 §6.3.14)"
    assert "read protocolVersion: FAILED" in f.text and "no answer within ta" in f.text
    assert "\\x01R1\\x02C.2()\\x03\\x12" in f.text          # the request that failed, printable
    assert "read tokenStatus" not in f.text                  # only the exchange that failed
    props = {p.get("name"): p.get("value") for p in failed.find("properties")}
    assert props["attempts"] == "3 info" and "protocolVersion" in props["params"]
    assert error.find("error").get("message") == "PortError: line gone"
    assert skipped.find("skipped").get("message") == "too many failures; 2 step(s) skipped"


def test_measurement_value_without_limits_or_value():
    assert measurement_value(Measurement("x", None, "V", None, 3.0)) == "n/a V [ .. 3] fail"
    assert measurement_value(Measurement("n", 7)) == "7 info"


def test_an_empty_store_run_validates(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        run = store.new_run("empty", "", None, None)
        xml = junit_xml(store, [run])
    validate(xml)
    assert ET.fromstring(xml).find("testsuite").get("tests") == "0"


QUICK_PLAN = '\nname = "quick"' + QUICK + '''[[bench]]
name = "meter"
kind = "embedded"
role = "meter-dut"
interface = "optical"
[[case]]
use = "meter/6.6/read"
'''


def test_rig_run_writes_junit(tmp_path):
    plan = tmp_path / "quick.toml"
    plan.write_text(QUICK_PLAN)
    out = tmp_path / "junit.xml"
    r = run_rig("run", plan, "--store", tmp_path / "s.sqlite", "--json", "--junit", out, timeout=120,
                module="rig.campaign.cli")
    assert r.returncode == 0, r.stderr[-3000:]
    xml = out.read_bytes()
    validate(xml)
    suite = ET.fromstring(xml).find("testsuite")
    assert suite.get("name").endswith(" quick") and int(suite.get("tests")) >= 1 and suite.get("failures") == "0"
    assert all(c.get("classname").startswith("meter/6.6/read (IEC 62055-52 §6.6") for c in suite.iter("testcase"))
