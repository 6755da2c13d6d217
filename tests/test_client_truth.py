"""The HHU client is right against a meter that is not the rig's (issue 13, client side).

The meter here is a few dozen lines written from FACTS.md in this file; it imports nothing of the
rig's roles (no rig.server), talks 7-bit characters through pyserial on the meter side of a virtual
line (real ptys, line-rate pacing), and misbehaves on purpose where a test says so. Each test is
named after what broke."""
from __future__ import annotations

import json
import threading
import time

import pytest
import serial

from conftest import run_rig, wait_for
from rig.client import Client, ClientError
from rig.link import VirtualLine
from rig.profile import load_profile
from rig.tokens import TransferAccount

SOH, STX, ETX, EOT, ACK, NAK = 1, 2, 3, 4, 6, 0x15
BAUD = {"0": 300, "1": 600, "2": 1200, "3": 2400, "4": 4800, "5": 9600, "6": 19200}
TOKEN = "56746304125830196637"
MS = 1_000_000


def bcc(body: bytes) -> int:
    x = 0
    for c in body:
        x ^= c
    return x


def block(text: str, end: int = ETX, bad_bcc: bool = False) -> bytes:
    body = text.encode() + bytes([end])
    return bytes([STX]) + body + bytes([bcc(body) ^ (1 if bad_bcc else 0)])


class FakeMeter:
    """An IEC 62056-21 mode C meter from FACTS.md §3-§5, in a thread. Override the on_* methods
    to misbehave. self.log records (baud, what) for every message it got."""

    ident = "/XYZ5FAKE METER\r\n"
    tr_s = 0.25

    def __init__(self, url: str):
        self.ser = serial.Serial(url, 300, timeout=0)
        self.registers = {"00": "1", "02": "1.0", "03": "0", "04": "0", "05": "FAKE 1.0",
                          "11": "0", "12": "0", "13": "0"}
        self.log: list[tuple[int, str]] = []
        self.entered: list[str] = []   # tokens written to 10, in order (the meter's own account)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    # -- behaviour (override) ------------------------------------------------------------------
    def on_request(self, address: str):
        self.send(self.ident.encode())

    def on_option(self, z: str, y: str):
        if y != "1":
            return
        new = BAUD.get(z) if z == self.ident[4] else None
        time.sleep(0.06)  # guard: the HHU has switched by now
        if new:
            self.ser.baudrate = new
        self.send(b"\x01P0\x02(00000001)\x03" + bytes([bcc(b"P0\x02(00000001)\x03")]), tr=0.0)

    def on_read(self, address: str, count: int):
        value = self.registers.get(address)
        self.send(block(f"{address}({value})" if value is not None else "(unknown register)"))

    def on_write(self, address: str, value: str, count: int):
        if address == "10":
            self.entered.append(value)
            self.token(value)
        self.send(bytes([ACK]))

    def token(self, value: str):
        used = self.entered.count(value) > 1
        self.registers.update({"04": "10" if used else "1", "11": "1", "12": "3" if used else "1",
                               "13": "2" if used else "1"})

    def on_block_ack(self):
        pass

    def on_nak(self):
        self.send(self.last)

    def on_break(self):
        self.ser.baudrate = 300

    # -- mechanics -------------------------------------------------------------------------------
    def send(self, data: bytes, tr: float | None = None):
        time.sleep(self.tr_s if tr is None else tr)
        self.last = data
        self.ser.write(data)

    def start(self):
        self.thread.start()
        return self

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.ser.close()

    def seen(self, what: str) -> list[tuple[int, str]]:
        return [e for e in self.log if e[1].startswith(what)]

    def _run(self):
        buf, counts, last_rx = bytearray(), {}, time.monotonic()
        try:
            while not self.stop.is_set():
                data = self.ser.read(256)
                if data:
                    buf += bytes(b & 0x7F for b in data)
                    last_rx = time.monotonic()
                elif not buf:
                    self.stop.wait(0.002)
                    continue
                quiet = time.monotonic() - last_rx > 3 * 10 / self.ser.baudrate + 0.01
                while buf:
                    used = self._one(buf, quiet, counts)
                    if not used:
                        break
                    del buf[:used]
                if not data:
                    self.stop.wait(0.002)
        except BaseException as e:  # shown by the test that owns the meter
            self.error = e

    def _one(self, buf: bytearray, quiet: bool, counts: dict) -> int:
        """Handle one message at the start of buf; the bytes used (0: wait for more)."""
        b0, baud = buf[0], self.ser.baudrate
        if b0 == ord("/"):
            end = buf.find(b"\r\n")
            if end < 0:
                return 0
            address = buf[2:end - 1].decode("ascii", "replace")
            self.log.append((baud, f"request {address}"))
            self.on_request(address)
            return end + 2
        if b0 == ACK:
            if len(buf) >= 6 and chr(buf[1]).isdigit():
                z, y = chr(buf[2]), chr(buf[3])
                self.log.append((baud, f"option {z}{y}"))
                self.on_option(z, y)
                return 6
            if len(buf) == 1 and quiet:
                self.log.append((baud, "ACK"))
                self.on_block_ack()
                return 1
            return 0 if len(buf) < 6 and not quiet else 1
        if b0 == NAK:
            self.log.append((baud, "NAK"))
            self.on_nak()
            return 1
        if b0 == SOH:
            end = next((i for i, c in enumerate(buf) if c in (ETX, EOT)), -1)
            if end < 0 or len(buf) < end + 2:
                return 0
            text = buf[1:end].decode("ascii", "replace")
            self.log.append((baud, f"command {text}"))
            if text[:2] == "B0":
                self.on_break()
            elif text[0] in "RW" and "(" in text:
                address, _, rest = text[3:].partition("(")
                key = (text[0], address)
                counts[key] = counts.get(key, 0) + 1
                if text[0] == "R":
                    self.on_read(address, counts[key])
                else:
                    self.on_write(address, rest.rstrip(")"), counts[key])
            return end + 2
        self.log.append((baud, f"garbage {b0:#x}"))
        return 1


@pytest.fixture
def profile(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text("[protocol]\nnak_repeats = 2\n")
    return load_profile(f)


@pytest.fixture
def line():
    with VirtualLine(meter_mode="chars") as ln:
        yield ln


def meter_on(line, cls=FakeMeter):
    return cls(line.meter_port).start()


# -- 1. answers tied to their requests ------------------------------------------------------------
class LateOnce(FakeMeter):
    """Answers the first read of protocolVersion after 1.7 s (past the command timeout), once."""

    def on_read(self, address, count):
        if address == "02" and count == 1:
            time.sleep(1.7 - self.tr_s)
        super().on_read(address, count)


def test_late_answer_not_taken_for_next_request(line, profile):
    meter = meter_on(line, LateOnce)
    try:
        with Client(line.hhu_port, profile) as hhu:
            hhu.identify()
            version, ex1 = hhu.read("protocolVersion")
            status, ex2 = hhu.read("tokenStatus")
            software, ex3 = hhu.read("softwareVersion")
    finally:
        meter.close()
    assert (version, status, software) == ("1.0", "0", "FAKE 1.0")
    assert ex1.recovered[0].startswith("no answer") and ex1.attempts == 2
    # the answer to the repeat came after the late one: set aside, never taken for tokenStatus
    assert any("'02', not '04'" in n for n in ex2.notes + ex3.notes) or any("set aside before" in n for n in ex2.notes)


class WrongAddress(FakeMeter):
    """Answers every read with the data set of tokenStatus."""

    def on_read(self, address, count):
        self.send(block(f"04({self.registers['04']})"))


def test_answer_to_wrong_request_is_not_reported(line, profile):
    meter = meter_on(line, WrongAddress)
    try:
        with Client(line.hhu_port, profile) as hhu:
            hhu.identify()
            with pytest.raises(ClientError, match=r"read protocolVersion: no answer .*after 3 request") as e:
                hhu.read("protocolVersion")
            assert any("data-set address '04', not '02'" in n for n in e.value.exchange.notes)
            assert hhu.read("tokenStatus")[0] == "0"  # its own answer is still taken
    finally:
        meter.close()


class BadValue(FakeMeter):
    def on_read(self, address, count):
        self.send(block("04(A1)" if address == "04" else f"{address}({self.registers[address]})"))


def test_value_outside_the_register_definition_is_not_reported(line, profile):
    meter = meter_on(line, BadValue)
    try:
        with Client(line.hhu_port, profile) as hhu:
            hhu.identify()
            with pytest.raises(ClientError, match=r"wrong answer: 04: 'A1' is not a code number"):
                hhu.read("tokenStatus")
    finally:
        meter.close()
    assert len(meter.seen("command R1\x0204")) == 3  # asked again, up to the repeat count


class ForgedCode(FakeMeter):
    """tokenStatus "177": two equal digits a line fault inserted into "1"; parity and BCC pass."""
    def on_read(self, address, count):
        self.send(block("04(177)" if address == "04" else f"{address}({self.registers[address]})"))


def test_code_outside_its_table_is_not_reported(line, profile):
    meter = meter_on(line, ForgedCode)
    try:
        with Client(line.hhu_port, profile) as hhu:
            hhu.identify()
            with pytest.raises(ClientError, match=r"code 177 is not in the profile's tokenStatus table"):
                hhu.read("tokenStatus")
    finally:
        meter.close()


# -- 2. partial blocks ----------------------------------------------------------------------------
class Blocks(FakeMeter):
    """Answers softwareVersion in partial blocks; `bad_once`: the second block's BCC wrong once;
    `whole_then_empty`: the whole data set in an EOT block, then an empty last block."""
    parts = ["05(FA", "KE 1", ".0)"]
    bad_once = False
    whole_then_empty = False
    stop_after_first = False

    def on_read(self, address, count):
        if address != "05":
            return super().on_read(address, count)
        self.queue = ["05(FAKE 1.0)", ""] if self.whole_then_empty else list(self.parts)
        self._next()

    def _next(self):
        text = self.queue.pop(0)
        bad = self.bad_once and len(self.queue) == 1
        if bad:
            self.bad_once = False
        self.current = (text, EOT if self.queue else ETX)
        self.send(block(*self.current, bad_bcc=bad))

    def on_nak(self):
        self.send(block(*self.current))  # the block again, good this time

    def on_block_ack(self):
        if getattr(self, "queue", None) and not self.stop_after_first:
            self._next()


def test_partial_block_answer_assembled_and_acked(line, profile):
    meter = meter_on(line, Blocks)
    try:
        with Client(line.hhu_port, profile) as hhu:
            hhu.identify()
            value, ex = hhu.read("softwareVersion")
    finally:
        meter.close()
    assert value == "FAKE 1.0" and ex.ok and ex.blocks == 2
    assert [t.said for t in ex.turns] == ["request", "ACK", "ACK"] and len(ex.trs_ns) == 3
    assert len(meter.seen("ACK")) == 2


def test_bad_partial_block_is_naked_and_repeated(line, profile):
    class BadOnce(Blocks):
        bad_once = True
    meter = meter_on(line, BadOnce)
    try:
        with Client(line.hhu_port, profile) as hhu:
            hhu.identify()
            value, ex = hhu.read("softwareVersion")
    finally:
        meter.close()
    assert value == "FAKE 1.0" and ex.naks_sent == 1
    assert [t.said for t in ex.turns] == ["request", "ACK", "NAK", "ACK"]


def test_whole_data_set_in_an_eot_block_is_not_final(line, profile):
    class Whole(Blocks):
        whole_then_empty = True
    meter = meter_on(line, Whole)
    try:
        with Client(line.hhu_port, profile) as hhu:
            hhu.identify()
            value, ex = hhu.read("softwareVersion")
    finally:
        meter.close()
    assert value == "FAKE 1.0" and ex.blocks == 1 and len(meter.seen("ACK")) == 1


def test_partial_block_answer_that_stops_is_aborted_by_a_new_command(line, profile):
    class Stops(Blocks):
        stop_after_first = True
    meter = meter_on(line, Stops)
    try:
        with Client(line.hhu_port, profile) as hhu:
            hhu.identify()
            with pytest.raises(ClientError, match="softwareVersion: no answer"):
                hhu.read("softwareVersion")
            assert hhu.read("tokenStatus")[0] == "0"
    finally:
        meter.close()
    assert len(meter.seen("command R1\x0205")) == 3


class Garbage(FakeMeter):
    """Answers reads with frames that are well formed on the line and wrong inside."""
    answers = [block("05(\x7f)"), block("(", EOT), block("05(a)(b)"), b"\x02\x04\x04", block("05(x*y*z)"),
               block("05(" + "9" * 40 + ")"), bytes([STX]) + b"05(1)" + bytes([ETX]), b"\x01P0\x03\x53"]

    def on_read(self, address, count):
        self.send(self.answers[(count - 1) % len(self.answers)] if address == "05" else
                  block(f"{address}({self.registers[address]})"))


def test_bytes_from_a_peer_never_raise_anything_but_client_error(line, profile):
    meter = meter_on(line, Garbage)
    try:
        with Client(line.hhu_port, profile) as hhu:
            hhu.identify()
            for _ in range(3):
                with pytest.raises(ClientError):
                    hhu.read("softwareVersion")
            assert hhu.read("tokenStatus")[0] == "0"
    finally:
        meter.close()
    assert meter.error is None


def rig_cli(*args, timeout=60):
    return run_rig(*args, timeout=timeout)


def test_rig_read_never_prints_a_traceback(line, tmp_path):
    f = tmp_path / "p.toml"
    f.write_text("[protocol]\nnak_repeats = 1\n")
    meter = meter_on(line, Garbage)
    try:
        r = rig_cli("read", "--port", line.hhu_port, "--profile", f, "softwareVersion", "tokenStatus")
    finally:
        meter.close()
    assert "Traceback" not in r.stderr and r.returncode == 1, r.stderr
    assert "softwareVersion" in r.stdout and "ERROR" in r.stdout
    assert meter.seen("command B0")  # signed off


# -- 3. device address ----------------------------------------------------------------------------
def test_default_idrequest_asks_any_device_and_address_names_one(line, profile):
    meter = meter_on(line)
    try:
        with Client(line.hhu_port, profile) as hhu:
            hhu.identify()
        with Client(line.hhu_port, profile, address="42") as hhu:
            hhu.identify()
    finally:
        meter.close()
    assert [w for _, w in meter.seen("request")] == ["request ", "request 42"]
    with pytest.raises(ValueError, match="not allowed"):
        Client(line.hhu_port, profile, address="a/b")


# -- 4. speed negotiation -------------------------------------------------------------------------
def identify_with(line, profile, ident, cls=FakeMeter, **kw):
    meter = type("M", (cls,), {"ident": ident})(line.meter_port).start()
    try:
        with Client(line.hhu_port, profile, **kw) as hhu:
            try:
                hhu.identify()
                return meter, hhu.port.baud, None
            except ClientError as e:
                return meter, hhu.port.baud, e
    finally:
        meter.close()


def test_option_select_answers_the_proposed_speed_or_stays_at_300(line, profile):
    meter, baud, err = identify_with(line, profile, "/XYZ6FAST\r\n")  # 19200 > this HHU's 9600
    assert err is None and baud == 300 and [w for _, w in meter.seen("option")] == ["option 01"]
    meter, baud, err = identify_with(line, profile, "/XYZ4MID\r\n")
    assert err is None and baud == 4800 and [w for _, w in meter.seen("option")] == ["option 41"]
    meter, baud, err = identify_with(line, profile, "/XYZ5NINE\r\n", baud=2400)
    assert err is None and baud == 300 and [w for _, w in meter.seen("option")] == ["option 01"]


def test_mode_b_identification_gets_no_option_select(line, profile):
    meter, baud, err = identify_with(line, profile, "/XYZEMODEB\r\n")
    assert err is not None and "mode B" in str(err)
    assert meter.seen("option") == [] and baud == 300


class NoP0Once(FakeMeter):
    """Switches speed after the option select but its first P0 is lost."""

    def on_option(self, z, y):
        if not self.seen("lost"):
            self.ser.baudrate = BAUD[z]
            self.log.append((self.ser.baudrate, "lost P0"))
            return
        super().on_option(z, y)


def test_option_select_not_repeated_at_the_new_speed(line, profile):
    meter, baud, err = identify_with(line, profile, FakeMeter.ident, NoP0Once)
    assert err is None and baud == 9600
    options = meter.seen("option")
    assert [b for b, _ in options] == [300, 300]  # never at 9600
    # between them: BreakCommand at 9600 and a new IDRequest at 300
    kinds = [(b, w.split(" ")[0]) for b, w in meter.log]
    assert kinds[:6] == [(300, "request"), (300, "option"), (9600, "lost"), (9600, "command"),
                         (300, "request"), (300, "option")]


# -- 5. lost acknowledgement of a token write -------------------------------------------------------
class TokenMeter(FakeMeter):
    """Executes tokens in `exec_s` (tokenStatus Not ready meanwhile); its ACK to the writes listed
    in `lose` is lost; the writes listed in `ignore` never reach it."""
    exec_s = 0.3
    lose: tuple = (1,)
    ignore: tuple = ()

    def on_write(self, address, value, count):
        if address != "10":
            return super().on_write(address, value, count)
        if count in self.ignore:
            return
        self.entered.append(value)
        self.registers["04"] = "16"
        self.done = time.monotonic() + self.exec_s
        if count not in self.lose:
            self.send(bytes([ACK]))

    def on_read(self, address, count):
        if getattr(self, "done", None) and time.monotonic() >= self.done:
            self.done = None
            self.token(self.entered[-1])
        super().on_read(address, count)


def transfer(line, profile, cls, before_token=None):
    meter = meter_on(line, cls)
    acct = TransferAccount()
    try:
        with Client(line.hhu_port, profile) as hhu:
            hhu.identify()
            if before_token:
                meter.registers["04"] = "1"  # an earlier token accepted
            result = hhu.transfer_token(TOKEN)
            acct.record(result.token, result.outcome, result.status, result.unknown_reason)
    finally:
        meter.close()
    return meter, result


def test_token_ack_lost_reports_true_outcome(line, profile):
    meter, result = transfer(line, profile, TokenMeter)
    assert meter.entered == [TOKEN]  # written once: the meter was asked, not written to again
    assert result.outcome == "accepted" and result.status == 1
    assert result.execution_ns is None  # no ACK: no start to measure from
    assert "took the token" in result.notes[0]


def test_token_ack_lost_and_meter_cannot_tell_is_outcome_unknown(line, profile):
    class Instant(TokenMeter):
        exec_s = 0.0
    meter, result = transfer(line, profile, Instant, before_token=True)
    # tokenStatus read Accept before and after: written again, and the meter said Used
    assert meter.entered == [TOKEN, TOKEN]
    assert result.outcome == "unknown" and result.outcome_text == "outcome unknown: acknowledgement lost"
    assert not result.accepted and result.status == 10


def test_token_write_that_never_arrived_is_written_again_with_its_true_outcome(line, profile):
    class Deaf(TokenMeter):
        lose, ignore = (), (1,)
    meter, result = transfer(line, profile, Deaf, before_token=True)
    assert meter.entered == [TOKEN] and result.outcome == "accepted"


def test_token_ack_garbled_every_time_asks_the_meter(line, profile):
    class Garbled(TokenMeter):
        lose = (1,)

        def on_write(self, address, value, count):
            super().on_write(address, value, count)
            self.send(block("x", bad_bcc=True))  # its answer, garbled every time it is repeated
    meter, result = transfer(line, profile, Garbled)
    assert meter.entered == [TOKEN] and result.outcome == "accepted"
    write = result.exchanges[0]
    assert write.naks_sent == 2 and "took the token" in result.notes[0]


@pytest.mark.parametrize("exec_s", [0.0, 0.4])
def test_nak_in_front_of_the_token_ack_does_not_make_a_second_entry_the_verdict(line, profile, exec_s):
    """A NAK on the line just before the meter's ACK (noise can make one): the client must not take
    the NAK's word for it and write again, reporting Used or 'not ready' for an accepted token."""
    class ForgedNak(TokenMeter):
        lose = (1,)

        def on_write(self, address, value, count):
            super().on_write(address, value, count)
            if count == 1:
                self.send(bytes([NAK, ACK]))
    ForgedNak.exec_s = exec_s
    meter, result = transfer(line, profile, ForgedNak, before_token=True)
    assert meter.entered.count(TOKEN) >= 1
    if meter.entered == [TOKEN]:
        assert result.outcome == "accepted"
    else:  # written again: the meter's Used cannot tell, and the rig says so
        assert result.outcome == "unknown" and result.outcome_text == "outcome unknown: acknowledgement lost"
    assert result.outcome != "rejected"


def test_transfer_account_counts_unknown_apart():
    from rig.tokens import TokenModel
    prof = load_profile()
    model = TokenModel.default(prof)
    model.enter(TOKEN, 0)
    model.enter(TOKEN, 1)  # Used
    acct = TransferAccount()
    acct.record(TOKEN, "unknown", None, "acknowledgement lost")
    assert acct.counts()["unknown"] == 1
    check = acct.check(model)
    assert check["wrong"] == [] and check["applied_unreported"] == [] and len(check["unknown"]) == 1
    wrong = TransferAccount()
    wrong.record(TOKEN, "rejected", 10)  # the old bug: an accepted token reported Rejected
    assert wrong.check(model)["applied_unreported"]


# -- 6. sign-off on every way out ------------------------------------------------------------------
class Mute(FakeMeter):
    """Never answers a read of protocolVersion."""

    def on_read(self, address, count):
        if address != "02":
            super().on_read(address, count)


def test_failed_session_signs_off(line, profile):
    meter = meter_on(line, Mute)
    try:
        with pytest.raises(ClientError):
            with Client(line.hhu_port, profile) as hhu:
                hhu.identify()
                hhu.read("protocolVersion")
        assert wait_for(lambda: meter.seen("command B0"))
        assert meter.seen("command B0")[0][0] == 9600  # at the session speed
        assert hhu.port.baud == 300 or not hhu.port.serial.is_open
        with pytest.raises(KeyboardInterrupt):
            with Client(line.hhu_port, profile) as hhu:
                hhu.identify()
                raise KeyboardInterrupt
        assert wait_for(lambda: len(meter.seen("command B0")) == 2)
    finally:
        meter.close()


def test_token_past_the_execution_limit_signs_off_and_says_unknown(line, tmp_path):
    f = tmp_path / "p.toml"
    f.write_text("[timing]\nexecution_limit_ms = 1200\nnot_ready_poll_ms = 200\n")
    prof = load_profile(f)

    class Slow(TokenMeter):
        exec_s, lose = 60.0, ()
    meter = meter_on(line, Slow)
    try:
        with pytest.raises(ClientError, match="still not ready after the execution limit") as e:
            with Client(line.hhu_port, prof) as hhu:
                hhu.identify()
                hhu.transfer_token(TOKEN)
        assert e.value.result is not None and e.value.result.outcome == "unknown"
        assert wait_for(lambda: meter.seen("command B0"))
    finally:
        meter.close()


# -- 7. tr per attempt -------------------------------------------------------------------------------
class BadThenGood(FakeMeter):
    """First answer to a read: bad BCC after 250 ms; the repeat after our NAK: 400 ms later."""

    def on_read(self, address, count):
        if count == 1:
            self.send(block(f"{address}({self.registers[address]})", bad_bcc=True))
            return
        super().on_read(address, count)

    def on_nak(self):
        self.send(block("04(0)"), tr=0.4)


def test_tr_per_attempt(line, profile):
    meter = meter_on(line, BadThenGood)
    try:
        with Client(line.hhu_port, profile) as hhu:
            hhu.identify()
            value, ex = hhu.read("tokenStatus")
    finally:
        meter.close()
    assert value == "0" and ex.naks_sent == 1
    trs = [t / 1e6 for t in ex.trs_ns]
    assert len(trs) == 2 and 240 <= trs[0] < 400 and 390 <= trs[1] < 600, trs  # each from what it answers
    assert [m.name for m in ex.measurements].count("tr") == 2 and all(m.passed for m in ex.measurements)
    assert [t.said for t in ex.turns] == ["request", "NAK"]


def test_tr_after_a_timeout_is_measured_from_the_repeat(line, profile):
    meter = meter_on(line, LateOnce)
    try:
        with Client(line.hhu_port, profile) as hhu:
            hhu.identify()
            _, ex = hhu.read("tokenStatus")   # answered at once
            _, late = hhu.read("protocolVersion")
    finally:
        meter.close()
    # the answer came 1.7 s after the first request, under 200 ms after the repeat: it is the late
    # answer to the first, measured from there (a true FAIL), and not a too-early answer to the repeat
    assert [t.said for t in late.turns] == ["request", "request"]
    assert 1600 * MS <= late.turns[0].tr_ns <= 1900 * MS and late.turns[1].tr_ns is None
    assert late.tr_ns == late.turns[0].tr_ns and not late.ok
    assert [m.verdict for m in late.measurements if m.name == "tr"] == ["fail"]


def test_rig_token_says_outcome_unknown_with_its_own_exit_code(line, tmp_path):
    class Instant(TokenMeter):
        exec_s = 0.0

        def __init__(self, url):
            super().__init__(url)
            self.registers["04"] = "1"  # an earlier token accepted: the status cannot tell
    f = tmp_path / "p.toml"
    f.write_text("[protocol]\nnak_repeats = 1\n")
    meter = meter_on(line, Instant)
    try:
        r = rig_cli("token", "--json", "--port", line.hhu_port, "--profile", f, TOKEN)
    finally:
        meter.close()
    assert r.returncode == 3 and "Traceback" not in r.stderr, r.stderr
    out = json.loads(r.stdout)
    assert out["outcome"] == "unknown" and out["outcome_text"] == "outcome unknown: acknowledgement lost"
    assert not out["accepted"] and meter.seen("command B0")


class RandomFrames(FakeMeter):
    """Answers reads with well-framed blocks (good BCC) of random printable text, partial or not."""

    def __init__(self, url):
        super().__init__(url)
        import random
        self.rng = random.Random(13)

    def _random_block(self):
        alphabet = "0123456789()*!/ AZaz.\r\n"
        text = "".join(self.rng.choice(alphabet) for _ in range(self.rng.randrange(0, 24)))
        return block(text, self.rng.choice((ETX, EOT)))

    def on_read(self, address, count):
        self.send(self._random_block())

    def on_block_ack(self):
        self.send(self._random_block())

    def on_nak(self):
        self.send(self._random_block())


def test_random_frames_from_a_peer_only_fail_the_exchange(line, tmp_path):
    f = tmp_path / "p.toml"
    f.write_text("[protocol]\nnak_repeats = 0\n[timing]\ncommand_timeout_ms = 600\n")
    prof = load_profile(f)
    meter = meter_on(line, RandomFrames)
    outcomes = []
    try:
        with Client(line.hhu_port, prof) as hhu:
            hhu.identify()
            for reg in ("tokenStatus", "softwareVersion", "FOIN", "serverStatus") * 3:
                try:
                    outcomes.append(hhu.read(reg)[0])
                except ClientError as e:
                    outcomes.append(type(e).__name__)
    finally:
        meter.close()
    assert outcomes == ["ClientError"] * 12  # nothing random ties to a request; nothing raises else


def test_stray_nak_before_the_answer_is_no_tr_fail(line, profile):
    """A NAK byte on the line 100 ms before the meter's own answer (220 ms): no repeat, no false
    tr FAIL; the stray byte is noted."""
    class StrayNak(FakeMeter):
        tr_s = 0.22

        def on_read(self, address, count):
            time.sleep(0.12)
            self.ser.write(bytes([NAK]))
            self.send(block(f"{address}({self.registers[address]})"), tr=0.1)
    meter = meter_on(line, StrayNak)
    try:
        with Client(line.hhu_port, profile) as hhu:
            hhu.identify()
            value, ex = hhu.read("protocolVersion")
    finally:
        meter.close()
    assert value == "1.0" and ex.attempts == 1 and ex.ok, ex.as_dict()
    assert any("NAK set aside" in n for n in ex.notes)
