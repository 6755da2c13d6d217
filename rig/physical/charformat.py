"""Asynchronous start-stop character formats: "7E1" (IEC 62056-21 §5), "8N1", "7O2", ..."""
from __future__ import annotations

import re
from dataclasses import dataclass

PARITY_CODES = {"N": 0, "O": 1, "E": 2, "M": 3, "S": 4}
PARITY_NAMES = {"N": "none", "O": "odd", "E": "even", "M": "mark", "S": "space"}


@dataclass(frozen=True)
class CharFormat:
    """A character format: data bits, parity (N, O, E, M, S) and stop bits; `str()` gives "7E1"."""
    data_bits: int = 7
    parity: str = "E"       # N, O, E, M (always 1), S (always 0)
    stop_bits: int = 1

    @classmethod
    def parse(cls, text: "str | CharFormat") -> "CharFormat":
        """The format "7E1", "8N1", ... names (a CharFormat as it is); ValueError naming what is wrong."""
        if isinstance(text, CharFormat):
            return text
        m = re.fullmatch(r"\s*([5-9])([NOEMSnoems])([12])\s*", str(text))
        if not m:
            raise ValueError(f"character format {text!r}: expected data bits 5-9, parity N/O/E/M/S, "
                             "stop bits 1-2, e.g. 7E1 or 8N1")
        return cls(int(m.group(1)), m.group(2).upper(), int(m.group(3)))

    def __str__(self) -> str:
        return f"{self.data_bits}{self.parity}{self.stop_bits}"

    @property
    def parity_code(self) -> int:
        """The parity as the decoder's code (PARITY_CODES)."""
        return PARITY_CODES[self.parity]

    @property
    def has_parity(self) -> bool:
        """Whether a parity bit is sent."""
        return self.parity != "N"

    @property
    def frame_bits(self) -> int:
        """Bits in one character: start + data + parity + stop."""
        return 1 + self.data_bits + (1 if self.has_parity else 0) + self.stop_bits

    def parity_bit(self, value: int) -> int:
        """The parity bit sent with `value` (0 when there is none)."""
        ones = bin(value & ((1 << self.data_bits) - 1)).count("1")
        return {"N": 0, "E": ones & 1, "O": (ones & 1) ^ 1, "M": 1, "S": 0}[self.parity]

    def bits(self, value: int, bad_parity: bool = False, bad_stop: bool = False) -> list[int]:
        """Line bits (1 = mark) of one character, start bit first, data LSB first."""
        out = [0] + [(value >> i) & 1 for i in range(self.data_bits)]
        if self.has_parity:
            out.append(self.parity_bit(value) ^ (1 if bad_parity else 0))
        out += [0 if bad_stop else 1] * self.stop_bits
        return out
