"""JUnit XML of runs in the result store, for Jenkins and GitLab.

    write_junit(store, [run_id], "rig-junit.xml")

One <testsuite> per run, one <testcase> per case and step (classname: the case key with its
clause, name: the step key). A failed step carries a <failure> naming each failed measurement with
its limits and the first exchanges that failed (and how many more); a step that could not be carried
out an <error>; a step with values but no requirement (verdict "info") passes with a property
`verdict` saying so; a case stopped before all its planned steps a <skipped> testcase for the rest. Every measurement is a
<property> of its testcase ("value unit [low .. high] verdict"), the run's plan and verdict
properties of its testsuite.
"""
from __future__ import annotations

import os
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from rig.campaign.report import excerpt_text
from rig.campaign.store import Store
from rig.measurement import ERROR, FAIL, INFO, Measurement

measurement_value = Measurement.describe      # a measurement as one property value (the name tests and rig_measure use)


def _iso(t: float | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t or 0))


def _secs(a, b) -> str:
    return f"{max(0.0, (b or 0) - (a or 0)):.3f}" if a and b else "0.000"


def _properties(parent: ET.Element, props) -> None:
    props = list(props)
    if props:
        el = ET.SubElement(parent, "properties")
        for name, value in props:
            ET.SubElement(el, "property", name=str(name), value=str(value))


def _testcase(store: Store, case: dict, classname: str, step: dict) -> tuple[ET.Element, str]:
    tc = ET.Element("testcase", name=step["key"], classname=classname,
                    time=_secs(step["started_at"], step["finished_at"]))
    ms = store.measurements(step["id"])
    props = [(m.name, measurement_value(m)) for m in ms]
    if step["params"] and step["params"] != "{}":
        props.insert(0, ("params", step["params"]))
    if step["verdict"] == INFO:   # JUnit has no such outcome: a passed testcase that says nothing was judged
        props.append(("verdict", "info: values recorded, no requirement to judge them against"))
    _properties(tc, props)
    outcome = step["verdict"]
    if step["error"] or outcome == ERROR:
        err = ET.SubElement(tc, "error", message=step["error"] or "error", type="error")
        err.text = excerpt_text(store, step["id"]) or None
        outcome = ERROR
    elif outcome == FAIL or any(m.verdict == FAIL for m in ms):
        failed = [m for m in ms if m.verdict == FAIL]
        msg = "; ".join(f"{m.name} = {measurement_value(m)}" for m in failed) or "step failed"
        fl = ET.SubElement(tc, "failure", message=msg, type="fail")
        body = [f"{m.name}: {measurement_value(m)}" for m in failed]
        ex = excerpt_text(store, step["id"])
        fl.text = "\n\n".join(body + ([ex] if ex else []))
        outcome = FAIL
    if step["notes"] and step["notes"] not in ("{}", "null"):
        ET.SubElement(tc, "system-out").text = f"notes: {step['notes']}"
    return tc, outcome


def _record_properties(record: dict) -> list[tuple[str, str]]:
    """The run's record, short, as testsuite properties: rig's version, each DUT's identity."""
    out = []
    rig = record.get("rig") or []
    if rig:
        out.append(("rig", f"{rig[-1].get('version', '?')} on {rig[-1].get('host', '?')}"))
    for key, idents in record.items():
        if key.startswith("dut."):
            for ident in idents:
                if "IDResponse" in ident:
                    out.append((f"dut {key[4:]}", ", ".join(f"{k} {ident.get(k, '-')}" for k in
                                                            ("IDResponse", "FOIN", "softwareVersion"))))
    return out


def junit_element(store: Store, run_ids) -> ET.Element:
    """The <testsuites> element for the runs."""
    root = ET.Element("testsuites", name="rig")
    totals = dict(tests=0, failures=0, errors=0, skipped=0)
    total_time = 0.0
    for run_id in run_ids:
        run = store.run(run_id)
        suite = ET.Element("testsuite", name=f"run {run_id} {run['name']}", id=str(run_id),
                           hostname=run["host"] or "localhost", timestamp=_iso(run["started_at"]))
        counts = dict(tests=0, failures=0, errors=0, skipped=0)
        _properties(suite, [("run", run_id), ("plan", run["plan_path"] or run["name"]),
                            ("status", run["status"]), ("verdict", run["verdict"] or "-"),
                            ("store", store.path)] + ([("note", run["note"])] if run["note"] else [])
                    + _record_properties(store.record(run_id)))
        cases = []
        for case in store.cases(run_id):
            classname = f"{case['key']} ({case['clause']})" if case["clause"] else case["key"]
            steps = store.steps(case["id"])
            for step in steps:
                tc, outcome = _testcase(store, case, classname, step)
                cases.append(tc)
                counts["tests"] += 1
                if outcome == FAIL:
                    counts["failures"] += 1
                elif outcome == ERROR:
                    counts["errors"] += 1
            left = (case["planned_steps"] or 0) - len(steps)
            if left > 0 or not steps:
                tc = ET.Element("testcase", name="(steps not run)", classname=classname, time="0.000")
                why = case["stop_reason"] or (f"{left} step(s) not run (run {run['status']})" if left > 0
                                               else f"no step recorded (case {case['status']})")
                ET.SubElement(tc, "skipped", message=why)
                cases.append(tc)
                counts["tests"] += 1
                counts["skipped"] += 1
        elapsed = max(0.0, (run["finished_at"] or run["started_at"]) - run["started_at"])
        for k, v in counts.items():
            suite.set(k, str(v))
            totals[k] += v
        suite.set("time", f"{elapsed:.3f}")
        total_time += elapsed
        suite.extend(cases)
        root.append(suite)
    for k, v in totals.items():
        root.set(k, str(v))
    root.set("time", f"{total_time:.3f}")
    return root


def junit_xml(store: Store, run_ids) -> bytes:
    """The JUnit XML document of the runs, indented, with its XML declaration."""
    root = junit_element(store, run_ids)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def write_junit(store: Store, run_ids, path: str | os.PathLike[str]) -> Path:
    """Write the JUnit XML of the runs to path (written whole: a temporary file renamed)."""
    if isinstance(run_ids, int):
        run_ids = [run_ids]
    data = junit_xml(store, list(run_ids))
    path = Path(path)
    if path.parent != Path(""):
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path
