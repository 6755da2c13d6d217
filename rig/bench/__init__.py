"""The bench: instruments driven over pyvisa, by capability (scope, generator, supply, meter).

An instrument model is data: one YAML file per model in ``instruments/`` (:mod:`rig.bench.models`)
saying how it is commanded (SCPI templates for a fixed vocabulary), what its SCPI command tree is
(served by the virtual instrument, :mod:`rig.bench.scpi`; the templates are checked against it) and
how it is simulated (pyvisa-sim).
The drivers (:mod:`rig.bench.drivers`) speak only the vocabulary; the DUT's electrical maximums are
enforced before anything is sent (:mod:`rig.bench.safety`); a bench is configured in TOML
(:mod:`rig.bench.config`).  This package only re-exports: its modules import one another by their
own names, never the package, so none waits on it half-loaded.
"""
from rig.bench.config import BenchConfig, ConfigError, load_bench
from rig.bench.drivers import (
    Generator,
    Instrument,
    InstrumentError,
    Meter,
    Scope,
    Supply,
    open_instrument,
)
from rig.bench.models import (
    CAPABILITIES,
    VOCABULARY,
    CommandSpec,
    InstrumentModel,
    ModelError,
    load_model,
    load_models,
)
from rig.bench.safety import OUTPUTS, DutLimits, SafetyError

__all__ = ["CAPABILITIES", "OUTPUTS", "VOCABULARY", "BenchConfig", "CommandSpec", "ConfigError", "DutLimits",
           "Generator", "Instrument", "InstrumentError", "InstrumentModel", "Meter", "ModelError", "SafetyError",
           "Scope", "Supply", "load_bench", "load_model", "load_models", "open_instrument"]
