/*
 * matmul.cu: the linear layers on cuBLAS (ops.h op_matmul_*; reference kernels/cpu/matmul.c), and the GEMM helpers
 * attention.cu shares. Row-major X (r, c) is column-major X^T (c, r) with leading dimension c, so each product is
 * written for cuBLAS on the transposes.
 */
#include <math.h>
#include <stdint.h>

#include "cuda_common.h"

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

void cuda_gemm(Backend *be, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                 const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    CUBLAS_CHECK(cublasGemmEx(cuda_state(be)->cublas, ta, tb, m, n, k, &alpha, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb,
                              &beta, C, CUDA_R_32F, ldc, compute_type(be), CUBLAS_GEMM_DEFAULT));
}

void cuda_gemm_batched(Backend *be, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                         const float *A, int lda, long long sa, const float *B, int ldb, long long sb, float beta,
                         float *C, int ldc, long long sc, int batch) {
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(cuda_state(be)->cublas, ta, tb, m, n, k, &alpha, A, CUDA_R_32F, lda, sa,
                                            B, CUDA_R_32F, ldb, sb, &beta, C, CUDA_R_32F, ldc, sc, batch,
                                            compute_type(be), CUBLAS_GEMM_DEFAULT));
}

extern "C" void cuda_matmul_forward(Backend *be, float *out, const float *inp, const float *w, const float *bias,
                                    int N, int K, int M) {
    cuda_gemm(be, CUBLAS_OP_T, CUBLAS_OP_N, M, N, K, 1.0f, w, K, inp, K, 0.0f, out, M);
    if (bias) {
        CUDA_LAUNCH(blocks_for((size_t)N * M, 256), 256, 0, 0, add_bias_kernel)(out, bias, (size_t)N, M);
        CUDA_LAUNCH_CHECK();
    }
}

extern "C" void cuda_matmul_backward(Backend *be, float *dinp, float *dw, float *dbias, const float *dout,
                                     const float *inp, const float *w, int N, int K, int M) {
    if (dinp) cuda_gemm(be, CUBLAS_OP_N, CUBLAS_OP_N, K, N, M, 1.0f, w, K, dout, M, 0.0f, dinp, K);
    cuda_gemm(be, CUBLAS_OP_N, CUBLAS_OP_T, K, M, N, 1.0f, inp, K, dout, M, 1.0f, dw, K);
    if (dbias) {
        CUDA_LAUNCH(blocks_for((size_t)M, 128), 128, 0, 0, bias_grad_kernel)(dbias, dout, N, M);
        CUDA_LAUNCH_CHECK();
    }
}
