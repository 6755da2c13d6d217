"""User files (profiles, plans, bench files, instrument models): one checker, one error format.

Every value a user wrote is refused the same way, naming the file, the line, the key, what is wrong
and what would do::

    plan.toml:7: case[0].repeat: got 0 (expected an integer >= 1)
    mine.toml:3: timing.ta_mss: unknown key (expected one of: tr_min_ms, ...)

A key is a path of names and list indexes, written `case[0].params.reads`. Lines come from the file's
text: TOML through `key_line`, YAML through the marks of yaml's own composer (`yaml_line`). Imports
nothing of rig but its errors, so the profile, the bench and the campaign all build on it.
"""
from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rig.errors import RigError

__all__ = ["Bool", "Checker", "Choice", "FileError", "Int", "Map", "Num", "Open", "Opt", "Text", "dotted",
           "key_line", "message", "read_toml", "yaml_line"]

Path_ = tuple  # a key as its parts: names (str) and list indexes (int)


def dotted(key: Path_ | str | None) -> str:
    """A key as written in messages: ("case", 0, "repeat") -> "case[0].repeat"."""
    if key is None or isinstance(key, str):
        return key or ""
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(key))


def message(file, key: Path_ | str | None, problem: str, expected: str | None = None,
            line: int | None = None) -> str:
    """The one error format: `<file>:<line>: <key>: <what is wrong> (expected ...)`; the line, the
    key and the expectation are left out where there is none."""
    out = f"{file}:{line}" if line else f"{file}"
    if key:
        out += f": {dotted(key)}"
    what = problem + (f" (expected {expected})" if expected else "")
    return f"{out}: {what}" if what else out


class FileError(RigError, ValueError):
    """A user file that cannot be used, in the one format; its parts stay as attributes: `path`,
    `line`, `key` (dotted), `parts` (the key's parts), `problem`, `expected`."""

    def __init__(self, path, key: Path_ | str | None = None, problem: str = "", expected: str | None = None,
                 *, line: int | None = None):
        self.path, self.line, self.problem, self.expected = path, line, problem, expected
        self.parts: tuple = tuple(key) if isinstance(key, tuple) else tuple(key.split(".")) if key else ()
        self.key = dotted(key) or None
        super().__init__(message(path, key, problem, expected, line))

    @property
    def reason(self) -> str:
        """What is wrong and what was expected, without the file and key."""
        return self.problem + (f" (expected {self.expected})" if self.expected else "")

    def located(self, line: int | None) -> FileError:
        """The same error at `line` of its file (for a checker that saw the data but not the text)."""
        if line is None or self.line is not None:
            return self
        return type(self)(self.path, self.parts or None, self.problem, self.expected, line=line)


# ---------------------------------------------------------------------------------------------
# where a key is in a file's text

def key_line(text: str, path: Path_) -> int | None:
    """The line (1-based) where a key path is defined in TOML text, best effort: `case`, 2, `repeat`
    finds the third [[case]] table's `repeat`; the deepest part found wins."""
    best = None
    table: tuple = ()
    counts: dict[str, int] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        s = raw.split("#", 1)[0].strip() if not raw.strip().startswith(("'", '"')) else raw.strip()
        if not s:
            continue
        m = re.match(r"^\[\[\s*([A-Za-z0-9_.\-\"]+)\s*\]\]$", s)
        if m:
            name = m.group(1)
            counts[name] = counts.get(name, -1) + 1
            parts = name.split(".")
            table = tuple(parts[:-1]) + (parts[-1], counts[name])
            if _prefix(table, path):
                best = _better(best, n, len(table))
            continue
        m = re.match(r"^\[\s*([A-Za-z0-9_.\-\"]+)\s*\]$", s)
        if m:
            parts = m.group(1).replace('"', "").split(".")
            # [case.sweep] after [[case]] belongs to the latest case
            if parts[0] in counts:
                table = (parts[0], counts[parts[0]], *parts[1:])
            else:
                table = tuple(parts)
            if _prefix(table, path):
                best = _better(best, n, len(table))
            continue
        m = re.match(r'^("?)([A-Za-z0-9_\-.]+)\1\s*=', s)
        if m:
            full = table + tuple(m.group(2).split("."))
            if _prefix(full, path):
                best = _better(best, n, len(full))
                # an inline table, `params = { x = 1 }`: the inner key on the same line
                if len(path) > len(full) and isinstance(path[len(full)], str) \
                        and re.search(rf"[{{,]\s*{re.escape(path[len(full)])}\s*=", s):
                    best = _better(best, n, len(full) + 1)
    return best[0] if best else None


def _prefix(a: tuple, b: tuple) -> bool:
    return len(a) <= len(b) and tuple(str(x) for x in b[: len(a)]) == tuple(str(x) for x in a)


def _better(best, line, depth):
    return (line, depth) if best is None or depth > best[1] else best


def yaml_line(text: str, key: str | None) -> int | None:
    """The line (1-based) of a dotted key (`sim.dialogues[2]`, `scpi.tree.:FOO.range`) in YAML text,
    from the marks of yaml's composer; the deepest part found wins. Keys may hold dots themselves."""
    if not key:
        return None
    import yaml

    try:
        node = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return None
    line, rest = None, key
    while node is not None and rest:
        nxt = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                name = str(k.value)
                if (rest == name or rest.startswith((name + ".", name + "["))) and \
                        (nxt is None or len(name) > len(nxt[0])):
                    nxt = (name, k, v)
            if nxt:
                line, node, rest = nxt[1].start_mark.line + 1, nxt[2], rest[len(nxt[0]):].lstrip(".")
                continue
        elif isinstance(node, yaml.SequenceNode):
            m = re.match(r"\[(\d+)\]\.?", rest)
            if m and int(m.group(1)) < len(node.value):
                node, rest = node.value[int(m.group(1))], rest[m.end():]
                line = node.start_mark.line + 1
                continue
        break
    return line


# ---------------------------------------------------------------------------------------------
# reading a TOML file

def read_text(path, error: type[FileError] = FileError) -> str:
    """A user file's text; an unreadable or non-UTF-8 file raises `error` naming the file (and the line)."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except OSError as e:
        raise error(path, None, f"cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        line = p.read_bytes()[:e.start].count(b"\n") + 1
        raise error(path, None, f"not UTF-8 text: byte {e.object[e.start]:#04x} (offset {e.start})",
                    line=line) from None


def read_toml(path, error: type[FileError] = FileError, *, text: str | None = None) -> tuple[dict, str]:
    """A user TOML file's data and its text (`text` given: that text, for a plan stored with a run).
    An unreadable, non-UTF-8 or malformed file raises `error` naming the file (and the line)."""
    if text is None:
        text = read_text(path, error)
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as e:     # its message ends "(at line N, column M)"
        m = re.search(r"\(at line (\d+), column \d+\)", str(e))
        at: int | None = getattr(e, "lineno", None) or (int(m.group(1)) if m else None)
        raise error(path, None, f"not valid TOML: {e}", line=at) from None


# ---------------------------------------------------------------------------------------------
# what a value may be: each says what it expects (for the message) and whether a value is one.
# `get(dotted)` reads another value of the same file where a bound names one (a profile's limits).

def _bound(b, get):
    return get(b) if isinstance(b, str) else b


@dataclass(frozen=True)
class Int:
    """An integer (never a bool) lo..hi; a bound left out is open, a str bound is another value's key."""
    lo: int | None = None
    hi: int | str | None = None
    unit: str = ""

    def expect(self, get=None) -> str:
        hi = _bound(self.hi, get)
        rng = (f" {self.lo}..{hi}" if self.lo is not None and hi is not None else
               f" >= {self.lo}" if self.lo is not None else f" <= {hi}" if hi is not None else "")
        return "an integer" + rng + (f" ({self.unit})" if self.unit else "")

    def ok(self, v, get=None) -> bool:
        hi = _bound(self.hi, get)
        return type(v) is int and (self.lo is None or v >= self.lo) and (hi is None or v <= hi)


@dataclass(frozen=True)
class Num:
    """A number (an integer or a float, never a bool), > 0 if `positive`."""
    positive: bool = False
    what: str = "a number"

    def expect(self, get=None) -> str:
        return self.what + (" > 0" if self.positive else "")

    def ok(self, v, get=None) -> bool:
        return type(v) in (int, float) and not (self.positive and v <= 0)


@dataclass(frozen=True)
class Bool:
    def expect(self, get=None) -> str:
        return "true or false"

    def ok(self, v, get=None) -> bool:
        return type(v) is bool


@dataclass(frozen=True)
class Choice:
    """One of `options`, of the same type (true is not 1)."""
    options: tuple
    unit: str = ""

    def expect(self, get=None) -> str:
        return "one of " + ", ".join(map(repr, self.options)) + (f" ({self.unit})" if self.unit else "")

    def ok(self, v, get=None) -> bool:
        return any(type(v) is type(o) and v == o for o in self.options)


@dataclass(frozen=True)
class Text:
    """A string of min..max characters, each matching the regex `chars` (`what` says which in
    words); no `max`: any string."""
    max: int | str | None = None
    chars: str | None = None
    what: str = ""
    min: int = 0

    def expect(self, get=None) -> str:
        if self.max is None:
            return "a string" + (f" ({self.what})" if self.what else "")
        return f"a string of {self.min}..{_bound(self.max, get)} characters ({self.what})"

    def ok(self, v, get=None) -> bool:
        if type(v) is not str:
            return False
        hi = _bound(self.max, get)
        return ((hi is None or self.min <= len(v) <= hi)
                and (self.chars is None or re.fullmatch(f"(?:{self.chars})*", v) is not None))


@dataclass(frozen=True)
class Map:
    """A whole table as one value, e.g. baud characters -> baud rates."""
    key: Text
    value: Any

    def expect(self, get=None) -> str:
        return f"a table of keys ({self.key.what}) to {self.value.expect(get)}"

    def ok(self, v, get=None) -> bool:
        return (type(v) is dict and len(v) > 0
                and all(self.key.ok(k, get) and self.value.ok(x, get) for k, x in v.items()))


@dataclass(frozen=True)
class Opt:
    """A value that may be left out; it then takes `default`."""
    check: Any
    default: Any

    def expect(self, get=None) -> str:
        return self.check.expect(get)

    def ok(self, v, get=None) -> bool:
        return v == self.default or self.check.ok(v, get)


@dataclass(frozen=True)
class Open:
    """A table whose keys the user may add (registers, code tables), each holding `item`."""
    key: Text
    item: Any


# ---------------------------------------------------------------------------------------------
# the checker

class Checker:
    """Checks the values of one user file and makes its errors, each at the key's line: `file` as
    named in messages, its `text` (None: no lines), `prefix` where the checked table sits in the file
    (a plan's ("profile",)), `error` the class raised (PlanError, ProfileError, ...), `locate` a line
    finder other than TOML's (YAML's)."""

    def __init__(self, file, text: str | None = None, *, prefix: Path_ = (), error: type[FileError] = FileError,
                 locate: Callable[[Path_], int | None] | None = None):
        self.file, self.text, self.prefix, self.error = file, text, tuple(prefix), error
        self._locate = locate

    def line(self, path: Path_) -> int | None:
        full = self.prefix + tuple(path)
        if self._locate is not None:
            return self._locate(full)
        return key_line(self.text, full) if self.text else None

    def refuse(self, path: Path_, problem: str, expected: str | None = None) -> FileError:
        """The error for the value at `path`: what is wrong, and what would do."""
        return self.error(self.file, self.prefix + tuple(path), problem, expected, line=self.line(path))

    def fail(self, path: Path_, expected: str, got: Any = ...) -> FileError:
        """A value that is not what was expected (`got` left out: the value is missing)."""
        return self.refuse(path, "missing" if got is ... else f"got {got!r}", expected)

    def unknown(self, path: Path_, allowed) -> FileError:
        return self.refuse(path, "unknown key", "one of: " + ", ".join(allowed))

    def keys(self, table, path: Path_, allowed, required=()) -> None:
        """`table` is a table holding only `allowed` keys and every `required` one."""
        if not isinstance(table, dict):
            raise self.fail(path, "a table", table)
        for k in table:
            if k not in allowed:
                raise self.unknown(path + (k,), allowed)
        for k in required:
            if k not in table:
                raise self.refuse(path + (k,), "missing")

    def check(self, v, path: Path_, kind, get=None):
        """`v` if it is of `kind` (Int, Num, Bool, Choice, Text, Map, Opt), else the error."""
        if not kind.ok(v, get):
            raise self.fail(path, kind.expect(get), v)
        return v

    def text_(self, v, path: Path_, choices=None, default=None):
        """A string (one of `choices`); None: `default`."""
        return default if v is None else self.check(v, path, Choice(tuple(choices)) if choices is not None else Text())

    def int_(self, v, path: Path_, lo=0, default=None):
        """An integer >= `lo`; None: `default`."""
        return default if v is None else self.check(v, path, Int(lo))

    def num_(self, v, path: Path_, default=None, positive=False):
        """A number (> 0 if `positive`) as a float; None: `default`."""
        return default if v is None else float(self.check(v, path, Num(positive)))

    def bool_(self, v, path: Path_, default=None):
        """true or false; None: `default`."""
        return default if v is None else self.check(v, path, Bool())

    def like(self, v, path: Path_, default):
        """A value of the kind of `default` (a case parameter's): a bool, an integer, a number (an
        integer is taken as a float), a string, a list or a table."""
        if isinstance(default, bool):
            return self.bool_(v, path)
        if isinstance(default, int):
            return self.check(v, path, Int())
        if isinstance(default, float):
            return self.num_(v, path)
        for kind, what in ((str, "a string"), (list, "a list"), (dict, "a table")):
            if isinstance(default, kind) and not isinstance(v, kind):
                raise self.fail(path, what, v)
        return v
