"""Link layer: serial ports by any pyserial URL, and the virtual line with its faults."""
from rig.link.faults import KINDS as FAULT_KINDS
from rig.link.faults import Fault, FaultError, sample_char
from rig.link.port import OS_LATENCY_NS, Port, PortError, char_time_ns, is_virtual
from rig.link.virtual import VirtualLine, WireChar

__all__ = ["FAULT_KINDS", "OS_LATENCY_NS", "Fault", "FaultError", "Port", "PortError", "VirtualLine", "WireChar",
           "char_time_ns", "is_virtual", "sample_char"]
