"""What both roles share: reading whole frames from a port, and the timed record of an exchange."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from rig import _clock
from rig._framing import Frame, Framer
from rig.link import Port
from rig.measurement import Measurement


class FrameReader:
    """Frames from a port, each with the arrival time of its characters.

    A lone ACK is only known to be one when nothing follows it: after `quiet_chars` character
    times of silence, and at least quiet_min_ns, the reader ends it (Framer.flush). At the deadline
    it gives up and reports a frame still in progress as cut short."""

    def __init__(self, port: Port, framer: Framer, ta_ns: int, quiet_chars: int = 3, quiet_min_ns: int = 0):
        self.port = port
        self.ta_ns = ta_ns       # a frame in progress may finish after the deadline if it keeps coming
        self._last_rx_ns = 0
        self.framer = framer
        self.quiet_chars = quiet_chars
        self.quiet_min_ns = quiet_min_ns  # a loaded host or a USB adapter delivers characters late
        self._frames: deque[Frame] = deque()
        self.wire = bytearray()  # every byte received, for logs
        self.echo: tuple[bytes, int] = (b"", 0)  # (what we sent, when it is off the line)

    def next_frame(self, deadline_ns: int, give_up: bool = True) -> Frame | None:
        """The next frame, or None when nothing complete came before the deadline. give_up: at
        the deadline a frame still in progress is reported cut short (a client waiting for an
        answer); otherwise it stays in progress (a server polling its line)."""
        while not self._frames:
            now = _clock.now_ns()
            if now >= deadline_ns and self.framer.pending and not self.framer.ack_pending \
                    and now - self._last_rx_ns < self.ta_ns:
                deadline_ns = self._last_rx_ns + self.ta_ns  # a frame is coming in: let it finish
            if now >= deadline_ns:
                if give_up and self.framer.pending:
                    self._frames.extend(self.framer.flush())
                    continue
                return None
            quiet = max(self.quiet_chars * self.port.char_ns, self.quiet_min_ns)
            # back as soon as characters came: a frame is done at its last character, not after
            # a quiet spell (that would add three character times to every exchange)
            if not self._take(*self.port.read(deadline_ns, idle_ns=0)) and self.framer.ack_pending:
                self._frames.extend(self.framer.flush())
            if not self._frames and self.framer.ack_pending:
                # quiet after the ACK decides, even past the deadline (a few character times)
                if not self._take(*self.port.read(_clock.now_ns() + quiet)):
                    self._frames.extend(self.framer.flush())
        frame = self._frames.popleft()
        sent, until = self.echo
        if frame.data == sent and 0 <= frame.t_last_ns <= until:
            return self.next_frame(deadline_ns, give_up)  # our own characters: a half-duplex loop
        return frame

    def end_stale_frame(self, now_ns: int) -> list[Frame]:
        """A frame in progress with no character for ta is over (IEC 62056-21 §6.4: ta between
        the characters of one message): it is reported cut short, so that nothing a peer sends
        (a stray SOH or STX) keeps a reader from the next message for longer than ta."""
        if self.framer.pending and not self.framer.ack_pending and now_ns - self._last_rx_ns >= self.ta_ns:
            return self.framer.flush()
        return []

    def expect_echo(self, chars: bytes, until_ns: int) -> None:
        """We just sent chars: on a line that echoes, a copy arriving before until_ns is ours."""
        self.echo = (chars, until_ns)

    def hears_frame_before(self, deadline_ns: int) -> bool:
        """Listen until the deadline: True as soon as a frame (not garbage) has come in. It stays
        queued for next_frame. A meter uses it not to answer a request the client has given up on."""
        while True:
            if any(f.kind != "garbage" for f in self._frames):
                return True
            if _clock.now_ns() >= deadline_ns:
                return False
            self._take(*self.port.read(deadline_ns, idle_ns=0))

    def _take(self, data: bytes, times) -> bool:
        """Characters read from the port into the framer; False when there were none."""
        if not data:
            return False
        self.wire += data
        self._last_rx_ns = int(times[-1])
        self._frames.extend(self.framer.feed(data, times))
        return True

    def discard(self) -> None:
        """Forget frames read but not taken, and any frame in progress."""
        self._frames.clear()
        self.framer.flush()

    def drain(self, limit_ns: int) -> list[Frame]:
        """Empty the line before we speak: what is waiting now, and, when something came, what
        follows until quiet_chars character times (and quiet_min_ns) of silence, not past limit_ns. Returns every
        frame so dropped (queued, read, or in progress), for the record."""
        out = list(self._frames)
        self._frames.clear()
        got = self._take(*self.port.read(_clock.now_ns(), idle_ns=0))
        while (got or self.framer.pending) and _clock.now_ns() < limit_ns:
            quiet = _clock.now_ns() + max(self.quiet_chars * self.port.char_ns, self.quiet_min_ns)
            got = self._take(*self.port.read(min(quiet, limit_ns), idle_ns=0))
            if not got and _clock.now_ns() >= quiet:
                break
        out += self._frames
        self._frames.clear()
        out += self.framer.flush()
        return out


@dataclass
class Turn:
    """One attempt inside an exchange: what we said last (the request, our NAK asking for a
    repeat, or our ACK asking for the next partial block) and the answer it got.

    tr is measured per turn, from the end of what we said to the start of the answer to it."""
    said: str                            # "request" | "NAK" | "ACK"
    said_end_ns: int                     # end of its last character's stop bit
    answer_first_ns: int = -1            # arrival of the first character of its answer; -1: none
    tr_ns: int | None = None             # said_end to the start of the answer on the line
    result: str = ""                     # "answer", "partial block", or what was wrong

    def as_dict(self) -> dict:
        return {"said": self.said, "said_end_ns": self.said_end_ns, "answer_first_ns": self.answer_first_ns,
                "tr_ms": None if self.tr_ns is None else self.tr_ns / 1e6, "result": self.result}


@dataclass
class Exchange:
    """One request and its answer as they were on the line.

    Times are monotonic ns. A character's start on the line is its arrival time less one
    character time (the receiving UART hands it over after the stop bit)."""
    name: str
    request: bytes = b""                 # the 7-bit characters of the (last) request sent
    request_start_ns: int = 0            # first character of the request on the line
    request_end_ns: int = 0              # end of its last character's stop bit
    answer: bytes = b""                  # the 7-bit characters of the answer frame
    answer_kind: str = ""
    answer_first_ns: int = -1            # arrival of its first and last characters
    answer_last_ns: int = -1
    tr_ns: int | None = None             # tr of the turn whose answer was taken (all of them: trs_ns)
    max_ta_ns: int = 0                   # largest gap between two characters of the answer
    attempts: int = 0                    # requests sent (repeats included)
    naks_sent: int = 0
    naks_received: int = 0
    measurements: list[Measurement] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)       # what went wrong in the end
    recovered: list[str] = field(default_factory=list)    # problems met and overcome by repeats
    message: object = None               # the answer as a message, when it was good
    value: str | None = None             # a read's value, tied to its request and checked
    turns: list[Turn] = field(default_factory=list)       # every attempt, each with its own tr
    notes: list[str] = field(default_factory=list)        # frames set aside: stale, late, not the answer
    blocks: int = 0                      # partial blocks (EOT) taken into the answer

    @property
    def trs_ns(self) -> list[int]:
        """tr of every turn that got an answer, in order (the last one answered what was taken)."""
        return [t.tr_ns for t in self.turns if t.tr_ns is not None]

    @property
    def ok(self) -> bool:
        return not self.errors and all(m.passed for m in self.measurements)

    def as_dict(self) -> dict:
        return {
            "name": self.name, "ok": self.ok, "value": self.value, "request": self.request.decode("ascii", "replace"),
            "answer": self.answer.decode("ascii", "replace"), "answer_kind": self.answer_kind,
            "request_start_ns": self.request_start_ns, "request_end_ns": self.request_end_ns,
            "answer_first_ns": self.answer_first_ns, "answer_last_ns": self.answer_last_ns,
            "tr_ms": None if self.tr_ns is None else self.tr_ns / 1e6, "max_ta_ms": self.max_ta_ns / 1e6,
            "attempts": self.attempts, "naks_sent": self.naks_sent, "naks_received": self.naks_received,
            "measurements": [m.as_dict() for m in self.measurements], "errors": list(self.errors), "recovered": list(self.recovered),
            "trs_ms": [t / 1e6 for t in self.trs_ns], "turns": [t.as_dict() for t in self.turns],
            "notes": list(self.notes), "blocks": self.blocks,
        }
