"""The timing engine rig._clock on real file descriptors: pipes and pty pairs.

Timing checks assert relations that hold on a loaded machine (order, counts, never before a
deadline, what causality guarantees) and keep generous margins where the OS decides when a thread
runs; how precise the pacing is without load is a bench matter (benches/), not a test.
"""
import errno
import os
import signal
import threading
import time
import tty
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from rig import _clock

MS = 1_000_000
S = 1_000_000_000
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
#: how late a thread may run on a loaded 2-core machine before a test calls it a failure
GENEROUS = 1 * S


# --- helpers -------------------------------------------------------------------------------------
class Collector(threading.Thread):
    """Reads fd with read_timestamped until n bytes came, EOF, or its own deadline."""

    def __init__(self, fd, n, timeout_ns=20 * S, max_read=None):
        super().__init__(daemon=True)
        self.fd, self.n, self.max_read = fd, n, max_read
        self.deadline = _clock.now_ns() + timeout_ns
        self.started_ns = None
        self.data, self.times, self.eof, self.error = bytearray(), [], False, None

    def run(self):
        self.started_ns = _clock.now_ns()
        try:
            while len(self.data) < self.n and not self.eof and _clock.now_ns() < self.deadline:
                want = self.n - len(self.data)
                if self.max_read:
                    want = min(want, self.max_read)
                d, t, self.eof = _clock.read_timestamped(self.fd, want, self.deadline)
                assert len(d) == len(t) <= want
                self.data += d
                self.times.append(t)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            self.error = e

    def result(self):
        self.join((self.deadline - _clock.now_ns()) / S + 5)
        assert not self.is_alive(), "reader did not finish"
        if self.error:
            raise self.error
        times = np.concatenate(self.times) if self.times else np.zeros(0, np.int64)
        return bytes(self.data), times


@pytest.fixture
def fds():
    """Closes, at the end of the test, every fd a test opened through it."""
    opened = []

    class Fds:
        def pipe(self):
            r, w = os.pipe()
            opened.extend((r, w))
            return r, w

        def pty(self):
            m, s = os.openpty()
            tty.setraw(s)  # 8-bit clean both ways: no echo, no line editing, no CR/LF mapping
            opened.extend((m, s))
            return m, s

        def close(self, fd):
            os.close(fd)
            opened.remove(fd)

    yield Fds()
    for fd in opened:
        try:
            os.close(fd)
        except OSError:
            pass


@pytest.fixture(params=["pipe", "pty master->slave", "pty slave->master"])
def line(request, fds):
    """(write fd, read fd) of a pipe or of a raw pty pair in either direction."""
    if request.param == "pipe":
        r, w = fds.pipe()
        return w, r
    m, s = fds.pty()
    return (m, s) if request.param == "pty master->slave" else (s, m)


def fill_pipe(w):
    """Write into pipe w until it is full; returns what was written. Leaves w's blocking mode."""
    was_blocking = os.get_blocking(w)
    os.set_blocking(w, False)
    filled = bytearray()
    chunk = bytes(range(256)) * 16
    try:
        while True:
            filled += chunk[: os.write(w, chunk)]
    except BlockingIOError:
        pass
    finally:
        os.set_blocking(w, was_blocking)
    return bytes(filled)


class Alarm(Exception):
    pass


@contextmanager
def signal_after(seconds, how, sig=signal.SIGUSR1):
    """Raise Alarm (or KeyboardInterrupt for SIGINT) in the main thread about `seconds` from now.

    how="thread": the signal goes to a helper thread, so no system call of the main thread is
    interrupted and only the engine's own periodic signal check can notice it.
    how="process": the signal goes to the process (Linux delivers it to the main thread: EINTR).
    """
    def raise_alarm(signum, frame):
        raise Alarm

    old = signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else raise_alarm)

    def fire():
        if how == "thread":
            signal.pthread_kill(threading.get_ident(), sig)
        else:
            os.kill(os.getpid(), sig)

    timer = threading.Timer(seconds, fire)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()
        signal.signal(sig, old)


# --- now_ns --------------------------------------------------------------------------------------
def test_now_ns_is_clock_monotonic_in_integer_ns():
    for _ in range(1000):
        a = time.monotonic_ns()
        b = _clock.now_ns()
        c = time.monotonic_ns()
        assert type(b) is int
        assert a <= b <= c  # the same clock (CLOCK_MONOTONIC), in the same unit


def test_now_ns_never_goes_back():
    t = np.array([_clock.now_ns() for _ in range(100_000)], dtype=np.int64)
    assert (np.diff(t) >= 0).all()


# --- sleep_until ---------------------------------------------------------------------------------
def test_sleep_until_never_wakes_early_and_is_precise(record_property):
    rng = np.random.default_rng(20240601)
    late_returned, late_seen = [], []
    for dt in rng.integers(1 * MS, 3 * MS, 200):
        deadline = _clock.now_ns() + int(dt)
        woke = _clock.sleep_until(deadline)
        after = _clock.now_ns()
        assert deadline <= woke <= after
        late_returned.append(woke - deadline)  # the time it reports
        late_seen.append(after - deadline)     # what the caller sees once it has control again
    us = np.array(late_seen) / 1e3
    figures = {f"p{q}": float(np.percentile(us, q)) for q in (50, 90, 99)} | {"max": float(us.max())}
    record_property("sleep_until_late_us", figures)
    print("sleep_until lateness seen by the caller (µs):", {k: round(v, 1) for k, v in figures.items()})
    assert np.percentile(late_seen, 50) < 1 * MS  # generous: a few µs when the machine is idle


@pytest.mark.parametrize("spin_ns", [0, 50_000, 5 * MS, 50 * MS])
def test_sleep_until_any_spin_never_wakes_early(spin_ns):
    for dt in (0, 1, 100_000, 2 * MS, 7 * MS):
        deadline = _clock.now_ns() + dt
        assert _clock.sleep_until(deadline, spin_ns) >= deadline


@pytest.mark.parametrize("deadline", [INT64_MIN, -1, 0, "past"])
def test_sleep_until_past_deadline_returns_at_once(deadline):
    if deadline == "past":
        deadline = _clock.now_ns() - 1 * S
    t0 = _clock.now_ns()
    woke = _clock.sleep_until(deadline)
    assert woke >= deadline and woke >= t0
    assert woke - t0 < 100 * MS  # at once; only a descheduled thread takes longer


def test_sleep_until_long_sleep_crosses_slices():
    deadline = _clock.now_ns() + 130 * MS  # 50 ms slices, then the last one
    assert _clock.sleep_until(deadline) >= deadline


def test_sleep_until_arguments():
    with pytest.raises(ValueError):
        _clock.sleep_until(0, -1)
    with pytest.raises(TypeError):
        _clock.sleep_until(1.5)  # seconds as float are for the faces, not the engine
    with pytest.raises(OverflowError):
        _clock.sleep_until(2**63)
    assert _clock.sleep_until(np.int64(0)) >= 0


@pytest.mark.parametrize("how", ["thread", "process"])
def test_sleep_until_is_interruptible(how):
    t0 = _clock.now_ns()
    with signal_after(0.1, how), pytest.raises(Alarm):
        _clock.sleep_until(t0 + 30 * S)
    assert _clock.now_ns() - t0 < 100 * MS + GENEROUS


def test_sleep_until_keyboard_interrupt():
    t0 = _clock.now_ns()
    with signal_after(0.1, "thread", signal.SIGINT), pytest.raises(KeyboardInterrupt):
        _clock.sleep_until(t0 + 30 * S)
    assert _clock.now_ns() - t0 < 100 * MS + GENEROUS


# --- schedule ------------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(start=st.integers(-(2**62), 2**62), n=st.integers(0, 3000), interval=st.integers(0, 10**12))
def test_schedule_equals_arange_model(start, n, interval):
    got = _clock.schedule(start, n, interval)
    model = start + np.arange(n, dtype=np.int64) * np.int64(interval)
    assert isinstance(got, np.ndarray) and got.dtype == np.int64 and got.shape == (n,)
    np.testing.assert_array_equal(got, model)


@settings(max_examples=300, deadline=None)
@given(start=st.integers(INT64_MIN, INT64_MAX), n=st.integers(0, 40), interval=st.integers(0, INT64_MAX))
def test_schedule_whole_int64_range_or_overflow_error(start, n, interval):
    exact = [start + k * interval for k in range(n)]  # Python ints: no wrap-around
    if exact and exact[-1] > INT64_MAX:
        with pytest.raises(OverflowError):
            _clock.schedule(start, n, interval)
    else:
        assert _clock.schedule(start, n, interval).tolist() == exact


def test_schedule_arguments():
    with pytest.raises(ValueError):
        _clock.schedule(0, -1, 1)
    with pytest.raises(ValueError):
        _clock.schedule(0, 3, -1)
    with pytest.raises(TypeError):
        _clock.schedule(0.0, 3, 1)


# --- write_paced ---------------------------------------------------------------------------------
def test_write_paced_every_byte_in_order_at_or_after_its_time(line):
    w, r = line
    data = bytes(range(0, 256, 4)) + b"\x00\x03\x11\x13\x7f\xff\r\n"  # control bytes pass raw
    sched = _clock.schedule(_clock.now_ns() + 20 * MS, len(data), 500_000)
    reader = Collector(r, len(data))
    reader.start()
    sent = _clock.write_paced(w, data, sched)
    got, arrived = reader.result()

    assert got == data
    assert sent.dtype == np.int64 and sent.shape == (len(data),)
    assert (sent >= sched).all()
    assert (np.diff(sent) >= 0).all()
    assert np.median(sent - sched) < GENEROUS  # a few µs when idle: see benches
    assert arrived.dtype == np.int64 and arrived.shape == (len(data),)
    assert (np.diff(arrived) >= 0).all()
    # causality, exact: byte i is written after its scheduled time and after byte i-1's send
    # time was taken, so it cannot arrive before either
    assert (arrived >= sched).all()
    assert (arrived[1:] >= sent[:-1]).all()
    # byte i's own send time is taken after its write() returned, and write() returns only after
    # it woke the reader: the reader on the other core often takes its time first (by a few µs,
    # more when the writer is descheduled), so arrived >= sent holds only up to scheduling
    assert (arrived >= sent - GENEROUS).all()


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "uint8", "strided", "uint16", "list"])
def test_write_paced_takes_any_bytes_like(kind, fds):
    r, w = fds.pipe()
    raw = bytes(range(40))
    data = {
        "bytes": raw,
        "bytearray": bytearray(raw),
        "memoryview": memoryview(raw),
        "uint8": np.frombuffer(raw, np.uint8),
        "strided": memoryview(bytes(b for x in raw for b in (x, 0xAA)))[::2],  # not contiguous
        "uint16": np.frombuffer(raw, np.uint16),              # its raw bytes, one time per byte
        "list": list(raw),                                     # not bytes-like
    }[kind]
    times = np.full(len(raw), _clock.now_ns(), np.int64)
    if kind == "list":
        with pytest.raises(TypeError):
            _clock.write_paced(w, data, times)
        return
    sent = _clock.write_paced(w, data, times)
    assert len(sent) == len(raw)
    got, _, _ = _clock.read_timestamped(r, 1000, _clock.now_ns() + 5 * S, idle_ns=0)
    expect = bytes(np.asarray(data).tobytes()) if kind in ("uint8", "uint16") else bytes(data)
    assert got == expect
    if kind == "strided":
        assert got == raw


def test_write_paced_times_as_list_of_ints_and_empty(fds):
    r, w = fds.pipe()
    t = _clock.now_ns()
    assert _clock.write_paced(w, b"ab", [t, t + 1]).tolist() >= [t, t + 1]
    empty = _clock.write_paced(w, b"", [])
    assert empty.dtype == np.int64 and empty.shape == (0,)


def test_write_paced_arguments(fds):
    r, w = fds.pipe()
    t = _clock.now_ns()
    with pytest.raises(ValueError, match="3 times for 2 bytes"):
        _clock.write_paced(w, b"ab", [t, t, t])
    with pytest.raises(ValueError, match="goes back at index 2"):
        _clock.write_paced(w, b"abc", [t, t + 5, t + 4])
    with pytest.raises(TypeError):
        _clock.write_paced(w, b"ab", np.array([t, t], dtype=np.float64))
    with pytest.raises(ValueError):
        _clock.write_paced(w, b"ab", np.array([[t, t]]))
    with pytest.raises(TypeError):
        _clock.write_paced(w, "ab", [t, t])
    with pytest.raises(ValueError):
        _clock.write_paced(w, b"ab", [t, t], spin_ns=-1)
    # nothing of the refused calls was written
    got, _, _ = _clock.read_timestamped(r, 100, _clock.now_ns())
    assert got == b""


@pytest.mark.parametrize("blocking", [False, True])
def test_write_paced_on_a_full_pipe_completes_once_a_reader_drains_it(blocking, fds):
    r, w = fds.pipe()
    filler = fill_pipe(w)
    os.set_blocking(w, blocking)
    data = bytes(range(100))
    reader = Collector(r, len(filler) + len(data))
    timer = threading.Timer(0.1, reader.start)  # the pipe stays full until then
    timer.start()
    try:
        sent = _clock.write_paced(w, data, np.full(len(data), _clock.now_ns(), np.int64))
    finally:
        timer.join()
    got, _ = reader.result()
    assert got == filler + data
    assert sent[0] >= reader.started_ns  # it had to wait for the reader
    assert (np.diff(sent) >= 0).all()


def test_write_paced_fd_with_fileno(fds):
    r, w = fds.pipe()

    class Port:
        def fileno(self):
            return w

    _clock.write_paced(Port(), b"xy", [0, 0])
    assert _clock.read_timestamped(r, 2, _clock.now_ns() + 5 * S)[0] == b"xy"


def test_write_paced_broken_pipe_raises_with_errno(fds):
    r, w = fds.pipe()
    fds.close(r)
    with pytest.raises(OSError) as e:
        _clock.write_paced(w, b"abc", [0, 0, 0])
    assert e.value.errno == errno.EPIPE
    assert e.value.sent_times_ns.tolist() == []


def test_write_paced_bad_fd_raises_ebadf(fds):
    r, w = fds.pipe()
    fds.close(w)
    with pytest.raises(OSError) as e:
        _clock.write_paced(w, b"a", [0])
    assert e.value.errno == errno.EBADF


def test_write_paced_pty_master_whose_slave_closed_raises_eio_once_full(fds):
    """A hung-up pty takes bytes until its buffer is full and nobody will drain it: EIO, no busy wait."""
    m, s = fds.pty()
    fds.close(s)
    os.set_blocking(m, False)
    data = bytes(200_000)
    with pytest.raises(OSError) as e:
        _clock.write_paced(m, data, np.zeros(len(data), np.int64))
    assert e.value.errno == errno.EIO
    sent = e.value.sent_times_ns
    assert 0 < len(sent) < len(data) and (np.diff(sent) >= 0).all()


@pytest.mark.parametrize("how", ["thread", "process"])
def test_write_paced_is_interruptible_and_keeps_the_send_times(how, fds):
    r, w = fds.pipe()
    t0 = _clock.now_ns()
    with signal_after(0.1, how), pytest.raises(Alarm) as e:
        _clock.write_paced(w, b"ab", [t0, t0 + 30 * S])
    assert _clock.now_ns() - t0 < 100 * MS + GENEROUS
    assert len(e.value.sent_times_ns) == 1 and e.value.sent_times_ns[0] >= t0


# --- write_at ------------------------------------------------------------------------------------
def test_write_at_starts_at_its_time_and_writes_everything(line):
    w, r = line
    data = bytes(range(256)) * 4
    at = _clock.now_ns() + 20 * MS
    reader = Collector(r, len(data))
    reader.start()
    first = _clock.write_at(w, data, at)
    got, arrived = reader.result()
    assert got == data
    assert first >= at
    assert arrived[0] >= at and (np.diff(arrived) >= 0).all()


@pytest.mark.parametrize("blocking", [False, True])
def test_write_at_larger_than_the_pipe(blocking, fds):
    r, w = fds.pipe()
    os.set_blocking(w, blocking)
    data = np.random.default_rng(1).integers(0, 256, 300_000, dtype=np.uint8)
    reader = Collector(r, len(data))
    reader.start()
    at = _clock.now_ns()
    first = _clock.write_at(w, data, at)
    got, arrived = reader.result()
    assert got == data.tobytes()
    assert first >= at and (np.diff(arrived) >= 0).all()


def test_write_at_on_a_full_pipe_waits_for_the_reader(fds):
    r, w = fds.pipe()
    filler = fill_pipe(w)
    os.set_blocking(w, False)
    reader = Collector(r, len(filler) + 10)
    timer = threading.Timer(0.1, reader.start)
    timer.start()
    try:
        first = _clock.write_at(w, b"0123456789", 0)
    finally:
        timer.join()
    assert reader.result()[0] == filler + b"0123456789"
    assert first >= reader.started_ns


def test_write_at_empty_sleeps_only(fds):
    r, w = fds.pipe()
    at = _clock.now_ns() + 2 * MS
    assert _clock.write_at(w, b"", at) >= at


def test_write_at_errors(fds):
    r, w = fds.pipe()
    fds.close(r)
    with pytest.raises(OSError) as e:
        _clock.write_at(w, b"abc", 0)
    assert e.value.errno == errno.EPIPE and e.value.written == 0


@pytest.mark.parametrize("how", ["thread", "process"])
def test_write_at_on_a_full_pipe_is_interruptible(how, fds):
    r, w = fds.pipe()
    fill_pipe(w)
    os.set_blocking(w, False)  # a blocking write() in the kernel only a signal to this thread ends
    t0 = _clock.now_ns()
    with signal_after(0.1, how), pytest.raises(Alarm) as e:
        _clock.write_at(w, b"abc", 0)
    assert _clock.now_ns() - t0 < 100 * MS + GENEROUS
    assert e.value.written == 0


# --- read_timestamped ----------------------------------------------------------------------------
@pytest.mark.parametrize("blocking", [True, False])
def test_read_returns_at_max_bytes_and_leaves_the_rest(blocking, fds):
    r, w = fds.pipe()
    os.set_blocking(r, blocking)
    data = bytes(range(100))
    os.write(w, data)
    t0 = _clock.now_ns()
    got, times, eof = _clock.read_timestamped(r, 10, t0 + 30 * S)
    assert (got, eof) == (data[:10], False)
    assert times.dtype == np.int64 and len(times) == 10 and (times >= t0).all()
    assert _clock.now_ns() - t0 < GENEROUS  # did not wait for the deadline
    got, times, eof = _clock.read_timestamped(r, 1000, _clock.now_ns() + 30 * S, idle_ns=0)
    assert got == data[10:] and len(times) == 90


def test_read_returns_at_the_deadline_with_nothing(line):
    w, r = line
    deadline = _clock.now_ns() + 50 * MS
    got, times, eof = _clock.read_timestamped(r, 10, deadline)
    back = _clock.now_ns()
    assert (got, times.tolist(), eof) == (b"", [], False)
    assert times.dtype == np.int64
    assert deadline <= back < deadline + GENEROUS


def test_read_returns_at_the_deadline_with_what_it_has(line):
    w, r = line
    os.write(w, b"12345")
    deadline = _clock.now_ns() + 50 * MS
    got, times, eof = _clock.read_timestamped(r, 10, deadline)
    back = _clock.now_ns()
    assert (got, eof) == (b"12345", False)
    assert len(times) == 5 and (np.diff(times) >= 0).all() and (times <= back).all()
    assert deadline <= back < deadline + GENEROUS


def test_read_with_a_past_deadline_takes_what_is_waiting(fds):
    r, w = fds.pipe()
    assert _clock.read_timestamped(r, 10, 0)[0] == b""
    os.write(w, b"abc")
    t0 = _clock.now_ns()
    got, times, eof = _clock.read_timestamped(r, 10, t0 - 1)
    assert (got, eof) == (b"abc", False)
    assert _clock.now_ns() - t0 < GENEROUS


def test_read_idle_ends_the_read_after_the_line_goes_quiet(fds):
    r, w = fds.pipe()
    os.write(w, b"0123456789")
    idle = 50 * MS
    deadline = _clock.now_ns() + 30 * S
    got, times, eof = _clock.read_timestamped(r, 100, deadline, idle_ns=idle)
    back = _clock.now_ns()
    assert (got, eof) == (b"0123456789", False)
    assert back >= times[-1] + idle  # quiet for idle_ns after the last byte
    assert back < times[-1] + idle + GENEROUS


def test_read_idle_after_a_paced_burst(line):
    w, r = line
    data = b"/?!\r\n" * 6
    sched = _clock.schedule(_clock.now_ns() + 20 * MS, len(data), 1 * MS)
    writer_out = {}
    writer = threading.Thread(target=lambda: writer_out.update(sent=_clock.write_paced(w, data, sched)))
    writer.start()
    idle = 500 * MS  # far above the 1 ms gaps, even when a thread is descheduled
    got, times, eof = _clock.read_timestamped(r, 1000, _clock.now_ns() + 30 * S, idle_ns=idle)
    back = _clock.now_ns()
    writer.join(30)
    assert got == data and not eof
    assert (times >= sched).all() and (times[1:] >= writer_out["sent"][:-1]).all()
    assert (np.diff(times) >= 0).all()
    assert times[-1] + idle <= back < times[-1] + idle + GENEROUS


def test_read_idle_waits_for_a_first_byte(fds):
    r, w = fds.pipe()
    deadline = _clock.now_ns() + 80 * MS
    got, _, _ = _clock.read_timestamped(r, 10, deadline, idle_ns=1 * MS)
    assert got == b"" and _clock.now_ns() >= deadline


def test_read_idle_zero_returns_with_the_first_bytes(fds):
    r, w = fds.pipe()
    os.write(w, b"abc")
    t0 = _clock.now_ns()
    got, _, _ = _clock.read_timestamped(r, 10, t0 + 30 * S, idle_ns=0)
    assert got == b"abc" and _clock.now_ns() - t0 < GENEROUS


def test_read_grows_its_buffer_to_max_bytes(fds):
    r, w = fds.pipe()
    data = np.random.default_rng(2).integers(0, 256, 500_000, dtype=np.uint8).tobytes()
    writer = threading.Thread(target=_clock.write_at, args=(w, data, 0))
    writer.start()
    got, times, eof = _clock.read_timestamped(r, len(data), _clock.now_ns() + 30 * S)
    writer.join(30)
    assert got == data and not eof
    assert len(times) == len(data) and (np.diff(times) >= 0).all()


def test_read_eof_on_a_pipe_whose_writer_closed(fds):
    r, w = fds.pipe()
    os.write(w, b"xyz")
    fds.close(w)
    t0 = _clock.now_ns()
    assert _clock.read_timestamped(r, 100, t0 + 30 * S)[::2] == (b"xyz", True)
    got, times, eof = _clock.read_timestamped(r, 100, t0 + 30 * S)
    assert (got, len(times), eof) == (b"", 0, True)
    assert _clock.now_ns() - t0 < GENEROUS  # EOF ends the read, not the deadline


def test_read_eio_on_a_pty_master_whose_slave_closed(fds):
    m, s = fds.pty()
    os.write(s, b"abc")
    fds.close(s)
    t0 = _clock.now_ns()
    got, times, eof = _clock.read_timestamped(m, 100, t0 + 30 * S)  # read() gives EIO: no raise
    assert eof and b"abc".startswith(got) and len(times) == len(got)
    got, times, eof = _clock.read_timestamped(m, 100, t0 + 30 * S)
    assert (got, eof) == (b"", True)
    assert _clock.now_ns() - t0 < GENEROUS


def test_read_hangup_on_a_pty_slave_whose_master_closed(fds):
    m, s = fds.pty()
    fds.close(m)
    t0 = _clock.now_ns()
    got, times, eof = _clock.read_timestamped(s, 100, t0 + 30 * S)
    assert (got, eof) == (b"", True)
    assert _clock.now_ns() - t0 < GENEROUS


def test_read_arguments_and_errors(fds):
    r, w = fds.pipe()
    t0 = _clock.now_ns()
    got, times, eof = _clock.read_timestamped(r, 0, t0 + 30 * S)
    assert (got, times.tolist(), eof) == (b"", [], False) and _clock.now_ns() - t0 < GENEROUS
    with pytest.raises(ValueError):
        _clock.read_timestamped(r, -1, 0)
    with pytest.raises(TypeError):
        _clock.read_timestamped(r, 10, 0.5)
    fds.close(r)
    with pytest.raises(OSError) as e:
        _clock.read_timestamped(r, 10, _clock.now_ns() + 30 * S)
    assert e.value.errno == errno.EBADF


@pytest.mark.parametrize("how", ["thread", "process"])
def test_read_is_interruptible_and_keeps_what_it_read(how, fds):
    r, w = fds.pipe()
    os.write(w, b"xy")
    t0 = _clock.now_ns()
    with signal_after(0.1, how), pytest.raises(Alarm) as e:
        _clock.read_timestamped(r, 10, t0 + 30 * S)
    assert _clock.now_ns() - t0 < 100 * MS + GENEROUS
    assert e.value.data == b"xy" and len(e.value.times_ns) == 2


# --- wait_readable -------------------------------------------------------------------------------
def test_wait_readable_names_the_ready_descriptors_at_once(fds):
    r1, w1 = fds.pipe()
    r2, w2 = fds.pipe()
    os.write(w2, b"x")
    t0 = _clock.now_ns()
    ready, woke = _clock.wait_readable([r1, r2], t0 + 10 * S)
    assert ready == [r2]
    assert t0 <= woke <= _clock.now_ns() < t0 + GENEROUS


def test_wait_readable_wakes_when_data_comes(fds):
    r, w = fds.pipe()
    t = threading.Timer(0.05, os.write, (w, b"x"))
    t.start()
    t0 = _clock.now_ns()
    ready, woke = _clock.wait_readable([r], t0 + 10 * S)
    t.join()
    assert ready == [r]
    assert 50 * MS <= woke - t0 < 50 * MS + GENEROUS


def test_wait_readable_nothing_before_the_deadline_is_empty_and_not_early(fds):
    r, _ = fds.pipe()
    deadline = _clock.now_ns() + 3 * MS  # a millisecond poll() would round this
    ready, woke = _clock.wait_readable([r], deadline)
    assert ready == []
    assert woke >= deadline


def test_wait_readable_reports_a_hang_up(fds):
    r, w = fds.pipe()
    fds.close(w)
    assert _clock.wait_readable([r], _clock.now_ns() + S)[0] == [r]


def test_wait_readable_arguments(fds):
    r, _ = fds.pipe()
    with pytest.raises(ValueError, match="at most 16"):
        _clock.wait_readable([r] * 17, 0)
    with pytest.raises(TypeError, match="deadline_ns"):
        _clock.wait_readable([r], 1.5)


@pytest.mark.parametrize("how", ["thread", "process"])
def test_wait_readable_is_interruptible(how, fds):
    r, _ = fds.pipe()
    t0 = _clock.now_ns()
    with signal_after(0.1, how), pytest.raises(Alarm):
        _clock.wait_readable([r], t0 + 30 * S)
    assert _clock.now_ns() - t0 < 100 * MS + GENEROUS
