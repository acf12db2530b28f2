/*
 * encoder.c: token + position embedding, forward and backward. The backward scatters into the rows of the tokens
 * seen; to stay deterministic each thread owns a range of channels and walks the tokens in order.
 */
#include <omp.h>

#include "cpu.h"

// tokens (B,T), wte (Vp,C), wpe (maxT,C) -> out (B,T,C)
void cpu_encoder_forward(Backend *be, void *out_, const int32_t *tokens, const void *wte_, const void *wpe_, int B,
                         int T, int C) {
    float *out = out_;
    const float *wte = wte_;
    const float *wpe = wpe_;
    const int N = B * T;
#pragma omp parallel for schedule(static) if ((size_t)N * C > CPU_PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        const float *te = wte + (size_t)tokens[n] * C, *pe = wpe + (size_t)(n % T) * C;
        float *o = out + (size_t)n * C;
        for (int c = 0; c < C; c++) o[c] = te[c] + pe[c];
    }
}

// dwte (Vp,C) +=, dwpe (maxT,C) += from dout (B,T,C)
void cpu_encoder_backward(Backend *be, Grad *dwte_, Grad *dwpe_, float *work, const void *dout_,
                          const int32_t *tokens, int B, int T, int C) {
    float *dwte = dwte_, *dwpe = dwpe_;   // fp32 on the CPU (gpt_create refuses bf16 gradients there)
    const float *dout = dout_;
    (void)work;   // the GPU's sort keys; the CPU walks the tokens in order
    const int N = B * T;
    const int CHUNK = 16;  // 64-byte rows of channels per task
    const int nchunks = (C + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) if ((size_t)N * C > CPU_PARALLEL_MIN)
    for (int ch = 0; ch < nchunks; ch++) {
        const int c0 = ch * CHUNK, c1 = c0 + CHUNK < C ? c0 + CHUNK : C;
        for (int n = 0; n < N; n++) {
            const float *d = dout + (size_t)n * C;
            float *te = dwte + (size_t)tokens[n] * C, *pe = dwpe + (size_t)(n % T) * C;
            for (int c = c0; c < c1; c++) {
                te[c] += d[c];
                pe[c] += d[c];
            }
        }
    }
}
