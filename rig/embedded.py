"""The embedded default: the meter emulator on a virtual line, for when there is no hardware.

    with EmbeddedMeter() as meter:          # a virtual line and a meter server on its meter side
        hhu = Client(meter.hhu_port)        # a real tty path, opened like hardware
"""
from __future__ import annotations

from typing import Self

from rig.link import VirtualLine
from rig.profile import Profile, load_profile
from rig.server import MeterEmulator, MeterServer


class EmbeddedMeter:
    """A VirtualLine with a MeterServer running on its meter side, in a thread.

    faults: the line's Faults; emulator: a MeterEmulator of the caller's (default: one for the
    profile); log: called with each server event (MeterServer.events)."""

    def __init__(self, profile: Profile | None = None, *, faults=(), emulator=None, log=None):
        self.profile = profile or load_profile()
        self.line = VirtualLine(faults=faults)
        self.server = MeterServer(self.line.meter_port, self.profile, emulator=emulator, log=log)

    @property
    def hhu_port(self) -> str:
        """The tty path of the line's HHU side, for a client to open like hardware."""
        return self.line.hhu_port

    @property
    def emulator(self) -> MeterEmulator:
        """The meter's state machine (registers, tokens, state) as the server runs it."""
        return self.server.emulator

    def start(self) -> Self:
        """Start the line and the meter server."""
        self.line.start()
        self.server.start()
        return self

    def close(self) -> None:
        """Stop the server, then the line."""
        self.server.stop()
        self.line.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
