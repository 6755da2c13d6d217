"""`rig report`: one self-contained HTML file per stored run, with its plots, measurement tables
and summary; --junit as `rig run --junit` writes; bad input named with exit code 2. And the
summary `rig run` prints: a rich table on a terminal, plain text otherwise."""
import base64
import html
import io
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from reportrun import Page, rig, write_plan
from rig.campaign.html_report import PLOT_SECTIONS, write_report
from rig.campaign.store import StepRecord, Store
from rig.measurement import Measurement
from test_junit import validate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """The small plan run by `rig run --junit` into a new store, as a user does: (dir, store, run
    id, the run's output, its JUnit XML)."""
    d = tmp_path_factory.mktemp("report")
    store = d / "runs.sqlite"
    junit = d / "run-junit.xml"
    r = rig("run", write_plan(d), "--store", store, "--junit", junit, "--no-progress")
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]      # the sweep's required amount fails
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    return d, store, 1, r, junit.read_bytes()


@pytest.fixture(scope="module")
def report(stored):
    """`rig report 1 --out FILE` as a subprocess: (its result, the HTML, the page parsed)."""
    d, store, run_id, _, _ = stored
    out = d / "out" / "report.html"
    r = rig("report", run_id, "--store", store, "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    text = out.read_text(encoding="utf-8")
    return r, out, text, Page(text)


def decoded_png(src: str) -> np.ndarray:
    """The image of a data: URL, decoded (as a browser would); fails if it is not a PNG."""
    import matplotlib.image
    head, _, data = src.partition(",")
    assert head == "data:image/png;base64", head[:60]
    raw = base64.b64decode(data, validate=True)
    assert raw.startswith(PNG_MAGIC)
    return matplotlib.image.imread(io.BytesIO(raw), format="png")


def test_the_report_is_one_self_contained_file(report):
    r, out, text, page = report
    assert str(out) in r.stdout
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    # nothing is fetched from elsewhere: every src and href is a fragment or a data: URL
    assert page.urls and all(u.startswith(("#", "data:")) for u in page.urls), \
        [u[:80] for u in page.urls if not u.startswith(("#", "data:"))]
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//|@import", text, re.I)
    assert "script" not in page.tags


def test_every_plot_section_has_an_image_that_decodes(report):
    _, _, text, page = report
    for sid in ("summary", "summary-clauses", "summary-cases", "failures", "plots", "measurements", *PLOT_SECTIONS):
        assert sid in page.ids, f"no element with id {sid}"
    for sid in PLOT_SECTIONS:
        imgs = [i for i in page.imgs if i["section"] == sid]
        assert imgs, f"section {sid}: no plot (this run has data for it)"
        for img in imgs:
            pixels = decoded_png(img["src"])
            h, w = pixels.shape[:2]
            assert w >= 300 and h >= 200, (sid, w, h)
            assert pixels.std() > 0.01, f"{sid}: a blank image"
            assert img.get("alt")


def test_eye_caption_names_the_option_mask_and_that_no_trace_enters_it(report):
    text = report[2]
    eye = text[text.index('id="plot-eye"'):text.index('id="plot-bit-width"')]
    assert "current-loop" in eye and "mask: 2.5 .. 11 mA" in eye and "no trace in the mask" in eye


def test_measurement_tables_hold_the_stored_values_limits_and_verdicts(stored, report):
    _, store_path, run_id, _, _ = stored
    page = report[3]
    rows = page.tables["measurements"]
    shown = [(classes, cells[-7:]) for classes, cells in rows[1:] if len(cells) >= 7 and cells[0] != "step"]
    with Store(store_path) as store:
        stored_ms = [m for c in store.cases(run_id) for s in store.steps(c["id"]) for m in store.measurements(s["id"])]

    def fmt(v):
        return "" if v is None else f"{float(v):.6g}"

    as_shown = [(cells[0], cells[1], cells[3], cells[4], cells[6]) for _, cells in shown]
    for m in stored_ms:
        value = "n/a" if m.value is None else fmt(m.value)
        assert (m.name, value, fmt(m.low), fmt(m.high), m.verdict) in as_shown, m
    assert len(shown) == len(stored_ms)
    # the failed rows are highlighted, and only they
    failed = [cells for classes, cells in shown if "fail" in classes]
    assert [c[0] for c in failed] == [m.name for m in stored_ms if m.verdict == "fail"] == ["communicates at 7 %"]
    assert failed[0][3:5] == ["1", "1"] and failed[0][6] == "fail"
    # the summary: verdicts by case and by clause
    cases = {cells[1]: cells[0] for _, cells in page.tables["summary-cases"][1:]}
    assert cases == {"meter/6.7/timing": "pass", "levels/current-loop": "pass", "margin/baud-error": "fail"}
    clauses = {cells[0]: cells[1] for _, cells in page.tables["summary-clauses"][1:]}
    assert clauses["IEC 62055-52 §6.2 physical interface: margins"] == "fail"
    assert clauses["IEC 62055-52 §6.7 server timing"] == "pass"
    (row,) = page.tables["failures-table"][1:]
    assert row[1][:6] == ["margin/baud-error", "summary", "communicates at 7 %", "0", "bool", "1"]


def test_report_in_process_writes_the_default_file(stored, tmp_path, monkeypatch):
    from rig.cli import main
    _, store, run_id, _, _ = stored
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(run_id), "--store", str(store)]) == 0
    page = Page((tmp_path / f"rig-run-{run_id}.html").read_text(encoding="utf-8"))
    assert all(any(i["section"] == s for i in page.imgs) for s in PLOT_SECTIONS)


def test_report_junit_is_what_rig_run_junit_wrote(stored, tmp_path):
    _, store, run_id, _, run_junit = stored
    out = tmp_path / "j" / "report-junit.xml"
    r = rig("report", run_id, "--store", store, "--out", tmp_path / "r.html", "--junit", out)
    assert r.returncode == 0, r.stderr
    xml = out.read_bytes()
    validate(xml)
    assert xml == run_junit
    suite = ET.fromstring(xml).find("testsuite")
    assert suite.get("failures") == "1" and suite.get("name") == f"run {run_id} report-demo"


def test_unknown_run_missing_store_and_unwritable_out_are_exit_2_naming_them(stored, tmp_path):
    _, store, _, _, _ = stored
    r = rig("report", "99", "--store", store, "--out", tmp_path / "x.html")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "run 99" in r.stderr and str(store) in r.stderr
    assert not (tmp_path / "x.html").exists()

    missing = tmp_path / "nowhere.sqlite"
    r = rig("report", "1", "--store", missing)
    assert r.returncode == 2 and str(missing) in r.stderr and "run 1" in r.stderr
    assert not missing.exists()                      # asking did not create an empty store

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for out in (blocker / "r.html", tmp_path):       # a path under a file; a directory
        r = rig("report", "1", "--store", store, "--out", out)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert f"cannot write the report to {out}" in r.stderr

    r = rig("report", "1", "--store", store, "--out", tmp_path / "ok.html", "--junit", blocker / "j.xml")
    assert r.returncode == 2 and f"cannot write the JUnit XML to {blocker / 'j.xml'}" in r.stderr


def test_a_run_without_data_for_plots_says_so_instead_of_empty_axes(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        run = store.new_run("bare", "name = 'bare'", None, None)
        c = store.ensure_case(run, "meter/6.6/read", "meter/6.6/read", "IEC 62055-52 §6.6 ReadCommand processing",
                              "read", "meter", 0, 1, {})
        store.record_step(c, StepRecord("rep=0", 0, {}, [Measurement("answered", 1, "bool", 1, 1)]))
        store.finish_case(c, "done", "pass")
        store.finish_run(run, "done", "pass")
        path = write_report(store, run, tmp_path / "bare.html")
    text = path.read_text(encoding="utf-8")
    page = Page(text)
    assert not page.imgs
    for sid in PLOT_SECTIONS:
        section = text[text.index(f'id="{sid}"'):]
        section = section[:section.index("</section>")]
        assert 'class="note"' in section and "<img" not in section, sid
    assert "No token was executed in this run." in text
    assert html.unescape(text).count("No capture is stored with this run's steps") == 3   # eye, bit widths, jitter


def test_rig_run_prints_a_plain_summary_when_not_on_a_terminal(stored):
    _, store, run_id, r, _ = stored
    assert "\x1b[" not in r.stdout
    assert "run 1 report-demo: done, verdict fail" in r.stdout
    assert f"HTML report: rig report {run_id} --store {store}" in r.stdout
    assert "summary: communicates at 7 % = 0.0 bool [1 .. 1]" in r.stdout


def test_the_terminal_summary_is_a_table_by_clause_with_coloured_verdicts(stored):
    from rich.console import Console
    from rig.campaign.report import print_summary
    _, store_path, run_id, _, _ = stored
    console = Console(file=io.StringIO(), force_terminal=True, color_system="standard", width=130)
    with Store(store_path) as store:
        print_summary(store, run_id, console=console)
    out = console.file.getvalue()
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    lines = plain.splitlines()
    assert lines[0] == "run 1 report-demo: done, verdict fail"
    assert "clause" in lines[1] and "case" in lines[1] and "verdict" in lines[1]
    rows = [ln for ln in lines if "levels/current-loop" in ln or "margin/baud-error" in ln or "meter/6.7/timing" in ln]
    # by clause: §6.2 before §6.7
    assert [next(k for k in ("levels/current-loop", "margin/baud-error", "meter/6.7/timing") if k in ln)
            for ln in rows[:3]] == ["levels/current-loop", "margin/baud-error", "meter/6.7/timing"]
    assert "3 cases: 2 pass, 1 fail, 0 error" in plain
    assert re.search(r"communicates at 7 %\s+0 bool\s+\[1 \.\. 1\]", plain)
    assert f"HTML report: rig report {run_id} --store {store_path}" in plain.replace("\n", "")
    assert "\x1b[1;31mfail" in out and "\x1b[1;32mpass" in out          # red fail, green pass


def test_bit_widths_and_jitter_drawn_are_the_ones_the_levels_case_judged(stored):
    """The bit-width and jitter plots draw the decoder's own values (no refit): over each stored
    capture of a levels step, their extremes and rms are that step's stored measurements."""
    from rig.campaign import plots
    from rig.campaign.html_report import _RunData
    _, store_path, run_id, _, _ = stored
    with Store(store_path) as store:
        d = _RunData(store, run_id)
    stored_ms = {(m["case_key"], m["step_key"], m["name"]): m["value"] for m in d.measurements}
    checked = 0
    for c, _, res in d.decoded:
        ms = {n: stored_ms.get((c["case_key"], c["step_key"], n))
              for n in ("jitter_peak", "jitter_rms", "bit_width_min", "bit_width_max")}
        if None in ms.values():
            continue
        t = plots.bit_timing(res)
        assert np.abs(t.jitter_ui).max() == pytest.approx(ms["jitter_peak"], rel=1e-9)
        assert np.sqrt(np.mean(t.jitter_ui ** 2)) == pytest.approx(ms["jitter_rms"], rel=1e-9)
        assert t.widths_ui.min() == pytest.approx(ms["bit_width_min"], rel=1e-9)
        assert t.widths_ui.max() == pytest.approx(ms["bit_width_max"], rel=1e-9)
        checked += 1
    assert checked, "no levels step with a capture in the run"


def test_bit_timing_of_a_capture_at_two_speeds_is_each_parts_own():
    """A mode C capture (300 Bd, then 9600 Bd with a baud error and jitter) decodes part by part:
    the values drawn for each part are that part's decoder measurements, at that part's speed."""
    from rig.campaign.plots import bit_timing
    from rig.physical.analysis import decode
    from rig.physical.synth import synthesize
    fs = 960_000
    a = synthesize(b"/?!\r\n" * 4, "current-loop", baud=300, sample_rate=fs, jitter=0.03, seed=1)
    b = synthesize(b"\x06050\r\n" + bytes(range(32, 127)), "current-loop", baud=9600, sample_rate=fs,
                   jitter=0.05, glitches=2, baud_error=0.01, seed=2)
    res = decode(np.concatenate([a.samples, b.samples]), fs, "current-loop", keep_edges=True)
    assert [r.nominal_baud for _, _, r in res.parts] == [300, 9600]
    t = bit_timing(res)
    jit = np.split(t.jitter_ui, np.cumsum([r.stats["jit_n"] for _, _, r in res.parts])[:-1])
    assert sum(len(j) for j in jit) == len(t.jitter_ui)
    widths = t.widths_ui
    for j, (_, _, r) in zip(jit, res.parts, strict=True):
        m = {x.name: x.value for x in r.measurements}
        assert np.abs(j).max() == pytest.approx(m["jitter_peak"], rel=1e-9)
        assert np.sqrt(np.mean(j ** 2)) == pytest.approx(m["jitter_rms"], rel=1e-9)
        assert m["bit_width_min"] >= widths.min() - 1e-12 and m["bit_width_max"] <= widths.max() + 1e-12
    assert widths.min() == pytest.approx(min(x.value for _, _, r in res.parts for x in r.measurements
                                             if x.name == "bit_width_min"), rel=1e-9)
    assert widths.max() == pytest.approx(max(x.value for _, _, r in res.parts for x in r.measurements
                                             if x.name == "bit_width_max"), rel=1e-9)
