/*
 * encoder.cu: the token + position embedding on the GPU (ops.h op_encoder_*; reference kernels/cpu/encoder.c).
 */
#include <math.h>
#include <stdint.h>

#include "cuda_common.h"

// ---- encoder ----

__global__ static void encoder_forward_kernel(float *out, const int32_t *tokens, const float *wte, const float *wpe,
                                              int B, int T, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)B * T * C) return;
    const int c = (int)(i % C);
    const size_t n = i / C;
    const int t = (int)(n % T);
    out[i] = wte[(size_t)tokens[n] * C + c] + wpe[(size_t)t * C + c];
}

__global__ static void encoder_backward_wpe_kernel(float *dwpe, const float *dout, int B, int T, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;   // (t, c)
    if (i >= (size_t)T * C) return;
    float s = 0.0f;
    for (int b = 0; b < B; b++) s += dout[(size_t)b * T * C + i];
    dwpe[i] += s;
}

__global__ static void encoder_backward_wte_kernel(float *dwte, const float *dout, const int32_t *tokens, int N,
                                                   int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    for (int n = 0; n < N; n++) dwte[(size_t)tokens[n] * C + c] += dout[(size_t)n * C + c];
}

extern "C" void cuda_encoder_forward(Backend *be, float *out, const int32_t *tokens, const float *wte,
                                     const float *wpe, int B, int T, int C) {
    (void)be;
    size_t n = (size_t)B * T * C;
    CUDA_LAUNCH(blocks_for(n, 256), 256, 0, 0, encoder_forward_kernel)(out, tokens, wte, wpe, B, T, C);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_encoder_backward(Backend *be, float *dwte, float *dwpe, const float *dout, const int32_t *tokens,
                                      int B, int T, int C) {
    (void)be;
    CUDA_LAUNCH(blocks_for((size_t)T * C, 256), 256, 0, 0, encoder_backward_wpe_kernel)(dwpe, dout, B, T, C);
    CUDA_LAUNCH_CHECK();
    CUDA_LAUNCH(blocks_for((size_t)C, 128), 128, 0, 0, encoder_backward_wte_kernel)(dwte, dout, tokens, B * T, C);
    CUDA_LAUNCH_CHECK();
}
