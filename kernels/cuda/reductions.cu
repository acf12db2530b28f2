/*
 * reductions.cu: whole-buffer reductions and fills on the GPU (ops.h op_sum_squares, op_scale, op_zero).
 */
#include <math.h>
#include <stdint.h>

#include "cuda_common.h"

__global__ static void scale_kernel(float *x, float s, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] *= s;
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
