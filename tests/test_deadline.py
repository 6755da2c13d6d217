"""rig.deadline.Deadline: waits on a condition against the monotonic clock."""
import threading

from rig import _clock
from rig.deadline import Deadline


def test_wait_returns_the_value_as_soon_as_ready_and_before_the_deadline():
    ev = threading.Event()
    threading.Timer(0.05, ev.set).start()
    d = Deadline.after(5.0)
    assert d.wait(ev.is_set) is True
    assert not d.expired() and d.remaining_s() > 3.0


def test_wait_gives_up_at_the_deadline_and_returns_the_false_value():
    d = Deadline.after_ns(30_000_000)
    calls = []
    got = d.wait(lambda: calls.append(_clock.now_ns()) or None, poll_ns=5_000_000)
    assert got is None
    assert d.expired() and d.remaining_ns() == 0
    assert calls[-1] >= d.at_ns            # asked once more at the deadline itself
    assert len(calls) >= 2


def test_a_past_deadline_still_asks_once():
    assert Deadline(0).wait(lambda: "here") == "here"
    assert Deadline(0).remaining_s() == 0.0
