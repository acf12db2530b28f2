/*
 * ops.h: the kernels seam. Every computation the model performs is declared here exactly once; model/ calls
 * nothing else. kernels/cpu/<op>.c implements each op in C11 + OpenMP (matmuls optionally on OpenBLAS through
 * CBLAS); kernels/cuda/ implements them on NVIDIA GPUs behind the same declarations (backend.h's table).
 *
 * Conventions
 *   - Shapes use the project's dimension names: B batch, T sequence, C model width, NH heads, HS = C/NH head size,
 *     V vocab, Vp padded vocab, F feed-forward width, N = B*T rows. Row-major, last index fastest.
 *   - Element types: a tensor passed as `void *` is in the run's compute dtype (be->dtype: the weights' working
 *     copy, activations and activation gradients; fp32 on the CPU, bf16 or fp32 on a GPU); a `float *` tensor is
 *     always fp32 (LayerNorm statistics, the logsumexp, losses, master weights, AdamW moments, workspaces); a
 *     `Grad *` tensor is a parameter gradient, in be->grad_dtype (fp32 by default; bf16 with --grad-dtype bf16, only
 *     over a bf16 compute dtype: then every "+=" below rounds the fp32 sum to bf16 once per op). Arithmetic is fp32
 *     inside every op whatever the storage (matmuls accumulate in fp32 on tensor cores). Each op states its shapes
 *     above it.
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
void op_encoder_forward(Backend *be, void *out, const int32_t *tokens, const void *wte, const void *wpe,
                        int B, int T, int C);
// dwte (Vp,C) +=, dwpe (maxT,C) += from dout (B,T,C). Deterministic: rows are summed in token order.
// work: ENCODER_WORK_FLOATS(B*T) floats of scratch the op may overwrite (the GPU sorts (token, position) keys there;
// the CPU needs none). One formula for every backend, so the planner sizes it without knowing which one runs.
#define ENCODER_WORK_FLOATS(N) (4 * (size_t)(N) + 2048)
void op_encoder_backward(Backend *be, Grad *dwte, Grad *dwpe, float *work, const void *dout,
                         const int32_t *tokens, int B, int T, int C);

// LayerNorm over the last dim, eps 1e-5 (GPT-2).  inp (N,C), w (C), b (C) -> out (N,C), mean (N), rstd (N)
void op_layernorm_forward(Backend *be, void *out, float *mean, float *rstd, const void *inp, const void *w,
                          const void *b, int N, int C);
// The residual add and the LayerNorm after it in one pass: resid (N,C) = a + b, then out, mean, rstd = the LayerNorm
// of resid, bitwise what op_residual_forward followed by op_layernorm_forward gives (the norm reads the sum as stored,
// so a recompute of the LayerNorm alone from resid reproduces it). Bytes: a, b read, resid and out written, 4·N·C
// elements where the two ops move 5·N·C.
void op_residual_layernorm_forward(Backend *be, void *resid, void *out, float *mean, float *rstd, const void *a,
                                   const void *b, const void *w, const void *bias, int N, int C);
// dinp (N,C) += (residual stream), dw (C) +=, db (C) += ; from dout (N,C), inp, w, mean, rstd.
void op_layernorm_backward(Backend *be, void *dinp, Grad *dw, Grad *db, const void *dout, const void *inp,
                           const void *w, const float *mean, const float *rstd, int N, int C);

// Linear layer (PyTorch convention).  inp (N,K), w (M,K), bias (M) or NULL -> out (N,M) = inp @ w^T + bias
void op_matmul_forward(Backend *be, void *out, const void *inp, const void *w, const void *bias,
                       int N, int K, int M);
// dinp (N,K) = dout @ w (written; skipped when dinp is NULL), dw (M,K) += dout^T @ inp, dbias (M) += colsum(dout)
// (skipped when dbias is NULL).
void op_matmul_backward(Backend *be, void *dinp, Grad *dw, Grad *dbias, const void *dout, const void *inp,
                        const void *w, int N, int K, int M);

// The MLP's down projection backward with GELU's backward fused in: dinp (N,K) = (dout @ w) * gelu'(pre) (written),
// pre (N,K) the GELU's input (fc's output) and inp = gelu(pre) the projection's input; dw and dbias as in
// op_matmul_backward. On a GPU one GEMM with the GELU gradient in its epilogue (cuBLASLt DGELU), so the GELU
// backward's own pass (3·N·K elements: read dinp and pre, write dinp) becomes one read of pre; the same arithmetic
// as op_matmul_backward followed by op_gelu_backward where the epilogue is not available.
void op_matmul_backward_gelu(Backend *be, void *dinp, Grad *dw, Grad *dbias, const void *dout, const void *inp,
                             const void *w, const void *pre, int N, int K, int M);

// Causal multi-head self-attention core, scale 1/sqrt(HS).
// qkv (B,T,3C) laid out [q | k | v] per token, each (NH,HS) -> out (B,T,C), att (B,NH,T,T) softmax probabilities
// (only the causal lower triangle is written and read).
// Dropout on the probabilities (p > 0; training): out = (P . M / (1 - p)) V with M op_dropout's mask for `key` over
// the flat (B,NH,T,T) index ((b*NH + h)*T + t)*T + t2; att keeps P (the softmax backward needs it), and scratch
// (B,NH,T,T; NULL when p = 0) is what the op may overwrite with the dropped probabilities.
void op_attention_forward(Backend *be, void *out, void *att, void *scratch, const void *qkv, int B, int T, int C,
                          int NH, float p, uint64_t key);
// dqkv (B,T,3C) = (written), from dout (B,T,C), qkv, att, and the forward's p and key. datt_scratch (B,NH,T,T) is
// scratch the op may overwrite.
void op_attention_backward(Backend *be, void *dqkv, void *datt_scratch, const void *dout, const void *qkv,
                           const void *att, int B, int T, int C, int NH, float p, uint64_t key);

// Flash attention: the same causal attention without the (B,NH,T,T) probabilities (FlashAttention-2: tiles of keys,
// an online softmax, the probabilities recomputed in the backward from Q, K and each row's logsumexp).
// qkv (B,T,3C) -> out (B,T,C), lse (B,NH,T) = log sum_t2 exp(s[t][t2]) per query row (kept for the backward).
// work: FLASH_WORK_FLOATS(B,T,C,NH,es) floats of scratch the op may overwrite, es the compute dtype's bytes per
// element (the backward's D_t = dO_t . O_t and 64 floats of alignment slack; in fp32 the CUDA kernels' bf16 copies of
// q, k, v and dO in head-major layout; in bf16, where the kernels read the model's buffers, the backward's fp32 dQ
// before it is rounded into dqkv, with 64 more floats of slack); one formula for every backend, so the planner sizes
// it without knowing which one runs.
// Precision: the CPU computes in fp32; the GPU in bf16 tensor cores with fp32 accumulation.
// Head sizes the GPU's flash kernels take (the CPU takes any).
#define FLASH_GPU_HEAD_SIZE_OK(hs) ((hs) == 32 || (hs) == 64 || (hs) == 80 || (hs) == 96 || (hs) == 128)
#define FLASH_WORK_FLOATS(B, T, C, NH, es) \
    (((es) == 4 ? 2 : 1) * (size_t)(B) * (T) * (C) + (size_t)(B) * (NH) * (T) + ((es) == 4 ? 64 : 128))
void op_flash_attention_forward(Backend *be, void *out, float *lse, float *work, const void *qkv, int B, int T,
                                int C, int NH);
// dqkv (B,T,3C) = (written), from dout (B,T,C), qkv, out and lse of the forward. Deterministic on the CPU; on the
// GPU when be->deterministic is set (the dQ accumulation order is then fixed), else dQ is summed with atomics.
void op_flash_attention_backward(Backend *be, void *dqkv, float *work, const void *dout, const void *qkv,
                                 const void *out, const float *lse, int B, int T, int C, int NH);

// GELU, tanh approximation (GPT-2).  inp (N) -> out (N)
void op_gelu_forward(Backend *be, void *out, const void *inp, size_t N);
// dinp (N) = dout * gelu'(inp)  (written)
void op_gelu_backward(Backend *be, void *dinp, const void *inp, const void *dout, size_t N);

// out (N) = a + b
void op_residual_forward(Backend *be, void *out, const void *a, const void *b, size_t N);

// Dropout (Srivastava et al. 2014), inverted: out (N) = keep(i) ? inp / (1 - p) : 0, keep(i) the counter-based mask of
// kernels/dropout_mask.h for `key` (the same elements on every backend; nothing stored). Its backward is the same op
// with the same key on the gradient. out may be inp. 0 <= p < 1; p = 0 copies.
void op_dropout(Backend *be, void *out, const void *inp, size_t N, float p, uint64_t key);

// Fused classifier: softmax over the first V of Vp logits per row, cross-entropy against targets, and (when
// dlogits_scale != 0) the logits gradient written IN PLACE over the logits, never storing probabilities separately.
// logits (N,Vp) -> losses (N); with dlogits_scale s: logits[n][v] := s * (p[n][v] - [v == target[n]]) for v < V,
// and 0 for the padded columns V <= v < Vp. s is dloss/dloss_n (1/(B*T*grad_accum) for a mean loss).
// A target outside [0, V) is an internal error (the loader validates tokens).
void op_classifier_forward_backward(Backend *be, float *losses, void *logits, const int32_t *targets,
                                    int N, int V, int Vp, float dlogits_scale);

// The micro-step's mean loss added to a running sum where the losses live (no host round trip; the trainer reads
// the sum once per step): *acc (one double of backend memory) += (double)(float)(sum_n losses[n] / n), the sum in
// double in a fixed order (on the CPU in index order, as the host summed it before).  losses (n)
void op_loss_accumulate(Backend *be, double *acc, const float *losses, size_t n);

// Sum of squares of a gradient buffer, accumulated in double so the result does not depend on thread count beyond
// rounding of the final sum (each thread sums a fixed chunk; chunks are combined in order).  x (n) -> return sum x^2
double op_sum_squares(Backend *be, const Grad *x, size_t n);

// x (n) *= s
void op_scale(Backend *be, float *x, float s, size_t n);
// x (bytes) = 0, any dtype (not a scale by 0, which would keep a NaN)
void op_zero(Backend *be, void *x, size_t bytes);

// The weights' working copy in the compute dtype: dst (n) = src (n) rounded as op_adamw_step rounds its copy with
// the same seed (stochastically from a hash of (seed, index), or to nearest even when seed is 0; a copy in fp32),
// so the copy is a function of the master and the seed wherever it was written. The model calls it when the fp32
// master weights change other than by op_adamw_step (initialisation, a load, a resume, a ZeRO all-gather).
// dst[k] and src[k] are element first + k of the parameter buffer (the index the rounding hashes), so a ZeRO-1 rank
// rounds its shard exactly as the whole buffer is rounded.
void op_to_compute(Backend *be, void *dst, const float *src, size_t n, size_t first, uint32_t seed);

// The global L2 norm where the data lives: *norm (one float of backend memory) = (float)sqrt(op_sum_squares(x, n)).
// On a GPU nothing comes back to the host: the optimizer step reads the norm on the device, the host when it logs.
void op_global_norm(Backend *be, float *norm, const Grad *x, size_t n);

// AdamW with decoupled weight decay (Loshchilov & Hutter), bias-corrected, over the flat range [lo, hi) of the
// parameter buffers in one pass (one launch on a GPU), weight decay per tensor from a table:
//   g = grads * s ; m = b1 m + (1-b1) g ; v = b2 v + (1-b2) g^2 ; mhat = m/(1-b1^t) ; vhat = v/(1-b2^t)
//   p -= lr * (mhat / (sqrt(vhat) + eps) + wd * p)
// s = grad_scale * clip, where, when norm (backend memory, e.g. op_global_norm's) is given and grad_clip > 0,
// clip = *norm > grad_clip ? (float)(grad_clip / *norm) : 1 (global-norm clipping, decided where the norm lives, so
// the gradient is read once and the host never waits for the norm); and when *norm is not finite, or loss (backend
// memory, e.g. op_loss_accumulate's sum; may be NULL) is given and *loss is not, the step changes nothing (the
// caller counts it as skipped). norm NULL: s = grad_scale. Step t starts at 1.
// grads: the whole buffer (indexed from 0; only [lo, hi) is read); params, m, v: from tensors->master_base and
// ->moment_base (0: whole buffers; a ZeRO-1 rank's shards start at its range). params_c (compute dtype, whole,
// may be NULL) is the weights' working copy: its [lo, hi) is written from the updated params, rounded to the
// compute dtype (stochastically when h->seed != 0: rounded up with probability equal to the distance from the value
// below, from a hash of (seed, index), so the rounding is unbiased and repeatable; to nearest even when 0).
// (AdamWTensors and AdamWHyper are declared in backend.h, whose op table takes them.)
void op_adamw_step(Backend *be, float *params, void *params_c, const Grad *grads, float *m, float *v, size_t lo,
                   size_t hi, const AdamWTensors *tensors, const AdamWHyper *h, const float *norm,
                   const double *loss);

#ifdef __cplusplus
}
#endif

#endif
