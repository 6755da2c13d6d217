"""The framing engine: parity, BCC, the incremental framer, encoders; Cython against the model."""
import array
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rig import _framing as fx
from rig import _framing_model as model
from strategies import streams


# --- BCC (FACTS.md §4 vectors) -------------------------------------------------------------------
@pytest.mark.parametrize("frame, expected", [
    (b"\x01P0\x02(1234567)\x03", 0x50),
    (b"\x01W2\x02C003(910324092239)\x03", 0x1B),
    (b"\x01B0\x03", 0x71),
    (b"\x01R1\x021.8.0()\x03", 0x5A),
])
def test_bcc_vectors(frame, expected):
    assert fx.bcc(frame, 1) == expected
    assert model.bcc(frame[1:]) == expected
    # the encoder appends the same BCC, and with parity the wire BCC is its 7E1 form
    letter, ctype = chr(frame[1]), chr(frame[2])
    data = frame[4:-1].decode() if b"\x02" in frame else None
    wire = fx.encode_command(letter, ctype, data)
    assert wire == frame + bytes([expected])
    assert fx.encode_command(letter, ctype, data, parity=True)[-1] & 0x7F == expected
    assert fx.bcc(fx.encode_command(letter, ctype, data, parity=True), 1, len(frame)) == expected


def test_bcc_rejects_span_outside_buffer():
    with pytest.raises(ValueError, match="outside"):
        fx.bcc(b"abc", 2, 5)


# --- parity ------------------------------------------------------------------------------------
def test_add_parity_gives_even_parity_for_every_character():
    wire = fx.add_parity(bytes(range(128)))
    assert all(bin(b).count("1") % 2 == 0 for b in wire)
    assert bytes(b & 0x7F for b in wire) == bytes(range(128))
    assert wire == model.add_parity(bytes(range(128)))


@pytest.mark.parametrize("make", [bytes, bytearray, memoryview, lambda b: np.frombuffer(b, np.uint8)])
def test_parity_functions_take_any_byte_buffer(make):
    wire = fx.add_parity(make(b"1.8.0(123)"))
    stripped, bad = fx.strip_parity(make(wire))
    assert (stripped, bad) == (b"1.8.0(123)", -1)


def test_strip_parity_reports_where_it_failed():
    wire = bytearray(fx.add_parity(b"ABCDEFG"))
    wire[4] ^= 0x01  # a bit flip: 'E' -> 'D' with wrong parity
    wire[6] ^= 0x80
    stripped, bad = fx.strip_parity(wire)
    assert bad == 4
    assert fx.parity_errors(wire) == 2
    assert stripped[6:] == b"G"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.binary(max_size=64))
def test_bit_errors_match_the_model(a, b):
    a, b = a[:min(len(a), len(b))], b[:min(len(a), len(b))]
    assert fx.bit_errors(a, b) == model.bit_errors(a, b)
    assert fx.bit_errors(a, a) == 0


def test_bit_errors_count_every_flipped_bit_and_refuse_unequal_lengths():
    sent = fx.add_parity(b"04(1)")
    got = bytes([sent[0] ^ 0x81, *sent[1:4], sent[4] ^ 0xFF])
    assert fx.bit_errors(got, sent) == 10
    with pytest.raises(ValueError, match="equal lengths"):
        fx.bit_errors(b"ab", b"a")


# --- the framer: each kind of frame and each kind of corruption --------------------------------------
def frames_of(data, parity="none", **kw):
    f = fx.Framer(parity, **kw)
    return f.feed(data) + f.flush()


def test_each_frame_kind_is_found():
    stream = (b"/?12345678!\r\n" b"/ABC5\\2METER01\r\n" b"\x06051\r\n"
              + fx.encode_command("R", "1", "1.8.0()") + b"\x06\x15"
              + fx.encode_data("1.8.0(123.4*kWh)") + fx.encode_command("B", "0"))
    frames = frames_of(stream)
    assert [f.kind for f in frames] == ["request", "identification", "option_select", "command",
                                        "ack", "nak", "data", "command"]
    assert all(f.ok for f in frames)
    assert b"".join(f.data for f in frames) == stream
    assert [f.start for f in frames[1:]] == [f.end for f in frames[:-1]]


def test_lone_ack_waits_for_the_next_character_or_flush():
    f = fx.Framer("none")
    assert f.feed(b"\x06") == []
    assert f.pending
    assert [x.kind for x in f.feed(b"\x02")] == ["ack"]
    f2 = fx.Framer("none")
    f2.feed(b"\x06")
    assert [x.kind for x in f2.flush()] == ["ack"]


def test_parity_error_is_flagged_at_its_offset():
    wire = bytearray(fx.encode_command("R", "1", "1.8.0()", parity=True))
    wire[5] ^= 0x80  # wrong parity, same 7-bit value
    (frame,) = frames_of(wire, "even")
    assert frame.errors == fx.E_PARITY
    assert frame.parity_at == 5
    assert "offset 5" in frame.errors_list()[0]


def test_bit_flip_is_a_parity_and_bcc_error():
    wire = bytearray(fx.encode_data("C003(910324092239)", parity=True))
    wire[7] ^= 0x04
    (frame,) = frames_of(wire, "even")
    assert frame.errors & fx.E_PARITY and frame.errors & fx.E_BCC


def test_wrong_bcc_names_expected_and_received():
    wire = fx.encode_command("B", "0")[:-1] + b"X"
    (frame,) = frames_of(wire)
    assert frame.errors == fx.E_BCC
    assert frame.errors_list() == ["bcc: expected 0x71, got 0x58"]


@pytest.mark.parametrize("data, field, reason", [
    ("1.8.0(12!3)", "value", "excluded character"),  # '/' cuts a block: test below
    ("1.8.0(1*k*Wh)", "unit", "excluded character"),
    ("1.8.0*(1)", "address", "excluded character"),
    ("A" * 17 + "(1)", "address", "field too long"),
    ("1.8.0(" + "9" * 129 + ")", "value", "field too long"),
    ("1.8.0(1*" + "k" * 17 + ")", "unit", "field too long"),
    ("1.8.0(12\r3)", "value", "control character"),
    ("1.8.0(123", "end of data", "bad character"),
])
def test_syntax_errors_name_the_field(data, field, reason):
    (frame,) = frames_of(fx.encode_data(data))
    assert frame.errors == fx.E_SYNTAX
    (msg,) = frame.errors_list()
    assert reason in msg and f"in {field}" in msg


def test_frame_over_the_maximum_length_is_cut_and_the_stream_resynchronises():
    big = fx.encode_data("A(" + "1" * 100 + ")")
    frames = frames_of(big + fx.encode_ack() + fx.encode_nak(), frame_max=64)
    assert frames[0].kind == "data" and frames[0].errors & fx.E_TRUNCATED
    assert "frame too long" in frames[0].errors_list()[0]
    assert frames[1].kind == "garbage"
    assert [f.kind for f in frames[2:]] == ["ack", "nak"]


def test_frame_cut_by_a_new_start_is_truncated_and_the_next_frame_is_whole():
    cmd = fx.encode_command("R", "1", "1.8.0()")
    frames = frames_of(cmd[:6] + cmd)
    assert frames[0].errors & fx.E_TRUNCATED and frames[0].end == 6
    assert frames[1].ok and frames[1].data == cmd


@pytest.mark.parametrize("start", [b"\x02", b"\x021.8.0(12", b"\x01", b"\x01R", b"\x01R1\x02(1"])
@pytest.mark.parametrize("parity", ["none", "even"])
def test_slash_cuts_an_open_block_so_a_request_after_a_stray_start_is_heard(start, parity):
    """Issue 13 item 8: a lone STX (0x82 on the wire) made the block run on over the next IDRequest."""
    wire = start + fx.encode_request("")
    if parity == "even":
        wire = fx.add_parity(wire)
    for framer in (fx.Framer(parity), model.FramerModel(parity)):
        frames = framer.feed(wire) + framer.flush()
        assert [f.kind if isinstance(f.kind, str) else model.KINDS[f.kind] for f in frames][-1] == "request"
        assert frames[-1].errors == 0 and bytes(frames[-1].data) == b"/?!\r\n"
        assert frames[0].errors & fx.E_TRUNCATED


def test_bcc_byte_above_7_bits_is_wrong_without_parity():
    """Regression: a BCC byte with bit 7 set passed as good in parity none (only 7 bits compared)."""
    wire = fx.encode_command("B", "0")
    (frame,) = frames_of(wire[:-1] + bytes([wire[-1] | 0x80]))
    assert frame.errors == fx.E_BCC and frame.bcc_received == wire[-1] | 0x80


def test_gap_over_ta_is_flagged_only_with_timestamps():
    wire = fx.encode_command("R", "1", "1.8.0()")
    ts = np.arange(len(wire), dtype=np.int64) * 1_000_000
    ts[5:] += 1_600_000_000  # one 1.601 s pause inside the message
    (frame,) = fx.Framer("none", ta_ns=1_500_000_000).feed(wire, ts)
    assert frame.errors == fx.E_GAP
    assert frame.max_gap_ns == 1_601_000_000
    assert (frame.t_first_ns, frame.t_last_ns) == (ts[0], ts[-1])
    (ok,) = fx.Framer("none", ta_ns=2_000_000_000).feed(wire, ts)
    assert ok.ok


def test_timestamps_must_match_the_chunk():
    with pytest.raises(ValueError, match="timestamps_ns has 2 entries for 3 bytes"):
        fx.Framer().feed(b"abc", np.zeros(2, np.int64))


def test_garbage_is_reported_then_the_framer_resynchronises():
    frames = frames_of(b"\x7f\x00noise" + fx.encode_ack() + b"zz" + fx.encode_request())
    assert [f.kind for f in frames] == ["garbage", "ack", "garbage", "request"]
    assert frames[0].data == b"\x7f\x00noise" and not frames[0].ok
    assert frames[3].ok


def test_request_with_an_address_too_long_is_rejected():
    (frame, *rest) = frames_of(b"/?" + b"1" * 33 + b"!\r\n")
    assert "field too long in device address" in frame.errors_list()[0]


def test_invalid_parity_option_is_refused():
    with pytest.raises(ValueError, match="parity must be"):
        fx.Framer("odd")


# --- differential: Cython against the plain-Python model, any split -------------------------------
def _keys(frames):
    return [f.key() for f in frames]


def _feed_split(framer, data, cuts, ts=None):
    out, prev = [], 0
    for c in sorted(cuts) + [len(data)]:
        out += framer.feed(data[prev:c], None if ts is None else ts[prev:c])
        prev = c
    return out + framer.flush()


@settings(max_examples=400, deadline=None)
@given(streams(), st.sampled_from(["none", "even"]), st.lists(st.integers(0, 10_000), max_size=6),
       st.integers(0, 2**32), st.booleans())
def test_cython_framer_matches_model_on_any_split(stream_msgs, parity, cuts, seed, with_ts):
    data, _ = stream_msgs
    rng = random.Random(seed)
    if parity == "even":
        data = bytearray(fx.add_parity(data))
        for _ in range(rng.randint(0, 2)):  # a few parity errors
            if data:
                data[rng.randrange(len(data))] ^= 0x80
        data = bytes(data)
    cuts = [c % (len(data) + 1) for c in cuts]
    ts = None
    if with_ts:
        ts = np.cumsum([rng.choice([1_000_000, 1_000_000, 2_000_000_000]) for _ in data]).astype(np.int64)
    # small random limits make every limit check meet its boundary often
    kw = dict(frame_max=rng.choice([16, 64, 4096]), device_address_max=rng.randint(0, 8),
              identification_max=rng.randint(0, 8), address_max=rng.randint(0, 8),
              value_max=rng.randint(0, 8), unit_max=rng.randint(0, 8))
    whole = _keys(_feed_split(fx.Framer(parity, **kw), data, [], ts))
    split = _keys(_feed_split(fx.Framer(parity, **kw), data, cuts, ts))
    ref = _keys(_feed_split(model.FramerModel(parity, **kw), data, cuts, ts))
    assert whole == split == ref
    assert sum(k[2] - k[1] for k in whole) == len(data)  # every byte is in exactly one frame


@settings(max_examples=200, deadline=None)
@given(streams())
def test_valid_messages_survive_garbage(stream_msgs):
    data, _ = stream_msgs
    frames = frames_of(data)
    # frames tile the stream; every frame the model finds, Cython finds at one byte a feed
    f = fx.Framer("none")
    one_by_one = [x for i in range(len(data)) for x in f.feed(data[i:i + 1])] + f.flush()
    assert _keys(one_by_one) == _keys(frames)


def test_framer_takes_any_byte_buffer():
    wire = fx.encode_data("1(2)") + fx.encode_ack()
    for buf in (wire, bytearray(wire), memoryview(wire), np.frombuffer(wire, np.uint8)):
        assert [f.kind for f in frames_of(buf)] == ["data", "ack"]
    ts = array.array("q", range(len(wire)))
    assert fx.Framer("none").feed(wire, ts)[0].t_last_ns == 6


def test_fuzz_random_and_mutated_inputs_never_crash_or_hang():
    """1 M random inputs, half mutated valid traffic: every byte lands in exactly one frame."""
    rng = np.random.default_rng(62055)
    valid = (fx.encode_request("123") + b"/ABC5METER\r\n" + fx.encode_option_select("0", "5", "1")
             + fx.encode_command("W", "1", "C003(910324092239)") + fx.encode_data("1.8.0(1*kWh)\r\n!\r\n"))
    random_part = rng.integers(0, 256, size=(500_000, 24), dtype=np.uint8)
    mutated = np.tile(np.frombuffer(valid[:24], np.uint8), (500_000, 1))
    flips = rng.integers(0, 24, size=500_000)
    mutated[np.arange(500_000), flips] ^= rng.integers(1, 256, size=500_000, dtype=np.uint8)
    for parity in ("none", "even"):
        for block in (random_part, mutated):
            f = fx.Framer(parity, frame_max=64)
            total = 0
            for chunk in np.array_split(block.reshape(-1), 2000):
                total += sum(x.end - x.start for x in f.feed(chunk))
            total += sum(x.end - x.start for x in f.flush())
            assert total == block.size


@settings(max_examples=150, deadline=None)
@given(streams(), st.lists(st.integers(0, 10_000), max_size=4))
def test_feed_records_gives_the_frames_of_feed(stream_msgs, cuts):
    data, _ = stream_msgs
    cuts = sorted(c % (len(data) + 1) for c in cuts) + [len(data)]
    ref = frames_of(data)
    fr, rows, prev = fx.Framer("none"), [], 0
    for c in cuts:
        recs, chars = fr.feed_records(data[prev:c])
        prev = c
        rows += [(r, chars[r["data_off"]:r["data_off"] + r["end"] - r["start"]]) for r in recs]
    rows += [(None, f) for f in fr.flush()]
    assert len(rows) == len(ref)
    for (r, chars), f in zip(rows, ref):
        if r is None:
            assert chars.key() == f.key()
        else:
            assert (fx.KINDS[r["kind"]], r["start"], r["end"], chars, r["errors"], r["syntax_at"],
                    r["bcc_received"]) == (f.kind, f.start, f.end, f.data, f.errors, f.syntax_at, f.bcc_received)
