"""The rig profile: every open parameter of the protocol, each with the source it comes from.

The shipped default (profiles/iec62055-52.toml) holds IEC 62056-21 values and our assumptions for
what IEC 62055-52 fixes but does not publish. A user profile overrides some of them. Both files go
through one schema (SCHEMA below: key -> type, range, unit); nothing is checked by hand per key.
Times are milliseconds in TOML and integer nanoseconds here (house rule).

    p = load_profile("mine.toml")
    p.timing.ta_ns, p.source("timing.ta")   # 1500000000, "IEC 62056-21 §6.4"
"""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from rig import _framing
from rig.config_check import Bool, Checker, Choice, FileError, Int, Map, Open, Opt, Text, read_toml

__all__ = ["DEFAULT_PATH", "SCHEMA", "Profile", "ProfileError", "Register", "load_profile"]

DEFAULT_PATH = Path(__file__).with_name("profiles") / "iec62055-52.toml"
NS_PER_MS = 1_000_000
# The default may cite IEC 62056-21 or say "assumed"; nothing else (62055-52 is not public to us).
_DEFAULT_SOURCE = re.compile(r"IEC 62056-21 §\S.*|assumed")


class ProfileError(FileError):
    """A profile file (or a plan's [profile] table) is unreadable, malformed, or holds a value the
    schema refuses: `file:line: key: what is wrong (expected ...)`."""


# ---------------------------------------------------------------------------------------------
# Schema: what each value may be, in rig.config_check's value types (Int, Bool, Choice, Text, Map,
# Opt, Open). A bound given as a dotted key (Int's hi, Text's max) reads another merged value, so a
# limit such as the identification length follows limits.identification_max.

_BAUD = Choice((300, 600, 1200, 2400, 4800, 9600, 19200), "baud")
_PRINTABLE = r"[ -~]"
# printable, but not the characters that delimit data sets ( ) * / !: the framer's own set
_DATA = "[" + "".join(re.escape(chr(c)) for c in range(0x20, 0x7F) if c not in _framing.EXCLUDED) + "]"
_DATA_NO_SPACE = "[" + "".join(re.escape(chr(c)) for c in range(0x21, 0x7F) if c not in _framing.EXCLUDED) + "]"
_NAME = Text(32, r"[A-Za-z0-9_]", "letters, digits, _", min=1)
ENCODINGS = ("decimal", "ascii", "digits20", "code", "binary7")


def _ms(lo: int = 0, hi: int = 60_000) -> Int:
    return Int(lo, hi, "milliseconds")


SCHEMA: dict[str, Any] = {
    "packing": Choice(("7bit-msb-first", "7bit-lsb-first")),
    "interface": {"option": Choice(("optical", "current_loop", "voltage"))},
    "character": {
        "format": Choice(("7E1", "8N1")),
        "initial_baud": _BAUD,
        "max_baud": _BAUD,
        "baud_chars_mode_c": Map(Text(1, "[0-9]", "one digit", min=1), _BAUD),
        "baud_chars_mode_b": Map(Text(1, "[A-Z]", "one capital letter", min=1), _BAUD),
    },
    "timing": {
        "tr_min_ms": _ms(), "tr_min_fast_ms": _ms(), "tr_max_ms": _ms(1, 60_000),
        "ta_ms": _ms(1, 60_000), "tt_min_ms": _ms(), "tt_max_ms": _ms(1, 60_000),
        "command_timeout_ms": _ms(1, 60_000),
        "inactivity_min_ms": _ms(1, 3_600_000), "inactivity_max_ms": _ms(1, 3_600_000),
        "speed_switch_guard_ms": _ms(),
        "speed_switch_margin_ms": _ms(),
        "lone_ack_quiet_ms": _ms(0, 1_000),
        "execution_limit_ms": _ms(1, 600_000), "not_ready_poll_ms": _ms(1, 60_000),
    },
    "protocol": {
        "nak_repeats": Int(0, 255, "repeats"),
        "bcc_on_data": Bool(),
        "undefined_command": Choice(("nak", "error")),
        "block_size": Int(0, 65_535, "characters of data per partial block; 0 = whole"),
    },
    "limits": {
        **{k: Int(1, 65_535, "characters") for k in (
            "device_address_max", "identification_max", "address_max", "value_max",
            "value_max_programming", "unit_max", "error_text_max")},
        "frame_max": Int(64, 1 << 20, "bytes"),
    },
    "identification": {
        "manufacturer": Text(3, "[A-Za-z]", "letters", min=3),
        "baud_char": Text(1, "[0-9A-Z]", "a baud character", min=1),
        "text": Text("limits.identification_max", r"[ \"-.0-~]", "printable, no / or !", min=1),
        "device_address": Text("limits.device_address_max", "[0-9A-Za-z ]", "0-9 A-Z a-z space"),
    },
    "error_texts": {k: Text("limits.error_text_max", _DATA, "printable, no ( ) * / !", min=1) for k in (
        "unknown_register", "access_denied", "bad_length", "bad_value", "not_ready", "lockout",
        "undefined_command")},
    "registers": Open(_NAME, {
        "register_id": Text("limits.address_max", _DATA_NO_SPACE, "printable, no space ( ) * / !", min=1),
        "access": Choice(("r", "w", "rw")),
        "length": Int(1, "limits.value_max_programming", "characters"),
        "encoding": Choice(ENCODINGS),
        "codes": Opt(Text(32, "[A-Za-z0-9_]", 'a code table name, or "" for none'), None),
        "description": Opt(Text(200, r"[^\x00-\x1f]", "one line"), ""),
    }),
    "codes": Open(_NAME, Open(Text(3, "[0-9]", "a code number 0..999", min=1),
                              Text(64, _PRINTABLE, "printable", min=1))),
    "token_lockout": {
        "threshold": Int(1, 255, "rejected tokens"),
        "initial_period_ms": _ms(1, 86_400_000),
        "factor": Int(1, 16),
        "max_period_ms": _ms(1, 86_400_000),
        "cleared_by_accept": Bool(),
        "cleared_by_power_cycle": Bool(),
    },
    "client": {  # the rig's HHU client
        "reentry_statuses": Text(200, r"[ -~]", "tokenStatus names separated by commas"),
    },
    "emulator": {  # the built-in meter emulator (rig/server.py); a real meter has its own values
        "execution_ms": _ms(0, 600_000),
        "password": Text("limits.value_max_programming", _DATA, 'printable, no ( ) * / !; "" for none'),
        "lockout_answer": Choice(("status", "error")),
        "partial_answers": Choice(("requested", "always")),
        "limit_margin_ms": _ms(0, 60_000),
        "register_values": Map(Text(32, "[A-Za-z0-9_]", "register names", min=1),
                               Text("limits.value_max_programming", _DATA, "printable, no ( ) * / !")),
    },
}

# a <= b, checked after merging (the key from the user's file is the one blamed).
_ORDER = (
    ("timing.tr_min_fast_ms", "timing.tr_min_ms"),
    ("timing.tr_min_ms", "timing.tr_max_ms"),
    ("timing.tt_min_ms", "timing.tt_max_ms"),
    ("timing.inactivity_min_ms", "timing.inactivity_max_ms"),
    ("token_lockout.initial_period_ms", "token_lockout.max_period_ms"),
    ("character.initial_baud", "character.max_baud"),
    ("limits.value_max", "limits.value_max_programming"),
)


# ---------------------------------------------------------------------------------------------
# The profile objects (all frozen; treat the dicts inside as read-only).

@dataclass(frozen=True)
class Interface:
    option: str


@dataclass(frozen=True)
class Character:
    format: str
    initial_baud: int
    max_baud: int
    baud_chars_mode_c: dict[str, int]
    baud_chars_mode_b: dict[str, int]


@dataclass(frozen=True)
class Timing:
    tr_min_ns: int
    tr_min_fast_ns: int
    tr_max_ns: int
    ta_ns: int
    tt_min_ns: int
    tt_max_ns: int
    command_timeout_ns: int
    inactivity_min_ns: int
    inactivity_max_ns: int
    speed_switch_guard_ns: int
    speed_switch_margin_ns: int
    lone_ack_quiet_ns: int  # quiet after an ACK before it is taken alone (not an option select)
    execution_limit_ns: int
    not_ready_poll_ns: int

    @staticmethod
    def fast_reaction(manufacturer: str) -> bool:
        """IEC 62056-21 §6.3: a lower-case third manufacturer letter in the identification says the
        server may answer after tr_min_fast (20 ms) instead of tr_min (200 ms)."""
        return len(manufacturer) >= 3 and manufacturer[2].islower()

    def tr_min_for(self, manufacturer: str) -> int:
        """tr_min for a meter identifying as `manufacturer` (its IDResponse's three letters; "" when
        not identified): tr_min_fast when it claims fast reaction, else tr_min."""
        return self.tr_min_fast_ns if self.fast_reaction(manufacturer) else self.tr_min_ns


@dataclass(frozen=True)
class Protocol:
    nak_repeats: int
    bcc_on_data: bool
    undefined_command: str
    block_size: int


@dataclass(frozen=True)
class Limits:
    device_address_max: int
    identification_max: int
    address_max: int
    value_max: int
    value_max_programming: int
    unit_max: int
    error_text_max: int
    frame_max: int


@dataclass(frozen=True)
class Identification:
    manufacturer: str
    baud_char: str
    text: str
    device_address: str


@dataclass(frozen=True)
class TokenLockout:
    threshold: int
    initial_period_ns: int
    factor: int
    max_period_ns: int
    cleared_by_accept: bool
    cleared_by_power_cycle: bool

    def period_ns(self, rejects: int) -> int:
        """Lockout after `rejects` consecutive rejected tokens: 0 below the threshold, then growing."""
        if rejects < self.threshold:
            return 0
        return min(self.initial_period_ns * self.factor ** (rejects - self.threshold), self.max_period_ns)


@dataclass(frozen=True)
class ClientOptions:
    reentry_statuses: str  # tokenStatus names a token entered a second time may show, comma separated

    def reentry_names(self) -> frozenset[str]:
        return frozenset(n.strip().lower() for n in self.reentry_statuses.split(",") if n.strip())


@dataclass(frozen=True)
class Emulator:
    execution_ns: int  # token processing time; tokenStatus reads "Not ready" meanwhile
    password: str  # P1 password; "" accepts any
    lockout_answer: str  # "status": ACK, then tokenStatus "Token lockout active"; "error": error answer
    partial_answers: str  # "requested": R3/R4 reads in blocks of protocol.block_size; "always": every read
    limit_margin_ns: int  # a policy aiming at a limit (max) lands this far inside it (scheduling latency)
    register_values: dict[str, str]  # register name -> value the emulator reads back


@dataclass(frozen=True)
class Register:
    name: str
    register_id: str  # the ASCII data-set address
    access: str  # "r" | "w" | "rw"
    length: int  # maximum value characters
    encoding: str  # one of ENCODINGS
    codes: str | None  # code table of a "code" register
    description: str
    source: str


_SECTIONS = {"interface": Interface, "character": Character, "timing": Timing, "protocol": Protocol,
             "limits": Limits, "identification": Identification, "token_lockout": TokenLockout,
             "client": ClientOptions, "emulator": Emulator}


@dataclass(frozen=True)
class Profile:
    """The merged profile (default, user file, plan overrides), frozen: values in integer ns where
    they are times, each with its source (`source`, `basis`). Made by `load_profile`."""
    path: Path  # the user profile, or the default when none was given
    sources: dict[str, str]  # dotted TOML key -> "IEC 62056-21 §..." | "assumed" | "user profile ..."
    packing: str
    interface: Interface
    character: Character
    timing: Timing
    protocol: Protocol
    limits: Limits
    identification: Identification
    error_texts: dict[str, str]
    registers: dict[str, Register]
    codes: dict[str, dict[int, str]]
    token_lockout: TokenLockout
    client: ClientOptions
    emulator: Emulator

    def source(self, key: str) -> str:
        """Source of a value: "timing.ta", "timing.ta_ms" and "timing.ta_ns" all work; a table
        ("registers.tokenStatus") gives its distinct sources joined by "; "."""
        want = _unit_free(key)
        for k, s in self.sources.items():
            if _unit_free(k) == want:
                return s
        inside = [s for k, s in self.sources.items() if _unit_free(k).startswith(want + ".")]
        if inside:
            return "; ".join(dict.fromkeys(inside))
        parent = key.rpartition(".")[0]  # an entry of a table-valued leaf (baud characters)
        if parent and parent in self.sources:
            return self.sources[parent]
        raise KeyError(f"no profile value {key!r}")

    def basis(self, *keys: str) -> str:
        """Where a limit made of these profile values comes from, as a Measurement's basis: the
        default's own citation marked "(profile)" ("IEC 62056-21 §6.4 (profile)", "assumed
        (profile)"), or the override that set it ("user profile mine.toml", "plan p.toml
        [profile]"); several distinct sources joined by "; "."""
        out = []
        for k in keys:
            s = self.source(k)
            out.append(f"{s} (profile)" if _DEFAULT_SOURCE.fullmatch(s) else s)
        return "; ".join(dict.fromkeys(out))

    def is_default(self, key: str) -> bool:
        """The value at `key` is the shipped default's (no user profile or plan changed it)."""
        return _DEFAULT_SOURCE.fullmatch(self.source(key)) is not None

    def value(self, key: str) -> Any:
        """A value by its dotted TOML key ("timing.tr_max_ms" in ms as written, "registers.FOIN.length",
        "codes.tokenStatus.16")."""
        parts = key.split(".")
        if parts[0] == "registers":
            obj: Any = self.registers[parts[1]]
            return getattr(obj, parts[2]) if len(parts) > 2 else obj
        if parts[0] == "codes":
            return self.codes[parts[1]][int(parts[2])] if len(parts) > 2 else self.codes[parts[1]]
        if parts[0] in ("packing",):
            return self.packing
        if parts[0] == "error_texts":
            return self.error_texts[parts[1]]
        obj = getattr(self, parts[0])
        name = parts[1]
        if name.endswith("_ms"):
            ms = getattr(obj, name[:-3] + "_ns") / NS_PER_MS
            return int(ms) if ms.is_integer() else ms
        return getattr(obj, name)

    def differences(self, base: "Profile | None" = None) -> list[dict]:
        """What this profile changes from `base` (default: the shipped default): one entry per
        value set by a user profile or a plan, {key, value, default, source}, in key order."""
        base = base or load_profile()
        out = []
        for key in sorted(self.sources):
            if self.is_default(key):
                continue
            try:
                old = base.value(key)
            except (KeyError, AttributeError, ValueError):
                old = None               # a register or code the default does not have
            out.append({"key": key, "value": _plain(self.value(key)), "default": _plain(old),
                        "source": self.sources[key]})
        return out

    def baud_from_char(self, ch: str) -> int:
        for table in (self.character.baud_chars_mode_c, self.character.baud_chars_mode_b):
            if ch in table:
                return table[ch]
        raise ValueError(f"unknown baud character {ch!r}")

    def baud_char(self, baud: int, mode: str = "C") -> str:
        table = {"C": self.character.baud_chars_mode_c, "B": self.character.baud_chars_mode_b}[mode]
        for ch, b in table.items():
            if b == baud:
                return ch
        raise ValueError(f"no mode {mode} baud character for {baud} Bd")

    def register_by_id(self, register_id: str) -> Register | None:
        return next((r for r in self.registers.values() if r.register_id == register_id), None)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def _plain(v: Any) -> Any:
    """A value as JSON can hold it (a Register as its fields)."""
    if isinstance(v, Register):
        return {k: x for k, x in asdict(v).items() if k != "source"}
    return v


def _unit_free(key: str) -> str:
    return re.sub(r"_(ms|ns)$", "", key)


# ---------------------------------------------------------------------------------------------
# Loading: read each file into flat records (dotted path -> value, source, origin), merge, check.

@dataclass(frozen=True)
class _Rec:
    value: Any
    source: str
    origin: Checker  # the file (or the plan's [profile] table) it came from: errors name its line

    @property
    def file(self) -> str:
        return str(self.origin.file)


def load_profile(path: str | os.PathLike[str] | None = None, *, overrides: dict | None = None,
                 overrides_from: Checker | None = None, overrides_label: str | None = None) -> Profile:
    """The shipped default, with the user profile at `path` (if any) merged over it, then `overrides`
    (a table in profile syntax: a plan's [profile]) over both. `overrides_from` says where the
    overrides are written (file, text, prefix: their errors name that file and line) and
    `overrides_label` the source their values are recorded with. Raises ProfileError in the one
    format of rig.config_check: `file:line: key: what is wrong (expected ...)`."""
    flat: dict[tuple[str, ...], _Rec] = {}
    _read(DEFAULT_PATH, flat, user=False)
    if path is not None:
        _read(Path(path), flat, user=True)
    if overrides:
        origin = overrides_from or Checker("<overrides>", error=ProfileError)
        label = overrides_label or f"overrides {origin.file}"
        _walk(SCHEMA, overrides, (), origin, lambda cite: label + (f": {cite}" if cite else ""), None, flat)
    _complete(flat)
    _check(flat)
    where = (Path(overrides_from.file) if overrides and overrides_from else
             Path(path) if path is not None else DEFAULT_PATH)
    return _build(flat, where)


def _read(path: Path, flat: dict, *, user: bool) -> None:
    data, text = read_toml(path, ProfileError)
    origin = Checker(path, text, error=ProfileError)
    file = str(path)
    source: Callable[[str], str] | None = None
    if user:
        def source(cite):
            return f"user profile {file}" + (f": {cite}" if cite else "")
    _walk(SCHEMA, data, (), origin, source, None, flat)


def _walk(node, table, path, origin: Checker, source, inherited, flat) -> None:
    """Flatten one file's tables into `flat`, each value checked against the schema's shape.
    `source(cite)` is the source a user's value is recorded with; None: the shipped default, whose
    every value must cite IEC 62056-21 or say "assumed"."""
    if type(table) is not dict:
        raise origin.fail(path, "a table", table)
    cite = table.get("source", inherited)  # a table's `source` covers the plain values in it
    if "source" in table and type(cite) is not str:
        raise origin.fail(path + ("source",), "a string naming where the values come from", cite)
    for key, raw in table.items():
        if key == "source":
            continue
        where = path + (key,)
        if isinstance(node, Open):
            if not node.key.ok(key, None):
                raise origin.fail(where, f"a key that is {node.key.expect(None)}", key)
            child = node.item
        elif key in node:
            child = node[key]
        else:
            raise origin.unknown(where, node)
        if isinstance(child, (dict, Open)):
            _walk(child, raw, where, origin, source, cite, flat)
            continue
        value, own = raw, cite
        if type(raw) is dict and "value" in raw:  # { value = ..., source = "..." }
            if set(raw) - {"value", "source"} or type(raw.get("source", "")) is not str:
                raise origin.fail(where, '{ value = ..., source = "..." }', raw)
            value, own = raw["value"], raw.get("source", cite)
        if source is None and (own is None or not _DEFAULT_SOURCE.fullmatch(own)):
            raise origin.fail(where, "a source 'IEC 62056-21 §<clause>' or 'assumed'", own)
        flat[where] = _Rec(value, own if source is None else source(own), origin)


def _leaves(node, path: tuple[str, ...], flat: dict):
    """Every (path, check) the merged profile must hold, open tables expanded from what is there."""
    if isinstance(node, Open):
        n = len(path)
        for key in dict.fromkeys(p[n] for p in flat if len(p) > n and p[:n] == path):
            yield from _leaves(node.item, path + (key,), flat)
    elif isinstance(node, dict):
        for key, child in node.items():
            yield from _leaves(child, path + (key,), flat)
    else:
        yield path, node


def _row(flat: dict, path: tuple[str, ...]) -> _Rec | None:
    """A record next to `path` (same table): whose file and source a missing entry inherits."""
    return next((r for p, r in flat.items() if p[:-1] == path[:-1]), None)


def _complete(flat: dict) -> None:
    for path, check in list(_leaves(SCHEMA, (), flat)):
        if path in flat:
            continue
        near = _row(flat, path)
        if isinstance(check, Opt) and near is not None:
            flat[path] = _Rec(check.default, near.source, near.origin)
        else:
            origin = near.origin if near else Checker(DEFAULT_PATH, error=ProfileError)
            raise origin.fail(path, check.expect(lambda k: _value(flat, k)))


def _value(flat: dict, dotted: str) -> Any:
    return flat[tuple(dotted.split("."))].value


def _ref(check) -> str | None:
    """The dotted key a check's bound reads, if any."""
    check = getattr(check, "check", check)  # through Opt
    bound = getattr(check, "max", getattr(check, "hi", None))
    return bound if isinstance(bound, str) else None


def _later(flat: dict, *dotted: str) -> str:
    """Of several related keys, the one to blame: the first one set by the user, else the first."""
    default = str(DEFAULT_PATH)
    return next((k for k in dotted if flat[tuple(k.split("."))].file != default), dotted[0])


def _check(flat: dict) -> None:
    get = lambda k: _value(flat, k)  # noqa: E731

    def fail(dotted: str, expected: str):
        rec = flat[tuple(dotted.split("."))]
        return rec.origin.fail(tuple(dotted.split(".")), expected, rec.value)

    # Each value alone; limits first, since other checks read them.
    for path, check in sorted(_leaves(SCHEMA, (), flat), key=lambda pc: pc[0][0] != "limits"):
        if not check.ok(flat[path].value, get):
            expected, ref = check.expect(get), _ref(check)
            if ref and flat[tuple(ref.split("."))].file != flat[path].file:  # the user moved a limit
                expected += f" ({ref} set in {flat[tuple(ref.split('.'))].file})"
            raise fail(".".join(path), expected)

    for a, b in _ORDER:
        if get(a) > get(b):
            raise (fail(a, f"at most {b} = {get(b)}") if _later(flat, a, b) == a
                   else fail(b, f"at least {a} = {get(a)}"))

    # The identification announces the maximum speed.
    ch, top = get("identification.baud_char"), get("character.max_baud")
    chars = {**get("character.baud_chars_mode_b"), **get("character.baud_chars_mode_c")}
    if chars.get(ch) != top:
        blame = _later(flat, "identification.baud_char", "character.max_baud",
                       "character.baud_chars_mode_c", "character.baud_chars_mode_b")
        named = [c for c, b in chars.items() if b == top]
        if blame == "identification.baud_char":
            raise fail(blame, f"the baud character of character.max_baud = {top} (one of {named})")
        raise fail(blame, f"a value consistent with identification.baud_char = {ch!r} "
                          f"and character.max_baud = {top}")

    tables = sorted({p[1] for p in flat if p[0] == "codes"})
    seen: dict[str, str] = {}
    for name in dict.fromkeys(p[1] for p in flat if p[0] == "registers"):
        key = f"registers.{name}"
        enc, codes = get(key + ".encoding"), get(key + ".codes") or None
        if enc == "code" and codes not in tables:
            raise fail(_later(flat, key + ".codes", key + ".encoding"),
                       f"a code table for encoding 'code' (one of {tables})")
        if enc != "code" and codes is not None:
            raise fail(_later(flat, key + ".codes", key + ".encoding"),
                       f'"" (no code table) for encoding {enc!r}')
        if enc == "digits20" and get(key + ".length") != 20:
            raise fail(key + ".length", "20 for encoding 'digits20'")
        rid = get(key + ".register_id")
        if rid in seen:
            raise fail(_later(flat, key + ".register_id", seen[rid]),
                       f"a register_id not used by another register ({seen[rid]} has it)")
        seen[rid] = key + ".register_id"

    status_names = {r.value.lower() for p, r in flat.items() if p[:2] == ("codes", "tokenStatus")}
    for name in get("client.reentry_statuses").split(","):
        if name.strip() and name.strip().lower() not in status_names:
            raise fail("client.reentry_statuses", f"names of codes.tokenStatus, not {name.strip()!r}")

    registers = dict.fromkeys(p[1] for p in flat if p[0] == "registers")
    for name, value in get("emulator.register_values").items():
        if name not in registers:
            raise fail("emulator.register_values", f"names of registers (one of {list(registers)}), not {name!r}")
        if len(value) > get(f"registers.{name}.length"):
            raise fail("emulator.register_values",
                       f"{name}: at most registers.{name}.length = {get(f'registers.{name}.length')} characters")


def _build(flat: dict, path: Path) -> Profile:
    def section(name: str):
        kw = {}
        for key in SCHEMA[name]:
            v = flat[(name, key)].value
            if key.endswith("_ms"):
                key, v = key[:-3] + "_ns", v * NS_PER_MS
            kw[key] = dict(v) if isinstance(v, dict) else v
        return kw

    sources = {".".join(p): r.source for p, r in flat.items()}
    registers = {}
    for name in dict.fromkeys(p[1] for p in flat if p[0] == "registers"):
        src = "; ".join(dict.fromkeys(s for k, s in sources.items() if k.startswith(f"registers.{name}.")))
        row = _fields_of(flat, ("registers", name))
        registers[name] = Register(name=name, **{**row, "codes": row["codes"] or None}, source=src)
    codes: dict[str, dict[int, str]] = {}
    for p, r in flat.items():
        if p[0] == "codes":
            codes.setdefault(p[1], {})[int(p[2])] = r.value
    return Profile(
        path=path,
        sources=sources,
        packing=flat[("packing",)].value,
        error_texts=section("error_texts"),
        registers=registers,
        codes={t: dict(sorted(c.items())) for t, c in codes.items()},
        **{name: cls(**section(name)) for name, cls in _SECTIONS.items()},
    )


def _fields_of(flat: dict, prefix: tuple[str, ...]) -> dict[str, Any]:
    n = len(prefix)
    return {p[n]: r.value for p, r in flat.items() if p[:n] == prefix and len(p) == n + 1}
