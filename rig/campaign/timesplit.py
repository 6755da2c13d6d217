"""Where a campaign's wall time goes: on the line, in waits the protocol imposes, and the rig's own
overhead.

    ledger = TimeLedger()
    with ledger.watching():                 # every deliberate wait of the run is noted
        ...run the cases...;  ledger.add_wire(bench.line.record(), profile)   # per virtual line
    split = ledger.split(t0_ns, t1_ns)      # category -> seconds, over the run's wall time

Intervals, each with a category; a moment covered by several takes the first of CATEGORIES (so
nothing is counted twice, and the parts add up to the wall time). From a virtual line's wire
record: every character (on the line); the gap before the meter speaks after a request (its
reaction tr); the gap before the HHU speaks again after a request that got no answer (waiting out
tr_max or tt), and any time the rig's client is blocked waiting for a frame (FrameReader.next_frame:
an answer that comes late, garbled or not at all, up to the command timeout); the first tr_min of the gap before the HHU speaks after an answer (the pacing the
client keeps). From rig._clock.sleep_until, the one door every deliberate wait of the client, the
bench and the cases goes through: token-execution polls, the speed-switch guard, a case's own
waits (a lockout period). From the scope's driver: the wait for its acquisition (its screen
filling after the trigger), the instrument's time, not the protocol's nor the rig's. The rest is the
rig's own overhead: Python, the store, starting benches, the virtual bench's instruments (SCPI round
trips, synthesising their signals), decoding captures.

Benches without a wire record (a port bench: a real line) give only their deliberate waits; the
line time of their exchanges is taken from the stored exchanges (Store.run_exchanges).
"""
from __future__ import annotations

import contextlib
import sys
import threading

from rig import _clock

LINE = "on the line"
REACTION = "reaction tr (request to answer)"
NO_ANSWER = "waiting for an answer, or out its absence (tr_max, command timeout)"
PACING = "pacing: tr_min before the client speaks"
POLLS = "token execution: not-ready polls"
GUARD = "speed-switch guard"
CASE_WAITS = "waits a case makes (tt, lockout periods, an HHU's session)"
ACQUISITION = "instruments: waiting for the scope's acquisition"
OVERHEAD = "rig overhead"
#: in priority order; the protocol's waits are those between LINE and ACQUISITION
CATEGORIES = (LINE, REACTION, NO_ANSWER, POLLS, PACING, GUARD, CASE_WAITS, ACQUISITION, OVERHEAD)
PROTOCOL_WAITS = CATEGORIES[1:-2]

# sleep_until's caller -> category; callers in rig/link/virtual.py (the line's own pacing) are not waits
_BY_CALLER = {"transfer_token": POLLS, "_settle": GUARD, "set_baud": GUARD, "_send": PACING, "write": PACING}
_NOT_WAITS = ("rig/link/virtual.py",)
_PACING_CALLERS = ("_send", "raw", "_exchange")     # the client's (and the raw helper's) tr_min before speaking

_installed: list["TimeLedger"] = []
_patch_lock = threading.Lock()
_original = _clock.sleep_until


class TimeLedger:
    def __init__(self):
        self.intervals: list[tuple[int, int, str]] = []
        self._lock = threading.Lock()

    def add(self, start_ns: int, end_ns: int, category: str) -> None:
        if end_ns > start_ns:
            with self._lock:
                self.intervals.append((int(start_ns), int(end_ns), category))

    # -- from a virtual line's wire record -----------------------------------------------------------
    def add_wire(self, record, tr_min_ns: int) -> None:
        """Characters and the gaps between messages of a virtual line's record (WireChar list)."""
        chars = sorted((c for c in record if c.t_end_ns > c.t_start_ns), key=lambda c: c.t_start_ns)
        bursts: list[list] = []        # [direction, start, end] of back-to-back characters
        for c in chars:
            if bursts and bursts[-1][0] == c.direction and c.t_start_ns <= bursts[-1][2] + (c.t_end_ns - c.t_start_ns):
                bursts[-1][2] = max(bursts[-1][2], c.t_end_ns)
            else:
                bursts.append([c.direction, c.t_start_ns, c.t_end_ns])
        out = []
        for i, (d, s, e) in enumerate(bursts):
            out.append((s, e, LINE))
            if i == 0:
                continue
            pd, _, pe = bursts[i - 1]
            if s <= pe:
                continue
            if d == "to_hhu":                  # the meter speaks: its reaction
                out.append((pe, s, REACTION))
            elif pd == "to_meter":             # the HHU again after a request nobody answered
                out.append((pe, s, NO_ANSWER))
            else:                              # the HHU after an answer: tr_min first
                out.append((pe, min(s, pe + tr_min_ns), PACING))
        with self._lock:
            self.intervals.extend(out)

    def add_exchanges(self, exchanges) -> None:
        """Line time and reactions of stored exchanges (a bench without a wire record)."""
        for e in exchanges:
            if e["request_start_ns"] and e["request_end_ns"]:
                self.add(e["request_start_ns"], e["request_end_ns"], LINE)
            if e["tr_ns"] is not None and e["request_end_ns"]:
                start = e["request_end_ns"] + e["tr_ns"]
                self.add(e["request_end_ns"], start, REACTION)
                if e["answer_last_ns"] and e["answer_last_ns"] > start:
                    self.add(start, e["answer_last_ns"], LINE)

    # -- deliberate waits ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def watching(self):
        """Note every rig._clock.sleep_until of this process while inside (callers in the virtual
        line excepted), by its caller's category."""
        _install(self)
        try:
            yield self
        finally:
            _uninstall(self)

    def _slept(self, now_ns: int, deadline_ns: int, frame) -> None:
        code = frame.f_code
        if code.co_filename.replace("\\", "/").endswith(_NOT_WAITS):
            return
        self.add(now_ns, deadline_ns, _BY_CALLER.get(code.co_name, CASE_WAITS))

    # -- the split ---------------------------------------------------------------------------------------
    def split(self, t0_ns: int, t1_ns: int) -> dict[str, float]:
        """Seconds per category over [t0, t1]: each moment counted once, under the first category
        of CATEGORIES that covers it; what none covers is OVERHEAD. The values add up to t1 - t0."""
        rank = {c: i for i, c in enumerate(CATEGORIES)}
        events = []
        with self._lock:
            for s, e, c in self.intervals:
                s, e = max(s, t0_ns), min(e, t1_ns)
                if e > s:
                    events.append((s, 1, rank[c]))
                    events.append((e, -1, rank[c]))
        events.sort()
        active = [0] * len(CATEGORIES)
        out = [0] * len(CATEGORIES)
        prev = t0_ns
        for t, delta, r in events:
            if t > prev:
                top = next((i for i, n in enumerate(active) if n), len(CATEGORIES) - 1)
                out[top] += t - prev
                prev = t
            active[r] += delta
        if t1_ns > prev:
            top = next((i for i, n in enumerate(active) if n), len(CATEGORIES) - 1)
            out[top] += t1_ns - prev
        return {c: out[i] / 1e9 for i, c in enumerate(CATEGORIES)}


def watch_port(port) -> None:
    """Note the waits a write on this port is scheduled for (`write(chars, at_ns=...)`: the client's
    tr_min pacing, a case's own timing such as the tt test's late option select); the port's
    scheduled writes wait inside rig._clock, where sleep_until does not see them. The port is one
    the campaign opened (a Client's on a bench); its `write` is wrapped for its lifetime."""
    if getattr(port, "_rig_watched", False):
        return
    write = port.write

    def watched_write(chars, *a, at_ns=None, **kw):
        if at_ns is not None and _installed:
            t = _clock.now_ns()
            if at_ns > t:
                caller = sys._getframe(1).f_code.co_name
                cat = PACING if caller in _PACING_CALLERS else CASE_WAITS
                for ledger in tuple(_installed):
                    ledger.add(t, at_ns, cat)
        return write(chars, *a, at_ns=at_ns, **kw)

    port.write = watched_write
    port._rig_watched = True


def watch_call(obj, name: str, category: str) -> None:
    """Note the time spent in obj.name(...) under `category` (a scope's wait_triggered: the
    instrument filling its screen, as long on a real bench as on the virtual one)."""
    fn = getattr(obj, name)

    def watched(*a, **kw):
        t = _clock.now_ns()
        try:
            return fn(*a, **kw)
        finally:
            for ledger in tuple(_installed):
                ledger.add(t, _clock.now_ns(), category)

    setattr(obj, name, watched)


def _install(ledger: TimeLedger) -> None:
    global _original
    with _patch_lock:
        if not _installed:
            _original = _clock.sleep_until
            original = _original
            now = _clock.now_ns

            def sleep_until(deadline_ns, spin_ns=_clock.DEFAULT_SPIN_NS):   # the same signature
                t = now()
                if deadline_ns > t:
                    frame = sys._getframe(1)
                    for ledger_ in tuple(_installed):
                        ledger_._slept(t, deadline_ns, frame)
                return original(deadline_ns, spin_ns)

            _clock.sleep_until = sleep_until
        _installed.append(ledger)


def _uninstall(ledger: TimeLedger) -> None:
    with _patch_lock:
        _installed.remove(ledger)
        if not _installed:
            _clock.sleep_until = _original


def merge(splits) -> dict[str, float]:
    """Several splits (a run and its resumes) added up."""
    out = dict.fromkeys(CATEGORIES, 0.0)
    for s in splits:
        for k, v in s.items():
            out[k] = out.get(k, 0.0) + v
    return out
