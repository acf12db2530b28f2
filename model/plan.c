/*
 * plan.c: the memory plan and the FLOP walk, both computed from the config before anything is allocated.
 *
 * The plan lays out its buffers with the same named-view scheme: parameters (GPT_PARAMS: the fp32 master, its working
 * copy in the compute dtype unless that is fp32, their gradients and the two AdamW moments, one layout), the
 * activations kept for the backward (GPT_ACTS, sized per recompute mode) and the backward's scratch (GPT_GRAD_ACTS,
 * one layer at a time), both in bytes, each tensor in its table's dtype for the run's compute dtype. `gptrain info`
 * prints these numbers and gpt_create allocates exactly them, so predicted and allocated memory agree by construction.
 *
 * The FLOP walk lists the ops of one forward in execution order with their matmul-class FLOPs (2 per multiply-add);
 * gpt_flops sums it. Causal attention computes T(T+1)/2 query-key pairs per head: QK^T and AV each cost
 * 2 * HS * T(T+1)/2 per head, i.e. B*C*T*(T+1) per layer each. The LM head counts the real vocabulary V (the padded
 * rows Vp-V are zeros the hardware multiplies but the model does not need).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ops.h"
#include "plan.h"

// The planner's view of one table entry: slots for a recompute mode.
static int act_slots(int per_layer, int kept, RecomputeMode rc, int L) {
    if (!per_layer) return 1;
    return (kept & (1 << rc)) ? L : 1;
}

size_t gpt_plan_params(const GPTConfig *cfg, ParamInfo *info) {
    const size_t C = cfg->d_model, F = cfg->d_ff, Vp = cfg->padded_vocab, maxT = cfg->max_seq_len;
    const int L = cfg->n_layer;
    size_t off = 0;
    int i = 0;
#define GPT_PARAM_PLAN(pname, prows, pcols, pper_layer, pdecay, pinit)               \
    info[i].name = #pname;                                                          \
    info[i].rows = (prows);                                                         \
    info[i].cols = (pcols);                                                         \
    info[i].per_layer = (pper_layer);                                               \
    info[i].numel = (size_t)(prows) * (size_t)(pcols) * ((pper_layer) ? (size_t)L : 1); \
    info[i].offset = off;                                                           \
    info[i].decay = (pdecay);                                                       \
    info[i].init = (pinit);                                                         \
    off += info[i].numel;                                                           \
    i++;
    GPT_PARAMS(GPT_PARAM_PLAN)
#undef GPT_PARAM_PLAN
    (void)maxT; (void)F; (void)Vp; (void)C;
    return off;
}

size_t gpt_plan_acts(const GPTConfig *cfg, int Bi, int Ti, RecomputeMode rc, AttentionKind attn, DType dt,
                     ActInfo *info) {
    const size_t cb = dtype_bytes(dt);
    const size_t B = Bi, T = Ti, C = cfg->d_model, F = cfg->d_ff, NH = cfg->n_head, Vp = cfg->padded_vocab;
    const size_t N = B * T, TT = attn == ATTN_NAIVE ? T * T : 0, TL = attn == ATTN_FLASH ? T : 0;
    const int L = cfg->n_layer;
    size_t off = 0;
    int i = 0;
#define GPT_ACT_PLAN(aname, anumel, aper_layer, akept, adtype)                        \
    info[i].name = #aname;                                                           \
    info[i].slot_numel = (anumel);                                                   \
    info[i].slots = act_slots((aper_layer), (akept), rc, L);                         \
    info[i].elem_bytes = PLAN_DTYPE_BYTES(adtype, cb);                               \
    info[i].offset = off;                                                            \
    off += info[i].slot_numel * (size_t)info[i].slots * info[i].elem_bytes;          \
    i++;
    GPT_ACTS(GPT_ACT_PLAN)
#undef GPT_ACT_PLAN
    (void)F; (void)NH; (void)Vp; (void)TT; (void)TL;
    return off;
}

size_t gpt_plan_grad_acts(const GPTConfig *cfg, int Bi, int Ti, AttentionKind attn, DType dt, GradActInfo *info) {
    const size_t cb = dtype_bytes(dt);
    const size_t B = Bi, T = Ti, C = cfg->d_model, F = cfg->d_ff, NH = cfg->n_head;
    const size_t N = B * T, TT = attn == ATTN_NAIVE ? T * T : 0;
    const size_t FW = attn == ATTN_FLASH ? FLASH_WORK_FLOATS(B, T, C, NH, cb) : 0, EW = ENCODER_WORK_FLOATS(N);
    size_t total = 0;
    int i = 0;
#define GPT_GACT_PLAN(gname, gnumel, gdtype)                                         \
    if (info) {                                                                      \
        info[i].name = #gname;                                                       \
        info[i].numel = (gnumel);                                                    \
        info[i].elem_bytes = PLAN_DTYPE_BYTES(gdtype, cb);                           \
        info[i].offset = total;                                                      \
    }                                                                                \
    total += (size_t)(gnumel) * PLAN_DTYPE_BYTES(gdtype, cb);                       \
    i++;
    GPT_GRAD_ACTS(GPT_GACT_PLAN)
#undef GPT_GACT_PLAN
    (void)F; (void)NH; (void)C; (void)TT; (void)FW; (void)EW;
    return total;
}

size_t gpt_param_count(const GPTConfig *cfg) {
    ParamInfo info[NUM_PARAM_TENSORS];
    return gpt_plan_params(cfg, info);
}

double gpt_memory_total_estimate(const GPTConfig *cfg, int Bi, int Ti, RecomputeMode rc, AttentionKind attn,
                                 DType dt, DType gdt) {
    // The same tables as the size_t plan, evaluated in double: B and T come from flags, and their products with the
    // widths (B*NH*T*T per layer) could wrap a size_t, which would under-allocate. Exact while below 2^53.
    const double B = Bi, T = Ti, C = cfg->d_model, F = cfg->d_ff, NH = cfg->n_head, Vp = cfg->padded_vocab;
    const double maxT = cfg->max_seq_len, L = cfg->n_layer;
    const double N = B * T, TT = attn == ATTN_NAIVE ? T * T : 0, TL = attn == ATTN_FLASH ? T : 0;
    const double cb = (double)dtype_bytes(dt);
    const double FW = attn == ATTN_FLASH ? (cb == 4 ? 2 : 1) * N * C + B * NH * T + (cb == 4 ? 64 : 128) : 0;
    const double EW = 4 * N + 2048;                                              // ENCODER_WORK_FLOATS in double
    double params = 0, acts = 0, gacts = 0;
#define GPT_PARAM_EST(pname, prows, pcols, pper_layer, pdecay, pinit) params += (prows) * (pcols) * ((pper_layer) ? L : 1);
    GPT_PARAMS(GPT_PARAM_EST)
#undef GPT_PARAM_EST
#define GPT_ACT_EST(aname, anumel, aper_layer, akept, adtype)                                                          \
    acts += (anumel) * act_slots((aper_layer), (akept), rc, (int)L) * (double)PLAN_DTYPE_BYTES(adtype, cb);
    GPT_ACTS(GPT_ACT_EST)
#undef GPT_ACT_EST
#define GPT_GACT_EST(gname, gnumel, gdtype) gacts += (gnumel) * (double)PLAN_DTYPE_BYTES(gdtype, cb);
    GPT_GRAD_ACTS(GPT_GACT_EST)
#undef GPT_GACT_EST
    (void)F; (void)NH; (void)Vp; (void)maxT; (void)TT; (void)TL; (void)FW; (void)EW;
    // fp32 weights and the two AdamW moments, the gradients in their dtype, and the weights' working copy unless it
    // is the fp32 master; activations; backward scratch; two sets of input and target tokens and the step's scalars
    return (3 * 4 + (double)dtype_bytes(gdt) + (dt == DTYPE_F32 ? 0 : cb)) * params + acts + gacts + 4 * N * 4 +
           GPT_SCALAR_BYTES;
}

int gpt_plan_check(const GPTConfig *cfg, int B, int T, AttentionKind attn, DType dt, char *err, size_t errlen) {
    double need = 0;
    for (int m = 0; m < 3; m++)
        need = fmax(need, gpt_memory_total_estimate(cfg, B, T, (RecomputeMode)m, attn, dt, DTYPE_F32));
    if (need > GPT_PLAN_MAX_BYTES) {
        snprintf(err, errlen, "--batch %d --seq-len %d: the plan needs %.3g bytes, more than the %.3g (2^60) any "
                 "machine holds: expected a smaller --batch, --seq-len or model", B, T, need, GPT_PLAN_MAX_BYTES);
        return -1;
    }
    return 0;
}

void gpt_memory_plan(const GPTConfig *cfg, int B, int T, AttentionKind attn, DType dt, DType gdt, GPTMemory *out) {
    ParamInfo pinfo[NUM_PARAM_TENSORS];
    ActInfo ainfo[NUM_ACT_TENSORS];
    memset(out, 0, sizeof(*out));
    out->dtype = dt;
    out->grad_dtype = gdt;
    out->num_params = gpt_plan_params(cfg, pinfo);
    out->num_params_real = out->num_params - (size_t)(cfg->padded_vocab - cfg->vocab_size) * cfg->d_model;
    out->param_bytes = out->num_params * sizeof(float);
    out->param_copy_bytes = dt == DTYPE_F32 ? 0 : out->num_params * dtype_bytes(dt);
    out->grad_bytes = out->num_params * dtype_bytes(gdt);
    out->optim_bytes = 2 * out->param_bytes;
    for (int m = 0; m < 3; m++) out->act_bytes[m] = gpt_plan_acts(cfg, B, T, (RecomputeMode)m, attn, dt, ainfo);
    out->grad_act_bytes = gpt_plan_grad_acts(cfg, B, T, attn, dt, NULL);
    out->io_bytes = 4 * (size_t)B * T * sizeof(int32_t) + GPT_SCALAR_BYTES;
    out->shards = 1;
    out->shard = out->num_params;
}

void gpt_memory_shard(GPTMemory *m, int shards) {
    if (shards <= 1) return;
    const size_t a = GPT_SHARD_ALIGN, shard = ((m->num_params + shards - 1) / shards + a - 1) / a * a;
    const size_t padded = shard * (size_t)shards;
    m->shards = shards;
    m->shard = shard;
    m->grad_bytes = padded * dtype_bytes(m->grad_dtype);
    m->optim_bytes = 2 * shard * sizeof(float);
    if (m->dtype == DTYPE_F32) m->param_bytes = padded * sizeof(float);   // the weights the ops read, whole
    else {
        m->param_bytes = shard * sizeof(float);                             // the master's shard
        m->param_copy_bytes = padded * dtype_bytes(m->dtype);
    }
}

size_t gpt_memory_total(const GPTMemory *m, RecomputeMode rc) {
    return m->param_bytes + m->param_copy_bytes + m->grad_bytes + m->optim_bytes + m->act_bytes[rc] +
           m->grad_act_bytes + m->io_bytes;
}

int gpt_max_batch(const GPTConfig *cfg, int T, RecomputeMode rc, AttentionKind attn, DType dt, DType gdt, double cap,
                  double reserve, int max_B, double *need_next) {
    // Memory grows with B (activations, scratch, tokens), so bisect on the first B that does not fit. In double:
    // a large B at a long T would wrap the size_t plan into a small number that "fits".
    int lo = 0, hi = max_B + 1;   // fits(lo) (B = 0 trivially), !fits(hi)
    while (hi - lo > 1) {
        const int mid = lo + (hi - lo) / 2;
        if (gpt_memory_total_estimate(cfg, mid, T, rc, attn, dt, gdt) + reserve <= cap) lo = mid;
        else hi = mid;
    }
    if (need_next) *need_next = gpt_memory_total_estimate(cfg, lo + 1, T, rc, attn, dt, gdt) + reserve;
    return lo;
}

void gpt_forward_ops(const GPTConfig *cfg, int Bi, int Ti, void (*visit)(const GPTOp *op, void *ctx), void *ctx) {
    const double B = Bi, T = Ti, C = cfg->d_model, F = cfg->d_ff, V = cfg->vocab_size, NH = cfg->n_head;
    const double Vp = cfg->padded_vocab, N = B * T, f4 = 4;
    (void)NH;
    GPTOp op;
#define VISIT(opname, oplayer, opflops, opbytes) \
    do { op.name = (opname); op.layer = (oplayer); op.flops = (opflops); op.bytes = f4 * (opbytes); visit(&op, ctx); } while (0)
    // Each residual add is fused with the LayerNorm after it (4·N·C: a, b read, the sum and the norm written); the
    // first LayerNorm, after the encoder, is on its own.
    VISIT("encoder", -1, 0, 3 * N * C);
    VISIT(cfg->n_layer ? "ln1" : "lnf", cfg->n_layer ? 0 : -1, 0, 2 * N * C);
    for (int l = 0; l < cfg->n_layer; l++) {
        VISIT("qkv", l, 2 * N * C * 3 * C, N * C + 3 * C * C + 3 * N * C);
        // 2*HS per pair, NH heads, T(T+1)/2 causal pairs, B sequences. Bytes are the floor, flash attention's (q, k
        // in; v in, O out); the naive path also writes and reads the B*NH*T(T+1)/2 probabilities.
        VISIT("attn_qk", l, B * C * T * (T + 1), 2 * N * C);
        VISIT("attn_softmax", l, 0, 0);
        VISIT("attn_av", l, B * C * T * (T + 1), 2 * N * C);
        VISIT("attproj", l, 2 * N * C * C, 2 * N * C + C * C);
        VISIT("residual_ln2", l, 0, 4 * N * C);
        VISIT("fc", l, 2 * N * C * F, N * C + C * F + N * F);
        VISIT("gelu", l, 0, 2 * N * F);
        VISIT("fcproj", l, 2 * N * F * C, N * F + F * C + N * C);
        VISIT(l + 1 < cfg->n_layer ? "residual_ln1" : "residual_lnf", l, 0, 4 * N * C);
    }
    VISIT("lm_head", -1, 2 * N * C * V, N * C + Vp * C + N * Vp);
    VISIT("classifier", -1, 0, 2 * N * Vp);
#undef VISIT
}

typedef struct FlopSum {
    double total, blocks, attn_qk;
} FlopSum;

static void flops_visit(const GPTOp *op, void *ctx) {
    FlopSum *s = ctx;
    s->total += op->flops;
    if (op->layer >= 0) s->blocks += op->flops;
    if (!strcmp(op->name, "attn_qk")) s->attn_qk += op->flops;
}

void gpt_flops(const GPTConfig *cfg, int B, int T, AttentionKind attn, GPTFlops *out) {
    FlopSum s = {0, 0, 0};
    gpt_forward_ops(cfg, B, T, flops_visit, &s);
    out->forward = s.total;
    // Every matmul's backward is two matmuls of the forward's size (input gradient and weight gradient); attention's
    // backward is four (dP = dO V^T, dV = P^T dO, dQ = dS K, dK = dS^T Q) against the forward's two.
    out->model = 3 * s.total;
    out->hardware[RECOMPUTE_NONE] = out->model;
    out->hardware[RECOMPUTE_SELECTIVE] = out->model;  // re-runs LayerNorm and GELU only: elementwise, 0 counted FLOPs
    out->hardware[RECOMPUTE_FULL] = out->model + s.blocks;  // re-runs every block's forward inside the backward
    out->attn_qk = s.attn_qk;
    // Flash attention's backward recomputes S = QK^T from Q, K and the logsumexp instead of reading P (FA2, Alg. 2).
    if (attn == ATTN_FLASH)
        for (int m = 0; m < 3; m++) out->hardware[m] += s.attn_qk;
}

typedef struct Roofline {
    double peak, bw, total, compute, memory, byte_scale;
} Roofline;

static void roofline_visit(const GPTOp *op, void *ctx) {
    Roofline *r = ctx;
    const double tc = 3 * op->flops / r->peak, tm = 3 * op->bytes * r->byte_scale / r->bw;   // fwd + bwd (2x)
    r->total += tc > tm ? tc : tm;
    if (tc > tm) r->compute += tc; else r->memory += tm;
}

double gpt_roofline_step_s(const GPTConfig *cfg, int B, int T, DType dt, double peak_tflops, double bandwidth_gbs,
                           double *compute_s, double *memory_s) {
    Roofline r = {peak_tflops * 1e12, bandwidth_gbs * 1e9, 0, 0, 0, dtype_bytes(dt) / 4.0};
    gpt_forward_ops(cfg, B, T, roofline_visit, &r);
    if (compute_s) *compute_s = r.compute;
    if (memory_s) *memory_s = r.memory;
    return r.total;
}
