"""``rig decode CAPTURE``: a scope capture becomes characters, frames and measurements with verdicts."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from rig.measurement import FAIL, PASS
from rig.physical.options import OPTIONS


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "decode", help="decode a scope capture (.npy, .csv, .wav) into characters and measurements",
        description="Decode a UART line capture on an IEC 62056-21 interface option: characters with "
                    "parity/framing verdicts, the frames in them, bit timings, levels and measurements "
                    "checked against the option's limits.")
    p.add_argument("capture", help=".npy (read in chunks: any size), .csv (time,value or value) or .wav")
    p.add_argument("--option", choices=sorted(OPTIONS), default=None,
                   help="interface option: units, polarity and limits (default: the capture's "
                        "sidecar .json from `rig bench capture`, else current-loop)")
    p.add_argument("--baud", default="auto", help="nominal speed in Bd, or 'auto' (default)")
    p.add_argument("--framing", default="7E1", help="character format, e.g. 7E1 (default), 8N1")
    p.add_argument("--sample-rate", type=float, default=None, dest="sample_rate",
                   help="samples per second (.wav, timed .csv and a .npy with its sidecar .json carry it)")
    p.add_argument("--scale", type=float, default=1.0, help="value = raw * scale + offset")
    p.add_argument("--offset", type=float, default=0.0)
    p.add_argument("--thresholds", type=float, nargs=2, metavar=("LOW", "HIGH"), default=None,
                   help="comparator thresholds in the option's unit (default: from the levels)")
    p.add_argument("--chunk", type=int, default=1 << 20, help="samples per chunk (default 1048576)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--vcd", metavar="FILE", default=None,
                   help="write the decoded line as VCD with the characters annotated")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from rig.physical.analysis import decode, load_capture

    args.option_default = args.option is None
    if args.option is None:
        args.option = "current-loop"
    sidecar = Path(args.capture).with_suffix(".json")  # `rig bench capture` writes one
    if args.capture.endswith(".npy") and sidecar.exists():
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError) as e:
            print(f"rig decode: {sidecar}: {e}", file=sys.stderr)
            return 2
        if args.sample_rate is None and meta.get("sample_rate"):
            args.sample_rate = float(meta["sample_rate"])
        if args.option_default and meta.get("option") in OPTIONS:
            args.option = meta["option"]
    try:
        cap = load_capture(args.capture, args.sample_rate)
        if cap.sample_rate is None:
            cap.sample_rate = args.sample_rate
        res = decode(cap, args.sample_rate, args.option, args.baud, args.framing,
                     thresholds=args.thresholds, scale=args.scale, offset=args.offset, chunk=args.chunk,
                     keep_edges=bool(args.vcd), find_frames=True)
    except (OSError, ValueError) as e:
        print(f"rig decode: {args.capture}: {e}", file=sys.stderr)
        return 2
    if args.vcd:
        try:
            write_vcd(args.vcd, res)
        except OSError as e:
            print(f"rig decode: --vcd {args.vcd}: {e}", file=sys.stderr)
            return 2
    if args.json:
        print(res.to_json())
    else:
        print_report(res)
    return 0 if res.passed else 1


def _show(v: int) -> str:
    names = {1: "SOH", 2: "STX", 3: "ETX", 4: "EOT", 6: "ACK", 0x15: "NAK", 10: "LF", 13: "CR"}
    if v in names:
        return f"<{names[v]}>"
    return chr(v) if 32 <= v < 127 else f"<{v:02X}>"


def print_report(res, out=None) -> None:
    out = out or sys.stdout
    c = res.chars
    w = out.write
    if res.parts:
        w(f"option {res.option.name} ({res.option.unit}), {res.fmt}, {res.sample_rate:g} samples/s, "
          f"{len(res.parts)} parts at their own speeds, levels from {res.level_source}\n")
        for k, (a, b, r) in enumerate(res.parts, 1):
            w(f"  part{k}: samples {a}..{b - 1} ({a / res.sample_rate:.6f} .. {b / res.sample_rate:.6f} s), "
              f"{r.nominal_baud:g} Bd nominal, {r.baud:.1f} Bd measured, {len(r.chars)} characters\n")
    else:
        w(f"option {res.option.name} ({res.option.unit}), {res.fmt}, {res.sample_rate:g} samples/s, "
          f"{res.baud:.1f} Bd measured, levels from {res.level_source}\n")
    w(f"{len(c)} characters:\n")
    text = "".join("<BREAK>" if b else _show(int(v)) for v, b in zip(c["value"], c["is_break"]))
    w(f"  {text}\n")
    bad = [(i, r) for i, r in enumerate(c) if not (r["parity_ok"] and r["framing_ok"]) or r["is_break"]]
    for i, r in bad[:50]:
        what = "break" if r["is_break"] else ", ".join(
            k for k, ok in (("parity error", r["parity_ok"]), ("framing error", r["framing_ok"])) if not ok)
        w(f"  #{i} at {r['t_start_ns'] / 1e9:.9f} s: {_show(int(r['value']))} {what}\n")
    if len(bad) > 50:
        w(f"  ... {len(bad) - 50} more\n")
    if res.frames:
        w(f"{len(res.frames)} frames:\n")
        for f in res.frames:
            errs = ", ".join(f.errors_list())
            w(f"  {f.kind:<14} chars {f.start}-{f.end} {'ok' if f.ok else 'BAD: ' + errs}\n")
    w("measurements:\n")
    for m in res.measurements:
        w(f"  {m}\n")
    w(f"verdict: {PASS if res.passed else FAIL}\n")


def write_vcd(path, res) -> None:
    """The decoded line (mark = 1) and each character as a string signal, timescale 1 ns."""
    e = res.edges
    ns = 1e9 / res.sample_rate
    with open(path, "w", encoding="ascii") as f:
        f.write("$date rig decode $end\n$version rig $end\n$timescale 1ns $end\n")
        f.write("$scope module uart $end\n$var wire 1 ! line $end\n$var string 1 \" char $end\n"
                "$upscope $end\n$enddefinitions $end\n")
        events = [(0, "1!")]
        if e is not None:    # none under heavy noise (characters from bit averages): characters only
            events += [(int(np.floor(p * ns + 0.5)), f"{int(m)}!") for p, m in zip(e["pos"], e["mark"])]
        for r in res.chars:
            label = "BREAK" if r["is_break"] else _show(int(r["value"])).strip("<>")
            if not r["parity_ok"] and not r["is_break"]:
                label += "(PE)"
            if not r["framing_ok"] and not r["is_break"]:
                label += "(FE)"
            label = "".join(ch if 33 <= ord(ch) < 127 else "_" for ch in label) or "_"
            events.append((int(r["t_start_ns"]), f's{label} "'))
            events.append((int(r["t_end_ns"]), 's "'))
        events.sort(key=lambda ev: ev[0])
        last = None
        for t, v in events:
            if t != last:
                f.write(f"#{t}\n")
                last = t
            f.write(v + "\n")

