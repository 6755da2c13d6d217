"""The embedded default: the meter emulator on a virtual line, for when there is no hardware.

    with EmbeddedMeter() as meter:          # a virtual line and a meter server on its meter side
        hhu = Client(meter.hhu_port)        # a real tty path, opened like hardware
"""
from __future__ import annotations

from rig.link import VirtualLine
from rig.profile import Profile, load_profile


class EmbeddedMeter:
    """A VirtualLine with a MeterServer running on its meter side, in a thread."""

    def __init__(self, profile: Profile | None = None, *, faults=(), emulator=None, log=None):
        from rig.server import MeterServer  # roles import the link, not the other way round

        self.profile = profile or load_profile()
        self.line = VirtualLine(faults=faults)
        self.server = MeterServer(self.line.meter_port, self.profile, emulator=emulator, log=log)

    @property
    def hhu_port(self) -> str:
        return self.line.hhu_port

    @property
    def emulator(self):
        return self.server.emulator

    def start(self) -> "EmbeddedMeter":
        self.line.start()
        self.server.start()
        return self

    def close(self) -> None:
        self.server.stop()
        self.line.close()

    def __enter__(self) -> "EmbeddedMeter":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
