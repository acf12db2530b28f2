/*
 * adamw.cu: the AdamW update on the GPU (ops.h op_adamw_update; reference kernels/cpu/adamw.c).
 */
#include <math.h>
#include <stdint.h>

#include "cuda_common.h"

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
    CUDA_LAUNCH(blocks_for(n, 256), 256, 0, 0, adamw_kernel)(params, grads, m, v, n, lr, beta1, beta2, eps,
                                                             weight_decay, grad_scale, bc1, bc2);
    CUDA_LAUNCH_CHECK();
}
