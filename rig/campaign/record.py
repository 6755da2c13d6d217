"""The run's record: what was tested and how, kept in the store with the results (Store.set_record).

    rig        rig's version, Python, the host and platform, the command line, for each execution
    plan       the plan's file, its [profile] overrides, each case's parameters that differ from the
               case library's defaults
    profile    the effective profile: its file, and every value that differs from the shipped
               default with its source (user profile, plan)
    dut.NAME   the DUT's identity as read from it on bench NAME: the IDResponse, FOIN and
               softwareVersion (or why they could not be read)
    bench.NAME the bench: kind, role, interface, port; each instrument's model, VISA resource,
               channel and *IDN? answer; the probes and the probe gain
    time       how the wall time divided (rig.campaign.timesplit), one entry per execution (a run,
               then each resume)

Reading a DUT or an instrument never stops the run: what cannot be read is recorded as
"unknown: <why>".
"""
from __future__ import annotations

import os
import platform
import socket
import sys
import time

import rig
from rig.campaign.cases import LIBRARY

UNKNOWN = "unknown"


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))


def _command() -> str:
    """The command line that ran the campaign (`rig ...` for python -m rig)."""
    if not sys.argv or not sys.argv[0]:
        return UNKNOWN
    head, prog = os.path.split(sys.argv[0])
    if prog == "__main__.py":                         # python -m rig, python -m pytest, ...
        prog = "rig" if os.path.basename(head) == "rig" else f"python -m {os.path.basename(head)}"
    return " ".join([prog, *sys.argv[1:]])


def _append(store, run_id: int, key: str, item) -> None:
    have = store.record(run_id).get(key) or []
    store.set_record(run_id, key, [*have, item])


def record_start(store, run_id: int, plan, profile) -> None:
    """rig, plan and profile, when a run starts or resumes (each execution is added to `rig`)."""
    _append(store, run_id, "rig", {
        "version": getattr(rig, "__version__", UNKNOWN), "python": platform.python_version(),
        "host": socket.gethostname(), "platform": platform.platform(), "pid": os.getpid(),
        "command": _command(), "started": _iso(time.time())})
    cases = {}
    for spec in plan.cases:
        defaults = LIBRARY[spec.use].params if spec.use in LIBRARY else {}
        changed = {k: v for k, v in spec.params.items() if defaults.get(k, object()) != v}
        entry = {}
        if changed:
            entry["params"] = changed
        if spec.sweep:
            entry["sweep"] = spec.sweep
        if spec.repeat != 1:
            entry["repeat"] = spec.repeat
        if entry:
            cases[spec.key] = entry
    store.set_record(run_id, "plan", {"name": plan.name, "path": plan.path, "description": plan.description,
                                      "profile_file": plan.profile_file, "profile_overrides": plan.profile_overrides,
                                      "cases": cases})
    try:
        diff = profile.differences()
    except Exception as e:  # noqa: BLE001 - the record says so; the run goes on
        diff = f"{UNKNOWN}: {type(e).__name__}: {e}"
    store.set_record(run_id, "profile", {"path": str(profile.path), "differences": diff})


def read_identity(bench) -> dict:
    """The DUT's identity as it gives it: IDResponse, FOIN, softwareVersion (meter-dut benches)."""
    if bench.spec.role != "meter-dut":
        return {"role": bench.spec.role,
                "note": "the DUT is an HHU: it identifies itself by no register; its requests are in the exchanges"}
    out = {"role": bench.spec.role, "read": _iso(time.time())}
    try:
        hhu = bench.session()
        out["IDResponse"] = str(hhu.identity).removeprefix("IDResponse ") if hhu.identity is not None else UNKNOWN
    except Exception as e:  # noqa: BLE001 - a DUT that does not identify: recorded, the cases will say more
        out["IDResponse"] = f"{UNKNOWN}: {e}"
        bench.drop_session(sign_off=False)
        return out
    for name in ("FOIN", "softwareVersion"):
        reg = bench.profile.registers.get(name)
        if reg is None or "r" not in reg.access:
            out[name] = f"{UNKNOWN}: no readable register {name} in the profile"
            continue
        try:
            out[name], _ = hhu.read(name)
        except Exception as e:  # noqa: BLE001
            out[name] = f"{UNKNOWN}: {e}"
            bench.drop_session(sign_off=False)
            try:
                hhu = bench.session()
            except Exception:  # noqa: BLE001
                break
    if bench.emulator is not None:
        out["emulated"] = "the rig's own meter emulator (embedded bench)"
    return out


def record_dut(store, run_id: int, name: str, bench) -> None:
    ident = read_identity(bench)
    key = f"dut.{name}"
    have = store.record(run_id).get(key) or []
    same = [{k: v for k, v in x.items() if k != "read"} for x in have]
    if {k: v for k, v in ident.items() if k != "read"} not in same:   # a resume on another DUT shows
        store.set_record(run_id, key, [*have, ident])


def _idn(inst, role: str) -> str:
    d = inst._drivers.get(role)
    idn = getattr(d, "idn", None)
    if idn:
        return idn
    try:                     # not used by a case: asked now (the bench is closing anyway)
        drv = inst.config.open(role)
        try:
            return getattr(drv, "idn", None) or UNKNOWN
        finally:
            drv.close()
    except Exception as e:  # noqa: BLE001
        return f"{UNKNOWN}: {e}"


def bench_facts(name: str, bench) -> dict:
    s = bench.spec
    out = {"kind": s.kind, "role": s.role, "interface": s.interface, "policy": s.policy,
           "port": s.port or (f"virtual line ({bench.port_url})" if bench.line is not None else None)}
    if s.bench_config:
        out["bench_config"] = s.bench_config
    insts = []
    for option, inst in bench._instruments.items():
        for role, ic in inst.config.instruments.items():
            insts.append({"role": role, "option": option, "model": ic.model.name, "resource": ic.resource,
                          "channel": ic.channel, "idn": _idn(inst, role),
                          "virtual": inst.virtual is not None})
        out["probes"] = dict(inst.probes)
        out["probe_gain"] = inst.stated_probe_gain
    if not insts and s.config is not None:
        for role, ic in s.config.instruments.items():
            insts.append({"role": role, "model": ic.model.name, "resource": ic.resource, "channel": ic.channel,
                          "idn": "not asked: no case of this run used the instruments"})
        out["probes"] = dict(s.probes)
        out["probe_gain"] = s.probe_gain
    out["instruments"] = insts
    return out


def record_bench(store, run_id: int, name: str, bench) -> None:
    try:
        facts = bench_facts(name, bench)
    except Exception as e:  # noqa: BLE001 - the record says so; no result is lost
        facts = {"error": f"{UNKNOWN}: {type(e).__name__}: {e}"}
    store.set_record(run_id, f"bench.{name}", facts)


def record_time(store, run_id: int, ledger, t0_ns: int, t1_ns: int, wall0: float, wire_benches) -> None:
    """The execution's time split; benches without a wire record contribute their stored exchanges."""
    try:
        others = [e for e in store.run_exchanges(run_id) if e["bench"] not in wire_benches
                  and (e["request_start_ns"] or 0) >= t0_ns]
        ledger.add_exchanges(others)
        split = ledger.split(t0_ns, t1_ns)
        _append(store, run_id, "time", {"started": _iso(wall0), "wall_s": (t1_ns - t0_ns) / 1e9, "split": split,
                                        "line_from": "wire record" if not others else
                                        "wire record and stored exchanges"})
    except Exception as e:  # noqa: BLE001 - never lose a run over its accounting
        print(f"rig: time split of run {run_id} not recorded: {type(e).__name__}: {e}", file=sys.stderr)
