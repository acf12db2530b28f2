/*
 * attention.cu: naive causal attention on the GPU (ops.h op_attention_*; reference kernels/cpu/attention.c), the
 * A/B baseline of the flash kernels (flash.cu): head-batched cuBLAS GEMMs for QK^T, PV and the four backward
 * products, with a causal softmax kernel (one warp per row) and its backward; the (B,NH,T,T) probabilities live in
 * the planned buffer. Everything in the compute dtype (in bf16 the scores, the probabilities and their gradients are
 * stored in bf16 between the products, as the GEMMs read and write them; the softmax works in fp32).
 * FLOPs per layer: 2·B·C·T² for QK^T and as much for PV forward (the GEMMs compute the full T x T, twice the causal
 * count the model FLOPs credit), 4 products of that size backward. Bytes: the (B,NH,T,T) matrix dominates, written by
 * QK^T, read and written by the softmax, read by PV forward (4·B·NH·T²·e) and about twice that backward; GPT-2 124M
 * at B=16 T=1024 in bf16 (B·NH·T² = 201M elements, 0.40 GB): 1.6 GB per layer forward, ~4.8 GB forward + backward,
 * 58 GB and ~17 ms per step at 3.35 TB/s for the 12 layers, where flash attention moves 5.1 GB in all (README's step
 * on paper).
 * Dropout on the probabilities (p > 0): op_dropout's kernel writes the dropped P into the scratch for the PV product
 * (att keeps P for the softmax backward); backward, the dropped P again for dV, then dP through the same mask
 * before the softmax backward: two more passes over the (B,NH,T,T) matrix each way.
 */
#include <math.h>
#include <stdint.h>

#include "cuda_common.h"

// ---- attention ----
// For batch row b the NH heads are one strided batch: head h's q, k, v rows start at qkv + b*T*3C + {0, C, 2C} +
// h*HS with row stride 3C; att rows of (b, h) are T elements at att + (b*NH + h)*T*T.

// Causal softmax in place over each row t of S (scaled scores): p[t][t2] for t2 <= t, 0 above. One warp per row.
template <class T>
__global__ static void causal_softmax_kernel(T *att, int rows, int Tlen) {
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    const int t = row % Tlen;
    T *a = att + (size_t)row * Tlen;
    float mx = -INFINITY;
    for (int j = lane; j <= t; j += 32) mx = fmaxf(mx, f32(a[j]));
    mx = warp_max(mx);
    float s = 0.0f;
    for (int j = lane; j <= t; j += 32) s += expf(f32(a[j]) - mx);
    s = warp_sum(s);
    const float inv = 1.0f / s;
    for (int j = lane; j < Tlen; j += 32) st(&a[j], j <= t ? expf(f32(a[j]) - mx) * inv : 0.0f);
}

// ds = p * (dp - sum_j p dp) over the causal row, in place over dp; 0 above the diagonal.
template <class T>
__global__ static void causal_softmax_backward_kernel(T *datt, const T *att, int rows, int Tlen) {
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    const int t = row % Tlen;
    T *d = datt + (size_t)row * Tlen;
    const T *p = att + (size_t)row * Tlen;
    float s = 0.0f;
    for (int j = lane; j <= t; j += 32) s += f32(p[j]) * f32(d[j]);
    s = warp_sum(s);
    for (int j = lane; j < Tlen; j += 32) st(&d[j], j <= t ? f32(p[j]) * (f32(d[j]) - s) : 0.0f);
}

template <class T>
static void causal_softmax(void *att, int rows, int Tlen) {
    CUDA_LAUNCH(blocks_for((size_t)rows, 8), 256, 0, 0, causal_softmax_kernel<T>)((T *)att, rows, Tlen);
    CUDA_LAUNCH_CHECK();
}

template <class T>
static void causal_softmax_backward(void *datt, const void *att, int rows, int Tlen) {
    CUDA_LAUNCH(blocks_for((size_t)rows, 8), 256, 0, 0, causal_softmax_backward_kernel<T>)((T *)datt, (const T *)att,
                                                                                           rows, Tlen);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_attention_forward(Backend *be, void *out_, void *att_, void *scratch, const void *qkv_, int B,
                                       int T, int C, int NH, float p, uint64_t key) {
    const int HS = C / NH, C3 = 3 * C;
    const size_t es = dtype_bytes(be->dtype);
    const char *qkv = (const char *)qkv_;
    char *att = (char *)att_, *out = (char *)out_;
    const float scale = 1.0f / sqrtf((float)HS);
    const long long TT = (long long)T * T;
    for (int b = 0; b < B; b++) {
        const char *q = qkv + (size_t)b * T * C3 * es, *k = q + C * es;
        char *ab = att + (size_t)b * NH * TT * es;
        // S^T (col-major) = K Q^T: C[i=t2][j=t] = k_t2 . q_t
        cuda_gemm_batched(be, CUBLAS_OP_T, CUBLAS_OP_N, T, T, HS, scale, k, C3, HS, q, C3, HS, 0.0f, ab, T, TT, NH);
    }
    const int rows = B * NH * T;
    if (rows) CUDA_BY_DTYPE(be, causal_softmax, att, rows, T);
    const char *pv = att;   // the probabilities the PV product reads: P, or P dropped into the scratch
    if (p > 0.0f) {
        cuda_dropout(be, scratch, att, (size_t)B * NH * TT, p, key);
        pv = (const char *)scratch;
    }
    for (int b = 0; b < B; b++) {
        const char *v = qkv + ((size_t)b * T * C3 + 2 * C) * es;
        const char *ab = pv + (size_t)b * NH * TT * es;
        // y^T (HS,T) = V^T P^T
        cuda_gemm_batched(be, CUBLAS_OP_N, CUBLAS_OP_N, HS, T, T, 1.0f, v, C3, HS, ab, T, TT, 0.0f,
                          out + (size_t)b * T * C * es, C, HS, NH);
    }
}

extern "C" void cuda_attention_backward(Backend *be, void *dqkv_, void *datt_, const void *dout_, const void *qkv_,
                                        const void *att_, int B, int T, int C, int NH, float p, uint64_t key) {
    const int HS = C / NH, C3 = 3 * C;
    const size_t es = dtype_bytes(be->dtype);
    const char *qkv = (const char *)qkv_, *att = (const char *)att_, *dout = (const char *)dout_;
    char *dqkv = (char *)dqkv_, *datt = (char *)datt_;
    const float scale = 1.0f / sqrtf((float)HS);
    const long long TT = (long long)T * T;
    if (p > 0.0f) {   // dV^T (HS,T) = dY^T (P dropped), from the dropped P in the scratch before dP takes it
        cuda_dropout(be, datt, att, (size_t)B * NH * TT, p, key);
        for (int b = 0; b < B; b++) {
            const char *dy = dout + (size_t)b * T * C * es;
            char *dv = dqkv + ((size_t)b * T * C3 + 2 * C) * es;
            cuda_gemm_batched(be, CUBLAS_OP_N, CUBLAS_OP_T, HS, T, T, 1.0f, dy, C, HS, datt + (size_t)b * NH * TT * es,
                              T, TT, 0.0f, dv, C3, HS, NH);
        }
    }
    for (int b = 0; b < B; b++) {
        const char *v = qkv + ((size_t)b * T * C3 + 2 * C) * es, *dy = dout + (size_t)b * T * C * es;
        // dP^T (col-major) = V dY^T: C[i=t2][j=t] = v_t2 . dy_t
        cuda_gemm_batched(be, CUBLAS_OP_T, CUBLAS_OP_N, T, T, HS, 1.0f, v, C3, HS, dy, C, HS, 0.0f,
                          datt + (size_t)b * NH * TT * es, T, TT, NH);
    }
    // with dropout, the gradient of P is that of the dropped P through the same mask
    if (p > 0.0f) cuda_dropout(be, datt, datt, (size_t)B * NH * TT, p, key);
    const int rows = B * NH * T;
    if (rows) CUDA_BY_DTYPE(be, causal_softmax_backward, datt, att, rows, T);
    for (int b = 0; b < B; b++) {
        const char *q = qkv + (size_t)b * T * C3 * es, *k = q + C * es, *dy = dout + (size_t)b * T * C * es;
        const char *ab = att + (size_t)b * NH * TT * es, *ds = datt + (size_t)b * NH * TT * es;
        char *dq = dqkv + (size_t)b * T * C3 * es, *dk = dq + C * es, *dv = dq + 2 * C * es;
        // dV^T (HS,T) = dY^T P (with dropout: above)
        if (p == 0.0f)
            cuda_gemm_batched(be, CUBLAS_OP_N, CUBLAS_OP_T, HS, T, T, 1.0f, dy, C, HS, ab, T, TT, 0.0f, dv, C3, HS, NH);
        // dQ^T (HS,T) = scale K^T dS^T
        cuda_gemm_batched(be, CUBLAS_OP_N, CUBLAS_OP_N, HS, T, T, scale, k, C3, HS, ds, T, TT, 0.0f, dq, C3, HS, NH);
        // dK^T (HS,T) = scale Q^T dS
        cuda_gemm_batched(be, CUBLAS_OP_N, CUBLAS_OP_T, HS, T, T, scale, q, C3, HS, ds, T, TT, 0.0f, dk, C3, HS, NH);
    }
}
