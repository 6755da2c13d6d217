"""The link: ports by URL and the virtual line (real ptys, a real bridge thread) with its faults."""
import socket
import threading

import numpy as np
import pytest
import serial
from hypothesis import given
from hypothesis import strategies as st

from rig import _clock, _framing
from rig.link import Fault, FaultError, Port, VirtualLine, is_virtual, sample_char

MSG = _framing.encode_command("W", "1", "10(56746304125830196637)")


def read_all(port, n, timeout_s=3.0, idle_ms=30):
    """Read until n bytes came or the line stayed quiet idle_ms after the last one."""
    data, times = bytearray(), []
    deadline = _clock.now_ns() + int(timeout_s * 1e9)
    while len(data) < n and _clock.now_ns() < deadline:
        d, t = port.read(deadline, max_bytes=n - len(data), idle_ns=idle_ms * 1_000_000)
        if not d and data:
            break
        data += d
        times += list(t)
    return bytes(data), np.array(times, dtype=np.int64)


@pytest.fixture
def line():
    with VirtualLine() as vl:
        yield vl


@pytest.fixture
def ports(line):
    a, b = Port(line.hhu_port, baud=9600), Port(line.meter_port, baud=9600)
    yield line, a, b
    a.close()
    b.close()


def test_ports_of_the_virtual_line_are_real_ttys_opened_like_hardware(line):
    assert is_virtual(line.hhu_port) and is_virtual(line.meter_port)
    assert line.hhu_port.startswith("/dev/pts/")
    s = serial.serial_for_url(line.hhu_port, baudrate=9600)  # plain pyserial opens it too
    s.close()


def test_characters_cross_at_line_rate_both_ways(ports):
    line, a, b = ports
    a.write(MSG)
    data, times = read_all(b, len(MSG))
    assert _framing.strip_parity(data) == (MSG, -1)
    gaps = np.diff(times)
    char_ns = 10 * 1e9 / 9600
    assert abs(np.median(gaps) - char_ns) < 0.15 * char_ns
    rec = [c for c in line.record() if c.direction == "to_meter"]
    assert [c.sent for c in rec] == list(_framing.add_parity(MSG))
    assert all(c.t_end_ns - c.t_start_ns == int(char_ns) for c in rec)
    assert all(r2.t_start_ns >= r1.t_end_ns for r1, r2 in zip(rec, rec[1:]))
    b.write(b"\x06")
    back, _ = read_all(a, 1)
    assert back == _framing.add_parity(b"\x06")
    assert line.sent("to_hhu") == 1


def test_speed_mismatch_loses_characters_and_matching_speeds_recover(ports):
    line, a, b = ports
    b.set_baud(300)
    a.write(MSG)
    data, _ = read_all(b, len(MSG), timeout_s=0.5)
    assert data == b""
    assert all("lost" in c.faults for c in line.record())
    b.set_baud(9600)
    a.write(MSG)
    data, _ = read_all(b, len(MSG))
    assert _framing.strip_parity(data)[0] == MSG


def frames_after(line, a, b, fault, msg=MSG, second=None):
    """Send msg (then second after a pause) with the fault placed relative to the next character."""
    base = line.sent(fault.direction if fault.direction != "both" else "to_meter")
    if fault.at is not None:
        fault = Fault(**{**{k: getattr(fault, k) for k in fault.__dataclass_fields__ if k != "_rng"},
                         "at": base + fault.at})
    line.inject(fault)
    a.write(msg)
    data, times = read_all(b, 10 * len(msg), timeout_s=1.5)
    if second is not None:
        a.write(second)
        d2, t2 = read_all(b, 10 * len(second), timeout_s=1.5)
        data, times = data + d2, np.concatenate([times, t2])
    fr = _framing.Framer("even")
    return data, times, fr.feed(data, times) + fr.flush()


def test_bit_flip_at_an_index(ports):
    line, a, b = ports
    data, _, frames = frames_after(line, a, b, Fault("bit_flip", direction="to_meter", at=5, bit=2))
    wire = _framing.add_parity(MSG)
    assert data[5] == wire[5] ^ 0x04 and data[:5] == wire[:5] and data[6:] == wire[6:]
    assert frames[0].errors & _framing.E_PARITY and frames[0].parity_at == 5


def test_parity_error_keeps_the_value(ports):
    line, a, b = ports
    data, _, (frame,) = frames_after(line, a, b, Fault("parity", direction="to_meter", at=7))
    assert frame.errors == _framing.E_PARITY | 0  # BCC still right: only the parity bit is wrong
    assert frame.data == MSG


@pytest.mark.parametrize("kind, expect", [
    ("drop", lambda m: m[:4] + m[6:]),
    ("duplicate", lambda m: m[:6] + m[4:]),
])
def test_drop_and_duplicate(ports, kind, expect):
    line, a, b = ports
    data, _, _ = frames_after(line, a, b, Fault(kind, direction="to_meter", at=4, count=2))
    assert _framing.strip_parity(data)[0] == expect(MSG) if kind == "drop" else \
        _framing.strip_parity(data)[0] == MSG[:5] + MSG[4:6] + MSG[5:]


def test_insert_before_a_character(ports):
    line, a, b = ports
    data, _, frames = frames_after(line, a, b, Fault("insert", direction="to_meter", at=3, data=b"\x15"))
    assert _framing.strip_parity(data)[0] == MSG[:3] + b"\x15" + MSG[3:]
    assert frames[0].errors & _framing.E_TRUNCATED or not frames[0].ok


def test_truncated_message_then_the_next_one_is_whole(ports):
    line, a, b = ports
    data, _, frames = frames_after(line, a, b, Fault("truncate", direction="to_meter", at=10), second=MSG)
    assert _framing.strip_parity(data)[0] == MSG[:10] + MSG
    assert frames[-1].ok and frames[-1].data == MSG
    assert not frames[0].ok


def test_delay_makes_a_gap_over_ta(ports):
    line, a, b = ports
    data, times, (frame,) = frames_after(line, a, b, Fault("delay", direction="to_meter", at=6, ns=60_000_000))
    gaps = np.diff(times)
    assert gaps.max() >= 60_000_000
    assert int(np.argmax(gaps)) == 5
    f = _framing.Framer("even", ta_ns=50_000_000)
    (strict,) = f.feed(data, times)
    assert strict.errors == _framing.E_GAP


def test_break_is_received_as_nul_and_holds_the_line(ports):
    line, a, b = ports
    data, times, frames = frames_after(line, a, b, Fault("break", direction="to_meter", at=0, ns=20_000_000))
    assert data[0] == 0 and _framing.strip_parity(data[1:])[0] == MSG
    rec = line.record()
    brk = next(i for i, c in enumerate(rec) if c.faults == "break")
    assert rec[brk].t_end_ns - rec[brk].t_start_ns == 20_000_000
    assert rec[brk + 1].t_start_ns == rec[brk].t_end_ns  # the message waits for the line


@pytest.mark.parametrize("percent, intact", [(2.0, True), (-3.0, True), (12.0, False), (-12.0, False)])
def test_baud_error(ports, percent, intact):
    line, a, b = ports
    data, _, _ = frames_after(line, a, b, Fault("baud_error", direction="to_meter", percent=percent))
    assert (data == _framing.add_parity(MSG)) == intact


def test_noise_burst_only_hits_characters_in_its_window(ports):
    line, a, b = ports
    char_ns = int(10 * 1e9 / 9600)
    start = _clock.now_ns() + 200 * char_ns  # well after the first message
    line.inject(Fault("noise", direction="to_meter", ber=0.5, start_ns=start, duration_ns=10 * char_ns, seed=7))
    a.write(MSG)
    first, _ = read_all(b, len(MSG))
    assert first == _framing.add_parity(MSG)
    a.write(MSG, at_ns=start - 5 * char_ns)
    second, _ = read_all(b, len(MSG))
    hit = [c for c in line.record() if "noise" in c.faults]
    assert hit and all(c.t_end_ns > start and c.t_start_ns < start + 10 * char_ns for c in hit)
    assert second != _framing.add_parity(MSG)


def test_noise_placed_by_characters_hits_only_those(ports):
    # the faults case's noise over a token write was a time window that, once the client read
    # tokenStatus before writing, fell on that read instead: noise can be placed by characters
    line, a, b = ports
    at = line.sent("to_meter") + len(MSG)      # the second message's characters 0..5
    line.inject(Fault("noise", direction="to_meter", ber=0.5, at=at, count=6, seed=7))
    a.write(MSG)
    first, _ = read_all(b, len(MSG))
    assert first == _framing.add_parity(MSG)
    a.write(MSG)
    read_all(b, len(MSG))
    hit = [c.index for c in line.record() if "noise" in c.faults]
    assert hit and all(at <= i < at + 6 for i in hit)


def test_echo_on_a_half_duplex_loop(ports):
    line, a, b = ports
    line.inject(Fault("echo"))
    a.write(MSG)
    to_b, _ = read_all(b, len(MSG))
    echo, _ = read_all(a, len(MSG))
    assert to_b == echo == _framing.add_parity(MSG)


def test_faults_change_while_the_line_runs(ports):
    line, a, b = ports
    line.inject(Fault("drop", direction="to_meter", at=line.sent("to_meter"), count=len(MSG)))
    a.write(MSG)
    assert read_all(b, len(MSG), timeout_s=0.3)[0] == b""
    line.clear_faults()
    a.write(MSG)
    assert read_all(b, len(MSG))[0] == _framing.add_parity(MSG)


def test_chars_mode_side_for_programs_that_write_7_bit_characters():
    with VirtualLine(hhu_mode="chars") as vl:
        hhu = serial.Serial(vl.hhu_port, 9600, bytesize=7, parity="E", timeout=1)
        meter = Port(vl.meter_port, baud=9600)
        hhu.write(MSG)
        data, _ = read_all(meter, len(MSG))
        assert data == _framing.add_parity(MSG)  # the bridge added parity as a UART would
        meter.write(b"\x06")
        assert hhu.read(1) == b"\x06"             # and strips it on the way out
        hhu.close()
        meter.close()


def test_port_over_a_real_tcp_socket():
    srv = socket.create_server(("127.0.0.1", 0))
    port_no = srv.getsockname()[1]
    got = []

    def peer():
        conn, _ = srv.accept()
        with conn:
            buf = b""
            while len(buf) < len(MSG):
                buf += conn.recv(100)
            got.append(buf)
            conn.sendall(_framing.add_parity(b"\x06"))

    t = threading.Thread(target=peer)
    t.start()
    with Port(f"socket://127.0.0.1:{port_no}", baud=9600) as p:
        assert p.soft_parity
        p.write(MSG)
        data, times = p.read(_clock.now_ns() + 2_000_000_000, max_bytes=1)
    t.join(5)
    srv.close()
    assert got == [_framing.add_parity(MSG)]
    assert data == _framing.add_parity(b"\x06") and len(times) == 1


def test_port_on_loop_url_and_paced_write():
    with Port("loop://", baud=9600) as p:
        gap = 2_000_000
        start = _clock.now_ns() + 5_000_000
        sent = p.write(b"abc", at_ns=start, gap_ns=gap)
        data, _ = p.read(_clock.now_ns() + 1_000_000_000, max_bytes=3)
        assert data == _framing.add_parity(b"abc")
        # paced: no character before its time on the schedule (a late one, on a loaded machine,
        # shortens the gap after it as the writer keeps to the schedule)
        due = start + np.arange(3) * (p.char_ns + gap)
        assert np.all(sent >= due - 50_000)


def test_bad_url_is_a_clear_error():
    from rig.link import PortError
    with pytest.raises(PortError, match="/dev/does-not-exist: cannot open"):
        Port("/dev/does-not-exist")


@pytest.mark.parametrize("kwargs, needle", [
    (dict(kind="zap"), "fault kind 'zap'"),
    (dict(kind="drop"), "at=None"),
    (dict(kind="bit_flip", at=1, bit=9), "bit=9"),
    (dict(kind="noise", ber=0.1), "duration_ns"),
    (dict(kind="drop", at=1, direction="up"), "direction='up'"),
])
def test_fault_descriptions_are_checked(kwargs, needle):
    with pytest.raises(FaultError, match=needle.replace("(", r"\(")):
        Fault(**kwargs)


@given(st.integers(0, 255), st.floats(-0.045, 0.045))
def test_uart_sampling_tolerates_small_speed_errors(w, err):
    assert sample_char(w, 9600 * (1 + err), 9600) == (w, True)


def test_uart_sampling_at_half_speed_garbles():
    got = sample_char(0x55, 9600, 4800)
    assert got is None or got != (0x55, True)


def test_port_sends_characters_with_bad_parity_on_request(ports):
    line, a, b = ports
    a.write(MSG, bad_parity=(2, 9))
    data, _ = read_all(b, len(MSG))
    (frame,) = _framing.Framer("even").feed(data)
    assert frame.parity_errors == 2 and frame.parity_at == 2 and frame.data == MSG


def test_parmrk_marks_from_a_real_uart_become_wire_bytes_with_bad_parity(line):
    """A real UART is not available here: the mark decoder is fed what Linux gives with PARMRK
    (\\377 \\0 c for a character with a parity error), split across reads."""
    p = Port(line.hhu_port, baud=9600, soft_parity=False)
    try:
        t = np.arange(5, dtype=np.int64)
        out1, _ = p._unmark(b"AB\xff\x00", t[:4])
        out2, times2 = p._unmark(b"C", t[4:])
        assert out1 == _framing.add_parity(b"AB")
        assert out2 == bytes([_framing.add_parity(b"C")[0] ^ 0x80]) and list(times2) == [4]
        (frame,) = _framing.Framer("even").feed(out1 + out2 + _framing.add_parity(b"\x06"))
        assert frame.kind == "garbage"
        assert _framing.strip_parity(out1 + out2)[1] == 2
    finally:
        p.close()


@pytest.mark.parametrize("url, virtual", [("socket://127.0.0.1:1", True), ("loop://", True),
                                          ("rfc2217://127.0.0.1:1", False), ("/dev/null", False)])
def test_which_urls_carry_wire_bytes(url, virtual):
    assert is_virtual(url) == virtual


def test_sign_off_sent_at_session_speed_reaches_a_late_line_at_that_speed():
    # the virtual line's bridge takes a pty's speed when it reads the characters: a BreakCommand
    # written at 9600 Bd, then the switch back to 300, went out at 300 Bd when the bridge was a few
    # ms late (a loaded machine), and the meter stayed in its session
    import os
    import select
    import termios
    master, slave = os.openpty()
    path = os.ttyname(slave)
    seen = {}

    def late_bridge():
        select.select([master], [], [], 5.0)
        _clock.sleep_until(_clock.now_ns() + 10_000_000)   # the bridge scheduled 10 ms late
        seen["data"] = os.read(master, 64)
        seen["baud"] = termios.tcgetattr(slave)[5]

    t = threading.Thread(target=late_bridge)
    t.start()
    try:
        with Port(path, baud=9600) as p:
            p.write(b"\x01B0\x03q")
            p.set_baud(300)
            t.join(5.0)
    finally:
        os.close(master)
        os.close(slave)
    assert seen["data"] and seen["baud"] == termios.B9600


def test_character_time_is_ten_bits_at_the_speed_for_7e1_and_8n1():
    from rig.link import char_time_ns

    assert char_time_ns(300) == 33_333_333 and char_time_ns(9600, "8N1") == 1_041_666
    assert char_time_ns(9600, n=80) == 80 * char_time_ns(9600)      # characters back to back
    assert char_time_ns(300 * 1.05) == int(10e9 / (300 * 1.05))      # a baud-rate error on the line
    with pytest.raises(ValueError, match="character format '7N2'"):
        char_time_ns(300, "7N2")
    with Port("loop://", baud=2400) as port:
        assert port.char_ns == char_time_ns(2400)
