/*
 * ref64.c: float64 references for the ops (see ref64.h). Loops straight from the definitions; the attention
 * backward recomputes the probabilities itself so it depends on nothing the kernel under test produced.
 */
#include "ref64.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ref_encoder_forward(double *out, const int32_t *tok, const double *wte, const double *wpe, int B, int T, int C) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++)
                out[((size_t)b * T + t) * C + c] = wte[(size_t)tok[b * T + t] * C + c] + wpe[(size_t)t * C + c];
}

void ref_encoder_backward(double *dwte, double *dwpe, const double *dout, const int32_t *tok, int B, int T, int C) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) {
                double d = dout[((size_t)b * T + t) * C + c];
                dwte[(size_t)tok[b * T + t] * C + c] += d;
                dwpe[(size_t)t * C + c] += d;
            }
}

void ref_layernorm_forward(double *out, double *mean, double *rstd, const double *inp, const double *w,
                           const double *b, int N, int C) {
    for (int n = 0; n < N; n++) {
        const double *x = inp + (size_t)n * C;
        double m = 0, v = 0;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        v /= C;
        double s = 1.0 / sqrt(v + 1e-5);
        for (int c = 0; c < C; c++) out[(size_t)n * C + c] = (x[c] - m) * s * w[c] + b[c];
        if (mean) mean[n] = m;
        if (rstd) rstd[n] = s;
    }
}

void ref_layernorm_backward(double *dinp, double *dw, double *db, const double *dout, const double *inp,
                            const double *w, int N, int C) {
    for (int n = 0; n < N; n++) {
        const double *x = inp + (size_t)n * C, *d = dout + (size_t)n * C;
        double m = 0, v = 0;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        v /= C;
        double s = 1.0 / sqrt(v + 1e-5), a = 0, bsum = 0;
        for (int c = 0; c < C; c++) {
            double xh = (x[c] - m) * s;
            a += d[c] * w[c];
            bsum += d[c] * w[c] * xh;
            dw[c] += d[c] * xh;
            db[c] += d[c];
        }
        for (int c = 0; c < C; c++) {
            double xh = (x[c] - m) * s;
            dinp[(size_t)n * C + c] += s * (d[c] * w[c] - a / C - xh * bsum / C);
        }
    }
}

void ref_matmul_forward(double *out, const double *inp, const double *w, const double *bias, int N, int K, int M) {
    for (int n = 0; n < N; n++)
        for (int m = 0; m < M; m++) {
            double s = bias ? bias[m] : 0;
            for (int k = 0; k < K; k++) s += inp[(size_t)n * K + k] * w[(size_t)m * K + k];
            out[(size_t)n * M + m] = s;
        }
}

void ref_matmul_backward(double *dinp, double *dw, double *dbias, const double *dout, const double *inp,
                         const double *w, int N, int K, int M) {
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            double s = 0;
            for (int m = 0; m < M; m++) s += dout[(size_t)n * M + m] * w[(size_t)m * K + k];
            if (dinp) dinp[(size_t)n * K + k] = s;
        }
    for (int m = 0; m < M; m++) {
        for (int k = 0; k < K; k++) {
            double s = 0;
            for (int n = 0; n < N; n++) s += dout[(size_t)n * M + m] * inp[(size_t)n * K + k];
            dw[(size_t)m * K + k] += s;
        }
        if (dbias) {
            double s = 0;
            for (int n = 0; n < N; n++) s += dout[(size_t)n * M + m];
            dbias[m] += s;
        }
    }
}

// Probabilities of row (b, h, t) into p (T): scores for t2 <= t, softmax, 0 above the diagonal.
static void attention_probs(double *p, const double *qkv, int b, int h, int t, int T, int C, int NH) {
    const int HS = C / NH;
    const double *q = qkv + ((size_t)b * T + t) * 3 * C + h * HS;
    double mx = -INFINITY, sum = 0;
    for (int t2 = 0; t2 < T; t2++) {
        if (t2 > t) { p[t2] = 0; continue; }
        const double *k = qkv + ((size_t)b * T + t2) * 3 * C + C + h * HS;
        double s = 0;
        for (int i = 0; i < HS; i++) s += q[i] * k[i];
        p[t2] = s / sqrt((double)HS);
        if (p[t2] > mx) mx = p[t2];
    }
    for (int t2 = 0; t2 <= t; t2++) sum += (p[t2] = exp(p[t2] - mx));
    for (int t2 = 0; t2 <= t; t2++) p[t2] /= sum;
}

void ref_attention_forward(double *out, double *att, const double *qkv, int B, int T, int C, int NH) {
    const int HS = C / NH;
    double *p = malloc(sizeof(double) * T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                attention_probs(p, qkv, b, h, t, T, C, NH);
                if (att) memcpy(att + (((size_t)b * NH + h) * T + t) * T, p, sizeof(double) * T);
                for (int i = 0; i < HS; i++) {
                    double s = 0;
                    for (int t2 = 0; t2 <= t; t2++) s += p[t2] * qkv[((size_t)b * T + t2) * 3 * C + 2 * C + h * HS + i];
                    out[((size_t)b * T + t) * C + h * HS + i] = s;
                }
            }
    free(p);
}

void ref_attention_backward(double *dqkv, const double *dout, const double *qkv, int B, int T, int C, int NH) {
    const int HS = C / NH;
    const double scale = 1.0 / sqrt((double)HS);
    double *p = malloc(sizeof(double) * T), *dp = malloc(sizeof(double) * T);
    memset(dqkv, 0, sizeof(double) * (size_t)B * T * 3 * C);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                attention_probs(p, qkv, b, h, t, T, C, NH);
                const double *dy = dout + ((size_t)b * T + t) * C + h * HS;
                double dot = 0;
                for (int t2 = 0; t2 <= t; t2++) {
                    const double *v = qkv + ((size_t)b * T + t2) * 3 * C + 2 * C + h * HS;
                    double *dv = dqkv + ((size_t)b * T + t2) * 3 * C + 2 * C + h * HS;
                    dp[t2] = 0;
                    for (int i = 0; i < HS; i++) {
                        dp[t2] += dy[i] * v[i];
                        dv[i] += p[t2] * dy[i];
                    }
                    dot += p[t2] * dp[t2];
                }
                const double *q = qkv + ((size_t)b * T + t) * 3 * C + h * HS;
                double *dq = dqkv + ((size_t)b * T + t) * 3 * C + h * HS;
                for (int t2 = 0; t2 <= t; t2++) {
                    double ds = p[t2] * (dp[t2] - dot) * scale;
                    const double *k = qkv + ((size_t)b * T + t2) * 3 * C + C + h * HS;
                    double *dk = dqkv + ((size_t)b * T + t2) * 3 * C + C + h * HS;
                    for (int i = 0; i < HS; i++) {
                        dq[i] += ds * k[i];
                        dk[i] += ds * q[i];
                    }
                }
            }
    free(p);
    free(dp);
}

static double gelu(double x) { return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }

void ref_gelu_forward(double *out, const double *inp, size_t N) {
    for (size_t i = 0; i < N; i++) out[i] = gelu(inp[i]);
}

void ref_gelu_backward(double *dinp, const double *inp, const double *dout, size_t N) {
    const double s = sqrt(2 / M_PI);
    for (size_t i = 0; i < N; i++) {
        double x = inp[i], u = s * (x + 0.044715 * x * x * x), th = tanh(u);
        dinp[i] = dout[i] * (0.5 * (1 + th) + 0.5 * x * (1 - th * th) * s * (1 + 3 * 0.044715 * x * x));
    }
}

void ref_classifier(double *losses, double *dlogits, const double *logits, const int32_t *targets, int N, int V,
                    int Vp, double scale) {
    for (int n = 0; n < N; n++) {
        const double *l = logits + (size_t)n * Vp;
        double mx = -INFINITY, sum = 0;
        for (int v = 0; v < V; v++) if (l[v] > mx) mx = l[v];
        for (int v = 0; v < V; v++) sum += exp(l[v] - mx);
        losses[n] = log(sum) + mx - l[targets[n]];
        if (dlogits)
            for (int v = 0; v < Vp; v++)
                dlogits[(size_t)n * Vp + v] = v < V ? scale * (exp(l[v] - mx) / sum - (v == targets[n])) : 0.0;
    }
}

void ref_adamw(double *p, const double *g, double *m, double *v, size_t n, double lr, double b1, double b2,
               double eps, double wd, double grad_scale, int t) {
    for (size_t i = 0; i < n; i++) {
        double gi = g[i] * grad_scale;
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        double mh = m[i] / (1 - pow(b1, t)), vh = v[i] / (1 - pow(b2, t));
        p[i] -= lr * (mh / (sqrt(vh) + eps) + wd * p[i]);
    }
}
