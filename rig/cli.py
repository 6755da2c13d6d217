"""The `rig` command. Each subcommand parses its arguments and calls into the layers."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rig import __version__


class UsageError(Exception):
    """Bad input named with where it is; printed as `rig: error: ...`, exit code 2."""


# --- rig parse -------------------------------------------------------------------------------------
def _read_input(path: str, hex_text: bool) -> bytes:
    if path == "-":
        raw = sys.stdin.buffer.read()
        name = "<stdin>"
    else:
        try:
            raw = Path(path).read_bytes()
        except OSError as e:
            raise UsageError(f"{path}: cannot read: {e.strerror}") from None
        name = path
    if not hex_text:
        return raw
    out = bytearray()
    for lineno, line in enumerate(raw.decode("ascii", "replace").splitlines(), 1):
        line = line.split("#", 1)[0]
        digits = "".join(line.replace("0x", " ").replace(":", " ").replace("-", " ").split())
        try:
            out += bytes.fromhex(digits)
        except ValueError:
            bad = next((c for c in digits if c not in "0123456789abcdefABCDEF"), None)
            what = f"character {bad!r}" if bad else "an odd number of hex digits"
            raise UsageError(f"{name}: line {lineno}: not hex bytes ({what})") from None
    return bytes(out)


def _message_json(msg) -> dict:
    from dataclasses import fields
    d = {"type": type(msg).__name__}
    d.update({f.name: getattr(msg, f.name) for f in fields(msg)})
    return d


def cmd_parse(args) -> int:
    from rig import _framing
    from rig.profile import load_profile
    from rig.protocol import ProtocolError, message_from_frame

    data = _read_input(args.file, args.hex)
    profile = load_profile(args.profile)
    framer = _framing.Framer.from_profile(profile, parity=args.parity)
    frames = framer.feed(data) + framer.flush()
    bad = 0
    for f in frames:
        errors = f.errors_list() if f.kind != "garbage" else [f"garbage: {len(f.data)} byte(s) outside any frame"]
        msg = None
        if f.ok:
            try:
                msg = message_from_frame(f)
            except ProtocolError as e:  # a field the framer lets through but the message refuses
                errors.append(f"message: {e}")
        ok = not errors
        bad += not ok
        if args.json:
            rec = {"offset": f.start, "end": f.end, "kind": f.kind, "ok": ok, "errors": errors,
                   "bytes": f.data.hex()}
            if msg is not None:
                rec["message"] = _message_json(msg)
            print(json.dumps(rec))
        else:
            what = str(msg) if msg is not None else repr(f.data)[2:-1]
            if len(what) > 60:
                what = what[:57] + "..."
            verdict = "ok" if ok else "FAIL " + "; ".join(errors)
            print(f"{f.start:8d}  {f.kind:14s}  {what:60s}  {verdict}")
    if not args.json:
        print(f"{len(frames)} frame(s), {len(frames) - bad} ok, {bad} with errors, {len(data)} bytes",
              file=sys.stderr)
    return 1 if bad else 0


# --- the command -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="rig", description="Test rig for the STS two-way virtual token carrier (IEC 62055-52).")
    ap.add_argument("--version", action="version", version=f"rig {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("parse", help="frames and messages in a raw byte log of a session",
                       description="Print each frame of a raw byte log (binary, or hex text with "
                                   "--hex): offset, kind, decoded message, verdict with errors. "
                                   "Exit code 1 when any frame has errors.")
    p.add_argument("file", metavar="FILE|-", help="the log; - reads standard input")
    p.add_argument("--hex", action="store_true", help="the log is hex text (spaces, ':' and '#' comments allowed)")
    p.add_argument("--parity", choices=["even", "none"], default="none",
                   help="even: bytes are 7E1 wire bytes, check and strip parity; none (default): 7-bit characters")
    p.add_argument("--profile", metavar="FILE", help="profile overriding the default (limits, ta)")
    p.add_argument("--json", action="store_true", help="one JSON object per frame")
    p.set_defaults(func=cmd_parse)

    try:
        from rig import decode_cli
    except ImportError:
        pass
    else:
        decode_cli.add_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    from rig.profile import ProfileError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, ProfileError) as e:
        print(f"rig: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
