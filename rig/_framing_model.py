"""Plain-Python reference model of the framing engine (ext/framing.pyx).

It implements the same rules, character by character, with no speed tricks; the tests feed both
the same streams and demand the same frames, and benches/framing.py measures both. The rules are
written down in docs/framing.md; this file and ext/framing.pyx follow them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

SOH, STX, ETX, EOT, ACK, NAK, LF, CR = 0x01, 0x02, 0x03, 0x04, 0x06, 0x15, 0x0A, 0x0D

# Frame kinds (same order as ext/framing.pyx).
KINDS = ("garbage", "request", "identification", "option_select", "ack", "nak", "command", "data")
GARBAGE, REQUEST, IDENTIFICATION, OPTION_SELECT, ACK_K, NAK_K, COMMAND, DATA = range(8)

# Error flags.
E_PARITY, E_BCC, E_SYNTAX, E_GAP, E_TRUNCATED = 1, 2, 4, 8, 16

# Syntax reasons (the first one met in a frame is kept).
R_NONE, R_BAD, R_EXCLUDED, R_FIELD_LONG, R_FRAME_LONG, R_CONTROL, R_TRUNCATED, R_OUTSIDE = range(8)
REASONS = ("", "bad character", "excluded character", "field too long", "frame too long",
           "control character", "frame cut short", "character outside any frame")
# Fields named in syntax errors.
FIELDS = ("", "device address", "manufacturer", "baud character", "escape", "identification",
          "protocol", "mode", "line end", "command letter", "command type", "address", "value",
          "unit", "end of data", "start")
(F_NONE, F_DEVADDR, F_MANUF, F_BAUD, F_ESC, F_IDENT, F_PROTO, F_MODE, F_LINE_END, F_CMD,
 F_CMDTYPE, F_ADDR, F_VALUE, F_UNIT, F_END, F_START) = range(16)

EXCLUDED = frozenset(b"()*/!")


def parity_ok(b: int) -> bool:
    return bin(b).count("1") % 2 == 0


def add_parity(data: bytes) -> bytes:
    return bytes(c | 0x80 if bin(c & 0x7F).count("1") % 2 else c & 0x7F for c in data)


def bit_errors(received: bytes, sent: bytes) -> int:
    if len(received) != len(sent):
        raise ValueError("bit_errors: expected equal lengths")
    return sum((r ^ s).bit_count() for r, s in zip(received, sent))


def bcc(data: bytes) -> int:
    x = 0
    for c in data:
        x ^= c
    return x & 0x7F


@dataclass
class Frame:
    kind: int
    start: int
    end: int = 0
    data: bytearray = field(default_factory=bytearray)
    errors: int = 0
    t_first_ns: int = -1
    t_last_ns: int = -1
    max_gap_ns: int = 0
    parity_errors: int = 0
    parity_at: int = -1
    syntax_reason: int = 0
    syntax_field: int = 0
    syntax_at: int = -1
    bcc_expected: int = -1
    bcc_received: int = -1

    @property
    def kind_id(self) -> int:
        return self.kind

    def errors_list(self) -> list[str]:
        return [f"errors 0x{self.errors:02X}"] if self.errors else []

    def key(self) -> tuple:
        """Everything the Cython framer reports, for differential tests."""
        return (KINDS[self.kind], self.start, self.end, bytes(self.data), self.errors,
                self.t_first_ns, self.t_last_ns, self.max_gap_ns, self.parity_errors,
                self.parity_at, self.syntax_reason, self.syntax_field, self.syntax_at,
                self.bcc_expected, self.bcc_received)


# States
IDLE, GARB, SLASH, REQ_ADDR, REQ_CR, REQ_LF, ID_MANUF, ID_BAUD, ID_ESC, ID_W, ID_TEXT, ID_LF, \
    ACK_SEEN, OPT_Z, OPT_Y, OPT_CR, OPT_LF, CMD_HEAD, BODY, BCC_WAIT = range(20)
# Data-set sub-states inside BODY
S_ADDR, S_VALUE, S_UNIT, S_END = range(4)


class FramerModel:
    def __init__(self, parity: str = "even", *, ta_ns: int = 1_500_000_000, bcc_on_data: bool = True,
                 device_address_max: int = 32, identification_max: int = 16, address_max: int = 16,
                 value_max: int = 128, unit_max: int = 16, frame_max: int = 4096):
        if parity not in ("even", "none"):
            raise ValueError(f"parity must be 'even' or 'none', got {parity!r}")
        self.check_parity = parity == "even"
        self.ta_ns = ta_ns
        self.bcc_on_data = bcc_on_data
        self.lim_devaddr, self.lim_ident = device_address_max, identification_max
        self.lim_addr, self.lim_value, self.lim_unit = address_max, value_max, unit_max
        self.frame_max = frame_max
        self.reset()

    def reset(self) -> None:
        self.state = IDLE
        self.pos = 0
        self.cur: Frame | None = None
        self.out: list[Frame] = []

    # -- helpers ---------------------------------------------------------------------------
    def _begin(self, kind: int, i: int) -> None:
        self.cur = Frame(kind, i)
        self.bccx = 0
        self.flen = 0  # length of the field in progress
        self.sub = S_ADDR
        self.head = 0

    def _add(self, c: int, b: int, i: int, t: int) -> None:
        f = self.cur
        if self.check_parity and not parity_ok(b):
            f.errors |= E_PARITY
            f.parity_errors += 1
            if f.parity_at < 0:
                f.parity_at = i
        if t >= 0:
            if f.t_first_ns < 0:
                f.t_first_ns = t
            elif f.kind != GARBAGE and f.t_last_ns >= 0:
                gap = t - f.t_last_ns
                if gap > f.max_gap_ns:
                    f.max_gap_ns = gap
                if gap > self.ta_ns:
                    f.errors |= E_GAP
            f.t_last_ns = t
        f.data.append(c)
        f.end = i + 1

    def _syntax(self, reason: int, fld: int, i: int) -> None:
        f = self.cur
        f.errors |= E_SYNTAX
        if f.syntax_reason == R_NONE:
            f.syntax_reason, f.syntax_field, f.syntax_at = reason, fld, i

    def _emit(self) -> None:
        self.out.append(self.cur)
        self.cur = None
        self.state = IDLE

    def _cut(self, i: int) -> None:
        """The frame in progress ends before character i, unfinished."""
        self.cur.errors |= E_TRUNCATED
        self._syntax(R_TRUNCATED, F_NONE, i)
        self._emit()

    # -- the state machine -----------------------------------------------------------------
    def feed(self, chunk, timestamps_ns=None) -> list[Frame]:
        data = bytes(chunk)
        if timestamps_ns is not None and len(timestamps_ns) != len(data):
            raise ValueError("timestamps_ns must have one entry per byte")
        for k, b in enumerate(data):
            t = int(timestamps_ns[k]) if timestamps_ns is not None else -1
            self._step(b, self.pos, t)
            self.pos += 1
        out, self.out = self.out, []
        return out

    def flush(self) -> list[Frame]:
        if self.state == ACK_SEEN:
            self._emit()
        elif self.state == GARB:
            self._emit()
        elif self.state != IDLE:
            self._cut(self.pos)
        out, self.out = self.out, []
        return out

    def _step(self, b: int, i: int, t: int) -> None:
        c = b & 0x7F if self.check_parity else b
        while True:  # a character that ends a frame is looked at again in the new state
            st = self.state
            if st in (IDLE, GARB):
                if c in (0x2F, SOH, STX, ACK, NAK):  # '/', SOH, STX, ACK, NAK start a frame
                    if st == GARB:
                        self._emit()
                    kind = {0x2F: GARBAGE, SOH: COMMAND, STX: DATA, ACK: ACK_K, NAK: NAK_K}[c]
                    self._begin(kind, i)
                    self._add(c, b, i, t)
                    if c == NAK:
                        self._emit()
                    else:
                        self.state = {0x2F: SLASH, SOH: CMD_HEAD, STX: BODY, ACK: ACK_SEEN}[c]
                    return
                if st == IDLE:
                    self._begin(GARBAGE, i)
                    self._syntax(R_OUTSIDE, F_NONE, i)
                    self.state = GARB
                self._add(c, b, i, t)
                if len(self.cur.data) >= self.frame_max:
                    self._emit()
                return
            if len(self.cur.data) >= self.frame_max:
                self.cur.errors |= E_TRUNCATED
                self._syntax(R_FRAME_LONG, F_NONE, i)
                self._emit()
                continue
            if st == ACK_SEEN:
                if 0x30 <= c <= 0x39:
                    self.cur.kind = OPTION_SELECT
                    self._add(c, b, i, t)
                    self.state = OPT_Z
                    return
                self._emit()
                continue
            if st < ACK_SEEN or OPT_Z <= st <= OPT_LF:
                if self._line(st, c, b, i, t):
                    return
                continue
            if st == CMD_HEAD:
                if c == STX:
                    self.bccx ^= c
                    self._add(c, b, i, t)
                    if self.head < 2:
                        self._syntax(R_BAD, F_CMDTYPE if self.head else F_CMD, i)
                    self.state = BODY
                    self.sub = S_ADDR
                    self.flen = 0
                    return
                if c in (ETX, EOT):
                    if self.head < 2:
                        self._syntax(R_BAD, F_CMDTYPE if self.head else F_CMD, i)
                    self._end_block(c, b, i, t)
                    return
                if c in (SOH, 0x2F):  # '/' never belongs in a block: a request may start
                    self._cut(i)
                    continue
                self.bccx ^= c
                self._add(c, b, i, t)
                if self.head == 0 and not (0x41 <= c <= 0x5A):
                    self._syntax(R_BAD, F_CMD, i)
                elif self.head == 1 and not (0x30 <= c <= 0x39):
                    self._syntax(R_BAD, F_CMDTYPE, i)
                elif self.head >= 2:
                    self._syntax(R_FIELD_LONG, F_CMDTYPE, i)
                self.head += 1
                return
            if st == BODY:
                if c in (ETX, EOT):
                    if c == ETX and self.sub in (S_VALUE, S_UNIT):
                        self._syntax(R_BAD, F_END, i)
                    self._end_block(c, b, i, t)
                    return
                if c in (SOH, STX, 0x2F):
                    self._cut(i)
                    continue
                self.bccx ^= c
                self._add(c, b, i, t)
                self._dataset(c, i)
                return
            if st == BCC_WAIT:
                self._add(c, b, i, t)
                f = self.cur
                f.bcc_expected = self.bccx & 0x7F
                f.bcc_received = c & 0x7F if self.check_parity else c
                if f.bcc_expected != f.bcc_received:
                    f.errors |= E_BCC
                self._emit()
                return
            raise AssertionError(st)

    def _end_block(self, c: int, b: int, i: int, t: int) -> None:
        self.bccx ^= c
        self._add(c, b, i, t)
        if self.cur.kind == DATA and not self.bcc_on_data:
            self._emit()
        else:
            self.state = BCC_WAIT

    def _dataset(self, c: int, i: int) -> None:
        sub = self.sub
        printable = 0x20 <= c <= 0x7E
        if sub == S_ADDR:
            if c == 0x28:  # '('
                self.sub, self.flen = S_VALUE, 0
            elif c in (CR, LF) or c == 0x21:  # line end or '!' only between data sets
                if self.flen:
                    self._syntax(R_BAD, F_ADDR, i)
                elif c == 0x21:
                    self.sub = S_END
            elif c in EXCLUDED:
                self._syntax(R_EXCLUDED, F_ADDR, i)
            elif printable:
                self.flen += 1
                if self.flen > self.lim_addr:
                    self._syntax(R_FIELD_LONG, F_ADDR, i)
            else:
                self._syntax(R_CONTROL, F_ADDR, i)
        elif sub == S_VALUE or sub == S_UNIT:
            fld = F_VALUE if sub == S_VALUE else F_UNIT
            if c == 0x29:  # ')'
                self.sub, self.flen = S_ADDR, 0
            elif c == 0x2A and sub == S_VALUE:  # '*'
                self.sub, self.flen = S_UNIT, 0
            elif c in EXCLUDED:
                self._syntax(R_EXCLUDED, fld, i)
            elif printable:
                self.flen += 1
                if self.flen > (self.lim_value if sub == S_VALUE else self.lim_unit):
                    self._syntax(R_FIELD_LONG, fld, i)
            else:
                self._syntax(R_CONTROL, fld, i)
        else:  # S_END: after '!', only the line end may follow
            if c not in (CR, LF):
                self._syntax(R_BAD, F_END, i)

    def _line(self, st: int, c: int, b: int, i: int, t: int) -> bool:
        """One character of a request, identification or option select; False: look again."""
        f = self.cur
        alpha = 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A
        digit = 0x30 <= c <= 0x39
        nxt = -1  # -1: the character does not fit here
        if st == SLASH:
            fld = F_START
            if c == 0x3F:  # '?'
                f.kind, nxt, self.flen = REQUEST, REQ_ADDR, 0
            elif alpha:
                f.kind, nxt, self.flen = IDENTIFICATION, ID_MANUF, 1
        elif st == REQ_ADDR:
            fld = F_DEVADDR
            if c == 0x21:  # '!'
                nxt = REQ_CR
            elif c == 0x20 or digit or alpha:
                if self.flen >= self.lim_devaddr:
                    return self._reject(R_FIELD_LONG, fld, i)
                self.flen += 1
                nxt = REQ_ADDR
        elif st == ID_MANUF:
            fld = F_MANUF
            if alpha:
                self.flen += 1
                nxt = ID_MANUF if self.flen < 3 else ID_BAUD
        elif st == ID_BAUD:
            fld = F_BAUD
            if digit or 0x41 <= c <= 0x5A:
                nxt, self.flen = ID_ESC, 0
        elif st == ID_W:
            fld = F_ESC
            if digit:
                nxt = ID_TEXT
        elif st == ID_ESC or st == ID_TEXT:
            fld = F_IDENT
            if st == ID_ESC and c == 0x5C:  # '\' W: an escape such as \2 (HDLC)
                nxt = ID_W
            elif c == CR:
                fld, nxt = F_LINE_END, ID_LF
            elif 0x20 <= c <= 0x7E and c != 0x2F and c != 0x21:
                if self.flen >= self.lim_ident:
                    return self._reject(R_FIELD_LONG, fld, i)
                self.flen += 1
                nxt = ID_TEXT
        elif st == OPT_Z:
            fld = F_BAUD
            if digit:
                nxt = OPT_Y
        elif st == OPT_Y:
            fld = F_MODE
            if digit:
                nxt = OPT_CR
        elif st == REQ_CR or st == OPT_CR:
            fld = F_LINE_END
            if c == CR:
                nxt = REQ_LF if st == REQ_CR else OPT_LF
        else:  # REQ_LF, ID_LF, OPT_LF
            fld = F_LINE_END
            if c == LF:
                self._add(c, b, i, t)
                self._emit()
                return True
        if nxt < 0:
            return self._reject(R_BAD, fld, i)
        self._add(c, b, i, t)
        self.state = nxt
        return True

    def _reject(self, reason: int, fld: int, i: int) -> bool:
        """A line frame meets a character that does not fit: it ends there, flagged."""
        self._syntax(reason, fld, i)
        self._emit()
        return False
