# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""UART waveform decoder: a scope capture becomes characters, edge times and line measurements.

Pipeline, per sample then per edge (all in C, GIL released, no Python object per sample):

1. comparator with hysteresis (raw thresholds ``lo`` < ``mid`` < ``hi``): the state flips high when a
   sample exceeds ``hi``, low when one falls below ``lo``.  The edge time is the last crossing of
   ``mid`` before the flip, linearly interpolated between the two samples around it (sub-sample).
   The 10 %/90 % crossings around each edge give rise and fall times.
2. glitch filter: two edges closer than ``glitch_ui`` bit times are a glitch; both are dropped and
   the glitch is recorded.
3. start-stop machine driven by the edges: a mark->space edge while idle starts a character; each
   bit is read at its centre, re-synchronised on every edge inside the character; a character whose
   bits are all space including the stop bit is a break, closed by the next space->mark edge.
   A character's ``n_edges`` counts all its edges after the glitch filter (up to 255); its bit-period
   fit (``bit_ns``) and its part of the jitter and bit-width statistics use the first 20 of them; with
   ``keep_edges`` those come out edge by edge with their jitter and bit widths (``take_fit_edges``).

For float32 captures step 1 runs in ext/uart_simd.h (64-sample blocks of compare masks, SIMD chosen
at run time; the same results as the sample loop of ``_run``, which serves the other sample types).
Steps 2 and 3, and the decoder's state, are in ext/uart_sm.h.  The characters stay in one C buffer
until taken (``feed`` returns them each time, or with ``take=False`` keeps them for ``finish``; a
large buffer is handed over to numpy without a copy).

Levels (histogram), thresholds and the bit period (baud auto-detect or refinement of a nominal
baud) come from a prefix of ``analysis_samples`` samples, buffered by the decoder, so the result is
the same however the capture is cut into chunks.  Positions are float64 sample indices inside the
engine; times leave it as integer nanoseconds.
"""
import numpy as np
cimport cython
cimport numpy as cnp
from libc.math cimport floor, fabs, sqrt, ceil, nextafterf, nextafter, INFINITY, HUGE_VAL
from libc.stdlib cimport malloc, realloc, free, calloc
from libc.string cimport memcpy, memset
from libc.stdint cimport int64_t, uint16_t, uint8_t, int8_t, int16_t

cnp.import_array()

ctypedef fused sample_t:
    float
    double
    int16_t
    int8_t

# --- output records and the decoder's state (C: ext/uart_sm.h) ------------------------------------
cdef extern from "uart_sm.h":
    ctypedef struct CharRec "rig_char_t":
        int64_t t_start_ns
        int64_t t_end_ns
        double bit_ns
        uint16_t value
        uint8_t parity_ok
        uint8_t framing_ok
        uint8_t is_break
        uint8_t n_edges
        uint8_t pad0
        uint8_t pad1
    ctypedef struct EdgeRec "rig_edge_t":
        double pos
        int64_t mark
    ctypedef struct GlitchRec "rig_glitch_t":
        double pos
        double width
    ctypedef struct FitRec "rig_fit_t":
        pass
    ctypedef struct St "rig_st_t":
        # configuration
        double fs
        double ns_per_sample
        int64_t t0_ns
        int data_bits
        int parity          # 0 none 1 odd 2 even 3 mark 4 space
        int stop_bits
        int frame_bits
        int mark_high       # raw high level is mark
        double lo, mid, hi, p10, p90
        double g_low, g_high
        double T            # bit period in samples
        double glitch_max   # samples
        int analysis_only   # comparator edges only, into edges[]
        int keep_edges
        # comparator state
        int64_t pos         # absolute index of the next sample
        double prev
        int have_prev
        int state           # raw comparator: 0 low, 1 high
        double last_up_mid, last_dn_mid, last_up10, last_dn90
        int pend_rise, pend_fall
        double rise_t10, fall_t90
        # rise/fall statistics (samples)
        int64_t n_rise, n_fall
        double sum_rise, max_rise, sum_fall, max_fall
        # glitch filter
        int has_pend
        double pend_t
        int pend_logic
        # start-stop machine
        int level           # 1 mark, 0 space (after the glitch filter)
        int in_char, in_break
        # statistics
        double jit_sum2, jit_peak, jit_min, jit_max
        int64_t jit_n
        double sxy, sxx
        double bw_min, bw_max
        int64_t n_false_start, n_parity_err, n_framing_err, n_breaks
        int64_t n_char_parity_err, n_char_framing_err
        double break_min
        # histogram (strided)
        int64_t *hist
        int nbins
        double hmin, hscale
        double vmin, vmax
        # outputs
        CharRec *chars
        Py_ssize_t n_chars, cap_chars
        EdgeRec *edges
        Py_ssize_t n_edges, cap_edges
        GlitchRec *glitches
        Py_ssize_t n_glitches, cap_glitches
        int64_t glitch_count
        FitRec *fits
        Py_ssize_t n_fits
        int64_t chars_out, edges_out
        int oom
    void _chars_free "rig_chars_free"(void* p, size_t nbytes) noexcept nogil
    void _push_edge "rig_push_edge"(St* s, double pos, int mark) noexcept nogil
    void _uart_edge "rig_uart_edge"(St* s, double t, int logic) noexcept nogil
    void _advance "rig_advance"(St* s, double t) noexcept nogil
    void _emit_char "rig_emit_char"(St* s, double t_end, int is_break) noexcept nogil
    void _edges_out "rig_edges_out"(St* s, const double* et, const uint8_t* eh, int ne) noexcept nogil

CHAR_DTYPE = np.dtype([("t_start_ns", "<i8"), ("t_end_ns", "<i8"), ("bit_ns", "<f8"),
                       ("value", "<u2"), ("parity_ok", "u1"), ("framing_ok", "u1"),
                       ("is_break", "u1"), ("n_edges", "u1"), ("pad0", "u1"), ("pad1", "u1")])
EDGE_DTYPE = np.dtype([("pos", "<f8"), ("mark", "<i8")])
GLITCH_DTYPE = np.dtype([("pos", "<f8"), ("width", "<f8")])
# the edges of each character's fit, with the jitter and bit width the decoder works out from them
FIT_DTYPE = np.dtype([("edge", "<i8"), ("char", "<i8"), ("k", "<i8"), ("jitter", "<f8"), ("width", "<f8")])

DEF HSTRIDE = 16


cdef extern from "uart_simd.h":
    ctypedef struct rig_thr_t:
        pass
    ctypedef struct rig_cmp_t:
        double lo, mid, hi, p10, p90, g_low, g_high
        int state, pend_rise, pend_fall
        double lum, ldm, lu10, ld90, rise_t10, fall_t90
        int64_t n_rise, n_fall
        double sum_rise, max_rise, sum_fall, max_fall
        double svmin, svmax
        double prev
        int64_t base
        int64_t* hist
        int64_t nbins
        double hmin, hscale, hvmin, hvmax
    void _cmp_setup "rig_cmp_setup"(rig_cmp_t* c) noexcept nogil
    void _cmp_finish "rig_cmp_finish"(rig_cmp_t* c, const float* x) noexcept nogil
    Py_ssize_t _cmp_f32 "rig_cmp_f32"(rig_cmp_t* c, const float* x, Py_ssize_t i, Py_ssize_t n,
                                      double* et, uint8_t* eh, int* ne, int cap) noexcept nogil
    int _set_simd "rig_uart_set_simd"(int level) noexcept nogil


def _simd_level(int level=-1):
    """Instruction set of the float32 comparator: -1 the best the CPU has, else at most 0 (baseline)
    or 1 (AVX2).  Returns the level in use (for tests and benches)."""
    return _set_simd(level)


DEF EBUF = 1024


cdef void _run_f32(St* s, const float* x, Py_ssize_t n, double vmin, double vmax) noexcept nogil:
    """The comparator of _run for float32 samples, in blocks of 64 (uart_simd.h); same results."""
    cdef rig_cmp_t c
    cdef double et[EBUF]
    cdef uint8_t eh[EBUF]
    cdef int ne = 0
    cdef Py_ssize_t i = 0
    c.lo = s.lo
    c.mid = s.mid
    c.hi = s.hi
    c.p10 = s.p10
    c.p90 = s.p90
    c.g_low = s.g_low
    c.g_high = s.g_high
    c.state = s.state
    c.pend_rise = s.pend_rise
    c.pend_fall = s.pend_fall
    c.lum = s.last_up_mid
    c.ldm = s.last_dn_mid
    c.lu10 = s.last_up10
    c.ld90 = s.last_dn90
    c.rise_t10 = s.rise_t10
    c.fall_t90 = s.fall_t90
    c.n_rise = s.n_rise
    c.n_fall = s.n_fall
    c.sum_rise = s.sum_rise
    c.sum_fall = s.sum_fall
    c.max_rise = s.max_rise
    c.max_fall = s.max_fall
    c.svmin = INFINITY
    c.svmax = -INFINITY
    c.prev = s.prev
    c.base = s.pos
    c.hist = s.hist
    c.nbins = s.nbins
    c.hmin = s.hmin
    c.hscale = s.hscale
    c.hvmin = vmin
    c.hvmax = vmax
    _cmp_setup(&c)
    while i < n:
        i = _cmp_f32(&c, x, i, n, et, eh, &ne, EBUF)
        if ne > EBUF - 64 or i >= n:
            if ne:
                _edges_out(s, et, eh, ne)
            ne = 0
    _cmp_finish(&c, x)
    s.state = c.state
    s.pend_rise = c.pend_rise
    s.pend_fall = c.pend_fall
    s.last_up_mid = c.lum
    s.last_dn_mid = c.ldm
    s.last_up10 = c.lu10
    s.last_dn90 = c.ld90
    s.rise_t10 = c.rise_t10
    s.fall_t90 = c.fall_t90
    s.n_rise = c.n_rise
    s.n_fall = c.n_fall
    s.sum_rise = c.sum_rise
    s.sum_fall = c.sum_fall
    s.max_rise = c.max_rise
    s.max_fall = c.max_fall
    vmin = c.hvmin
    vmax = c.hvmax
    if c.svmin < vmin:
        vmin = c.svmin
    if c.svmax > vmax:
        vmax = c.svmax
    s.vmin = vmin
    s.vmax = vmax
    s.prev = <double>x[n - 1]
    s.pos = s.pos + n


cdef void _run(St* s, const sample_t* x, Py_ssize_t n) noexcept nogil:
    """Comparator over ``n`` samples; its edges go to _edges_out in batches of up to EBUF.

    float32 goes to _run_f32 (64-sample blocks of compare masks, uart_simd.h) after the set-up; this
    sample loop (the reference the masks reproduce) serves float64, int16 and int8."""
    cdef Py_ssize_t i = 0, j, b
    cdef int cnt
    cdef double pv, v, bp, t
    cdef int64_t base = s.pos
    cdef sample_t gl, gh
    cdef double glf, ghf
    # comparator state, thresholds and rise/fall statistics in locals
    cdef int state, pend_rise, pend_fall
    cdef double lo, mid, hi, p10, p90, g_low, g_high
    cdef double lum, ldm, lu10, ld90, rise_t10, fall_t90, vmin, vmax, svmin, svmax
    cdef int64_t n_rise, n_fall
    cdef double sum_rise, max_rise, sum_fall, max_fall
    cdef double hmin, hscale
    cdef int64_t* hist
    cdef Py_ssize_t nbins
    cdef double et[EBUF]
    cdef uint8_t eh[EBUF]
    cdef int ne = 0
    if n <= 0:
        return
    if not s.have_prev:
        v = <double>x[0]
        s.prev = v
        s.have_prev = 1
        s.state = 1 if v > s.mid else 0
        s.last_up_mid = s.last_dn_mid = s.last_up10 = s.last_dn90 = <double>base
        s.vmin = s.vmax = v
    vmin = s.vmin
    vmax = s.vmax
    if sample_t is float:       # the histogram is done in the comparator's pass
        _run_f32(s, x, n, vmin, vmax)
        return
    # strided histogram on absolute index multiple of HSTRIDE
    if s.hist != NULL:
        hist = s.hist
        nbins = s.nbins
        hmin = s.hmin
        hscale = s.hscale
        j = (HSTRIDE - (base % HSTRIDE)) % HSTRIDE
        while j < n:
            v = <double>x[j]
            if v < vmin:
                vmin = v
            if v > vmax:
                vmax = v
            b = <Py_ssize_t>((v - hmin) * hscale)
            if v < hmin or b < 0:
                b = 0
            elif b >= nbins:
                b = nbins - 1
            hist[b] += 1
            j += HSTRIDE
    # conservative guards in the sample type: x < gl implies (double)x < g_low
    if sample_t is double:
        gl = s.g_low
        gh = s.g_high
    else:
        glf = ceil(s.g_low)
        ghf = floor(s.g_high)
        if glf < -40000.0:
            glf = -40000.0
        if ghf > 40000.0:
            ghf = 40000.0
        if glf > 40000.0:
            glf = 40000.0
        if ghf < -40000.0:
            ghf = -40000.0
        if sample_t is int8_t:
            if glf < -128.0:
                glf = -128.0
            if glf > 127.0:
                glf = 127.0
            if ghf > 127.0:
                ghf = 127.0
            if ghf < -128.0:
                ghf = -128.0
        gl = <sample_t>glf     # x < ceil(g) <=> x < g for integers
        gh = <sample_t>ghf     # x > floor(g) <=> x > g
    state = s.state
    pend_rise = s.pend_rise
    pend_fall = s.pend_fall
    lo = s.lo
    mid = s.mid
    hi = s.hi
    p10 = s.p10
    p90 = s.p90
    g_low = s.g_low
    g_high = s.g_high
    lum = s.last_up_mid
    ldm = s.last_dn_mid
    lu10 = s.last_up10
    ld90 = s.last_dn90
    rise_t10 = s.rise_t10
    fall_t90 = s.fall_t90
    n_rise = s.n_rise
    n_fall = s.n_fall
    sum_rise = s.sum_rise
    sum_fall = s.sum_fall
    max_rise = s.max_rise
    max_fall = s.max_fall
    # the samples outside the quiet band come after the histogram's in the reference order: their
    # extremes are kept apart and merged at the end (same result, ties included)
    svmin = INFINITY
    svmax = -INFINITY
    pv = s.prev
    while i < n:
        if state == 0:
            if pv < g_low:
                while i + 16 <= n:              # 16 at a time, branch-free (vectorises)
                    cnt = 0
                    for j in range(16):
                        cnt += x[i + j] >= gl
                    if cnt:
                        break
                    i += 16
                while i < n and x[i] < gl:
                    i += 1
                if i >= n:
                    break
                if i > 0:
                    pv = <double>x[i - 1]
            v = <double>x[i]
            bp = <double>(base + i - 1)
            if v < svmin:
                svmin = v
            if v > svmax:
                svmax = v
            if pv < p10 and v >= p10:
                lu10 = bp + (p10 - pv) / (v - pv)
            if pv < mid and v >= mid:
                lum = bp + (mid - pv) / (v - pv)
            if pend_fall and pv > p10 and v <= p10:
                t = bp + (p10 - pv) / (v - pv) - fall_t90
                pend_fall = 0
                n_fall += 1
                sum_fall += t
                if t > max_fall:
                    max_fall = t
            if v > hi:
                state = 1
                pend_fall = 0
                pend_rise = 1
                rise_t10 = lu10
                if pv < p90 and v >= p90:
                    t = bp + (p90 - pv) / (v - pv) - rise_t10
                    pend_rise = 0
                    n_rise += 1
                    sum_rise += t
                    if t > max_rise:
                        max_rise = t
                et[ne] = lum
                eh[ne] = 1
                ne += 1
                if ne == EBUF:
                    _edges_out(s, et, eh, ne)
                    ne = 0
        else:
            if pv > g_high:
                while i + 16 <= n:
                    cnt = 0
                    for j in range(16):
                        cnt += x[i + j] <= gh
                    if cnt:
                        break
                    i += 16
                while i < n and x[i] > gh:
                    i += 1
                if i >= n:
                    break
                if i > 0:
                    pv = <double>x[i - 1]
            v = <double>x[i]
            bp = <double>(base + i - 1)
            if v < svmin:
                svmin = v
            if v > svmax:
                svmax = v
            if pv > p90 and v <= p90:
                ld90 = bp + (p90 - pv) / (v - pv)
            if pv > mid and v <= mid:
                ldm = bp + (mid - pv) / (v - pv)
            if pend_rise and pv < p90 and v >= p90:
                t = bp + (p90 - pv) / (v - pv) - rise_t10
                pend_rise = 0
                n_rise += 1
                sum_rise += t
                if t > max_rise:
                    max_rise = t
            if v < lo:
                state = 0
                pend_rise = 0
                pend_fall = 1
                fall_t90 = ld90
                if pv > p10 and v <= p10:
                    t = bp + (p10 - pv) / (v - pv) - fall_t90
                    pend_fall = 0
                    n_fall += 1
                    sum_fall += t
                    if t > max_fall:
                        max_fall = t
                et[ne] = ldm
                eh[ne] = 0
                ne += 1
                if ne == EBUF:
                    _edges_out(s, et, eh, ne)
                    ne = 0
        pv = v
        i += 1
    if ne:
        _edges_out(s, et, eh, ne)
    s.state = state
    s.pend_rise = pend_rise
    s.pend_fall = pend_fall
    s.last_up_mid = lum
    s.last_dn_mid = ldm
    s.last_up10 = lu10
    s.last_dn90 = ld90
    s.rise_t10 = rise_t10
    s.fall_t90 = fall_t90
    s.n_rise = n_rise
    s.n_fall = n_fall
    s.sum_rise = sum_rise
    s.sum_fall = sum_fall
    s.max_rise = max_rise
    s.max_fall = max_fall
    if svmin < vmin:
        vmin = svmin
    if svmax > vmax:
        vmax = svmax
    s.vmin = vmin
    s.vmax = vmax
    s.prev = <double>x[n - 1]
    s.pos = base + n


cdef class _OwnedRecords:
    """The characters' buffer of a decoder, handed over whole (no copy): numpy arrays of it keep this
    object as their base; it frees the buffer (ext/uart_sm.h: rig_chars_free) when the last goes."""
    cdef void* p
    cdef Py_ssize_t nbytes, capbytes
    cdef Py_ssize_t shape[1]
    cdef Py_ssize_t strides[1]

    def __getbuffer__(self, Py_buffer* buf, int flags):
        buf.buf = self.p
        buf.obj = self
        buf.len = self.nbytes
        buf.readonly = 0
        buf.itemsize = 1
        buf.format = "B"
        buf.ndim = 1
        self.shape[0] = self.nbytes
        self.strides[0] = 1
        buf.shape = self.shape
        buf.strides = self.strides
        buf.suboffsets = NULL
        buf.internal = NULL

    def __releasebuffer__(self, Py_buffer* buf):
        pass

    def __dealloc__(self):
        _chars_free(self.p, self.capbytes)


cdef object _records(const void* src, Py_ssize_t n, size_t size, object dtype):
    """n C records of `size` bytes as a numpy array of dtype (one copy)."""
    out = np.empty(n, dtype)
    cdef cnp.ndarray a = out
    if n:
        memcpy(cnp.PyArray_DATA(a), src, n * size)
    return out


cdef class UartDecoder:
    """Streaming UART waveform decoder: ``feed(chunk)`` any number of times, then ``finish()``.

    ``feed`` returns the characters completed so far (numpy structured array, CHAR_DTYPE) and
    ``finish`` the rest; concatenated they equal a one-piece decode of the same capture.
    """
    cdef St s
    cdef object _buf
    cdef Py_ssize_t _buf_n
    cdef object _dtype
    cdef readonly object thresholds_given
    cdef readonly double nominal_baud
    cdef readonly bint auto_baud
    cdef readonly Py_ssize_t analysis_samples
    cdef readonly double hysteresis
    cdef readonly double glitch_ui
    cdef readonly object fallback_thresholds
    cdef readonly object levels_raw          # (low, high) raw levels used for thresholds
    cdef readonly str level_source
    cdef readonly bint analysed
    cdef readonly bint finished
    cdef readonly double scale, offset
    cdef readonly str fmt_text

    def __cinit__(self):
        memset(&self.s, 0, sizeof(St))

    def __init__(self, double sample_rate, baud=None, *, int data_bits=7, str parity="E",
                 int stop_bits=1, bint mark_is_high=True, thresholds=None, double hysteresis=1.0 / 6,
                 double glitch_ui=0.35, Py_ssize_t analysis_samples=1 << 20, double scale=1.0,
                 double offset=0.0, fallback_thresholds=None, int64_t t0_ns=0, bint keep_edges=False):
        """sample_rate in Hz; baud: nominal speed, or None / "auto" to detect it.
        thresholds: (low, high) in physical units (value = raw * scale + offset), else set from the
        levels at mid-swing ± ``hysteresis`` × swing.  fallback_thresholds: used when the prefix shows
        no two levels (e.g. the interface option's receiver thresholds).  mark_is_high: polarity in
        physical units.  glitch_ui: pulses shorter than this many bits are glitches."""
        if sample_rate <= 0:
            raise ValueError("sample_rate must be positive")
        if scale == 0:
            raise ValueError("scale must not be zero")
        if not 5 <= data_bits <= 9 or stop_bits not in (1, 2):
            raise ValueError("data_bits must be 5..9 and stop_bits 1 or 2")
        codes = {"N": 0, "O": 1, "E": 2, "M": 3, "S": 4, "NONE": 0, "ODD": 1, "EVEN": 2,
                 "MARK": 3, "SPACE": 4}
        if parity.upper() not in codes:
            raise ValueError(f"parity {parity!r}: expected N, O, E, M or S")
        self.s.fs = sample_rate
        self.s.ns_per_sample = 1e9 / sample_rate
        self.s.t0_ns = t0_ns
        self.s.data_bits = data_bits
        self.s.parity = codes[parity.upper()]
        self.s.stop_bits = stop_bits
        self.s.frame_bits = 1 + data_bits + (1 if self.s.parity else 0) + stop_bits
        self.s.mark_high = 1 if (bool(mark_is_high) == (scale > 0)) else 0
        self.s.keep_edges = keep_edges
        self.scale = scale
        self.offset = offset
        self.fmt_text = f"{data_bits}{'NOEMS'[self.s.parity]}{stop_bits}"
        if baud is None or (isinstance(baud, str) and baud.lower() == "auto") or baud == 0:
            self.auto_baud = True
            self.nominal_baud = 0.0
        else:
            self.auto_baud = False
            self.nominal_baud = float(baud)
            if self.nominal_baud <= 0 or self.nominal_baud * 2 > sample_rate:
                raise ValueError(f"baud {baud} impossible at sample rate {sample_rate} Hz")
        self.thresholds_given = None if thresholds is None else tuple(float(t) for t in thresholds)
        self.fallback_thresholds = None if fallback_thresholds is None else tuple(
            float(t) for t in fallback_thresholds)
        self.hysteresis = hysteresis
        self.glitch_ui = glitch_ui
        self.analysis_samples = max(16, analysis_samples)
        self._buf = None
        self._buf_n = 0
        self.analysed = False
        self.finished = False
        self.s.jit_min = HUGE_VAL
        self.s.jit_max = -HUGE_VAL
        self.s.bw_min = HUGE_VAL
        self.s.bw_max = -HUGE_VAL
        self.s.break_min = HUGE_VAL

    def __dealloc__(self):
        _chars_free(self.s.chars, self.s.cap_chars * sizeof(CharRec))
        free(self.s.edges)
        free(self.s.glitches)
        free(self.s.fits)
        free(self.s.hist)

    # -- thresholds in raw units --------------------------------------------------------------
    cdef _raw(self, double phys):
        return (phys - self.offset) / self.scale

    cdef _set_thresholds(self, double lo, double hi, double lvl_lo, double lvl_hi):
        cdef double sw = lvl_hi - lvl_lo
        self.s.lo = lo
        self.s.hi = hi
        self.s.mid = 0.5 * (lo + hi)
        self.s.p10 = lvl_lo + 0.1 * sw
        self.s.p90 = lvl_lo + 0.9 * sw
        self.s.g_low = min(self.s.p10, self.s.lo, self.s.mid)
        self.s.g_high = max(self.s.p90, self.s.hi, self.s.mid)

    def _analyse(self):
        """Levels, thresholds and bit period from the buffered prefix."""
        buf = self._buf[:self._buf_n]
        lv = levels_from_samples(buf)
        if self.thresholds_given is not None:
            a, b = self._raw(self.thresholds_given[0]), self._raw(self.thresholds_given[1])
            lo, hi = min(a, b), max(a, b)
            if lv is None:
                lv = (lo - (hi - lo), hi + (hi - lo))
            self.level_source = "given thresholds"
        elif lv is not None:
            sw = lv[1] - lv[0]
            mid = 0.5 * (lv[0] + lv[1])
            lo, hi = mid - self.hysteresis * sw, mid + self.hysteresis * sw
            self.level_source = "histogram"
        elif self.fallback_thresholds is not None:
            a, b = self._raw(self.fallback_thresholds[0]), self._raw(self.fallback_thresholds[1])
            lo, hi = min(a, b), max(a, b)
            lv = (lo - (hi - lo), hi + (hi - lo))
            self.level_source = "interface option receiver thresholds"
        else:
            mn = float(buf.min()) if len(buf) else 0.0
            mx = float(buf.max()) if len(buf) else 1.0
            if mx <= mn:
                mx = mn + 1.0
            lv = (mn, mx)
            sw = mx - mn
            lo, hi = mn + (0.5 - self.hysteresis) * sw, mn + (0.5 + self.hysteresis) * sw
            self.level_source = "min/max (no two levels found)"
        self.levels_raw = (float(lv[0]), float(lv[1]))
        self._set_thresholds(lo, hi, lv[0], lv[1])
        # comparator edges of the prefix -> bit period
        self.s.analysis_only = 1
        self._feed_raw(buf)
        pos = np.ascontiguousarray(self.take_edges()["pos"], dtype=np.float64)
        self.s.T = estimate_bit_period(pos, self.s.fs, self.nominal_baud, self.glitch_ui)
        # reset the streaming state and decode the prefix for real
        self.s.analysis_only = 0
        self.s.n_edges = 0
        self.s.edges_out = 0
        self.s.pos = 0
        self.s.have_prev = 0
        self.s.pend_rise = self.s.pend_fall = 0
        self.s.level = 1
        self.s.glitch_max = self.glitch_ui * self.s.T
        self.s.n_rise = self.s.n_fall = 0
        self.s.sum_rise = self.s.sum_fall = self.s.max_rise = self.s.max_fall = 0.0
        # histogram over the whole capture, every HSTRIDE-th sample
        if self._dtype == np.int8:
            self.s.nbins, self.s.hmin, self.s.hscale = 256, -128.0, 1.0
        elif self._dtype == np.int16:
            self.s.nbins, self.s.hmin, self.s.hscale = 65536, -32768.0, 1.0
        else:
            sw = lv[1] - lv[0]
            self.s.nbins = 4096
            self.s.hmin = lv[0] - 0.5 * sw
            self.s.hscale = 4096 / (2.0 * sw)
        self.s.hist = <int64_t*>calloc(self.s.nbins, sizeof(int64_t))
        if self.s.hist == NULL:
            raise MemoryError()
        self.analysed = True
        self._feed_raw(buf)
        self._buf = None

    def _feed_raw(self, arr):
        cdef const float[::1] f32
        cdef const double[::1] f64
        cdef const int16_t[::1] i16
        cdef const int8_t[::1] i8
        cdef Py_ssize_t n = len(arr)
        if n == 0:
            return
        if arr.dtype == np.float32:
            f32 = arr
            with nogil:
                _run(&self.s, &f32[0], n)
        elif arr.dtype == np.float64:
            f64 = arr
            with nogil:
                _run(&self.s, &f64[0], n)
        elif arr.dtype == np.int16:
            i16 = arr
            with nogil:
                _run(&self.s, &i16[0], n)
        else:
            i8 = arr
            with nogil:
                _run(&self.s, &i8[0], n)
        if self.s.oom:
            raise MemoryError("decoder output buffers")

    def feed(self, chunk, bint take=True):
        """Decode one chunk (float32, float64, int16 or int8; other dtypes are converted to
        float64).  Returns the characters completed so far; with take=False None, the characters
        staying in the decoder for a later feed() or finish() (one array for a whole capture, handed
        over without a copy)."""
        if self.finished:
            raise RuntimeError("decoder already finished")
        arr = np.asarray(chunk)
        if arr.ndim != 1:
            arr = arr.reshape(-1)
        if arr.dtype not in (np.float32, np.float64, np.int16, np.int8):
            arr = arr.astype(np.float64)
        if self._dtype is None:
            self._dtype = arr.dtype
        elif arr.dtype != self._dtype:
            arr = arr.astype(self._dtype)
        arr = np.ascontiguousarray(arr)
        if not self.analysed:
            if self._buf is None and len(arr) >= self.analysis_samples:
                # the whole prefix in this chunk: analysed where it is, no copy
                self._buf = arr[:self.analysis_samples]
                self._buf_n = self.analysis_samples
                self._analyse()
                arr = arr[self.analysis_samples:]
                self._feed_raw(arr)
                return self._drain() if take else None
            if self._buf is None:
                self._buf = np.empty(self.analysis_samples, dtype=self._dtype)
            k = min(len(arr), self.analysis_samples - self._buf_n)
            self._buf[self._buf_n:self._buf_n + k] = arr[:k]
            self._buf_n += k
            arr = arr[k:]
            if self._buf_n < self.analysis_samples:
                return self._drain() if take else None
            self._analyse()
        self._feed_raw(arr)
        return self._drain() if take else None

    def finish(self):
        """End of capture: flush the pending edge and the last character; returns the rest."""
        if self.finished:
            return self._drain()
        if not self.analysed:
            if self._buf is None or self._buf_n == 0:
                self.finished = True
                return np.zeros(0, CHAR_DTYPE)
            self._analyse()
        if self.s.has_pend:
            if self.s.keep_edges:
                _push_edge(&self.s, self.s.pend_t, self.s.pend_logic)
            _uart_edge(&self.s, self.s.pend_t, self.s.pend_logic)
            self.s.has_pend = 0
        end = <double>self.s.pos
        _advance(&self.s, end)
        if self.s.in_break:
            self.s.in_break = 0
            _emit_char(&self.s, end, 1)
        self.finished = True
        return self._drain()

    def _drain(self):
        cdef _OwnedRecords own
        if self.s.n_chars >= 32768:     # 1 MiB or more: the buffer itself becomes the array's
            own = _OwnedRecords.__new__(_OwnedRecords)
            own.p = self.s.chars
            own.nbytes = self.s.n_chars * sizeof(CharRec)
            own.capbytes = self.s.cap_chars * sizeof(CharRec)
            out = np.frombuffer(own, dtype=CHAR_DTYPE, count=self.s.n_chars)
            self.s.chars = NULL
            self.s.cap_chars = 0
        else:
            out = _records(self.s.chars, self.s.n_chars, sizeof(CharRec), CHAR_DTYPE)
        self.s.chars_out += self.s.n_chars
        self.s.n_chars = 0
        return out

    def take_edges(self):
        """Edges kept since the last call (keep_edges=True): positions in samples, mark 1/0."""
        out = _records(self.s.edges, self.s.n_edges, sizeof(EdgeRec), EDGE_DTYPE)
        self.s.edges_out += self.s.n_edges
        self.s.n_edges = 0
        return out

    def take_fit_edges(self):
        """The edges each character's fit used, since the last call (keep_edges=True; characters, not
        breaks: its first 20 edges, when it has two or more), FIT_DTYPE: ``edge`` and ``char`` their
        indexes in all the edges (take_edges) and characters (feed, finish) of the capture, ``k`` the
        bit index the start-stop machine was at, ``jitter`` t - k T less the character's mean of it
        (samples), ``width`` samples per bit since the character's previous edge (NaN for its first
        and where no bit centre lies between).  The jitter and bit-width statistics are over these."""
        out = _records(self.s.fits, self.s.n_fits, sizeof(FitRec), FIT_DTYPE)
        self.s.n_fits = 0
        return out

    def take_glitches(self):
        out = _records(self.s.glitches, self.s.n_glitches, sizeof(GlitchRec), GLITCH_DTYPE)
        self.s.n_glitches = 0
        return out

    def histogram(self):
        """(counts, raw value of bin 0, bins per raw unit) of every 16th sample."""
        if self.s.hist == NULL:
            return np.zeros(0, np.int64), 0.0, 1.0
        h = np.empty(self.s.nbins, np.int64)
        cdef cnp.ndarray a = h
        memcpy(cnp.PyArray_DATA(a), self.s.hist, self.s.nbins * sizeof(int64_t))
        return h, self.s.hmin, self.s.hscale

    def stats(self):
        """Raw statistics (positions and durations in samples, levels in raw units)."""
        s = self.s
        return {
            "T": s.T, "lo": s.lo, "mid": s.mid, "hi": s.hi, "p10": s.p10, "p90": s.p90,
            "n_rise": s.n_rise, "sum_rise": s.sum_rise, "max_rise": s.max_rise,
            "n_fall": s.n_fall, "sum_fall": s.sum_fall, "max_fall": s.max_fall,
            "jit_n": s.jit_n, "jit_sum2": s.jit_sum2, "jit_peak": s.jit_peak,
            "jit_min": s.jit_min, "jit_max": s.jit_max, "sxy": s.sxy, "sxx": s.sxx,
            "bw_min": s.bw_min, "bw_max": s.bw_max, "false_starts": s.n_false_start,
            "parity_errors": s.n_parity_err, "framing_errors": s.n_framing_err,
            "char_parity_errors": s.n_char_parity_err, "char_framing_errors": s.n_char_framing_err,
            "breaks": s.n_breaks, "break_min": s.break_min, "glitches": s.glitch_count,
            "vmin": s.vmin, "vmax": s.vmax, "n_samples": s.pos, "fs": s.fs,
            "frame_bits": s.frame_bits, "mark_high_raw": bool(s.mark_high),
        }


# --- prefix analysis (shared with the plain numpy model) -----------------------------------------
cdef void _hist_uniform(const sample_t* x, Py_ssize_t n, double first, double last, const double* edges,
                        int nbins, int64_t* out) noexcept nogil:
    """numpy.histogram's equal-bin path (numpy 2.x), value by value: the same index arithmetic and the
    same one-ulp corrections at the bin edges, so the same counts (every x within [first, last])."""
    cdef Py_ssize_t i
    cdef double v, denom = last - first
    cdef Py_ssize_t k
    for i in range(n):
        v = <double>x[i]
        k = <Py_ssize_t>(((v - first) / denom) * nbins)
        if k == nbins:
            k -= 1
        if v < edges[k]:
            k -= 1
        if v >= edges[k + 1] and k != nbins - 1:
            k += 1
        out[k] += 1


def _histogram(x, int nbins, double mn, double mx):
    """np.histogram(x.astype(np.float64), bins=nbins, range=(mn, mx)) for a contiguous float32,
    float64, int16 or int8 x whose min and max are mn < mx (finite): the same counts and edges,
    without the float64 copy and the block-wise temporaries.  Anything else goes to numpy."""
    cdef const float[::1] f32
    cdef const double[::1] f64
    cdef const int16_t[::1] i16
    cdef const int8_t[::1] i8
    cdef Py_ssize_t n = len(x)
    cdef cnp.ndarray h, e
    if not (np.isfinite(mn) and np.isfinite(mx) and mn < mx and n > 0 and x.ndim == 1
            and x.flags.c_contiguous
            and x.dtype in (np.float32, np.float64, np.int16, np.int8)):
        return np.histogram(x.astype(np.float64), bins=nbins, range=(mn, mx))
    e = np.linspace(mn, mx, nbins + 1, endpoint=True, dtype=np.float64)
    h = np.zeros(nbins, np.int64)
    cdef const double* ep = <const double*>cnp.PyArray_DATA(e)
    cdef int64_t* hp = <int64_t*>cnp.PyArray_DATA(h)
    if x.dtype == np.float32:
        f32 = x
        with nogil:
            _hist_uniform(&f32[0], n, mn, mx, ep, nbins, hp)
    elif x.dtype == np.float64:
        f64 = x
        with nogil:
            _hist_uniform(&f64[0], n, mn, mx, ep, nbins, hp)
    elif x.dtype == np.int16:
        i16 = x
        with nogil:
            _hist_uniform(&i16[0], n, mn, mx, ep, nbins, hp)
    else:
        i8 = x
        with nogil:
            _hist_uniform(&i8[0], n, mn, mx, ep, nbins, hp)
    return h, e


@cython.wraparound(True)
@cython.boundscheck(True)
def levels_from_samples(x, int nbins=1024):
    """(low, high) levels of a two-level capture, or None if it does not show two levels.

    Histogram over [min, max]; Otsu's split; each level is the median of its side.  None when the
    sides are not separated by at least 4 of their spreads (a pure idle line, or noise only)."""
    x = np.asarray(x)
    if len(x) < 4:
        return None
    mn, mx = float(x.min()), float(x.max())
    if not mx > mn:
        return None
    h, edges = _histogram(x, nbins, mn, mx)
    h = h.astype(np.float64)
    c = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(h)
    w1 = w0[-1] - w0
    m0 = np.cumsum(h * c)
    mt = m0[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        mu0 = m0 / w0
        mu1 = (mt - m0) / w1
        between = w0 * w1 * (mu0 - mu1) ** 2
    between[~np.isfinite(between)] = -1
    k = int(np.argmax(between))
    if w0[k] <= 0 or w1[k] <= 0:
        return None

    def median(lo, hi):
        hh = h[lo:hi]
        cs = np.cumsum(hh)
        j = int(np.searchsorted(cs, cs[-1] / 2.0))
        return float(c[lo + j])

    def spread(lo, hi):
        hh = h[lo:hi]
        cc = c[lo:hi]
        m = (hh * cc).sum() / hh.sum()
        return float(np.sqrt((hh * (cc - m) ** 2).sum() / hh.sum()))

    l0, l1 = median(0, k + 1), median(k + 1, nbins)
    s0, s1 = spread(0, k + 1), spread(k + 1, nbins)
    binw = (mx - mn) / nbins
    if l1 - l0 < 4.0 * max(s0, s1, binw) or min(w0[k], w1[k]) < 0.01 * w0[-1]:
        return None
    return (l0, l1)


STANDARD_BAUDS = (110, 150, 300, 600, 1200, 2400, 4800, 9600, 14400, 19200, 28800, 38400, 57600,
                  115200, 230400, 460800, 921600)


@cython.wraparound(True)
@cython.boundscheck(True)
def estimate_bit_period(pos, double fs, double nominal_baud=0.0, double glitch_ui=0.35):
    """Bit period in samples from comparator edge positions.

    With a nominal baud: start there.  Without: the slowest standard speed whose bit grid fits the
    edge intervals about as well as the best does.  Then refine by least squares over the intervals
    that are near whole multiples of the period (so a few per cent of baud error is measured, not
    assumed).  Falls back to the nominal (or 300 Bd) when there are too few edges."""
    pos = np.asarray(pos, dtype=np.float64)
    d = np.diff(pos)
    T0 = fs / nominal_baud if nominal_baud > 0 else 0.0
    if len(d) < 4:
        return T0 if T0 > 0 else fs / 300.0
    if T0 <= 0:
        cands = [fs / b for b in STANDARD_BAUDS if fs / b >= 2.0]
        scores = []
        for T in cands:
            r = d / T
            k = np.rint(r)
            ok = (k >= 1) & (k <= 12) & (np.abs(r - k) < 0.2)
            scores.append(ok.mean())
        best = max(scores)
        T0 = max(T for T, sc in zip(cands, scores) if sc >= 0.9 * best)
    T = T0
    for tol in (0.3, 0.2, 0.15):
        r = d / T
        k = np.rint(r)
        ok = (k >= 1) & (k <= 12) & (np.abs(r - k) < tol)
        if ok.sum() < 2:
            break
        T = d[ok].sum() / k[ok].sum()
    return float(T)
