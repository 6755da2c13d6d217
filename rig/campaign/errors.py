"""The campaign's errors, apart from what raises them, so the plan types, the case registry, the
bench and the cases can each import them without importing each other."""
from __future__ import annotations

from rig.config_check import FileError
from rig.errors import RigError


class PlanError(FileError):
    """A plan that cannot be run: `file:line: key: what is wrong (expected ...)` (rig.config_check)."""


class BenchUnsupported(RigError):
    """The bench cannot do what a case asks (e.g. inject faults on real hardware)."""


class StepSkipped(Exception):
    """The step cannot run here and now, through no fault of the DUT or the bench (no operator at a
    real HHU in a run nobody watches): the runner ends its case there, skipped, with the reason.
    Not an error: the runner's signal, never shown as a failure."""
