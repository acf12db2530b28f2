/*
 * dropout.c: inverted dropout (ops.h op_dropout), the reference: element i kept by the mask of
 * kernels/dropout_mask.h and scaled by 1 / (1 - p), else 0. Read n, write n; no FLOPs counted.
 */
#include <string.h>

#include "cpu.h"
#include "dropout_mask.h"

void cpu_dropout(Backend *be, void *out_, const void *inp_, size_t n, float p, uint64_t key) {
    (void)be;
    float *out = out_;
    const float *inp = inp_;
    if (p == 0.0f) {
        if (out != inp) memmove(out, inp, n * sizeof(float));
        return;
    }
    const uint32_t thr = dropout_threshold(p);
    const float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) if (n > CPU_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) out[i] = dropout_keep(key, i, thr) ? inp[i] * scale : 0.0f;
}
