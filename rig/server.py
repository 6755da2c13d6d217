"""The meter emulator's I/O-free core: IEC 62055-52 §6.6 server functions (Annex A) as a state machine.

It never sleeps, never reads a clock and never touches a port. The I/O loop hands it each frame with
the arrival time of the frame's last character and gets back a Reaction: what to send, when the
first character should go out, the gap between characters, and the baud to switch to. Timers (tt
fallback, inactivity, end of token execution) are the loop's job too: it calls on_timer() at
next_deadline_ns(). on_frame() also runs any timer already due, so a late call is never wrong.

    emu = MeterEmulator(profile)
    r = emu.on_frame(frame, now_ns)      # r.answer, r.send_at_ns, r.char_gap_ns, r.baud, r.event
    emu.on_timer(emu.next_deadline_ns())
    print(describe())                    # the state machine as text

Decisions (IEC 62056-21 where it says so, else assumed; see also rig/tokens.py):
- Session states: start -> identified -> programming, or -> readout -> start (STATE_TABLE).
  Meter state (TCDU registers, token execution, TokenLockout, used tokens) lives outside the
  session: break, timeouts and re-identification leave it alone; power_cycle() resets the session
  and clears the lockout.
- A valid IDRequest for us (empty address, or the profile's device address; leading zeros are not
  significant: `/?1!` addresses 00000001, IEC 62056-21 §6.3) in any state starts a new session at
  the initial baud (assumed); one for another address is not answered. The framer ends an open
  block at '/' and the server loop ends a frame with no character for ta, so no stray SOH/STX
  keeps an IDRequest from being heard.
- Option select: protocol V must be '0' and mode Y '0' or '1', else back to start, silently
  (assumed: other protocols are not supported). The speed changes only when Z is the one the
  identification proposed (IEC 62056-21 §6.4.3); any other Z leaves the session at the initial
  speed, and the answer goes out at it after tr. On the proposed Z the port switches at once and
  the answer goes out at max(tr, speed_switch_guard + speed_switch_margin) after the option select:
  the client switches at the guard, so the answer never starts while it is still switching.
- Mode 1 (IEC 62056-21 mode C programming mode): the server answers SOH P0 STX (device address)
  ETX BCC at the new speed. P1 with the profile's emulator.password ("" accepts any) -> ACK, a
  wrong one -> error answer access_denied; with a password set, writes need a good P1 first
  (assumed). P0/P2 from the client and E commands are undefined-command processing (assumed).
- Mode 0 (readout): Data with every readable register `id(value)` CR LF, closed by `!` CR LF, at
  Z's speed; then back to start and the initial speed (Reaction.baud_after).
- In programming, a frame with parity, BCC, syntax, gap (> ta) or truncation errors gets NAK
  (IEC 62056-21 §6.3); garbage between frames is ignored (no frame start was seen). Outside
  programming, bad frames are ignored (a server does not NAK a garbled request).
- Reads: every data set's address is a registerID; unknown -> error answer unknown_register,
  write-only -> access_denied; the answer holds one data set per register asked.
- Partial blocks (IEC 62056-21 §6.4.7): a read R3/R4 (every read with emulator.partial_answers
  = "always") whose answer is longer than protocol.block_size > 0 goes in blocks of that many data
  characters, split anywhere (the data-set address only in the first); every block but the last
  ends in EOT; ACK asks for the next, NAK repeats the last, any new command aborts the rest. A write
  ending in EOT (W3/W4, or any W) opens a partial-block write: each block is ACKed, the following
  blocks are Data frames STX data EOT|ETX BCC (assumed), a bad one gets NAK, and the ETX block
  has the assembled write executed (a syntax error only visible because a data set spans blocks
  is not held against a block; the whole is checked). A new command aborts it.
- Writes: exactly one data set (assumed; else bad_value). Unknown register -> unknown_register,
  read-only -> access_denied, too long (or not 20 for digits20) -> bad_length, wrong encoding
  (decimal, code not in its table, digits20) -> bad_value. An executed write gets ACK.
- TokenData (the register named "TokenData"): ACK, then for execution_ns tokenStatus reads "Not
  ready" (and AuthenticationResult, ValidationResult, TokenResult their "Not ready" codes); then the
  TokenModel's outcome. The token is decided when written (TokenModel.enter at the write's time;
  assumed atomic) and shown when execution ends. A token written during execution gets the
  not_ready error answer. While TokenLockout is active: with emulator.lockout_answer = "status" the
  token is ACKed and shows "Token lockout active" after the execution time; with "error" it gets
  the error answer `lockout` and the TCDU registers keep their values.
- Before any token: tokenStatus reads 0 (reserved in the code table; assumed "no token yet") and
  the other TCDU registers their "No token" code.
- NAK from the client repeats the last answer of the session (any number of times: the client
  counts). In identified state that is the IDResponse, and tt restarts after it.
- tt is counted from the estimated end of the IDResponse (10 bits per character at the line
  rate, plus the character gaps); inactivity from the last valid frame.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field, replace

from rig._framing import E_SYNTAX, E_TRUNCATED
from rig.link import char_time_ns
from rig.profile import Profile, Timing, load_profile
from rig.protocol.messages import (
    Ack, BreakCommand, Command, Data, DataSet, ExecuteCommand, IDRequest, IDResponse, Message, Nak, OptionSelect,
    PasswordCommand, ProtocolError, ReadCommand, UndefinedCommand, WriteCommand, message_from_frame, parse_datasets,
)
from rig.tokens import TokenEntry, TokenModel, TokenOutcome

__all__ = ["MeterEmulator", "Reaction", "STATE_TABLE", "TimingPolicy", "describe"]

NS_PER_MS = 1_000_000
TYPICAL_MARGIN_NS = 20 * NS_PER_MS  # typical tr = tr_min + 20 ms (assumed)
TT_MIN_MARGIN_NS = 1 * NS_PER_MS  # tt must exceed tt_min: "min" uses tt_min + 1 ms (assumed)

START, IDENTIFIED, PROGRAMMING, READOUT = "start", "identified", "programming", "readout"
STATES = (START, IDENTIFIED, READOUT, PROGRAMMING)
TOKEN_REGISTER = "TokenData"
TCDU_REGISTERS = ("tokenStatus", "AuthenticationResult", "ValidationResult", "TokenResult")


# ---------------------------------------------------------------------------------------------
# Timing policy

MODES = ("typical", "min", "max", "violate")
LIMITS = ("tr_min", "tr_max", "ta", "tt_min", "tt_max", "inactivity_min", "inactivity_max")


@dataclass(frozen=True)
class TimingPolicy:
    """How the emulator times its answers and timeouts within (or outside) the profile's limits.

    typical: tr = tr_min + margin_ns (20 ms, assumed), tt = tt_max, inactivity = inactivity_min;
    min:     tr = tr_min, tt = tt_min + 1 ms (tt must exceed tt_min), inactivity = inactivity_min;
    max:     tr = tr_max - emulator.limit_margin (assumed 30 ms: measured on the line, the answer
             lands inside tr_max), tt = tt_max, inactivity = inactivity_max;
    violate: typical, except `limit` missed by `amount_ns`: tr_max + amount (late answer),
             tr_min - amount (early answer), ta + amount (every inter-character gap),
             tt_min - amount / tt_max + amount (falls back too early / too late),
             inactivity_min - amount / inactivity_max + amount.
    tr_min is tr_min_fast (20 ms) when the manufacturer's third letter is lower case.
    char_gap_ns: gap between the characters of an answer outside "violate ta" (0: back to back)."""
    mode: str = "typical"
    limit: str | None = None
    amount_ns: int = 0
    char_gap_ns: int = 0
    margin_ns: int = TYPICAL_MARGIN_NS

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"timing policy mode {self.mode!r}: expected one of {', '.join(MODES)}")
        if self.mode == "violate":
            if self.limit not in LIMITS:
                raise ValueError(f"timing policy violate: limit {self.limit!r}: expected one of {', '.join(LIMITS)}")
            if type(self.amount_ns) is not int or self.amount_ns <= 0:
                raise ValueError(f"timing policy violate {self.limit}: amount_ns {self.amount_ns!r}: "
                                 "expected a positive integer (nanoseconds)")
        elif self.limit is not None:
            raise ValueError(f"timing policy {self.mode!r}: a limit ({self.limit!r}) only goes with 'violate'")
        for name in ("char_gap_ns", "margin_ns"):
            v = getattr(self, name)
            if type(v) is not int or v < 0:
                raise ValueError(f"timing policy {name} {v!r}: expected an integer >= 0 (nanoseconds)")

    def _violates(self, limit: str) -> bool:
        return self.mode == "violate" and self.limit == limit

    def tr_ns(self, timing: Timing, manufacturer: str, limit_margin_ns: int = 0) -> int:
        """Delay from the end of the request to the first character of the answer.

        limit_margin_ns: "max" aims this far inside tr_max (the profile's emulator.limit_margin,
        assumed): what a client measures adds the host's scheduling latency and the line's delivery
        to the emulator's own delay, and tr runs to the start of the answer's first character."""
        lo, hi = timing.tr_min_for(manufacturer), timing.tr_max_ns
        if self._violates("tr_max"):
            return hi + self.amount_ns
        if self._violates("tr_min"):
            return max(0, lo - self.amount_ns)
        if self.mode == "min":
            return lo
        if self.mode == "max":
            return max(lo, hi - limit_margin_ns)
        return min(lo + self.margin_ns, hi)

    def gap_ns(self, timing: Timing) -> int:
        """Gap between two characters of an answer."""
        return timing.ta_ns + self.amount_ns if self._violates("ta") else self.char_gap_ns

    def tt_ns(self, timing: Timing) -> int:
        """How long the server waits for the option select after its identification."""
        if self._violates("tt_min"):
            return max(0, timing.tt_min_ns - self.amount_ns)
        if self._violates("tt_max"):
            return timing.tt_max_ns + self.amount_ns
        if self.mode == "min":
            return min(timing.tt_min_ns + TT_MIN_MARGIN_NS, timing.tt_max_ns)
        return timing.tt_max_ns

    def inactivity_ns(self, timing: Timing) -> int:
        """How long the server stays in a session without a valid frame."""
        if self._violates("inactivity_min"):
            return max(0, timing.inactivity_min_ns - self.amount_ns)
        if self._violates("inactivity_max"):
            return timing.inactivity_max_ns + self.amount_ns
        return timing.inactivity_max_ns if self.mode == "max" else timing.inactivity_min_ns

    def __str__(self) -> str:
        if self.mode == "violate":
            sign = "-" if self.limit in ("tr_min", "tt_min", "inactivity_min") else "+"
            return f"violate {self.limit} {sign} {self.amount_ns / NS_PER_MS:g} ms"
        return self.mode


# ---------------------------------------------------------------------------------------------
# Reaction

@dataclass
class Reaction:
    """What the I/O loop does after a frame or a timer.

    answer: the message to send, or None (stay silent). send_at_ns: when its first character goes
    out. char_gap_ns: gap between its characters (0: back to back at line rate). baud: switch the
    port to this speed first (now, or before sending; the guard delay is in send_at_ns).
    baud_after: switch to this speed once the answer has been sent (the end of a readout).
    event: one log line. state: the emulator's state after it."""
    answer: Message | None = None
    send_at_ns: int | None = None
    char_gap_ns: int = 0
    baud: int | None = None
    baud_after: int | None = None
    event: str = ""
    state: str = START
    bcc_on_data: bool = True

    def to_bytes(self, parity: bool = False) -> bytes:
        """The answer's characters (b"" when silent); parity=True for 7E1 wire bytes."""
        if self.answer is None:
            return b""
        if isinstance(self.answer, Data):
            return self.answer.to_bytes(parity, self.bcc_on_data)
        return self.answer.to_bytes(parity)


# ---------------------------------------------------------------------------------------------
# The state machine as data: (state, event, condition, action, next state)

STATE_TABLE: tuple[tuple[str, str, str, str, str], ...] = (
    (START, "IDRequest", "address empty or ours (leading zeros not significant)", "IDResponse /XXXZ ident after tr; start tt", IDENTIFIED),
    (START, "IDRequest", "another address", "none", START),
    (START, "any other frame", "", "none (silence)", START),
    (IDENTIFIED, "OptionSelect 0 Z 1", "Z = the proposed Z", "switch to Z; P0 (device address) at Z, after max(tr, guard + margin)", PROGRAMMING),
    (IDENTIFIED, "OptionSelect 0 Z 1", "any other Z", "stay at initial baud; P0 (device address) after tr", PROGRAMMING),
    (IDENTIFIED, "OptionSelect 0 Z 0", "", "as for Z 1; data readout of readable registers", READOUT),
    (IDENTIFIED, "OptionSelect", "V != 0 or Y not 0/1", "none", START),
    (IDENTIFIED, "NAK", "", "repeat IDResponse; restart tt", IDENTIFIED),
    (IDENTIFIED, "BreakCommand", "", "none", START),
    (IDENTIFIED, "timer tt", "no option select", "none", START),
    (IDENTIFIED, "any other frame", "", "none", IDENTIFIED),
    (READOUT, "readout sent", "", "back to initial baud (baud_after)", START),
    (PROGRAMMING, "ReadCommand", "registers readable", "Data id(value)...", PROGRAMMING),
    (PROGRAMMING, "ReadCommand R3/R4", "answer longer than block_size > 0", "first partial block (EOT); the rest wait for ACK", PROGRAMMING),
    (PROGRAMMING, "ACK", "partial blocks pending", "next block (EOT; the last ETX)", PROGRAMMING),
    (PROGRAMMING, "ACK", "none pending", "none", PROGRAMMING),
    (PROGRAMMING, "any command", "partial-block answer or write open", "abort it; process the command", PROGRAMMING),
    (PROGRAMMING, "WriteCommand ending in EOT", "", "ACK; assemble the write from blocks", PROGRAMMING),
    (PROGRAMMING, "Data block", "partial-block write open", "ACK (EOT block) / assemble, execute as a write (ETX block)", PROGRAMMING),
    (PROGRAMMING, "ReadCommand", "unknown / write-only", "error answer (unknown_register / access_denied)", PROGRAMMING),
    (PROGRAMMING, "WriteCommand", "valid and executable", "ACK; TokenData: token execution starts", PROGRAMMING),
    (PROGRAMMING, "WriteCommand", "valid, not executable", "error answer (access_denied, bad_length, bad_value, not_ready, lockout)", PROGRAMMING),
    (PROGRAMMING, "PasswordCommand P1", "password right or none set", "ACK", PROGRAMMING),
    (PROGRAMMING, "PasswordCommand P1", "password wrong", "error answer (access_denied)", PROGRAMMING),
    (PROGRAMMING, "undefined command, E, P0, P2", "", "NAK or error answer (protocol.undefined_command)", PROGRAMMING),
    (PROGRAMMING, "frame with errors", "parity, BCC, syntax, gap", "NAK", PROGRAMMING),
    ("any", "frame cut short", "by SOH, STX, '/', or no character for ta", "none (ignored)", "(same)"),
    (PROGRAMMING, "NAK", "", "repeat the last answer", PROGRAMMING),
    (PROGRAMMING, "BreakCommand", "", "none; back to initial baud", START),
    (PROGRAMMING, "timer inactivity", "no valid frame", "back to initial baud", START),
    ("any", "IDRequest", "address empty or ours", "new session at initial baud: IDResponse (heard even inside an open block)", IDENTIFIED),
    ("meter", "timer execution", "token written", "TCDU registers from the token outcome", "(same)"),
    ("meter", "power_cycle()", "", "session reset; TokenLockout cleared; pending token finishes", START),
)


def _data_of(frame) -> tuple[str, bool]:
    """(data, partial) of a block frame STX data ETX|EOT [BCC], whatever the framer said of its syntax."""
    raw = bytes(frame.data)
    end = -2 if len(raw) >= 3 and raw[-2] in (3, 4) else -1
    return raw[1:end].decode("ascii", "replace"), raw[end] == 4


def addresses_match(asked: str, ours: str) -> bool:
    """Does an IDRequest for `asked` address a device whose address is `ours`? Empty asks any
    device; leading zeros are not significant (`/?1!` addresses 00000001; IEC 62056-21 §6.3)."""
    return not asked or asked.lstrip("0") == ours.lstrip("0")


def describe() -> str:
    """The state machine as a text table."""
    head = ("state", "event", "condition", "action", "next")
    widths = [max(len(r[i]) for r in STATE_TABLE + (head,)) for i in range(5)]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(tuple("-" * w for w in widths))] + [line(r) for r in STATE_TABLE])


# ---------------------------------------------------------------------------------------------

@dataclass
class _Session:
    tt_deadline: int | None = None
    inactivity_deadline: int | None = None
    last: Reaction | None = None  # the last answer, for a NAK
    authorised: bool = False
    blocks: list[Data] = field(default_factory=list)  # partial blocks of an answer still to send
    write_head: tuple[str, str] | None = None  # (letter, type) of a partial-block write being assembled
    write_parts: list[str] = field(default_factory=list)  # its blocks' data so far


@dataclass
class _Execution:
    ready_ns: int
    entry: TokenEntry


class MeterEmulator:
    """IEC 62055-52 server (STS prepayment meter) as an I/O-free state machine.

    profile: the rig profile. tokens: the TokenModel (default: the shipped test-token table).
    policy: answer and timeout timing. execution_ns: token processing time (default: profile
    emulator.execution). values: register name -> value, over the profile's emulator.register_values."""

    def __init__(self, profile: Profile, tokens: TokenModel | None = None,
                 policy: TimingPolicy = TimingPolicy("typical"), execution_ns: int | None = None, *,
                 values: dict[str, str] | None = None, history: int = 1000):
        self.profile = profile
        self.tokens = tokens if tokens is not None else TokenModel.default(profile)
        self.policy = policy
        self.execution_ns = profile.emulator.execution_ns if execution_ns is None else execution_ns
        if type(self.execution_ns) is not int or self.execution_ns < 0:
            raise ValueError(f"execution_ns {self.execution_ns!r}: expected an integer >= 0 (nanoseconds)")
        self._values = dict(profile.emulator.register_values)
        for name, v in (values or {}).items():
            if name not in profile.registers:
                raise ValueError(f"values: {name!r} is not a register of the profile ({', '.join(profile.registers)})")
            DataSet("", v, limits=profile.limits)  # a value must fit a data set
            self._values[name] = v
        self._ident = profile.identification
        self._answer_ns = policy.tr_ns(profile.timing, self._ident.manufacturer, profile.emulator.limit_margin_ns)
        self._gap_ns = policy.gap_ns(profile.timing)
        missing = [t for t in TCDU_REGISTERS if t not in profile.registers]
        if missing:
            raise ValueError(f"profile {profile.path}: no register {missing[0]!r}; the emulator needs "
                             f"{', '.join(TCDU_REGISTERS)} and {TOKEN_REGISTER}")
        no_token = [self._code_of(t, "No token") for t in TCDU_REGISTERS[1:]]
        self._tcdu = dict(zip(TCDU_REGISTERS, ["0", *no_token]))
        self._execution: _Execution | None = None
        self.events: deque[tuple[int, str]] = deque(maxlen=history)  # (time, event) log
        self.state = START
        self.baud = profile.character.initial_baud
        self._session = _Session()

    def _code_of(self, register: str, name: str) -> str:
        table = self.profile.codes.get(self.profile.registers[register].codes or "", {})
        return next((str(c) for c, n in table.items() if n.lower() == name.lower()), "0")

    # -- what the I/O loop calls ---------------------------------------------------------------

    def on_frame(self, frame, now_ns: int) -> Reaction:
        """React to one frame (any kind, good or bad) whose last character arrived at now_ns."""
        due = self._run_timers(now_ns)
        r = self._frame(frame, now_ns)
        r = self._merge(due, r)
        self.events.append((now_ns, r.event))
        return r

    def on_timer(self, now_ns: int) -> Reaction | None:
        """Run the timers due at now_ns (tt fallback, inactivity, end of execution); None if none."""
        due = self._run_timers(now_ns)
        if not due:
            return None
        r = self._merge(due[:-1], due[-1])
        self.events.append((now_ns, r.event))
        return r

    def next_deadline_ns(self) -> int | None:
        s = self._session
        times = [t for t in (s.tt_deadline, s.inactivity_deadline,
                             self._execution.ready_ns if self._execution else None) if t is not None]
        return min(times) if times else None

    def power_cycle(self) -> None:
        """The meter restarts: session over, initial speed, TokenLockout cleared (per profile); a
        token in execution finishes at once (it was decided when written)."""
        if self._execution is not None:
            self._finish_execution()
        self.tokens.power_cycle()
        self._end_session()
        self.events.append((-1, "power cycle"))

    @property
    def registers(self) -> dict[str, str]:
        """Current value of every register, by name (write-only ones included)."""
        return {name: self._value(name) for name in self.profile.registers}

    @property
    def executing(self) -> bool:
        return self._execution is not None

    def timing(self) -> dict[str, int]:
        """The policy's values for this profile and manufacturer, in ns."""
        t = self.profile.timing
        return {"tr_ns": self._answer_ns, "char_gap_ns": self._gap_ns, "tt_ns": self.policy.tt_ns(t),
                "inactivity_ns": self.policy.inactivity_ns(t), "execution_ns": self.execution_ns}

    # -- timers ---------------------------------------------------------------------------------

    def _run_timers(self, now_ns: int) -> list[Reaction]:
        out = []
        while (t := self.next_deadline_ns()) is not None and t <= now_ns:
            s = self._session
            if self._execution is not None and self._execution.ready_ns == t:
                out.append(self._finish_execution())
            elif s.tt_deadline == t:
                out.append(self._fall_back(f"tt: no option select {self.policy.tt_ns(self.profile.timing) / NS_PER_MS:g} ms "
                                           "after the identification: back to start"))
            else:
                out.append(self._fall_back("inactivity: no valid frame for "
                                           f"{self.policy.inactivity_ns(self.profile.timing) / NS_PER_MS:g} ms: back to start"))
        return out

    def _fall_back(self, event: str) -> Reaction:
        switch = self._end_session()
        return Reaction(baud=switch, event=event, state=self.state)

    def _finish_execution(self) -> Reaction:
        entry = self._execution.entry
        self._execution = None
        self._show(entry.outcome)
        return Reaction(event=f"token {entry.text} executed: {entry.outcome}", state=self.state)

    def _merge(self, due: list[Reaction], r: Reaction) -> Reaction:
        if not due:
            return r
        baud = next((d.baud for d in reversed(due) if d.baud is not None), None)
        if r.baud is None and baud is not None:
            r = replace(r, baud=baud)
        return replace(r, event="; ".join([d.event for d in due] + [r.event]))

    # -- session helpers ------------------------------------------------------------------------

    def _end_session(self) -> int | None:
        """Back to start at the initial speed; the speed to switch to, if it changes."""
        self.state = START
        self._session = _Session()
        initial = self.profile.character.initial_baud
        switch = initial if self.baud != initial else None
        self.baud = initial
        return switch

    def _answer(self, msg: Message, now_ns: int, event: str, *, baud: int | None = None,
                delay_ns: int | None = None, baud_after: int | None = None) -> Reaction:
        r = Reaction(msg, now_ns + (self._answer_ns if delay_ns is None else delay_ns), self._gap_ns,
                     baud, baud_after, event, self.state, self.profile.protocol.bcc_on_data)
        self._session.last = r
        return r

    def _end_of(self, r: Reaction, baud: int) -> int:
        n = len(r.to_bytes())
        return r.send_at_ns + char_time_ns(baud, self.profile.character.format, n) + max(0, n - 1) * r.char_gap_ns

    def _silent(self, event: str, baud: int | None = None) -> Reaction:
        return Reaction(None, None, 0, baud, None, event, self.state)

    def _error(self, key: str, now_ns: int, event: str) -> Reaction:
        text = self.profile.error_texts[key]
        return self._answer(Data.error(text, self.profile.limits), now_ns, f"{event} -> error ({text})")

    # -- frames ---------------------------------------------------------------------------------

    def _frame(self, frame, now_ns: int) -> Reaction:
        if self._session.write_head is not None and frame.kind == "data" and frame.errors == E_SYNTAX:
            # a block of a partial-block write is checked alone by the framer, so a data set split
            # across blocks is a "syntax error" in the later ones: the assembled whole is checked
            s = self._session
            s.inactivity_deadline = now_ns + self.policy.inactivity_ns(self.profile.timing)
            return self._write_block(*_data_of(frame), now_ns)
        if not frame.ok:
            if frame.kind == "garbage":
                return self._silent(f"garbage ignored ({len(frame.data)} bytes)")
            why = "; ".join(frame.errors_list()) or "bad frame"
            if frame.errors & E_TRUNCATED:
                # cut short by the start of another frame: the client has moved on (it repeats
                # after its timeout); a NAK now would answer that next frame out of turn
                return self._silent(f"{frame.kind} frame cut short ignored: {why}")
            if self.state == PROGRAMMING:
                return self._answer(Nak(), now_ns, f"NAK: {frame.kind} frame: {why}")
            return self._silent(f"bad {frame.kind} frame ignored in {self.state}: {why}")
        try:
            msg = message_from_frame(frame, self.profile.limits)
        except ProtocolError as e:
            if self.state == PROGRAMMING:
                return self._answer(Nak(), now_ns, f"NAK: {e}")
            return self._silent(f"bad {frame.kind} frame ignored in {self.state}: {e}")
        return self.on_message(msg, now_ns)

    def on_message(self, msg: Message, now_ns: int) -> Reaction:
        """React to a well-formed message (on_frame without the framing checks and the log)."""
        if isinstance(msg, IDRequest):
            return self._id_request(msg, now_ns)
        s = self._session
        if self.state == PROGRAMMING:
            if s.write_head is not None and isinstance(msg, Data):
                s.inactivity_deadline = now_ns + self.policy.inactivity_ns(self.profile.timing)
                return self._write_block(msg.data, msg.partial, now_ns)
            # IEC 62056-21 §6.4.7: the client aborts a partial-block exchange by a new command
            aborted = self._abort_blocks() if isinstance(msg, Command) else ""
            if aborted:
                r = self.on_message(msg, now_ns)
                return replace(r, event=f"{aborted}; {r.event}")
        if self.state == IDENTIFIED:
            if isinstance(msg, OptionSelect):
                return self._option_select(msg, now_ns)
            if isinstance(msg, Nak):
                return self._repeat(now_ns)
            if isinstance(msg, BreakCommand):
                self._end_session()
                return self._silent("break: back to start")
            return self._silent(f"{msg} ignored while waiting for the option select")
        if self.state != PROGRAMMING:
            return self._silent(f"{msg} ignored in {self.state}")
        self._session.inactivity_deadline = now_ns + self.policy.inactivity_ns(self.profile.timing)
        if isinstance(msg, Nak):
            return self._repeat(now_ns)
        if isinstance(msg, Ack):
            if self._session.blocks:
                block = self._session.blocks.pop(0)
                left = len(self._session.blocks)
                return self._answer(block, now_ns, f"ACK: next partial block ({left} more)" if left
                                    else "ACK: last partial block")
            return self._silent("ACK ignored (no partial block pending)")
        if isinstance(msg, BreakCommand):
            switch = self._end_session()
            return self._silent("break: back to start", switch)
        if isinstance(msg, ReadCommand):
            return self._read(msg, now_ns)
        if isinstance(msg, WriteCommand):
            return self._write(msg, now_ns)
        if isinstance(msg, PasswordCommand) and msg.command_type == "1":
            return self._password(msg, now_ns)
        if isinstance(msg, (UndefinedCommand, ExecuteCommand, PasswordCommand)):
            return self._undefined(msg, now_ns)
        return self._silent(f"{msg} ignored in {self.state}")

    def _repeat(self, now_ns: int) -> Reaction:
        last = self._session.last
        if last is None:
            return self._silent("NAK with nothing to repeat: ignored")
        r = replace(last, send_at_ns=now_ns + self._answer_ns, baud=None, baud_after=None,
                    event=f"NAK: repeat {last.answer}", state=self.state)
        if self.state == IDENTIFIED:
            self._session.tt_deadline = self._end_of(r, self.baud) + self.policy.tt_ns(self.profile.timing)
        return r

    def _id_request(self, msg: IDRequest, now_ns: int) -> Reaction:
        mine = self._ident.device_address
        if not addresses_match(msg.device_address, mine):
            return self._silent(f"IDRequest for {msg.device_address!r} ignored (ours is {mine!r})")
        restart = self.state != START
        switch = self._end_session()
        self.state = IDENTIFIED
        answer = IDResponse(self._ident.manufacturer, self._ident.baud_char, self._ident.text, limits=self.profile.limits)
        r = self._answer(answer, now_ns, f"IDRequest {msg.device_address!r} -> {answer}"
                         + (" (new session)" if restart else ""), baud=switch)
        self._session.tt_deadline = self._end_of(r, self.baud) + self.policy.tt_ns(self.profile.timing)
        return r

    def _option_select(self, msg: OptionSelect, now_ns: int) -> Reaction:
        if msg.protocol != "0" or msg.mode not in "01":
            self._end_session()
            return self._silent(f"{msg} not supported: back to start")
        proposed = self._ident.baud_char
        if msg.baud_char == proposed:
            speed, note = self.profile.baud_from_char(proposed), f"{self.profile.baud_from_char(proposed)} Bd"
        else:  # IEC 62056-21 §6.4.3: any other Z leaves both sides at the initial speed
            speed, note = self.baud, (f"baud character {msg.baud_char!r} is not the proposed {proposed!r}: "
                                      f"stays at {self.baud} Bd")
        switch = speed if speed != self.baud else None
        t = self.profile.timing
        # the client switches speed_switch_guard after its option select; we answer at the new
        # speed no earlier than guard + margin, so the answer never starts before it listens
        delay = max(self._answer_ns, t.speed_switch_guard_ns + t.speed_switch_margin_ns) if switch else None
        self._session.tt_deadline = None
        if msg.mode == "1":
            self.state = PROGRAMMING
            self.baud = speed
            self._session.inactivity_deadline = now_ns + self.policy.inactivity_ns(self.profile.timing)
            p0 = PasswordCommand("P", "0", f"({self._ident.device_address})")
            return self._answer(p0, now_ns, f"option select programming, {note} -> P0", baud=switch, delay_ns=delay)
        readable = [r for r in self.profile.registers.values() if "r" in r.access]
        data = "".join(f"{r.register_id}({self._value(r.name)})\r\n" for r in readable) + "!\r\n"
        self.state = READOUT
        r = self._answer(Data(data), now_ns, f"option select readout, {note} -> {len(readable)} registers",
                         baud=switch, delay_ns=delay, baud_after=self.profile.character.initial_baud if switch else None)
        self._end_session()
        r.state = self.state
        return r

    # -- registers ------------------------------------------------------------------------------

    def _value(self, name: str) -> str:
        if name in self._tcdu:
            return self._tcdu[name]
        return self._values.get(name, "")

    def _show(self, outcome: TokenOutcome) -> None:
        self._tcdu = dict(zip(TCDU_REGISTERS, map(str, (
            outcome.token_status, outcome.authentication, outcome.validation, outcome.token_result))))

    def _read(self, msg: ReadCommand, now_ns: int) -> Reaction:
        try:
            datasets = parse_datasets(msg.data or "", self.profile.limits)
        except ProtocolError as e:
            return self._answer(Nak(), now_ns, f"NAK: {e}")
        if not datasets:
            return self._error("bad_value", now_ns, "read without a register")
        out = []
        for ds in datasets:
            reg = self.profile.register_by_id(ds.address)
            if reg is None:
                return self._error("unknown_register", now_ns, f"read {ds.address}")
            if "r" not in reg.access:
                return self._error("access_denied", now_ns, f"read {ds.address} ({reg.name}, write-only)")
            out.append(DataSet(reg.register_id, self._value(reg.name), limits=self.profile.limits))
        answer = Data.of(*out)
        what = f"read {' '.join(d.address for d in datasets)} -> {answer.data}"
        size = self.profile.protocol.block_size
        wants = msg.command_type in "34" or self.profile.emulator.partial_answers == "always"
        if wants and 0 < size < len(answer.data):
            text = answer.data
            blocks = [Data(text[i:i + size], partial=i + size < len(text)) for i in range(0, len(text), size)]
            self._session.blocks = blocks[1:]
            return self._answer(blocks[0], now_ns, f"{what} in {len(blocks)} partial blocks of {size}")
        return self._answer(answer, now_ns, what)

    def _write(self, msg: WriteCommand, now_ns: int) -> Reaction:
        if msg.partial:  # the first block of a partial-block write (W3/W4, or any W ending in EOT)
            self._session.write_head = (msg.letter, msg.command_type)
            self._session.write_parts = [msg.data or ""]
            return self._answer(Ack(), now_ns, f"partial-block write {msg.letter}{msg.command_type}: block 1 -> ACK")
        try:
            datasets = parse_datasets(msg.data or "", self.profile.limits)
        except ProtocolError as e:
            return self._answer(Nak(), now_ns, f"NAK: {e}")
        what = f"write {msg.data or ''}"
        if len(datasets) != 1:
            return self._error("bad_value", now_ns, f"{what} ({len(datasets)} data sets; one expected)")
        ds = datasets[0]
        reg = self.profile.register_by_id(ds.address)
        if reg is None:
            return self._error("unknown_register", now_ns, what)
        if "w" not in reg.access:
            return self._error("access_denied", now_ns, f"{what} ({reg.name}, read-only)")
        if self.profile.emulator.password and not self._session.authorised:
            return self._error("access_denied", now_ns, f"{what} (no P1 password yet)")
        v = ds.value
        if len(v) > reg.length or reg.encoding == "digits20" and len(v) != 20:
            return self._error("bad_length", now_ns, f"{what} ({len(v)} characters, {reg.name} takes {reg.length})")
        digits = v.isascii() and v.isdigit()
        if (reg.encoding in ("decimal", "digits20", "code") and not digits
                or reg.encoding == "code" and int(v) not in self.profile.codes.get(reg.codes, {})):
            return self._error("bad_value", now_ns, f"{what} (not a {reg.encoding} value of {reg.name})")
        if reg.name == TOKEN_REGISTER:
            return self._token(v, now_ns, what)
        self._values[reg.name] = v
        return self._answer(Ack(), now_ns, f"{what} -> ACK")

    def _write_block(self, text: str, partial: bool, now_ns: int) -> Reaction:
        """One more block of a partial-block write: ACK it, or assemble and execute at the last."""
        s = self._session
        s.write_parts.append(text)
        n = len(s.write_parts)
        whole = "".join(s.write_parts)
        if len(whole) > self.profile.limits.frame_max:
            s.write_head, s.write_parts = None, []
            return self._error("bad_length", now_ns, f"partial-block write of {len(whole)} characters "
                               f"(over limits.frame_max {self.profile.limits.frame_max})")
        if partial:
            return self._answer(Ack(), now_ns, f"partial-block write: block {n} -> ACK")
        (letter, ctype), s.write_head, s.write_parts = s.write_head, None, []
        try:
            msg = WriteCommand(letter, ctype, whole)
        except ProtocolError as e:
            return self._answer(Nak(), now_ns, f"NAK: partial-block write assembled from {n} blocks: {e}")
        r = self._write(msg, now_ns)
        return replace(r, event=f"partial-block write, {n} blocks assembled: {r.event}")

    def _abort_blocks(self) -> str:
        """A new command ends a partial-block answer or write in progress; what was dropped."""
        s = self._session
        what = []
        if s.blocks:
            what.append(f"partial-block answer aborted ({len(s.blocks)} blocks unsent)")
        if s.write_head is not None:
            what.append(f"partial-block write aborted after {len(s.write_parts)} blocks")
        s.blocks, s.write_head, s.write_parts = [], None, []
        return "; ".join(what)

    def _token(self, text: str, now_ns: int, what: str) -> Reaction:
        if self._execution is not None:
            return self._error("not_ready", now_ns, f"{what} (token {self._execution.entry.text} still executing)")
        self._values[TOKEN_REGISTER] = text
        if self.profile.emulator.lockout_answer == "error" and self.tokens.locked(now_ns):
            entry = self.tokens.enter(text, now_ns)
            return self._error("lockout", now_ns, f"{what} ({entry.reason})")
        entry = self.tokens.enter(text, now_ns)
        if self.execution_ns == 0:
            self._show(entry.outcome)
            return self._answer(Ack(), now_ns, f"{what} -> ACK, executed: {entry.outcome}")
        self._execution = _Execution(now_ns + self.execution_ns, entry)
        self._show(self.tokens.not_ready)
        return self._answer(Ack(), now_ns, f"{what} -> ACK, executing until {now_ns + self.execution_ns} ns")

    def _password(self, msg: PasswordCommand, now_ns: int) -> Reaction:
        pw = self.profile.emulator.password
        if not pw or msg.data == f"({pw})":
            self._session.authorised = True
            return self._answer(Ack(), now_ns, "P1 -> ACK" + ("" if pw else " (no password set)"))
        return self._error("access_denied", now_ns, "P1 wrong password")

    def _undefined(self, msg, now_ns: int) -> Reaction:
        what = f"undefined command {msg.letter}{msg.command_type}"
        if self.profile.protocol.undefined_command == "nak":
            return self._answer(Nak(), now_ns, f"{what} -> NAK")
        return self._error("undefined_command", now_ns, what)


# ---------------------------------------------------------------------------------------------------
# The I/O loop: the emulator on a port (any URL: the virtual line's meter side, or hardware).

class MeterServer:
    """Runs a MeterEmulator on a port: frames in with their arrival times, answers out at the
    times the emulator's timing policy asks for. Every exchange is logged (log(dict) per event)."""

    def __init__(self, port, profile=None, *, emulator=None, log=None):
        from rig._framing import Framer
        from rig.exchange import FrameReader
        from rig.link import Port

        self.profile = profile or load_profile()
        if isinstance(port, str):
            port = Port(port, baud=self.profile.character.initial_baud, fmt=self.profile.character.format)
        self.port = port
        self.emulator = emulator or MeterEmulator(self.profile)
        self.reader = FrameReader(port, Framer.from_profile(
            self.profile, parity="even" if self.profile.character.format == "7E1" else "none"),
            self.profile.timing.ta_ns, quiet_min_ns=self.profile.timing.lone_ack_quiet_ns)
        self.log = log
        self.events: list[dict] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "MeterServer":
        self._thread = threading.Thread(target=self._run, name="meter-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self.port.close()

    def serve_forever(self) -> None:
        """Serve in the calling thread until stop() (from another thread) or Ctrl-C."""
        self._loop()

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # kept for the owner; the server is dead
            self.error = e

    def _loop(self) -> None:
        from rig import _clock
        from rig.link import PortError

        while not self._stop.is_set():
            now = _clock.now_ns()
            due = self.emulator.next_deadline_ns()
            deadline = now + 50_000_000 if due is None else min(due, now + 50_000_000)
            try:
                frame = self.reader.next_frame(max(deadline, now), give_up=False)
            except PortError:
                if self._stop.is_set():
                    return
                raise
            if frame is None:
                for stale in self.reader.end_stale_frame(_clock.now_ns()):
                    self._react(stale)
                due = self.emulator.next_deadline_ns()
                if due is None or _clock.now_ns() < due:
                    continue
                reaction = self.emulator.on_timer(_clock.now_ns())
                if reaction is not None:
                    self._act(reaction, None)
            else:
                self._react(frame)

    def _react(self, frame) -> None:
        from rig import _clock

        t = frame.t_last_ns if frame.t_last_ns >= 0 else _clock.now_ns()
        try:
            reaction = self.emulator.on_frame(frame, t)
        except Exception as e:  # a bug of ours; the peer's bytes must not silence the meter
            reaction = Reaction(event=f"internal error on {frame.kind} frame {bytes(frame.data)!r}: "
                                      f"{type(e).__name__}: {e} (frame ignored)", state=self.emulator.state)
        self._act(reaction, frame)

    def _act(self, r, frame) -> None:
        sent = None
        if r.baud is not None and r.answer is None:
            self.port.set_baud(r.baud, at_ns=r.send_at_ns)
        abandoned = False
        if r.answer is not None:
            if r.baud is not None:
                self.port.set_baud(r.baud)
            # half duplex: if the client speaks again before our answer is due, it has given up
            # on it (it repeats after a timeout); answering now would answer its next request
            if r.send_at_ns is not None:
                abandoned = self.reader.hears_frame_before(r.send_at_ns - 1_000_000)
        if r.answer is not None and not abandoned:
            chars = r.to_bytes()
            times = self.port.write(chars, at_ns=r.send_at_ns, gap_ns=r.char_gap_ns)
            self.reader.expect_echo(chars, int(times[-1]) + 3 * self.port.char_ns)
            sent = (chars, int(times[0]))
            if r.baud_after is not None:
                self.port.set_baud(r.baud_after)
        event = {"event": r.event + (" (answer abandoned: the client spoke first)" if abandoned else ""),
                 "state": self.emulator.state,
                 "request": None if frame is None else frame.data.decode("ascii", "replace"),
                 "request_ok": None if frame is None else frame.ok,
                 "t_request_end_ns": None if frame is None else frame.t_last_ns,
                 "answer": None if sent is None else sent[0].decode("ascii", "replace"),
                 "t_answer_start_ns": None if sent is None else sent[1]}
        self.events.append(event)
        if self.log is not None:
            self.log(event)
