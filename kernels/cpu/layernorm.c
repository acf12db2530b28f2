/*
 * layernorm.c: LayerNorm (Ba et al. 2016) over the last dimension, eps 1e-5, biased variance, as GPT-2.
 * Forward: two passes per row (mean, then variance), row sums in double: a residual stream whose mean is large
 * against its spread would otherwise lose digits in fp32. Backward:
 *   dnorm = dout*w;  dinp += rstd * (dnorm - mean(dnorm) - norm * mean(dnorm*norm))
 *   dw += sum_rows dout*norm;  db += sum_rows dout
 * The row loop is parallel over rows; the dw/db reduction is parallel over channel ranges with rows in order, so the
 * result does not depend on the thread count.
 */
#include <math.h>

#include "cpu.h"

#define LN_EPS 1e-5f

// One row: x (C) -> o (C), *mean, *rstd. The one definition both forwards use, so the fused one is bitwise the other.
static inline void ln_row(float *o, float *mean, float *rstd, const float *x, const float *w, const float *b, int C) {
    double md = 0;
    for (int c = 0; c < C; c++) md += x[c];
    const float m = (float)(md / C);
    double vd = 0;
    for (int c = 0; c < C; c++) vd += (double)(x[c] - m) * (x[c] - m);
    const float s = (float)(1.0 / sqrt(vd / C + LN_EPS));
    for (int c = 0; c < C; c++) o[c] = (x[c] - m) * s * w[c] + b[c];
    *mean = m;
    *rstd = s;
}

// inp (N,C), w (C), b (C) -> out (N,C), mean (N), rstd (N)
void cpu_layernorm_forward(Backend *be, void *out_, float *mean, float *rstd, const void *inp_, const void *w_,
                           const void *b_, int N, int C) {
    float *out = out_;
    const float *inp = inp_;
#pragma omp parallel for schedule(static) if ((size_t)N * C > CPU_PARALLEL_MIN)
    for (int n = 0; n < N; n++)
        ln_row(out + (size_t)n * C, &mean[n], &rstd[n], inp + (size_t)n * C, w_, b_, C);
}

// resid (N,C) = a + b, then its LayerNorm -> out (N,C), mean (N), rstd (N): each row added and normalised while it
// is in cache (the same arithmetic as cpu_residual_forward and cpu_layernorm_forward).
void cpu_residual_layernorm_forward(Backend *be, void *resid_, void *out_, float *mean, float *rstd, const void *a_,
                                    const void *b_, const void *w_, const void *bias_, int N, int C) {
    float *resid = resid_, *out = out_;
    const float *a = a_, *b = b_;
#pragma omp parallel for schedule(static) if ((size_t)N * C > CPU_PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        float *r = resid + (size_t)n * C;
        const float *ar = a + (size_t)n * C, *br = b + (size_t)n * C;
        for (int c = 0; c < C; c++) r[c] = ar[c] + br[c];
        ln_row(out + (size_t)n * C, &mean[n], &rstd[n], r, w_, bias_, C);
    }
}

// dinp (N,C) +=, dw (C) +=, db (C) += ; from dout (N,C), inp, w, mean, rstd
void cpu_layernorm_backward(Backend *be, void *dinp_, Grad *dw_, Grad *db_, const void *dout_, const void *inp_,
                            const void *w_, const float *mean, const float *rstd, int N, int C) {
    float *dw = dw_, *db = db_;
    float *dinp = dinp_;
    const float *dout = dout_;
    const float *inp = inp_;
    const float *w = w_;
#pragma omp parallel for schedule(static) if ((size_t)N * C > CPU_PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *d = dout + (size_t)n * C;
        const float m = mean[n], s = rstd[n];
        double sum_dn = 0, sum_dn_norm = 0;
        for (int c = 0; c < C; c++) {
            const float dn = d[c] * w[c];
            sum_dn += dn;
            sum_dn_norm += dn * ((x[c] - m) * s);
        }
        const float dmean = (float)(sum_dn / C), dmean_norm = (float)(sum_dn_norm / C);
        float *di = dinp + (size_t)n * C;
        for (int c = 0; c < C; c++) {
            float norm = (x[c] - m) * s;
            di[c] += s * (d[c] * w[c] - dmean - norm * dmean_norm);
        }
    }
    const int CHUNK = 16;
    const int nchunks = (C + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) if ((size_t)N * C > CPU_PARALLEL_MIN)
    for (int ch = 0; ch < nchunks; ch++) {
        const int c0 = ch * CHUNK, c1 = c0 + CHUNK < C ? c0 + CHUNK : C;
        double aw[16] = {0}, ab[16] = {0};
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C, *d = dout + (size_t)n * C;
            const float m = mean[n], s = rstd[n];
            for (int c = c0; c < c1; c++) {
                aw[c - c0] += d[c] * ((x[c] - m) * s);
                ab[c - c0] += d[c];
            }
        }
        for (int c = c0; c < c1; c++) {
            dw[c] += (float)aw[c - c0];
            db[c] += (float)ab[c - c0];
        }
    }
}
