/*
 * plan.h: the model's tensor tables (parameters, activations, the backward's scratch), written once as X-macros, and
 * the plan computed from them before anything is allocated: each table's layout (named views into one allocation
 * per table, offsets in bytes), the memory totals `gptrain info` prints and gpt_create allocates, and the FLOP walk
 * that MFU divides. model/plan.c implements it; model/gpt.c binds the views and runs the model on them.
 */
#ifndef GPTRAIN_PLAN_H
#define GPTRAIN_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

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
 * The activation list, written once. X(name, numel_expr, per_layer, kept, dtype)
 *   per_layer: one slot per layer when kept in the run's recompute mode, else a single shared slot that the forward
 *   overwrites layer by layer and the backward recomputes;
 *   kept: bit mask of the recompute modes that keep the tensor for every layer (1 none, 2 selective, 4 full).
 * Tensors that are not per layer are always kept. Sizes may use TT (T*T with naive attention, else 0), TL (T with
 * flash attention, else 0) and FW (the flash workspace, FLASH_WORK_FLOATS, else 0): a tensor of size 0 takes no
 * memory.
 *   dtype: DT_COMPUTE, the run's compute dtype (activations and their gradients), or DT_F32, always fp32 (LayerNorm
 *   statistics, the logsumexp, losses, and the workspaces the ops size in floats). The planner lays every table out
 *   in bytes from it.
 */
// Element types of the planned tensors: DT_COMPUTE is the run's compute dtype (the DType the plan is made for: fp32,
// or bf16 on a GPU), DT_F32 always fp32. PLAN_DTYPE_BYTES gives the size for a run whose compute dtype has `cb`
// bytes per element.
typedef enum { DT_COMPUTE = 0, DT_F32 = 1 } PlanDType;
#define PLAN_DTYPE_BYTES(dt, cb) ((dt) == DT_F32 ? (size_t)4 : (size_t)(cb))
#define KEEP_NONE 1
#define KEEP_SEL 2
#define KEEP_FULL 4
#define KEEP_ALL (KEEP_NONE | KEEP_SEL | KEEP_FULL)
#define GPT_ACTS(X)                                                  \
    X(encoded, N * C, 0, KEEP_ALL, DT_COMPUTE)          /* (B,T,C) block 0 input */ \
    X(ln1, N * C, 1, KEEP_NONE, DT_COMPUTE)             /* (B,T,C) */            \
    X(ln1_mean, N, 1, KEEP_NONE | KEEP_SEL, DT_F32) /* (B,T) */              \
    X(ln1_rstd, N, 1, KEEP_NONE | KEEP_SEL, DT_F32) /* (B,T) */              \
    X(qkv, N * 3 * C, 1, KEEP_NONE | KEEP_SEL, DT_COMPUTE)   /* (B,T,3C) */      \
    X(att, B * NH * TT, 1, KEEP_NONE | KEEP_SEL, DT_COMPUTE) /* (B,NH,T,T) naive attention's probabilities */ \
    X(lse, B * NH * TL, 1, KEEP_NONE | KEEP_SEL, DT_F32) /* (B,NH,T) flash attention's row logsumexp */ \
    X(atty, N * C, 1, KEEP_NONE | KEEP_SEL, DT_COMPUTE) /* (B,T,C) */            \
    X(residual2, N * C, 1, KEEP_NONE | KEEP_SEL, DT_COMPUTE) /* (B,T,C) */       \
    X(ln2, N * C, 1, KEEP_NONE, DT_COMPUTE)             /* (B,T,C) */            \
    X(ln2_mean, N, 1, KEEP_NONE | KEEP_SEL, DT_F32) /* (B,T) */              \
    X(ln2_rstd, N, 1, KEEP_NONE | KEEP_SEL, DT_F32) /* (B,T) */              \
    X(fch, N * F, 1, KEEP_NONE | KEEP_SEL, DT_COMPUTE)  /* (B,T,F) */            \
    X(fch_gelu, N * F, 1, KEEP_NONE, DT_COMPUTE)        /* (B,T,F) */            \
    X(residual3, N * C, 1, KEEP_ALL, DT_COMPUTE)        /* (B,T,C) block output */ \
    X(proj_out, N * C, 0, KEEP_ALL, DT_COMPUTE)         /* (B,T,C) forward temporary: a projection before its residual add */ \
    X(lnf, N * C, 0, KEEP_ALL, DT_COMPUTE)              /* (B,T,C) */            \
    X(lnf_mean, N, 0, KEEP_ALL, DT_F32)             /* (B,T) */              \
    X(lnf_rstd, N, 0, KEEP_ALL, DT_F32)             /* (B,T) */              \
    X(logits, N * Vp, 0, KEEP_ALL, DT_COMPUTE)          /* (B,T,Vp), dlogits in place */ \
    X(losses, N, 0, KEEP_ALL, DT_F32)               /* (B,T) */

#define GPT_ACT_ENUM(name, numel, per_layer, kept, dtype) ACT_##name,
typedef enum { GPT_ACTS(GPT_ACT_ENUM) NUM_ACT_TENSORS } ActId;
#undef GPT_ACT_ENUM

typedef struct ActTensors {
#define GPT_ACT_FIELD(name, numel, per_layer, kept, dtype) void *name;
    GPT_ACTS(GPT_ACT_FIELD)
#undef GPT_ACT_FIELD
} ActTensors;

// Per tensor: slots (L, or 1 when shared/not per layer), the elements of one slot, their size, and the tensor's
// offset in bytes from the start of the activation buffer.
typedef struct ActInfo {
    const char *name;
    size_t slot_numel;
    int slots;
    size_t elem_bytes;
    size_t offset;
} ActInfo;

// The backward's scratch (gradient of the activations), also one allocation: sized for one layer at a time.
#define GPT_GRAD_ACTS(X)                            \
    X(enc_work, EW, DT_F32)       /* the encoder backward's workspace (first: its 8-byte keys need the alignment) */ \
    X(dresidual, N * C, DT_COMPUTE)   /* (B,T,C) residual-stream gradient */ \
    X(dbt_c, N * C, DT_COMPUTE)       /* (B,T,C) */             \
    X(dbt_c2, N * C, DT_COMPUTE)      /* (B,T,C) */             \
    X(dqkv, N * 3 * C, DT_COMPUTE)    /* (B,T,3C) */            \
    X(datt, B * NH * TT, DT_COMPUTE)  /* (B,NH,T,T) naive attention */ \
    X(attn_work, FW, DT_F32)      /* flash attention's workspace (forward too) */ \
    X(dbt_f, N * F, DT_COMPUTE)       /* (B,T,F) */

#define GPT_GACT_ENUM(name, numel, dtype) GACT_##name,
typedef enum { GPT_GRAD_ACTS(GPT_GACT_ENUM) NUM_GRAD_ACT_TENSORS } GradActId;
#undef GPT_GACT_ENUM

typedef struct GradActInfo {
    const char *name;
    size_t numel, elem_bytes;
    size_t offset;   // bytes from the start of the scratch buffer
} GradActInfo;

typedef struct GradActTensors {
#define GPT_GACT_FIELD(name, numel, dtype) void *name;
    GPT_GRAD_ACTS(GPT_GACT_FIELD)
#undef GPT_GACT_FIELD
} GradActTensors;

// Sizes of everything the trainer allocates, computed before any allocation (`gptrain info` prints these), for one
// compute dtype: the fp32 master weights (param_bytes), their working copy in the compute dtype (param_copy_bytes;
// 0 in fp32, where the master is the copy), the gradients in their dtype, fp32 AdamW moments, and activations and
// their gradients in the compute dtype: 16 bytes per parameter in fp32, 18 in mixed bf16, 16 with bf16 gradients.
// The step's scalars in backend memory (the loss sum and the gradient norm: GPT.scalars_mem), one allocation.
#define GPT_SCALAR_BYTES 64

typedef struct GPTMemory {
    DType dtype;
    DType grad_dtype;         // the parameter gradients': fp32, or bf16 (--grad-dtype bf16: 16 bytes per parameter)
    size_t num_params;        // elements in the parameter buffer (includes the Vp-V zero rows)
    size_t num_params_real;   // the same without the padded vocabulary rows
    size_t param_bytes, param_copy_bytes, grad_bytes, optim_bytes;
    size_t act_bytes[3];      // activations kept for backward, per recompute mode (none, selective, full)
    size_t grad_act_bytes;    // backward scratch
    size_t io_bytes;          // inputs and targets (two sets, used in turn), and the step's scalars
    // ZeRO-1 (gpt_memory_shard): the flat parameter range cut into `shards` shards of `shard` elements (1 and
    // num_params unless sharded); rank r keeps the optimizer state of [r*shard, (r+1)*shard) only.
    int shards;
    size_t shard;
} GPTMemory;
void gpt_memory_plan(const GPTConfig *cfg, int B, int T, AttentionKind attn, DType dt, DType gdt, GPTMemory *out);
// The plan of one rank of a ZeRO-1 group of `shards` ranks (--zero 1): the shard is num_params / shards rounded up
// to a multiple of GPT_SHARD_ALIGN elements; the AdamW moments shrink to 8 bytes per shard element, and so does the
// fp32 master to 4 when a bf16 copy is what the ops read (in fp32 the master is the weights every rank reads: kept
// whole). What every rank keeps whole for the collectives, the gradients and the weights the ops read, is padded to
// shards * shard elements (the padding stays zero). shards 1: the plan unchanged.
#define GPT_SHARD_ALIGN 128
void gpt_memory_shard(GPTMemory *m, int shards);
// The same total in double, exact below 2^53 bytes and never wrapping (B, T and the widths come from the user).
double gpt_memory_total_estimate(const GPTConfig *cfg, int B, int T, RecomputeMode rc, AttentionKind attn, DType dt,
                                 DType gdt);
// The size_t plan is trusted only below this many bytes (2^60), where none of its sums can wrap.
#define GPT_PLAN_MAX_BYTES 1152921504606846976.0
// 0 when every recompute mode's plan for (B,T) is below GPT_PLAN_MAX_BYTES, else -1 with err naming --batch and
// --seq-len. gpt_create checks it; `gptrain info` too, before printing the plan.
int gpt_plan_check(const GPTConfig *cfg, int B, int T, AttentionKind attn, DType dt, char *err, size_t errlen);
// Everything gpt_create allocates for a recompute mode: weights, gradients, AdamW moments, activations, backward
// scratch, token buffers.
size_t gpt_memory_total(const GPTMemory *m, RecomputeMode rc);
// The largest micro-batch B (1..max_B) whose gpt_memory_total plus `reserve` bytes fits in `cap` bytes; 0 when not
// even B = 1 fits. *need_next gets what B+1 would need (for the message).
int gpt_max_batch(const GPTConfig *cfg, int T, RecomputeMode rc, AttentionKind attn, DType dt, DType gdt, double cap,
                  double reserve, int max_B, double *need_next);
// The layouts behind it: fill the tables, return the buffer sizes (parameters in floats, they are always fp32; the
// activations and the scratch in bytes).
size_t gpt_plan_params(const GPTConfig *cfg, ParamInfo *info /* [NUM_PARAM_TENSORS] */);
size_t gpt_plan_acts(const GPTConfig *cfg, int B, int T, RecomputeMode rc, AttentionKind attn, DType dt,
                     ActInfo *info /* [NUM_ACT_TENSORS] */);
size_t gpt_plan_grad_acts(const GPTConfig *cfg, int B, int T, AttentionKind attn, DType dt,
                          GradActInfo *info /* [NUM_GRAD_ACT_TENSORS], or NULL */);
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
// max(FLOPs / peak, bytes / bandwidth), the backward counted as twice the forward's FLOPs and bytes, the bytes at the
// compute dtype's size (GPTOp.bytes scaled by dtype_bytes(dt) / 4). peak in TFLOPS, bandwidth in GB/s. *compute_s
// and *memory_s (may be NULL) split the bound by which side limits each op.
double gpt_roofline_step_s(const GPTConfig *cfg, int B, int T, DType dt, double peak_tflops, double bandwidth_gbs,
                           double *compute_s, double *memory_s);

#ifdef __cplusplus
}
#endif

#endif
