"""What every virtual instrument shares: its model's command tree (rig.bench.scpi), an identity
matching the model, channel checks, and a hook after each change."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Protocol

import rig.bench.loop as loopmodel
from rig.bench.loop import LoopState
from rig.bench.scpi import ScpiError, ScpiInstrument
from rig.physical.options import InterfaceOption


@dataclass(frozen=True)
class LineSignal:
    """The DUT's signal as the virtual scope sees it, beyond the wire record (assumed: the
    simulation's, no real DUT's): the edges' rise time and the rms noise in the option's unit."""

    rise_time_s: float = 0.0
    noise: float = 0.0

    def __post_init__(self) -> None:
        for name in ("rise_time_s", "noise"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"line signal {name}: expected a finite number >= 0, got {v!r}")


@dataclass(frozen=True)
class SupplyPowerOn:
    """The loop channel of the virtual supply at power-on (default: powered as an HHU powers the
    loop, rig.bench.loop.HHU_SUPPLY_V / HHU_CURRENT_LIMIT_A, assumed)."""

    voltage: float = loopmodel.HHU_SUPPLY_V
    current_limit: float = loopmodel.HHU_CURRENT_LIMIT_A
    output: bool = True


class OnBench(Protocol):
    """What a virtual instrument sees of the bench it is on (rig.bench.virtual.bench.VirtualBench):
    the line, the loop and the other instruments' effects; the instrument tells it of its changes."""

    line: Any                       # the rig.link.VirtualLine
    option: InterfaceOption
    probes: dict[int, str]          # scope channel -> direction probed
    seed: int
    loop_channel: int
    generator_channel: int
    r_loop_ohm: float
    memory_depth: int
    line_signal: LineSignal
    supply_power_on: SupplyPowerOn

    @property
    def loop(self) -> LoopState: ...
    def probe_gain(self) -> float: ...
    def line_levels(self) -> tuple[float, float]: ...
    def generator_noise(self) -> float: ...
    def loop_changed(self) -> None: ...
    def generator_changed(self, gen: Any) -> None: ...
    def generator_trigger(self, gen: Any) -> None: ...


class ChannelView(dict):
    """A setting of every channel, {channel: value}; also callable with the channel."""

    def __call__(self, ch: int):
        return self[ch]


class VirtualInstrument(ScpiInstrument):
    """One instrument of the virtual bench, speaking its model's tree (``model.tree``).

    Subclasses handle the nodes that act (``do_``/``q_``/``on_`` + node name, see
    :class:`rig.bench.scpi.ScpiInstrument`); every other setting of the tree is kept and answered."""

    capability = ""

    def __init__(self, role: str, model, bench: OnBench):
        self.role = role
        self.model = model
        self.bench = bench
        self.tree = model.tree
        super().__init__()
        self.reset()

    # -- identity
    def idn(self) -> str:
        """An *IDN? answer matching the model's pattern: the sim device's answer with 'RIG-VIRTUAL'
        as serial number where the pattern allows it."""
        ans = None
        for d in (self.model.sim or {}).get("dialogues") or ():
            if str(d.get("q", "")).strip().upper() == "*IDN?":
                ans = str(d.get("r", ""))
        if ans is None:
            ans = re.sub(r"\[!?([^\]]*)\]", lambda m: m.group(1)[:1] or "0", self.model.idn)
            ans = ans.replace("*", "0").replace("?", "0")
        parts = ans.split(",")
        if len(parts) >= 3:
            trial = ",".join(parts[:2] + ["RIG-VIRTUAL"] + parts[3:])
            if self.model.idn_matches(trial):
                return trial
        return ans

    # -- helpers for the subclasses
    def per_channel(self, name: str, convert=lambda v: v) -> ChannelView:
        return ChannelView({c: convert(self.get(name, c)) for c in self.model.channels})

    def channel(self, ch: int) -> int:
        if ch not in self.model.channels:
            raise ScpiError(-114, f"channel {ch} (this model has {self.model.channels})")
        return ch

    def changed(self) -> None:
        """Called after every command that was accepted (the bench follows the instrument)."""

    def _command(self, node, sfx, params):
        r = super()._command(node, sfx, params)
        self.changed()
        return r

    def do__rst(self, sfx, p):
        self.reset()
        self.changed()
