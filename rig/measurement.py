"""A measured value with its unit and limits; the verdict is computed from them, never written by hand.

The one home of the verdict vocabulary (what a measurement, a step, a case and a run can say, which of
them let `rig run` exit 0, how several combine into one) and of how a value is shown with its unit
and limits in every report (terminal, plain text, HTML, JUnit, `rig decode`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

# --- verdicts ------------------------------------------------------------------------------------
PASS = "pass"              # the value is within its limits
FAIL = "fail"              # the value is outside its limits, or could not be measured against them
INFO = "info"              # a value recorded with no requirement to judge it against: nothing verified
ERROR = "error"            # a step that could not be carried out (the bench or the DUT broke the procedure)
SKIPPED = "skipped"        # not run: a stop condition ended its case first; as a case's verdict, nothing
                           # of it could run here (no operator at a real HHU: rig.campaign.bench.StepSkipped)
INCOMPLETE = "incomplete"  # a run (or a clause) whose cases did not all finish
STOPPED = "stopped"        # what a run that was stopped (Ctrl-C, stop_on_failure) answers instead

VERDICTS = (PASS, FAIL, ERROR, INFO)   # the verdicts of finished work, in the order reports count them
OK_VERDICTS = (PASS, INFO)             # exit 0: nothing failed (info: values recorded, nothing to judge)


def is_ok(verdict: str | None) -> bool:
    """Nothing failed: pass, or info (values recorded, nothing to judge). A run with it exits 0."""
    return verdict in OK_VERDICTS


def combine(verdicts) -> str:
    """One verdict over several (a step's measurements, a case's steps, a run's cases): error beats
    fail beats pass beats info; nothing at all to judge (or only skipped work) is pass."""
    v = set(verdicts)
    for worst in (ERROR, FAIL, PASS, INFO):
        if worst in v:
            return worst
    return PASS


def combine_finished(verdicts) -> str:
    """The verdict of a group of cases (a clause): combined when each one has a verdict of finished
    work or was skipped, else incomplete."""
    verdicts = list(verdicts)
    if all(v in (*VERDICTS, SKIPPED) for v in verdicts):
        return combine(verdicts)
    return INCOMPLETE


# --- how values are shown ------------------------------------------------------------------------
def format_number(v) -> str:
    """A number as every report shows it: 6 significant digits, integers whole, booleans 0/1,
    "n/a" for a value that was not measured (None), "NaN" for one that could not be."""
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "NaN" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def format_value(v, unit: str = "") -> str:
    """A value with its unit: "0.025 s", "n/a V", "7"."""
    return f"{format_number(v)} {unit or ''}".rstrip()


def format_limits(low, high) -> str:
    """Inclusive limits as "[low .. high]", a side without a limit left empty: "[ .. 3]"."""
    lo = "" if low is None else format_number(low)
    hi = "" if high is None else format_number(high)
    return f"[{lo} .. {hi}]"


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
        """Not failed (pass, or info: nothing to judge)."""
        return self.verdict != FAIL

    def as_dict(self) -> dict:
        """The fields as a dict (JSON, the run summary)."""
        return {"name": self.name, "value": self.value, "unit": self.unit, "low": self.low,
                "high": self.high, "verdict": self.verdict, "basis": self.basis}

    def value_text(self) -> str:
        """The value with its unit: "0.025 s"."""
        return format_value(self.value, self.unit)

    def limits_text(self) -> str:
        """The limits: "[0.02 .. 1.5]", "" when there is none."""
        return "" if self.low is None and self.high is None else format_limits(self.low, self.high)

    def describe(self) -> str:
        """Value, limits, verdict and basis on one line: "0.025 s [0.02 .. 1.5] pass (IEC 62056-21 §6.3.14)"."""
        text = " ".join(t for t in (self.value_text(), self.limits_text(), self.verdict) if t)
        return f"{text} ({self.basis})" if self.basis else text

    def __str__(self) -> str:
        """One row of a table of measurements (name, value, unit, limits, verdict in columns)."""
        return (f"{self.name:<22} {format_number(self.value):>12} {self.unit:<8} "
                f"{format_limits(self.low, self.high):<22} {self.verdict}")
