"""Fault injection: every fault kind of the virtual line and of the generator, on a token write,
with the recovery the profile expects (NAK/repeat within its repeat count), and an account that
no token was lost or applied twice."""
from __future__ import annotations

from rig.campaign.registry import case, needs, params, summary, virtual_line
from rig.client import ClientError
from rig.link import FAULT_KINDS, Fault
from rig.protocol import ReadCommand
from rig.tokens import TokenStatus, code_of

MS = 1_000_000

# kind -> (fault arguments, placed relative to the token write's first character; what to expect)
LINE_FAULTS = {
    "bit_flip": (dict(offset=12, bit=3), "recovered"),
    "parity": (dict(offset=15), "recovered"),
    "drop": (dict(offset=20, count=2), "recovered"),
    "duplicate": (dict(offset=20), "recovered"),
    "insert": (dict(offset=8, data=b"\x95"), "recovered"),
    "truncate": (dict(offset=18), "recovered"),
    "delay": (dict(offset=10, ns="ta+100ms"), "recovered"),
    "break": (dict(offset=0, ns=30 * MS), "recovered"),
    "echo": (dict(), "recovered"),
    "noise": (dict(offset=0, count=30, ber=0.05), "recovered"),   # over the token write
    "baud_error": (dict(percent=12.0), "failed"),
}
# the generator's outputs as the line sees them (the virtual bench's coupling, rig.bench.loop)
GENERATOR_FAULTS = {
    "noise": ("bit_flip", dict(ber=0.002), "recovered"),      # continuous noise: a bit error rate
    "pulses": ("bit_flip", dict(ber=0.001), "recovered"),     # glitches at a duty: a bit error rate
    "burst": ("noise", dict(offset=0, count=30, ber=0.05), "recovered"),  # a burst over the write
}
assert set(LINE_FAULTS) == set(FAULT_KINDS), "a line fault kind without a case"


def _fault(kind, args, line, hhu, profile, direction):
    args = dict(args)
    offset = args.pop("offset", None)
    # transfer_token reads tokenStatus before it writes: the offsets are into the write after it
    before = len(ReadCommand.of(profile.registers["tokenStatus"].register_id, limits=profile.limits).to_bytes())
    at = None if offset is None else line.sent("to_meter") + before + offset
    if args.get("ns") == "ta+100ms":
        args["ns"] = profile.timing.ta_ns + 100 * MS
    if kind == "noise":
        args.setdefault("seed", 7)
    if kind == "echo":
        direction = "both"
    return Fault(kind, direction, at=at, **args)


def _transfer_with_fault(ctx, kind, args, expect):
    b, p = ctx.bench, ctx.profile
    line = b.need_line("fault injection",
                       "on hardware, disturb the line with the bench's generator (electrical/margin, noise)")
    acct = b.account()
    hhu = b.session()
    token = b.accepted_tokens(1)[0]
    line.faults = [_fault(kind, args, line, hhu, p, ctx.params["direction"])]
    outcome, result = "failed", None
    try:
        result = hhu.transfer_token(token)
        outcome = "recovered" if result.accepted else "rejected" if result.known else "unknown"
        ctx.exchanges(result.exchanges)
    except ClientError as e:
        if e.exchange is not None:
            ctx.exchanges([e.exchange])
        ctx.note(error=str(e))
    finally:
        line.faults = []
    if outcome != "recovered":
        b.drop_session()  # BreakCommand on the clean line: the meter back to its start
    # what the meter says now, on a clean line: the client's view must agree with the account
    hhu = b.session()
    status, ex = hhu.read("tokenStatus")
    ctx.exchanges([ex])
    applied = acct.account().get(token, {}).get("applied", 0) if acct is not None else None
    ctx.check(f"{kind}: {expect} as the profile expects", outcome == expect,
              f"protocol.nak_repeats ({p.source('protocol.nak_repeats')})")
    if applied is not None:
        ctx.measure("token applied", applied, "count", 1 if outcome == "recovered" else 0,
                    1, "IEC 62055-52 §6.1: no token lost or applied twice")
        accept = str(code_of(p, "tokenStatus", TokenStatus.ACCEPT))
        ctx.check("the meter's account agrees with what the client was told",
                  (applied == 1) == (outcome == "recovered") or (outcome == "failed" and status == accept))
        ctx.measure("tokens applied twice (whole meter)", len(acct.applied_twice()), "count", None, 0,
                    "IEC 62055-52 §6.1")
    ctx.note(outcome=outcome, token=token, tokenStatus_after=status)


@params(kind=("the virtual line's fault kind (rig.link.FAULT_KINDS)", ""), direction=("where the fault is injected", ""), expect=("the outcome required: recovered, rejected or failed; empty: the kind's usual outcome", ""))
@needs("embedded only (virtual-line faults)", virtual_line("fault injection"))
@case("faults/line", clause="IEC 62055-52 §6.7 transmission error timing; §6.1 TCDU",
      title="each virtual-line fault on a token write: recovered by NAK/repeat (or a clear failure), "
            "the token applied once", params={"kind": "parity", "direction": "to_meter", "expect": ""},
      choices={"kind": tuple(LINE_FAULTS), "direction": ("to_meter", "to_hhu", "both")})
def line_fault(ctx):
    args, expect = LINE_FAULTS[ctx.params["kind"]]
    _transfer_with_fault(ctx, ctx.params["kind"], args, ctx.params["expect"] or expect)


@params(kind=("the generator's disturbance, as the virtual bench couples it onto the line", ""), direction=("where the disturbance is injected", ""), expect=("the outcome required: recovered, rejected or failed; empty: the kind's usual outcome", ""))
@needs("embedded only (virtual-line faults)", virtual_line("fault injection"))
@case("faults/generator", clause="IEC 62055-52 §6.2, §6.7 transmission errors",
      title="the generator's disturbances (noise, pulses, burst) on a token write",
      params={"kind": "noise", "direction": "to_meter", "expect": ""},
      choices={"kind": tuple(GENERATOR_FAULTS), "direction": ("to_meter", "to_hhu", "both")})
def generator_fault(ctx):
    kind, args, expect = GENERATOR_FAULTS[ctx.params["kind"]]
    ctx.note(line_fault=kind)
    ctx.stand_in("stand-in: the generator's disturbance applied as the line fault it causes (rig.bench.loop's "
                 "coupling, assumed), not through a generator")
    _transfer_with_fault(ctx, kind, args, ctx.params["expect"] or expect)


def _account_summary(ctx, steps):
    acct = ctx.bench.account()
    if acct is None:
        return
    ctx.measure("tokens applied twice", len(acct.applied_twice()), "count", None, 0, "IEC 62055-52 §6.1")


summary("faults/line")(_account_summary)
summary("faults/generator")(_account_summary)
