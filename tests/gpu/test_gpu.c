/*
 * test_gpu.c: the CUDA backend against the float64 references (tests/lib/ref64.c) and against the CPU backend, run by
 * `make test-gpu` (and by `make test`, where without a GPU it prints "skipped: no GPU").
 *   ops: every op of ops.h on fresh random inputs of several shapes (T = 7, 13, 64; C = 24, 96, 128; V = 33, 65,
 *        padded to 128), outputs poisoned with NaN bytes before each run (written outputs must be fully written;
 *        accumulated outputs are pre-filled with random values and must equal prefill + reference). Tolerance by
 *        STYLE.md's rule: fp32 <= 1e-4 relative (GPU) for every op, and in TF32 / bf16 / fp16 mode the matmul-class
 *        outputs (matmuls, the attention's GEMMs) within twice the error of the same naive math in that precision
 *        (float64 products of inputs rounded as the tensor cores round them) plus fp32 accumulation slack; NaN never
 *        passes.
 *   model: a whole training run on both backends from the same weights and batches: losses, every gradient after
 *          one step, and the weights after 10 AdamW steps (with clipping) within fp32 / tf32 tolerances;
 *          recompute none/selective/full give bitwise-identical GPU gradients; two identical GPU runs give
 *          bitwise-identical losses.
 *   passes: fp32, TF32, bf16 and fp16 tensor cores on fp32 storage; bf16 storage (the mixed-precision run); and bf16
 *           storage with bf16 parameter gradients (--grad-dtype bf16: every op's gradient output stored in bf16).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dropout_mask.h"
#include "gpt.h"
#include "harness.h"
#include "ops.h"
#include "ref64.h"

#ifndef GPTRAIN_CUDA
int main(void) {
    printf("skipped: no GPU (this build has no CUDA backend: make found no nvcc)\n");
    printf("0 passed, 0 failed\n");
    return 0;
}
#else

static uint64_t rng_state = 0x853c49e6748fea9bull;
static double urand(void) {  // uniform in [-1, 1)
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 4503599627370496.0 - 1.0;
}

// A host buffer (float and its exact double copy) and a device copy: c = 0 fp32, 1 the compute dtype (ops.h's
// `void *`), 2 the parameter gradients' dtype (`Grad *`).
typedef struct Buf { float *f; double *d; void *dev; size_t n; int c; } Buf;
static Backend GPU;
static const double RTOL = 1e-4;   // fp32 on a GPU (STYLE.md); every op that is not a matmul stays fp32 in any mode
static int PREC;                   // the matmuls' precision: 0 fp32, 1 TF32, 2 bf16, 3 fp16 tensor cores
static int STORE;                  // 1: the compute dtype is bf16 (GPU.dtype; PREC 2), activations stored in bf16
static int GSTORE;                 // 1: the parameter gradients are bf16 too (GPU.grad_dtype; STORE 1)
static const char *const PREC_NAMES[4] = {"fp32", "TF32", "bf16", "fp16"};

// fp32 to bf16 bits, to nearest even (NaN stays NaN), and back.
static uint16_t bf16_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static float bf16_value(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static double round_bf16(double x) { return bf16_value(bf16_bits((float)x)); }
// A value as the compute dtype stores it (identity in fp32).
static double sv(double x) { return STORE ? round_bf16(x) : x; }

// fp16 to nearest even: 10 mantissa bits, exponents down to -14 then subnormals in steps of 2^-24, and infinity from
// 65520 up (halfway between the largest finite value, 65504, and the next step).
static double round_fp16(float f) {
    const double a = fabs((double)f);
    if (a >= 65520.0) return copysign(INFINITY, f);
    int e;
    frexp(a, &e);   // a = m 2^e, m in [0.5, 1): the leading bit is 2^(e-1)
    const double step = ldexp(1.0, (e - 1 > -14 ? e - 1 : -14) - 10);
    return copysign(nearbyint(a / step) * step, f);   // the default rounding mode: ties to even
}

// A value as a tensor core sees it in this precision: TF32 keeps 10 mantissa bits (cvt.rna: to nearest, ties away
// from zero), bf16 7 (to nearest even), fp16 as round_fp16.
static double lp(double x) {
    float f = (float)x;
    uint32_t u;
    memcpy(&u, &f, 4);
    if (PREC == 0 || (u & 0x7f800000u) == 0x7f800000u) return f;
    if (PREC == 3) return round_fp16(f);
    if (PREC == 1) u = (u + 0x1000u) & ~0x1fffu;
    else u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

static int lowp(const Buf *b) { return (b->c == 1 && STORE) || (b->c == 2 && GSTORE); }
// The host values to the device (as bf16 bits for a compute-dtype buffer in bf16).
static void put(Buf *b) {
    if (!lowp(b)) {
        backend_to_device(&GPU, b->dev, b->f, b->n * sizeof(float));
        return;
    }
    uint16_t *h = malloc(b->n * sizeof(uint16_t) + 2);
    for (size_t i = 0; i < b->n; i++) h[i] = bf16_bits(b->f[i]);
    backend_to_device(&GPU, b->dev, h, b->n * sizeof(uint16_t));
    free(h);
}
static Buf buf_make(size_t n, double scale, int poison, int c) {
    Buf b = {malloc(n * sizeof(float) + 4), malloc(n * sizeof(double) + 8), NULL, n, c};
    // Inputs of a bf16 buffer are bf16 values, so the float64 reference sees exactly what the op reads.
    for (size_t i = 0; i < n; i++) {
        b.f[i] = poison ? NAN : (float)(scale * urand());
        if (lowp(&b) && !poison) b.f[i] = (float)round_bf16(b.f[i]);
        b.d[i] = b.f[i];
    }
    b.dev = backend_alloc(&GPU, n * (lowp(&b) ? sizeof(uint16_t) : sizeof(float)), "test buffer");
    if (poison) {
        memset(b.f, 0xff, n * sizeof(float));   // all-ones bytes: a NaN the op must overwrite (also in bf16)
        backend_to_device(&GPU, b.dev, b.f, n * (lowp(&b) ? sizeof(uint16_t) : sizeof(float)));
    } else put(&b);
    return b;
}
static Buf buf_new(size_t n, double scale, int poison) { return buf_make(n, scale, poison, 0); }
// A tensor in the compute dtype (ops.h's `void *` arguments).
static Buf buf_c(size_t n, double scale, int poison) { return buf_make(n, scale, poison, 1); }
// A parameter gradient (ops.h's `Grad *` arguments).
static Buf buf_g(size_t n, double scale, int poison) { return buf_make(n, scale, poison, 2); }
static void buf_free(Buf *b) { free(b->f); free(b->d); backend_free(&GPU, b->dev); }
static void fetch(Buf *b) {
    if (!lowp(b)) {
        backend_to_host(&GPU, b->f, b->dev, b->n * sizeof(float));
        return;
    }
    uint16_t *h = malloc(b->n * sizeof(uint16_t) + 2);
    backend_to_host(&GPU, h, b->dev, b->n * sizeof(uint16_t));
    for (size_t i = 0; i < b->n; i++) b->f[i] = bf16_value(h[i]);
    free(h);
}
static void compare_mm(const char *op, const char *what, const char *tag, Buf *b, const double *naive);

// An op's output against the float64 reference b->d: fp32 within RTOL; a bf16 output by STYLE.md's rule, its max error
// at most twice that of the naive math in bf16 (the reference rounded once to bf16) plus fp32 slack (compare_mm).
static void compare(const char *op, const char *what, const char *tag, Buf *b) {
    if (lowp(b)) {
        compare_mm(op, what, tag, b, b->d);
        return;
    }
    fetch(b);
    size_t where = 0;
    double worst = harness_compare(b->f, b->d, b->n, RTOL, &where);
    char name[256];
    snprintf(name, sizeof name, "%s %s [%s]", op, what, tag);
    harness_case(worst <= 1.0, name, "max error %.3g of tolerance (rtol %g) at %zu (%.8g vs %.8g)", worst, RTOL, where,
                 b->n ? b->f[where] : 0.0f, b->n ? b->d[where] : 0.0);
}

// A matmul-class output in TF32 or bf16 (STYLE.md's rule): its max error against the float64 reference b->d must be
// at most twice that of the same naive math in that precision (`naive`: float64 products of inputs rounded as the
// tensor cores round them), plus 1e-4 of the reference's rms for fp32 accumulation. In fp32 mode: compare().
// A bf16 output (lowp) is stored rounded: the naive value is rounded to bf16 once more, as the op stores it.
static void compare_mm(const char *op, const char *what, const char *tag, Buf *b, const double *naive) {
    if (PREC == 0 && !lowp(b)) {
        compare(op, what, tag, b);
        return;
    }
    fetch(b);
    double ss = 0, e_naive = 0, e = 0;
    size_t where = 0;
    for (size_t i = 0; i < b->n; i++) {
        ss += b->d[i] * b->d[i];
        e_naive = fmax(e_naive, fabs((lowp(b) ? round_bf16(naive[i]) : naive[i]) - b->d[i]));
        const double d = fabs((double)b->f[i] - b->d[i]);
        if (!(d <= e)) { e = isfinite(d) ? d : INFINITY; where = i; }
    }
    const double tol = 2 * e_naive + 1e-4 * sqrt(ss / (b->n ? (double)b->n : 1.0));
    char name[256];
    snprintf(name, sizeof name, "%s %s [%s]", op, what, tag);
    harness_case(e <= tol, name, "max error %.3g <= %.3g (2 x the naive %s error %.3g + fp32 slack) at %zu (%.8g vs %.8g)",
                 e, tol, lowp(b) ? "bf16-stored" : PREC_NAMES[PREC], e_naive, where, b->n ? b->f[where] : 0.0f,
                 b->n ? b->d[where] : 0.0);
}

// The same naive math in the matmuls' precision, for compare_mm: every GEMM input rounded by lp(), products and sums
// in float64. Matmul: out = inp w^T + bias; dinp = dout w; dw = dout^T inp; dbias (fp32 in the kernel) is exact.
static void naive_matmul_forward(double *out, const double *inp, const double *w, const double *bias, int N, int K,
                                 int M) {
    for (int n = 0; n < N; n++)
        for (int m = 0; m < M; m++) {
            double s = bias ? bias[m] : 0;
            for (int k = 0; k < K; k++) s += lp(inp[(size_t)n * K + k]) * lp(w[(size_t)m * K + k]);
            out[(size_t)n * M + m] = s;
        }
}
static void naive_matmul_backward(double *dinp, double *dw, const double *dout, const double *inp, const double *w,
                                  int N, int K, int M) {
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            double s = 0;
            for (int m = 0; m < M; m++) s += lp(dout[(size_t)n * M + m]) * lp(w[(size_t)m * K + k]);
            dinp[(size_t)n * K + k] = s;
        }
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++) {
            double s = 0;
            for (int n = 0; n < N; n++) s += lp(dout[(size_t)n * M + m]) * lp(inp[(size_t)n * K + k]);
            dw[(size_t)m * K + k] += s;
        }
}
// Attention as the CUDA backend computes it: S = scale (q k^T) and O = P v on the tensor cores, the softmax and its
// backward in fp32; backward dP = dy v^T, dV = P^T dy, dS = P (dP - rowsum(P dP)), dQ = scale dS k, dK = scale dS^T q.
// p (B,NH,T,T) is the naive forward's probabilities, reused by the backward (as the op reuses its forward's).
// stored: the scores, probabilities and their gradients are stored in the compute dtype between the products (sv:
// the naive attention's buffers); 0 for flash attention, which keeps them in fp32 registers (P rounded for PV by lp).
static void naive_attention(double *out, double *p, double *dqkv, const double *qkv, const double *dout, int B, int T,
                            int C, int NH, int stored) {
    const int HS = C / NH, C3 = 3 * C;
    const double scale = 1.0 / sqrt((double)HS);
    double *dp = malloc(sizeof(double) * T), *ds = malloc(sizeof(double) * (size_t)T * T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            double *P = p + ((size_t)b * NH + h) * T * T;
            const double *Q = qkv + (size_t)b * T * C3 + h * HS, *K = Q + C, *V = Q + 2 * C;
            for (int t = 0; t < T; t++) {
                double mx = -INFINITY;
                for (int u = 0; u <= t; u++) {
                    double sc = 0;
                    for (int i = 0; i < HS; i++) sc += lp(Q[(size_t)t * C3 + i]) * lp(K[(size_t)u * C3 + i]);
                    P[(size_t)t * T + u] = stored ? sv(scale * sc) : scale * sc;
                    mx = fmax(mx, P[(size_t)t * T + u]);
                }
                double z = 0;
                for (int u = 0; u <= t; u++) z += exp(P[(size_t)t * T + u] - mx);
                for (int u = 0; u < T; u++) {
                    const double pu = u <= t ? exp(P[(size_t)t * T + u] - mx) / z : 0;
                    P[(size_t)t * T + u] = stored ? sv(pu) : pu;
                }
                for (int i = 0; i < HS; i++) {
                    double o = 0;
                    for (int u = 0; u <= t; u++) o += lp(P[(size_t)t * T + u]) * lp(V[(size_t)u * C3 + i]);
                    out[((size_t)b * T + t) * C + h * HS + i] = o;
                }
            }
            if (!dqkv) continue;
            const double *dY = dout + (size_t)b * T * C + h * HS;
            double *dQ = dqkv + (size_t)b * T * C3 + h * HS, *dK = dQ + C, *dV = dQ + 2 * C;
            for (int t = 0; t < T; t++) {
                double dot = 0;
                for (int u = 0; u <= t; u++) {
                    dp[u] = 0;
                    for (int i = 0; i < HS; i++) dp[u] += lp(dY[(size_t)t * C + i]) * lp(V[(size_t)u * C3 + i]);
                    if (stored) dp[u] = sv(dp[u]);
                    dot += P[(size_t)t * T + u] * dp[u];
                }
                for (int u = 0; u < T; u++) {
                    const double su = u <= t ? P[(size_t)t * T + u] * (dp[u] - dot) : 0;
                    ds[(size_t)t * T + u] = stored ? sv(su) : su;
                }
            }
            for (int t = 0; t < T; t++)
                for (int i = 0; i < HS; i++) {
                    double v = 0, q = 0, k = 0;
                    for (int u = 0; u < T; u++) {
                        v += lp(P[(size_t)u * T + t]) * lp(dY[(size_t)u * C + i]);                  // dV[t] over rows u
                        q += lp(ds[(size_t)t * T + u]) * lp(K[(size_t)u * C3 + i]);                 // dQ[t]
                        k += lp(ds[(size_t)u * T + t]) * lp(Q[(size_t)u * C3 + i]);                 // dK[t]
                    }
                    dV[(size_t)t * C3 + i] = v;
                    dQ[(size_t)t * C3 + i] = scale * q;
                    dK[(size_t)t * C3 + i] = scale * k;
                }
        }
    free(dp);
    free(ds);
}

typedef struct Shape { int B, T, C, NH, F, V, Vp; } Shape;

static void test_ops(const Shape *s, const char *prec) {
    const int B = s->B, T = s->T, C = s->C, NH = s->NH, F = s->F, V = s->V, Vp = s->Vp, N = B * T;
    char tag[128];
    snprintf(tag, sizeof tag, "cuda %s B=%d T=%d C=%d NH=%d F=%d V=%d", prec, B, T, C, NH, F, V);
    int32_t *tok = malloc(sizeof(int32_t) * N);
    for (int i = 0; i < N; i++) tok[i] = (int32_t)((urand() + 1) * 0.5 * V) % V;
    tok[0] = tok[N - 1];
    int32_t *dtok = backend_alloc(&GPU, sizeof(int32_t) * N, "tokens");
    backend_to_device(&GPU, dtok, tok, sizeof(int32_t) * N);
    {
        Buf wte = buf_c((size_t)Vp * C, 1, 0), wpe = buf_c((size_t)T * C, 1, 0), out = buf_c((size_t)N * C, 0, 1);
        op_encoder_forward(&GPU, out.dev, dtok, wte.dev, wpe.dev, B, T, C);
        ref_encoder_forward(out.d, tok, wte.d, wpe.d, B, T, C);
        compare("encoder_forward", "out", tag, &out);
        Buf dout = buf_c((size_t)N * C, 1, 0), dwte = buf_g((size_t)Vp * C, 1, 0), dwpe = buf_g((size_t)T * C, 1, 0);
        Buf work = buf_new(ENCODER_WORK_FLOATS(N), 0, 1);
        op_encoder_backward(&GPU, dwte.dev, dwpe.dev, work.dev, dout.dev, dtok, B, T, C);
        ref_encoder_backward(dwte.d, dwpe.d, dout.d, tok, B, T, C);
        compare("encoder_backward", "dwte (+=)", tag, &dwte);
        compare("encoder_backward", "dwpe (+=)", tag, &dwpe);
        buf_free(&wte); buf_free(&wpe); buf_free(&out); buf_free(&dout); buf_free(&dwte); buf_free(&dwpe);
        buf_free(&work);
    }
    {
        Buf x = buf_c((size_t)N * C, 2, 0), w = buf_c(C, 1, 0), b = buf_c(C, 1, 0), out = buf_c((size_t)N * C, 0, 1);
        Buf mean = buf_new(N, 0, 1), rstd = buf_new(N, 0, 1);
        op_layernorm_forward(&GPU, out.dev, mean.dev, rstd.dev, x.dev, w.dev, b.dev, N, C);
        ref_layernorm_forward(out.d, mean.d, rstd.d, x.d, w.d, b.d, N, C);
        compare("layernorm_forward", "out", tag, &out);
        compare("layernorm_forward", "mean", tag, &mean);
        compare("layernorm_forward", "rstd", tag, &rstd);
        Buf dout = buf_c((size_t)N * C, 1, 0), dinp = buf_c((size_t)N * C, 1, 0), dw = buf_g(C, 1, 0), db = buf_g(C, 1, 0);
        op_layernorm_backward(&GPU, dinp.dev, dw.dev, db.dev, dout.dev, x.dev, w.dev, mean.dev, rstd.dev, N, C);
        ref_layernorm_backward(dinp.d, dw.d, db.d, dout.d, x.d, w.d, N, C);
        compare("layernorm_backward", "dinp (+=)", tag, &dinp);
        compare("layernorm_backward", "dw (+=)", tag, &dw);
        compare("layernorm_backward", "db (+=)", tag, &db);
        // The residual add fused with the LayerNorm: against the references (the norm of the sum as stored), and
        // bitwise equal to the two ops in turn on the GPU (what the recompute modes' bitwise equality rests on).
        Buf a = buf_c((size_t)N * C, 1, 0), r = buf_c((size_t)N * C, 0, 1), o = buf_c((size_t)N * C, 0, 1);
        Buf m2 = buf_new(N, 0, 1), s2 = buf_new(N, 0, 1), r1 = buf_c((size_t)N * C, 0, 1), o1 = buf_c((size_t)N * C, 0, 1);
        Buf m1 = buf_new(N, 0, 1), s1 = buf_new(N, 0, 1);
        op_residual_layernorm_forward(&GPU, r.dev, o.dev, m2.dev, s2.dev, x.dev, a.dev, w.dev, b.dev, N, C);
        for (size_t i = 0; i < r.n; i++) r.d[i] = (double)(x.f[i] + a.f[i]);
        compare("residual_layernorm_forward", "resid", tag, &r);
        for (size_t i = 0; i < r.n; i++) r1.d[i] = r.f[i];   // r.f: the sum as the op stored it (compare fetched it)
        ref_layernorm_forward(o.d, m2.d, s2.d, r1.d, w.d, b.d, N, C);
        compare("residual_layernorm_forward", "out", tag, &o);
        compare("residual_layernorm_forward", "mean", tag, &m2);
        compare("residual_layernorm_forward", "rstd", tag, &s2);
        op_residual_forward(&GPU, r1.dev, x.dev, a.dev, r1.n);
        op_layernorm_forward(&GPU, o1.dev, m1.dev, s1.dev, r1.dev, w.dev, b.dev, N, C);
        fetch(&r1); fetch(&o1); fetch(&m1); fetch(&s1);
        char name[256];
        snprintf(name, sizeof name, "residual_layernorm_forward = residual_forward + layernorm_forward, bitwise [%s]",
                 tag);
        harness_case(!memcmp(r.f, r1.f, r.n * 4) && !memcmp(o.f, o1.f, o.n * 4) && !memcmp(m2.f, m1.f, (size_t)N * 4) &&
                     !memcmp(s2.f, s1.f, (size_t)N * 4), name, "resid, out, mean and rstd");
        buf_free(&a); buf_free(&r); buf_free(&o); buf_free(&m2); buf_free(&s2); buf_free(&r1); buf_free(&o1);
        buf_free(&m1); buf_free(&s1);
        buf_free(&x); buf_free(&w); buf_free(&b); buf_free(&out); buf_free(&mean); buf_free(&rstd);
        buf_free(&dout); buf_free(&dinp); buf_free(&dw); buf_free(&db);
    }
    const int mm[3][2] = {{C, 3 * C}, {F, C}, {C, Vp}};
    for (int si = 0; si < 3; si++) {
        const int K = mm[si][0], M = mm[si][1];
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            char what[64];
            Buf x = buf_c((size_t)N * K, 1, 0), w = buf_c((size_t)M * K, 1, 0), bias = buf_c(M, 1, 0);
            Buf out = buf_c((size_t)N * M, 0, 1);
            double *nv_out = malloc(sizeof(double) * (size_t)N * M), *nv_dinp = malloc(sizeof(double) * (size_t)N * K);
            double *nv_dw = malloc(sizeof(double) * (size_t)M * K);
            op_matmul_forward(&GPU, out.dev, x.dev, w.dev, with_bias ? bias.dev : NULL, N, K, M);
            ref_matmul_forward(out.d, x.d, w.d, with_bias ? bias.d : NULL, N, K, M);
            naive_matmul_forward(nv_out, x.d, w.d, with_bias ? bias.d : NULL, N, K, M);
            snprintf(what, sizeof what, "out K=%d M=%d%s", K, M, with_bias ? " +bias" : "");
            compare_mm("matmul_forward", what, tag, &out, nv_out);
            Buf dout = buf_c((size_t)N * M, 1, 0), dinp = buf_c((size_t)N * K, 0, 1);
            Buf dw = buf_g((size_t)M * K, 1, 0), db = buf_g(M, 1, 0);
            memcpy(nv_dw, dw.d, sizeof(double) * (size_t)M * K);
            op_matmul_backward(&GPU, dinp.dev, dw.dev, with_bias ? db.dev : NULL, dout.dev, x.dev, w.dev, N, K, M);
            ref_matmul_backward(dinp.d, dw.d, with_bias ? db.d : NULL, dout.d, x.d, w.d, N, K, M);
            naive_matmul_backward(nv_dinp, nv_dw, dout.d, x.d, w.d, N, K, M);
            snprintf(what, sizeof what, "dinp (=) K=%d M=%d", K, M);
            compare_mm("matmul_backward", what, tag, &dinp, nv_dinp);
            snprintf(what, sizeof what, "dw (+=) K=%d M=%d", K, M);
            compare_mm("matmul_backward", what, tag, &dw, nv_dw);
            if (with_bias) compare("matmul_backward", "dbias (+=)", tag, &db);
            free(nv_out);
            free(nv_dinp);
            free(nv_dw);
            buf_free(&x); buf_free(&w); buf_free(&bias); buf_free(&out); buf_free(&dout); buf_free(&dinp);
            buf_free(&dw); buf_free(&db);
        }
    }
    // The down projection's backward with GELU's fused in (cuBLASLt's DGELU epilogue): K = F (a multiple of 8, the
    // epilogue runs) and K = F - 3 (its leading dimension refused: the GEMM + GELU-backward fallback).
    for (int kf = 0; kf < 2; kf++) {
        const int K = kf ? F - 3 : F, M = C;
        char what[64];
        Buf pre = buf_c((size_t)N * K, 3, 0), x = buf_c((size_t)N * K, 1, 0), w = buf_c((size_t)M * K, 1, 0);
        Buf dout = buf_c((size_t)N * M, 1, 0), dinp = buf_c((size_t)N * K, 0, 1), dw = buf_g((size_t)M * K, 1, 0);
        Buf db = buf_g(M, 1, 0);
        double *lin = malloc(sizeof(double) * (size_t)N * K), *nv_lin = malloc(sizeof(double) * (size_t)N * K);
        double *nv_dinp = malloc(sizeof(double) * (size_t)N * K), *nv_dw = malloc(sizeof(double) * (size_t)M * K);
        memcpy(nv_dw, dw.d, sizeof(double) * (size_t)M * K);
        op_matmul_backward_gelu(&GPU, dinp.dev, dw.dev, db.dev, dout.dev, x.dev, w.dev, pre.dev, N, K, M);
        ref_matmul_backward(lin, dw.d, db.d, dout.d, x.d, w.d, N, K, M);
        ref_gelu_backward(dinp.d, pre.d, lin, (size_t)N * K);
        naive_matmul_backward(nv_lin, nv_dw, dout.d, x.d, w.d, N, K, M);
        // the fallback stores the GEMM's result before the GELU backward reads it: one rounding more in bf16
        if (kf)
            for (size_t i = 0; i < (size_t)N * K; i++) nv_lin[i] = sv(nv_lin[i]);
        ref_gelu_backward(nv_dinp, pre.d, nv_lin, (size_t)N * K);
        snprintf(what, sizeof what, "dinp (=) K=%d M=%d%s", K, M, kf ? " (fallback)" : " (epilogue)");
        compare_mm("matmul_backward_gelu", what, tag, &dinp, nv_dinp);
        snprintf(what, sizeof what, "dw (+=) K=%d M=%d", K, M);
        compare_mm("matmul_backward_gelu", what, tag, &dw, nv_dw);
        compare("matmul_backward_gelu", "dbias (+=)", tag, &db);
        free(lin); free(nv_lin); free(nv_dinp); free(nv_dw);
        buf_free(&pre); buf_free(&x); buf_free(&w); buf_free(&dout); buf_free(&dinp); buf_free(&dw); buf_free(&db);
    }
    {
        Buf qkv = buf_c((size_t)N * 3 * C, 1.5, 0), out = buf_c((size_t)N * C, 0, 1);
        Buf att = buf_c((size_t)B * NH * T * T, 0, 1), datt = buf_c((size_t)B * NH * T * T, 0, 1);
        Buf dout = buf_c((size_t)N * C, 1, 0), dqkv = buf_c((size_t)N * 3 * C, 0, 1);
        double *nv_out = malloc(sizeof(double) * (size_t)N * C), *nv_p = malloc(sizeof(double) * (size_t)B * NH * T * T);
        double *nv_dqkv = malloc(sizeof(double) * (size_t)N * 3 * C);
        naive_attention(nv_out, nv_p, nv_dqkv, qkv.d, dout.d, B, T, C, NH, 1);
        op_attention_forward(&GPU, out.dev, att.dev, NULL, qkv.dev, B, T, C, NH, 0.0f, 0);
        ref_attention_forward(out.d, att.d, qkv.d, B, T, C, NH);
        compare_mm("attention_forward", "out", tag, &out, nv_out);
        op_attention_backward(&GPU, dqkv.dev, datt.dev, dout.dev, qkv.dev, att.dev, B, T, C, NH, 0.0f, 0);
        ref_attention_backward(dqkv.d, dout.d, qkv.d, B, T, C, NH);
        compare_mm("attention_backward", "dqkv (=)", tag, &dqkv, nv_dqkv);
        if (PREC == 0) {   // dropout on the probabilities: the GPU's out and dqkv against the CPU op's, same mask
            const float pd = 0.3f;
            const uint64_t key = dropout_key(5, 1, 0, 0, 1);
            Backend cpu;
            backend_init(&cpu, BACKEND_CPU_REF, 0);
            const size_t nc = (size_t)N * C, nq = (size_t)N * 3 * C, ntt = (size_t)B * NH * T * T;
            float *co = malloc(nc * sizeof(float)), *ca = malloc(ntt * sizeof(float)), *cq = malloc(nq * sizeof(float));
            float *cs = malloc(ntt * sizeof(float));
            op_attention_forward(&cpu, co, ca, NULL, qkv.f, B, T, C, NH, pd, key);
            op_attention_backward(&cpu, cq, cs, dout.f, qkv.f, ca, B, T, C, NH, pd, key);
            op_attention_forward(&GPU, out.dev, att.dev, datt.dev, qkv.dev, B, T, C, NH, pd, key);
            op_attention_backward(&GPU, dqkv.dev, datt.dev, dout.dev, qkv.dev, att.dev, B, T, C, NH, pd, key);
            for (size_t i = 0; i < nc; i++) out.d[i] = co[i];
            for (size_t i = 0; i < nq; i++) dqkv.d[i] = cq[i];
            compare("attention_forward, dropout 0.3 (vs the CPU op)", "out", tag, &out);
            compare("attention_backward, dropout 0.3 (vs the CPU op)", "dqkv (=)", tag, &dqkv);
            free(co); free(ca); free(cq); free(cs);
        }
        free(nv_out);
        free(nv_p);
        free(nv_dqkv);
        buf_free(&qkv); buf_free(&out); buf_free(&att); buf_free(&datt); buf_free(&dout); buf_free(&dqkv);
    }
    if ((PREC == 0 || STORE) && FLASH_GPU_HEAD_SIZE_OK(C / NH)) {   // the flash seam ops: bf16 tensor cores always
        Buf qkv = buf_c((size_t)N * 3 * C, 1.5, 0), out = buf_c((size_t)N * C, 0, 1), lse = buf_new((size_t)B * NH * T, 0, 1);
        Buf work = buf_new(FLASH_WORK_FLOATS(B, T, C, NH, dtype_bytes(GPU.dtype)), 0, 1), dout = buf_c((size_t)N * C, 1, 0);
        Buf dqkv = buf_c((size_t)N * 3 * C, 0, 1);
        double *nv_out = malloc(sizeof(double) * (size_t)N * C), *nv_p = malloc(sizeof(double) * (size_t)B * NH * T * T);
        double *nv_dqkv = malloc(sizeof(double) * (size_t)N * 3 * C);
        const int saved = PREC;
        PREC = 2;
        naive_attention(nv_out, nv_p, nv_dqkv, qkv.d, dout.d, B, T, C, NH, 0);
        op_flash_attention_forward(&GPU, out.dev, lse.dev, work.dev, qkv.dev, B, T, C, NH);
        ref_attention_forward(out.d, NULL, qkv.d, B, T, C, NH);
        compare_mm("flash_attention_forward", "out (bf16 inside)", tag, &out, nv_out);
        for (int d = 0; d < 2; d++) {
            GPU.deterministic = d;
            op_flash_attention_backward(&GPU, dqkv.dev, work.dev, dout.dev, qkv.dev, out.dev, lse.dev, B, T, C, NH);
            ref_attention_backward(dqkv.d, dout.d, qkv.d, B, T, C, NH);
            compare_mm("flash_attention_backward", d ? "dqkv (=), deterministic dQ" : "dqkv (=), atomic dQ", tag, &dqkv,
                       nv_dqkv);
        }
        GPU.deterministic = 0;
        PREC = saved;
        free(nv_out);
        free(nv_p);
        free(nv_dqkv);
        buf_free(&qkv); buf_free(&out); buf_free(&lse); buf_free(&work); buf_free(&dout); buf_free(&dqkv);
    }
    {
        const size_t n = (size_t)N * F;
        Buf x = buf_c(n, 3, 0), out = buf_c(n, 0, 1), dout = buf_c(n, 1, 0), dinp = buf_c(n, 0, 1);
        op_gelu_forward(&GPU, out.dev, x.dev, n);
        ref_gelu_forward(out.d, x.d, n);
        compare("gelu_forward", "out", tag, &out);
        op_gelu_backward(&GPU, dinp.dev, x.dev, dout.dev, n);
        ref_gelu_backward(dinp.d, x.d, dout.d, n);
        compare("gelu_backward", "dinp (=)", tag, &dinp);
        Buf a = buf_c(n, 1, 0), r = buf_c(n, 0, 1);
        op_residual_forward(&GPU, r.dev, a.dev, x.dev, n);
        for (size_t i = 0; i < n; i++) r.d[i] = (double)(a.f[i] + x.f[i]);
        compare("residual_forward", "out", tag, &r);
        // dropout: the CPU's mask (kernels/dropout_mask.h), the product rounded once as the op stores it; in fp32
        // bitwise the CPU backend's output
        {
            const float p = 0.3f;
            const uint64_t key = dropout_key(9, 4, 2, 1, 2);
            Buf dr = buf_c(n, 0, 1);
            op_dropout(&GPU, dr.dev, x.dev, n, p, key);
            for (size_t i = 0; i < n; i++)
                dr.d[i] = dropout_keep(key, i, dropout_threshold(p)) ? (double)(x.f[i] * (1.0f / (1.0f - p))) : 0.0;
            compare("dropout", "out", tag, &dr);
            if (!lowp(&dr)) {
                Backend cpu;
                backend_init(&cpu, BACKEND_CPU_REF, 0);
                float *c = malloc(n * sizeof(float));
                op_dropout(&cpu, c, x.f, n, p, key);
                fetch(&dr);
                char name[320];
                snprintf(name, sizeof name, "dropout: the same elements kept, the same values, as the CPU's [%s]", tag);
                harness_case(!memcmp(c, dr.f, n * sizeof(float)), name, "%zu values", n);
                free(c);
            }
            buf_free(&dr);
        }
        buf_free(&x); buf_free(&out); buf_free(&dout); buf_free(&dinp); buf_free(&a); buf_free(&r);
    }
    {
        Buf logits = buf_c((size_t)N * Vp, 4, 0), losses = buf_new(N, 0, 1);
        double *dl = malloc(sizeof(double) * (size_t)N * Vp);
        const float scale = 1.0f / N;
        ref_classifier(losses.d, dl, logits.d, tok, N, V, Vp, scale);
        op_classifier_forward_backward(&GPU, losses.dev, logits.dev, dtok, N, V, Vp, scale);
        compare("classifier", "losses", tag, &losses);
        {   // the running loss sum on the device: += the mean rounded to fp32, so within fp32 rounding of the mean
            Buf acc = buf_new(2, 0, 0);
            const double start = 0.25;
            backend_to_device(&GPU, acc.dev, &start, sizeof start);
            op_loss_accumulate(&GPU, (double *)acc.dev, losses.dev, N);
            double got, want = 0;
            backend_to_host(&GPU, &got, acc.dev, sizeof got);
            for (int i = 0; i < N; i++) want += losses.f[i];   // the op's own fp32 losses (compare fetched them)
            want = start + want / N;
            harness_case(fabs(got - want) <= 2e-7 * fabs(want - start) + 1e-12, "loss_accumulate", "%.17g vs %.17g [%s]",
                         got, want, tag);
            buf_free(&acc);
        }
        memcpy(logits.d, dl, sizeof(double) * (size_t)N * Vp);
        compare("classifier", "dlogits (in place, padded columns 0)", tag, &logits);
        free(dl);
        buf_free(&logits); buf_free(&losses);
    }
    {
        const size_t n = (size_t)N * C + 3;
        Buf x = buf_g(n, 1, 0);
        double ref = 0;
        for (size_t i = 0; i < n; i++) ref += x.d[i] * x.d[i];
        double got = op_sum_squares(&GPU, x.dev, n);
        harness_case(fabs(got - ref) <= 1e-12 * ref, "sum_squares", "%.17g vs %.17g [%s]", got, ref, tag);
        // The global norm on the device, then AdamW in one launch over [lo, hi) of two tensors (the first decayed),
        // clipped by that norm (clip below it), then a NaN norm: nothing changes.
        Buf norm = buf_new(1, 0, 1);
        op_global_norm(&GPU, norm.dev, x.dev, n);
        norm.d[0] = sqrt(ref);
        compare("global_norm", "norm (device)", tag, &norm);
        Buf p = buf_new(n, 1, 0), g = buf_g(n, 1, 0), m = buf_new(n, 0.1, 0), v = buf_new(n, 0.1, 0);
        for (size_t i = 0; i < n; i++) { v.f[i] = fabsf(v.f[i]); v.d[i] = v.f[i]; }
        backend_to_device(&GPU, v.dev, v.f, n * sizeof(float));
        const size_t n1 = n / 3, lo = 3, hi = n - 5;
        const AdamWTensors tens = {2, {n1, n}, 1u, 0, 0};
        const double clip = 0.5 * norm.f[0];
        const AdamWHyper h = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, clip, 3, 0};
        // With a bf16 compute dtype the step also writes the weights' bf16 copy over [lo, hi) (here to nearest even).
        Buf pc = buf_c(STORE ? n : 1, 0, 1);
        op_adamw_step(&GPU, p.dev, STORE ? pc.dev : NULL, g.dev, m.dev, v.dev, lo, hi, &tens, &h, norm.dev, NULL);
        const double s = (float)(clip / norm.f[0]);
        ref_adamw(p.d + lo, g.d + lo, m.d + lo, v.d + lo, n1 - lo, 1e-3, 0.9, 0.95, 1e-8, 0.1, s, 3);
        ref_adamw(p.d + n1, g.d + n1, m.d + n1, v.d + n1, hi - n1, 1e-3, 0.9, 0.95, 1e-8, 0.0, s, 3);
        compare("adamw_step", "params (range, per-tensor decay, clipped by the device norm)", tag, &p);
        compare("adamw_step", "m", tag, &m);
        compare("adamw_step", "v", tag, &v);
        if (STORE) {
            fetch(&pc);
            size_t bad = 0;
            for (size_t i = 0; i < n; i++) {
                const int in = i >= lo && i < hi;
                if (in ? pc.f[i] != (float)round_bf16(p.f[i]) : !isnan(pc.f[i])) bad++;
            }
            harness_case(!bad, "adamw_step: the bf16 copy is the updated master rounded to nearest (seed 0), only in "
                         "[lo, hi)", "%zu of %zu wrong [%s]", bad, n, tag);
        }
        buf_free(&pc);
        float nan_norm = NAN;
        backend_to_device(&GPU, norm.dev, &nan_norm, sizeof nan_norm);
        float *keep = malloc(n * sizeof(float));
        memcpy(keep, p.f, n * sizeof(float));
        op_adamw_step(&GPU, p.dev, NULL, g.dev, m.dev, v.dev, 0, n, &tens, &h, norm.dev, NULL);
        fetch(&p);
        harness_case(!memcmp(keep, p.f, n * sizeof(float)), "adamw_step: a NaN device norm changes nothing", "[%s]", tag);
        // A finite norm with a NaN loss sum on the device (op_loss_accumulate of a NaN loss): nothing changes.
        Buf lossb = buf_new(4, 0, 0), nl = buf_new(1, 0, 0);
        float one = 1.0f, nan_loss = NAN;
        backend_to_device(&GPU, norm.dev, &one, sizeof one);
        backend_to_device(&GPU, nl.dev, &nan_loss, sizeof nan_loss);
        op_zero(&GPU, lossb.dev, sizeof(double));
        op_loss_accumulate(&GPU, (double *)lossb.dev, nl.dev, 1);
        op_adamw_step(&GPU, p.dev, NULL, g.dev, m.dev, v.dev, 0, n, &tens, &h, norm.dev, (const double *)lossb.dev);
        fetch(&p);
        harness_case(!memcmp(keep, p.f, n * sizeof(float)), "adamw_step: a NaN device loss changes nothing", "[%s]",
                     tag);
        buf_free(&lossb);
        buf_free(&nl);
        free(keep);
        buf_free(&x); buf_free(&p); buf_free(&g); buf_free(&m); buf_free(&v); buf_free(&norm);
    }
    backend_free(&GPU, dtok);
    free(tok);
}

// The column reductions at row counts where their multi-block paths run: the encoder backward's sort past one
// shared-memory tile (N > 1024, so the global bitonic passes run; a vocabulary of 5, so runs of equal tokens are
// hundreds of rows long, and one token only at the first and last position), the LayerNorm backward over many
// 32-row blocks, the bias gradient over many 256-row chunks (N not a multiple of either). fp32 results against the
// float64 references; the fp32 dwte and dwpe must equal the CPU backend's bitwise (both add each row in token order,
// starting from the accumulated value), and a second run on the same inputs must give the same bits.
static void test_reductions(int B, int T, int C, int V) {
    const int N = B * T, Vp = 128, M = 3 * C;
    char tag[96];
    snprintf(tag, sizeof tag, "cuda fp32 B=%d T=%d C=%d V=%d", B, T, C, V);
    int32_t *tok = malloc(sizeof(int32_t) * N);
    for (int i = 0; i < N; i++) tok[i] = 1 + (int32_t)((urand() + 1) * 0.5 * (V - 1)) % (V - 1);
    tok[0] = tok[N - 1] = 0;
    int32_t *dtok = backend_alloc(&GPU, sizeof(int32_t) * N, "tokens");
    backend_to_device(&GPU, dtok, tok, sizeof(int32_t) * N);
    Backend cpu;
    backend_init(&cpu, BACKEND_CPU_REF, 0);
    {
        Buf dout = buf_new((size_t)N * C, 1, 0), dwte = buf_new((size_t)Vp * C, 1, 0), dwpe = buf_new((size_t)T * C, 1, 0);
        Buf work = buf_new(ENCODER_WORK_FLOATS(N), 0, 1);
        const size_t nte = (size_t)Vp * C, npe = (size_t)T * C;
        float *start = malloc(sizeof(float) * nte), *cwte = malloc(sizeof(float) * nte), *cwpe = malloc(sizeof(float) * npe);
        memcpy(start, dwte.f, sizeof(float) * nte);
        memcpy(cwte, dwte.f, sizeof(float) * nte);
        memcpy(cwpe, dwpe.f, sizeof(float) * npe);
        op_encoder_backward(&cpu, cwte, cwpe, NULL, dout.f, tok, B, T, C);
        op_encoder_backward(&GPU, dwte.dev, dwpe.dev, work.dev, dout.dev, dtok, B, T, C);
        ref_encoder_backward(dwte.d, dwpe.d, dout.d, tok, B, T, C);
        compare("encoder_backward", "dwte (+=)", tag, &dwte);
        compare("encoder_backward", "dwpe (+=)", tag, &dwpe);
        harness_case(!memcmp(dwte.f, cwte, sizeof(float) * nte) && !memcmp(dwpe.f, cwpe, sizeof(float) * npe),
                     "encoder_backward: dwte and dwpe bitwise equal to the CPU's", "%s", tag);
        backend_to_device(&GPU, dwte.dev, start, sizeof(float) * nte);   // again from the same start
        op_encoder_backward(&GPU, dwte.dev, dwpe.dev, work.dev, dout.dev, dtok, B, T, C);
        fetch(&dwte);
        harness_case(!memcmp(dwte.f, cwte, sizeof(float) * nte), "encoder_backward: a second run gives the same dwte bits",
                     "%s", tag);
        free(start);
        free(cwte);
        free(cwpe);
        buf_free(&dout); buf_free(&dwte); buf_free(&dwpe); buf_free(&work);
    }
    {
        Buf x = buf_new((size_t)N * C, 2, 0), w = buf_new(C, 1, 0), b = buf_new(C, 1, 0), out = buf_new((size_t)N * C, 0, 1);
        Buf mean = buf_new(N, 0, 1), rstd = buf_new(N, 0, 1);
        op_layernorm_forward(&GPU, out.dev, mean.dev, rstd.dev, x.dev, w.dev, b.dev, N, C);
        Buf dout = buf_new((size_t)N * C, 1, 0), dinp = buf_new((size_t)N * C, 1, 0), dw = buf_new(C, 1, 0), db = buf_new(C, 1, 0);
        float *dw0 = malloc(sizeof(float) * C), *db0 = malloc(sizeof(float) * C), *dw1 = malloc(sizeof(float) * C);
        memcpy(dw0, dw.f, sizeof(float) * C);
        memcpy(db0, db.f, sizeof(float) * C);
        op_layernorm_backward(&GPU, dinp.dev, dw.dev, db.dev, dout.dev, x.dev, w.dev, mean.dev, rstd.dev, N, C);
        ref_layernorm_backward(dinp.d, dw.d, db.d, dout.d, x.d, w.d, N, C);
        compare("layernorm_backward", "dinp (+=)", tag, &dinp);
        compare("layernorm_backward", "dw (+=)", tag, &dw);
        compare("layernorm_backward", "db (+=)", tag, &db);
        memcpy(dw1, dw.f, sizeof(float) * C);
        backend_to_device(&GPU, dw.dev, dw0, sizeof(float) * C);
        backend_to_device(&GPU, db.dev, db0, sizeof(float) * C);
        op_layernorm_backward(&GPU, dinp.dev, dw.dev, db.dev, dout.dev, x.dev, w.dev, mean.dev, rstd.dev, N, C);
        fetch(&dw);
        harness_case(!memcmp(dw1, dw.f, sizeof(float) * C), "layernorm_backward: a second run gives the same dw bits",
                     "%s", tag);
        free(dw0); free(db0); free(dw1);
        buf_free(&x); buf_free(&w); buf_free(&b); buf_free(&out); buf_free(&mean); buf_free(&rstd);
        buf_free(&dout); buf_free(&dinp); buf_free(&dw); buf_free(&db);
    }
    {
        const int K = 8;
        Buf x = buf_new((size_t)N * K, 1, 0), w = buf_new((size_t)M * K, 1, 0), dout = buf_new((size_t)N * M, 1, 0);
        Buf dw = buf_new((size_t)M * K, 1, 0), db = buf_new(M, 1, 0);
        float *db0 = malloc(sizeof(float) * M), *db1 = malloc(sizeof(float) * M);
        memcpy(db0, db.f, sizeof(float) * M);
        op_matmul_backward(&GPU, NULL, dw.dev, db.dev, dout.dev, x.dev, w.dev, N, K, M);
        ref_matmul_backward(NULL, dw.d, db.d, dout.d, x.d, w.d, N, K, M);
        compare("matmul_backward", "dbias (+=), many row chunks", tag, &db);
        memcpy(db1, db.f, sizeof(float) * M);
        backend_to_device(&GPU, db.dev, db0, sizeof(float) * M);
        op_matmul_backward(&GPU, NULL, dw.dev, db.dev, dout.dev, x.dev, w.dev, N, K, M);
        fetch(&db);
        harness_case(!memcmp(db1, db.f, sizeof(float) * M), "matmul_backward: a second run gives the same dbias bits",
                     "%s", tag);
        free(db0); free(db1);
        buf_free(&x); buf_free(&w); buf_free(&dout); buf_free(&dw); buf_free(&db);
    }
    backend_free(&GPU, dtok);
    free(tok);
}

// Stochastic rounding of the bf16 weight copy is unbiased: with lr = 0 the master stays at p, and over K steps (K
// seeds) the mean of the copy must be p within 6 standard errors, per element and (5) over all of them; the values
// sit 0.05..0.45 of a bf16 step above a bf16 number (either sign), so round-to-nearest, which always rounds them
// down, is off by ~0.25 step: the same statistic on seed 0 (to nearest) must exceed the bound (the test can fail).
static void test_stochastic_rounding(void) {
    const size_t n = 2048;
    const int K = 128;
    Buf p = buf_new(n, 1, 0), g = buf_new(n, 0, 0), m = buf_new(n, 0, 0), v = buf_new(n, 0, 0), pc = buf_c(n, 0, 1);
    for (size_t i = 0; i < n; i++) {
        const double frac = 0.05 + 0.4 * (urand() + 1) / 2, step = ldexp(1.0, -7);   // bf16 step in [1, 2)
        p.f[i] = (float)((i % 2 ? -1 : 1) * (1 + step * ((double)(i % 64) + frac)));
        g.f[i] = m.f[i] = v.f[i] = 0;
    }
    put(&p); put(&g); put(&m); put(&v);
    const AdamWTensors tens = {1, {n}, 0u, 0, 0};
    double *sum = calloc(n, sizeof(double));
    double bias[2];
    for (int mode = 0; mode < 2; mode++) {   // 0: stochastic, 1: to nearest (seed 0)
        memset(sum, 0, n * sizeof(double));
        for (int k = 0; k < K; k++) {
            const AdamWHyper h = {0.0f, 0.9f, 0.95f, 1e-8f, 0.0f, 1.0f, 0, k + 1, mode ? 0u : 2654435761u * (k + 1) | 1u};
            op_adamw_step(&GPU, p.dev, pc.dev, g.dev, m.dev, v.dev, 0, n, &tens, &h, NULL, NULL);
            fetch(&pc);
            for (size_t i = 0; i < n; i++) sum[i] += pc.f[i];
        }
        const double step = ldexp(1.0, -7), se = step / (2 * sqrt((double)K));   // sd of one element's mean <= se
        double worst = 0, total = 0;
        for (size_t i = 0; i < n; i++) {
            const double e = (sum[i] / K - p.f[i]) * (i % 2 ? -1 : 1);   // signed toward larger magnitude
            worst = fmax(worst, fabs(e) / se);
            total += e;
        }
        bias[mode] = fabs(total / n) / (se / sqrt((double)n));
        if (mode == 0) {
            harness_case(worst <= 6, "adamw_step: stochastic rounding of the bf16 copy, each element's mean over 128 "
                         "seeds", "worst |mean - p| = %.2f standard errors (<= 6)", worst);
            harness_case(bias[0] <= 5, "adamw_step: stochastic rounding unbiased over 2048 elements x 128 seeds",
                         "|mean error| = %.2f standard errors (<= 5)", bias[0]);
        }
    }
    harness_case(bias[1] > 5, "stochastic-rounding statistic: round-to-nearest (seed 0) fails it",
                 "|mean error| = %.1f standard errors (> 5)", bias[1]);
    free(sum);
    buf_free(&p); buf_free(&g); buf_free(&m); buf_free(&v); buf_free(&pc);
}

// ---- the whole model: GPU vs CPU from the same weights and batches ----

static float *state(GPT *g, GPTState which) {
    float *h = malloc(g->mem.num_params * sizeof(float));
    gpt_state_to_host(g, which, h);
    return h;
}

static float *grads_host(GPT *g) {
    float *h = malloc(g->mem.num_params * sizeof(float));
    gpt_grads_to_host(g, h);
    return h;
}

static double max_rel(const float *a, const float *b, size_t n) {
    double ss = 0, worst = 0;
    for (size_t i = 0; i < n; i++) ss += (double)b[i] * b[i];
    const double atol = sqrt(ss / (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) return INFINITY;
        double e = fabs((double)a[i] - b[i]) / (atol + fabs((double)b[i]));
        if (e > worst) worst = e;
    }
    return worst;
}

// The micro model with a character vocabulary, as the CPU tests use.
static GPTConfig micro_config(void) {
    GPTConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    char err[256];
    gpt_config_preset(&cfg, "micro");
    cfg.vocab_size = 65;
    gpt_config_finalize(&cfg, err, sizeof err);
    return cfg;
}

static void test_model(const char *prec, double tol, double wtol) {
    GPTConfig cfg = micro_config();
    char err[256];
    const int B = 4, T = 32, steps = 10;
    Backend cpu;
    backend_init(&cpu, BACKEND_CPU_REF, 0);
    GPT gc, gg;
    gpt_create(&gc, &cfg, &cpu, B, T, RECOMPUTE_NONE, ATTN_NAIVE, err, sizeof err);
    gpt_create(&gg, &cfg, &GPU, B, T, RECOMPUTE_NONE, ATTN_NAIVE, err, sizeof err);
    gpt_init_weights(&gc, 7);
    gpt_init_weights(&gg, 7);
    int32_t in[4 * 32], tg[4 * 32];
    double worst_loss = 0, worst_grad = 0;
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < B * T; i++) { in[i] = (int)((urand() + 1) * 32) % 65; tg[i] = (in[i] * 7 + s) % 65; }
        gpt_zero_grad(&gc);
        gpt_zero_grad(&gg);
        float lc = gpt_forward(&gc, in, tg, B, T, 1.0f / (B * T));
        float lg = gpt_forward(&gg, in, tg, B, T, 1.0f / (B * T));
        gpt_backward(&gc);
        gpt_backward(&gg);
        double e = fabs((double)lg - lc) / fabs((double)lc);
        if (!(e <= worst_loss)) worst_loss = e;
        if (s == 0) {
            float *a = grads_host(&gg), *b = grads_host(&gc);
            worst_grad = max_rel(a, b, gc.mem.num_params);
            free(a);
            free(b);
        }
        float nc = gpt_grad_norm(&gc), ng = gpt_grad_norm(&gg);
        float clip = 0.5f;
        gpt_adamw_step(&gc, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, nc > clip ? clip / nc : 1.0f);
        gpt_adamw_step(&gg, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, ng > clip ? clip / ng : 1.0f);
    }
    char name[128];
    snprintf(name, sizeof name, "model [%s]: losses of 10 steps vs the CPU", prec);
    harness_case(worst_loss <= tol, name, "max relative difference %.3g (<= %g)", worst_loss, tol);
    snprintf(name, sizeof name, "model [%s]: every gradient of step 1 vs the CPU", prec);
    harness_case(worst_grad <= tol, name, "max error %.3g (<= %g, relative to |ref| + rms)", worst_grad, tol);
    float *pa = state(&gg, GPT_STATE_PARAMS), *pb = state(&gc, GPT_STATE_PARAMS);
    double wp = max_rel(pa, pb, gc.mem.num_params);
    snprintf(name, sizeof name, "model [%s]: weights after 10 AdamW steps (clipped) vs the CPU", prec);
    harness_case(wp <= wtol, name, "max error %.3g (<= %g)", wp, wtol);
    free(pa);
    free(pb);
    gpt_destroy(&gc);
    gpt_destroy(&gg);
}

// bf16 training against fp32: the micro model (L=2) for 50 steps of AdamW (lr 1e-3, clip 1) on the same batches, the
// GPU in the bf16 data path (flash attention; weights' copy stochastically rounded) beside the CPU in fp32, from the
// same weights. The bound, derived (first order, not a proof): a bf16 store keeps 8 significant bits, a relative
// error of at most u = 2^-8 (to nearest). One token's forward rounds R = 2 + 8L stored tensors in sequence on its way
// to the loss (the embedding sum and the logits; per block ln1, qkv, the attention output, the projection with its
// residual sum, ln2, fc, GELU, the projection with its residual sum), independent relative errors that add in the
// logits like a random walk, u sqrt(R); the cross-entropy's derivative in a logit is at most 1 in magnitude, so the
// loss moves by about that relative to itself. The backward rounds as many values again, and the update follows the
// gradient, so the bound takes the term twice, 2u sqrt(R) |loss| (L = 2: 3.3% of the loss), plus 1% of the loss's
// drop over the run for the weights drifting apart in 50 steps of AdamW at lr 1e-3. Both runs must also learn (the
// last 10 steps' mean 5% below the first step's loss), so the curves compared are not two stalled ones.
static void test_bf16_training(void) {
    GPTConfig cfg = micro_config();
    char err[256];
    const int B = 4, T = 32, steps = 50, L = cfg.n_layer;
    Backend cpu;
    backend_init(&cpu, BACKEND_CPU_REF, 0);
    GPT gc, gg;
    gpt_create(&gc, &cfg, &cpu, B, T, RECOMPUTE_NONE, ATTN_NAIVE, err, sizeof err);
    if (gpt_create(&gg, &cfg, &GPU, B, T, RECOMPUTE_NONE, ATTN_FLASH, err, sizeof err)) {
        harness_case(0, "bf16 training: gpt_create", "%s", err);
        return;
    }
    gpt_init_weights(&gc, 11);
    gpt_init_weights(&gg, 11);
    float lc[50], lg[50];
    int32_t in[4 * 32], tg[4 * 32];
    for (int s = 0; s < steps; s++) {
        // a learnable stream: the next character of a short repeating text, offset per row and step
        static const char text[] = "to be, or not to be, that is the question: whether tis nobler in the mind ";
        const int len = (int)sizeof text - 1;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                const int k = (b * 17 + s * 5 + t) % len;
                in[b * T + t] = (unsigned char)text[k] % 65;
                tg[b * T + t] = (unsigned char)text[(k + 1) % len] % 65;
            }
        gpt_zero_grad(&gc);
        gpt_zero_grad(&gg);
        lc[s] = gpt_forward(&gc, in, tg, B, T, 1.0f / (B * T));
        lg[s] = gpt_forward(&gg, in, tg, B, T, 1.0f / (B * T));
        gpt_backward(&gc);
        gpt_backward(&gg);
        gpt_adamw_step_clipped(&gc, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0, 1.0f, 0, NULL);
        gpt_adamw_step_clipped(&gg, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0, 1.0f, 0, NULL);
    }
    const double u = ldexp(1.0, -8), R = 2 + 8.0 * L, first = 2 * u * sqrt(R);
    double worst = 0, drop = 0, endc = 0, endg = 0;
    int at = 0;
    for (int s = steps - 10; s < steps; s++) { endc += lc[s] / 10; endg += lg[s] / 10; }
    drop = lc[0] - endc;
    for (int s = 0; s < steps; s++) {
        const double bound = first * lc[s] + 0.01 * fabs(drop);
        const double e = fabs((double)lg[s] - lc[s]) / bound;
        if (!(e <= worst)) { worst = e; at = s; }
    }
    char n1[128], n2[160];
    snprintf(n1, sizeof n1, "bf16 training (%s gradients): both runs learn over 50 steps", dtype_name(GPU.grad_dtype));
    snprintf(n2, sizeof n2, "bf16 training (%s gradients): 50 steps' losses within the derived bound of the fp32 CPU's",
             dtype_name(GPU.grad_dtype));
    harness_case(endc < 0.95 * lc[0] && endg < 0.95 * lg[0], n1,
                 "fp32 CPU %.4f -> %.4f, bf16 GPU %.4f -> %.4f (last 10 steps' mean)", lc[0], endc, lg[0], endg);
    harness_case(worst <= 1, n2,
                 "worst %.3g of the bound at step %d (%.6f vs %.6f; bound 2u sqrt(2+8L) |loss| + 1%% of the drop = "
                 "%.3g)", worst, at + 1, lg[at], lc[at], first * lc[at] + 0.01 * fabs(drop));
    gpt_destroy(&gc);
    gpt_destroy(&gg);
}

// Recompute modes give bitwise-identical gradients on the GPU; two identical runs give identical losses.
static void test_determinism(void) {
    GPTConfig cfg = micro_config();
    char err[256];
    const int B = 4, T = 32;
    int32_t in[4 * 32], tg[4 * 32];
    for (int i = 0; i < B * T; i++) { in[i] = (int)((urand() + 1) * 32) % 65; tg[i] = (in[i] + 1) % 65; }
    float *g0 = NULL;
    int same = 1;
    for (int rc = 0; rc < 3; rc++) {
        GPT g;
        gpt_create(&g, &cfg, &GPU, B, T, (RecomputeMode)rc, ATTN_NAIVE, err, sizeof err);
        gpt_init_weights(&g, 3);
        gpt_zero_grad(&g);
        gpt_forward(&g, in, tg, B, T, 1.0f / (B * T));
        gpt_backward(&g);
        float *gr = grads_host(&g);
        if (!g0) g0 = gr;
        else {
            if (memcmp(g0, gr, g.mem.num_params * sizeof(float))) same = 0;
            free(gr);
        }
        gpt_destroy(&g);
    }
    free(g0);
    harness_case(same, "recompute none/selective/full: bitwise-identical GPU gradients", "micro, B=4 T=32, %s",
                 dtype_name(GPU.dtype));
    float losses[2][5];
    for (int run = 0; run < 2; run++) {
        GPT g;
        gpt_create(&g, &cfg, &GPU, B, T, RECOMPUTE_NONE, ATTN_NAIVE, err, sizeof err);
        gpt_init_weights(&g, 3);
        for (int s = 0; s < 5; s++) {
            gpt_zero_grad(&g);
            losses[run][s] = gpt_forward(&g, in, tg, B, T, 1.0f / (B * T));
            gpt_backward(&g);
            gpt_adamw_step(&g, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f);
        }
        gpt_destroy(&g);
    }
    harness_case(!memcmp(losses[0], losses[1], sizeof losses[0]), "two identical GPU runs: bitwise-identical losses",
                 "5 steps: %.9g ... %.9g, %s", losses[0][0], losses[0][4], dtype_name(GPU.dtype));
}

// What gpt_create allocates is what the planner said, in the backend's compute dtype, for every recompute mode and
// attention kind; and in bf16 the activations take (about) half of fp32's (the fp32 statistics stay).
static void test_plan_bytes(void) {
    GPTConfig cfg = micro_config();
    char err[256];
    int same = 1;
    size_t planned = 0, got = 0, acts[2] = {0, 0};
    for (int rc = 0; rc < 3; rc++)
        for (int a = 0; a < 2; a++) {
            GPT g;
            const size_t before = GPU.bytes_allocated;
            if (gpt_create(&g, &cfg, &GPU, 4, 32, (RecomputeMode)rc, (AttentionKind)a, err, sizeof err)) {
                harness_case(0, "gpt_create", "%s", err);
                return;
            }
            planned = gpt_memory_total(&g.mem, (RecomputeMode)rc);
            got = GPU.bytes_allocated - before;
            if (planned != got || g.mem.dtype != GPU.dtype || g.mem.grad_dtype != GPU.grad_dtype ||
                g.mem.grad_bytes != g.mem.num_params * dtype_bytes(GPU.grad_dtype))
                same = 0;
            gpt_destroy(&g);
            GPU.bytes_allocated = before;
        }
    for (int d = 0; d < 2; d++) {
        GPTMemory m;
        gpt_memory_plan(&cfg, 4, 32, ATTN_NAIVE, d ? DTYPE_BF16 : DTYPE_F32, DTYPE_F32, &m);
        acts[d] = m.act_bytes[RECOMPUTE_NONE];
    }
    char name[128];
    snprintf(name, sizeof name, "gpt_create [%s, %s gradients]: allocated bytes = planned bytes, 3 recompute modes x 2 "
             "attentions", dtype_name(GPU.dtype), dtype_name(GPU.grad_dtype));
    harness_case(same, name, "last: planned %zu, allocated %zu", planned, got);
    // ZeRO-1: each rank of 3 allocates its plan (gpt_memory_shard): the moments, and under a bf16 copy the master,
    // one aligned shard; the gradients and the weights the ops read whole, padded to 3 shards.
    int sharded_ok = 1;
    size_t sp = 0, sg = 0;
    for (int r = 0; r < 3; r++) {
        GPT g;
        const size_t before = GPU.bytes_allocated;
        if (gpt_create_sharded(&g, &cfg, &GPU, 4, 32, RECOMPUTE_NONE, ATTN_NAIVE, r, 3, err, sizeof err)) {
            harness_case(0, "gpt_create_sharded", "%s", err);
            return;
        }
        const GPTMemory *m = &g.mem;
        sp = gpt_memory_total(m, RECOMPUTE_NONE);
        sg = GPU.bytes_allocated - before;
        const size_t padded = 3 * m->shard;
        if (sp != sg || m->shards != 3 || m->shard % GPT_SHARD_ALIGN || padded < m->num_params ||
            padded - m->num_params >= 3 * GPT_SHARD_ALIGN + 3 || m->optim_bytes != 8 * m->shard ||
            m->grad_bytes != padded * dtype_bytes(GPU.grad_dtype) ||
            m->param_bytes != (GPU.dtype == DTYPE_F32 ? padded : m->shard) * sizeof(float) ||
            g.shard_lo != (size_t)r * m->shard || g.shard_hi != (r == 2 ? m->num_params : g.shard_lo + m->shard))
            sharded_ok = 0;
        gpt_destroy(&g);
        GPU.bytes_allocated = before;
    }
    harness_case(sharded_ok, "gpt_create_sharded (ZeRO-1, 3 ranks): each rank allocates its plan; moments (bf16: and "
                 "master) one aligned shard, gradients and the ops' weights padded to 3 shards",
                 "last: planned %zu, allocated %zu", sp, sg);
    harness_case(acts[1] * 2 > acts[0] && acts[1] * 2 < acts[0] * 21 / 20,
                 "plan: bf16 activations are half of fp32's but for the fp32 statistics (within 5%)",
                 "bf16 %zu vs fp32 %zu bytes", acts[1], acts[0]);
}

// One forward + backward from seed-3 weights; the gradients on the host.
static float *grads_of(const GPTConfig *cfg, int B, int T, RecomputeMode rc, AttentionKind attn, const int32_t *in,
                       const int32_t *tg, int micro) {
    char err[256];
    GPT g;
    if (gpt_create(&g, cfg, &GPU, B / micro, T, rc, attn, err, sizeof err)) {
        harness_case(0, "gpt_create", "%s", err);
        return NULL;
    }
    gpt_init_weights(&g, 3);
    gpt_zero_grad(&g);
    const int b = B / micro;
    for (int m = 0; m < micro; m++) {   // gradient accumulation: micro-steps of B / micro rows, one mean loss
        gpt_forward(&g, in + (size_t)m * b * T, tg + (size_t)m * b * T, b, T, 1.0f / (B * T));
        gpt_backward(&g);
    }
    float *gr = grads_host(&g);
    gpt_destroy(&g);
    return gr;
}

static GPTConfig shape_config(int C, int NH) {
    GPTConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    char err[256];
    gpt_config_preset(&cfg, "micro");
    cfg.vocab_size = 65;
    cfg.d_model = C;
    cfg.n_head = NH;
    cfg.d_ff = 4 * C;
    gpt_config_finalize(&cfg, err, sizeof err);
    return cfg;
}

// Flash attention in the model (head size 32: the sm80 kernels; 64: on compute capability 9 the sm90 forward):
// gradients against naive attention's, --deterministic on bitwise repeatable, recompute full bitwise equal to none.
static void test_flash_model(int C, int NH) {
    GPTConfig cfg = shape_config(C, NH);
    const int B = 2, T = 32;
    int32_t in[2 * 32], tg[2 * 32];
    for (int i = 0; i < B * T; i++) { in[i] = (int)((urand() + 1) * 32) % 65; tg[i] = (in[i] * 5 + 1) % 65; }
    char name[160];
    const size_t n = (size_t)gpt_plan_params(&cfg, (ParamInfo[NUM_PARAM_TENSORS]){{0}});
    float *naive = grads_of(&cfg, B, T, RECOMPUTE_NONE, ATTN_NAIVE, in, tg, 1);
    float *flash = grads_of(&cfg, B, T, RECOMPUTE_NONE, ATTN_FLASH, in, tg, 1);
    GPU.deterministic = 1;
    float *det1 = grads_of(&cfg, B, T, RECOMPUTE_NONE, ATTN_FLASH, in, tg, 1);
    float *det2 = grads_of(&cfg, B, T, RECOMPUTE_NONE, ATTN_FLASH, in, tg, 1);
    float *full = grads_of(&cfg, B, T, RECOMPUTE_FULL, ATTN_FLASH, in, tg, 1);
    GPU.deterministic = 0;
    if (!naive || !flash || !det1 || !det2 || !full) return;
    // fp32 storage: the flash kernels' bf16 inputs against fp32 naive attention, 2e-2; bf16 storage: both in bf16,
    // rounding at different places (naive stores S and P), the model test's bf16 gradient scale, 0.1
    const double e = max_rel(flash, naive, n), tol = STORE ? 0.1 : 2e-2;
    snprintf(name, sizeof name, "model C=%d NH=%d (head size %d) [%s]: flash gradients vs naive attention's", C, NH,
             C / NH, dtype_name(GPU.dtype));
    harness_case(e <= tol, name, "max error %.3g (<= %g, relative to |ref| + rms)", e, tol);
    snprintf(name, sizeof name, "model C=%d NH=%d: flash --deterministic on, two runs bitwise equal", C, NH);
    harness_case(!memcmp(det1, det2, n * sizeof(float)), name, "%zu gradients", n);
    snprintf(name, sizeof name, "model C=%d NH=%d: flash, recompute full bitwise equal to none (deterministic)", C, NH);
    harness_case(!memcmp(det1, full, n * sizeof(float)), name, "%zu gradients", n);
    free(naive); free(flash); free(det1); free(det2); free(full);
}

// A width whose per-layer weight slices are not 256-byte aligned in bf16 (C = 40: attproj's C·C·2 = 3200 bytes per
// layer), so the matmuls' cuBLASLt calls get operands and biases at 128-, 64- or 16-byte boundaries: the run must go
// through (cuBLASLt's heuristic told each operand's real alignment, which the emulator checks) and give the CPU's
// gradients within the bf16 model tolerance.
static void test_unaligned_model(void) {
    GPTConfig cfg = shape_config(40, 2);
    const int B = 2, T = 16;
    int32_t in[2 * 16], tg[2 * 16];
    for (int i = 0; i < B * T; i++) { in[i] = (int)((urand() + 1) * 32) % 65; tg[i] = (in[i] * 7 + 3) % 65; }
    char err[256];
    Backend cpu;
    backend_init(&cpu, BACKEND_CPU_REF, 0);
    GPT gc;
    if (gpt_create(&gc, &cfg, &cpu, B, T, RECOMPUTE_NONE, ATTN_NAIVE, err, sizeof err)) {
        harness_case(0, "gpt_create (CPU)", "%s", err);
        return;
    }
    gpt_init_weights(&gc, 3);
    gpt_zero_grad(&gc);
    gpt_forward(&gc, in, tg, B, T, 1.0f / (B * T));
    gpt_backward(&gc);
    float *want = grads_host(&gc);
    float *got = grads_of(&cfg, B, T, RECOMPUTE_NONE, ATTN_NAIVE, in, tg, 1);
    if (!got) return;
    const double e = max_rel(got, want, gc.mem.num_params), tol = STORE ? 0.15 : 1e-4;
    char name[160];
    snprintf(name, sizeof name, "model C=40 (weight slices off 256-byte boundaries) [%s, %s gradients]: gradients vs "
             "the CPU", dtype_name(GPU.dtype), dtype_name(GPU.grad_dtype));
    harness_case(e <= tol, name, "max error %.3g (<= %g, relative to |ref| + rms)", e, tol);
    free(want);
    free(got);
    gpt_destroy(&gc);
}

// Gradient accumulation: two micro-steps of B/2 rows give the gradients of one step of B (fp32 gradients: within
// 1e-5 relative to |ref| + rms). bf16 gradients: within 4u = 2^-6 relative to |ref| + the tensor's own rms (the
// tensors' gradient scales differ by 100x): each micro-step's sum is rounded to bf16 where the one step rounds once,
// up to four roundings of u/2 (two micro-steps, and two ops adding into the tied wte), each of a partial sum that can
// be a few times |ref| + rms where the micro-steps' sums cancel (measured worst: 0.008).
static void test_grad_accum(void) {
    GPTConfig cfg = micro_config();
    const int B = 4, T = 32;
    int32_t in[4 * 32], tg[4 * 32];
    for (int i = 0; i < B * T; i++) { in[i] = (int)((urand() + 1) * 32) % 65; tg[i] = (in[i] * 3 + 2) % 65; }
    const size_t n = (size_t)gpt_plan_params(&cfg, (ParamInfo[NUM_PARAM_TENSORS]){{0}});
    float *big = grads_of(&cfg, B, T, RECOMPUTE_NONE, ATTN_NAIVE, in, tg, 1);
    float *acc = grads_of(&cfg, B, T, RECOMPUTE_NONE, ATTN_NAIVE, in, tg, 2);
    if (!big || !acc) return;
    double e = GSTORE ? 0 : max_rel(acc, big, n);
    const double tol = GSTORE ? ldexp(1.0, -6) : 1e-5;
    if (GSTORE) {
        ParamInfo pi[NUM_PARAM_TENSORS];
        gpt_plan_params(&cfg, pi);
        for (int t = 0; t < NUM_PARAM_TENSORS; t++)
            e = fmax(e, max_rel(acc + pi[t].offset, big + pi[t].offset, pi[t].numel));
    }
    // Rows are independent until the parameter gradients, which add the micro-steps' sums instead of one sum over
    // all rows: the rounding of those sums (fp32, or bf16), in either compute dtype.
    char name[128];
    snprintf(name, sizeof name, "gradient accumulation [%s, %s gradients]: 2 micro-steps of B=2 = one step of B=4",
             dtype_name(GPU.dtype), dtype_name(GPU.grad_dtype));
    harness_case(e <= tol, name, "max error %.3g (<= %.3g, relative to |ref| + %s rms)", e, tol,
                 GSTORE ? "the tensor's" : "the");
    free(big);
    free(acc);
}

int main(void) {
    if (backend_cuda_device_count() <= 0) {
        printf("skipped: no GPU (cudaGetDeviceCount found none)\n");
        printf("0 passed, 0 failed\n");
        return 0;
    }
    const Shape shapes[] = {{2, 7, 24, 2, 96, 33, 128}, {3, 13, 96, 4, 384, 65, 128}, {4, 64, 128, 4, 512, 65, 128}};
    // The matmul modes on fp32 storage, then (mode 4) the mixed-precision run: bf16 storage, bf16 tensor cores, and
    // (5) the same with bf16 parameter gradients.
    const char *precs[6] = {"fp32", "tf32", "bf16 on fp32 storage", "fp16", "bf16", "bf16-grads"};
    // TEST_GPU_ONLY="fp32,bf16" runs only those passes (tests/test_emu_bugs.sh: a planted bug's pass).
    const char *only = getenv("TEST_GPU_ONLY");
    for (int p = 0; p < 6; p++) {
        char err[256];
        if (only) {
            int found = 0;
            for (const char *s = only; *s;) {
                const size_t n = strcspn(s, ",");
                if (n == strlen(precs[p]) && !strncmp(s, precs[p], n)) found = 1;
                s += n + (s[n] == ',');
            }
            if (!found) continue;
            printf("TEST_GPU_ONLY=%s: the %s pass\n", only, precs[p]);
        }
        // The TF32 pass on the emulated GPU: its cuBLASLt offers no epilogue, so every matmul takes its fallback (a
        // GEMM and our bias, GELU-backward and bias-gradient kernels); the other passes take the epilogues. (A real
        // GPU ignores the variable: which path it takes is its library's answer.)
        if (p == 1) setenv("GPTRAIN_EMU_LT_NO", "BIAS,DGELU,BGRADB", 1);
        else unsetenv("GPTRAIN_EMU_LT_NO");
        if (backend_cuda_init(&GPU, 0, p >= 4 ? 2 : p, err, sizeof err)) {
            harness_case(0, "CUDA backend init", "%s", err);
            return harness_finish();
        }
        STORE = p >= 4;
        GSTORE = p == 5;
        GPU.dtype = STORE ? DTYPE_BF16 : DTYPE_F32;
        GPU.grad_dtype = GSTORE ? DTYPE_BF16 : DTYPE_F32;
        if (p == 0) {
            char desc[512];
            backend_cuda_describe(&GPU, desc, sizeof desc);
            printf("device: %s\n", desc);
        }
        PREC = STORE ? 2 : p;
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) test_ops(&shapes[i], precs[p]);
        // The op tests bound each op's rounding tightly (twice the naive error); here the step-1 gradients of a whole
        // model, whose worst element relative to |ref| + rms is heavy-tailed (where the batch's sums cancel), and
        // moves with the inputs: seen over varied inputs tf32 0.004-0.017, fp16 0.005-0.006, bf16 on fp32 storage
        // 0.036-0.048, bf16 storage 0.070-0.103. Tolerances about 3x the worst seen: a wrong op is off by O(1).
        // The weights after 10 AdamW steps: fp32 1e-3, tf32 0.1, bf16 or fp16 on fp32 storage 0.5, bf16 storage 1.5.
        test_model(precs[p], p == 0 ? 1e-4 : p == 1 || p == 3 ? 5e-2 : p == 2 ? 0.15 : 0.3,
                   p == 0 ? 1e-3 : p == 1 ? 0.1 : p <= 3 ? 0.5 : 1.5);
        if (STORE) {
            if (!GSTORE) test_stochastic_rounding();   // (the weights' copy: the same in both bf16 passes)
            test_determinism();
            test_bf16_training();
            test_flash_model(128, 2);   // head size 64: the sm90 forward reading the bf16 qkv in place (emulated sm_90)
            test_grad_accum();
            test_unaligned_model();
        }
        if (p == 0 || STORE) test_plan_bytes();
        if (p == 0) {
            test_reductions(3, 700, 40, 5);
            test_determinism();
            test_grad_accum();
            test_flash_model(64, 2);
            test_flash_model(128, 2);
            test_unaligned_model();
        }
    }
    return harness_finish();
}
#endif
