/*
 * adamw.c: AdamW (Loshchilov & Hutter 2019) with decoupled weight decay, bias correction, and the gradient scale of
 * global-norm clipping folded in, so each parameter's gradient, moments and weight are read and written once:
 * 4 reads + 3 writes of fp32 per parameter, over a range of the flat buffers with weight decay per tensor. Also the
 * global gradient norm (its sum of squares in a fixed order), which the step reads to clip or skip.
 */
#include <math.h>
#include <string.h>

#include "cpu.h"

// One tensor's range [a, b) with its weight decay; g already includes the step's gradient scale s. p, m, v point
// at element 0 of the flat buffer (the caller offset them by their bases; only [a, b) is touched).
static void adamw_range(float *p, const float *grads, float *m, float *v, size_t a, size_t b, const AdamWHyper *h,
                        float weight_decay, float s, float bc1, float bc2, size_t pb, size_t mb) {
    const float beta1 = h->beta1, beta2 = h->beta2, lr = h->lr, eps = h->eps;
#pragma omp parallel for schedule(static) if (b - a > CPU_PARALLEL_MIN)
    for (size_t i = a; i < b; i++) {
        const float g = grads[i] * s;
        const float mi = beta1 * m[i - mb] + (1.0f - beta1) * g;
        const float vi = beta2 * v[i - mb] + (1.0f - beta2) * g * g;
        m[i - mb] = mi;
        v[i - mb] = vi;
        const float mhat = mi / bc1, vhat = vi / bc2;
        p[i - pb] -= lr * (mhat / (sqrtf(vhat) + eps) + weight_decay * p[i - pb]);
    }
}

void cpu_adamw_step(Backend *be, float *params, void *params_c, const Grad *grads_, float *m, float *v, size_t lo,
                    size_t hi, const AdamWTensors *tensors, const AdamWHyper *h, const float *norm,
                    const double *loss) {
    const float *grads = grads_;
    (void)be;
    if (loss && !isfinite(*loss)) return;   // a skipped step: nothing changes
    float s = h->grad_scale;
    if (norm) {
        if (!isfinite(*norm)) return;   // a skipped step: nothing changes
        if (h->grad_clip > 0 && *norm > h->grad_clip) s = h->grad_scale * (float)(h->grad_clip / *norm);
    }
    const float bc1 = (float)(1.0 - pow(h->beta1, h->t)), bc2 = (float)(1.0 - pow(h->beta2, h->t));
    size_t begin = 0;
    for (int k = 0; k < tensors->n; k++) {
        const size_t end = tensors->end[k];
        const size_t a = begin > lo ? begin : lo, b = end < hi ? end : hi;
        if (a < b)
            adamw_range(params, grads, m, v, a, b, h, (tensors->decay >> k & 1u) ? h->weight_decay : 0.0f, s, bc1,
                        bc2, tensors->master_base, tensors->moment_base);
        begin = end;
    }
    // The compute dtype is fp32 on the CPU: a separate working copy (the model passes none) is a plain copy.
    if (params_c && params_c != params && hi > lo)
        memcpy((float *)params_c + lo, params + (lo - tensors->master_base), (hi - lo) * sizeof(float));
}

// A fixed partition into SUMSQ_CHUNKS pieces, each summed in order in double and combined in order: the result is
// the same for any thread count.
#define SUMSQ_CHUNKS 64
double cpu_sum_squares(Backend *be, const Grad *x_, size_t n) {
    const float *x = x_;
    double part[SUMSQ_CHUNKS];
    const size_t chunk = (n + SUMSQ_CHUNKS - 1) / SUMSQ_CHUNKS;
#pragma omp parallel for schedule(static) if (n > CPU_PARALLEL_MIN)
    for (int c = 0; c < SUMSQ_CHUNKS; c++) {
        size_t i0 = (size_t)c * chunk, i1 = i0 + chunk < n ? i0 + chunk : n;
        double s = 0;
        for (size_t i = i0; i < i1; i++) s += (double)x[i] * x[i];
        part[c] = s;
    }
    double total = 0;
    for (int c = 0; c < SUMSQ_CHUNKS; c++) total += part[c];
    return total;
}

void cpu_global_norm(Backend *be, float *norm, const Grad *x, size_t n) {
    *norm = (float)sqrt(cpu_sum_squares(be, x, n));
}

// The CPU computes in fp32 only: the weights' working copy is the master itself (the model passes the same buffer)
// or an fp32 copy of it.
void cpu_to_compute(Backend *be, void *dst, const float *src, size_t n, size_t first, uint32_t seed) {
    (void)seed;
    (void)first;
    if (dst != src) memcpy(dst, src, n * sizeof(float));
}
