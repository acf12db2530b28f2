/*
 * adamw.cu: the AdamW step on the GPU (ops.h op_adamw_step; reference kernels/cpu/adamw.c), and the weights' working
 * copy it maintains (op_to_compute, which rounds exactly as the step does). The step is one launch over the
 * flat range [lo, hi) of every parameter tensor, weight decay per tensor from the table (passed by value: the kernel
 * finds an element's tensor by a scan of at most ADAMW_MAX_TENSORS boundaries), the bias corrections computed once
 * on the host, and the clip factor (or the skip of a non-finite step) decided by each block's first thread from the
 * norm (and the loss) in device memory, so the step needs nothing from the host after the backward.
 * With a bf16 compute dtype the same pass writes the weights' bf16 working copy from the updated master, rounded
 * stochastically (AdamWHyper.seed != 0; store_copy below: unbiased, so updates smaller than half a bf16 step
 * still move the copy on average) or to nearest even (seed 0). The random bits are a hash of (seed, index):
 * repeatable, independent of the launch shape, and op_to_compute reproduces them.
 * Bytes per parameter: read g, m, v, p and write m, v, p: 28, + 2 for the bf16 copy, - 2 for bf16 gradients (the
 * kernel is a template on both dtypes); GPT-2 124M: 3.5 GB (3.7 GB),
 * ~1.05 ms (1.1 ms) at 3.35 TB/s (the floor), where the table scan adds 16 integer compares per element (~2 G, well
 * under the memory time).
 */
#include <math.h>
#include <stdint.h>

#include "cuda_common.h"

#define ADAMW_THREADS 256

// The bf16 working copy's rounding (here and in op_to_compute): stochastic from a hash of (seed, index), to nearest
// even when seed is 0. Stochastic: the fp32 value plus 16 random bits below bf16's last mantissa bit, truncated, which
// rounds up (in magnitude) with probability equal to the discarded fraction: unbiased. NaN and infinity to nearest.
__device__ static inline uint32_t sr_hash(uint32_t x) {   // lowbias32's constants
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}
__device__ static inline void store_copy(float *c, size_t i, float v, uint32_t seed) {
    (void)seed;
    c[i] = v;
}
__device__ static inline void store_copy(bf16 *c, size_t i, float v, uint32_t seed) {
    const uint32_t u = __float_as_uint(v);
    if (!seed || (u & 0x7f800000u) == 0x7f800000u) {
        c[i] = __float2bfloat16(v);
        return;
    }
    const uint32_t r = sr_hash(sr_hash(seed ^ (uint32_t)(i >> 32)) ^ (uint32_t)i);
    c[i] = __ushort_as_bfloat16((unsigned short)((u + (r & 0xffffu)) >> 16));
}

template <class T, class G>
__global__ static void adamw_step_kernel(float *p, T *pc, const G *g, float *m, float *v, size_t lo, size_t hi,
                                         AdamWTensors tens, AdamWHyper h, float bc1, float bc2, const float *norm,
                                         const double *loss) {
    CUDA_DYNAMIC_SMEM(float, decided, 16);   // [0]: the gradient scale, [1]: 1 when the step is skipped
    if (threadIdx.x == 0) {
        float s = h.grad_scale;
        int k = loss && !isfinite(*loss);
        if (norm && !k) {
            const float nv = *norm;
            if (!isfinite(nv)) k = 1;
            else if (h.grad_clip > 0 && nv > h.grad_clip) s = h.grad_scale * (float)(h.grad_clip / nv);
        }
        decided[0] = s;
        decided[1] = (float)k;
    }
    __syncthreads();
    if (decided[1] != 0.0f) return;
    const float s = decided[0];
    for (size_t i = lo + (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < hi; i += (size_t)gridDim.x * blockDim.x) {
        int k = 0;
        while (k < tens.n - 1 && i >= tens.end[k]) k++;
        const float wd = (tens.decay >> k & 1u) ? h.weight_decay : 0.0f;
        const size_t ip = i - tens.master_base, im = i - tens.moment_base;   // the fp32 state's shards
        const float gi = f32(g[i]) * s;
        const float mi = h.beta1 * m[im] + (1.0f - h.beta1) * gi, vi = h.beta2 * v[im] + (1.0f - h.beta2) * gi * gi;
        m[im] = mi;
        v[im] = vi;
        const float mhat = mi / bc1, vhat = vi / bc2;
        const float pi = p[ip] - h.lr * (mhat / (sqrtf(vhat) + h.eps) + wd * p[ip]);
        p[ip] = pi;
        if (pc) store_copy(pc, i, pi, h.seed);
    }
}

template <class T, class G>
static void adamw_launch(unsigned blocks, float *params, void *params_c, const Grad *grads, float *m, float *v,
                         size_t lo, size_t hi, const AdamWTensors *tensors, const AdamWHyper *h, float bc1, float bc2,
                         const float *norm, const double *loss) {
    CUDA_LAUNCH(blocks, ADAMW_THREADS, 2 * sizeof(float), 0, adamw_step_kernel<T, G>)(
        params, (T *)params_c, (const G *)grads, m, v, lo, hi, *tensors, *h, bc1, bc2, norm, loss);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_adamw_step(Backend *be, float *params, void *params_c, const Grad *grads, float *m, float *v,
                                size_t lo, size_t hi, const AdamWTensors *tensors, const AdamWHyper *h,
                                const float *norm, const double *loss) {
    if (hi <= lo) return;
    if (params_c == (void *)params) params_c = NULL;   // the working copy is the fp32 master itself
    const float bc1 = (float)(1.0 - pow((double)h->beta1, h->t)), bc2 = (float)(1.0 - pow((double)h->beta2, h->t));
    size_t blocks = (hi - lo + ADAMW_THREADS - 1) / ADAMW_THREADS;
    if (blocks > (1u << 20)) blocks = 1u << 20;   // then a grid-stride loop
    CUDA_BY_DTYPES(be, adamw_launch, (unsigned)blocks, params, params_c, grads, m, v, lo, hi, tensors, h, bc1, bc2,
                  norm, loss);
}

// The weights' working copy: dst = src rounded to the compute dtype as AdamW rounds it (store_copy). n·(4 + e) bytes.
// dst and src start at element `first` (store_copy hashes the buffer's index: dst - first is the whole copy's start).
template <class T>
__global__ static void to_compute_kernel(T *dst, const float *src, size_t n, size_t first, uint32_t seed) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) store_copy(dst - first, first + i, src[i], seed);
}

template <class T>
static void to_compute(void *dst, const float *src, size_t n, size_t first, uint32_t seed) {
    CUDA_LAUNCH(blocks_for(n, 256), 256, 0, 0, to_compute_kernel<T>)((T *)dst, src, n, first, seed);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_to_compute(Backend *be, void *dst, const float *src, size_t n, size_t first, uint32_t seed) {
    if (!n || dst == (const void *)src) return;
    CUDA_BY_DTYPE(be, to_compute, dst, src, n, first, seed);
}
