"""Instrument models as data: one YAML file per model in ``instruments/``.

A model file says what an instrument is (``model``, ``capability``, the ``idn`` pattern its ``*IDN?``
answer matches, the programming manual it was taken from, its line terminations and facts such as
channels and ranges), how it is commanded (``commands``: a key of the capability's fixed
:data:`VOCABULARY` -> a SCPI template), its SCPI command tree (``scpi``, :mod:`rig.bench.scpi`: what the
virtual instrument serves; every template and every fixed sim dialogue must be a command of it, so
the driver and the virtual instrument cannot drift) and how it is simulated (``sim``: a pyvisa-sim
device definition).  Adding an instrument model is adding a file; nothing in the drivers names a model.

Templates use only the placeholders ``{ch}`` (channel number), ``{value}`` (a number or a word),
``{name}`` (a waveform name) and ``{block}`` (an IEEE 488.2 definite-length binary block, always last).
Keys ending in ``?`` are queries.  :meth:`InstrumentModel.command` renders a template,
:meth:`InstrumentModel.match` is the inverse (what a received SCPI line is), accepting any case and
the short or long form of every mnemonic (``:CHAN1:SCAL 0.5`` is ``:CHANnel1:SCALe 0.5``; the
mnemonic matcher is :func:`rig.bench.scpi.mnemonic_regex`).

A malformed file is refused with a :class:`ModelError` naming the file, the key and the reason.

Where the files are: ``instruments/`` next to the ``rig`` package in a source checkout, otherwise the
copy installed as package data (``rig/instruments/``), then every directory in the environment
variable ``RIG_INSTRUMENTS_PATH`` (``os.pathsep``-separated), then any directory passed in; a later
file with the same stem replaces an earlier one.
"""
from __future__ import annotations

import fnmatch
import os
import re
import string
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import rig.bench.scpi as scpi  # noqa: PLR0402 - `from rig.bench import` would run the package, which imports this
from rig.config_check import FileError, read_text, yaml_line

CAPABILITIES = ("scope", "generator", "supply", "meter")
PLACEHOLDERS = ("ch", "value", "name", "block")


class ModelError(FileError):
    """A model file that cannot be used: `file:line: key: what is wrong (expected ...)`
    (rig.config_check; the line from yaml's marks)."""


@dataclass(frozen=True)
class CommandSpec:
    """One key of a capability's command vocabulary.

    ``fields``: the placeholders the template may use; every one but ``ch`` must appear (``ch`` may
    be left out by a model whose command has no channel, e.g. a one-channel meter).
    ``required``: every model of the capability must define it (the drivers rely on it).
    """

    key: str
    fields: tuple[str, ...]
    required: bool
    doc: str

    @property
    def is_query(self) -> bool:
        return self.key.endswith("?")


def _vocab(*rows: tuple[str, str, bool, str]) -> dict[str, CommandSpec]:
    return {k: CommandSpec(k, tuple(f.split()), req, doc) for k, f, req, doc in rows}


R, O = True, False   # required, optional

_COMMON = (
    ("idn?", "", R, "identification, matched against the model's idn pattern"),
    ("reset", "", R, "reset to the default state (*RST)"),
    ("clear_status", "", R, "clear status and the error queue (*CLS)"),
    ("error?", "", R, "next entry of the error queue: '<code>,\"<text>\"'; code 0 = no error"),
    ("opc?", "", R, "operation complete: answers 1 when pending operations are done"),
)

#: capability -> command key -> CommandSpec.  The drivers use only these keys.
VOCABULARY: dict[str, dict[str, CommandSpec]] = {
    "scope": _vocab(
        *_COMMON,
        ("channel_display", "ch value", R, "show/hide a channel: value ON|OFF"),
        ("channel_scale", "ch value", R, "vertical scale, V/div"),
        ("channel_scale?", "ch", R, "vertical scale, V/div"),
        ("channel_offset", "ch value", R, "vertical offset, V"),
        ("channel_offset?", "ch", R, "vertical offset, V"),
        ("channel_coupling", "ch value", R, "input coupling: AC|DC|GND"),
        ("channel_coupling?", "ch", R, "input coupling"),
        ("channel_probe", "ch value", O, "probe attenuation ratio"),
        ("timebase_scale", "value", R, "horizontal scale, s/div"),
        ("timebase_scale?", "", R, "horizontal scale, s/div"),
        ("timebase_offset", "value", O, "horizontal (trigger) position, s"),
        ("trigger_mode_edge", "", R, "edge trigger"),
        ("trigger_edge_source", "ch", R, "edge trigger source channel"),
        ("trigger_edge_slope", "value", R, "edge slope: value is the model's word (see facts.slopes)"),
        ("trigger_edge_level", "value", R, "edge trigger level, V"),
        ("trigger_edge_level?", "", R, "edge trigger level, V"),
        ("trigger_sweep", "value", R, "sweep: value is the model's word (see facts.sweeps)"),
        ("trigger_status?", "", R, "trigger state; facts.triggered lists the answers meaning 'captured'"),
        ("trigger_mode_serial", "", O, "serial (UART/RS232) trigger"),
        ("trigger_serial_source", "ch", O, "serial trigger source channel"),
        ("trigger_serial_baud", "value", O, "serial trigger baud rate, bit/s"),
        ("trigger_serial_when", "value", O, "serial trigger condition: the model's word (facts.serial_when)"),
        ("trigger_serial_data", "value", O, "serial trigger data value"),
        ("trigger_serial_bits", "value", O, "serial trigger data bits"),
        ("trigger_serial_parity", "value", O, "serial trigger parity: the model's word (facts.parities)"),
        ("trigger_serial_stop", "value", O, "serial trigger stop bits"),
        ("trigger_serial_polarity", "value", O, "serial trigger polarity: the model's word"),
        ("trigger_serial_level", "value", O, "serial trigger level, V"),
        ("run", "", R, "run continuously"),
        ("stop", "", R, "stop acquiring"),
        ("single", "", R, "arm one acquisition"),
        ("force_trigger", "", O, "trigger now"),
        ("memory_depth", "value", O, "acquisition memory depth, points or AUTO (facts.memory_depths)"),
        ("memory_depth?", "", O, "acquisition memory depth, points or AUTO"),
        ("sample_rate?", "", O, "current sample rate, Sa/s"),
        ("waveform_source", "ch", R, "channel the waveform transfer reads"),
        ("waveform_mode", "value", R, "transfer mode: the model's word (facts.waveform.mode)"),
        ("waveform_format", "value", R, "transfer format: the model's word (facts.waveform.format)"),
        ("waveform_points", "value", O, "number of points to transfer"),
        ("waveform_start", "value", O, "first point of the next transfer (1-based)"),
        ("waveform_stop", "value", O, "last point of the next transfer"),
        ("waveform_preamble?", "", R, "scaling preamble; field order in facts.waveform.preamble"),
        ("waveform_data?", "", R, "waveform as an IEEE 488.2 definite-length block"),
        ("measure_amplitude?", "ch", R, "built-in measurement: amplitude (top - base), V"),
        ("measure_rise_time?", "ch", R, "built-in measurement: 10-90 % rise time, s"),
        ("measure_fall_time?", "ch", O, "built-in measurement: 90-10 % fall time, s"),
        ("measure_frequency?", "ch", R, "built-in measurement: frequency, Hz"),
        ("measure_vmax?", "ch", O, "built-in measurement: maximum, V"),
        ("measure_vmin?", "ch", O, "built-in measurement: minimum, V"),
    ),
    "generator": _vocab(
        *_COMMON,
        ("function_arbitrary", "ch", R, "arbitrary waveform function"),
        ("function_noise", "ch", R, "noise function"),
        ("function_pulse", "ch", R, "pulse function"),
        ("function_dc", "ch", O, "d.c. function"),
        ("arb_clear", "ch", R, "clear volatile waveform memory"),
        ("arb_upload", "ch name block", R, "upload DAC codes (facts.arb) as one binary block"),
        ("arb_select", "ch name", R, "select the uploaded waveform"),
        ("arb_sample_rate", "ch value", R, "arbitrary waveform sample rate, Sa/s"),
        ("byte_order", "", O, "binary byte order matching facts.arb.byte_order"),
        ("frequency", "ch value", R, "frequency, Hz"),
        ("pulse_width", "ch value", R, "pulse width, s"),
        ("pulse_edge", "ch value", O, "pulse edge time (both edges), s"),
        ("noise_bandwidth", "ch value", O, "noise bandwidth, Hz"),
        ("burst_state", "ch value", R, "burst mode: ON|OFF"),
        ("burst_cycles", "ch value", R, "cycles per burst"),
        ("burst_mode_triggered", "ch", O, "triggered burst"),
        ("burst_period", "ch value", O, "internal burst period, s"),
        ("trigger_source", "ch value", O, "trigger source: the model's word (facts.trigger_sources)"),
        ("trigger", "", O, "software trigger"),
        ("amplitude", "ch value", R, "amplitude, Vpp at the load facts.load sets"),
        ("amplitude?", "ch", R, "amplitude, Vpp"),
        ("offset", "ch value", R, "d.c. offset, V"),
        ("offset?", "ch", R, "d.c. offset, V"),
        ("load_high_z", "ch", O, "output load setting: high impedance (amplitude is the open-circuit value)"),
        ("output_on", "ch", R, "output on"),
        ("output_off", "ch", R, "output off"),
        ("output?", "ch", R, "output state: 1|0|ON|OFF"),
    ),
    "supply": _vocab(
        *_COMMON,
        ("voltage", "ch value", R, "set voltage, V"),
        ("voltage?", "ch", R, "set voltage, V"),
        ("current_limit", "ch value", R, "current limit, A"),
        ("current_limit?", "ch", R, "current limit, A"),
        ("over_voltage_protection", "ch value", O, "over-voltage protection level, V"),
        ("over_voltage_protection_on", "ch", O, "over-voltage protection on"),
        ("over_current_protection", "ch value", O, "over-current protection level, A"),
        ("over_current_protection_on", "ch", O, "over-current protection on"),
        ("over_voltage_protection?", "ch", O, "over-voltage protection level, V"),
        ("over_current_protection?", "ch", O, "over-current protection level, A"),
        ("output_on", "ch", R, "output on"),
        ("output_off", "ch", R, "output off"),
        ("output?", "ch", R, "output state: 1|0|ON|OFF"),
        ("measure_voltage?", "ch", R, "measured output voltage, V"),
        ("measure_current?", "ch", R, "measured output current, A"),
        ("measure_power?", "ch", O, "measured output power, W"),
        ("output_mode?", "ch", O, "regulation: the model's word for constant voltage / current (facts.output_modes)"),
    ),
    "meter": _vocab(
        *_COMMON,
        ("configure_voltage_dc", "value", R, "configure DC volts; value: range in V or AUTO"),
        ("configure_current_dc", "value", R, "configure DC current; value: range in A or AUTO"),
        ("nplc", "value", O, "integration time in power-line cycles (facts.nplc: the values accepted)"),
        ("nplc?", "", O, "integration time in power-line cycles"),
        ("read?", "", R, "trigger and read one reading in the configured function"),
        ("measure_voltage_dc?", "", R, "configure, trigger and read DC volts"),
        ("measure_current_dc?", "", R, "configure, trigger and read DC current"),
        ("configuration?", "", O, "the configured function, range and resolution: '\"<function> <range>,<resolution>\"'"),
    ),
}

#: Facts every model of a capability must state.
REQUIRED_FACTS = {
    "scope": ("channels", "sample_memory", "waveform"),
    "generator": ("channels", "arb"),
    "supply": ("channels",),
    "meter": (),
}

_TOP_KEYS = {"model", "capability", "idn", "source", "termination", "facts", "commands", "scpi", "sim",
             "notes"}
_REQUIRED_TOP = ("model", "capability", "idn", "source", "termination", "commands", "sim")


# --------------------------------------------------------------------------- matching
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")


def _literal_regex(text: str, first: bool) -> str:
    out = []
    pos = 0
    if first and text.startswith(":"):
        out.append(":?")           # the leading root colon is optional in SCPI
        pos = 1
    while pos < len(text):
        ch = text[pos]
        w = _WORD.match(text, pos)
        if w:
            word = w.group(0)
            # a trailing {ch} placeholder follows the word: its digits are the suffix, not the mnemonic
            out.append(scpi.mnemonic_regex(word))
            pos = w.end()
            continue
        if ch == " ":
            while pos < len(text) and text[pos] == " ":
                pos += 1
            out.append(r"\s+")
            continue
        if ch == ",":
            out.append(r"\s*,\s*")
        else:
            out.append(re.escape(ch))
        pos += 1
    return "".join(out)


_FIELD_RE = {
    "ch": r"(?P<ch>\d*)",
    "value": r"(?P<value>[^\s,](?:[^,]*[^\s,])?)",
    "name": r"(?P<name>\"[^\"]*\"|'[^']*'|[^\s,\"']+)",
    "block": r"(?P<block>#.*)",
}


def _template_regex(template: str) -> re.Pattern:
    parts = []
    first = True
    for literal, fname, _spec, _conv in string.Formatter().parse(template):
        if literal:
            parts.append(_literal_regex(literal, first))
        first = False
        if fname is not None:
            parts.append(_FIELD_RE[fname])
    return re.compile("".join(parts) + r"\s*", re.IGNORECASE | re.DOTALL)


def _format_value(v) -> str:
    if isinstance(v, bool):
        return "ON" if v else "OFF"
    if isinstance(v, float):
        return f"{v:.12g}"
    return str(v)


def encode_block(data: bytes) -> bytes:
    """``data`` as an IEEE 488.2 definite-length block ``#<n><len><data>`` (pyvisa's encoder)."""
    return scpi.block(bytes(data))


# --------------------------------------------------------------------------- the model
@dataclass(frozen=True, eq=False)
class InstrumentModel:
    """One instrument model, as read from its YAML file."""

    name: str                         # the file stem, e.g. "rigol-ds1000z"
    model: str                        # the model as the maker names it, e.g. "Rigol DS1000Z"
    capability: str
    idn: str                          # fnmatch pattern for the *IDN? answer
    source: str                       # the programming manual the commands come from
    read_termination: str
    write_termination: str
    facts: dict
    commands: dict[str, str]
    sim: dict
    path: Path | None = None
    tree: scpi.Tree | None = None     # the SCPI command tree (``scpi``), or one derived from ``commands``
    _regex: dict = field(default_factory=dict, repr=False)

    # -- rendering
    def has(self, key: str) -> bool:
        return key in self.commands

    def command(self, key: str, **fields: Any) -> str:
        """The SCPI text of vocabulary ``key`` with ``fields`` filled in.

        For a template ending in ``{block}`` the text before the block is returned when no ``block``
        is given (drivers hand that header to pyvisa's ``write_binary_values``); with ``block``
        (bytes) the block is appended, encoded as latin-1 text (use :meth:`command_bytes` for bytes).
        """
        template = self._template(key)
        spec = VOCABULARY[self.capability][key]
        values = {}
        for f in spec.fields:
            if f == "block":
                continue
            if f not in fields:
                if f == "ch" and "{ch}" not in template:
                    continue
                raise ModelError(self.path or self.name, f"commands.{key}", f"command needs the field '{f}'")
            values[f] = _format_value(fields[f])
        unknown = set(fields) - set(spec.fields)
        if unknown:
            raise ModelError(self.path or self.name, f"commands.{key}",
                             f"unknown field(s) {sorted(unknown)}; the command takes {list(spec.fields)}")
        if "{block}" in template:
            head = template.split("{block}")[0].format(**values)
            if "block" in fields and fields["block"] is not None:
                return head + encode_block(bytes(fields["block"])).decode("latin-1")
            return head
        return template.format(**values)

    def command_bytes(self, key: str, **fields: Any) -> bytes:
        """Like :meth:`command`, as bytes (binary block included), without the write termination."""
        return self.command(key, **fields).encode("latin-1")

    def _template(self, key: str) -> str:
        try:
            return self.commands[key]
        except KeyError:
            if key in VOCABULARY[self.capability]:
                raise ModelError(self.path or self.name, f"commands.{key}",
                                 f"model {self.model} does not have this (optional) command") from None
            raise ModelError(self.path or self.name, f"commands.{key}",
                             f"not a {self.capability} command; the vocabulary is "
                             f"{sorted(VOCABULARY[self.capability])}") from None

    # -- the inverse
    def match(self, line: str | bytes) -> tuple[str, dict] | None:
        """Which command a received SCPI ``line`` is: ``(key, fields)`` or None.

        Case-insensitive, short or long mnemonics, optional leading colon, any white space between
        header and parameters.  ``fields['ch']`` is an int (1 when the suffix is left out),
        ``fields['value']``/``['name']`` are the text received, ``fields['block']`` the bytes of a
        binary block (a malformed block does not match).  The line's termination may be present.
        """
        if isinstance(line, (bytes, bytearray)):
            line = bytes(line).decode("latin-1")
        for key, template in self.commands.items():
            rx = self._regex.get(key)
            if rx is None:
                rx = self._regex[key] = _template_regex(template)
            # a block may end in CR/LF bytes of its own: only a block-less line is stripped
            m = rx.fullmatch(line.strip() if "{block}" not in template else line.lstrip())
            if not m:
                continue
            fields: dict[str, Any] = {}
            for k, v in m.groupdict().items():
                if k == "ch":
                    fields["ch"] = int(v) if v else 1
                elif k == "block":
                    data = _parse_block_text(v)
                    if data is None:
                        break
                    fields["block"] = data
                else:
                    fields[k] = v
            else:
                return key, fields
        return None

    def idn_matches(self, answer: str) -> bool:
        return fnmatch.fnmatchcase(answer.strip().upper(), self.idn.upper())

    @property
    def channels(self) -> list[int]:
        ch = self.facts.get("channels", 1)
        if isinstance(ch, dict):
            return sorted(int(c) for c in ch)
        return list(range(1, int(ch) + 1))

    def channel_facts(self, ch: int) -> dict:
        chans = self.facts.get("channels")
        if isinstance(chans, dict):
            return dict(chans.get(ch) or chans.get(str(ch)) or {})
        return {}

    def __repr__(self) -> str:
        return f"InstrumentModel({self.name!r}, {self.model!r}, {self.capability!r})"


def _parse_block_text(text: str) -> bytes | None:
    raw = text.encode("latin-1").rstrip(b"\r\n") if text else b""
    for cut in (len(text), len(raw)):        # the block may end in CR/LF bytes of its own
        try:
            return scpi.parse_block(text.encode("latin-1")[:cut])
        except scpi.ScpiError:
            continue
    return None


# --------------------------------------------------------------------------- loading
def _check_template(path, key: str, template, spec: CommandSpec) -> None:
    where = f"commands.{key}"
    if not isinstance(template, str) or not template.strip():
        raise ModelError(path, where, f"got {template!r}", "a non-empty template string")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ModelError(path, where, f"bad template {template!r}: {e}") from None
    used = []
    for _lit, fname, fspec, conv in parsed:
        if fname is None:
            continue
        if fname not in PLACEHOLDERS:
            raise ModelError(path, where, f"bad placeholder {{{fname}}} in {template!r}; "
                                          f"placeholders are {['{%s}' % p for p in PLACEHOLDERS]}")
        if fname not in spec.fields:
            raise ModelError(path, where, f"placeholder {{{fname}}} is not a field of this command "
                                          f"(its fields: {list(spec.fields) or 'none'})")
        if fspec or conv:
            raise ModelError(path, where, f"placeholder {{{fname}}} must be bare, without a format "
                                          f"spec or conversion, in {template!r}")
        if fname in used:
            raise ModelError(path, where, f"placeholder {{{fname}}} used twice in {template!r}")
        used.append(fname)
    for f in spec.fields:
        if f != "ch" and f not in used:
            raise ModelError(path, where, f"template {template!r} lacks the placeholder {{{f}}}")
    if "block" in used and not template.rstrip().endswith("{block}"):
        raise ModelError(path, where, f"{{block}} must end the template {template!r}")
    if spec.is_query != ("?" in template):
        what = "a query (key ends in '?') but the template has no '?'" if spec.is_query else \
            "not a query but the template has a '?'"
        raise ModelError(path, where, f"{what}: {template!r}")


def _check_termination(path, term) -> tuple[str, str]:
    if isinstance(term, str):
        return term, term
    if not isinstance(term, dict) or set(term) - {"read", "write"} or not term:
        raise ModelError(path, "termination", f"got {term!r}", "a string or a mapping with 'read' and 'write'")
    for k in ("read", "write"):
        if not isinstance(term.get(k), str) or not term[k]:
            raise ModelError(path, f"termination.{k}", f"got {term.get(k)!r}", "a non-empty string")
    return term["read"], term["write"]


def _check_sim(path, sim, idn: str) -> None:
    if not isinstance(sim, dict):
        raise ModelError(path, "sim", f"got a {type(sim).__name__}", "a pyvisa-sim device definition (mapping)")
    if not ("dialogues" in sim or "properties" in sim):
        raise ModelError(path, "sim", "no 'dialogues' and no 'properties'", "a pyvisa-sim device with either")
    for i, d in enumerate(sim.get("dialogues") or ()):
        if not isinstance(d, dict) or "q" not in d:
            raise ModelError(path, f"sim.dialogues[{i}]", f"got {d!r}", "a mapping with 'q' (and 'r')")
        if str(d["q"]).strip().upper() == "*IDN?" and not fnmatch.fnmatchcase(str(d.get("r", "")).upper(),
                                                                              idn.upper()):
            raise ModelError(path, f"sim.dialogues[{i}]", f"the simulated *IDN? answer {d.get('r')!r} "
                                                          f"does not match idn {idn!r}")
    for name, p in (sim.get("properties") or {}).items():
        if not isinstance(p, dict) or not ("getter" in p or "setter" in p):
            raise ModelError(path, f"sim.properties.{name}", f"got {p!r}", "a mapping with 'getter' and/or 'setter'")


#: the numeric facts the drivers compute with, by shape (checked at load, so that a wrongly typed value
#: such as ``voltage_max: "thirty"`` is refused naming the file and the key, not met later)
FACT_NUMBERS = ("bandwidth_hz", "sample_rate_max", "sample_memory", "max_input_v", "max_current_a", "overload",
                "max_output_v", "output_impedance_ohm", "arb.dac_min", "arb.dac_max", "arb.max_points",
                "arb.min_points", "waveform.max_points_per_read", "waveform.screen_points")
FACT_RANGES = ("vertical_scale", "timebase_scale", "amplitude_vpp", "offset_v", "frequency_hz", "pulse_width_s",
               "noise_bandwidth_hz", "arb.sample_rate")
FACT_LISTS = ("voltage_ranges", "current_ranges", "nplc")
CHANNEL_NUMBERS = ("voltage_max", "current_max", "ovp_max", "ocp_max")


def _is_number(v) -> bool:
    import math

    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_facts(path, facts: dict) -> None:
    """Refuse facts of the wrong type (:data:`FACT_NUMBERS`, :data:`FACT_RANGES`, :data:`FACT_LISTS`,
    per-channel :data:`CHANNEL_NUMBERS`, ``memory_depths``) with a :class:`ModelError` naming the key."""
    def get(dotted):
        d = facts
        for part in dotted.split("."):
            if not isinstance(d, dict) or part not in d:
                return None, False
            d = d[part]
        return d, True

    for key in FACT_NUMBERS:
        v, present = get(key)
        if present and not _is_number(v):
            raise ModelError(path, f"facts.{key}", f"got {v!r}", "a finite number")
    for key in FACT_RANGES:
        v, present = get(key)
        if present and not (isinstance(v, list) and len(v) == 2 and all(_is_number(x) for x in v) and v[0] <= v[1]):
            raise ModelError(path, f"facts.{key}", f"got {v!r}", "[low, high], two finite numbers, low <= high")
    for key in FACT_LISTS:
        v, present = get(key)
        if present and not (isinstance(v, list) and v and all(_is_number(x) and x > 0 for x in v)):
            raise ModelError(path, f"facts.{key}", f"got {v!r}", "a list of positive numbers")
    md, present = get("memory_depths")
    if present and not (isinstance(md, dict) and all(isinstance(r, list) and all(_is_number(x) and x > 0 for x in r)
                                                     for r in md.values())):
        raise ModelError(path, "facts.memory_depths", f"got {md!r}", "channels shown -> list of point counts")
    chans = facts.get("channels")
    if isinstance(chans, dict):
        for c, cf in chans.items():
            if cf is None:
                continue
            if not isinstance(cf, dict):
                raise ModelError(path, f"facts.channels.{c}", f"got {cf!r}", "a mapping of channel facts")
            for key in CHANNEL_NUMBERS:
                if key in cf and not (_is_number(cf[key]) and cf[key] > 0):
                    raise ModelError(path, f"facts.channels.{c}.{key}", f"got {cf[key]!r}", "a finite positive number")


def parse_model(data: Any, path: Path | str, name: str | None = None) -> InstrumentModel:
    """An :class:`InstrumentModel` from the parsed YAML ``data`` of ``path`` (validated)."""
    path = Path(path)
    name = name or path.stem
    if not isinstance(data, dict):
        raise ModelError(path, None, f"got a {type(data).__name__} at the top level", "a mapping")
    for k in _REQUIRED_TOP:
        if k not in data:
            raise ModelError(path, k, "missing", f"the keys {sorted(_REQUIRED_TOP)}")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ModelError(path, sorted(unknown)[0], "unknown key", f"one of: {', '.join(sorted(_TOP_KEYS))}")
    for k in ("model", "idn", "source"):
        if not isinstance(data[k], str) or not data[k].strip():
            raise ModelError(path, k, f"got {data[k]!r}", "a non-empty string")
    cap = data["capability"]
    if cap not in CAPABILITIES:
        raise ModelError(path, "capability", f"unknown capability {cap!r}", f"one of {list(CAPABILITIES)}")
    rt, wt = _check_termination(path, data["termination"])
    facts = data.get("facts") or {}
    if not isinstance(facts, dict):
        raise ModelError(path, "facts", f"got a {type(facts).__name__}", "a mapping")
    for f in REQUIRED_FACTS[cap]:
        if f not in facts:
            raise ModelError(path, f"facts.{f}", "missing", f"every {cap} model states it")
    if "channels" in facts:
        ch = facts["channels"]
        ok = (isinstance(ch, int) and not isinstance(ch, bool) and ch >= 1) or \
             (isinstance(ch, dict) and ch and all(str(c).isdigit() for c in ch))
        if not ok:
            raise ModelError(path, "facts.channels", f"got {ch!r}",
                             "a channel count >= 1 or a mapping channel number -> facts")
    check_facts(path, facts)
    cmds = data["commands"]
    if not isinstance(cmds, dict):
        raise ModelError(path, "commands", f"got a {type(cmds).__name__}", "a mapping key -> SCPI template")
    vocab = VOCABULARY[cap]
    for key, template in cmds.items():
        if key not in vocab:
            raise ModelError(path, f"commands.{key}", f"unknown command key for a {cap}",
                             f"one of the vocabulary {sorted(vocab)}")
        _check_template(path, key, template, vocab[key])
    for key, spec in vocab.items():
        if spec.required and key not in cmds:
            raise ModelError(path, f"commands.{key}", "missing", f"every {cap} model defines it: {spec.doc}")
    _check_sim(path, data["sim"], data["idn"])
    tree = _check_tree(path, data.get("scpi"), cmds, data["sim"])
    return InstrumentModel(name=name, model=data["model"].strip(), capability=cap, idn=data["idn"].strip(),
                           source=data["source"].strip(), read_termination=rt, write_termination=wt,
                           facts=facts, commands={str(k): v for k, v in cmds.items()}, sim=data["sim"],
                           path=path, tree=tree)


_EXAMPLE = {"ch": "1", "value": "1", "name": '"RIG"', "block": "#10"}


def _check_tree(path, data, cmds: dict, sim: dict) -> scpi.Tree:
    """The model's command tree; every command template and every fixed pyvisa-sim dialogue must be
    a command the tree accepts (so the driver, the virtual instrument and the sim device read one
    description).  A file without ``scpi`` gets a tree derived from its templates (every header
    accepted with any parameters)."""
    if data is None:
        return derived_tree(cmds)
    try:
        tree = scpi.parse_tree(data)
    except ValueError as e:
        msg = str(e)
        key, _, reason = msg.partition(": ")
        raise ModelError(path, key if key.startswith("scpi") else "scpi", reason if key.startswith("scpi") else msg) \
            from None
    for key, template in cmds.items():
        why = scpi.check_template(tree, template.format(**_EXAMPLE))
        if why:
            raise ModelError(path, f"commands.{key}", f"{template!r}: {why}")
    for i, d in enumerate(sim.get("dialogues") or ()):
        why = scpi.check_template(tree, str(d["q"]))
        if why:
            raise ModelError(path, f"sim.dialogues[{i}]", f"{d['q']!r}: {why}")
    props = [(f"sim.properties.{n}", p) for n, p in (sim.get("properties") or {}).items()]
    for cname, c in (sim.get("channels") or {}).items():
        if isinstance(c, dict):
            props += [(f"sim.channels.{cname}.properties.{n}", p) for n, p in (c.get("properties") or {}).items()]
    for where, prop in props:
        for side in ("getter", "setter"):
            q = str((prop.get(side) or {}).get("q", ""))
            head = q.split(" ", 1)[0]
            if not q or "{:" in head:      # a header built from the value cannot be checked
                continue
            why = scpi.check_template(tree, q.replace("{ch_id}", "1").replace("{:s}", "1"))
            if why:
                raise ModelError(path, f"{where}.{side}", f"{q!r}: {why}")
    return tree


def derived_tree(cmds: dict) -> scpi.Tree:
    """A permissive tree from command templates alone: each header, any parameters, named after
    its vocabulary key."""
    tree: dict[str, dict] = {}
    for key, template in cmds.items():
        first = True
        for unit in template.split(";"):
            head = unit.strip().split(" ", 1)[0]
            query = head.endswith("?")
            head = head.rstrip("?").replace("{ch}", "#")
            if head.startswith("*"):
                continue
            node = tree.setdefault(head, {"params": ["any"] * 4, "set": False, "query": False})
            if first:
                node["name"] = key.rstrip("?")
            node["query" if query else "set"] = True
            first = False
    out = scpi.parse_tree({"tree": tree})
    out.derived = True
    return out


#: (path, absolute path) -> (the file's text, its model): parsing YAML is the slow part of loading
#: a model, and every virtual bench and driver loads its own (InstrumentModel is frozen)
_LOADED: dict[tuple[Path, str], tuple[str, InstrumentModel]] = {}
_LOADED_LOCK = threading.Lock()


def load_file(path: Path | str) -> InstrumentModel:
    """One model file, validated.  A file loaded before and unchanged since (the same text) gives
    the model already parsed."""
    import yaml

    path = Path(path)
    text = read_text(path, ModelError)
    key = (path, os.path.abspath(path))
    known = _LOADED.get(key)
    if known is not None and known[0] == text:
        return known[1]
    try:    # libyaml's parser where PyYAML has it (7x faster), with the same safe constructor
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (column {mark.column + 1})" if mark else ""
        raise ModelError(path, None, f"not valid YAML: {getattr(e, 'problem', None) or e}{at}",
                         line=mark.line + 1 if mark else None) from None
    try:
        model = parse_model(data, path)
    except ModelError as e:     # the checks see the data; the line comes from the text's marks
        raise e.located(yaml_line(text, e.key)) from None
    with _LOADED_LOCK:
        _LOADED[key] = (text, model)
    return model


def model_dirs(extra: Iterable[Path | str] = ()) -> list[Path]:
    """The directories searched, in order (later files of the same stem win)."""
    import rig

    pkg = Path(rig.__file__).resolve().parent
    dirs = []
    checkout = pkg.parent / "instruments"
    installed = pkg / "instruments"
    if checkout.is_dir() and any(checkout.glob("*.yaml")):
        dirs.append(checkout)
    elif installed.is_dir():
        dirs.append(installed)
    for p in os.environ.get("RIG_INSTRUMENTS_PATH", "").split(os.pathsep):
        if p.strip():
            dirs.append(Path(p))
    dirs.extend(Path(d) for d in extra)
    return dirs


def load_models(*dirs: Path | str, extra_dirs: Iterable[Path | str] = ()) -> dict[str, InstrumentModel]:
    """Every model: name (file stem) -> :class:`InstrumentModel`, from ``instruments/*.yaml`` and the
    extra directories given.  The first malformed file raises :class:`ModelError`."""
    out: dict[str, InstrumentModel] = {}
    for d in model_dirs([*dirs, *extra_dirs]):
        if not d.is_dir():
            raise ModelError(d, None, "not a directory of instrument models")
        for f in sorted(d.glob("*.yaml")) + sorted(d.glob("*.yml")):
            out[f.stem] = load_file(f)
    return out


def load_model(name: str | Path | InstrumentModel, *dirs: Path | str) -> InstrumentModel:
    """A model by file stem (``"rigol-ds1000z"``), by path to a YAML file, or itself."""
    if isinstance(name, InstrumentModel):
        return name
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return load_file(p)
    for d in reversed(model_dirs(dirs)):
        for ext in (".yaml", ".yml"):
            f = d / f"{name}{ext}"
            if f.is_file():
                return load_file(f)
    known = sorted(load_models(*dirs))
    raise ModelError(name, None, f"no such instrument model; known models: {known}")


# --------------------------------------------------------------------------- pyvisa-sim
SIM_SPEC = "1.1"


def sim_resource(model: InstrumentModel | str) -> str:
    """The VISA resource name under which :func:`sim_library` serves ``model``."""
    m = load_model(model)
    return f"TCPIP0::sim-{m.name}::inst0::INSTR"


def sim_library(models: Iterable[InstrumentModel | str] | None = None) -> dict:
    """A pyvisa-sim definition file (as a dict) serving each model's ``sim`` device at
    :func:`sim_resource`.  The model's terminations become the device's end-of-message for every
    interface type unless the ``sim`` section states ``eom`` itself."""
    ms = [load_model(m) for m in (models if models is not None else load_models().values())]
    devices, resources = {}, {}
    for m in ms:
        dev = sim_device(m)
        if "eom" not in dev:
            eom = {"q": m.write_termination, "r": m.read_termination}
            dev["eom"] = {t: dict(eom) for t in ("TCPIP INSTR", "TCPIP SOCKET", "ASRL INSTR",
                                                  "USB INSTR", "GPIB INSTR")}
        devices[m.name] = dev
        resources[sim_resource(m)] = {"device": m.name}
    return {"spec": SIM_SPEC, "devices": devices, "resources": resources}


def _sim_queries(dev: dict) -> set[str]:
    """Every command text a pyvisa-sim device definition already answers (dialogues, properties)."""
    out = set()
    groups = [dev] + [c for c in (dev.get("channels") or {}).values() if isinstance(c, dict)]
    for g in groups:
        out |= {str(d.get("q")) for d in g.get("dialogues") or ()}
        for p in (g.get("properties") or {}).values():
            for side in ("getter", "setter"):
                if isinstance(p, dict) and p.get(side):
                    out.add(str(p[side].get("q")))
    return out


def sim_device(model: InstrumentModel | str) -> dict:
    """The model's pyvisa-sim device: its file's ``sim`` section (the error queue, canned answers of
    the queries that compute something) plus, from the command tree, what the driver's templates
    set: a property per setting and channel (setter: the template with the value as ``{:s}``;
    getter: the template of the matching query; default: the tree's *RST default in the
    instrument's answer format) and a dialogue per fixed command.  What the file states wins."""
    import copy

    m = load_model(model)
    dev = copy.deepcopy(m.sim)
    if m.tree is None or m.tree.derived:
        return dev
    known = _sim_queries(dev)
    props: dict[str, dict] = {}
    dialogues: list[dict] = []
    setters: dict[tuple, str] = {}     # (node name, channel) -> setter pattern
    getters: dict[tuple, str] = {}
    nodes: dict[tuple, scpi.Node] = {}
    order: list[tuple] = []
    for key, template in m.commands.items():
        if "{block}" in template:
            continue
        chans = m.channels if "{ch}" in template else [None]
        for ch in chans:
            text = template.replace("{ch}", str(ch)) if ch is not None else template
            for unit in text.split(";"):
                unit = unit.strip()
                parts = scpi.split_unit(unit.replace("{value}", "0").replace("{name}", "X").encode("latin-1"))
                if parts is None:
                    continue
                head, _rooted, query, params = parts
                words = [head.upper()] if head.startswith("*") else head.strip(":").split(":")
                found = m.tree.find(words)
                if found is None:
                    continue
                node = found[0]
                gk = (node.name, ch)
                if query:
                    if node.is_setting and "{" not in unit:
                        getters.setdefault(gk, unit)
                        nodes[gk] = node
                        order.append(gk)
                    continue
                if "{value}" in unit or "{name}" in unit:
                    pattern = unit.replace("{value}", "{:s}").replace("{name}", "{:s}")
                elif params and node.params and node.params[0].type != "none":
                    # a fixed value (OUTPut1 ON): the setter takes any value in its place
                    pattern = unit[: unit.rindex(params[-1].decode("latin-1"))] + "{:s}"
                else:
                    if unit not in known:
                        dialogues.append({"q": unit})
                        known.add(unit)
                    continue
                setters.setdefault(gk, pattern)
                nodes[gk] = node
                order.append(gk)
    for gk in dict.fromkeys(order):
        setter, getter = setters.get(gk), getters.get(gk)
        if (setter and setter in known) or (getter and getter in known):
            continue
        node = nodes[gk]
        default = node.params[0].default if node.params else None
        prop: dict = {"default": m.tree.format(default, node) if default is not None else "0", "specs": {"type": "str"}}
        if getter:
            prop["getter"] = {"q": getter, "r": "{:s}"}
        if setter:
            prop["setter"] = {"q": setter}
        props[f"{gk[0]}_{gk[1]}" if gk[1] is not None else gk[0]] = prop
        known |= {q for q in (setter, getter) if q}
    dev.setdefault("dialogues", []).extend(dialogues)
    for name, prop in props.items():
        dev.setdefault("properties", {}).setdefault(name, prop)
    return dev


def write_sim_library(path: Path | str, models: Iterable[InstrumentModel | str] | None = None) -> Path:
    """:func:`sim_library` written as YAML to ``path`` (for ``ResourceManager(f"{path}@sim")``)."""
    import yaml

    path = Path(path)
    path.write_text(yaml.safe_dump(sim_library(models), sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
