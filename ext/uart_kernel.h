/* The float32 comparator kernel of uart_simd.h, included there once per instruction set (baseline, AVX2)
 * with RIG_KNAME (the function's name), RIG_KATTR (its target attribute), RIG_KMASKS / RIG_KQUIET (the
 * block's compare masks and quiet test), optionally RIG_KMASKS5 (the five-mask path) and RIG_KHIST4
 * (the strided histogram) defined.  Not a header of its own: no include guard. */

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
#ifdef RIG_KMASKS5
    /* the five-mask path is exact when p10, mid and p90 are not floats and a sample
       below c10 is below clo (then not (x >= c10 or x < clo) means NaN) */
    const int fast = th.c10 != th.f10 && th.cm != th.fm && th.c90 != th.f90 && th.c10 <= th.clo;
#endif
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

