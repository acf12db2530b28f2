/*
 * gelu.cu: the elementwise ops on the GPU: GELU forward and backward (reference kernels/cpu/gelu.c) and the
 * residual add (kernels/cpu/residual.c), in the compute dtype (fp32 arithmetic, one rounding per stored value).
 * Bytes: GELU forward 2·n·e, backward 3·n·e, the residual add 3·n·e (e = 4 in fp32, 2 in bf16); no FLOPs counted.
 */
#include <math.h>
#include <stdint.h>

#include "cuda_common.h"

// ---- elementwise ----

#define GELU_SCALE 0.7978845608028654f   // sqrt(2/pi)

template <class T>
__global__ static void gelu_forward_kernel(T *out, const T *inp, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float x = f32(inp[i]);
    st(&out[i], 0.5f * x * (1.0f + tanhf(GELU_SCALE * (x + 0.044715f * x * x * x))));
}

template <class T>
__global__ static void gelu_backward_kernel(T *dinp, const T *inp, const T *dout, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float x = f32(inp[i]), u = GELU_SCALE * (x + 0.044715f * x * x * x), th = tanhf(u);
    const float sech2 = 1.0f - th * th;
    const float grad = 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
    st(&dinp[i], f32(dout[i]) * grad);
}

template <class T>
__global__ static void residual_kernel(T *out, const T *a, const T *b, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) st(&out[i], f32(a[i]) + f32(b[i]));
}

template <class T>
static void gelu_forward(void *out, const void *inp, size_t n) {
    CUDA_LAUNCH(blocks_for(n, 256), 256, 0, 0, gelu_forward_kernel<T>)((T *)out, (const T *)inp, n);
    CUDA_LAUNCH_CHECK();
}
template <class T>
static void gelu_backward(void *dinp, const void *inp, const void *dout, size_t n) {
    CUDA_LAUNCH(blocks_for(n, 256), 256, 0, 0, gelu_backward_kernel<T>)((T *)dinp, (const T *)inp, (const T *)dout,
                                                                        n);
    CUDA_LAUNCH_CHECK();
}
template <class T>
static void residual_forward(void *out, const void *a, const void *b, size_t n) {
    CUDA_LAUNCH(blocks_for(n, 256), 256, 0, 0, residual_kernel<T>)((T *)out, (const T *)a, (const T *)b, n);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_gelu_forward(Backend *be, void *out, const void *inp, size_t n) {
    if (n) CUDA_BY_DTYPE(be, gelu_forward, out, inp, n);
}
extern "C" void cuda_gelu_backward(Backend *be, void *dinp, const void *inp, const void *dout, size_t n) {
    if (n) CUDA_BY_DTYPE(be, gelu_backward, dinp, inp, dout, n);
}
extern "C" void cuda_residual_forward(Backend *be, void *out, const void *a, const void *b, size_t n) {
    if (n) CUDA_BY_DTYPE(be, residual_forward, out, a, b, n);
}
