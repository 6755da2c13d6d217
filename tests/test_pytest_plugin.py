"""The pytest plugin, run with pytester in-process: fixtures against the embedded default, the
hardware marker, rig_measure failing a test and landing in --junitxml as properties."""
import xml.etree.ElementTree as ET
from importlib.metadata import entry_points
from pathlib import Path

import pytest

# imported here, once: pytester's in-process runs drop the modules they import, and numpy's
# extension cannot be loaded twice in a process
import rig.bench.config  # noqa: F401,E402
import rig.bench.virtual  # noqa: F401,E402
import rig.client  # noqa: F401,E402
import rig.embedded  # noqa: F401,E402
import rig.junit  # noqa: F401,E402

pytest_plugins = ["pytester"]

XSD = Path(__file__).with_name("junit.xsd")
# through the entry point when rig is installed (pip install -e .), else by name
INSTALLED = any(ep.name == "rig" and ep.value == "rig.pytest_plugin" for ep in entry_points(group="pytest11"))
PLUGIN = () if INSTALLED else ("-p", "rig.pytest_plugin")


def run(pytester, *args):
    return pytester.runpytest(*PLUGIN, "-p", "no:cacheprovider", *args)


def test_fixtures_on_the_embedded_default(pytester):
    pytester.makepyfile('''
        import pytest
        from rig.bench.config import BenchConfig
        from rig.link import Fault, VirtualLine

        def test_client_talks_to_the_emulator(rig_client, rig_meter, rig_line, rig_profile, rig_measure):
            assert isinstance(rig_line, VirtualLine) and rig_line is rig_meter.line
            assert rig_client.identity.manufacturer == rig_profile.identification.manufacturer
            value, ex = rig_client.read("protocolVersion")
            assert value == rig_profile.emulator.register_values["protocolVersion"]
            m = rig_measure("tr", ex.tr_ns / 1e9, "s", low=0.0, high=2.0)
            assert m.verdict == "pass"

        @pytest.mark.rig_faults(Fault("echo"))
        def test_faults_from_the_marker(rig_line):
            assert [f.kind for f in rig_line.faults] == ["echo"]

        def test_bench_is_the_virtual_one(rig_bench, rig_virtual_bench):
            assert isinstance(rig_bench, BenchConfig) and rig_bench.virtual
            assert set(rig_bench.instruments) == set(rig_virtual_bench.resources)
            assert all(ic.resource for ic in rig_bench.instruments.values())

        @pytest.mark.hardware
        def test_needs_a_real_bench(rig_bench):
            raise AssertionError("not run on the embedded default")
    ''')
    r = run(pytester, "-rs")
    r.assert_outcomes(passed=3, skipped=1)
    r.stdout.fnmatch_lines(["*needs real hardware: the bench is the embedded default*"])


def test_rig_measure_fails_the_test_and_lands_in_junit(pytester, tmp_path):
    pytester.makepyfile('''
        def test_in_limits(rig_measure):
            rig_measure("supply", 24.0, "V", low=20, high=28)
            rig_measure("note", 3)

        def test_out_of_limits(rig_measure):
            rig_measure("loop current", 0.035, "A", high=0.030, basis="assumed")
            raise AssertionError("not reached")
    ''')
    out = tmp_path / "junit.xml"
    r = run(pytester, f"--junitxml={out}", "-o", "junit_family=xunit1")
    r.assert_outcomes(passed=1, failed=1)
    assert "loop current = 0.035 A [ .. 0.03] fail (assumed)" in r.stdout.str()
    r.stdout.no_fnmatch_line("*not reached*")
    xml = out.read_bytes()
    cases = {c.get("name"): c for c in ET.fromstring(xml).iter("testcase")}
    props = {p.get("name"): p.get("value") for p in cases["test_in_limits"].iter("property")}
    assert props == {"supply": "24 V [20 .. 28] pass", "note": "3 info"}
    props = {p.get("name"): p.get("value") for p in cases["test_out_of_limits"].iter("property")}
    assert props == {"loop current": "0.035 A [ .. 0.03] fail (assumed)"}
    assert cases["test_out_of_limits"].find("failure") is not None
    etree = pytest.importorskip("lxml.etree")
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    assert schema.validate(etree.fromstring(xml)), schema.error_log


def test_a_bench_file_runs_hardware_tests_and_gives_its_configuration(pytester):
    pytester.makefile(".toml", bench='''
        [bench]
        option = "optical"
        [instruments.supply]
        model = "rigol-dp832"
        resource = "TCPIP::192.0.2.1::INSTR"
    ''')
    pytester.makepyfile('''
        import pytest

        @pytest.mark.hardware
        def test_real(rig_bench):
            assert not rig_bench.virtual and rig_bench.option == "optical"
            assert rig_bench.instruments["supply"].resource == "TCPIP::192.0.2.1::INSTR"

        def test_no_virtual_bench(rig_virtual_bench):
            pass
    ''')
    r = run(pytester, "--rig-bench", "bench.toml")
    r.assert_outcomes(passed=1, skipped=1)


def test_a_bad_bench_file_is_a_usage_error(pytester):
    pytester.makefile(".toml", bench="[bench]\noption = 'smoke signals'\n")
    pytester.makepyfile("def test_b(rig_bench):\n    pass\n")
    r = run(pytester, "--rig-bench", "bench.toml")
    assert r.ret != 0
    r.stdout.fnmatch_lines(["*--rig-bench: *bench.option*"])
