/*
 * gelu.c: GELU with GPT-2's tanh approximation (Hendrycks & Gimpel 2016):
 *   gelu(x) = 0.5 x (1 + tanh(u)),  u = s (x + 0.044715 x^3),  s = sqrt(2/pi)
 *   gelu'(x) = 0.5 (1 + tanh(u)) + 0.5 x sech^2(u) s (1 + 3·0.044715 x^2)
 * tanh through cpu_tanhf (cpu.h) so the inner loops vectorize; threads take blocks of GELU_BLOCK elements.
 */
#include "cpu.h"

#define GELU_S 0.7978845608028654f  // sqrt(2/pi)
#define GELU_BLOCK 4096

static void gelu_forward_block(float *restrict out, const float *restrict inp, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        const float x = inp[i];
        out[i] = 0.5f * x * (1.0f + cpu_tanhf(GELU_S * (x + 0.044715f * x * x * x)));
    }
}

// gelu'(x), inlined into the vectorized loops below.
static inline float gelu_grad(float x) {
    const float th = cpu_tanhf(GELU_S * (x + 0.044715f * x * x * x));
    const float sech2 = 1.0f - th * th;
    return 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_S * (1.0f + 3.0f * 0.044715f * x * x);
}

static void gelu_backward_block(float *restrict dinp, const float *restrict inp, const float *restrict dout,
                                size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) dinp[i] = gelu_grad(inp[i]) * dout[i];
}

// d = gelu'(pre) * d in place: the same arithmetic as gelu_backward_block with dinp = dout = d.
static void gelu_backward_inplace_block(float *restrict d, const float *restrict pre, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) d[i] = gelu_grad(pre[i]) * d[i];
}

// The down projection's backward with GELU's: this table's matmul backward into dinp, then the GELU gradient in
// place (the CPU has no epilogue to fuse it into; the result is bitwise the two ops in turn).
void cpu_matmul_backward_gelu(Backend *be, void *dinp_, Grad *dw, Grad *dbias, const void *dout, const void *inp,
                              const void *w, const void *pre_, int N, int K, int M) {
    be->ops->matmul_backward(be, dinp_, dw, dbias, dout, inp, w, N, K, M);
    float *dinp = dinp_;
    const float *pre = pre_;
    const size_t total = (size_t)N * K;
    const long nb = (long)((total + GELU_BLOCK - 1) / GELU_BLOCK);
#pragma omp parallel for schedule(static) if (total > CPU_PARALLEL_MIN)
    for (long b = 0; b < nb; b++) {
        const size_t i0 = (size_t)b * GELU_BLOCK, n = total - i0 < GELU_BLOCK ? total - i0 : GELU_BLOCK;
        gelu_backward_inplace_block(dinp + i0, pre + i0, n);
    }
}

void cpu_gelu_forward(Backend *be, void *out_, const void *inp_, size_t N) {
    float *out = out_;
    const float *inp = inp_;
    const long nb = (long)((N + GELU_BLOCK - 1) / GELU_BLOCK);
#pragma omp parallel for schedule(static) if (N > CPU_PARALLEL_MIN)
    for (long b = 0; b < nb; b++) {
        const size_t i0 = (size_t)b * GELU_BLOCK, n = N - i0 < GELU_BLOCK ? N - i0 : GELU_BLOCK;
        gelu_forward_block(out + i0, inp + i0, n);
    }
}

void cpu_gelu_backward(Backend *be, void *dinp_, const void *inp_, const void *dout_, size_t N) {
    float *dinp = dinp_;
    const float *inp = inp_;
    const float *dout = dout_;
    const long nb = (long)((N + GELU_BLOCK - 1) / GELU_BLOCK);
#pragma omp parallel for schedule(static) if (N > CPU_PARALLEL_MIN)
    for (long b = 0; b < nb; b++) {
        const size_t i0 = (size_t)b * GELU_BLOCK, n = N - i0 < GELU_BLOCK ? N - i0 : GELU_BLOCK;
        gelu_backward_block(dinp + i0, inp + i0, dout + i0, n);
    }
}
