/*
 * adamw.c: AdamW (Loshchilov & Hutter 2019) with decoupled weight decay, bias correction, and the gradient scale of
 * global-norm clipping folded in, so each parameter's gradient, moments and weight are read and written once:
 * 4 reads + 3 writes of fp32 per parameter. Also the global gradient norm's sum of squares.
 */
#include <math.h>

#include "cpu.h"

void cpu_adamw_update(Backend *be, float *params, const float *grads, float *m, float *v, size_t n, float lr,
                      float beta1, float beta2, float eps, float weight_decay, float grad_scale, int t) {
    const float bc1 = (float)(1.0 - pow(beta1, t)), bc2 = (float)(1.0 - pow(beta2, t));
#pragma omp parallel for schedule(static) if (n > CPU_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) {
        const float g = grads[i] * grad_scale;
        const float mi = beta1 * m[i] + (1.0f - beta1) * g;
        const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        const float mhat = mi / bc1, vhat = vi / bc2;
        params[i] -= lr * (mhat / (sqrtf(vhat) + eps) + weight_decay * params[i]);
    }
}

// A fixed partition into SUMSQ_CHUNKS pieces, each summed in order in double and combined in order: the result is
// the same for any thread count.
#define SUMSQ_CHUNKS 64
double cpu_sum_squares(Backend *be, const float *x, size_t n) {
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
