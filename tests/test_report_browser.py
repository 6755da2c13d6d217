"""The HTML report opened in headless Chromium (selenium + chromedriver), as a user opens it: no
console error, every plot drawn, the summary visible, failed rows highlighted. A screenshot of the
whole page is kept as a test artefact ($RIG_ARTEFACTS, else build/test-artefacts/)."""
import os
import shutil
from pathlib import Path

import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from reportrun import run_in_process  # noqa: E402
from rig.campaign.html_report import PLOT_SECTIONS, write_report  # noqa: E402
from rig.campaign.store import Store  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _browser() -> tuple[str | None, str | None]:
    chrome = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    return chrome, shutil.which("chromedriver")


CHROME, DRIVER = _browser()
pytestmark = pytest.mark.skipif(
    not (CHROME and DRIVER),
    reason=f"headless Chromium needs chromium and chromedriver on PATH (found browser {CHROME}, driver {DRIVER}); "
           "Debian: apt-get install chromium chromium-driver")


def artefacts() -> Path:
    d = Path(os.environ.get("RIG_ARTEFACTS") or ROOT / "build" / "test-artefacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def report_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("browser")
    store_path, run_id = run_in_process(d)
    with Store(store_path) as store:
        return write_report(store, run_id, d / f"rig-run-{run_id}.html")


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    opts = Options()
    opts.binary_location = CHROME
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--hide-scrollbars", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_report_renders_in_chromium(report_file, browser, record_property):
    d = browser
    d.get(report_file.resolve().as_uri())
    wait = WebDriverWait(d, 30, poll_frequency=0.05)
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
    wait.until(lambda d: d.execute_script("return Array.from(document.images).every(i => i.complete)"))

    errors = [e for e in d.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors

    assert d.title.startswith("rig run 1: report-demo")
    for table in ("summary-clauses", "summary-cases", "failures-table"):
        el = d.find_element(By.ID, table)
        assert el.is_displayed() and el.size["height"] > 40, table
    cases = d.find_element(By.ID, "summary-cases").text
    assert "margin/baud-error" in cases and "levels/current-loop" in cases

    for sid in PLOT_SECTIONS:
        imgs = d.find_elements(By.CSS_SELECTOR, f"#{sid} img")
        assert imgs, f"{sid}: no plot"
        for img in imgs:
            w, h = d.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", img)
            assert w > 0 and h > 0, f"{sid}: an image the browser could not decode"
            assert img.is_displayed() and img.size["width"] > 200, sid

    # the record of what was tested, and where the time went, are on the page (not in a folded part)
    dut = d.find_element(By.ID, "record-dut")
    assert dut.is_displayed() and "RIG0000000000001" in dut.text and "/RIg5RIG STS EMULATOR" in dut.text
    prof = d.find_element(By.ID, "record-profile")
    assert prof.is_displayed() and "emulator.execution_ms" in prof.text and "[profile]" in prof.text
    timing = d.find_element(By.ID, "time-table")
    assert timing.is_displayed() and "on the line" in timing.text and "rig overhead" in timing.text
    bars = d.find_elements(By.CSS_SELECTOR, "#time .timebar span")
    widths = [b.size["width"] for b in bars]
    assert len(bars) == 4 and widths[0] > 0 and sum(widths) > 0.9 * d.find_element(By.CSS_SELECTOR, "#time .timebar").size["width"] - 4

    # the failed measurement is highlighted where a user looks: the failures table and its case's table
    bg = "rgba(253, 231, 231, 1)"
    failed = d.find_elements(By.CSS_SELECTOR, "#failures-table tr.fail td")
    assert failed and all(td.value_of_css_property("background-color") == bg for td in failed)
    row = d.find_element(By.CSS_SELECTOR, "#measurements table.measurements tr.fail")
    assert row.is_displayed() and "communicates at 7 %" in row.text     # its case is open: it did not pass
    passed_case = d.find_element(By.CSS_SELECTOR, "details.case.pass")
    assert passed_case.get_attribute("open") is None                     # passing cases are folded

    height = d.execute_script("return document.documentElement.scrollHeight")
    d.set_window_size(1400, min(height + 40, 20000))
    shot = artefacts() / "report-browser.png"
    assert d.save_screenshot(str(shot))
    shutil.copy(report_file, artefacts() / "report-browser.html")
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 50_000
    record_property("screenshot", str(shot))
    print(f"screenshot: {shot}")
