"""Hypothesis strategies for messages and wire streams, shared by the tests."""
import string

from hypothesis import strategies as st

from rig.protocol import (
    Ack, BreakCommand, Data, DataSet, ExecuteCommand, IDRequest, IDResponse, Nak,
    OptionSelect, PasswordCommand, ReadCommand, UndefinedCommand, WriteCommand,
)

PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))
FIELD_CHARS = "".join(ch for ch in PRINTABLE if ch not in "()*/!")
DIGITS = string.digits


def text(alphabet, max_size, min_size=0):
    return st.text(alphabet=alphabet, min_size=min_size, max_size=max_size)


datasets = st.builds(
    DataSet, text(FIELD_CHARS, 16), text(FIELD_CHARS, 32), st.none() | text(FIELD_CHARS, 16))
data_fields = st.lists(datasets, max_size=4).map(lambda ds: "".join(map(str, ds)))

messages = st.one_of(
    st.builds(IDRequest, text(string.ascii_letters + DIGITS + " ", 32)),
    st.builds(IDResponse, text(string.ascii_letters, 3, 3), st.sampled_from(DIGITS + "ABCDEF"),
              text("".join(ch for ch in PRINTABLE if ch not in "/!\\"), 16),
              st.none() | st.sampled_from(DIGITS)),
    st.builds(OptionSelect, st.sampled_from(DIGITS), st.sampled_from(DIGITS), st.sampled_from(DIGITS)),
    st.just(Ack()), st.just(Nak()),
    st.builds(lambda ds, t, p: ReadCommand("R", t, ds, p), data_fields, st.sampled_from("1234"), st.booleans()),
    st.builds(lambda ds, t, p: WriteCommand("W", t, ds, p), data_fields, st.sampled_from("1234"), st.booleans()),
    st.builds(BreakCommand),
    st.builds(lambda ds: PasswordCommand("P", "1", ds), data_fields),
    st.builds(lambda ds: ExecuteCommand("E", "2", ds), data_fields),
    st.builds(lambda l, ds: UndefinedCommand(l, "1", ds),
              st.sampled_from([c for c in string.ascii_uppercase if c not in "RWBPE"]), st.none() | data_fields),
    st.builds(Data, data_fields, st.booleans()),
)

GARBAGE_BYTES = st.binary(min_size=1, max_size=12)

# Raw frames that are near-valid: data fields drawn from characters rich in the special ones.
SPECIAL = "()*!/\r\n\x03\x04\x02\x01\x06\x15?\\"
raw_field = st.text(alphabet=st.sampled_from(list(SPECIAL) + list("A1.  zZ9~")), max_size=40)
raw_frames = st.one_of(
    raw_field.map(lambda t: ("\x02" + t + "\x03").encode() + b"\x00"),
    st.tuples(st.sampled_from("RWBPEX1a"), st.sampled_from("0129x"), raw_field).map(
        lambda p: ("\x01" + p[0] + p[1] + "\x02" + p[2] + "\x03").encode() + b"\x00"),
    raw_field.map(lambda t: ("/?" + t + "!\r\n").encode()),
    raw_field.map(lambda t: ("/ABC5" + t + "\r\n").encode()),
    raw_field.map(lambda t: ("\x06" + t[:5] + "\r\n").encode()),
)


@st.composite
def streams(draw, max_messages=8):
    """(wire bytes, messages): valid messages with garbage and single-byte corruptions between."""
    msgs = draw(st.lists(messages | raw_frames, max_size=max_messages))
    parts = []
    for m in msgs:
        raw = bytearray(m if isinstance(m, bytes) else m.to_bytes())
        if draw(st.integers(0, 4)) == 0 and raw:  # corrupt one byte
            i = draw(st.integers(0, len(raw) - 1))
            raw[i] = draw(st.integers(0, 127))
        parts.append(bytes(raw))
        if draw(st.integers(0, 3)) == 0:
            parts.append(bytes(b & 0x7F for b in draw(GARBAGE_BYTES)))
    return b"".join(parts), msgs
