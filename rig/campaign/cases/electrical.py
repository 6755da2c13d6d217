"""Electrical validation per interface option: levels, transitions, bit timing, and margins.

Until the virtual bench (rig.bench.virtual) and its drivers are in, the "scope" is a capture
synthesised from the virtual line's wire record (rig.physical.synth) and decoded by the rig's UART
decoder (rig.physical.analysis), and a physical disturbance (noise, level, loop current) reaches
the line as a channel: the characters a receiver meeting the option would read from the disturbed
waveform (synthesised, then decoded with the option's fixed receiver thresholds) become bit-flip
and drop faults on the virtual line. Baud error and bit error rate are line faults directly.
"""
from __future__ import annotations

import numpy as np

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
    hhu = b.session()
    if repeats >= 0:
        hhu.profile = b.with_repeats(repeats)
    reg = p.registers[ctx.params["register"]]
    n = ctx.params["exchanges"]
    first_try = done = bit_errors = chars = 0
    opt = _option(ctx)
    try:
        for i in range(n):
            t0 = _clock.now_ns()
            idx = line.sent("to_meter")
            if q == "baud_error":
                faults = [Fault("baud_error", direction, percent=amount)] if amount else []
            elif q == "ber":
                faults = [Fault("bit_flip", direction, ber=amount, seed=i + 1)] if amount else []
            else:
                req = ReadCommand.of(reg.register_id).to_bytes(parity=True)
                copies = 1 + hhu.profile.protocol.nak_repeats
                faults, _ = disturbance_faults(q, amount, opt, req * copies, hhu.port.baud, idx, "to_meter",
                                               seed=i + 1)
            line.faults = faults
            try:
                _, ex = hhu.read(reg.name)
                done += 1
                first_try += ex.attempts == 1 and ex.naks_sent == 0 and not ex.recovered
                ctx.exchanges([ex])
            except ClientError as e:
                if e.exchange is not None:
                    ctx.exchanges([e.exchange])
                line.faults = []
                b.drop_session()  # BreakCommand on the clean line: the meter back to its start
                hhu = b.session()
                if repeats >= 0:
                    hhu.profile = b.with_repeats(repeats)
            finally:
                line.faults = []
            for c in line.record():
                if c.t_start_ns >= t0 and c.index >= 0 and (direction == "both" or c.direction == direction):
                    chars += 1
                    bit_errors += 8 if c.line < 0 else bin((c.sent ^ c.line) & 0xFF).count("1")
    finally:
        line.faults = []
        hhu.profile = p
    ctx.info("amount", amount, UNITS[q])
    ctx.info("success_rate", first_try / n)
    ctx.info("completion_rate", done / n)
    ctx.info("bit_errors", bit_errors, "bits")
    ctx.info("bit_error_ratio", bit_errors / (chars * 10) if chars else 0.0)


@summary("electrical/margin")
def margin_summary(ctx, steps):
    """The failure threshold: the smallest amount whose steps did not all succeed."""
    q = ctx.params["quantity"]
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
    ctx.info("last amount that communicated", last_good, UNITS[q])
    ctx.info("failure threshold", threshold, UNITS[q])
    must = ctx.params["must_work_at"]
    if must >= 0:  # every amount from nominal up to the worst case the plan names communicated
        growing = q in ("baud_error", "noise", "ber")
        ok = last_good is not None and (abs(last_good) >= must if growing else last_good <= must)
        ctx.check(f"communicates at {must:g} {UNITS[q]}", ok, "plan (worst case the interface allows)")
