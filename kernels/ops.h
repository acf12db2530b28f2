/*
 * ops.h: the kernels seam. Every computation the model performs is declared here exactly once; model/ calls
 * nothing else. kernels/cpu/<op>.c implements each op in C11 + OpenMP (matmuls optionally on OpenBLAS through
 * CBLAS); kernels/cuda/ implements them on NVIDIA GPUs behind the same declarations (backend.h's table).
 *
 * Conventions
 *   - Shapes use the project's dimension names: B batch, T sequence, C model width, NH heads, HS = C/NH head size,
 *     V vocab, Vp padded vocab, F feed-forward width, N = B*T rows. Row-major, last index fastest.
 *   - All tensors are fp32 (the GPU may compute matmuls in TF32 or bf16 on them). Each op states its shapes above it.
 *   - The gradient contract (the single place it is written down):
 *       * parameter gradients ACCUMULATE (+=), so gradient accumulation over micro-steps works by not zeroing;
 *       * activation gradients are WRITTEN (=);
 *       * the one exception is the residual stream: op_layernorm_backward ACCUMULATES into dinp (the residual
 *         gradient), because a LayerNorm's input is always a residual-stream tensor that also receives the
 *         skip-connection gradient.
 *   - Ops never allocate. Scratch they need is passed in by the caller (sized by the model's planner).
 *   - Ops return nothing; a backend checks its own errors (internal bugs abort with file:line).
 */
#ifndef GPTRAIN_OPS_H
#define GPTRAIN_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

// Token + position embedding.  tokens (B,T), wte (Vp,C), wpe (maxT,C) -> out (B,T,C)
void op_encoder_forward(Backend *be, float *out, const int32_t *tokens, const float *wte, const float *wpe,
                        int B, int T, int C);
// dwte (Vp,C) +=, dwpe (maxT,C) += from dout (B,T,C). Deterministic: rows are summed in token order.
// work: ENCODER_WORK_FLOATS(B*T) floats of scratch the op may overwrite (the GPU sorts (token, position) keys there;
// the CPU needs none). One formula for every backend, so the planner sizes it without knowing which one runs.
#define ENCODER_WORK_FLOATS(N) (4 * (size_t)(N) + 2048)
void op_encoder_backward(Backend *be, float *dwte, float *dwpe, float *work, const float *dout,
                         const int32_t *tokens, int B, int T, int C);

// LayerNorm over the last dim, eps 1e-5 (GPT-2).  inp (N,C), w (C), b (C) -> out (N,C), mean (N), rstd (N)
void op_layernorm_forward(Backend *be, float *out, float *mean, float *rstd, const float *inp, const float *w,
                          const float *b, int N, int C);
// dinp (N,C) += (residual stream), dw (C) +=, db (C) += ; from dout (N,C), inp, w, mean, rstd.
void op_layernorm_backward(Backend *be, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                           const float *w, const float *mean, const float *rstd, int N, int C);

// Linear layer (PyTorch convention).  inp (N,K), w (M,K), bias (M) or NULL -> out (N,M) = inp @ w^T + bias
void op_matmul_forward(Backend *be, float *out, const float *inp, const float *w, const float *bias,
                       int N, int K, int M);
// dinp (N,K) = dout @ w (written; skipped when dinp is NULL), dw (M,K) += dout^T @ inp, dbias (M) += colsum(dout)
// (skipped when dbias is NULL).
void op_matmul_backward(Backend *be, float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                        const float *w, int N, int K, int M);

// Causal multi-head self-attention core, scale 1/sqrt(HS).
// qkv (B,T,3C) laid out [q | k | v] per token, each (NH,HS) -> out (B,T,C), att (B,NH,T,T) softmax probabilities
// (only the causal lower triangle is written and read).
void op_attention_forward(Backend *be, float *out, float *att, const float *qkv, int B, int T, int C, int NH);
// dqkv (B,T,3C) = (written), from dout (B,T,C), qkv, att. datt_scratch (B,NH,T,T) is scratch the op may overwrite.
void op_attention_backward(Backend *be, float *dqkv, float *datt_scratch, const float *dout, const float *qkv,
                           const float *att, int B, int T, int C, int NH);

// Flash attention: the same causal attention without the (B,NH,T,T) probabilities (FlashAttention-2: tiles of keys,
// an online softmax, the probabilities recomputed in the backward from Q, K and each row's logsumexp).
// qkv (B,T,3C) -> out (B,T,C), lse (B,NH,T) = log sum_t2 exp(s[t][t2]) per query row (kept for the backward).
// work: FLASH_WORK_FLOATS(B,T,C,NH) floats of scratch the op may overwrite (the CUDA kernels keep bf16 copies of
// q, k, v and dO in head-major layout there, the backward's D_t = dO_t . O_t, and 64 floats of alignment slack);
// one formula for every backend, so the planner sizes it without knowing which one runs.
// Precision: the CPU computes in fp32; the GPU in bf16 tensor cores with fp32 accumulation.
// Head sizes the GPU's flash kernels take (the CPU takes any).
#define FLASH_GPU_HEAD_SIZE_OK(hs) ((hs) == 32 || (hs) == 64 || (hs) == 80 || (hs) == 96 || (hs) == 128)
#define FLASH_WORK_FLOATS(B, T, C, NH) (2 * (size_t)(B) * (T) * (C) + (size_t)(B) * (NH) * (T) + 64)
void op_flash_attention_forward(Backend *be, float *out, float *lse, float *work, const float *qkv, int B, int T,
                                int C, int NH);
// dqkv (B,T,3C) = (written), from dout (B,T,C), qkv, out and lse of the forward. Deterministic on the CPU; on the
// GPU when be->deterministic is set (the dQ accumulation order is then fixed), else dQ is summed with atomics.
void op_flash_attention_backward(Backend *be, float *dqkv, float *work, const float *dout, const float *qkv,
                                 const float *out, const float *lse, int B, int T, int C, int NH);

// GELU, tanh approximation (GPT-2).  inp (N) -> out (N)
void op_gelu_forward(Backend *be, float *out, const float *inp, size_t N);
// dinp (N) = dout * gelu'(inp)  (written)
void op_gelu_backward(Backend *be, float *dinp, const float *inp, const float *dout, size_t N);

// out (N) = a + b
void op_residual_forward(Backend *be, float *out, const float *a, const float *b, size_t N);

// Fused classifier: softmax over the first V of Vp logits per row, cross-entropy against targets, and (when
// dlogits_scale != 0) the logits gradient written IN PLACE over the logits, never storing probabilities separately.
// logits (N,Vp) -> losses (N); with dlogits_scale s: logits[n][v] := s * (p[n][v] - [v == target[n]]) for v < V,
// and 0 for the padded columns V <= v < Vp. s is dloss/dloss_n (1/(B*T*grad_accum) for a mean loss).
// A target outside [0, V) is an internal error (the loader validates tokens).
void op_classifier_forward_backward(Backend *be, float *losses, float *logits, const int32_t *targets,
                                    int N, int V, int Vp, float dlogits_scale);

// The micro-step's mean loss added to a running sum where the losses live (no host round trip; the trainer reads
// the sum once per step): *acc (one double of backend memory) += (double)(float)(sum_n losses[n] / n), the sum in
// double in a fixed order (on the CPU in index order, as the host summed it before).  losses (n)
void op_loss_accumulate(Backend *be, double *acc, const float *losses, size_t n);

// Sum of squares of a buffer, accumulated in double so the result does not depend on thread count beyond rounding
// of the final sum (each thread sums a fixed chunk; chunks are combined in order).  x (n) -> return sum x^2
double op_sum_squares(Backend *be, const float *x, size_t n);

// x (n) *= s
void op_scale(Backend *be, float *x, float s, size_t n);
// x (n) = 0 (not a scale by 0, which would keep a NaN)
void op_zero(Backend *be, float *x, size_t n);

// The global L2 norm where the data lives: *norm (one float of backend memory) = (float)sqrt(op_sum_squares(x, n)).
// On a GPU nothing comes back to the host: the optimizer step reads the norm on the device, the host when it logs.
void op_global_norm(Backend *be, float *norm, const float *x, size_t n);

// AdamW with decoupled weight decay (Loshchilov & Hutter), bias-corrected, over the flat range [lo, hi) of the
// parameter buffers in one pass (one launch on a GPU), weight decay per tensor from a table:
//   g = grads * s ; m = b1 m + (1-b1) g ; v = b2 v + (1-b2) g^2 ; mhat = m/(1-b1^t) ; vhat = v/(1-b2^t)
//   p -= lr * (mhat / (sqrt(vhat) + eps) + wd * p)
// s = grad_scale * clip, where, when norm (backend memory, e.g. op_global_norm's) is given and grad_clip > 0,
// clip = *norm > grad_clip ? (float)(grad_clip / *norm) : 1 (global-norm clipping, decided where the norm lives, so
// the gradient is read once and the host never waits for the norm); and when *norm is not finite, or loss (backend
// memory, e.g. op_loss_accumulate's sum; may be NULL) is given and *loss is not, the step changes nothing (the
// caller counts it as skipped). norm NULL: s = grad_scale. Step t starts at 1.
// params, grads, m, v: whole buffers (indexed from 0; only [lo, hi) is read or written).
// (AdamWTensors and AdamWHyper are declared in backend.h, whose op table takes them.)
void op_adamw_step(Backend *be, float *params, const float *grads, float *m, float *v, size_t lo, size_t hi,
                   const AdamWTensors *tensors, const AdamWHyper *h, const float *norm, const double *loss);

#ifdef __cplusplus
}
#endif

#endif
