/*
 * gpt.h: the GPT-2 model: configuration and presets, the parameter / gradient / optimizer-state / activation plan
 * (each one allocation with named views), forward, hand-written backward with activation recompute, AdamW, and the
 * FLOP and memory accounting that `gptrain info` and the per-step metrics print.
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

#ifdef __cplusplus
extern "C" {
#endif

#define GPT_VOCAB_PAD 128  // Vp = round_up(V, 128): matmul-friendly rows for the LM head

typedef struct GPTConfig {
    int n_layer;      // L
    int n_head;       // NH
    int d_model;      // C
    int d_ff;         // F (0 means 4*C until gpt_config_finalize)
    int vocab_size;   // V (real tokens)
    int padded_vocab; // Vp (set by gpt_config_finalize)
    int max_seq_len;  // rows of the position embedding
} GPTConfig;

// Named presets: gpt2-124m gpt2-350m gpt2-774m gpt2-1.5b small medium large xl 2.7b tiny tiny-shakespeare ...
// Fills the shape fields; vocab_size is set to GPT-2's 50257 for the GPT-2 and benchmark presets and left 0 for the
// tiny ones (the dataset's tokenizer decides). Returns 0, or -1 for an unknown name.
int gpt_config_preset(GPTConfig *cfg, const char *name);
// Comma-separated list of preset names, for --help and error messages.
const char *gpt_config_preset_names(void);
// Check the configuration (positive sizes under caps that keep every derived size in range, C % NH == 0, at most
// 1e12 parameters), fill d_ff and padded_vocab. On a user error returns -1 with one line in err naming the flag and
// what was expected.
int gpt_config_finalize(GPTConfig *cfg, char *err, size_t errlen);

typedef enum { RECOMPUTE_NONE = 0, RECOMPUTE_SELECTIVE = 1, RECOMPUTE_FULL = 2 } RecomputeMode;
// Attention: naive keeps the (B,NH,T,T) probabilities per layer; flash keeps only each row's logsumexp (B,NH,T) and
// recomputes the probabilities in the backward (ops.h op_flash_attention_*).
typedef enum { ATTN_NAIVE = 0, ATTN_FLASH = 1 } AttentionKind;
const char *gpt_attention_name(AttentionKind a);
const char *gpt_recompute_name(RecomputeMode m);
int gpt_recompute_parse(const char *s, RecomputeMode *out);  // 0 ok, -1 unknown

/*
 * The parameter list, written once. X(name, rows, cols, per_layer, decay, init)
 *   shape per layer is (rows, cols) with cols the fastest dim; per_layer tensors have L copies (leading dim L);
 *   decay: AdamW weight decay applies (matrices and embeddings, not biases or LayerNorm parameters);
 *   init: INIT_NORMAL (std 0.02), INIT_RESID (0.02/sqrt(2L), the residual projections), INIT_ZERO, INIT_ONE.
 * The order is llm.c's model-file order, so its checkpoints map onto this table one to one.
 */
#define GPT_PARAMS(X)                                   \
    X(wte, Vp, C, 0, 1, INIT_NORMAL)                    \
    X(wpe, maxT, C, 0, 1, INIT_NORMAL)                  \
    X(ln1w, 1, C, 1, 0, INIT_ONE)                       \
    X(ln1b, 1, C, 1, 0, INIT_ZERO)                      \
    X(qkvw, 3 * C, C, 1, 1, INIT_NORMAL)                \
    X(qkvb, 1, 3 * C, 1, 0, INIT_ZERO)                  \
    X(attprojw, C, C, 1, 1, INIT_RESID)                 \
    X(attprojb, 1, C, 1, 0, INIT_ZERO)                  \
    X(ln2w, 1, C, 1, 0, INIT_ONE)                       \
    X(ln2b, 1, C, 1, 0, INIT_ZERO)                      \
    X(fcw, F, C, 1, 1, INIT_NORMAL)                     \
    X(fcb, 1, F, 1, 0, INIT_ZERO)                       \
    X(fcprojw, C, F, 1, 1, INIT_RESID)                  \
    X(fcprojb, 1, C, 1, 0, INIT_ZERO)                   \
    X(lnfw, 1, C, 0, 0, INIT_ONE)                       \
    X(lnfb, 1, C, 0, 0, INIT_ZERO)

enum { INIT_NORMAL, INIT_RESID, INIT_ZERO, INIT_ONE };

#define GPT_PARAM_ENUM(name, rows, cols, per_layer, decay, init) PARAM_##name,
typedef enum { GPT_PARAMS(GPT_PARAM_ENUM) NUM_PARAM_TENSORS } ParamId;
#undef GPT_PARAM_ENUM

// Views into one contiguous buffer (parameters, gradients, and each AdamW moment use the same layout).
typedef struct ParamTensors {
#define GPT_PARAM_FIELD(name, rows, cols, per_layer, decay, init) float *name;
    GPT_PARAMS(GPT_PARAM_FIELD)
#undef GPT_PARAM_FIELD
} ParamTensors;

typedef struct ParamInfo {
    const char *name;
    size_t numel;       // all layers together
    size_t offset;      // in floats from the start of the buffer
    int per_layer;      // 1: leading dim L
    size_t rows, cols;  // one layer's shape
    int decay;
    int init;
} ParamInfo;

/*
 * The activation list, written once. X(name, numel_expr, per_layer, kept)
 *   per_layer: one slot per layer when kept in the run's recompute mode, else a single shared slot that the forward
 *   overwrites layer by layer and the backward recomputes;
 *   kept: bit mask of the recompute modes that keep the tensor for every layer (1 none, 2 selective, 4 full).
 * Tensors that are not per layer are always kept. Sizes may use TT (T*T with naive attention, else 0), TL (T with
 * flash attention, else 0) and FW (the flash workspace, FLASH_WORK_FLOATS, else 0): a tensor of size 0 takes no
 * memory.
 */
#define KEEP_NONE 1
#define KEEP_SEL 2
#define KEEP_FULL 4
#define KEEP_ALL (KEEP_NONE | KEEP_SEL | KEEP_FULL)
#define GPT_ACTS(X)                                                  \
    X(encoded, N * C, 0, KEEP_ALL)          /* (B,T,C) block 0 input */ \
    X(ln1, N * C, 1, KEEP_NONE)             /* (B,T,C) */            \
    X(ln1_mean, N, 1, KEEP_NONE | KEEP_SEL) /* (B,T) */              \
    X(ln1_rstd, N, 1, KEEP_NONE | KEEP_SEL) /* (B,T) */              \
    X(qkv, N * 3 * C, 1, KEEP_NONE | KEEP_SEL)   /* (B,T,3C) */      \
    X(att, B * NH * TT, 1, KEEP_NONE | KEEP_SEL) /* (B,NH,T,T) naive attention's probabilities */ \
    X(lse, B * NH * TL, 1, KEEP_NONE | KEEP_SEL) /* (B,NH,T) flash attention's row logsumexp */ \
    X(atty, N * C, 1, KEEP_NONE | KEEP_SEL) /* (B,T,C) */            \
    X(residual2, N * C, 1, KEEP_NONE | KEEP_SEL) /* (B,T,C) */       \
    X(ln2, N * C, 1, KEEP_NONE)             /* (B,T,C) */            \
    X(ln2_mean, N, 1, KEEP_NONE | KEEP_SEL) /* (B,T) */              \
    X(ln2_rstd, N, 1, KEEP_NONE | KEEP_SEL) /* (B,T) */              \
    X(fch, N * F, 1, KEEP_NONE | KEEP_SEL)  /* (B,T,F) */            \
    X(fch_gelu, N * F, 1, KEEP_NONE)        /* (B,T,F) */            \
    X(residual3, N * C, 1, KEEP_ALL)        /* (B,T,C) block output */ \
    X(proj_out, N * C, 0, KEEP_ALL)         /* (B,T,C) forward temporary: a projection before its residual add */ \
    X(lnf, N * C, 0, KEEP_ALL)              /* (B,T,C) */            \
    X(lnf_mean, N, 0, KEEP_ALL)             /* (B,T) */              \
    X(lnf_rstd, N, 0, KEEP_ALL)             /* (B,T) */              \
    X(logits, N * Vp, 0, KEEP_ALL)          /* (B,T,Vp), dlogits in place */ \
    X(losses, N, 0, KEEP_ALL)               /* (B,T) */

#define GPT_ACT_ENUM(name, numel, per_layer, kept) ACT_##name,
typedef enum { GPT_ACTS(GPT_ACT_ENUM) NUM_ACT_TENSORS } ActId;
#undef GPT_ACT_ENUM

typedef struct ActTensors {
#define GPT_ACT_FIELD(name, numel, per_layer, kept) float *name;
    GPT_ACTS(GPT_ACT_FIELD)
#undef GPT_ACT_FIELD
} ActTensors;

// Per tensor: slots (L, or 1 when shared/not per layer) and the elements of one slot.
typedef struct ActInfo {
    const char *name;
    size_t slot_numel;
    int slots;
    size_t offset;
} ActInfo;

// The backward's scratch (gradient of the activations), also one allocation: sized for one layer at a time.
#define GPT_GRAD_ACTS(X)                            \
    X(enc_work, EW)       /* the encoder backward's workspace (first: its 8-byte keys need the alignment) */ \
    X(dresidual, N * C)   /* (B,T,C) residual-stream gradient */ \
    X(dbt_c, N * C)       /* (B,T,C) */             \
    X(dbt_c2, N * C)      /* (B,T,C) */             \
    X(dqkv, N * 3 * C)    /* (B,T,3C) */            \
    X(datt, B * NH * TT)  /* (B,NH,T,T) naive attention */ \
    X(attn_work, FW)      /* flash attention's workspace (forward too) */ \
    X(dbt_f, N * F)       /* (B,T,F) */             \
    X(dbt_f2, N * F)      /* (B,T,F) */

typedef struct GradActTensors {
#define GPT_GACT_FIELD(name, numel) float *name;
    GPT_GRAD_ACTS(GPT_GACT_FIELD)
#undef GPT_GACT_FIELD
} GradActTensors;

// Sizes of everything the trainer allocates, computed before any allocation (`gptrain info` prints these).
typedef struct GPTMemory {
    size_t num_params;        // floats in the parameter buffer (includes the Vp-V zero rows)
    size_t num_params_real;   // the same without the padded vocabulary rows
    size_t param_bytes, grad_bytes, optim_bytes;
    size_t act_bytes[3];      // activations kept for backward, per recompute mode (none, selective, full)
    size_t grad_act_bytes;    // backward scratch
    size_t io_bytes;          // inputs and targets (two sets, used in turn), and the step's scalars
} GPTMemory;
void gpt_memory_plan(const GPTConfig *cfg, int B, int T, AttentionKind attn, GPTMemory *out);
// The same total in double, exact below 2^53 bytes and never wrapping (B, T and the widths come from the user).
double gpt_memory_total_estimate(const GPTConfig *cfg, int B, int T, RecomputeMode rc, AttentionKind attn);
// The size_t plan is trusted only below this many bytes (2^60), where none of its sums can wrap.
#define GPT_PLAN_MAX_BYTES 1152921504606846976.0
// 0 when every recompute mode's plan for (B,T) is below GPT_PLAN_MAX_BYTES, else -1 with err naming --batch and
// --seq-len. gpt_create checks it; `gptrain info` too, before printing the plan.
int gpt_plan_check(const GPTConfig *cfg, int B, int T, AttentionKind attn, char *err, size_t errlen);
// Everything gpt_create allocates for a recompute mode: weights, gradients, AdamW moments, activations, backward
// scratch, token buffers.
size_t gpt_memory_total(const GPTMemory *m, RecomputeMode rc);
// The largest micro-batch B (1..max_B) whose gpt_memory_total plus `reserve` bytes fits in `cap` bytes; 0 when not
// even B = 1 fits. *need_next gets what B+1 would need (for the message).
int gpt_max_batch(const GPTConfig *cfg, int T, RecomputeMode rc, AttentionKind attn, double cap, double reserve,
                  int max_B, double *need_next);
// The layouts behind it: fill the tables, return the buffer sizes in floats.
size_t gpt_plan_params(const GPTConfig *cfg, ParamInfo *info /* [NUM_PARAM_TENSORS] */);
size_t gpt_plan_acts(const GPTConfig *cfg, int B, int T, RecomputeMode rc, AttentionKind attn,
                     ActInfo *info /* [NUM_ACT_TENSORS] */);
size_t gpt_plan_grad_acts(const GPTConfig *cfg, int B, int T, AttentionKind attn);
// Floats in the parameter buffer (gpt_plan_params' total): what a model file of this config holds. Exact for any
// config gpt_config_finalize accepts (its caps keep the count below 2^60).
size_t gpt_param_count(const GPTConfig *cfg);

/*
 * FLOPs of one training step for one micro-batch (B,T), from the same walk of the ops the forward performs.
 * Only matmul-class work counts (linear layers, attention's QK^T and AV); elementwise ops are reported with 0.
 * Causal attention computes T(T+1)/2 query-key pairs per head, not T^2: that is the exact count the kernels do.
 * model: forward + backward (2x forward for every matmul) once; hardware: plus what recompute re-runs, and with
 * flash attention the backward's recompute of the scores S = QK^T (one QK^T-sized product per layer).
 */
typedef struct GPTFlops {
    double forward;        // one forward pass
    double model;          // forward + backward
    double hardware[3];    // per recompute mode (none, selective, full)
    double attn_qk;        // one QK^T-sized product over all layers (what a further recompute of S or dP costs:
                           // the GPU's deterministic flash backward recomputes both once more, 2 x this)
} GPTFlops;
void gpt_flops(const GPTConfig *cfg, int B, int T, AttentionKind attn, GPTFlops *out);

// One op of the forward walk: name, layer (-1 outside blocks) and its forward FLOPs. gpt_forward_ops calls visit once
// per op in execution order; gpt_flops sums the same walk.
typedef struct GPTOp {
    const char *name;
    int layer;
    double flops;
    double bytes;   // minimum fp32 traffic of the forward op: each input read once, each output written once
} GPTOp;
void gpt_forward_ops(const GPTConfig *cfg, int B, int T, void (*visit)(const GPTOp *op, void *ctx), void *ctx);
// Roofline lower bound of one training step (forward + backward of one micro-batch) in seconds: per op
// max(FLOPs / peak, bytes / bandwidth), the backward counted as twice the forward's FLOPs and bytes. peak in TFLOPS,
// bandwidth in GB/s. *compute_s and *memory_s (may be NULL) split the bound by which side limits each op.
double gpt_roofline_step_s(const GPTConfig *cfg, int B, int T, double peak_tflops, double bandwidth_gbs,
                           double *compute_s, double *memory_s);

typedef struct GPT {
    GPTConfig cfg;
    Backend *be;
    int B, T;                 // the planned (maximum) micro-batch; forward may run smaller B, T
    RecomputeMode recompute;
    AttentionKind attention;
    GPTMemory mem;
    ParamInfo param_info[NUM_PARAM_TENSORS];
    ActInfo act_info[NUM_ACT_TENSORS];
    float *params_mem, *grads_mem, *m_mem, *v_mem, *acts_mem, *grad_acts_mem;
    ParamTensors params, grads;
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
    void *hook_ctx;
} GPT;

// The three parameter-sized state buffers, for moving them between the backend's memory and the host (files).
typedef enum { GPT_STATE_PARAMS = 0, GPT_STATE_M = 1, GPT_STATE_V = 2 } GPTState;

// Plan and allocate everything for micro-batch (B,T) and a recompute mode. Parameters are zero until
// gpt_init_weights or a load. Returns 0, or -1 with err on a user error (e.g. T > max_seq_len).
int gpt_create(GPT *g, const GPTConfig *cfg, Backend *be, int B, int T, RecomputeMode rc, AttentionKind attn,
               char *err, size_t errlen);
void gpt_destroy(GPT *g);
// GPT-2 initialisation from a seed (deterministic, independent of thread count).
void gpt_init_weights(GPT *g, uint64_t seed);
// Copy weights or an AdamW moment (num_params floats) to or from host memory.
void gpt_state_to_host(const GPT *g, GPTState which, float *dst);
void gpt_state_from_host(GPT *g, GPTState which, const float *src);
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
#define GPT_SCALAR_BYTES 64
// Backward of the last training forward; parameter gradients accumulate into g->grads.
void gpt_backward(GPT *g);
void gpt_zero_grad(GPT *g);
// Global L2 norm of the gradient buffer (read back to the host).
float gpt_grad_norm(GPT *g);
// One AdamW step over every tensor (decay per the table), gradients scaled by grad_scale first.
void gpt_adamw_step(GPT *g, float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale);
// The training step's update: the global gradient norm and AdamW computed where the gradients live, clipped to
// grad_clip (> 0; 0: no clipping), and skipped there when the norm is not finite, or with check_loss when the
// step's loss sum is not (no host round trip between backward and update). Returns the norm, read back after the
// update was queued; when the step was skipped nothing changed (the step counter too).
float gpt_adamw_step_clipped(GPT *g, float lr, float beta1, float beta2, float eps, float weight_decay,
                             double grad_clip, int check_loss);
// The same restricted to the flat parameter range [lo, hi) (a ZeRO-1 shard), with the gradient read from grads
// (indexed like the parameter buffer, so a rank's shard of an averaged copy can be passed).
void gpt_adamw_step_range(GPT *g, const float *grads, size_t lo, size_t hi, float lr, float beta1, float beta2,
                          float eps, float weight_decay, float grad_scale);

#ifdef __cplusplus
}
#endif

#endif
