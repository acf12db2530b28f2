/*
 * ops.c: the kernels seam's dispatch. Each op_* forwards to the implementation in the backend's op table, so model/
 * calls one set of functions whichever backend runs them. It is also where `--profile` measures: with be->profile
 * set, each op is bracketed by two marks (CUDA events on a GPU, the wall clock on the CPU) and the time between
 * them is read at once (so profiled steps run one op at a time), and its FLOPs (matmul-class work, as the FLOP walk
 * counts it) and minimum bytes (fp32: each input read once, each output written once; accumulated outputs read and
 * written) are added to the op's row.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

// The profiler's two marks (the last slots; the trainer's phase marks use the first).
#define PROF_MARK_BEGIN (BACKEND_MARKS - 2)
#define PROF_MARK_END (BACKEND_MARKS - 1)

static double prof_begin(Backend *be) {
    if (be->profile) backend_mark(be, PROF_MARK_BEGIN);
    return 0;
}

static void prof_end(Backend *be, double t0, const char *name, double flops, double bytes) {
    OpProfile *p = be->profile;
    (void)t0;
    if (!p) return;
    backend_mark(be, PROF_MARK_END);
    const double dt = backend_mark_seconds(be, PROF_MARK_BEGIN, PROF_MARK_END);
    int i = 0;
    while (i < p->nrows && strcmp(p->rows[i].name, name)) i++;
    if (i == p->nrows) {
        if (p->nrows == OP_PROFILE_MAX) return;
        p->nrows++;
        memset(&p->rows[i], 0, sizeof p->rows[i]);
        p->rows[i].name = name;
    }
    p->rows[i].calls++;
    p->rows[i].seconds += dt;
    p->rows[i].flops += flops;
    p->rows[i].bytes += bytes;
}

#define F4 4.0   // bytes per fp32 element
#define PROFILED(name, flops, bytes, call)           \
    do {                                             \
        const double t0_ = prof_begin(be);           \
        call;                                        \
        prof_end(be, t0_, name, (flops), (bytes));   \
    } while (0)

void op_encoder_forward(Backend *be, float *out, const int32_t *tokens, const float *wte, const float *wpe, int B,
                        int T, int C) {
    PROFILED("encoder_forward", 0, F4 * 3.0 * B * T * C + 4.0 * B * T,
             be->ops->encoder_forward(be, out, tokens, wte, wpe, B, T, C));
}
void op_encoder_backward(Backend *be, float *dwte, float *dwpe, float *work, const float *dout,
                         const int32_t *tokens, int B, int T, int C) {
    PROFILED("encoder_backward", 0, F4 * 5.0 * B * T * C + 4.0 * B * T,
             be->ops->encoder_backward(be, dwte, dwpe, work, dout, tokens, B, T, C));
}
void op_layernorm_forward(Backend *be, float *out, float *mean, float *rstd, const float *inp, const float *w,
                          const float *b, int N, int C) {
    PROFILED("layernorm_forward", 0, F4 * (2.0 * N * C + 2.0 * C + 2.0 * N),
             be->ops->layernorm_forward(be, out, mean, rstd, inp, w, b, N, C));
}
void op_layernorm_backward(Backend *be, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                           const float *w, const float *mean, const float *rstd, int N, int C) {
    PROFILED("layernorm_backward", 0, F4 * (4.0 * N * C + 5.0 * C + 2.0 * N),
             be->ops->layernorm_backward(be, dinp, dw, db, dout, inp, w, mean, rstd, N, C));
}
void op_matmul_forward(Backend *be, float *out, const float *inp, const float *w, const float *bias, int N, int K,
                       int M) {
    PROFILED("matmul_forward", 2.0 * N * K * M, F4 * ((double)N * K + (double)M * K + (double)N * M + (bias ? M : 0)),
             be->ops->matmul_forward(be, out, inp, w, bias, N, K, M));
}
void op_matmul_backward(Backend *be, float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                        const float *w, int N, int K, int M) {
    PROFILED("matmul_backward", (dinp ? 4.0 : 2.0) * N * K * M, F4 * ((double)N * M + (double)N * K + 2.0 * M * K + (dinp ? (double)M * K + (double)N * K : 0) + (dbias ? 2.0 * M : 0)),
             be->ops->matmul_backward(be, dinp, dw, dbias, dout, inp, w, N, K, M));
}
void op_attention_forward(Backend *be, float *out, float *att, const float *qkv, int B, int T, int C, int NH) {
    PROFILED("attention_forward", 2.0 * B * C * T * (T + 1.0), F4 * (3.0 * B * T * C + (double)B * T * C + (double)B * NH * T * (T + 1.0) / 2),
             be->ops->attention_forward(be, out, att, qkv, B, T, C, NH));
}
void op_attention_backward(Backend *be, float *dqkv, float *datt_scratch, const float *dout, const float *qkv,
                           const float *att, int B, int T, int C, int NH) {
    PROFILED("attention_backward", 4.0 * B * C * T * (T + 1.0), F4 * (3.0 * B * T * C + 4.0 * B * T * C + (double)B * NH * T * (T + 1.0) / 2),
             be->ops->attention_backward(be, dqkv, datt_scratch, dout, qkv, att, B, T, C, NH));
}
void op_flash_attention_forward(Backend *be, float *out, float *lse, float *work, const float *qkv, int B, int T,
                                int C, int NH) {
    PROFILED("flash_attention_forward", 2.0 * B * C * T * (T + 1.0), F4 * (3.0 * B * T * C + (double)B * T * C + (double)B * NH * T),
             be->ops->flash_attention_forward(be, out, lse, work, qkv, B, T, C, NH));
}
void op_flash_attention_backward(Backend *be, float *dqkv, float *work, const float *dout, const float *qkv,
                                 const float *out, const float *lse, int B, int T, int C, int NH) {
    PROFILED("flash_attention_backward", 5.0 * B * C * T * (T + 1.0), F4 * (3.0 * B * T * C + 2.0 * B * T * C + (double)B * NH * T + 3.0 * B * T * C),
             be->ops->flash_attention_backward(be, dqkv, work, dout, qkv, out, lse, B, T, C, NH));
}
void op_gelu_forward(Backend *be, float *out, const float *inp, size_t N) { PROFILED("gelu_forward", 0, F4 * 2.0 * N,
             be->ops->gelu_forward(be, out, inp, N)); }
void op_gelu_backward(Backend *be, float *dinp, const float *inp, const float *dout, size_t N) {
    PROFILED("gelu_backward", 0, F4 * 3.0 * N,
             be->ops->gelu_backward(be, dinp, inp, dout, N));
}
void op_residual_forward(Backend *be, float *out, const float *a, const float *b, size_t N) {
    PROFILED("residual_forward", 0, F4 * 3.0 * N,
             be->ops->residual_forward(be, out, a, b, N));
}
void op_classifier_forward_backward(Backend *be, float *losses, float *logits, const int32_t *targets, int N, int V,
                                    int Vp, float dlogits_scale) {
    PROFILED("classifier", 0, F4 * ((double)N * Vp * (dlogits_scale != 0 ? 2 : 1) + 2.0 * N),
             be->ops->classifier_forward_backward(be, losses, logits, targets, N, V, Vp, dlogits_scale));
}
void op_loss_accumulate(Backend *be, double *acc, const float *losses, size_t n) {
    PROFILED("loss_accumulate", 0, F4 * (double)n, be->ops->loss_accumulate(be, acc, losses, n));
}
double op_sum_squares(Backend *be, const float *x, size_t n) {
    double r = 0;
    PROFILED("sum_squares", 0, F4 * (double)n, r = be->ops->sum_squares(be, x, n));
    return r;
}
void op_scale(Backend *be, float *x, float s, size_t n) { PROFILED("scale", 0, F4 * 2.0 * n,
             be->ops->scale(be, x, s, n)); }
void op_zero(Backend *be, float *x, size_t n) { PROFILED("zero", 0, F4 * (double)n,
             be->ops->zero(be, x, n)); }
void op_global_norm(Backend *be, float *norm, const float *x, size_t n) {
    PROFILED("global_norm", 0, F4 * (double)n, be->ops->global_norm(be, norm, x, n));
}
void op_adamw_step(Backend *be, float *params, const float *grads, float *m, float *v, size_t lo, size_t hi,
                   const AdamWTensors *tensors, const AdamWHyper *h, const float *norm, const double *loss) {
    PROFILED("adamw", 0, F4 * 7.0 * (double)(hi > lo ? hi - lo : 0),
             be->ops->adamw_step(be, params, grads, m, v, lo, hi, tensors, h, norm, loss));
}

void *backend_alloc(Backend *be, size_t bytes, const char *what) {
    be->bytes_allocated += bytes;
    return be->mem->alloc(be, bytes, what);
}
void backend_free(Backend *be, void *p) {
    if (p) be->mem->free(be, p);
}
void backend_to_device(Backend *be, void *dst, const void *src, size_t bytes) { be->mem->to_device(be, dst, src, bytes); }
void backend_to_host(Backend *be, void *dst, const void *src, size_t bytes) { be->mem->to_host(be, dst, src, bytes); }
void backend_sync(Backend *be) { be->mem->sync(be); }
void backend_mark(Backend *be, int slot) {
    if (slot < 0 || slot >= BACKEND_MARKS) {
        fprintf(stderr, "gptrain: internal error at %s:%d: mark slot %d\n", __FILE__, __LINE__, slot);
        abort();
    }
    be->mem->mark(be, slot);
}
double backend_mark_seconds(Backend *be, int from, int to) { return be->mem->mark_seconds(be, from, to); }
void backend_upload(Backend *be, void *dst, const void *const *srcs, const size_t *bytes, int n) {
    be->mem->upload(be, dst, srcs, bytes, n);
}
void *backend_staging_alloc(Backend *be, size_t bytes, const char *what) { return be->mem->host_alloc(be, bytes, what); }
void backend_staging_free(Backend *be, void *p) {
    if (p) be->mem->host_free(be, p);
}

void backend_range_push(Backend *be, const char *name) {
    if (be->range_push) be->range_push(be, name);
}
void backend_range_pop(Backend *be) {
    if (be->range_pop) be->range_pop(be);
}

double backend_measure_bandwidth_gbs(Backend *be) {
    const size_t n = (size_t)16 << 20;   // 3 x 64 MiB: well past any cache
    const size_t before = be->bytes_allocated;
    float *a = backend_alloc(be, n * sizeof(float), "bandwidth probe"), *b = backend_alloc(be, n * sizeof(float), "bandwidth probe");
    float *c = backend_alloc(be, n * sizeof(float), "bandwidth probe");
    OpProfile *saved = be->profile;
    be->profile = NULL;
    double best = 1e30;
    for (int rep = 0; rep < 6; rep++) {   // the first touches the pages; the best of the rest counts
        backend_sync(be);
        const double t0 = backend_now_s();
        be->ops->residual_forward(be, c, a, b, n);
        backend_sync(be);
        const double dt = backend_now_s() - t0;
        if (rep > 0 && dt < best) best = dt;
    }
    be->profile = saved;
    backend_free(be, a);
    backend_free(be, b);
    backend_free(be, c);
    be->bytes_allocated = before;
    return 3.0 * n * sizeof(float) / best / 1e9;
}
