"""``rig bench ...``: the virtual bench, the configured instruments, one scope capture.

    rig bench serve [--config FILE] [--write-config OUT.toml]   # line + meter emulator + virtual bench
    rig bench list [--config FILE]                              # each instrument's *IDN? over pyvisa
    rig bench capture --config FILE --out capture.npy           # one scope capture, for `rig decode`

``serve`` prints the VISA resource strings and the HHU side's tty path and runs until Ctrl-C;
``--write-config`` writes a bench configuration (rig.bench.config) naming the running virtual
instruments, which ``list``, ``capture`` and any other bench user then take with ``--config``.
``capture`` saves the samples in the interface option's unit (volts / probe gain) as float32 .npy,
with a sidecar ``.json`` (sample rate, option, unit, probe gain, time of the first sample relative to
the trigger), and prints the ``rig decode`` command line that reads it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import tomli_w

from rig.errors import RigError
from rig.physical.options import OPTIONS


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "bench", help="bench instruments: the virtual bench, the configured instruments, a scope capture",
        description="Bench instruments over pyvisa. Without hardware, `rig bench serve` runs the "
                    "embedded default: a virtual line with the meter emulator and a virtual bench "
                    "(scope, generator, supply, meter as SCPI servers on loopback).")
    sub = p.add_subparsers(dest="bench_command", required=True, metavar="ACTION")

    s = sub.add_parser("serve", help="run a virtual line, the meter emulator and the virtual bench",
                       description="Start a virtual line with the meter emulator on its meter side and a "
                                   "virtual bench acting on it; print the instruments' VISA resource "
                                   "strings and the line's tty paths; run until Ctrl-C.")
    s.add_argument("--config", metavar="FILE", help="bench configuration (TOML): option, models, channels")
    s.add_argument("--option", choices=sorted(OPTIONS), default=None,
                   help="interface option (default: the configuration's, else current-loop)")
    s.add_argument("--profile", metavar="FILE", help="profile of the meter emulator")
    s.add_argument("--write-config", metavar="FILE", dest="write_config",
                   help="write a bench configuration naming the running instruments (for --config)")
    s.add_argument("--seed", type=int, default=0, help="seed of the injected bit errors (default 0)")
    s.add_argument("--json", action="store_true", help="one JSON object with the resources and tty paths")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("list", help="the configured instruments and their *IDN? answers",
                       description="Each configured instrument: role, model, resource, and its *IDN? "
                                   "over pyvisa (matched against the model) or why it is not reachable. "
                                   "Exit code 1 when any is not reachable.")
    s.add_argument("--config", metavar="FILE",
                   help="bench configuration (TOML); default: the virtual bench (resources only while "
                        "`rig bench serve --write-config` runs)")
    s.add_argument("--timeout", type=float, default=2.0, help="seconds per answer (default 2)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("capture", help="one scope capture of the line, saved as .npy for `rig decode`",
                       description="Arm the scope (edge trigger on the start bit, single sweep), wait for "
                                   "the acquisition, read the channel, save it in the option's unit.")
    s.add_argument("--config", metavar="FILE", required=True, help="bench configuration with a scope")
    s.add_argument("--out", metavar="FILE.npy", required=True)
    s.add_argument("--channel", type=int, default=None, help="scope channel (default: the configured one, else 1)")
    s.add_argument("--timebase", type=float, default=0.05, help="s/div (default 0.05)")
    s.add_argument("--position", type=float, default=None,
                   help="screen centre relative to the trigger, s (default: the trigger one division "
                        "from the left edge)")
    s.add_argument("--level", type=float, default=None,
                   help="trigger level, V (default: the middle of the receiver's thresholds)")
    s.add_argument("--probe-gain", type=float, default=None, dest="probe_gain",
                   help="volts at the scope per unit of the option (default: the bench file's "
                        "instruments.scope.probe_gain)")
    s.add_argument("--now", action="store_true",
                   help="do not wait for an edge: stop and take the screen as it is")
    s.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the trigger (default 30)")
    s.set_defaults(func=cmd_capture)
    return p


# --- serve ------------------------------------------------------------------------------------------
def bench_config_text(bench_config) -> str:
    """A bench configuration TOML for ``bench_config`` (its option, models, channels, resources),
    written by tomli-w (every value escaped as TOML wants)."""
    from rig.bench.config import WIRING

    instruments = {}
    for role, ic in bench_config.instruments.items():
        t = {"model": ic.model.name, "resource": ic.resource, "backend": ic.backend, "channel": ic.channel}
        instruments[role] = {k: v for k, v in t.items() if v} | {"timeout": ic.timeout}
        # how the instruments are wired (the virtual bench's: its simulation's figures)
        instruments[role] |= {k: getattr(ic, k) for k in WIRING.get(role, {}) if getattr(ic, k) is not None}
    return "# rig bench configuration\n" + tomli_w.dumps({"bench": {"option": bench_config.option},
                                                          "instruments": instruments})


def cmd_serve(args) -> int:
    import threading

    from rig.bench.config import load_bench
    from rig.bench.virtual import VirtualBench
    from rig.embedded import EmbeddedMeter
    from rig.profile import load_profile

    try:
        cfg = load_bench(args.config) if args.config else None
    except RigError as e:
        print(f"rig bench serve: {e}", file=sys.stderr)
        return 2
    if cfg is not None and args.option and args.option != cfg.option:
        print(f"rig bench serve: --option {args.option} contradicts {args.config}: option {cfg.option}",
              file=sys.stderr)
        return 2
    meter = EmbeddedMeter(load_profile(args.profile)).start()
    try:
        bench = VirtualBench(meter.line, option=args.option or "current-loop", config=cfg,
                             settings={"seed": args.seed}).start()
    except BaseException:
        meter.close()
        raise
    try:
        if args.write_config:
            Path(args.write_config).write_text(bench_config_text(bench.bench()), encoding="utf-8")
        if args.json:
            print(json.dumps({"resources": bench.resources, "hhu_port": meter.hhu_port,
                              "meter_port": meter.line.meter_port, "option": bench.option.name,
                              "models": {r: i.model.name for r, i in bench.instruments.items()},
                              "config": args.write_config}), flush=True)
        else:
            print(f"virtual bench ({bench.option.name}), meter emulator on the line's meter side")
            print(f"  hhu side:   {meter.hhu_port}   (rig read --port {meter.hhu_port} ...)")
            print(f"  meter side: {meter.line.meter_port}   (served by the emulator)")
            for role, res in bench.resources.items():
                print(f"  {role:<10s} {res}   {bench.instruments[role].model.model}")
            if args.write_config:
                print(f"  bench configuration: {args.write_config}   (rig bench list --config ...)")
            print("running until Ctrl-C", flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        bench.close()
        meter.close()
    return 0


# --- list -------------------------------------------------------------------------------------------
def _probe(ic, timeout: float) -> dict:
    """*IDN? of one configured instrument, raw over pyvisa (no driver: report, do not refuse)."""
    row = {"role": ic.role, "model": ic.model.name, "resource": ic.resource, "reachable": False}
    if not ic.resource:
        row["error"] = "no resource configured"
        return row
    try:
        import pyvisa

        backend = ic.backend or ("@py" if ic.resource.upper().startswith(("TCPIP", "ASRL")) else "")
        rm = pyvisa.ResourceManager(backend) if backend else pyvisa.ResourceManager()
        res = rm.open_resource(ic.resource, read_termination=ic.model.read_termination,
                               write_termination=ic.model.write_termination, timeout=int(timeout * 1000))
        try:
            idn = res.query(ic.model.command("idn?")).strip()  # type: ignore[attr-defined]  # a message-based resource
        finally:
            res.close()
    except Exception as e:  # noqa: BLE001 - pyvisa raises many kinds; each is a reason to report
        row["error"] = f"{type(e).__name__}: {e}"
        return row
    row.update(reachable=True, idn=idn, idn_matches=ic.model.idn_matches(idn))
    return row


def cmd_list(args) -> int:
    from rig.bench.config import load_bench

    try:
        cfg = load_bench(args.config)
    except RigError as e:
        print(f"rig bench list: {e}", file=sys.stderr)
        return 2
    rows = [_probe(ic, args.timeout) for ic in cfg.instruments.values()]
    if args.json:
        print(json.dumps({"option": cfg.option, "instruments": rows}, indent=1))
    else:
        where = args.config or "the virtual bench (not running here: rig bench serve --write-config FILE)"
        print(f"bench: {where}, option {cfg.option}")
        for r in rows:
            if r["reachable"]:
                note = "" if r["idn_matches"] else "   (does NOT match the model's idn pattern)"
                state = f"{r['idn']}{note}"
            else:
                state = f"not reachable: {r['error']}"
            print(f"  {r['role']:<10s} {r['model']:<16s} {r['resource'] or '-':<36s} {state}")
    return 0 if all(r["reachable"] and r["idn_matches"] for r in rows) else 1


# --- capture ----------------------------------------------------------------------------------------
def cmd_capture(args) -> int:
    import numpy as np

    from rig.bench.config import ConfigError, load_bench
    from rig.physical.options import get_option

    out = Path(args.out)
    if out.suffix.lower() != ".npy":
        print(f"rig bench capture: --out {out}: expected a .npy file", file=sys.stderr)
        return 2
    try:
        cfg = load_bench(args.config)
        opt = get_option(cfg.option)
        ic = cfg.instruments.get("scope")
        if ic is None:
            raise ConfigError(args.config, "instruments.scope", "no scope configured")
        ch = args.channel or ic.channel or 1
        gain = args.probe_gain or cfg.wiring("scope", "probe_gain")   # no default: the user's probe
        mark, space = opt.nominal_mark * gain, opt.nominal_space * gain
        level = args.level if args.level is not None else 0.5 * sum(opt.receiver_thresholds()) * gain
        div = abs(mark - space) / 5.0            # the swing over five of the eight divisions
        with cfg.open("scope") as scope:
            scope.configure_channel(ch, div, -(mark + space) / 2.0)
            position = args.position if args.position is not None else 5.0 * args.timebase
            scope.configure_timebase(args.timebase, position)
            if args.now:
                scope.stop()
            else:
                scope.edge_trigger(ch, level, "falling" if opt.mark_is_high else "rising", sweep="single")
                scope.acquire(args.timeout)
            wf = scope.waveform(ch)
            idn = scope.idn
    except (RigError, ValueError) as e:   # ValueError: a number pyvisa or numpy refuses
        print(f"rig bench capture: {e}", file=sys.stderr)
        return 2
    values = (np.asarray(wf.volts, dtype=np.float64) / gain).astype(np.float32)
    np.save(out, values)
    meta = {"sample_rate": wf.sample_rate, "option": opt.name, "unit": opt.unit, "probe_gain_v_per_unit": gain,
            "t0_s": wf.t0, "channel": ch, "points": int(len(values)), "scope": idn,
            "resource": cfg.instruments["scope"].resource}
    side = out.with_suffix(".json")
    side.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    print(f"{out}: {len(values)} samples at {wf.sample_rate:.10g} Sa/s in {opt.unit} ({opt.name}); "
          f"details in {side}")
    print(f"decode with: rig decode {out} --sample-rate {wf.sample_rate:.10g} --option {opt.name}")
    return 0

