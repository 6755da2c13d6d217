"""The bench: instruments driven over pyvisa, by capability (scope, generator, supply, meter).

An instrument model is data: one YAML file per model in ``instruments/`` (:mod:`rig.bench.models`)
saying how it is commanded (SCPI templates for a fixed vocabulary), what its SCPI command tree is
(served by the virtual instrument, :mod:`rig.bench.scpi`; the templates are checked against it) and
how it is simulated (pyvisa-sim).
The drivers (:mod:`rig.bench.drivers`) speak only the vocabulary; the DUT's electrical maximums are
enforced before anything is sent (:mod:`rig.bench.safety`); a bench is configured in TOML
(:mod:`rig.bench.config`).  The driver modules are imported on first use (they import pyvisa).
"""
from rig.bench.models import (
    CAPABILITIES,
    VOCABULARY,
    CommandSpec,
    InstrumentModel,
    ModelError,
    load_model,
    load_models,
)

_LAZY = {
    "Scope": "drivers", "Generator": "drivers", "Supply": "drivers", "Meter": "drivers",
    "Instrument": "drivers", "InstrumentError": "drivers", "open_instrument": "drivers",
    "DutLimits": "safety", "SafetyError": "safety", "OUTPUTS": "safety",
    "BenchConfig": "config", "ConfigError": "config", "load_bench": "config",
}

__all__ = ["CAPABILITIES", "VOCABULARY", "CommandSpec", "InstrumentModel", "ModelError", "load_model",
           "load_models", *_LAZY]


def __getattr__(name):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'rig.bench' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"rig.bench.{mod}"), name)
