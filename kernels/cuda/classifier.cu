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
