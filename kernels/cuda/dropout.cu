/*
 * dropout.cu: inverted dropout on the GPU (ops.h op_dropout; reference kernels/cpu/dropout.c), the mask of
 * kernels/dropout_mask.h evaluated per element (the same elements as the CPU's), in the compute dtype: fp32
 * arithmetic, one rounding per stored value. Bytes 2·n·e; a 64-bit hash per element, well under the memory time.
 */
#include <stdint.h>

#include "cuda_common.h"
#include "dropout_mask.h"

template <class T>
__global__ static void dropout_kernel(T *out, const T *inp, size_t n, uint32_t thr, float scale, uint64_t key) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) st(&out[i], dropout_keep(key, i, thr) ? f32(inp[i]) * scale : 0.0f);
}

template <class T>
static void dropout(void *out, const void *inp, size_t n, float p, uint64_t key) {
    CUDA_LAUNCH(blocks_for(n, 256), 256, 0, 0, dropout_kernel<T>)((T *)out, (const T *)inp, n, dropout_threshold(p),
                                                                 1.0f / (1.0f - p), key);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_dropout(Backend *be, void *out, const void *inp, size_t n, float p, uint64_t key) {
    if (!n) return;
    if (p == 0.0f) {
        if (out != inp) CUDA_CHECK(cudaMemcpyAsync(out, inp, n * dtype_bytes(be->dtype), cudaMemcpyDeviceToDevice, 0));
        return;
    }
    CUDA_BY_DTYPE(be, dropout, out, inp, n, p, key);
}
