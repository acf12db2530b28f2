/*
 * residual.c: the residual add, out = a + b, and the two buffer utilities the model needs (zero, scale).
 */
#include <string.h>

#include "cpu.h"

void cpu_residual_forward(Backend *be, void *out_, const void *a_, const void *b_, size_t N) {
    float *out = out_;
    const float *a = a_;
    const float *b = b_;
#pragma omp parallel for schedule(static) if (N > CPU_PARALLEL_MIN)
    for (size_t i = 0; i < N; i++) out[i] = a[i] + b[i];
}

void cpu_scale(Backend *be, float *x, float s, size_t n) {
#pragma omp parallel for schedule(static) if (n > CPU_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

void cpu_zero(Backend *be, void *x, size_t bytes) { memset(x, 0, bytes); }
