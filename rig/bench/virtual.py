"""The virtual bench: the embedded default for instruments, one SCPI server per instrument on loopback.

    with EmbeddedMeter() as meter, VirtualBench(meter.line) as bench:
        bench.resources        # {"scope": "TCPIP::127.0.0.1::40123::SOCKET", "generator": ..., ...}
        rm = pyvisa.ResourceManager("@py")   # the drivers reach it exactly as they reach hardware

Each instrument is a small threaded TCP server (raw socket, 127.0.0.1, an ephemeral port) speaking
its model's dialect (rig.bench.models: ``model.match`` says which vocabulary command a line is).
``*IDN?`` answers with a string matching the model's ``idn``; an unknown header queues
``-113,"Undefined header"`` as real instruments do, and the error query returns the queue.  Queries
end with the model's read termination; waveforms go out as IEEE 488.2 definite-length blocks.  Bad
input (garbage bytes, overlong lines, bad blocks, bad numbers) queues an error and never ends the
server.

What the instruments do to and see of the virtual line (rig.link.VirtualLine):

- scope: waveforms synthesised from the line's wire record for the interface option (levels and
  polarity from rig.physical.options; the current loop's mark level from the loop model), with the
  timebase, vertical scale/offset and memory depth the client set, in the model's transfer format
  and preamble, so rig.physical.analysis decodes exactly the characters of the record (faults
  included: the record's ``line`` byte is what was on the wire).  ``run``: a read returns the screen
  ending now; ``stop``: freezes that; ``single``: arms, triggers on the first edge of the trigger
  source's slope on the line (or on ``force_trigger``), and the acquisition is done once the screen
  after the trigger has passed.  Channels probe one direction or the shared line (setting ``probes``).
- generator: its output disturbs the line through a coupling network (rig.bench.loop): noise with
  the output on is a noise fault (bit error rate from the amplitude relative to the interface's swing),
  pulses are glitches (a bit error rate from their duty), a burst (burst on, then a trigger) is a noise
  window of cycles / frequency; output off removes them.
- supply and meter: the current loop (rig.bench.loop): the supply's voltage and current limit give
  the loop current; below the receiver's 9 mA bits err, at or below 3 mA every character is lost
  (a drop fault on both directions); the meter reads the loop current and the supply's terminal
  voltage.  Only the current-loop option has a loop; with the others the supply and meter act on
  a plain resistive load (R_LOOP_OHM) and leave the line alone.

The bench owns the faults it adds to the line and replaces only those; faults injected by anyone
else stay.
"""
from __future__ import annotations

import math
import re
import socket
import socketserver
import threading
from collections import deque
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from rig import _clock
from rig.bench import loop as loopmodel
from rig.link.faults import Fault
from rig.physical.charformat import CharFormat
from rig.physical.options import InterfaceOption, get_option
from rig.physical.synth import TrueChar, Waveform

DEFAULT_MODELS = {
    "scope": "rigol-ds1000z",
    "generator": "keysight-33500b",
    "supply": "rigol-dp832",
    "meter": "keysight-34461a",
}
DIRECTIONS = ("to_meter", "to_hhu", "both")
FOREVER_NS = 10 ** 18          # a fault window that lasts until the bench removes it
MAX_LINE = 1 << 20             # longest program message kept before it is thrown away (-363)
ERROR_QUEUE = 20               # entries before the queue overflows (-350), as the Keysight manuals say

ERRORS = {
    -100: "Command error",
    -102: "Syntax error",
    -104: "Data type error",
    -113: "Undefined header",
    -160: "Block data error",
    -200: "Execution error",
    -221: "Settings conflict",
    -222: "Data out of range",
    -224: "Illegal parameter value",
    -230: "Data corrupt or stale",
    -300: "Device-specific error",
    -350: "Queue overflow",
    -363: "Input buffer overrun",
}

_WIRE = CharFormat(8, "N", 1)      # the line bits of a wire byte: start, 8 bits (7E1: parity is bit 7), stop
_7E1 = CharFormat.parse("7E1")


# =========================================================================== the line as a waveform
def line_edges(record, directions: Iterable[str], t0_ns: int, t1_ns: int):
    """Transitions of the line in [t0_ns, t1_ns) as seen by a probe on ``directions`` (one
    direction, or both: on the shared line a sender at space pulls it to space, so the logic is the
    AND of the senders; assumed).  Returns (level at t0 (1 = mark), [(t_ns, level), ...]).

    Characters come from the wire record: a character whose ``line`` is -1 was never on the wire;
    a break holds space from its start to its end; a character is start bit, the 8 bits of its wire
    byte LSB first, stop bit, over t_start..t_end."""
    dirs = set(directions)
    per: dict[str, list[tuple[int, int, list[int]]]] = {d: [] for d in dirs}
    for c in record:
        if c.direction not in dirs or c.line < 0 or c.t_end_ns <= c.t_start_ns:
            continue
        if c.t_end_ns < t0_ns or c.t_start_ns >= t1_ns:
            continue   # over before the screen (the line back at mark), or after it
        if c.index == -1 and "break" in c.faults:
            per[c.direction].append((c.t_start_ns, c.t_end_ns, [0]))
        else:
            per[c.direction].append((c.t_start_ns, c.t_end_ns, _WIRE.bits(c.line)))
    events: list[tuple[int, str, int]] = []
    for d, chars in per.items():
        chars.sort(key=lambda x: x[0])
        for ts, te, bits in chars:
            step = (te - ts) / len(bits) if len(bits) > 1 else (te - ts)
            prev = None
            for k, b in enumerate(bits):
                if b != prev:
                    events.append((ts + int(round(k * step)), d, b))
                    prev = b
            if prev != 1:
                events.append((te, d, 1))
    events.sort(key=lambda e: e[0])
    level = {d: 1 for d in dirs}
    start_level = 1
    out: list[tuple[int, int]] = []
    cur = 1
    for t, d, b in events:
        level[d] = b
        new = 1 if all(level.values()) else 0
        if t < t0_ns:
            start_level = cur = new
            continue
        if t >= t1_ns:
            break
        if new != cur:
            out.append((t, new))
            cur = new
    return start_level, out


def line_chars(record, directions: Iterable[str], t0_ns: int, t1_ns: int) -> list:
    """The wire record's characters on the line (``line`` >= 0) lying wholly inside [t0, t1)."""
    dirs = set(directions)
    return [c for c in record if c.direction in dirs and c.line >= 0 and c.index >= 0
            and c.t_start_ns >= t0_ns and c.t_end_ns <= t1_ns]


def line_waveform(record, option, t0_ns: int, duration_ns: int, n_samples: int,
                  directions: Iterable[str] = ("to_meter", "to_hhu"), levels=None,
                  rise_time_s: float = 0.0, noise_rms: float = 0.0, seed: int = 0) -> Waveform:
    """The line [t0, t0 + duration) as a rig.physical.synth Waveform of ``n_samples`` samples
    (sample 0 at t0), in the option's unit.  ``levels``: (mark, space), default the option's
    nominal ones.  Its ``chars`` are the ground truth (start times relative to t0)."""
    opt = get_option(option)
    mark, space = levels if levels is not None else (opt.nominal_mark, opt.nominal_space)
    t1 = t0_ns + duration_ns
    start, edges = line_edges(record, directions, t0_ns, t1)
    et = [float(t - t0_ns) for t, _ in edges]
    ev = [lv for _, lv in edges]
    if start == 0:
        et.insert(0, 0.0)
        ev.insert(0, 0)
    truth = []
    bauds = []
    for c in line_chars(record, directions, t0_ns, t1):
        v = c.line & 0x7F
        truth.append(TrueChar(v, c.t_start_ns - t0_ns, _7E1.parity_bit(v) == (c.line >> 7) & 1, True))
        bauds.append(c.baud)
    baud = float(np.median(bauds)) if bauds else 300.0
    sample_rate = n_samples * 1e9 / duration_ns
    return Waveform(opt, sample_rate, baud, _7E1, int(n_samples), float(mark), float(space),
                    np.asarray(et, dtype=np.float64), np.asarray(ev, dtype=np.int8), truth, [],
                    rise_time_s, rise_time_s, noise_rms, 3.0, 0.0, 20.0, 0.0, seed)


# =========================================================================== SCPI input
class ScpiInput:
    """Program messages out of a byte stream: split at the newline, and at ';' into message units,
    outside quoted strings and IEEE 488.2 definite-length blocks (whose bytes may be anything).
    A message longer than ``limit`` is thrown away up to its newline (``overruns`` counts them);
    so is a block announcing more than ``limit`` bytes ('#' is then taken as an ordinary byte).
    Each byte is scanned once, whatever the chunking."""

    _SPECIAL = re.compile(rb"[\"'#;\n]")

    def __init__(self, limit: int = MAX_LINE):
        self.buf = bytearray()
        self.limit = limit
        self.overruns = 0
        self._discarding = False
        self._pos = 0          # where the scan of the message in progress stopped
        self._cuts: list[int] = []
        self._quote = 0

    def feed(self, data: bytes) -> list[list[bytes]]:
        """Complete messages in the data so far, each a list of its units (bytes)."""
        self.buf += data
        out = []
        while True:
            if self._discarding:
                nl = self.buf.find(b"\n")
                if nl < 0:
                    self.buf.clear()
                    return out
                del self.buf[:nl + 1]
                self._discarding = False
            end = self._scan()
            if end is None:
                if len(self.buf) > self.limit:
                    self.overruns += 1
                    self._discarding = True
                    self._restart()
                    continue
                return out
            msg = bytes(self.buf[:end])
            cuts = self._cuts
            del self.buf[:end + 1]
            self._restart()
            units, prev = [], 0
            for c in cuts:
                units.append(msg[prev:c])
                prev = c + 1
            units.append(msg[prev:])
            units = [u.strip(b" \t\r") for u in units]
            units = [u for u in units if u]
            if units:
                out.append(units)

    def _restart(self) -> None:
        self._pos, self._cuts, self._quote = 0, [], 0

    def _scan(self) -> int | None:
        """The index of the newline ending the message in progress, or None (more to come)."""
        b = self.buf
        n = len(b)
        i = self._pos
        while i < n:
            if self._quote:
                j = b.find(bytes((self._quote,)), i)
                if j < 0:
                    self._pos = n
                    return None
                self._quote = 0
                i = j + 1
                continue
            m = self._SPECIAL.search(b, i)
            if m is None:
                self._pos = n
                return None
            i = m.start()
            c = b[i]
            if c == 0x0A:
                return i
            if c == 0x3B:
                self._cuts.append(i)
            elif c in (0x22, 0x27):
                self._quote = c
            elif c == 0x23 and i + 1 < n and 0x31 <= b[i + 1] <= 0x39:   # '#1'..'#9': a block
                nd = b[i + 1] - 0x30
                if i + 2 + nd > n:
                    self._pos = i
                    return None
                digits = bytes(b[i + 2:i + 2 + nd])
                if digits.isdigit() and 2 + nd + int(digits) <= self.limit:
                    skip = 2 + nd + int(digits)
                    if i + skip > n:
                        self._pos = i             # the rest of the block is still coming
                        return None
                    i += skip
                    continue
            elif c == 0x23 and i + 1 >= n:
                self._pos = i
                return None
            i += 1
        self._pos = n
        return None


class ScpiError(Exception):
    def __init__(self, code: int, detail: str = ""):
        self.code = code
        self.text = ERRORS.get(code, "Error") + (f"; {detail}" if detail else "")
        super().__init__(f'{code},"{self.text}"')


_SUFFIX = {"": 1.0, "V": 1.0, "A": 1.0, "S": 1.0, "HZ": 1.0, "OHM": 1.0, "MV": 1e-3, "MA": 1e-3,
           "MS": 1e-3, "US": 1e-6, "UV": 1e-6, "UA": 1e-6, "NS": 1e-9, "KHZ": 1e3, "MHZ": 1e6,
           "MAHZ": 1e6, "GHZ": 1e9, "VPP": 1.0, "MVPP": 1e-3, "VRMS": 1.0, "KOHM": 1e3}
_NUM = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)\s*")


def number(text, low: float | None = None, high: float | None = None) -> float:
    """A SCPI numeric parameter (optionally with a unit suffix) within [low, high]."""
    m = _NUM.fullmatch(str(text))
    if not m or m.group(2).upper() not in _SUFFIX:
        raise ScpiError(-104, f"not a number: {str(text)[:40]!r}")
    v = float(m.group(1)) * _SUFFIX[m.group(2).upper()]
    if not math.isfinite(v) or (low is not None and v < low) or (high is not None and v > high):
        raise ScpiError(-222, f"{v:g} outside {low}..{high}")
    return v


def boolean(text) -> bool:
    t = str(text).strip().upper()
    if t in ("ON", "1"):
        return True
    if t in ("OFF", "0"):
        return False
    raise ScpiError(-224, f"expected ON|OFF, not {str(text)[:20]!r}")


def fmt_number(v: float) -> str:
    return f"{v:+.8E}"


# =========================================================================== instruments
class VirtualInstrument:
    """One instrument: its model's dialect, an error queue, and settings.  ``execute(unit)``
    takes one program message unit and returns the reply (bytes, no termination) or None.

    Handlers are methods named after the vocabulary key: ``do_<key>`` for a command, ``q_<key>``
    for a query (without its '?').  A command without a handler just stores its value (and a query
    without one answers the stored value): settings the bench does not model are kept, not refused.
    """

    capability = ""

    def __init__(self, role: str, model, bench: "VirtualBench"):
        self.role = role
        self.model = model
        self.bench = bench
        self.errors: deque[tuple[int, str]] = deque()
        self.settings: dict[tuple[str, int], str] = {}
        self.lock = threading.RLock()
        self.commands_seen = 0
        self.reset()

    # -- identity and status
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

    def push_error(self, code: int, text: str | None = None) -> None:
        with self.lock:
            if len(self.errors) >= ERROR_QUEUE:
                self.errors[-1] = (-350, ERRORS[-350])
                return
            self.errors.append((code, (text or ERRORS.get(code, "Error")).replace('"', "'")))

    def reset(self) -> None:
        self.settings.clear()

    def q_idn(self, f):
        return self.idn()

    def do_reset(self, f):
        self.reset()

    def do_clear_status(self, f):
        self.errors.clear()

    def q_opc(self, f):
        return "1"

    def q_error(self, f):
        if self.errors:
            code, text = self.errors.popleft()
            return f'{code},"{text}"'
        return '0,"No error"'

    # -- dispatch
    def execute(self, units: list[bytes]) -> list[bytes]:
        """One program message (its units, split at ';'); returns the replies (no termination).
        A template may itself hold ';' (one vocabulary key sent as two headers): the longest run
        of units that matches one command is taken first.  Errors go to the queue, never out."""
        replies = []
        i = 0
        with self.lock:
            while i < len(units):
                self.commands_seen += 1
                m = None
                for j in range(len(units), i, -1):
                    m = self.model.match(b";".join(units[i:j]))
                    if m is not None:
                        break
                if m is None:
                    self.push_error(-113)
                    i += 1
                    continue
                i = j
                try:
                    reply = self._dispatch(*m)
                except ScpiError as e:
                    self.push_error(e.code, e.text)
                    continue
                except Exception as e:  # a bug of the virtual instrument must not end the server
                    self.push_error(-300, f"{type(e).__name__}: {e}"[:80])
                    continue
                if reply is not None:
                    replies.append(reply if isinstance(reply, bytes) else str(reply).encode("latin-1"))
        return replies

    def _dispatch(self, key: str, fields: dict):
        ch = fields.get("ch", 1)
        if key.endswith("?"):
            base = key[:-1]
            h = getattr(self, "q_" + base, None)
            if h is not None:
                return h(fields)
            if (base, ch) in self.settings:
                return self.settings[(base, ch)]
            raise ScpiError(-230, f"{base} was never set")
        h = getattr(self, "do_" + key, None)
        if h is not None:
            return h(fields)
        self.settings[(key, ch)] = fields.get("value", fields.get("name", "1"))
        return None

    def channel(self, fields) -> int:
        ch = fields.get("ch", 1)
        if ch not in self.model.channels:
            raise ScpiError(-224, f"channel {ch} (this model has {self.model.channels})")
        return ch

    def word(self, fact: str, value: str, default: dict) -> str:
        """The meaning of a model word: facts[fact] (or ``default``) maps meaning -> word."""
        table = self.model.facts.get(fact) or default
        for meaning, w in table.items():
            if _abbrev(str(w), str(value).strip()):
                return str(meaning)
        raise ScpiError(-224, f"{str(value)[:20]!r} is not one of {list(table.values())}")


def _abbrev(long: str, got: str) -> bool:
    """SCPI short/long form of a word: 'NEGative' matches 'NEG' and 'NEGATIVE'."""
    short = "".join(ch for ch in long if ch.isupper() or ch.isdigit())
    return got.upper() in (long.upper(), short.upper()) if short else got.upper() == long.upper()


# --------------------------------------------------------------------------- scope
@dataclass
class Acquisition:
    """One acquisition: the screen [t0, t0 + duration) of every channel, frozen."""

    t0_ns: int
    duration_ns: int
    trigger_ns: int
    record: list
    levels: tuple[float, float]
    noise: float = 0.0                 # rms, option unit: the generator's noise on the line then

    def xorigin(self) -> float:
        return (self.t0_ns - self.trigger_ns) / 1e9


class VirtualScope(VirtualInstrument):
    """A scope whose channels probe the virtual line (setting ``probes``) through a probe of
    ``probe_gain`` volts per unit of the option.  The acquisition memory holds ``memory_depth``
    points (setting ``memory_depth``, default 120 000: the vocabulary has no memory-depth command; assumed) over
    the screen (divisions x timebase scale); the screen transfer (mode NORMal) has the model's
    ``screen_points``."""

    capability = "scope"

    def reset(self) -> None:
        super().reset()
        f = self.model.facts
        div = f.get("divisions") or {}
        self.hdivs = float(div.get("horizontal", 12))
        self.tscale = 1e-3                 # s/div
        self.toffset = 0.0                 # s: screen centre relative to the trigger
        self.vscale = {c: 1.0 for c in self.model.channels}
        self.voffset = {c: 0.0 for c in self.model.channels}
        self.source = 1
        self.trig_mode = "edge"            # edge | serial
        self.trig_source = 1
        self.trig_slope = "rising"
        self.trig_level = 0.0
        self.serial = {"source": 1, "when": "start", "data": 0, "bits": 8}
        self.sweep = "auto"
        self.state = "run"                 # run | wait | stop
        self.armed_ns = 0
        self.trigger_ns: int | None = None
        self.acq: Acquisition | None = None
        self._wf = None
        self.wmode = "normal"              # normal | raw | max
        self.wformat = "byte"              # byte | word | ascii
        self.wstart, self.wstop = 1, None
        cfg = self.bench.settings if self.bench is not None else {}
        self.mdepth = int(cfg.get("memory_depth", 120_000))

    def _wfacts(self) -> dict:
        return self.model.facts.get("waveform") or {}

    # -- channels and timebase
    def do_channel_scale(self, f):
        self.vscale[self.channel(f)] = number(f["value"], 1e-4, 1e3)

    def q_channel_scale(self, f):
        return fmt_number(self.vscale[self.channel(f)])

    def do_channel_offset(self, f):
        self.voffset[self.channel(f)] = number(f["value"], -1e4, 1e4)

    def q_channel_offset(self, f):
        return fmt_number(self.voffset[self.channel(f)])

    def do_timebase_scale(self, f):
        self.tscale = number(f["value"], 1e-9, 1e3)

    def q_timebase_scale(self, f):
        return fmt_number(self.tscale)

    def do_timebase_offset(self, f):
        self.toffset = number(f["value"], -1e4, 1e4)

    # -- trigger
    def do_trigger_mode_edge(self, f):
        self.trig_mode = "edge"

    def do_trigger_mode_serial(self, f):
        self.trig_mode = "serial"

    def do_trigger_edge_source(self, f):
        self.trig_source = self.channel(f)

    def do_trigger_edge_slope(self, f):
        self.trig_slope = self.word("slopes", f["value"],
                                    {"rising": "POSitive", "falling": "NEGative", "either": "RFALl"})

    def do_trigger_edge_level(self, f):
        self.trig_level = number(f["value"], -1e4, 1e4)

    def q_trigger_edge_level(self, f):
        return fmt_number(self.trig_level)

    def do_trigger_serial_source(self, f):
        self.serial["source"] = self.channel(f)

    def do_trigger_serial_when(self, f):
        self.serial["when"] = self.word("serial_when", f["value"], {"start": "STARt", "data": "DATA"})

    def do_trigger_serial_data(self, f):
        self.serial["data"] = int(number(f["value"], 0, 511))

    def do_trigger_serial_bits(self, f):
        self.serial["bits"] = int(number(f["value"], 5, 9))

    def do_trigger_sweep(self, f):
        self.sweep = self.word("sweeps", f["value"], {"auto": "AUTO", "normal": "NORMal", "single": "SINGle"})
        if self.sweep == "single":
            self.do_single(f)

    def do_run(self, f):
        self.state = "run"

    def do_stop(self, f):
        if self.state != "stop":
            self._acquire_now()
        self.state = "stop"

    def do_single(self, f):
        self.state = "wait"
        self.armed_ns = _clock.now_ns()
        self.trigger_ns = None

    def do_force_trigger(self, f):
        if self.state == "wait" and self.trigger_ns is None:
            self.trigger_ns = _clock.now_ns()
        elif self.state == "run":
            self._acquire_now()
            self.state = "stop"

    def q_trigger_status(self, f):
        """Waiting until a single acquisition is complete (the trigger seen and the screen after it
        passed), then stopped: never 'triggered' while the memory still fills."""
        self._progress()
        st = self.model.facts.get("trigger_states") or {}
        captured = list(st.get("captured") or ["STOP"])
        waiting = list(st.get("waiting") or ["WAIT", "RUN", "AUTO"])
        if self.state == "stop":
            return captured[0]
        if self.state == "wait":
            return waiting[0]
        want = "AUTO" if self.sweep == "auto" else "RUN"
        return want if want in waiting else waiting[-1]

    def _screen_ns(self) -> int:
        return int(round(self.hdivs * self.tscale * 1e9))

    def _acquire(self, trigger_ns: int) -> None:
        screen = self._screen_ns()
        t0 = trigger_ns + int(round(self.toffset * 1e9)) - screen // 2
        self.acq = Acquisition(t0, screen, trigger_ns, self.bench.line.record(), self.bench.line_levels(),
                               self.bench.generator_noise())

    def _acquire_now(self) -> None:
        """The screen ending now (an auto or forced trigger, or a read while running)."""
        now = _clock.now_ns()
        screen = self._screen_ns()
        self._acquire(now - (screen - screen // 2) - int(round(self.toffset * 1e9)))

    def _progress(self) -> None:
        """Advance a single acquisition: look for the trigger, finish once the screen passed."""
        if self.state != "wait":
            return
        now = _clock.now_ns()
        if self.trigger_ns is None:
            self.trigger_ns = self._find_trigger(self.armed_ns, now)
            if self.trigger_ns is None:
                return
        end = self.trigger_ns + int(round(self.toffset * 1e9)) + self._screen_ns() // 2
        if now >= end + 2_000_000:   # 2 ms: the bridge has recorded everything before `end`
            self._acquire(self.trigger_ns)
            self.state = "stop"

    def _find_trigger(self, t_from: int, t_to: int) -> int | None:
        record = self.bench.line.record()
        if self.trig_mode == "serial":
            s = self.serial
            for c in line_chars(record, self._dirs(s["source"]), t_from, 1 << 62):
                if c.t_start_ns > t_to:
                    break
                if s["when"] == "start" or (s["when"] == "data" and
                                            (c.line & ((1 << s["bits"]) - 1)) == s["data"]):
                    return c.t_start_ns
            return None
        gain = self.bench.probe_gain()
        mark, space = self.bench.line_levels()
        lo, hi = sorted((mark * gain, space * gain))
        if not lo < self.trig_level < hi:
            return None
        _, edges = line_edges(record, self._dirs(self.trig_source), t_from, t_to)
        for t, lv in edges:
            rising = (lv == 1) == (mark >= space)
            if self.trig_slope == "either" or (self.trig_slope == "rising") == rising:
                return t
        return None

    def _dirs(self, ch: int) -> tuple[str, ...]:
        d = self.bench.probes.get(ch, "both")
        return ("to_meter", "to_hhu") if d == "both" else (d,)

    # -- transfer
    def do_waveform_source(self, f):
        self.source = self.channel(f)

    def do_waveform_mode(self, f):
        self.wmode = self.word("waveform_modes", f["value"], {"normal": "NORMal", "raw": "RAW", "max": "MAXimum"})

    def do_waveform_format(self, f):
        self.wformat = self.word("waveform_formats", f["value"], {"byte": "BYTE", "word": "WORD", "ascii": "ASCii"})

    def do_waveform_points(self, f):
        self.wstop = self.wstart + int(number(f["value"], 1, 1e9)) - 1

    def do_waveform_start(self, f):
        self.wstart = int(number(f["value"], 1, 1e9))

    def do_waveform_stop(self, f):
        self.wstop = int(number(f["value"], 1, 1e9))

    def _points(self) -> int:
        if self.wmode == "normal" or (self.wmode == "max" and self.state != "stop"):
            return int(self._wfacts().get("screen_points", 1200))
        return self.mdepth

    def _acq(self) -> Acquisition:
        self._progress()
        if self.state != "stop" or self.acq is None:
            self._acquire_now()    # running (or still waiting): what the screen shows now
        return self.acq

    def _yscale(self, ch: int) -> tuple[float, float, float]:
        """(y_increment, y_origin, y_reference) of BYTE/WORD codes for a channel:
        volts = (code - y_origin - y_reference) x y_increment (the DS1000Z preamble), 25 codes a
        division around code 127 at the screen centre, which shows -offset volts."""
        yinc = self.vscale[ch] / 25.0
        return yinc, float(round(self.voffset[ch] / yinc)), 127.0

    def _range(self, total: int) -> tuple[int, int]:
        start = min(max(self.wstart, 1), total)
        stop = total if self.wstop is None else min(max(self.wstop, start), total)
        return start, stop

    def q_waveform_preamble(self, f):
        """The preamble of the whole transfer (every point of the mode, whatever STARt/STOP say):
        x_origin is the first point's time relative to the trigger."""
        acq = self._acq()
        total = self._points()
        yinc, yorig, yref = self._yscale(self.source)
        fields = {
            "format": {"byte": 0, "word": 1, "ascii": 2}[self.wformat],
            "type": {"normal": 0, "max": 1, "raw": 2}[self.wmode],
            "points": total, "count": 1, "x_increment": acq.duration_ns / 1e9 / total,
            "x_origin": acq.xorigin(), "x_reference": 0,
            "y_increment": yinc, "y_origin": yorig, "y_reference": yref,
        }
        order = self._wfacts().get("preamble") or list(fields)
        return ",".join(_pre(fields.get(k, 0)) for k in order)

    def samples(self, ch: int | None = None, start: int = 1, stop: int | None = None) -> np.ndarray:
        """Volts at the probe tip of channel ``ch`` for points start..stop (1-based, inclusive)
        of the current acquisition."""
        ch = self.source if ch is None else ch
        acq = self._acq()
        total = self._points()
        stop = total if stop is None else stop
        key = (ch, total)
        if self._wf is None or self._wf[0] is not acq or self._wf[1] != key:   # one synthesis per acquisition
            cfg = self.bench.settings
            self._wf = (acq, key, line_waveform(acq.record, self.bench.option, acq.t0_ns, acq.duration_ns,
                                                total, self._dirs(ch), acq.levels, cfg.get("rise_time_s", 0.0),
                                                math.hypot(cfg.get("scope_noise", 0.0), acq.noise), self.bench.seed))
        return self._wf[2].render(start - 1, stop).astype(np.float64) * self.bench.probe_gain()

    def q_waveform_data(self, f):
        total = self._points()
        start, stop = self._range(total)
        limit = int(self._wfacts().get("max_points_per_read") or 0)
        if limit and self.wformat != "ascii" and stop - start + 1 > limit:
            raise ScpiError(-222, f"{stop - start + 1} points in one read; at most {limit}")
        v = self.samples(self.source, start, stop)
        if self.wformat == "ascii":
            body = ",".join(f"{x:.6e}" for x in v).encode()
        else:
            yinc, yorig, yref = self._yscale(self.source)
            codes = np.clip(np.rint(v / yinc + yorig + yref), 0, 255)
            body = codes.astype(np.uint8).tobytes() if self.wformat == "byte" else \
                codes.astype("<u2").tobytes()
        n = str(len(body))
        return b"#9" + n.zfill(9).encode() + body

    # -- built-in measurements (on the current acquisition of a channel)
    def _measured(self, f) -> np.ndarray:
        return self.samples(self.channel(f))

    def q_measure_vmax(self, f):
        return _pre(float(self._measured(f).max()))

    def q_measure_vmin(self, f):
        return _pre(float(self._measured(f).min()))

    def q_measure_amplitude(self, f):
        v = self._measured(f)
        return _pre(float(np.percentile(v, 99) - np.percentile(v, 1)))

    def q_measure_rise_time(self, f):
        acq = self._acq()
        return _pre(max(self.bench.settings.get("rise_time_s", 0.0), acq.duration_ns / 1e9 / self._points()))

    def q_measure_fall_time(self, f):
        return self.q_measure_rise_time(f)

    def q_measure_frequency(self, f):
        acq = self._acq()
        chars = line_chars(acq.record, self._dirs(self.channel(f)), acq.t0_ns, acq.t0_ns + acq.duration_ns)
        if not chars:
            return _pre(9.9e37)   # what the scope answers when it cannot measure
        return _pre(float(np.median([c.baud for c in chars])) / 2)


def _pre(v) -> str:
    if isinstance(v, int):
        return str(v)
    return f"{v:.6e}"


# --------------------------------------------------------------------------- generator
class VirtualGenerator(VirtualInstrument):
    capability = "generator"

    def reset(self) -> None:
        super().reset()
        chans = self.model.channels
        self.function = {c: "sine" for c in chans}
        self.vpp = {c: 0.1 for c in chans}
        self.offset = {c: 0.0 for c in chans}
        self.freq = {c: 1000.0 for c in chans}
        self.width = {c: 1e-4 for c in chans}
        self.output = {c: False for c in chans}
        self.burst = {c: False for c in chans}
        self.cycles = {c: 1.0 for c in chans}
        self.trig_source = {c: "bus" for c in chans}
        self.arbs: dict[tuple[int, str], np.ndarray] = {}
        self.arb = {c: None for c in chans}
        self.srate = {c: 40e3 for c in chans}
        self.swapped = False
        self.bench.generator_changed(self)

    def _set(self, table, f, value):
        ch = self.channel(f)
        table[ch] = value
        self.bench.generator_changed(self)

    def do_function_noise(self, f):
        self._set(self.function, f, "noise")

    def do_function_pulse(self, f):
        self._set(self.function, f, "pulse")

    def do_function_arbitrary(self, f):
        self._set(self.function, f, "arbitrary")

    def do_function_dc(self, f):
        self._set(self.function, f, "dc")

    def do_frequency(self, f):
        self._set(self.freq, f, number(f["value"], 1e-6, 1e9))

    def do_pulse_width(self, f):
        self._set(self.width, f, number(f["value"], 1e-9, 1e3))

    def do_amplitude(self, f):
        self._set(self.vpp, f, number(f["value"], 0.0, 20.0))

    def q_amplitude(self, f):
        return fmt_number(self.vpp[self.channel(f)])

    def do_offset(self, f):
        self._set(self.offset, f, number(f["value"], -10.0, 10.0))

    def q_offset(self, f):
        return fmt_number(self.offset[self.channel(f)])

    def do_output_on(self, f):
        self._set(self.output, f, True)

    def do_output_off(self, f):
        self._set(self.output, f, False)

    def q_output(self, f):
        return "1" if self.output[self.channel(f)] else "0"

    def do_burst_state(self, f):
        self._set(self.burst, f, boolean(f["value"]))

    def do_burst_cycles(self, f):
        self._set(self.cycles, f, number(f["value"], 1, 1e8))

    def do_trigger_source(self, f):
        self._set(self.trig_source, f, str(f["value"]).strip().lower())

    def do_trigger(self, f):
        self.bench.generator_trigger(self)

    # -- arbitrary waveforms: DAC codes (facts.arb) scaled to +-Vpp/2 around the offset
    def do_byte_order(self, f):
        self.swapped = True

    def do_arb_clear(self, f):
        ch = self.channel(f)
        self.arbs = {k: v for k, v in self.arbs.items() if k[0] != ch}
        self._set(self.arb, f, None)

    def do_arb_upload(self, f):
        ch = self.channel(f)
        a = self.model.facts.get("arb") or {}
        dt = np.dtype(a.get("datatype", "h"))
        order = a.get("byte_order", "little") if self.swapped else "big"
        dt = dt.newbyteorder("<" if order == "little" else ">")
        data = f["block"]
        if len(data) % dt.itemsize:
            raise ScpiError(-160, f"{len(data)} bytes is not a whole number of {dt.itemsize}-byte codes")
        codes = np.frombuffer(data, dtype=dt).astype(np.float64)
        lo, hi = float(a.get("dac_min", -32767)), float(a.get("dac_max", 32767))
        n_min, n_max = int(a.get("min_points", 1)), int(a.get("max_points", 1 << 24))
        if not n_min <= len(codes) <= n_max:
            raise ScpiError(-222, f"{len(codes)} points; {n_min}..{n_max}")
        if codes.min() < lo or codes.max() > hi:
            raise ScpiError(-222, f"DAC codes outside {lo:g}..{hi:g}")
        self.arbs[(ch, f["name"].strip("\"'").upper())] = codes / max(abs(lo), abs(hi))

    def do_arb_select(self, f):
        ch = self.channel(f)
        name = f["name"].strip("\"'").upper()
        if (ch, name) not in self.arbs:
            raise ScpiError(-224, f"no waveform {name!r} in volatile memory")
        self._set(self.arb, f, name)

    def do_arb_sample_rate(self, f):
        self._set(self.srate, f, number(f["value"], 1e-6, 1e9))

    def arb_volts(self, ch: int) -> np.ndarray | None:
        name = self.arb[ch]
        if name is None:
            return None
        return self.arbs[(ch, name)] * self.vpp[ch] / 2 + self.offset[ch]

    def effect(self, ch: int, option, loop) -> float:
        """The bit error rate channel ``ch`` causes on the line right now (0: none)."""
        if not self.output[ch]:
            return 0.0
        fn = self.function[ch]
        if fn == "noise":
            return loopmodel.noise_ber(option, self.vpp[ch], self.offset[ch], loop)
        if fn == "pulse":
            return loopmodel.glitch_ber(option, self.vpp[ch], self.freq[ch], self.width[ch], loop)
        if fn == "dc":
            return loopmodel.noise_ber(option, 0.0, self.offset[ch], loop)
        if fn == "arbitrary":
            v = self.arb_volts(ch)
            return 0.0 if v is None else loopmodel.waveform_ber(option, v, loop)
        return 0.0   # a sine or square wave: not modelled as a disturbance (assumed)

    def burst_ns(self, ch: int) -> int:
        """A burst lasts cycles periods: of the arbitrary waveform (points / sample rate), else of
        the frequency (for noise, the burst's carrier; assumed)."""
        v = self.arb_volts(ch) if self.function[ch] == "arbitrary" else None
        period = len(v) / self.srate[ch] if v is not None else 1.0 / self.freq[ch]
        return max(1, int(round(self.cycles[ch] * period * 1e9)))


# --------------------------------------------------------------------------- supply and meter
class VirtualSupply(VirtualInstrument):
    capability = "supply"

    def __init__(self, role, model, bench):
        super().__init__(role, model, bench)
        # power-on state of the virtual bench: the loop channel powered as an HHU powers it
        init = bench.settings.get("supply") or {}
        ch = bench.loop_channel
        self.volts[ch] = float(init.get("voltage", 24.0))
        self.limit[ch] = float(init.get("current_limit", 0.03))
        self.output[ch] = bool(init.get("output", True))

    def reset(self) -> None:
        """*RST: every output off at 0 V (the loop goes dead, as with a real supply)."""
        super().reset()
        chans = self.model.channels
        self.volts = {c: 0.0 for c in chans}
        self.limit = {c: 0.1 for c in chans}
        self.output = {c: False for c in chans}
        self.bench.loop_changed()

    def _set(self, table, f, value):
        table[self.channel(f)] = value
        self.bench.loop_changed()

    def do_voltage(self, f):
        self._set(self.volts, f, number(f["value"], 0.0, 60.0))

    def q_voltage(self, f):
        return fmt_number(self.volts[self.channel(f)])

    def do_current_limit(self, f):
        self._set(self.limit, f, number(f["value"], 0.0, 10.0))

    def q_current_limit(self, f):
        return fmt_number(self.limit[self.channel(f)])

    def do_output_on(self, f):
        self._set(self.output, f, True)

    def do_output_off(self, f):
        self._set(self.output, f, False)

    def q_output(self, f):
        return "ON" if self.output[self.channel(f)] else "OFF"

    def state(self, ch: int) -> loopmodel.LoopState:
        return loopmodel.loop_state(self.volts[ch], self.limit[ch], self.output[ch],
                                    r_loop_ohm=self.bench.r_loop_ohm)

    def q_measure_voltage(self, f):
        return f"{self.state(self.channel(f)).terminal_v:.4f}"

    def q_measure_current(self, f):
        return f"{self.state(self.channel(f)).mark_ma / 1e3:.5f}"


class VirtualMeter(VirtualInstrument):
    """In series with the loop for current, across the supply's terminals for voltage (assumed wiring)."""

    capability = "meter"

    def reset(self) -> None:
        super().reset()
        self.function = "voltage"

    def do_configure_voltage_dc(self, f):
        self.function = "voltage"

    def do_configure_current_dc(self, f):
        self.function = "current"

    def _reading(self, function: str) -> str:
        s = self.bench.loop
        return fmt_number(s.terminal_v if function == "voltage" else s.mark_ma / 1e3)

    def q_read(self, f):
        return self._reading(self.function)

    def q_measure_voltage_dc(self, f):
        self.function = "voltage"
        return self._reading("voltage")

    def q_measure_current_dc(self, f):
        self.function = "current"
        return self._reading("current")


CLASSES = {"scope": VirtualScope, "generator": VirtualGenerator, "supply": VirtualSupply, "meter": VirtualMeter}


# =========================================================================== servers
class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        inst: VirtualInstrument = self.server.instrument
        sock: socket.socket = self.request
        term = inst.model.read_termination.encode("latin-1")
        parser = ScpiInput()
        self.server.conns.add(sock)
        try:
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                before = parser.overruns
                messages = parser.feed(data)
                if parser.overruns != before:
                    inst.push_error(-363)
                for units in messages:
                    for reply in inst.execute(units):
                        try:
                            sock.sendall(reply + term)
                        except OSError:
                            return
        finally:
            self.server.conns.discard(sock)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, instrument: VirtualInstrument, host: str, port: int):
        self.instrument = instrument
        self.conns: set[socket.socket] = set()
        super().__init__((host, port), _Handler)

    def handle_error(self, request, client_address) -> None:
        pass  # one connection's trouble is not the server's


# =========================================================================== the bench
class VirtualBench:
    """A scope, a generator, a supply and a meter on loopback TCP, acting on a VirtualLine.

    ``models``: role -> model name or InstrumentModel (default :data:`DEFAULT_MODELS`; a role left
    out is not served).  ``config``: a :class:`rig.bench.config.BenchConfig` instead: its option,
    models and channels (the supply's channel powers the loop, the generator's disturbs the line,
    the scope's probes the whole line) are used.  ``settings`` (all optional): ``probes`` {scope
    channel: "to_meter" | "to_hhu" | "both"} (default 1 both, 2 to_meter, 3 to_hhu, 4 both),
    ``supply`` {voltage, current_limit, output} at power-on (24 V, 30 mA, on: the loop powered as an
    HHU powers it), ``r_loop_ohm``, ``probe_gain`` (V per option unit), ``memory_depth`` (scope
    points, 120 000), ``rise_time_s`` and ``scope_noise`` (rms, option unit) of the scope's view,
    ``seed`` (of the faults' bit errors), ``ports`` {role: TCP port} (0: ephemeral), ``host``.
    """

    def __init__(self, line, option="current-loop", models=None, config=None, settings=None):
        from rig.bench.models import load_model

        self.line = line
        self.bench_config = config
        cfg = dict(settings or {})
        self.settings = cfg
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
        self._lock = threading.RLock()
        self._started = False
        self._owned: dict[str, tuple[Fault, ...]] = {}
        self._bursts: list[Fault] = []
        self.instruments: dict[str, VirtualInstrument] = {}
        self._servers: dict[str, _Server] = {}
        self._threads: list[threading.Thread] = []
        for role, m in (DEFAULT_MODELS if models is None else models).items():
            model = load_model(m)
            self.instruments[role] = CLASSES[model.capability](role, model, self)

    def bench(self):
        """The bench configuration with the virtual instruments' resource strings (for the drivers:
        ``bench.bench().open("scope")``)."""
        from dataclasses import replace

        from rig.bench.config import InstrumentConfig, load_bench
        from rig.bench.safety import DutLimits

        base = self.bench_config or replace(load_bench(None), option=self.option.name,
                                            limits=DutLimits.for_option(self.option))
        inst = {role: base.instruments[role] if self.bench_config else InstrumentConfig(role, i.model)
                for role, i in self.instruments.items()}
        return replace(base, instruments=inst).with_resources(self.resources, backend="@py")

    # -- roles
    def by_capability(self, capability: str) -> VirtualInstrument | None:
        for inst in self.instruments.values():
            if inst.capability == capability:
                return inst
        return None

    @property
    def resources(self) -> dict[str, str]:
        return {role: f"TCPIP::{self.host}::{srv.server_address[1]}::SOCKET"
                for role, srv in self._servers.items()}

    @property
    def ports(self) -> dict[str, int]:
        return {role: srv.server_address[1] for role, srv in self._servers.items()}

    # -- the loop and the line
    @property
    def loop(self) -> loopmodel.LoopState:
        """The loop as the supply powers it (a bench without a supply: the power-on default)."""
        sup = self.by_capability("supply")
        if isinstance(sup, VirtualSupply):
            return sup.state(self.loop_channel)
        s = self.settings.get("supply") or {}
        return loopmodel.loop_state(float(s.get("voltage", 24.0)), float(s.get("current_limit", 0.03)),
                                    bool(s.get("output", True)), r_loop_ohm=self.r_loop_ohm)

    def line_levels(self) -> tuple[float, float]:
        """(mark, space) on the line in the option's unit."""
        return loopmodel.levels(self.option, self.loop if self.option.name == "current-loop" else None)

    def probe_gain(self) -> float:
        return float(self.settings.get("probe_gain", loopmodel.PROBE_GAIN[self.option.name]))

    def _seed(self) -> int:
        self._seeds += 1
        return self._seeds

    def _own(self, slot: str, faults: tuple[Fault, ...]) -> None:
        """Replace the bench's faults in ``slot`` on the line, leaving everyone else's."""
        with self._lock:
            now = _clock.now_ns()
            # a burst over is harmless (characters are put on the line at or after now) and goes
            self._bursts = [b for b in self._bursts if b.start_ns + b.duration_ns > now]
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
        gen = gen or self.by_capability("generator")
        if not self._started or not isinstance(gen, VirtualGenerator):
            return
        with self._lock:
            ch = self.generator_channel
            ber = 0.0 if gen.burst[ch] else gen.effect(ch, self.option, self.loop)
            kind = "bit_flip" if gen.function[ch] == "pulse" else "noise"
            prev = self._owned.get("generator", ())
            if (not prev and ber == 0) or (prev and prev[0].ber == ber and prev[0].kind == kind):
                return
            faults = ()
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
            if not gen.output[ch] or gen.burst[ch] or gen.function[ch] != "noise":
                return 0.0
            return loopmodel.COUPLING[self.option.name] * abs(gen.vpp[ch]) / loopmodel.NOISE_CREST

    def generator_trigger(self, gen: VirtualGenerator) -> None:
        """A trigger: with burst on and the output on, a noise window of the burst's duration."""
        ch = self.generator_channel
        if not (gen.burst.get(ch) and gen.output.get(ch)):
            return
        with self._lock:
            ber = gen.effect(ch, self.option, self.loop)
            if ber <= 0:
                return
            self._bursts.append(Fault("noise", ber=ber, start_ns=_clock.now_ns(),
                                      duration_ns=gen.burst_ns(ch), seed=self._seed()))
            self._own("generator", self._owned.get("generator", ()))

    # -- life
    def start(self) -> "VirtualBench":
        ports = self.settings.get("ports") or {}
        try:
            for role, inst in self.instruments.items():
                srv = _Server(inst, self.host, int(ports.get(role, 0)))
                self._servers[role] = srv
                t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                                     name=f"virtual-{role}", daemon=True)
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
        for srv in self._servers.values():
            srv.shutdown()
            for c in list(srv.conns):
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            srv.server_close()
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

    def __enter__(self) -> "VirtualBench":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
