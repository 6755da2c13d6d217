"""A measured value with its unit and limits; the verdict is computed from them, never written by hand."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

PASS, FAIL, INFO = "pass", "fail", "info"


@dataclass(frozen=True)
class Measurement:
    """(name, value, unit, low limit, high limit, verdict).

    ``low``/``high`` are inclusive limits; ``None`` means no limit on that side.  With no limit at all
    the verdict is ``"info"``.  A value that could not be measured (``None`` or NaN) fails any limit.
    ``basis`` says where the limits come from ("IEC 62056-21 §4", "assumed", ...).
    """

    name: str
    value: float | int | None
    unit: str = ""
    low: float | None = None
    high: float | None = None
    basis: str = ""
    verdict: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "verdict", judge(self.value, self.low, self.high))

    @property
    def passed(self) -> bool:
        return self.verdict != FAIL

    def as_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "unit": self.unit, "low": self.low,
                "high": self.high, "verdict": self.verdict, "basis": self.basis}

    def __str__(self) -> str:
        lim = f"[{'' if self.low is None else f'{self.low:g}'} .. {'' if self.high is None else f'{self.high:g}'}]"
        val = "n/a" if self.value is None else f"{self.value:.6g}"
        return f"{self.name:<22} {val:>12} {self.unit:<8} {lim:<22} {self.verdict}"


def judge(value, low, high) -> str:
    """The verdict for ``value`` against inclusive limits ``low``/``high`` (either may be None)."""
    if low is None and high is None:
        return INFO
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return FAIL
    if low is not None and value < low:
        return FAIL
    if high is not None and value > high:
        return FAIL
    return PASS
