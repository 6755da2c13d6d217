"""The meter emulator's I/O-free core: IEC 62055-52 §6.6 server functions (Annex A) as a state machine.

It never sleeps, never reads a clock and never touches a port. The I/O loop hands it each frame with
the arrival time of the frame's last character and gets back a Reaction: what to send, when the
first character should go out, the gap between characters, and the baud to switch to. Timers (tt
fallback, inactivity, end of token execution) are the loop's job too: it calls on_timer() at
next_deadline_ns(). on_frame() also runs any timer already due, so a late call is never wrong.

STATE_TABLE is the behaviour: each input (a message, a bad frame, a timer) runs the first row for
the state whose event it is and whose condition holds; the row's action makes the Reaction and its
next state is the state after. describe() prints those same rows. Each row names the EventKind it
is (Reaction.kinds, MeterServer.events): verdicts test the kind, the text is for people.

    emu = MeterEmulator(profile)
    r = emu.on_frame(frame, now_ns)      # r.answer, r.send_at_ns, r.char_gap_ns, r.baud, r.kinds, r.event
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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import NamedTuple, TypeVar

from rig import _clock
from rig._framing import E_SYNTAX, E_TRUNCATED, Frame, Framer
from rig.exchange import FrameReader
from rig.link import Port, PortError, char_time_ns
from rig.profile import Profile, Timing, load_profile
from rig.protocol.messages import (
    Ack,
    BreakCommand,
    Command,
    Data,
    DataSet,
    ExecuteCommand,
    IDRequest,
    IDResponse,
    Message,
    Nak,
    OptionSelect,
    PasswordCommand,
    ProtocolError,
    ReadCommand,
    UndefinedCommand,
    WriteCommand,
    message_from_frame,
    parse_datasets,
)
from rig.tokens import TokenEntry, TokenModel, TokenOutcome

__all__ = ["STATE_TABLE", "EventKind", "MeterEmulator", "MeterServer", "Reaction", "TimingPolicy", "Transition", "describe"]

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
# Events and reactions

class EventKind(StrEnum):
    """What a server event was, in the standard's words (IEC 62056-21, IEC 62055-52 §6.6).

    Verdicts test the kind, never the wording of the log's text. A reaction can hold several
    kinds: timers that ran before a frame, or a partial-block exchange aborted by a command."""
    IDENTIFICATION = "identification"        # an IDRequest for us: IDResponse, a new session
    OPTION_SELECT = "option select"          # the acknowledgement/option select message, any outcome
    DATA_READOUT = "data readout"            # mode 0: the readout went out, back to start
    READ = "read"                            # a ReadCommand answered (data or error answer)
    WRITE = "write"                          # a WriteCommand answered (ACK or error answer)
    PASSWORD = "password"                    # a P1 password command answered
    PARTIAL_BLOCK = "partial block"          # a block of a partial-block answer or write, or its abort
    REPEAT = "repeat"                        # the client's NAK: the last answer again
    NAK = "NAK"                              # a frame with errors answered with NAK
    UNDEFINED_COMMAND = "undefined command"  # E, P0, P2 or an unknown command letter
    BREAK = "break"                          # a BreakCommand ended the session
    TIME_OUT = "time-out"                    # tt or inactivity ran out: back to start
    TOKEN_EXECUTED = "token executed"        # token execution ended: the TCDU registers show it
    POWER_CYCLE = "power cycle"              # the meter restarted
    IGNORED = "ignored"                      # heard and, as the standard wants, not answered
    INTERNAL_ERROR = "internal error"        # a bug of the rig's; the frame was ignored


@dataclass
class Reaction:
    """What the I/O loop does after a frame or a timer.

    answer: the message to send, or None (stay silent). send_at_ns: when its first character goes
    out. char_gap_ns: gap between its characters (0: back to back at line rate). baud: switch the
    port to this speed first (now, or before sending; the guard delay is in send_at_ns).
    baud_after: switch to this speed once the answer has been sent (the end of a readout).
    event: one log line, for people. state: the emulator's state after it. kinds: what happened,
    for verdicts. transitions: the STATE_TABLE rows that ran, in order."""
    answer: Message | None = None
    send_at_ns: int | None = None
    char_gap_ns: int = 0
    baud: int | None = None
    baud_after: int | None = None
    event: str = ""
    state: str = START
    bcc_on_data: bool = True
    kinds: tuple[EventKind, ...] = ()
    transitions: tuple[Transition, ...] = ()

    def to_bytes(self, parity: bool = False) -> bytes:
        """The answer's characters (b"" when silent); parity=True for 7E1 wire bytes."""
        if self.answer is None:
            return b""
        if isinstance(self.answer, Data):
            return self.answer.to_bytes(parity, self.bcc_on_data)
        return self.answer.to_bytes(parity)


# ---------------------------------------------------------------------------------------------
# What the state machine reacts to, and its rows

ANY, METER, SAME = "any", "meter", "(same)"  # rows for every session state; for the meter; no state change
BY_COMMAND = "(the command's row)"

# what an input is: a well-formed message, or not
MESSAGE = "message"
GARBAGE, CUT_SHORT, BAD_FRAME = "garbage", "frame cut short", "frame with errors"
TIMER_TT, TIMER_INACTIVITY, TIMER_EXECUTION = "timer tt", "timer inactivity", "timer execution"
READOUT_SENT, POWER_CYCLE = "readout sent", "power_cycle()"


@dataclass(frozen=True)
class _Input:
    """One thing the state machine reacts to: a well-formed message (msg), a frame that is not one
    (what: GARBAGE, CUT_SHORT, BAD_FRAME, with why and nak_why), a timer, or an internal step."""
    what: str
    msg: Message | None = None
    frame: Frame | None = None
    why: str = ""
    nak_why: str = ""


class Transition(NamedTuple):
    """One row of the Annex A state machine: in `state`, on `event`, if `condition`: `action`, then
    `next`. The first five fields are the printed table (describe()); the rest is what runs it:
    on(input) says whether the input is the row's event, when(emulator, input, now_ns) whether the
    condition holds (None or False: it does not; anything else is handed to do), and
    do(emulator, input, now_ns, got) the action, which returns the Reaction."""
    state: str
    event: str
    condition: str
    action: str
    next: str
    kind: EventKind
    on: Callable[[_Input], bool]
    when: Callable[..., object] | None
    do: Callable[..., Reaction]


_M = TypeVar("_M", bound=Message)


def _message(first: type[_M], *more: type[_M], test: Callable[[_M], bool] | None = None) -> Callable[[_Input], bool]:
    """The row's event: a well-formed message of one of these types (and passing test)."""
    types = (first, *more)
    return lambda i: isinstance(i.msg, types) and (test is None or test(i.msg))


def _msg(i: _Input, cls: type[_M]) -> _M:
    """The input's message, which the row's event (on) has found to be a cls."""
    assert isinstance(i.msg, cls), f"{i.msg!r} is not a {cls.__name__}"
    return i.msg


def _frame(i: _Input) -> Frame:
    """The frame of an input that is not a message (garbage, cut short, with errors): always set."""
    assert i.frame is not None, f"{i.what} input without its frame"
    return i.frame


def _input(what: str) -> Callable[[_Input], bool]:
    """The row's event: an input that is not a message (a bad frame, a timer, an internal step)."""
    return lambda i: i.msg is None and i.what == what


def _any_message(i: _Input) -> bool:
    return i.msg is not None


def _write_block_input(i: _Input) -> bool:
    """A Data message, or a data frame whose only error is syntax: the framer checks a block of a
    partial-block write alone, so a data set split across blocks is a "syntax error" in the later
    ones; the assembled whole is checked instead."""
    return isinstance(i.msg, Data) or (
        i.what == BAD_FRAME and i.frame is not None and i.frame.kind == "data" and i.frame.errors == E_SYNTAX)


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
    """The state machine as a text table: the rows MeterEmulator dispatches on, first match first."""
    head = ("state", "event", "condition", "action", "next")
    rows = [head] + [tuple(r[:5]) for r in STATE_TABLE]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
    return "\n".join([line(head), line(tuple("-" * w for w in widths))] + [line(r) for r in rows[1:]])


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
    """IEC 62055-52 server (STS prepayment meter) as an I/O-free state machine: frames and times
    in, Reactions out. Every input runs the first STATE_TABLE row that matches it.

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
        r = self._dispatch(self._input_of(frame), now_ns)
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

    def on_message(self, msg: Message, now_ns: int) -> Reaction:
        """React to a well-formed message (on_frame without the framing checks, timers and log)."""
        return self._dispatch(_Input(MESSAGE, msg), now_ns)

    def next_deadline_ns(self) -> int | None:
        """When on_timer has something to do next (tt, inactivity, end of execution); None: nothing."""
        s = self._session
        times = [t for t in (s.tt_deadline, s.inactivity_deadline,
                             self._execution.ready_ns if self._execution else None) if t is not None]
        return min(times) if times else None

    def power_cycle(self) -> Reaction:
        """The meter restarts: session over, initial speed, TokenLockout cleared (per profile); a
        token in execution finishes at once (it was decided when written)."""
        r = self._dispatch(_Input(POWER_CYCLE), -1)
        self.events.append((-1, "power cycle"))
        return r

    @property
    def registers(self) -> dict[str, str]:
        """Current value of every register, by name (write-only ones included)."""
        return {name: self._value(name) for name in self.profile.registers}

    @property
    def executing(self) -> bool:
        """A token is in execution (its TCDU registers read "Not ready")."""
        return self._execution is not None

    def timing(self) -> dict[str, int]:
        """The policy's values for this profile and manufacturer, in ns."""
        t = self.profile.timing
        return {"tr_ns": self._answer_ns, "char_gap_ns": self._gap_ns, "tt_ns": self.policy.tt_ns(t),
                "inactivity_ns": self.policy.inactivity_ns(t), "execution_ns": self.execution_ns}

    # -- the dispatcher: STATE_TABLE is the behaviour -------------------------------------------

    def _dispatch(self, inp: _Input, now_ns: int) -> Reaction:
        """Run the first row for this state whose event is the input and whose condition holds;
        the state after it is the row's next (unless the row leaves it, or hands the input on)."""
        if self.state == PROGRAMMING and self._valid_frame(inp):
            # the inactivity timer counts from the last valid frame
            self._session.inactivity_deadline = now_ns + self.policy.inactivity_ns(self.profile.timing)
        for row in _ROWS[self.state]:
            if not row.on(inp):
                continue
            got = True if row.when is None else row.when(self, inp, now_ns)
            if got is None or got is False:
                continue
            r = row.do(self, inp, now_ns, got)
            if row.next in STATES:
                self.state = row.next
            r = replace(r, state=self.state, kinds=(row.kind, *r.kinds), transitions=(row, *r.transitions))
            if self.state == READOUT:  # the readout is on its way: its row runs at once
                after = self._dispatch(_Input(READOUT_SENT), now_ns)
                r = replace(r, state=after.state, kinds=r.kinds + after.kinds,
                            transitions=r.transitions + after.transitions)
            return r
        raise LookupError(f"STATE_TABLE has no row for {inp.what} {inp.msg or ''} in state {self.state}")

    def _valid_frame(self, inp: _Input) -> bool:
        """In programming: a well-formed message other than an IDRequest, or a block of an open
        partial-block write (what keeps the session from its inactivity timeout)."""
        if inp.msg is not None:
            return not isinstance(inp.msg, IDRequest)
        return self._session.write_head is not None and _write_block_input(inp)

    def _input_of(self, frame) -> _Input:
        """The frame as the state machine's input: a message, or what is wrong with it."""
        if not frame.ok:
            if frame.kind == "garbage":
                return _Input(GARBAGE, frame=frame)
            why = "; ".join(frame.errors_list()) or "bad frame"
            if frame.errors & E_TRUNCATED:
                return _Input(CUT_SHORT, frame=frame, why=why)
            return _Input(BAD_FRAME, frame=frame, why=why, nak_why=f"{frame.kind} frame: {why}")
        try:
            return _Input(MESSAGE, message_from_frame(frame, self.profile.limits), frame)
        except ProtocolError as e:
            return _Input(BAD_FRAME, frame=frame, why=str(e), nak_why=str(e))

    # -- timers ---------------------------------------------------------------------------------

    def _run_timers(self, now_ns: int) -> list[Reaction]:
        out = []
        while (t := self.next_deadline_ns()) is not None and t <= now_ns:
            if self._execution is not None and self._execution.ready_ns == t:
                what = TIMER_EXECUTION
            elif self._session.tt_deadline == t:
                what = TIMER_TT
            else:
                what = TIMER_INACTIVITY
            out.append(self._dispatch(_Input(what), t))
        return out

    def _merge(self, due: list[Reaction], r: Reaction) -> Reaction:
        if not due:
            return r
        baud = next((d.baud for d in reversed(due) if d.baud is not None), None)
        if r.baud is None and baud is not None:
            r = replace(r, baud=baud)
        return replace(r, event="; ".join([d.event for d in due] + [r.event]),
                       kinds=tuple(k for d in due for k in d.kinds) + r.kinds,
                       transitions=tuple(x for d in due for x in d.transitions) + r.transitions)

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
        assert r.send_at_ns is not None, "only an answer has an end"
        n = len(r.to_bytes())
        return r.send_at_ns + char_time_ns(baud, self.profile.character.format, n) + max(0, n - 1) * r.char_gap_ns

    def _silent(self, event: str, baud: int | None = None) -> Reaction:
        return Reaction(None, None, 0, baud, None, event, self.state)

    def _error(self, key: str, now_ns: int, event: str) -> Reaction:
        text = self.profile.error_texts[key]
        return self._answer(Data.error(text, self.profile.limits), now_ns, f"{event} -> error ({text})")

    # -- conditions (pure: they decide the row) --------------------------------------------------

    def _ours(self, i: _Input, now_ns: int) -> bool:
        return addresses_match(_msg(i, IDRequest).device_address, self._ident.device_address)

    def _not_ours(self, i: _Input, now_ns: int) -> bool:
        return not self._ours(i, now_ns)

    def _option_unsupported(self, i: _Input, now_ns: int) -> bool:
        msg = _msg(i, OptionSelect)
        return msg.protocol != "0" or msg.mode not in "01"

    def _programming_proposed(self, i: _Input, now_ns: int) -> bool:
        msg = _msg(i, OptionSelect)
        return msg.mode == "1" and msg.baud_char == self._ident.baud_char

    def _programming_other_z(self, i: _Input, now_ns: int) -> bool:
        msg = _msg(i, OptionSelect)
        return msg.mode == "1" and msg.baud_char != self._ident.baud_char

    def _blocks_open(self, i: _Input, now_ns: int) -> bool:
        return bool(self._session.blocks) or self._session.write_head is not None

    def _blocks_pending(self, i: _Input, now_ns: int) -> bool:
        return bool(self._session.blocks)

    def _write_open(self, i: _Input, now_ns: int) -> bool:
        return self._session.write_head is not None

    def _password_right(self, i: _Input, now_ns: int) -> bool:
        pw = self.profile.emulator.password
        return not pw or _msg(i, PasswordCommand).data == f"({pw})"

    def _password_wrong(self, i: _Input, now_ns: int) -> bool:
        return not self._password_right(i, now_ns)

    def _read_plan(self, msg: ReadCommand, now_ns: int) -> tuple[str, tuple]:
        """How a read is answered: ("nak", why) | ("error", key, what) | ("blocks"|"data", answer, what)."""
        try:
            datasets = parse_datasets(msg.data or "", self.profile.limits)
        except ProtocolError as e:
            return "nak", (str(e),)
        if not datasets:
            return "error", ("bad_value", "read without a register")
        out = []
        for ds in datasets:
            reg = self.profile.register_by_id(ds.address)
            if reg is None:
                return "error", ("unknown_register", f"read {ds.address}")
            if "r" not in reg.access:
                return "error", ("access_denied", f"read {ds.address} ({reg.name}, write-only)")
            out.append(DataSet(reg.register_id, self._value(reg.name), limits=self.profile.limits))
        answer = Data.of(*out)
        what = f"read {' '.join(d.address for d in datasets)} -> {answer.data}"
        size = self.profile.protocol.block_size
        wants = msg.command_type in "34" or self.profile.emulator.partial_answers == "always"
        return ("blocks" if wants and 0 < size < len(answer.data) else "data"), (answer, what)

    def _write_plan(self, msg: WriteCommand, now_ns: int) -> tuple[str, tuple]:
        """How a whole write is answered: ("nak", why) | ("error", key, what) | ("lockout", v, what)
        | ("token", v, what) | ("value", register name, v, what)."""
        try:
            datasets = parse_datasets(msg.data or "", self.profile.limits)
        except ProtocolError as e:
            return "nak", (str(e),)
        what = f"write {msg.data or ''}"
        if len(datasets) != 1:
            return "error", ("bad_value", f"{what} ({len(datasets)} data sets; one expected)")
        ds = datasets[0]
        reg = self.profile.register_by_id(ds.address)
        if reg is None:
            return "error", ("unknown_register", what)
        if "w" not in reg.access:
            return "error", ("access_denied", f"{what} ({reg.name}, read-only)")
        if self.profile.emulator.password and not self._session.authorised:
            return "error", ("access_denied", f"{what} (no P1 password yet)")
        v = ds.value
        if len(v) > reg.length or reg.encoding == "digits20" and len(v) != 20:
            return "error", ("bad_length", f"{what} ({len(v)} characters, {reg.name} takes {reg.length})")
        digits = v.isascii() and v.isdigit()
        if (reg.encoding in ("decimal", "digits20", "code") and not digits
                or reg.encoding == "code" and int(v) not in self.profile.codes.get(reg.codes or "", {})):
            return "error", ("bad_value", f"{what} (not a {reg.encoding} value of {reg.name})")
        if reg.name != TOKEN_REGISTER:
            return "value", (reg.name, v, what)
        if self._execution is not None:
            return "error", ("not_ready", f"{what} (token {self._execution.entry.text} still executing)")
        if self.profile.emulator.lockout_answer == "error" and self.tokens.locked(now_ns):
            return "lockout", (v, what)
        return "token", (v, what)

    # -- actions (what a row does; the dispatcher sets the row's next state) ----------------------

    def _ignore_frame(self, i: _Input, now_ns: int, got) -> Reaction:
        if i.what == GARBAGE:
            return self._silent(f"garbage ignored ({len(_frame(i).data)} bytes)")
        if i.what == CUT_SHORT:
            # cut short by the start of another frame: the client has moved on (it repeats
            # after its timeout); a NAK now would answer that next frame out of turn
            return self._silent(f"{_frame(i).kind} frame cut short ignored: {i.why}")
        return self._silent(f"bad {_frame(i).kind} frame ignored in {self.state}: {i.why}")

    def _ignore_other_address(self, i: _Input, now_ns: int, got) -> Reaction:
        return self._silent(f"IDRequest for {_msg(i, IDRequest).device_address!r} ignored (ours is {self._ident.device_address!r})")

    def _ignore_waiting(self, i: _Input, now_ns: int, got) -> Reaction:
        return self._silent(f"{i.msg} ignored while waiting for the option select")

    def _ignore_ack(self, i: _Input, now_ns: int, got) -> Reaction:
        return self._silent("ACK ignored (no partial block pending)")

    def _ignore(self, i: _Input, now_ns: int, got) -> Reaction:
        return self._silent(f"{i.msg} ignored in {self.state}")

    def _nak(self, i: _Input, now_ns: int, got) -> Reaction:
        why = got[1][0] if isinstance(got, tuple) else i.nak_why
        return self._answer(Nak(), now_ns, f"NAK: {why}")

    def _identify(self, i: _Input, now_ns: int, got) -> Reaction:
        restart = self.state != START
        switch = self._end_session()
        answer = IDResponse(self._ident.manufacturer, self._ident.baud_char, self._ident.text, limits=self.profile.limits)
        r = self._answer(answer, now_ns, f"IDRequest {_msg(i, IDRequest).device_address!r} -> {answer}"
                         + (" (new session)" if restart else ""), baud=switch)
        self._session.tt_deadline = self._end_of(r, self.baud) + self.policy.tt_ns(self.profile.timing)
        return r

    def _option_not_supported(self, i: _Input, now_ns: int, got) -> Reaction:
        self._end_session()
        return self._silent(f"{i.msg} not supported: back to start")

    def _option_select(self, i: _Input, now_ns: int, got) -> Reaction:
        msg = _msg(i, OptionSelect)
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
            self.baud = speed
            self._session.inactivity_deadline = now_ns + self.policy.inactivity_ns(self.profile.timing)
            p0 = PasswordCommand("P", "0", f"({self._ident.device_address})")
            return self._answer(p0, now_ns, f"option select programming, {note} -> P0", baud=switch, delay_ns=delay)
        readable = [r for r in self.profile.registers.values() if "r" in r.access]
        data = "".join(f"{r.register_id}({self._value(r.name)})\r\n" for r in readable) + "!\r\n"
        return self._answer(Data(data), now_ns, f"option select readout, {note} -> {len(readable)} registers",
                            baud=switch, delay_ns=delay,
                            baud_after=self.profile.character.initial_baud if switch else None)

    def _readout_sent(self, i: _Input, now_ns: int, got) -> Reaction:
        self._end_session()  # the speed goes back after the answer (its baud_after)
        return Reaction()

    def _repeat(self, i: _Input, now_ns: int, got) -> Reaction:
        last = self._session.last
        if last is None:
            return self._silent("NAK with nothing to repeat: ignored")
        r = replace(last, send_at_ns=now_ns + self._answer_ns, baud=None, baud_after=None,
                    event=f"NAK: repeat {last.answer}", state=self.state)
        if self.state == IDENTIFIED:
            self._session.tt_deadline = self._end_of(r, self.baud) + self.policy.tt_ns(self.profile.timing)
        return r

    def _break(self, i: _Input, now_ns: int, got) -> Reaction:
        switch = self._end_session()
        return self._silent("break: back to start", switch)

    def _abort_and_go_on(self, i: _Input, now_ns: int, got) -> Reaction:
        """IEC 62056-21 §6.4.7: the client aborts a partial-block exchange by a new command."""
        s = self._session
        what = []
        if s.blocks:
            what.append(f"partial-block answer aborted ({len(s.blocks)} blocks unsent)")
        if s.write_head is not None:
            what.append(f"partial-block write aborted after {len(s.write_parts)} blocks")
        s.blocks, s.write_head, s.write_parts = [], None, []
        r = self._dispatch(i, now_ns)
        return replace(r, event=f"{'; '.join(what)}; {r.event}")

    def _next_block(self, i: _Input, now_ns: int, got) -> Reaction:
        block = self._session.blocks.pop(0)
        left = len(self._session.blocks)
        return self._answer(block, now_ns, f"ACK: next partial block ({left} more)" if left
                            else "ACK: last partial block")

    def _value(self, name: str) -> str:
        if name in self._tcdu:
            return self._tcdu[name]
        return self._values.get(name, "")

    def _show(self, outcome: TokenOutcome) -> None:
        self._tcdu = dict(zip(TCDU_REGISTERS, map(str, (
            outcome.token_status, outcome.authentication, outcome.validation, outcome.token_result))))

    def _read(self, i: _Input, now_ns: int, plan) -> Reaction:
        outcome, args = plan
        if outcome == "error":
            return self._error(args[0], now_ns, args[1])
        answer, what = args
        if outcome == "data":
            return self._answer(answer, now_ns, what)
        size, text = self.profile.protocol.block_size, answer.data
        blocks = [Data(text[k:k + size], partial=k + size < len(text)) for k in range(0, len(text), size)]
        self._session.blocks = blocks[1:]
        return self._answer(blocks[0], now_ns, f"{what} in {len(blocks)} partial blocks of {size}")

    def _open_write(self, i: _Input, now_ns: int, got) -> Reaction:
        """The first block of a partial-block write (W3/W4, or any W ending in EOT)."""
        msg = _msg(i, WriteCommand)
        self._session.write_head = (msg.letter, msg.command_type)
        self._session.write_parts = [msg.data or ""]
        return self._answer(Ack(), now_ns, f"partial-block write {msg.letter}{msg.command_type}: block 1 -> ACK")

    def _write(self, i: _Input | None, now_ns: int, plan) -> Reaction:
        outcome, args = plan
        if outcome == "nak":
            return self._answer(Nak(), now_ns, f"NAK: {args[0]}")
        if outcome == "error":
            return self._error(args[0], now_ns, args[1])
        if outcome == "value":
            name, v, what = args
            self._values[name] = v
            return self._answer(Ack(), now_ns, f"{what} -> ACK")
        text, what = args
        self._values[TOKEN_REGISTER] = text
        entry = self.tokens.enter(text, now_ns)
        if outcome == "lockout":
            return self._error("lockout", now_ns, f"{what} ({entry.reason})")
        if self.execution_ns == 0:
            self._show(entry.outcome)
            return self._answer(Ack(), now_ns, f"{what} -> ACK, executed: {entry.outcome}")
        self._execution = _Execution(now_ns + self.execution_ns, entry)
        self._show(self.tokens.not_ready)
        return self._answer(Ack(), now_ns, f"{what} -> ACK, executing until {now_ns + self.execution_ns} ns")

    def _write_block(self, i: _Input, now_ns: int, got) -> Reaction:
        """One more block of a partial-block write: ACK it, or assemble and execute at the last."""
        if i.msg is not None:
            block = _msg(i, Data)
            text, partial = block.data, block.partial
        else:
            text, partial = _data_of(_frame(i))
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
        assert s.write_head is not None, "the row's condition: a partial-block write is open"
        (letter, ctype), s.write_head, s.write_parts = s.write_head, None, []
        try:
            msg = WriteCommand(letter, ctype, whole)
        except ProtocolError as e:
            return self._answer(Nak(), now_ns, f"NAK: partial-block write assembled from {n} blocks: {e}")
        r = self._write(None, now_ns, self._write_plan(msg, now_ns))
        return replace(r, event=f"partial-block write, {n} blocks assembled: {r.event}")

    def _password(self, i: _Input, now_ns: int, got) -> Reaction:
        if self._password_right(i, now_ns):
            self._session.authorised = True
            pw = self.profile.emulator.password
            return self._answer(Ack(), now_ns, "P1 -> ACK" + ("" if pw else " (no password set)"))
        return self._error("access_denied", now_ns, "P1 wrong password")

    def _undefined(self, i: _Input, now_ns: int, got) -> Reaction:
        msg = _msg(i, Command)
        what = f"undefined command {msg.letter}{msg.command_type}"
        if self.profile.protocol.undefined_command == "nak":
            return self._answer(Nak(), now_ns, f"{what} -> NAK")
        return self._error("undefined_command", now_ns, what)

    def _tt_out(self, i: _Input, now_ns: int, got) -> Reaction:
        return self._fall_back(f"tt: no option select {self.policy.tt_ns(self.profile.timing) / NS_PER_MS:g} ms "
                               "after the identification: back to start")

    def _inactivity_out(self, i: _Input, now_ns: int, got) -> Reaction:
        return self._fall_back("inactivity: no valid frame for "
                               f"{self.policy.inactivity_ns(self.profile.timing) / NS_PER_MS:g} ms: back to start")

    def _fall_back(self, event: str) -> Reaction:
        switch = self._end_session()
        return Reaction(baud=switch, event=event, state=self.state)

    def _finish_execution(self, i: _Input | None = None, now_ns: int = 0, got=None) -> Reaction:
        assert self._execution is not None, "its timer runs only while a token executes"
        entry = self._execution.entry
        self._execution = None
        self._show(entry.outcome)
        return Reaction(event=f"token {entry.text} executed: {entry.outcome}", state=self.state)

    def _power_cycle(self, i: _Input, now_ns: int, got) -> Reaction:
        if self._execution is not None:
            self._finish_execution()
        self.tokens.power_cycle()
        self._end_session()
        return Reaction(event="power cycle")


# ---------------------------------------------------------------------------------------------
# The state machine as data. MeterEmulator runs, for each input, the first row (in this order)
# for its state, "any" or "meter" whose event is the input and whose condition holds.

def _plan_is(plan_of, *outcomes: str):
    """A condition: the request's plan (how it is answered) is one of these outcomes; the plan
    goes to the action."""
    def when(emu: MeterEmulator, i: _Input, now_ns: int):
        plan = plan_of(emu, i.msg, now_ns)
        return plan if plan[0] in outcomes else None
    return when


_E, K = MeterEmulator, EventKind
_P1 = _message(PasswordCommand, test=lambda m: m.command_type == "1")
_OPTION = _message(OptionSelect)

STATE_TABLE: tuple[Transition, ...] = (
    # frames that are not a message, in every state (a block of a partial-block write aside)
    Transition(PROGRAMMING, "Data block", "partial-block write open", "ACK (EOT block) / assemble, execute as a write (ETX block)", PROGRAMMING,
               K.PARTIAL_BLOCK, _write_block_input, _E._write_open, _E._write_block),
    Transition(ANY, GARBAGE, "no frame start seen", "none (ignored)", SAME, K.IGNORED, _input(GARBAGE), None, _E._ignore_frame),
    Transition(ANY, CUT_SHORT, "by SOH, STX, '/', or no character for ta", "none (ignored)", SAME,
               K.IGNORED, _input(CUT_SHORT), None, _E._ignore_frame),
    Transition(PROGRAMMING, BAD_FRAME, "parity, BCC, syntax, gap", "NAK", PROGRAMMING, K.NAK, _input(BAD_FRAME), None, _E._nak),
    Transition(ANY, BAD_FRAME, "outside programming", "none (a server does not NAK a garbled request)", SAME,
               K.IGNORED, _input(BAD_FRAME), None, _E._ignore_frame),
    # identification
    Transition(START, "IDRequest", "address empty or ours (leading zeros not significant)", "IDResponse /XXXZ ident after tr; start tt", IDENTIFIED,
               K.IDENTIFICATION, _message(IDRequest), _E._ours, _E._identify),
    Transition(ANY, "IDRequest", "address empty or ours", "new session at initial baud: IDResponse (heard even inside an open block)", IDENTIFIED,
               K.IDENTIFICATION, _message(IDRequest), _E._ours, _E._identify),
    Transition(ANY, "IDRequest", "another address", "none", SAME, K.IGNORED, _message(IDRequest), _E._not_ours, _E._ignore_other_address),
    Transition(START, "any other frame", "", "none (silence)", START, K.IGNORED, _any_message, None, _E._ignore),
    # waiting for the option select
    Transition(IDENTIFIED, "OptionSelect", "V != 0 or Y not 0/1", "none", START, K.OPTION_SELECT, _OPTION, _E._option_unsupported, _E._option_not_supported),
    Transition(IDENTIFIED, "OptionSelect 0 Z 1", "Z = the proposed Z", "switch to Z; P0 (device address) at Z, after max(tr, guard + margin)", PROGRAMMING,
               K.OPTION_SELECT, _OPTION, _E._programming_proposed, _E._option_select),
    Transition(IDENTIFIED, "OptionSelect 0 Z 1", "any other Z", "stay at initial baud; P0 (device address) after tr", PROGRAMMING,
               K.OPTION_SELECT, _OPTION, _E._programming_other_z, _E._option_select),
    Transition(IDENTIFIED, "OptionSelect 0 Z 0", "", "as for Z 1; data readout of readable registers", READOUT,
               K.OPTION_SELECT, _OPTION, None, _E._option_select),
    Transition(IDENTIFIED, "NAK", "", "repeat IDResponse; restart tt", IDENTIFIED, K.REPEAT, _message(Nak), None, _E._repeat),
    Transition(IDENTIFIED, "BreakCommand", "", "none", START, K.BREAK, _message(BreakCommand), None, _E._break),
    Transition(IDENTIFIED, TIMER_TT, "no option select", "none", START, K.TIME_OUT, _input(TIMER_TT), None, _E._tt_out),
    Transition(IDENTIFIED, "any other frame", "", "none", IDENTIFIED, K.IGNORED, _any_message, None, _E._ignore_waiting),
    Transition(READOUT, READOUT_SENT, "", "back to initial baud (baud_after)", START, K.DATA_READOUT, _input(READOUT_SENT), None, _E._readout_sent),
    # programming mode
    Transition(PROGRAMMING, "any command", "partial-block answer or write open", "abort it; process the command", BY_COMMAND,
               K.PARTIAL_BLOCK, _message(Command), _E._blocks_open, _E._abort_and_go_on),
    Transition(PROGRAMMING, "NAK", "", "repeat the last answer", PROGRAMMING, K.REPEAT, _message(Nak), None, _E._repeat),
    Transition(PROGRAMMING, "ACK", "partial blocks pending", "next block (EOT; the last ETX)", PROGRAMMING,
               K.PARTIAL_BLOCK, _message(Ack), _E._blocks_pending, _E._next_block),
    Transition(PROGRAMMING, "ACK", "none pending", "none", PROGRAMMING, K.IGNORED, _message(Ack), None, _E._ignore_ack),
    Transition(PROGRAMMING, "BreakCommand", "", "none; back to initial baud", START, K.BREAK, _message(BreakCommand), None, _E._break),
    Transition(PROGRAMMING, "ReadCommand", "data sets malformed", "NAK", PROGRAMMING, K.NAK, _message(ReadCommand), _plan_is(_E._read_plan, "nak"), _E._nak),
    Transition(PROGRAMMING, "ReadCommand", "no register, unknown or write-only", "error answer (bad_value, unknown_register, access_denied)", PROGRAMMING,
               K.READ, _message(ReadCommand), _plan_is(_E._read_plan, "error"), _E._read),
    Transition(PROGRAMMING, "ReadCommand R3/R4", "answer longer than block_size > 0", "first partial block (EOT); the rest wait for ACK", PROGRAMMING,
               K.PARTIAL_BLOCK, _message(ReadCommand), _plan_is(_E._read_plan, "blocks"), _E._read),
    Transition(PROGRAMMING, "ReadCommand", "registers readable", "Data id(value)...", PROGRAMMING, K.READ, _message(ReadCommand), _plan_is(_E._read_plan, "data"), _E._read),
    Transition(PROGRAMMING, "WriteCommand ending in EOT", "", "ACK; assemble the write from blocks", PROGRAMMING,
               K.PARTIAL_BLOCK, _message(WriteCommand, test=lambda m: m.partial), None, _E._open_write),
    Transition(PROGRAMMING, "WriteCommand", "data sets malformed", "NAK", PROGRAMMING, K.NAK, _message(WriteCommand), _plan_is(_E._write_plan, "nak"), _E._write),
    Transition(PROGRAMMING, "WriteCommand", "valid, not executable", "error answer (access_denied, bad_length, bad_value, not_ready, lockout)", PROGRAMMING,
               K.WRITE, _message(WriteCommand), _plan_is(_E._write_plan, "error", "lockout"), _E._write),
    Transition(PROGRAMMING, "WriteCommand", "valid and executable", "ACK; TokenData: token execution starts", PROGRAMMING,
               K.WRITE, _message(WriteCommand), _plan_is(_E._write_plan, "value", "token"), _E._write),
    Transition(PROGRAMMING, "PasswordCommand P1", "password right or none set", "ACK", PROGRAMMING, K.PASSWORD, _P1, _E._password_right, _E._password),
    Transition(PROGRAMMING, "PasswordCommand P1", "password wrong", "error answer (access_denied)", PROGRAMMING, K.PASSWORD, _P1, _E._password_wrong, _E._password),
    Transition(PROGRAMMING, "undefined command, E, P0, P2", "", "NAK or error answer (protocol.undefined_command)", PROGRAMMING,
               K.UNDEFINED_COMMAND, _message(UndefinedCommand, ExecuteCommand, PasswordCommand), None, _E._undefined),
    Transition(PROGRAMMING, TIMER_INACTIVITY, "no valid frame", "back to initial baud", START, K.TIME_OUT, _input(TIMER_INACTIVITY), None, _E._inactivity_out),
    Transition(PROGRAMMING, "any other frame", "", "none", PROGRAMMING, K.IGNORED, _any_message, None, _E._ignore),
    # the meter, whatever the session
    Transition(METER, TIMER_EXECUTION, "token written", "TCDU registers from the token outcome", SAME,
               K.TOKEN_EXECUTED, _input(TIMER_EXECUTION), None, _E._finish_execution),
    Transition(METER, POWER_CYCLE, "", "session reset; TokenLockout cleared; pending token finishes", START,
               K.POWER_CYCLE, _input(POWER_CYCLE), None, _E._power_cycle),
)

# the rows each state looks at, in table order
_ROWS = {s: tuple(r for r in STATE_TABLE if r.state in (s, ANY, METER)) for s in STATES}
del _E, K, _P1, _OPTION


# ---------------------------------------------------------------------------------------------------
# The I/O loop: the emulator on a port (any URL: the virtual line's meter side, or hardware).

POLL_NS = 50_000_000  # the server loop looks at its stop flag at least this often


class MeterServer:
    """Runs a MeterEmulator on a port: frames in with their arrival times, answers out at the
    times the emulator's timing policy asks for.

    Every reaction is recorded in `events` (and passed to log(event)) as a dict: kinds (EventKind
    tuple: what verdicts test), event (the text, for people), state, request, request_ok,
    t_request_end_ns, answer, t_answer_start_ns (None where there was none)."""

    def __init__(self, port, profile=None, *, emulator=None, log=None):
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

    def start(self) -> MeterServer:
        """Serve in a thread of its own until stop()."""
        self._thread = threading.Thread(target=self._run, name="meter-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (within POLL_NS: the port's read cannot be woken) and close the port."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self.port.close()

    def serve_forever(self) -> None:
        """Serve in the calling thread until stop() (from another thread) or Ctrl-C."""
        self._loop()

    def saw(self, kind: EventKind, since: int = 0) -> bool:
        """Has an event of this kind been recorded, from events[since] on?"""
        return any(kind in e["kinds"] for e in self.events[since:])

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # noqa: BLE001 - kept for the owner; the server is dead
            self.error = e

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = _clock.now_ns()
            due = self.emulator.next_deadline_ns()
            deadline = now + POLL_NS if due is None else min(due, now + POLL_NS)
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
        t = frame.t_last_ns if frame.t_last_ns >= 0 else _clock.now_ns()
        try:
            reaction = self.emulator.on_frame(frame, t)
        except Exception as e:  # noqa: BLE001 - a bug of ours; the peer's bytes must not silence the meter
            reaction = Reaction(event=f"internal error on {frame.kind} frame {bytes(frame.data)!r}: "
                                      f"{type(e).__name__}: {e} (frame ignored)", state=self.emulator.state,
                                kinds=(EventKind.INTERNAL_ERROR,))
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
                 "kinds": r.kinds,
                 "state": self.emulator.state,
                 "request": None if frame is None else frame.data.decode("ascii", "replace"),
                 "request_ok": None if frame is None else frame.ok,
                 "t_request_end_ns": None if frame is None else frame.t_last_ns,
                 "answer": None if sent is None else sent[0].decode("ascii", "replace"),
                 "t_answer_start_ns": None if sent is None else sent[1]}
        self.events.append(event)
        if self.log is not None:
            self.log(event)
