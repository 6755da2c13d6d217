"""`rig read`, `rig token`, `rig serve`, `rig line` as a user runs them, and a client no one here
wrote (the iec62056-21 PyPI library) against `rig serve` on a pty."""
import json
import signal
import subprocess
import sys

import pytest

from conftest import run_rig, start_rig, start_serve
from rig import _clock
from rig.link import VirtualLine

TOKEN = "56746304125830196637"


def rig(*args, timeout=60):
    return run_rig(*args, timeout=timeout)


@pytest.fixture
def fast_profile(tmp_path):
    f = tmp_path / "fast.toml"
    f.write_text("[emulator]\nexecution_ms = 200\n")
    return f


def test_read_from_the_embedded_default(fast_profile):
    r = rig("read", "--json", "--profile", fast_profile, "tokenStatus", "softwareVersion")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [x["register"] for x in out] == ["tokenStatus", "softwareVersion"]
    assert out[0]["value"] == "0"
    assert all(x["exchange"]["ok"] and 200 <= x["exchange"]["tr_ms"] <= 1500 for x in out)


def test_token_on_the_embedded_default(fast_profile):
    r = rig("token", "--json", "--profile", fast_profile, TOKEN)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["accepted"] and res["status_name"] == "Accept"
    assert set(res["results"]) == {"AuthenticationResult", "ValidationResult", "TokenResult"}
    rejected = rig("token", "--profile", fast_profile, "00000000000000000000")
    assert rejected.returncode == 1 and "CRC error" in rejected.stdout


def test_token_that_is_not_20_digits_is_refused_before_sending():
    r = rig("token", "12345")
    assert r.returncode == 2 and "expected 20 digits, got 5" in r.stderr


def _ctrl_c(proc, seen=()):
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    return proc.returncode, "".join(seen) + out, err


def wait_for_line(proc, needle, timeout_s=10):
    """Lines `rig serve` logged until one contains needle (a deadline, not a sleep)."""
    import select
    seen, deadline = [], _clock.now_ns() + int(timeout_s * 1e9)
    while _clock.now_ns() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            line = proc.stdout.readline()
            seen.append(line)
            if needle in line or not line:
                return seen
    raise AssertionError(f"no {needle!r} from rig serve within {timeout_s} s: {seen}")


def test_line_serve_and_read_as_three_programs(fast_profile):
    line = start_rig("line", "--json")
    try:
        paths = json.loads(line.stdout.readline())
        serve = start_serve("--json", "--port", paths["meter_port"], "--profile", fast_profile)
        try:
            r = rig("read", "--port", paths["hhu_port"], "--profile", fast_profile, "--json", "FOIN")
            assert r.returncode == 0, r.stderr
            assert json.loads(r.stdout)[0]["value"] == "RIG0000000000001"
        finally:
            code, out, err = _ctrl_c(serve)
        assert code == 0, err
        events = [json.loads(x) for x in out.splitlines()]
        assert [e["state"] for e in events][:2] == ["identified", "programming"]
        assert any(e["answer"] == "\x0201(RIG0000000000001)\x03" + e["answer"][-1] for e in events
                   if e["answer"] and e["answer"].startswith("\x0201("))
    finally:
        code, _, _ = _ctrl_c(line)
    assert code == 0


def test_serve_on_a_port_that_does_not_exist():
    r = rig("serve", "--port", "/dev/nonexistent-tty")
    assert r.returncode == 2 and "/dev/nonexistent-tty: cannot open" in r.stderr


def test_interop_with_the_iec62056_21_library_client(tmp_path):
    """identify, read, write, break from a client written elsewhere, against `rig serve` on a pty.

    That client switches speed 0.5 s after its option select (a fixed sleep), so the profile gives
    the emulator a longer speed-switch guard, as a user would for such an HHU."""
    iec = pytest.importorskip("iec62056_21", reason="the iec62056-21 library is not installed")
    from iec62056_21 import messages as M
    from iec62056_21.client import Iec6205621Client
    from iec62056_21.transports import SerialTransport

    prof = tmp_path / "slow-hhu.toml"
    prof.write_text("[timing]\nspeed_switch_guard_ms = 700\n")
    with VirtualLine(hhu_mode="chars") as line:  # the library writes 7-bit characters
        serve = start_serve("--json", "--port", line.meter_port, "--profile", prof)
        seen = []
        try:
            c = Iec6205621Client(SerialTransport(line.hhu_port, timeout=4))
            c.connect()
            p0 = c.access_programming_mode()
            assert p0.command == "P" and p0.data_set.value == "00000001"
            # its send_password() is broken (DataSet without address): send P1 by hand
            c.transport.send(M.CommandMessage(command="P", command_type=1,
                                              data_set=M.DataSet(address="", value="0")).to_bytes())
            assert c._recv_ack() == iec.constants.ACK
            assert c.read_single_value("02").value == "1.0"
            c.write_single_value("10", TOKEN)
            c.send_break()
            seen = wait_for_line(serve, '"break')
            c.disconnect()
        finally:
            code, out, err = _ctrl_c(serve, seen)
    assert code == 0, err
    events = [json.loads(x)["event"] for x in out.splitlines()]
    assert events[0].startswith("IDRequest") and events[-1].startswith("break")
    assert any(e.startswith(f"write 10({TOKEN}) -> ACK") for e in events)


_LIBRARY_READ = """
import sys
from iec62056_21.client import Iec6205621Client
from iec62056_21.transports import SerialTransport
c = Iec6205621Client(SerialTransport(sys.argv[1], timeout=4))
c.connect()
c.access_programming_mode()
for address in sys.argv[2:]:
    ds = c.read_single_value(address)
    print(ds.address, ds.value)
c.send_break()
c.disconnect()
"""


def test_iec62056_21_library_reads_through_rig_line_each_time(tmp_path):
    """Three programs as a user runs them: `rig line`, `rig serve` on its meter side, and a
    script using the iec62056-21 library (it opens the tty at 7E1, 300 Bd, then again at the new
    speed) on its HHU side, run twice: each run opens the tty afresh and reads the registers."""
    pytest.importorskip("iec62056_21", reason="the iec62056-21 library is not installed")
    prof = tmp_path / "slow-hhu.toml"  # the library switches speed 0.5 s after its option select
    prof.write_text("[timing]\nspeed_switch_guard_ms = 700\n")
    script = tmp_path / "library_read.py"
    script.write_text(_LIBRARY_READ)
    line = start_rig("line", "--hhu-mode", "chars", "--json")
    try:
        paths = json.loads(line.stdout.readline())
        serve = start_serve("--port", paths["meter_port"], "--profile", prof)
        try:
            for run in range(2):
                r = subprocess.run([sys.executable, script, paths["hhu_port"], "02", "04", "01"],
                                   capture_output=True, text=True, timeout=60)
                assert r.returncode == 0, f"run {run + 1}: {r.stderr}"
                assert r.stdout.splitlines() == ["02 1.0", "04 0", "01 RIG0000000000001"], r.stdout
        finally:
            _ctrl_c(serve)
    finally:
        code, _, _ = _ctrl_c(line)
    assert code == 0
