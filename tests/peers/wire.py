"""The wire for the independent peers: 7E1 parity, BCC, messages and a frame reader, from
FACTS.md §2-§5 alone (nothing from `rig`).

A Linux pty ignores parity, so a peer on a pty writes *wire bytes*: the 7-bit character with its
even-parity bit in bit 7, as a UART set to 7E1 puts it on the line (FACTS §2), and checks and
strips that bit when reading. The pty's speed setting (what `Line.set_baud` sets) is what a
line between two ptys sees as the sender's and the receiver's speed.
"""
from __future__ import annotations

import os
import select
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import serial

SOH, STX, ETX, EOT, ACK, NAK, LF, CR = 0x01, 0x02, 0x03, 0x04, 0x06, 0x15, 0x0A, 0x0D
TA_NS = 1_500_000_000          # FACTS §5: characters of one message come less than ta apart
MODE_C = {"0": 300, "1": 600, "2": 1200, "3": 2400, "4": 4800, "5": 9600, "6": 19200}   # FACTS §2
MODE_B = {"A": 600, "B": 1200, "C": 2400, "D": 4800, "E": 9600, "F": 19200}


def now_ns() -> int:
    return time.monotonic_ns()


def sleep_until(t_ns: int) -> None:
    """The peer's own pacing (when it answers), not a test waiting for an event."""
    while (left := t_ns - time.monotonic_ns()) > 0:
        time.sleep(min(left / 1e9, 0.05))


# -- characters ----------------------------------------------------------------------------------
def even_parity(c: int) -> int:
    """7-bit character -> 7E1 wire byte (parity bit in bit 7, so the 8 bits have an even count)."""
    c &= 0x7F
    return c | 0x80 if bin(c).count("1") % 2 else c


def parity_ok(w: int) -> bool:
    return bin(w & 0xFF).count("1") % 2 == 0


def to_wire(chars: bytes) -> bytes:
    return bytes(even_parity(c) for c in chars)


def bcc(chars: bytes) -> int:
    """XOR of the characters given: everything after the first SOH or STX up to and including
    the ETX or EOT (FACTS §4)."""
    x = 0
    for c in chars:
        x ^= c
    return x & 0x7F


# -- messages (FACTS §3) ---------------------------------------------------------------------------
def id_request(address: str = "") -> bytes:
    return b"/?" + address.encode() + b"!\r\n"


def id_response(manufacturer: str, z: str, ident: str) -> bytes:
    return b"/" + manufacturer.encode() + z.encode() + ident.encode() + b"\r\n"


def option_select(z: str, mode: str = "1", protocol: str = "0") -> bytes:
    return bytes((ACK,)) + (protocol + z + mode).encode() + b"\r\n"


def command(letter: str, d: str, data: str | bytes | None = None, end: int = ETX) -> bytes:
    """SOH letter D [STX data] ETX|EOT BCC."""
    body = (letter + d).encode()
    if data is not None:
        body += bytes((STX,)) + (data.encode() if isinstance(data, str) else data)
    body += bytes((end,))
    return bytes((SOH,)) + body + bytes((bcc(body),))


def data_block(data: str | bytes, end: int = ETX) -> bytes:
    """STX data ETX|EOT BCC: a Data message, or one partial block of it."""
    body = (data.encode() if isinstance(data, str) else data) + bytes((end,))
    return bytes((STX,)) + body + bytes((bcc(body),))


def break_command() -> bytes:
    return command("B", "0")


def split_blocks(data: str, sizes) -> list[str]:
    """data cut in pieces of the given sizes (the last size repeats); an empty last piece when
    the sizes end exactly at the end (a last block with nothing in it)."""
    sizes, out, i, k = list(sizes), [], 0, 0
    while i < len(data):
        n = sizes[min(k, len(sizes) - 1)]
        out.append(data[i:i + n])
        i, k = i + n, k + 1
    if k < len(sizes) and sizes[k] == 0:
        out.append("")
    return out or [""]


# -- frames ------------------------------------------------------------------------------------------
@dataclass
class Frame:
    """A message as received: its 7-bit characters, arrival times, and what is wrong with it."""
    kind: str                 # request, ident, option, ack, nak, command, data, garbage
    chars: bytes
    t_first: int              # arrival of the first and last characters (ns, monotonic)
    t_last: int
    errors: list[str] = field(default_factory=list)
    max_gap: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    # parsed fields (meaningful when ok)
    @property
    def address(self) -> str:          # request: the device address
        return self.chars[2:-3].decode("ascii", "replace")

    @property
    def letter(self) -> str:           # command: R W B P E ...
        return chr(self.chars[1]) if len(self.chars) > 1 else ""

    @property
    def d(self) -> str:
        return chr(self.chars[2]) if len(self.chars) > 2 else ""

    @property
    def end(self) -> int:              # ETX or EOT of a block
        return self.chars[-2] if len(self.chars) >= 2 else -1

    @property
    def payload(self) -> str:          # between STX and ETX/EOT
        i = self.chars.find(bytes((STX,)))
        return self.chars[i + 1:-2].decode("ascii", "replace") if i >= 0 else ""

    def __repr__(self) -> str:
        return f"Frame({self.kind}, {self.chars!r}, errors={self.errors})"


class Line:
    """One end of the wire: a tty path opened with pyserial (8 bits, raw: parity is ours).

    A reader thread takes every byte as it arrives, with its time, so a peer busy waiting to
    answer still knows when each character came. echo=True writes every byte received straight
    back (a half-duplex loop that reflects the other side's characters)."""

    def __init__(self, path: str, baud: int = 300, *, echo: bool = False):
        self.ser = serial.Serial(path, baud, bytesize=8, parity="N", stopbits=1, timeout=0,
                                 exclusive=None)
        self.fd = self.ser.fileno()
        self.echo = echo
        self._rx: deque[tuple[int, int]] = deque()   # (wire byte, arrival ns)
        self._back: list[tuple[int, bool, int]] = []
        self._cv = threading.Condition()
        self._stop = False
        self.sent: list[tuple[int, bytes, int]] = []    # (time written, chars, baud)
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._read_loop, name="peer-line", daemon=True)
        self._thread.start()

    @property
    def baud(self) -> int:
        return self.ser.baudrate

    def char_ns(self, baud: int | None = None) -> int:
        return 10 * 1_000_000_000 // (baud or self.baud)

    def set_baud(self, baud: int) -> None:
        self.ser.baudrate = baud

    def close(self) -> None:
        self._stop = True
        os.write(self._wake_w, b"x")
        self._thread.join(2)
        self.ser.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # -- sending ----------------------------------------------------------------------------------
    def send(self, chars: bytes, *, at_ns: int | None = None, gap_after: int | None = None,
             gap_ns: int = 0, bad_parity: tuple[int, ...] = ()) -> tuple[int, int]:
        """Write chars as 7E1 wire bytes, from at_ns (now if None); with gap_ns of silence after
        the character at index gap_after; wrong parity at the indices in bad_parity. Returns
        (start of the first character on the line, end of the last one), as estimated here."""
        wire = bytearray(to_wire(chars))
        for i in bad_parity:
            wire[i] ^= 0x80
        if at_ns is not None:
            sleep_until(at_ns)
        c = self.char_ns()
        t0 = now_ns()
        if gap_after is None or gap_after >= len(wire) - 1:
            os.write(self.fd, bytes(wire))
            end = t0 + len(wire) * c
        else:
            os.write(self.fd, bytes(wire[:gap_after + 1]))
            sleep_until(t0 + (gap_after + 1) * c + gap_ns)
            t1 = now_ns()
            os.write(self.fd, bytes(wire[gap_after + 1:]))
            end = t1 + (len(wire) - gap_after - 1) * c
        self.sent.append((t0, bytes(chars), self.baud))
        return t0, end

    # -- receiving --------------------------------------------------------------------------------
    def _read_loop(self) -> None:
        while not self._stop:
            try:
                ready, _, _ = select.select([self.fd, self._wake_r], [], [], 0.5)
            except (OSError, ValueError):
                return
            if self.fd not in ready:
                continue
            try:
                data = os.read(self.fd, 4096)
            except BlockingIOError:
                continue
            except OSError:
                return
            t = now_ns()
            if self.echo and data:
                try:
                    os.write(self.fd, data)
                except OSError:
                    pass
            with self._cv:
                self._rx.extend((b, t) for b in data)
                self._cv.notify_all()

    def getc(self, deadline_ns: int) -> tuple[int, bool, int] | None:
        """(7-bit character, parity good, arrival ns) or None at the deadline."""
        if self._back:
            return self._back.pop()
        with self._cv:
            while not self._rx:
                left = deadline_ns - now_ns()
                if left <= 0:
                    return None
                self._cv.wait(left / 1e9)
            w, t = self._rx.popleft()
        return w & 0x7F, parity_ok(w), t

    def unget(self, c: tuple[int, bool, int]) -> None:
        self._back.append(c)

    def discard(self) -> None:
        """Forget everything received and not read yet."""
        self._back.clear()
        with self._cv:
            self._rx.clear()

    def pending(self) -> bool:
        with self._cv:
            return bool(self._rx) or bool(self._back)

    def read_frame(self, deadline_ns: int, ta_ns: int = TA_NS) -> Frame | None:
        """The next message, or None when nothing began before the deadline. A message in progress
        is read to its end whatever the deadline, but a pause of ta ends it (cut short)."""
        first = self.getc(deadline_ns)
        if first is None:
            return None
        c0, ok0, t0 = first
        chars, errors = bytearray([c0]), ([] if ok0 else ["parity"])
        t_last, max_gap = t0, 0
        quiet = 3 * self.char_ns() + 30_000_000

        def nxt(limit_ns):
            nonlocal t_last, max_gap
            got = self.getc(limit_ns)
            if got is not None:
                max_gap = max(max_gap, got[2] - t_last)
            return got

        def take(got):
            nonlocal t_last
            chars.append(got[0])
            if not got[1] and "parity" not in errors:
                errors.append("parity")
            t_last = got[2]

        if c0 == ord("/"):
            while True:
                got = nxt(t_last + ta_ns)
                if got is None:
                    errors.append("cut short (gap over ta)")
                    break
                take(got)
                if got[0] == LF or len(chars) > 64:
                    break
            kind = "request" if chars[1:2] == b"?" else "ident"
            if kind == "request" and not chars.endswith(b"!\r\n"):
                errors.append("syntax")
            return Frame(kind, bytes(chars), t0, t_last, errors, max_gap)
        if c0 == ACK:
            got = nxt(t0 + quiet)
            if got is None or not (0x30 <= got[0] <= 0x39):
                if got is not None:
                    self.unget(got)
                return Frame("ack", bytes(chars), t0, t_last, errors)
            take(got)
            while got[0] != LF and len(chars) < 8:
                got = nxt(t_last + ta_ns)
                if got is None:
                    errors.append("cut short (gap over ta)")
                    break
                take(got)
            if len(chars) != 6 or not chars.endswith(b"\r\n"):
                errors.append("syntax")
            return Frame("option", bytes(chars), t0, t_last, errors, max_gap)
        if c0 == NAK:
            return Frame("nak", bytes(chars), t0, t_last, errors)
        if c0 in (SOH, STX):
            kind = "command" if c0 == SOH else "data"
            while True:
                got = nxt(t_last + ta_ns)
                if got is None:
                    errors.append("cut short (gap over ta)")
                    return Frame(kind, bytes(chars), t0, t_last, errors, max_gap)
                if got[0] == SOH or (got[0] == ord("/") and kind == "data" and len(chars) == 1):
                    self.unget(got)   # another message began: this one was cut short
                    errors.append("cut short (another message began)")
                    return Frame(kind, bytes(chars), t0, t_last, errors, max_gap)
                if got[2] - t_last > ta_ns and "gap over ta" not in errors:
                    errors.append("gap over ta")
                take(got)
                if got[0] in (ETX, EOT):
                    got = nxt(t_last + ta_ns)
                    if got is None:
                        errors.append("cut short (no BCC)")
                        return Frame(kind, bytes(chars), t0, t_last, errors, max_gap)
                    take(got)
                    if bcc(chars[1:-1]) != chars[-1]:
                        errors.append("bcc")
                    return Frame(kind, bytes(chars), t0, t_last, errors, max_gap)
                if len(chars) > 4096:
                    errors.append("too long")
                    return Frame(kind, bytes(chars), t0, t_last, errors, max_gap)
        # anything else: garbage up to the next start character or a quiet spell
        while True:
            got = nxt(t_last + quiet)
            if got is None:
                break
            if got[0] in (SOH, STX, ACK, NAK, ord("/")):
                self.unget(got)
                break
            take(got)
        return Frame("garbage", bytes(chars), t0, t_last, ["garbage"], max_gap)
