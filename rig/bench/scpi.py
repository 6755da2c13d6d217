"""IEEE 488.2 / SCPI-1999 for the virtual instruments: one parser, one command tree, one error queue.

A model's command tree is data (``scpi.tree`` in its ``instruments/*.yaml`` file); the driver's
command templates (``commands``) are checked against it when the file is loaded, so the driver and
the virtual instrument read one description and cannot drift.

The rules kept (IEEE 488.2 §7, SCPI-1999 vol. 1 §6-7):

- a program message is units separated by ``;`` and ended by a newline; ``;`` inside a quoted string
  or a definite-length block ``#<n><len><bytes>`` is data (:class:`ScpiInput`);
- a unit is a header, white space, parameters separated by ``,``; ``*XXX`` headers are common
  commands; a header ending in ``?`` is a query;
- a header starting with ``:`` starts at the root; one without it continues from the node of the
  previous unit of the same message (``:TRIG:EDGE:SOUR CHAN1;SLOP POS``), and from the root after a
  newline; a common command leaves the current node alone;
- each mnemonic in its short form (the capitals of ``CHANnel``) or its long form, any case; a node
  in ``[ ]`` may be left out; a ``#`` after a mnemonic is a numeric suffix, 1 when left out;
- numbers with an exponent and a unit with an SI prefix (``100mV``, ``1.5E3 Hz``, ``2 KHZ``),
  ``MINimum|MAXimum|DEFault``; booleans ``ON|OFF|1|0``; choices in short or long form, answered in
  their short form;
- errors go to a queue read by ``SYSTem:ERRor?`` (``-113,"Undefined header"`` ...), never to the
  output; a query answers in the instrument's format (``numbers``, ``booleans`` of the tree).

Binary blocks are pyvisa's (:func:`pyvisa.util.to_ieee_block` / :func:`~pyvisa.util.parse_ieee_block_header`).
"""
from __future__ import annotations

import math
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pyvisa.util import parse_ieee_block_header, to_ieee_block

from rig.errors import RigError

MAX_LINE = 1 << 20             # longest program message kept before it is thrown away (-363)
ERROR_QUEUE = 20               # entries before the queue overflows (-350), as the Keysight manuals say

#: SCPI-1999 vol. 2 §21.8 standard error numbers and texts.
ERRORS = {
    -100: "Command error",
    -101: "Invalid character",
    -102: "Syntax error",
    -103: "Invalid separator",
    -104: "Data type error",
    -108: "Parameter not allowed",
    -109: "Missing parameter",
    -110: "Command header error",
    -113: "Undefined header",
    -114: "Header suffix out of range",
    -120: "Numeric data error",
    -131: "Invalid suffix",
    -141: "Invalid character data",
    -150: "String data error",
    -160: "Block data error",
    -200: "Execution error",
    -210: "Trigger error",
    -211: "Trigger ignored",
    -221: "Settings conflict",
    -222: "Data out of range",
    -223: "Too much data",
    -224: "Illegal parameter value",
    -230: "Data corrupt or stale",
    -300: "Device-specific error",
    -350: "Queue overflow",
    -363: "Input buffer overrun",
    -410: "Query INTERRUPTED",
}

# *ESR bits (IEEE 488.2 §11.5.1)
ESR_OPC, ESR_QYE, ESR_DDE, ESR_EXE, ESR_CME = 0x01, 0x04, 0x08, 0x10, 0x20


class ScpiError(RigError):
    """An error for the queue: a standard code and, optionally, what was wrong."""

    def __init__(self, code: int, detail: str = ""):
        self.code = code
        self.text = ERRORS.get(code, "Error") + (f"; {detail}" if detail else "")
        super().__init__(f'{code},"{self.text}"')


# =========================================================================== mnemonics
_MNEMONIC = re.compile(r"([A-Za-z][A-Za-z_]*?)(\d*)")


def short_form(pattern: str) -> str:
    """``CHANnel`` -> ``CHAN``; ``RS232`` -> ``RS232``; ``CHANnel1`` -> ``CHAN1`` (the capitals and
    digits of the manual's spelling)."""
    return "".join(c for c in pattern if c.isupper() or c.isdigit() or c == "_") or pattern.upper()


def mnemonic_regex(pattern: str) -> str:
    """The regex (match case-insensitively) of a mnemonic in its short or long form: ``CHANnel`` ->
    ``CHAN(?:NEL)?``.  Letters after the first lower-case one belong to the long form only; digits
    at the end are literal (``CHANnel1``, ``RS232``).  The one mnemonic matcher of the rig."""
    m = re.fullmatch(r"([A-Z0-9_]*[A-Z])([a-z][A-Za-z]*)?(\d*)", pattern)
    if not m:
        return re.escape(pattern)
    head, tail, digits = m.group(1), m.group(2) or "", m.group(3)
    return re.escape(head) + (f"(?:{tail.upper()})?" if tail else "") + re.escape(digits)


_RX_CACHE: dict[str, re.Pattern] = {}


def mnemonic(pattern: str, word: str) -> bool:
    """``word`` is ``pattern`` in its short or long form, any case."""
    rx = _RX_CACHE.get(pattern)
    if rx is None:
        rx = _RX_CACHE[pattern] = re.compile(mnemonic_regex(pattern), re.IGNORECASE)
    return rx.fullmatch(word) is not None


# =========================================================================== parameters
_SI = {"": 1.0, "EX": 1e18, "PE": 1e15, "T": 1e12, "G": 1e9, "MA": 1e6, "K": 1e3, "M": 1e-3,
       "U": 1e-6, "N": 1e-9, "P": 1e-12, "F": 1e-15, "A": 1e-18}
_UNITS = ("HZ", "VPP", "VRMS", "DBM", "OHM", "V", "A", "S", "W", "PCT", "DEG", "PPM", "SA/S", "SA")
_NUM = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE]\s*[+-]?\d+)?)\s*([A-Za-z/%]*)")


def parse_number(text: str, unit: str | None = None, low: float | None = None, high: float | None = None,
                 default: float | None = None, integer: bool = False) -> float:
    """A <NRf> with an optional suffix (``100mV``, ``2kHz``, ``1 MHZ`` = mega for Hz and ohm as
    SCPI says), or MINimum/MAXimum/DEFault.  Out of [low, high]: -222; not a number: -104/-131."""
    t = str(text).strip()
    for word, v in (("MINimum", low), ("MAXimum", high), ("DEFault", default)):
        if mnemonic(word, t):
            if v is None:
                raise ScpiError(-224, f"{t} is not defined here")
            return float(v)
    m = None
    if mnemonic("INFinity", t):
        x = math.inf
    elif mnemonic("NINFinity", t):
        x = -math.inf
    else:
        m = _NUM.fullmatch(t)
        if not m:
            raise ScpiError(-104, f"not a number: {t[:40]!r}")
        x = float(m.group(1).replace(" ", ""))
        suf = m.group(2).upper()
        if suf:
            x *= _suffix_multiplier(suf, unit)
    if not math.isfinite(x) and m is not None:   # 1e999: no instrument holds that
        raise ScpiError(-222, f"{t[:40]!r} overflows")
    if integer:
        if not math.isfinite(x):
            raise ScpiError(-222, f"{t[:40]!r} is not a whole number")
        x = float(round(x))
    if math.isnan(x) or (low is not None and x < low) or (high is not None and x > high):
        raise ScpiError(-222, f"{x:g} outside {low:g}..{high:g}" if low is not None and high is not None
                        else f"{x:g}")
    return x


def _suffix_multiplier(suf: str, unit: str | None) -> float:
    u = (unit or "").upper()
    if suf in ("MHZ", "MOHM"):                  # SCPI: M before HZ and OHM is mega
        return 1e6
    if u and suf.endswith(u):
        prefix = suf[: -len(u)]
    elif suf in _SI and suf != "A" and suf != "":  # a bare prefix (``2k``)
        prefix = suf
    else:
        prefix = None
        for known in _UNITS:
            if suf.endswith(known) and suf[: -len(known)] in _SI:
                prefix = suf[: -len(known)]
                break
    if prefix is None or prefix not in _SI:
        raise ScpiError(-131, f"suffix {suf!r}")
    return _SI[prefix]


def parse_bool(text: str) -> bool:
    """A SCPI boolean parameter: ON, OFF or a number (non-zero is ON); anything else is -224."""
    t = str(text).strip().upper()
    if t in ("ON", "1"):
        return True
    if t in ("OFF", "0"):
        return False
    try:
        return float(t) != 0.0            # IEEE 488.2: a non-zero number is ON
    except ValueError:
        raise ScpiError(-224, f"expected ON|OFF|1|0, not {t[:20]!r}") from None


def parse_choice(text: str, values) -> str:
    """The manual's spelling (e.g. ``POSitive``) of a choice given in short or long form."""
    t = str(text).strip().strip("\"'")
    for v in values:
        if mnemonic(str(v), t):
            return str(v)
    raise ScpiError(-224, f"{t[:24]!r} is not one of {[short_form(str(v)) for v in values]}")


def parse_string(text: str) -> str:
    """A SCPI string parameter without its quotes (a doubled quote inside stands for one)."""
    t = str(text).strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'":
        return t[1:-1].replace(t[0] * 2, t[0])
    return t


def parse_block(raw: bytes) -> bytes:
    """A definite-length block's bytes (pyvisa's header parser); a malformed block is -160."""
    if not raw.startswith(b"#") or raw[1:2] in (b"", b"0") or not raw[1:2].isdigit():
        raise ScpiError(-160, "not a definite-length block")
    n = raw[1] - 0x30
    digits = raw[2:2 + n]
    if len(digits) != n or not digits.isdigit() or len(raw) != 2 + n + int(digits):
        raise ScpiError(-160, "block length does not match its header")
    offset, length = parse_ieee_block_header(raw)
    return bytes(raw[offset:offset + length])


def block(data: bytes) -> bytes:
    """``data`` as a definite-length block (pyvisa's encoder)."""
    return to_ieee_block(data, datatype="B")


def split_params(raw: bytes) -> list[bytes]:
    """The parameters of a unit, split at commas outside strings and blocks, stripped."""
    out, cur, i, n = [], bytearray(), 0, len(raw)
    while i < n:
        c = raw[i]
        if c in (0x22, 0x27):
            j = raw.find(bytes((c,)), i + 1)
            j = n - 1 if j < 0 else j
            cur += raw[i:j + 1]
            i = j + 1
        elif c == 0x23 and i + 1 < n and 0x31 <= raw[i + 1] <= 0x39:
            nd = raw[i + 1] - 0x30
            digits = raw[i + 2:i + 2 + nd]
            end = i + 2 + nd + int(digits) if len(digits) == nd and digits.isdigit() else n
            cur += raw[i:end]
            i = end
        elif c == 0x2C:
            out.append(bytes(cur).strip())
            cur = bytearray()
            i += 1
        else:
            cur.append(c)
            i += 1
    if out or cur.strip():
        out.append(bytes(cur).strip())
    return out


# =========================================================================== program messages
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
        out: list[list[bytes]] = []
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


# =========================================================================== the command tree
@dataclass(frozen=True)
class Element:
    """One node of a header spec: its mnemonic, whether it may be left out (``[ ]``), whether it
    takes a numeric suffix (``#``)."""

    word: str
    optional: bool
    suffix: bool


_ELEMENT = re.compile(r"(\[)?:?([A-Za-z][A-Za-z0-9_]*?)(#)?(\])?(?=:|\[|$)")


def parse_header_spec(spec: str) -> tuple[Element, ...]:
    """``[:SOURce#]:VOLTage[:LEVel]`` -> its elements (a manual's header notation)."""
    s = spec.strip()
    if s.startswith("*"):
        return (Element(s.upper(), False, False),)
    out, pos = [], 0
    while pos < len(s):
        m = _ELEMENT.match(s, pos)
        if not m or m.end() == pos or bool(m.group(1)) != bool(m.group(4)):
            raise ValueError(f"bad header {spec!r} at {s[pos:]!r}")
        out.append(Element(m.group(2), bool(m.group(1)), bool(m.group(3))))
        pos = m.end()
    if not out or all(e.optional for e in out):
        raise ValueError(f"bad header {spec!r}: no required node")
    return tuple(out)


TYPES = ("none", "number", "int", "bool", "choice", "string", "block", "any")


@dataclass(frozen=True)
class Param:
    """What one parameter of a node is."""

    type: str = "none"
    range: tuple[float, float] | None = None
    default: Any = None
    unit: str | None = None
    values: tuple[str, ...] = ()
    optional: bool = False

    def parse(self, raw: bytes | None, node: "Node"):
        """The parameter's value from its bytes (raw None or empty: left out); ScpiError (-109 when a required
        one is left out) if it is not one."""
        if raw is None or raw == b"":
            if self.optional or self.type == "none":
                return None if self.optional else self.default
            raise ScpiError(-109, f"{node.spec} needs a {self.type} parameter")
        if self.type == "block":
            return parse_block(raw)
        text = raw.decode("latin-1")
        if self.type in ("number", "int"):
            lo, hi = self.range or (None, None)
            if isinstance(self.default, str) and mnemonic("DEFault", text.strip()):
                return self.default      # a default that is a word (AUTO)
            if self.values:     # words accepted besides a number (AUTO, INFinity, ...)
                try:
                    return parse_choice(text, self.values)
                except ScpiError:
                    pass
            x = parse_number(text, self.unit, lo, hi, self.default, integer=self.type == "int")
            return int(x) if self.type == "int" else x
        if self.type == "bool":
            return parse_bool(text)
        if self.type == "choice":
            return parse_choice(text, self.values)
        if self.type == "string":
            return parse_string(text)
        if self.type == "none":
            raise ScpiError(-108, f"{node.spec} takes no parameter")
        return text.strip()


@dataclass(frozen=True)
class Node:
    """A header of the tree with what it takes.

    ``name``: the setting or action (handlers ``do_<name>`` / ``q_<name>`` / ``on_<name>``).
    ``params``: the parameters of the command form; ``query_params``: those of the query form.
    ``settable`` / ``queryable``: which forms exist.  ``channel``: a leading optional parameter
    such as ``CH2`` naming the channel (the DP800 ``:OUTPut CH2,ON``) in both forms.
    ``reply``: a format for numbers answered by this node (else the tree's).
    """

    spec: str
    elements: tuple[Element, ...]
    name: str
    params: tuple[Param, ...]
    query_params: tuple[Param, ...]
    settable: bool
    queryable: bool
    channel: str | None = None
    reply: str | None = None
    suffix_max: int | None = None

    @property
    def is_setting(self) -> bool:
        """A node that is set and queried with one value: its value is kept in ScpiInstrument.values."""
        return self.settable and self.queryable and len(self.params) == 1 and self.params[0].type != "none"

    def match(self, words: list[str], default_suffix: int) -> tuple[int, ...] | None:
        """The numeric suffixes (a left-out one is ``default_suffix``) if ``words`` name this node."""
        els = self.elements

        def go(i: int, j: int, sfx: tuple) -> tuple | None:
            if i == len(els):
                return sfx if j == len(words) else None
            e = els[i]
            if j < len(words):
                w = words[j]
                if e.suffix:
                    m = re.fullmatch(r"(.*?[A-Za-z])(\d*)", w)
                    if m and mnemonic(e.word, m.group(1)):
                        n = int(m.group(2)) if m.group(2) else default_suffix
                        r = go(i + 1, j + 1, sfx + (n,))
                        if r is not None:
                            return r
                elif mnemonic(e.word, w):
                    r = go(i + 1, j + 1, sfx)
                    if r is not None:
                        return r
            if e.optional:
                return go(i + 1, j, sfx + ((default_suffix,) if e.suffix else ()))
            return None

        return go(0, 0, ())


def _param(d, where: str) -> Param:
    if isinstance(d, str):
        d = {"type": d}
    if not isinstance(d, dict):
        raise ValueError(f"{where}: a parameter is a type name or a mapping, not {d!r}")
    unknown = set(d) - {"type", "range", "default", "unit", "values", "optional"}
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}")
    t = d.get("type", "choice" if "values" in d else "number" if "range" in d else "none")
    if t not in TYPES:
        raise ValueError(f"{where}: type {t!r}; expected one of {list(TYPES)}")
    rng = d.get("range")
    if rng is not None:
        if not (isinstance(rng, (list, tuple)) and len(rng) == 2 and
                all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in rng)
                and rng[0] <= rng[1]):
            raise ValueError(f"{where}.range: expected [low, high] finite numbers, not {rng!r}")
        rng = (float(rng[0]), float(rng[1]))
    vals = d.get("values") or ()
    if not isinstance(vals, (list, tuple)) or not all(isinstance(v, (str, int)) for v in vals):
        raise ValueError(f"{where}.values: expected a list of words, not {vals!r}")
    if t == "choice" and not vals:
        raise ValueError(f"{where}: a choice needs its values")
    default = d.get("default")
    if t == "choice" and default is not None:
        default = parse_choice(str(default), [str(v) for v in vals])
    elif t in ("number", "int") and default is not None:
        numeric = isinstance(default, (int, float)) and not isinstance(default, bool) and math.isfinite(default)
        if not numeric and str(default) not in [str(v) for v in vals]:
            raise ValueError(f"{where}.default: {default!r} is neither a finite number nor one of {list(vals)}")
        if numeric:
            default = int(default) if t == "int" else float(default)
    elif t == "bool" and default is not None and not isinstance(default, bool):
        raise ValueError(f"{where}.default: expected true or false, not {default!r}")
    return Param(t, rng, default, d.get("unit"), tuple(str(v) for v in vals), bool(d.get("optional", False)))


_NODE_KEYS = {"type", "range", "default", "unit", "values", "optional", "name", "params", "query",
              "set", "query_params", "channel", "reply", "suffix_max"}


def _node(spec: str, d, where: str) -> Node:
    if d is None:
        d = {}
    if isinstance(d, str):
        d = {"type": d}
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a mapping, not {d!r}")
    unknown = set(d) - _NODE_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; a node has {sorted(_NODE_KEYS)}")
    els = parse_header_spec(spec)
    if els[0].word.startswith("*"):
        name = "_" + els[0].word[1:].lower()
    else:
        name = d.get("name") or "_".join(e.word.lower() for e in els if not e.optional)
    if "params" in d:
        params = tuple(_param(p, f"{where}.params[{i}]") for i, p in enumerate(d["params"] or ()))
    else:
        params = (_param({k: d[k] for k in ("type", "range", "default", "unit", "values", "optional") if k in d},
                         where),)
    has_value = any(p.type != "none" for p in params)
    settable = bool(d.get("set", True))
    queryable = d.get("query", has_value)
    if queryable == "only":
        settable, queryable = False, True
    qp = tuple(_param(p, f"{where}.query_params[{i}]") for i, p in enumerate(d.get("query_params") or ()))
    return Node(spec, els, str(name), params, qp, settable, bool(queryable), d.get("channel"), d.get("reply"),
                d.get("suffix_max"))


@dataclass
class Tree:
    """A model's command tree: nodes by header, the answer formats."""

    nodes: list[Node]
    numbers: str = "{:.6e}"
    booleans: tuple[str, str] = ("1", "0")
    by_name: dict[str, Node] = field(default_factory=dict)
    derived: bool = False
    error_codes: str = "{:d}"        # how SYSTem:ERRor? writes the code (Keysight: "{:+d}", +0)           # made from a model's templates alone, not from its manual

    def __post_init__(self):
        for n in self.nodes:
            self.by_name.setdefault(n.name, n)
        self._common = {n.elements[0].word: n for n in self.nodes if n.elements[0].word.startswith("*")}

    def find(self, words: list[str], default_suffix: int = 1) -> tuple[Node, tuple[int, ...]] | None:
        """The node a header's words name, with its numeric suffixes; None if none does."""
        if len(words) == 1 and words[0].startswith("*"):
            n = self._common.get(words[0].upper())
            return (n, ()) if n else None
        # the most specific node wins: `CONF?` is :CONFigure, not :CONFigure[:VOLTage][:DC] with
        # both optional nodes left out (the node with the fewest elements left out the fewest)
        best = None
        for n in self.nodes:
            sfx = n.match(words, default_suffix)
            if sfx is not None and (best is None or len(n.elements) < len(best[0].elements)):
                best = n, sfx
        return best

    def format_number(self, x: float, node: Node | None = None) -> str:
        """A number as the instrument answers it (the node's reply format, else the tree's)."""
        if isinstance(x, bool):
            return self.booleans[0] if x else self.booleans[1]
        if isinstance(x, int):
            return str(x)
        return (node.reply if node is not None and node.reply else self.numbers).format(x)

    def format(self, value, node: Node | None = None) -> str:
        """Any setting's value as the instrument answers it (numbers, booleans, quoted strings, short-form choices)."""
        if isinstance(value, bool):
            return self.booleans[0] if value else self.booleans[1]
        if isinstance(value, (int, float)):
            return self.format_number(value, node)
        if isinstance(value, str):
            p = node.params[0] if node is not None and node.params else None
            if p is not None and p.type == "string":
                return '"' + value.replace('"', '""') + '"'
            return short_form(value) if p is not None and value in p.values else value
        return str(value)


COMMON_NODES = {
    "*IDN": {"query": "only"}, "*RST": {}, "*CLS": {}, "*ESR": {"query": "only"}, "*ESE": {"type": "int",
    "range": [0, 255], "default": 0}, "*SRE": {"type": "int", "range": [0, 255], "default": 0},
    "*STB": {"query": "only"}, "*OPC": {"query": True}, "*WAI": {}, "*OPT": {"query": "only"}, "*TRG": {},
    "*TST": {"query": "only"},
    ":SYSTem:ERRor[:NEXT]": {"query": "only", "set": False, "name": "error"},
}


def parse_tree(data, where: str = "scpi") -> Tree:
    """A :class:`Tree` from a model file's ``scpi`` section (the common commands and
    ``SYSTem:ERRor?`` are added unless the file states them)."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping with 'tree', not {type(data).__name__}")
    unknown = set(data) - {"tree", "numbers", "booleans", "error_codes"}
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; expected tree, numbers, booleans, "
                         f"error_codes")
    tree = data.get("tree")
    if not isinstance(tree, dict) or not tree:
        raise ValueError(f"{where}.tree: expected a mapping header -> node")
    nodes = []
    for spec, d in tree.items():
        try:
            nodes.append(_node(str(spec), d, f"{where}.tree.{spec}"))
        except (ValueError, ScpiError) as e:
            raise ValueError(str(e) if str(e).startswith(where) else f"{where}.tree.{spec}: {e}") from None
    have = {n.elements[0].word if n.elements[0].word.startswith("*") else n.name for n in nodes}
    for spec, d in COMMON_NODES.items():
        key = spec if spec.startswith("*") else "error"
        if key not in have:
            nodes.append(_node(spec, d, f"{where}.common.{spec}"))
    numbers = data.get("numbers", "{:.6e}")
    try:
        numbers.format(1.5)
    except (ValueError, AttributeError, IndexError) as e:
        raise ValueError(f"{where}.numbers: bad format {numbers!r}: {e}") from None
    bools = data.get("booleans", ["1", "0"])
    if not (isinstance(bools, (list, tuple)) and len(bools) == 2):
        raise ValueError(f"{where}.booleans: expected [on, off], not {bools!r}")
    codes = data.get("error_codes", "{:d}")
    try:
        codes.format(-113)
    except (ValueError, AttributeError, IndexError) as e:
        raise ValueError(f"{where}.error_codes: bad format {codes!r}: {e}") from None
    return Tree(nodes, numbers, (str(bools[0]), str(bools[1])), error_codes=codes)


_HEADER = re.compile(rb"\s*(:?[*A-Za-z][A-Za-z0-9_:]*)(\?)?(?=\s|$)")


def split_unit(unit: bytes) -> tuple[str, bool, bool, list[bytes]] | None:
    """(header, rooted, query, params) of a program message unit, or None (not a unit)."""
    m = _HEADER.match(unit)
    if not m:
        return None
    head = m.group(1).decode("ascii")
    rest = unit[m.end():]
    return head, head.startswith(":"), bool(m.group(2)), split_params(rest.strip())


# =========================================================================== the instrument
class ScpiInstrument:
    """The IEEE 488.2 side of an instrument: the error queue, the standard event status register,
    the common commands and dispatch of units through a :class:`Tree`.

    A node is handled by ``do_<name>(sfx, params)`` (command), ``q_<name>(sfx, params)`` (query)
    if the class has it; otherwise a setting node stores its value in :attr:`values` (by name and
    suffixes) and answers it, calling ``on_<name>(sfx, value)`` after a change (which may refuse it
    with a :class:`ScpiError`).  ``defaults`` of the tree hold until set.  A subclass sets
    :attr:`tree` and answers ``idn()``.
    """

    tree: Tree

    def __init__(self):
        self.errors: deque[tuple[int, str]] = deque()
        self.values: dict[tuple[str, tuple[int, ...]], Any] = {}
        self.esr = 0
        self.ese = 0
        self.lock = threading.RLock()
        self.commands_seen = 0
        self.unknown: deque[str] = deque(maxlen=50)   # headers refused with -113 (for diagnosis)

    # -- the queue
    def push_error(self, code: int, text: str | None = None) -> None:
        """Queue an error (its standard text unless given) and set its event status bit; a full queue ends in -350."""
        with self.lock:
            if -199 <= code <= -100:
                self.esr |= ESR_CME
            elif -299 <= code <= -200:
                self.esr |= ESR_EXE
            elif -399 <= code <= -300:
                self.esr |= ESR_DDE
            elif -499 <= code <= -400:
                self.esr |= ESR_QYE
            if len(self.errors) >= ERROR_QUEUE:
                self.errors[-1] = (-350, ERRORS[-350])
                return
            self.errors.append((code, (text or ERRORS.get(code, "Error")).replace('"', "'")))

    # -- settings
    def get(self, name: str, *sfx: int):
        """A setting's value (its tree default until set)."""
        v = self.values.get((name, tuple(sfx)))
        if v is None and (name, tuple(sfx)) not in self.values:
            node = self.tree.by_name[name]
            return node.params[0].default if node.params else None
        return v

    def set(self, name: str, value, *sfx: int) -> None:
        """Store a setting's value (no check, no on_<name> hook: the caller has decided)."""
        self.values[(name, tuple(sfx))] = value

    def reset(self) -> None:
        """*RST: every setting back to its default."""
        self.values.clear()

    def default_suffix(self) -> int:
        """The suffix a header without one stands for (1; the selected channel on some supplies)."""
        return 1

    # -- common commands
    def idn(self) -> str:
        """*IDN?: the identity (manufacturer,model,serial,firmware); each instrument says its own."""
        raise NotImplementedError

    def options(self) -> str:
        """*OPT?: the installed options ("0": none)."""
        return "0"

    def q__idn(self, sfx, p):
        """*IDN?"""
        return self.idn()

    def do__rst(self, sfx, p):
        """*RST: every setting back to its default."""
        self.reset()

    def do__cls(self, sfx, p):
        """*CLS: the error queue and the event status register cleared."""
        self.errors.clear()
        self.esr = 0

    def q__esr(self, sfx, p):
        """*ESR?: the standard event status register, cleared by the reading."""
        v, self.esr = self.esr, 0
        return str(v)

    def do__ese(self, sfx, p):
        """*ESE n: the event status enable mask."""
        self.ese = int(p[0])

    def q__ese(self, sfx, p):
        """*ESE?: the event status enable mask."""
        return str(self.ese)

    def q__stb(self, sfx, p):
        """*STB?: the status byte (bit 2: an error queued; bit 5: an enabled event)."""
        return str((0x04 if self.errors else 0) | (0x20 if self.esr & self.ese else 0))

    def do__opc(self, sfx, p):
        """*OPC: the operation-complete bit set (every operation has completed)."""
        self.esr |= ESR_OPC        # every operation here completes before the next unit is read

    def q__opc(self, sfx, p):
        """*OPC?: 1, every operation before it being complete."""
        return "1"

    def do__wai(self, sfx, p):
        """*WAI: nothing to wait for (every operation completes before the next unit)."""
        pass

    def q__opt(self, sfx, p):
        """*OPT?"""
        return self.options()

    def q__tst(self, sfx, p):
        """*TST?: 0, the self-test passed."""
        return "0"

    def do__trg(self, sfx, p):
        """*TRG: accepted; no instrument here acts on a bus trigger."""
        pass

    def q_error(self, sfx, p):
        """SYSTem:ERRor?: the oldest queued error as code,"text" (0,"No error" when none)."""
        with self.lock:
            if self.errors:
                code, text = self.errors.popleft()
                return f'{self.tree.error_codes.format(code)},"{text}"'
        return f'{self.tree.error_codes.format(0)},"No error"'

    # -- dispatch
    def execute(self, units: list[bytes]) -> list[bytes]:
        """One program message (its units); the replies of its queries (no termination).  A
        message with several queries answers them joined by ';' in one response message, as
        IEEE 488.2 §8.4.1 says.  Errors go to the queue, never out."""
        replies: list[bytes] = []
        path: list[str] = []
        with self.lock:
            for unit in units:
                self.commands_seen += 1
                try:
                    reply, path = self._unit(unit, path)
                except ScpiError as e:
                    self.push_error(e.code, e.text)
                    continue
                except Exception as e:  # a bug of the virtual instrument must not end the server
                    self.push_error(-300, f"{type(e).__name__}: {e}"[:80])
                    continue
                if reply is not None:
                    replies.append(reply if isinstance(reply, bytes) else str(reply).encode("latin-1"))
        if len(replies) > 1 and not any(r.startswith(b"#") for r in replies):
            return [b";".join(replies)]
        return replies

    def _unit(self, unit: bytes, path: list[str]):
        parts = split_unit(unit)
        if parts is None:
            raise ScpiError(-102, f"{unit[:30]!r}")
        head, rooted, query, params = parts
        if head.startswith("*"):
            found = self.tree.find([head.upper()])
            words = None
        else:
            words = [w for w in head.strip(":").split(":")]
            if any(not w for w in words):
                raise ScpiError(-102, f"empty node in {head!r}")
            # SCPI-1999 §6.2.4: without a leading ':' the header continues from the current node
            words = words if rooted else path + words
            found = self.tree.find(words, self.default_suffix())
        if found is None:
            self.unknown.append(unit[:60].decode("latin-1", "replace"))
            raise ScpiError(-113)
        node, sfx = found
        if words is not None:
            path = words[:-1]
        if node.suffix_max is not None and sfx and not 1 <= sfx[0] <= node.suffix_max:
            raise ScpiError(-114, f"suffix {sfx[0]}")
        if node.channel:      # an optional leading CH<n>, else the selected channel
            ch = self._channel_param(node.channel, params[0]) if params else None
            if ch is not None:
                params = params[1:]
            sfx = (ch if ch is not None else self.default_suffix(),) + sfx
        return (self._query(node, sfx, params) if query else self._command(node, sfx, params)), path

    def _channel_param(self, prefix: str, raw: bytes) -> int | None:
        m = re.fullmatch(re.escape(prefix) + r"(\d+)", raw.decode("latin-1").strip(), re.IGNORECASE)
        return int(m.group(1)) if m else None

    def _query(self, node: Node, sfx: tuple, params: list[bytes]):
        if not node.queryable:
            raise ScpiError(-113, f"{node.spec} has no query form")
        h = getattr(self, "q_" + _attr(node.name), None)
        if h is not None:
            qp = self._parse_params(node.query_params, params, node) if node.query_params else params
            return h(sfx, qp)
        if node.is_setting:
            p = node.params[0]
            if params:        # VOLT? MAX: the limit itself
                word = params[0].decode("latin-1")
                for w, v in (("MINimum", p.range[0] if p.range else None), ("MAXimum", p.range[1] if p.range else None),
                             ("DEFault", p.default)):
                    if v is not None and mnemonic(w, word.strip()):
                        return self.tree.format(v if p.type != "int" else int(v), node)
                raise ScpiError(-108, f"{node.spec}? takes MIN|MAX|DEF")
            return self.tree.format(self.get(node.name, *sfx), node)
        if (node.name, tuple(sfx)) in self.values:     # a node of a derived tree: what was set
            v = self.values[(node.name, tuple(sfx))]
            return ",".join(map(str, v)) if isinstance(v, (list, tuple)) else self.tree.format(v, node)
        raise ScpiError(-230 if node.settable else -113, f"{node.spec}: nothing to answer")

    def _command(self, node: Node, sfx: tuple, params: list[bytes]):
        if not node.settable:
            raise ScpiError(-113, f"{node.spec} is a query only")
        values = self._parse_params(node.params, params, node)
        h = getattr(self, "do_" + _attr(node.name), None)
        if h is not None:
            return h(sfx, values)
        if node.is_setting:
            old = self.get(node.name, *sfx)
            self.set(node.name, values[0], *sfx)
            hook = getattr(self, "on_" + _attr(node.name), None)
            if hook is not None:
                try:
                    hook(sfx, values[0])
                except ScpiError:
                    self.set(node.name, old, *sfx)
                    raise
            return None
        self.set(node.name, values if len(values) != 1 else values[0], *sfx)
        return None

    def _parse_params(self, specs: tuple[Param, ...], params: list[bytes], node: Node) -> list:
        real = [s for s in specs if s.type != "none"]
        if len(params) > len(real) and not (real and real[-1].type == "any"):
            if not real:
                raise ScpiError(-108, f"{node.spec} takes no parameter")
            raise ScpiError(-108, f"{node.spec} takes at most {len(real)} parameter(s)")
        out = []
        for i, spec in enumerate(specs):
            if spec.type == "none":
                continue
            out.append(spec.parse(params[i] if i < len(params) else None, node))
        return out


def _attr(name: str) -> str:
    return name.replace("*", "_").replace(":", "_").lower()


def check_template(tree: Tree, text: str) -> str | None:
    """Why a rendered driver command would be refused by the tree (None: it is accepted).  Every
    unit's header must resolve; fixed parameters (no placeholder) must parse."""
    path: list[str] = []
    for unit in text.split(";"):
        unit = unit.strip()
        if not unit:
            continue
        parts = split_unit(unit.encode("latin-1"))
        if parts is None:
            return f"{unit!r} is not a program message unit"
        head, rooted, query, params = parts
        if head.startswith("*"):
            found = tree.find([head.upper()])
        else:
            words = head.strip(":").split(":")
            words = words if rooted else path + words
            found = tree.find(words)
            path = words[:-1]
        if found is None:
            return f"header {head!r} is not in the command tree"
        node = found[0]
        if query and not node.queryable:
            return f"{head}? has no query form in the tree"
        if not query and not node.settable:
            return f"{head} is a query only in the tree"
    return None

