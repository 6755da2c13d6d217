"""The virtual line: the embedded default for a serial link, with faults.

Two pty pairs joined by a bridge thread. The HHU side and the meter side each open a real tty path
(`line.hhu_port`, `line.meter_port`) with pyserial, exactly as they would open hardware. The bridge
moves each character to the other side at the line rate of its sender (10 bit times: start, 8 bits
between, stop), as a receiving UART would get it: at the end of its stop bit, sampled at the
receiver's own speed (a speed mismatch garbles it as it would on a wire). It keeps a timestamped
wire record of both directions and applies the faults given as data (rig.link.faults).

A Linux pty carries 8-bit bytes and ignores parity settings (its driver keeps CS8 and clears
PARENB whatever a program asks; glibc's tcsetattr then reports EINVAL when nothing else changed,
e.g. when a program opens the tty at 300 Bd 7E1 a second time). So while nobody has a side's tty
open, the bridge keeps it as it was when the line started (38400 Bd raw: it restores that when the
last program closes it, seen through inotify): a program's 7E1 request then always changes the
speed and is reported as done. Each side says what it writes:
"wire" (default): 7E1 wire bytes, the parity bit included, as rig's own Port writes on a pty;
"chars": 7-bit characters, as a program that configured 7E1 on a real UART writes; the bridge adds
even parity on the way in and strips it on the way out (a third-party HHU or meter program).
"""
from __future__ import annotations

import ctypes
import fcntl
import heapq
import os
import struct
import termios
import threading
import tty
from dataclasses import dataclass

from rig import _clock
from rig._framing import add_parity
from rig.link.faults import Fault, sample_char
from rig.link.port import char_time_ns

SIDES = ("hhu", "meter")
_TCGETS2 = 0x802C542A  # struct termios2, Linux: gives the real speeds, custom ones included
_SPIN_NS = 100_000   # wake this long before a delivery; sleep_until spins the last 50 us


@dataclass(frozen=True, slots=True)
class WireChar:
    """One character on the line. sent: the byte its sender wrote (wire form); line: what was on
    the wire after line faults (-1: dropped); received: what the other side got (-1: nothing)."""
    # a frozen dataclass, not a NamedTuple: a tuple's own index() method would be shadowed by the
    # field; every reader takes the fields by name
    direction: str
    index: int
    sent: int
    line: int
    received: int
    t_start_ns: int
    t_end_ns: int
    baud: float
    faults: str


def tty_speed(fd: int) -> int:
    """The output speed a tty is set to (what pyserial set on the other end of the pty)."""
    buf = fcntl.ioctl(fd, _TCGETS2, bytes(44))
    return struct.unpack_from("I", buf, 40)[0]


_IN_OPEN, _IN_CLOSE_WRITE, _IN_CLOSE_NOWRITE, _IN_Q_OVERFLOW = 0x20, 0x08, 0x10, 0x4000


def _inotify(paths: dict[str, str]) -> tuple[int | None, dict[int, str]]:
    """An inotify fd watching each side's tty for opens and closes (None where unavailable)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, AttributeError):
        return None, {}
    if fd < 0:
        return None, {}
    watches = {}
    for side, path in paths.items():
        wd = libc.inotify_add_watch(fd, path.encode(), _IN_OPEN | _IN_CLOSE_WRITE | _IN_CLOSE_NOWRITE)
        if wd >= 0:
            watches[wd] = side
    return fd, watches


class VirtualLine:
    """A virtual serial line between an HHU side and a meter side; use as a context manager."""

    def __init__(self, *, hhu_mode: str = "wire", meter_mode: str = "wire", fmt: str = "7E1",
                 faults=(), record_limit: int = 1_000_000):
        for name, mode in (("hhu_mode", hhu_mode), ("meter_mode", meter_mode)):
            if mode not in ("wire", "chars"):
                raise ValueError(f"{name} must be 'wire' or 'chars', got {mode!r}")
        self.modes = {"hhu": hhu_mode, "meter": meter_mode}
        char_time_ns(300, fmt)  # a known character format: it sets a character's time on the line
        self.fmt = fmt
        self._faults: tuple[Fault, ...] = tuple(faults)
        self._record: list[WireChar] = []
        self._record_limit = record_limit
        self._lock = threading.Lock()
        self._masters: dict[str, int] = {}
        self._slaves: dict[str, int] = {}
        self.paths: dict[str, str] = {}
        for side in SIDES:
            m, s = os.openpty()
            tty.setraw(s)  # no echo, no line editing until a program configures it
            os.set_blocking(m, False)
            self._masters[side], self._slaves[side] = m, s
            self.paths[side] = os.ttyname(s)
        self._count = {"to_meter": 0, "to_hhu": 0}
        self._free_at = {"to_meter": 0, "to_hhu": 0}
        # per direction: True while a "truncate" fault swallows the rest of the message in progress
        self._truncating: dict[str, bool | None] = {"to_meter": None, "to_hhu": None}
        self._last_arrival = {"to_meter": 0, "to_hhu": 0}
        self.overruns = 0
        # what each tty was at the start, restored whenever the last program closes it (see above)
        self._pristine = {side: termios.tcgetattr(fd) for side, fd in self._slaves.items()}
        self._openers = {side: 0 for side in SIDES}
        self.restored = {side: 0 for side in SIDES}  # how often each tty was put back
        self._notify_fd, self._watches = _inotify(self.paths)
        self._wake_r, self._wake_w = os.pipe()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    # -- face ------------------------------------------------------------------------------------
    @property
    def hhu_port(self) -> str:
        """The tty path the HHU side opens."""
        return self.paths["hhu"]

    @property
    def meter_port(self) -> str:
        """The tty path the meter side opens."""
        return self.paths["meter"]

    @property
    def faults(self) -> tuple[Fault, ...]:
        """The faults applied to characters from now on (settable)."""
        return self._faults

    @faults.setter
    def faults(self, faults) -> None:
        self._faults = tuple(faults)  # one assignment: the bridge sees the old or the new set

    def inject(self, *faults: Fault) -> None:
        """Add faults to those applied."""
        self.faults = self._faults + faults

    def clear_faults(self) -> None:
        """A clean line from now on."""
        self.faults = ()

    def sent(self, direction: str) -> int:
        """Characters sent so far in a direction ("to_meter" or "to_hhu")."""
        return self._count[direction]

    def record(self) -> list[WireChar]:
        """A copy of the wire record so far, both directions, in the order the bridge took them."""
        with self._lock:
            return list(self._record)

    def clear_record(self) -> None:
        """Forget the wire record so far."""
        with self._lock:
            self._record.clear()

    def start(self) -> "VirtualLine":
        """Start the bridge thread; returns the line."""
        self._thread = threading.Thread(target=self._run, name="virtual-line", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the bridge and close both pty pairs."""
        self._stop = True
        if self._thread is not None:
            os.write(self._wake_w, b"x")
            self._thread.join(5)
            self._thread = None
        extra = () if self._notify_fd is None else (self._notify_fd,)
        for fd in (*self._masters.values(), *self._slaves.values(), self._wake_r, self._wake_w, *extra):
            try:
                os.close(fd)
            except OSError:
                pass
        self._masters.clear()
        self._slaves.clear()

    def __enter__(self) -> "VirtualLine":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the bridge ------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # kept for the owner to see; the line is dead
            self.error = e

    def _loop(self) -> None:
        side_of = {fd: side for side, fd in self._masters.items()}
        fds = [*self._masters.values(), self._wake_r]
        if self._notify_fd is not None:
            fds.append(self._notify_fd)
        pending: list = []  # heap of (t_deliver_ns, seq, side to write, byte)
        seq = 0
        while not self._stop:
            # wait (without the GIL, to the nanosecond) for characters or the next delivery: a
            # millisecond poll() here would spin in Python and starve the roles' threads of the GIL
            until = pending[0][0] - _SPIN_NS if pending else _clock.now_ns() + 100_000_000
            ready, woke = _clock.wait_readable(fds, until)
            for fd in ready:
                if fd == self._wake_r:
                    os.read(fd, 64)
                    continue
                if fd == self._notify_fd:
                    self._opens_and_closes(fd)
                    continue
                try:
                    data = os.read(fd, 4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:  # EIO: nobody has the slave open right now
                    continue
                # arrived when the wait ended, not when this thread got the GIL back
                for item in self._accept(side_of[fd], data, woke):
                    heapq.heappush(pending, (item[0], seq, item[1], item[2]))
                    seq += 1
            while pending and pending[0][0] <= _clock.now_ns() + _SPIN_NS:
                t_deliver, _, side, byte = heapq.heappop(pending)
                _clock.sleep_until(t_deliver)
                try:
                    os.write(self._masters[side], bytes((byte,)))
                except (BlockingIOError, OSError):
                    self.overruns += 1  # the receiving side does not read: its buffer is full

    def _opens_and_closes(self, notify_fd: int) -> None:
        """Count opens and closes of each tty by programs; when the last one closed it, put it
        back as it was at the start (the next program's 7E1 request then changes its speed).
        A program may open the tty again while this thread waits for the GIL (a loaded machine):
        its open is counted from the events queued after the tty's state was noted, and a state
        changed since then is its own, so neither is overwritten."""
        closed = self._count_events(notify_fd)
        while closed:
            noted = {side: self._termios(side) for side in closed if self._openers[side] == 0}
            closed = self._count_events(notify_fd)   # a side closed again is noted afresh next round
            for side, before in noted.items():
                if (side not in closed and self._openers[side] == 0 and before is not None
                        and self._termios(side) == before):
                    try:
                        termios.tcsetattr(self._slaves[side], termios.TCSANOW, self._pristine[side])
                        self.restored[side] += 1
                    except (termios.error, OSError, KeyError):
                        pass

    def _termios(self, side: str) -> list | None:
        try:
            return termios.tcgetattr(self._slaves[side])
        except (termios.error, OSError, KeyError):
            return None

    def _count_events(self, notify_fd: int) -> set[str]:
        """Read every queued inotify event; update the open counts; the sides closed meanwhile."""
        touched: set[str] = set()
        while True:
            try:
                data = os.read(notify_fd, 4096)
            except (BlockingIOError, InterruptedError):
                return touched
            if not data:
                return touched
            off = 0
            while off + 16 <= len(data):
                wd, mask, _cookie, n = struct.unpack_from("iIII", data, off)
                off += 16 + n
                side = self._watches.get(wd)
                if mask & _IN_Q_OVERFLOW:  # events lost: assume nobody is left
                    touched.update(SIDES)
                    self._openers = {s: 0 for s in SIDES}
                if side is None:
                    continue
                if mask & _IN_OPEN:
                    self._openers[side] += 1
                if mask & (_IN_CLOSE_WRITE | _IN_CLOSE_NOWRITE):
                    self._openers[side] = max(0, self._openers[side] - 1)
                    touched.add(side)

    def _accept(self, side: str, data: bytes, t: int) -> list[tuple[int, str, int]]:
        """Characters from one side's read at time t: schedule them on the line, apply faults,
        record them; returns (delivery time, side, byte) for the bridge to write."""
        direction = "to_meter" if side == "hhu" else "to_hhu"
        other = "meter" if side == "hhu" else "hhu"
        if self.modes[side] == "chars":
            data = add_parity(data)
        tx_baud: float = tty_speed(self._slaves[side]) or 300
        rx_baud = tty_speed(self._slaves[other]) or 300
        faults = [f for f in self._faults if f.applies(direction)]
        for f in faults:
            if f.kind == "baud_error":
                tx_baud *= 1 + f.percent / 100
        char_ns = char_time_ns(tx_baud, self.fmt)
        out: list[tuple[int, str, int]] = []
        records: list[WireChar] = []
        for w in data:
            i = self._count[direction]
            self._count[direction] += 1
            gap = t - self._last_arrival[direction]
            self._last_arrival[direction] = t
            tags = []
            line_bytes = [w]
            extra_ns = 0
            trunc = self._truncating[direction]
            if trunc is not None and gap > 2 * char_ns:
                self._truncating[direction] = trunc = None  # the sender paused: message over
            for f in faults:
                k = f.kind
                if k == "truncate" and f.at == i:
                    self._truncating[direction] = trunc = True
                elif k == "delay" and f.at == i:
                    extra_ns += f.ns
                    tags.append("delay")
                elif k == "break" and f.at == i:
                    start = max(t, self._free_at[direction])
                    self._free_at[direction] = start + f.ns
                    out.append((start + f.ns, other, 0))
                    records.append(WireChar(direction, -1, -1, 0, 0, start, start + f.ns, tx_baud, "break"))
                    tags.append("after-break")
                elif k == "insert" and f.at == i:
                    line_bytes = list(f.data) + line_bytes
                    tags.append("insert")
            if trunc:
                line_bytes = []
                tags.append("truncate")
            for f in faults:
                if not f.covers(i):
                    continue
                if f.kind == "drop":
                    line_bytes = []
                    tags.append("drop")
                elif f.kind == "duplicate":
                    line_bytes = line_bytes + line_bytes[-1:]
                    tags.append("duplicate")
            for n, lb in enumerate(line_bytes):
                start = max(t, self._free_at[direction]) + (extra_ns if n == 0 else 0)
                end = start + char_ns
                self._free_at[direction] = end
                ftags = list(tags)
                for f in faults:
                    if f.kind == "parity" and f.covers(i):
                        lb ^= 0x80
                        ftags.append("parity")
                    elif f.kind == "bit_flip" and f.covers(i) and not f.ber:
                        lb ^= 1 << f.random_bit()
                        ftags.append("bit_flip")
                    elif f.kind == "bit_flip" and f.ber and f.at is None:
                        nb = f.flip_bits(lb)
                        if nb != lb:
                            lb = nb
                            ftags.append("bit_flip")
                    elif f.kind == "noise" and (f.covers(i) or f.start_ns is not None
                                                and start < f.start_ns + f.duration_ns and end > f.start_ns):
                        nb = f.flip_bits(lb)
                        if nb != lb:
                            lb = nb
                            ftags.append("noise")
                got = sample_char(lb, tx_baud, rx_baud)
                if got is None:
                    received = -1
                    ftags.append("lost")
                else:
                    received, stop_ok = got
                    if not stop_ok:
                        ftags.append("framing")
                    if self.modes[other] == "chars":
                        received &= 0x7F
                    out.append((end, other, received))
                if any(f.kind == "echo" for f in faults):
                    echo = sample_char(lb, tx_baud, tty_speed(self._slaves[side]) or 300)
                    if echo is not None:
                        out.append((end, side, echo[0] & 0x7F if self.modes[side] == "chars" else echo[0]))
                records.append(WireChar(direction, i, w, lb, received, start, end, tx_baud, ",".join(ftags)))
            if not line_bytes:
                records.append(WireChar(direction, i, w, -1, -1, t, t, tx_baud, ",".join(tags)))
        with self._lock:
            room = self._record_limit - len(self._record)
            self._record.extend(records[:max(room, 0)])
        return out
