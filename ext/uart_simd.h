/* Float32 comparator of rig._uart (ext/uart.pyx), block form.  Results are bit for bit those of the
 * scalar sample loop in _run (kept there for float64, int16 and int8).
 *
 * The scalar reference walks the samples one at a time with a hysteresis state and checks, at every
 * sample it looks at, which thresholds the pair (x[i-1], x[i]) crosses.  None of those crossings
 * depends on the state, only on the two samples, so here they are computed for 64 samples at a time
 * as bit masks (a compare + movemask per threshold and direction).  The state itself is a latch (set
 * by x > hi, reset by x < lo, held otherwise): a carry chain, so one add with carry gives the state
 * before and after each of the 64 samples, hence the flips.  The crossings that count are those made
 * in the right state (mid and 10 %/90 % crossings before a flip), masks too; the rise/fall-time
 * measurement is a latch as well (armed at a flip, ended by the first crossing of the far 10/90 %
 * level up to the next flip).  Then one short step per flip: the last crossing at or before it
 * (lzcnt) is the edge time, interpolated once, with the same expression on the same two samples as
 * the reference.  No branch per sample, per transition sample or per kind of edge.  The samples the
 * reference looks at (its min/max statistics) are the ones its quiet-stretch skip does not jump
 * over: a mask as well, visited only when a sample of the block is beyond the running min/max.  A
 * block whose 64 samples (and the one before) are all beyond the quiet threshold of the state is
 * skipped after one compare per vector.  The strided level histogram (every 16th sample) is done in
 * the same pass, in the reference's order and arithmetic.
 *
 * Float/double compares: for a float x and a double T, (double)x >= T <=> x >= fc(T) (fc: smallest
 * float >= T), (double)x <= T <=> x <= ff(T) (largest float <= T); NaN compares false in both, and
 * (double)x < T <=> x <= ff(T) and not x >= fc(T).  When none of p10, mid, p90 is a float, x <= ff(T)
 * is not x >= fc(T) for any other x than NaN; a block without NaN and without a sample beyond the
 * running min/max then needs five compares per vector instead of fourteen.
 *
 * Two builds of the kernel, chosen at run time (cpuid): AVX2 (with BMI1/BMI2/LZCNT/POPCNT) and a baseline
 * one (SSE2 on x86-64, plain C elsewhere or with RIG_UART_NO_SIMD); both give the same masks, so the same
 * results.
 */
#ifndef RIG_UART_SIMD_BODY
#ifndef RIG_UART_SIMD_H
#define RIG_UART_SIMD_H

#include <stdint.h>
#include <string.h>
#include <math.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(RIG_UART_NO_SIMD)
#include <immintrin.h>
#define RIG_UART_X86 1
#endif

typedef struct {
    float c10, f10, cm, fm, c90, f90;  /* x >= c <=> (double)x >= T; x <= f <=> (double)x <= T */
    float fhi;                         /* x > fhi <=> (double)x > hi */
    float clo;                         /* x < clo <=> (double)x < lo */
    float gl, cgl;                     /* skip rule, state low: x < gl; previous < g_low: x < cgl */
    float gh, fgh;                     /* state high: x > gh; previous > g_high: x > fgh */
    float smin, smax;                  /* running min/max of the samples looked at (exact floats) */
} rig_thr_t;

typedef struct {
    uint64_t ge10, le10, gem, lem, ge90, le90, uh, dl, q0, p0, q1, p1, ls, gs;
} rig_masks_t;

typedef struct {
    double lo, mid, hi, p10, p90, g_low, g_high;
    rig_thr_t th;
    int state, pend_rise, pend_fall;
    double lum, ldm, lu10, ld90, rise_t10, fall_t90;
    int64_t n_rise, n_fall;
    double sum_rise, max_rise, sum_fall, max_fall;
    double svmin, svmax;
    int64_t iu10, ium, id90, idm;  /* index of the latest crossing not yet interpolated, or -1 */
    /* strided level histogram (every 16th absolute sample), done in the same pass; hist NULL: none */
    int64_t *hist;
    int64_t nbins;
    double hmin, hscale, hvmin, hvmax;
    double prev;            /* the sample before x[0] of this run */
    int64_t base;           /* absolute index of x[0] */
    /* the previous sample's compares (0/1), carried into bit 0 of the next block */
    uint64_t c_lt10, c_gt10, c_ltm, c_gtm, c_lt90, c_gt90, c_p0, c_p1;
} rig_cmp_t;

#define RIG_PV(K) ((K) > 0 ? (double)x[(K) - 1] : prev0)
/* the reference's crossing time between samples K-1 and K, the same expression */
#define RIG_AT(K, T) ((double)(base + (K) - 1) + ((T) - RIG_PV(K)) / ((double)x[K] - RIG_PV(K)))

static inline float rig_fc(double t) {  /* smallest float >= t */
    float f = (float)t;
    if ((double)f < t) f = nextafterf(f, INFINITY);
    return f;
}
static inline float rig_ff(double t) {  /* largest float <= t */
    float f = (float)t;
    if ((double)f > t) f = nextafterf(f, -INFINITY);
    return f;
}

/* thresholds and the carries from c->prev; call at the start of every run */
static inline void rig_cmp_setup(rig_cmp_t *c) {
    double pv = c->prev;
    float gl = (float)c->g_low, gh = (float)c->g_high;
    if ((double)gl >= c->g_low) gl = nextafterf(gl, -INFINITY);
    if ((double)gh <= c->g_high) gh = nextafterf(gh, INFINITY);
    c->th.c10 = rig_fc(c->p10); c->th.f10 = rig_ff(c->p10);
    c->th.cm = rig_fc(c->mid); c->th.fm = rig_ff(c->mid);
    c->th.c90 = rig_fc(c->p90); c->th.f90 = rig_ff(c->p90);
    c->th.fhi = rig_ff(c->hi);
    c->th.clo = rig_fc(c->lo);
    c->th.gl = gl; c->th.cgl = rig_fc(c->g_low);
    c->th.gh = gh; c->th.fgh = rig_ff(c->g_high);
    c->c_lt10 = pv < c->p10; c->c_gt10 = pv > c->p10;
    c->c_ltm = pv < c->mid; c->c_gtm = pv > c->mid;
    c->c_lt90 = pv < c->p90; c->c_gt90 = pv > c->p90;
    c->c_p0 = pv < c->g_low; c->c_p1 = pv > c->g_high;
    c->iu10 = c->ium = c->id90 = c->idm = -1;
    c->th.smin = (float)c->svmin;   /* +-inf or a float sample: exact */
    c->th.smax = (float)c->svmax;
}

/* end of a run over x: the crossings still kept as indices become times */
static inline void rig_cmp_finish(rig_cmp_t *c, const float *x) {
    const int64_t base = c->base;
    const double prev0 = c->prev;
    if (c->iu10 >= 0) c->lu10 = RIG_AT(c->iu10, c->p10);
    if (c->ium >= 0) c->lum = RIG_AT(c->ium, c->mid);
    if (c->id90 >= 0) c->ld90 = RIG_AT(c->id90, c->p90);
    if (c->idm >= 0) c->ldm = RIG_AT(c->idm, c->mid);
    c->iu10 = c->ium = c->id90 = c->idm = -1;
}

/* plain C masks of nb <= 64 samples */
static inline void rig_masks_c(const float *x, int nb, const rig_thr_t *t, rig_masks_t *m) {
    uint64_t ge10 = 0, le10 = 0, gem = 0, lem = 0, ge90 = 0, le90 = 0, uh = 0, dl = 0;
    uint64_t q0 = 0, p0 = 0, q1 = 0, p1 = 0, ls = 0, gs = 0;
    int j;
    for (j = 0; j < nb; j++) {
        float v = x[j];
        uint64_t b = (uint64_t)1 << j;
        if (v >= t->c10) ge10 |= b;
        if (v <= t->f10) le10 |= b;
        if (v >= t->cm) gem |= b;
        if (v <= t->fm) lem |= b;
        if (v >= t->c90) ge90 |= b;
        if (v <= t->f90) le90 |= b;
        if (v > t->fhi) uh |= b;
        if (v < t->clo) dl |= b;
        if (v < t->gl) q0 |= b;
        if (v < t->cgl) p0 |= b;
        if (v > t->gh) q1 |= b;
        if (v > t->fgh) p1 |= b;
        if (v < t->smin) ls |= b;
        if (v > t->smax) gs |= b;
    }
    m->ge10 = ge10; m->le10 = le10; m->gem = gem; m->lem = lem; m->ge90 = ge90; m->le90 = le90;
    m->uh = uh; m->dl = dl; m->q0 = q0; m->p0 = p0; m->q1 = q1; m->p1 = p1; m->ls = ls; m->gs = gs;
}

/* 1 when all 64 samples are quiet for the state: x < gl (state low) or x > gh (state high) */
static inline int rig_quiet_c(const float *x, const rig_thr_t *t, int state) {
    int j, ok = 1;
    if (state) { for (j = 0; j < 64; j++) ok &= x[j] > t->gh; }
    else { for (j = 0; j < 64; j++) ok &= x[j] < t->gl; }
    return ok;
}

#if defined(__SSE2__) && defined(RIG_UART_X86)
static inline __attribute__((always_inline)) int rig_quiet_c64(const float *x, const rig_thr_t *t, int state) {
    __m128 acc;
    int k;
    if (state) {
        const __m128 G = _mm_set1_ps(t->gh);
        acc = _mm_cmpgt_ps(_mm_loadu_ps(x), G);
        for (k = 1; k < 16; k++) acc = _mm_and_ps(acc, _mm_cmpgt_ps(_mm_loadu_ps(x + 4 * k), G));
    } else {
        const __m128 G = _mm_set1_ps(t->gl);
        acc = _mm_cmplt_ps(_mm_loadu_ps(x), G);
        for (k = 1; k < 16; k++) acc = _mm_and_ps(acc, _mm_cmplt_ps(_mm_loadu_ps(x + 4 * k), G));
    }
    return _mm_movemask_ps(acc) == 0xF;
}
#else
#define rig_quiet_c64 rig_quiet_c
#endif

#if defined(__SSE2__) && defined(RIG_UART_X86)
/* SSE2 (every x86-64): 4 samples per compare */
static inline __attribute__((always_inline)) void rig_masks_c64(const float *x, const rig_thr_t *t,
                                                                rig_masks_t *m) {
    __m128 v[16];
    int k;
    for (k = 0; k < 16; k++) v[k] = _mm_loadu_ps(x + 4 * k);
#define RIG_M1(dst, thr, cmp) do { __m128 T_ = _mm_set1_ps(thr); uint64_t r_ = 0;                     \
        for (k = 0; k < 16; k++) r_ |= (uint64_t)(unsigned)_mm_movemask_ps(cmp(v[k], T_)) << (4 * k); \
        m->dst = r_; } while (0)
    RIG_M1(ge10, t->c10, _mm_cmpge_ps); RIG_M1(le10, t->f10, _mm_cmple_ps);
    RIG_M1(gem, t->cm, _mm_cmpge_ps); RIG_M1(lem, t->fm, _mm_cmple_ps);
    RIG_M1(ge90, t->c90, _mm_cmpge_ps); RIG_M1(le90, t->f90, _mm_cmple_ps);
    RIG_M1(uh, t->fhi, _mm_cmpgt_ps); RIG_M1(dl, t->clo, _mm_cmplt_ps);
    RIG_M1(q0, t->gl, _mm_cmplt_ps); RIG_M1(p0, t->cgl, _mm_cmplt_ps);
    RIG_M1(q1, t->gh, _mm_cmpgt_ps); RIG_M1(p1, t->fgh, _mm_cmpgt_ps);
    RIG_M1(ls, t->smin, _mm_cmplt_ps); RIG_M1(gs, t->smax, _mm_cmpgt_ps);
#undef RIG_M1
}
/* the five masks of a block without NaN when p10, mid and p90 are not floats and c10 <= clo (x <= f
   is then not x >= c): x >= c10, >= cm, >= c90, > fhi, < clo; and whether a sample is beyond the
   running min/max (returned) */
static inline __attribute__((always_inline)) int rig_masks5_c64(const float *x, const rig_thr_t *t,
                                                                rig_masks_t *m) {
    __m128 v[16], mn, mx;
    int k;
    for (k = 0; k < 16; k++) v[k] = _mm_loadu_ps(x + 4 * k);
#define RIG_M1(dst, thr, cmp) do { __m128 T_ = _mm_set1_ps(thr); uint64_t r_ = 0;                     \
        for (k = 0; k < 16; k++) r_ |= (uint64_t)(unsigned)_mm_movemask_ps(cmp(v[k], T_)) << (4 * k); \
        m->dst = r_; } while (0)
    RIG_M1(ge10, t->c10, _mm_cmpge_ps); RIG_M1(gem, t->cm, _mm_cmpge_ps); RIG_M1(ge90, t->c90, _mm_cmpge_ps);
    RIG_M1(uh, t->fhi, _mm_cmpgt_ps); RIG_M1(dl, t->clo, _mm_cmplt_ps);
#undef RIG_M1
    mn = v[0]; mx = v[0];
    for (k = 1; k < 16; k++) { mn = _mm_min_ps(mn, v[k]); mx = _mm_max_ps(mx, v[k]); }
    return _mm_movemask_ps(_mm_or_ps(_mm_cmplt_ps(mn, _mm_set1_ps(t->smin)),
                                     _mm_cmpgt_ps(mx, _mm_set1_ps(t->smax))));
}
#define RIG_HAVE_MASKS5 1
#else
static inline __attribute__((always_inline)) void rig_masks_c64(const float *x, const rig_thr_t *t,
                                                                rig_masks_t *m) {
    rig_masks_c(x, 64, t, m);
}
#endif

#ifdef RIG_UART_X86
__attribute__((target("avx2,bmi,bmi2,lzcnt,popcnt"), always_inline))
static inline void rig_masks_avx2(const float *x, const rig_thr_t *t, rig_masks_t *m) {
    __m256 v[8];
    int k;
    for (k = 0; k < 8; k++) v[k] = _mm256_loadu_ps(x + 8 * k);
#define RIG_M2(dst, thr, op) do { __m256 T_ = _mm256_set1_ps(thr); uint64_t r_ = 0;                \
        for (k = 0; k < 8; k++)                                                                    \
            r_ |= (uint64_t)(unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v[k], T_, op)) << (8 * k);  \
        m->dst = r_; } while (0)
    RIG_M2(ge10, t->c10, _CMP_GE_OQ); RIG_M2(le10, t->f10, _CMP_LE_OQ);
    RIG_M2(gem, t->cm, _CMP_GE_OQ); RIG_M2(lem, t->fm, _CMP_LE_OQ);
    RIG_M2(ge90, t->c90, _CMP_GE_OQ); RIG_M2(le90, t->f90, _CMP_LE_OQ);
    RIG_M2(uh, t->fhi, _CMP_GT_OQ); RIG_M2(dl, t->clo, _CMP_LT_OQ);
    RIG_M2(q0, t->gl, _CMP_LT_OQ); RIG_M2(p0, t->cgl, _CMP_LT_OQ);
    RIG_M2(q1, t->gh, _CMP_GT_OQ); RIG_M2(p1, t->fgh, _CMP_GT_OQ);
    RIG_M2(ls, t->smin, _CMP_LT_OQ); RIG_M2(gs, t->smax, _CMP_GT_OQ);
#undef RIG_M2
}

__attribute__((target("avx2,bmi,bmi2,lzcnt,popcnt"), always_inline))
static inline int rig_masks5_avx2(const float *x, const rig_thr_t *t, rig_masks_t *m) {
    __m256 v[8], mn, mx;
    int k;
    for (k = 0; k < 8; k++) v[k] = _mm256_loadu_ps(x + 8 * k);
#define RIG_M2(dst, thr, op) do { __m256 T_ = _mm256_set1_ps(thr); uint64_t r_ = 0;                \
        for (k = 0; k < 8; k++)                                                                    \
            r_ |= (uint64_t)(unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v[k], T_, op)) << (8 * k);  \
        m->dst = r_; } while (0)
    RIG_M2(ge10, t->c10, _CMP_GE_OQ); RIG_M2(gem, t->cm, _CMP_GE_OQ); RIG_M2(ge90, t->c90, _CMP_GE_OQ);
    RIG_M2(uh, t->fhi, _CMP_GT_OQ); RIG_M2(dl, t->clo, _CMP_LT_OQ);
#undef RIG_M2
    mn = _mm256_min_ps(_mm256_min_ps(_mm256_min_ps(v[0], v[1]), _mm256_min_ps(v[2], v[3])),
                       _mm256_min_ps(_mm256_min_ps(v[4], v[5]), _mm256_min_ps(v[6], v[7])));
    mx = _mm256_max_ps(_mm256_max_ps(_mm256_max_ps(v[0], v[1]), _mm256_max_ps(v[2], v[3])),
                       _mm256_max_ps(_mm256_max_ps(v[4], v[5]), _mm256_max_ps(v[6], v[7])));
    return _mm256_movemask_ps(_mm256_or_ps(_mm256_cmp_ps(mn, _mm256_set1_ps(t->smin), _CMP_LT_OQ),
                                           _mm256_cmp_ps(mx, _mm256_set1_ps(t->smax), _CMP_GT_OQ)));
}

__attribute__((target("avx2,bmi,bmi2,lzcnt,popcnt"), always_inline))
static inline int rig_quiet_avx2(const float *x, const rig_thr_t *t, int state) {
    __m256 acc;
    int k;
    if (state) {
        const __m256 G = _mm256_set1_ps(t->gh);
        acc = _mm256_cmp_ps(_mm256_loadu_ps(x), G, _CMP_GT_OQ);
        for (k = 1; k < 8; k++) acc = _mm256_and_ps(acc, _mm256_cmp_ps(_mm256_loadu_ps(x + 8 * k), G, _CMP_GT_OQ));
    } else {
        const __m256 G = _mm256_set1_ps(t->gl);
        acc = _mm256_cmp_ps(_mm256_loadu_ps(x), G, _CMP_LT_OQ);
        for (k = 1; k < 8; k++) acc = _mm256_and_ps(acc, _mm256_cmp_ps(_mm256_loadu_ps(x + 8 * k), G, _CMP_LT_OQ));
    }
    return _mm256_movemask_ps(acc) == 0xFF;
}

/* The strided histogram's four samples of a 64-sample block (x[hoff], x[hoff + 16], ...): the bins with
   the reference's arithmetic ((v - hmin) * hscale truncated to int64, as cvttsd2si: NaN and anything
   out of int64 range give INT64_MIN, hence bin 0; below 0 or v < hmin: bin 0; nbins or more: the last),
   four at a time; the running min/max one by one in order (first of equal values kept). */
__attribute__((target("avx2,bmi,bmi2,lzcnt,popcnt"), always_inline))
static inline void rig_hist4_avx2(const float *x, int64_t *hist, int64_t nbins, double hmin, double hscale,
                                  double *hvmin, double *hvmax) {
    const __m256d v = _mm256_cvtps_pd(_mm_set_ps(x[48], x[32], x[16], x[0]));
    const __m256d y = _mm256_mul_pd(_mm256_sub_pd(v, _mm256_set1_pd(hmin)), _mm256_set1_pd(hscale));
    const __m256d last = _mm256_set1_pd((double)(nbins - 1));
    const __m256d zero = _mm256_or_pd(_mm256_cmp_pd(v, _mm256_set1_pd(hmin), _CMP_LT_OQ),
                                      _mm256_or_pd(_mm256_cmp_pd(y, _mm256_set1_pd(-1.0), _CMP_NGT_UQ),
                                                   _mm256_cmp_pd(y, _mm256_set1_pd(0x1p63), _CMP_NLT_UQ)));
    const __m256d yc = _mm256_andnot_pd(zero, _mm256_blendv_pd(y, last, _mm256_cmp_pd(y, last, _CMP_GE_OQ)));
    const __m128i b = _mm256_cvttpd_epi32(yc);
    double lo = *hvmin, hi = *hvmax, v0 = x[0], v1 = x[16], v2 = x[32], v3 = x[48];
    lo = v0 < lo ? v0 : lo; hi = v0 > hi ? v0 : hi;
    lo = v1 < lo ? v1 : lo; hi = v1 > hi ? v1 : hi;
    lo = v2 < lo ? v2 : lo; hi = v2 > hi ? v2 : hi;
    lo = v3 < lo ? v3 : lo; hi = v3 > hi ? v3 : hi;
    *hvmin = lo;
    *hvmax = hi;
    hist[_mm_cvtsi128_si32(b)] += 1;
    hist[_mm_extract_epi32(b, 1)] += 1;
    hist[_mm_extract_epi32(b, 2)] += 1;
    hist[_mm_extract_epi32(b, 3)] += 1;
}
#endif

#define RIG_UART_SIMD_BODY 1
#define RIG_KNAME rig_cmp_f32_c
#define RIG_KATTR
#define RIG_KMASKS rig_masks_c64
#define RIG_KQUIET rig_quiet_c64
#ifdef RIG_HAVE_MASKS5
#define RIG_KMASKS5 rig_masks5_c64
#endif
#include "uart_simd.h"
#undef RIG_KNAME
#undef RIG_KATTR
#undef RIG_KMASKS
#undef RIG_KMASKS5
#undef RIG_KQUIET
#ifdef RIG_UART_X86
#define RIG_KNAME rig_cmp_f32_avx2
#define RIG_KATTR __attribute__((target("avx2,bmi,bmi2,lzcnt,popcnt")))
#define RIG_KMASKS rig_masks_avx2
#define RIG_KMASKS5 rig_masks5_avx2
#define RIG_KQUIET rig_quiet_avx2
#define RIG_KHIST4 rig_hist4_avx2
#include "uart_simd.h"
#undef RIG_KHIST4
#undef RIG_KNAME
#undef RIG_KATTR
#undef RIG_KMASKS
#undef RIG_KMASKS5
#undef RIG_KQUIET
#endif
#undef RIG_UART_SIMD_BODY
#undef RIG_HIST_BLOCK
#undef RIG_HIST_BLOCK64

/* 0 baseline, 1 AVX2; -1 not chosen yet */
static int rig_uart_simd_level = -1;

static int rig_uart_simd_detect(void) {
#ifdef RIG_UART_X86
    __builtin_cpu_init();
    /* the AVX2 build also uses BMI1/BMI2/LZCNT/POPCNT (bit scans and shifts) */
    if (!(__builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("popcnt")
          && __builtin_cpu_supports("abm"))) return 0;
    if (__builtin_cpu_supports("avx2")) return 1;
#endif
    return 0;
}

/* level < 0: the best the CPU has; else at most that level.  Returns the level in use. */
static int rig_uart_set_simd(int level) {
    int best = rig_uart_simd_detect();
    rig_uart_simd_level = (level < 0 || level > best) ? best : level;
    return rig_uart_simd_level;
}

static inline Py_ssize_t rig_cmp_f32(rig_cmp_t *c, const float *x, Py_ssize_t i, Py_ssize_t n,
                                     double *et, uint8_t *eh, int *ne, int cap) {
    if (rig_uart_simd_level < 0) rig_uart_set_simd(-1);
#ifdef RIG_UART_X86
    if (rig_uart_simd_level == 1) return rig_cmp_f32_avx2(c, x, i, n, et, eh, ne, cap);
#endif
    return rig_cmp_f32_c(c, x, i, n, et, eh, ne, cap);
}

#endif /* RIG_UART_SIMD_H */

#else /* RIG_UART_SIMD_BODY: the kernel, once per instruction set */

#ifndef RIG_AT
#define RIG_PV(K) ((K) > 0 ? (double)x[(K) - 1] : prev0)
/* the reference's crossing time between samples K-1 and K, same expression */
#define RIG_AT(K, T) ((double)(base + (K) - 1) + ((T) - RIG_PV(K)) / ((double)x[K] - RIG_PV(K)))
#endif

#ifndef RIG_HIST_BLOCK
#define RIG_HIST_BLOCK(NB) do {                                                                   \
        if (hist) {   /* the reference's histogram loop, same order, same arithmetic */           \
            int j_;                                                                                \
            for (j_ = hoff; j_ < (NB); j_ += 16) {                                                 \
                double v_ = (double)x[i + j_];                                                     \
                int64_t b_;                                                                        \
                hvmin = v_ < hvmin ? v_ : hvmin;                                                   \
                hvmax = v_ > hvmax ? v_ : hvmax;                                                   \
                b_ = (int64_t)((v_ - hmin) * hscale);                                              \
                if (v_ < hmin || b_ < 0) b_ = 0;                                                   \
                else if (b_ >= nbins) b_ = nbins - 1;                                              \
                hist[b_] += 1;                                                                     \
            }                                                                                      \
        } } while (0)
#endif
#undef RIG_HIST_BLOCK64
#ifdef RIG_KHIST4
#define RIG_HIST_BLOCK64() do { if (hist) RIG_KHIST4(x + i + hoff, hist, nbins, hmin, hscale, &hvmin, &hvmax); } while (0)
#else
#define RIG_HIST_BLOCK64() RIG_HIST_BLOCK(64)
#endif

/* Blocks of 64 samples from x[i] while i < n and there is room for 64 more edges in et/eh (cap);
   returns the index reached.

   Per block, without a branch per sample or per edge kind: the compare masks; the comparator state
   before (Sb) and after (S) every sample, from one add with carry (the hysteresis latch: set by
   x > hi, reset by x < lo, held otherwise, is a carry chain: generate = set, propagate = not reset);
   flips F = S ^ Sb; the crossings that matter in each state (mid and 10/90 % crossings before a
   flip: masked by the state); the rise/fall end measurements, also latches (armed at a flip, the
   first crossing of the far 10/90 % level up to the next flip ends it).  Then one short step per
   flip: the last crossing at or before it (lzcnt) becomes the edge time, interpolated once.  The
   latest crossing of each kind is kept as a sample index and interpolated only when used. */
RIG_KATTR static Py_ssize_t RIG_KNAME(rig_cmp_t *c, const float *x, Py_ssize_t i, Py_ssize_t n,
                                      double *et, uint8_t *eh, int *ne_p, int cap) {
    const double mid = c->mid, p10 = c->p10, p90 = c->p90, g_low = c->g_low, g_high = c->g_high;
    rig_thr_t th = c->th;
    const int64_t base = c->base;
    const double prev0 = c->prev;
    uint64_t state = (uint64_t)c->state, pend_rise = (uint64_t)c->pend_rise, pend_fall = (uint64_t)c->pend_fall;
    double svmin = c->svmin, svmax = c->svmax;
    int64_t *const hist = c->hist;
    const int64_t nbins = c->nbins;
    const double hmin = c->hmin, hscale = c->hscale;
    double hvmin = c->hvmin, hvmax = c->hvmax;
    const int hoff = (int)((16 - base % 16) % 16);   /* blocks start at multiples of 64 */
    uint64_t c_lt10 = c->c_lt10, c_gt10 = c->c_gt10, c_ltm = c->c_ltm, c_gtm = c->c_gtm;
    uint64_t c_lt90 = c->c_lt90, c_gt90 = c->c_gt90, c_p0 = c->c_p0, c_p1 = c->c_p1;
    int ne = *ne_p;
    float tail[64];
    /* the five-mask path (RIG_KMASKS5) is exact when p10, mid and p90 are not floats and a sample
       below c10 is below clo (then not (x >= c10 or x < clo) means NaN) */
    const int fast = th.c10 != th.f10 && th.cm != th.fm && th.c90 != th.f90 && th.c10 <= th.clo;
    /* by the state after a flip r (1: rising flip, 0: falling): the mid crossing (edge time) and the
       10/90 % crossing (start of the transition) kept before it, as a run index (-1: the time in
       vB/vA); the threshold of the start and of the end of the transition */
    int64_t lB[2] = {c->idm, c->ium}, lA[2] = {c->id90, c->iu10};
    double vB[2] = {c->ldm, c->lum}, vA[2] = {c->ld90, c->lu10};
    const double TA[2] = {p90, p10}, TE[2] = {p10, p90};
    /* statistics by direction d (0 rise, 1 fall) and the start of the transition being measured */
    double tb[2] = {c->rise_t10, c->fall_t90};
    /* rise (0) and fall (1) time statistics in registers, updated without a branch on the direction
       (the other direction's sum gets +0.0: a sum of these is never -0.0, so that changes nothing) */
    int64_t nm0 = c->n_rise, nm1 = c->n_fall;
    double sm0 = c->sum_rise, sm1 = c->sum_fall, mx0 = c->max_rise, mx1 = c->max_fall;
#define RIG_MEAS(D, T) do { const int d_ = (D); const double t_ = (T);                              \
        nm0 += d_ ^ 1; nm1 += d_;                                                                \
        sm0 += d_ ? 0.0 : t_; sm1 += d_ ? t_ : 0.0;                                              \
        mx0 = !d_ && t_ > mx0 ? t_ : mx0; mx1 = d_ && t_ > mx1 ? t_ : mx1; } while (0)
    while (i < n && ne <= cap - 64) {
        rig_masks_t m;
        uint64_t valid, lt10, gt10, ltm, gtm, lt90, gt90;
        uint64_t U10, D10, UM, DM, U90, D90, H, L, Sb, S, F, Fw, exam, pm;
        uint64_t Bw[2], Aw[2], Ew[2];
        unsigned long long s1, s2;
        int nb;
        /* quiet block: every sample beyond the quiet threshold of the state, and the one before too:
           no crossing, no flip, no sample looked at (the reference's skip); only the histogram */
        while (n - i >= 64 && (state ? c_p1 : c_p0) && RIG_KQUIET(x + i, &th, (int)state)) {
            double pv;
            nb = 64;
            RIG_HIST_BLOCK64();
            pv = (double)x[i + 63];
            c_lt10 = pv < p10; c_gt10 = pv > p10; c_ltm = pv < mid; c_gtm = pv > mid;
            c_lt90 = pv < p90; c_gt90 = pv > p90; c_p0 = pv < g_low; c_p1 = pv > g_high;
            i += 64;
        }
        if (i >= n) break;
        if (n - i >= 64) {
            nb = 64;
            valid = ~(uint64_t)0;
#ifdef RIG_KMASKS5
            if (fast && !(RIG_KMASKS5(x + i, &th, &m) | (int)(~(m.ge10 | m.dl) != 0))) {
                /* no NaN, none beyond the running min/max: x <= f is not x >= c; the quiet-rule
                   masks only for the carry of the last sample; no sample to visit */
                m.le10 = ~m.ge10; m.lem = ~m.gem; m.le90 = ~m.ge90;
                m.ls = m.gs = 0;
                m.q0 = m.q1 = 0;
                m.p0 = (uint64_t)(x[i + 63] < th.cgl) << 63;
                m.p1 = (uint64_t)(x[i + 63] > th.fgh) << 63;
            } else
#endif
            RIG_KMASKS(x + i, &th, &m);
        } else {
            nb = (int)(n - i);
            valid = ((uint64_t)1 << nb) - 1;
            memcpy(tail, x + i, (size_t)nb * sizeof(float));
            rig_masks_c(tail, nb, &th, &m);
        }
        if (nb == 64) RIG_HIST_BLOCK64(); else RIG_HIST_BLOCK(nb);
        /* x < T <=> x <= ff(T) and not x >= fc(T); x > T likewise (NaN: neither) */
        lt10 = m.le10 & ~m.ge10; gt10 = m.ge10 & ~m.le10;
        ltm = m.lem & ~m.gem; gtm = m.gem & ~m.lem;
        lt90 = m.le90 & ~m.ge90; gt90 = m.ge90 & ~m.le90;
        U10 = ((lt10 << 1) | c_lt10) & m.ge10;
        D10 = ((gt10 << 1) | c_gt10) & m.le10;
        UM = ((ltm << 1) | c_ltm) & m.gem;
        DM = ((gtm << 1) | c_gtm) & m.lem;
        U90 = ((lt90 << 1) | c_lt90) & m.ge90;
        D90 = ((gt90 << 1) | c_gt90) & m.le90;
        /* the comparator: state after sample k is H_k | (state after k-1 & ~L_k), the carry out of
           bit k of (H | ~L) + H + state: Sb (state before each sample) = sum ^ propagate */
        H = m.uh; L = m.dl;
        {
            uint64_t a = H | ~L, co;
            s1 = a + H;
            co = s1 < a;
            s2 = s1 + state;
            co |= s2 < s1;
            Sb = (uint64_t)s2 ^ ~(H | L);
            S = (Sb >> 1) | (co << 63);
            state = co;
        }
        F = S ^ Sb;
        /* a rise (fall) time still being measured from before this block ends at the first 90 % up-
           (10 % down-) crossing at or before the first flip of the block (that flip's sample is checked
           before it flips); pend_rise and pend_fall are never both set */
        pm = ((U90 & (0 - pend_rise)) | (D10 & (0 - pend_fall))) & (F ^ (F - 1));
        if (pm) {
            const int e = __builtin_ctzll(pm), d = (int)pend_fall;
            const double t = RIG_AT(i + e, TE[1 - d]) - tb[d];
            RIG_MEAS(d, t);
            pend_rise = pend_fall = 0;
        }
        Bw[1] = UM & ~Sb; Bw[0] = DM & Sb;
        Aw[1] = U10 & ~Sb; Aw[0] = D90 & Sb;
        Ew[1] = U90; Ew[0] = D10;
        /* each flip: the edge time from the last mid crossing of the segment it ends (or before), the
           start of its transition from the last 10/90 % crossing likewise, and the end of the transition
           (measured) at the first crossing of the far level from the flip's sample up to the next flip's
           sample; not found in the block after the block's last flip: still being measured */
        if (__builtin_expect(i > 0, 1)) {
            /* crossings in this block from the block's own samples: x[K - 1] is x[i - 1] for its first
               sample (i > 0), and (double)(base + K - 1) is dbase + the offset, exactly */
            const float *const xb = x + i;
            const double dbase = (double)(base + i - 1);
#define RIG_ATB(P, T) (dbase + (double)(P) + ((T) - (double)xb[(P) - 1]) / ((double)xb[P] - (double)xb[(P) - 1]))
            for (Fw = F; Fw; Fw &= Fw - 1) {
                const int f = __builtin_ctzll(Fw);
                const int r = (int)((S >> f) & 1), d = r ^ 1;
                const uint64_t le = Fw ^ (Fw - 1);                 /* bits 0..f */
                const uint64_t nx = Fw & (Fw - 1);                 /* the flips after this one */
                const uint64_t mB = Bw[r] & le, mA = Aw[r] & le;
                const uint64_t mv = Ew[r] & ~(le >> 1) & (nx ^ (nx - 1));
                const double TAr = TA[r];
                double tB, tA;
                if (__builtin_expect(mB != 0, 1)) tB = RIG_ATB(63 - __builtin_clzll(mB), mid);
                else tB = lB[r] >= 0 ? RIG_AT(lB[r], mid) : vB[r];
                if (__builtin_expect(mA != 0, 1)) tA = RIG_ATB(63 - __builtin_clzll(mA), TAr);
                else tA = lA[r] >= 0 ? RIG_AT(lA[r], TAr) : vA[r];
                et[ne] = tB;
                eh[ne] = (uint8_t)r;
                ne++;
                tb[d] = tA;
                if (mv) {
                    const int e = __builtin_ctzll(mv);
                    double t = RIG_ATB(e, TE[r]) - tA;
                    RIG_MEAS(d, t);
                }
                pend_rise = r & (mv == 0);
                pend_fall = d & (mv == 0);
            }
#undef RIG_ATB
        } else
        for (Fw = F; Fw; Fw &= Fw - 1) {
            const int f = __builtin_ctzll(Fw);
            const int r = (int)((S >> f) & 1), d = r ^ 1;
            const uint64_t le = Fw ^ (Fw - 1);                 /* bits 0..f */
            const uint64_t nx = Fw & (Fw - 1);                 /* the flips after this one */
            const uint64_t mB = Bw[r] & le, mA = Aw[r] & le;
            const uint64_t mv = Ew[r] & ~(le >> 1) & (nx ^ (nx - 1));
            const int64_t iB = mB ? (int64_t)i + 63 - __builtin_clzll(mB) : lB[r];
            const int64_t iA = mA ? (int64_t)i + 63 - __builtin_clzll(mA) : lA[r];
            const double tB = iB >= 0 ? RIG_AT(iB, mid) : vB[r];
            const double tA = iA >= 0 ? RIG_AT(iA, TA[r]) : vA[r];
            et[ne] = tB;
            eh[ne] = (uint8_t)r;
            ne++;
            tb[d] = tA;
            if (mv) {
                double t = RIG_AT(i + __builtin_ctzll(mv), TE[r]) - tA;
                RIG_MEAS(d, t);
            }
            pend_rise = r & (mv == 0);
            pend_fall = d & (mv == 0);
        }
        lB[1] = Bw[1] ? (int64_t)i + 63 - __builtin_clzll(Bw[1]) : lB[1];
        lB[0] = Bw[0] ? (int64_t)i + 63 - __builtin_clzll(Bw[0]) : lB[0];
        lA[1] = Aw[1] ? (int64_t)i + 63 - __builtin_clzll(Aw[1]) : lA[1];
        lA[0] = Aw[0] ? (int64_t)i + 63 - __builtin_clzll(Aw[0]) : lA[0];
        /* min/max of the samples the reference looks at (not skipped by its quiet rule), in order
           (strict < / > keep the first of equal values); only those beyond the running extremes */
        exam = valid & (m.ls | m.gs);
        if (exam) {
            uint64_t E0 = ~(((m.p0 << 1) | c_p0) & m.q0), E1 = ~(((m.p1 << 1) | c_p1) & m.q1);
            exam &= (~Sb & E0) | (Sb & E1);
            while (exam) {
                double v = (double)x[i + __builtin_ctzll(exam)];
                exam &= exam - 1;
                svmin = v < svmin ? v : svmin;
                svmax = v > svmax ? v : svmax;
            }
            th.smin = (float)svmin;
            th.smax = (float)svmax;
        }
        c_lt10 = lt10 >> 63; c_gt10 = gt10 >> 63; c_ltm = ltm >> 63; c_gtm = gtm >> 63;
        c_lt90 = lt90 >> 63; c_gt90 = gt90 >> 63; c_p0 = m.p0 >> 63; c_p1 = m.p1 >> 63;
        i += nb;
    }
    c->state = (int)state; c->pend_rise = (int)pend_rise; c->pend_fall = (int)pend_fall;
    c->ldm = vB[0]; c->lum = vB[1]; c->ld90 = vA[0]; c->lu10 = vA[1];
    c->idm = lB[0]; c->ium = lB[1]; c->id90 = lA[0]; c->iu10 = lA[1];
    c->rise_t10 = tb[0]; c->fall_t90 = tb[1];
#undef RIG_MEAS
    c->n_rise = nm0; c->n_fall = nm1; c->sum_rise = sm0; c->sum_fall = sm1;
    c->max_rise = mx0; c->max_fall = mx1;
    c->svmin = svmin; c->svmax = svmax;
    c->hvmin = hvmin; c->hvmax = hvmax;
    c->th = th;
    c->c_lt10 = c_lt10; c->c_gt10 = c_gt10; c->c_ltm = c_ltm; c->c_gtm = c_gtm;
    c->c_lt90 = c_lt90; c->c_gt90 = c_gt90; c->c_p0 = c_p0; c->c_p1 = c_p1;
    *ne_p = ne;
    return i;
}

#endif /* RIG_UART_SIMD_BODY */
