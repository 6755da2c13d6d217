"""A point on the monotonic clock to wait until: the one home for "wait for X, at most so long".

Times are integer ns from rig._clock (CLOCK_MONOTONIC), as everywhere in rig. `Deadline.wait`
replaces hand-made `while now < end and not done: sleep` loops; `remaining_s` feeds the APIs that
take a timeout in seconds (threading.Event.wait, select, pyserial).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from rig import _clock

T = TypeVar("T")

DEFAULT_POLL_NS = 5_000_000


class Deadline:
    """`at_ns` on the monotonic clock; `Deadline.after(s)` is that many seconds from now."""

    __slots__ = ("at_ns",)

    def __init__(self, at_ns: int) -> None:
        self.at_ns = int(at_ns)

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """The deadline `seconds` from now."""
        return cls(_clock.now_ns() + int(seconds * 1e9))

    @classmethod
    def after_ns(cls, ns: int) -> Deadline:
        """The deadline `ns` nanoseconds from now."""
        return cls(_clock.now_ns() + int(ns))

    def remaining_ns(self) -> int:
        """ns left, never below 0."""
        return max(0, self.at_ns - _clock.now_ns())

    def remaining_s(self) -> float:
        """Seconds left, never below 0: the timeout for APIs that take one in seconds."""
        return self.remaining_ns() / 1e9

    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return _clock.now_ns() >= self.at_ns

    def wait(self, ready: Callable[[], T], poll_ns: int = DEFAULT_POLL_NS) -> T:
        """Poll ready() until it returns something true or the deadline passes; return its last
        value (so the caller sees what it got, or a false value on time-out). ready() is always
        called at least once, and once more at the deadline."""
        while True:
            got = ready()
            if got:
                return got
            now = _clock.now_ns()
            if now >= self.at_ns:
                return got
            _clock.sleep_until(min(self.at_ns, now + poll_ns))

    def __repr__(self) -> str:
        return f"Deadline(in {(self.at_ns - _clock.now_ns()) / 1e6:.1f} ms)"
