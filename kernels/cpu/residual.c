/*
 * residual.c: the residual add, out = a + b, and the two buffer utilities the model needs (zero, scale).
 */
#include <string.h>

#include "cpu.h"

void cpu_residual_forward(Backend *be, float *out, const float *a, const float *b, size_t N) {
#pragma omp parallel for schedule(static) if (N > CPU_PARALLEL_MIN)
    for (size_t i = 0; i < N; i++) out[i] = a[i] + b[i];
}

void cpu_scale(Backend *be, float *x, float s, size_t n) {
#pragma omp parallel for schedule(static) if (n > CPU_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

void cpu_zero(Backend *be, float *x, size_t n) { memset(x, 0, n * sizeof(float)); }
