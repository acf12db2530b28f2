/*
 * ops.c: the kernels seam's dispatch. Each op_* forwards to the implementation in the backend's op table, so model/
 * calls one set of functions whichever backend runs them.
 */
#include "ops.h"

void op_encoder_forward(Backend *be, float *out, const int32_t *tokens, const float *wte, const float *wpe, int B,
                        int T, int C) {
    be->ops->encoder_forward(be, out, tokens, wte, wpe, B, T, C);
}
void op_encoder_backward(Backend *be, float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int B, int T,
                         int C) {
    be->ops->encoder_backward(be, dwte, dwpe, dout, tokens, B, T, C);
}
void op_layernorm_forward(Backend *be, float *out, float *mean, float *rstd, const float *inp, const float *w,
                          const float *b, int N, int C) {
    be->ops->layernorm_forward(be, out, mean, rstd, inp, w, b, N, C);
}
void op_layernorm_backward(Backend *be, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                           const float *w, const float *mean, const float *rstd, int N, int C) {
    be->ops->layernorm_backward(be, dinp, dw, db, dout, inp, w, mean, rstd, N, C);
}
void op_matmul_forward(Backend *be, float *out, const float *inp, const float *w, const float *bias, int N, int K,
                       int M) {
    be->ops->matmul_forward(be, out, inp, w, bias, N, K, M);
}
void op_matmul_backward(Backend *be, float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                        const float *w, int N, int K, int M) {
    be->ops->matmul_backward(be, dinp, dw, dbias, dout, inp, w, N, K, M);
}
void op_attention_forward(Backend *be, float *out, float *att, const float *qkv, int B, int T, int C, int NH) {
    be->ops->attention_forward(be, out, att, qkv, B, T, C, NH);
}
void op_attention_backward(Backend *be, float *dqkv, float *datt_scratch, const float *dout, const float *qkv,
                           const float *att, int B, int T, int C, int NH) {
    be->ops->attention_backward(be, dqkv, datt_scratch, dout, qkv, att, B, T, C, NH);
}
void op_flash_attention_forward(Backend *be, float *out, float *lse, float *work, const float *qkv, int B, int T,
                                int C, int NH) {
    be->ops->flash_attention_forward(be, out, lse, work, qkv, B, T, C, NH);
}
void op_flash_attention_backward(Backend *be, float *dqkv, float *work, const float *dout, const float *qkv,
                                 const float *out, const float *lse, int B, int T, int C, int NH) {
    be->ops->flash_attention_backward(be, dqkv, work, dout, qkv, out, lse, B, T, C, NH);
}
void op_gelu_forward(Backend *be, float *out, const float *inp, size_t N) { be->ops->gelu_forward(be, out, inp, N); }
void op_gelu_backward(Backend *be, float *dinp, const float *inp, const float *dout, size_t N) {
    be->ops->gelu_backward(be, dinp, inp, dout, N);
}
void op_residual_forward(Backend *be, float *out, const float *a, const float *b, size_t N) {
    be->ops->residual_forward(be, out, a, b, N);
}
void op_classifier_forward_backward(Backend *be, float *losses, float *logits, const int32_t *targets, int N, int V,
                                    int Vp, float dlogits_scale) {
    be->ops->classifier_forward_backward(be, losses, logits, targets, N, V, Vp, dlogits_scale);
}
double op_sum_squares(Backend *be, const float *x, size_t n) { return be->ops->sum_squares(be, x, n); }
void op_scale(Backend *be, float *x, float s, size_t n) { be->ops->scale(be, x, s, n); }
void op_zero(Backend *be, float *x, size_t n) { be->ops->zero(be, x, n); }
void op_adamw_update(Backend *be, float *params, const float *grads, float *m, float *v, size_t n, float lr,
                     float beta1, float beta2, float eps, float weight_decay, float grad_scale, int t) {
    be->ops->adamw_update(be, params, grads, m, v, n, lr, beta1, beta2, eps, weight_decay, grad_scale, t);
}

void *backend_alloc(Backend *be, size_t bytes, const char *what) { return be->mem->alloc(be, bytes, what); }
void backend_free(Backend *be, void *p) {
    if (p) be->mem->free(be, p);
}
void backend_to_device(Backend *be, void *dst, const void *src, size_t bytes) { be->mem->to_device(be, dst, src, bytes); }
void backend_to_host(Backend *be, void *dst, const void *src, size_t bytes) { be->mem->to_host(be, dst, src, bytes); }
void backend_sync(Backend *be) { be->mem->sync(be); }
void *backend_staging_alloc(Backend *be, size_t bytes, const char *what) { return be->mem->host_alloc(be, bytes, what); }
void backend_staging_free(Backend *be, void *p) {
    if (p) be->mem->host_free(be, p);
}
