"""The virtual bench: the embedded default for instruments, one SCPI server per instrument on loopback.

    with EmbeddedMeter() as meter, VirtualBench(meter.line) as bench:
        bench.resources        # {"scope": "TCPIP::127.0.0.1::40123::SOCKET", "generator": ..., ...}
        rm = pyvisa.ResourceManager("@py")   # the drivers reach it exactly as they reach hardware

Each instrument is a small threaded TCP server (raw socket, 127.0.0.1, an ephemeral port;
``server.py``) speaking its model's command tree (``scpi`` of its ``instruments/*.yaml`` file, parsed
by rig.bench.scpi with the IEEE 488.2 / SCPI-1999 rules: short and long forms, optional nodes,
numeric suffixes, header paths across ``;``, MIN/MAX/DEF, units, a query for every setting, the
common commands and the standard error queue).  One module per instrument: ``scope.py``,
``generator.py``, ``supply.py``, ``dmm.py``; the line as a waveform is rig.physical.synth's.  Bad
input (garbage bytes, overlong lines, bad blocks, bad numbers) queues an error and never ends the
server.

What the instruments do to and see of the virtual line (rig.link.VirtualLine):

- scope: waveforms synthesised from the line's wire record for the interface option (levels and
  polarity from rig.physical.options; the current loop's mark level from the loop model), with the
  timebase, vertical scale/offset and memory depth the client set, in the model's transfer format
  and preamble, so rig.physical.analysis decodes exactly the characters of the record (faults
  included: the record's ``line`` byte is what was on the wire).  ``run``: a read returns the screen
  ending now; ``stop``: freezes that; ``single``: arms, triggers on the first edge of the trigger
  source's slope on the line (or on ``force_trigger``), and the acquisition is done once the screen
  after the trigger has passed.  Channels probe one direction or the shared line (setting ``probes``).
- generator: its output disturbs the line through a coupling network (rig.bench.loop): noise with
  the output on is a noise fault (bit error rate from the amplitude relative to the interface's swing),
  pulses are glitches (a bit error rate from their duty), a burst (burst on, then a trigger) is a noise
  window of cycles / frequency; output off removes them.
- supply and meter: the current loop (rig.bench.loop): the supply's voltage and current limit give
  the loop current; below the receiver's 9 mA bits err, at or below 3 mA every character is lost
  (a drop fault on both directions); the meter reads the loop current and the supply's terminal
  voltage.  Only the current-loop option has a loop; with the others the supply and meter act on
  a plain resistive load (R_LOOP_OHM) and leave the line alone.

The bench owns the faults it adds to the line and replaces only those; faults injected by anyone
else stay.
"""
from rig.bench.scpi import ERRORS, ScpiError, ScpiInput
from rig.bench.virtual.base import LineSignal, SupplyPowerOn
from rig.bench.virtual.bench import CLASSES, DEFAULT_MODELS, DIRECTIONS, VirtualBench
from rig.bench.virtual.scope import Acquisition, VirtualScope
from rig.physical.synth import line_chars, line_edges, line_waveform

__all__ = ["CLASSES", "DEFAULT_MODELS", "DIRECTIONS", "ERRORS", "Acquisition", "LineSignal", "ScpiError",
           "ScpiInput", "SupplyPowerOn", "VirtualBench", "VirtualScope", "line_chars", "line_edges", "line_waveform"]
