/*
 * ops.c: the kernels seam's dispatch. Each op_* forwards to the implementation in the backend's op table, so model/
 * calls one set of functions whichever backend runs them. It is also where `--profile` measures: with be->profile
 * set, each op is bracketed by two marks (CUDA events on a GPU, the wall clock on the CPU) and the time between
 * them is read at once (so profiled steps run one op at a time), and its FLOPs (matmul-class work, as the FLOP walk
 * counts it) and minimum bytes (each input read once, each output written once, at its dtype's size; accumulated
 * outputs read and written) are added to the op's row.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

// The profiler's two marks (the last slots; the trainer's phase marks use the first).
#define PROF_MARK_BEGIN (BACKEND_MARKS - 2)
#define PROF_MARK_END (BACKEND_MARKS - 1)

static void prof_begin(Backend *be) {
    if (be->profile) backend_mark(be, PROF_MARK_BEGIN);
}

static void prof_end(Backend *be, const char *name, double flops, double bytes) {
    OpProfile *p = be->profile;
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

#define F4 4.0                                 // bytes per fp32 element
#define EC ((double)dtype_bytes(be->dtype))    // bytes per compute-dtype element
#define EG ((double)dtype_bytes(be->grad_dtype))   // bytes per parameter-gradient element
#define PROFILED(name, flops, bytes, call)           \
    do {                                             \
        prof_begin(be);                              \
        call;                                        \
        prof_end(be, name, (flops), (bytes));        \
    } while (0)

void op_encoder_forward(Backend *be, void *out, const int32_t *tokens, const void *wte, const void *wpe, int B,
                        int T, int C) {
    PROFILED("encoder_forward", 0, EC * 3.0 * B * T * C + 4.0 * B * T,
             be->ops->encoder_forward(be, out, tokens, wte, wpe, B, T, C));
}
void op_encoder_backward(Backend *be, Grad *dwte, Grad *dwpe, float *work, const void *dout,
                         const int32_t *tokens, int B, int T, int C) {
    PROFILED("encoder_backward", 0, EC * B * T * C + EG * 4.0 * B * T * C + 4.0 * B * T,
             be->ops->encoder_backward(be, dwte, dwpe, work, dout, tokens, B, T, C));
}
void op_layernorm_forward(Backend *be, void *out, float *mean, float *rstd, const void *inp, const void *w,
                          const void *b, int N, int C) {
    PROFILED("layernorm_forward", 0, EC * (2.0 * N * C + 2.0 * C) + F4 * 2.0 * N,
             be->ops->layernorm_forward(be, out, mean, rstd, inp, w, b, N, C));
}
void op_residual_layernorm_forward(Backend *be, void *resid, void *out, float *mean, float *rstd, const void *a,
                                   const void *b, const void *w, const void *bias, int N, int C) {
    PROFILED("residual_layernorm_forward", 0, EC * (4.0 * N * C + 2.0 * C) + F4 * 2.0 * N,
             be->ops->residual_layernorm_forward(be, resid, out, mean, rstd, a, b, w, bias, N, C));
}
void op_layernorm_backward(Backend *be, void *dinp, Grad *dw, Grad *db, const void *dout, const void *inp,
                           const void *w, const float *mean, const float *rstd, int N, int C) {
    PROFILED("layernorm_backward", 0, EC * (4.0 * N * C + C) + EG * 4.0 * C + F4 * 2.0 * N,
             be->ops->layernorm_backward(be, dinp, dw, db, dout, inp, w, mean, rstd, N, C));
}
void op_matmul_forward(Backend *be, void *out, const void *inp, const void *w, const void *bias, int N, int K,
                       int M) {
    PROFILED("matmul_forward", 2.0 * N * K * M, EC * ((double)N * K + (double)M * K + (double)N * M + (bias ? M : 0)),
             be->ops->matmul_forward(be, out, inp, w, bias, N, K, M));
}
void op_matmul_backward(Backend *be, void *dinp, Grad *dw, Grad *dbias, const void *dout, const void *inp,
                        const void *w, int N, int K, int M) {
    PROFILED("matmul_backward", (dinp ? 4.0 : 2.0) * N * K * M,
             EC * ((double)N * M + (double)N * K + (dinp ? (double)M * K + (double)N * K : 0)) +
                 EG * (2.0 * M * K + (dbias ? 2.0 * M : 0)),
             be->ops->matmul_backward(be, dinp, dw, dbias, dout, inp, w, N, K, M));
}
void op_matmul_backward_gelu(Backend *be, void *dinp, Grad *dw, Grad *dbias, const void *dout, const void *inp,
                             const void *w, const void *pre, int N, int K, int M) {
    PROFILED("matmul_backward_gelu", 4.0 * N * K * M,
             EC * ((double)N * M + (double)N * K + (double)M * K + 2.0 * N * K) + EG * (2.0 * M * K + (dbias ? 2.0 * M : 0)),
             be->ops->matmul_backward_gelu(be, dinp, dw, dbias, dout, inp, w, pre, N, K, M));
}
void op_attention_forward(Backend *be, void *out, void *att, void *scratch, const void *qkv, int B, int T, int C,
                          int NH, float p, uint64_t key) {
    PROFILED("attention_forward", 2.0 * B * C * T * (T + 1.0), EC * (3.0 * B * T * C + (double)B * T * C + (double)B * NH * T * (T + 1.0) / 2),
             be->ops->attention_forward(be, out, att, scratch, qkv, B, T, C, NH, p, key));
}
void op_attention_backward(Backend *be, void *dqkv, void *datt_scratch, const void *dout, const void *qkv,
                           const void *att, int B, int T, int C, int NH, float p, uint64_t key) {
    PROFILED("attention_backward", 4.0 * B * C * T * (T + 1.0), EC * (3.0 * B * T * C + 4.0 * B * T * C + (double)B * NH * T * (T + 1.0) / 2),
             be->ops->attention_backward(be, dqkv, datt_scratch, dout, qkv, att, B, T, C, NH, p, key));
}
void op_flash_attention_forward(Backend *be, void *out, float *lse, float *work, const void *qkv, int B, int T,
                                int C, int NH) {
    PROFILED("flash_attention_forward", 2.0 * B * C * T * (T + 1.0), EC * (3.0 * B * T * C + (double)B * T * C) + F4 * (double)B * NH * T,
             be->ops->flash_attention_forward(be, out, lse, work, qkv, B, T, C, NH));
}
void op_flash_attention_backward(Backend *be, void *dqkv, float *work, const void *dout, const void *qkv,
                                 const void *out, const float *lse, int B, int T, int C, int NH) {
    PROFILED("flash_attention_backward", 5.0 * B * C * T * (T + 1.0), EC * (3.0 * B * T * C + 2.0 * B * T * C + 3.0 * B * T * C) + F4 * (double)B * NH * T,
             be->ops->flash_attention_backward(be, dqkv, work, dout, qkv, out, lse, B, T, C, NH));
}
void op_gelu_forward(Backend *be, void *out, const void *inp, size_t N) {
    PROFILED("gelu_forward", 0, EC * 2.0 * N, be->ops->gelu_forward(be, out, inp, N));
}
void op_gelu_backward(Backend *be, void *dinp, const void *inp, const void *dout, size_t N) {
    PROFILED("gelu_backward", 0, EC * 3.0 * N, be->ops->gelu_backward(be, dinp, inp, dout, N));
}
void op_residual_forward(Backend *be, void *out, const void *a, const void *b, size_t N) {
    PROFILED("residual_forward", 0, EC * 3.0 * N, be->ops->residual_forward(be, out, a, b, N));
}
void op_dropout(Backend *be, void *out, const void *inp, size_t N, float p, uint64_t key) {
    PROFILED("dropout", 0, EC * 2.0 * N, be->ops->dropout(be, out, inp, N, p, key));
}
void op_classifier_forward_backward(Backend *be, float *losses, void *logits, const int32_t *targets, int N, int V,
                                    int Vp, float dlogits_scale) {
    PROFILED("classifier", 0, EC * (double)N * Vp * (dlogits_scale != 0 ? 2 : 1) + F4 * 2.0 * N,
             be->ops->classifier_forward_backward(be, losses, logits, targets, N, V, Vp, dlogits_scale));
}
void op_loss_accumulate(Backend *be, double *acc, const float *losses, size_t n) {
    PROFILED("loss_accumulate", 0, F4 * (double)n, be->ops->loss_accumulate(be, acc, losses, n));
}
double op_sum_squares(Backend *be, const Grad *x, size_t n) {
    double r = 0;
    PROFILED("sum_squares", 0, EG * (double)n, r = be->ops->sum_squares(be, x, n));
    return r;
}
void op_scale(Backend *be, float *x, float s, size_t n) { PROFILED("scale", 0, F4 * 2.0 * n,
             be->ops->scale(be, x, s, n)); }
void op_zero(Backend *be, void *x, size_t bytes) { PROFILED("zero", 0, (double)bytes, be->ops->zero(be, x, bytes)); }
void op_to_compute(Backend *be, void *dst, const float *src, size_t n, size_t first, uint32_t seed) {
    PROFILED("to_compute", 0, (F4 + EC) * (double)n, be->ops->to_compute(be, dst, src, n, first, seed));
}
void op_global_norm(Backend *be, float *norm, const Grad *x, size_t n) {
    PROFILED("global_norm", 0, EG * (double)n, be->ops->global_norm(be, norm, x, n));
}
void op_adamw_step(Backend *be, float *params, void *params_c, const Grad *grads, float *m, float *v, size_t lo,
                   size_t hi, const AdamWTensors *tensors, const AdamWHyper *h, const float *norm,
                   const double *loss) {
    PROFILED("adamw", 0, (F4 * 6.0 + EG + (params_c ? EC : 0)) * (double)(hi > lo ? hi - lo : 0),
             be->ops->adamw_step(be, params, params_c, grads, m, v, lo, hi, tensors, h, norm, loss));
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
    const DType saved_dtype = be->dtype;   // the probe's buffers are fp32
    be->profile = NULL;
    be->dtype = DTYPE_F32;
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
    be->dtype = saved_dtype;
    backend_free(be, a);
    backend_free(be, b);
    backend_free(be, c);
    be->bytes_allocated = before;
    return 3.0 * n * sizeof(float) / best / 1e9;
}
