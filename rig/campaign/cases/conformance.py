"""Conformance of a meter DUT (the rig plays the client), clause by clause of IEC 62055-52 §6-7.

The protocol values come from the profile, so each limit's basis is the profile's source for it.
"""
from __future__ import annotations

import re

from rig import _clock
from rig._framing import parity_errors
from rig.campaign.cases._wire import MS, is_error_answer, non_646, raw
from rig.campaign.registry import case, needs, params, virtual_line_unless
from rig.client import ClientError
from rig.deadline import Deadline
from rig.link import char_time_ns
from rig.protocol import (
    COMMANDS, Ack, BreakCommand, Data, DataSet, IDRequest, IDResponse, Nak, OptionSelect, PasswordCommand,
    ReadCommand, UndefinedCommand, WriteCommand,
)
from rig.tokens import TokenStatus, code_of

REJECTED = "12345678901234567890"  # CRC error in the shipped test-token table


def _src(ctx, key: str) -> str:
    try:
        return f"{key} ({ctx.profile.source(key)})"
    except KeyError:
        return key


@case("meter/6.3/character", clause="IEC 62055-52 §6.3 character transmission",
      title="7E1 start-stop characters, ISO/IEC 646, session at the initial speed then the switched speed")
def character(ctx):
    b = ctx.bench
    b.drop_session()
    hhu = b.session()
    start_baud = ctx.profile.character.initial_baud
    ident = hhu.exchanges and hhu.identity
    value, ex = hhu.read("tokenStatus")
    ctx.exchanges(hhu.exchanges)
    ctx.check("IDResponse received at the initial speed", ident is not None, _src(ctx, "character.initial_baud"))
    expect = min(ctx.profile.baud_from_char(hhu.identity.baud_char), ctx.profile.character.max_baud)
    ctx.measure("speed after the option select", hhu.port.baud, "Bd", expect, expect,
                _src(ctx, "character.max_baud"))
    ctx.info("initial speed", start_baud, "Bd")
    wire = bytes(hhu.reader.wire)
    fmt = ctx.profile.character.format
    if fmt == "7E1":
        ctx.measure("parity errors in received characters", parity_errors(wire), "count", None, 0,
                    _src(ctx, "character.format"))
    ctx.measure("characters outside ISO/IEC 646", non_646(wire), "count", None, 0, "IEC 62056-21 §5")
    if b.line is not None:  # the wire record: every character 10 bit times long at its speed
        rec = [c for c in b.line.record() if c.direction == "to_hhu" and c.index >= 0]
        bad = sum(1 for c in rec if abs((c.t_end_ns - c.t_start_ns) - char_time_ns(c.baud, fmt)) > 1e3)
        ctx.measure("characters not 10 bits long", bad, "count", None, 0, "IEC 62056-21 §5 (7E1)")


@params(register=("the register read by the ReadCommand (profile register name)", "", "register"), token=("the token written by the WriteCommand; empty: one issued by the emulator, on a real meter a rejected test token", ""))
@case("meter/6.4/messages", clause="IEC 62055-52 §6.4 messages",
      title="IDRequest, IDResponse, option select, ReadCommand, WriteCommand, BreakCommand, ACK, NAK, Data",
      params={"register": "tokenStatus", "token": ""})
def messages(ctx):
    b, p = ctx.bench, ctx.profile
    b.drop_session()
    hhu = b.session()
    ident = hhu.identity
    ctx.check("IDRequest -> IDResponse", isinstance(ident, IDResponse), "IEC 62056-21 §6.3")
    ctx.check("IDResponse: manufacturer of three letters",
              bool(re.fullmatch(r"[A-Za-z]{3}", ident.manufacturer)), "IEC 62056-21 §6.3")
    ctx.measure("IDResponse identification length", len(ident.identification), "chars", 1,
                p.limits.identification_max, _src(ctx, "limits.identification_max"))
    sel = next((e for e in hhu.exchanges if e.name == "option select"), None)
    ctx.check("option select (programming) -> P0", sel is not None and isinstance(sel.message, PasswordCommand),
              "IEC 62056-21 §6.3")
    reg = p.registers[ctx.params["register"]]
    ex = raw(hhu, ReadCommand.of(reg.register_id, limits=p.limits), "ReadCommand")
    ctx.check("ReadCommand -> Data", isinstance(ex.message, Data) and not is_error_answer(ex.message),
              "IEC 62055-52 §6.4")
    first = ex.answer
    nak = raw(hhu, Nak(), "NAK after Data")
    ctx.check("NAK -> the last answer again", nak.answer == first and bool(first), "IEC 62056-21 §6.3")
    token = ctx.params["token"] or (b.accepted_tokens(1)[0] if b.emulator is not None else REJECTED)
    w = raw(hhu, WriteCommand.of(DataSet(p.registers["TokenData"].register_id, token, limits=p.limits)), "WriteCommand")
    ctx.check("WriteCommand (executable) -> ACK", isinstance(w.message, Ack), "IEC 62056-21 §6.3")
    if isinstance(w.message, Ack):  # let the token finish before anything else is asked of the meter
        try:
            hhu_wait_ready(hhu, p)
        except ClientError as e:
            ctx.note(wait=str(e))
    br = raw(hhu, BreakCommand(), "BreakCommand", wait_ns=p.timing.tr_max_ns)
    ctx.check("BreakCommand -> no answer", br.message is None and br.answer_kind == "none", "IEC 62056-21 §6.3")
    hhu.port.set_baud(p.character.initial_baud)
    after = raw(hhu, ReadCommand.of(reg.register_id, limits=p.limits), "ReadCommand after the break", wait_ns=p.timing.tr_max_ns)
    ctx.check("ReadCommand after BreakCommand -> no answer (back to start)", after.answer_kind == "none",
              "IEC 62055-52 Annex A")
    ctx.exchanges(hhu.exchanges)
    b.drop_session(sign_off=False)


def hhu_wait_ready(hhu, p) -> None:
    """Read tokenStatus until it is no longer Not ready (at most the execution limit)."""
    not_ready = str(code_of(p, "tokenStatus", TokenStatus.NOT_READY))
    Deadline.after_ns(p.timing.execution_limit_ns).wait(lambda: hhu.read("tokenStatus")[0] != not_ready,
                                                        poll_ns=p.timing.not_ready_poll_ns)


@case("meter/6.6/read", clause="IEC 62055-52 §6.6 ReadCommand processing",
      title="readable registers answer Data; unknown and write-only registers get an error answer")
def read_processing(ctx):
    b, p = ctx.bench, ctx.profile
    hhu = b.session()
    for reg in p.registers.values():
        ex = raw(hhu, ReadCommand.of(reg.register_id, limits=p.limits), f"read {reg.name}")
        if "r" in reg.access:
            ok = isinstance(ex.message, Data) and not is_error_answer(ex.message) \
                and ex.message.datasets[0].address == reg.register_id
            ctx.check(f"read {reg.name} -> Data {reg.register_id}(...)", ok, _src(ctx, f"registers.{reg.name}"))
        else:
            ctx.check(f"read {reg.name} (write-only) -> error answer", is_error_answer(ex.message),
                      _src(ctx, f"registers.{reg.name}"))
    unknown = _unused_id(p)
    ex = raw(hhu, ReadCommand.of(unknown, limits=p.limits), f"read unknown {unknown}")
    ctx.check(f"read unknown register {unknown} -> error answer", is_error_answer(ex.message), "IEC 62055-52 §6.6")
    ctx.exchanges(hhu.exchanges, measure=True)


def _unused_id(p) -> str:
    ids = {r.register_id for r in p.registers.values()}
    return next(f"{n:02d}" for n in range(99, 0, -1) if f"{n:02d}" not in ids)


@case("meter/6.6/write", clause="IEC 62055-52 §6.6 WriteCommand processing",
      title="unexecutable writes get an error answer: read-only, unknown, bad length, bad value")
def write_processing(ctx):
    b, p = ctx.bench, ctx.profile
    hhu = b.session()
    ro = next((r for r in p.registers.values() if r.access == "r"), None)
    tok = p.registers["TokenData"]
    cases = []
    if ro is not None:
        cases.append((f"write {ro.name} (read-only)", ro.register_id, "1"))
    cases += [(f"write unknown register {_unused_id(p)}", _unused_id(p), "1"),
              ("write TokenData of 5 digits (bad length)", tok.register_id, "12345"),
              ("write TokenData with letters (bad value)", tok.register_id, "1234567890123456789A")]
    for name, rid, value in cases:
        ex = raw(hhu, WriteCommand.of(DataSet(rid, value, limits=p.limits)), name)
        ctx.check(f"{name} -> error answer", is_error_answer(ex.message), "IEC 62055-52 §6.6")
    ctx.exchanges(hhu.exchanges)


@params(commands=("command letters the protocol does not define, sent one after the other", ""))
@case("meter/6.6/undefined", clause="IEC 62055-52 §6.6 undefined-command processing",
      title="undefined commands get NAK or an error answer (per profile) and the session goes on",
      params={"commands": ["X1", "E2", "P2"]})
def undefined(ctx):
    b, p = ctx.bench, ctx.profile
    hhu = b.session()
    want = p.protocol.undefined_command
    for cmd in ctx.params["commands"]:
        letter, ctype = cmd[0], cmd[1:2] or "1"
        cls = COMMANDS.get(letter, UndefinedCommand)
        msg = cls(letter, ctype, "()") if cls is not UndefinedCommand else UndefinedCommand(letter, ctype, "()")
        ex = raw(hhu, msg, f"undefined {cmd}")
        got = isinstance(ex.message, Nak) if want == "nak" else is_error_answer(ex.message)
        ctx.check(f"{cmd} -> {'NAK' if want == 'nak' else 'error answer'}", got,
                  _src(ctx, "protocol.undefined_command"))
    value, ex = hhu.read("tokenStatus")
    ctx.check("session goes on (ReadCommand answered)", ex.ok)
    ctx.exchanges(hhu.exchanges)


@case("meter/6.6/break", clause="IEC 62055-52 §6.6 BreakCommand processing",
      title="BreakCommand ends the session silently; a new IDRequest starts another")
def break_processing(ctx):
    b, p = ctx.bench, ctx.profile
    hhu = b.session()
    br = raw(hhu, BreakCommand(), "BreakCommand", wait_ns=p.timing.tr_max_ns)
    ctx.check("BreakCommand -> no answer", br.answer_kind == "none", "IEC 62056-21 §6.3")
    hhu.port.set_baud(p.character.initial_baud)
    b.drop_session(sign_off=False)
    hhu = b.session()
    value, ex = hhu.read("tokenStatus")
    ctx.check("new session after the break", ex.ok, "IEC 62055-52 Annex A")
    ctx.exchanges(hhu.exchanges)


@params(token=("a token the meter rejects, entered `threshold` times (profile token_lockout)", ""), clear=("how the lockout is cleared afterwards: power_cycle (the emulator only), wait (the lockout period), none", ""))
@case("meter/6.6/token_lockout", clause="IEC 62055-52 §6.6 TokenLockout",
      title="after `threshold` rejected tokens, token entry is locked out",
      params={"token": REJECTED, "clear": "power_cycle"}, choices={"clear": ("power_cycle", "wait", "none")})
def token_lockout(ctx):
    b, p = ctx.bench, ctx.profile
    if b.emulator is not None:
        b.power_cycle()  # no rejects counted before this case
    hhu = b.session()
    lk = p.token_lockout
    basis = _src(ctx, "token_lockout.threshold")
    statuses = []
    lockout = code_of(p, "tokenStatus", TokenStatus.TOKEN_LOCKOUT_ACTIVE)
    for i in range(lk.threshold):
        r = hhu.transfer_token(ctx.params["token"])
        ctx.exchanges(r.exchanges)
        statuses.append(r.status)
        ctx.check(f"rejected token {i + 1} of {lk.threshold}: not locked out yet", r.status not in (None, lockout) and not r.accepted, basis)
    locked_by = None
    try:
        r = hhu.transfer_token(ctx.params["token"])
        ctx.exchanges(r.exchanges)
        locked_by = "status" if r.status == lockout else None
    except ClientError as e:  # "error" lockout answer: the write is refused
        if e.exchange is not None:
            ctx.exchanges([e.exchange])
            if "lockout" in str(e) or e.exchange.errors and any(
                    p.error_texts["lockout"] in x for x in e.exchange.errors):
                locked_by = "error answer"
    ctx.check(f"token after the threshold -> TokenLockout (status {lockout} or error answer)", locked_by is not None, basis)
    ctx.note(locked_by=locked_by, statuses=statuses)
    clear = ctx.params["clear"]
    if clear == "power_cycle" and b.emulator is not None:
        b.power_cycle()
    elif clear == "wait":
        _clock.sleep_until(_clock.now_ns() + lk.initial_period_ns)


@params(reads=("reads of tokenStatus whose tr and ta are judged", ""), token=("a token to time the execution of; empty: one issued by the emulator (none on a real meter)", ""))
@case("meter/6.7/timing", clause="IEC 62055-52 §6.7 server timing",
      title="reaction time tr, inter-character time ta, message execution time",
      params={"reads": 5, "token": ""})
def timing(ctx):
    b, p = ctx.bench, ctx.profile
    hhu = b.session()
    for _ in range(ctx.params["reads"]):
        hhu.read("tokenStatus")
    ctx.exchanges(hhu.exchanges, measure=True)
    token = ctx.params["token"] or (b.accepted_tokens(1)[0] if b.emulator is not None else "")
    if token:
        r = hhu.transfer_token(token)
        ctx.exchanges(r.exchanges)
        ctx.measure("message execution time", (r.execution_ns or 0) / 1e6, "ms", 0,
                    p.timing.execution_limit_ns / 1e6, _src(ctx, "timing.execution_limit_ms"))
        ctx.check("token executed (not ready, then a result)",
                  r.status not in (None, code_of(p, "tokenStatus", TokenStatus.NOT_READY)))


@params(margin_ms=("how far inside tt_min and beyond tt_max the option select is sent", "ms"))
@case("meter/6.7/tt", clause="IEC 62055-52 §6.7 inter-message timing (tt)",
      title="the meter waits for the option select until tt_min, and has fallen back after tt_max",
      params={"margin_ms": 100})
def tt(ctx):
    b, p = ctx.bench, ctx.profile
    margin = ctx.params["margin_ms"] * MS
    b.drop_session()
    for name, delay in (("option select just before tt_min", p.timing.tt_min_ns - margin),
                        ("option select after tt_max", p.timing.tt_max_ns + margin)):
        hhu = b.client()
        try:
            hhu.port.set_baud(p.character.initial_baud)
            ident = raw(hhu, IDRequest(hhu.address, limits=p.limits), "IDRequest")
            if not isinstance(ident.message, IDResponse):
                ctx.check(f"{name}: IDResponse", False)
                continue
            end = ident.answer_last_ns  # arrival of the last character: its end on the line
            baud = min(p.baud_from_char(ident.message.baud_char), p.character.max_baud)
            sel = OptionSelect("0", p.baud_char(baud, "C"), "1")
            t_send = end + delay
            n = len(sel.to_bytes())
            answer_wait = max(p.timing.tr_max_ns, p.timing.speed_switch_guard_ns) + 200 * MS
            hhu.reader.discard()
            times = hhu.port.write(sel.to_bytes(), at_ns=t_send)
            sent_end = int(times[-1]) + hhu.port.char_ns
            hhu.port.set_baud(baud, at_ns=sent_end + p.timing.speed_switch_guard_ns)
            frame = hhu.reader.next_frame(sent_end + answer_wait)
            got = frame is not None and frame.ok and frame.kind == "command"
            ctx.info(f"{name}: delay", (int(times[0]) - hhu.port.char_ns * 0 - end) / 1e6, "ms")
            if delay < p.timing.tt_min_ns:
                ctx.check(f"{name} -> P0", got, _src(ctx, "timing.tt_min_ms"))
            else:
                ctx.check(f"{name} -> no answer (fallen back)", frame is None, _src(ctx, "timing.tt_max_ms"))
            ctx.note(**{name: n})
            ctx.exchanges(hhu.exchanges)
            if got:
                raw(hhu, BreakCommand(), "BreakCommand", wait_ns=p.timing.tr_max_ns)
        finally:
            hhu.close()


@case("meter/6.8/register_table", clause="IEC 62055-52 §6.8 RegisterTable and Register",
      title="every register of the profile's table: access, length, encoding")
def register_table(ctx):
    b, p = ctx.bench, ctx.profile
    hhu = b.session()
    for reg in p.registers.values():
        basis = _src(ctx, f"registers.{reg.name}")
        if "r" not in reg.access:
            continue
        try:
            value, ex = hhu.read(reg.name)
        except ClientError as e:
            ctx.check(f"{reg.name}: readable", False, basis)
            ctx.note(**{reg.name: str(e)})
            continue
        ctx.measure(f"{reg.name}: length", len(value), "chars", 0, reg.length, basis)
        if reg.encoding in ("decimal", "code", "digits20"):
            ctx.check(f"{reg.name}: {reg.encoding} value", value.isdigit(), basis)
        if reg.encoding == "code":
            known = int(value) in p.codes[reg.codes] if value.isdigit() else False
            ctx.check(f"{reg.name}: code in table {reg.codes} (or 0 before any token)", known or value == "0", basis)
        if reg.encoding == "ascii":
            ctx.check(f"{reg.name}: printable ISO/IEC 646", all(" " <= ch <= "~" for ch in value), basis)
    ctx.exchanges(hhu.exchanges)


MAINTAINED = ("tableID", "FOIN", "protocolVersion", "serverStatus", "tokenStatus", "softwareVersion")


@params(registers=("the maintained registers read (profile register names)", "", "register"))
@case("meter/7/maintained", clause="IEC 62055-52 §7 maintained entities",
      title="tableID, FOIN, protocolVersion, serverStatus, tokenStatus, softwareVersion are readable",
      params={"registers": list(MAINTAINED)})
def maintained(ctx):
    b, p = ctx.bench, ctx.profile
    hhu = b.session()
    for name in ctx.params["registers"]:
        if name not in p.registers:
            ctx.check(f"{name}: in the profile's register table", False, "IEC 62055-52 §7")
            continue
        try:
            value, ex = hhu.read(name)
            ctx.check(f"{name}: readable, with a value", value != "", "IEC 62055-52 §7")
        except ClientError:
            ctx.check(f"{name}: readable, with a value", False, "IEC 62055-52 §7")
    ctx.exchanges(hhu.exchanges)


@params(token=("a token the meter accepts, never used; empty: one issued by the emulator", ""))
@needs("a token the meter accepts: the `token` parameter, or the embedded bench", virtual_line_unless("token", "a token the meter accepts is issued to the emulator"))
@case("meter/6.1/tcdu", clause="IEC 62055-52 §6.1 TCDU",
      title="a token accepted: TokenData, tokenStatus, AuthenticationResult, ValidationResult, TokenResult; "
            "entered again: Used; applied once", params={"token": ""})
def tcdu(ctx):
    b, p = ctx.bench, ctx.profile
    hhu = b.session()
    token = ctx.params["token"] or b.accepted_tokens(1)[0]
    r = hhu.transfer_token(token)
    ctx.exchanges(r.exchanges)
    ctx.check("tokenStatus Accept", r.status == code_of(p, "tokenStatus", TokenStatus.ACCEPT), _src(ctx, "codes.tokenStatus"))
    for reg, want in (("AuthenticationResult", "Authentic"), ("ValidationResult", "Valid"), ("TokenResult", "Accepted")):
        got = r.results.get(reg, (None, ""))[1]
        ctx.check(f"{reg} {want}", got == want, _src(ctx, f"codes.{reg}"))
    again = hhu.transfer_token(token)
    ctx.exchanges(again.exchanges)
    ctx.check("same token again: tokenStatus Used", again.status_name == TokenStatus.USED, _src(ctx, "codes.tokenStatus"))
    acct = b.account()
    if acct is not None:
        ctx.measure("times applied", acct.account().get(token, {}).get("applied", 0), "count", 1, 1,
                    "IEC 62055-52 §6.1 (a token is applied once)")
