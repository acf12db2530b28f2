/*
 * cpu.h: the CPU backend's op implementations (C11 + OpenMP), declared for backend_cpu.c's tables. Each is the
 * ops.h op of the same name with a cpu_ prefix; matmuls come in two flavours, OpenBLAS and plain reference loops.
 */
#ifndef GPTRAIN_CPU_H
#define GPTRAIN_CPU_H

#include "backend.h"

#include <stdint.h>
#include <string.h>

// exp(x) in a form the compiler vectorizes (glibc's expf/tanhf are scalar calls unless -ffast-math, which the
// reference code does not use): x = n·ln2 + r with |r| <= ln2/2 (Cody-Waite split of ln2), exp(r) by its degree-7
// Taylor polynomial (truncation < 1e-8 relative), times 2^n built in the exponent bits. Within a few ulp of expf for
// x in [-87, 88]; inputs are clamped to that range (exp underflows to ~1e-38, never to a denormal or NaN). A NaN
// input runs the arithmetic on 0 (converting NaN to an integer is undefined behaviour) and comes out as itself.
static inline float cpu_expf(float xin) {
    const int is_nan = xin != xin;
    float x = xin < -87.0f ? -87.0f : xin;
    x = x > 88.0f ? 88.0f : x;
    x = is_nan ? 0.0f : x;
    // n = round(x / ln2) by the 1.5·2^23 trick: adding it pushes the fraction out of the mantissa (round to nearest).
    const float n = (x * 1.4426950408889634f + 12582912.0f) - 12582912.0f;
    const float r = (x - n * 0.693145751953125f) - n * 1.4286068203094172e-06f;
    const float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.6666667e-1f + r * (4.1666668e-2f + r * (8.3333338e-3f +
                    r * (1.3888889e-3f + r * 1.9841270e-4f))))));
    const uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;   // n in [-126, 127]: a normal exponent
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return is_nan ? xin : p * scale;
}

// tanh(u) = 1 - 2/(exp(2u) + 1): exact limits at +-inf, absolute error a few 1e-8 near 0.
static inline float cpu_tanhf(float u) { return 1.0f - 2.0f / (cpu_expf(2.0f * u) + 1.0f); }

// Below this many elements an elementwise loop runs on one thread: the OpenMP fork costs more than the work.
#define CPU_PARALLEL_MIN 32768

void cpu_encoder_forward(Backend *be, void *out, const int32_t *tokens, const void *wte, const void *wpe, int B,
                         int T, int C);
void cpu_encoder_backward(Backend *be, Grad *dwte, Grad *dwpe, float *work, const void *dout,
                          const int32_t *tokens, int B, int T, int C);
void cpu_layernorm_forward(Backend *be, void *out, float *mean, float *rstd, const void *inp, const void *w,
                           const void *b, int N, int C);
void cpu_residual_layernorm_forward(Backend *be, void *resid, void *out, float *mean, float *rstd, const void *a,
                                    const void *b, const void *w, const void *bias, int N, int C);
void cpu_layernorm_backward(Backend *be, void *dinp, Grad *dw, Grad *db, const void *dout, const void *inp,
                            const void *w, const float *mean, const float *rstd, int N, int C);
void cpu_matmul_forward_ref(Backend *be, void *out, const void *inp, const void *w, const void *bias, int N,
                            int K, int M);
void cpu_matmul_backward_ref(Backend *be, void *dinp, Grad *dw, Grad *dbias, const void *dout, const void *inp,
                             const void *w, int N, int K, int M);
#ifdef GPTRAIN_OPENBLAS
void cpu_matmul_forward_blas(Backend *be, void *out, const void *inp, const void *w, const void *bias, int N,
                             int K, int M);
void cpu_matmul_backward_blas(Backend *be, void *dinp, Grad *dw, Grad *dbias, const void *dout,
                              const void *inp, const void *w, int N, int K, int M);
#endif
void cpu_matmul_backward_gelu(Backend *be, void *dinp, Grad *dw, Grad *dbias, const void *dout, const void *inp,
                              const void *w, const void *pre, int N, int K, int M);
void cpu_attention_forward(Backend *be, void *out, void *att, void *scratch, const void *qkv, int B, int T, int C,
                           int NH, float p, uint64_t key);
void cpu_attention_backward(Backend *be, void *dqkv, void *datt_scratch, const void *dout, const void *qkv,
                            const void *att, int B, int T, int C, int NH, float p, uint64_t key);
void cpu_flash_attention_forward(Backend *be, void *out, float *lse, float *work, const void *qkv, int B, int T,
                                 int C, int NH);
void cpu_flash_attention_backward(Backend *be, void *dqkv, float *work, const void *dout, const void *qkv,
                                  const void *out, const float *lse, int B, int T, int C, int NH);
// The same pair in 64 x 64 blocks of OpenBLAS products (the "cpu" table; attention.c).
void cpu_flash_attention_forward_blas(Backend *be, void *out, float *lse, float *work, const void *qkv, int B,
                                      int T, int C, int NH);
void cpu_flash_attention_backward_blas(Backend *be, void *dqkv, float *work, const void *dout, const void *qkv,
                                       const void *out, const float *lse, int B, int T, int C, int NH);
void cpu_gelu_forward(Backend *be, void *out, const void *inp, size_t N);
void cpu_gelu_backward(Backend *be, void *dinp, const void *inp, const void *dout, size_t N);
void cpu_residual_forward(Backend *be, void *out, const void *a, const void *b, size_t N);
void cpu_dropout(Backend *be, void *out, const void *inp, size_t N, float p, uint64_t key);
void cpu_classifier_forward_backward(Backend *be, float *losses, void *logits, const int32_t *targets, int N, int V,
                                     int Vp, float dlogits_scale);
void cpu_loss_accumulate(Backend *be, double *acc, const float *losses, size_t n);
double cpu_sum_squares(Backend *be, const Grad *x, size_t n);
void cpu_scale(Backend *be, float *x, float s, size_t n);
void cpu_zero(Backend *be, void *x, size_t bytes);
void cpu_to_compute(Backend *be, void *dst, const float *src, size_t n, size_t first, uint32_t seed);
void cpu_global_norm(Backend *be, float *norm, const Grad *x, size_t n);
void cpu_adamw_step(Backend *be, float *params, void *params_c, const Grad *grads, float *m, float *v, size_t lo,
                    size_t hi, const AdamWTensors *tensors, const AdamWHyper *h, const float *norm,
                    const double *loss);
// Column sums over rows in row order (deterministic): acc (M) += sum_n x (N,M)
void cpu_colsum_accumulate(float *acc, const float *x, int N, int M);

#endif
