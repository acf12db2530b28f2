/*
 * ops_cuda.cu: every op of ops.h on an NVIDIA GPU, fp32 storage, written as the plain correct baseline the faster
 * kernels (fused epilogues, bf16, flash attention) are measured against. Same contracts as the CPU reference
 * (kernels/cpu/): parameter gradients accumulate, activation gradients are written, LayerNorm's dinp accumulates.
 * Every reduction runs in a fixed order, so two runs give bitwise-identical results:
 *   - matmuls on cuBLAS (fp32, or TF32 / bf16 tensor cores on fp32 storage, by CudaState.matmul_mode), row-major
 *     via the transposed-operand trick;
 *   - attention: per batch row, head-batched cuBLAS GEMMs for QK^T, PV and the four backward products, with a causal
 *     softmax kernel (one warp per row) and its backward; the (B,NH,T,T) probabilities live in the planned buffer;
 *   - LayerNorm: one warp per row (fp32 mean and variance by shuffles); the weight/bias gradients by one thread per
 *     channel walking the rows in order (deterministic, no atomics);
 *   - encoder backward: dwpe one thread per (t, c) summing over b; dwte one thread per channel walking the tokens in
 *     order (deterministic; llm.c's bucketed kernel is the faster design to adopt with the bf16 work);
 *   - classifier: one block per row, max and sum of exp by block reductions, dlogits written in place;
 *   - sum of squares: fixed per-block partials in double, summed in order by one block;
 *   - AdamW: one thread per parameter, bias corrections computed once on the host.
 */
#include <math.h>
#include <stdint.h>

#include "cuda_common.h"

static int blocks_for(size_t n, int threads) { return (int)((n + threads - 1) / threads); }

// ---- encoder ----

__global__ static void encoder_forward_kernel(float *out, const int32_t *tokens, const float *wte, const float *wpe,
                                              int B, int T, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)B * T * C) return;
    const int c = (int)(i % C);
    const size_t n = i / C;
    const int t = (int)(n % T);
    out[i] = wte[(size_t)tokens[n] * C + c] + wpe[(size_t)t * C + c];
}

__global__ static void encoder_backward_wpe_kernel(float *dwpe, const float *dout, int B, int T, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;   // (t, c)
    if (i >= (size_t)T * C) return;
    float s = 0.0f;
    for (int b = 0; b < B; b++) s += dout[(size_t)b * T * C + i];
    dwpe[i] += s;
}

__global__ static void encoder_backward_wte_kernel(float *dwte, const float *dout, const int32_t *tokens, int N,
                                                   int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    for (int n = 0; n < N; n++) dwte[(size_t)tokens[n] * C + c] += dout[(size_t)n * C + c];
}

extern "C" void cuda_encoder_forward(Backend *be, float *out, const int32_t *tokens, const float *wte,
                                     const float *wpe, int B, int T, int C) {
    (void)be;
    size_t n = (size_t)B * T * C;
    CUDA_LAUNCH(blocks_for(n, 256), 256, 0, 0, encoder_forward_kernel)(out, tokens, wte, wpe, B, T, C);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_encoder_backward(Backend *be, float *dwte, float *dwpe, const float *dout, const int32_t *tokens,
                                      int B, int T, int C) {
    (void)be;
    CUDA_LAUNCH(blocks_for((size_t)T * C, 256), 256, 0, 0, encoder_backward_wpe_kernel)(dwpe, dout, B, T, C);
    CUDA_LAUNCH_CHECK();
    CUDA_LAUNCH(blocks_for((size_t)C, 128), 128, 0, 0, encoder_backward_wte_kernel)(dwte, dout, tokens, B * T, C);
    CUDA_LAUNCH_CHECK();
}

// ---- warp and block reductions ----

__device__ static float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ static float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
// Block-wide sum/max for blockDim.x a multiple of 32 (<= 1024); every thread gets the result.
__device__ static float block_sum(float v, float *shared) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = lane < nw ? shared[lane] : 0.0f;
    return warp_sum(v);
}
__device__ static float block_max(float v, float *shared) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = lane < nw ? shared[lane] : -INFINITY;
    return warp_max(v);
}

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

// ---- matmul ----
// Row-major X (r, c) is column-major X^T (c, r) with leading dimension c, so each product is written for cuBLAS on
// the transposes:  out^T (M,N) = w (as op T) x inp^T;  dinp^T (K,N) = w^T x dout^T;  dw^T (K,M) += inp^T x dout.

__global__ static void add_bias_kernel(float *out, const float *bias, size_t N, int M) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N * M) out[i] += bias[i % M];
}

__global__ static void bias_grad_kernel(float *dbias, const float *dout, int N, int M) {
    const int m = blockIdx.x * blockDim.x + threadIdx.x;
    if (m >= M) return;
    float s = 0.0f;
    for (int n = 0; n < N; n++) s += dout[(size_t)n * M + m];
    dbias[m] += s;
}

// Every GEMM goes through these two, so the precision mode is chosen in one place: fp32 storage throughout, the
// products in exact fp32 (CUBLAS_COMPUTE_32F), TF32 or bf16 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32 / _16BF:
// inputs rounded on the fly, fp32 accumulation).
static cublasComputeType_t compute_type(Backend *be) {
    const int mode = cuda_state(be)->matmul_mode;
    return mode == CUDA_MATMUL_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32
         : mode == CUDA_MATMUL_BF16 ? CUBLAS_COMPUTE_32F_FAST_16BF
                                    : CUBLAS_COMPUTE_32F;
}

static void gemm(Backend *be, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                 const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    CUBLAS_CHECK(cublasGemmEx(cuda_state(be)->cublas, ta, tb, m, n, k, &alpha, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb,
                              &beta, C, CUDA_R_32F, ldc, compute_type(be), CUBLAS_GEMM_DEFAULT));
}

static void gemm_batched(Backend *be, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                         const float *A, int lda, long long sa, const float *B, int ldb, long long sb, float beta,
                         float *C, int ldc, long long sc, int batch) {
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(cuda_state(be)->cublas, ta, tb, m, n, k, &alpha, A, CUDA_R_32F, lda, sa,
                                            B, CUDA_R_32F, ldb, sb, &beta, C, CUDA_R_32F, ldc, sc, batch,
                                            compute_type(be), CUBLAS_GEMM_DEFAULT));
}

extern "C" void cuda_matmul_forward(Backend *be, float *out, const float *inp, const float *w, const float *bias,
                                    int N, int K, int M) {
    gemm(be, CUBLAS_OP_T, CUBLAS_OP_N, M, N, K, 1.0f, w, K, inp, K, 0.0f, out, M);
    if (bias) {
        CUDA_LAUNCH(blocks_for((size_t)N * M, 256), 256, 0, 0, add_bias_kernel)(out, bias, (size_t)N, M);
        CUDA_LAUNCH_CHECK();
    }
}

extern "C" void cuda_matmul_backward(Backend *be, float *dinp, float *dw, float *dbias, const float *dout,
                                     const float *inp, const float *w, int N, int K, int M) {
    if (dinp) gemm(be, CUBLAS_OP_N, CUBLAS_OP_N, K, N, M, 1.0f, w, K, dout, M, 0.0f, dinp, K);
    gemm(be, CUBLAS_OP_N, CUBLAS_OP_T, K, M, N, 1.0f, inp, K, dout, M, 1.0f, dw, K);
    if (dbias) {
        CUDA_LAUNCH(blocks_for((size_t)M, 128), 128, 0, 0, bias_grad_kernel)(dbias, dout, N, M);
        CUDA_LAUNCH_CHECK();
    }
}

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
        gemm_batched(be, CUBLAS_OP_T, CUBLAS_OP_N, T, T, HS, scale, k, C3, HS, q, C3, HS, 0.0f, ab, T, TT, NH);
    }
    const int rows = B * NH * T;
    CUDA_LAUNCH(blocks_for((size_t)rows, 8), 256, 0, 0, causal_softmax_kernel)(att, rows, T);
    CUDA_LAUNCH_CHECK();
    for (int b = 0; b < B; b++) {
        const float *v = qkv + (size_t)b * T * C3 + 2 * C;
        const float *ab = att + (size_t)b * NH * TT;
        // y^T (HS,T) = V^T P^T
        gemm_batched(be, CUBLAS_OP_N, CUBLAS_OP_N, HS, T, T, 1.0f, v, C3, HS, ab, T, TT, 0.0f, out + (size_t)b * T * C,
                     C, HS, NH);
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
        gemm_batched(be, CUBLAS_OP_T, CUBLAS_OP_N, T, T, HS, 1.0f, v, C3, HS, dy, C, HS, 0.0f,
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
        gemm_batched(be, CUBLAS_OP_N, CUBLAS_OP_T, HS, T, T, 1.0f, dy, C, HS, ab, T, TT, 0.0f, dv, C3, HS, NH);
        // dQ^T (HS,T) = scale K^T dS^T
        gemm_batched(be, CUBLAS_OP_N, CUBLAS_OP_N, HS, T, T, scale, k, C3, HS, ds, T, TT, 0.0f, dq, C3, HS, NH);
        // dK^T (HS,T) = scale Q^T dS
        gemm_batched(be, CUBLAS_OP_N, CUBLAS_OP_T, HS, T, T, scale, q, C3, HS, ds, T, TT, 0.0f, dk, C3, HS, NH);
    }
}

// ---- elementwise ----

#define GELU_SCALE 0.7978845608028654f   // sqrt(2/pi)

__global__ static void gelu_forward_kernel(float *out, const float *inp, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float x = inp[i];
    out[i] = 0.5f * x * (1.0f + tanhf(GELU_SCALE * (x + 0.044715f * x * x * x)));
}

__global__ static void gelu_backward_kernel(float *dinp, const float *inp, const float *dout, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float x = inp[i], u = GELU_SCALE * (x + 0.044715f * x * x * x), th = tanhf(u);
    const float sech2 = 1.0f - th * th;
    const float grad = 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
    dinp[i] = dout[i] * grad;
}

__global__ static void residual_kernel(float *out, const float *a, const float *b, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] + b[i];
}

__global__ static void scale_kernel(float *x, float s, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] *= s;
}

extern "C" void cuda_gelu_forward(Backend *be, float *out, const float *inp, size_t n) {
    (void)be;
    if (!n) return;
    CUDA_LAUNCH(blocks_for(n, 256), 256, 0, 0, gelu_forward_kernel)(out, inp, n);
    CUDA_LAUNCH_CHECK();
}
extern "C" void cuda_gelu_backward(Backend *be, float *dinp, const float *inp, const float *dout, size_t n) {
    (void)be;
    if (!n) return;
    CUDA_LAUNCH(blocks_for(n, 256), 256, 0, 0, gelu_backward_kernel)(dinp, inp, dout, n);
    CUDA_LAUNCH_CHECK();
}
extern "C" void cuda_residual_forward(Backend *be, float *out, const float *a, const float *b, size_t n) {
    (void)be;
    if (!n) return;
    CUDA_LAUNCH(blocks_for(n, 256), 256, 0, 0, residual_kernel)(out, a, b, n);
    CUDA_LAUNCH_CHECK();
}
extern "C" void cuda_scale(Backend *be, float *x, float s, size_t n) {
    (void)be;
    if (!n) return;
    CUDA_LAUNCH(blocks_for(n, 256), 256, 0, 0, scale_kernel)(x, s, n);
    CUDA_LAUNCH_CHECK();
}
extern "C" void cuda_zero(Backend *be, float *x, size_t n) {
    (void)be;
    if (n) CUDA_CHECK(cudaMemsetAsync(x, 0, n * sizeof(float), 0));
}

// ---- classifier: one block per row ----

__global__ static void classifier_kernel(float *losses, float *logits, const int32_t *targets, int V, int Vp,
                                         float dscale, int *bad_target) {
    __shared__ float shared[32];
    const int n = blockIdx.x;
    float *l = logits + (size_t)n * Vp;
    const int t = targets[n];
    if (t < 0 || t >= V) {   // an internal error (the loader validates tokens): flag it, leave the row
        if (threadIdx.x == 0) *bad_target = t;
        return;
    }
    float mx = -INFINITY;
    for (int v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, l[v]);
    mx = block_max(mx, shared);
    float s = 0.0f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) s += expf(l[v] - mx);
    s = block_sum(s, shared);
    const float logsum = logf(s);
    const float lt = l[t];
    __syncthreads();   // every thread has read l[t] before any overwrites it
    if (threadIdx.x == 0) losses[n] = logsum - (lt - mx);
    if (dscale != 0.0f) {
        for (int v = threadIdx.x; v < Vp; v += blockDim.x)
            l[v] = v < V ? dscale * (expf(l[v] - mx - logsum) - (v == t ? 1.0f : 0.0f)) : 0.0f;
    }
}

extern "C" void cuda_classifier_forward_backward(Backend *be, float *losses, float *logits, const int32_t *targets,
                                                 int N, int V, int Vp, float dlogits_scale) {
    int *bad = (int *)cuda_state(be)->partials;   // reuse the partials buffer as the error flag (int, then checked)
    const int none = -1;
    CUDA_CHECK(cudaMemcpy(bad, &none, sizeof none, cudaMemcpyHostToDevice));
    CUDA_LAUNCH(N, 512, 0, 0, classifier_kernel)(losses, logits, targets, V, Vp, dlogits_scale, bad);
    CUDA_LAUNCH_CHECK();
    int flag;
    CUDA_CHECK(cudaMemcpy(&flag, bad, sizeof flag, cudaMemcpyDeviceToHost));
    if (flag != -1) {
        fprintf(stderr, "gptrain: internal error at %s:%d: target %d outside [0, %d)\n", __FILE__, __LINE__, flag, V);
        abort();
    }
}

// ---- sum of squares: CUDA_SUMSQ_BLOCKS fixed chunks, partials in double, then summed in order ----

__global__ static void sumsq_partials_kernel(double *partials, const float *x, size_t n) {
    __shared__ double sh[256];
    double s = 0.0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        s += (double)x[i] * x[i];
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int o = blockDim.x / 2; o > 0; o >>= 1) {
        if (threadIdx.x < o) sh[threadIdx.x] += sh[threadIdx.x + o];
        __syncthreads();
    }
    if (threadIdx.x == 0) partials[blockIdx.x] = sh[0];
}

__global__ static void sumsq_total_kernel(double *partials, int nb) {
    if (threadIdx.x == 0 && blockIdx.x == 0) {
        double s = 0.0;
        for (int i = 0; i < nb; i++) s += partials[i];
        partials[nb] = s;
    }
}

extern "C" double cuda_sum_squares(Backend *be, const float *x, size_t n) {
    CudaState *cs = cuda_state(be);
    CUDA_LAUNCH(CUDA_SUMSQ_BLOCKS, 256, 0, 0, sumsq_partials_kernel)(cs->partials, x, n);
    CUDA_LAUNCH_CHECK();
    CUDA_LAUNCH(1, 32, 0, 0, sumsq_total_kernel)(cs->partials, CUDA_SUMSQ_BLOCKS);
    CUDA_LAUNCH_CHECK();
    double total;
    CUDA_CHECK(cudaMemcpy(&total, cs->partials + CUDA_SUMSQ_BLOCKS, sizeof total, cudaMemcpyDeviceToHost));
    return total;
}

// ---- AdamW ----

__global__ static void adamw_kernel(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1,
                                    float b2, float eps, float wd, float gscale, float bc1, float bc2) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float gi = g[i] * gscale;
    const float mi = b1 * m[i] + (1.0f - b1) * gi, vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float mhat = mi / bc1, vhat = vi / bc2;
    p[i] -= lr * (mhat / (sqrtf(vhat) + eps) + wd * p[i]);
}

extern "C" void cuda_adamw_update(Backend *be, float *params, const float *grads, float *m, float *v, size_t n,
                                  float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                                  int t) {
    (void)be;
    if (!n) return;
    const float bc1 = (float)(1.0 - pow((double)beta1, t)), bc2 = (float)(1.0 - pow((double)beta2, t));
    CUDA_LAUNCH(blocks_for(n, 256), 256, 0, 0, adamw_kernel)(params, grads, m, v, n, lr, beta1, beta2, eps, weight_decay,
                                                              grad_scale, bc1, bc2);
    CUDA_LAUNCH_CHECK();
}
