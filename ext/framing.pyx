# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The framing engine: even parity, BCC and an incremental IEC 62056-21 framer.

The rules are in docs/framing.md; rig/_framing_model.py is the same machine in plain Python and
the tests hold the two to the same output. Byte loops run without the GIL and create no Python
object per byte: the framer writes finished frames into C arrays and turns them into Frame objects
once per feed().
"""
cimport cython
from libc.stdint cimport uint8_t, int64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memmove, memcpy
import numpy as np
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING

cdef enum:
    SOH = 0x01
    STX = 0x02
    ETX = 0x03
    EOT = 0x04
    ACK = 0x06
    NAK = 0x15
    LF = 0x0A
    CR = 0x0D

KINDS = ("garbage", "request", "identification", "option_select", "ack", "nak", "command", "data")
cdef enum:
    K_GARBAGE, K_REQUEST, K_IDENTIFICATION, K_OPTION_SELECT, K_ACK, K_NAK, K_COMMAND, K_DATA

# Error flags (Frame.errors)
E_PARITY = 1
E_BCC = 2
E_SYNTAX = 4
E_GAP = 8
E_TRUNCATED = 16
cdef enum:
    EF_PARITY = 1
    EF_BCC = 2
    EF_SYNTAX = 4
    EF_GAP = 8
    EF_TRUNCATED = 16

REASONS = ("", "bad character", "excluded character", "field too long", "frame too long",
           "control character", "frame cut short", "character outside any frame")
cdef enum:
    R_NONE, R_BAD, R_EXCLUDED, R_FIELD_LONG, R_FRAME_LONG, R_CONTROL, R_TRUNCATED, R_OUTSIDE

FIELDS = ("", "device address", "manufacturer", "baud character", "escape", "identification",
          "protocol", "mode", "line end", "command letter", "command type", "address", "value",
          "unit", "end of data", "start")
cdef enum:
    F_NONE, F_DEVADDR, F_MANUF, F_BAUD, F_ESC, F_IDENT, F_PROTO, F_MODE, F_LINE_END, F_CMD, \
    F_CMDTYPE, F_ADDR, F_VALUE, F_UNIT, F_END, F_START

cdef enum:
    S_IDLE, S_GARB, S_SLASH, S_REQ_ADDR, S_REQ_CR, S_REQ_LF, S_ID_MANUF, S_ID_BAUD, S_ID_ESC, \
    S_ID_W, S_ID_TEXT, S_ID_LF, S_ACK_SEEN, S_OPT_Z, S_OPT_Y, S_OPT_CR, S_OPT_LF, S_CMD_HEAD, \
    S_BODY, S_BCC_WAIT

cdef enum:  # data-set sub-states inside a block body
    D_ADDR, D_VALUE, D_UNIT, D_END

# Character classes for the data-set checks: 0 ordinary printable, else special.
cdef enum:
    C_PRINT, C_LPAREN, C_RPAREN, C_STAR, C_EXCL_OTHER, C_BANG, C_CRLF, C_CONTROL

cdef uint8_t ODD[256]      # 1 where a byte has an odd number of ones
cdef uint8_t CLASS[256]    # data-set character class of a 7-bit value (8-bit in parity none)

cdef void _init_tables() noexcept:
    cdef int b, x, n
    for b in range(256):
        x = b
        n = 0
        while x:
            n += x & 1
            x >>= 1
        ODD[b] = n & 1
        if b < 0x20 or b > 0x7E:
            CLASS[b] = C_CONTROL
        else:
            CLASS[b] = C_PRINT
    CLASS[LF] = C_CRLF
    CLASS[CR] = C_CRLF
    CLASS[0x28] = C_LPAREN
    CLASS[0x29] = C_RPAREN
    CLASS[0x2A] = C_STAR
    CLASS[0x2F] = C_EXCL_OTHER
    CLASS[0x21] = C_BANG

_init_tables()


# ---------------------------------------------------------------------------------------------
# Parity and BCC

cdef inline int _bcc(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    cdef uint8_t x = 0
    cdef Py_ssize_t i
    for i in range(n):
        x ^= p[i]
    return x & 0x7F


def bcc(const uint8_t[::1] data not None, Py_ssize_t start=0, end=None):
    """Block check character of data[start:end] (XOR of the 7-bit values, IEC 62056-21 §6.2).

    The span is the characters after SOH/STX up to and including ETX/EOT."""
    cdef Py_ssize_t n = data.shape[0]
    cdef Py_ssize_t stop = n if end is None else end
    if start < 0 or stop > n or start > stop:
        raise ValueError(f"span {start}:{stop} outside a buffer of {n} bytes")
    cdef int r
    with nogil:
        r = _bcc(&data[0] + start if n else NULL, stop - start)
    return r


def add_parity(const uint8_t[::1] data not None):
    """The 7-bit characters of data with even parity in bit 7, as bytes (7E1 on the wire)."""
    cdef Py_ssize_t i, n = data.shape[0]
    out = PyBytes_FromStringAndSize(NULL, n)
    cdef uint8_t* o = <uint8_t*>PyBytes_AS_STRING(out)
    cdef uint8_t c
    with nogil:
        for i in range(n):
            c = data[i] & 0x7F
            o[i] = c | (ODD[c] << 7)
    return out


def strip_parity(const uint8_t[::1] data not None):
    """Check even parity and strip it: (7-bit bytes, index of the first bad character or -1)."""
    cdef Py_ssize_t i, n = data.shape[0], bad = -1
    out = PyBytes_FromStringAndSize(NULL, n)
    cdef uint8_t* o = <uint8_t*>PyBytes_AS_STRING(out)
    with nogil:
        for i in range(n):
            if ODD[data[i]] and bad < 0:
                bad = i
            o[i] = data[i] & 0x7F
    return out, bad


def parity_errors(const uint8_t[::1] data not None):
    """Number of characters with odd parity in data."""
    cdef Py_ssize_t i, n = data.shape[0], k = 0
    with nogil:
        for i in range(n):
            k += ODD[data[i]]
    return k


# ---------------------------------------------------------------------------------------------
# Encoders: one per frame kind; 7-bit bytes, or 7E1 wire bytes with parity=True.

cdef bytes _finish(bytearray frame, bint parity):
    return add_parity(frame) if parity else bytes(frame)


cdef bytearray _ascii(str what, object value):
    if isinstance(value, str):
        try:
            return bytearray(value.encode("ascii"))
        except UnicodeEncodeError:
            raise ValueError(f"{what} {value!r} is not ISO/IEC 646 (7-bit ASCII)") from None
    b = bytearray(value)
    for c in b:
        if c > 0x7F:
            raise ValueError(f"{what} {bytes(b)!r} is not ISO/IEC 646 (7-bit ASCII)")
    return b


def encode_request(address="", bint parity=False):
    """IDRequest: / ? [device address] ! CR LF."""
    return _finish(b"/?" + _ascii("device address", address) + b"!\r\n", parity)


def encode_identification(manufacturer, baud_char, identification, escape=None, bint parity=False):
    """IDResponse: / XXX Z [\\W] identification CR LF."""
    f = b"/" + _ascii("manufacturer", manufacturer) + _ascii("baud character", baud_char)
    if escape is not None:
        f += b"\\" + _ascii("escape", escape)
    return _finish(f + _ascii("identification", identification) + b"\r\n", parity)


def encode_option_select(protocol="0", baud_char="0", mode="1", bint parity=False):
    """Option select: ACK V Z Y CR LF."""
    return _finish(b"\x06" + _ascii("protocol", protocol) + _ascii("baud character", baud_char)
                   + _ascii("mode", mode) + b"\r\n", parity)


def encode_ack(bint parity=False):
    return _finish(bytearray(b"\x06"), parity)


def encode_nak(bint parity=False):
    return _finish(bytearray(b"\x15"), parity)


cdef bytes _block(bytearray head, object data, bint partial, bint with_bcc, bint parity):
    if data is not None:
        head += b"\x02" + _ascii("data", data)
    head.append(EOT if partial else ETX)
    if with_bcc:
        head.append(bcc(head, 1))
    return _finish(head, parity)


def encode_command(command, command_type, data=None, bint partial=False, bint parity=False):
    """Command: SOH C D [STX data] ETX|EOT BCC (data None: no STX, as in the break SOH B0 ETX)."""
    return _block(bytearray(b"\x01") + _ascii("command letter", command)
                  + _ascii("command type", command_type), data, partial, True, parity)


def encode_data(data, bint partial=False, bint parity=False, bint with_bcc=True):
    """Data: STX data ETX|EOT BCC (EOT: a partial block, more follow)."""
    return _block(bytearray(b"\x02") + _ascii("data", data), None, partial, with_bcc, parity)


# ---------------------------------------------------------------------------------------------
# Frames

cdef struct FrameRec:
    int kind
    int errors
    int64_t start
    int64_t end
    int64_t data_off      # where its characters are in the arena
    int64_t t_first
    int64_t t_last
    int64_t max_gap
    int64_t parity_errors
    int64_t parity_at
    int syntax_reason
    int syntax_field
    int64_t syntax_at
    int bcc_expected
    int bcc_received


# The FrameRec layout as numpy sees it (Framer.feed_records).
RECORD_DTYPE = np.dtype([
    ("kind", "i4"), ("errors", "i4"), ("start", "i8"), ("end", "i8"), ("data_off", "i8"),
    ("t_first_ns", "i8"), ("t_last_ns", "i8"), ("max_gap_ns", "i8"), ("parity_errors", "i8"),
    ("parity_at", "i8"), ("syntax_reason", "i4"), ("syntax_field", "i4"), ("syntax_at", "i8"),
    ("bcc_expected", "i4"), ("bcc_received", "i4")], align=True)
if RECORD_DTYPE.itemsize != sizeof(FrameRec):
    raise ImportError(f"RECORD_DTYPE is {RECORD_DTYPE.itemsize} bytes, FrameRec {sizeof(FrameRec)}")


@cython.no_gc        # holds one bytes object: no reference cycles possible
@cython.freelist(256)
cdef class Frame:
    """One frame found by the Framer: its kind, byte span in the stream, 7-bit characters,
    timestamps of its first and last characters (-1 when not given) and error flags."""
    cdef FrameRec r
    cdef readonly bytes data

    @property
    def kind_id(self):
        return self.r.kind

    @property
    def errors(self):
        """E_* flags, 0 when the frame is good."""
        return self.r.errors

    @property
    def start(self):
        """Stream offset of the first byte."""
        return self.r.start

    @property
    def end(self):
        """Stream offset after the last byte."""
        return self.r.end

    @property
    def t_first_ns(self):
        return self.r.t_first

    @property
    def t_last_ns(self):
        return self.r.t_last

    @property
    def max_gap_ns(self):
        """Largest gap between two characters."""
        return self.r.max_gap

    @property
    def parity_errors(self):
        return self.r.parity_errors

    @property
    def parity_at(self):
        return self.r.parity_at

    @property
    def syntax_reason(self):
        return self.r.syntax_reason

    @property
    def syntax_field(self):
        return self.r.syntax_field

    @property
    def syntax_at(self):
        return self.r.syntax_at

    @property
    def bcc_expected(self):
        return self.r.bcc_expected

    @property
    def bcc_received(self):
        return self.r.bcc_received


    @property
    def kind(self):
        return KINDS[self.kind_id]

    @property
    def ok(self):
        return self.r.errors == 0 and self.r.kind != K_GARBAGE

    @property
    def partial(self):
        """A block that ends in EOT: more blocks follow."""
        if self.kind_id != K_COMMAND and self.kind_id != K_DATA:
            return False
        cdef Py_ssize_t n = len(self.data)
        return n >= 2 and (self.data[n - 2] == EOT or self.data[n - 1] == EOT)

    def errors_list(self):
        """The errors as short sentences that name what and where (stream offsets)."""
        out = []
        if self.errors & EF_PARITY:
            out.append(f"parity: {self.parity_errors} character(s), first at offset {self.parity_at}")
        if self.errors & EF_BCC:
            out.append(f"bcc: expected 0x{self.bcc_expected:02X}, got 0x{self.bcc_received:02X}")
        if self.errors & EF_SYNTAX:
            where = f" in {FIELDS[self.syntax_field]}" if self.syntax_field else ""
            what = REASONS[self.syntax_reason]
            if self.syntax_reason not in (R_TRUNCATED, R_FRAME_LONG) and 0 <= self.syntax_at - self.start < len(self.data):
                what += f" {chr(self.data[self.syntax_at - self.start])!r}"
            out.append(f"syntax: {what}{where} at offset {self.syntax_at}")
        if self.errors & EF_GAP:
            out.append(f"gap: {self.max_gap_ns / 1e6:.3f} ms between characters exceeds ta")
        return out

    def key(self):
        """Everything the framer reports, as a tuple (differential tests compare these)."""
        return (self.kind, self.start, self.end, self.data, self.errors, self.t_first_ns,
                self.t_last_ns, self.max_gap_ns, self.parity_errors, self.parity_at,
                self.syntax_reason, self.syntax_field, self.syntax_at, self.bcc_expected,
                self.bcc_received)

    def __repr__(self):
        flags = "ok" if self.ok else ",".join(e.split(":")[0] for e in self.errors_list()) or "garbage"
        return f"<Frame {self.kind} {self.start}:{self.end} {self.data!r} {flags}>"


cdef int PARITY_EVEN = 1

cdef class Framer:
    """Incremental framer: feed(chunk, timestamps_ns=None) returns the frames completed so far.

    parity="even": the bytes are 7E1 wire bytes (parity bit 7 checked and stripped);
    parity="none": they are 7-bit characters already (a UART configured 7E1 stripped it).
    Splitting a stream at any byte gives exactly the frames of the whole stream.
    The field limits' defaults are the default profile's [limits] (their one home; a test checks
    they agree); Framer.from_profile(profile) takes a profile's.
    """
    cdef bint check_parity, bcc_on_data
    cdef int64_t ta_ns, pos
    cdef int lim_devaddr, lim_ident, lim_addr, lim_value, lim_unit, frame_max
    # the frame in progress
    cdef int state, sub, flen, head
    cdef uint8_t bccx
    cdef FrameRec cur
    cdef bint in_frame
    # arena of characters: finished frames then the one in progress (from cur.data_off)
    cdef uint8_t* arena
    cdef int64_t arena_len, arena_cap
    cdef FrameRec* done
    cdef Py_ssize_t n_done, cap_done
    cdef bint oom

    def __cinit__(self):
        self.arena_cap = 4096
        self.arena = <uint8_t*>malloc(self.arena_cap)
        self.cap_done = 64
        self.done = <FrameRec*>malloc(self.cap_done * sizeof(FrameRec))
        if self.arena == NULL or self.done == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.arena)
        free(self.done)

    def __init__(self, parity="even", *, int64_t ta_ns=1_500_000_000, bint bcc_on_data=True,
                 int device_address_max=32, int identification_max=16, int address_max=16,
                 int value_max=128, int unit_max=16, int frame_max=4096):
        if parity not in ("even", "none"):
            raise ValueError(f"parity must be 'even' or 'none', got {parity!r}")
        if frame_max < 8:
            raise ValueError(f"frame_max must be at least 8, got {frame_max}")
        self.check_parity = parity == "even"
        self.ta_ns = ta_ns
        self.bcc_on_data = bcc_on_data
        self.lim_devaddr, self.lim_ident = device_address_max, identification_max
        self.lim_addr, self.lim_value, self.lim_unit = address_max, value_max, unit_max
        self.frame_max = frame_max
        self.reset()

    @classmethod
    def from_profile(cls, profile, parity=None):
        """A framer with the profile's limits; parity defaults to 'even' for 7E1 wire bytes."""
        lim = profile.limits
        return cls(parity or ("even" if profile.character.format == "7E1" else "none"),
                   ta_ns=profile.timing.ta_ns, bcc_on_data=profile.protocol.bcc_on_data,
                   device_address_max=lim.device_address_max,
                   identification_max=lim.identification_max, address_max=lim.address_max,
                   value_max=lim.value_max_programming, unit_max=lim.unit_max,
                   frame_max=lim.frame_max)

    def reset(self):
        """Forget any frame in progress; offsets start again at 0."""
        self.state = S_IDLE
        self.pos = 0
        self.in_frame = False
        self.arena_len = 0
        self.n_done = 0

    @property
    def position(self):
        """Stream offset of the next byte to be fed."""
        return self.pos

    @property
    def ack_pending(self):
        """True after an ACK that could still become an option select: the next character, or
        flush() when the line stays quiet, decides."""
        return self.state == S_ACK_SEEN

    @property
    def pending(self):
        """True while a frame is in progress (flush() would end it)."""
        return self.state != S_IDLE

    # -- C helpers (no GIL) -------------------------------------------------------------------
    cdef inline void _begin(self, int kind, int64_t i) noexcept nogil:
        cdef FrameRec* f = &self.cur
        f.kind = kind
        f.errors = 0
        f.start = i
        f.end = i
        f.data_off = self.arena_len
        f.t_first = -1
        f.t_last = -1
        f.max_gap = 0
        f.parity_errors = 0
        f.parity_at = -1
        f.syntax_reason = R_NONE
        f.syntax_field = F_NONE
        f.syntax_at = -1
        f.bcc_expected = -1
        f.bcc_received = -1
        self.bccx = 0
        self.flen = 0
        self.sub = D_ADDR
        self.head = 0
        self.in_frame = True

    cdef inline void _add(self, uint8_t c, uint8_t b, int64_t i, int64_t t) noexcept nogil:
        cdef FrameRec* f = &self.cur
        cdef int64_t gap
        if self.check_parity and ODD[b]:
            f.errors |= EF_PARITY
            f.parity_errors += 1
            if f.parity_at < 0:
                f.parity_at = i
        if t >= 0:
            if f.t_first < 0:
                f.t_first = t
            elif f.kind != K_GARBAGE and f.t_last >= 0:
                gap = t - f.t_last
                if gap > f.max_gap:
                    f.max_gap = gap
                if gap > self.ta_ns:
                    f.errors |= EF_GAP
            f.t_last = t
        self.arena[self.arena_len] = c  # feed() reserved room for every byte of the chunk
        self.arena_len += 1
        f.end = i + 1

    cdef int _reserve(self, int64_t extra) except -1:
        cdef int64_t cap = self.arena_cap
        cdef uint8_t* p
        while cap < self.arena_len + extra:
            cap *= 2
        if cap != self.arena_cap:
            p = <uint8_t*>realloc(self.arena, cap)
            if p == NULL:
                raise MemoryError(f"framer: cannot hold {cap} bytes")
            self.arena = p
            self.arena_cap = cap
        return 0

    cdef Py_ssize_t _body_run(self, const uint8_t* p, Py_ssize_t k, Py_ssize_t n,
                              int64_t base) noexcept nogil:
        """Fast path inside a block body (no timestamps): take characters with good parity that
        keep the data-set syntax, moving between address, value and unit as _dataset() would,
        until anything else comes (a control character, an error); returns where it stopped."""
        cdef Py_ssize_t start = k, stop
        cdef uint8_t x = self.bccx, b, c, mask = 0x7F if self.check_parity else 0xFF
        cdef uint8_t* a = self.arena + self.arena_len - start
        cdef int sub = self.sub, flen = self.flen, cls
        cdef int lim = self.lim_addr if sub == D_ADDR else (self.lim_value if sub == D_VALUE else self.lim_unit)
        stop = k + (self.frame_max - self._flen_frame())
        if stop > n:
            stop = n
        while k < stop:
            b = p[k]
            if ODD[b] and self.check_parity:
                break
            c = b & mask
            cls = CLASS[c]
            if cls == C_PRINT:
                flen += 1
                if flen == lim + 1:
                    self._syntax(R_FIELD_LONG, F_ADDR if sub == D_ADDR else (F_VALUE if sub == D_VALUE else F_UNIT),
                                 base + k)
            elif cls == C_LPAREN and sub == D_ADDR:
                sub = D_VALUE
                flen = 0
                lim = self.lim_value
            elif cls == C_RPAREN and sub != D_ADDR:
                sub = D_ADDR
                flen = 0
                lim = self.lim_addr
            elif cls == C_STAR and sub == D_VALUE:
                sub = D_UNIT
                flen = 0
                lim = self.lim_unit
            elif not (cls == C_CRLF and sub == D_ADDR and flen == 0):
                break
            x ^= c
            a[k] = c
            k += 1
        if k > start:
            self.bccx = x
            self.arena_len += k - start
            self.cur.end = base + k
            self.sub = sub
            self.flen = flen
        return k

    cdef inline void _syntax(self, int reason, int fld, int64_t i) noexcept nogil:
        self.cur.errors |= EF_SYNTAX
        if self.cur.syntax_reason == R_NONE:
            self.cur.syntax_reason = reason
            self.cur.syntax_field = fld
            self.cur.syntax_at = i

    cdef inline void _emit(self) noexcept nogil:
        cdef FrameRec* p
        if self.n_done == self.cap_done:
            p = <FrameRec*>realloc(self.done, 2 * self.cap_done * sizeof(FrameRec))
            if p == NULL:
                self.oom = True
                return
            self.done = p
            self.cap_done *= 2
        self.done[self.n_done] = self.cur
        self.n_done += 1
        self.in_frame = False
        self.state = S_IDLE

    cdef inline void _cut(self, int64_t i) noexcept nogil:
        self.cur.errors |= EF_TRUNCATED
        self._syntax(R_TRUNCATED, F_NONE, i)
        self._emit()

    cdef inline int64_t _flen_frame(self) noexcept nogil:
        return self.arena_len - self.cur.data_off

    cdef inline void _end_block(self, uint8_t c, uint8_t b, int64_t i, int64_t t) noexcept nogil:
        self.bccx ^= c
        self._add(c, b, i, t)
        if self.cur.kind == K_DATA and not self.bcc_on_data:
            self._emit()
        else:
            self.state = S_BCC_WAIT

    cdef inline void _dataset(self, uint8_t c, int64_t i) noexcept nogil:
        cdef int cls = CLASS[c]
        cdef int sub = self.sub
        if sub == D_ADDR:
            if cls == C_PRINT:
                self.flen += 1
                if self.flen > self.lim_addr:
                    self._syntax(R_FIELD_LONG, F_ADDR, i)
            elif cls == C_LPAREN:
                self.sub = D_VALUE
                self.flen = 0
            elif cls == C_CRLF or cls == C_BANG:  # only between data sets
                if self.flen:
                    self._syntax(R_BAD, F_ADDR, i)
                elif cls == C_BANG:
                    self.sub = D_END
            elif cls == C_CONTROL:
                self._syntax(R_CONTROL, F_ADDR, i)
            else:
                self._syntax(R_EXCLUDED, F_ADDR, i)
        elif sub == D_VALUE or sub == D_UNIT:
            if cls == C_PRINT:
                self.flen += 1
                if self.flen > (self.lim_value if sub == D_VALUE else self.lim_unit):
                    self._syntax(R_FIELD_LONG, F_VALUE if sub == D_VALUE else F_UNIT, i)
            elif cls == C_RPAREN:
                self.sub = D_ADDR
                self.flen = 0
            elif cls == C_STAR and sub == D_VALUE:
                self.sub = D_UNIT
                self.flen = 0
            elif cls == C_CONTROL or cls == C_CRLF:
                self._syntax(R_CONTROL, F_VALUE if sub == D_VALUE else F_UNIT, i)
            else:
                self._syntax(R_EXCLUDED, F_VALUE if sub == D_VALUE else F_UNIT, i)
        else:  # D_END: after '!' only the line end may follow
            if cls != C_CRLF:
                self._syntax(R_BAD, F_END, i)

    cdef inline bint _reject(self, int reason, int fld, int64_t i) noexcept nogil:
        self._syntax(reason, fld, i)
        self._emit()
        return False

    cdef bint _line(self, int st, uint8_t c, uint8_t b, int64_t i, int64_t t) noexcept nogil:
        """One character of a request, identification or option select; False: look again."""
        cdef bint alpha = (0x41 <= c <= 0x5A) or (0x61 <= c <= 0x7A)
        cdef bint digit = 0x30 <= c <= 0x39
        cdef int nxt = -1
        cdef int fld
        if st == S_SLASH:
            fld = F_START
            if c == 0x3F:
                self.cur.kind = K_REQUEST
                nxt = S_REQ_ADDR
                self.flen = 0
            elif alpha:
                self.cur.kind = K_IDENTIFICATION
                nxt = S_ID_MANUF
                self.flen = 1
        elif st == S_REQ_ADDR:
            fld = F_DEVADDR
            if c == 0x21:
                nxt = S_REQ_CR
            elif c == 0x20 or digit or alpha:
                if self.flen >= self.lim_devaddr:
                    return self._reject(R_FIELD_LONG, fld, i)
                self.flen += 1
                nxt = S_REQ_ADDR
        elif st == S_ID_MANUF:
            fld = F_MANUF
            if alpha:
                self.flen += 1
                nxt = S_ID_MANUF if self.flen < 3 else S_ID_BAUD
        elif st == S_ID_BAUD:
            fld = F_BAUD
            if digit or (0x41 <= c <= 0x5A):
                nxt = S_ID_ESC
                self.flen = 0
        elif st == S_ID_W:
            fld = F_ESC
            if digit:
                nxt = S_ID_TEXT
        elif st == S_ID_ESC or st == S_ID_TEXT:
            fld = F_IDENT
            if st == S_ID_ESC and c == 0x5C:
                nxt = S_ID_W
            elif c == CR:
                fld = F_LINE_END
                nxt = S_ID_LF
            elif 0x20 <= c <= 0x7E and c != 0x2F and c != 0x21:
                if self.flen >= self.lim_ident:
                    return self._reject(R_FIELD_LONG, fld, i)
                self.flen += 1
                nxt = S_ID_TEXT
        elif st == S_OPT_Z:
            fld = F_BAUD
            if digit:
                nxt = S_OPT_Y
        elif st == S_OPT_Y:
            fld = F_MODE
            if digit:
                nxt = S_OPT_CR
        elif st == S_REQ_CR or st == S_OPT_CR:
            fld = F_LINE_END
            if c == CR:
                nxt = S_REQ_LF if st == S_REQ_CR else S_OPT_LF
        else:  # S_REQ_LF, S_ID_LF, S_OPT_LF
            fld = F_LINE_END
            if c == LF:
                self._add(c, b, i, t)
                self._emit()
                return True
        if nxt < 0:
            return self._reject(R_BAD, fld, i)
        self._add(c, b, i, t)
        self.state = nxt
        return True

    cdef void _step(self, uint8_t b, int64_t i, int64_t t) noexcept nogil:
        cdef uint8_t c = (b & 0x7F) if self.check_parity else b
        cdef int st
        while True:  # a character that ends a frame is looked at again in the new state
            st = self.state
            if st == S_IDLE or st == S_GARB:
                if c == 0x2F or c == SOH or c == STX or c == ACK or c == NAK:
                    if st == S_GARB:
                        self._emit()
                    if c == 0x2F:
                        self._begin(K_GARBAGE, i)
                        self.state = S_SLASH
                    elif c == SOH:
                        self._begin(K_COMMAND, i)
                        self.state = S_CMD_HEAD
                    elif c == STX:
                        self._begin(K_DATA, i)
                        self.state = S_BODY
                    elif c == ACK:
                        self._begin(K_ACK, i)
                        self.state = S_ACK_SEEN
                    else:
                        self._begin(K_NAK, i)
                    self._add(c, b, i, t)
                    if c == NAK:
                        self._emit()
                    return
                if st == S_IDLE:
                    self._begin(K_GARBAGE, i)
                    self._syntax(R_OUTSIDE, F_NONE, i)
                    self.state = S_GARB
                self._add(c, b, i, t)
                if self._flen_frame() >= self.frame_max:
                    self._emit()
                return
            if self._flen_frame() >= self.frame_max:
                self.cur.errors |= EF_TRUNCATED
                self._syntax(R_FRAME_LONG, F_NONE, i)
                self._emit()
                continue
            if st == S_BODY:
                if c == ETX or c == EOT:
                    if c == ETX and (self.sub == D_VALUE or self.sub == D_UNIT):
                        self._syntax(R_BAD, F_END, i)
                    self._end_block(c, b, i, t)
                    return
                if c == SOH or c == STX or c == 0x2F:  # '/' never belongs in a block: a request may start
                    self._cut(i)
                    continue
                self.bccx ^= c
                self._add(c, b, i, t)
                self._dataset(c, i)
                return
            if st == S_BCC_WAIT:
                self._add(c, b, i, t)
                self.cur.bcc_expected = self.bccx & 0x7F
                # without a parity bit to strip, an 8-bit BCC byte is simply wrong
                self.cur.bcc_received = (c & 0x7F) if self.check_parity else c
                if self.cur.bcc_expected != self.cur.bcc_received:
                    self.cur.errors |= EF_BCC
                self._emit()
                return
            if st == S_ACK_SEEN:
                if 0x30 <= c <= 0x39:
                    self.cur.kind = K_OPTION_SELECT
                    self._add(c, b, i, t)
                    self.state = S_OPT_Z
                    return
                self._emit()
                continue
            if st == S_CMD_HEAD:
                if c == STX:
                    self.bccx ^= c
                    self._add(c, b, i, t)
                    if self.head < 2:
                        self._syntax(R_BAD, F_CMDTYPE if self.head else F_CMD, i)
                    self.state = S_BODY
                    self.sub = D_ADDR
                    self.flen = 0
                    return
                if c == ETX or c == EOT:
                    if self.head < 2:
                        self._syntax(R_BAD, F_CMDTYPE if self.head else F_CMD, i)
                    self._end_block(c, b, i, t)
                    return
                if c == SOH or c == 0x2F:
                    self._cut(i)
                    continue
                self.bccx ^= c
                self._add(c, b, i, t)
                if self.head == 0 and not (0x41 <= c <= 0x5A):
                    self._syntax(R_BAD, F_CMD, i)
                elif self.head == 1 and not (0x30 <= c <= 0x39):
                    self._syntax(R_BAD, F_CMDTYPE, i)
                elif self.head >= 2:
                    self._syntax(R_FIELD_LONG, F_CMDTYPE, i)
                self.head += 1
                return
            # request, identification, option select
            if self._line(st, c, b, i, t):
                return

    # -- Python face ----------------------------------------------------------------------------
    cdef list _collect(self):
        """Turn the finished frame records into Frame objects; keep the frame in progress."""
        cdef list out = []
        cdef Py_ssize_t k
        cdef FrameRec* r
        cdef Frame f
        if self.oom:
            self.oom = False
            self.reset()
            raise MemoryError("framer: out of memory while framing; state reset")
        for k in range(self.n_done):
            r = &self.done[k]
            f = Frame.__new__(Frame)
            f.r = r[0]
            f.data = PyBytes_FromStringAndSize(<char*>self.arena + r.data_off, r.end - r.start)
            out.append(f)
        self._compact()
        return out

    cdef void _compact(self):
        """Drop the finished frames; move the frame in progress to the front of the arena."""
        cdef int64_t keep_from, n
        self.n_done = 0
        if self.in_frame:
            keep_from = self.cur.data_off
            n = self.arena_len - keep_from
            if keep_from:
                memmove(self.arena, self.arena + keep_from, n)
            self.cur.data_off = 0
            self.arena_len = n
        else:
            self.arena_len = 0

    cdef int _run(self, const uint8_t[::1] chunk, object timestamps_ns) except -1:
        cdef Py_ssize_t n = chunk.shape[0], k
        cdef const int64_t[::1] ts
        cdef const uint8_t* p
        cdef const int64_t* tp = NULL
        cdef int64_t base = self.pos
        if timestamps_ns is not None:
            ts = timestamps_ns
            if ts.shape[0] != n:
                raise ValueError(f"timestamps_ns has {ts.shape[0]} entries for {n} bytes")
            if n:
                tp = &ts[0]
        if n == 0:
            return 0
        p = &chunk[0]
        self._reserve(n)
        with nogil:
            if tp == NULL:
                k = 0
                while k < n:
                    if self.state == S_BODY and self.sub != D_END:
                        k = self._body_run(p, k, n, base)
                        if k >= n:
                            break
                    self._step(p[k], base + k, -1)
                    k += 1
            else:
                for k in range(n):
                    self._step(p[k], base + k, tp[k])
        self.pos = base + n
        return 0

    def feed(self, const uint8_t[::1] chunk not None, timestamps_ns=None):
        """Feed bytes (bytes, bytearray, memoryview, numpy uint8); returns the finished frames.

        timestamps_ns: one arrival time per byte (any int64 buffer), or None."""
        self._run(chunk, timestamps_ns)
        return self._collect()

    def feed_records(self, const uint8_t[::1] chunk not None, timestamps_ns=None):
        """Like feed(), for bulk analysis without an object per frame: returns (records, chars),
        a numpy array of RECORD_DTYPE (one row per finished frame, the fields of Frame) and the
        7-bit characters of those frames, frame k being chars[data_off[k]:data_off[k] + end[k] - start[k]]."""
        self._run(chunk, timestamps_ns)
        if self.oom:
            self.oom = False
            self.reset()
            raise MemoryError("framer: out of memory while framing; state reset")
        recs = np.empty(self.n_done, RECORD_DTYPE)
        cdef uint8_t[::1] view = recs.view(np.uint8)
        cdef int64_t used = self.cur.data_off if self.in_frame else self.arena_len
        if self.n_done:
            memcpy(&view[0], self.done, self.n_done * sizeof(FrameRec))
        chars = PyBytes_FromStringAndSize(<char*>self.arena, used)
        self._compact()
        return recs, chars

    def flush(self):
        """End of stream (or the line went quiet): finish a lone ACK or a garbage run, and
        report any other frame in progress as cut short."""
        if self.state == S_ACK_SEEN or self.state == S_GARB:
            self._emit()
        elif self.state != S_IDLE:
            self._cut(self.pos)
        return self._collect()

    @property
    def limits(self):
        """The field limits this framer checks, by its constructor's names (value_max is the
        profile's limits.value_max_programming): the defaults must be the default profile's."""
        return {"device_address_max": self.lim_devaddr, "identification_max": self.lim_ident,
                "address_max": self.lim_addr, "value_max": self.lim_value, "unit_max": self.lim_unit,
                "frame_max": self.frame_max}


# ---------------------------------------------------------------------------------------------
# Frames to messages, the hot case in C: the protocol layer passes its classes in, so this module
# knows no message class; it only fills the two fields of a good data frame.

from cpython.object cimport PyObject_GenericSetAttr, PyObject, PyTypeObject
from cpython.ref cimport Py_DECREF
from cpython.unicode cimport PyUnicode_DecodeASCII

cdef extern from "Python.h":
    PyObject* PyType_GenericNew(PyTypeObject* t, PyObject* args, PyObject* kw) except NULL


def to_messages(list frames, data_cls, ack, nak, slow):
    """Messages of a list of frames: a good data frame becomes data_cls(data=text, partial=...)
    built here (fields set as the framer checked them), a good ACK / NAK the object given, and
    any other frame whatever slow(frame) returns."""
    cdef list out = []
    cdef Frame f
    cdef Py_ssize_t n, end
    cdef const char* s
    cdef PyObject* raw
    if not isinstance(data_cls, type):
        raise TypeError("data_cls must be a class")
    for f in frames:
        if f.r.errors == 0 and f.r.kind == K_DATA:
            s = PyBytes_AS_STRING(f.data)
            n = len(f.data)
            end = n - 2 if (s[n - 2] == ETX or s[n - 2] == EOT) else n - 1  # with or without BCC
            raw = PyType_GenericNew(<PyTypeObject*>data_cls, NULL, NULL)  # object.__new__ without the call
            obj = <object>raw
            Py_DECREF(obj)
            PyObject_GenericSetAttr(obj, "data", PyUnicode_DecodeASCII(s + 1, end - 1, NULL))
            PyObject_GenericSetAttr(obj, "partial", s[end] == EOT)
            out.append(obj)
        elif f.r.errors == 0 and f.r.kind == K_ACK:
            out.append(ack)
        elif f.r.errors == 0 and f.r.kind == K_NAK:
            out.append(nak)
        else:
            out.append(slow(f))
    return out


# ---------------------------------------------------------------------------------------------
# Bit errors: wire bytes received against those sent (the electrical cases count them)

cdef extern from *:
    int __builtin_popcount(unsigned int x) nogil


def bit_errors(const uint8_t[::1] received not None, const uint8_t[::1] sent not None):
    """Number of bits that differ between two byte strings of equal length (wire bytes received
    against the wire bytes sent: data and parity bits)."""
    cdef Py_ssize_t i, n = received.shape[0], k = 0
    if sent.shape[0] != n:
        raise ValueError(f"bit_errors: {n} bytes received against {sent.shape[0]} sent; expected equal lengths")
    with nogil:
        for i in range(n):
            k += __builtin_popcount(received[i] ^ sent[i])
    return k


# The characters a data set's fields exclude (IEC 62056-21 §6.3), as the character table has them:
# the one home of the data-set syntax's character set (rig.protocol reads it).
EXCLUDED = bytes([b for b in range(0x20, 0x7F) if CLASS[b] != C_PRINT])
