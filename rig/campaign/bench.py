"""A bench at run time: what a case talks to, whatever is behind it.

Role meter-dut: the rig plays the client (HHU) against a meter. `kind = "embedded"`: the meter
emulator on a virtual line (EmbeddedMeter); `kind = "port"`: a real meter behind a port URL.
Role hhu-dut: the rig plays the server (MeterServer on the port) against an HHU. `kind =
"embedded"`: the rig's own Client stands in for the HHU on the other side of a virtual line and is
driven through a session on request (`stimulate`); `kind = "port"`: a real HHU, whose operator
starts the session when the rig asks (a prompt on standard error, then a deadline); in a run with
no terminal on standard input nobody is there to ask, and such a case is skipped (StepSkipped).

What only a virtual bench can do (faults, the wire record, power cycles, the emulator's token
account) is None / raises BenchUnsupported elsewhere; cases check `bench.line` first.

Instruments (`instruments(option)`), reached through the pyvisa drivers of rig.bench.drivers on
every bench: on the embedded meter-dut bench, the virtual bench (rig.bench.virtual) on the
emulator's line, one per interface option; on a port meter-dut bench, the instruments its plan
entry names (a bench configuration file and/or inline VISA resources), for its option; None
elsewhere (cases fall back to stand-ins on a virtual line, or say what they need).
"""
from __future__ import annotations

import sys
import threading
from dataclasses import replace

from rig import _clock
from rig.bench.config import ConfigError
from rig.bench.virtual import VirtualBench
from rig.campaign.errors import BenchUnsupported, StepSkipped  # noqa: F401 - also raised from here
from rig.campaign.spec import BenchSpec
from rig.campaign.timesplit import ACQUISITION, NO_ANSWER, watch_call, watch_port
from rig.client import Client, ClientError
from rig.deadline import Deadline
from rig.embedded import EmbeddedMeter
from rig.link import VirtualLine
from rig.physical.options import get_option
from rig.profile import Profile
from rig.server import EventKind, MeterEmulator, MeterServer, TimingPolicy
from rig.tokens import TokenSpec, TokenStatus, make_outcome

#: Scope channel per direction when the plan names none: the virtual bench's wiring (rig.bench.virtual):
#: CH2 on what the meter receives, CH3 on what it sends, CH1 on the whole line.
DEFAULT_PROBES = {"to_meter": 2, "to_hhu": 3, "both": 1}


class Instruments:
    """A bench's scope, generator, supply and meter for one interface option, driven through
    rig.bench.drivers whatever is behind them: the virtual bench started on the embedded meter's
    line (`on_line`), or the instruments a port bench names (`configured`: a bench configuration
    file and/or inline resources; real instruments, or `rig bench serve`'s over TCP).

    Drivers opened with `open(role)` stay open until `close()` (closing the supply would switch the
    loop off); the supply, once opened, powers the loop as the bench file says (its
    loop_voltage / loop_current_limit; the virtual bench states its own).  The
    generator too (`generator()`): a case leaves its output off, and `discard("generator")` after a
    failure closes it (every output off) for the next use to open afresh.  `virtual` is the
    VirtualBench when the rig runs it itself (its signal settings stand in for a DUT's edges and
    noise); None on a port bench, where nothing but the instruments is reached.  `where` names
    the bench in messages (its bench file, or the plan's bench)."""

    def __init__(self, config, *, probes: dict | None = None, probe_gain: float | None = None,
                 virtual=None, where: str | None = None):
        self.config = config
        self.virtual = virtual
        self.where = where
        self.option = get_option(config.option)
        self.probes = {**DEFAULT_PROBES, **(probes or {})}
        self._probe_gain = probe_gain
        self._drivers: dict = {}

    @classmethod
    def on_line(cls, line, option: str) -> Instruments:
        """A virtual bench for `option` on a virtual line, started here and closed with close()."""
        vb = VirtualBench(line, option=option).start()
        try:
            probes = {d: ch for ch, d in sorted(vb.probes.items(), reverse=True)}
            return cls(vb.bench(), probes=probes, virtual=vb)
        except BaseException:
            vb.close()
            raise

    @classmethod
    def configured(cls, spec: BenchSpec) -> Instruments:
        """The instruments a port bench's plan entry names (spec.config: a BenchConfig)."""
        return cls(spec.config, probes=spec.probes, probe_gain=spec.probe_gain,
                   where=spec.bench_config or f"the plan's bench {spec.name!r} (no bench_config)")

    def has(self, role: str) -> bool:
        """Is there an instrument for this role (scope, generator, supply, meter)?"""
        return role in self.config.instruments

    def _channel(self, role: str) -> int:
        ic = self.config.instruments.get(role)
        return int(ic.channel) if ic is not None and ic.channel else 1

    @property
    def loop_channel(self) -> int:
        """The supply channel powering the loop."""
        return self.virtual.loop_channel if self.virtual is not None else self._channel("supply")

    @property
    def generator_channel(self) -> int:
        """The generator channel coupled into the line."""
        return self.virtual.generator_channel if self.virtual is not None else self._channel("generator")

    @property
    def simulates_signal(self) -> bool:
        """Whether the DUT's signal the scope sees is simulated (the virtual bench), so that its
        rise time and noise are set with simulate_signal; a real bench shows the DUT's own."""
        return self.virtual is not None

    def simulate_signal(self, rise_time_s: float, noise: float) -> None:
        """Set the simulated signal's edges' rise time (s) and rms noise (option unit): the virtual
        bench only (BenchUnsupported elsewhere)."""
        if self.virtual is None:
            raise BenchUnsupported("a simulated signal (rise time, noise) needs the virtual bench: "
                                   "a bench's instruments show the DUT's own")
        self.virtual.simulate_signal(rise_time_s, noise)

    def probe_gain(self) -> float:
        """Volts at the scope per unit of the option (the probe's conversion): the plan's
        probe_gain, else the bench file's scope probe_gain; BenchUnsupported naming both when
        neither gives it."""
        if self._probe_gain is not None:
            return float(self._probe_gain)
        return self._wiring("scope", "probe_gain", " (or the plan's bench probe_gain)")

    @property
    def stated_probe_gain(self) -> float | None:
        """The probe gain as the plan or the bench file states it, None when neither does (for the
        record: what the rig was told, never a guess)."""
        try:
            return self.probe_gain()
        except BenchUnsupported:
            return None

    def _wiring(self, role: str, key: str, alt: str = "") -> float:
        """A wiring value of the bench file (rig.bench.config.WIRING), or BenchUnsupported naming
        the file and key."""
        try:
            return self.config.wiring(role, key)
        except ConfigError as e:
            where = self.where or e.path
            raise BenchUnsupported(f"{where}: {e.key}{alt}: {e.reason}") from None

    def scope_channel(self, direction: str) -> int:
        """The scope channel probing one direction of the line (or the whole line)."""
        return int(self.probes.get(direction) or self.probes["both"])

    def expected_levels(self) -> tuple[float, float]:
        """(mark, space) the scope should see, in the option's unit, to set its screen: the virtual
        line's (its loop as the supply powers it); else the option's nominal levels."""
        if self.virtual is not None:
            return self.virtual.line_levels()
        return self.option.nominal_mark, self.option.nominal_space

    def model(self, role: str) -> str:
        """The model name of the role's instrument."""
        return self.config.instruments[role].model.name

    def need(self, role: str) -> None:
        """BenchUnsupported unless there is an instrument for this role."""
        if not self.has(role):
            raise BenchUnsupported(f"no {role} among the bench's instruments ({', '.join(self.config.instruments)})")

    def open(self, role: str):
        """The role's driver, opened on first use and kept until close() (the supply then powers the loop)."""
        d = self._drivers.get(role)
        if d is None:
            self.need(role)
            if role == "supply":      # what it powers the loop with, asked before anything is opened
                self._wiring("supply", "loop_voltage")
                self._wiring("supply", "loop_current_limit")
            d = self.config.open(role)
            if role == "scope":
                watch_call(d, "wait_triggered", ACQUISITION)
            self._drivers[role] = d
            if role == "supply":      # opening switched the output off: power the loop again
                self.power_loop()
        return d

    def power_loop(self, current_limit_a: float | None = None, voltage: float | None = None) -> None:
        """Power the current loop from the supply's loop channel: `voltage` and `current_limit_a`,
        by default the bench file's supply loop_voltage and loop_current_limit."""
        if voltage is None:
            voltage = self._wiring("supply", "loop_voltage")
        if current_limit_a is None:
            current_limit_a = self._wiring("supply", "loop_current_limit")
        sup = self.open("supply")
        sup.configure(self.loop_channel, voltage, current_limit_a)
        sup.output_on(self.loop_channel)

    def generator(self):
        """The generator's driver (open('generator'))."""
        return self.open("generator")

    def discard(self, role: str) -> None:
        """Close one driver (an instrument with outputs: every output off) and forget it."""
        d = self._drivers.pop(role, None)
        if d is not None:
            d.close()

    def close(self) -> None:
        """Close every driver (outputs off), then the virtual bench if the rig started one."""
        for d in self._drivers.values():
            try:
                d.close()
            except Exception:
                pass
        self._drivers.clear()
        if self.virtual is not None:
            self.virtual.close()


def _watched(client: Client) -> Client:
    """A client whose scheduled writes the run's time split sees (rig.campaign.timesplit)."""
    watch_port(client.port)
    watch_call(client.reader, "next_frame", NO_ANSWER)    # blocked until the peer's frame or a deadline
    return client


class Bench:
    """A bench at run time (module docstring): the line, the meter or server, the kept client session,
    the instruments and the stand-in HHU behind one plan bench; open() before use, close() after."""

    def __init__(self, spec: BenchSpec, profile: Profile):
        self.spec = spec
        self.profile = profile
        self.line: VirtualLine | None = None        # when embedded
        self.meter: EmbeddedMeter | None = None     # meter-dut, embedded
        self.server: MeterServer | None = None      # hhu-dut
        self._client: Client | None = None
        self._identified = False
        self._tokens_issued = 0
        self._hhu_thread: threading.Thread | None = None
        self.hhu_error: BaseException | None = None
        self._quiet_until = 0
        self._instruments: dict[str, Instruments] = {}
        self._operator_from: int | None = None  # hhu-dut port: server events before the operator's session
        self._operator_until = 0    # and its deadline (ns)

    # -- lifecycle -------------------------------------------------------------------------------
    def open(self) -> Bench:
        """Start what the bench needs: the embedded meter (meter-dut), or the rig's MeterServer on the virtual
        line or the port (hhu-dut); nothing against a real meter."""
        s = self.spec
        if s.role == "meter-dut":
            if s.kind == "embedded":
                emu = MeterEmulator(self.profile, policy=TimingPolicy(s.policy))
                self.meter = EmbeddedMeter(self.profile, emulator=emu).start()
                self.line = self.meter.line
        else:
            emu = MeterEmulator(self.profile, policy=TimingPolicy(s.policy))
            if s.kind == "embedded":
                self.line = VirtualLine().start()
                self.server = MeterServer(self.line.meter_port, self.profile, emulator=emu).start()
            else:
                self.server = MeterServer(s.port, self.profile, emulator=emu).start()
        return self

    def close(self) -> None:
        """End the session, wait for the stand-in HHU, close the instruments, the meter or server and the line."""
        self.drop_session()
        if self._hhu_thread is not None:
            self._hhu_thread.join(30)
        for inst in self._instruments.values():
            inst.close()
        self._instruments.clear()
        if self.meter is not None:
            self.meter.close()
        if self.server is not None:
            self.server.stop()
        if self.meter is None and self.line is not None:
            self.line.close()

    def _meter_server(self) -> MeterServer:
        """The MeterServer the rig's meter runs in (the embedded meter's, or the hhu-dut bench's)."""
        server = self.meter.server if self.meter is not None else self.server
        assert server is not None, "an open bench with an emulator runs it in a MeterServer"
        return server

    @property
    def emulator(self):
        """The rig's MeterEmulator (embedded meter-dut, or hhu-dut); None against a real meter."""
        if self.meter is not None:
            return self.meter.emulator
        if self.server is not None:
            return self.server.emulator
        return None

    @property
    def port_url(self) -> str:
        """Where the rig's client talks (meter-dut) or where the stand-in HHU talks (hhu-dut)."""
        if self.line is not None:
            return self.line.hhu_port
        assert self.spec.port is not None, "the plan gives a port bench its port; an embedded bench is open"
        return self.spec.port

    # -- the client side (meter-dut) -------------------------------------------------------------
    def client(self, profile: Profile | None = None) -> Client:
        """A new client on the line (the caller closes it); one at a time on a port."""
        self.drop_session()
        self._settle()
        return _watched(Client(self.port_url, profile or self.profile))

    def _settle(self) -> None:
        # after a BreakCommand the meter switches back to the initial speed: a new IDRequest
        # right away would meet it still at the old speed (speed_switch_guard, assumed)
        _clock.sleep_until(self._quiet_until)

    def session(self) -> Client:
        """An identified client in programming mode, kept between cases (one identification
        serves many cases); a case that spoils it calls drop_session()."""
        if self._client is None:
            self._settle()
            self._client = _watched(Client(self.port_url, self.profile))
            self._identified = False
        self._client.exchanges.clear()
        if not self._identified:
            try:
                self._client.identify()
            except ClientError:
                # the meter may still be in an earlier session at the switched speed: end it there
                self._break_at(self.profile.character.max_baud)
                self._client.exchanges.clear()
                self._client.identify()
            self._identified = True
        return self._client

    def _break_at(self, baud: int) -> None:
        c = self._client
        assert c is not None, "session() has made the client"
        c.port.set_baud(baud)
        c.sign_off()

    def drop_session(self, sign_off: bool = True) -> None:
        """End the kept session (a BreakCommand first unless sign_off is False) and close its client."""
        c, self._client = self._client, None
        if c is not None:
            try:
                if sign_off and self._identified:
                    c.sign_off()
            except Exception:
                pass
            c.close()
            t = self.profile.timing
            self._quiet_until = _clock.now_ns() + t.speed_switch_guard_ns + t.tr_min_fast_ns
        self._identified = False

    def with_repeats(self, n: int) -> Profile:
        """The bench's profile with protocol.nak_repeats = n."""
        return replace(self.profile, protocol=replace(self.profile.protocol, nak_repeats=n))

    # -- instruments -------------------------------------------------------------------------------
    def instruments(self, option: str) -> Instruments | None:
        """The instruments for an interface option (opened on first use, kept until close).

        Embedded meter-dut bench: a virtual bench on the emulator's line, one per option (None when
        pyvisa is not installed).  Port meter-dut bench: the instruments its plan entry names,
        for their bench's option only (another option: BenchUnsupported); None when it names none.
        hhu-dut benches: None."""
        s = self.spec
        if s.role != "meter-dut":
            return None
        if s.kind == "port":
            if s.config is None or not s.config.instruments:
                return None
            if option != s.config.option:
                raise BenchUnsupported(f"bench {s.name!r} has instruments for the {s.config.option} "
                                       f"interface, not {option}")
            inst = self._instruments.get(option)
            if inst is None:
                inst = self._instruments[option] = Instruments.configured(s)
            return inst
        if self.line is None:
            return None
        inst = self._instruments.get(option)
        if inst is None:
            try:        # is pyvisa-py, the backend the virtual bench is reached by, installed?
                import pyvisa  # noqa: F401
                import pyvisa_py  # noqa: F401
            except ImportError:
                return None
            inst = self._instruments[option] = Instruments.on_line(self.line, option)
        return inst

    # -- virtual-only abilities ------------------------------------------------------------------
    def need_line(self, what: str, hint: str = "") -> object:
        """The virtual line; BenchUnsupported naming `what` (and the hint) on a bench without one."""
        if self.line is None:
            raise BenchUnsupported(f"{what} needs the virtual line (bench {self.spec.name!r} is {self.spec.kind})"
                                   + (f"; {hint}" if hint else ""))
        return self.line

    def power_cycle(self) -> None:
        """The meter restarts (embedded: the emulator's power_cycle)."""
        emu = self.emulator
        if emu is None:
            raise BenchUnsupported("power cycle: needs the embedded meter or a bench supply (not yet)")
        self.drop_session(sign_off=False)
        emu.power_cycle()
        self._meter_server().port.set_baud(self.profile.character.initial_baud)  # the restarted meter's UART

    def accepted_tokens(self, n: int, credit: float = 1.0) -> list[str]:
        """n tokens the DUT will accept, never used before. Embedded: made up and added to the
        emulator's test-token table (a vending system's job for a real meter)."""
        emu = self.emulator
        if emu is None:
            raise BenchUnsupported("accepted tokens: a real meter needs tokens from its vending system "
                                   "(give them as the case's `tokens` parameter)")
        model = emu.tokens
        out = []
        accept = model.table["56746304125830196637"].outcome if "56746304125830196637" in model.table else None
        if accept is None:
            accept = make_outcome(self.profile, TokenStatus.ACCEPT)
        for _ in range(n):
            self._tokens_issued += 1
            # below 2**66 as a token must be; varied digits, so that a fault dropping two
            # neighbouring characters is not hidden by equal characters cancelling in the BCC
            text = f"7{self._tokens_issued:06d}1357924680135"
            model.table[text] = TokenSpec(text, accept, credit, None, "issued by the campaign")
            out.append(text)
        return out

    def account(self):
        """The meter's token account (embedded only): token -> {entered, applied, credit}."""
        emu = self.emulator
        return None if emu is None else emu.tokens

    # -- the HHU stand-in (hhu-dut) --------------------------------------------------------------
    @staticmethod
    def interactive() -> bool:
        """Someone may be watching: standard input is a terminal."""
        try:
            return sys.stdin is not None and sys.stdin.isatty()
        except (ValueError, OSError):
            return False

    def stimulate(self, script, operator: str = "run a session on the HHU", timeout_s: float = 30.0) -> None:
        """Make the HHU run a session. Embedded: the rig's Client on the HHU side runs `script(client)`
        in a thread. A real HHU: the operator is asked (`operator`: what to do on the HHU) to start
        its session within `timeout_s`; StepSkipped when the run is not interactive."""
        if self.spec.role != "hhu-dut":
            raise BenchUnsupported("stimulate: only on an hhu-dut bench")
        self.hhu_error = None
        if self.line is None:
            if not self.interactive():
                raise StepSkipped("needs an operator at the HHU, and nobody is asked: the run is not "
                                  "interactive (standard input is not a terminal)")
            self._reset_meter()
            self._operator_from = len(self._meter_server().events)
            self._operator_until = _clock.now_ns() + int(timeout_s * 1e9)
            print(f"\n>>> operator: {operator} now, within {timeout_s:g} s "
                  f"(the rig is the meter on {self.spec.port})", file=sys.stderr, flush=True)
            return
        self._reset_meter()

        def run():
            try:
                with _watched(Client(self.line.hhu_port, self.profile)) as hhu:
                    script(hhu)
            except BaseException as e:  # seen by the case
                self.hhu_error = e

        self._hhu_thread = threading.Thread(target=run, name="hhu-stand-in", daemon=True)
        self._hhu_thread.start()

    def _reset_meter(self) -> None:
        """The rig's meter back to its start state at the initial speed (a session the stand-in
        HHU left unfinished would otherwise hold it until its inactivity timeout)."""
        emu = self.emulator
        if emu is not None and emu.state != "start":
            emu.power_cycle()
            self._meter_server().port.set_baud(self.profile.character.initial_baud)

    def wait_hhu(self, timeout_s: float) -> bool:
        """Wait for the HHU's session started by stimulate() to end (a real HHU: its BreakCommand by the
        operator's deadline); False if it has not."""
        if self._operator_from is not None:      # a real HHU: until its BreakCommand, or the deadline
            start, self._operator_from = self._operator_from, None
            server = self._meter_server()
            if not Deadline(self._operator_until).wait(lambda: server.saw(EventKind.BREAK, start), 20_000_000):
                print(">>> operator: no session ended by BreakCommand in time", file=sys.stderr, flush=True)
                return False
            return True
        if self._hhu_thread is None:
            return True
        self._hhu_thread.join(timeout_s)
        done = not self._hhu_thread.is_alive()
        if done:
            self._hhu_thread = None
        return done
