"""The case library, each case named after the clause it checks (the registry they enter is
rig.campaign.registry): importing this package registers them all in LIBRARY."""
# in this order: LIBRARY's order is `rig cases`' and docs/plan-format.md's
from rig.campaign.cases import conformance, electrical, stress, faults, benchmark, hhu  # noqa: F401,I001
from rig.campaign.registry import (LIBRARY, STAND_IN, Case, RecordedStep, StepContext, case,  # noqa: F401
                                   needs, params, summary, virtual_line, virtual_line_unless)
