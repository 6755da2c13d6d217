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
 * Two builds of the kernel (uart_kernel.h), chosen at run time (cpuid): AVX2 (with BMI1/BMI2/LZCNT/POPCNT)
 * and a baseline one (level 0: SSE2 on x86-64, 3.4x the plain C one on a CPU without AVX2); plain C masks
 * on another architecture or when built with RIG_UART_NO_SIMD (setup.py: the environment variable
 * RIG_UART_NO_SIMD=1; tests/test_uart_portable.py builds and checks it).  All give the same masks, so the
 * same results.
 */
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

/* the kernel (uart_kernel.h), once per instruction set */
#define RIG_KNAME rig_cmp_f32_c
#define RIG_KATTR
#define RIG_KMASKS rig_masks_c64
#define RIG_KQUIET rig_quiet_c64
#ifdef RIG_HAVE_MASKS5
#define RIG_KMASKS5 rig_masks5_c64
#endif
#include "uart_kernel.h"
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
#include "uart_kernel.h"
#undef RIG_KHIST4
#undef RIG_KNAME
#undef RIG_KATTR
#undef RIG_KMASKS
#undef RIG_KMASKS5
#undef RIG_KQUIET
#endif
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
