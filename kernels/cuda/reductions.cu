/*
 * reductions.cu: whole-buffer reductions and fills on the GPU (ops.h op_sum_squares, op_global_norm, op_scale,
 * op_zero), and the fixed-order column sums of per-block partials the deterministic reductions of the other families
 * finish with (cuda_column_sums). The sum of squares: CUDA_SUMSQ_BLOCKS grid-stride partials in double, a shared-
 * memory tree per block, the partials added in order by one thread: the same bits on every GPU; n·4 bytes read (n·2
 * for bf16 gradients, --grad-dtype bf16: the reductions are templates on the gradients' dtype).
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
extern "C" void cuda_zero(Backend *be, void *x, size_t bytes) {
    (void)be;
    if (bytes) CUDA_CHECK(cudaMemsetAsync(x, 0, bytes, 0));
}

// ---- sum of squares: CUDA_SUMSQ_BLOCKS fixed chunks, partials in double, then summed in order ----

template <class G>
__global__ static void sumsq_partials_kernel(double *partials, const G *x, size_t n) {
    CUDA_DYNAMIC_SMEM(double, sh, 16);   // [256]
    double s = 0.0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const double xi = f32(x[i]);
        s += xi * xi;
    }
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int o = blockDim.x / 2; o > 0; o >>= 1) {
        if (threadIdx.x < o) sh[threadIdx.x] += sh[threadIdx.x + o];
        __syncthreads();
    }
    if (threadIdx.x == 0) partials[blockIdx.x] = sh[0];
}

// The partials summed in order into partials[nb]; with norm given, also *norm = (float)sqrt(total).
__global__ static void sumsq_total_kernel(double *partials, int nb, float *norm) {
    if (threadIdx.x == 0 && blockIdx.x == 0) {
        double s = 0.0;
        for (int i = 0; i < nb; i++) s += partials[i];
        partials[nb] = s;
        if (norm) *norm = (float)sqrt(s);
    }
}

template <class G>
static void sumsq_partials(double *partials, const Grad *x, size_t n) {
    CUDA_LAUNCH(CUDA_SUMSQ_BLOCKS, 256, 256 * sizeof(double), 0, sumsq_partials_kernel<G>)(partials, (const G *)x, n);
    CUDA_LAUNCH_CHECK();
}

extern "C" double cuda_sum_squares(Backend *be, const Grad *x, size_t n) {
    CudaState *cs = cuda_state(be);
    CUDA_BY_GRAD(be, sumsq_partials, cs->partials, x, n);
    CUDA_LAUNCH(1, 32, 0, 0, sumsq_total_kernel)(cs->partials, CUDA_SUMSQ_BLOCKS, (float *)NULL);
    CUDA_LAUNCH_CHECK();
    double total;
    CUDA_CHECK(cudaMemcpy(&total, cs->partials + CUDA_SUMSQ_BLOCKS, sizeof total, cudaMemcpyDeviceToHost));
    return total;
}

// The global norm without a host round trip: the same partials and ordered total as cuda_sum_squares, the square
// root taken on the device into *norm.
extern "C" void cuda_global_norm(Backend *be, float *norm, const Grad *x, size_t n) {
    CudaState *cs = cuda_state(be);
    CUDA_BY_GRAD(be, sumsq_partials, cs->partials, x, n);
    CUDA_LAUNCH(1, 32, 0, 0, sumsq_total_kernel)(cs->partials, CUDA_SUMSQ_BLOCKS, norm);
    CUDA_LAUNCH_CHECK();
}

// ---- column sums of per-block partials, in a fixed order ----
// out[m] += sum_{p < P} partials[p * ld + m]. Blocks of 32 columns x 8 rows of threads: thread (x, y) sums the
// partial rows y, y + 8, ... of column m (coalesced across x), and the 8 sums are added in y order: the same bits
// for the same inputs, whatever the GPU. Bytes: P·M·4 read; the callers keep P·M small (a partial row per block).
template <class G>
__global__ static void column_sums_kernel(G *out, const float *partials, int P, int M, size_t ld) {
    CUDA_DYNAMIC_SMEM(float, s, 16);   // [8][33]
    const int m = blockIdx.x * 32 + threadIdx.x;
    float acc = 0.0f;
    if (m < M)
        for (int p = threadIdx.y; p < P; p += 8) acc += partials[(size_t)p * ld + m];
    s[threadIdx.y * 33 + threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && m < M) {
        float t = s[threadIdx.x];
        for (int y = 1; y < 8; y++) t += s[y * 33 + threadIdx.x];
        st(&out[m], f32(out[m]) + t);
    }
}

template <class G>
static void column_sums(Grad *out, const float *partials, int P, int M, size_t ld) {
    CUDA_LAUNCH(blocks_for((size_t)M, 32), dim3(32, 8), 8 * 33 * sizeof(float), 0, column_sums_kernel<G>)(
        (G *)out, partials, P, M, ld);
    CUDA_LAUNCH_CHECK();
}

void cuda_column_sums(Backend *be, Grad *out, const float *partials, int P, int M, size_t ld) {
    if (M) CUDA_BY_GRAD(be, column_sums, out, partials, P, M, ld);
}
