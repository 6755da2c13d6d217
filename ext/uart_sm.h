/* rig._uart (ext/uart.pyx): the decoder's state and, after the comparator, the glitch filter and the
 * start-stop machine, in C.
 *
 * The comparator (uart_simd.h for float32, the sample loop of _run otherwise) hands over its edges in
 * batches: time (float64 sample index) and raw level after.  rig_edges_out runs them through the glitch
 * filter (two edges closer than glitch_max: both dropped, one glitch recorded) and the start-stop
 * machine (a mark->space edge while idle starts a character; each bit is read at its centre,
 * re-synchronised on every edge inside the character; a character whose bits are all space including
 * the stop bit is a break, closed by the next space->mark edge).
 *
 * Results are bit for bit those of the per-edge reference (rig_uart_edge, which finish() also uses for
 * the last edge): the same float64 expressions in the same order.  rig_edges_out differs only in how
 * it gets there: the number of bit centres an edge passes is worked out from the distance in bit
 * periods, and only when that distance is within rounding of a whole number (or not finite) are the
 * centres added up one by one as the reference does; the per-character sums of the fit are kept as the
 * edges come instead of in a first loop over them at the end of the character.
 *
 * rig_edges_out has two builds, baseline and AVX2/BMI/POPCNT, neither with FMA (a * b + c stays two
 * roundings), chosen with the comparator's instruction-set level.
 */
#ifndef RIG_UART_SM_H
#define RIG_UART_SM_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#if defined(__SSE2__) && !defined(RIG_UART_NO_SIMD)
#include <emmintrin.h>
#endif

#define RIG_MAXBITS 16
#define RIG_NCE (RIG_MAXBITS + 4)
/* the machine and what it calls per character are compiled into each build of rig_edges_out */
#if defined(__GNUC__)
#define RIG_SM_INLINE __attribute__((always_inline))
#define RIG_SM_COLD __attribute__((noinline, cold))
#else
#define RIG_SM_INLINE
#define RIG_SM_COLD
#endif

typedef struct {
    int64_t t_start_ns;
    int64_t t_end_ns;
    double bit_ns;
    uint16_t value;
    uint8_t parity_ok;
    uint8_t framing_ok;
    uint8_t is_break;
    uint8_t n_edges;
    uint8_t pad0;
    uint8_t pad1;
} rig_char_t;

typedef struct {
    double pos;
    int64_t mark;
} rig_edge_t;

typedef struct {
    double pos;
    double width;
} rig_glitch_t;

/* keep_edges: one of the edges a character's fit uses (the first RIG_NCE, characters only), with the
   jitter and bit width the decoder works out from it */
typedef struct {
    int64_t edge;        /* index in the kept edges, from the first */
    int64_t chr;         /* index of its character in the characters, from the first */
    int64_t k;           /* the bit index the start-stop machine was at */
    double jitter;       /* t - k T less the character's mean of it (samples) */
    double width;        /* samples per bit since the character's previous edge; NaN: none, or no bit centre between */
} rig_fit_t;

typedef struct {
    /* configuration */
    double fs;
    double ns_per_sample;
    int64_t t0_ns;
    int data_bits;
    int parity;          /* 0 none 1 odd 2 even 3 mark 4 space */
    int stop_bits;
    int frame_bits;
    int mark_high;       /* raw high level is mark */
    double lo, mid, hi, p10, p90;
    double g_low, g_high;
    double T;            /* bit period in samples */
    double glitch_max;   /* samples */
    int analysis_only;   /* comparator edges only, into edges[] */
    int keep_edges;
    /* comparator state */
    int64_t pos;         /* absolute index of the next sample */
    double prev;
    int have_prev;
    int state;           /* raw comparator: 0 low, 1 high */
    double last_up_mid, last_dn_mid, last_up10, last_dn90;
    int pend_rise, pend_fall;
    double rise_t10, fall_t90;
    /* rise/fall statistics (samples) */
    int64_t n_rise, n_fall;
    double sum_rise, max_rise, sum_fall, max_fall;
    /* glitch filter */
    int has_pend;
    double pend_t;
    int pend_logic;
    /* start-stop machine */
    int level;           /* 1 mark, 0 space (after the glitch filter) */
    int in_char, in_break;
    double t_start, next_center;
    int bit_idx;
    unsigned int value;
    unsigned int bits;   /* line level at each bit centre read so far (bit k: bit k of the frame) */
    int par_bit, stop_bad;
    double ce_t[RIG_NCE];
    int ce_k[RIG_NCE];
    double ce_u[RIG_NCE];   /* ce_t - ce_k * T */
    int n_ce;               /* the character's edges so far, all of them (up to 255: n_edges); the first
                               RIG_NCE are kept above and summed below, for its fit and jitter */
    int ce_ksum;            /* sums over the character's kept edges so far, in order */
    double ce_tsum, ce_usum;
    double break_start;
    int64_t att_edge;       /* keep_edges: the index of the character's first edge in the kept edges */
    /* statistics */
    double jit_sum2, jit_peak, jit_min, jit_max;
    int64_t jit_n;
    double sxy, sxx;
    double bw_min, bw_max;
    int64_t n_false_start, n_parity_err, n_framing_err, n_breaks;
    int64_t n_char_parity_err, n_char_framing_err;   /* the same, characters only (breaks left out) */
    double break_min;
    /* histogram (strided) */
    int64_t *hist;
    int nbins;
    double hmin, hscale;
    double vmin, vmax;
    /* outputs */
    rig_char_t *chars;
    Py_ssize_t n_chars, cap_chars;
    rig_edge_t *edges;
    Py_ssize_t n_edges, cap_edges;
    rig_glitch_t *glitches;
    Py_ssize_t n_glitches, cap_glitches;
    int64_t glitch_count;
    rig_fit_t *fits;
    Py_ssize_t n_fits, cap_fits;
    int64_t chars_out, edges_out;   /* characters and edges handed over before those in the buffers */
    int oom;
} rig_st_t;

/* floor(y) as an integer, without a libm call (|y| < 2**62) */
static inline int64_t rig_uart_floor_i64(double y) {
    int64_t k = (int64_t)y;
    return k - ((double)k > y);
}

static inline int64_t rig_ns(const rig_st_t *s, double pos) {
    return rig_uart_floor_i64(pos * s->ns_per_sample + 0.5) + s->t0_ns;
}

/* The characters' buffer: malloc'd, grown by doubling (glibc grows a large block with mremap, no copy);
   rig._uart hands it over to numpy as is at the end of a decode (_OwnedRecords owns it then). */
static void rig_chars_free(void *p, size_t bytes) {
    (void)bytes;
    free(p);
}

static void rig_grow_chars(rig_st_t *s) {
    /* capacity a multiple of 128 records (4 KiB) */
    const Py_ssize_t cap = s->cap_chars ? s->cap_chars * 2 : 2048;
    rig_char_t *p = (rig_char_t *)realloc(s->chars, (size_t)cap * sizeof(rig_char_t));
    if (p == NULL) { s->oom = 1; return; }
    s->chars = p;
    s->cap_chars = cap;
}

static void rig_push_edge(rig_st_t *s, double pos, int mark) {
    if (s->n_edges == s->cap_edges) {
        rig_edge_t *p = (rig_edge_t *)realloc(s->edges, (size_t)(s->cap_edges * 2 + 256) * sizeof(rig_edge_t));
        if (p == NULL) { s->oom = 1; return; }
        s->edges = p;
        s->cap_edges = s->cap_edges * 2 + 256;
    }
    s->edges[s->n_edges].pos = pos;
    s->edges[s->n_edges].mark = mark;
    s->n_edges += 1;
}

static void rig_push_glitch(rig_st_t *s, double pos, double width) {
    s->glitch_count += 1;
    if (s->n_glitches == s->cap_glitches) {
        rig_glitch_t *p = (rig_glitch_t *)realloc(s->glitches,
                                                  (size_t)(s->cap_glitches * 2 + 16) * sizeof(rig_glitch_t));
        if (p == NULL) { s->oom = 1; return; }
        s->glitches = p;
        s->cap_glitches = s->cap_glitches * 2 + 16;
    }
    s->glitches[s->n_glitches].pos = pos;
    s->glitches[s->n_glitches].width = width;
    s->n_glitches += 1;
}

/* keep_edges: the n edges of the character just out that its fit used, with their jitter (edge j's t - k T
   less a, the character's mean of it) and widths: the same expressions as rig_emit_char's */
static RIG_SM_COLD void rig_push_fits(rig_st_t *s, int n, double a) {
    const int64_t c = s->chars_out + s->n_chars - 1;
    int j;
    if (s->n_fits + n > s->cap_fits) {
        rig_fit_t *p = (rig_fit_t *)realloc(s->fits, (size_t)(s->cap_fits * 2 + 256) * sizeof(rig_fit_t));
        if (p == NULL) { s->oom = 1; return; }
        s->fits = p;
        s->cap_fits = s->cap_fits * 2 + 256;
    }
    for (j = 0; j < n; j++) {
        rig_fit_t *f = &s->fits[s->n_fits + j];
        const int dkj = j ? s->ce_k[j] - s->ce_k[j - 1] : 0;
        f->edge = s->att_edge + j;
        f->chr = c;
        f->k = s->ce_k[j];
        f->jitter = s->ce_u[j] - a;
        f->width = dkj > 0 ? (s->ce_t[j] - s->ce_t[j - 1]) / dkj : NAN;
    }
    s->n_fits += n;
}

/* NaN as the module has always written it for a character without a fit: inf - inf worked out at run
   time (the hardware's default NaN, negative on x86), not a NaN constant */
static double rig_nan_inf_minus_inf(void) {
    volatile double inf = HUGE_VAL;
    return inf - inf;
}

static inline int rig_parity_of(unsigned int v, int nbits, int kind) {
    int ones = __builtin_popcount(v & ((1u << nbits) - 1));
    if (kind == 1) return (ones & 1) ^ 1;
    if (kind == 2) return ones & 1;
    if (kind == 3) return 1;
    return 0;
}

/* Bit centres of the start-stop machine: how many of nc, nc + T, (nc + T) + T, ... (T added one at a
   time) are < t, at most rem; *out is the first one not counted.  The reference. */
static inline int rig_centres_exact(double nc, double T, double t, int rem, double *out) {
    int c = 0;
    while (c < rem && nc < t) { c++; nc += T; }
    *out = nc;
    return c;
}

/* The same count, at most 48 (a frame has at most 13 bits), from the distance in bit periods y = (t -
   nc) / T: nc + jT < t <=> j < y, so floor(y) + 1 of them (y > 0), unless y is within the rounding of
   the one-by-one sums (at most 13 additions of T to nc, each off by half an ulp of |nc| + 16 T at most;
   bound taken 16 times larger) of a whole number, or NaN: then one by one. */
static inline int rig_centres_count(double nc, double T, double invT, double t) {
    const double y = (t - nc) * invT;
    if (y > -1.0) {
        if (y < 48.0) {
            const double dl = (fabs(nc) * invT + 16.0) * 0x1p-45;
            const double fl = (double)(int)(y + 1.0) - 1.0;     /* floor(y), y > -1 */
            const double fr = y - fl;
            if (__builtin_expect(fr > dl && fr < 1.0 - dl, 1)) return (int)fl + 1;
        } else {
            return 48;
        }
    } else if (y <= -1.0) {
        return 0;
    }
    {
        double out;
        return rig_centres_exact(nc, T, t, 48, &out);
    }
}

/* nc with T added c times (c <= 13), one at a time; no branch on c */
static inline double rig_centre_at(double nc, double T, int c) {
    int q;
    for (q = 0; q < 13; q++) {
        const double v = nc + T;
        nc = q < c ? v : nc;
    }
    return nc;
}

/* One character out; jitter, per-bit widths and the bit-period fit from its edges (same arithmetic, in
   the same order, as a grid fit for bit_ns then the statistics); with keep_edges, those edges out with
   their jitter and widths (rig_push_fits).  The sums over the edges were taken as
   the edges came (rig_ce_add); the bit widths are worked out here, in edge order, and their extremes
   merged, which keeps the first of equal values as a running update does. */
static inline RIG_SM_INLINE void rig_emit_char(rig_st_t *s, double t_end, int is_break) {
    rig_char_t *r;
    const int n_all = s->n_ce;
    const int n = n_all < RIG_NCE ? n_all : RIG_NCE;     /* the edges kept for the fit */
    int j;
    double kbar, tbar, a, sxy = 0.0, sxx = 0.0, dk;
    if (__builtin_expect(s->n_chars == s->cap_chars, 0)) {
        rig_grow_chars(s);
        if (s->oom) return;
    }
    r = &s->chars[s->n_chars];
    r->t_start_ns = rig_ns(s, s->t_start);
    r->t_end_ns = rig_ns(s, t_end);
    r->value = (uint16_t)s->value;
    r->parity_ok = s->parity != 0 ? (uint8_t)(s->par_bit == rig_parity_of(s->value, s->data_bits, s->parity)) : 1;
    r->framing_ok = s->stop_bad ? 0 : 1;
    r->is_break = (uint8_t)is_break;
    r->n_edges = (uint8_t)(n_all < 255 ? n_all : 255);
    r->pad0 = 0;
    r->pad1 = 0;
    r->bit_ns = rig_nan_inf_minus_inf();
    s->n_parity_err += !r->parity_ok;
    s->n_framing_err += !r->framing_ok;
    s->n_char_parity_err += !r->parity_ok && !is_break;
    s->n_char_framing_err += !r->framing_ok && !is_break;
    if (is_break) {
        s->n_breaks += 1;
        if (t_end - s->t_start < s->break_min) s->break_min = t_end - s->t_start;
    }
    s->n_chars += 1;
    if (n < 2) return;      /* a break has one: the edge it starts at (rig_close_char) */
    kbar = (double)s->ce_ksum;
    kbar /= n;
    tbar = s->ce_tsum / n;
    a = s->ce_usum / n;
    {
        double jit_sum2 = s->jit_sum2, jit_peak = s->jit_peak, jit_min = s->jit_min, jit_max = s->jit_max;
        double wmin = HUGE_VAL, wmax = -HUGE_VAL;
        /* the width per bit between consecutive edges whose bit index moved, in edge order */
        for (j = 1; j < n; j++) {
            const int dkj = s->ce_k[j] - s->ce_k[j - 1];
            const double w = (s->ce_t[j] - s->ce_t[j - 1]) / dkj;
            wmin = dkj > 0 && w < wmin ? w : wmin;
            wmax = dkj > 0 && w > wmax ? w : wmax;
        }
        s->bw_min = wmin < s->bw_min ? wmin : s->bw_min;
        s->bw_max = wmax > s->bw_max ? wmax : s->bw_max;
        for (j = 0; j < n; j++) {
            const double d = s->ce_u[j] - a, ad = fabs(d);
            jit_sum2 += d * d;
            jit_peak = ad > jit_peak ? ad : jit_peak;
            jit_min = d < jit_min ? d : jit_min;
            jit_max = d > jit_max ? d : jit_max;
            dk = s->ce_k[j] - kbar;
            sxy += dk * (s->ce_t[j] - tbar);
            sxx += dk * dk;
        }
        s->jit_sum2 = jit_sum2;
        s->jit_peak = jit_peak;
        s->jit_min = jit_min;
        s->jit_max = jit_max;
    }
    s->jit_n += n;
    if (s->keep_edges) rig_push_fits(s, n, a);
    s->sxy += sxy;
    s->sxx += sxx;
    if (sxx > 0) r->bit_ns = sxy / sxx * s->ns_per_sample;
}

/* The last bit centre of a character has been read: its fields from the sampled bits. */
static inline RIG_SM_INLINE void rig_close_char(rig_st_t *s) {
    const unsigned int bits = s->bits;
    const int db = s->data_bits;
    int k = 1 + db;
    s->in_char = 0;
    s->value = (bits >> 1) & ((1u << db) - 1);
    if (s->parity != 0) {
        s->par_bit = (int)((bits >> k) & 1);
        k += 1;
    } else {
        s->par_bit = 0;
    }
    s->stop_bad = ((~bits) & (((1u << s->frame_bits) - 1) & ~((1u << k) - 1))) ? 1 : 0;
    if (s->stop_bad && s->value == 0 && (s->parity == 0 || s->par_bit == 0) && s->level == 0 && s->n_ce == 1) {
        s->in_break = 1;
        s->break_start = s->t_start;
    } else {
        rig_emit_char(s, s->next_center - 0.5 * s->T, 0);
    }
}

/* Read every bit centre before t at the current line level. */
static inline void rig_advance(rig_st_t *s, double t) {
    int idx, idx0;
    double nc, T;
    if (!s->in_char || !(s->next_center < t)) return;
    idx = s->bit_idx;
    nc = s->next_center;
    T = s->T;
    if (idx == 0) {
        if (s->level == 1) {         /* back at mark before the start bit's centre: false start */
            s->in_char = 0;
            s->n_false_start += 1;
            return;
        }
        idx = 1;                     /* the start bit, space */
        nc += T;
    }
    idx0 = idx;
    idx += rig_centres_exact(nc, T, t, s->frame_bits - idx, &nc);
    s->bits |= ((1u << idx) - 1) & ~((1u << idx0) - 1) & (0u - (unsigned int)s->level);
    s->bit_idx = idx;
    s->next_center = nc;
    if (idx == s->frame_bits) rig_close_char(s);
}

/* An edge of the character in progress: its time and bit index, t - k T, and the running sums. */
static inline void rig_ce_add(rig_st_t *s, double t) {
    const int n = s->n_ce;
    if (n < RIG_NCE) {
        const int k = s->bit_idx;
        const double u = t - k * s->T;
        s->ce_t[n] = t;
        s->ce_k[n] = k;
        s->ce_u[n] = u;
        s->ce_ksum += k;
        s->ce_tsum += t;
        s->ce_usum += u;
    }
    s->n_ce = n + (n < 255);
}

static inline void rig_char_start(rig_st_t *s, double t) {
    s->in_char = 1;
    s->t_start = t;
    s->bit_idx = 0;
    s->next_center = t + 0.5 * s->T;
    s->bits = 0;
    s->value = 0;
    s->par_bit = 0;
    s->stop_bad = 0;
    s->n_ce = 0;
    s->ce_ksum = 0;
    s->ce_tsum = 0.0;
    s->ce_usum = 0.0;
    s->att_edge = s->edges_out + s->n_edges - 1;    /* keep_edges: the edge just kept (finish) */
    rig_ce_add(s, t);
}

/* One edge (after the glitch filter) into the start-stop machine: the reference. */
static void rig_uart_edge(rig_st_t *s, double t, int logic) {
    rig_advance(s, t);
    if (s->in_char) {
        rig_ce_add(s, t);
        s->next_center = t + 0.5 * s->T;
        s->level = logic;
        return;
    }
    if (s->in_break) {
        s->level = logic;
        if (logic == 1) {
            s->in_break = 0;
            rig_emit_char(s, t, 1);
        }
        return;
    }
    s->level = logic;
    if (logic == 0) rig_char_start(s, t);
}

#define RIG_EBUF_MAX 4096

/* rig_centres_count from nc to t without a branch: the count where the distance decides it, else 255
   (then one by one) */
static inline int rig_centres_guess(double nc, double t, double invT) {
    const double y = (t - nc) * invT;
    const double dl = (fabs(nc) * invT + 16.0) * 0x1p-45;
    const double yc = y > -1.0 ? (y < 48.0 ? y : 47.5) : -0.5;     /* NaN: -0.5 */
    const double fl = (double)(int)(yc + 1.0) - 1.0;               /* floor(yc) */
    const double fr = yc - fl;
    const int c = y >= 48.0 ? 48 : (y <= -1.0 ? 0 : (int)fl + 1);
    const int ok = (y > -1.0 && y < 48.0) ? (fr > dl && fr < 1.0 - dl) : (y >= 48.0 || y <= -1.0);
    return ok ? c : 255;
}

/* for every kept edge k, from ct[k - 1] + T/2 (nc0 for k = 0); returns whether there is a 255.  Two at a
   time with SSE2 (every x86-64), the same arithmetic as rig_centres_guess. */
static int rig_centres_pass(const double *ct, int m, double nc0, double half, double invT, uint8_t *cc) {
    int k = 1, bad;
    cc[0] = (uint8_t)rig_centres_guess(nc0, ct[0], invT);
    bad = cc[0] == 255;
#if defined(__SSE2__) && !defined(RIG_UART_NO_SIMD)
    {
        const __m128d vhalf = _mm_set1_pd(half), vinv = _mm_set1_pd(invT), vm1 = _mm_set1_pd(-1.0);
        const __m128d v48 = _mm_set1_pd(48.0), v475 = _mm_set1_pd(47.5), vm05 = _mm_set1_pd(-0.5);
        const __m128d vone = _mm_set1_pd(1.0), v16 = _mm_set1_pd(16.0), veps = _mm_set1_pd(0x1p-45);
        const __m128d vabs = _mm_castsi128_pd(_mm_set1_epi64x(0x7fffffffffffffffLL));
        __m128i badv = _mm_setzero_si128();
        for (; k + 2 <= m; k += 2) {
            const __m128d t = _mm_loadu_pd(ct + k), nc = _mm_add_pd(_mm_loadu_pd(ct + k - 1), vhalf);
            const __m128d y = _mm_mul_pd(_mm_sub_pd(t, nc), vinv);
            const __m128d dl = _mm_mul_pd(_mm_add_pd(_mm_mul_pd(_mm_and_pd(nc, vabs), vinv), v16), veps);
            const __m128d gtm1 = _mm_cmpgt_pd(y, vm1), lt48 = _mm_cmplt_pd(y, v48);
            const __m128d ge48 = _mm_cmpge_pd(y, v48), lem1 = _mm_cmple_pd(y, vm1);
            const __m128d inside = _mm_and_pd(gtm1, lt48);
            const __m128d yc = _mm_or_pd(_mm_or_pd(_mm_and_pd(inside, y), _mm_and_pd(ge48, v475)),
                                         _mm_andnot_pd(_mm_or_pd(inside, ge48), vm05));
            const __m128i iv = _mm_cvttpd_epi32(_mm_add_pd(yc, vone));        /* floor(yc) + 1 */
            const __m128d fr = _mm_sub_pd(yc, _mm_sub_pd(_mm_cvtepi32_pd(iv), vone));
            const __m128d okin = _mm_and_pd(inside, _mm_and_pd(_mm_cmpgt_pd(fr, dl),
                                                               _mm_cmplt_pd(fr, _mm_sub_pd(vone, dl))));
            const __m128d ok = _mm_or_pd(okin, _mm_or_pd(ge48, lem1));
            /* lanes as 64-bit: count, or 48 / 0 outside, or 255 when not decided */
            const __m128i ci = _mm_unpacklo_epi32(iv, _mm_setzero_si128());
            const __m128i c48 = _mm_and_si128(_mm_castpd_si128(ge48), _mm_set1_epi64x(48));
            const __m128i cin = _mm_and_si128(_mm_castpd_si128(inside), ci);
            const __m128i cv = _mm_or_si128(_mm_or_si128(c48, cin),
                                            _mm_andnot_si128(_mm_castpd_si128(ok), _mm_set1_epi64x(255)));
            badv = _mm_or_si128(badv, _mm_andnot_si128(_mm_castpd_si128(ok), _mm_set1_epi64x(1)));
            cc[k] = (uint8_t)_mm_cvtsi128_si32(cv);
            cc[k + 1] = (uint8_t)_mm_cvtsi128_si32(_mm_srli_si128(cv, 8));
        }
        bad |= (_mm_movemask_epi8(_mm_cmpeq_epi32(badv, _mm_setzero_si128())) != 0xFFFF);
    }
#endif
    for (; k < m; k++) {
        const int c = rig_centres_guess(ct[k - 1] + half, ct[k], invT);
        cc[k] = (uint8_t)c;
        bad |= c == 255;
    }
    return bad;
}

/* The comparator's edges of a stretch of samples, in order (raw level eh[k] after each, ne at most
   RIG_EBUF_MAX): glitch filter, then the start-stop machine; the same steps as rig_uart_edge per edge.
   In three passes: the glitch filter (an edge is kept once the next one is at least glitch_max after
   it: when no gap of the stretch is shorter, all but the last are kept as they are); the number of
   bit centres from each kept edge's predecessor (+ T/2) to it, for every edge whether or not a
   character will be in progress there (no branch on the machine's state); then the machine itself,
   which needs only that count at each edge.  Its state in locals, written back around the rare calls
   (character closed, break ended) and at the end. */
static void rig_edges_out(rig_st_t *s, const double *et, const uint8_t *eh, int ne) {
    const int mh = s->mark_high, fb = s->frame_bits;
    const double T = s->T, half = 0.5 * s->T, gmax = s->glitch_max;
    const double invT = (T > 0 && T < HUGE_VAL) ? 1.0 / T : rig_nan_inf_minus_inf();   /* NaN: one by one */
    const unsigned int flip = mh ? 0u : 1u;
    double ct[RIG_EBUF_MAX + 1];
    uint8_t cl[RIG_EBUF_MAX + 1], cc[RIG_EBUF_MAX + 1];
    int k, m = 0, in_char, level, bit_idx, n_ce, ksum;
    int64_t e0;
    double next_center, tsum, usum;
    unsigned int bits;
    if (s->analysis_only) {
        for (k = 0; k < ne; k++) rig_push_edge(s, et[k], (int)(eh[k] ^ flip));
        return;
    }
    if (ne <= 0) return;
    /* 1. glitch filter: the kept edges into ct/cl */
    {
        int short_gap = s->has_pend && et[0] - s->pend_t < gmax;
        for (k = 1; k < ne; k++) short_gap += et[k] - et[k - 1] < gmax;
        if (__builtin_expect(!short_gap, 1)) {
            if (s->has_pend) {
                ct[0] = s->pend_t;
                cl[0] = (uint8_t)s->pend_logic;
                m = 1;
            }
            for (k = 0; k < ne - 1; k++) {
                ct[m + k] = et[k];
                cl[m + k] = (uint8_t)(eh[k] ^ flip);
            }
            m += ne - 1;
            s->has_pend = 1;
            s->pend_t = et[ne - 1];
            s->pend_logic = (int)(eh[ne - 1] ^ flip);
        } else {
            int has_pend = s->has_pend, pend_logic = s->pend_logic;
            double pend_t = s->pend_t;
            for (k = 0; k < ne; k++) {
                const double t = et[k];
                if (has_pend) {
                    if (t - pend_t < gmax) {
                        rig_push_glitch(s, pend_t, t - pend_t);
                        has_pend = 0;
                        continue;
                    }
                    ct[m] = pend_t;
                    cl[m] = (uint8_t)pend_logic;
                    m++;
                }
                has_pend = 1;
                pend_t = t;
                pend_logic = (int)(eh[k] ^ flip);
            }
            s->has_pend = has_pend;
            s->pend_t = pend_t;
            s->pend_logic = pend_logic;
        }
        if (s->keep_edges)
            for (k = 0; k < m; k++) rig_push_edge(s, ct[k], cl[k]);
    }
    if (m == 0) return;
    e0 = s->edges_out + s->n_edges - m;    /* keep_edges: the index of ct[0] in the kept edges */
    /* 2. bit centres passed at each kept edge, counted from the previous one (+ T/2): where a
       character is in progress, the next centre is always the last edge + T/2 */
    if (rig_centres_pass(ct, m, s->next_center, half, invT, cc))
        for (k = 0; k < m; k++)
            if (cc[k] == 255) {
                double out;
                cc[k] = (uint8_t)rig_centres_exact(k ? ct[k - 1] + half : s->next_center, T, ct[k], 48, &out);
            }
    /* 3. the start-stop machine; the character's running sums in locals too (rig_ce_add's arithmetic) */
    in_char = s->in_char;
    level = s->level;
    bit_idx = s->bit_idx;
    next_center = s->next_center;
    bits = s->bits;
    n_ce = s->n_ce;
    ksum = s->ce_ksum;
    tsum = s->ce_tsum;
    usum = s->ce_usum;
#define RIG_CE_ADD(TE) do {                                                                      \
        if (n_ce < RIG_NCE) {                                                                    \
            const double u_ = (TE) - bit_idx * T;                                                \
            s->ce_t[n_ce] = (TE);                                                                \
            s->ce_k[n_ce] = bit_idx;                                                             \
            s->ce_u[n_ce] = u_;                                                                  \
            ksum += bit_idx;                                                                     \
            tsum += (TE);                                                                        \
            usum += u_;                                                                          \
        }                                                                                        \
        n_ce += n_ce < 255; } while (0)
    for (k = 0; k < m; k++) {
        const double te = ct[k];
        const int lg = cl[k];
        if (in_char) {
            const int c = cc[k];
            if (c) {                          /* next_center < te */
                int take;
                if (__builtin_expect(bit_idx == 0 && level == 1, 0)) {   /* back at mark before the start bit's centre */
                    in_char = 0;
                    s->n_false_start += 1;
                    goto idle;
                }
                take = c < fb - bit_idx ? c : fb - bit_idx;
                bits |= ((1u << (bit_idx + take)) - 1) & ~((1u << bit_idx) - 1) & (0u - (unsigned int)level);
                bit_idx += take;
                if (bit_idx == fb) {
                    s->bits = bits;
                    s->level = level;
                    s->bit_idx = bit_idx;
                    s->next_center = rig_centre_at(next_center, T, take);
                    s->n_ce = n_ce;
                    s->ce_ksum = ksum;
                    s->ce_tsum = tsum;
                    s->ce_usum = usum;
                    rig_close_char(s);
                    in_char = 0;
                    goto idle;
                }
            }
            RIG_CE_ADD(te);
            next_center = te + half;
            level = lg;
            continue;
        }
    idle:
        level = lg;
        if (s->in_break) {
            if (lg == 1) {
                s->in_break = 0;
                s->level = level;
                rig_emit_char(s, te, 1);
            }
        } else if (lg == 0) {                 /* rig_char_start */
            s->t_start = te;
            s->att_edge = e0 + k;
            s->value = 0;
            s->par_bit = 0;
            s->stop_bad = 0;
            in_char = 1;
            bit_idx = 0;
            next_center = te + half;
            bits = 0;
            n_ce = 0;
            ksum = 0;
            tsum = 0.0;
            usum = 0.0;
            RIG_CE_ADD(te);
        }
    }
#undef RIG_CE_ADD
    s->in_char = in_char;
    s->level = level;
    s->bit_idx = bit_idx;
    s->next_center = next_center;
    s->bits = bits;
    s->n_ce = n_ce;
    s->ce_ksum = ksum;
    s->ce_tsum = tsum;
    s->ce_usum = usum;
}

#endif /* RIG_UART_SM_H */
