/*
 * classifier.cu: the fused classifier on the GPU (ops.h op_classifier_forward_backward; reference
 * kernels/cpu/classifier.c): one block per row, the softmax statistics in one online pass, dlogits written in place;
 * and the running sum of the micro-steps' mean losses.
 */
#include <math.h>
#include <stdint.h>

#include "cuda_common.h"

// One block per row. Pass 1 reads the row once for the softmax statistics with the online rule (Milakov &
// Gimelshein 2018): each thread keeps a running max m and sum s of exp(l - m) over its strided columns, rescaling s
// when m grows; the block combines the (m, s) pairs in a fixed tree. Pass 2 reads the row again and writes dlogits in
// place. Bytes per row: 2 reads + 1 write of Vp·e (the old kernel read max, sum and write: 3 reads + 1 write); at
// B=16 T=1024 Vp=50304: 9.9 GB, ~3 ms at 3.35 TB/s, the classifier's floor in fp32 storage; half in bf16, where the
// logits are read as bf16 and dlogits written in bf16, the softmax, loss and gradient computed in fp32.
#define CLS_THREADS 512

// (m, s) of two partial softmaxes combined: the larger max, each sum rescaled to it.
__device__ static inline void softmax_combine(float *m, float *s, float m2, float s2) {
    const float mx = fmaxf(*m, m2);
    *s = (*m == -INFINITY ? 0.0f : *s * expf(*m - mx)) + (m2 == -INFINITY ? 0.0f : s2 * expf(m2 - mx));
    *m = mx;
}

template <class T>
__global__ static void classifier_kernel(float *losses, T *logits, const int32_t *targets, int V, int Vp,
                                         float dscale, int *bad_target) {
    CUDA_DYNAMIC_SMEM(float, red, 16);   // the warps' (max, sum) pairs: sm[32], ss[32]
    float *sm = red, *ss = red + 32;
    const int n = blockIdx.x, lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    T *l = logits + (size_t)n * Vp;
    const int t = targets[n];
    if (t < 0 || t >= V) {   // an internal error (the loader validates tokens): flag it, leave the row
        if (threadIdx.x == 0) *bad_target = t;
        return;
    }
    float m = -INFINITY, s = 0.0f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        const float x = f32(l[v]);
        if (x > m) {
            s = (m == -INFINITY ? 0.0f : s * expf(m - x)) + 1.0f;
            m = x;
        } else s += expf(x - m);
    }
    for (int o = 16; o > 0; o >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        softmax_combine(&m, &s, m2, s2);
    }
    if (lane == 0) { sm[warp] = m; ss[warp] = s; }
    __syncthreads();
    m = lane < nw ? sm[lane] : -INFINITY;
    s = lane < nw ? ss[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        softmax_combine(&m, &s, m2, s2);
    }
    const float logsum = logf(s);
    const float lt = f32(l[t]);
    __syncthreads();   // every thread has read l[t] before any overwrites it
    if (threadIdx.x == 0) losses[n] = logsum - (lt - m);
    if (dscale != 0.0f) {
        for (int v = threadIdx.x; v < Vp; v += blockDim.x)
            st(&l[v], v < V ? dscale * (expf(f32(l[v]) - m - logsum) - (v == t ? 1.0f : 0.0f)) : 0.0f);
    }
}

template <class T>
static void classifier(float *losses, void *logits, const int32_t *targets, int N, int V, int Vp, float dscale,
                       int *bad_target) {
    CUDA_LAUNCH(N, CLS_THREADS, 64 * sizeof(float), 0, classifier_kernel<T>)(losses, (T *)logits, targets, V, Vp,
                                                                              dscale, bad_target);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_classifier_forward_backward(Backend *be, float *losses, void *logits, const int32_t *targets,
                                                 int N, int V, int Vp, float dlogits_scale) {
    if (!N) return;
    CUDA_BY_DTYPE(be, classifier, losses, logits, targets, N, V, Vp, dlogits_scale, cuda_state(be)->bad_target);
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
