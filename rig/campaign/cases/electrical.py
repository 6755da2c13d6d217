"""Electrical validation per interface option: levels, transitions, bit timing, and margins.

Wherever the bench has instruments (Bench.instruments: the virtual bench on the embedded meter's
line, or the instruments a port bench names: real ones, or `rig bench serve`'s over TCP), the
cases drive them through the pyvisa drivers of rig.bench.drivers, the same code on every bench;
nothing of the virtual line is read on that path:

- levels: the scope armed on the start-bit edge of one direction (trigger level between the
  receiver's thresholds), one exchange, the capture read through the Scope driver and decoded by
  rig.physical.analysis.decode; its measurements (levels, transitions, bit timing) are judged
  against the option's limits, and the decoded characters are checked against the exchange (what
  the client sent, or received); the current loop's mark current is also read with the Meter.
- margin, noise: Gaussian noise of `amount` Vpp from the Generator (output on during the exchange).
- margin, loop_current: the Supply's current limit set to `amount` mA (the loop in constant
  current), the loop current read with the Meter.
- in a margin sweep, the bit errors are counted from a scope capture of each exchange, decoded
  with the fixed thresholds of a receiver meeting the option (what the DUT's receiver reads),
  against what was sent (the request; for `to_hhu`, the DUT's answer on the undisturbed line).
- margin, level: the mark (idle) level moved towards the middle of the swing, to `amount` times
  its nominal distance from it: on the current loop the Supply's current limit at `amount` x the
  nominal mark current (read with the Meter); on the voltage and optical interfaces a d.c. offset
  from the Generator through the coupling network (`coupling`, the option's unit per volt; default
  rig.bench.loop.COUPLING, assumed).
- margin, baud error and bit error rate: line faults (no instrument does that; the virtual line
  only).

Without instruments on a virtual line (hhu-dut, or no pyvisa) the stand-ins remain: the "scope" is
a capture synthesised from the virtual line's wire record (rig.physical.synth), and a physical
disturbance reaches the line as the characters a receiver meeting the option would read from the
disturbed waveform (synthesised, then decoded with the option's fixed receiver thresholds), as
bit-flip and drop faults.  A port bench without the instruments a case needs: the case says so.
"""
from __future__ import annotations

from dataclasses import replace
from difflib import SequenceMatcher
from typing import Any

import numpy as np

from rig import _clock
from rig._framing import add_parity
from rig._framing import bit_errors as count_bit_errors
from rig.bench.config import WIRING, ConfigError
from rig.bench.drivers import InstrumentError
from rig.bench.loop import COUPLING
from rig.campaign.errors import BenchUnsupported
from rig.campaign.registry import case, needs, params, summary
from rig.client import ClientError
from rig.link import Fault, char_time_ns
from rig.physical.analysis import decode
from rig.physical.options import CURRENT_LOOP, get_option
from rig.physical.synth import synthesize
from rig.protocol import ReadCommand

QUANTITIES = ("baud_error", "ber", "noise", "level", "loop_current")
UNITS = {"baud_error": "%", "ber": "1/bit", "noise": "rms (option unit)", "level": "x nominal swing",
         "loop_current": "mA"}
GENERATOR_NOISE_UNIT = "Vpp (generator noise)"
NAK = b"\x15"
SCREEN_CHARS = 80          # characters the scope's screen holds after the trigger (an answer's worth)


def _option(ctx):
    return get_option(ctx.params.get("interface") or ctx.bench.spec.interface)


def _bench_option(bench, params) -> str:
    return params.get("interface") or bench.interface


def _port_instruments(bench, params, roles, why) -> str | None:
    """On a port bench: the instruments of `roles` for the case's option, or why not."""
    if bench.kind != "port":
        return None
    option = _bench_option(bench, params)
    cfg = bench.config
    if cfg is None or not cfg.instruments:
        return (f"{why} on a port bench needs its instruments (bench {bench.name!r} names none: "
                "bench_config or instruments)")
    if cfg.option != option:
        return f"bench {bench.name!r} has instruments for the {cfg.option} interface, not {option}"
    missing = [r for r in roles if r not in cfg.instruments]
    if missing:
        return f"{why} needs a {' and a '.join(missing)} among bench {bench.name!r}'s instruments"
    # how the instruments used are wired (the probe's gain, the loop's supply): the user's figures
    for role in (*roles, "scope"):
        for key in WIRING.get(role, {}) if role in cfg.instruments else ():
            if key == "probe_gain" and bench.probe_gain is not None:
                continue
            try:
                cfg.wiring(role, key)
            except ConfigError as e:
                where = bench.bench_config or f"the plan's bench {bench.name!r} (no bench_config)"
                alt = " (or the plan's bench probe_gain)" if key == "probe_gain" else ""
                return f"{why}: {where}: {e.key}{alt}: {e.reason}"
    return None


def _levels_need(bench, params):
    if bench.role == "hhu-dut":
        if bench.kind != "embedded":
            return "an HHU's levels need the embedded bench's virtual line (the wire record)"
        return None
    return _port_instruments(bench, params, ("scope",), "measuring levels")


def _margin_need(bench, params):
    q = params["quantity"]
    option = _bench_option(bench, params)
    if q == "loop_current" and option != "current-loop":
        return f"a loop_current margin is for the current-loop interface, not {option}"
    if bench.kind != "port":
        return None
    if q in ("baud_error", "ber"):
        return f"a {q} margin is a virtual-line fault: the embedded bench only (bench {bench.name!r} is a port)"
    by_generator = q == "noise" or (q == "level" and option != "current-loop")
    return _port_instruments(bench, params, ("generator",) if by_generator else ("supply",), f"a {q} margin")


@params(interface=("the interface option; empty: the bench's", ""),
        direction=("the direction captured: the meter's answer (to_hhu) or the request (to_meter)", ""),
        samples_per_bit=("samples per bit of the synthesised capture (virtual line)", ""),
        rise_time_ui=("rise time of the synthesised capture (virtual line)", "UI"),
        noise=("noise added to the synthesised capture (virtual line)", "option unit rms"),
        register=("the register read for the exchange captured (profile register name)", "", "register"))
@needs("port meter-dut bench: a scope among its instruments; hhu-dut: embedded only", _levels_need)
@case("electrical/levels", clause="IEC 62055-52 §6.2 physical interface (IEC 62056-21 §4), §6.3 bit timing",
      title="levels, transitions and bit timing of one exchange's characters against the option's limits",
      roles=("meter-dut", "hhu-dut"),
      params={"interface": "", "direction": "to_hhu", "samples_per_bit": 20.0, "rise_time_ui": 0.02,
              "noise": 0.0, "register": "tokenStatus"},
      choices={"direction": ("to_hhu", "to_meter"), "interface": ("", "optical", "current-loop", "voltage")})
def levels(ctx):
    b = ctx.bench
    opt = _option(ctx)
    inst = b.instruments(opt.name) if b.spec.role == "meter-dut" else None
    if inst is not None:
        return _levels_by_scope(ctx, inst, opt)
    line = b.need_line("a capture synthesised from the wire record",
                       _NO_INSTRUMENTS if b.spec.role == "meter-dut" else "")
    if b.spec.role == "meter-dut":
        hhu = b.session()
        t0 = _clock.now_ns()
        _, ex = hhu.read(ctx.params["register"])
        ctx.exchanges([ex])
    else:
        t0 = 0
    rec = [c for c in line.record() if c.direction == ctx.params["direction"] and c.index >= 0
           and c.line >= 0 and c.t_start_ns >= t0]
    if not rec:
        ctx.check("characters on the line to capture", False)
        return
    baud = rec[-1].baud
    rec = [c for c in rec if c.baud == baud]
    chars = [(c.t_start_ns, c.line & 0x7F) for c in rec]
    spb = ctx.params["samples_per_bit"]
    wf = synthesize(chars, opt.name, baud=baud, samples_per_bit=spb,
                    rise_time=ctx.params["rise_time_ui"] / baud, noise=ctx.params["noise"], seed=len(chars))
    samples = wf.samples.astype(np.float32)
    res = decode(samples, wf.sample_rate, opt.name, baud=baud)
    what = STAND_IN_CAPTURE
    ctx.stand_in(what)
    for m in res.measurements:
        ctx.record.measurements.append(replace(m, basis=f"{m.basis}; {what}" if m.basis else what))
    sent = bytes(c for _, c in chars)
    ctx.measure("characters decoded as on the wire", sum(1 for a, b_ in zip(res.values, sent) if a == b_),
                "count", len(sent), len(sent), "IEC 62056-21 §5")
    ctx.capture(f"{ctx.params['direction']} {opt.name}", samples, wf.sample_rate, opt.name)
    ctx.note(option=opt.name, baud=baud, characters=len(sent))


STAND_IN_CAPTURE = ("stand-in: a capture synthesised from the virtual line's wire record "
                    "(no scope on this bench)")
STAND_IN_DISTURBANCE = ("stand-in: the disturbance applied as the line faults a receiver meeting the "
                        "option would read (no instrument on this bench)")

_NO_INSTRUMENTS = ("name the bench's instruments in the plan (bench_config = FILE, or instruments = "
                   "{ scope = RESOURCE, ... }) to measure through them")


def _setup_scope(inst, channels, trigger_ch: int, baud: float, screen_s: float):
    """The scope's channels, timebase and edge trigger for characters at `baud`: the screen holds
    `screen_s` from two bits before the trigger; the trigger is the start bit's edge crossing the
    middle of the receiver's thresholds.  Returns the Scope driver (not yet armed)."""
    opt = inst.option
    gain = inst.probe_gain()
    mark, space = inst.expected_levels()
    scope = inst.open("scope")
    setup = (tuple(channels), trigger_ch, baud, screen_s, mark, space, gain)
    if getattr(inst, "scope_setup", None) == setup:     # as the last step left it: nothing to send
        return scope
    inst.scope_setup = None
    span = max(abs(mark - space) * gain, 1e-3)
    for ch in channels:
        scope.configure_channel(ch, scale=span / 6, offset=-(mark + space) / 2 * gain)
    hdivs = float((scope.model.facts.get("divisions") or {}).get("horizontal", 12))
    pre = 2 / baud                                  # two bits before the trigger
    scope.configure_timebase(screen_s / hdivs, offset=screen_s / 2 - pre)
    level = 0.5 * sum(opt.receiver_thresholds()) * gain
    scope.edge_trigger(trigger_ch, level=level, slope="falling" if opt.mark_is_high else "rising")
    inst.scope_setup = setup
    return scope


def _where(inst, ch: int, direction: str) -> str:
    return f"scope {inst.model('scope')} CH{ch} ({direction})"


def _levels_by_scope(ctx, inst, opt):
    """Levels and bit timing from a single capture of the scope, through its driver."""
    b = ctx.bench
    direction = ctx.params["direction"]
    hhu = b.session()
    baud = float(hhu.port.baud)
    if inst.simulates_signal:
        # the DUT's signal as the virtual scope sees it (edge time and noise of the line; assumed)
        inst.simulate_signal(ctx.params["rise_time_ui"] / baud, ctx.params["noise"])
    else:
        ctx.note(signal="the DUT's own (rise_time_ui and noise apply to the virtual line only)")
    gain = inst.probe_gain()
    ch = inst.scope_channel(direction)
    screen = char_time_ns(baud, hhu.port.fmt, SCREEN_CHARS) / 1e9
    scope = _setup_scope(inst, [ch], ch, baud, screen)
    scope.arm()
    _, ex = hhu.read(ctx.params["register"])
    ctx.exchanges([ex])
    scope.wait_triggered(timeout=5.0 + screen)
    wf = scope.waveform(ch)
    samples = (wf.volts / gain).astype(np.float32)
    res = decode(samples, wf.sample_rate, opt.name, baud=baud)
    where = _where(inst, ch, direction)
    for m in res.measurements:
        ctx.record.measurements.append(replace(m, basis=f"{m.basis}; {where}" if m.basis else where))
    sent = _seven_bit(ex.request if direction == "to_meter" else ex.answer)
    what = "request the client sent" if direction == "to_meter" else "answer the client received"
    ctx.measure("characters decoded as on the wire", _matched(res.values, sent), "count", len(sent), len(sent),
                f"IEC 62056-21 §5; {where} against the {what}")
    ctx.capture(f"{where} {opt.name}", samples, wf.sample_rate, opt.name)
    if opt.name == "current-loop" and inst.has("meter"):
        dmm = inst.open("meter")
        dmm.configure_current_dc()
        i = dmm.current_dc()
        lim = CURRENT_LOOP.tx_mark
        ctx.measure("mark_current (meter)", None if i.value is None else i.value * 1e3, "mA", lim.low, lim.high,
                    f"{lim.basis}; meter {inst.model('meter')} in the loop")
    ctx.note(option=opt.name, baud=baud, characters=len(res.values), source="scope", scope=inst.model("scope"),
             channel=ch, sample_rate=wf.sample_rate, bench=b.spec.kind)


def _seven_bit(data) -> bytes:
    return bytes(c & 0x7F for c in (data or b""))


def _matched(got: bytes, sent: bytes) -> int:
    """Characters of `sent` found, in order, among the decoded ones."""
    sm = SequenceMatcher(None, bytes(got), bytes(sent), autojunk=False)
    return sum(m.size for m in sm.get_matching_blocks())


def bit_errors(res, sent: bytes) -> int:
    """Bit errors of what a receiver read (a decode of the line) against the characters that were
    sent: the wire bits (7 data, even parity) of each character read in place of a sent one, 8 for
    a sent character not read at all; characters read that were never sent are not counted."""
    c = res.chars[res.chars["is_break"] == 0]
    # each character read as a wire byte: even parity when its parity was right, odd when not
    got = bytes(w ^ (0 if p else 0x80)
                for w, p in zip(add_parity(bytes(int(v) & 0x7F for v in c["value"])), c["parity_ok"]))
    want = add_parity(sent)
    sm = SequenceMatcher(None, [g & 0x7F for g in got], [w & 0x7F for w in want], autojunk=False)
    errors = 0
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            errors += sum(1 for g, w in zip(got[i1:i2], want[j1:j2]) if g != w)      # parity bit
        elif tag in ("replace", "insert"):
            k = min(i2 - i1, j2 - j1) if tag == "replace" else 0
            errors += count_bit_errors(got[i1:i1 + k], want[j1:j1 + k])
            errors += 8 * (j2 - j1 - k)
    return errors


def disturbance_faults(quantity, amount, opt, chars: bytes, baud: float, base_index: int, direction: str,
                       seed: int) -> tuple[list[Fault], int]:
    """Faults that make the line deliver what a receiver meeting `opt` reads from `chars` sent with
    the disturbance; and the number of bit errors."""
    if quantity == "noise":
        wf = synthesize(chars, opt.name, baud=baud, samples_per_bit=16, noise=amount, seed=seed)
    elif quantity == "level":
        mid = (opt.nominal_mark + opt.nominal_space) / 2
        wf = synthesize(chars, opt.name, baud=baud, samples_per_bit=16, seed=seed,
                        levels=(mid + (opt.nominal_mark - mid) * amount, mid + (opt.nominal_space - mid) * amount))
    elif quantity == "loop_current":
        wf = synthesize(chars, opt.name, baud=baud, samples_per_bit=16, seed=seed,
                        levels=(amount, opt.nominal_space))
    else:
        raise ValueError(quantity)
    res = decode(wf.samples, wf.sample_rate, opt.name, baud=baud, thresholds=opt.receiver_thresholds())
    got = res.chars
    faults, bit_errors = [], 0
    # pair decoded characters with sent ones by start time
    starts = np.array([c.t_start_ns for c in wf.chars], dtype=np.float64)
    bit_ns = 1e9 / baud
    decoded = {}
    for v, t, par in zip(got["value"], got["t_start_ns"], got["parity_ok"]):
        k = int(np.argmin(np.abs(starts - t))) if len(starts) else 0
        if len(starts) and abs(starts[k] - t) < bit_ns / 2 and k not in decoded:
            decoded[k] = (int(v), bool(par))
    for k, c in enumerate(wf.chars):
        want = chars[k]
        if k not in decoded:
            faults.append(Fault("drop", direction, at=base_index + k))
            bit_errors += 8
            continue
        v, par = decoded[k]
        wire = add_parity(bytes([v & 0x7F]))[0] ^ (0 if par else 0x80)
        diff = (want ^ wire) & 0xFF
        for bit in range(8):
            if diff >> bit & 1:
                faults.append(Fault("bit_flip", direction, at=base_index + k, bit=bit))
                bit_errors += 1
    return faults, bit_errors


@params(quantity=("the disturbance swept: " + ", ".join(f"{q} ({u})" for q, u in UNITS.items()), ""),
        amount=("how much of it, in the quantity's unit (sweep this)", "per quantity"),
        exchanges=("reads per step; the success rate is over these", ""),
        register=("the register read (profile register name)", "", "register"),
        direction=("where the disturbance is applied", ""),
        interface=("the interface option; empty: the bench's", ""),
        repeats=("NAK repeats the client may use; -1: the profile's", ""),
        min_success=("success rate at or above which a step counts as working", "fraction"),
        must_work_at=("the amount up to which communication must work (the requirement); -1: none", "per quantity"),
        coupling=("level margin off the current loop: the option's unit per generator volt; 0: the default", "unit/V"))
@needs("port bench: instruments for noise, level, loop_current (baud_error and ber: embedded only); "
       "loop_current: the current-loop interface", _margin_need)
@case("electrical/margin", clause="IEC 62055-52 §6.2 physical interface: margins",
      title="sweep a disturbance (baud error, bit error rate, noise, level, loop current) until communication "
            "fails; success rate and bit errors against the amount",
      params={"quantity": "baud_error", "amount": 0.0, "exchanges": 3, "register": "tokenStatus",
              "direction": "to_meter", "interface": "", "repeats": -1, "min_success": 1.0, "must_work_at": -1.0,
              "coupling": 0.0},
      choices={"quantity": QUANTITIES, "direction": ("to_meter", "to_hhu", "both"),
               "interface": ("", "optical", "current-loop", "voltage")})
def margin(ctx):
    b, p = ctx.bench, ctx.profile
    q, amount = ctx.params["quantity"], ctx.params["amount"]
    direction = ctx.params["direction"]
    repeats = ctx.params["repeats"]
    opt = _option(ctx)
    if q == "loop_current" and opt.name != "current-loop":
        raise BenchUnsupported(f"a loop-current margin is for the current-loop interface, not {opt.name}")
    inst = b.instruments(opt.name) if q in ("noise", "loop_current", "level") else None
    line = b.line
    if inst is None:
        hint = {"baud_error": "a baud error is a line fault",
                "ber": "bit errors at a rate are line faults"}.get(q, _NO_INSTRUMENTS)
        line = b.need_line(f"a {q} margin sweep", hint)
    # which instrument disturbs: the generator (noise; level off the current loop), else the supply
    by_generator = q == "noise" or (q == "level" and opt.name != "current-loop")
    if inst is not None and not by_generator:
        inst.need("supply")
    gen = inst.generator() if inst is not None and by_generator else None
    unit = GENERATOR_NOISE_UNIT if gen is not None and q == "noise" else UNITS[q]
    reg = p.registers[ctx.params["register"]]
    offset_v = _level_offset_v(opt, amount, ctx.params["coupling"]) if gen is not None and q == "level" else 0.0

    def disturb(i, hhu):
        """Apply the amount for exchange i; returns the line faults to set (instruments: none)."""
        if gen is not None:
            ch = inst.generator_channel
            if q == "noise" and amount:
                gen.noise(ch, amplitude=amount)
                gen.output_on(ch)
            elif q == "level" and offset_v:
                gen.dc(ch, offset_v)
                gen.output_on(ch)
            else:
                gen.output_off(ch)
            return []
        if inst is not None:      # the supply's current limit, the loop in constant current
            mark_ma = amount if q == "loop_current" else amount * opt.nominal_mark
            inst.power_loop(current_limit_a=mark_ma / 1000.0)
            return []
        if q == "baud_error":
            return [Fault("baud_error", direction, percent=amount)] if amount else []
        if q == "ber":
            return [Fault("bit_flip", direction, ber=amount, seed=i + 1)] if amount else []
        ctx.stand_in(STAND_IN_DISTURBANCE)
        req = ReadCommand.of(reg.register_id, limits=hhu.profile.limits).to_bytes(parity=True)
        copies = 1 + hhu.profile.protocol.nak_repeats
        faults, _ = disturbance_faults(q, amount, opt, req * copies, hhu.port.baud, line.sent("to_meter"),
                                       "to_meter", seed=i + 1)
        return faults

    def undisturb():
        if inst is None:
            line.faults = []
        elif gen is not None:
            gen.output_off(inst.generator_channel)
        else:
            inst.power_loop()

    hhu = b.session()
    if repeats >= 0:
        hhu.profile = b.with_repeats(repeats)
    n = ctx.params["exchanges"]
    # bit errors: from the scope where the bench has instruments, else from the virtual line's record
    counter = _ScopeBitErrors(ctx, inst, hhu, reg, direction) if inst is not None and inst.has("scope") else None
    first_try = done = errors = chars = 0
    loop_ma = []
    try:
        for i in range(n):
            t0 = _clock.now_ns()
            faults = disturb(i, hhu)
            if inst is None:
                line.faults = faults
            if inst is not None and not by_generator and inst.has("meter"):
                dmm = inst.open("meter")
                dmm.configure_current_dc()
                r = dmm.current_dc()
                if r.value is not None:
                    loop_ma.append(r.value * 1e3)
            if counter is not None:
                counter.arm(hhu)
            ex, ok = None, False
            try:
                _, ex = hhu.read(reg.name)
                ok = True
            except ClientError as e:
                ex = e.exchange
            if ex is not None:
                ctx.exchanges([ex])
            if counter is not None:
                e_, c_ = counter.collect(ex)
                errors, chars = errors + e_, chars + c_
            undisturb()
            if ok:
                done += 1
                first_try += ex.attempts == 1 and ex.naks_sent == 0 and not ex.recovered
            else:
                b.drop_session()  # BreakCommand on the clean line: the meter back to its start
                hhu = b.session()
                if repeats >= 0:
                    hhu.profile = b.with_repeats(repeats)
            if counter is None and line is not None:
                hit = [c for c in line.record()
                       if c.t_start_ns >= t0 and c.index >= 0 and (direction == "both" or c.direction == direction)]
                kept = [c for c in hit if c.line >= 0]     # a dropped character: 8 bits lost
                chars += len(hit)
                errors += 8 * (len(hit) - len(kept)) + count_bit_errors(
                    bytes(c.sent & 0xFF for c in kept), bytes(c.line & 0xFF for c in kept))
    finally:
        try:
            undisturb()
            if gen is not None:
                gen.wait_complete()         # its output off before the case goes on (it stays open)
        except BaseException:
            if gen is not None:
                inst.discard("generator")   # every output off; the next step opens it afresh
            raise
        finally:
            hhu.profile = p
    ctx.info("amount", amount, unit)
    if inst is not None:
        ctx.note(source="generator" if gen is not None else "supply",
                 instrument=inst.model("generator" if gen is not None else "supply"), option=opt.name,
                 bench=b.spec.kind)
    if gen is not None and q == "level":
        ctx.info("generator d.c. offset", offset_v, "V")
    if loop_ma:
        ctx.measure("loop current (meter)", float(np.mean(loop_ma)), "mA")
    ctx.info("success_rate", first_try / n)
    ctx.info("completion_rate", done / n)
    if counter is None and line is None:
        ctx.note(bit_errors="not counted: no scope on this bench")
        return
    ctx.info("bit_errors", errors, "bits")
    ctx.info("bit_error_ratio", errors / (chars * 10) if chars else 0.0)
    if counter is not None:
        ctx.note(bit_errors_from=counter.where)


def _level_offset_v(opt, amount: float, coupling: float) -> float:
    """The generator's d.c. offset (V) that moves the mark level towards the middle of the swing to
    `amount` times its nominal distance from it (`coupling`: the option's unit per generator volt,
    0 for rig.bench.loop.COUPLING)."""
    k = coupling or COUPLING[opt.name]
    mid = (opt.nominal_mark + opt.nominal_space) / 2
    return (1.0 - amount) * (mid - opt.nominal_mark) / k


class _ScopeBitErrors:
    """Bit errors of a margin step from the scope: armed before each exchange on the disturbed
    direction's channel (both: the request's, with both channels read over a screen that also
    holds the answer, coming within twice the DUT's undisturbed reaction time, at most tr_max),
    decoded with a receiver's fixed thresholds, compared with what was sent."""

    def __init__(self, ctx, inst, hhu, reg, direction: str):
        self.ctx, self.inst = ctx, inst
        self.dirs = ("to_meter", "to_hhu") if direction == "both" else (direction,)
        self.request = ReadCommand.of(reg.register_id, limits=ctx.profile.limits).to_bytes()
        self.answer = b""
        self.tr_s = ctx.profile.timing.tr_max_ns / 1e9
        if "to_hhu" in self.dirs:       # what the DUT answers on the undisturbed line, and how soon
            _, ref = hhu.read(reg.name)
            ctx.exchanges([ref])
            self.answer = _seven_bit(ref.answer)
            if ref.tr_ns and ref.tr_ns > 0:
                self.tr_s = min(2 * ref.tr_ns / 1e9, self.tr_s)
        self.channels = [inst.scope_channel(d) for d in self.dirs]
        self.baud = 0.0
        self.scope: Any = None           # the scope driver, set up at the first arm
        self.where = ", ".join(_where(inst, ch, d) for ch, d in zip(self.channels, self.dirs))
        self.captured = 0

    def arm(self, hhu) -> None:
        baud = float(hhu.port.baud)
        if self.scope is None or baud != self.baud:
            self.baud = baud
            screen = char_time_ns(baud, hhu.port.fmt, SCREEN_CHARS) / 1e9
            if len(self.dirs) > 1:      # the request, the answer after twice the undisturbed tr
                screen = 2 * screen + self.tr_s
            self.screen = screen
            self.scope = _setup_scope(self.inst, self.channels, self.channels[0], baud, screen)
        self.scope.arm()

    def collect(self, ex) -> tuple[int, int]:
        """(bit errors, characters sent) of the exchange just over.  What the client sent is known
        (its request).  What the DUT sent is not, on a real bench: it is taken to be whichever of
        its possible answers (the undisturbed answer, a NAK) is closest to what was read, and
        nothing when nothing was read on its side (it did not answer)."""
        request = _seven_bit(ex.request) if ex is not None and ex.request else self.request
        try:
            self.scope.wait_triggered(timeout=0.5 + self.screen)
        except InstrumentError:    # no start bit crossed the receiver's threshold: nothing was read
            self.scope.stop()
            if self.dirs[0] == "to_meter":
                return 8 * len(request), len(request)
            return 0, 0            # nothing from the DUT (cannot tell whether it answered)
        opt = self.inst.option
        gain = self.inst.probe_gain()
        errors = total = 0
        for ch, d in zip(self.channels, self.dirs):
            wf = self.scope.waveform(ch)
            samples = (wf.volts / gain).astype(np.float32)
            res = decode(samples, wf.sample_rate, opt.name, baud=self.baud, thresholds=opt.receiver_thresholds())
            if d == "to_meter":
                sent = request
            elif not len(res.chars):
                sent = b""
            else:
                sent = min((self.answer, NAK), key=lambda c: bit_errors(res, c))
            errors += bit_errors(res, sent)
            total += len(sent)
            if self.captured == 0:   # the step's first capture is kept with it
                self.ctx.capture(f"{_where(self.inst, ch, d)} {opt.name}", samples, wf.sample_rate, opt.name)
        self.captured += 1
        return errors, total


@summary("electrical/margin")
def margin_summary(ctx, steps):
    """The failure threshold: the smallest amount whose steps did not all succeed."""
    q = ctx.params["quantity"]
    unit = next((m.unit for s in steps for m in s.measurements if m.name == "amount"), UNITS[q])
    by_amount: dict[float, list] = {}
    for s in steps:
        rate = s.value("success_rate")
        if rate is not None:      # a step that could not run (an error) says nothing of the margin
            by_amount.setdefault(s.params["amount"], []).append(rate)
    ordered = sorted(by_amount, key=abs) if q in ("baud_error", "noise", "ber") else sorted(
        by_amount, reverse=True)
    last_good = threshold = None
    for a in ordered:
        rate = sum(by_amount[a]) / len(by_amount[a])
        if rate >= ctx.params["min_success"]:
            if threshold is None:
                last_good = a
        elif threshold is None:
            threshold = a
    ctx.info("last amount that communicated", last_good, unit)
    ctx.info("failure threshold", threshold, unit)
    must = ctx.params["must_work_at"]
    if must >= 0:  # every amount from nominal up to the worst case the plan names communicated
        growing = q in ("baud_error", "noise", "ber")
        ok = last_good is not None and (abs(last_good) >= must if growing else last_good <= must)
        ctx.check(f"communicates at {must:g} {unit}", ok, "plan (worst case the interface allows)")
