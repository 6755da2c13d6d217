"""The `rig` command. Each subcommand parses its arguments and calls into the layers."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# before numpy is imported: its OpenBLAS starts a worker thread per extra CPU that spins for its first
# tenth of a second or so; rig does no BLAS work, and that core is the one the virtual line's
# threads and the meter's server loop run on
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import logging  # noqa: E402
import time  # noqa: E402

from rig import __version__  # noqa: E402
from rig.errors import RigError  # noqa: E402

_log = logging.getLogger("rig")


def _iso_time(t: float) -> str:
    """A wall-clock time as ISO 8601 with milliseconds and the local offset."""
    from datetime import datetime
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="milliseconds")


class UsageError(RigError):
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
    name = "standard input" if args.file == "-" else args.file
    if not data:
        raise UsageError(f"{name}: empty: no bytes to parse")
    profile = load_profile(args.profile)
    framer = _framing.Framer.from_profile(profile, parity=args.parity)
    frames = framer.feed(data) + framer.flush()
    bad = 0
    for f in frames:
        errors = f.errors_list() if f.kind != "garbage" else [f"garbage: {len(f.data)} byte(s) outside any frame"]
        msg = None
        if f.ok:
            try:
                msg = message_from_frame(f, profile.limits)
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
    if bad and args.parity == "none" and _looks_like_7e1(data):
        print(f"rig: hint: {name} has bytes with the top bit set, as 7E1 wire bytes (a sniffer's or logic "
              "analyser's capture) have: try `--parity even`", file=sys.stderr)
    return 1 if bad else 0


def _looks_like_7e1(data: bytes) -> bool:
    """Bytes with bit 7 set where 7-bit characters are expected, and (nearly) every byte of even
    parity: wire bytes with their parity bit still on (a few may be garbled)."""
    from rig._framing import parity_errors

    high = sum(1 for b in data if b & 0x80)
    return high > 0 and len(data) - parity_errors(data) >= 0.9 * len(data)


# --- rig line, serve, read, token --------------------------------------------------------------------
def _wait_for_ctrl_c(what) -> int:
    import threading
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        what.close()
    return 0


def cmd_line(args) -> int:
    from rig.link import VirtualLine

    line = VirtualLine(hhu_mode=args.hhu_mode, meter_mode=args.meter_mode).start()
    if args.json:
        print(json.dumps({"hhu_port": line.hhu_port, "meter_port": line.meter_port}), flush=True)
    else:
        print(f"hhu side:   {line.hhu_port}\nmeter side: {line.meter_port}\n"
              "7E1 programs: a pty keeps 8 bits without parity whatever is asked; the line restores each "
              "tty when its last program closes it, so opening at 7E1 succeeds every time "
              "(use --hhu-mode/--meter-mode chars for such a program)\n"
              "running until Ctrl-C", flush=True)
    return _wait_for_ctrl_c(line)


def _policy(args):
    from rig.server import TimingPolicy
    return TimingPolicy(args.policy)


def cmd_serve(args) -> int:
    from rig.profile import load_profile
    from rig.server import MeterEmulator, MeterServer

    profile = load_profile(args.profile)
    emu = MeterEmulator(profile, policy=_policy(args))

    from rig import _clock

    def log(event):
        # wall-clock time (ISO 8601, local with its offset) of the request's end, or of now, beside
        # the monotonic t_*_ns of the event (rig._clock)
        now_ns = _clock.now_ns()
        t_ns = event.get("t_request_end_ns") or now_ns
        wall = _iso_time(time.time() - (now_ns - t_ns) / 1e9)
        if args.json:
            print(json.dumps({"time": wall, **event}), flush=True)
        else:
            ans = f" -> {event['answer']!r}" if event["answer"] is not None else ""
            print(f"{wall} [{event['state']}] {event['event']}{ans}", flush=True)
        _log.info("serve: %s [%s] %s", event["event"], event["state"], event)

    server = MeterServer(_open_port(args.port, profile), profile, emulator=emu, log=log)
    print(f"meter emulator on {args.port} ({server.port.latency}); Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.port.close()
    return 0


def _open_port(url, profile):
    from rig.link import Port, PortError
    try:
        return Port(url, baud=profile.character.initial_baud, fmt=profile.character.format)
    except PortError as e:
        raise UsageError(str(e)) from None


class _Session:
    """A client on --port, or on the embedded default (the meter emulator on a virtual line). On the
    way out (done, error, Ctrl-C) the client signs off if the meter may be in a session."""

    def __init__(self, args):
        from rig.profile import load_profile
        self.profile = load_profile(args.profile)
        self.embedded = None
        from rig.client import Client
        try:
            Client.check_address(args.address or "", self.profile.limits)
        except ValueError as e:
            raise UsageError(f"--address: {e}") from None
        url = args.port
        if url is None:
            from rig.embedded import EmbeddedMeter
            self.embedded = EmbeddedMeter(self.profile).start()
            url = self.embedded.hhu_port
        self.client = Client(_open_port(url, self.profile), self.profile, address=args.address)

    def __enter__(self):
        return self.client

    def __exit__(self, *exc):
        try:
            self.client.__exit__(*exc)
            if self.client.sign_off_error:
                print(f"rig: warning: sign-off failed: {self.client.sign_off_error}", file=sys.stderr)
        finally:
            if self.embedded is not None:
                self.embedded.close()


def _exchange_or_none(e):
    return e.exchange.as_dict() if e.exchange else None


def cmd_read(args) -> int:
    from rig.client import ClientError

    out, bad = [], 0
    with _Session(args) as hhu:
        try:
            hhu.identify()
            for reg in args.registers:
                try:
                    value, ex = hhu.read(reg)
                    out.append({"register": reg, "value": value, "exchange": ex.as_dict()})
                    bad += not ex.ok  # a tr or ta out of limits: the value is right, the meter is not
                except ClientError as e:
                    bad += 1
                    out.append({"register": reg, "error": str(e), "exchange": _exchange_or_none(e)})
            hhu.sign_off()
        except ClientError as e:
            print(f"rig: error: {e}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        for r in out:
            if "error" in r:
                print(f"{r['register']:22s} ERROR {r['error']}")
            else:
                ex = r["exchange"]
                trs = ", ".join(f"{t:.1f}" for t in ex["trs_ms"])
                print(f"{r['register']:22s} {r['value']:20s} tr {trs} ms  {'ok' if ex['ok'] else 'FAIL'}")
    return 1 if bad else 0


def _print_token(result) -> None:
    if result.known:
        ms = "" if result.execution_ns is None else f", executed in {result.execution_ns / 1e6:.0f} ms"
        print(f"token {result.token}: {result.status_name} (tokenStatus {result.status}){ms}")
    else:
        print(f"token {result.token}: {result.outcome_text}")
    for name, (code, text) in result.results.items():
        print(f"  {name:22s} {code:3d} {text}")
    for note in result.notes:
        print(f"  note: {note}")


def cmd_token(args) -> int:
    from rig.client import ClientError, TokenLockoutActive
    from rig.tokens import Token, TokenError

    try:
        Token.parse(args.token)
    except TokenError as e:
        raise UsageError(str(e)) from None

    with _Session(args) as hhu:
        try:
            hhu.identify()
            result = hhu.transfer_token(args.token)
            hhu.sign_off()
        except TokenLockoutActive as e:
            print(f"rig: error: {e}", file=sys.stderr)
            return 1
        except ClientError as e:
            print(f"rig: error: {e}", file=sys.stderr)
            if e.result is not None and not e.result.known:
                print(f"rig: token {args.token}: {e.result.outcome_text}", file=sys.stderr)
                return 3
            return 2
    if args.json:
        print(json.dumps(result.as_dict(), indent=1))
    else:
        _print_token(result)
    return 0 if result.accepted else 3 if not result.known else 1


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

    p = sub.add_parser("line", help="start a virtual line and print its two tty paths",
                       description="A virtual serial line (two pty pairs and a bridge at line rate) for "
                                   "use with other programs; runs until Ctrl-C.")
    p.add_argument("--hhu-mode", choices=["wire", "chars"], default="wire",
                   help="wire: the HHU side writes 7E1 wire bytes (rig); chars: 7-bit characters "
                        "(a program that set 7E1 on the tty)")
    p.add_argument("--meter-mode", choices=["wire", "chars"], default="wire")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_line)

    p = sub.add_parser("serve", help="run the meter emulator on a port",
                       description="The meter emulator (IEC 62055-52 server) on any pyserial URL; "
                                   "logs every exchange.")
    p.add_argument("--port", required=True, metavar="URL")
    p.add_argument("--profile", metavar="FILE")
    p.add_argument("--policy", choices=["typical", "min", "max"], default="typical",
                   help="reaction time tr: typical, at the minimum or at the maximum")
    p.add_argument("--json", action="store_true", help="one JSON object per exchange")
    p.set_defaults(func=cmd_serve)

    for name, helptext in (("read", "read registers from a meter"),
                           ("token", "transfer a token to a meter and read the results")):
        p = sub.add_parser(name, help=helptext,
                           description=helptext + "; with no --port, from the meter emulator on a "
                                                  "virtual line (the embedded default).")
        p.add_argument("--port", metavar="URL", help="the meter's port (any pyserial URL)")
        p.add_argument("--address", metavar="ADDRESS", default="",
                       help="the device address of the IDRequest (0-9 A-Z a-z space, up to 32); "
                            "default: none, any device answers")
        p.add_argument("--profile", metavar="FILE")
        p.add_argument("--json", action="store_true")
        if name == "read":
            p.add_argument("registers", nargs="+", metavar="REGISTER", help="register name or registerID")
            p.set_defaults(func=cmd_read)
        else:
            p.add_argument("token", metavar="TOKEN", help="20-digit STS token")
            p.set_defaults(func=cmd_token)

    from rig import bench_cli, decode_cli
    from rig.campaign import cli as campaign_cli
    decode_cli.add_parser(sub)
    bench_cli.add_parser(sub)
    campaign_cli.add_parsers(sub)
    # the common options, before or after the command (`rig -v run` or `rig run -v`)
    _common_options(ap, None)

    def every_command(parser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for p in action.choices.values():
                    yield p
                    yield from every_command(p)
    for p in every_command(ap):
        _common_options(p, argparse.SUPPRESS)
    return ap


def _common_options(p: argparse.ArgumentParser, default) -> None:
    g = p.add_argument_group("output")
    have = {a for act in p._actions for a in act.option_strings}
    if "-v" not in have:
        g.add_argument("-v", "--verbose", action="count", default=0 if default is None else default,
                       help="more, on standard error: -v each case as it ends, -vv each step")
    g.add_argument("-q", "--quiet", action="count", default=0 if default is None else default,
                   help="less: no progress bars or per-case lines; errors and the results only")
    g.add_argument("--log-file", metavar="FILE", default=None if default is None else default,
                   help="also log everything (each step, each exchange of `rig serve`) with "
                        "ISO 8601 times to FILE")
    g.add_argument("--no-color", action="store_true", default=False if default is None else default,
                   help="no colours (as the NO_COLOR environment variable does)")


def _setup_logging(args) -> None:
    verbose = args.verbose if isinstance(getattr(args, "verbose", 0), int) else 0
    level = logging.ERROR if args.quiet else {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    root = logging.getLogger("rig")
    root.setLevel(logging.DEBUG)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(level)
    console.setFormatter(logging.Formatter("rig: %(message)s"))
    root.addHandler(console)
    if args.log_file:
        try:
            fh = logging.FileHandler(args.log_file, encoding="utf-8")
        except OSError as e:
            raise UsageError(f"--log-file {args.log_file}: cannot write: {e.strerror or e}") from None
        fh.setLevel(logging.DEBUG)
        fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        fmt.formatTime = lambda record, datefmt=None: _iso_time(record.created)  # type: ignore[method-assign]
        fh.setFormatter(fmt)
        root.addHandler(fh)
        _log.debug("rig %s: %s", __version__, " ".join(sys.argv))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.no_color:
        os.environ["NO_COLOR"] = "1"       # rich (summary table, progress bars) honours it
    try:
        _setup_logging(args)
        return args.func(args)
    except RigError as e:             # every error rig raises on purpose names what and where
        print(f"rig: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:         # a session, if any, was signed off on the way out; a run stops by itself
        print("\nrig: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
