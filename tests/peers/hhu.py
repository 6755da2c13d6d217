"""An independent HHU for tests, from FACTS.md alone (nothing from `rig`), driven step by step by
the test so that it can misbehave anywhere.

    hhu = PeerHHU(line.hhu_port)
    ident = hhu.identify(address="1")             # /?1! ... option select, speed switch, P0
    value = hhu.read("05")                        # ACKs partial blocks, assembles the value
    hhu.sign_off()

Every exchange is kept in hhu.exchanges: what was sent, the answer frame, and tr as this HHU
measured it (start of the answer's first character, i.e. its arrival less one character time,
minus the end of the request on the line as estimated from when it was written).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import wire
from .wire import ACK, EOT, ETX, NAK, Frame, Line, now_ns, sleep_until

TR_MAX_NS = 1_500_000_000          # FACTS §5
ANSWER_WAIT_NS = 3_000_000_000     # generous: a loaded machine, and we want to see late answers too


class PeerError(AssertionError):
    """The meter under test did not do what FACTS.md says; the message says what."""


@dataclass
class Exchange:
    sent: bytes
    sent_end_ns: int
    answer: Frame | None = None
    tr_ns: int | None = None
    blocks: list[Frame] = field(default_factory=list)


class PeerHHU:
    def __init__(self, path: str, *, guard_s: float = 0.05, tr_min_s: float = 0.02, echo: bool = False):
        self.line = Line(path, 300, echo=echo)
        self.guard_ns = int(guard_s * 1e9)       # speed-switch guard after the option select (profile value)
        self.tr_min_ns = int(tr_min_s * 1e9)     # the HHU leaves this after an answer before it speaks
        self.exchanges: list[Exchange] = []
        self.identity: Frame | None = None
        self._last_rx_ns = 0

    def close(self) -> None:
        self.line.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- raw --------------------------------------------------------------------------------------
    def send(self, chars: bytes, **kw) -> Exchange:
        at = kw.pop("at_ns", None)
        if at is None:
            at = max(now_ns(), self._last_rx_ns + self.tr_min_ns)
        _, end = self.line.send(chars, at_ns=at, **kw)
        ex = Exchange(chars, end)
        self.exchanges.append(ex)
        return ex

    def receive(self, ex: Exchange, wait_ns: int = ANSWER_WAIT_NS, skip_garbage: bool = True) -> Frame | None:
        """The answer to ex (the first frame other than garbage), or None."""
        deadline = ex.sent_end_ns + wait_ns
        while True:
            f = self.line.read_frame(deadline)
            if f is None:
                return None
            if f.kind == "garbage" and skip_garbage:
                continue
            if ex.answer is None:
                ex.answer = f
                ex.tr_ns = f.t_first - self.line.char_ns() - ex.sent_end_ns
            self._last_rx_ns = f.t_last
            return f

    def request(self, chars: bytes, wait_ns: int = ANSWER_WAIT_NS, **kw) -> tuple[Frame | None, Exchange]:
        self.line.discard()
        ex = self.send(chars, **kw)
        return self.receive(ex, wait_ns), ex

    # -- the session ---------------------------------------------------------------------------------
    def identify(self, address: str = "", *, z: str | None = None, mode: str = "1",
                 switch: bool | None = None, late_s: float = 0.0) -> dict:
        """IDRequest, IDResponse, option select with z (default: the Z proposed), then, when Z equals
        the proposed one (FACTS §3), the speed switch guard_s after the option select left the line
        (late_s later still: a loaded host); the P0 answer. switch overrides whether this HHU
        changes speed."""
        self.line.set_baud(300)
        ident, ex = self.request(wire.id_request(address))
        if ident is None:
            raise PeerError(f"no IDResponse to {wire.id_request(address)!r}")
        if ident.kind != "ident" or not ident.ok:
            raise PeerError(f"bad IDResponse {ident!r}")
        self.identity = ident
        proposed = chr(ident.chars[4])
        z = proposed if z is None else z
        sel = self.send(wire.option_select(z, mode))
        speed = wire.MODE_C.get(z) or wire.MODE_B.get(z) or 300
        do_switch = (z == proposed) if switch is None else switch
        if do_switch and speed != 300:
            sleep_until(sel.sent_end_ns + self.guard_ns + int(late_s * 1e9))
            self.line.set_baud(speed)
        answer = self.receive(sel)
        return {"ident": ident, "ident_tr_ns": ex.tr_ns, "proposed": proposed, "z": z,
                "baud": self.line.baud, "answer": answer, "answer_tr_ns": sel.tr_ns}

    def read(self, register_id: str, d: str = "1", *, nak_blocks: tuple[int, ...] = (),
             wait_ns: int = ANSWER_WAIT_NS) -> tuple[str | None, Exchange]:
        """R<d> register_id(): the value, assembling partial blocks (ACK each good EOT block, NAK
        a bad one, and NAK the blocks whose index is in nak_blocks once, to ask for a repeat)."""
        f, ex = self.request(wire.command("R", d, f"{register_id}()"), wait_ns)
        text, k, naked = "", 0, set()
        while True:
            if f is None:
                return None, ex
            ex.blocks.append(f)
            if f.kind != "data":
                return None, ex
            if not f.ok or (k in nak_blocks and k not in naked):
                naked.add(k)
                nxt = self.send(bytes((NAK,)))
                f = self.receive(nxt, wait_ns)
                continue
            text += f.payload
            if f.end == ETX:
                break
            k += 1
            nxt = self.send(bytes((ACK,)))
            f = self.receive(nxt, wait_ns)
        if not text.startswith(f"{register_id}(") or not text.endswith(")"):
            return None, ex
        return text[len(register_id) + 1:-1], ex

    def write(self, register_id: str, value: str, d: str = "1", *, blocks: list[int] | None = None,
              wait_ns: int = ANSWER_WAIT_NS) -> tuple[Frame | None, Exchange]:
        """W<d> register_id(value); with blocks=[sizes], in partial blocks (W3): SOH W3 STX ... EOT BCC,
        then STX ... EOT/ETX BCC, each waiting for the meter's ACK. Returns the last answer."""
        text = f"{register_id}({value})"
        if not blocks:
            return self.request(wire.command("W", d, text), wait_ns)
        pieces = wire.split_blocks(text, blocks)
        f = ex = None
        for i, piece in enumerate(pieces):
            end = EOT if i < len(pieces) - 1 else ETX
            chars = wire.command("W", d, piece, end) if i == 0 else wire.data_block(piece, end)
            f, ex = self.request(chars, wait_ns)
            if f is None or f.kind != "ack":
                return f, ex
        return f, ex

    def sign_off(self) -> None:
        """B0, then back to 300 Bd the guard after it left the line (as after an option select)."""
        ex = self.send(wire.break_command())
        sleep_until(ex.sent_end_ns + self.guard_ns)
        self.line.set_baud(300)
