"""An independent meter for tests, from FACTS.md alone (nothing from `rig`), that can misbehave.

    meter = PeerMeter(line.meter_port, address="12345678").start()
    meter.misbehave("late", on="read 02", tr_s=1.6)          # once; count=None: always
    ... run the HHU under test ...
    meter.values["02"], meter.breaks, meter.token_entries   # the meter's own account

Behaviour (FACTS §3, §5, and the register IDs of rig/profiles/iec62055-52.toml as test data):
- IDRequest `/?address!` in any state: answered when the address is empty or names this meter
  (leading zeros not significant). IDResponse `/XXXZident`, tr after the request.
- Option select `ACK 0 Z Y`: the speed changes only when Z equals the proposed Z, else 300 Bd
  stays; Y=1 -> P0 `SOH P0 STX (address) ETX BCC` at the agreed speed, programming mode; Y=0 ->
  the readout, then back to the start. No option select within tt (2200 ms) -> back to start.
- Programming: R (any D) `addr()` -> Data `addr(value)` (unknown -> error answer); W `10(token)`
  -> ACK (token memory: accepted once, "Used" on re-entry; "Not ready" for execution_s); P1 -> ACK;
  B0 -> start at 300 Bd, no answer; a frame with a parity, BCC or syntax error -> NAK; NAK from
  the HHU -> the last answer again; unknown letters -> NAK.
- Partial blocks (FACTS §3): with partial=[sizes] a Data answer goes in blocks, each but the last
  ending in EOT; each waits for ACK (next block) or NAK (the same again); a new command aborts.
  endless=True: the blocks never end (EOT after EOT, the value running on).

Misbehaviours: misbehave(kind, on=..., count=1 | None, **params) with kind
  late (tr_s), bad_bcc, nak, silent (switch: change speed all the same after an option select),
  gap (at, gap_s), stray (data, lead_s), lost_ack (TokenData taken, its ACK not sent), not_ready
  (tokenStatus reads Not ready)
and `on` one of: id, option, read, "read <id>", write, poll (a read of tokenStatus after a token
write in this session), block (a partial block after the first), any.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from . import wire
from .wire import ACK, EOT, ETX, NAK, Frame, Line, now_ns, sleep_until

# registerIDs copied from rig/profiles/iec62055-52.toml (test data, not imported)
TABLE_ID, FOIN, PROTOCOL_VERSION, SERVER_STATUS, TOKEN_STATUS, SOFTWARE_VERSION = "00", "01", "02", "03", "04", "05"
TOKEN_DATA, AUTHENTICATION_RESULT, VALIDATION_RESULT, TOKEN_RESULT = "10", "11", "12", "13"
NAMES = {"tableID": TABLE_ID, "FOIN": FOIN, "protocolVersion": PROTOCOL_VERSION,
         "serverStatus": SERVER_STATUS, "tokenStatus": TOKEN_STATUS, "softwareVersion": SOFTWARE_VERSION,
         "TokenData": TOKEN_DATA, "AuthenticationResult": AUTHENTICATION_RESULT,
         "ValidationResult": VALIDATION_RESULT, "TokenResult": TOKEN_RESULT}
# code tables of the same profile: (tokenStatus, AuthenticationResult, ValidationResult, TokenResult)
NO_TOKEN = ("0", "0", "0", "0")
NOT_READY = ("16", "5", "8", "7")
ACCEPT = ("1", "1", "1", "1")
USED = ("10", "1", "3", "2")
TOKEN_STATUS_NAMES = {"0": "no token", "1": "Accept", "10": "Used", "16": "Not ready"}

# distinct values, so that a value of another register is never mistaken for the right one
DEFAULT_VALUES = {TABLE_ID: "7", FOIN: "PEER000000000042", PROTOCOL_VERSION: "2.1",
                  SERVER_STATUS: "12", SOFTWARE_VERSION: "PEER-METER 3.14"}
KINDS = ("late", "bad_bcc", "nak", "silent", "gap", "stray", "lost_ack", "not_ready")


@dataclass
class Rule:
    kind: str
    on: str
    count: int | None          # None: always
    params: dict = field(default_factory=dict)
    used: int = 0


class PeerMeter:
    """The meter on one tty path, served by a thread. Its account is public for tests to check."""

    def __init__(self, path: str, *, address: str = "12345678", manufacturer: str = "PEE",
                 baud_char: str = "5", ident: str = "PEER1", tr_s: float = 0.22,
                 execution_s: float = 0.3, partial: list[int] | None = None, endless: bool = False,
                 echo: bool = False,
                 tt_s: float = 2.2, inactivity_s: float = 60.0, values: dict[str, str] | None = None):
        self.line = Line(path, 300, echo=echo)
        self.address, self.manufacturer, self.baud_char, self.ident = address, manufacturer, baud_char, ident
        self.tr_ns = int(tr_s * 1e9)
        self.execution_ns = int(execution_s * 1e9)
        self.partial = partial
        self.endless = endless   # partial blocks that never end: the value runs on in EOT blocks
        self.tt_ns, self.inactivity_ns = int(tt_s * 1e9), int(inactivity_s * 1e9)
        self.values = dict(DEFAULT_VALUES, **(values or {}))
        self.rules: list[Rule] = []
        # the meter's own account
        self.state = "start"
        self.log: list[dict] = []                 # every frame heard and what was done
        self.id_requests: list[str] = []          # addresses heard
        self.option_selects: list[dict] = []      # {"z", "mode", "baud_heard"}
        self.bauds: list[int] = [300]             # speeds the meter switched to, in order
        self.answers: list[dict] = []             # {"to", "answer", "tr_ms", "baud"}
        self.block_replies: list[tuple[int, str]] = []   # (block index, "ACK" | "NAK" | "none" | "aborted")
        self.breaks: list[int] = []               # times B0 was heard
        self.bad_frames: list[Frame] = []
        self.token_entries: list[tuple[str, str]] = []   # (token, "Accept" | "Used"), in order
        self.tcdu = NO_TOKEN
        self._ready_at = 0
        self._pending_tcdu = NO_TOKEN
        self._wrote_token = False
        self._last: bytes | None = None
        self._last_cats: set[str] = set()
        self._session_end: int | None = None
        self._cv = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    # -- set-up and account -------------------------------------------------------------------
    def misbehave(self, kind: str, *, on: str = "any", count: int | None = 1, **params) -> "PeerMeter":
        if kind not in KINDS:
            raise ValueError(f"misbehaviour {kind!r}: one of {KINDS}")
        self.rules.append(Rule(kind, on, count, params))
        return self

    def start(self) -> "PeerMeter":
        self._thread = threading.Thread(target=self._run, name="peer-meter", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop = True
        if self._thread is not None:
            self._thread.join(5)
        self.line.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def wait_for(self, predicate, timeout_s: float = 10.0) -> bool:
        """Wait (on the meter's events, with a deadline) until predicate(self) holds."""
        deadline = now_ns() + int(timeout_s * 1e9)
        with self._cv:
            while not predicate(self):
                left = deadline - now_ns()
                if left <= 0:
                    return False
                self._cv.wait(left / 1e9)
            return True

    def value(self, register: str) -> str:
        """The value this meter holds for a register (name or ID), as it would answer now."""
        rid = NAMES.get(register, register)
        return self._value(rid, now_ns())

    def accepted_tokens(self) -> list[str]:
        return [t for t, outcome in self.token_entries if outcome == "Accept"]

    def _event(self, **e) -> None:
        with self._cv:
            self.log.append(dict(e, t=now_ns(), state=self.state))
            self._cv.notify_all()

    # -- the loop -------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop:
                f = self.line.read_frame(now_ns() + 100_000_000)
                if f is None:
                    self._timers(now_ns())
                    continue
                self._timers(f.t_first)
                self._frame(f)
        except BaseException as e:  # noqa: BLE001 - kept for the test to see
            self.error = e
            self._event(what="crashed", error=repr(e))

    def _timers(self, t: int) -> None:
        if self._session_end is not None and t > self._session_end:
            self._event(what=f"timeout in {self.state}: back to start")
            self._to_start()

    def _to_start(self) -> None:
        self.state = "start"
        self._session_end = None
        self._wrote_token = False
        self._switch(300)

    def _switch(self, baud: int) -> None:
        if self.line.baud != baud:
            self.line.set_baud(baud)
            self.bauds.append(baud)

    def _rule(self, cats: set[str], kinds: tuple[str, ...]) -> Rule | None:
        for r in self.rules:
            if r.kind in kinds and (r.on in cats or r.on == "any") and (r.count is None or r.used < r.count):
                r.used += 1
                return r
        return None

    def _frame(self, f: Frame) -> None:
        if f.kind == "request" and f.ok:
            return self._id_request(f)
        if not f.ok:
            self.bad_frames.append(f)
            self._event(what="bad frame", frame=f.chars, errors=f.errors)
            if self.state == "programming" and f.kind in ("command", "data"):
                self._answer(bytes((NAK,)), f, {"bad"})
            return
        if self.state == "identified":
            if f.kind == "option":
                return self._option(f)
            if f.kind == "nak" and self._last is not None:
                return self._answer(self._last, f, {"id"})
            self._event(what="ignored while identified", frame=f.chars)
            return
        if self.state != "programming":
            self._event(what=f"ignored in {self.state}", frame=f.chars)
            return
        self._session_end = f.t_last + self.inactivity_ns
        if f.kind == "nak":
            if self._last is not None:
                # the repeat is an answer to the same request: the same misbehaviours apply
                self._answer(self._last, f, self._last_cats | {"repeat"}, remember=False)
            return
        if f.kind != "command":
            self._event(what="ignored in programming", frame=f.chars)
            return
        letter, d = f.letter, f.d
        if letter == "B":
            self.breaks.append(f.t_last)
            self._event(what="break", frame=f.chars)
            self._to_start()
            return
        if letter == "R":
            return self._read(f)
        if letter == "W":
            return self._write(f)
        if letter == "P" and d == "1":
            return self._answer(bytes((ACK,)), f, {"password"})
        self._answer(bytes((NAK,)), f, {"undefined"})

    # -- identification -------------------------------------------------------------------------
    def _id_request(self, f: Frame) -> None:
        addr = f.address
        self.id_requests.append(addr)
        if addr and addr.lstrip("0") != self.address.lstrip("0"):
            self._event(what=f"IDRequest for {addr!r}: not this meter", frame=f.chars)
            return
        self._to_start()
        self.state = "identified"
        ans = wire.id_response(self.manufacturer, self.baud_char, self.ident)
        sent = self._answer(ans, f, {"id"})
        # tt counts from the end of the identification
        self._session_end = (sent or f.t_last) + len(ans) * self.line.char_ns() + self.tt_ns

    def _option(self, f: Frame) -> None:
        v, z, y = chr(f.chars[1]), chr(f.chars[2]), chr(f.chars[3])
        self.option_selects.append({"z": z, "mode": y, "baud_heard": self.line.baud, "t": f.t_last})
        if v != "0" or y not in "01":
            self._event(what="option select not supported: back to start", frame=f.chars)
            self._to_start()
            return
        speed = 300
        if z == self.baud_char:
            speed = wire.MODE_C.get(z) or wire.MODE_B.get(z) or 300
        if y == "1":
            self.state = "programming"
            self._session_end = f.t_last + self.inactivity_ns
            self._answer(wire.command("P", "0", f"({self.address})"), f, {"option"}, baud=speed)
        else:
            data = "".join(f"{rid}({v})\r\n" for rid, v in sorted(self.values.items())) + "!\r\n"
            self._answer(wire.data_block(data), f, {"option"}, baud=speed)
            self._to_start()

    # -- registers and tokens ---------------------------------------------------------------------
    def _value(self, rid: str, t: int) -> str | None:
        tcdu = (TOKEN_STATUS, AUTHENTICATION_RESULT, VALIDATION_RESULT, TOKEN_RESULT)
        if rid in tcdu:
            if self._ready_at and t >= self._ready_at:
                self.tcdu, self._ready_at = self._pending_tcdu, 0
            return self.tcdu[tcdu.index(rid)]
        return self.values.get(rid)

    def _read(self, f: Frame) -> None:
        rid = f.payload.split("(")[0]
        cats = {"read", f"read {rid}"}
        if rid == TOKEN_STATUS and self._wrote_token:
            cats.add("poll")
        value = self._value(rid, f.t_last)
        forced = self._rule(cats, ("not_ready",)) if rid == TOKEN_STATUS else None
        if forced is not None:
            value = NOT_READY[0]
        text = f"{rid}({value})" if value is not None else "(unknown register)"
        if self.partial and value is not None:
            return self._answer_blocks(text, f, cats)
        self._answer(wire.data_block(text), f, cats)

    def _write(self, f: Frame) -> None:
        payload = f.payload
        rid, _, rest = payload.partition("(")
        value = rest[:-1] if rest.endswith(")") else None
        if rid != TOKEN_DATA or value is None:
            return self._answer(wire.data_block("(access denied)"), f, {"write"})
        if len(value) != 20 or not value.isdigit():
            return self._answer(wire.data_block("(bad value)"), f, {"write"})
        if self._ready_at and f.t_last < self._ready_at:
            return self._answer(wire.data_block("(not ready)"), f, {"write"})
        outcome = "Used" if any(t == value for t, _ in self.token_entries) else "Accept"
        self.token_entries.append((value, outcome))
        self._wrote_token = True
        self._pending_tcdu = USED if outcome == "Used" else ACCEPT
        self._ready_at = f.t_last + self.execution_ns
        self.tcdu = NOT_READY if self.execution_ns else self._pending_tcdu
        self._event(what=f"token {value}: {outcome}", frame=f.chars)
        if self._rule({"write"}, ("lost_ack",)) is not None:
            self._event(what="token ACK lost (not sent)")
            return
        self._answer(bytes((ACK,)), f, {"write"})

    # -- answering --------------------------------------------------------------------------------
    def _answer(self, chars: bytes, f: Frame, cats: set[str], *, baud: int | None = None,
                remember: bool = True) -> int | None:
        """Send an answer tr after the request (or as a misbehaviour says); its start time."""
        rule = self._rule(cats, ("late", "bad_bcc", "nak", "silent", "gap", "stray"))
        kind = rule.kind if rule else None
        if kind == "silent":
            if baud is not None and rule.params.get("switch"):
                sleep_until(f.t_last + self.tr_ns)
                self._switch(baud)  # it switched speed, but its answer was lost
            self._event(what="silent (misbehaviour)", frame=f.chars)
            return None
        if remember:
            self._last, self._last_cats = chars, cats
        if kind == "nak":
            chars = bytes((NAK,))
        if kind == "bad_bcc" and chars[0] in (wire.SOH, wire.STX):
            chars = chars[:-1] + bytes((chars[-1] ^ 0x01,))
        tr = int(rule.params["tr_s"] * 1e9) if kind == "late" else self.tr_ns
        at = f.t_last + tr
        if kind == "stray":
            lead = int(rule.params.get("lead_s", 0.1) * 1e9)
            sleep_until(at - lead)
            self.line.send(rule.params.get("data", b"\x02"))
        if baud is not None and baud != self.line.baud:
            sleep_until(at)  # both sides switch after the option select; answer at the new speed
            self._switch(baud)
        gap = {}
        if kind == "gap":
            gap = {"gap_after": rule.params.get("at", 3), "gap_ns": int(rule.params.get("gap_s", 1.7) * 1e9)}
        start, _ = self.line.send(chars, at_ns=at, **gap)
        with self._cv:
            self.answers.append({"to": f.chars, "answer": chars, "tr_ms": (start - f.t_last) / 1e6,
                                 "baud": self.line.baud, "misbehaviour": kind})
            self._cv.notify_all()
        self._event(what="answered", frame=f.chars, answer=chars, misbehaviour=kind)
        return start

    def _answer_blocks(self, text: str, f: Frame, cats: set[str]) -> None:
        """A Data answer in partial blocks: ACK -> next, NAK -> again, a new command aborts."""
        pieces = wire.split_blocks(text, self.partial)
        blocks = [wire.data_block(p, EOT if i < len(pieces) - 1 else ETX) for i, p in enumerate(pieces)]
        if self.endless:
            filler = wire.data_block("X" * self.partial[-1], EOT)
            blocks = [b[:-2] + bytes((EOT, wire.bcc(b[1:-2] + bytes((EOT,))))) for b in blocks] + [filler] * 500
        req = f
        for i, block in enumerate(blocks):
            while True:
                start = self._answer(block, req, cats if i == 0 else {"block"})
                if start is None or i == len(blocks) - 1:
                    if start is None:
                        self.block_replies.append((i, "none"))
                    return
                reply = self.line.read_frame(now_ns() + 3_000_000_000)
                if reply is None:
                    self.block_replies.append((i, "none"))
                    self._event(what=f"no ACK/NAK for partial block {i}")
                    return
                if reply.kind == "ack":
                    self.block_replies.append((i, "ACK"))
                    req = reply
                    break
                if reply.kind == "nak":
                    self.block_replies.append((i, "NAK"))
                    req = reply
                    continue
                self.block_replies.append((i, "aborted"))
                self._event(what=f"partial answer aborted by {reply.chars!r}")
                return self._frame(reply)
