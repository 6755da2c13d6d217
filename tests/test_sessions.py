"""Whole sessions: the HHU client against the meter emulator over real ptys (the virtual line) and
over TCP, with line faults and their expected recovery, timing policies and TokenLockout.

Where a test needs the meter on a virtual line and an identified client, it takes them from the
rig pytest plugin (rig_meter, rig_line, rig_client, rig_measure, @pytest.mark.rig_faults), as a
user's tests would; rig_profile is overridden here with the quick profile."""
import socket
import threading

import pytest

from rig.client import Client, ClientError, TokenLockoutActive
from rig.embedded import EmbeddedMeter
from rig.link import OS_LATENCY_NS, Fault
from rig.profile import load_profile
from rig.server import EventKind, MeterEmulator, MeterServer, TimingPolicy

TOKEN = "56746304125830196637"  # accepted in the default test-token table


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    """The default profile with a short token execution time, so sessions stay quick."""
    f = tmp_path_factory.mktemp("profile") / "fast.toml"
    f.write_text("[emulator]\nexecution_ms = 300\n")
    return load_profile(f)


@pytest.fixture
def rig_profile(profile):
    """The plugin's meter and client use the quick profile in this module."""
    return profile


def session(meter, profile, **kw):
    return Client(meter.hhu_port, profile, **kw)


def test_full_session_over_the_virtual_line(rig_meter, rig_profile, rig_measure):
    profile = rig_profile
    with session(rig_meter, profile) as hhu:      # the identification is what is checked: by hand
        ident = hhu.identify()
        assert hhu.identity.manufacturer == profile.identification.manufacturer
        assert hhu.port.baud == profile.character.max_baud  # the speed switch happened
        assert ident.ok
        rig_measure("identify: tr", ident.tr_ns / 1e6, "ms", 200, 1500)
        value, ex = hhu.read("protocolVersion")
        assert value == profile.emulator.register_values["protocolVersion"]
        assert ex.ok and ex.attempts == 1 and ex.naks_sent == 0
        result = hhu.transfer_token(TOKEN)
        assert result.accepted and result.status_name == "Accept"
        rig_measure("token execution", result.execution_ns / 1e6, "ms", 300, 300 + 1500 - 1e-6)
        hhu.sign_off()
        assert [e for e in hhu.exchanges if not e.ok] == []
        assert [a.text for a in rig_meter.emulator.tokens.applied] == [TOKEN]


def test_read_of_an_unknown_register_is_an_error_answer(rig_client):
    with pytest.raises(ClientError, match="register 'nope'"):
        rig_client.read("nope")
    with pytest.raises(ClientError, match="error"):
        rig_client.write("tokenStatus", "1")  # read-only: the meter refuses
    assert rig_client.sign_off().errors == []


class TcpHub:
    """Two TCP clients joined, as a serial device server (ser2net) joins a port to the network."""

    def __init__(self):
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self.srv.getsockname()[1]}"
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        a, _ = self.srv.accept()
        b, _ = self.srv.accept()

        def pump(src, dst):
            try:
                while data := src.recv(4096):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                dst.close()

        threading.Thread(target=pump, args=(a, b), daemon=True).start()
        pump(b, a)

    def close(self):
        self.srv.close()


def test_full_session_over_tcp(profile):
    hub = TcpHub()
    server = MeterServer(hub.url, profile).start()
    try:
        with Client(hub.url, profile) as hhu:
            hhu.identify()
            assert hhu.read("tokenStatus")[0] == "0"
            assert hhu.transfer_token(TOKEN).accepted
            hhu.sign_off()
    finally:
        server.stop()
        hub.close()
    assert server.error is None


def _fault_at_next_char(meter_or_line, direction, **kw):
    line = getattr(meter_or_line, "line", meter_or_line)
    return Fault(direction=direction, at=line.sent(direction) + kw.pop("offset", 0), **kw)


def test_parity_error_in_a_request_gets_nak_and_a_repeat(rig_client, rig_line):
    rig_line.inject(_fault_at_next_char(rig_line, "to_meter", kind="parity", offset=6))
    value, ex = rig_client.read("tokenStatus")
    assert value == "0" and ex.ok
    assert ex.attempts == 2 and ex.naks_received == 1
    assert ex.recovered == ["NAK from the meter"]


def test_bit_flip_in_an_answer_gets_nak_and_the_meter_repeats(rig_client, rig_line, rig_profile):
    rig_line.inject(_fault_at_next_char(rig_line, "to_hhu", kind="bit_flip", offset=3, bit=1))
    value, ex = rig_client.read("protocolVersion")
    assert value == rig_profile.emulator.register_values["protocolVersion"]
    assert ex.naks_sent == 1 and ex.attempts == 1
    assert ex.recovered and ex.recovered[0].startswith("bad answer: parity")


def test_lost_answer_times_out_and_the_request_is_repeated(rig_client, rig_line):
    rig_line.inject(_fault_at_next_char(rig_line, "to_hhu", kind="truncate"))
    value, ex = rig_client.read("tokenStatus")
    assert value == "0"
    assert ex.attempts == 2 and ex.recovered == ["no answer within 1500 ms"]


def test_gap_over_ta_in_an_answer_is_refused_and_repeated(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text("[timing]\nta_ms = 100\n")
    profile = load_profile(f)
    with EmbeddedMeter(profile) as meter, session(meter, profile) as hhu:
        hhu.identify()
        meter.line.inject(_fault_at_next_char(meter, "to_hhu", kind="delay", offset=4, ns=150_000_000))
        value, ex = hhu.read("tokenStatus")
        assert value == "0" and ex.naks_sent == 1
        assert "gap" in ex.recovered[0]


def test_token_write_with_faults_is_applied_exactly_once(rig_meter, rig_line, rig_client):
    """A garbled write is NAKed and repeated; a lost ACK makes the client ask the meter (tokenStatus)
    whether it took the write, instead of writing the token again: applied once, outcome true."""
    # the write is the first thing after the tokenStatus read that precedes it
    rig_line.inject(_fault_at_next_char(rig_line, "to_meter", kind="bit_flip", offset=READ_BEFORE_WRITE + 10, bit=0))
    result = rig_client.transfer_token(TOKEN)
    assert result.accepted
    assert result.exchanges[0].naks_received == 1
    # the ACK to the next write: after the 8 characters of the answer "04(1)" read before it
    rig_line.inject(_fault_at_next_char(rig_line, "to_hhu", kind="drop", offset=8))
    result2 = rig_client.transfer_token("12345678901234567890")
    rig_client.sign_off()
    applied = [a.text for a in rig_meter.emulator.tokens.applied]
    assert applied.count(TOKEN) == 1
    assert applied.count("12345678901234567890") == 0
    write = result2.exchanges[0]
    assert write.attempts == 1 and write.answer_kind == ""  # its ACK never came; not written again
    assert [e.text for e in rig_meter.emulator.tokens.history].count("12345678901234567890") == 1
    assert result2.outcome == "rejected" and result2.status_name == "CRC error"  # the meter's own outcome


# "max" aims emulator.limit_margin (30 ms) inside tr_max: it used to aim at 1500 ms itself and
# was measured at 1500.0-1507 ms, a FAIL by the rig's own client (issue 13 item 9)
# The bounds hold for the meter's aim; a meter thread the OS wakes late (a loaded CI machine) answers
# late by what its own record shows, and the client must measure that lateness too, not hide it.
@pytest.mark.parametrize("mode, low, high", [("min", 200, 215), ("max", 1465, 1500)])
def test_emulator_timing_policy_is_measured_by_the_client(profile, mode, low, high):
    emu = MeterEmulator(profile, policy=TimingPolicy(mode))
    assert low <= emu.timing()["tr_ns"] / 1e6 <= high            # what the meter aims at
    with EmbeddedMeter(profile, emulator=emu) as meter, session(meter, profile) as hhu:
        hhu.identify()
        _, ex = hhu.read("tokenStatus")
        read = [e for e in meter.server.events if EventKind.READ in e["kinds"]][-1]
        late_ns = read["t_answer_start_ns"] - read["t_request_end_ns"] - emu.timing()["tr_ns"]
        # within the OS allowance the aim must keep the answer inside the bounds (the old bug: aiming
        # at tr_max itself, measured 1500-1507 ms); beyond it the machine was late, by its own record
        slack_ms = late_ns / 1e6 if late_ns > OS_LATENCY_NS else 0.0
        assert low <= ex.tr_ns / 1e6 <= high + slack_ms
        assert ex.ok


def test_early_answer_violating_tr_min_fails_the_measurement(profile):
    emu = MeterEmulator(profile, policy=TimingPolicy("violate", limit="tr_min", amount_ns=100_000_000))
    with EmbeddedMeter(profile, emulator=emu) as meter, session(meter, profile) as hhu:
        hhu.identify()
        _, ex = hhu.read("tokenStatus")
        tr = next(m for m in ex.measurements if m.name == "tr")
        assert tr.verdict == "fail" and 90 <= tr.value <= 115


def test_lockout_survives_break_and_reidentification(rig_meter, rig_client, rig_profile):
    bad = "00000000000000000000"  # well-formed, not in the test table: rejected
    for _ in range(rig_profile.token_lockout.threshold):
        assert not rig_client.transfer_token(bad).accepted
    rig_client.sign_off()
    rig_client.identify()
    with pytest.raises(TokenLockoutActive):
        rig_client.transfer_token(TOKEN)
    rig_client.sign_off()
    assert TOKEN not in [a.text for a in rig_meter.emulator.tokens.applied]


def test_random_bytes_then_a_fresh_session_is_answered(profile):
    import random
    rng = random.Random(5)
    with EmbeddedMeter(profile) as meter, session(meter, profile) as hhu:
        hhu.identify()
        for _ in range(20):
            hhu.port.write(bytes(rng.randrange(128) for _ in range(rng.randrange(1, 30))))
        hhu.port.discard_input()
        hhu.sign_off()
        hhu.identify()
        assert hhu.read("tokenStatus")[0] == "0"
        assert meter.server.error is None


# transfer_token reads tokenStatus (R1 04()) before it writes the token
READ_BEFORE_WRITE = len(b"\x01R1\x0204()\x03Z")
FAULTS_ON_THE_TOKEN_WRITE = {
    # kind: (fault arguments, placed relative to the token write's first character)
    "bit_flip": dict(kind="bit_flip", offset=12, bit=3),
    "parity": dict(kind="parity", offset=15),
    "drop": dict(kind="drop", offset=20, count=2),
    "duplicate": dict(kind="duplicate", offset=20),
    "insert": dict(kind="insert", offset=8, data=b"\x95"),
    "truncate": dict(kind="truncate", offset=18),
    "break": dict(kind="break", offset=0, ns=30_000_000),
    "echo": dict(kind="echo"),
}


@pytest.mark.parametrize("name", [
    # the echo of a half-duplex loop is on the line from its first character, identification included
    pytest.param(n, marks=pytest.mark.rig_faults(Fault("echo", direction="both"))) if n == "echo" else n
    for n in FAULTS_ON_THE_TOKEN_WRITE])
def test_each_fault_on_a_token_write_is_recovered_and_the_token_applied_once(rig_meter, rig_line, rig_client, name):
    args = dict(FAULTS_ON_THE_TOKEN_WRITE[name])
    if name == "echo":
        assert [f.kind for f in rig_line.faults] == ["echo"] and rig_client.exchanges[0].ok
    else:
        offset = args.pop("offset") + READ_BEFORE_WRITE
        rig_line.inject(Fault(direction="to_meter", at=rig_line.sent("to_meter") + offset, **args))
    result = rig_client.transfer_token(TOKEN)
    rig_line.clear_faults()
    rig_client.sign_off()
    assert result.accepted
    writes = [e for e in result.exchanges if e.name == "write TokenData"]
    if name not in ("break", "echo"):  # these leave the write itself intact
        # repeated within its exchange (NAK), or written again after tokenStatus showed it was not taken
        assert sum(w.attempts + w.naks_sent for w in writes) >= 2
        assert writes[-1].recovered or len(writes) >= 2 and "asking the meter" in writes[0].notes[-1]
    assert [a.text for a in rig_meter.emulator.tokens.applied] == [TOKEN]


def test_a_line_too_bad_to_recover_fails_clearly_and_applies_nothing(profile):
    with EmbeddedMeter(profile) as meter, session(meter, profile) as hhu:
        hhu.identify()
        meter.line.inject(Fault("baud_error", direction="to_meter", percent=12.0))
        # the tokenStatus read before the write is the first to fail now: nothing is written
        with pytest.raises(ClientError, match=r"(read tokenStatus|write TokenData): .* \(after \d request\(s\)"):
            hhu.transfer_token(TOKEN)
    assert meter.emulator.tokens.applied == []


def test_a_write_delayed_past_the_command_timeout_keeps_client_and_meter_in_step(profile):
    """Regression: the client timed out on a write whose end was held back on the line and repeated
    it; the meter's answers to the late first copy were taken as answers to later requests."""
    with EmbeddedMeter(profile) as meter, session(meter, profile) as hhu:
        hhu.identify()
        meter.line.inject(_fault_at_next_char(meter, "to_meter", kind="delay", offset=12, ns=1_700_000_000))
        result = hhu.transfer_token(TOKEN)
        value, _ = hhu.read("protocolVersion")
        hhu.sign_off()
    assert result.accepted and value == profile.emulator.register_values["protocolVersion"]
    assert [a.text for a in meter.emulator.tokens.applied] == [TOKEN]
