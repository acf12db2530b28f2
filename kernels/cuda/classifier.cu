/*
 * classifier.cu: the fused classifier on the GPU (ops.h op_classifier_forward_backward; reference
 * kernels/cpu/classifier.c): one block per row, max and sum of exp by block reductions, dlogits written in place.
 */
#include <math.h>
#include <stdint.h>

#include "cuda_common.h"

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
    if (!N) return;
    CUDA_LAUNCH(N, 512, 0, 0, classifier_kernel)(losses, logits, targets, V, Vp, dlogits_scale,
                                                 cuda_state(be)->bad_target);
    CUDA_LAUNCH_CHECK();
}

// *acc += the mean of the losses: one block of LOSS_THREADS threads, thread i summing elements i, i + LOSS_THREADS, ...
// in double, then a fixed shared-memory tree (the same bits for the same losses). n·4 bytes, one launch.
#define LOSS_THREADS 1024
__global__ static void loss_accumulate_kernel(double *acc, const float *losses, size_t n) {
    __shared__ double sh[LOSS_THREADS];
    double s = 0.0;
    for (size_t i = threadIdx.x; i < n; i += LOSS_THREADS) s += losses[i];
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int o = LOSS_THREADS / 2; o > 0; o >>= 1) {
        if (threadIdx.x < o) sh[threadIdx.x] += sh[threadIdx.x + o];
        __syncthreads();
    }
    if (threadIdx.x == 0) *acc += (float)(sh[0] / n);
}

extern "C" void cuda_loss_accumulate(Backend *be, double *acc, const float *losses, size_t n) {
    (void)be;
    if (!n) return;
    CUDA_LAUNCH(1, LOSS_THREADS, 0, 0, loss_accumulate_kernel)(acc, losses, n);
    CUDA_LAUNCH_CHECK();
}
