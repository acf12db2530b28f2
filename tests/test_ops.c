/*
 * test_ops.c: every op of kernels/ops.h on every CPU backend (cpu: OpenBLAS matmuls; cpu-ref: plain loops) against
 * the float64 references of ref64.c, on fresh random inputs of several shapes, including sizes that are multiples of
 * nothing (T = 7, 13; C = 12, 24; V = 33, 65 padded to 128).
 *   test: fp32 op vs fp64 reference, |a - b| <= rtol (|b| + rms(b)) with rtol = 1e-5 (STYLE.md's fp32 CPU bound);
 *         accumulating outputs are pre-filled with random values (must equal prefill + reference), written outputs
 *         with NaN (must be fully overwritten); NaN never passes.
 *   grad: each reference backward against central finite differences of its own forward (float64, h = 1e-6) of a
 *         random projection sum(w * f(x)), max error <= 1e-6 of the largest gradient.
 *   determinism: the backward ops run twice on the same inputs give bitwise equal outputs.
 * One line per case with the max error and its index; the last line is "N passed, N failed".
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dropout_mask.h"
#include "harness.h"
#include "ops.h"
#include "ref64.h"

#define RTOL 1e-5

static uint64_t rng_state = 88172645463325252ull;
static double urand(void) {  // uniform in [-1, 1)
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 4503599627370496.0 - 1.0;
}

// A float buffer with random values and its exact double copy. Exactly n elements (one for n = 0, so malloc never
// returns NULL for an empty tensor): no slack after the end, so AddressSanitizer (make test-sanitize) catches an op
// that writes or reads one element past its tensor.
typedef struct Buf { float *f; double *d; size_t n; } Buf;
static Buf buf_alloc(size_t n) {
    const size_t m = n ? n : 1;
    Buf b = {malloc(m * sizeof(float)), malloc(m * sizeof(double)), n};
    if (!b.f || !b.d) { fprintf(stderr, "test_ops: out of memory (%zu elements)\n", n); exit(1); }
    return b;
}
static Buf buf_rand(size_t n, double scale) {
    Buf b = buf_alloc(n);
    for (size_t i = 0; i < n; i++) { b.f[i] = (float)(scale * urand()); b.d[i] = b.f[i]; }
    return b;
}
static Buf buf_fill(size_t n, float v) {
    Buf b = buf_alloc(n);
    for (size_t i = 0; i < n; i++) { b.f[i] = v; b.d[i] = v; }
    return b;
}
static void buf_free(Buf *b) { free(b->f); free(b->d); }

static void compare(const char *op, const char *what, const char *tag, const float *a, const double *ref, size_t n) {
    size_t where = 0;
    double worst = harness_compare(a, ref, n, RTOL, &where);
    char name[256];
    snprintf(name, sizeof name, "%s %s [%s]", op, what, tag);
    harness_case(worst <= 1.0, name, "max error %.3g of tolerance at %zu (%.8g vs %.8g)", worst, where,
                 n ? a[where] : 0.0f, n ? ref[where] : 0.0);
}

typedef struct Shape { int B, T, C, NH, F, V, Vp; } Shape;

static void test_backend(Backend *be, const Shape *s) {
    const int B = s->B, T = s->T, C = s->C, NH = s->NH, F = s->F, V = s->V, Vp = s->Vp, N = B * T;
    char tag[96];
    snprintf(tag, sizeof tag, "%s B=%d T=%d C=%d NH=%d F=%d V=%d", be->name, B, T, C, NH, F, V);
    int32_t *tok = malloc(sizeof(int32_t) * N);
    for (int i = 0; i < N; i++) tok[i] = (int32_t)((urand() + 1) * 0.5 * V) % V;
    tok[0] = tok[N - 1];  // a repeated token: the embedding backward must add, not overwrite

    {  // encoder
        Buf wte = buf_rand((size_t)Vp * C, 1), wpe = buf_rand((size_t)T * C, 1), out = buf_fill((size_t)N * C, NAN);
        op_encoder_forward(be, out.f, tok, wte.f, wpe.f, B, T, C);
        ref_encoder_forward(out.d, tok, wte.d, wpe.d, B, T, C);
        compare("encoder_forward", "out", tag, out.f, out.d, out.n);
        Buf dout = buf_rand((size_t)N * C, 1), dwte = buf_rand((size_t)Vp * C, 1), dwpe = buf_rand((size_t)T * C, 1);
        Buf work = buf_fill(ENCODER_WORK_FLOATS(N), NAN);
        op_encoder_backward(be, dwte.f, dwpe.f, work.f, dout.f, tok, B, T, C);
        ref_encoder_backward(dwte.d, dwpe.d, dout.d, tok, B, T, C);
        compare("encoder_backward", "dwte (+=)", tag, dwte.f, dwte.d, dwte.n);
        compare("encoder_backward", "dwpe (+=)", tag, dwpe.f, dwpe.d, dwpe.n);
        buf_free(&wte); buf_free(&wpe); buf_free(&out); buf_free(&dout); buf_free(&dwte); buf_free(&dwpe);
        buf_free(&work);
    }
    {  // layernorm
        Buf x = buf_rand((size_t)N * C, 2), w = buf_rand(C, 1), b = buf_rand(C, 1), out = buf_fill((size_t)N * C, NAN);
        Buf mean = buf_fill(N, NAN), rstd = buf_fill(N, NAN);
        for (int n = 0; n < N; n++) for (int c = 0; c < C; c++) { x.f[(size_t)n * C + c] += 0.1f * (float)n; x.d[(size_t)n * C + c] = x.f[(size_t)n * C + c]; }
        op_layernorm_forward(be, out.f, mean.f, rstd.f, x.f, w.f, b.f, N, C);
        ref_layernorm_forward(out.d, mean.d, rstd.d, x.d, w.d, b.d, N, C);
        compare("layernorm_forward", "out", tag, out.f, out.d, out.n);
        compare("layernorm_forward", "mean", tag, mean.f, mean.d, N);
        compare("layernorm_forward", "rstd", tag, rstd.f, rstd.d, N);
        Buf dout = buf_rand((size_t)N * C, 1), dinp = buf_rand((size_t)N * C, 1), dw = buf_rand(C, 1), db = buf_rand(C, 1);
        op_layernorm_backward(be, dinp.f, dw.f, db.f, dout.f, x.f, w.f, mean.f, rstd.f, N, C);
        ref_layernorm_backward(dinp.d, dw.d, db.d, dout.d, x.d, w.d, N, C);
        compare("layernorm_backward", "dinp (+=)", tag, dinp.f, dinp.d, dinp.n);
        compare("layernorm_backward", "dw (+=)", tag, dw.f, dw.d, C);
        compare("layernorm_backward", "db (+=)", tag, db.f, db.d, C);
        {   // the residual add fused with the LayerNorm: against the references, and bitwise the two ops in turn
            char name[256];
            Buf a = buf_rand((size_t)N * C, 1), r = buf_fill((size_t)N * C, NAN), o = buf_fill((size_t)N * C, NAN);
            Buf m2 = buf_fill(N, NAN), s2 = buf_fill(N, NAN), r1 = buf_fill((size_t)N * C, NAN);
            Buf o1 = buf_fill((size_t)N * C, NAN), m1 = buf_fill(N, NAN), s1 = buf_fill(N, NAN);
            op_residual_layernorm_forward(be, r.f, o.f, m2.f, s2.f, x.f, a.f, w.f, b.f, N, C);
            for (size_t i = 0; i < r.n; i++) r.d[i] = x.d[i] + a.d[i];
            compare("residual_layernorm_forward", "resid", tag, r.f, r.d, r.n);
            for (size_t i = 0; i < r.n; i++) r1.d[i] = r.f[i];   // the norm of the sum as stored
            ref_layernorm_forward(o.d, m2.d, s2.d, r1.d, w.d, b.d, N, C);
            compare("residual_layernorm_forward", "out", tag, o.f, o.d, o.n);
            compare("residual_layernorm_forward", "mean", tag, m2.f, m2.d, N);
            compare("residual_layernorm_forward", "rstd", tag, s2.f, s2.d, N);
            op_residual_forward(be, r1.f, x.f, a.f, r1.n);
            op_layernorm_forward(be, o1.f, m1.f, s1.f, r1.f, w.f, b.f, N, C);
            snprintf(name, sizeof name, "residual_layernorm_forward = residual_forward + layernorm_forward, bitwise [%s]",
                     tag);
            harness_case(!memcmp(r.f, r1.f, r.n * 4) && !memcmp(o.f, o1.f, o.n * 4) && !memcmp(m2.f, m1.f, N * 4) &&
                         !memcmp(s2.f, s1.f, N * 4), name, "resid, out, mean and rstd");
            buf_free(&a); buf_free(&r); buf_free(&o); buf_free(&m2); buf_free(&s2); buf_free(&r1); buf_free(&o1);
            buf_free(&m1); buf_free(&s1);
        }
        buf_free(&x); buf_free(&w); buf_free(&b); buf_free(&out); buf_free(&mean); buf_free(&rstd);
        buf_free(&dout); buf_free(&dinp); buf_free(&dw); buf_free(&db);
    }
    {  // matmul: the shapes of qkv (K=C, M=3C) and fcproj (K=F, M=C), with and without bias
        const int shapes[2][2] = {{C, 3 * C}, {F, C}};
        for (int si = 0; si < 2; si++) {
            const int K = shapes[si][0], M = shapes[si][1];
            for (int with_bias = 0; with_bias < 2; with_bias++) {
                char what[64];
                Buf x = buf_rand((size_t)N * K, 1), w = buf_rand((size_t)M * K, 1), bias = buf_rand(M, 1);
                Buf out = buf_fill((size_t)N * M, NAN);
                op_matmul_forward(be, out.f, x.f, w.f, with_bias ? bias.f : NULL, N, K, M);
                ref_matmul_forward(out.d, x.d, w.d, with_bias ? bias.d : NULL, N, K, M);
                snprintf(what, sizeof what, "out K=%d M=%d%s", K, M, with_bias ? " +bias" : "");
                compare("matmul_forward", what, tag, out.f, out.d, out.n);
                Buf dout = buf_rand((size_t)N * M, 1), dinp = buf_fill((size_t)N * K, NAN);
                Buf dw = buf_rand((size_t)M * K, 1), db = buf_rand(M, 1);
                op_matmul_backward(be, dinp.f, dw.f, with_bias ? db.f : NULL, dout.f, x.f, w.f, N, K, M);
                ref_matmul_backward(dinp.d, dw.d, with_bias ? db.d : NULL, dout.d, x.d, w.d, N, K, M);
                snprintf(what, sizeof what, "dinp (=) K=%d M=%d", K, M);
                compare("matmul_backward", what, tag, dinp.f, dinp.d, dinp.n);
                snprintf(what, sizeof what, "dw (+=) K=%d M=%d", K, M);
                compare("matmul_backward", what, tag, dw.f, dw.d, dw.n);
                if (with_bias) {
                    snprintf(what, sizeof what, "dbias (+=) M=%d", M);
                    compare("matmul_backward", what, tag, db.f, db.d, M);
                }
                buf_free(&x); buf_free(&w); buf_free(&bias); buf_free(&out); buf_free(&dout); buf_free(&dinp);
                buf_free(&dw); buf_free(&db);
            }
        }
        // The down projection's backward with GELU's fused in (fcproj: K=F, M=C): dinp = (dout w) * gelu'(pre),
        // inp = gelu(pre); against the float64 matmul backward then GELU backward.
        const int K = F, M = C;
        Buf pre = buf_rand((size_t)N * K, 3), x = buf_fill((size_t)N * K, 0), w = buf_rand((size_t)M * K, 1);
        ref_gelu_forward(x.d, pre.d, x.n);
        for (size_t i = 0; i < x.n; i++) x.d[i] = x.f[i] = (float)x.d[i];
        Buf dout = buf_rand((size_t)N * M, 1), dinp = buf_fill((size_t)N * K, NAN), dw = buf_rand((size_t)M * K, 1);
        Buf db = buf_rand(M, 1);
        double *dlin = calloc(dinp.n, sizeof(double));
        op_matmul_backward_gelu(be, dinp.f, dw.f, db.f, dout.f, x.f, w.f, pre.f, N, K, M);
        ref_matmul_backward(dlin, dw.d, db.d, dout.d, x.d, w.d, N, K, M);
        ref_gelu_backward(dinp.d, pre.d, dlin, dinp.n);
        compare("matmul_backward_gelu", "dinp (=) = (dout w) gelu'(pre)", tag, dinp.f, dinp.d, dinp.n);
        compare("matmul_backward_gelu", "dw (+=)", tag, dw.f, dw.d, dw.n);
        compare("matmul_backward_gelu", "dbias (+=)", tag, db.f, db.d, M);
        free(dlin);
        buf_free(&pre); buf_free(&x); buf_free(&w); buf_free(&dout); buf_free(&dinp); buf_free(&dw); buf_free(&db);
    }
    {  // attention
        Buf qkv = buf_rand((size_t)N * 3 * C, 1.5), out = buf_fill((size_t)N * C, NAN);
        Buf att = buf_fill((size_t)B * NH * T * T, NAN);
        op_attention_forward(be, out.f, att.f, NULL, qkv.f, B, T, C, NH, 0.0f, 0);
        ref_attention_forward(out.d, att.d, qkv.d, B, T, C, NH);
        compare("attention_forward", "out", tag, out.f, out.d, out.n);
        // Only the causal lower triangle of att is part of the contract.
        float *al = malloc(sizeof(float) * att.n);
        double *ald = malloc(sizeof(double) * att.n);
        size_t m = 0;
        for (int bh = 0; bh < B * NH; bh++)
            for (int t = 0; t < T; t++)
                for (int t2 = 0; t2 <= t; t2++) {
                    size_t i = ((size_t)bh * T + t) * T + t2;
                    al[m] = att.f[i];
                    ald[m++] = att.d[i];
                }
        compare("attention_forward", "att (causal triangle)", tag, al, ald, m);
        free(al); free(ald);
        Buf dout = buf_rand((size_t)N * C, 1), dqkv = buf_fill((size_t)N * 3 * C, NAN);
        Buf scratch = buf_fill((size_t)B * NH * T * T, NAN);
        op_attention_backward(be, dqkv.f, scratch.f, dout.f, qkv.f, att.f, B, T, C, NH, 0.0f, 0);
        ref_attention_backward(dqkv.d, dout.d, qkv.d, B, T, C, NH);
        compare("attention_backward", "dqkv (=)", tag, dqkv.f, dqkv.d, dqkv.n);
        float *again = malloc(sizeof(float) * dqkv.n);
        memcpy(again, dqkv.f, sizeof(float) * dqkv.n);
        op_attention_backward(be, dqkv.f, scratch.f, dout.f, qkv.f, att.f, B, T, C, NH, 0.0f, 0);
        char name[320];
        snprintf(name, sizeof name, "attention_backward deterministic [%s]", tag);
        harness_case(!memcmp(again, dqkv.f, sizeof(float) * dqkv.n), name, "two runs bitwise equal");
        // Dropout on the probabilities: out = sum_t2 P M / (1 - p) v against the float64 P with the same mask; att
        // still P; the backward against the float64 chain rule through the mask: dv += P M' dy, dP = M' dy.v,
        // dS = P (dP - sum P dP), dq += scale dS k, dk += scale dS q (M' = M / (1 - p)).
        const float pd = 0.3f;
        const uint64_t key = dropout_key(1, 2, 0, 1, 1);
        Buf dout2 = buf_fill((size_t)N * C, NAN), att2 = buf_fill((size_t)B * NH * T * T, NAN);
        op_attention_forward(be, dout2.f, att2.f, NULL, qkv.f, B, T, C, NH, pd, key);
        const int HS = C / NH;
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++)
                for (int t = 0; t < T; t++)
                    for (int i = 0; i < HS; i++) {
                        double y = 0;
                        for (int t2 = 0; t2 <= t; t2++) {
                            const size_t k = (((size_t)b * NH + h) * T + t) * T + t2;
                            if (dropout_keep(key, k, dropout_threshold(pd)))
                                y += att.d[k] / (1.0 - pd) * qkv.d[((size_t)b * T + t2) * 3 * C + 2 * C + h * HS + i];
                        }
                        dout2.d[((size_t)b * T + t) * C + h * HS + i] = y;
                    }
        compare("attention_forward, dropout 0.3 on the probabilities", "out", tag, dout2.f, dout2.d, dout2.n);
        size_t same = 0;
        for (int bh = 0; bh < B * NH; bh++)
            for (int t = 0; t < T; t++)
                for (int t2 = 0; t2 <= t; t2++) same += att2.f[((size_t)bh * T + t) * T + t2] == att.f[((size_t)bh * T + t) * T + t2];
        snprintf(name, sizeof name, "attention_forward with dropout keeps the undropped probabilities [%s]", tag);
        harness_case(same == (size_t)B * NH * T * (T + 1) / 2, name, "%zu of %zu equal", same, (size_t)B * NH * T * (T + 1) / 2);
        {
            Buf dq2 = buf_fill(dqkv.n, NAN);
            op_attention_backward(be, dq2.f, scratch.f, dout.f, qkv.f, att2.f, B, T, C, NH, pd, key);
            memset(dq2.d, 0, sizeof(double) * dq2.n);
            const double sc = 1.0 / sqrt((double)HS);
            const size_t C3 = 3 * (size_t)C;
            double *dp = malloc(sizeof(double) * T);
            for (int b = 0; b < B; b++)
                for (int h = 0; h < NH; h++)
                    for (int t = 0; t < T; t++) {
                        const double *dy = dout.d + ((size_t)b * T + t) * C + h * HS;
                        const double *q = qkv.d + ((size_t)b * T + t) * C3 + h * HS;
                        double dot = 0;
                        for (int t2 = 0; t2 <= t; t2++) {
                            const size_t k = (((size_t)b * NH + h) * T + t) * T + t2;
                            const double m = dropout_keep(key, k, dropout_threshold(pd)) ? 1.0 / (1.0 - pd) : 0.0;
                            const double *v = qkv.d + ((size_t)b * T + t2) * C3 + 2 * C + h * HS;
                            double *dv = dq2.d + ((size_t)b * T + t2) * C3 + 2 * C + h * HS;
                            double s = 0;
                            for (int i = 0; i < HS; i++) {
                                s += dy[i] * v[i];
                                dv[i] += att.d[k] * m * dy[i];
                            }
                            dp[t2] = m * s;
                            dot += att.d[k] * dp[t2];
                        }
                        for (int t2 = 0; t2 <= t; t2++) {
                            const size_t k = (((size_t)b * NH + h) * T + t) * T + t2;
                            const double ds = att.d[k] * (dp[t2] - dot) * sc;
                            const double *kk = qkv.d + ((size_t)b * T + t2) * C3 + C + h * HS;
                            double *dq = dq2.d + ((size_t)b * T + t) * C3 + h * HS;
                            double *dk = dq2.d + ((size_t)b * T + t2) * C3 + C + h * HS;
                            for (int i = 0; i < HS; i++) {
                                dq[i] += ds * kk[i];
                                dk[i] += ds * q[i];
                            }
                        }
                    }
            free(dp);
            compare("attention_backward, dropout 0.3 on the probabilities", "dqkv (=)", tag, dq2.f, dq2.d, dq2.n);
            buf_free(&dq2);
        }
        buf_free(&dout2); buf_free(&att2);
        free(again);
        buf_free(&qkv); buf_free(&out); buf_free(&att); buf_free(&dout); buf_free(&dqkv); buf_free(&scratch);
    }
    {  // gelu and residual
        const size_t n = (size_t)N * F;
        Buf x = buf_rand(n, 4), out = buf_fill(n, NAN), dout = buf_rand(n, 1), dinp = buf_fill(n, NAN);
        op_gelu_forward(be, out.f, x.f, n);
        ref_gelu_forward(out.d, x.d, n);
        compare("gelu_forward", "out", tag, out.f, out.d, n);
        op_gelu_backward(be, dinp.f, x.f, dout.f, n);
        ref_gelu_backward(dinp.d, x.d, dout.d, n);
        compare("gelu_backward", "dinp (=)", tag, dinp.f, dinp.d, n);
        Buf a = buf_rand(n, 1), r = buf_fill(n, NAN);
        op_residual_forward(be, r.f, a.f, x.f, n);
        for (size_t i = 0; i < n; i++) r.d[i] = a.d[i] + x.d[i];
        compare("residual_forward", "out", tag, r.f, r.d, n);
        // dropout: the reference keeps what kernels/dropout_mask.h keeps, scaled by 1/(1-p) in double
        const float p = 0.25f;
        const uint64_t key = dropout_key(3, 5, 1, 2, 3);
        Buf dr = buf_fill(n, NAN);
        op_dropout(be, dr.f, x.f, n, p, key);
        for (size_t i = 0; i < n; i++) dr.d[i] = dropout_keep(key, i, dropout_threshold(p)) ? x.d[i] / (1.0 - p) : 0.0;
        compare("dropout", "out", tag, dr.f, dr.d, n);
        buf_free(&dr);
        buf_free(&x); buf_free(&out); buf_free(&dout); buf_free(&dinp); buf_free(&a); buf_free(&r);
    }
    {   // dropout's statistics on 2^20 ones: the kept fraction within 5 standard errors of 1 - p (overall and in each
        // eighth: no structure along the index), kept values exactly 1/(1-p) in fp32, another key an independent mask
        // (both kept (1-p)^2 of the time); p = 0 a copy; in place = out of place
        const size_t n = (size_t)1 << 20;
        const float p = 0.2f;
        float *one = malloc(n * sizeof(float)), *o1 = malloc(n * sizeof(float)), *o2 = malloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++) one[i] = 1.0f;
        op_dropout(be, o1, one, n, p, 11);
        op_dropout(be, o2, one, n, p, 12);
        size_t kept = 0, both = 0, bad_value = 0, part[8] = {0};
        for (size_t i = 0; i < n; i++) {
            kept += o1[i] != 0;
            part[i * 8 / n] += o1[i] != 0;
            both += o1[i] != 0 && o2[i] != 0;
            bad_value += o1[i] != 0 && o1[i] != 1.0f / (1.0f - p);
        }
        const double q = 1.0 - p, se = sqrt(p * q / n), se8 = sqrt(p * q / (n / 8)), sb = sqrt(q * q * (1 - q * q) / n);
        double worst8 = 0;
        for (int k = 0; k < 8; k++) worst8 = fmax(worst8, fabs(part[k] / (double)(n / 8) - q) / se8);
        const double z = fabs(kept / (double)n - q) / se, zb = fabs(both / (double)n - q * q) / sb;
        char name[320];
        snprintf(name, sizeof name, "dropout 0.2: keep fraction, its uniformity, scale and independence of keys [%s]", tag);
        harness_case(z < 5 && worst8 < 5 && zb < 5 && bad_value == 0, name,
                     "kept %.5f (z %.2f), worst eighth z %.2f, both keys %.5f (z %.2f), %zu wrong values",
                     kept / (double)n, z, worst8, both / (double)n, zb, bad_value);
        memcpy(o2, one, n * sizeof(float));
        op_dropout(be, o2, o2, n, p, 11);
        op_dropout(be, one, one, n, 0.0f, 11);
        size_t diff = 0, ones = 0;
        for (size_t i = 0; i < n; i++) {
            diff += o2[i] != o1[i];
            ones += one[i] != 1.0f;
        }
        snprintf(name, sizeof name, "dropout: in place = out of place; p = 0 leaves the values [%s]", tag);
        harness_case(diff == 0 && ones == 0, name, "%zu differ in place, %zu changed at p = 0", diff, ones);
        free(one); free(o1); free(o2);
    }
    {  // fused classifier, with the gradient in place and without
        Buf logits = buf_rand((size_t)N * Vp, 4), losses = buf_fill(N, NAN);
        for (int n = 0; n < N; n++) for (int v = V; v < Vp; v++) logits.f[(size_t)n * Vp + v] = logits.d[(size_t)n * Vp + v] = 1e4;  // padding must not leak
        float *keep = malloc(sizeof(float) * logits.n);
        memcpy(keep, logits.f, sizeof(float) * logits.n);
        double *dl = malloc(sizeof(double) * logits.n);
        const double scale = 1.0 / N;
        op_classifier_forward_backward(be, losses.f, logits.f, tok, N, V, Vp, 0.0f);
        ref_classifier(losses.d, dl, logits.d, tok, N, V, Vp, scale);
        compare("classifier", "losses", tag, losses.f, losses.d, N);
        char name[160];
        snprintf(name, sizeof name, "classifier scale 0 leaves logits [%s]", tag);
        harness_case(!memcmp(keep, logits.f, sizeof(float) * logits.n), name, "unchanged");
        op_classifier_forward_backward(be, losses.f, logits.f, tok, N, V, Vp, (float)scale);
        compare("classifier", "dlogits in place (padded columns 0)", tag, logits.f, dl, logits.n);
        double acc = 0.25, ref = 0;   // the running loss sum: += the mean, summed in index order
        for (int n = 0; n < N; n++) ref += losses.f[n];
        op_loss_accumulate(be, &acc, losses.f, N);
        snprintf(name, sizeof name, "loss_accumulate [%s]", tag);
        harness_case(acc == 0.25 + (float)(ref / N), name, "%.17g vs %.17g", acc, 0.25 + (float)(ref / N));
        free(keep); free(dl);
        buf_free(&logits); buf_free(&losses);
    }
    {  // optimizer pieces: sum of squares, scale, zero, AdamW over 3 steps
        const size_t n = (size_t)N * C + 7;
        Buf x = buf_rand(n, 1);
        double ss = 0;
        for (size_t i = 0; i < n; i++) ss += x.d[i] * x.d[i];
        double got = op_sum_squares(be, x.f, n);
        char name[160];
        snprintf(name, sizeof name, "sum_squares [%s]", tag);
        harness_case(fabs(got - ss) <= 1e-12 * ss, name, "%.15g vs %.15g", got, ss);
        op_scale(be, x.f, 0.5f, n);
        for (size_t i = 0; i < n; i++) x.d[i] *= 0.5;
        compare("scale", "x", tag, x.f, x.d, n);
        x.f[3] = NAN;
        op_zero(be, x.f, n * sizeof(float));
        for (size_t i = 0; i < n; i++) x.d[i] = 0;
        compare("zero", "x (a NaN included)", tag, x.f, x.d, n);
        // AdamW over [lo, hi) of two tensors (the first decayed, the second not), 3 steps: no norm (scale 0.7), a
        // norm above the clip (scale clip / norm), a norm below it (scale 1); then a NaN norm changes nothing.
        const size_t n1 = n / 3, lo = 5, hi = n - 3;
        const AdamWTensors tens = {2, {n1, n}, 1u, 0, 0};
        Buf p = buf_rand(n, 1), m = buf_fill(n, 0), v = buf_fill(n, 0);
        float norm[1];
        const float norms[3] = {0, 7.5f, 0.25f};
        for (int t = 1; t <= 3; t++) {
            Buf g = buf_rand(n, 1);
            norm[0] = norms[t - 1];
            const AdamWHyper h = {1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, t == 1 ? 0.7f : 1.0f, 0.3, t, 0};
            op_adamw_step(be, p.f, NULL, g.f, m.f, v.f, lo, hi, &tens, &h, t == 1 ? NULL : norm, NULL);
            const double s = t == 1 ? 0.7 : t == 2 ? (double)(float)(0.3 / 7.5f) : 1.0;
            ref_adamw(p.d + lo, g.d + lo, m.d + lo, v.d + lo, n1 - lo, (double)1e-2f, (double)0.9f, (double)0.95f,
                      (double)1e-8f, (double)0.1f, s, t);
            ref_adamw(p.d + n1, g.d + n1, m.d + n1, v.d + n1, hi - n1, (double)1e-2f, (double)0.9f, (double)0.95f,
                      (double)1e-8f, 0.0, s, t);
            buf_free(&g);
        }
        compare("adamw_step", "params after 3 steps (range, per-tensor decay, clip)", tag, p.f, p.d, n);
        compare("adamw_step", "m", tag, m.f, m.d, n);
        compare("adamw_step", "v", tag, v.f, v.d, n);
        {
            float *keep = malloc(3 * n * sizeof(float));
            memcpy(keep, p.f, n * sizeof(float));
            memcpy(keep + n, m.f, n * sizeof(float));
            memcpy(keep + 2 * n, v.f, n * sizeof(float));
            Buf g = buf_rand(n, 1);
            norm[0] = NAN;
            const AdamWHyper h = {1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 0.3, 4, 0};
            op_adamw_step(be, p.f, NULL, g.f, m.f, v.f, 0, n, &tens, &h, norm, NULL);
            harness_case(!memcmp(keep, p.f, n * sizeof(float)) && !memcmp(keep + n, m.f, n * sizeof(float)) &&
                             !memcmp(keep + 2 * n, v.f, n * sizeof(float)),
                         "adamw_step: a NaN norm changes nothing", "[%s]", tag);
            norm[0] = 1.0f;
            const double inf_loss = INFINITY;
            op_adamw_step(be, p.f, NULL, g.f, m.f, v.f, 0, n, &tens, &h, norm, &inf_loss);
            harness_case(!memcmp(keep, p.f, n * sizeof(float)) && !memcmp(keep + n, m.f, n * sizeof(float)),
                         "adamw_step: an infinite loss changes nothing", "[%s]", tag);
            op_global_norm(be, norm, g.f, n);
            double gs = 0;
            for (size_t i = 0; i < n; i++) gs += g.d[i] * g.d[i];
            harness_case(norm[0] == (float)sqrt(op_sum_squares(be, g.f, n)) && fabs(norm[0] - sqrt(gs)) <= 1e-6 * sqrt(gs),
                         "global_norm", "%.9g vs %.9g [%s]", norm[0], sqrt(gs), tag);
            free(keep);
            buf_free(&g);
        }
        buf_free(&x); buf_free(&p); buf_free(&m); buf_free(&v);
    }
    free(tok);
}

// ---- finite differences of the float64 references ----
// fd_check: f maps x (n) to y (m); analytic holds dL/dx for L = sum(w * y). Central differences at every x_i.
typedef void (*FwdFn)(const double *x, double *y, void *ctx);
static void fd_check(const char *name, FwdFn f, void *ctx, double *x, size_t n, size_t m, const double *w,
                     const double *analytic) {
    double *y = malloc(sizeof(double) * m), worst = 0, scale = 0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(analytic[i]));
    for (size_t i = 0; i < n; i++) {
        const double h = 1e-6, x0 = x[i];
        double lp = 0, lm = 0;
        x[i] = x0 + h; f(x, y, ctx); for (size_t j = 0; j < m; j++) lp += w[j] * y[j];
        x[i] = x0 - h; f(x, y, ctx); for (size_t j = 0; j < m; j++) lm += w[j] * y[j];
        x[i] = x0;
        double err = fabs((lp - lm) / (2 * h) - analytic[i]);
        if (err > worst) { worst = err; wi = i; }
    }
    harness_case(worst <= 1e-6 * scale && scale > 0, name, "max |fd - analytic| %.3g (<= 1e-6 x %.3g) at %zu", worst,
                 scale, wi);
    free(y);
}

// Flash attention (no T x T buffer) against the same fp64 references; lse against log sum exp of the fp64 scores.
static void test_flash(Backend *be, int B, int T, int C, int NH) {
    const int N = B * T, HS = C / NH;
    char tag[96];
    snprintf(tag, sizeof tag, "%s B=%d T=%d C=%d NH=%d", be->name, B, T, C, NH);
    Buf qkv = buf_rand((size_t)N * 3 * C, 1.5), out = buf_fill((size_t)N * C, NAN);
    Buf lse = buf_fill((size_t)B * NH * T, NAN), work = buf_fill(FLASH_WORK_FLOATS(B, T, C, NH, 4), NAN);
    op_flash_attention_forward(be, out.f, lse.f, work.f, qkv.f, B, T, C, NH);
    ref_attention_forward(out.d, NULL, qkv.d, B, T, C, NH);
    compare("flash_attention_forward", "out", tag, out.f, out.d, out.n);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                double m = -INFINITY, sum = 0, sc[512];
                for (int t2 = 0; t2 <= t; t2++) {
                    double d = 0;
                    for (int i = 0; i < HS; i++)
                        d += qkv.d[((size_t)b * T + t) * 3 * C + h * HS + i] *
                             qkv.d[((size_t)b * T + t2) * 3 * C + C + h * HS + i];
                    sc[t2] = d / sqrt((double)HS);
                    if (sc[t2] > m) m = sc[t2];
                }
                for (int t2 = 0; t2 <= t; t2++) sum += exp(sc[t2] - m);
                lse.d[((size_t)b * NH + h) * T + t] = m + log(sum);
            }
    compare("flash_attention_forward", "lse", tag, lse.f, lse.d, lse.n);
    Buf dout = buf_rand((size_t)N * C, 1), dqkv = buf_fill((size_t)N * 3 * C, NAN);
    op_flash_attention_backward(be, dqkv.f, work.f, dout.f, qkv.f, out.f, lse.f, B, T, C, NH);
    ref_attention_backward(dqkv.d, dout.d, qkv.d, B, T, C, NH);
    compare("flash_attention_backward", "dqkv (=)", tag, dqkv.f, dqkv.d, dqkv.n);
    float *again = malloc(sizeof(float) * dqkv.n);
    memcpy(again, dqkv.f, sizeof(float) * dqkv.n);
    op_flash_attention_backward(be, dqkv.f, work.f, dout.f, qkv.f, out.f, lse.f, B, T, C, NH);
    char name[160];
    snprintf(name, sizeof name, "flash_attention_backward deterministic [%s]", tag);
    harness_case(!memcmp(again, dqkv.f, sizeof(float) * dqkv.n), name, "two runs bitwise equal");
    free(again);
    buf_free(&qkv); buf_free(&out); buf_free(&lse); buf_free(&work); buf_free(&dout); buf_free(&dqkv);
}

typedef struct FdCtx { int B, T, C, NH, N, K, M, V, Vp; const int32_t *tok; double *a, *b, *c; } FdCtx;
static void f_enc_wte(const double *x, double *y, void *c) { FdCtx *k = c; ref_encoder_forward(y, k->tok, x, k->a, k->B, k->T, k->C); }
static void f_ln_x(const double *x, double *y, void *c) { FdCtx *k = c; ref_layernorm_forward(y, NULL, NULL, x, k->a, k->b, k->N, k->C); }
static void f_ln_w(const double *x, double *y, void *c) { FdCtx *k = c; ref_layernorm_forward(y, NULL, NULL, k->c, x, k->b, k->N, k->C); }
static void f_ln_b(const double *x, double *y, void *c) { FdCtx *k = c; ref_layernorm_forward(y, NULL, NULL, k->c, k->a, x, k->N, k->C); }
static void f_mm_x(const double *x, double *y, void *c) { FdCtx *k = c; ref_matmul_forward(y, x, k->a, k->b, k->N, k->K, k->M); }
static void f_mm_w(const double *x, double *y, void *c) { FdCtx *k = c; ref_matmul_forward(y, k->c, x, k->b, k->N, k->K, k->M); }
static void f_mm_b(const double *x, double *y, void *c) { FdCtx *k = c; ref_matmul_forward(y, k->c, k->a, x, k->N, k->K, k->M); }
static void f_att(const double *x, double *y, void *c) { FdCtx *k = c; ref_attention_forward(y, NULL, x, k->B, k->T, k->C, k->NH); }
static void f_gelu(const double *x, double *y, void *c) { FdCtx *k = c; ref_gelu_forward(y, x, (size_t)k->N); }
static void f_xent(const double *x, double *y, void *c) {  // mean loss as a 1-vector
    FdCtx *k = c;
    double *l = malloc(sizeof(double) * k->N);
    ref_classifier(l, NULL, x, k->tok, k->N, k->V, k->Vp, 0);
    y[0] = 0;
    for (int i = 0; i < k->N; i++) y[0] += l[i] / k->N;
    free(l);
}

static double *drand(size_t n, double s) { double *x = malloc(sizeof(double) * n); for (size_t i = 0; i < n; i++) x[i] = s * urand(); return x; }
static double *dzero(size_t n) { return calloc(n, sizeof(double)); }

static void test_finite_differences(void) {
    const int B = 2, T = 5, C = 6, NH = 2, N = B * T, V = 7, Vp = 128;
    int32_t tok[10] = {1, 3, 3, 0, 6, 2, 5, 1, 4, 3};
    FdCtx k = {.B = B, .T = T, .C = C, .NH = NH, .N = N, .tok = tok, .V = V, .Vp = Vp};
    {
        double *wte = drand((size_t)V * C, 1), *wpe = drand((size_t)T * C, 1), *w = drand((size_t)N * C, 1);
        double *dwte = dzero((size_t)V * C), *dwpe = dzero((size_t)T * C);
        k.a = wpe;
        ref_encoder_backward(dwte, dwpe, w, tok, B, T, C);
        fd_check("grad: encoder dwte (fp64 reference vs finite differences)", f_enc_wte, &k, wte, (size_t)V * C, (size_t)N * C, w, dwte);
        free(wte); free(wpe); free(w); free(dwte); free(dwpe);
    }
    {
        double *x = drand((size_t)N * C, 2), *lw = drand(C, 1), *lb = drand(C, 1), *w = drand((size_t)N * C, 1);
        double *dx = dzero((size_t)N * C), *dw = dzero(C), *db = dzero(C);
        ref_layernorm_backward(dx, dw, db, w, x, lw, N, C);
        k.a = lw; k.b = lb; k.c = x;
        fd_check("grad: layernorm dinp", f_ln_x, &k, x, (size_t)N * C, (size_t)N * C, w, dx);
        fd_check("grad: layernorm dweight", f_ln_w, &k, lw, C, (size_t)N * C, w, dw);
        fd_check("grad: layernorm dbias", f_ln_b, &k, lb, C, (size_t)N * C, w, db);
        free(x); free(lw); free(lb); free(w); free(dx); free(dw); free(db);
    }
    {
        const int K = 5, M = 7;
        k.K = K; k.M = M;
        double *x = drand((size_t)N * K, 1), *mw = drand((size_t)M * K, 1), *mb = drand(M, 1), *w = drand((size_t)N * M, 1);
        double *dx = dzero((size_t)N * K), *dw = dzero((size_t)M * K), *db = dzero(M);
        ref_matmul_backward(dx, dw, db, w, x, mw, N, K, M);
        k.a = mw; k.b = mb; k.c = x;
        fd_check("grad: matmul dinp", f_mm_x, &k, x, (size_t)N * K, (size_t)N * M, w, dx);
        fd_check("grad: matmul dweight", f_mm_w, &k, mw, (size_t)M * K, (size_t)N * M, w, dw);
        fd_check("grad: matmul dbias", f_mm_b, &k, mb, M, (size_t)N * M, w, db);
        free(x); free(mw); free(mb); free(w); free(dx); free(dw); free(db);
    }
    {
        double *qkv = drand((size_t)N * 3 * C, 1.5), *w = drand((size_t)N * C, 1), *dqkv = dzero((size_t)N * 3 * C);
        ref_attention_backward(dqkv, w, qkv, B, T, C, NH);
        fd_check("grad: attention dqkv", f_att, &k, qkv, (size_t)N * 3 * C, (size_t)N * C, w, dqkv);
        free(qkv); free(w); free(dqkv);
    }
    {
        double *x = drand(N, 4), *w = drand(N, 1), *dx = dzero(N);
        ref_gelu_backward(dx, x, w, N);
        fd_check("grad: gelu", f_gelu, &k, x, N, N, w, dx);
        free(x); free(w); free(dx);
    }
    {
        double *l = drand((size_t)N * Vp, 3), *dl = dzero((size_t)N * Vp), *loss = dzero(N), one = 1.0;
        ref_classifier(loss, dl, l, tok, N, V, Vp, 1.0 / N);
        fd_check("grad: classifier dlogits (mean cross-entropy)", f_xent, &k, l, (size_t)N * Vp, 1, &one, dl);
        free(l); free(dl); free(loss);
    }
}

int main(void) {
    test_finite_differences();
    const Shape shapes[] = {
        {1, 1, 8, 1, 32, 5, 128},
        {2, 7, 12, 3, 48, 33, 128},
        {3, 13, 24, 2, 96, 65, 128},
        {4, 64, 128, 4, 512, 65, 128},
    };
    const BackendKind kinds[] = {BACKEND_CPU, BACKEND_CPU_REF};
    for (int k = 0; k < 2; k++) {
        Backend be;
        if (backend_init(&be, kinds[k], 0)) {
            harness_case(0, "backend_init", "kind %d is not built in (OpenBLAS missing?)", kinds[k]);
            continue;
        }
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            test_backend(&be, &shapes[s]);
            test_flash(&be, shapes[s].B, shapes[s].T, shapes[s].C, shapes[s].NH);
        }
        test_flash(&be, 2, 150, 32, 2);   // three key blocks of the CPU kernel, the last one partial
    }
    return harness_finish();
}
