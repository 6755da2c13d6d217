"""Physical layer: interface options as data, waveform synthesis, capture analysis."""
from rig.physical.charformat import CharFormat
from rig.physical.options import CURRENT_LOOP, OPTICAL, OPTIONS, VOLTAGE, InterfaceOption, Limit, get_option

__all__ = ["CharFormat", "CURRENT_LOOP", "OPTICAL", "OPTIONS", "VOLTAGE", "InterfaceOption", "Limit",
           "get_option"]
