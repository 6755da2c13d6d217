"""rig: hardware-in-the-loop test rig controller for the STS two-way virtual token carrier (IEC 62055-52)."""

__version__ = "0.1.0"
