/*
 * gelu.cu: the elementwise ops on the GPU: GELU forward and backward (reference kernels/cpu/gelu.c) and the
 * residual add (kernels/cpu/residual.c).
 */
#include <math.h>
#include <stdint.h>

#include "cuda_common.h"

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
