"""Independent peers for tests: a meter and an HHU written from FACTS.md alone.

They import nothing from `rig` (not its framing, not its roles): a bug shared by the rig's client
and its emulator cannot hide here. `wire.py` is their own 7E1 parity, BCC and frame reader;
`meter.py` a meter, `hhu.py` an HHU, each able to misbehave on purpose.
"""
