"""Conformance of an HHU DUT: the rig plays the meter (MeterServer) and watches the HHU.

On the embedded bench the rig's own Client stands in for the HHU on the other side of a virtual
line; what is observed is the wire record, as a scope or sniffer would show it on hardware. On a
port bench (a real HHU) the operator is asked to run the session (Bench.stimulate: a prompt and a
deadline; skipped when the run is not interactive) and what the rig's meter saw of it is judged;
the cases that need the wire record or faults on the line say so.
"""
from __future__ import annotations

from itertools import pairwise

from rig import _clock
from rig.campaign.registry import case, needs, params, virtual_line
from rig.deadline import Deadline
from rig.link import Fault
from rig.server import EventKind

MS = 1_000_000
NAK_WIRE = 0x95   # NAK with its even-parity bit
ACK_WIRE = 0x06


def _session_script(hhu):
    hhu.identify()
    hhu.read("tokenStatus")
    hhu.read("softwareVersion")
    hhu.sign_off()


OPERATOR = ("start a session on the HHU: identify (the rig answers as the meter), read a register "
            "such as tokenStatus, and end the session (BreakCommand)")


def _run_session(ctx, faults=(), record=True):
    """The HHU's session, with `faults` on the line; returns (the wire record of it, or [] when the
    case does not need it (`record` False) and the bench has no virtual line; the server's events)."""
    b = ctx.bench
    line = b.need_line("watching the HHU (wire record)") if record or faults else b.line
    t0 = _clock.now_ns()
    n_events = len(b.server.events)
    if faults:
        line.faults = list(faults)
    try:
        b.stimulate(_session_script, OPERATOR, ctx.params["timeout_s"])
        finished = b.wait_hhu(ctx.params["timeout_s"])
    finally:
        if line is not None:
            line.faults = []
    # the HHU is done when it closed its port; the meter may still be reading its last characters
    Deadline.after_ns(500 * MS).wait(lambda: b.server.saw(EventKind.BREAK, n_events), poll_ns=10 * MS)
    ctx.check("the HHU's session ended within the time allowed", finished)
    ctx.check("the HHU completed its session", b.hhu_error is None)
    if b.hhu_error is not None:
        ctx.note(hhu_error=str(b.hhu_error))
    rec = [] if line is None else [c for c in line.record() if c.t_start_ns >= t0 and c.index >= 0]
    return rec, b.server.events[n_events:]


def _messages(rec):
    """Group the record into messages per direction: runs of characters with gaps under 3 chars."""
    out = []
    for c in rec:
        char_ns = c.t_end_ns - c.t_start_ns
        if out and out[-1]["direction"] == c.direction and c.t_start_ns - out[-1]["end"] < 3 * char_ns:
            out[-1]["chars"].append(c)
            out[-1]["end"] = c.t_end_ns
        else:
            out.append({"direction": c.direction, "start": c.t_start_ns, "end": c.t_end_ns, "chars": [c]})
    return out


@params(timeout_s=("how long the HHU has for its session", "s"))
@case("hhu/6.4/session", clause="IEC 62055-52 §6.4 messages, §6.6 protocol flow (HHU side)",
      title="the HHU's session: well-formed requests, none refused, ended by BreakCommand",
      roles=("hhu-dut",), params={"timeout_s": 30.0})
def hhu_session(ctx):
    _, events = _run_session(ctx, record=False)
    bad = [e for e in events if e.get("request_ok") is False]
    naks = [e for e in events if (e.get("answer") or "") == "\x15"]
    ctx.measure("requests with framing errors", len(bad), "count", None, 0, "IEC 62056-21 §6.3")
    ctx.measure("requests answered with NAK", len(naks), "count", None, 0, "IEC 62056-21 §6.3")
    ctx.check("session ended by BreakCommand", any(EventKind.BREAK in e["kinds"] for e in events), "IEC 62055-52 §6.4")
    ctx.note(events=[e["event"] for e in events])


@params(timeout_s=("how long the HHU has for its session", "s"))
@needs("embedded only (the wire record)", virtual_line("watching the HHU's timing"))
@case("hhu/6.7/timing", clause="IEC 62055-52 §6.7 inter-message timing (HHU side)",
      title="the HHU waits at least tr_min after each answer, and selects its option within tt",
      roles=("hhu-dut",), params={"timeout_s": 30.0})
def hhu_timing(ctx):
    p = ctx.profile
    rec, _ = _run_session(ctx)
    msgs = _messages(rec)
    gaps = [(b_["start"] - a["end"]) / 1e6 for a, b_ in pairwise(msgs)
            if a["direction"] == "to_hhu" and b_["direction"] == "to_meter"]
    if gaps:
        ctx.measure("smallest wait after an answer", min(gaps), "ms", p.timing.tr_min_fast_ns / 1e6, None,
                    f"timing.tr_min_fast ({p.source('timing.tr_min_fast')}; assumed for the HHU)")
    ident = next((i for i, m in enumerate(msgs) if m["direction"] == "to_hhu"
                  and (m["chars"][0].received & 0x7F) == ord("/")), None)
    if ident is not None and ident + 1 < len(msgs):
        sel = msgs[ident + 1]
        ctx.measure("option select after the IDResponse", (sel["start"] - msgs[ident]["end"]) / 1e6, "ms", 0,
                    p.timing.tt_min_ns / 1e6, f"timing.tt_min ({p.source('timing.tt_min')})")
    else:
        ctx.check("an IDResponse followed by an option select", False, "IEC 62056-21 §6.3")


@params(timeout_s=("how long the HHU has for its session", "s"), offset=("the character of the IDResponse garbled (index from its start)", ""))
@needs("embedded only (fault injection)", virtual_line("garbling an answer"))
@case("hhu/6.3/nak_repeat", clause="IEC 62055-52 §6.7 transmission error timing (HHU side)",
      title="a garbled answer: the HHU asks for it again with NAK and carries on",
      roles=("hhu-dut",), params={"timeout_s": 30.0, "offset": 5})
def hhu_nak(ctx):
    b = ctx.bench
    line = b.need_line("fault injection", "a real HHU's NAK handling needs a line that garbles an answer")
    at = line.sent("to_hhu") + ctx.params["offset"]  # inside the IDResponse
    rec, _ = _run_session(ctx, [Fault("parity", "to_hhu", at=at)])
    garbled = next((c for c in rec if c.direction == "to_hhu" and "parity" in c.faults), None)
    ctx.check("the fault hit an answer", garbled is not None)
    naks = [c for c in rec if c.direction == "to_meter" and c.sent == NAK_WIRE
            and garbled is not None and c.t_start_ns > garbled.t_end_ns]
    ctx.measure("NAKs sent by the HHU after the garbled answer", len(naks), "count", 1, None, "IEC 62056-21 §6.3")
    if naks:
        ctx.info("NAK after the garbled answer's end", (naks[0].t_start_ns - garbled.t_end_ns) / 1e6, "ms")
