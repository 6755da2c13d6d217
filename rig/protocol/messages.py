"""The messages of IEC 62055-52 §6.4 as IEC 62056-21 frames (FACTS.md §3).

Bytes in, objects out: every message has to_bytes(), and message_from_frame() builds one from a
frame of the framing engine. A field that breaks the syntax raises ProtocolError naming the field
and the value. Field lengths are checked against a profile's [limits] (IEC 62056-21 §6.3, with
their sources): the `limits` given, by default the shipped default profile's (default_limits()).
"""
from __future__ import annotations

import functools
import re
from dataclasses import KW_ONLY, InitVar, dataclass
from typing import ClassVar

from rig import _framing
from rig.errors import RigError
from rig.profile import Limits, Timing, load_profile

EXCLUDED = _framing.EXCLUDED.decode()  # "!()*/": IEC 62056-21 §6.3, not inside a data set's fields


@functools.cache
def default_limits() -> Limits:
    """The shipped default profile's [limits]: what fields are checked against when no profile's
    limits are given."""
    return load_profile().limits


class ProtocolError(RigError, ValueError):
    """A message field or frame that breaks the IEC 62056-21 syntax."""

    def __init__(self, field: str, value, reason: str):
        self.field, self.value, self.reason = field, value, reason
        super().__init__(f"{field} {value!r}: {reason}")


def _check_text(field: str, value, maximum: int, *, allowed=None, excluded: str = "") -> str:
    if not isinstance(value, str):
        raise ProtocolError(field, value, "expected a string")
    if len(value) > maximum:
        raise ProtocolError(field, value, f"longer than {maximum} characters ({len(value)})")
    for ch in value:
        if not (" " <= ch <= "~"):
            raise ProtocolError(field, value, f"character {ch!r} is not printable ISO/IEC 646")
        if ch in excluded:
            raise ProtocolError(field, value, f"excluded character {ch!r}")
        if allowed is not None and not allowed(ch):
            raise ProtocolError(field, value, f"character {ch!r} not allowed here")
    return value


def _alnum_space(ch: str) -> bool:
    return ch == " " or ch.isascii() and ch.isalnum()


@dataclass(frozen=True, slots=True)
class DataSet:
    """address(value*unit): the unit part is absent when unit is None. Checked against `limits`
    (a profile's; default: default_limits()), the value against the programming-mode maximum."""
    address: str = ""
    value: str = ""
    unit: str | None = None
    _: KW_ONLY
    limits: InitVar[Limits | None] = None

    def __post_init__(self, limits: Limits | None):
        lim = limits or default_limits()
        _check_text("data-set address", self.address, lim.address_max, excluded=EXCLUDED)
        _check_text("data-set value", self.value, lim.value_max_programming, excluded=EXCLUDED)
        if self.unit is not None:
            _check_text("data-set unit", self.unit, lim.unit_max, excluded=EXCLUDED)

    def __str__(self) -> str:
        unit = "" if self.unit is None else "*" + self.unit
        return f"{self.address}({self.value}{unit})"


_FIELD = "[" + "".join(re.escape(chr(c)) for c in range(0x20, 0x7F) if chr(c) not in EXCLUDED) + "]"  # printable
_TAIL_RE = re.compile(r"[\r\n]*(?:![\r\n]*)?")
_new, _set = object.__new__, object.__setattr__


@functools.cache
def _dataset_re(limits: Limits) -> re.Pattern:
    """One data set with fields no longer than the limits allow (as DataSet checks them)."""
    a, v, u = limits.address_max, limits.value_max_programming, limits.unit_max
    return re.compile(rf"[\r\n]*({_FIELD}{{0,{a}}})\(({_FIELD}{{0,{v}}})(?:\*({_FIELD}{{0,{u}}}))?\)")


@functools.cache
def _default_dataset_re() -> re.Pattern:
    return _dataset_re(default_limits())


def parse_datasets(text: str, limits: Limits | None = None) -> tuple[DataSet, ...]:
    """Split a data field into data sets; line ends and a closing '!' between sets are allowed.
    Fields are checked against `limits` (default: default_limits())."""
    out, pos, match = [], 0, (_default_dataset_re() if limits is None else _dataset_re(limits)).match
    while (m := match(text, pos)) is not None:
        ds = _new(DataSet)  # the regex checked every field as __post_init__ would
        _set(ds, "address", m[1])
        _set(ds, "value", m[2])
        _set(ds, "unit", m[3])
        out.append(ds)
        pos = m.end()
    if _TAIL_RE.fullmatch(text, pos) is None:
        _explain_bad_data(text, pos, limits)
    return tuple(out)


def _explain_bad_data(text: str, pos: int, limits: Limits | None) -> None:
    """Raise the ProtocolError that says what is wrong with the data field from pos on."""
    rest = text[pos:].lstrip("\r\n")
    at = len(text) - len(rest)
    if rest.startswith("!"):
        raise ProtocolError("data", text, f"characters after the end mark '!' at {at}")
    lp, rp = rest.find("("), rest.find(")")
    if lp < 0 or rp < lp:
        raise ProtocolError("data", text, f"data set at {at} has no '(...)'")
    star = rest.find("*", lp, rp)
    DataSet(rest[:lp], rest[lp + 1:star if star >= 0 else rp], None if star < 0 else rest[star + 1:rp],
            limits=limits)
    raise ProtocolError("data", text, f"bad data set at {at}")


def _show(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


class Message:
    """Base of every message; subclasses are frozen dataclasses."""
    __slots__ = ()
    kind: ClassVar[str]

    def to_bytes(self, parity: bool = False) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class IDRequest(Message):
    """/ ? [device address] ! CR LF. An empty address asks any device. `limits`: as DataSet's."""
    device_address: str = ""
    kind: ClassVar[str] = "request"
    _: KW_ONLY
    limits: InitVar[Limits | None] = None

    def __post_init__(self, limits: Limits | None):
        _check_text("device address", self.device_address, (limits or default_limits()).device_address_max,
                    allowed=_alnum_space)

    def __str__(self) -> str:
        return f"IDRequest /?{self.device_address}!"

    def to_bytes(self, parity: bool = False) -> bytes:
        return _framing.encode_request(self.device_address, parity)


@dataclass(frozen=True, slots=True)
class IDResponse(Message):
    """/ XXX Z [\\W] identification CR LF. `limits`: as DataSet's."""
    manufacturer: str
    baud_char: str
    identification: str
    escape: str | None = None
    kind: ClassVar[str] = "identification"
    _: KW_ONLY
    limits: InitVar[Limits | None] = None

    def __post_init__(self, limits: Limits | None):
        m = self.manufacturer
        if not (isinstance(m, str) and len(m) == 3 and m.isascii() and m.isalpha()):
            raise ProtocolError("manufacturer", m, "expected three letters")
        b = self.baud_char
        if not (isinstance(b, str) and len(b) == 1 and b.isascii() and (b.isdigit() or b.isupper())):
            raise ProtocolError("baud character", b, "expected one digit or capital letter")
        if self.escape is not None and not (len(self.escape) == 1 and self.escape.isdigit()):
            raise ProtocolError("escape", self.escape, "expected one digit after '\\'")
        _check_text("identification", self.identification, (limits or default_limits()).identification_max,
                    excluded="/!")

    @property
    def fast_reaction(self) -> bool:
        """A lower-case third manufacturer letter: the server may answer after 20 ms."""
        return Timing.fast_reaction(self.manufacturer)

    def __str__(self) -> str:
        esc = "" if self.escape is None else "\\" + self.escape
        return f"IDResponse /{self.manufacturer}{self.baud_char}{esc}{self.identification}"

    def to_bytes(self, parity: bool = False) -> bytes:
        return _framing.encode_identification(self.manufacturer, self.baud_char,
                                              self.identification, self.escape, parity)


@dataclass(frozen=True, slots=True)
class OptionSelect(Message):
    """ACK V Z Y CR LF: protocol control V, baud character Z, mode Y (0 readout, 1 programming)."""
    protocol: str = "0"
    baud_char: str = "0"
    mode: str = "1"
    kind: ClassVar[str] = "option_select"

    def __post_init__(self):
        for name, v in (("protocol", self.protocol), ("baud character", self.baud_char),
                        ("mode", self.mode)):
            if not (isinstance(v, str) and len(v) == 1 and v.isdigit() and v.isascii()):
                raise ProtocolError(name, v, "expected one digit")

    def __str__(self) -> str:
        return f"OptionSelect protocol {self.protocol} baud {self.baud_char} mode {self.mode}"

    def to_bytes(self, parity: bool = False) -> bytes:
        return _framing.encode_option_select(self.protocol, self.baud_char, self.mode, parity)


@dataclass(frozen=True, slots=True)
class Ack(Message):
    kind: ClassVar[str] = "ack"

    def __str__(self) -> str:
        return "ACK"

    def to_bytes(self, parity: bool = False) -> bytes:
        return _framing.encode_ack(parity)


@dataclass(frozen=True, slots=True)
class Nak(Message):
    kind: ClassVar[str] = "nak"

    def __str__(self) -> str:
        return "NAK"

    def to_bytes(self, parity: bool = False) -> bytes:
        return _framing.encode_nak(parity)


def _check_data(field: str, data: str) -> str:
    if not isinstance(data, str):
        raise ProtocolError(field, data, "expected a string")
    for ch in data:
        if not (" " <= ch <= "~" or ch in "\r\n"):
            raise ProtocolError(field, data, f"control character {ch!r}")
    return data


@dataclass(frozen=True, slots=True)
class Command(Message):
    """SOH C D [STX data] ETX|EOT BCC. data None: no STX (as in the break, SOH B0 ETX)."""
    letter: str
    command_type: str
    data: str | None = None
    partial: bool = False
    kind: ClassVar[str] = "command"
    LETTER: ClassVar[str | None] = None

    def __post_init__(self):
        if self.LETTER is not None and self.letter != self.LETTER:
            raise ProtocolError("command letter", self.letter, f"{type(self).__name__} is {self.LETTER!r}")
        if not (isinstance(self.letter, str) and len(self.letter) == 1 and "A" <= self.letter <= "Z"):
            raise ProtocolError("command letter", self.letter, "expected one capital letter")
        ct = self.command_type
        if not (isinstance(ct, str) and len(ct) == 1 and "0" <= ct <= "9"):
            raise ProtocolError("command type", ct, "expected one digit")
        if self.data is not None:
            _check_data("command data", self.data)

    @property
    def datasets(self) -> tuple[DataSet, ...]:
        """The data sets of the data field, within default_limits() (a profile's: parse_datasets)."""
        return parse_datasets(self.data) if self.data else ()

    def __str__(self) -> str:
        data = "" if self.data is None else " " + _show(self.data)
        return f"{type(self).__name__} {self.letter}{self.command_type}{data}{' (partial)' if self.partial else ''}"

    def to_bytes(self, parity: bool = False) -> bytes:
        return _framing.encode_command(self.letter, self.command_type, self.data, self.partial, parity)


def _one_dataset(cls, dataset: DataSet | str, command_type: str, partial: bool, limits: Limits | None):
    if isinstance(dataset, str):
        dataset = DataSet(dataset, limits=limits)
    return cls(cls.LETTER, command_type, str(dataset), partial)


@dataclass(frozen=True, slots=True)
class ReadCommand(Command):
    """R D: read the data set(s) named (type 1 ASCII, 2 formatted, 3/4 partial blocks)."""
    LETTER: ClassVar[str] = "R"

    @classmethod
    def of(cls, dataset: DataSet | str, command_type: str = "1", partial: bool = False, *,
           limits: Limits | None = None):
        """A read of one data set (or of the data-set address given)."""
        return _one_dataset(cls, dataset, command_type, partial, limits)


@dataclass(frozen=True, slots=True)
class WriteCommand(Command):
    """W D: write the data set(s) given."""
    LETTER: ClassVar[str] = "W"

    @classmethod
    def of(cls, dataset: DataSet, command_type: str = "1", partial: bool = False):
        """A write of one data set."""
        return _one_dataset(cls, dataset, command_type, partial, None)


@dataclass(frozen=True, slots=True)
class BreakCommand(Command):
    """B0: end of session (no data field)."""
    letter: str = "B"
    command_type: str = "0"
    LETTER: ClassVar[str] = "B"


@dataclass(frozen=True, slots=True)
class PasswordCommand(Command):
    """P D (password)."""
    LETTER: ClassVar[str] = "P"


@dataclass(frozen=True, slots=True)
class ExecuteCommand(Command):
    """E D: execute."""
    LETTER: ClassVar[str] = "E"


@dataclass(frozen=True, slots=True)
class UndefinedCommand(Command):
    """A command letter IEC 62056-21 does not define: the server's undefined-command processing."""

    def __post_init__(self):
        Command.__post_init__(self)
        if self.letter in COMMANDS:
            raise ProtocolError("command letter", self.letter, "is a defined command")


COMMANDS: dict[str, type[Command]] = {
    "R": ReadCommand, "W": WriteCommand, "B": BreakCommand, "P": PasswordCommand, "E": ExecuteCommand,
}


@dataclass(frozen=True, slots=True)
class Data(Message):
    """STX data ETX|EOT BCC: the answer carrying data sets (EOT: a partial block, more follow).

    An error answer is STX (error text) ETX BCC: one data set with no address."""
    data: str = ""
    partial: bool = False
    kind: ClassVar[str] = "data"

    def __post_init__(self):
        _check_data("data", self.data)

    @classmethod
    def of(cls, *datasets: DataSet, partial: bool = False) -> "Data":
        return cls("".join(map(str, datasets)), partial)

    @classmethod
    def error(cls, text: str, limits: Limits | None = None) -> Data:
        """The error answer (text), text within limits.error_text_max (default: default_limits())."""
        _check_text("error text", text, (limits or default_limits()).error_text_max, excluded=EXCLUDED)
        return cls(f"({text})")

    @property
    def datasets(self) -> tuple[DataSet, ...]:
        """The data sets of the data field, within default_limits() (a profile's: parse_datasets)."""
        return parse_datasets(self.data)

    @property
    def error_text(self) -> str | None:
        """The text of an error answer shape, (text) with no address; None otherwise.

        Only the requester knows whether it asked for a bare value, so this is a shape test."""
        d = self.data
        if d.startswith("(") and d.endswith(")") and d.count("(") == 1 and "*" not in d:
            return d[1:-1]
        return None

    def __str__(self) -> str:
        return f"Data {_show(self.data)}{' (partial)' if self.partial else ''}"

    def to_bytes(self, parity: bool = False, bcc: bool = True) -> bytes:
        return _framing.encode_data(self.data, self.partial, parity, bcc)


_ACK, _NAK = Ack(), Nak()
_K_REQUEST, _K_IDENT, _K_OPTION, _K_ACK, _K_NAK, _K_COMMAND, _K_DATA = range(1, 8)


def message_from_frame(frame, limits: Limits | None = None) -> Message:
    """The message a frame carries; ProtocolError if the frame has errors or a bad field (field
    lengths against `limits`, default: default_limits())."""
    if frame.errors or frame.kind_id == 0:
        raise ProtocolError(f"{frame.kind} frame at offset {frame.start}", frame.data,
                            "; ".join(frame.errors_list()) or "not a frame")
    k = frame.kind_id
    raw = frame.data
    if k == _K_DATA:
        bcc = raw[-2] in (3, 4)  # a data frame ends in ETX|EOT BCC, or ETX|EOT without BCC
        end = -2 if bcc else -1
        return Data(raw[1:end].decode("ascii"), raw[end] == 4)
    if k == _K_ACK:
        return _ACK
    if k == _K_NAK:
        return _NAK
    text = raw.decode("ascii")
    if k == _K_COMMAND:
        letter, ctype = text[1], text[2]
        body = text[4:-2] if text[3] == "\x02" else None
        cls = COMMANDS.get(letter, UndefinedCommand)
        return cls(letter, ctype, body, raw[-2] == 4)
    if k == _K_REQUEST:
        return IDRequest(text[2:-3], limits=limits)
    if k == _K_IDENT:
        if text[5] == "\\":
            return IDResponse(text[1:4], text[4], text[7:-2], text[6], limits=limits)
        return IDResponse(text[1:4], text[4], text[5:-2], limits=limits)
    if k == _K_OPTION:
        return OptionSelect(text[1], text[2], text[3])
    raise ProtocolError("frame kind", frame.kind, "unknown")  # pragma: no cover


def messages_from_frames(frames: list, limits: Limits | None = None) -> list[Message]:
    """message_from_frame() of each frame; data, ACK and NAK frames take a fast path in C."""
    slow = message_from_frame if limits is None else functools.partial(message_from_frame, limits=limits)
    return _framing.to_messages(frames, Data, _ACK, _NAK, slow)


def parse(data, parity: str = "none", *, limits: Limits | None = None, **framer_options) -> list[Message]:
    """All messages in a byte string; ProtocolError at the first bad frame."""
    fr = _framing.Framer(parity, **framer_options)
    return messages_from_frames(fr.feed(data) + fr.flush(), limits)
