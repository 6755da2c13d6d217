"""Drivers by capability over pyvisa: :class:`Scope`, :class:`Generator`, :class:`Supply`, :class:`Meter`.

A driver is given a VISA resource string and an instrument model (name or
:class:`~rig.bench.models.InstrumentModel`) and speaks only the model's command vocabulary; it never
names a model.  Settings are declared one per line, pymeasure-style, with their validator::

    scale = Control("channel_scale", "channel_scale?", "vertical scale, V/div", validator=facts_range("vertical_scale"))

On open the driver picks the pyvisa backend (``@py`` for TCPIP/ASRL, ``@sim`` when asked, the default
otherwise), checks the ``*IDN?`` answer against the model and, after every configuration, the error
queue (``SYST:ERR?``).  Timeouts, garbage answers and short binary blocks become
:class:`InstrumentError` naming the instrument and the command.  Instruments with outputs switch them
off on open, on close, on context-manager exit, when the instrument stops answering, and through
:data:`rig.bench.safety.OUTPUTS` at exit and on Ctrl-C.  Settings that would exceed the DUT's limits
(:class:`rig.bench.safety.DutLimits`) raise :class:`~rig.bench.safety.SafetyError` before anything is sent.
"""
from __future__ import annotations

import atexit
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rig.bench.models import (
    InstrumentModel,
    load_model,
    sim_resource,
    write_sim_library,
)
from rig.bench.safety import OUTPUTS, DutLimits, SafetyError
from rig.deadline import Deadline
from rig.errors import RigError
from rig.measurement import Measurement

__all__ = ["Control", "Generator", "Instrument", "InstrumentError", "Meter", "Scope", "ScopeWaveform", "Supply",
           "open_instrument", "SafetyError"]

OVERLOAD = 9.0e37          # SCPI "not a number / overload" answers are 9.9E37 (and 9.91E37)


class InstrumentError(RigError, RuntimeError):
    """An instrument that cannot be used as asked: wrong identity, no answer, garbage, error queue."""


# --------------------------------------------------------------------------- declarative settings
def finite(who: str, value, unit: str = "") -> float:
    """``value`` as a finite float, or :class:`SafetyError` naming ``who``: NaN and infinity compare
    False with every limit, so they are refused before any limit is looked at."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{who}: {value!r} is not a number") from None
    if not math.isfinite(v):
        raise SafetyError(f"{who}: {value!r} {unit} is not a finite number; nothing was sent".replace("  ", " "))
    return v


def in_range(low: float | None, high: float | None, unit: str = "") -> Callable:
    """Validator: a finite number within [low, high]."""
    def check(owner, value):
        v = finite(owner.name, value, unit)
        if (low is not None and v < low) or (high is not None and v > high):
            raise ValueError(f"{owner.name}: {v:g} {unit} is outside {low:g} .. {high:g} {unit}".replace("  ", " "))
        return v
    return check


def facts_range(fact: str, unit: str = "") -> Callable:
    """Validator: a finite number within the model's ``facts[fact] = [low, high]`` (if stated)."""
    def check(owner, value):
        rng = owner.model.facts.get(fact)
        if rng:
            return in_range(rng[0], rng[1], unit)(owner, value)
        return finite(owner.name, value, unit)
    return check


def facts_choice(fact: str, unit: str = "") -> Callable:
    """Validator: one of the numbers in the model's ``facts[fact]`` (the values the instrument
    accepts, e.g. a meter's NPLC settings), or MIN/MAX/DEF; any finite number if not stated."""
    def check(owner, value):
        if isinstance(value, str) and value.strip().upper() in ("MIN", "MAX", "DEF"):
            return value.strip().upper()
        v = finite(owner.name, value, unit)
        allowed = owner.model.facts.get(fact)
        if allowed and not any(math.isclose(v, float(a), rel_tol=1e-9) for a in allowed):
            raise ValueError(f"{owner.name}: {v:g} {unit} is not one of the values the instrument accepts, "
                             f"{', '.join(f'{float(a):g}' for a in allowed)}".replace("  ", " "))
        return v
    return check


def facts_word(fact: str) -> Callable:
    """Validator: a word of the model's ``facts[fact]`` (a list of words, or a mapping of our names ->
    the model's words); returns the model's word."""
    def check(owner, value):
        words = owner.model.facts.get(fact)
        if words is None:
            return value
        if isinstance(words, dict):
            if value in words:
                return words[value]
            if value in words.values():
                return value
            raise ValueError(f"{owner.name}: {value!r} is not one of {sorted(words)}")
        if str(value).upper() not in [str(w).upper() for w in words]:
            raise ValueError(f"{owner.name}: {value!r} is not one of {list(words)}")
        return value
    return check


class Control:
    """One instrument setting: a vocabulary setter key, an optional query key, a validator.

    On a :class:`Channel` the ``{ch}`` field is the channel's number.  ``validator(owner, value)``
    returns the value to send or raises (ValueError, SafetyError) before anything is sent.  The
    last value written is remembered in ``owner.state`` (used by the safety checks)."""

    def __init__(self, set_key: str | None, get_key: str | None = None, doc: str = "", *,
                 validator: Callable | None = None, cast: Callable = float, check_errors: bool = False):
        self.set_key, self.get_key, self.doc = set_key, get_key, doc
        self.validator, self.cast, self.check_errors = validator, cast, check_errors
        self.__doc__ = doc

    def __set_name__(self, owner, name):
        self.attr = name

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        if self.get_key is None:
            raise AttributeError(f"{self.attr} can be set but not read back")
        return obj._instrument._query_cast(self.get_key, self.cast, **obj._fields())

    def __set__(self, obj, value):
        if self.set_key is None:
            raise AttributeError(f"{self.attr} is read-only")
        if self.validator is not None:
            value = self.validator(obj, value)
        obj._instrument._write(self.set_key, value=value, **obj._fields())
        obj.state[self.attr] = value
        if self.check_errors:
            obj._instrument.check_errors(f"{self.attr} = {value!r}")


def _bool_answer(text: str) -> bool:
    t = text.strip().upper()
    if t in ("1", "ON", "+1"):
        return True
    if t in ("0", "OFF", "+0"):
        return False
    raise ValueError(text)


# --------------------------------------------------------------------------- opening resources
_SIM_FILES: list[str] = []
_RMS: dict[str, Any] = {}


def _cleanup_sim_files() -> None:
    for f in _SIM_FILES:
        try:
            os.unlink(f)
        except OSError:
            pass


atexit.register(_cleanup_sim_files)


def _backend_for(resource: str, backend: str | None, sim: bool) -> str:
    if backend:
        return backend
    if sim:
        return "@sim"
    r = resource.upper()
    if r.startswith("TCPIP") or r.startswith("ASRL"):
        return "@py"
    return ""


def _resource_manager(backend: str, model: InstrumentModel, sim_library: str | Path | None):
    import pyvisa

    if backend == "@sim":
        if sim_library is None:
            fd, path = tempfile.mkstemp(prefix=f"rig-sim-{model.name}-", suffix=".yaml")
            os.close(fd)
            _SIM_FILES.append(path)
            write_sim_library(path, [model])
            sim_library = path
        backend = f"{sim_library}@sim"
    rm = _RMS.get(backend)
    if rm is not None:
        try:
            rm.session  # pyvisa shares one manager per library: someone else may have closed it
        except pyvisa.errors.InvalidSession:
            rm = None
    if rm is None:
        rm = _RMS[backend] = pyvisa.ResourceManager(backend) if backend else pyvisa.ResourceManager()
    return rm


def _no_delay(res) -> None:
    """Small writes leave at once on a raw-socket (``TCPIP::...::SOCKET``) resource: VISA's
    ``VI_ATTR_TCPIP_NODELAY``, on by default in NI-VISA but not in pyvisa-py.  With Nagle's algorithm
    on, a setting (no reply) followed by a query (the ``SYST:ERR?`` check after it) waits for the
    instrument's delayed ACK, some 40 ms per pair on Linux.  pyvisa-py 0.8 reads the attribute from
    its socket but cannot set it (its setter raises UnknownAttribute), so its socket is set directly.
    Backends or sessions without either are left as they are."""
    import socket

    from pyvisa import constants

    attr = constants.ResourceAttribute.tcpip_nodelay
    try:
        if res.resource_class != "SOCKET":
            return
        try:
            res.set_visa_attribute(attr, constants.VisaBoolean.true)
            if res.get_visa_attribute(attr) == constants.VisaBoolean.true:
                return
        except Exception:  # noqa: BLE001 - pyvisa-py: UnknownAttribute; try its socket below
            pass
        sock = getattr(res.visalib.sessions[res.session], "interface", None)
        if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except Exception:  # noqa: BLE001 - another backend or session kind: nothing to do
        pass


# --------------------------------------------------------------------------- the base driver
class Instrument:
    """An instrument of one capability, driven through its model's command vocabulary.

    ``resource``: a VISA resource string (``TCPIP::127.0.0.1::5025::SOCKET``, ``ASRL/dev/ttyUSB0::INSTR``,
    ``USB0::...::INSTR``); None with ``sim=True`` opens the model's pyvisa-sim device.
    ``backend``: a pyvisa backend string overriding the choice; ``sim_library``: a pyvisa-sim file
    (default: one generated from the model's ``sim`` section).  ``limits``: the DUT's maximums.
    ``timeout``: seconds per answer.  ``sent`` keeps every command written, in order.
    """

    capability = ""

    def __init__(self, resource: str | None, model: str | InstrumentModel, *, role: str | None = None,
                 limits: DutLimits | None = None, backend: str | None = None, sim: bool = False,
                 sim_library: str | Path | None = None, timeout: float = 2.0, check_idn: bool = True,
                 reset: bool = False):
        self.model = load_model(model)
        if self.model.capability != self.capability:
            raise InstrumentError(f"model {self.model.name} ({self.model.model}) is a {self.model.capability}, "
                                  f"not a {self.capability}")
        sim = sim or sim_library is not None or (backend or "").endswith("@sim")
        if resource is None:
            if not sim:
                raise InstrumentError(f"{self.capability} {self.model.model}: no VISA resource given")
            resource = sim_resource(self.model)
        self.resource_name = resource
        self.role = role or self.capability
        self.limits = limits
        self.timeout = float(timeout)
        self.name = f"{self.role} {self.model.model} at {resource}"
        self.label = f"{self.role} {self.model.model.split()[-1]}"   # "supply DP832", for safety messages
        self.sent: list[str] = []
        self.state: dict = {}
        self._instrument = self
        self._res = None
        self._ready = False
        be = _backend_for(resource, backend, sim)
        try:
            rm = _resource_manager(be, self.model, sim_library)
            res = rm.open_resource(resource)
        except Exception as e:  # noqa: BLE001 - pyvisa raises many kinds here
            raise InstrumentError(f"{self.name}: cannot open the resource (backend {be or 'default'}): {e}") from e
        res.read_termination = self.model.read_termination
        res.write_termination = self.model.write_termination
        res.timeout = int(self.timeout * 1000)
        _no_delay(res)
        try:
            res.encoding = "latin-1"
        except AttributeError:
            pass
        self._res = res
        try:
            if check_idn:
                self.idn = self._query("idn?")
                if not self.model.idn_matches(self.idn):
                    raise InstrumentError(f"{resource} is not a {self.model.model} (model {self.model.name}): "
                                          f"*IDN? answered {self.idn!r}, expected {self.model.idn!r}")
            if reset:
                self._write("reset")
                self._query("opc?")
            self._write("clear_status")
            self._ready = True
            self._opened()
        except BaseException:
            self._close_resource()
            raise

    def _opened(self) -> None:
        """Hook run once the identity is checked (drivers switch outputs off here)."""

    # -- context manager
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self) -> None:
        """Close the VISA session (an instrument with outputs switches them off first)."""
        self._close_resource()

    def _close_resource(self) -> None:
        res, self._res = self._res, None
        if res is not None:
            try:
                res.close()
            except Exception:  # noqa: BLE001
                pass

    @property
    def is_open(self) -> bool:
        """Whether the VISA session is open."""
        return self._res is not None

    def _fields(self) -> dict:
        return {}

    # -- I/O
    def _require_open(self, what: str):
        if self._res is None:
            raise InstrumentError(f"{self.name}: closed; cannot send {what!r}")
        return self._res

    def _fail(self, text: str, reason: str, exc: BaseException | None = None) -> InstrumentError:
        self._on_failure()
        return InstrumentError(f"{self.name}: {text!r}: {reason}")

    def _on_failure(self) -> None:
        """Hook after a timeout or garbage answer (instruments with outputs switch them off)."""

    def send(self, text: str) -> None:
        """Write one SCPI line (no vocabulary check: prefer the drivers' methods)."""
        res = self._require_open(text)
        self.sent.append(text)
        try:
            res.write(text)
        except Exception as e:  # noqa: BLE001
            raise self._fail(text, f"write failed: {e}", e) from e

    def ask(self, text: str) -> str:
        """Write one SCPI query and return its answer (stripped); timeouts become InstrumentError."""
        self.send(text)
        return self._read(text)

    def _read(self, text: str) -> str:
        import pyvisa

        res = self._require_open(text)
        try:
            answer = res.read()
        except pyvisa.errors.VisaIOError as e:
            if e.error_code == pyvisa.constants.StatusCode.error_timeout:
                raise self._fail(text, f"no answer within {self.timeout:g} s (timeout)", e) from e
            raise self._fail(text, f"read failed: {e}", e) from e
        except Exception as e:  # noqa: BLE001
            raise self._fail(text, f"read failed: {e}", e) from e
        answer = answer.strip()
        if any(ord(c) < 32 or ord(c) > 126 for c in answer):
            raise self._fail(text, f"garbage answer {answer[:40]!r}")
        return answer

    def _write(self, key: str, **fields) -> None:
        value = fields.get("value")
        if value is not None and not isinstance(value, bool):
            bad = isinstance(value, (int, float)) and not math.isfinite(value)
            bad = bad or (isinstance(value, str) and value.strip().lower().lstrip("+-") in ("nan", "inf", "infinity"))
            if bad:     # the last line of defence: no command carries NaN or infinity to an instrument
                raise SafetyError(f"{self.name}: {key} = {value!r} is not a finite number; nothing was sent")
        self.send(self.model.command(key, **fields))

    # -- IEEE 488.2 binary blocks, through pyvisa (errors name the instrument and the command)
    def _binary(self, text: str, action: str, call: Callable):
        import pyvisa

        res = self._require_open(text)
        try:
            return call(res)
        except pyvisa.errors.VisaIOError as e:
            if e.error_code == pyvisa.constants.StatusCode.error_timeout:
                raise self._fail(text, f"{action}: short or missing binary block: no data within "
                                       f"{self.timeout:g} s (timeout)", e) from e
            raise self._fail(text, f"{action}: {e}", e) from e
        except (ValueError, RuntimeError, pyvisa.errors.InvalidBinaryFormat) as e:
            raise self._fail(text, f"{action}: not an IEEE 488.2 definite-length block ({e})", e) from e

    def query_block(self, text: str, dtype: np.dtype) -> np.ndarray:
        """Send query ``text`` and read its definite-length binary block answer as ``dtype`` values
        (pyvisa's ``query_binary_values``)."""
        dtype = np.dtype(dtype)
        self.sent.append(text)
        return self._binary(text, "reading the binary block", lambda res: res.query_binary_values(
            text, datatype=dtype.char, is_big_endian=dtype.byteorder == ">", container=np.ndarray,
            header_fmt="ieee", expect_termination=True))

    def write_block(self, head: str, values: np.ndarray) -> None:
        """Write ``head`` followed by ``values`` as one definite-length binary block (pyvisa's
        ``write_binary_values``; the write termination follows)."""
        values = np.asarray(values)
        self.sent.append(f"{head}<block of {values.nbytes} bytes>")
        self._binary(head, f"writing a {values.nbytes}-byte block", lambda res: res.write_binary_values(
            head, values, datatype=values.dtype.char, is_big_endian=values.dtype.byteorder == ">",
            header_fmt="ieee"))

    def _query(self, key: str, **fields) -> str:
        return self.ask(self.model.command(key, **fields))

    def _query_cast(self, key: str, cast: Callable = float, **fields):
        text = self.model.command(key, **fields)
        answer = self.ask(text)
        try:
            if cast is bool:
                return _bool_answer(answer)
            if cast is float:
                v = float(answer.split(",")[0])
                return None if abs(v) >= OVERLOAD or math.isnan(v) else v
            return cast(answer)
        except (TypeError, ValueError):
            raise self._fail(text, f"garbage answer {answer[:40]!r}, expected {getattr(cast, '__name__', cast)}") \
                from None

    def errors(self, limit: int = 32) -> list[str]:
        """Drain the error queue: every entry whose code is not 0."""
        out = []
        for _ in range(limit):
            text = self.model.command("error?")
            answer = self.ask(text)
            code = answer.split(",")[0].strip()
            try:
                n = int(code)
            except ValueError:
                raise self._fail(text, f"garbage answer {answer[:40]!r}, expected '<code>,\"<message>\"'") from None
            if n == 0:
                break
            out.append(answer)
        return out

    def check_errors(self, context: str = "configuration") -> None:
        """Raise :class:`InstrumentError` if the error queue holds anything (after ``context``)."""
        last = self.sent[-1] if self.sent else ""
        errs = self.errors()
        if errs:
            raise InstrumentError(f"{self.name}: the instrument reports an error after {context} "
                                  f"(last command {last!r}): " + "; ".join(errs))

    def wait_complete(self) -> None:
        """Wait until the instrument has carried out every command sent (``*OPC?`` answers 1)."""
        answer = self._query("opc?")
        if answer.strip().lstrip("+") != "1":
            raise self._fail(self.model.command("opc?"), f"garbage answer {answer!r}, expected 1")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {getattr(self, 'name', '(not open)')}>"


class Channel:
    """One channel of an instrument: settings declared with :class:`Control` get ``ch`` filled in."""

    def __init__(self, instrument: Instrument, ch: int):
        if ch not in instrument.model.channels:
            raise ValueError(f"{instrument.name}: no channel {ch}; channels are {instrument.model.channels}")
        self._instrument = instrument
        self.ch = ch
        self.model = instrument.model
        self.name = f"{instrument.label} CH{ch}"
        self.state: dict = {}

    def _fields(self) -> dict:
        return {"ch": self.ch}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


# --------------------------------------------------------------------------- outputs
class OutputInstrument(Instrument):
    """An instrument whose outputs reach the DUT: off on open, close, failure, exit and Ctrl-C."""

    channel_class = Channel

    def _opened(self) -> None:
        self.channels = {c: self.channel_class(self, c) for c in self.model.channels}
        self.outputs_off()
        OUTPUTS.register(self)

    def ch(self, n: int):
        """Channel ``n`` (ValueError naming the channels there are)."""
        try:
            return self.channels[n]
        except KeyError:
            raise ValueError(f"{self.name}: no channel {n}; channels are {list(self.channels)}") from None

    def outputs_off(self) -> None:
        """Switch every channel's output off."""
        for c in self.model.channels:
            self._write("output_off", ch=c)

    def output_off(self, ch: int = 1) -> None:
        """Switch channel ``ch``'s output off."""
        self._write("output_off", ch=ch)

    def output_state(self, ch: int = 1) -> bool:
        """Whether channel ``ch``'s output is on, as the instrument answers."""
        return self._query_cast("output?", bool, ch=ch)

    def _verified(self, key: str, ch: int, what: str) -> float:
        """A programmed setting read back for a safety check.  An answer that is not a finite number
        (``9.9E37`` overload, ``NAN``) cannot be checked, so it is not taken as 0: the channel's output
        is switched off and :class:`SafetyError` raised."""
        text = self.model.command(key, ch=ch)
        answer = self.ask(text)
        try:
            v = float(answer.split(",")[0])
        except ValueError:
            v = float("nan")
        if not math.isfinite(v) or abs(v) >= OVERLOAD:
            self.output_off(ch)
            raise SafetyError(f"{self.ch(ch).name}: the {what} read back with {text!r} is {answer[:40]!r}, "
                              f"which cannot be checked against the DUT's limits; the output stays off")
        return v

    def emergency_off(self, flush: bool = False) -> None:
        """Every output off without raising and without waiting for answers.  ``flush``: first end a
        possibly half-written command with a bare termination (a signal may have interrupted a write;
        the instrument then sees one bad or empty line, not an OUTP OFF glued to a fragment)."""
        res = self._res
        if res is None:
            return
        try:
            res.timeout = min(res.timeout, 500)
        except Exception:  # noqa: BLE001
            pass
        if flush:
            try:
                res.write_raw(self.model.write_termination.encode())
            except Exception:  # noqa: BLE001
                pass
        for c in self.model.channels:
            text = self.model.command("output_off", ch=c)
            try:
                self.sent.append(text)
                res.write(text)
            except Exception:  # noqa: BLE001
                pass

    def _on_failure(self) -> None:
        if self._ready:          # never command an instrument whose identity is not established
            self.emergency_off()

    def close(self) -> None:
        """Every output off (and waited for), then the session closed and the output unregistered."""
        try:
            if self._res is not None:
                self.emergency_off()
                try:  # wait until the instrument has done it: closing must mean "outputs are off"
                    self._res.query(self.model.command("opc?"))
                except Exception:  # noqa: BLE001 - an instrument that no longer answers: nothing more to do
                    pass
        finally:
            OUTPUTS.unregister(self)
            self._close_resource()


# --------------------------------------------------------------------------- scope
@dataclass
class ScopeWaveform:
    """A transferred waveform scaled to volts: sample ``i`` is at ``t0 + i * dt`` seconds."""

    channel: int
    volts: np.ndarray
    t0: float
    dt: float
    preamble: dict

    @property
    def sample_rate(self) -> float:
        """Samples per second."""
        return 1.0 / self.dt

    @property
    def times(self) -> np.ndarray:
        """Each sample's time in seconds, relative to the trigger."""
        return self.t0 + self.dt * np.arange(len(self.volts))

    def __len__(self) -> int:
        return len(self.volts)


class ScopeChannel(Channel):
    """A scope channel's settings (each a :class:`Control`: set is sent, get is asked)."""

    display = Control("channel_display", None, "show the channel: ON|OFF", validator=lambda o, v: "ON" if v in (True, 1, "ON", "on") else "OFF")
    scale = Control("channel_scale", "channel_scale?", "vertical scale, V/div", validator=facts_range("vertical_scale", "V/div"))
    offset = Control("channel_offset", "channel_offset?", "vertical offset, V")
    coupling = Control("channel_coupling", "channel_coupling?", "input coupling AC|DC|GND", validator=facts_word("couplings"), cast=str)


class Scope(Instrument):
    """An oscilloscope: channels, timebase, edge (and serial) trigger, single capture, waveforms,
    built-in measurements as :class:`~rig.measurement.Measurement`."""

    capability = "scope"
    timebase = Control("timebase_scale", "timebase_scale?", "horizontal scale, s/div", validator=facts_range("timebase_scale", "s/div"))
    trigger_level = Control("trigger_edge_level", "trigger_edge_level?", "edge trigger level, V")

    def _opened(self) -> None:
        self.channels = {c: ScopeChannel(self, c) for c in self.model.channels}

    def ch(self, n: int) -> ScopeChannel:
        """Channel ``n`` (ValueError naming the channels there are)."""
        try:
            return self.channels[n]
        except KeyError:
            raise ValueError(f"{self.name}: no channel {n}; channels are {list(self.channels)}") from None

    # -- configuration (each checks the error queue)
    def configure_channel(self, ch: int, scale: float, offset: float = 0.0, coupling: str = "DC",
                          display: bool = True) -> None:
        """Show channel ``ch`` at ``scale`` V/div with ``offset`` V, ``coupling`` DC|AC|GND; every
        value checked against the model before anything is sent."""
        c = self.ch(ch)
        facts_range("vertical_scale", "V/div")(c, scale)      # checked before anything is sent
        finite(c.name, offset, "V")
        facts_word("couplings")(c, coupling)
        c.display = display
        c.coupling = coupling
        c.scale = scale
        c.offset = offset
        self.check_errors(f"configuring CH{ch}")

    def configure_timebase(self, scale: float, offset: float | None = None) -> None:
        """The horizontal scale in s/div and, if given, the screen centre's offset from the trigger in s."""
        facts_range("timebase_scale", "s/div")(self, scale)
        if offset is not None:
            finite(self.name, offset, "s")
        self.timebase = scale
        if offset is not None and self.model.has("timebase_offset"):
            self._write("timebase_offset", value=float(offset))
        self.check_errors("configuring the timebase")

    def edge_trigger(self, ch: int, level: float, slope: str = "rising", sweep: str = "single") -> None:
        """Trigger on channel ``ch`` crossing ``level`` V on ``slope`` (rising|falling|either), in
        ``sweep`` mode (auto|normal|single); the words are the model's."""
        c = self.ch(ch)
        slope_w = facts_word("slopes")(self, slope)
        sweep_w = facts_word("sweeps")(self, sweep)
        finite(c.name, level, "V")
        self._write("trigger_mode_edge")
        self._write("trigger_edge_source", ch=ch)
        self._write("trigger_edge_slope", value=slope_w)
        self.trigger_level = level
        self._write("trigger_sweep", value=sweep_w)
        self.check_errors(f"edge trigger on CH{ch}")

    @property
    def has_serial_trigger(self) -> bool:
        """Whether the model can trigger on a UART character (:meth:`serial_trigger`)."""
        return self.model.has("trigger_mode_serial") and self.model.has("trigger_serial_source")

    def serial_trigger(self, ch: int, baud: int, fmt: str = "7E1", when: str = "start",
                       level: float | None = None, data: int | None = None, sweep: str = "single") -> None:
        """Trigger on a UART character (``fmt``: data bits, parity N/E/O, stop bits, e.g. "7E1")."""
        if not self.has_serial_trigger:
            raise InstrumentError(f"{self.name}: model {self.model.name} has no serial trigger")
        c = self.ch(ch)
        bits, parity, stop = int(fmt[0]), fmt[1].upper(), fmt[2:]
        rate = finite(c.name, baud, "Bd")
        if rate <= 0 or rate != int(rate):
            raise ValueError(f"{c.name}: serial trigger speed {baud!r} is not a whole number of Bd")
        settings = (("trigger_serial_baud", int(rate)),
                    ("trigger_serial_when", facts_word("serial_when")(self, when)),
                    ("trigger_serial_bits", bits),
                    ("trigger_serial_parity", facts_word("parities")(self, parity)),
                    ("trigger_serial_stop", stop),
                    ("trigger_serial_level", None if level is None else finite(c.name, level, "V")),
                    ("trigger_serial_data", data))
        sweep_w = facts_word("sweeps")(self, sweep)          # every value checked before anything is sent
        self._write("trigger_mode_serial")
        self._write("trigger_serial_source", ch=ch)
        for key, value in settings:
            if value is not None and self.model.has(key):
                self._write(key, value=value)
        self._write("trigger_sweep", value=sweep_w)
        self.check_errors(f"serial trigger on CH{ch}")

    # -- acquisition
    def run(self) -> None:
        """Acquire continuously."""
        self._write("run")

    def stop(self) -> None:
        """Stop acquiring: the screen and memory hold the last acquisition."""
        self._write("stop")

    def single(self) -> None:
        """Arm one acquisition."""
        self._write("single")

    def trigger_status(self) -> str:
        """The trigger status word as the scope answers it (e.g. ``TD``, ``WAIT``, ``RUN``, ``STOP``)."""
        return self._query("trigger_status?").strip().upper()

    def triggered(self) -> bool:
        """True once the armed acquisition is complete.  Only the model's ``captured`` words count
        (a DS1000Z says ``STOP``): ``TD`` ("triggered") is said while the memory still fills after
        the trigger, so it is waiting, as are the words the model lists as waiting."""
        state = self.trigger_status()
        states = self.model.facts.get("trigger_states", {})
        captured = [s.upper() for s in states.get("captured", ["STOP"])]
        waiting = [s.upper() for s in states.get("waiting", ["WAIT", "RUN", "AUTO", "TD"])]
        if state in captured:
            return True
        if state in waiting:
            return False
        raise self._fail(self.model.command("trigger_status?"), f"garbage answer {state!r}, expected one of "
                                                                f"{captured + waiting}")

    def wait_triggered(self, timeout: float, poll: float = 0.01) -> None:
        """Wait until the armed acquisition has triggered and completed; InstrumentError at the deadline."""
        if not Deadline.after(timeout).wait(self.triggered, poll_ns=int(poll * 1e9)):
            raise InstrumentError(f"{self.name}: no trigger within {timeout:g} s "
                                  f"({self.model.command('trigger_status?')!r} still waiting)")

    def arm(self, timeout: float = 2.0, poll: float = 0.005) -> None:
        """Arm a single acquisition and return once the scope reports it armed (waiting for its
        trigger), so that a signal started right after is caught from its first edge: ``single``
        alone returns as soon as the command is written, before the scope has acted on it.
        For a quiet line (nothing may trigger it before it reports armed); InstrumentError at the
        deadline."""
        self.single()
        if not Deadline.after(timeout).wait(lambda: not self.triggered(), poll_ns=int(poll * 1e9)):
            raise InstrumentError(f"{self.name}: not armed within {timeout:g} s "
                                  f"({self.model.command('trigger_status?')!r} still reports the last acquisition)")

    def acquire(self, timeout: float) -> None:
        """Arm a single acquisition and wait for it (deadline ``timeout`` seconds)."""
        self.single()
        self.wait_triggered(timeout)

    # -- acquisition memory
    @property
    def memory_depth(self) -> int | str:
        """The acquisition memory depth in points (``"AUTO"`` when the scope chooses)."""
        text = self.model.command("memory_depth?")
        answer = self.ask(text)
        if answer.strip().upper() == "AUTO":
            return "AUTO"
        try:
            v = float(answer)
        except ValueError:
            v = float("nan")
        if not math.isfinite(v) or v <= 0 or v != int(v):
            raise self._fail(text, f"garbage answer {answer[:40]!r}, expected a number of points or AUTO")
        return int(v)

    @memory_depth.setter
    def memory_depth(self, points: int | str) -> None:
        """Set the memory depth: ``"AUTO"`` or one of the model's ``memory_depths`` (for the number of
        channels shown: the scope refuses the others, which :meth:`check_errors` reports)."""
        value: int | str
        if isinstance(points, str) and points.strip().upper() == "AUTO":
            value = "AUTO"
        else:
            v = finite(self.name, points, "points")
            table = self.model.facts.get("memory_depths") or {}
            allowed = sorted({int(x) for row in table.values() for x in row})
            if v != int(v) or (allowed and int(v) not in allowed):
                raise ValueError(f"{self.name}: memory depth {points!r} is not AUTO or one of {allowed}")
            value = int(v)
        self._write("memory_depth", value=value)
        self.check_errors(f"memory depth {value}")

    def sample_rate(self) -> float:
        """The current sample rate, Sa/s, as the scope reports it."""
        text = self.model.command("sample_rate?")
        v = self._query_cast("sample_rate?", float)
        if v is None or v <= 0:
            raise self._fail(text, "no sample rate the driver can use (overload, NaN or not positive)")
        return v

    # -- waveform transfer
    #: preamble fields that are integers (IEEE 488.2 / the DS1000Z preamble); y_origin is one where it
    #: is in codes (``y_origin_in: codes``), not in volts
    PREAMBLE_INTEGERS = ("format", "type", "points", "count", "x_reference", "y_reference")

    def preamble(self) -> dict:
        """The waveform preamble as a dict of the model's field names: integer fields as ``int``
        (an integer-valued answer in any notation), the others as finite floats."""
        text = self.model.command("waveform_preamble?")
        answer = self.ask(text)
        wf = self.model.facts["waveform"]
        names = wf.get("preamble")
        parts = [p.strip() for p in answer.split(",")]
        if not names or len(parts) < len(names):
            raise self._fail(text, f"garbage preamble {answer[:80]!r}: expected {len(names or [])} fields {names}")
        ints = set(self.PREAMBLE_INTEGERS) | ({"y_origin"} if wf.get("y_origin_in", "codes") == "codes" else set())
        out: dict = {}
        for n, p in zip(names, parts):
            try:
                v = float(p)
            except ValueError:
                raise self._fail(text, f"garbage preamble {answer[:80]!r}: {n} = {p!r} is not a number") from None
            if not math.isfinite(v):
                raise self._fail(text, f"garbage preamble {answer[:80]!r}: {n} = {p!r} is not finite")
            if n in ints:
                if v != int(v):
                    raise self._fail(text, f"garbage preamble {answer[:80]!r}: {n} = {p!r} is not an integer")
                v = int(v)
            out[n] = v
        return out

    def waveform(self, ch: int, points: int | None = None) -> ScopeWaveform:
        """The acquired waveform of channel ``ch`` in volts: every point the preamble announces (or the
        first ``points``), read in chunks of ``max_points_per_read``.

        In RAW mode (the acquisition memory) the scope is stopped first (a DS1000Z reads its memory
        only when stopped).  The window (``waveform_start``/``waveform_stop``) is written before
        every read, so a window left by an earlier transfer is never reused, and each chunk's
        length is checked against it: a short answer is an :class:`InstrumentError`."""
        self.ch(ch)
        wf = self.model.facts["waveform"]
        mode = str(wf.get("mode", "NORMal"))
        if mode.upper().startswith("RAW"):
            self.stop()
        self._write("waveform_source", ch=ch)
        self._write("waveform_mode", value=mode)
        self._write("waveform_format", value=wf.get("format", "BYTE"))
        if points is not None and self.model.has("waveform_points"):
            self._write("waveform_points", value=int(points))
        pre = self.preamble()
        cmd = self.model.command("waveform_data?")
        total = int(pre.get("points", 0))
        if points is not None:
            total = min(total, int(points)) if total else int(points)
        if total <= 0:
            raise self._fail(self.model.command("waveform_preamble?"),
                             f"the preamble announces {pre.get('points')!r} points: nothing to read")
        dtype = np.dtype(wf.get("dtype", "B"))
        dtype = dtype.newbyteorder(">" if wf.get("byte_order") == "big" else "<")
        windows = self.model.has("waveform_start") and self.model.has("waveform_stop")
        step = int(wf.get("max_points_per_read") or 0) or total
        if not windows and total > step:
            raise InstrumentError(f"{self.name}: {total} points exceed one read of {step} and the model has no "
                                  f"waveform_start/waveform_stop window")
        parts = []
        for start in range(1, total + 1, step):
            stop = min(start + step - 1, total)
            if windows:
                self._write("waveform_start", value=start)
                self._write("waveform_stop", value=stop)
            codes = self.query_block(cmd, dtype)
            if len(codes) != stop - start + 1:
                raise self._fail(cmd, f"{len(codes)} points returned for points {start}..{stop} "
                                      f"({stop - start + 1} expected; the preamble announces {pre.get('points')})")
            parts.append(codes)
        codes = (np.concatenate(parts) if len(parts) > 1 else parts[0]).astype(np.float64)
        yinc, yorg, yref = pre.get("y_increment", 1.0), pre.get("y_origin", 0.0), pre.get("y_reference", 0.0)
        if wf.get("y_origin_in", "codes") == "codes":
            volts = (codes - yorg - yref) * yinc
        else:
            volts = (codes - yref) * yinc + yorg
        xinc, xorg, xref = pre.get("x_increment", 1.0), pre.get("x_origin", 0.0), pre.get("x_reference", 0.0)
        if not xinc > 0:
            raise self._fail(self.model.command("waveform_preamble?"), f"x_increment {xinc!r} is not positive")
        self.check_errors(f"waveform transfer of CH{ch}")
        return ScopeWaveform(ch, volts, xorg - xref * xinc, xinc, pre)

    # -- built-in measurements
    def _measure(self, key: str, name: str, unit: str, ch: int, low, high, basis) -> Measurement:
        self.ch(ch)
        value = self._query_cast(key, float, ch=ch)
        return Measurement(name, value, unit, low, high, basis)

    def measure_amplitude(self, ch: int, low=None, high=None, basis: str = "", name: str = "amplitude") -> Measurement:
        """The scope's own amplitude measurement of channel ``ch`` (V), judged against low..high."""
        return self._measure("measure_amplitude?", name, "V", ch, low, high, basis)

    def measure_rise_time(self, ch: int, low=None, high=None, basis: str = "", name: str = "rise_time") -> Measurement:
        """The scope's own rise-time measurement of channel ``ch`` (s), judged against low..high."""
        return self._measure("measure_rise_time?", name, "s", ch, low, high, basis)

    def measure_fall_time(self, ch: int, low=None, high=None, basis: str = "", name: str = "fall_time") -> Measurement:
        """The scope's own fall-time measurement of channel ``ch`` (s), judged against low..high."""
        return self._measure("measure_fall_time?", name, "s", ch, low, high, basis)

    def measure_frequency(self, ch: int, low=None, high=None, basis: str = "", name: str = "frequency") -> Measurement:
        """The scope's own frequency measurement of channel ``ch`` (Hz), judged against low..high."""
        return self._measure("measure_frequency?", name, "Hz", ch, low, high, basis)


# --------------------------------------------------------------------------- generator
def _safe_amplitude(chan, value):
    v = finite(chan.name, value, "Vpp")
    lim = chan._instrument.limits
    if lim is not None:
        lim.check_span(chan.name, v, chan._instrument._known(chan, "offset"))
    fr = chan.model.facts.get("amplitude_vpp")
    if fr:
        in_range(fr[0], fr[1], "Vpp")(chan, v)
    return v


def _safe_offset(chan, value):
    v = finite(chan.name, value, "V")
    lim = chan._instrument.limits
    if lim is not None:
        lim.check_span(chan.name, chan._instrument._known(chan, "amplitude"), v)
    fr = chan.model.facts.get("offset_v")
    if fr:
        in_range(fr[0], fr[1], "V")(chan, v)
    return v


class GeneratorChannel(Channel):
    """A generator channel's settings, each checked against the DUT limits before it is sent."""

    amplitude = Control("amplitude", "amplitude?", "amplitude, Vpp (open circuit)", validator=_safe_amplitude)
    offset = Control("offset", "offset?", "d.c. offset, V", validator=_safe_offset)
    frequency = Control("frequency", None, "frequency, Hz", validator=facts_range("frequency_hz", "Hz"))
    pulse_width = Control("pulse_width", None, "pulse width, s", validator=facts_range("pulse_width_s", "s"))


class Generator(OutputInstrument):
    """A function / arbitrary waveform generator: arbitrary upload, noise, pulse, burst, levels, output."""

    capability = "generator"
    channel_class = GeneratorChannel

    def _opened(self) -> None:
        super()._opened()
        if self.model.has("byte_order"):
            self._write("byte_order")
        for c in self.model.channels:
            if self.model.has("load_high_z"):
                self._write("load_high_z", ch=c)     # amplitudes are then the open-circuit values
        self.check_errors("opening")

    def _known(self, chan: GeneratorChannel, attr: str) -> float:
        """The programmed amplitude/offset of ``chan`` (remembered, else read back; a readback that
        cannot be verified is an error, never 0)."""
        if attr not in chan.state:
            chan.state[attr] = self._verified(f"{attr}?", chan.ch, attr)
        return float(chan.state[attr])

    def _check_levels(self, c: GeneratorChannel, amplitude, offset) -> tuple[float, float]:
        """Amplitude (Vpp) and offset checked, before anything is sent: finite, within the DUT's
        limits (both peaks) and within the model's ranges.  Returns them as floats."""
        amplitude = finite(c.name, amplitude, "Vpp")
        offset = finite(c.name, offset, "V")
        if self.limits is not None:
            self.limits.check_span(c.name, amplitude, offset)
        fr = self.model.facts.get("amplitude_vpp")
        if fr:
            in_range(fr[0], fr[1], "Vpp")(c, amplitude)
        fr = self.model.facts.get("offset_v")
        if fr:
            in_range(fr[0], fr[1], "V")(c, offset)
        return amplitude, offset

    def set_levels(self, ch: int, amplitude: float, offset: float = 0.0) -> None:
        """Amplitude (Vpp) and offset, written in the order whose intermediate state is also safe."""
        c = self.ch(ch)
        amplitude, offset = self._check_levels(c, amplitude, offset)
        if abs(amplitude) <= abs(self._known(c, "amplitude")):
            c.amplitude = amplitude
            c.offset = offset
        else:
            c.offset = offset
            c.amplitude = amplitude

    def arbitrary(self, ch: int, samples, sample_rate: float, amplitude: float, offset: float = 0.0,
                  name: str = "RIG") -> None:
        """Upload ``samples`` (floats in -1 .. 1: full scale is ``offset ± amplitude/2``) as one binary
        block of DAC codes and play them at ``sample_rate``."""
        c = self.ch(ch)
        arb = self.model.facts["arb"]
        x = np.asarray(samples, dtype=np.float64)
        if x.ndim != 1 or not len(x):
            raise ValueError(f"{c.name}: samples must be a non-empty 1-D sequence")
        if not np.all(np.isfinite(x)) or np.max(np.abs(x)) > 1.0:
            raise ValueError(f"{c.name}: samples must be finite and within -1 .. 1 (full scale)")
        if len(x) > int(arb.get("max_points", len(x))) or len(x) < int(arb.get("min_points", 1)):
            raise ValueError(f"{c.name}: {len(x)} samples; the model takes {arb.get('min_points', 1)} .. "
                             f"{arb.get('max_points')}")
        amplitude, offset = self._check_levels(c, amplitude, offset)
        sr = arb.get("sample_rate")
        sample_rate = in_range(sr[0], sr[1], "Sa/s")(c, sample_rate) if sr else finite(c.name, sample_rate, "Sa/s")
        lo, hi = int(arb["dac_min"]), int(arb["dac_max"])
        codes = np.round((x + 1.0) / 2.0 * (hi - lo) + lo).astype(np.int64)
        dtype = np.dtype(arb.get("datatype", "h")).newbyteorder("<" if arb.get("byte_order", "little") == "little" else ">")
        self.output_off(ch)
        self._write("arb_clear", ch=ch)
        head = self.model.command("arb_upload", ch=ch, name=name)
        self.write_block(head, codes.astype(dtype))
        self.check_errors(f"uploading {len(x)} points to CH{ch}")
        self._leave_dc(c)
        self._write("function_arbitrary", ch=ch)
        self._write("arb_select", ch=ch, name=name)
        self._write("arb_sample_rate", ch=ch, value=sample_rate)
        self.set_levels(ch, amplitude, offset)
        self.check_errors(f"arbitrary waveform on CH{ch}")

    def noise(self, ch: int, amplitude: float, offset: float = 0.0, bandwidth: float | None = None) -> None:
        """Gaussian noise of ``amplitude`` Vpp around ``offset`` (every value checked before the
        function changes)."""
        c = self.ch(ch)
        amplitude, offset = self._check_levels(c, amplitude, offset)
        bw = None
        if bandwidth is not None and self.model.has("noise_bandwidth"):
            bw = facts_range("noise_bandwidth_hz", "Hz")(c, bandwidth)
        self._leave_dc(c)
        self._write("function_noise", ch=ch)
        if bw is not None:
            self._write("noise_bandwidth", ch=ch, value=bw)
        self.set_levels(ch, amplitude, offset)
        self.check_errors(f"noise on CH{ch}")

    def pulse(self, ch: int, frequency: float, width: float, low: float, high: float,
              edge: float | None = None) -> None:
        """Pulses between ``low`` and ``high`` volts (open circuit)."""
        c = self.ch(ch)
        low, high = finite(c.name, low, "V"), finite(c.name, high, "V")
        amplitude, offset = self._check_levels(c, high - low, (high + low) / 2)
        facts_range("frequency_hz", "Hz")(c, frequency)
        facts_range("pulse_width_s", "s")(c, width)
        if edge is not None:
            edge = finite(c.name, edge, "s")
        self._leave_dc(c)
        self._write("function_pulse", ch=ch)
        c.frequency = frequency
        c.pulse_width = width
        if edge is not None and self.model.has("pulse_edge"):
            self._write("pulse_edge", ch=ch, value=edge)
        self.set_levels(ch, amplitude, offset)
        self.check_errors(f"pulse on CH{ch}")

    def _leave_dc(self, c: GeneratorChannel) -> None:
        """Before another function: from d.c., whose offset was checked without the amplitude, the
        output goes off first (the old amplitude around that offset was never checked)."""
        if c.state.pop("function", None) == "dc":
            self.output_off(c.ch)

    def dc(self, ch: int, level: float) -> None:
        """A d.c. output of ``level`` volts: the d.c. function, whose output is the offset alone
        (the amplitude is ignored by the instrument, and by the safety checks while it lasts)."""
        c = self.ch(ch)
        level = finite(c.name, level, "V")
        if self.limits is not None:
            self.limits.check_span(c.name, 0.0, level)
        fr = self.model.facts.get("offset_v")
        if fr:
            in_range(fr[0], fr[1], "V")(c, level)
        self._write("function_dc", ch=ch)
        c.state["function"] = "dc"
        self._write("offset", ch=ch, value=level)
        c.state["offset"] = level
        self.check_errors(f"d.c. of {level:g} V on CH{ch}")

    def burst(self, ch: int, cycles: int, period: float | None = None, trigger: str | None = "bus") -> None:
        """Burst mode: ``cycles`` per trigger (``trigger``: the model's trigger_sources key, or None
        with ``period`` for an internal period)."""
        c = self.ch(ch)
        n = finite(c.name, cycles, "cycles")
        if n != int(n) or n < 1:
            raise ValueError(f"{c.name}: {cycles!r} burst cycles; expected a whole number >= 1")
        if period is not None:
            period = finite(c.name, period, "s")
            if period <= 0:
                raise ValueError(f"{c.name}: burst period {period:g} s is not positive")
        word = facts_word("trigger_sources")(self, trigger) if trigger is not None else None
        if self.model.has("burst_mode_triggered"):
            self._write("burst_mode_triggered", ch=ch)
        self._write("burst_cycles", ch=ch, value=int(n))
        if period is not None and self.model.has("burst_period"):
            self._write("burst_period", ch=ch, value=period)
        if word is not None and self.model.has("trigger_source"):
            self._write("trigger_source", ch=ch, value=word)
        self._write("burst_state", ch=ch, value="ON")
        self.check_errors(f"burst on CH{ch}")

    def burst_off(self, ch: int) -> None:
        """Channel ``ch`` back to continuous output."""
        self._write("burst_state", ch=ch, value="OFF")

    def trigger(self) -> None:
        """A bus trigger (``*TRG``): starts a burst armed on the bus trigger."""
        self._write("trigger")

    def output_on(self, ch: int = 1) -> None:
        """Switch the output on, after checking the programmed levels against the DUT limits."""
        c = self.ch(ch)
        if self.limits is not None:
            dc = c.state.get("function") == "dc"      # the d.c. function outputs the offset alone
            amp = 0.0 if dc else self._verified("amplitude?", ch, "amplitude")
            off = self._verified("offset?", ch, "offset")
            self.limits.check_span(c.name, amp, off)
        self._write("output_on", ch=ch)
        self.check_errors(f"output on, CH{ch}")


# --------------------------------------------------------------------------- supply
def _safe_voltage(chan, value):
    v = finite(chan.name, value, "V")
    if chan._instrument.limits is not None:
        chan._instrument.limits.check_voltage(chan.name, v)
    vmax = chan._instrument.model.channel_facts(chan.ch).get("voltage_max")
    if vmax is not None and not 0 <= v <= vmax:
        raise ValueError(f"{chan.name}: {v:g} V is outside the channel's range 0 .. {vmax:g} V")
    return v


def _safe_current(chan, value):
    i = finite(chan.name, value, "A")
    if chan._instrument.limits is not None:
        chan._instrument.limits.check_current(chan.name, i)
    imax = chan._instrument.model.channel_facts(chan.ch).get("current_max")
    if imax is not None and not 0 <= i <= imax:
        raise ValueError(f"{chan.name}: {i:g} A is outside the channel's range 0 .. {imax:g} A")
    return i


class SupplyChannel(Channel):
    """A supply channel's settings, each checked against the DUT limits before it is sent."""

    voltage = Control("voltage", "voltage?", "set voltage, V", validator=_safe_voltage)
    current_limit = Control("current_limit", "current_limit?", "current limit, A", validator=_safe_current)

    @property
    def measured_voltage(self) -> float | None:
        """The voltage the supply measures at its terminals, V (None on overload)."""
        return self._instrument._query_cast("measure_voltage?", float, ch=self.ch)

    @property
    def measured_current(self) -> float | None:
        """The current the supply measures, A (None on overload)."""
        return self._instrument._query_cast("measure_current?", float, ch=self.ch)


class Supply(OutputInstrument):
    """A d.c. supply: voltage, current limit (and protection levels where the model has them), output,
    measured voltage and current."""

    capability = "supply"
    channel_class = SupplyChannel

    def configure(self, ch: int, voltage: float, current_limit: float) -> None:
        """Set voltage and current limit (each checked against the DUT limits before it is sent); where
        the model has them, the protection levels are set just above, within the model's maximums."""
        c = self.ch(ch)
        _safe_voltage(c, voltage)
        _safe_current(c, current_limit)
        c.current_limit = current_limit
        c.voltage = voltage
        cf = self.model.channel_facts(ch)
        if self.limits is not None and self.model.has("over_voltage_protection"):
            level = min(self.limits.voltage_max, cf.get("ovp_max", self.limits.voltage_max))
            if level > 0 and level >= voltage:
                self._write("over_voltage_protection", ch=ch, value=float(level))
                if self.model.has("over_voltage_protection_on"):
                    self._write("over_voltage_protection_on", ch=ch)
                self._check_protection(ch, "over_voltage_protection?", "over-voltage protection", level, "V")
        if self.limits is not None and self.model.has("over_current_protection"):
            level = min(self.limits.current_max, cf.get("ocp_max", self.limits.current_max))
            if level > 0 and level >= current_limit:
                self._write("over_current_protection", ch=ch, value=float(level))
                if self.model.has("over_current_protection_on"):
                    self._write("over_current_protection_on", ch=ch)
                self._check_protection(ch, "over_current_protection?", "over-current protection", level, "A")
        self.check_errors(f"configuring CH{ch}")

    def _check_protection(self, ch: int, key: str, what: str, level: float, unit: str) -> None:
        """A protection level read back (where the model can): it must be what was set (a supply may
        clamp or ignore it), else the output goes off and SafetyError is raised."""
        if not self.model.has(key):
            return
        got = self._verified(key, ch, f"{what} level")
        if abs(got - level) > max(1e-3 * abs(level), 1e-4):
            self.output_off(ch)
            raise SafetyError(f"{self.ch(ch).name}: the {what} level read back is {got:g} {unit}, not the "
                              f"{level:g} {unit} set; the output stays off")

    def mode(self, ch: int = 1) -> str:
        """The channel's regulation as the supply reports it (e.g. CV, CC, or UR when off on a DP832)."""
        self.ch(ch)
        text = self.model.command("output_mode?", ch=ch)
        answer = self.ask(text).strip().upper()
        if not answer.isalpha():
            raise self._fail(text, f"garbage answer {answer[:40]!r}, expected a mode word such as CV or CC")
        return answer

    def measure_power(self, ch: int = 1, low=None, high=None, basis: str = "", name: str = "supply_power") -> Measurement:
        """The power channel ``ch`` delivers, W, as the supply measures it."""
        self.ch(ch)
        return Measurement(name, self._query_cast("measure_power?", float, ch=ch), "W", low, high, basis)

    def output_on(self, ch: int = 1) -> None:
        """Switch the output on, after reading back the programmed voltage and current limit and
        checking them against the DUT limits (the instrument may hold settings from before)."""
        c = self.ch(ch)
        v = self._verified("voltage?", ch, "set voltage")
        i = self._verified("current_limit?", ch, "current limit")
        _safe_voltage(c, v)
        _safe_current(c, i)
        self._write("output_on", ch=ch)
        self.check_errors(f"output on, CH{ch}")

    def measure_voltage(self, ch: int = 1, low=None, high=None, basis: str = "", name: str = "supply_voltage") -> Measurement:
        """The voltage at channel ``ch``'s terminals, V, as the supply measures it."""
        return Measurement(name, self.ch(ch).measured_voltage, "V", low, high, basis)

    def measure_current(self, ch: int = 1, low=None, high=None, basis: str = "", name: str = "supply_current") -> Measurement:
        """The current channel ``ch`` delivers, A, as the supply measures it."""
        return Measurement(name, self.ch(ch).measured_current, "A", low, high, basis)


# --------------------------------------------------------------------------- meter
class Meter(Instrument):
    """A multimeter: DC voltage and DC current readings."""

    capability = "meter"

    def _range(self, value, fact: str) -> str:
        if value is None or str(value).upper() in ("AUTO", "DEF", "MIN", "MAX"):
            return "AUTO" if value is None else str(value).upper()
        v = finite(self.name, value)
        ranges = self.model.facts.get(fact)
        if v <= 0:
            raise ValueError(f"{self.name}: range {v:g} is not positive")
        if ranges and v > max(ranges):
            raise ValueError(f"{self.name}: range {v:g} is above the largest, {max(ranges):g}")
        return f"{v:g}"

    def configure_voltage_dc(self, range_v: float | str | None = None, nplc: float | str | None = None) -> None:
        """DC volts in ``range_v`` (AUTO when None) with an integration time of ``nplc`` power-line
        cycles, one of the values the model accepts (``facts.nplc``), checked before anything is sent."""
        rng = self._range(range_v, "voltage_ranges")
        n = None
        if nplc is not None:
            if not self.model.has("nplc"):
                raise ValueError(f"{self.name}: model {self.model.name} has no NPLC setting")
            n = facts_choice("nplc", "PLC")(self, nplc)
        self._write("configure_voltage_dc", value=rng)
        if n is not None:
            self._write("nplc", value=n)
        self.check_errors("configuring DC volts")
        self.state["function"] = "voltage_dc"

    @property
    def nplc(self) -> float:
        """The DC-volts integration time, power-line cycles, as the meter reports it."""
        v = self._query_cast("nplc?", float)
        if v is None:
            raise self._fail(self.model.command("nplc?"), "no NPLC value the driver can use (overload or NaN)")
        return v

    def configuration(self) -> tuple[str, float | None]:
        """(function, range) as the meter reports its configuration (``CONFigure?``: e.g. ``"VOLT
        +1.00000000E+01,+3.00000000E-06"`` is ("VOLT", 10.0)); the range None when it is not a number."""
        text = self.model.command("configuration?")
        answer = self.ask(text).strip().strip('"').strip()
        function, _, rest = answer.partition(" ")
        if not function or not function.replace(":", "").isalpha():
            raise self._fail(text, f"garbage answer {answer[:40]!r}, expected '\"<function> <range>,<resolution>\"'")
        try:
            rng = float(rest.split(",")[0])
        except ValueError:
            rng = float("nan")
        return function.upper(), (rng if math.isfinite(rng) and abs(rng) < OVERLOAD else None)

    def configure_current_dc(self, range_a: float | str | None = None) -> None:
        """DC current readings, in ``range_a`` (A, one of the model's ranges) or autorange (None)."""
        self._write("configure_current_dc", value=self._range(range_a, "current_ranges"))
        self.check_errors("configuring DC current")
        self.state["function"] = "current_dc"

    def read(self) -> float | None:
        """One reading in the configured function (None on overload)."""
        return self._query_cast("read?", float)

    def voltage_dc(self, low=None, high=None, basis: str = "", name: str = "dc_voltage") -> Measurement:
        """One DC voltage measurement, V (value None on overload), judged against low..high."""
        return Measurement(name, self._query_cast("measure_voltage_dc?", float), "V", low, high, basis)

    def current_dc(self, low=None, high=None, basis: str = "", name: str = "dc_current") -> Measurement:
        """One DC current measurement, A (value None on overload), judged against low..high."""
        return Measurement(name, self._query_cast("measure_current_dc?", float), "A", low, high, basis)


DRIVERS = {"scope": Scope, "generator": Generator, "supply": Supply, "meter": Meter}


def open_instrument(resource: str | None, model: str | InstrumentModel, **kw) -> Instrument:
    """The driver for ``model``'s capability, opened on ``resource``."""
    m = load_model(model)
    return DRIVERS[m.capability](resource, m, **kw)
