"""Writes the sample session logs shipped in rig/samples (run: python -m rig.samples.generate).

meter-session.bin   one clean token session as 7E1 wire bytes (both directions of a half-duplex
                    line, as a sniffer on the line records them)
noisy-session.bin   the same session over a bad line: a bit flip answered by NAK and a repeat,
                    a noise burst, a message cut short
Register IDs are those of the default profile (assumed values, see rig/profiles).
"""
from pathlib import Path

from rig.protocol import (
    Ack, BreakCommand, Data, DataSet, IDRequest, IDResponse, Nak, OptionSelect, ReadCommand,
    WriteCommand,
)

TOKEN = "56746304125830196637"


def session():
    return [
        IDRequest("00000001"), IDResponse("RIG", "5", "RIG STS EMULATOR"), OptionSelect("0", "5", "1"),
        ReadCommand.of("02"), Data.of(DataSet("02", "1.0")),
        WriteCommand.of(DataSet("10", TOKEN)), Ack(),
        ReadCommand.of("04"), Data.of(DataSet("04", "16")),   # not ready: token still executing
        ReadCommand.of("04"), Data.of(DataSet("04", "1")),    # accept
        ReadCommand.of("11"), Data.of(DataSet("11", "0")),
        ReadCommand.of("12"), Data.of(DataSet("12", "0")),
        ReadCommand.of("13"), Data.of(DataSet("13", "0")),
        BreakCommand(),
    ]


def clean() -> bytes:
    return b"".join(m.to_bytes(parity=True) for m in session())


def noisy() -> bytes:
    parts = [m.to_bytes(parity=True) for m in session()]
    flipped = bytearray(parts[5])  # the token write: one bit flipped on the line
    flipped[12] ^= 0x08
    parts[5:5] = [bytes(flipped), Nak().to_bytes(parity=True)]
    parts.insert(9, b"\xff\x80\x7f\x00")                       # a noise burst between messages
    parts.insert(12, parts[11][:5])                          # a read cut short, then sent again
    return b"".join(parts)


def main() -> None:
    here = Path(__file__).parent
    (here / "meter-session.bin").write_bytes(clean())
    (here / "noisy-session.bin").write_bytes(noisy())


if __name__ == "__main__":
    main()
