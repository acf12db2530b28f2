/*
 * gpt.h: the GPT-2 model: its state (the buffers of the plan in model/plan.h, bound to named views), forward,
 * hand-written backward with activation recompute, and the AdamW step. The configuration is model/config.h, the
 * tensor tables, memory plan and FLOP walk model/plan.h (both included here).
 *
 * The model (Radford et al. 2019, GPT-2; layout as in llm.c): token + learned position embeddings; L pre-LayerNorm
 * blocks x += attproj(attn(qkv(ln1(x)))); x += fcproj(gelu(fc(ln2(x)))); final LayerNorm; LM head tied to the token
 * embedding; cross-entropy over the real vocabulary V (the embedding has Vp >= V rows, Vp a multiple of 128; the
 * padded rows are zero, never predicted, never in the loss).
 *
 * All computation goes through kernels/ops.h; this file knows nothing of which backend runs it.
 */
#ifndef GPTRAIN_GPT_H
#define GPTRAIN_GPT_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "config.h"
#include "plan.h"

#ifdef __cplusplus
extern "C" {
#endif

// Dropout's sites: the `site` of each mask's dropout_key (kernels/dropout_mask.h), the embeddings' with layer 0.
typedef enum { GPT_DROP_EMBED = 0, GPT_DROP_ATTN_PROBS = 1, GPT_DROP_ATTPROJ = 2, GPT_DROP_MLP = 3 } GptDropSite;

typedef struct GPT {
    GPTConfig cfg;
    Backend *be;
    int B, T;                 // the planned (maximum) micro-batch; forward may run smaller B, T
    RecomputeMode recompute;
    AttentionKind attention;
    GPTMemory mem;
    ParamInfo param_info[NUM_PARAM_TENSORS];
    ActInfo act_info[NUM_ACT_TENSORS];
    DType dtype;              // the compute dtype (the backend's): weights' working copy, activations, their gradients
    DType grad_dtype;         // the parameter gradients' (the backend's): fp32, or bf16 over a bf16 compute dtype
    float *params_mem, *m_mem, *v_mem;   // fp32: master weights, AdamW moments
    Grad *grads_mem;          // the parameter gradients, laid out as params_mem, in grad_dtype
    void *params_c_mem;       // the weights the ops read: params_mem itself in fp32, else its bf16 copy
    int stochastic_rounding;  // 1 (default): AdamW rounds the bf16 copy stochastically (--stochastic-rounding)
    // Dropout (--dropout; nanoGPT's sites): in a training forward (gpt_forward_train) only, after the embeddings,
    // on the attention probabilities, after the attention projection and after the MLP, each mask from
    // dropout_key(dropout_seed, dropout_step, dropout_micro, layer, site) (kernels/dropout_mask.h), which the caller
    // sets per micro-step; the backward and a recompute regenerate the same masks. Naive attention only (the flash
    // kernels do not drop the probabilities).
    // The mask of a site is element-wise over its tensor in memory order: (B,T,C) after the embeddings (layer 0),
    // the projections and the MLP, (B,NH,T,T) on the probabilities; the sites are GptDropSite's.
    float dropout;
    uint64_t dropout_seed;
    int dropout_step, dropout_micro;
    int dropout_active;       // the last forward dropped (a training forward with dropout > 0)
    void *acts_mem, *grad_acts_mem;   // laid out in bytes by the plan (act_info; the scratch by gpt_plan_grad_acts)
    ActTensors acts;
    GradActTensors gacts;
    int32_t *inputs, *targets; // (B,T) copies of the last forward's batch (the backward reads them)
    int32_t *tokens_mem;       // two sets of inputs and targets, used in turn by successive forwards (an upload
                               // never overwrites the set that queued work still reads: backend_upload)
    int token_set;             // the set the next forward takes
    // The step's scalars in backend memory (one allocation, GPT_SCALAR_BYTES): the running sum of the micro-steps'
    // mean losses (double) and the global gradient norm (float), which the optimizer step reads where they live.
    void *scalars_mem;
    double *loss_sum;
    float *grad_norm;
    int cur_B, cur_T;          // shape of the last forward
    int has_targets;
    float mean_loss;
    int adam_t;                // optimizer steps taken
    // Called by gpt_backward when gradients are final: with layer l after that layer's backward (its slices of the
    // per-layer tensors), then with -1 after the embeddings' (wte, wpe, lnfw, lnfb). The trainer launches each
    // bucket's all-reduce from here so communication overlaps the rest of the backward. NULL: no calls.
    void (*on_grads_ready)(void *ctx, int layer);
    void *hook_ctx;           // both hooks' context
    // ZeRO-1 (gpt_create_sharded, mem.shards > 1): this rank's range [shard_lo, shard_hi) of the flat parameter
    // buffer. m_mem and v_mem hold it only (mem.shard elements from shard_lo), and so does params_mem when a bf16
    // copy is what the ops read; the gradients and the weights the ops read are whole (padded to shards * shard).
    // allgather, which the caller sets before any weights arrive, concatenates every rank's `count` elements of
    // `elem` bytes at send into recv (shards * count) in rank order on every rank, after the work queued so far and
    // before any queued later (send == recv + rank * count * elem: in place); every rank calls it alike.
    size_t shard_lo, shard_hi;
    void (*allgather)(void *ctx, const void *send, void *recv, size_t count, size_t elem);
} GPT;

// The three parameter-sized state buffers, for moving them between the backend's memory and the host (files).
typedef enum { GPT_STATE_PARAMS = 0, GPT_STATE_M = 1, GPT_STATE_V = 2 } GPTState;

// Plan and allocate everything for micro-batch (B,T) and a recompute mode, in the backend's compute and gradient
// dtypes (be->dtype, be->grad_dtype: bf16 only on a GPU, bf16 gradients only over bf16). Parameters are zero until
// gpt_init_weights or a load. Returns 0, or -1 with err on a user error (e.g. T > max_seq_len).
int gpt_create(GPT *g, const GPTConfig *cfg, Backend *be, int B, int T, RecomputeMode rc, AttentionKind attn,
               char *err, size_t errlen);
// The same as rank `rank` of a ZeRO-1 group of `shards` (the plan of gpt_memory_shard; shards 1 is gpt_create).
int gpt_create_sharded(GPT *g, const GPTConfig *cfg, Backend *be, int B, int T, RecomputeMode rc, AttentionKind attn,
                       int rank, int shards, char *err, size_t errlen);
void gpt_destroy(GPT *g);
// GPT-2 initialisation from a seed (deterministic, independent of thread count).
void gpt_init_weights(GPT *g, uint64_t seed);
// Copy weights or an AdamW moment (num_params floats) to or from host memory. A sharded model (ZeRO-1) takes its
// range from src, and gathers the whole state into dst through the gradient buffer (so: between steps), a
// collective every rank calls alike for every state (a no-op for one every rank holds whole); dst may be NULL on a
// rank that keeps nothing.
void gpt_state_to_host(const GPT *g, GPTState which, float *dst);
void gpt_state_from_host(GPT *g, GPTState which, const float *src);
// The fp32 master weights were changed in backend memory other than by the optimizer step: refresh their working
// copy (nothing in fp32); sharded, from this rank's range, then all-gathered.
void gpt_weights_changed(GPT *g);
// n activations at src (backend memory, the compute dtype; e.g. a row of g->acts.logits) to fp32 host memory.
void gpt_acts_to_host(const GPT *g, float *dst, const void *src, size_t n);
// The whole gradient buffer (num_params, in the gradients' dtype) to fp32 host memory.
void gpt_grads_to_host(const GPT *g, float *dst);
// Look up a parameter tensor by name (NULL if unknown).
const ParamInfo *gpt_param_find(const GPT *g, const char *name);

// Forward on tokens (b,t) with b <= B, t <= T. With targets: returns the mean loss; when dlogits_scale != 0 the
// logits buffer is overwritten by dlogits so that gpt_backward can run (training). Without targets: logits only,
// returns 0. The caller's dlogits_scale is 1/(b*t*grad_accum) for a mean over the whole optimizer batch.
// It waits for the loss; the training step uses the three calls below instead, which do not.
float gpt_forward(GPT *g, const int32_t *inputs, const int32_t *targets, int b, int t, float dlogits_scale);
// The training step's forward: the same, queued without waiting (on a GPU the batch goes up on the copy stream),
// its mean loss added where it lives to the step's loss sum, which gpt_loss_reset zeroes and gpt_loss_sum reads
// (waiting for it).
void gpt_forward_train(GPT *g, const int32_t *inputs, const int32_t *targets, int b, int t, float dlogits_scale);
void gpt_loss_reset(GPT *g);
double gpt_loss_sum(GPT *g);
// Backward of the last training forward; parameter gradients accumulate into g->grads_mem.
void gpt_backward(GPT *g);
void gpt_zero_grad(GPT *g);
// Global L2 norm of the gradient buffer (read back to the host).
float gpt_grad_norm(GPT *g);
// The sum of squares of the gradients of this rank's range [shard_lo, shard_hi) (all of them unsharded), in double.
double gpt_shard_sum_squares(GPT *g);
// One AdamW step over every tensor (decay per the table), gradients scaled by grad_scale first.
void gpt_adamw_step(GPT *g, float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale);
// The training step's update: the global gradient norm and AdamW computed where the gradients live, clipped to
// grad_clip (> 0; 0: no clipping), and skipped there when the norm is not finite, or with check_loss when the
// step's loss sum is not (no host round trip between backward and update). Returns the norm, read back after the
// update was queued; when the step was skipped nothing changed (the step counter too).
// loss_scale: the gradients are that many times the true ones (a power of two, --loss-scale; 1: none): the norm
// and the clip threshold are compared in scaled units and the update divides it out; the norm returned is the true
// one. loss_sum (may be NULL) gets the step's loss sum, read back with the norm in the same copy.
float gpt_adamw_step_clipped(GPT *g, float lr, float beta1, float beta2, float eps, float weight_decay,
                             double grad_clip, float loss_scale, int check_loss, double *loss_sum);
// The same restricted to the flat parameter range [lo, hi), with the gradient read from grads (indexed like the
// parameter buffer, in the gradients' dtype). A sharded model takes its own range only, and ends the step by
// all-gathering the weights the ops read (the update of every rank's range). gpt_adamw_step and _clipped need a
// whole model.
void gpt_adamw_step_range(GPT *g, const Grad *grads, size_t lo, size_t hi, float lr, float beta1, float beta2,
                          float eps, float weight_decay, float grad_scale);

#ifdef __cplusplus
}
#endif

#endif
