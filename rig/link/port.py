"""A serial port by any pyserial URL, with paced writes and timestamped reads.

Whatever the port, reads give *wire bytes*: 7-bit characters with their parity bit in bit 7 as
they were on the line, so one framer (parity="even") serves real UARTs and the virtual line alike:
- a real UART (a device path, rfc2217://) is set to the profile's format; the kernel checks parity
  and, with PARMRK, marks a bad character as \\377 \\0 c; the port turns it back into the wire byte
  with the wrong parity bit. Writes hand 7-bit characters to the UART, which adds parity.
- a virtual port (a pty of the virtual line, socket://, loop://) carries wire bytes as they are
  ("soft parity"): the port adds parity when writing and leaves it when reading.
"""
from __future__ import annotations

import os
import stat
import termios

import numpy as np
import serial

from rig import _clock
from rig._framing import add_parity
from rig.errors import RigError

OS_LATENCY_NS = 20_000_000  # allowed for the OS between a character's arrival and a reader taking it (assumed)

# character format -> pyserial settings and bits per character on the line (start + data + parity + stop)
_FORMATS = {
    "7E1": (serial.SEVENBITS, serial.PARITY_EVEN, serial.STOPBITS_ONE, 10),
    "8N1": (serial.EIGHTBITS, serial.PARITY_NONE, serial.STOPBITS_ONE, 10),
}


def char_time_ns(baud: float, fmt: str = "7E1", n: int = 1) -> int:
    """Time of n characters sent back to back at `baud` in character format `fmt` ("7E1", "8N1"),
    in ns: n times one character's time (its bits over the speed, rounded down to the ns)."""
    if fmt not in _FORMATS:
        raise ValueError(f"character format {fmt!r}: expected one of {', '.join(_FORMATS)}")
    return n * int(_FORMATS[fmt][3] * 1_000_000_000 / baud)


class PortError(RigError, OSError):
    """A port that cannot be opened or used; names the URL."""


def is_virtual(url: str) -> bool:
    """True for ports that carry bytes without a UART: ptys (Unix98 slaves), socket://, loop://."""
    if url.startswith(("socket://", "loop://")):
        return True
    if url.startswith("spy://"):
        return is_virtual(url[len("spy://"):].split("?")[0])
    if "://" in url:
        return False
    try:
        st = os.stat(url)
    except OSError:
        return False
    return stat.S_ISCHR(st.st_mode) and 136 <= os.major(st.st_rdev) <= 143


class Port:
    """One end of a serial link. `Port(url, baud=300, fmt="7E1")`; use as a context manager."""

    def __init__(self, url: str, *, baud: int = 300, fmt: str = "7E1", soft_parity: bool | None = None,
                 low_latency: bool = True):
        if fmt not in _FORMATS:
            raise ValueError(f"character format {fmt!r}: expected one of {', '.join(_FORMATS)}")
        self.url = url
        self.fmt = fmt
        self.soft_parity = is_virtual(url) if soft_parity is None else soft_parity
        # characters take their line time here (a UART, or the virtual line's pty); over a socket
        # or loop:// they arrive at once, so send and arrival times say nothing of the line
        self.line_timed = not url.startswith(("socket://", "loop://", "spy://"))
        bytesize, parity, stopbits, self.bits_per_char = _FORMATS[fmt]
        if self.soft_parity:
            bytesize, parity = serial.EIGHTBITS, serial.PARITY_NONE
        try:
            self.serial = serial.serial_for_url(url, baudrate=baud, bytesize=bytesize, parity=parity,
                                                stopbits=stopbits, timeout=0, exclusive=None)
        except (serial.SerialException, ValueError, OSError) as e:
            raise PortError(f"{url}: cannot open: {e}") from None
        try:
            self.fd: int | None = self.serial.fileno()
        except (AttributeError, NotImplementedError, OSError, ValueError, serial.SerialException):
            self.fd = None  # loop:// and friends: pyserial does the I/O
        self._marks = b""
        self._tx_end_ns = 0  # when the last character written is off the line
        if self.fd is not None and not self.soft_parity and fmt == "7E1":
            attrs = termios.tcgetattr(self.fd)
            attrs[0] = (attrs[0] | termios.INPCK | termios.PARMRK) & ~(termios.IGNPAR | termios.ISTRIP)
            termios.tcsetattr(self.fd, termios.TCSANOW, attrs)
        self.latency = self._low_latency() if low_latency else "not requested"

    def _low_latency(self) -> str:
        """Ask for the kernel's low-latency mode and say what was obtained."""
        if self.fd is None:
            return "not applicable (no file descriptor)"
        if self.soft_parity:
            return "not applicable (pty: no UART FIFO)"
        try:
            self.serial.set_low_latency_mode(True)
        except (AttributeError, ValueError, OSError) as e:
            return f"not available: {e}"
        return "low-latency mode set"

    # -- settings -----------------------------------------------------------------------------------
    @property
    def baud(self) -> int:
        return self.serial.baudrate

    def set_baud(self, baud: int, at_ns: int | None = None) -> None:
        """Switch speed once what was written is out of the port, not before at_ns (the speed
        switch after the option select waits the profile's guard delay)."""
        self.serial.flush()
        # like tcdrain on a UART: the last character must be off the line (a pty or socket
        # returns from flush before that). On a pty the virtual line's bridge takes the speed the
        # tty has when it reads the characters: give it the OS's allowance to read them first
        # (a BreakCommand sent at 9600 Bd went out at 300 when the bridge was late)
        drained = self._tx_end_ns + (OS_LATENCY_NS if self.soft_parity and self.line_timed else 0)
        _clock.sleep_until(max(drained, at_ns or 0))
        self.serial.baudrate = baud

    @property
    def char_ns(self) -> int:
        """Time of one character on the line at the current speed."""
        return char_time_ns(self.baud, self.fmt)

    # -- writing ------------------------------------------------------------------------------------
    def write(self, chars: bytes, *, at_ns: int | None = None, gap_ns: int = 0,
              bad_parity: tuple[int, ...] = ()) -> np.ndarray:
        """Send 7-bit characters starting at at_ns (now if None), gap_ns between characters
        (0: back to back at line rate), with wrong parity on the characters at the indices in
        bad_parity. Returns the start time of each character on the line."""
        n = len(chars)
        if n == 0:
            return np.zeros(0, np.int64)
        start = _clock.now_ns() if at_ns is None else at_ns
        times = self._write(chars, start, gap_ns, bad_parity)
        self._tx_end_ns = int(times[-1]) + self.char_ns
        return times

    def _write(self, chars, start, gap_ns, bad_parity) -> np.ndarray:
        n = len(chars)
        if self.soft_parity or self.fmt != "7E1":
            wire = bytearray(add_parity(chars)) if self.fmt == "7E1" else bytearray(chars)
            for i in bad_parity:
                wire[i] ^= 0x80
            return self._send(bytes(wire), start, gap_ns)
        if not bad_parity:
            return self._send(bytes(chars), start, gap_ns)
        # A real UART adds parity itself: switch it to odd parity for each bad character.
        times, pos = [], 0
        for i in sorted(set(bad_parity)) + [n]:
            if i > pos:
                times.append(self._send(bytes(chars[pos:i]), start, gap_ns))
                start = 0
            if i == n:
                break
            self.serial.flush()  # tcdrain: the characters before are out of the UART
            self.serial.parity = serial.PARITY_ODD
            times.append(self._send(bytes(chars[i:i + 1]), start, gap_ns))
            start = 0
            self.serial.flush()
            self.serial.parity = serial.PARITY_EVEN
            pos = i + 1
        return np.concatenate(times)

    def _send(self, data: bytes, start: int, gap_ns: int) -> np.ndarray:
        step = self.char_ns + gap_ns
        if self.fd is not None and gap_ns > 0:
            sched = _clock.schedule(max(start, _clock.now_ns()), len(data), step)
            return _clock.write_paced(self.fd, data, sched)
        if self.fd is None and gap_ns > 0:  # no file descriptor: pace through pyserial
            sent = np.empty(len(data), np.int64)
            for k, t in enumerate(_clock.schedule(max(start, _clock.now_ns()), len(data), step)):
                _clock.sleep_until(int(t))
                self.serial.write(data[k:k + 1])
                sent[k] = _clock.now_ns()
            return sent
        if self.fd is not None:
            t0 = _clock.write_at(self.fd, data, start)
        else:
            t0 = _clock.sleep_until(start)
            self.serial.write(data)
        # back to back: the line (UART or virtual line) paces them one character time apart
        return t0 + np.arange(len(data), dtype=np.int64) * self.char_ns

    # -- reading ------------------------------------------------------------------------------------
    def read(self, deadline_ns: int, max_bytes: int = 4096, idle_ns: int = -1) -> tuple[bytes, np.ndarray]:
        """Wire bytes received until max_bytes, the deadline, or idle_ns of quiet after a byte;
        with the arrival time of each. PortError when the other end went away."""
        if self.fd is not None:
            data, times, eof = _clock.read_timestamped(self.fd, max_bytes, deadline_ns, idle_ns)
            if eof and not data:
                raise PortError(f"{self.url}: the line was closed")
        else:
            data, times = self._read_polled(deadline_ns, max_bytes, idle_ns)
        if self.soft_parity or self.fmt != "7E1":
            return data, times
        return self._unmark(data, times)

    def _read_polled(self, deadline_ns, max_bytes, idle_ns):
        """For ports without a file descriptor (socket://, rfc2217://): poll pyserial."""
        out, times, last = bytearray(), [], None
        while len(out) < max_bytes:
            now = _clock.now_ns()
            if now >= deadline_ns or (idle_ns >= 0 and last is not None and now - last >= idle_ns):
                break
            self.serial.timeout = min(0.002, (deadline_ns - now) / 1e9)
            chunk = self.serial.read(max_bytes - len(out))
            if chunk:
                last = _clock.now_ns()
                out += chunk
                times += [last] * len(chunk)
        return bytes(out), np.array(times, dtype=np.int64)

    def _unmark(self, data: bytes, times: np.ndarray) -> tuple[bytes, np.ndarray]:
        """UART characters (PARMRK marks for bad parity) back into wire bytes."""
        data = self._marks + data
        if self._marks:
            times = np.concatenate([np.full(len(self._marks), times[0] if len(times) else 0, np.int64), times])
        self._marks = b""
        if b"\xff" not in data:
            return add_parity(data), times
        out, tout, i, n = bytearray(), [], 0, len(data)
        while i < n:
            b = data[i]
            if b != 0xFF:
                out += add_parity(bytes((b,)))
                tout.append(times[i])
                i += 1
            elif i + 1 >= n or (data[i + 1] == 0 and i + 2 >= n):
                self._marks = data[i:]  # a mark split across reads
                break
            elif data[i + 1] == 0xFF:
                out.append(0xFF)
                tout.append(times[i])
                i += 2
            else:  # \377 \0 c: c arrived with a parity or framing error
                out.append(add_parity(data[i + 2:i + 3])[0] ^ 0x80)
                tout.append(times[i + 2])
                i += 3
        return bytes(out), np.array(tout, dtype=np.int64)

    def discard_input(self) -> None:
        self.serial.reset_input_buffer()
        self._marks = b""

    def close(self) -> None:
        self.serial.close()

    def __enter__(self) -> "Port":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
