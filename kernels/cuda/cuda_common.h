/*
 * cuda_common.h: what the CUDA backend's files share: the check macros (every CUDA and cuBLAS call goes through one,
 * printing file:line, the call and the library's error string; every kernel launch is followed by CUDA_LAUNCH_CHECK),
 * the backend's private state, the small device helpers every op family uses (launch sizes, warp reductions, the
 * compute dtype's loads and stores), and the op implementations' declarations for backend_cuda.cu's table.
 *
 * The compute dtype (Backend.dtype, ops.h): every kernel that touches compute-dtype tensors is a template on their
 * element type T (float or __nv_bfloat16), reads them with f32() and writes them with st() (fp32 arithmetic inside,
 * one rounding to nearest even per stored value), and its entry point picks T with CUDA_BY_DTYPE.
 * The op families live one per file beside their CPU references: kernels/cuda/<op>.cu next to kernels/cpu/<op>.c (encoder, layernorm, matmul,
 * attention and flash, gelu (with the residual add), dropout, classifier, adamw, reductions).
 */
#ifndef GPTRAIN_CUDA_COMMON_H
#define GPTRAIN_CUDA_COMMON_H

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <math.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend.h"

#define CUDA_CHECK(call)                                                                                        \
    do {                                                                                                        \
        cudaError_t err_ = (call);                                                                              \
        if (err_ != cudaSuccess) {                                                                              \
            fprintf(stderr, "gptrain: CUDA error at %s:%d: %s: %s\n", __FILE__, __LINE__, #call,                \
                    cudaGetErrorString(err_));                                                                  \
            exit(1);                                                                                            \
        }                                                                                                       \
    } while (0)

#define CUBLAS_CHECK(call)                                                                                      \
    do {                                                                                                        \
        cublasStatus_t st_ = (call);                                                                            \
        if (st_ != CUBLAS_STATUS_SUCCESS) {                                                                     \
            fprintf(stderr, "gptrain: cuBLAS error at %s:%d: %s: %s\n", __FILE__, __LINE__, #call,              \
                    cublasGetStatusString(st_));                                                                \
            exit(1);                                                                                            \
        }                                                                                                       \
    } while (0)

#define CUDA_LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())

// The one seam between these sources and the emulated device (tests/emu/, built by `make emu`): every kernel launch
// is CUDA_LAUNCH(grid, block, shared bytes, stream, kernel)(arguments...), which under nvcc is exactly
// kernel<<<grid, block, shared bytes, stream>>>(arguments...); and a kernel's dynamic shared memory is declared with
// CUDA_DYNAMIC_SMEM(type, name, alignment), under nvcc `extern __shared__ __align__(alignment) type name[]` (host C++
// has no declaration that is shared by the threads of a block and sized at the launch).
#ifdef GPTRAIN_EMU
#define CUDA_LAUNCH(grid, block, smem, stream, ...) EMU_LAUNCH(grid, block, smem, stream, __VA_ARGS__)
#define CUDA_DYNAMIC_SMEM(type, name, align) EMU_DYNAMIC_SMEM(type, name, align)
#else
#define CUDA_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<grid, block, smem, stream>>>
#define CUDA_DYNAMIC_SMEM(type, name, align) extern __shared__ __align__(align) type name[]
#endif

// A cuBLASLt matmul set up once (matmul.cu's matmul_lt): the descriptors and the algorithm its heuristic chose, for
// one shape, epilogue, dtype and alignment of each operand (the heuristic's choice depends on all of them).
typedef struct LtKey {
    int32_t m, n, k, lda, ldb, ldd, opa, opb;
    uint32_t epilogue, dtype, compute;
    uint32_t dw;         // 1: D is a weight gradient (the gradients' dtype, accumulated: beta = 1)
    uint32_t align[5];   // bytes: A, B, D, the bias, the aux matrix (0 when absent)
    int64_t aux_ld;
} LtKey;
typedef struct LtPlan {
    LtKey key;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t La, Lb, Ld;
    cublasLtMatmulAlgo_t algo;
    int ok;              // 0: the heuristic found no algorithm (the caller's fallback runs)
} LtPlan;
#define CUDA_LT_PLANS 64   // GPT-2: 5 shapes x 2 epilogues per micro-batch shape; beyond this, set up per call

// The backend's state (Backend.impl).
typedef struct CudaState {
    int device;
    cudaDeviceProp prop;
    cublasHandle_t cublas;
    cublasLtHandle_t cublaslt;  // the matmuls with a fused epilogue (matmul.cu), with their workspace
    void *lt_workspace;
    size_t lt_workspace_bytes;
    LtPlan lt_plans[CUDA_LT_PLANS];
    int lt_nplans;
    int matmul_mode;          // CUDA_MATMUL_*: exact fp32, or TF32 / bf16 / fp16 tensor cores on fp32 storage
    double *partials;         // sum_squares: per-block partial sums (CUDA_SUMSQ_BLOCKS doubles), then the total
    double *partials_host;    // pinned host copy of the total
    float *scratch;           // per-block partials of the deterministic column reductions (CUDA_SCRATCH_FLOATS)
    size_t scratch_floats;
    int *bad_target;          // the classifier's flag: -1, or a target outside [0, V) (checked when the host waits)
    cudaEvent_t marks[BACKEND_MARKS];   // MemOps.mark
    // MemOps.upload: a non-blocking copy stream, two pinned staging slots used in turn (each reused only once its
    // last copy is done), and the compute-stream event of the previous upload call that the next copy waits for.
    cudaStream_t copy_stream;
    void *stage[2];
    cudaEvent_t stage_done[2], prev_upload;
    int stage_next, have_prev_upload;
    size_t context_bytes;     // device memory in use right after context creation and these buffers
} CudaState;

#define CUDA_SUMSQ_BLOCKS 1024
// 8 MiB: the LayerNorm backward's partials at B=16 T=1024 C=768 are 3 MiB; larger shapes give each block more rows.
#define CUDA_SCRATCH_FLOATS ((size_t)1 << 21)
// cuBLASLt's workspace, allocated once: 32 MiB, what NVIDIA suggests for Hopper.
#define CUDA_LT_WORKSPACE_BYTES ((size_t)32 << 20)
// 2 x 4 MiB of pinned staging for uploads: a micro-batch's inputs and targets up to 512K tokens (beyond that an
// upload is a synchronous copy).
#define CUDA_STAGE_BYTES ((size_t)4 << 20)
enum { CUDA_MATMUL_FP32 = 0, CUDA_MATMUL_TF32 = 1, CUDA_MATMUL_BF16 = 2, CUDA_MATMUL_FP16 = 3 };

static inline CudaState *cuda_state(Backend *be) { return (CudaState *)be->impl; }

// Blocks of `threads` covering n elements.
static inline int blocks_for(size_t n, int threads) { return (int)((n + threads - 1) / threads); }

// ---- warp reductions (fixed shuffle trees: the same inputs give the same bits) ----
__device__ static inline float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ static inline float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
// ---- the compute dtype ----
// A kernel template declares its shared memory with CUDA_DYNAMIC_SMEM, never `__shared__`: host C++ compilers drop
// the emulated build's section attribute from statics of template instantiations, so a `__shared__` there would be
// one unchecked static for every block (tests/test_emu_lint.sh finds any).
typedef __nv_bfloat16 bf16;
__device__ static inline float f32(float x) { return x; }
__device__ static inline float f32(bf16 x) { return __bfloat162float(x); }
__device__ static inline void st(float *p, float v) { *p = v; }
__device__ static inline void st(bf16 *p, float v) { *p = __float2bfloat16(v); }
// fn<T>(...) with T the backend's compute dtype.
#define CUDA_BY_DTYPE(be, fn, ...) \
    ((be)->dtype == DTYPE_BF16 ? fn<bf16>(__VA_ARGS__) : fn<float>(__VA_ARGS__))
// fn<G>(...) with G the parameter gradients' dtype (Backend.grad_dtype, ops.h's `Grad *`).
#define CUDA_BY_GRAD(be, fn, ...) \
    ((be)->grad_dtype == DTYPE_BF16 ? fn<bf16>(__VA_ARGS__) : fn<float>(__VA_ARGS__))
// fn<T, G>(...): both; bf16 gradients exist only over a bf16 compute dtype (gpt_create refuses the rest).
#define CUDA_BY_DTYPES(be, fn, ...)                                                                   \
    ((be)->dtype != DTYPE_BF16        ? fn<float, float>(__VA_ARGS__)                                  \
     : (be)->grad_dtype == DTYPE_BF16 ? fn<bf16, bf16>(__VA_ARGS__)                                    \
                                      : fn<bf16, float>(__VA_ARGS__))

// The GEMM helpers of matmul.cu (attention.cu's products go through them too): column-major C (m,n) =
// alpha op(A) op(B) + beta C with A and B in the compute dtype and C in it too, or in the gradients' dtype when
// c_grad (the weight gradients: fp32, or bf16 with --grad-dtype bf16). On fp32 storage the products run in the
// backend's matmul precision (exact, TF32, bf16 or fp16 tensor cores, inputs rounded on the fly); on bf16 storage
// bf16 tensor cores. fp32 accumulation throughout.
void cuda_gemm(Backend *be, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
               const void *A, int lda, const void *B, int ldb, float beta, void *C, int ldc, int c_grad);
void cuda_gemm_batched(Backend *be, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                       const void *A, int lda, long long sa, const void *B, int ldb, long long sb, float beta,
                       void *C, int ldc, long long sc, int batch);
// out (M, a parameter gradient: the gradients' dtype) += sum over p < P of partials[p * ld + m], in p order, one
// rounding into out (reductions.cu).
void cuda_column_sums(Backend *be, Grad *out, const float *partials, int P, int M, size_t ld);

#ifdef __cplusplus
extern "C" {
#endif
void cuda_encoder_forward(Backend *, void *, const int32_t *, const void *, const void *, int, int, int);
void cuda_encoder_backward(Backend *, Grad *, Grad *, float *, const void *, const int32_t *, int, int, int);
void cuda_layernorm_forward(Backend *, void *, float *, float *, const void *, const void *, const void *, int, int);
void cuda_residual_layernorm_forward(Backend *, void *, void *, float *, float *, const void *, const void *,
                                     const void *, const void *, int, int);
void cuda_layernorm_backward(Backend *, void *, Grad *, Grad *, const void *, const void *, const void *,
                             const float *, const float *, int, int);
void cuda_matmul_forward(Backend *, void *, const void *, const void *, const void *, int, int, int);
void cuda_matmul_backward(Backend *, void *, Grad *, Grad *, const void *, const void *, const void *, int, int,
                          int);
void cuda_matmul_backward_gelu(Backend *, void *, Grad *, Grad *, const void *, const void *, const void *,
                               const void *, int, int, int);
void cuda_attention_forward(Backend *, void *, void *, void *, const void *, int, int, int, int, float, uint64_t);
void cuda_attention_backward(Backend *, void *, void *, const void *, const void *, const void *, int, int, int, int,
                             float, uint64_t);
void cuda_flash_attention_forward(Backend *, void *, float *, float *, const void *, int, int, int, int);
void cuda_flash_attention_backward(Backend *, void *, float *, const void *, const void *, const void *,
                                   const float *, int, int, int, int);
void cuda_gelu_forward(Backend *, void *, const void *, size_t);
void cuda_gelu_backward(Backend *, void *, const void *, const void *, size_t);   // dinp may be dout (in place)
void cuda_residual_forward(Backend *, void *, const void *, const void *, size_t);
void cuda_dropout(Backend *, void *, const void *, size_t, float, uint64_t);
void cuda_classifier_forward_backward(Backend *, float *, void *, const int32_t *, int, int, int, float);
void cuda_loss_accumulate(Backend *, double *, const float *, size_t);
double cuda_sum_squares(Backend *, const Grad *, size_t);
void cuda_scale(Backend *, float *, float, size_t);
void cuda_zero(Backend *, void *, size_t);
void cuda_to_compute(Backend *, void *, const float *, size_t, size_t, uint32_t);
void cuda_global_norm(Backend *, float *, const Grad *, size_t);
void cuda_adamw_step(Backend *, float *, void *, const Grad *, float *, float *, size_t, size_t,
                     const AdamWTensors *, const AdamWHyper *, const float *, const double *);
#ifdef __cplusplus
}
#endif

#endif
