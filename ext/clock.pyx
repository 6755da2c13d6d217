# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The timing engine: a precise monotonic clock, paced writes and timestamped reads on file descriptors.

Every time is an integer number of nanoseconds of ``CLOCK_MONOTONIC`` (the clock of
``time.monotonic_ns`` on Linux).  The loops run in C without the GIL and create no Python object per
byte; they take the GIL back only to let Python run its signal handlers (so Ctrl-C works):

* between sleep slices of at most 50 ms (a sleep is cut so that the last slice before a deadline
  is at least 25 ms long: taking the GIL never happens just before a deadline);
* after a poll() slice of at most 50 ms that brought nothing, and after a system call that a
  signal interrupted (EINTR).

``sleep_until`` sleeps with ``clock_nanosleep(TIMER_ABSTIME)`` until ``spin_ns`` before the
deadline, then spins on ``clock_gettime`` until the deadline: it never returns before the deadline.

``read_timestamped`` waits with ``ppoll()`` (nanosecond timeout; ``poll()`` would round every
deadline up to the next millisecond) and reads only when poll says POLLIN, at most what is left, so
the descriptor may be blocking.  Writers handle EAGAIN on non-blocking descriptors by polling for
POLLOUT, and retry after EINTR.

An exception raised inside a loop (OSError, or what a signal handler raises) carries what was done
before it, so no recorded time is lost: ``sent_times_ns`` (write_paced), ``written`` (write_at),
``data`` and ``times_ns`` (read_timestamped).
"""
import os

import numpy as np
cimport numpy as cnp
from cpython.exc cimport PyErr_CheckSignals
from cpython.object cimport PyObject_AsFileDescriptor
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.number cimport PyNumber_Index
from libc.stdint cimport int64_t, uint8_t, INT64_MAX
from libc.errno cimport errno, EINTR, EAGAIN, EIO, EBADF, ENOMEM
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy
from posix.time cimport clock_gettime, clock_nanosleep, timespec, CLOCK_MONOTONIC, TIMER_ABSTIME
from posix.types cimport time_t
from posix.signal cimport sigset_t
from posix.unistd cimport read, write

cnp.import_array()

cdef extern from *:
    """
    #include <errno.h>
    /* EAGAIN and EWOULDBLOCK are the same number on Linux, not everywhere */
    static inline int rig_clock_would_block(int e) { return e == EAGAIN || e == EWOULDBLOCK; }
    """
    int _would_block "rig_clock_would_block" (int e) noexcept nogil

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    ctypedef unsigned long nfds_t
    enum: POLLIN
    enum: POLLOUT
    enum: POLLERR
    enum: POLLHUP
    enum: POLLNVAL
    int poll(pollfd *fds, nfds_t nfds, int timeout)
    int ppoll(pollfd *fds, nfds_t nfds, const timespec *timeout, const sigset_t *sigmask)

cdef enum:
    NS = 1000000000
    SLICE_NS = 50000000      # longest wait without looking at signals
    SLICE_MS = 50
    MARGIN_NS = 25000000     # shortest last slice before a deadline
    FIRST_CAP = 4096         # first buffer of read_timestamped; doubles up to max_bytes

# status of a nogil step
cdef enum:
    DONE = 0
    SIGCHECK = 1             # take the GIL, run signal handlers, call again
    FAILED = 2               # errno in the state's err

#: default spin before a deadline (ns): covers the timer slack (50 µs) and a wake-up latency
# Linux lets a thread sleep up to its "timer slack" (50 us by default) past a deadline. 1 us makes
# clock_nanosleep wake close enough that a 50 us spin meets the deadline (p99 ~10 us, measured),
# a quarter of the spin (CPU) needed otherwise. Threads started after this import inherit it.
cdef extern from "<sys/prctl.h>":
    int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5)
    int PR_SET_TIMERSLACK
TIMER_SLACK_NS = 1000
prctl(PR_SET_TIMERSLACK, TIMER_SLACK_NS, 0, 0, 0)
DEFAULT_SPIN_NS = 50_000


cdef int64_t _i64(object v, str name) except? -1:
    """v as int64: integers only (int, numpy integers, __index__), never a float."""
    if type(v) is not int:
        try:
            v = PyNumber_Index(v)
        except TypeError:
            raise TypeError(f"{name} must be an integer (nanoseconds), not {type(v).__name__}") from None
    return v


# --- clock ---------------------------------------------------------------------------------------
cdef inline int64_t _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * NS + ts.tv_nsec


cdef inline int _sleep_abs(int64_t t) noexcept nogil:
    """clock_nanosleep to absolute time t (>= 0); 0 or the error number (EINTR)."""
    cdef timespec ts
    ts.tv_sec = <time_t>(t // NS)
    ts.tv_nsec = t % NS
    return clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL)


cdef int _sleep_step(int64_t deadline, int64_t spin, int64_t *now_out) noexcept nogil:
    """Wait toward the deadline: DONE with now_out >= deadline, or SIGCHECK after a slice.

    Calling it again after SIGCHECK continues the wait; a deadline already passed is DONE at once.
    """
    cdef int64_t now = _now()
    cdef int64_t target, remaining, stop
    while now < deadline:
        target = deadline - spin        # no overflow: deadline > now >= 0 and 0 <= spin
        remaining = target - now
        if remaining > SLICE_NS:
            # an intermediate slice; leaves at least MARGIN_NS for the last one
            stop = remaining - MARGIN_NS
            if stop > SLICE_NS:
                stop = SLICE_NS
            _sleep_abs(now + stop)
            now_out[0] = _now()
            return SIGCHECK
        if remaining > 0:
            if _sleep_abs(target) == EINTR and target - _now() > MARGIN_NS:
                now_out[0] = _now()
                return SIGCHECK
            now = _now()
            continue
        # spin the last spin_ns (in slices too, should spin_ns be long)
        stop = now + SLICE_NS
        while now < deadline and now < stop:
            now = _now()
        if now < deadline:
            now_out[0] = now
            return SIGCHECK
    now_out[0] = now
    return DONE


def now_ns():
    """CLOCK_MONOTONIC now, integer nanoseconds."""
    return _now()


def sleep_until(deadline_ns, spin_ns=DEFAULT_SPIN_NS):
    """Sleep without the GIL until CLOCK_MONOTONIC reaches deadline_ns; return now_ns() at wake.

    clock_nanosleep(TIMER_ABSTIME) until deadline_ns - spin_ns, then spin on clock_gettime until
    the deadline, so the result is always >= deadline_ns.  A deadline in the past returns at once.
    Sleeps in slices of at most 50 ms and runs Python's signal handlers between them, so
    KeyboardInterrupt (or what any handler raises) comes out within about 50 ms.
    """
    cdef int64_t deadline = _i64(deadline_ns, "deadline_ns")
    cdef int64_t spin = _i64(spin_ns, "spin_ns")
    cdef int64_t now
    cdef int st
    if spin < 0:
        raise ValueError(f"spin_ns must be >= 0, not {spin}")
    now = _now()
    if now >= deadline:
        return now
    while True:
        with nogil:
            st = _sleep_step(deadline, spin, &now)
        if st == DONE:
            return now
        PyErr_CheckSignals()


def schedule(start_ns, n, interval_ns):
    """int64 array of start_ns + k * interval_ns for k in range(n) (interval_ns >= 0).

    OverflowError when the last time does not fit in int64.
    """
    cdef Py_ssize_t count = _i64(n, "n")
    cdef Py_ssize_t k
    cdef int64_t start = _i64(start_ns, "start_ns")
    cdef int64_t step = _i64(interval_ns, "interval_ns")
    if count < 0:
        raise ValueError(f"n must be >= 0, not {count}")
    if step < 0:
        raise ValueError(f"interval_ns must be >= 0 (a schedule never goes back), not {step}")
    if count > 0 and <object>start + (count - 1) * <object>step > INT64_MAX:
        raise OverflowError(f"schedule({start}, {count}, {step}) ends beyond int64 nanoseconds")
    out = np.empty(count, dtype=np.int64)
    cdef int64_t[::1] o = out
    with nogil:
        for k in range(count):
            o[k] = start + k * step
    return out


# --- argument helpers ----------------------------------------------------------------------------
cdef object _byte_view(object data):
    """A 1-D C-contiguous memoryview of unsigned bytes over any bytes-like object."""
    if isinstance(data, str):
        raise TypeError("data must be bytes-like, not str")
    mv = memoryview(data)
    if mv.ndim == 1 and mv.format == "B" and mv.c_contiguous:
        return mv
    if mv.c_contiguous:
        try:
            return mv.cast("B")
        except (TypeError, ValueError):
            pass
    return memoryview(mv.tobytes())


cdef object _times_array(object times_ns):
    """times_ns as a C-contiguous 1-D int64 array (integers only: no float seconds here)."""
    arr = np.asarray(times_ns)
    if arr.ndim != 1:
        raise ValueError(f"times_ns must be one-dimensional, not {arr.ndim}-dimensional")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"times_ns must be integer nanoseconds, not {arr.dtype}")
    if arr.dtype.kind == "u" and arr.dtype.itemsize >= 8 and int(arr.max()) > INT64_MAX:
        raise OverflowError("times_ns beyond int64 nanoseconds")
    return np.ascontiguousarray(arr, dtype=np.int64)


cdef inline object _oserror(int err):
    return OSError(err, os.strerror(err))


cdef inline void _attach(object exc, str name, object value):
    try:
        setattr(exc, name, value)
    except Exception:
        pass


# --- writing -------------------------------------------------------------------------------------
cdef int _write_some(int fd, const uint8_t *buf, size_t size, Py_ssize_t *k_out, int *err) noexcept nogil:
    """One write() of up to size bytes that moves at least one: DONE (k_out set), SIGCHECK, FAILED.

    EAGAIN (non-blocking fd): poll for POLLOUT in 50 ms slices and retry.  EINTR: SIGCHECK, then the
    caller retries.  A hang-up (POLLHUP/POLLERR without POLLOUT) while the fd takes nothing more
    is EIO: nobody will ever drain it (a pty master whose slave closed).
    """
    cdef Py_ssize_t k
    cdef int e, r
    cdef int hung_up = 0
    cdef pollfd pfd
    while True:
        k = write(fd, buf, size)
        if k > 0:
            k_out[0] = k
            return DONE
        if k < 0:
            e = errno
            if e == EINTR:
                return SIGCHECK
            if not _would_block(e):
                err[0] = e
                return FAILED
        if hung_up:
            err[0] = EIO
            return FAILED
        pfd.fd = fd
        pfd.events = POLLOUT
        pfd.revents = 0
        r = poll(&pfd, 1, SLICE_MS)
        if r < 0:
            e = errno
            if e == EINTR:
                return SIGCHECK
            err[0] = e
            return FAILED
        if r == 0:
            return SIGCHECK
        if pfd.revents & POLLNVAL:
            err[0] = EBADF
            return FAILED
        if not (pfd.revents & POLLOUT):
            hung_up = 1                 # one more write() tells the error (EPIPE), else EIO


cdef struct Paced:
    int fd
    const uint8_t *buf
    const int64_t *times
    int64_t *out
    Py_ssize_t n
    Py_ssize_t i
    int64_t spin
    int err


cdef int _paced_run(Paced *p) noexcept nogil:
    cdef int64_t now
    cdef Py_ssize_t k
    cdef int st
    while p.i < p.n:
        st = _sleep_step(p.times[p.i], p.spin, &now)   # at once when already past (re-entry)
        if st != DONE:
            return st
        st = _write_some(p.fd, p.buf + p.i, 1, &k, &p.err)
        if st != DONE:
            return st
        p.out[p.i] = _now()
        p.i += 1
    return DONE


def write_paced(fd, data, times_ns, *, spin_ns=DEFAULT_SPIN_NS):
    """Write each byte of data with its own write() at its time in times_ns (int64, non-decreasing).

    Returns the actual send times: now_ns() right after each write() returned (int64 array).
    fd: an int or an object with fileno(); blocking or non-blocking (EAGAIN: poll for POLLOUT).
    ValueError when len(times_ns) != number of bytes or times go back; OSError with errno on
    failure, with .sent_times_ns holding the send times of the bytes that went out before it.
    """
    cdef int cfd = PyObject_AsFileDescriptor(fd)
    cdef int64_t spin = _i64(spin_ns, "spin_ns")
    cdef int st
    cdef Py_ssize_t i
    if spin < 0:
        raise ValueError(f"spin_ns must be >= 0, not {spin}")
    view = _byte_view(data)
    times = _times_array(times_ns)
    cdef const uint8_t[::1] b = view
    cdef const int64_t[::1] t = times
    cdef Py_ssize_t n = b.shape[0]
    if t.shape[0] != n:
        raise ValueError(f"times_ns has {t.shape[0]} times for {n} bytes of data")
    for i in range(1, n):
        if t[i] < t[i - 1]:
            raise ValueError(f"times_ns goes back at index {i}: {t[i - 1]} then {t[i]}")
    out = np.empty(n, dtype=np.int64)
    if n == 0:
        return out
    cdef int64_t[::1] o = out
    cdef Paced p
    p.fd = cfd
    p.buf = &b[0]
    p.times = &t[0]
    p.out = &o[0]
    p.n = n
    p.i = 0
    p.spin = spin
    p.err = 0
    try:
        while True:
            with nogil:
                st = _paced_run(&p)
            if st == DONE:
                return out
            if st == FAILED:
                raise _oserror(p.err)
            PyErr_CheckSignals()
    except BaseException as exc:
        _attach(exc, "sent_times_ns", out[:p.i].copy())
        raise


cdef struct WriteAt:
    int fd
    const uint8_t *buf
    Py_ssize_t n
    Py_ssize_t off
    int64_t at
    int64_t spin
    int64_t first
    int err


cdef int _write_at_run(WriteAt *w) noexcept nogil:
    cdef int64_t now
    cdef Py_ssize_t k
    cdef int st
    st = _sleep_step(w.at, w.spin, &now)
    if st != DONE:
        return st
    while w.off < w.n:
        st = _write_some(w.fd, w.buf + w.off, <size_t>(w.n - w.off), &k, &w.err)
        if st != DONE:
            return st
        if w.off == 0:
            w.first = _now()
        w.off += k
    return DONE


def write_at(fd, data, t_ns, *, spin_ns=DEFAULT_SPIN_NS):
    """Write the whole of data in as few write() calls as possible, starting at t_ns.

    Returns now_ns() right after the first write() that moved bytes (with empty data: the wake
    time).  Non-blocking fds: EAGAIN polls for POLLOUT.  OSError with errno on failure, with
    .written the number of bytes that went out before it.
    """
    cdef int cfd = PyObject_AsFileDescriptor(fd)
    cdef int st
    cdef WriteAt w
    w.spin = _i64(spin_ns, "spin_ns")
    w.at = _i64(t_ns, "t_ns")
    if w.spin < 0:
        raise ValueError(f"spin_ns must be >= 0, not {w.spin}")
    view = _byte_view(data)
    cdef const uint8_t[::1] b = view
    if b.shape[0] == 0:
        return sleep_until(w.at, w.spin)
    w.fd = cfd
    w.buf = &b[0]
    w.n = b.shape[0]
    w.off = 0
    w.first = 0
    w.err = 0
    try:
        while True:
            with nogil:
                st = _write_at_run(&w)
            if st == DONE:
                return w.first
            if st == FAILED:
                raise _oserror(w.err)
            PyErr_CheckSignals()
    except BaseException as exc:
        _attach(exc, "written", w.off)
        raise


# --- reading -------------------------------------------------------------------------------------
cdef struct Reader:
    int fd
    Py_ssize_t max_bytes
    Py_ssize_t n
    Py_ssize_t cap
    uint8_t *buf
    int64_t *times
    int64_t deadline
    int64_t idle
    int64_t last
    int polled
    int eof
    int err


cdef int _grow(Reader *r) noexcept nogil:
    cdef Py_ssize_t cap = r.cap * 2
    cdef void *nb
    cdef void *nt
    if cap > r.max_bytes or cap < r.cap:
        cap = r.max_bytes
    nb = realloc(r.buf, <size_t>cap)
    if nb == NULL:
        return -1
    r.buf = <uint8_t *>nb
    nt = realloc(r.times, <size_t>cap * sizeof(int64_t))
    if nt == NULL:
        return -1
    r.times = <int64_t *>nt
    r.cap = cap
    return 0


cdef int _read_run(Reader *r) noexcept nogil:
    cdef pollfd pfd
    cdef timespec ts
    cdef int64_t now, end, wait
    cdef Py_ssize_t k, j
    cdef int rc, e
    while r.n < r.max_bytes:
        now = _now()
        end = r.deadline
        if r.idle >= 0 and r.n > 0 and r.idle < end - r.last:
            end = r.last + r.idle
        wait = end - now
        if wait <= 0:
            if r.polled:
                return DONE
            wait = 0                    # one look even when the deadline has already passed
        if wait > SLICE_NS:
            wait = SLICE_NS
        ts.tv_sec = <time_t>(wait // NS)
        ts.tv_nsec = wait % NS
        pfd.fd = r.fd
        pfd.events = POLLIN
        pfd.revents = 0
        rc = ppoll(&pfd, 1, &ts, NULL)
        r.polled = 1
        if rc < 0:
            e = errno
            if e == EINTR:
                return SIGCHECK
            r.err = e
            return FAILED
        if rc == 0:
            if wait == SLICE_NS:
                return SIGCHECK         # a whole slice of quiet: let Python look at signals
            continue
        if pfd.revents & POLLNVAL:
            r.err = EBADF
            return FAILED
        if pfd.revents & POLLIN:
            if r.n == r.cap and _grow(r) != 0:
                r.err = ENOMEM
                return FAILED
            k = read(r.fd, r.buf + r.n, <size_t>(r.cap - r.n))
            if k > 0:
                now = _now()
                for j in range(r.n, r.n + k):
                    r.times[j] = now
                r.n += k
                r.last = now
                continue
            if k == 0:
                r.eof = 1
                return DONE
            e = errno
            if e == EINTR:
                return SIGCHECK
            if _would_block(e):
                continue
            if e == EIO:                # a pty master whose slave closed
                r.eof = 1
                return DONE
            r.err = e
            return FAILED
        if pfd.revents & (POLLHUP | POLLERR):
            r.eof = 1
            return DONE
    return DONE


def read_timestamped(fd, max_bytes, deadline_ns, idle_ns=-1):
    """Read until max_bytes arrived, deadline_ns passed, or (idle_ns >= 0, one byte or more
    received) idle_ns passed since the last byte arrived.

    Returns (data: bytes, times: int64 array, one per byte, eof: bool).  Each byte's time is
    now_ns() right after the read() that returned it (the bytes of one read share it).  eof is True
    when the fd reported end of file, EIO (a pty master whose slave closed) or a hang-up: what was
    read is returned, nothing is raised for those.  Waits with ppoll() without the GIL; reads only
    after POLLIN and at most what is left, so the fd may be blocking.  A deadline already passed
    still takes what is waiting at once.  OSError with errno on other failures, with .data and
    .times_ns holding what was read before it.
    """
    cdef int cfd = PyObject_AsFileDescriptor(fd)
    cdef Reader r
    cdef int st
    r.max_bytes = _i64(max_bytes, "max_bytes")
    r.deadline = _i64(deadline_ns, "deadline_ns")
    r.idle = _i64(idle_ns, "idle_ns")
    if r.max_bytes < 0:
        raise ValueError(f"max_bytes must be >= 0, not {r.max_bytes}")
    if r.max_bytes == 0:
        return b"", np.zeros(0, dtype=np.int64), False
    r.fd = cfd
    r.n = 0
    r.cap = min(r.max_bytes, FIRST_CAP)
    r.last = 0
    r.polled = 0
    r.eof = 0
    r.err = 0
    r.buf = <uint8_t *>malloc(<size_t>r.cap)
    r.times = <int64_t *>malloc(<size_t>r.cap * sizeof(int64_t))
    try:
        if r.buf == NULL or r.times == NULL:
            raise MemoryError()
        try:
            while True:
                with nogil:
                    st = _read_run(&r)
                if st == DONE:
                    break
                if st == FAILED:
                    if r.err == ENOMEM:
                        raise MemoryError(f"read_timestamped: no memory for {r.cap * 2} bytes")
                    raise _oserror(r.err)
                PyErr_CheckSignals()
        except BaseException as exc:
            _attach(exc, "data", PyBytes_FromStringAndSize(<char *>r.buf, r.n))
            _attach(exc, "times_ns", _times_out(r.times, r.n))
            raise
        return PyBytes_FromStringAndSize(<char *>r.buf, r.n), _times_out(r.times, r.n), bool(r.eof)
    finally:
        free(r.buf)
        free(r.times)


cdef enum:
    MAX_WAIT_FDS = 16


cdef int _wait_run(pollfd *pfds, int nfds, int64_t deadline, int *ready, int64_t *woke, int *err) noexcept nogil:
    """ppoll until a descriptor is ready or the deadline: DONE (ready = how many), SIGCHECK, FAILED."""
    cdef timespec ts
    cdef int64_t wait
    cdef int rc, i
    while True:
        wait = deadline - _now()
        if wait < 0:
            wait = 0
        if wait > SLICE_NS:
            wait = SLICE_NS
        ts.tv_sec = <time_t>(wait // NS)
        ts.tv_nsec = wait % NS
        for i in range(nfds):
            pfds[i].revents = 0
        rc = ppoll(pfds, <nfds_t>nfds, &ts, NULL)
        woke[0] = _now()
        if rc < 0:
            if errno == EINTR:
                return SIGCHECK
            err[0] = errno
            return FAILED
        if rc > 0 or wait < SLICE_NS:
            ready[0] = rc
            return DONE
        return SIGCHECK             # a whole slice of quiet: let Python look at signals


def wait_readable(fds, deadline_ns):
    """(ready, woke_ns): the descriptors of fds (at most 16) that are readable (or hung up, or
    failed) as soon as one is, or [] when deadline_ns passed first; woke_ns is when ppoll() returned,
    taken without the GIL (what arrived is time-stamped by it, not by when Python got the GIL back).
    Like select.poll, but to the nanosecond (poll() rounds a timeout up to the next millisecond)."""
    cdef pollfd pfds[MAX_WAIT_FDS]
    cdef int nfds = 0, ready = 0, err = 0, st, i
    cdef int64_t deadline = _i64(deadline_ns, "deadline_ns")
    cdef int64_t woke = 0
    fd_list = list(fds)
    if len(fd_list) > MAX_WAIT_FDS:
        raise ValueError(f"wait_readable: at most {MAX_WAIT_FDS} descriptors, got {len(fd_list)}")
    for f in fd_list:
        pfds[nfds].fd = PyObject_AsFileDescriptor(f)
        pfds[nfds].events = POLLIN
        nfds += 1
    while True:
        with nogil:
            st = _wait_run(pfds, nfds, deadline, &ready, &woke, &err)
        if st == DONE:
            break
        if st == FAILED:
            raise _oserror(err)
        PyErr_CheckSignals()
    if ready == 0:
        return [], woke
    return [fd_list[i] for i in range(nfds) if pfds[i].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)], woke


cdef object _times_out(const int64_t *times, Py_ssize_t n):
    out = np.empty(n, dtype=np.int64)
    cdef int64_t[::1] o = out
    if n > 0:
        memcpy(&o[0], times, <size_t>n * sizeof(int64_t))
    return out
