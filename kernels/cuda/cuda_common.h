/*
 * cuda_common.h: what the CUDA backend's files share: the check macros (every CUDA and cuBLAS call goes through one,
 * printing file:line, the call and the library's error string; every kernel launch is followed by CUDA_LAUNCH_CHECK),
 * the backend's private state, and the op implementations' declarations (ops_cuda.cu) for backend_cuda.cu's table.
 */
#ifndef GPTRAIN_CUDA_COMMON_H
#define GPTRAIN_CUDA_COMMON_H

#include <cublas_v2.h>
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

// The backend's state (Backend.impl).
typedef struct CudaState {
    int device;
    cudaDeviceProp prop;
    cublasHandle_t cublas;
    int matmul_mode;          // CUDA_MATMUL_*: exact fp32, or TF32 / bf16 tensor cores on fp32 storage
    double *partials;         // sum_squares: per-block partial sums (CUDA_SUMSQ_BLOCKS doubles), then the total
    double *partials_host;    // pinned host copy of the total
    size_t context_bytes;     // device memory in use right after context creation and these buffers
} CudaState;

#define CUDA_SUMSQ_BLOCKS 1024
enum { CUDA_MATMUL_FP32 = 0, CUDA_MATMUL_TF32 = 1, CUDA_MATMUL_BF16 = 2 };

static inline CudaState *cuda_state(Backend *be) { return (CudaState *)be->impl; }

#ifdef __cplusplus
extern "C" {
#endif
void cuda_encoder_forward(Backend *, float *, const int32_t *, const float *, const float *, int, int, int);
void cuda_encoder_backward(Backend *, float *, float *, const float *, const int32_t *, int, int, int);
void cuda_layernorm_forward(Backend *, float *, float *, float *, const float *, const float *, const float *, int,
                            int);
void cuda_layernorm_backward(Backend *, float *, float *, float *, const float *, const float *, const float *,
                             const float *, const float *, int, int);
void cuda_matmul_forward(Backend *, float *, const float *, const float *, const float *, int, int, int);
void cuda_matmul_backward(Backend *, float *, float *, float *, const float *, const float *, const float *, int,
                          int, int);
void cuda_attention_forward(Backend *, float *, float *, const float *, int, int, int, int);
void cuda_attention_backward(Backend *, float *, float *, const float *, const float *, const float *, int, int,
                             int, int);
void cuda_flash_attention_forward(Backend *, float *, float *, float *, const float *, int, int, int, int);
void cuda_flash_attention_backward(Backend *, float *, float *, const float *, const float *, const float *,
                                   const float *, int, int, int, int);
void cuda_gelu_forward(Backend *, float *, const float *, size_t);
void cuda_gelu_backward(Backend *, float *, const float *, const float *, size_t);
void cuda_residual_forward(Backend *, float *, const float *, const float *, size_t);
void cuda_classifier_forward_backward(Backend *, float *, float *, const int32_t *, int, int, int, float);
double cuda_sum_squares(Backend *, const float *, size_t);
void cuda_scale(Backend *, float *, float, size_t);
void cuda_zero(Backend *, float *, size_t);
void cuda_adamw_update(Backend *, float *, const float *, float *, float *, size_t, float, float, float, float, float,
                       float, int);
#ifdef __cplusplus
}
#endif

#endif
