"""The virtual bench itself: its instruments' servers, and what they do to the virtual line
(the package's docstring tells the whole story)."""
from __future__ import annotations

import threading
from dataclasses import replace

import rig.bench.loop as loopmodel
from rig import _clock
from rig.bench.config import VIRTUAL_MODELS, BenchConfig, InstrumentConfig, load_bench
from rig.bench.models import load_model
from rig.bench.safety import DutLimits
from rig.bench.virtual.base import LineSignal, SupplyPowerOn, VirtualInstrument
from rig.bench.virtual.dmm import VirtualMeter
from rig.bench.virtual.generator import VirtualGenerator
from rig.bench.virtual.scope import VirtualScope
from rig.bench.virtual.server import InstrumentServer
from rig.bench.virtual.supply import VirtualSupply
from rig.link.faults import Fault
from rig.physical.options import InterfaceOption, get_option

DEFAULT_MODELS = VIRTUAL_MODELS    # one shipped model per role (rig.bench.config)
DIRECTIONS = ("to_meter", "to_hhu", "both")
FOREVER_NS = 10 ** 18          # a fault window that lasts until the bench removes it

CLASSES = {"scope": VirtualScope, "generator": VirtualGenerator, "supply": VirtualSupply, "meter": VirtualMeter}


def _first(*values):
    """The first of ``values`` that is not None."""
    return next(v for v in values if v is not None)


# =========================================================================== the bench
class VirtualBench:
    """A scope, a generator, a supply and a meter on loopback TCP, acting on a VirtualLine.

    ``models``: role -> model name or InstrumentModel (default :data:`DEFAULT_MODELS`; a role left
    out is not served).  ``config``: a :class:`rig.bench.config.BenchConfig` instead: its option,
    models and channels (the supply's channel powers the loop, the generator's disturbs the line,
    the scope's probes the whole line) are used.  ``settings`` (all optional): ``probes`` {scope
    channel: "to_meter" | "to_hhu" | "both"} (default 1 both, 2 to_meter, 3 to_hhu, 4 both),
    ``supply`` {voltage, current_limit, output} at power-on (default :class:`SupplyPowerOn`: the loop
    powered as an HHU powers it), ``r_loop_ohm``, ``probe_gain`` (V per option unit), ``memory_depth`` (scope
    points, 120 000), ``rise_time_s`` and ``scope_noise`` (rms, option unit) of the scope's view
    (later: :meth:`simulate_signal`), ``seed`` (of the faults' bit errors), ``ports`` {role: TCP
    port} (0: ephemeral), ``host``.  The probe gain and the supply's power-on loop setting come from
    ``settings``, else ``config``'s wiring keys, else the simulation's (rig.bench.loop, assumed).
    """

    def __init__(self, line, option="current-loop", models=None, config=None, settings=None):
        self.line = line
        self.bench_config = config
        cfg = dict(settings or {})
        probes = {1: "both", 2: "to_meter", 3: "to_hhu", 4: "both"}
        chan = {}
        if config is not None:
            option = config.option
            models = {role: ic.model for role, ic in config.instruments.items()}
            chan = {role: ic.channel for role, ic in config.instruments.items() if ic.channel}
            if "scope" in chan:
                probes[chan["scope"]] = "both"
        self.option: InterfaceOption = get_option(option)
        probes.update({int(k): v for k, v in (cfg.get("probes") or {}).items()})
        for ch, d in probes.items():
            if d not in DIRECTIONS:
                raise ValueError(f"settings probes: channel {ch}: {d!r}; expected one of {DIRECTIONS}")
        self.probes = probes
        self.loop_channel = int(chan.get("supply", 1))
        self.generator_channel = int(chan.get("generator", 1))
        self.r_loop_ohm = float(cfg.get("r_loop_ohm", loopmodel.R_LOOP_OHM))
        self.seed = int(cfg.get("seed", 0))
        self._seeds = self.seed * 1000
        self.host = str(cfg.get("host", "127.0.0.1"))
        self.ports_wanted = {str(r): int(p) for r, p in (cfg.get("ports") or {}).items()}
        self.memory_depth = int(cfg.get("memory_depth", 120_000))   # the scope's with :ACQuire:MDEPth AUTO
        # the probe and the loop's supply: the settings', else the bench file's, else the simulation's
        scope = config.instruments.get("scope") if config is not None else None
        supply = config.instruments.get("supply") if config is not None else None
        self._probe_gain = float(_first(cfg.get("probe_gain"), scope and scope.probe_gain,
                                        loopmodel.PROBE_GAIN[self.option.name]))
        s = cfg.get("supply") or {}
        self.supply_power_on = SupplyPowerOn(
            float(_first(s.get("voltage"), supply and supply.loop_voltage, loopmodel.HHU_SUPPLY_V)),
            float(_first(s.get("current_limit"), supply and supply.loop_current_limit, loopmodel.HHU_CURRENT_LIMIT_A)),
            bool(s.get("output", True)))
        self.line_signal = LineSignal(float(cfg.get("rise_time_s", 0.0)), float(cfg.get("scope_noise", 0.0)))
        self._lock = threading.RLock()
        self._started = False
        self._owned: dict[str, tuple[Fault, ...]] = {}
        self._bursts: list[Fault] = []
        self.instruments: dict[str, VirtualInstrument] = {}
        self._servers: dict[str, InstrumentServer] = {}
        self._threads: list[threading.Thread] = []
        for role, m in (DEFAULT_MODELS if models is None else models).items():
            model = load_model(m)
            self.instruments[role] = CLASSES[model.capability](role, model, self)

    def bench(self) -> BenchConfig:
        """The bench configuration with the virtual instruments' resource strings and the wiring
        they simulate (probe gain, the loop's supply), for the drivers: ``bench.bench().open("scope")``."""
        base = self.bench_config or replace(load_bench(None), option=self.option.name,
                                            limits=DutLimits.for_option(self.option))
        inst = {role: self._wired(base.instruments[role] if self.bench_config else InstrumentConfig(role, i.model))
                for role, i in self.instruments.items()}
        return replace(base, instruments=inst).with_resources(self.resources, backend="@py")

    def _wired(self, ic: InstrumentConfig) -> InstrumentConfig:
        """``ic`` with the wiring the virtual bench simulates (rig.bench.config.WIRING) where unset."""
        if ic.role == "scope" and ic.probe_gain is None:
            return replace(ic, probe_gain=self._probe_gain)
        if ic.role == "supply":
            p = self.supply_power_on
            return replace(ic, loop_voltage=_first(ic.loop_voltage, p.voltage),
                           loop_current_limit=_first(ic.loop_current_limit, p.current_limit))
        return ic

    # -- roles
    def by_capability(self, capability: str) -> VirtualInstrument | None:
        """The first instrument that is a ``capability`` (scope, generator, supply, meter), or None."""
        for inst in self.instruments.values():
            if inst.capability == capability:
                return inst
        return None

    @property
    def resources(self) -> dict[str, str]:
        """role -> the VISA resource string of its server (while started)."""
        return {role: f"TCPIP::{self.host}::{srv.server_address[1]}::SOCKET"
                for role, srv in self._servers.items()}

    @property
    def ports(self) -> dict[str, int]:
        """role -> the TCP port of its server (while started)."""
        return {role: srv.server_address[1] for role, srv in self._servers.items()}

    # -- the loop and the line
    @property
    def loop(self) -> loopmodel.LoopState:
        """The loop as the supply powers it (a bench without a supply: the power-on default)."""
        sup = self.by_capability("supply")
        if isinstance(sup, VirtualSupply):
            return sup.state(self.loop_channel)
        s = self.supply_power_on
        return loopmodel.loop_state(s.voltage, s.current_limit, s.output, r_loop_ohm=self.r_loop_ohm)

    def line_levels(self) -> tuple[float, float]:
        """(mark, space) on the line in the option's unit."""
        return loopmodel.levels(self.option, self.loop if self.option.name == "current-loop" else None)

    def probe_gain(self) -> float:
        """Volts at the virtual scope per unit of the option (the simulated probe)."""
        return self._probe_gain

    def simulate_signal(self, rise_time_s: float, noise: float) -> None:
        """Set the line conditions the virtual scope shows from the next waveform synthesised on:
        the edges' rise time (s) and rms noise (option unit). Only the simulation has these: a real
        bench shows the DUT's own."""
        self.line_signal = LineSignal(rise_time_s, noise)

    def _seed(self) -> int:
        self._seeds += 1
        return self._seeds

    def _own(self, slot: str, faults: tuple[Fault, ...]) -> None:
        """Replace the bench's faults in ``slot`` on the line, leaving everyone else's."""
        with self._lock:
            now = _clock.now_ns()
            # a burst over is harmless (characters are put on the line at or after now) and goes
            self._bursts = [b for b in self._bursts if (b.start_ns or 0) + b.duration_ns > now]  # bursts always have a start
            old = [f for fs in self._owned.values() for f in fs]
            self._owned[slot] = tuple(faults)
            self._owned["burst"] = tuple(self._bursts)
            mine = [f for fs in self._owned.values() for f in fs]
            others = [f for f in self.line.faults if not any(f is o for o in old)]
            self.line.faults = tuple(others) + tuple(mine)

    @property
    def faults(self) -> tuple[Fault, ...]:
        """The faults the bench has on the line now (bursts that are over left out)."""
        now = _clock.now_ns()
        with self._lock:
            return tuple(f for fs in self._owned.values() for f in fs
                         if f.start_ns is None or f.start_ns + f.duration_ns > now)

    def loop_changed(self) -> None:
        """The supply changed: the loop's faults on the line follow (current loop only)."""
        if not self._started or self.option.name != "current-loop":
            return
        with self._lock:
            state = self.loop
            prev = self._owned.get("loop", ())
            ber = state.ber
            if ber >= 1.0:
                if prev and prev[0].kind == "drop":
                    return
                faults = tuple(Fault("drop", direction=d, at=self.line.sent(d), count=1 << 62)
                               for d in ("to_meter", "to_hhu"))
            elif ber > 0.0:
                if prev and prev[0].kind == "noise" and prev[0].ber == ber:
                    return
                faults = (Fault("noise", ber=ber, start_ns=_clock.now_ns(), duration_ns=FOREVER_NS,
                                seed=self._seed()),)
            else:
                faults = ()
            self._own("loop", faults)
        self.generator_changed(None)   # the generator's effect depends on the loop's levels

    def generator_changed(self, gen: VirtualGenerator | None) -> None:
        """The generator changed: its standing disturbance of the line follows (a burst waits for
        its trigger)."""
        found = gen or self.by_capability("generator")
        if not self._started or not isinstance(found, VirtualGenerator):
            return
        gen = found
        with self._lock:
            ch = self.generator_channel
            ber = 0.0 if gen.burst(ch) else gen.effect(ch, self.option, self.loop)
            kind = "bit_flip" if gen.function(ch) == "pulse" else "noise"
            prev = self._owned.get("generator", ())
            if (not prev and ber == 0) or (prev and prev[0].ber == ber and prev[0].kind == kind):
                return
            faults: tuple[Fault, ...] = ()
            if ber > 0:
                if kind == "noise":
                    faults = (Fault("noise", ber=ber, start_ns=_clock.now_ns(), duration_ns=FOREVER_NS,
                                    seed=self._seed()),)
                else:
                    faults = (Fault("bit_flip", ber=ber, seed=self._seed()),)
            self._own("generator", faults)

    def generator_noise(self) -> float:
        """The rms, in the option's unit, of the generator's noise on the line now (what the scope
        shows; the bit errors it causes are its faults): its output on with the noise function and
        no burst, else 0.  Bursts are not shown (assumed: the scope's view of them is not modelled)."""
        gen = self.by_capability("generator")
        if not isinstance(gen, VirtualGenerator):
            return 0.0
        ch = self.generator_channel
        with gen.lock:
            if not gen.output(ch) or gen.burst(ch) or gen.function(ch) != "noise":
                return 0.0
            return loopmodel.COUPLING[self.option.name] * abs(gen.vpp(ch)) / loopmodel.NOISE_CREST

    def generator_trigger(self, gen: VirtualGenerator) -> None:
        """A trigger: with burst on and the output on, a noise window of the burst's duration."""
        ch = self.generator_channel
        if not (gen.burst(ch) and gen.output(ch)):
            return
        with self._lock:
            ber = gen.effect(ch, self.option, self.loop)
            if ber <= 0:
                return
            self._bursts.append(Fault("noise", ber=ber, start_ns=_clock.now_ns(),
                                      duration_ns=gen.burst_ns(ch), seed=self._seed()))
            self._own("generator", self._owned.get("generator", ()))

    # -- life
    def start(self) -> VirtualBench:
        """Serve every instrument on its port and put the supply's and generator's effects on the line."""
        try:
            for role, inst in self.instruments.items():
                srv = InstrumentServer(inst, self.host, self.ports_wanted.get(role, 0))
                self._servers[role] = srv
                t = threading.Thread(target=srv.serve_forever, name=f"virtual-{role}", daemon=True)
                t.start()
                self._threads.append(t)
        except OSError:
            self.close()
            raise
        self._started = True
        self.loop_changed()
        self.generator_changed(None)
        return self

    def close(self) -> None:
        """Stop the servers and take the bench's faults off the line (everyone else's stay)."""
        for srv in self._servers.values():
            srv.close_all()
        for t in self._threads:
            t.join(2)
        self._servers.clear()
        self._threads.clear()
        with self._lock:
            self._started = False
            self._bursts = []
            old = [f for fs in self._owned.values() for f in fs]
            self._owned.clear()
            self.line.faults = tuple(f for f in self.line.faults if not any(f is o for o in old))

    def __enter__(self) -> VirtualBench:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
