/*
 * layernorm.cu: LayerNorm on the GPU (ops.h op_layernorm_*; reference kernels/cpu/layernorm.c).
 */
#include <math.h>
#include <stdint.h>

#include "cuda_common.h"

// ---- LayerNorm ----

__global__ static void layernorm_forward_kernel(float *out, float *mean, float *rstd, const float *inp,
                                                const float *w, const float *b, int N, int C) {
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *x = inp + (size_t)row * C;
    float s = 0.0f;
    for (int c = lane; c < C; c += 32) s += x[c];
    const float m = warp_sum(s) / C;
    float v = 0.0f;
    for (int c = lane; c < C; c += 32) { float d = x[c] - m; v += d * d; }
    const float r = rsqrtf(warp_sum(v) / C + 1e-5f);
    float *o = out + (size_t)row * C;
    for (int c = lane; c < C; c += 32) o[c] = (x[c] - m) * r * w[c] + b[c];
    if (lane == 0) { mean[row] = m; rstd[row] = r; }
}

// dinp += rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)), dnorm = dout * w (one warp per row)
__global__ static void layernorm_backward_dinp_kernel(float *dinp, const float *dout, const float *inp,
                                                      const float *w, const float *mean, const float *rstd, int N,
                                                      int C) {
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *x = inp + (size_t)row * C, *dy = dout + (size_t)row * C;
    const float m = mean[row], r = rstd[row];
    float s1 = 0.0f, s2 = 0.0f;
    for (int c = lane; c < C; c += 32) {
        const float dn = dy[c] * w[c], nrm = (x[c] - m) * r;
        s1 += dn;
        s2 += dn * nrm;
    }
    s1 = warp_sum(s1) / C;
    s2 = warp_sum(s2) / C;
    float *dx = dinp + (size_t)row * C;
    for (int c = lane; c < C; c += 32) {
        const float dn = dy[c] * w[c], nrm = (x[c] - m) * r;
        dx[c] += r * (dn - s1 - nrm * s2);
    }
}

__global__ static void layernorm_backward_dwdb_kernel(float *dw, float *db, const float *dout, const float *inp,
                                                      const float *mean, const float *rstd, int N, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float sw = 0.0f, sb = 0.0f;
    for (int n = 0; n < N; n++) {
        const float dy = dout[(size_t)n * C + c];
        sw += dy * (inp[(size_t)n * C + c] - mean[n]) * rstd[n];
        sb += dy;
    }
    dw[c] += sw;
    db[c] += sb;
}

extern "C" void cuda_layernorm_forward(Backend *be, float *out, float *mean, float *rstd, const float *inp,
                                       const float *w, const float *b, int N, int C) {
    (void)be;
    CUDA_LAUNCH(blocks_for((size_t)N, 8), 256, 0, 0, layernorm_forward_kernel)(out, mean, rstd, inp, w, b, N, C);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_layernorm_backward(Backend *be, float *dinp, float *dw, float *db, const float *dout,
                                        const float *inp, const float *w, const float *mean, const float *rstd, int N,
                                        int C) {
    (void)be;
    CUDA_LAUNCH(blocks_for((size_t)N, 8), 256, 0, 0, layernorm_backward_dinp_kernel)(dinp, dout, inp, w, mean, rstd, N,
                                                                                     C);
    CUDA_LAUNCH_CHECK();
    CUDA_LAUNCH(blocks_for((size_t)C, 128), 128, 0, 0, layernorm_backward_dwdb_kernel)(dw, db, dout, inp, mean, rstd, N,
                                                                                       C);
    CUDA_LAUNCH_CHECK();
}
