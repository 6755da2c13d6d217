"""Line faults as data: what the virtual line does to characters on their way.

A Fault is one frozen record; the virtual line holds a list of them that can be replaced while it
runs. Character indices count the characters sent in one direction since the line started
(VirtualLine.sent(direction) tells how many so far). Times are monotonic ns (rig._clock.now_ns).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from rig.errors import RigError

DIRECTIONS = ("to_meter", "to_hhu", "both")
KINDS = {
    "bit_flip": "flip bit `bit` (0-7 of the 8 bits between start and stop; None: a random one) of "
                "characters at..at+count, or every bit with probability `ber`",
    "parity": "flip the parity bit (bit 7 in 7E1) of characters at..at+count",
    "drop": "drop characters at..at+count",
    "duplicate": "send characters at..at+count twice",
    "insert": "send the wire bytes `data` before character at",
    "truncate": "drop the rest of the message from character at (until the sender pauses)",
    "delay": "hold character at back by `ns` (a gap in the message, e.g. over ta)",
    "break": "a break (line held at space) of `ns` before character at, received as NUL",
    "baud_error": "the sender's clock runs `percent` % fast (+) or slow (-): the receiver samples "
                  "its bits at the wrong places once the error is large",
    "noise": "bit errors with probability `ber` per bit for characters on the line during "
             "start_ns..start_ns+duration_ns, or for characters at..at+count",
    "echo": "a half-duplex loop: the sender also hears its own characters",
}


class FaultError(RigError, ValueError):
    """A fault description that cannot be applied; names the field and value."""


@dataclass(frozen=True)
class Fault:
    kind: str
    direction: str = "both"
    at: int | None = None
    count: int = 1
    bit: int | None = None
    ber: float = 0.0
    data: bytes = b""
    ns: int = 0
    start_ns: int | None = None
    duration_ns: int = 0
    percent: float = 0.0
    seed: int = 0
    _rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)   # seeded below

    def __post_init__(self):
        def bad(name, why):
            raise FaultError(f"fault {self.kind!r}: {name}={getattr(self, name)!r}: {why}")
        if self.kind not in KINDS:
            raise FaultError(f"fault kind {self.kind!r}: expected one of {', '.join(KINDS)}")
        if self.direction not in DIRECTIONS:
            bad("direction", f"expected one of {', '.join(DIRECTIONS)}")
        indexed = {"parity", "drop", "duplicate", "insert", "truncate", "delay", "break"}
        if self.kind in indexed or (self.kind == "bit_flip" and not self.ber):
            if self.at is None or self.at < 0:
                bad("at", "expected a character index >= 0")
        if self.count < 1:
            bad("count", "expected >= 1")
        if self.bit is not None and not 0 <= self.bit <= 7:
            bad("bit", "expected 0..7")
        if not 0.0 <= self.ber <= 1.0:
            bad("ber", "expected a probability 0..1")
        if self.kind == "noise" and (self.ber <= 0 or (self.duration_ns <= 0 and self.at is None)):
            bad("duration_ns", "noise needs ber > 0 and a window: duration_ns > 0 from start_ns, "
                               "or characters at..at+count")
        if self.kind in ("delay", "break") and self.ns <= 0:
            bad("ns", "expected a duration > 0")
        if self.kind == "insert" and not self.data:
            bad("data", "expected the bytes to insert")
        if self.kind == "baud_error" and not -50.0 < self.percent < 50.0:
            bad("percent", "expected -50..50")
        object.__setattr__(self, "_rng", random.Random(self.seed))

    def applies(self, direction: str) -> bool:
        return self.direction == "both" or self.direction == direction

    def covers(self, index: int) -> bool:
        return self.at is not None and self.at <= index < self.at + self.count

    def flip_bits(self, w: int) -> int:
        """w with each of its 8 bits flipped with probability ber (seeded, so runs repeat)."""
        for b in range(8):
            if self._rng.random() < self.ber:
                w ^= 1 << b
        return w

    def random_bit(self) -> int:
        return self._rng.randrange(8) if self.bit is None else self.bit


def sample_char(w: int, tx_baud: float, rx_baud: float) -> tuple[int, bool] | None:
    """The 8 bits a UART at rx_baud reads from a character sent at tx_baud, and whether its stop
    bit was seen; None when the start bit is gone by mid-bit (the UART drops it as noise). The
    receiver syncs on the start edge and samples each bit at its middle; one character at a time
    (what a slow receiver would make of the following characters' edges is not modelled)."""
    if abs(rx_baud - tx_baud) < 1e-9 * tx_baud:
        return w, True
    line = [0] + [(w >> b) & 1 for b in range(8)] + [1]  # start, 8 bits LSB first, stop; idle after

    def at(k: int) -> int:
        pos = int((k + 0.5) * tx_baud / rx_baud)
        return line[pos] if pos < len(line) else 1

    if at(0) != 0:
        return None
    value = sum(at(k + 1) << k for k in range(8))
    return value, at(9) == 1
