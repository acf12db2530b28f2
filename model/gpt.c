/*
 * gpt.c: GPT-2 forward, hand-written backward with activation recompute, and the optimizer step, all through the
 * kernels seam (ops.h). Layer by layer, forward and backward side by side; shapes in the comments use
 * B, T, C, NH, F, V, Vp and N = B*T.
 *
 * Recompute (activation checkpointing), chosen at gpt_create:
 *   none       every activation of every layer is kept;
 *   selective  ln1, ln2 and the GELU output are not kept: one shared slot each, recomputed at the start of the
 *              layer's backward from what is kept (the residual stream and fc pre-activation);
 *   full       only the block inputs (the residual stream) are kept; the backward of block l first re-runs block
 *              l's forward into shared slots.
 * The recomputation calls the very same ops on the very same inputs, so gradients are bitwise identical across modes.
 *
 * Precision (the backend's compute dtype, ops.h): the ops read the weights' working copy (params_c_mem: the fp32
 * master itself, or its bf16 copy, which the AdamW step rewrites from the master and gpt_weights_changed rebuilds)
 * and keep activations and their gradients in the compute dtype; the master weights and AdamW's moments are fp32,
 * the parameter gradients fp32 or (--grad-dtype bf16) bf16, accumulated in place either way.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dropout_mask.h"
#include "gpt.h"
#include "ops.h"

#define GPT_ASSERT(cond)                                                                            \
    do {                                                                                            \
        if (!(cond)) {                                                                              \
            fprintf(stderr, "gptrain: internal error at %s:%d: %s\n", __FILE__, __LINE__, #cond);   \
            abort();                                                                                \
        }                                                                                           \
    } while (0)

// ---------------------------------------------------------------------------------------------------------------
// Creation and views

int gpt_create(GPT *g, const GPTConfig *cfg, Backend *be, int B, int T, RecomputeMode rc, AttentionKind attn,
               char *err, size_t errlen) {
    return gpt_create_sharded(g, cfg, be, B, T, rc, attn, 0, 1, err, errlen);
}

int gpt_create_sharded(GPT *g, const GPTConfig *cfg, Backend *be, int B, int T, RecomputeMode rc, AttentionKind attn,
                       int rank, int shards, char *err, size_t errlen) {
    memset(g, 0, sizeof(*g));
    GPT_ASSERT(shards >= 1 && rank >= 0 && rank < shards);
    if (B < 1) { snprintf(err, errlen, "--batch %d: expected at least 1", B); return -1; }
    if (T < 1) { snprintf(err, errlen, "--seq-len %d: expected at least 1", T); return -1; }
    if (T > cfg->max_seq_len) {
        snprintf(err, errlen, "--seq-len %d exceeds the model's maximum sequence length %d (--max-seq-len)", T,
                 cfg->max_seq_len);
        return -1;
    }
    // The ops take the tokens of a micro-batch, N = B*T, as an int.
    if ((long long)B * T > INT_MAX) {
        snprintf(err, errlen, "--batch %d x --seq-len %d = %lld tokens per micro-batch: expected at most %d", B, T,
                 (long long)B * T, INT_MAX);
        return -1;
    }
    if (be->dtype != DTYPE_F32 && be->kind != BACKEND_CUDA) {   // the trainer refuses this first (--precision)
        snprintf(err, errlen, "--precision %s: only on --device cuda (the CPU computes in fp32)",
                 dtype_name(be->dtype));
        return -1;
    }
    if (be->grad_dtype != DTYPE_F32 && be->dtype != DTYPE_BF16) {   // the trainer refuses this first (--grad-dtype)
        snprintf(err, errlen, "--grad-dtype %s: only with --precision bf16 (bf16 gradients of fp32 activations would "
                 "round what the fp32 run keeps exact)", dtype_name(be->grad_dtype));
        return -1;
    }
    if (gpt_plan_check(cfg, B, T, attn, be->dtype, err, errlen)) return -1;
    GPT_ASSERT(cfg->padded_vocab >= cfg->vocab_size && cfg->padded_vocab % GPT_VOCAB_PAD == 0);
    g->cfg = *cfg;
    g->be = be;
    g->B = B;
    g->T = T;
    g->recompute = rc;
    g->attention = attn;
    g->dtype = be->dtype;
    g->grad_dtype = be->grad_dtype;
    g->stochastic_rounding = 1;
    gpt_memory_plan(cfg, B, T, attn, g->dtype, g->grad_dtype, &g->mem);
    gpt_memory_shard(&g->mem, shards);
    const size_t np = gpt_plan_params(cfg, g->param_info);
    g->shard_lo = (size_t)rank * g->mem.shard < np ? (size_t)rank * g->mem.shard : np;
    g->shard_hi = g->shard_lo + g->mem.shard < np ? g->shard_lo + g->mem.shard : np;

    g->params_mem = backend_alloc(be, g->mem.param_bytes, shards > 1 && g->mem.param_copy_bytes
                                                              ? "parameters (this rank's shard of the fp32 master)"
                                                              : "parameters");
    // The weights the ops read: the fp32 master itself, or its copy in the compute dtype (refreshed by every update).
    g->params_c_mem = g->mem.param_copy_bytes ? backend_alloc(be, g->mem.param_copy_bytes, "the weights' bf16 copy")
                                              : (void *)g->params_mem;
    g->grads_mem = backend_alloc(be, g->mem.grad_bytes, "gradients");
    g->m_mem = backend_alloc(be, g->mem.optim_bytes / 2, "AdamW first moments");
    g->v_mem = backend_alloc(be, g->mem.optim_bytes / 2, "AdamW second moments");

    const size_t na = gpt_plan_acts(cfg, B, T, rc, attn, g->dtype, g->act_info);
    g->acts_mem = backend_alloc(be, na, "activations");
    {
        int i = 0;
#define GPT_ACT_BIND(name, numel, per_layer, kept, dtype) \
        g->acts.name = (char *)g->acts_mem + g->act_info[i++].offset;
        GPT_ACTS(GPT_ACT_BIND)
#undef GPT_ACT_BIND
    }
    GradActInfo ginfo[NUM_GRAD_ACT_TENSORS];
    const size_t ng = gpt_plan_grad_acts(cfg, B, T, attn, g->dtype, ginfo);
    g->grad_acts_mem = backend_alloc(be, ng, "activation gradients");
    {
        int i = 0;
#define GPT_GACT_BIND(name, numel, dtype) g->gacts.name = (char *)g->grad_acts_mem + ginfo[i++].offset;
        GPT_GRAD_ACTS(GPT_GACT_BIND)
#undef GPT_GACT_BIND
    }
    g->tokens_mem = backend_alloc(be, 4 * (size_t)B * T * sizeof(int32_t), "input and target tokens (two sets)");
    g->inputs = g->tokens_mem;
    g->targets = g->tokens_mem + (size_t)B * T;
    g->scalars_mem = backend_alloc(be, GPT_SCALAR_BYTES, "the step's loss sum and gradient norm");
    g->loss_sum = (double *)g->scalars_mem;
    g->grad_norm = (float *)((char *)g->scalars_mem + sizeof(double));
    return 0;
}

void gpt_destroy(GPT *g) {
    if (!g->be) return;
    Backend *be = g->be;
    if (g->params_c_mem != (void *)g->params_mem) backend_free(be, g->params_c_mem);
    backend_free(be, g->params_mem);
    backend_free(be, g->grads_mem);
    backend_free(be, g->m_mem);
    backend_free(be, g->v_mem);
    backend_free(be, g->acts_mem);
    backend_free(be, g->grad_acts_mem);
    backend_free(be, g->tokens_mem);
    backend_free(be, g->scalars_mem);
    memset(g, 0, sizeof(*g));
}

static float *state_buffer(const GPT *g, GPTState which) {
    return which == GPT_STATE_PARAMS ? g->params_mem : which == GPT_STATE_M ? g->m_mem : g->v_mem;
}

// Whether the fp32 master is a shard (ZeRO-1 under a bf16 copy; in fp32 the master is what the ops read, whole).
static int master_sharded(const GPT *g) { return g->mem.shards > 1 && g->params_c_mem != (void *)g->params_mem; }
// The index of a state buffer's first element: this rank's shard_lo for a shard, else 0.
static size_t state_base(const GPT *g, GPTState which) {
    return g->mem.shards > 1 && (which != GPT_STATE_PARAMS || master_sharded(g)) ? g->shard_lo : 0;
}
static int state_sharded(const GPT *g, GPTState which) {
    return g->mem.shards > 1 && (which != GPT_STATE_PARAMS || master_sharded(g));
}

void gpt_state_to_host(const GPT *g, GPTState which, float *dst) {
    const size_t np = g->mem.num_params;
    if (!state_sharded(g, which)) {
        if (dst) backend_to_host(g->be, dst, state_buffer(g, which), np * sizeof(float));
        return;
    }
    // Every rank's shard, `chunk` elements of each at a time, gathered into the gradient buffer (free between
    // steps): shards * chunk floats fit in it, chunk = the shard with fp32 gradients, half of it with bf16.
    GPT_ASSERT(g->allgather);
    const int R = g->mem.shards;
    const size_t shard = g->mem.shard, chunk = g->mem.grad_bytes / sizeof(float) / (size_t)R;
    const float *mine = state_buffer(g, which);
    float *stage = (float *)g->grads_mem;
    for (size_t c0 = 0; c0 < shard; c0 += chunk) {
        const size_t k = chunk < shard - c0 ? chunk : shard - c0;
        g->allgather(g->hook_ctx, mine + c0, stage, k, sizeof(float));
        for (int r = 0; dst && r < R; r++) {
            const size_t at = (size_t)r * shard + c0;
            if (at < np) backend_to_host(g->be, dst + at, stage + (size_t)r * k, (k < np - at ? k : np - at) * 4);
        }
    }
}

void gpt_state_from_host(GPT *g, GPTState which, const float *src) {
    const size_t base = state_base(g, which), n = state_sharded(g, which) ? g->shard_hi - g->shard_lo
                                                                          : g->mem.num_params;
    backend_to_device(g->be, state_buffer(g, which), src + base, n * sizeof(float));
    if (which == GPT_STATE_PARAMS) gpt_weights_changed(g);
}

// The seed with which the copy of the weights after step t is rounded: 0 (to nearest) unless stochastic rounding is
// on, else a hash of t (never 0). The copy is always R(master, copy_seed(adam_t)), wherever it was written, so a resume
// or a ZeRO all-gather rebuilds exactly the copy the straight run has.
static uint32_t copy_seed(const GPT *g, int t) {
    if (!g->stochastic_rounding) return 0;
    uint64_t z = (uint64_t)t * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;   // splitmix64's finalizer
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (uint32_t)((z ^ (z >> 31)) >> 32) | 1u;
}

// ZeRO-1: every rank's range of the weights the ops read (the bf16 copy, or the fp32 master) to every rank.
static void gather_weights(GPT *g) {
    if (g->mem.shards <= 1) return;
    GPT_ASSERT(g->allgather);
    const size_t eb = dtype_bytes(g->dtype);
    g->allgather(g->hook_ctx, (char *)g->params_c_mem + g->shard_lo * eb, g->params_c_mem, g->mem.shard, eb);
}

void gpt_weights_changed(GPT *g) {
    if (g->params_c_mem == (void *)g->params_mem) return;   // fp32: the master is what the ops read (whole)
    const size_t lo = state_base(g, GPT_STATE_PARAMS);
    const size_t n = master_sharded(g) ? g->shard_hi - g->shard_lo : g->mem.num_params;
    op_to_compute(g->be, (char *)g->params_c_mem + lo * dtype_bytes(g->dtype), g->params_mem, n, lo,
                  copy_seed(g, g->adam_t));
    if (master_sharded(g)) gather_weights(g);
}


// n values of dtype dt at src (backend memory) to fp32 host memory.
static void to_host_f32(const GPT *g, float *dst, const void *src, size_t n, DType dt) {
    if (dt == DTYPE_F32) {
        backend_to_host(g->be, dst, src, n * sizeof(float));
        return;
    }
    // bf16: into the upper half of dst, then widened in place from the front (element i is read from byte 2n + 2i,
    // at or after where float i is written, so nothing is overwritten before it is read).
    char *h = (char *)dst + n * sizeof(uint16_t);
    backend_to_host(g->be, h, src, n * sizeof(uint16_t));
    for (size_t i = 0; i < n; i++) {
        uint16_t v;
        memcpy(&v, h + i * sizeof v, sizeof v);
        dst[i] = dtype_bf16_to_f32(v);
    }
}

void gpt_acts_to_host(const GPT *g, float *dst, const void *src, size_t n) { to_host_f32(g, dst, src, n, g->dtype); }

void gpt_grads_to_host(const GPT *g, float *dst) {
    to_host_f32(g, dst, g->grads_mem, g->mem.num_params, g->grad_dtype);
}

const ParamInfo *gpt_param_find(const GPT *g, const char *name) {
    for (int i = 0; i < NUM_PARAM_TENSORS; i++)
        if (!strcmp(g->param_info[i].name, name)) return &g->param_info[i];
    return NULL;
}

// Activation `id` of layer l: its own slot when the mode keeps it per layer, else the shared slot.
static void *act(GPT *g, ActId id, int l) {
    const ActInfo *a = &g->act_info[id];
    char *base = (char *)g->acts_mem + a->offset;
    return a->slots > 1 ? base + (size_t)l * a->slot_numel * a->elem_bytes : base;
}

// Parameter tensor `id` in the weights' working copy (compute dtype), `off` elements in (a layer's slice).
static const void *W(const GPT *g, ParamId id, size_t off) {
    return (const char *)g->params_c_mem + (g->param_info[id].offset + off) * dtype_bytes(g->dtype);
}
// Its gradient (the gradients' dtype), `off` elements in.
static Grad *dW(const GPT *g, ParamId id, size_t off) {
    return (char *)g->grads_mem + (g->param_info[id].offset + off) * dtype_bytes(g->grad_dtype);
}

// One dropout call's mask key (the micro-step's, the layer's, the site's: GptDropSite in gpt.h).
static uint64_t drop_key(const GPT *g, int layer, int site) {
    return dropout_key(g->dropout_seed, (uint64_t)g->dropout_step, (uint64_t)g->dropout_micro, (uint64_t)layer,
                       (uint64_t)site);
}
static void drop(GPT *g, void *out, const void *inp, size_t n, int layer, int site) {
    op_dropout(g->be, out, inp, n, g->dropout, drop_key(g, layer, site));
}
// The attention probabilities' dropout for layer l: p (0 when the forward does not drop) and its key.
static float attn_drop(const GPT *g) { return g->dropout_active ? g->dropout : 0.0f; }

// ---------------------------------------------------------------------------------------------------------------
// Initialisation: GPT-2's normal(0, 0.02) for matrices and embeddings, residual projections scaled by 1/sqrt(2L),
// LayerNorm weight 1 and bias 0, all biases 0, padded vocabulary rows 0. A splitmix64 stream per tensor, consumed in
// element order, so the result does not depend on threads.

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *s) { return ((splitmix64(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

void gpt_init_weights(GPT *g, uint64_t seed) {
    const GPTConfig *c = &g->cfg;
    // Drawn on the host (the generator is sequential per tensor), then copied into the backend's memory.
    float *host = backend_host_alloc(g->mem.num_params * sizeof(float), "initial weights (host staging)");
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        const ParamInfo *p = &g->param_info[i];
        float *w = host + p->offset;
        uint64_t s = seed * 0x100000001B3ull + (uint64_t)i * 0x9E3779B97F4A7C15ull;
        double std = p->init == INIT_RESID ? 0.02 / sqrt(2.0 * c->n_layer) : 0.02;
        for (size_t k = 0; k < p->numel; k++) {
            if (p->init == INIT_ZERO) w[k] = 0.0f;
            else if (p->init == INIT_ONE) w[k] = 1.0f;
            else {
                // Box-Muller; one normal per pair of uniforms keeps the stream simple to reason about.
                double u1 = uniform01(&s), u2 = uniform01(&s);
                w[k] = (float)(std * sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
            }
        }
    }
    // The padded vocabulary rows are never used as tokens and never predicted: keep them exactly zero.
    memset(host + g->param_info[0].offset + (size_t)c->vocab_size * c->d_model, 0,
           (size_t)(c->padded_vocab - c->vocab_size) * c->d_model * sizeof(float));
    g->adam_t = 0;   // before the weights arrive: their bf16 copy is rounded with step 0's seed
    gpt_state_from_host(g, GPT_STATE_PARAMS, host);
    backend_host_free(host);
    op_zero(g->be, g->m_mem, g->mem.optim_bytes / 2);
    op_zero(g->be, g->v_mem, g->mem.optim_bytes / 2);
}

// ---------------------------------------------------------------------------------------------------------------
// One transformer block. Forward writes layer l's activations (into per-layer or shared slots, per the plan).
// Each residual add is fused with the LayerNorm after it (op_residual_layernorm_forward, bitwise the two ops): so on
// entry ln1 of layer l already holds LN1(residual), computed by the block before (or after the encoder), and the
// block's last add also computes the next LayerNorm (the next block's ln1, or lnf after the last block) when `next`
// is set; a recompute of the block (recompute full, next 0) ends with the plain add, so it never overwrites the
// shared ln1 slot that its own backward still reads.

// The LayerNorm that follows block l: the next block's ln1, or lnf after the last.
static void next_layernorm(GPT *g, int l, void **out, float **mean, float **rstd, const void **w, const void **b) {
    const size_t C = (size_t)g->cfg.d_model;
    if (l + 1 < g->cfg.n_layer) {
        *out = act(g, ACT_ln1, l + 1);
        *mean = act(g, ACT_ln1_mean, l + 1);
        *rstd = act(g, ACT_ln1_rstd, l + 1);
        *w = W(g, PARAM_ln1w, (l + 1) * C);
        *b = W(g, PARAM_ln1b, (l + 1) * C);
    } else {
        *out = g->acts.lnf;
        *mean = g->acts.lnf_mean;
        *rstd = g->acts.lnf_rstd;
        *w = W(g, PARAM_lnfw, 0);
        *b = W(g, PARAM_lnfb, 0);
    }
}

static void block_forward(GPT *g, int l, const void *residual, int B, int T, int next) {
    Backend *be = g->be;
    const int C = g->cfg.d_model, F = g->cfg.d_ff, NH = g->cfg.n_head, N = B * T;
    void *ln1 = act(g, ACT_ln1, l), *qkv = act(g, ACT_qkv, l), *atty = act(g, ACT_atty, l);
    void *residual2 = act(g, ACT_residual2, l), *ln2 = act(g, ACT_ln2, l), *fch = act(g, ACT_fch, l);
    void *fch_gelu = act(g, ACT_fch_gelu, l), *residual3 = act(g, ACT_residual3, l), *proj = g->acts.proj_out;

    // ln1 = LN1(residual) (B,T,C) -> qkv (B,T,3C) -> atty (B,T,C) -> residual2 = residual + atty W^T + b
    op_matmul_forward(be, qkv, ln1, W(g, PARAM_qkvw, (size_t)l * 3 * C * C), W(g, PARAM_qkvb, (size_t)l * 3 * C), N, C,
                      3 * C);
    if (g->attention == ATTN_FLASH)
        op_flash_attention_forward(be, atty, act(g, ACT_lse, l), g->gacts.attn_work, qkv, B, T, C, NH);
    else
        op_attention_forward(be, atty, act(g, ACT_att, l), g->gacts.datt, qkv, B, T, C, NH, attn_drop(g),
                             drop_key(g, l, GPT_DROP_ATTN_PROBS));
    op_matmul_forward(be, proj, atty, W(g, PARAM_attprojw, (size_t)l * C * C), W(g, PARAM_attprojb, (size_t)l * C), N,
                      C, C);
    if (g->dropout_active) drop(g, proj, proj, (size_t)N * C, l, GPT_DROP_ATTPROJ);
    // residual2 -> ln2 (B,T,C) -> fch (B,T,F) -> gelu (B,T,F) -> residual3 = residual2 + gelu W^T + b
    op_residual_layernorm_forward(be, residual2, ln2, act(g, ACT_ln2_mean, l), act(g, ACT_ln2_rstd, l), residual,
                                  proj, W(g, PARAM_ln2w, (size_t)l * C), W(g, PARAM_ln2b, (size_t)l * C), N, C);
    op_matmul_forward(be, fch, ln2, W(g, PARAM_fcw, (size_t)l * F * C), W(g, PARAM_fcb, (size_t)l * F), N, C, F);
    op_gelu_forward(be, fch_gelu, fch, (size_t)N * F);
    op_matmul_forward(be, proj, fch_gelu, W(g, PARAM_fcprojw, (size_t)l * C * F), W(g, PARAM_fcprojb, (size_t)l * C),
                      N, F, C);
    if (g->dropout_active) drop(g, proj, proj, (size_t)N * C, l, GPT_DROP_MLP);
    if (next) {   // residual3 -> the next LayerNorm
        void *out;
        float *mean, *rstd;
        const void *w, *b;
        next_layernorm(g, l, &out, &mean, &rstd, &w, &b);
        op_residual_layernorm_forward(be, residual3, out, mean, rstd, residual2, proj, w, b, N, C);
    } else
        op_residual_forward(be, residual3, residual2, proj, (size_t)N * C);
}

// Before block l's backward: bring back what the recompute mode did not keep.
static void block_recompute(GPT *g, int l, const void *residual, int B, int T) {
    Backend *be = g->be;
    const int C = g->cfg.d_model, F = g->cfg.d_ff, N = B * T;
    if (g->recompute == RECOMPUTE_FULL) {
        op_layernorm_forward(be, act(g, ACT_ln1, l), act(g, ACT_ln1_mean, l), act(g, ACT_ln1_rstd, l), residual,
                             W(g, PARAM_ln1w, (size_t)l * C), W(g, PARAM_ln1b, (size_t)l * C), N, C);
        block_forward(g, l, residual, B, T, 0);
    } else if (g->recompute == RECOMPUTE_SELECTIVE) {
        op_layernorm_forward(be, act(g, ACT_ln1, l), act(g, ACT_ln1_mean, l), act(g, ACT_ln1_rstd, l), residual,
                             W(g, PARAM_ln1w, (size_t)l * C), W(g, PARAM_ln1b, (size_t)l * C), N, C);
        op_layernorm_forward(be, act(g, ACT_ln2, l), act(g, ACT_ln2_mean, l), act(g, ACT_ln2_rstd, l),
                             act(g, ACT_residual2, l), W(g, PARAM_ln2w, (size_t)l * C), W(g, PARAM_ln2b, (size_t)l * C),
                             N, C);
        op_gelu_forward(be, act(g, ACT_fch_gelu, l), act(g, ACT_fch, l), (size_t)N * F);
    }
}

// Block l's backward. On entry gacts.dresidual holds d(block output); on exit, d(block input).
static void block_backward(GPT *g, int l, const void *residual, int B, int T) {
    Backend *be = g->be;
    const int C = g->cfg.d_model, F = g->cfg.d_ff, NH = g->cfg.n_head, N = B * T;
    GradActTensors *ga = &g->gacts;
    const size_t lc = (size_t)l * C, lf = (size_t)l * F;

    // MLP: residual3 = residual2 + drop(gelu(ln2 Wfc^T + bfc) Wproj^T + bproj)
    // the projection's and GELU's backward in one op: dbt_f = (d(proj) Wproj) * gelu'(fch); with dropout d(proj) is
    // dresidual through the same mask (in dbt_c, free until the fc backward writes it), else dresidual itself
    const void *dproj = ga->dresidual;
    if (g->dropout_active) {
        drop(g, ga->dbt_c, ga->dresidual, (size_t)N * C, l, GPT_DROP_MLP);
        dproj = ga->dbt_c;
    }
    op_matmul_backward_gelu(be, ga->dbt_f, dW(g, PARAM_fcprojw, lc * F), dW(g, PARAM_fcprojb, lc), dproj,
                            act(g, ACT_fch_gelu, l), W(g, PARAM_fcprojw, lc * F), act(g, ACT_fch, l), N, F, C);
    op_matmul_backward(be, ga->dbt_c, dW(g, PARAM_fcw, lf * C), dW(g, PARAM_fcb, lf), ga->dbt_f, act(g, ACT_ln2, l),
                       W(g, PARAM_fcw, lf * C), N, C, F);
    op_layernorm_backward(be, ga->dresidual, dW(g, PARAM_ln2w, lc), dW(g, PARAM_ln2b, lc), ga->dbt_c,
                          act(g, ACT_residual2, l), W(g, PARAM_ln2w, lc), act(g, ACT_ln2_mean, l),
                          act(g, ACT_ln2_rstd, l), N, C);
    // Attention: residual2 = residual + drop(attn(ln1 Wqkv^T + bqkv) Wproj^T + bproj); with dropout d(proj) in
    // dbt_c2 (free until the qkv backward writes it)
    dproj = ga->dresidual;
    if (g->dropout_active) {
        drop(g, ga->dbt_c2, ga->dresidual, (size_t)N * C, l, GPT_DROP_ATTPROJ);
        dproj = ga->dbt_c2;
    }
    op_matmul_backward(be, ga->dbt_c, dW(g, PARAM_attprojw, lc * C), dW(g, PARAM_attprojb, lc), dproj,
                       act(g, ACT_atty, l), W(g, PARAM_attprojw, lc * C), N, C, C);
    if (g->attention == ATTN_FLASH)
        op_flash_attention_backward(be, ga->dqkv, ga->attn_work, ga->dbt_c, act(g, ACT_qkv, l), act(g, ACT_atty, l),
                                    act(g, ACT_lse, l), B, T, C, NH);
    else
        op_attention_backward(be, ga->dqkv, ga->datt, ga->dbt_c, act(g, ACT_qkv, l), act(g, ACT_att, l), B, T, C,
                              NH, attn_drop(g), drop_key(g, l, GPT_DROP_ATTN_PROBS));
    op_matmul_backward(be, ga->dbt_c2, dW(g, PARAM_qkvw, 3 * lc * C), dW(g, PARAM_qkvb, 3 * lc), ga->dqkv,
                       act(g, ACT_ln1, l), W(g, PARAM_qkvw, 3 * lc * C), N, C, 3 * C);
    op_layernorm_backward(be, ga->dresidual, dW(g, PARAM_ln1w, lc), dW(g, PARAM_ln1b, lc), ga->dbt_c2, residual,
                          W(g, PARAM_ln1w, lc), act(g, ACT_ln1_mean, l), act(g, ACT_ln1_rstd, l), N, C);
}

// ---------------------------------------------------------------------------------------------------------------
// Whole model

// "layer 7" for the timeline ranges (static strings: NVTX copies the name, but a table keeps this allocation-free).
static const char *layer_name(int l) {
    static const char *names[] = {"layer 0",  "layer 1",  "layer 2",  "layer 3",  "layer 4",  "layer 5",  "layer 6",
                                  "layer 7",  "layer 8",  "layer 9",  "layer 10", "layer 11", "layer 12", "layer 13",
                                  "layer 14", "layer 15", "layer 16", "layer 17", "layer 18", "layer 19", "layer 20",
                                  "layer 21", "layer 22", "layer 23", "layer 24", "layer 25", "layer 26", "layer 27",
                                  "layer 28", "layer 29", "layer 30", "layer 31"};
    return l < 32 ? names[l] : "layer 32+";
}

// The forward, queued: the batch uploaded into the next token set, the ops, and (with targets) the classifier and the
// mean loss added to the step's loss sum.
static void forward_queue(GPT *g, const int32_t *inputs, const int32_t *targets, int B, int T, float dlogits_scale,
                          int train) {
    GPT_ASSERT(B >= 1 && B <= g->B && T >= 1 && T <= g->T);
    GPT_ASSERT(g->dropout >= 0.0f && g->dropout < 1.0f);
    g->dropout_active = train && g->dropout > 0.0f;
    // The flash kernels do not drop the attention probabilities: a dropped run takes naive attention (the trainer
    // chooses it, or refuses --attention flash).
    GPT_ASSERT(!g->dropout_active || g->attention == ATTN_NAIVE);
    Backend *be = g->be;
    const GPTConfig *c = &g->cfg;
    const int C = c->d_model, L = c->n_layer, N = B * T;
    g->cur_B = B;
    g->cur_T = T;
    g->inputs = g->tokens_mem + (size_t)g->token_set * 2 * g->B * g->T;
    g->targets = g->inputs + (size_t)N;
    g->token_set ^= 1;
    const void *srcs[2] = {inputs, targets};
    const size_t bytes[2] = {(size_t)N * sizeof(int32_t), (size_t)N * sizeof(int32_t)};
    backend_upload(be, g->inputs, srcs, bytes, targets ? 2 : 1);
    g->has_targets = targets != NULL;

    // tokens (B,T) -> encoded (B,T,C)
    backend_range_push(be, "forward");
    op_encoder_forward(be, g->acts.encoded, g->inputs, W(g, PARAM_wte, 0), W(g, PARAM_wpe, 0), B, T, C);
    if (g->dropout_active) drop(g, g->acts.encoded, g->acts.encoded, (size_t)N * C, 0, GPT_DROP_EMBED);
    {   // encoded -> the first LayerNorm (layer 0's ln1, or lnf without layers); every later one is fused with its add
        void *out;
        float *mean, *rstd;
        const void *w, *b;
        next_layernorm(g, -1, &out, &mean, &rstd, &w, &b);
        op_layernorm_forward(be, out, mean, rstd, g->acts.encoded, w, b, N, C);
    }
    const void *residual = g->acts.encoded;
    for (int l = 0; l < L; l++) {
        backend_range_push(be, layer_name(l));
        block_forward(g, l, residual, B, T, 1);
        backend_range_pop(be);
        residual = act(g, ACT_residual3, l);
    }
    // lnf (B,T,C) (by the last block's add) -> logits (B,T,Vp) = lnf wte^T
    op_matmul_forward(be, g->acts.logits, g->acts.lnf, W(g, PARAM_wte, 0), NULL, N, C, c->padded_vocab);
    if (targets) {
        op_classifier_forward_backward(be, g->acts.losses, g->acts.logits, g->targets, N, c->vocab_size,
                                       c->padded_vocab, dlogits_scale);
        op_loss_accumulate(be, g->loss_sum, g->acts.losses, (size_t)N);
    }
    backend_range_pop(be);
}

void gpt_loss_reset(GPT *g) { op_zero(g->be, g->loss_sum, sizeof(double)); }

double gpt_loss_sum(GPT *g) {
    double s;
    backend_to_host(g->be, &s, g->loss_sum, sizeof s);
    return s;
}

void gpt_forward_train(GPT *g, const int32_t *inputs, const int32_t *targets, int B, int T, float dlogits_scale) {
    forward_queue(g, inputs, targets, B, T, dlogits_scale, 1);
}

float gpt_forward(GPT *g, const int32_t *inputs, const int32_t *targets, int B, int T, float dlogits_scale) {
    if (targets) gpt_loss_reset(g);
    forward_queue(g, inputs, targets, B, T, dlogits_scale, 0);
    // The sum started at 0 and received one mean rounded to float: it is that mean exactly.
    g->mean_loss = targets ? (float)gpt_loss_sum(g) : 0.0f;
    return g->mean_loss;
}

void gpt_backward(GPT *g) {
    GPT_ASSERT(g->has_targets);
    Backend *be = g->be;
    const GPTConfig *c = &g->cfg;
    const int B = g->cur_B, T = g->cur_T, C = c->d_model, L = c->n_layer, N = B * T;
    GradActTensors *ga = &g->gacts;
    backend_range_push(be, "backward");

    // logits now hold dlogits (B,T,Vp). LM head (tied): dlnf = dlogits wte, dwte += dlogits^T lnf.
    op_matmul_backward(be, ga->dbt_c, dW(g, PARAM_wte, 0), NULL, g->acts.logits, g->acts.lnf, W(g, PARAM_wte, 0), N,
                       C, c->padded_vocab);
    // The final LayerNorm's input gradient starts the residual stream's gradient (it accumulates, so zero it).
    op_zero(be, ga->dresidual, (size_t)N * C * dtype_bytes(g->dtype));
    const void *last = L > 0 ? act(g, ACT_residual3, L - 1) : g->acts.encoded;
    op_layernorm_backward(be, ga->dresidual, dW(g, PARAM_lnfw, 0), dW(g, PARAM_lnfb, 0), ga->dbt_c, last,
                          W(g, PARAM_lnfw, 0), g->acts.lnf_mean, g->acts.lnf_rstd, N, C);
    for (int l = L - 1; l >= 0; l--) {
        const void *residual = l == 0 ? g->acts.encoded : act(g, ACT_residual3, l - 1);
        backend_range_push(be, layer_name(l));
        block_recompute(g, l, residual, B, T);
        block_backward(g, l, residual, B, T);
        backend_range_pop(be);
        if (g->on_grads_ready) g->on_grads_ready(g->hook_ctx, l);   // layer l's parameter gradients are final
    }
    // encoded = drop(wte[tokens] + wpe): the embeddings' gradient through the same mask
    if (g->dropout_active) drop(g, ga->dresidual, ga->dresidual, (size_t)N * C, 0, GPT_DROP_EMBED);
    op_encoder_backward(be, dW(g, PARAM_wte, 0), dW(g, PARAM_wpe, 0), ga->enc_work, ga->dresidual, g->inputs, B, T,
                        C);
    if (g->on_grads_ready) g->on_grads_ready(g->hook_ctx, -1);        // wte, wpe, lnf: the rest
    g->has_targets = 0;  // the logits buffer no longer holds dlogits for a second backward
    backend_range_pop(be);
}

void gpt_zero_grad(GPT *g) { op_zero(g->be, g->grads_mem, g->mem.grad_bytes); }

float gpt_grad_norm(GPT *g) { return (float)sqrt(op_sum_squares(g->be, g->grads_mem, g->mem.num_params)); }

double gpt_shard_sum_squares(GPT *g) {
    return op_sum_squares(g->be, (const char *)g->grads_mem + g->shard_lo * dtype_bytes(g->grad_dtype),
                          g->shard_hi - g->shard_lo);
}

// The optimizer's view of the parameter table: where each tensor ends in the flat buffer and which take decay.
static void adamw_tensors(const GPT *g, AdamWTensors *t) {
    GPT_ASSERT(NUM_PARAM_TENSORS <= ADAMW_MAX_TENSORS);
    memset(t, 0, sizeof *t);
    t->n = NUM_PARAM_TENSORS;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        t->end[i] = g->param_info[i].offset + g->param_info[i].numel;
        if (g->param_info[i].decay) t->decay |= 1u << i;
    }
}

static void adamw_run(GPT *g, const Grad *grads, size_t lo, size_t hi, float lr, float beta1, float beta2, float eps,
                      float weight_decay, float grad_scale, double grad_clip, const float *norm, const double *loss) {
    AdamWTensors tens;
    adamw_tensors(g, &tens);
    if (g->mem.shards > 1) GPT_ASSERT(lo >= g->shard_lo && hi <= g->shard_hi);
    tens.master_base = state_base(g, GPT_STATE_PARAMS);
    tens.moment_base = state_base(g, GPT_STATE_M);
    const int t = ++g->adam_t;
    const AdamWHyper h = {lr, beta1, beta2, eps, weight_decay, grad_scale, grad_clip, t, copy_seed(g, t)};
    const int copy = g->params_c_mem != (void *)g->params_mem;
    backend_range_push(g->be, "optimizer");
    op_adamw_step(g->be, g->params_mem, copy ? g->params_c_mem : NULL, grads, g->m_mem, g->v_mem, lo, hi, &tens, &h,
                  norm, loss);
    backend_range_pop(g->be);
}

void gpt_adamw_step_range(GPT *g, const Grad *grads, size_t lo, size_t hi, float lr, float beta1, float beta2,
                          float eps, float weight_decay, float grad_scale) {
    adamw_run(g, grads, lo, hi, lr, beta1, beta2, eps, weight_decay, grad_scale, 0, NULL, NULL);
    gather_weights(g);
}

void gpt_adamw_step(GPT *g, float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale) {
    GPT_ASSERT(g->mem.shards == 1);
    adamw_run(g, g->grads_mem, 0, g->mem.num_params, lr, beta1, beta2, eps, weight_decay, grad_scale, 0, NULL, NULL);
}

float gpt_adamw_step_clipped(GPT *g, float lr, float beta1, float beta2, float eps, float weight_decay,
                             double grad_clip, float loss_scale, int check_loss, double *loss_sum) {
    GPT_ASSERT(g->mem.shards == 1);
    op_global_norm(g->be, g->grad_norm, g->grads_mem, g->mem.num_params);
    adamw_run(g, g->grads_mem, 0, g->mem.num_params, lr, beta1, beta2, eps, weight_decay, 1.0f / loss_scale,
              grad_clip * loss_scale, g->grad_norm, check_loss ? g->loss_sum : NULL);
    struct { double loss_sum; float norm; } back;   // the scalars' layout (gpt.h)
    backend_to_host(g->be, &back, g->scalars_mem, sizeof back);
    if (!isfinite(back.norm) || (check_loss && !isfinite(back.loss_sum))) g->adam_t--;   // skipped where it ran
    if (loss_sum) *loss_sum = back.loss_sum;
    return back.norm / loss_scale;
}
