"""The HHU client: identify, read, write, transfer a token, sign off; every exchange timed.

The client drives a Port (any URL: hardware, or the virtual line) with the profile's timing. What
it reports must be true whatever the meter does, so:

- An answer is tied to its request. Nothing in IEC 62056-21 numbers messages: a Data answer to
  `R1 04()` must carry data-set address 04 (an error answer `(text)` has none and is tied by order
  alone); a frame that began before we finished speaking, a Data answer with another address, an
  ACK where Data is due, are set aside with a note (Exchange.notes) and the client keeps listening
  for the answer until its deadline. Before each request the line is drained, so a late answer to
  an earlier request cannot be taken for the next one. A value is checked against the register's
  definition in the profile (length, characters, encoding); one that fails is asked for again and,
  after the repeat count, the read fails with the reason. A value not tied to its request is never
  returned.
- A garbled answer gets NAK (the meter repeats it); a NAK, silence or a wrong answer makes the
  client repeat its request, up to protocol.nak_repeats. Partial blocks (a Data block ending in
  EOT, FACTS.md §3): each good block is ACKed, a bad one NAKed, the value assembled (its address is
  in the first block only); when the blocks stop coming the client aborts the answer by sending its
  request anew. Nothing a peer sends raises anything but ClientError.
- Speed: the option select carries the identification's own Z when the client can use that speed
  (at most its maximum), otherwise Z = '0' and both stay at the initial speed. A mode B letter gets
  no option select (mode B has none). The option select is never repeated at the new speed: when
  P0 does not come, the client signs off there, returns to the initial speed and identifies again.
- Token writes are not repeated blindly: when the acknowledgement of TokenData is lost, the client
  asks the meter (tokenStatus) whether it took the token before it writes again, and reports the
  meter's outcome, or "outcome unknown: acknowledgement lost" when the meter cannot tell.
- Every turn (request, our NAK, our ACK for the next block) has its own tr, measured from the end of
  what we said to the start of the answer to it, and judged against the limits.
- `with Client(...) as hhu:` signs off (BreakCommand at the session speed) on every way out of a
  session, errors and Ctrl-C included.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from rig import _clock
from rig._framing import E_SYNTAX, E_TRUNCATED, Frame, Framer, bcc
from rig.errors import RigError
from rig.exchange import Exchange, FrameReader, Turn
from rig.link import OS_LATENCY_NS, Port
from rig.measurement import Measurement
from rig.profile import Limits, Profile, Register, load_profile
from rig.protocol import (
    Ack, BreakCommand, Data, DataSet, IDRequest, IDResponse, Message, Nak, OptionSelect,
    PasswordCommand, ProtocolError, ReadCommand, WriteCommand, message_from_frame, parse_datasets,
)
from rig.tokens import ACCEPTING, TokenStatus, code_of

MS = 1_000_000

# What a message is to the request waiting for an answer.
TAKE, PARTIAL, ERROR, SKIP, WRONG = "answer", "partial block", "error answer", "not the answer", "wrong answer"

OUTCOME_ACCEPTED, OUTCOME_REJECTED, OUTCOME_UNKNOWN = "accepted", "rejected", "unknown"
ACK_LOST = "acknowledgement lost"


class ClientError(RigError):
    """An exchange that failed after every repeat; carries its record (and, for a token transfer
    that failed after the token may have been taken, the TokenResult so far)."""

    def __init__(self, message: str, exchange: Exchange | None = None, result: "TokenResult | None" = None):
        super().__init__(message)
        self.exchange = exchange
        self.result = result


class AnswerLost(ClientError):
    """No answer (or none that answers the request) to a request the client must not repeat blindly."""
    exchange: Exchange  # always the exchange whose answer was lost

    def __init__(self, message: str, exchange: Exchange):
        super().__init__(message, exchange)


class TokenLockoutActive(ClientError):
    """The meter refuses tokens for now (tokenStatus: token lockout active)."""


@dataclass
class TokenResult:
    """What a token transfer established: tokenStatus, the TCDU results, the outcome (accepted,
    rejected or unknown, with why) and every exchange it took."""
    token: str
    status: int | None = None            # tokenStatus code (None: not known)
    status_name: str = ""
    results: dict[str, tuple[int, str]] = field(default_factory=dict)  # register -> (code, name)
    execution_ns: int | None = None      # write's ACK to the first status other than Not ready (None: no ACK seen)
    exchanges: list[Exchange] = field(default_factory=list)  # the write(s), polls and TCDU reads
    outcome: str = OUTCOME_UNKNOWN       # "accepted" | "rejected" | "unknown"
    unknown_reason: str = ""             # why the outcome is unknown, e.g. "acknowledgement lost"
    before: list[Exchange] = field(default_factory=list)     # tokenStatus reads before the write
    notes: list[str] = field(default_factory=list)           # how the outcome was established

    @property
    def accepted(self) -> bool:
        """True only when the meter's tokenStatus said it accepted the token."""
        return self.outcome == OUTCOME_ACCEPTED

    @property
    def known(self) -> bool:
        """False when the outcome could not be established (unknown_reason says why)."""
        return self.outcome != OUTCOME_UNKNOWN

    @property
    def outcome_text(self) -> str:
        """"accepted", "rejected: <status>", or "outcome unknown: <why>"."""
        if self.outcome == OUTCOME_UNKNOWN:
            return f"outcome unknown: {self.unknown_reason or 'not established'}"
        return self.outcome if self.accepted else f"rejected: {self.status_name}"

    def as_dict(self) -> dict:
        """The result as plain JSON-ready data, its exchanges included."""
        return {"token": self.token, "status": self.status, "status_name": self.status_name,
                "accepted": self.accepted, "outcome": self.outcome, "outcome_text": self.outcome_text,
                "unknown_reason": self.unknown_reason, "notes": list(self.notes),
                "results": {k: {"code": c, "name": n} for k, (c, n) in self.results.items()},
                "execution_ms": None if self.execution_ns is None else self.execution_ns / 1e6,
                "before": [e.as_dict() for e in self.before],
                "exchanges": [e.as_dict() for e in self.exchanges]}


_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_DIGITS = re.compile(r"[0-9]+")


def check_value(reg: Register, value: str, codes: dict[int, str] | None = None) -> str | None:
    """What is wrong with a value read from `reg`, against its definition in the profile (codes: its
    code table); None: fine. A code outside the table is not taken: a line fault that inserts or
    drops two equal digits passes parity and BCC (tokenStatus "177")."""
    if len(value) > reg.length:
        return f"{len(value)} characters, {reg.name} holds at most {reg.length}"
    enc = reg.encoding
    if enc == "decimal" and not _DECIMAL.fullmatch(value):
        return f"{value!r} is not a decimal number ({reg.name} is decimal)"
    if enc == "code" and not _DIGITS.fullmatch(value):
        return f"{value!r} is not a code number ({reg.name} holds codes of {reg.codes})"
    if enc == "code" and codes is not None and int(value) not in codes:
        return f"code {value} is not in the profile's {reg.codes} table"
    if enc == "digits20" and not (len(value) == 20 and _DIGITS.fullmatch(value)):
        return f"{value!r} is not 20 digits"
    if any(not (" " <= ch <= "~") for ch in value):  # ascii, binary7: ISO/IEC 646 printable
        return f"{value!r} holds a character outside printable ISO/IEC 646"
    return None


class Client:
    """An HHU talking to one meter on one port. `with Client(url) as hhu: hhu.identify() ...`

    address: the device address of the IDRequest; "" (default) asks any device (IEC 62056-21 §6.3).
    baud: the highest speed this HHU will use (default: the profile's character.max_baud)."""

    def __init__(self, port: Port | str, profile: Profile | None = None, *, address: str | None = None,
                 baud: int | None = None):
        self.profile = profile or load_profile()
        self.address = self.check_address("" if address is None else address, self.profile.limits)
        if isinstance(port, str):
            port = Port(port, baud=self.profile.character.initial_baud, fmt=self.profile.character.format)
        self.port = port
        self.want_baud = baud or self.profile.character.max_baud
        self.reader = FrameReader(port, Framer.from_profile(self.profile, parity="even"
                                                            if self.profile.character.format == "7E1" else "none"),
                                  self.profile.timing.ta_ns, quiet_min_ns=self.profile.timing.lone_ack_quiet_ns)
        self.identity: IDResponse | None = None
        self.exchanges: list[Exchange] = []
        self._last_end_ns = 0
        self._session_baud: int | None = None  # speed of a session the meter may be in; None: none
        self.sign_off_error: str | None = None  # why the sign-off on the way out failed, if it did

    @staticmethod
    def check_address(address: str, limits: Limits | None = None) -> str:
        """A device address for the IDRequest (within the profile's limits, default the default
        profile's), or ValueError saying what is wrong with it."""
        try:
            IDRequest(address, limits=limits)
        except ProtocolError as e:
            raise ValueError(f"device address {address!r}: {e.reason}") from None
        return address

    @property
    def in_session(self) -> bool:
        """True from the option select (programming) until the sign-off: the meter may be in a session."""
        return self._session_baud is not None

    # -- the exchanges -----------------------------------------------------------------------------
    def identify(self, mode: str = "1") -> Exchange:
        """IDRequest, IDResponse, option select (mode 1: programming), speed switch; the server's
        P0 answer at the new speed completes it. When P0 does not come, the client signs off at that
        speed, returns to the initial speed and identifies again (protocol.nak_repeats times)."""
        p = self.profile
        tries = p.protocol.nak_repeats + 1
        lost: AnswerLost | None = None
        for _ in range(tries):
            if self.in_session:
                self.sign_off()  # the meter may be in a session from before: end it first
            self.port.set_baud(p.character.initial_baud)
            ex = self._transact("identify", IDRequest(self.address, limits=p.limits), ("ident",))
            ident = ex.message
            assert isinstance(ident, IDResponse)  # ("ident",) takes nothing else
            self.identity = ident
            select, baud = self._option_select_for(ident, mode, ex)
            sel = Exchange("option select")
            self.exchanges.append(sel)
            self._send(select, sel)
            if mode == "1":
                self._session_baud = baud  # from here on the meter may be in a session at this speed
            if baud != self.port.baud:
                # at once after our last character: the meter answers after its guard delay at the
                # earliest, so this side is never late for P0 (the guard is the meter's to keep)
                self.port.set_baud(baud, at_ns=sel.request_end_ns)
            if mode != "1":
                return ex
            try:
                self._transact("option select", select, ("p0",), ex=sel, send=False, repeat="never",
                               extra_ns=p.timing.speed_switch_guard_ns)
                return ex
            except AnswerLost as e:
                lost = e  # never the option select again at the new speed: sign off, start over
        raise ClientError(f"identify: no P0 after the option select in {tries} identification(s): {lost}",
                          lost.exchange if lost else None)

    def _option_select_for(self, ident: IDResponse, mode: str, ex: Exchange) -> tuple[OptionSelect, int]:
        """The option select answering an identification, and the speed after it (IEC 62056-21
        §6.4.3: the speed changes only when the option select's Z is the identification's Z)."""
        p = self.profile
        z, initial = ident.baud_char, p.character.initial_baud
        if z in p.character.baud_chars_mode_b and z not in p.character.baud_chars_mode_c:
            raise ClientError(
                f"identify: the meter identified in protocol mode B (baud character {z!r}, "
                f"{p.character.baud_chars_mode_b[z]} Bd): mode B has no option select and the client "
                "needs the programming mode of protocol mode C; no option select sent", ex)
        proposed = p.character.baud_chars_mode_c.get(z)
        top = min(self.want_baud, p.character.max_baud)
        if proposed is not None and proposed <= top:
            return OptionSelect("0", z, mode), proposed
        why = "unknown baud character" if proposed is None else f"{proposed} Bd is above this HHU's {top} Bd"
        ex.notes.append(f"identification proposes {z!r} ({why}): option select Z='0', staying at {initial} Bd")
        return OptionSelect("0", p.baud_char(initial, "C"), mode), initial

    def read(self, register: str) -> tuple[str, Exchange]:
        """The value of a register (by name or registerID) and the exchange. The value is the one
        the meter gave for this register, checked against its definition, or ClientError."""
        reg = self._register(register)
        ex = self._transact(f"read {reg.name}", ReadCommand.of(reg.register_id, limits=self.profile.limits),
                            ("data", reg))
        if ex.answer_kind == ERROR:
            raise ClientError(f"read {reg.name} ({reg.register_id}): the meter answered error "
                              f"{_error_text(ex)!r}", ex)
        assert ex.value is not None  # a data answer taken: the register's value, checked
        return ex.value, ex

    def write(self, register: str, value: str) -> Exchange:
        """Write a register; the meter's ACK completes it, an error answer raises ClientError."""
        reg = self._register(register)
        ex = self._transact(f"write {reg.name}", self._write_command(reg, value), ("ack",))
        if ex.answer_kind == ERROR:
            raise ClientError(f"write {reg.name} ({reg.register_id}): the meter answered error "
                              f"{_error_text(ex)!r}", ex)
        return ex

    def transfer_token(self, token: str) -> TokenResult:
        """Write TokenData, poll tokenStatus until it is no longer Not ready (within the profile's
        execution limit), then read the TCDU results.

        Before the write, tokenStatus is read (and polled while Not ready: the meter must be idle).
        A write whose acknowledgement is lost is not repeated blindly: tokenStatus says whether the
        meter took it (Not ready, or a status other than before the write: taken). Only when it still
        reads as before is the token written again; if that second entry then shows a status a
        re-entry may show (client.reentry_statuses: Used, ...), the outcome is unknown and said so.
        Assumes no token is entered by other means (keypad) during the transfer."""
        p = self.profile
        reg = self._register("TokenData")
        command = self._write_command(reg, token)
        result = TokenResult(token)
        not_ready = self._code("tokenStatus", TokenStatus.NOT_READY)
        before, _ = self._status_when_idle(result, result.before, _clock.now_ns() + p.timing.execution_limit_ns)
        unsure = False      # a write may have been taken without our knowing
        taken_ex = None     # the write the meter took (ACK), or the last one sent when known from tokenStatus
        status = None
        for attempt in range(p.protocol.nak_repeats + 1):
            try:
                ex = self._transact("write TokenData", command, ("ack",), repeat="ask")
            except AnswerLost as lost:
                # no ACK: lost, garbled, or a NAK (which a line can forge in front of the ACK): the
                # meter is asked, the token is never written again on the strength of the line alone
                ex = lost.exchange
                result.exchanges.append(ex)
                ex.notes.append(f"{ACK_LOST}: {lost}; asking the meter before writing again")
                status = self._status_or_unknown(result, f"{ACK_LOST}, and tokenStatus could not be read")
                if status == not_ready or status != before:
                    result.notes.append(f"write {attempt + 1}: {ACK_LOST} ({ex.errors[-1] if ex.errors else lost}); "
                                        f"tokenStatus {status} (before the write: {before}): the meter took the token")
                    taken_ex = ex
                    break
                result.notes.append(f"write {attempt + 1}: {ACK_LOST} ({ex.errors[-1] if ex.errors else lost}); "
                                    f"tokenStatus still {status}: not taken, or taken with the same outcome; "
                                    "writing again")
                unsure = unsure or self._code_name("tokenStatus", before) is not None
                status = None
                continue
            result.exchanges.append(ex)
            if ex.answer_kind == ERROR:
                text = _error_text(ex)
                if unsure and text == p.error_texts["not_ready"]:
                    result.notes.append(f"write {attempt + 1}: error answer {text!r}: the earlier write "
                                        "was taken and is executing")
                    taken_ex = ex
                    break
                if unsure:
                    result.outcome, result.unknown_reason = OUTCOME_UNKNOWN, ACK_LOST
                    result.notes.append(f"write {attempt + 1}: error answer {text!r} after an earlier "
                                        f"write whose acknowledgement was lost")
                    return result
                raise ClientError(f"write TokenData ({reg.register_id}): the meter answered error {text!r}", ex)
            taken_ex = ex
            break
        else:
            if unsure:
                result.outcome, result.unknown_reason = OUTCOME_UNKNOWN, ACK_LOST
                return result
            raise ClientError(f"write TokenData: no acknowledgement in {p.protocol.nak_repeats + 1} write(s), "
                              f"and tokenStatus stayed {before}: the meter did not take the token",
                              result.exchanges[-1] if result.exchanges else None)
        # taken: wait for the outcome
        limit = taken_ex.request_end_ns + p.timing.execution_limit_ns
        if status is None or status == not_ready:
            status, rex = self._status_when_idle(result, result.exchanges, limit, token=token)
        else:
            rex = result.exchanges[-1]
        if isinstance(taken_ex.message, Ack) and rex is not None and rex.answer_first_ns >= 0:
            result.execution_ns = rex.answer_first_ns - taken_ex.answer_first_ns
        result.status = status
        result.status_name = p.codes["tokenStatus"].get(status, f"code {status}")
        if unsure and result.status_name.lower() in p.client.reentry_names():
            result.outcome, result.unknown_reason = OUTCOME_UNKNOWN, ACK_LOST
            result.notes.append(f"tokenStatus {result.status_name!r} after writing again: the first write "
                                "may have been taken; the meter cannot say")
        else:
            result.outcome = OUTCOME_ACCEPTED if result.status_name.lower() in ACCEPTING else OUTCOME_REJECTED
        for name in ("AuthenticationResult", "ValidationResult", "TokenResult"):
            try:
                value, rex = self.read(name)
                code = self._code_value(value, rex)
            except ClientError as e:
                e.result = result
                raise
            result.exchanges.append(rex)
            result.results[name] = (code, p.codes[name].get(code, f"code {code}"))
        if result.known and result.status_name.lower() == TokenStatus.TOKEN_LOCKOUT_ACTIVE.lower():
            raise TokenLockoutActive(f"token {token}: the meter's token lockout is active", rex, result)
        return result

    def _status_when_idle(self, result: TokenResult, into: list[Exchange], limit_ns: int,
                          token: str | None = None) -> tuple[int, Exchange]:
        """Read tokenStatus until it is no longer Not ready, before limit_ns."""
        p = self.profile
        not_ready = self._code("tokenStatus", TokenStatus.NOT_READY)
        while True:
            status = self._status_or_unknown(result, "tokenStatus could not be read after the write"
                                             if token else None, into)
            rex = into[-1]
            if status != not_ready:
                return status, rex
            if _clock.now_ns() + p.timing.not_ready_poll_ns > limit_ns:
                what = f"token {token}" if token else "before the write: the meter"
                e = ClientError(f"{what}: still not ready after the execution limit "
                                f"{p.timing.execution_limit_ns / 1e9:g} s", rex)
                if token:
                    result.outcome, result.unknown_reason = OUTCOME_UNKNOWN, "still Not ready after the execution limit"
                    e.result = result
                raise e
            _clock.sleep_until(_clock.now_ns() + p.timing.not_ready_poll_ns)

    def _status_or_unknown(self, result: TokenResult, unknown: str | None,
                           into: list[Exchange] | None = None) -> int:
        """tokenStatus as a code; on failure ClientError, carrying the result as unknown when the
        token may have been taken (`unknown` says why)."""
        try:
            value, rex = self.read("tokenStatus")
            code = self._code_value(value, rex)
        except ClientError as e:
            if unknown:
                result.outcome, result.unknown_reason = OUTCOME_UNKNOWN, unknown
                e.result = result
            raise
        (result.exchanges if into is None else into).append(rex)
        return code

    @staticmethod
    def _code_value(value: str, ex: Exchange) -> int:
        if not _DIGITS.fullmatch(value):
            raise ClientError(f"{ex.name}: {value!r} is not a code number", ex)
        return int(value)

    def sign_off(self) -> Exchange:
        """BreakCommand at the session's speed (or the port's, when no session is known); the
        server answers nothing and returns to its start state; the client to the initial speed."""
        ex = Exchange("sign off")
        self.exchanges.append(ex)
        baud = self._session_baud or self.port.baud
        try:
            if baud != self.port.baud:
                self.port.set_baud(baud)
            self._drain(ex)
            self._send(BreakCommand(), ex)
        finally:
            self._session_baud = None
            self.port.set_baud(self.profile.character.initial_baud)
        return ex

    # -- mechanics ---------------------------------------------------------------------------------
    def _register(self, register: str) -> Register:
        p = self.profile
        reg = p.registers.get(register) or p.register_by_id(register)
        if reg is None:
            raise ClientError(f"register {register!r}: not in the profile's register table "
                              f"({', '.join(p.registers)})")
        return reg

    def _write_command(self, reg: Register, value: str) -> WriteCommand:
        try:
            return WriteCommand.of(DataSet(reg.register_id, value, limits=self.profile.limits))
        except ProtocolError as e:
            raise ClientError(f"write {reg.name}: {e}") from None

    def _code(self, table: str, name: str) -> int | None:
        """The profile's code for `name`; the shipped default profile's when this one has none."""
        code = code_of(self.profile, table, name)
        return code if code is not None else code_of(load_profile(), table, name)

    def _code_name(self, table: str, code: int) -> str | None:
        return self.profile.codes.get(table, {}).get(code)

    def _send(self, msg: Message, ex: Exchange) -> None:
        """Send a request (a first one or a repeat): a new turn."""
        chars = msg.to_bytes()
        ex.request_start_ns, ex.request_end_ns = self._say(chars, ex, "request")
        ex.request = chars
        ex.attempts += 1

    def _say(self, chars: bytes, ex: Exchange, what: str) -> tuple[int, int]:
        """Put characters on the line: a new turn of the exchange. Returns when they are off the line."""
        start, end = self._put(chars)
        ex.turns.append(Turn(what, end))
        return start, end

    def send(self, msg: Message | bytes, *, wait_ns: int | None = None,
             at_ns: int | None = None) -> tuple[int, int, Frame | None]:
        """Say a message (or 7-bit characters) and take the first frame that comes back within
        wait_ns (default: the command timeout), as requests are said and answers taken: for a case
        that sends what the client would not. Returns (start, end of what was said on the line, the
        frame or None). at_ns: when to start; default no sooner than tr_min_fast after the last frame."""
        chars = bytes(msg) if isinstance(msg, (bytes, bytearray)) else msg.to_bytes()
        start, end = self._put(chars, at_ns)
        frame = self._answer_frame(end, self.profile.timing.command_timeout_ns if wait_ns is None else wait_ns)
        if frame is not None:
            self._last_end_ns = frame.t_last_ns
        return start, end, frame

    def _put(self, chars: bytes, at_ns: int | None = None) -> tuple[int, int]:
        """Put characters on the line, at at_ns or no sooner than tr_min_fast after the last frame
        said or taken (assumed, as HHUs do); a copy heard back (echo) is ours. Returns the start of
        the first character and the end of the last one's stop bit, once they are off the line."""
        at = max(_clock.now_ns(), self._last_end_ns + self.profile.timing.tr_min_fast_ns) if at_ns is None else at_ns
        times = self.port.write(chars, at_ns=at)
        end = int(times[-1]) + self.port.char_ns
        self.reader.expect_echo(chars, end + 2 * self.port.char_ns)
        self._last_end_ns = end
        return int(times[0]), end

    def _answer_frame(self, said_end_ns: int, wait_ns: int, notes: list[str] | None = None) -> Frame | None:
        """The next frame heard that is not garbage (garbage is noted in `notes`), by the time an
        answer starting wait_ns after said_end_ns has its first character in: one character time
        later, plus the OS's allowance. None when none came."""
        deadline = said_end_ns + wait_ns + self.port.char_ns + OS_LATENCY_NS
        while (frame := self.reader.next_frame(deadline)) is not None and frame.kind == "garbage":
            if notes is not None:
                notes.append(f"garbage set aside: {len(frame.data)} byte(s)")
        return frame

    def _drain(self, ex: Exchange) -> None:
        """Empty the line before a new request: nothing said before it can answer it."""
        for f in self.reader.drain(_clock.now_ns() + self.profile.timing.ta_ns):
            ex.notes.append(f"set aside before the request: {f.kind} frame of {len(f.data)} byte(s), "
                            "late or unasked")

    def _transact(self, name: str, request: Message, want: tuple, *, ex: Exchange | None = None,
                  send: bool = True, repeat: str = "any", extra_ns: int = 0) -> Exchange:
        """Send `request` and take its answer. want: ("ident",) an IDResponse, ("p0",) the P0 after
        the option select, ("ack",) ACK or an error answer, ("data", register) that register's
        data set or an error answer. repeat: "any" (repeat after silence, NAK or a wrong answer),
        "ask" (a non-idempotent write: a garbled answer is NAKed, but anything else, the meter's NAK
        included, which the line can forge, raises AnswerLost for the caller to ask the meter),
        "never" (AnswerLost: the option select).
        extra_ns: time the meter may take before its tr starts (the speed-switch guard)."""
        if ex is None:
            ex = Exchange(name)
            self.exchanges.append(ex)
        try:
            if send:
                self._drain(ex)
                self._send(request, ex)
            self._receive(ex, request, want, repeat, extra_ns)
        except OSError as e:  # PortError: the line went away
            ex.errors.append(str(e))
            self._measure(ex)
            raise ClientError(f"{name}: {e}", ex) from None
        return ex

    def _receive(self, ex: Exchange, request: Message, want: tuple, repeat: str, extra_ns: int) -> None:
        p = self.profile
        parts: list[str] = []      # partial blocks of the answer so far
        frames: list[bytes] = []
        while True:
            turn = ex.turns[-1]
            # the answer must start within the command timeout
            wait = extra_ns + p.timing.command_timeout_ns
            problem: str | None = None
            nak = False
            frame: Frame | None = None
            verdict: str | None = None
            msg: Message | None = None
            why = ""
            heard_nak = None  # a NAK is one byte that noise can make: acted on only if nothing better comes
            while True:
                frame = self._answer_frame(turn.said_end_ns, wait, ex.notes)
                if frame is None:
                    if heard_nak is not None:
                        frame = heard_nak
                        self._timed(ex, turn, frame)
                        ex.naks_received += 1
                        problem = "NAK from the meter"
                    else:
                        problem = f"no answer within {p.timing.command_timeout_ns / 1e6:g} ms"
                    break
                if self._stale(frame, turn.said_end_ns):
                    ex.notes.append(f"{frame.kind} frame set aside: it began before our {turn.said} ended "
                                    "(an answer to something said earlier)")
                    continue
                if frame.errors & E_TRUNCATED:
                    # cut short by the start of another frame (or the deadline): not an answer to
                    # ask again for; what started after it is the candidate
                    ex.notes.append(f"{frame.kind} frame cut short set aside: {len(frame.data)} byte(s)")
                    continue
                msg, bad = self._message(frame, continuing=bool(parts))
                if bad:
                    self._timed(ex, turn, frame)
                    problem, nak = f"bad answer: {bad}", True
                    break
                assert msg is not None  # _message gives the message or what is wrong with it
                if isinstance(msg, Nak):
                    if heard_nak is not None:
                        ex.notes.append("NAK set aside: another NAK followed")
                    heard_nak = frame
                    continue
                if heard_nak is not None:
                    ex.notes.append("NAK set aside: more came after it (a stray NAK, not the meter's answer)")
                    heard_nak = None
                verdict, why = self._judge(want, msg, parts)
                if verdict == SKIP:
                    ex.notes.append(f"{_short(msg)} set aside: {why}")
                    continue
                self._timed(ex, turn, frame)
                if verdict == WRONG:
                    problem = f"wrong answer: {why}"
                break
            if problem is None and verdict == PARTIAL:
                assert isinstance(msg, Data) and frame is not None  # only a Data block is PARTIAL
                parts.append(msg.data)
                frames.append(bytes(frame.data))
                turn.result = PARTIAL
                # one data set is at most address(value*unit): more is not an answer to one read
                most = p.limits.address_max + p.limits.value_max_programming + p.limits.unit_max + 3
                if sum(map(len, parts)) > most or len(parts) > most:
                    problem = f"partial-block answer longer than one data set ({most} characters)"
                else:
                    self._last_end_ns = frame.t_last_ns
                    self._say(Ack().to_bytes(), ex, "ACK")  # send the next block
                    continue
            if problem is None:
                break
            turn.result = problem
            ex.errors.append(problem)
            if ex.attempts + ex.naks_sent > p.protocol.nak_repeats:
                self._measure(ex)
                why = f"{ex.name}: {problem} (after {ex.attempts} request(s) and {ex.naks_sent} NAK(s))"
                # a request not to be repeated blindly may have been taken: the caller must find out
                if repeat in ("never", "ask"):
                    raise AnswerLost(why, ex)
                raise ClientError(why, ex)
            if nak:
                assert frame is not None  # a NAK answers a bad frame heard
                ex.naks_sent += 1  # ask for the answer (or the block) again
                self._last_end_ns = frame.t_last_ns
                self._say(Nak().to_bytes(), ex, "NAK")
                continue
            if repeat in ("never", "ask"):
                self._measure(ex)
                raise AnswerLost(f"{ex.name}: {problem}", ex)
            # silence, a NAK or a wrong answer: the request again (a new command also ends a
            # partial-block answer in progress, FACTS.md §3)
            parts, frames, ex.blocks = [], [], 0
            self._drain(ex)
            self._send(request, ex)
        # it came through, perhaps after repeats: the problems met on the way were recovered
        assert frame is not None and verdict is not None  # no problem: a frame was judged
        turn.result = verdict
        ex.recovered, ex.errors = ex.errors, []
        ex.message = msg
        ex.answer = b"".join(frames) + bytes(frame.data)
        ex.answer_kind = verdict if verdict == ERROR else frame.kind
        ex.blocks = len(parts)
        ex.answer_last_ns = frame.t_last_ns
        first = next((t for t in reversed(ex.turns) if t.said == "request" and t.tr_ns is not None), turn)
        ex.answer_first_ns = first.answer_first_ns
        ex.tr_ns = first.tr_ns
        ex.value = why if verdict == TAKE and want[0] == "data" else None
        self._last_end_ns = frame.t_last_ns
        self._measure(ex)

    def _message(self, frame, continuing: bool) -> tuple[Message | None, str | None]:
        """The message of a frame, or what is wrong with it. A partial block that continues a data
        set (no address before its '(' or ')') breaks the framer's per-block syntax rule but not the
        protocol: its syntax is checked on the assembled answer."""
        if frame.ok:
            try:
                return message_from_frame(frame, self.profile.limits), None
            except (ProtocolError, UnicodeDecodeError, ValueError, IndexError) as e:
                return None, str(e)
        raw = bytes(frame.data)
        if continuing and frame.kind == "data" and frame.errors == E_SYNTAX and len(raw) >= 3:
            bcc_on = self.profile.protocol.bcc_on_data
            end = -2 if bcc_on else -1
            bcc_ok = not bcc_on or bcc(raw, 1, len(raw) - 1) == raw[-1]
            if raw[end] in (3, 4) and bcc_ok:
                try:
                    return Data(raw[1:end].decode("ascii"), raw[end] == 4), None
                except (ProtocolError, UnicodeDecodeError) as e:
                    return None, str(e)
        return None, "; ".join(frame.errors_list()) or "bad frame"

    def _judge(self, want: tuple, msg: Message, parts: list[str]) -> tuple[str, str]:
        """Whether msg answers the request waiting (TAKE, PARTIAL, ERROR), is something else on the
        line (SKIP: set aside, keep listening) or answers it wrongly (WRONG: ask again)."""
        kind = want[0]
        if kind == "ident":
            return (TAKE, "") if isinstance(msg, IDResponse) else (SKIP, "not an identification")
        if kind == "p0":
            if isinstance(msg, PasswordCommand) and msg.command_type == "0":
                return TAKE, ""
            return SKIP, "not the P0 that follows the option select"
        if kind == "ack" and isinstance(msg, Ack):
            return TAKE, ""
        if not isinstance(msg, Data):
            return SKIP, f"not a Data or {'ACK' if kind == 'ack' else 'error'} answer"
        if kind == "ack":
            if not msg.partial and _is_error(msg):
                return ERROR, ""
            return SKIP, "Data with a data set: an answer to a read, not to a write"
        reg: Register = want[1]
        rid = reg.register_id
        if not parts:
            if msg.partial:
                if msg.data.startswith(rid + "("):
                    return PARTIAL, ""
                return SKIP, f"a partial block that does not begin with data-set address {rid}"
            if _is_error(msg):
                return ERROR, ""
            text = msg.data
        else:
            if msg.partial:
                return PARTIAL, ""
            text = "".join(parts) + msg.data
        try:
            datasets = parse_datasets(text, self.profile.limits)
        except ProtocolError as e:
            return WRONG, f"data {text!r}: {e.reason}"
        if not datasets:
            return WRONG, f"no data set in {text!r}"
        if datasets[0].address != rid:
            if parts:
                return WRONG, f"data-set address {datasets[0].address!r}, not {rid!r}"
            return SKIP, f"data-set address {datasets[0].address!r}, not {rid!r}: the answer to another request"
        if len(datasets) != 1:
            return WRONG, f"{len(datasets)} data sets for one register"
        value = datasets[0].value
        bad = check_value(reg, value, self.profile.codes.get(reg.codes) if reg.codes else None)
        if bad:
            return WRONG, f"{rid}: {bad}"
        return TAKE, value

    def _timed(self, ex: Exchange, turn: Turn, frame) -> None:
        """The frame answers this turn: its tr, from the end of what we said to its first character
        on the line (arrival less one character time). An answer sooner than tr_min after a repeated
        request, while an earlier request went unanswered, is the late answer to that one: its tr
        is measured from there (and the repeat stays unanswered in the record)."""
        ex.max_ta_ns = max(ex.max_ta_ns, frame.max_gap_ns)
        if turn.tr_ns is not None or frame.t_first_ns < 0:
            return
        start = frame.t_first_ns - self.port.char_ns
        if turn.said == "request" and start - turn.said_end_ns < self._tr_min_ns():
            earlier = [t for t in ex.turns[:-1] if t.said == "request" and t.tr_ns is None]
            if earlier:
                turn = earlier[-1]
                ex.notes.append(f"an answer {(start - ex.turns[-1].said_end_ns) / 1e6:.1f} ms after the "
                                f"repeat, before tr_min: the late answer to request {ex.turns.index(turn) + 1}")
        turn.answer_first_ns = frame.t_first_ns
        turn.tr_ns = start - turn.said_end_ns

    def _tr_min_ns(self, ident: IDResponse | None = None) -> int:
        """tr_min for the meter (20 ms when its identification's third letter is lower case)."""
        ident = ident or self.identity
        return self.profile.timing.tr_min_for(ident.manufacturer if ident is not None else "")

    def _stale(self, frame, said_end: int) -> bool:
        """A frame that began on the line before we finished speaking cannot answer what we said
        (half duplex): it answers an earlier attempt. Only where the port has line timing."""
        if not self.port.line_timed or frame.t_first_ns < 0:
            return False
        return frame.t_first_ns - self.port.char_ns < said_end - self.port.char_ns // 2

    def _measure(self, ex: Exchange) -> None:
        """A tr measurement for every turn that got an answer, each judged; ta over the answer. The
        basis cites the profile's own source for the limits (or the override that set them)."""
        p, t = self.profile, self.profile.timing
        tr_min = self._tr_min_ns(ex.message if isinstance(ex.message, IDResponse) else None)
        fast = tr_min == t.tr_min_fast_ns != t.tr_min_ns
        tr_basis = p.basis("timing.tr_min_fast" if fast else "timing.tr_min", "timing.tr_max")
        ex.measurements = [m for m in ex.measurements if m.name not in ("tr", "ta max")]
        for i, turn in enumerate(ex.turns):
            if turn.tr_ns is not None:
                after = "" if i == 0 else f"; after our {turn.said}"
                ex.measurements.append(Measurement("tr", turn.tr_ns / 1e6, "ms", tr_min / 1e6, t.tr_max_ns / 1e6,
                                                   basis=tr_basis + after))
        if ex.turns and any(turn.tr_ns is not None for turn in ex.turns):
            ex.measurements.append(Measurement("ta max", ex.max_ta_ns / 1e6, "ms", None, t.ta_ns / 1e6,
                                               basis=p.basis("timing.ta")))

    def close(self) -> None:
        """Close the port (no sign-off: sign_off() first to end a session)."""
        self.port.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        """Sign off when the meter may be in a session (any way out: error, Ctrl-C), then close."""
        try:
            if self.in_session:
                try:
                    self.sign_off()
                except (ClientError, OSError) as e:
                    self.sign_off_error = str(e)
        finally:
            self.close()


def _error_text(ex: Exchange) -> str | None:
    """The text of the error answer an exchange took (answer_kind ERROR: only a Data is one)."""
    assert isinstance(ex.message, Data)
    return ex.message.error_text


def _is_error(msg: Data) -> bool:
    """An error answer: (text) with no data-set address (IEC 62056-21 §6.3)."""
    return msg.error_text is not None and msg.data.startswith("(")


def _short(msg: Message) -> str:
    s = str(msg)
    return s if len(s) <= 60 else s[:57] + "..."
