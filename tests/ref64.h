/*
 * ref64.h: plain float64 reference implementations of every op in kernels/ops.h, forward and backward, written for
 * obviousness, not speed. The per-op tests compare both CPU backends against these, and check these against
 * finite differences of their own forward. Same shapes and gradient contract as ops.h (accumulate/write).
 */
#ifndef GPTRAIN_REF64_H
#define GPTRAIN_REF64_H

#include <stddef.h>
#include <stdint.h>

void ref_encoder_forward(double *out, const int32_t *tok, const double *wte, const double *wpe, int B, int T, int C);
void ref_encoder_backward(double *dwte, double *dwpe, const double *dout, const int32_t *tok, int B, int T, int C);
void ref_layernorm_forward(double *out, double *mean, double *rstd, const double *inp, const double *w,
                           const double *b, int N, int C);
void ref_layernorm_backward(double *dinp, double *dw, double *db, const double *dout, const double *inp,
                            const double *w, int N, int C);
void ref_matmul_forward(double *out, const double *inp, const double *w, const double *bias, int N, int K, int M);
void ref_matmul_backward(double *dinp, double *dw, double *dbias, const double *dout, const double *inp,
                         const double *w, int N, int K, int M);
void ref_attention_forward(double *out, double *att, const double *qkv, int B, int T, int C, int NH);
void ref_attention_backward(double *dqkv, const double *dout, const double *qkv, int B, int T, int C, int NH);
void ref_gelu_forward(double *out, const double *inp, size_t N);
void ref_gelu_backward(double *dinp, const double *inp, const double *dout, size_t N);
// losses (N); dlogits (N,Vp) written when non-NULL: scale * (softmax - onehot) over V, 0 for padded columns.
void ref_classifier(double *losses, double *dlogits, const double *logits, const int32_t *targets, int N, int V,
                    int Vp, double scale);
void ref_adamw(double *p, const double *g, double *m, double *v, size_t n, double lr, double b1, double b2,
               double eps, double wd, double grad_scale, int t);

#endif
