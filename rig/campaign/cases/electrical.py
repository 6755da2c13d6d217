"""Electrical validation per interface option: levels, transitions, bit timing, and margins.

On the embedded default (meter-dut, kind "embedded") the cases go through the instruments of the
virtual bench (rig.bench.virtual, one per interface option, reached through the pyvisa drivers of
rig.bench.drivers as hardware is; see Bench.instruments):

- levels: the scope armed on the start-bit edge of one direction, one exchange, the capture read
  through the Scope driver and decoded by rig.physical.analysis.decode; its measurements (levels,
  transitions, bit timing) are judged against the option's limits; the current loop's mark current
  is also read with the Meter.
- margin, noise: Gaussian noise of `amount` Vpp from the Generator (output on during the exchange).
- margin, loop_current: the Supply's current limit set to `amount` mA (the loop in constant current),
  the loop current read with the Meter.
- margin, baud error and bit error rate: line faults (no instrument does that); level: the stand-in.

Elsewhere (hhu-dut, or no pyvisa) the stand-ins remain: the "scope" is a capture synthesised from
the virtual line's wire record (rig.physical.synth), and a physical disturbance reaches the line as
the characters a receiver meeting the option would read from the disturbed waveform (synthesised,
then decoded with the option's fixed receiver thresholds), as bit-flip and drop faults.
"""
from __future__ import annotations

import numpy as np

from dataclasses import replace

from rig import _clock
from rig.campaign.cases import case, summary
from rig.client import ClientError
from rig.link import Fault
from rig.physical.analysis import decode
from rig.physical.options import get_option
from rig.physical.synth import synthesize
from rig.protocol import ReadCommand

QUANTITIES = ("baud_error", "ber", "noise", "level", "loop_current")
UNITS = {"baud_error": "%", "ber": "1/bit", "noise": "rms (option unit)", "level": "x nominal swing",
         "loop_current": "mA"}
GENERATOR_NOISE_UNIT = "Vpp (generator noise)"
SCREEN_CHARS = 80          # characters the scope's screen holds after the trigger (an answer's worth)


def _option(ctx):
    return get_option(ctx.params.get("interface") or ctx.bench.spec.interface)


@case("electrical/levels", clause="IEC 62055-52 §6.2 physical interface (IEC 62056-21 §4), §6.3 bit timing",
      title="levels, transitions and bit timing of one exchange's characters against the option's limits",
      roles=("meter-dut", "hhu-dut"),
      params={"interface": "", "direction": "to_hhu", "samples_per_bit": 20.0, "rise_time_ui": 0.02,
              "noise": 0.0, "register": "tokenStatus"},
      choices={"direction": ("to_hhu", "to_meter"), "interface": ("", "optical", "current-loop", "voltage")})
def levels(ctx):
    b = ctx.bench
    line = b.need_line("a capture synthesised from the wire record")
    opt = _option(ctx)
    inst = b.instruments(opt.name) if b.spec.role == "meter-dut" else None
    if inst is not None:
        return _levels_by_scope(ctx, inst, opt, line)
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
    for m in res.measurements:
        ctx.record.measurements.append(m)
    sent = bytes(c for _, c in chars)
    ctx.measure("characters decoded as on the wire", sum(1 for a, b_ in zip(res.values, sent) if a == b_),
                "count", len(sent), len(sent), "IEC 62056-21 §5")
    ctx.capture(f"{ctx.params['direction']} {opt.name}", samples, wf.sample_rate, opt.name)
    ctx.note(option=opt.name, baud=baud, characters=len(sent))


def _levels_by_scope(ctx, inst, opt, line):
    """Levels and bit timing from a single capture of the scope, through its driver."""
    b = ctx.bench
    direction = ctx.params["direction"]
    hhu = b.session()
    baud = float(hhu.port.baud)
    vb = inst.virtual
    # the DUT's signal as the virtual scope sees it (edge time and noise of the line; assumed)
    vb.settings["rise_time_s"] = ctx.params["rise_time_ui"] / baud
    vb.settings["scope_noise"] = ctx.params["noise"]
    gain = inst.probe_gain()
    mark, space = vb.line_levels()
    ch = inst.scope_channel(direction)
    scope = inst.open("scope")
    span = max(abs(mark - space) * gain, 1e-3)
    scope.configure_channel(ch, scale=span / 6, offset=-(mark + space) / 2 * gain)
    screen = SCREEN_CHARS * 10 / baud
    pre = 2 / baud                                  # two bits before the trigger
    scope.configure_timebase(screen / 12, offset=screen / 2 - pre)
    scope.edge_trigger(ch, level=(mark + space) / 2 * gain, slope="falling" if mark > space else "rising")
    scope.single()
    t_arm = _clock.now_ns()
    _, ex = hhu.read(ctx.params["register"])
    ctx.exchanges([ex])
    scope.wait_triggered(timeout=5.0 + screen)
    wf = scope.waveform(ch)
    samples = (wf.volts / gain).astype(np.float32)
    res = decode(samples, wf.sample_rate, opt.name, baud=baud)
    where = f"scope {inst.model('scope')} CH{ch} ({direction})"
    for m in res.measurements:
        ctx.record.measurements.append(replace(m, basis=f"{m.basis}; {where}" if m.basis else where))
    rec = [c for c in line.record() if c.direction == direction and c.index >= 0 and c.line >= 0
           and c.t_start_ns >= t_arm]
    sent = bytes(c.line & 0x7F for c in rec[:max(len(res.values), 1)])
    ctx.measure("characters decoded as on the wire", sum(1 for a, b_ in zip(res.values, sent) if a == b_),
                "count", len(sent), len(sent), f"IEC 62056-21 §5; {where} against the wire record")
    ctx.capture(f"{where} {opt.name}", samples, wf.sample_rate, opt.name)
    if opt.name == "current-loop":
        from rig.physical.options import CURRENT_LOOP
        dmm = inst.open("meter")
        dmm.configure_current_dc()
        i = dmm.current_dc()
        lim = CURRENT_LOOP.tx_mark
        ctx.measure("mark_current (meter)", None if i.value is None else i.value * 1e3, "mA", lim.low, lim.high,
                    f"{lim.basis}; meter {inst.model('meter')} in the loop")
    ctx.note(option=opt.name, baud=baud, characters=len(res.values), source="scope", scope=inst.model("scope"),
             channel=ch, sample_rate=wf.sample_rate)


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
        v &= 0x7F
        pbit = bin(v).count("1") % 2 if par else 1 - bin(v).count("1") % 2
        wire = v | pbit << 7
        diff = (want ^ wire) & 0xFF
        for bit in range(8):
            if diff >> bit & 1:
                faults.append(Fault("bit_flip", direction, at=base_index + k, bit=bit))
                bit_errors += 1
    return faults, bit_errors


@case("electrical/margin", clause="IEC 62055-52 §6.2 physical interface: margins",
      title="sweep a disturbance (baud error, bit error rate, noise, level, loop current) until communication "
            "fails; success rate and bit errors against the amount",
      params={"quantity": "baud_error", "amount": 0.0, "exchanges": 3, "register": "tokenStatus",
              "direction": "to_meter", "interface": "", "repeats": -1, "min_success": 1.0, "must_work_at": -1.0},
      choices={"quantity": QUANTITIES, "direction": ("to_meter", "to_hhu", "both"),
               "interface": ("", "optical", "current-loop", "voltage")})
def margin(ctx):
    b, p = ctx.bench, ctx.profile
    line = b.need_line("a margin sweep")
    q, amount = ctx.params["quantity"], ctx.params["amount"]
    direction = ctx.params["direction"]
    repeats = ctx.params["repeats"]
    opt = _option(ctx)
    inst = b.instruments(opt.name) if q in ("noise", "loop_current") else None
    gen = None
    if inst is not None and q == "noise":
        gen = inst.generator()
    unit = GENERATOR_NOISE_UNIT if gen is not None else UNITS[q]

    def disturb(i, hhu):
        """Apply the amount for exchange i; returns the line faults to set (instruments: none)."""
        if gen is not None:
            ch = inst.generator_channel
            if amount:
                gen.noise(ch, amplitude=amount)
                gen.output_on(ch)
            else:
                gen.output_off(ch)
            return []
        if inst is not None:      # loop current: the supply's current limit, the loop in constant current
            inst.power_loop(current_limit_a=amount / 1000.0)
            return []
        if q == "baud_error":
            return [Fault("baud_error", direction, percent=amount)] if amount else []
        if q == "ber":
            return [Fault("bit_flip", direction, ber=amount, seed=i + 1)] if amount else []
        req = ReadCommand.of(reg.register_id).to_bytes(parity=True)
        copies = 1 + hhu.profile.protocol.nak_repeats
        faults, _ = disturbance_faults(q, amount, opt, req * copies, hhu.port.baud, line.sent("to_meter"),
                                       "to_meter", seed=i + 1)
        return faults

    def undisturb():
        if inst is None:
            line.faults = []
        elif gen is not None:
            gen.output_off(inst.generator_channel)
        elif inst is not None:
            inst.power_loop()

    hhu = b.session()
    if repeats >= 0:
        hhu.profile = b.with_repeats(repeats)
    reg = p.registers[ctx.params["register"]]
    n = ctx.params["exchanges"]
    first_try = done = bit_errors = chars = 0
    loop_ma = []
    try:
        for i in range(n):
            t0 = _clock.now_ns()
            faults = disturb(i, hhu)
            if inst is None:
                line.faults = faults
            if inst is not None and q == "loop_current":
                dmm = inst.open("meter")
                dmm.configure_current_dc()
                r = dmm.current_dc()
                if r.value is not None:
                    loop_ma.append(r.value * 1e3)
            try:
                _, ex = hhu.read(reg.name)
                done += 1
                first_try += ex.attempts == 1 and ex.naks_sent == 0 and not ex.recovered
                ctx.exchanges([ex])
            except ClientError as e:
                if e.exchange is not None:
                    ctx.exchanges([e.exchange])
                undisturb()
                b.drop_session()  # BreakCommand on the clean line: the meter back to its start
                hhu = b.session()
                if repeats >= 0:
                    hhu.profile = b.with_repeats(repeats)
            finally:
                undisturb()
            for c in line.record():
                if c.t_start_ns >= t0 and c.index >= 0 and (direction == "both" or c.direction == direction):
                    chars += 1
                    bit_errors += 8 if c.line < 0 else bin((c.sent ^ c.line) & 0xFF).count("1")
    finally:
        try:
            undisturb()
        finally:
            if gen is not None:
                gen.close()       # output off
            hhu.profile = p
    ctx.info("amount", amount, unit)
    if inst is not None:
        ctx.note(source="generator" if gen is not None else "supply",
                 instrument=inst.model("generator" if gen is not None else "supply"), option=opt.name)
    if loop_ma:
        ctx.measure("loop current (meter)", float(np.mean(loop_ma)), "mA")
    ctx.info("success_rate", first_try / n)
    ctx.info("completion_rate", done / n)
    ctx.info("bit_errors", bit_errors, "bits")
    ctx.info("bit_error_ratio", bit_errors / (chars * 10) if chars else 0.0)


@summary("electrical/margin")
def margin_summary(ctx, steps):
    """The failure threshold: the smallest amount whose steps did not all succeed."""
    q = ctx.params["quantity"]
    unit = next((m.unit for s in steps for m in s.measurements if m.name == "amount"), UNITS[q])
    by_amount: dict[float, list] = {}
    for s in steps:
        by_amount.setdefault(s.params["amount"], []).append(s.value("success_rate") or 0.0)
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
