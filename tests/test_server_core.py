"""The meter emulator's I/O-free core, driven by framed messages and explicit time (no sleeps)."""
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from rig import _framing
from rig.profile import load_profile
from rig.protocol.messages import (
    Ack, BreakCommand, Data, DataSet, ExecuteCommand, IDRequest, IDResponse, Nak, OptionSelect,
    PasswordCommand, ReadCommand, UndefinedCommand, WriteCommand, parse,
)
from rig.server import (
    IDENTIFIED, PROGRAMMING, START, STATE_TABLE, STATES, MeterEmulator, TimingPolicy, describe,
)
from rig.tokens import TokenModel

MS = 1_000_000
S = 1000 * MS
ACCEPT = "00123456789012345678"
EXAMPLE = "56746304125830196637"
CRC = "12345678901234567890"


@pytest.fixture(scope="module")
def profile():
    return load_profile()


def user_profile(tmp_path, text):
    f = tmp_path / "user.toml"
    f.write_text(text)
    return load_profile(f)


def frames_of(data: bytes, parity="none", timestamps=None):
    fr = _framing.Framer(parity)
    return fr.feed(data, timestamps) + fr.flush()


def frame(msg, parity=False):
    out = frames_of(msg.to_bytes(parity), "even" if parity else "none")
    assert len(out) == 1 and out[0].ok, out
    return out[0]


def sent(r):
    """The answer as the client would decode it from the wire."""
    (msg,) = parse(r.to_bytes(parity=True), "even")
    return msg


class Session:
    """An emulator and a clock the test moves by hand."""

    def __init__(self, profile, **kw):
        self.emu = MeterEmulator(profile, **kw)
        self.t = 0

    def send(self, msg, after=100 * MS):
        self.t += after
        return self.emu.on_frame(frame(msg), self.t)

    def raw(self, data, after=100 * MS, parity="none"):
        self.t += after
        return [self.emu.on_frame(f, self.t) for f in frames_of(data, parity)]

    def login(self):
        self.send(IDRequest())
        return self.send(OptionSelect("0", "5", "1"))

    def read(self, register_id):
        return sent(self.send(ReadCommand.of(register_id)))

    def value(self, register_id):
        return self.read(register_id).datasets[0].value

    def write(self, register_id, value):
        return sent(self.send(WriteCommand.of(DataSet(register_id, value))))

    def run_timers(self):
        t = self.emu.next_deadline_ns()
        self.t = max(self.t, t)
        return self.emu.on_timer(self.t)


@pytest.fixture
def s(profile):
    return Session(profile)


# --- the state machine as text -----------------------------------------------------------------

def test_describe_prints_every_state_event_and_action():
    text = describe()
    for state in STATES:
        assert state in text
    for row in STATE_TABLE:
        assert row[1] in text and row[3] in text
    assert len(text.splitlines()) == len(STATE_TABLE) + 2


# --- the state machine as behaviour: every row of STATE_TABLE, driven ----------------------------

def _answer_kind(r):
    """What the client would get: None (silence), "ack", "nak", "error", "data", or the message type."""
    if r.answer is None:
        return None
    msg = r.answer if isinstance(r.answer, Data) else sent(r)  # a partial block may split a data set
    if isinstance(msg, (Ack, Nak)):
        return type(msg).__name__.lower()
    if isinstance(msg, Data):
        return "error" if msg.error_text is not None else "data"
    return type(msg).__name__


def _in(state):
    """Drive a fresh session into `state` (the client's side of IEC 62056-21 mode C)."""
    def drive(s):
        if state in (IDENTIFIED, PROGRAMMING):
            s.send(IDRequest())
        if state == PROGRAMMING:
            s.send(OptionSelect("0", "5", "1"))
    return drive


def _long_read(s):  # an R3 read longer than block_size: its first block goes, the rest wait for ACK
    s.send(ReadCommand("R", "3", "00()01()02()"))


def _open_write(s):
    s.send(WriteCommand("W", "3", "10(0012345", True))


def _executing(s):
    s.send(WriteCommand.of(DataSet("10", ACCEPT)))
    assert s.emu.executing


BLOCKS = "[protocol]\nblock_size = 4\n"
PASSWORD = '[emulator]\npassword = "secret"\n'

# (state, event, condition) -> [(session states to try, profile text, setup after reaching the state,
#  the event, the answer the row says)]; the event is a message to send, raw bytes, "timers" or "power"
ROW_CASES = {
    (PROGRAMMING, "Data block", "partial-block write open"): [((PROGRAMMING,), "", _open_write, Data("67890", True), "ack")],
    ("any", "garbage", "no frame start seen"): [((START, IDENTIFIED, PROGRAMMING), "", None, b"xyz", None)],
    ("any", "frame cut short", "by SOH, STX, '/', or no character for ta"):
        [((START, IDENTIFIED, PROGRAMMING), "", None, b"\x01R1\x0204()", None)],
    (PROGRAMMING, "frame with errors", "parity, BCC, syntax, gap"): [((PROGRAMMING,), "", None, b"\x01R1\x0204()\x03\x00", "nak")],
    ("any", "frame with errors", "outside programming"): [((START, IDENTIFIED), "", None, b"\x01R1\x0204()\x03\x00", None)],
    (START, "IDRequest", "address empty or ours (leading zeros not significant)"):
        [((START,), "", None, IDRequest(), "IDResponse"), ((START,), "", None, IDRequest("1"), "IDResponse")],
    ("any", "IDRequest", "address empty or ours"): [((IDENTIFIED, PROGRAMMING), "", _open_write, IDRequest(), "IDResponse")],
    ("any", "IDRequest", "another address"): [((START, IDENTIFIED, PROGRAMMING), "", None, IDRequest("2"), None)],
    (START, "any other frame", ""): [((START,), "", None, m, None) for m in (ReadCommand.of("04"), Nak(), BreakCommand())],
    (IDENTIFIED, "OptionSelect", "V != 0 or Y not 0/1"): [((IDENTIFIED,), "", None, OptionSelect("1", "5", "1"), None)],
    (IDENTIFIED, "OptionSelect 0 Z 1", "Z = the proposed Z"): [((IDENTIFIED,), "", None, OptionSelect("0", "5", "1"), "PasswordCommand")],
    (IDENTIFIED, "OptionSelect 0 Z 1", "any other Z"): [((IDENTIFIED,), "", None, OptionSelect("0", "4", "1"), "PasswordCommand")],
    (IDENTIFIED, "OptionSelect 0 Z 0", ""): [((IDENTIFIED,), "", None, OptionSelect("0", "5", "0"), "data")],
    (IDENTIFIED, "NAK", ""): [((IDENTIFIED,), "", None, Nak(), "IDResponse")],
    (IDENTIFIED, "BreakCommand", ""): [((IDENTIFIED,), "", None, BreakCommand(), None)],
    (IDENTIFIED, "timer tt", "no option select"): [((IDENTIFIED,), "", None, "timers", None)],
    (IDENTIFIED, "any other frame", ""): [((IDENTIFIED,), "", None, ReadCommand.of("04"), None)],
    ("readout", "readout sent", ""): [((IDENTIFIED,), "", None, OptionSelect("0", "4", "0"), "data")],
    (PROGRAMMING, "any command", "partial-block answer or write open"):
        [((PROGRAMMING,), BLOCKS, _long_read, ReadCommand.of("04"), "data"), ((PROGRAMMING,), "", _open_write, BreakCommand(), None)],
    (PROGRAMMING, "NAK", ""): [((PROGRAMMING,), "", None, Nak(), "PasswordCommand")],
    (PROGRAMMING, "ACK", "partial blocks pending"): [((PROGRAMMING,), BLOCKS, _long_read, Ack(), "data")],
    (PROGRAMMING, "ACK", "none pending"): [((PROGRAMMING,), "", None, Ack(), None)],
    (PROGRAMMING, "BreakCommand", ""): [((PROGRAMMING,), "", None, BreakCommand(), None)],
    (PROGRAMMING, "ReadCommand", "data sets malformed"): [((PROGRAMMING,), "", None, ReadCommand("R", "1", "x"), "nak")],
    (PROGRAMMING, "ReadCommand", "no register, unknown or write-only"):
        [((PROGRAMMING,), "", None, m, "error") for m in (ReadCommand.of("99"), ReadCommand.of("10"), ReadCommand("R", "1", ""))],
    (PROGRAMMING, "ReadCommand R3/R4", "answer longer than block_size > 0"):
        [((PROGRAMMING,), BLOCKS, None, ReadCommand("R", "4", "00()01()"), "data")],
    (PROGRAMMING, "ReadCommand", "registers readable"):
        [((PROGRAMMING,), "", None, ReadCommand.of("04"), "data"), ((PROGRAMMING,), BLOCKS, None, ReadCommand.of("04", "1"), "data")],
    (PROGRAMMING, "WriteCommand ending in EOT", ""): [((PROGRAMMING,), "", None, WriteCommand("W", "3", "10(0012345", True), "ack")],
    (PROGRAMMING, "WriteCommand", "data sets malformed"): [((PROGRAMMING,), "", None, WriteCommand("W", "1", "x"), "nak")],
    (PROGRAMMING, "WriteCommand", "valid, not executable"):
        [((PROGRAMMING,), "", None, WriteCommand.of(DataSet("99", "1")), "error"),
         ((PROGRAMMING,), "", None, WriteCommand.of(DataSet("04", "1")), "error"),
         ((PROGRAMMING,), "", _executing, WriteCommand.of(DataSet("10", EXAMPLE)), "error")],
    (PROGRAMMING, "WriteCommand", "valid and executable"): [((PROGRAMMING,), "", None, WriteCommand.of(DataSet("10", ACCEPT)), "ack")],
    (PROGRAMMING, "PasswordCommand P1", "password right or none set"):
        [((PROGRAMMING,), "", None, PasswordCommand("P", "1", "(x)"), "ack"),
         ((PROGRAMMING,), PASSWORD, None, PasswordCommand("P", "1", "(secret)"), "ack")],
    (PROGRAMMING, "PasswordCommand P1", "password wrong"): [((PROGRAMMING,), PASSWORD, None, PasswordCommand("P", "1", "(x)"), "error")],
    (PROGRAMMING, "undefined command, E, P0, P2", ""):
        [((PROGRAMMING,), f"[protocol]\nundefined_command = \"{how}\"\n", None, m, how)
         for how in ("nak", "error") for m in (ExecuteCommand("E", "2", "(x)"), PasswordCommand("P", "2", "(x)"))],
    (PROGRAMMING, "timer inactivity", "no valid frame"): [((PROGRAMMING,), "", None, "timers", None)],
    (PROGRAMMING, "any other frame", ""): [((PROGRAMMING,), "", None, m, None) for m in (OptionSelect("0", "5", "1"), Data("(1)"))],
    ("meter", "timer execution", "token written"): [((PROGRAMMING,), "", _executing, "timers", None)],
    ("meter", "power_cycle()", ""): [((START, IDENTIFIED, PROGRAMMING), "", None, "power", None),
                                     ((PROGRAMMING,), "", _executing, "power", None)],
}


def test_every_state_table_row_has_a_driven_case():
    assert {tuple(row[:3]) for row in STATE_TABLE} == set(ROW_CASES)


_ROW_PROFILES: dict = {}


@pytest.mark.parametrize("key", list(ROW_CASES), ids=lambda k: " / ".join(x for x in k if x))
def test_state_table_row_is_what_the_emulator_does(tmp_path_factory, profile, key):
    """For every row: a session in the row's state gets the row's event under its condition; that
    row runs, the answer is the kind the row says, and the state after is the row's next."""
    (row,) = [r for r in STATE_TABLE if tuple(r[:3]) == key]
    for states, text, setup, event, answer in ROW_CASES[key]:
        if text not in _ROW_PROFILES:
            _ROW_PROFILES[text] = user_profile(tmp_path_factory.mktemp("row"), text) if text else profile
        for state in states:
            s = Session(_ROW_PROFILES[text], execution_ns=5 * S)
            _in(state)(s)
            if setup is not None:
                setup(s)
            assert s.emu.state == state, (key, state)
            if event == "timers":
                r = s.run_timers()
            elif event == "power":
                r = s.emu.power_cycle()
            elif isinstance(event, bytes):
                (r, *_) = s.raw(event)
            else:
                r = s.send(event)
            where = (key, state, event)
            assert row in r.transitions, where
            assert r.kinds[r.transitions.index(row)] == row.kind, where
            assert _answer_kind(r) == answer, (where, r.event)
            assert r.state == s.emu.state, where
            after = row.next if row.next in STATES else state
            k = r.transitions.index(row)
            if k + 1 < len(r.transitions):  # a row that hands on (readout sent; a command after an abort)
                nxt = r.transitions[k + 1]
                assert nxt.state in (after, "any", "meter") or row.next not in STATES, where
            else:
                assert s.emu.state == after, where


# --- identification ----------------------------------------------------------------------------

@pytest.mark.parametrize("address", ["", "00000001"])
def test_idrequest_for_any_or_our_address_gets_the_identification(s, profile, address):
    r = s.send(IDRequest(address))
    msg = sent(r)
    assert msg == IDResponse("RIG", "5", "RIG STS EMULATOR")
    assert (r.send_at_ns, r.baud, r.char_gap_ns) == (s.t + 220 * MS, None, 0)
    assert s.emu.state == IDENTIFIED == r.state


def test_idrequest_for_another_address_gets_no_answer(s):
    r = s.send(IDRequest("00000002"))
    assert r.answer is None and r.send_at_ns is None and s.emu.state == START
    assert "'00000002' ignored" in r.event


def test_commands_before_identification_are_ignored(s):
    for msg in (ReadCommand.of("04"), OptionSelect("0", "5", "1"), Nak(), BreakCommand()):
        assert s.send(msg).answer is None
    assert s.emu.state == START


# --- option select -----------------------------------------------------------------------------

def test_option_select_programming_switches_baud_and_sends_p0(s, profile):
    s.send(IDRequest())
    r = s.send(OptionSelect("0", "5", "1"))
    assert r.baud == 9600 and s.emu.baud == 9600 and s.emu.state == PROGRAMMING
    assert sent(r) == PasswordCommand("P", "0", "(00000001)")
    assert r.to_bytes() == b"\x01P0\x02(00000001)\x03" + bytes([_framing.bcc(b"\x01P0\x02(00000001)\x03", 1)])
    t = profile.timing
    assert r.send_at_ns == s.t + max(220 * MS, t.speed_switch_guard_ns + t.speed_switch_margin_ns)


def test_slow_speed_switch_guard_delays_the_answer(tmp_path):
    s = Session(user_profile(tmp_path, "[timing]\nspeed_switch_guard_ms = 700\nspeed_switch_margin_ms = 60\n"))
    s.send(IDRequest())
    r = s.send(OptionSelect("0", "5", "1"))
    assert r.baud == 9600 and r.send_at_ns == s.t + 760 * MS


# the speed changes only on the proposed Z ('5'); any other Z, lower ones included, stays at 300 Bd
@pytest.mark.parametrize("z, why", [("6", "not the proposed '5'"), ("9", "not the proposed '5'"),
                                    ("4", "not the proposed '5'")])
def test_option_select_above_max_or_unknown_baud_stays_at_initial_speed(s, z, why):
    s.send(IDRequest())
    r = s.send(OptionSelect("0", z, "1"))
    assert r.baud is None and s.emu.baud == 300 and s.emu.state == PROGRAMMING
    assert why in r.event and isinstance(sent(r), PasswordCommand)
    assert r.send_at_ns == s.t + 220 * MS


def test_option_select_initial_speed_needs_no_switch(s):
    s.send(IDRequest())
    r = s.send(OptionSelect("0", "0", "1"))
    assert r.baud is None and s.emu.baud == 300 and isinstance(sent(r), PasswordCommand)


@pytest.mark.parametrize("opt", [OptionSelect("1", "5", "1"), OptionSelect("2", "5", "2"), OptionSelect("0", "5", "2")])
def test_unsupported_option_select_falls_back_silently(s, opt):
    s.send(IDRequest())
    r = s.send(opt)
    assert r.answer is None and s.emu.state == START and "not supported" in r.event


def test_readout_mode_sends_readable_registers_then_returns_to_initial_speed(s, profile):
    s.send(IDRequest())
    r = s.send(OptionSelect("0", "5", "0"))
    assert (r.baud, r.baud_after, s.emu.state, s.emu.baud) == (9600, 300, START, 300)
    msg = sent(r)
    assert isinstance(msg, Data) and msg.data.endswith("!\r\n")
    got = {d.address: d.value for d in msg.datasets}
    readable = {reg.register_id for reg in profile.registers.values() if "r" in reg.access}
    assert set(got) == readable and "10" not in got
    assert got["00"] == "1" and got["04"] == "0" and got["11"] == "0"
    assert s.send(ReadCommand.of("04")).answer is None  # the session is over


# --- reads and writes --------------------------------------------------------------------------

def test_reads_answer_registers_by_id(s):
    s.login()
    assert s.value("00") == "1" and s.value("01") == "RIG0000000000001" and s.value("05") == "RIG-EMU 0.1"
    r = s.send(ReadCommand.of("04"))
    assert r.event == "read 04 -> 04(0)" and r.send_at_ns == s.t + 220 * MS
    both = sent(s.send(ReadCommand("R", "1", "02()03()")))
    assert both.datasets == (DataSet("02", "1.0"), DataSet("03", "0"))


def test_constructor_values_override_the_profile(profile):
    s = Session(profile, values={"serverStatus": "7"})
    s.login()
    assert s.value("03") == "7" and s.emu.registers["serverStatus"] == "7"
    with pytest.raises(ValueError, match="'nope' is not a register"):
        MeterEmulator(profile, values={"nope": "1"})


@pytest.mark.parametrize("cmd, text", [
    (ReadCommand.of("99"), "unknown register"),
    (ReadCommand.of("10"), "access denied"),  # TokenData is write-only
    (ReadCommand("R", "1", "04()99()"), "unknown register"),
    (ReadCommand("R", "1", None), "bad value"),
    (WriteCommand.of(DataSet("04", "1")), "access denied"),  # read-only
    (WriteCommand.of(DataSet("99", "1")), "unknown register"),
    (WriteCommand.of(DataSet("10", "1234567890123456789")), "bad length"),
    (WriteCommand.of(DataSet("10", "123456789012345678901")), "bad length"),
    (WriteCommand.of(DataSet("10", "1234567890123456789x")), "bad value"),
    (WriteCommand("W", "1", f"10({ACCEPT})10({ACCEPT})"), "bad value"),
])
def test_unexecutable_commands_get_the_profiles_error_text(s, cmd, text):
    s.login()
    r = s.send(cmd)
    assert sent(r) == Data.error(text) and sent(r).error_text == text
    assert s.emu.state == PROGRAMMING


def test_writable_registers_check_encoding_and_store_the_value(tmp_path):
    p = user_profile(tmp_path, """
[registers.limit]
register_id = "20"
access = "rw"
length = 4
encoding = "decimal"
[registers.mode]
register_id = "21"
access = "rw"
length = 2
encoding = "code"
codes = "TokenResult"
""")
    s = Session(p)
    s.login()
    assert s.write("20", "12") == Ack() and s.value("20") == "12"
    assert s.write("20", "1x").error_text == "bad value"
    assert s.write("20", "12345").error_text == "bad length"
    assert s.write("21", "2") == Ack() and s.value("21") == "2"
    assert s.write("21", "99").error_text == "bad value"
    assert s.emu.registers["limit"] == "12"


def test_password_p1(tmp_path, s):
    s.login()
    assert s.send(PasswordCommand("P", "1", "(anything)")).answer == Ack()
    p = Session(user_profile(tmp_path, '[emulator]\npassword = "secret"\n'))
    p.login()
    assert p.write("10", ACCEPT).error_text == "access denied"
    assert sent(p.send(PasswordCommand("P", "1", "(wrong)"))).error_text == "access denied"
    assert p.send(PasswordCommand("P", "1", "(secret)")).answer == Ack()
    assert p.write("10", ACCEPT) == Ack()


# --- token transfer ----------------------------------------------------------------------------

def test_token_transfer_not_ready_then_results(s, profile):
    s.login()
    t0 = s.t + 100 * MS
    r = s.send(WriteCommand.of(DataSet("10", ACCEPT)))
    assert sent(r) == Ack() and "executing" in r.event
    assert s.emu.next_deadline_ns() == t0 + 2 * S
    assert [s.value(x) for x in ("04", "11", "12", "13")] == ["16", "5", "8", "7"]  # all "Not ready"
    assert s.write("10", EXAMPLE).error_text == "not ready"  # one token at a time
    assert s.emu.on_timer(t0 + 2 * S - 1) is None
    done = s.emu.on_timer(t0 + 2 * S)
    assert done.answer is None and "executed: Accept" in done.event
    s.t = t0 + 2 * S
    assert [s.value(x) for x in ("04", "11", "12", "13")] == ["1", "1", "1", "1"]
    assert [e.text for e in s.emu.tokens.applied] == [ACCEPT]
    assert s.emu.tokens.history[0].at_ns == t0
    # the same token again: Used
    s.write("10", ACCEPT)
    s.run_timers()
    assert s.value("04") == "10" and s.value("13") == "2"


def test_execution_results_also_appear_when_a_frame_comes_after_the_deadline(s):
    s.login()
    s.write("10", CRC)
    assert s.value("04") == "16"
    r = s.send(ReadCommand.of("04"), after=3 * S)  # no on_timer call: the frame runs the due timer
    assert sent(r).datasets[0].value == "13" and "executed: CRC error" in r.event


def test_token_value_over_2_66_is_acked_then_format_error(s):
    s.login()
    assert s.write("10", "9" * 20) == Ack()
    s.run_timers()
    assert s.value("04") == "6" and s.value("11") == "4"


def test_zero_execution_time_shows_results_at_once(profile):
    s = Session(profile, execution_ns=0)
    s.login()
    assert s.write("10", ACCEPT) == Ack()
    assert s.value("04") == "1" and s.emu.next_deadline_ns() != s.t


def test_execution_time_from_profile_or_constructor(tmp_path, profile):
    assert MeterEmulator(profile).execution_ns == 2 * S
    assert MeterEmulator(user_profile(tmp_path, "[emulator]\nexecution_ms = 50\n")).execution_ns == 50 * MS
    assert MeterEmulator(profile, execution_ns=5).execution_ns == 5
    with pytest.raises(ValueError, match="execution_ns"):
        MeterEmulator(profile, execution_ns=-1)


def test_token_results_survive_break_and_reidentification(s):
    s.login()
    s.write("10", ACCEPT)
    s.send(BreakCommand())
    s.run_timers()  # execution finishes outside any session
    s.login()
    assert s.value("04") == "1"


def test_lockout_survives_break_and_reidentification_and_clears_on_power_cycle(s):
    s.login()
    for _ in range(3):
        s.write("10", CRC)
        s.run_timers()
        assert s.value("04") == "13"
    assert s.emu.tokens.locked(s.t)
    s.send(BreakCommand())
    assert s.emu.state == START
    s.login()
    assert s.write("10", ACCEPT) == Ack()
    s.run_timers()
    assert s.value("04") == "15" and s.value("13") == "6"  # Token lockout active
    s.emu.power_cycle()
    assert s.emu.state == START and not s.emu.tokens.locked(s.t)
    s.login()
    s.write("10", ACCEPT)
    s.run_timers()
    assert s.value("04") == "1"


def test_lockout_can_answer_with_an_error(tmp_path):
    s = Session(user_profile(tmp_path, '[emulator]\nlockout_answer = "error"\n'))
    s.login()
    for _ in range(3):
        s.write("10", CRC)
        s.run_timers()
    assert s.write("10", ACCEPT).error_text == "token lockout"
    assert s.value("04") == "13"  # unchanged
    assert s.emu.tokens.history[-1].outcome.status_name == "Token lockout active"


def test_power_cycle_finishes_a_token_in_execution(s):
    s.login()
    s.write("10", ACCEPT)
    s.emu.power_cycle()
    assert not s.emu.executing and s.emu.registers["tokenStatus"] == "1"
    assert s.emu.baud == 300 and s.emu.next_deadline_ns() is None


def test_custom_token_model(profile):
    s = Session(profile, tokens=TokenModel(profile, {ACCEPT: "Key expired"}))
    s.login()
    s.write("10", ACCEPT)
    s.run_timers()
    assert s.value("04") == "11"


# --- break, undefined commands, bad frames, repeats ---------------------------------------------

def test_break_ends_the_session_without_answer_and_restores_the_speed(s):
    s.login()
    r = s.send(BreakCommand())
    assert r.answer is None and r.baud == 300 and s.emu.state == START and s.emu.baud == 300
    assert s.send(ReadCommand.of("04")).answer is None
    assert isinstance(sent(s.send(IDRequest())), IDResponse)


def test_break_while_waiting_for_the_option_select(s):
    s.send(IDRequest())
    r = s.send(BreakCommand())
    assert r.answer is None and s.emu.state == START and s.emu.next_deadline_ns() is None


@pytest.mark.parametrize("cmd", [UndefinedCommand("X", "1", None), UndefinedCommand("Q", "2", "(1)"),
                                 ExecuteCommand("E", "2", "(1)"), PasswordCommand("P", "2", "(x)")])
def test_undefined_commands_get_nak_by_default(s, cmd):
    s.login()
    assert s.send(cmd).answer == Nak()


def test_undefined_commands_get_an_error_answer_when_the_profile_says_so(tmp_path):
    s = Session(user_profile(tmp_path, '[protocol]\nundefined_command = "error"\n'))
    s.login()
    assert sent(s.send(UndefinedCommand("X", "1", None))) == Data.error("undefined command")


def bad_bcc():
    b = bytearray(ReadCommand.of("04").to_bytes())
    b[-1] ^= 0x01
    return bytes(b)


def bad_parity():
    b = bytearray(ReadCommand.of("04").to_bytes(parity=True))
    b[4] ^= 0x80
    return bytes(b)


def bad_syntax():
    body = b"R1\x020*4()\x03"
    return b"\x01" + body + bytes([_framing.bcc(b"\x01" + body, 1)])


@pytest.mark.parametrize("data, parity, says", [
    (bad_bcc(), "none", "bcc: expected"),
    (bad_parity(), "even", "parity: 1 character"),
    (bad_syntax(), "none", "syntax: excluded character '*'"),
])
def test_frames_with_errors_get_nak_in_programming_mode(s, data, parity, says):
    s.login()
    (r,) = s.raw(data, parity=parity)
    assert r.answer == Nak() and says in r.event and r.send_at_ns == s.t + 220 * MS


def test_frame_cut_short_by_the_next_frame_is_ignored_and_the_next_answered(s):
    """Regression: a NAK for a frame the client had abandoned (it repeated the write after its
    timeout) answered the repeat out of turn and put client and meter a message apart."""
    s.login()
    cut, whole = b"\x01R1\x0204(", ReadCommand.of("04").to_bytes()
    r_cut, r_whole = s.raw(cut + whole)
    assert r_cut.answer is None and "cut short" in r_cut.event
    assert isinstance(r_whole.answer, Data)


def test_frame_with_an_inter_character_gap_over_ta_gets_nak(s):
    s.login()
    data = ReadCommand.of("04").to_bytes()
    times = [s.t + i * MS for i in range(len(data))]
    times[-1] += 2 * S
    (f,) = frames_of(data, "none", _np_times(times))
    s.t = times[-1]
    r = s.emu.on_frame(f, s.t)
    assert r.answer == Nak() and "gap" in r.event


def _np_times(times):
    import numpy as np
    return np.array(times, dtype=np.int64)


def test_bad_frames_and_garbage_outside_programming_are_ignored(s):
    for data in (bad_bcc(), b"/?00!\r", b"xyz"):
        assert all(r.answer is None for r in s.raw(data))
    s.login()
    assert all(r.answer is None for r in s.raw(b"noise"))  # garbage: no frame start seen


def test_client_nak_repeats_the_last_answer(s):
    s.login()
    first = s.send(ReadCommand.of("00"))
    for _ in range(4):  # the client decides how often
        again = s.send(Nak())
        assert again.to_bytes() == first.to_bytes() and again.send_at_ns == s.t + 220 * MS
        assert again.baud is None and "repeat" in again.event


def test_client_nak_after_p0_repeats_it_without_switching_again(s):
    s.send(IDRequest())
    s.send(OptionSelect("0", "5", "1"))
    r = s.send(Nak())
    assert isinstance(sent(r), PasswordCommand) and r.baud is None


def test_client_nak_in_identified_repeats_the_identification_and_restarts_tt(s):
    s.send(IDRequest())
    before = s.emu.next_deadline_ns()
    r = s.send(Nak(), after=1 * S)
    assert isinstance(sent(r), IDResponse)
    assert s.emu.next_deadline_ns() == before + 1 * S


def test_client_nak_with_nothing_sent_is_ignored(s):
    s.send(IDRequest("00000009"))
    assert s.send(Nak()).answer is None


def test_idrequest_in_programming_starts_a_new_session_at_the_initial_speed(s):
    s.login()
    r = s.send(IDRequest())
    assert isinstance(sent(r), IDResponse) and r.baud == 300 and s.emu.state == IDENTIFIED
    assert "new session" in r.event


# --- timeouts ----------------------------------------------------------------------------------

def test_tt_fallback_after_the_identification(s, profile):
    r = s.send(IDRequest())
    n = len(r.to_bytes())
    end = r.send_at_ns + n * (10 * S // 300)  # 10 bits per character at 300 Bd
    assert s.emu.next_deadline_ns() == end + profile.timing.tt_max_ns
    assert s.emu.on_timer(end + profile.timing.tt_max_ns - 1) is None
    fb = s.emu.on_timer(end + profile.timing.tt_max_ns)
    assert fb.answer is None and "tt" in fb.event and s.emu.state == START
    assert s.emu.next_deadline_ns() is None


def test_a_late_option_select_finds_the_server_back_at_start(s, profile):
    s.send(IDRequest())
    r = s.send(OptionSelect("0", "5", "1"), after=5 * S)
    assert r.answer is None and "tt:" in r.event and s.emu.state == START


def test_inactivity_returns_to_start_and_initial_speed(s, profile):
    s.login()
    last = s.t
    assert s.emu.next_deadline_ns() == last + profile.timing.inactivity_min_ns
    s.raw(bad_bcc(), after=10 * S)  # a bad frame does not count as activity
    assert s.emu.next_deadline_ns() == last + 60 * S
    s.send(ReadCommand.of("04"), after=10 * S)
    assert s.emu.next_deadline_ns() == s.t + 60 * S
    r = s.run_timers()
    assert "inactivity" in r.event and r.baud == 300 and s.emu.state == START and s.emu.baud == 300


def test_the_next_deadline_is_the_earliest_timer(s):
    assert s.emu.next_deadline_ns() is None
    s.login()
    s.write("10", ACCEPT)
    assert s.emu.next_deadline_ns() == s.t + 2 * S
    s.run_timers()
    assert s.emu.next_deadline_ns() == s.t - 2 * S + 60 * S


# --- timing policy -----------------------------------------------------------------------------

@pytest.mark.parametrize("policy, tr, gap, tt, inact", [
    (TimingPolicy("typical"), 220, 0, 2200, 60_000),
    (TimingPolicy("min"), 200, 0, 1501, 60_000),
    (TimingPolicy("max"), 1470, 0, 2200, 120_000),  # inside tr_max by emulator.limit_margin
    (TimingPolicy("typical", char_gap_ns=5 * MS), 220, 5, 2200, 60_000),
    (TimingPolicy("violate", "tr_max", 50 * MS), 1550, 0, 2200, 60_000),
    (TimingPolicy("violate", "tr_min", 10 * MS), 190, 0, 2200, 60_000),
    (TimingPolicy("violate", "ta", 10 * MS), 220, 1510, 2200, 60_000),
    (TimingPolicy("violate", "tt_min", 100 * MS), 220, 0, 1400, 60_000),
    (TimingPolicy("violate", "tt_max", 100 * MS), 220, 0, 2300, 60_000),
    (TimingPolicy("violate", "inactivity_min", 1 * S), 220, 0, 2200, 59_000),
    (TimingPolicy("violate", "inactivity_max", 1 * S), 220, 0, 2200, 121_000),
])
def test_timing_policy_values(profile, policy, tr, gap, tt, inact):
    t = profile.timing
    assert policy.tr_ns(t, "RIG", profile.emulator.limit_margin_ns) == tr * MS
    assert policy.gap_ns(t) == gap * MS
    assert policy.tt_ns(t) == tt * MS
    assert policy.inactivity_ns(t) == inact * MS
    s = Session(profile, policy=policy)
    r = s.send(IDRequest())
    assert r.send_at_ns - s.t == tr * MS and r.char_gap_ns == gap * MS
    assert str(policy)


def test_fast_manufacturer_honours_the_20_ms_tr_min(tmp_path):
    p = user_profile(tmp_path, '[identification]\nmanufacturer = "RIg"\n')
    assert TimingPolicy("min").tr_ns(p.timing, "RIg") == 20 * MS
    assert TimingPolicy("typical").tr_ns(p.timing, "RIg") == 40 * MS
    assert TimingPolicy("violate", "tr_min", 5 * MS).tr_ns(p.timing, "RIg") == 15 * MS
    s = Session(p, policy=TimingPolicy("min"))
    r = s.send(IDRequest())
    assert r.send_at_ns - s.t == 20 * MS and sent(r).fast_reaction


def test_violating_tr_min_below_the_guard_still_waits_for_the_guard(tmp_path, profile):
    s = Session(profile, policy=TimingPolicy("violate", "tr_min", 190 * MS))
    s.send(IDRequest())
    r = s.send(OptionSelect("0", "5", "1"))
    assert r.send_at_ns - s.t == profile.timing.speed_switch_guard_ns + profile.timing.speed_switch_margin_ns
    assert s.send(ReadCommand.of("04")).send_at_ns - s.t == 10 * MS


@pytest.mark.parametrize("kw, says", [
    (dict(mode="fast"), "mode 'fast'"),
    (dict(mode="violate"), "limit None"),
    (dict(mode="violate", limit="tr_max"), "amount_ns 0"),
    (dict(mode="violate", limit="tr", amount_ns=1), "limit 'tr'"),
    (dict(mode="min", limit="tr_max", amount_ns=1), "only goes with 'violate'"),
    (dict(char_gap_ns=-1), "char_gap_ns -1"),
])
def test_bad_timing_policies_say_what_is_wrong(kw, says):
    with pytest.raises(ValueError, match=says):
        TimingPolicy(**kw)


# --- fuzz --------------------------------------------------------------------------------------

SESSION = b"".join(m.to_bytes() for m in (
    IDRequest(), OptionSelect("0", "5", "1"), PasswordCommand("P", "1", "(x)"), ReadCommand.of("04"),
    WriteCommand.of(DataSet("10", ACCEPT)), Nak(), ReadCommand("R", "1", "11()12()"), WriteCommand.of(DataSet("04", "1")),
    UndefinedCommand("Z", "1", None), IDRequest("00000001"), OptionSelect("0", "6", "0"), BreakCommand()))


def mutate(data: bytes, edits):
    b = bytearray(data)
    for op, pos, byte in edits:
        if not b:
            b.append(byte)
            continue
        i = pos % len(b)
        if op == 0:
            b[i] = byte
        elif op == 1:
            b.insert(i, byte)
        elif op == 2:
            del b[i]
        else:
            b[i] ^= 1 << (byte % 8)
    return bytes(b)


def fresh_idrequest_is_answered(emu, t):
    r = emu.on_frame(frame(IDRequest()), t)
    assert isinstance(r.answer, IDResponse) and emu.state == IDENTIFIED
    assert IDResponse.__name__ in r.event or "IDResponse" in r.event


def drive(emu, data, parity, steps):
    t = 0
    frames = frames_of(data, parity)
    for f, dt in zip(frames, steps + [50 * MS] * len(frames)):
        t += dt
        r = emu.on_frame(f, t)
        assert isinstance(r.event, str)
        if r.answer is not None:
            assert r.send_at_ns >= t and r.to_bytes(True)
        if (d := emu.next_deadline_ns()) is not None and d <= t:
            raise AssertionError("a deadline in the past after on_frame")
    return t


fuzz = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
times = st.lists(st.integers(0, 200 * S), max_size=30)


@fuzz
@given(st.binary(max_size=300), st.sampled_from(["none", "even"]), times, st.booleans())
def test_random_bytes_never_raise_and_break_or_timeout_leads_back(profile, data, parity, steps, by_timer):
    emu = MeterEmulator(profile)
    t = drive(emu, data, parity, steps)
    t = check_recovery(emu, t, by_timer)


@fuzz
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
       st.sampled_from(["none", "even"]), times, st.booleans())
def test_mutated_sessions_never_raise_and_break_or_timeout_leads_back(profile, edits, parity, steps, by_timer):
    data = SESSION if parity == "none" else _framing.add_parity(SESSION)
    emu = MeterEmulator(profile, policy=TimingPolicy("violate", "tt_min", 1 * MS))
    t = drive(emu, mutate(data, edits), parity, steps)
    check_recovery(emu, t, by_timer)


def check_recovery(emu, t, by_timer):
    if by_timer:
        t += 3600 * S
        emu.on_timer(t)
        assert emu.state == START and emu.baud == 300
        assert emu.next_deadline_ns() is None
    else:
        t += 10 * MS
        emu.on_frame(frame(BreakCommand()), t)
        if emu.state != START:  # a break only means something inside a session
            assert False, emu.state
    fresh_idrequest_is_answered(emu, t + 10 * MS)
    assert emu.tokens.applied_twice() == []
    return t


def test_regression_bcc_byte_above_0x7f_in_a_parity_none_frame_gets_nak(s):
    """The framer (parity "none") compares the BCC on 7 bits and calls such a frame good, but
    message_from_frame cannot decode the byte: the emulator raised UnicodeDecodeError."""
    s.login()
    data = bytearray(ReadCommand.of("04").to_bytes())
    data[-1] |= 0x80
    (f,) = frames_of(bytes(data))
    r = s.emu.on_frame(f, s.t + 1)
    assert r.answer == Nak() and s.emu.state == PROGRAMMING
