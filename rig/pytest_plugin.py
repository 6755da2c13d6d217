"""pytest plugin (entry point pytest11 `rig`): the rig's benches, line, meter and client as fixtures.

    def test_read(rig_client, rig_measure):
        value, ex = rig_client.read("tokenStatus")
        rig_measure("tr", ex.tr_ns / 1e9, "s", low=0.02, high=1.5)   # fails the test when out of limits

Options: ``--rig-bench FILE`` (a bench configuration, rig.bench.config; default: the embedded
default, i.e. the virtual bench), ``--rig-profile FILE`` (a profile merged over the shipped one),
``--rig-port URL`` (a real meter: rig_client talks to it instead of the emulator).

Fixtures (each per test): ``rig_profile``; ``rig_meter`` (rig.embedded.EmbeddedMeter: the meter
emulator on a virtual line, faults from ``@pytest.mark.rig_faults(Fault(...), ...)``);
``rig_line`` (its rig.link.VirtualLine: ``rig_line.inject(Fault(...))``); ``rig_client`` (a
rig.client.Client identified with the meter, signed off at teardown); ``rig_bench`` (the bench
configuration, rig.bench.config.BenchConfig: ``rig_bench.open("scope")``; with the embedded default,
the configuration of a VirtualBench running on the meter's line); ``rig_virtual_bench`` (that
rig.bench.virtual.VirtualBench itself); ``rig_measure(name, value, unit="", low=None, high=None,
basis="")`` (a rig.measurement.Measurement: recorded with record_property, so it lands in
``--junitxml`` as a property, and the test fails when its verdict is fail).

Marker ``@pytest.mark.hardware``: the test needs real hardware; skipped, with the reason, when the
bench is the embedded default.
"""
from __future__ import annotations

import pytest

HARDWARE_SKIP = "needs real hardware: the bench is the embedded default (give --rig-bench FILE)"


def pytest_addoption(parser):
    """The plugin's options: --rig-bench, --rig-profile, --rig-port."""
    group = parser.getgroup("rig", "rig test rig (IEC 62055-52 / IEC 62056-21)")
    group.addoption("--rig-bench", metavar="FILE", default=None,
                    help="bench configuration TOML (rig.bench.config); default: the embedded default")
    group.addoption("--rig-profile", metavar="FILE", default=None,
                    help="profile TOML merged over the shipped default")
    group.addoption("--rig-port", metavar="URL", default=None,
                    help="a real meter's port (pyserial URL): rig_client talks to it, not to the emulator")


def pytest_configure(config):
    """Declare the markers `hardware` and `rig_faults`."""
    config.addinivalue_line("markers", "hardware: the test needs real hardware; skipped when the bench is "
                                       "the embedded default (no --rig-bench)")
    config.addinivalue_line("markers", "rig_faults(*faults): rig.link.Fault values on rig_meter's virtual line")


def _bench_file(config):
    return config.getoption("--rig-bench", default=None)


def pytest_collection_modifyitems(config, items):
    """Skip the tests marked `hardware` when the bench is the embedded default."""
    if _bench_file(config):
        return
    skip = pytest.mark.skip(reason=HARDWARE_SKIP)
    for item in items:
        if item.get_closest_marker("hardware") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def _rig_bench_file_config(pytestconfig):
    """The bench configuration from --rig-bench, loaded once (None: the embedded default)."""
    path = _bench_file(pytestconfig)
    if not path:
        return None
    from rig.bench.config import ConfigError, load_bench
    from rig.bench.models import ModelError
    try:
        return load_bench(path)
    except (ConfigError, ModelError) as e:
        raise pytest.UsageError(f"--rig-bench: {e}") from None


@pytest.fixture
def rig_profile(pytestconfig):
    """The profile: the shipped default, with --rig-profile merged over it."""
    from rig.profile import load_profile
    return load_profile(pytestconfig.getoption("--rig-profile", default=None))


@pytest.fixture
def rig_meter(request, rig_profile, pytestconfig):
    """The meter emulator on a virtual line (rig.embedded.EmbeddedMeter), started."""
    from rig.embedded import EmbeddedMeter
    port = pytestconfig.getoption("--rig-port", default=None)
    if port:
        pytest.skip(f"rig_meter: the meter is a real one on --rig-port {port}")
    faults = []
    for mark in request.node.iter_markers("rig_faults"):
        faults.extend(mark.args)
    with EmbeddedMeter(rig_profile, faults=tuple(faults)) as meter:
        yield meter


@pytest.fixture
def rig_line(rig_meter):
    """The meter's virtual line (rig.link.VirtualLine) with its faults."""
    return rig_meter.line


@pytest.fixture
def rig_client(request, rig_profile, pytestconfig):
    """A rig.client.Client connected to the meter (the emulator, or --rig-port), identified; signed
    off and closed at teardown."""
    from rig.client import Client
    url = pytestconfig.getoption("--rig-port", default=None) or request.getfixturevalue("rig_meter").hhu_port
    client = Client(url, rig_profile)
    try:
        client.identify()
        yield client
        try:
            client.sign_off()
        except Exception as e:  # noqa: BLE001 - a test may have broken the session on purpose
            import warnings
            warnings.warn(f"rig_client: sign off failed: {type(e).__name__}: {e}", stacklevel=1)
    finally:
        client.close()


@pytest.fixture
def rig_virtual_bench(_rig_bench_file_config, rig_meter):
    """The rig.bench.virtual.VirtualBench on the meter's line (only with the embedded default)."""
    if _rig_bench_file_config is not None:
        pytest.skip("rig_virtual_bench: the bench is a real one (--rig-bench)")
    from rig.bench.virtual import VirtualBench
    with VirtualBench(rig_meter.line) as bench:
        yield bench


@pytest.fixture
def rig_bench(request, _rig_bench_file_config):
    """The bench configuration (rig.bench.config.BenchConfig): from --rig-bench, or, with the embedded
    default, that of a VirtualBench running on the meter's line (its resources filled in)."""
    if _rig_bench_file_config is not None:
        return _rig_bench_file_config
    return request.getfixturevalue("rig_virtual_bench").bench()


@pytest.fixture
def rig_measure(request, record_property):
    """measure(name, value, unit="", low=None, high=None, basis="") -> Measurement: recorded as a
    property of the test (and in request.node.rig_measurements); a fail verdict fails the test."""
    from rig.junit import measurement_value
    from rig.measurement import FAIL, Measurement
    recorded: list = []
    request.node.rig_measurements = recorded

    def measure(name: str, value, unit: str = "", low=None, high=None, basis: str = "") -> Measurement:
        m = Measurement(name, value, unit, low, high, basis)
        recorded.append(m)
        record_property(name, measurement_value(m))
        if m.verdict == FAIL:
            pytest.fail(f"{name} = {measurement_value(m)}", pytrace=False)
        return m

    return measure
