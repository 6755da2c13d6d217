"""The messages of IEC 62055-52 §6.4 as IEC 62056-21 frames (FACTS.md §3).

Bytes in, objects out: every message has to_bytes(), and message_from_frame() builds one from a
frame of the framing engine. A field that breaks the syntax raises ProtocolError naming the field
and the value. Field limits are those of IEC 62056-21 §6.3; a profile may be stricter.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from rig import _framing
from rig.errors import RigError

# IEC 62056-21 §6.3 field limits (the profile repeats them with their sources).
DEVICE_ADDRESS_MAX = 32
IDENTIFICATION_MAX = 16
ADDRESS_MAX = 16
VALUE_MAX = 128          # 32 in readout, 128 in programming mode
UNIT_MAX = 16
ERROR_TEXT_MAX = 32
EXCLUDED = "()*/!"


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
    """address(value*unit): the unit part is absent when unit is None."""
    address: str = ""
    value: str = ""
    unit: str | None = None

    def __post_init__(self):
        _check_text("data-set address", self.address, ADDRESS_MAX, excluded=EXCLUDED)
        _check_text("data-set value", self.value, VALUE_MAX, excluded=EXCLUDED)
        if self.unit is not None:
            _check_text("data-set unit", self.unit, UNIT_MAX, excluded=EXCLUDED)

    def __str__(self) -> str:
        unit = "" if self.unit is None else "*" + self.unit
        return f"{self.address}({self.value}{unit})"


_FIELD = "[ \"-'+-.0-~]"  # printable ISO/IEC 646 without ( ) * / !
_DATASET_RE = re.compile(
    rf"[\r\n]*({_FIELD}{{0,{ADDRESS_MAX}}})\(({_FIELD}{{0,{VALUE_MAX}}})(?:\*({_FIELD}{{0,{UNIT_MAX}}}))?\)")
_TAIL_RE = re.compile(r"[\r\n]*(?:![\r\n]*)?")
_new, _set = object.__new__, object.__setattr__


def parse_datasets(text: str) -> tuple[DataSet, ...]:
    """Split a data field into data sets; line ends and a closing '!' between sets are allowed."""
    out, pos, match = [], 0, _DATASET_RE.match
    while (m := match(text, pos)) is not None:
        ds = _new(DataSet)  # the regex checked every field as __post_init__ would
        _set(ds, "address", m[1])
        _set(ds, "value", m[2])
        _set(ds, "unit", m[3])
        out.append(ds)
        pos = m.end()
    if _TAIL_RE.fullmatch(text, pos) is None:
        _explain_bad_data(text, pos)
    return tuple(out)


def _explain_bad_data(text: str, pos: int) -> None:
    """Raise the ProtocolError that says what is wrong with the data field from pos on."""
    rest = text[pos:].lstrip("\r\n")
    at = len(text) - len(rest)
    if rest.startswith("!"):
        raise ProtocolError("data", text, f"characters after the end mark '!' at {at}")
    lp, rp = rest.find("("), rest.find(")")
    if lp < 0 or rp < lp:
        raise ProtocolError("data", text, f"data set at {at} has no '(...)'")
    star = rest.find("*", lp, rp)
    DataSet(rest[:lp], rest[lp + 1:star if star >= 0 else rp], None if star < 0 else rest[star + 1:rp])
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
    """/ ? [device address] ! CR LF. An empty address asks any device."""
    device_address: str = ""
    kind: ClassVar[str] = "request"

    def __post_init__(self):
        _check_text("device address", self.device_address, DEVICE_ADDRESS_MAX, allowed=_alnum_space)

    def __str__(self) -> str:
        return f"IDRequest /?{self.device_address}!"

    def to_bytes(self, parity: bool = False) -> bytes:
        return _framing.encode_request(self.device_address, parity)


@dataclass(frozen=True, slots=True)
class IDResponse(Message):
    """/ XXX Z [\\W] identification CR LF."""
    manufacturer: str
    baud_char: str
    identification: str
    escape: str | None = None
    kind: ClassVar[str] = "identification"

    def __post_init__(self):
        m = self.manufacturer
        if not (isinstance(m, str) and len(m) == 3 and m.isascii() and m.isalpha()):
            raise ProtocolError("manufacturer", m, "expected three letters")
        b = self.baud_char
        if not (isinstance(b, str) and len(b) == 1 and b.isascii() and (b.isdigit() or b.isupper())):
            raise ProtocolError("baud character", b, "expected one digit or capital letter")
        if self.escape is not None and not (len(self.escape) == 1 and self.escape.isdigit()):
            raise ProtocolError("escape", self.escape, "expected one digit after '\\'")
        _check_text("identification", self.identification, IDENTIFICATION_MAX, excluded="/!")

    @property
    def fast_reaction(self) -> bool:
        """A lower-case third manufacturer letter: the server may answer after 20 ms."""
        return self.manufacturer[2].islower()

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
        return parse_datasets(self.data) if self.data else ()

    def __str__(self) -> str:
        data = "" if self.data is None else " " + _show(self.data)
        return f"{type(self).__name__} {self.letter}{self.command_type}{data}{' (partial)' if self.partial else ''}"

    def to_bytes(self, parity: bool = False) -> bytes:
        return _framing.encode_command(self.letter, self.command_type, self.data, self.partial, parity)


def _one_dataset(cls, dataset: DataSet | str, command_type: str, partial: bool):
    if isinstance(dataset, str):
        dataset = DataSet(dataset)
    return cls(cls.LETTER, command_type, str(dataset), partial)


@dataclass(frozen=True, slots=True)
class ReadCommand(Command):
    """R D: read the data set(s) named (type 1 ASCII, 2 formatted, 3/4 partial blocks)."""
    LETTER: ClassVar[str] = "R"

    @classmethod
    def of(cls, dataset: DataSet | str, command_type: str = "1", partial: bool = False):
        return _one_dataset(cls, dataset, command_type, partial)


@dataclass(frozen=True, slots=True)
class WriteCommand(Command):
    """W D: write the data set(s) given."""
    LETTER: ClassVar[str] = "W"

    @classmethod
    def of(cls, dataset: DataSet, command_type: str = "1", partial: bool = False):
        return _one_dataset(cls, dataset, command_type, partial)


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
    def error(cls, text: str) -> "Data":
        _check_text("error text", text, ERROR_TEXT_MAX, excluded=EXCLUDED)
        return cls(f"({text})")

    @property
    def datasets(self) -> tuple[DataSet, ...]:
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


def message_from_frame(frame) -> Message:
    """The message a frame carries; ProtocolError if the frame has errors or a bad field."""
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
        return IDRequest(text[2:-3])
    if k == _K_IDENT:
        if text[5] == "\\":
            return IDResponse(text[1:4], text[4], text[7:-2], text[6])
        return IDResponse(text[1:4], text[4], text[5:-2])
    if k == _K_OPTION:
        return OptionSelect(text[1], text[2], text[3])
    raise ProtocolError("frame kind", frame.kind, "unknown")  # pragma: no cover


def messages_from_frames(frames: list) -> list[Message]:
    """message_from_frame() of each frame; data, ACK and NAK frames take a fast path in C."""
    return _framing.to_messages(frames, Data, _ACK, _NAK, message_from_frame)


def parse(data, parity: str = "none", **framer_options) -> list[Message]:
    """All messages in a byte string; ProtocolError at the first bad frame."""
    fr = _framing.Framer(parity, **framer_options)
    return messages_from_frames(fr.feed(data) + fr.flush())
