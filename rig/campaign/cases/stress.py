"""Stress: long token runs, session cycling, back-to-back exchanges at minimum gaps, top speed."""
from __future__ import annotations

from rig.campaign.registry import case, needs, params, summary, virtual_line
from rig.client import ClientError


@params(tokens=("accepted tokens transferred per step", ""))
@needs("embedded only (tokens issued to the emulator)", virtual_line("accepted tokens are issued to the emulator"))
@case("stress/token_run", clause="IEC 62055-52 §6.1 TCDU, §6.6 WriteCommand processing",
      title="a long run of accepted tokens: every one accepted and applied exactly once",
      params={"tokens": 5})
def token_run(ctx):
    b = ctx.bench
    hhu = b.session()
    tokens = b.accepted_tokens(ctx.params["tokens"])
    accepted = 0
    for t in tokens:
        r = hhu.transfer_token(t)
        ctx.exchanges(r.exchanges)
        accepted += r.accepted
    n = len(tokens)
    ctx.measure("tokens accepted", accepted, "count", n, n, "IEC 62055-52 §6.1")
    acct = b.account()
    if acct is not None:
        a = acct.account()
        ctx.measure("tokens applied once", sum(1 for t in tokens if a.get(t, {}).get("applied") == 1),
                    "count", n, n, "IEC 62055-52 §6.1")


@summary("stress/token_run")
def token_run_summary(ctx, steps):
    acct = ctx.bench.account()
    if acct is not None:
        ctx.measure("tokens applied twice", len(acct.applied_twice()), "count", None, 0, "IEC 62055-52 §6.1")


@params(sessions=("sessions (identify, read, sign off) per step", ""), register=("the register read in each session (a name of the profile's register table)", "", "register"))
@case("stress/session_cycling", clause="IEC 62055-52 §6.6 protocol flow (Annex A)",
      title="identify, read, sign off, again and again", params={"sessions": 1, "register": "tokenStatus"})
def session_cycling(ctx):
    b = ctx.bench
    ok = 0
    for _ in range(ctx.params["sessions"]):
        b.drop_session()
        try:
            hhu = b.session()
            _, ex = hhu.read(ctx.params["register"])
            ctx.exchanges(hhu.exchanges)
            ok += ex.ok
        except ClientError as e:
            ctx.note(error=str(e))
            b.drop_session(sign_off=False)
    b.drop_session()
    n = ctx.params["sessions"]
    ctx.measure("sessions completed", ok, "count", n, n, "IEC 62055-52 Annex A")


@params(exchanges=("reads per step, each sent tr_min after the answer", ""), register=("the register read (profile register name)", "", "register"))
@case("stress/back_to_back", clause="IEC 62055-52 §6.7 inter-message timing",
      title="back-to-back exchanges at the minimum gap", params={"exchanges": 20, "register": "tokenStatus"})
def back_to_back(ctx):
    b, p = ctx.bench, ctx.profile
    hhu = b.session()
    n = ctx.params["exchanges"]
    ok = 0
    gaps = []
    last_end = None
    for _ in range(n):
        _, ex = hhu.read(ctx.params["register"])
        ok += ex.ok
        if last_end is not None:
            gaps.append((ex.request_start_ns - last_end) / 1e6)
        last_end = ex.answer_last_ns
    ctx.exchanges(hhu.exchanges)
    ctx.measure("exchanges answered in time", ok, "count", n, n, "IEC 62055-52 §6.7")
    if gaps:
        ctx.measure("smallest gap answer -> next request", min(gaps), "ms", p.timing.tr_min_fast_ns / 1e6, None,
                    f"timing.tr_min_fast ({p.source('timing.tr_min_fast')})")


@params(reads=("reads of tokenStatus per step at the top speed", ""))
@case("stress/top_speed", clause="IEC 62055-52 §6.3 character transmission (speed)",
      title="a session at the profile's top speed, many reads", params={"reads": 20})
def top_speed(ctx):
    b, p = ctx.bench, ctx.profile
    hhu = b.session()
    top = min(p.character.max_baud, p.baud_from_char(hhu.identity.baud_char))
    ctx.measure("speed", hhu.port.baud, "Bd", top, top, f"character.max_baud ({p.source('character.max_baud')})")
    ok = 0
    for _ in range(ctx.params["reads"]):
        _, ex = hhu.read("tokenStatus")
        ok += ex.ok
    ctx.exchanges(hhu.exchanges)
    ctx.measure("reads answered", ok, "count", ctx.params["reads"], ctx.params["reads"])
