/*
 * attention.cu: naive causal attention on the GPU (ops.h op_attention_*; reference kernels/cpu/attention.c), the
 * A/B baseline of the flash kernels (flash.cu): head-batched cuBLAS GEMMs for QK^T, PV and the four backward
 * products, with a causal softmax kernel (one warp per row) and its backward; the (B,NH,T,T) probabilities live in
 * the planned buffer.
 */
#include <math.h>
#include <stdint.h>

#include "cuda_common.h"

// ---- attention ----
// For batch row b the NH heads are one strided batch: head h's q, k, v rows start at qkv + b*T*3C + {0, C, 2C} +
// h*HS with row stride 3C; att rows of (b, h) are T floats at att + (b*NH + h)*T*T.

// Causal softmax in place over each row t of S (scaled scores): p[t][t2] for t2 <= t, 0 above. One warp per row.
__global__ static void causal_softmax_kernel(float *att, int rows, int T) {
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    const int t = row % T;
    float *a = att + (size_t)row * T;
    float mx = -INFINITY;
    for (int j = lane; j <= t; j += 32) mx = fmaxf(mx, a[j]);
    mx = warp_max(mx);
    float s = 0.0f;
    for (int j = lane; j <= t; j += 32) s += expf(a[j] - mx);
    s = warp_sum(s);
    const float inv = 1.0f / s;
    for (int j = lane; j < T; j += 32) a[j] = j <= t ? expf(a[j] - mx) * inv : 0.0f;
}

// ds = p * (dp - sum_j p dp) over the causal row, in place over dp; 0 above the diagonal.
__global__ static void causal_softmax_backward_kernel(float *datt, const float *att, int rows, int T) {
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    const int t = row % T;
    float *d = datt + (size_t)row * T;
    const float *p = att + (size_t)row * T;
    float s = 0.0f;
    for (int j = lane; j <= t; j += 32) s += p[j] * d[j];
    s = warp_sum(s);
    for (int j = lane; j < T; j += 32) d[j] = j <= t ? p[j] * (d[j] - s) : 0.0f;
}

extern "C" void cuda_attention_forward(Backend *be, float *out, float *att, const float *qkv, int B, int T, int C,
                                       int NH) {
    const int HS = C / NH, C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)HS);
    const long long TT = (long long)T * T;
    for (int b = 0; b < B; b++) {
        const float *q = qkv + (size_t)b * T * C3, *k = q + C;
        float *ab = att + (size_t)b * NH * TT;
        // S^T (col-major) = K Q^T: C[i=t2][j=t] = k_t2 . q_t
        cuda_gemm_batched(be, CUBLAS_OP_T, CUBLAS_OP_N, T, T, HS, scale, k, C3, HS, q, C3, HS, 0.0f, ab, T, TT, NH);
    }
    const int rows = B * NH * T;
    CUDA_LAUNCH(blocks_for((size_t)rows, 8), 256, 0, 0, causal_softmax_kernel)(att, rows, T);
    CUDA_LAUNCH_CHECK();
    for (int b = 0; b < B; b++) {
        const float *v = qkv + (size_t)b * T * C3 + 2 * C;
        const float *ab = att + (size_t)b * NH * TT;
        // y^T (HS,T) = V^T P^T
        cuda_gemm_batched(be, CUBLAS_OP_N, CUBLAS_OP_N, HS, T, T, 1.0f, v, C3, HS, ab, T, TT, 0.0f,
                          out + (size_t)b * T * C, C, HS, NH);
    }
}

extern "C" void cuda_attention_backward(Backend *be, float *dqkv, float *datt, const float *dout, const float *qkv,
                                        const float *att, int B, int T, int C, int NH) {
    const int HS = C / NH, C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)HS);
    const long long TT = (long long)T * T;
    for (int b = 0; b < B; b++) {
        const float *v = qkv + (size_t)b * T * C3 + 2 * C, *dy = dout + (size_t)b * T * C;
        // dP^T (col-major) = V dY^T: C[i=t2][j=t] = v_t2 . dy_t
        cuda_gemm_batched(be, CUBLAS_OP_T, CUBLAS_OP_N, T, T, HS, 1.0f, v, C3, HS, dy, C, HS, 0.0f,
                     datt + (size_t)b * NH * TT, T, TT, NH);
    }
    const int rows = B * NH * T;
    CUDA_LAUNCH(blocks_for((size_t)rows, 8), 256, 0, 0, causal_softmax_backward_kernel)(datt, att, rows, T);
    CUDA_LAUNCH_CHECK();
    for (int b = 0; b < B; b++) {
        const float *q = qkv + (size_t)b * T * C3, *k = q + C, *dy = dout + (size_t)b * T * C;
        const float *ab = att + (size_t)b * NH * TT, *ds = datt + (size_t)b * NH * TT;
        float *dq = dqkv + (size_t)b * T * C3, *dk = dq + C, *dv = dq + 2 * C;
        // dV^T (HS,T) = dY^T P
        cuda_gemm_batched(be, CUBLAS_OP_N, CUBLAS_OP_T, HS, T, T, 1.0f, dy, C, HS, ab, T, TT, 0.0f, dv, C3, HS, NH);
        // dQ^T (HS,T) = scale K^T dS^T
        cuda_gemm_batched(be, CUBLAS_OP_N, CUBLAS_OP_N, HS, T, T, scale, k, C3, HS, ds, T, TT, 0.0f, dq, C3, HS, NH);
        // dK^T (HS,T) = scale Q^T dS
        cuda_gemm_batched(be, CUBLAS_OP_N, CUBLAS_OP_T, HS, T, T, scale, q, C3, HS, ds, T, TT, 0.0f, dk, C3, HS, NH);
    }
}
