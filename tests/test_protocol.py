"""Messages: round trips through bytes and the framer, and clear errors for bad fields."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rig import _framing as fx
from rig.protocol import (
    Ack, BreakCommand, Data, DataSet, IDRequest, IDResponse, Nak, OptionSelect, ProtocolError,
    ReadCommand, UndefinedCommand, WriteCommand, message_from_frame, parse, parse_datasets,
)
from strategies import datasets, messages


@settings(max_examples=500, deadline=None)
@given(st.lists(messages, min_size=1, max_size=6), st.booleans())
def test_every_message_round_trips_through_the_wire(msgs, parity):
    wire = b"".join(m.to_bytes(parity=parity) for m in msgs)
    assert parse(wire, "even" if parity else "none") == msgs


@settings(max_examples=300, deadline=None)
@given(st.lists(datasets, max_size=5))
def test_datasets_round_trip(ds):
    assert Data.of(*ds).datasets == tuple(ds)
    assert parse_datasets("".join(map(str, ds))) == tuple(ds)


def test_wire_bytes_of_known_messages():
    assert IDRequest().to_bytes() == b"/?!\r\n"
    assert IDRequest("12345678").to_bytes() == b"/?12345678!\r\n"
    assert IDResponse("ABC", "5", "METER01").to_bytes() == b"/ABC5METER01\r\n"
    assert OptionSelect("0", "5", "1").to_bytes() == b"\x06051\r\n"
    assert BreakCommand().to_bytes() == b"\x01B0\x03q"
    assert ReadCommand.of("1.8.0").to_bytes() == b"\x01R1\x021.8.0()\x03Z"
    assert WriteCommand.of(DataSet("C003", "910324092239")).to_bytes() == b"\x01W1\x02C003(910324092239)\x03\x18"
    assert Ack().to_bytes() == b"\x06" and Nak().to_bytes() == b"\x15"
    assert Data("A(1)", partial=True).to_bytes().endswith(b"\x04" + bytes([fx.bcc(b"A(1)\x04")]))


def test_readout_block_with_end_mark_and_lines():
    d = Data("1.8.0(123.4*kWh)\r\n2.8.0(5*kWh)\r\n!\r\n")
    assert [x.address for x in d.datasets] == ["1.8.0", "2.8.0"]
    assert d.datasets[0].unit == "kWh"


def test_error_answer_and_unknown_command_letter():
    (err,) = parse(Data.error("ACCESS DENIED").to_bytes())
    assert err.error_text == "ACCESS DENIED"
    (cmd,) = parse(fx.encode_command("X", "1", "abc()"))
    assert isinstance(cmd, UndefinedCommand) and cmd.letter == "X"
    assert IDResponse("ABc", "5", "X").fast_reaction and not IDResponse("ABC", "5", "X").fast_reaction


@pytest.mark.parametrize("make, field, value", [
    (lambda: DataSet("1.8.0(", "1"), "data-set address", "1.8.0("),
    (lambda: DataSet("A", "x" * 129), "data-set value", "x" * 129),
    (lambda: DataSet("A", "1", "k/h"), "data-set unit", "k/h"),
    (lambda: IDRequest("meter#1"), "device address", "meter#1"),
    (lambda: IDResponse("AB1", "5", "X"), "manufacturer", "AB1"),
    (lambda: IDResponse("ABC", "5", "a/b"), "identification", "a/b"),
    (lambda: OptionSelect("0", "x", "1"), "baud character", "x"),
    (lambda: ReadCommand("R", "x", "1.8.0()"), "command type", "x"),
    (lambda: ReadCommand("W", "1", "1.8.0()"), "command letter", "W"),
    (lambda: Data.error("E" * 33), "error text", "E" * 33),
    (lambda: Data("1(2)\x07"), "data", "1(2)\x07"),
    (lambda: UndefinedCommand("R", "1"), "command letter", "R"),
])
def test_bad_field_raises_protocol_error_naming_field_and_value(make, field, value):
    with pytest.raises(ProtocolError) as e:
        make()
    assert e.value.field == field and e.value.value == value
    assert str(e.value).startswith(f"{field} {value!r}")


def test_frame_with_errors_cannot_become_a_message():
    wire = bytearray(ReadCommand.of("1.8.0").to_bytes())
    wire[-1] ^= 1
    f = fx.Framer("none")
    (frame,) = f.feed(wire)
    with pytest.raises(ProtocolError, match=r"command frame at offset 0.*bcc: expected 0x5A, got 0x5B"):
        message_from_frame(frame)


# --- field limits: the profile's [limits] are the one home ---------------------------------------
def test_framer_and_model_default_limits_are_the_default_profiles():
    import inspect

    from rig import _framing_model
    from rig.profile import load_profile

    default = load_profile()
    assert fx.Framer().limits == fx.Framer.from_profile(default).limits
    want = fx.Framer().limits
    model = {k: v.default for k, v in inspect.signature(_framing_model.FramerModel).parameters.items() if k in want}
    assert model == want


def test_a_profile_that_changes_a_limit_changes_what_messages_client_and_emulator_accept(tmp_path):
    from rig.client import Client
    from rig.profile import load_profile
    from rig.server import MeterEmulator

    f = tmp_path / "long.toml"
    f.write_text("[limits]\naddress_max = 20\nvalue_max_programming = 200\nunit_max = 4\n"
                 "error_text_max = 40\nidentification_max = 20\ndevice_address_max = 40\n")
    p = load_profile(f)
    lim = p.limits
    ds = DataSet("A" * 20, "v" * 200, limits=lim)
    assert parse_datasets(str(ds), lim) == (ds,)
    for refused in (lambda: DataSet("A" * 20, "1"), lambda: parse_datasets(str(ds)),   # the default's limits
                    lambda: DataSet("A", "1", "kWhxx", limits=lim)):                    # stricter here
        with pytest.raises(ProtocolError):
            refused()
    assert Data.error("E" * 40, lim).error_text == "E" * 40
    assert IDResponse("ABC", "5", "I" * 20, limits=lim).identification == "I" * 20
    assert Client.check_address("1" * 40, lim) == "1" * 40
    with pytest.raises(ValueError, match="longer than 32"):
        Client.check_address("1" * 40)
    # the framer from the profile, message_from_frame and the data sets agree
    wire = IDRequest("1" * 40, limits=lim).to_bytes() + Data.of(ds).to_bytes()
    frames = fx.Framer.from_profile(p, parity="none").feed(wire)
    request, data = (message_from_frame(fr, lim) for fr in frames)
    assert request.device_address == "1" * 40 and parse_datasets(data.data, lim) == (ds,)
    # the emulator: a read of an unknown 20-character address is an error answer, not a NAK
    emu = MeterEmulator(p)
    t = 0
    for msg in (IDRequest(), OptionSelect("0", "5", "1"), ReadCommand.of("A" * 20, limits=lim)):
        t += 100_000_000
        (fr,) = fx.Framer.from_profile(p, parity="none").feed(msg.to_bytes())
        r = emu.on_frame(fr, t)
    answer = r.answer
    assert isinstance(answer, Data) and answer.error_text == p.error_texts["unknown_register"]


def test_the_data_set_character_set_is_the_framers_everywhere(tmp_path):
    """IEC 62056-21 §6.3 excludes ( ) * / ! inside a data set: the framer's table is the one home;
    the messages, the model and the profile's checks must refuse exactly those characters."""
    import json

    from rig import _framing_model
    from rig.profile import ProfileError, load_profile
    from rig.protocol.messages import EXCLUDED

    assert EXCLUDED == "!()*/" and _framing_model.EXCLUDED == frozenset(EXCLUDED.encode())
    f = tmp_path / "texts.toml"
    for ch in map(chr, range(0x20, 0x7F)):
        excluded = ch in EXCLUDED
        fr = fx.Framer("none")
        frames = fr.feed(Data(f"A{ch}(1)").to_bytes()) + fr.flush()
        assert (len(frames) == 1 and frames[0].ok) == (not excluded), ch
        try:
            DataSet(f"A{ch}", "1")
        except ProtocolError:
            assert excluded, ch
        else:
            assert not excluded, ch
        f.write_text(f"[error_texts]\nbad_value = {json.dumps('a' + ch)}\n")  # a TOML basic string
        try:
            load_profile(f)
        except ProfileError:
            assert excluded, ch
        else:
            assert not excluded, ch
