/*
 * selfcheck.c: the GPU self-check before a run's first step. Our CUDA kernels are tested on an emulated device that
 * follows the documentation; a new GPU, driver or toolkit can differ from it, and a run that trains silently wrong
 * is the worst outcome for a user. So every GPU run first runs each op it will use (ops.h), in its precision and
 * attention kind, on small fresh random inputs on its own GPU backend, and the same op on the CPU reference backend
 * (kernels/cpu, the plain loops) on the same inputs, and compares every output.
 *
 * Shapes: B = 2, T = 37 (no multiple of any tile), C = 40 and F = 160 for the row-wise ops and the matmuls (K and M
 * no multiple of 16 beyond 8, the bf16 GEMMs' alignment), V = 97 padded to 128; the attention with the run's head
 * size and 2 heads. Written outputs are poisoned with NaN bytes on the GPU first; accumulated ones (+=) start from
 * the same random values on both sides. Inputs are rounded to what the GPU stores (bf16 with --precision bf16) and,
 * for the tensor-core products, to what the tensor cores read (TF32, fp16 or bf16, and bf16 for the flash kernels),
 * so both sides compute from the same numbers and only accumulation order and output rounding differ.
 * Bounds (STYLE.md's ceilings, in harness_compare's form |gpu - cpu| <= rtol (|cpu| + rms(cpu)); NaN never passes):
 * 1e-4 for fp32 work, 1e-3 for TF32 products, 1e-2 for fp16 and bf16 products, for everything stored in bf16, for
 * the flash kernels (bf16 tensor cores inside) and for naive attention off exact fp32 (its probabilities are
 * rounded to the tensor cores' precision between its two products).
 * Cost: about 30 small launches and 1 MB of device memory, well under a second on a GPU.
 */
#include "selfcheck.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

enum { SC_B = 2, SC_T = 37, SC_C = 40, SC_F = 160, SC_V = 97, SC_VP = 128, SC_NH = 2 };

// Op families, for the summary line.
enum { FAM_ENCODER, FAM_LAYERNORM, FAM_MATMUL, FAM_ATTENTION, FAM_ELEMENTWISE, FAM_CLASSIFIER, FAM_OPTIMIZER, NFAM };
static const char *const FAM_NAMES[NFAM] = {"encoder", "layernorm", "matmul", "attention", "gelu/residual/dropout",
                                            "classifier", "adamw/norm"};

// Element kinds of a buffer: fp32 on both sides, the compute dtype (ops.h `void *`), the gradients' (`Grad *`),
// or int32 tokens.
typedef enum { K_F32, K_COMPUTE, K_GRAD, K_I32 } Kind;

typedef struct Check {
    Backend *gpu, cpu;
    const SelfCheckSpec *spec;
    uint64_t rng;
    double worst[NFAM];
    int ops, failed;
    char *line;
    size_t n;
} Check;

// One tensor on both backends, and its host copy (the inputs' values, or the CPU's output after a fetch).
typedef struct Pair {
    Kind kind;
    size_t n;
    float *h;
    void *c, *g;
} Pair;

static double urand(Check *k) {   // uniform in [-1, 1): xorshift64
    k->rng ^= k->rng << 13;
    k->rng ^= k->rng >> 7;
    k->rng ^= k->rng << 17;
    return (double)(k->rng >> 11) / 4503599627370496.0 - 1.0;
}

static int gpu_bf16(const Check *k, Kind kind) {
    return (kind == K_COMPUTE && k->gpu->dtype == DTYPE_BF16) || (kind == K_GRAD && k->gpu->grad_dtype == DTYPE_BF16);
}

// x rounded to `bits` mantissa bits, to nearest even (values below 2^-14 become 0, which fp16 would make
// subnormal); bits 23 is x itself.
static float round_mantissa(float x, int bits) {
    if (bits >= 23) return x;
    if (fabsf(x) < 6.103515625e-05f) return 0.0f;
    uint32_t u;
    memcpy(&u, &x, 4);
    const int drop = 23 - bits;
    u += (1u << (drop - 1)) - 1 + ((u >> drop) & 1u);
    u &= ~((1u << drop) - 1);
    memcpy(&x, &u, 4);
    return x;
}

// The mantissa bits the GPU's products read their inputs with: fp32 23, TF32 and fp16 10, bf16 7.
static int product_bits(const Check *k) {
    static const int bits[4] = {23, 10, 7, 10};
    return bits[k->spec->matmul_mode & 3];
}

static size_t kind_bytes(const Check *k, Kind kind, int gpu) {
    if (kind == K_I32) return 4;
    return gpu && gpu_bf16(k, kind) ? 2 : 4;
}

// The host values into both backends' buffers (converted to bf16 for the GPU where it stores bf16).
static void upload(Check *k, Pair *p) {
    backend_to_device(&k->cpu, p->c, p->h, p->n * 4);
    if (!gpu_bf16(k, p->kind)) {
        backend_to_device(k->gpu, p->g, p->h, p->n * 4);
        return;
    }
    uint16_t *b = malloc(p->n * sizeof *b);
    for (size_t i = 0; i < p->n; i++) b[i] = dtype_bf16_from_f32(p->h[i]);
    backend_to_device(k->gpu, p->g, b, p->n * sizeof *b);
    free(b);
}

// A tensor of n elements. fill 0: an output, poisoned on the GPU (NaN bytes), zero on the CPU; else uniform random
// values times `fill`, rounded to what the GPU stores, and to `bits` mantissa bits (a product's input), on both.
static Pair pair(Check *k, Kind kind, size_t n, double fill, int bits) {
    Pair p = {kind, n, calloc(n, 4), NULL, NULL};
    p.c = backend_alloc(&k->cpu, n * 4, "self-check");
    p.g = backend_alloc(k->gpu, n * kind_bytes(k, kind, 1), "self-check");
    if (fill == 0) {
        unsigned char *poison = malloc(n * 4);
        memset(poison, 0xff, n * 4);
        backend_to_device(k->gpu, p.g, poison, n * kind_bytes(k, kind, 1));
        free(poison);
        return p;
    }
    for (size_t i = 0; i < n; i++) {
        float v = (float)(fill * urand(k));
        if (gpu_bf16(k, kind)) v = dtype_bf16_to_f32(dtype_bf16_from_f32(v));
        p.h[i] = round_mantissa(v, bits);
    }
    upload(k, &p);
    return p;
}

// Tokens in [0, V) on both backends.
static Pair tokens(Check *k, size_t n, int V) {
    Pair p = {K_I32, n, calloc(n, 4), NULL, NULL};
    int32_t *t = (int32_t *)p.h;
    for (size_t i = 0; i < n; i++) t[i] = (int32_t)((urand(k) + 1.0) * 0.5 * V) % V;
    p.c = backend_alloc(&k->cpu, n * 4, "self-check");
    p.g = backend_alloc(k->gpu, n * 4, "self-check");
    backend_to_device(&k->cpu, p.c, p.h, n * 4);
    backend_to_device(k->gpu, p.g, p.h, n * 4);
    return p;
}

static void release(Check *k, Pair *p) {
    backend_free(&k->cpu, p->c);
    backend_free(k->gpu, p->g);
    free(p->h);
}

// The GPU's values of p as fp32 on the host.
static float *gpu_values(Check *k, const Pair *p) {
    float *v = malloc(p->n * 4);
    if (!gpu_bf16(k, p->kind)) {
        backend_to_host(k->gpu, v, p->g, p->n * 4);
        return v;
    }
    uint16_t *b = malloc(p->n * sizeof *b);
    backend_to_host(k->gpu, b, p->g, p->n * sizeof *b);
    for (size_t i = 0; i < p->n; i++) v[i] = dtype_bf16_to_f32(b[i]);
    free(b);
    return v;
}

// Compares output p of `op` (elements where mask is NULL or mask[i]); records the worst error as a fraction of the
// bound under its family, and the first failure (the line the run refuses with). The bound is rtol (|cpu| + rms(cpu))
// elementwise, or with scale_max rtol max |cpu| (test_flash's bf16 ceiling for attention: under the causal mask the
// rows' scales differ by ~sqrt(T), and the bf16 rounding of P between the products is relative to the largest).
static void compare_scaled(Check *k, int fam, const char *op, const char *what, const Pair *p, double rtol,
                           const unsigned char *mask, int scale_max) {
    float *g = gpu_values(k, p), *c = malloc(p->n * 4);
    backend_to_host(&k->cpu, c, p->c, p->n * 4);
    double ss = 0, mx = 0;
    size_t m = 0;
    for (size_t i = 0; i < p->n; i++)
        if (!mask || mask[i]) ss += (double)c[i] * c[i], mx = fmax(mx, fabs(c[i])), m++;
    const double rms = m ? sqrt(ss / m) : 0;
    double worst = 0, err = 0;
    size_t at = 0;
    for (size_t i = 0; i < p->n; i++) {
        if (mask && !mask[i]) continue;
        const double e = fabs((double)g[i] - c[i]);
        const double bound = (scale_max ? rtol * mx : rtol * (fabs(c[i]) + rms)) + 1e-30;
        const double r = isnan(e) ? INFINITY : e / bound;
        if (r > worst || i == 0) worst = r, err = e, at = i;
    }
    k->ops++;
    if (worst > k->worst[fam]) k->worst[fam] = worst;
    if (worst > 1.0 && !k->failed) {
        k->failed = 1;
        snprintf(k->line, k->n,
                 "self-check: %s (%s) on this GPU differs from the CPU reference: error %.3g at element %zu (GPU %.6g, "
                 "CPU %.6g) against the bound %.3g (rtol %g); refusing to train: use --device cpu, or --self-check "
                 "off to train on the GPU anyway",
                 op, what, err, at, (double)g[at], (double)c[at], scale_max ? rtol * mx : rtol * (fabs(c[at]) + rms),
                 rtol);
    }
    free(g);
    free(c);
}
static void compare(Check *k, int fam, const char *op, const char *what, const Pair *p, double rtol,
                    const unsigned char *mask) {
    compare_scaled(k, fam, op, what, p, rtol, mask, 0);
}

// Copies the CPU's output values into the host copy and both backends (an input of the next op).
static void carry(Check *k, Pair *p) {
    backend_to_host(&k->cpu, p->h, p->c, p->n * 4);
    if (gpu_bf16(k, p->kind))
        for (size_t i = 0; i < p->n; i++) p->h[i] = dtype_bf16_to_f32(dtype_bf16_from_f32(p->h[i]));
    upload(k, p);
}

// The row-wise, elementwise and embedding ops.
static void check_basic(Check *k, double r_store) {
    const int B = SC_B, T = SC_T, C = SC_C, N = B * T, maxT = 48;
    Pair tok = tokens(k, (size_t)N, SC_V);
    Pair wte = pair(k, K_COMPUTE, (size_t)SC_VP * C, 1, 23), wpe = pair(k, K_COMPUTE, (size_t)maxT * C, 1, 23);
    Pair out = pair(k, K_COMPUTE, (size_t)N * C, 0, 23);
    op_encoder_forward(&k->cpu, out.c, tok.c, wte.c, wpe.c, B, T, C);
    op_encoder_forward(k->gpu, out.g, tok.g, wte.g, wpe.g, B, T, C);
    compare(k, FAM_ENCODER, "encoder_forward", "out", &out, r_store, NULL);
    Pair dout = pair(k, K_COMPUTE, (size_t)N * C, 1, 23);
    Pair dwte = pair(k, K_GRAD, (size_t)SC_VP * C, 1, 23), dwpe = pair(k, K_GRAD, (size_t)maxT * C, 1, 23);
    Pair work = pair(k, K_F32, ENCODER_WORK_FLOATS(N), 0, 23);
    op_encoder_backward(&k->cpu, dwte.c, dwpe.c, work.c, dout.c, tok.c, B, T, C);
    op_encoder_backward(k->gpu, dwte.g, dwpe.g, work.g, dout.g, tok.g, B, T, C);
    compare(k, FAM_ENCODER, "encoder_backward", "dwte", &dwte, r_store, NULL);
    compare(k, FAM_ENCODER, "encoder_backward", "dwpe", &dwpe, r_store, NULL);
    release(k, &tok), release(k, &wte), release(k, &wpe), release(k, &dwte), release(k, &dwpe), release(k, &work);

    // LayerNorm forward, the fused residual + LayerNorm, and the backward from the forward's statistics.
    Pair a = pair(k, K_COMPUTE, (size_t)N * C, 1, 23), b = pair(k, K_COMPUTE, (size_t)N * C, 1, 23);
    Pair w = pair(k, K_COMPUTE, C, 1, 23), bias = pair(k, K_COMPUTE, C, 1, 23);
    Pair mean = pair(k, K_F32, N, 0, 23), rstd = pair(k, K_F32, N, 0, 23), resid = pair(k, K_COMPUTE, (size_t)N * C, 0, 23);
    op_layernorm_forward(&k->cpu, out.c, mean.c, rstd.c, a.c, w.c, bias.c, N, C);
    op_layernorm_forward(k->gpu, out.g, mean.g, rstd.g, a.g, w.g, bias.g, N, C);
    compare(k, FAM_LAYERNORM, "layernorm_forward", "out", &out, r_store, NULL);
    compare(k, FAM_LAYERNORM, "layernorm_forward", "mean", &mean, r_store, NULL);
    compare(k, FAM_LAYERNORM, "layernorm_forward", "rstd", &rstd, r_store, NULL);
    op_residual_layernorm_forward(&k->cpu, resid.c, out.c, mean.c, rstd.c, a.c, b.c, w.c, bias.c, N, C);
    op_residual_layernorm_forward(k->gpu, resid.g, out.g, mean.g, rstd.g, a.g, b.g, w.g, bias.g, N, C);
    compare(k, FAM_LAYERNORM, "residual_layernorm_forward", "resid", &resid, r_store, NULL);
    compare(k, FAM_LAYERNORM, "residual_layernorm_forward", "out", &out, r_store, NULL);
    carry(k, &mean), carry(k, &rstd);   // the backward's statistics: the same on both sides
    Pair dinp = pair(k, K_COMPUTE, (size_t)N * C, 1, 23);   // += (the residual stream's gradient)
    Pair dw = pair(k, K_GRAD, C, 1, 23), db = pair(k, K_GRAD, C, 1, 23);
    op_layernorm_backward(&k->cpu, dinp.c, dw.c, db.c, dout.c, a.c, w.c, mean.c, rstd.c, N, C);
    op_layernorm_backward(k->gpu, dinp.g, dw.g, db.g, dout.g, a.g, w.g, mean.g, rstd.g, N, C);
    compare(k, FAM_LAYERNORM, "layernorm_backward", "dinp", &dinp, r_store, NULL);
    compare(k, FAM_LAYERNORM, "layernorm_backward", "dw", &dw, r_store, NULL);
    compare(k, FAM_LAYERNORM, "layernorm_backward", "db", &db, r_store, NULL);
    release(k, &w), release(k, &bias), release(k, &mean), release(k, &rstd), release(k, &dw), release(k, &db);

    // Elementwise: GELU forward and backward, the residual add, dropout (when the run drops).
    const size_t n = (size_t)N * C;
    op_gelu_forward(&k->cpu, out.c, a.c, n);
    op_gelu_forward(k->gpu, out.g, a.g, n);
    compare(k, FAM_ELEMENTWISE, "gelu_forward", "out", &out, r_store, NULL);
    op_gelu_backward(&k->cpu, dinp.c, a.c, dout.c, n);
    op_gelu_backward(k->gpu, dinp.g, a.g, dout.g, n);
    compare(k, FAM_ELEMENTWISE, "gelu_backward", "dinp", &dinp, r_store, NULL);
    op_residual_forward(&k->cpu, resid.c, a.c, b.c, n);
    op_residual_forward(k->gpu, resid.g, a.g, b.g, n);
    compare(k, FAM_ELEMENTWISE, "residual_forward", "out", &resid, r_store, NULL);
    if (k->spec->dropout > 0) {
        op_dropout(&k->cpu, out.c, a.c, n, k->spec->dropout, 0x5e1fc4ec);
        op_dropout(k->gpu, out.g, a.g, n, k->spec->dropout, 0x5e1fc4ec);
        compare(k, FAM_ELEMENTWISE, "dropout", "out", &out, r_store, NULL);
    }
    release(k, &a), release(k, &b), release(k, &out), release(k, &dout), release(k, &dinp), release(k, &resid);
}

// The matmuls: forward with and without bias, the backward (dinp written, dw and dbias accumulated), and the MLP's
// down projection backward with GELU's fused in.
static void check_matmul(Check *k, double r_mm) {
    const int N = SC_B * SC_T, K = SC_C, M = SC_F, bits = product_bits(k);
    Pair inp = pair(k, K_COMPUTE, (size_t)N * K, 1, bits), w = pair(k, K_COMPUTE, (size_t)M * K, 1, bits);
    Pair bias = pair(k, K_COMPUTE, M, 1, bits), out = pair(k, K_COMPUTE, (size_t)N * M, 0, 23);
    op_matmul_forward(&k->cpu, out.c, inp.c, w.c, bias.c, N, K, M);
    op_matmul_forward(k->gpu, out.g, inp.g, w.g, bias.g, N, K, M);
    compare(k, FAM_MATMUL, "matmul_forward", "out (with bias)", &out, r_mm, NULL);
    op_matmul_forward(&k->cpu, out.c, inp.c, w.c, NULL, N, K, M);
    op_matmul_forward(k->gpu, out.g, inp.g, w.g, NULL, N, K, M);
    compare(k, FAM_MATMUL, "matmul_forward", "out (no bias)", &out, r_mm, NULL);
    Pair dout = pair(k, K_COMPUTE, (size_t)N * M, 1, bits), dinp = pair(k, K_COMPUTE, (size_t)N * K, 0, 23);
    Pair dw = pair(k, K_GRAD, (size_t)M * K, 1, 23), db = pair(k, K_GRAD, M, 1, 23);
    op_matmul_backward(&k->cpu, dinp.c, dw.c, db.c, dout.c, inp.c, w.c, N, K, M);
    op_matmul_backward(k->gpu, dinp.g, dw.g, db.g, dout.g, inp.g, w.g, N, K, M);
    compare(k, FAM_MATMUL, "matmul_backward", "dinp", &dinp, r_mm, NULL);
    compare(k, FAM_MATMUL, "matmul_backward", "dw", &dw, r_mm, NULL);
    compare(k, FAM_MATMUL, "matmul_backward", "dbias", &db, r_mm, NULL);
    // (N, F) -> (N, C): inp = gelu(pre) of width F, w (C, F)
    Pair pre = pair(k, K_COMPUTE, (size_t)N * M, 1, bits), g = pair(k, K_COMPUTE, (size_t)N * M, 0, 23);
    op_gelu_forward(&k->cpu, g.c, pre.c, (size_t)N * M);
    carry(k, &g);
    for (size_t i = 0; i < g.n; i++) g.h[i] = round_mantissa(g.h[i], bits);
    upload(k, &g);
    Pair w2 = pair(k, K_COMPUTE, (size_t)K * M, 1, bits), dout2 = pair(k, K_COMPUTE, (size_t)N * K, 1, bits);
    Pair dpre = pair(k, K_COMPUTE, (size_t)N * M, 0, 23);
    Pair dw2 = pair(k, K_GRAD, (size_t)K * M, 1, 23), db2 = pair(k, K_GRAD, K, 1, 23);
    op_matmul_backward_gelu(&k->cpu, dpre.c, dw2.c, db2.c, dout2.c, g.c, w2.c, pre.c, N, M, K);
    op_matmul_backward_gelu(k->gpu, dpre.g, dw2.g, db2.g, dout2.g, g.g, w2.g, pre.g, N, M, K);
    compare(k, FAM_MATMUL, "matmul_backward_gelu", "dinp", &dpre, r_mm, NULL);
    compare(k, FAM_MATMUL, "matmul_backward_gelu", "dw", &dw2, r_mm, NULL);
    compare(k, FAM_MATMUL, "matmul_backward_gelu", "dbias", &db2, r_mm, NULL);
    release(k, &inp), release(k, &w), release(k, &bias), release(k, &out), release(k, &dout), release(k, &dinp);
    release(k, &dw), release(k, &db), release(k, &pre), release(k, &g), release(k, &w2), release(k, &dout2);
    release(k, &dpre), release(k, &dw2), release(k, &db2);
}

// The run's attention kind, forward and backward (the backward from the CPU's forward outputs on both sides).
static void check_attention(Check *k, double r_att) {
    const int B = SC_B, T = SC_T, NH = SC_NH, C = NH * k->spec->head_size, N = B * T;
    const int flash = k->spec->attention == ATTN_FLASH, bits = flash ? 7 : product_bits(k), low = r_att > 1e-4;
    Pair qkv = pair(k, K_COMPUTE, (size_t)N * 3 * C, 1, bits), out = pair(k, K_COMPUTE, (size_t)N * C, 0, 23);
    Pair dout = pair(k, K_COMPUTE, (size_t)N * C, 1, bits), dqkv = pair(k, K_COMPUTE, (size_t)N * 3 * C, 0, 23);
    if (flash) {
        const size_t wc = FLASH_WORK_FLOATS(B, T, C, NH, 4), wg = FLASH_WORK_FLOATS(B, T, C, NH, dtype_bytes(k->gpu->dtype));
        Pair lse = pair(k, K_F32, (size_t)B * NH * T, 0, 23), work = pair(k, K_F32, wc > wg ? wc : wg, 0, 23);
        op_flash_attention_forward(&k->cpu, out.c, lse.c, work.c, qkv.c, B, T, C, NH);
        op_flash_attention_forward(k->gpu, out.g, lse.g, work.g, qkv.g, B, T, C, NH);
        compare_scaled(k, FAM_ATTENTION, "flash_attention_forward", "out", &out, r_att, NULL, low);
        compare_scaled(k, FAM_ATTENTION, "flash_attention_forward", "lse", &lse, r_att, NULL, low);
        carry(k, &out), carry(k, &lse);
        op_flash_attention_backward(&k->cpu, dqkv.c, work.c, dout.c, qkv.c, out.c, lse.c, B, T, C, NH);
        op_flash_attention_backward(k->gpu, dqkv.g, work.g, dout.g, qkv.g, out.g, lse.g, B, T, C, NH);
        compare_scaled(k, FAM_ATTENTION, "flash_attention_backward", "dqkv", &dqkv, r_att, NULL, low);
        release(k, &lse), release(k, &work);
    } else {
        const size_t na = (size_t)B * NH * T * T;
        const float p = k->spec->dropout;
        const uint64_t key = 0xa77e4710;
        Pair att = pair(k, K_COMPUTE, na, 0, 23), scratch = pair(k, K_COMPUTE, na, 0, 23);
        unsigned char *causal = malloc(na);
        for (size_t i = 0; i < na; i++) causal[i] = i % T <= (i / T) % T;
        op_attention_forward(&k->cpu, out.c, att.c, p > 0 ? scratch.c : NULL, qkv.c, B, T, C, NH, p, key);
        op_attention_forward(k->gpu, out.g, att.g, p > 0 ? scratch.g : NULL, qkv.g, B, T, C, NH, p, key);
        compare_scaled(k, FAM_ATTENTION, "attention_forward", "out", &out, r_att, NULL, low);
        compare_scaled(k, FAM_ATTENTION, "attention_forward", "att", &att, r_att, causal, low);
        backend_to_host(&k->cpu, att.h, att.c, na * 4);
        for (size_t i = 0; i < na; i++)
            if (!causal[i]) att.h[i] = 0;
            else if (gpu_bf16(k, K_COMPUTE)) att.h[i] = dtype_bf16_to_f32(dtype_bf16_from_f32(att.h[i]));
        upload(k, &att);
        op_attention_backward(&k->cpu, dqkv.c, scratch.c, dout.c, qkv.c, att.c, B, T, C, NH, p, key);
        op_attention_backward(k->gpu, dqkv.g, scratch.g, dout.g, qkv.g, att.g, B, T, C, NH, p, key);
        compare_scaled(k, FAM_ATTENTION, "attention_backward", "dqkv", &dqkv, r_att, NULL, low);
        free(causal);
        release(k, &att), release(k, &scratch);
    }
    release(k, &qkv), release(k, &out), release(k, &dout), release(k, &dqkv);
}

// The fused classifier and the loss sum; the gradient norm, its sum of squares and the AdamW step.
static void check_tail(Check *k, double r_store, double r_f32) {
    const int N = SC_B * SC_T, V = SC_V, Vp = SC_VP;
    Pair logits = pair(k, K_COMPUTE, (size_t)N * Vp, 4, 23), losses = pair(k, K_F32, N, 0, 23);
    Pair tg = tokens(k, (size_t)N, V);
    op_classifier_forward_backward(&k->cpu, losses.c, logits.c, tg.c, N, V, Vp, 1.0f / N);
    op_classifier_forward_backward(k->gpu, losses.g, logits.g, tg.g, N, V, Vp, 1.0f / N);
    compare(k, FAM_CLASSIFIER, "classifier_forward_backward", "losses", &losses, r_store, NULL);
    compare(k, FAM_CLASSIFIER, "classifier_forward_backward", "dlogits", &logits, r_store, NULL);
    carry(k, &losses);
    Pair acc = pair(k, K_F32, 2, 0, 23);   // one double (zeroed on both sides)
    const double zero = 0;
    backend_to_device(&k->cpu, acc.c, &zero, 8), backend_to_device(k->gpu, acc.g, &zero, 8);
    op_loss_accumulate(&k->cpu, acc.c, losses.c, N);
    op_loss_accumulate(k->gpu, acc.g, losses.g, N);
    double lc, lg;
    backend_to_host(&k->cpu, &lc, acc.c, 8), backend_to_host(k->gpu, &lg, acc.g, 8);
    Pair l1 = {K_F32, 1, NULL, NULL, NULL};   // the scalar, compared as a one-element pair
    float lcf = (float)lc, lgf = (float)lg;
    l1.c = backend_alloc(&k->cpu, 4, "self-check"), l1.g = backend_alloc(k->gpu, 4, "self-check");
    backend_to_device(&k->cpu, l1.c, &lcf, 4), backend_to_device(k->gpu, l1.g, &lgf, 4);
    compare(k, FAM_CLASSIFIER, "loss_accumulate", "sum", &l1, r_f32, NULL);
    release(k, &logits), release(k, &losses), release(k, &tg), release(k, &acc);

    const size_t n = 1000;
    Pair grads = pair(k, K_GRAD, n, 1, 23), norm = pair(k, K_F32, 1, 0, 23);
    op_global_norm(&k->cpu, norm.c, grads.c, n);
    op_global_norm(k->gpu, norm.g, grads.g, n);
    compare(k, FAM_OPTIMIZER, "global_norm", "norm", &norm, r_f32, NULL);
    const float sc = (float)op_sum_squares(&k->cpu, grads.c, n), sg = (float)op_sum_squares(k->gpu, grads.g, n);
    backend_to_device(&k->cpu, l1.c, &sc, 4), backend_to_device(k->gpu, l1.g, &sg, 4);
    compare(k, FAM_OPTIMIZER, "sum_squares", "sum", &l1, r_f32, NULL);
    backend_free(&k->cpu, l1.c), backend_free(k->gpu, l1.g);
    Pair params = pair(k, K_F32, n, 1, 23), m = pair(k, K_F32, n, 0.1, 23), v = pair(k, K_F32, n, 0.1, 23);
    for (size_t i = 0; i < n; i++) v.h[i] *= v.h[i];   // second moments are not negative
    upload(k, &v);
    Pair copy = pair(k, K_COMPUTE, n, 0, 23);
    AdamWTensors tens = {.n = 2, .end = {n / 2, n}, .decay = 1u};
    const AdamWHyper h = {1e-2f, 0.9f, 0.99f, 1e-8f, 0.1f, 1.0f, 0.5, 3, 12345u};
    op_adamw_step(&k->cpu, params.c, NULL, grads.c, m.c, v.c, 0, n, &tens, &h, norm.c, NULL);
    op_adamw_step(k->gpu, params.g, k->gpu->dtype == DTYPE_BF16 ? copy.g : NULL, grads.g, m.g, v.g, 0, n, &tens, &h,
                  norm.g, NULL);
    compare(k, FAM_OPTIMIZER, "adamw_step", "params", &params, r_f32, NULL);
    compare(k, FAM_OPTIMIZER, "adamw_step", "m", &m, r_f32, NULL);
    compare(k, FAM_OPTIMIZER, "adamw_step", "v", &v, r_f32, NULL);
    if (k->gpu->dtype == DTYPE_BF16) {   // the weights' bf16 copy against the CPU's fp32 weights
        float *cp = malloc(n * 4);
        backend_to_host(&k->cpu, cp, params.c, n * 4);
        backend_to_device(&k->cpu, copy.c, cp, n * 4);
        free(cp);
        compare(k, FAM_OPTIMIZER, "adamw_step", "bf16 copy", &copy, r_store, NULL);
        // the copy as initialisation and a load write it (stochastically rounded from element `first` on)
        op_to_compute(&k->cpu, copy.c, params.c, n - 7, 7, 777u);
        op_to_compute(k->gpu, copy.g, params.g, n - 7, 7, 777u);
        compare(k, FAM_OPTIMIZER, "to_compute", "bf16 copy", &copy, r_store, NULL);
    }
    release(k, &grads), release(k, &norm), release(k, &params), release(k, &m), release(k, &v), release(k, &copy);
}

int selfcheck_run(Backend *gpu, const SelfCheckSpec *spec, char *line, size_t n) {
    Check k = {.gpu = gpu, .spec = spec, .rng = spec->seed | 1, .line = line, .n = n};
    const size_t allocated = gpu->bytes_allocated;
    if (backend_init(&k.cpu, BACKEND_CPU_REF, omp_get_max_threads())) {
        snprintf(line, n, "self-check: the CPU reference backend is not built in");
        return -1;
    }
    const double t0 = backend_now_s();
    const int bf16 = gpu->dtype == DTYPE_BF16, mode = spec->matmul_mode;
    const double r_f32 = bf16 || gpu->grad_dtype == DTYPE_BF16 ? 1e-2 : 1e-4;   // what is stored decides
    const double r_store = bf16 ? 1e-2 : 1e-4;
    const double r_mm = bf16 || mode >= 2 ? 1e-2 : mode == 1 ? 1e-3 : 1e-4;
    const double r_att = bf16 || mode != 0 || spec->attention == ATTN_FLASH ? 1e-2 : 1e-4;
    check_basic(&k, r_store > r_f32 ? r_store : r_f32);
    if (!k.failed) check_matmul(&k, r_mm > r_f32 ? r_mm : r_f32);
    if (!k.failed) check_attention(&k, r_att > r_f32 ? r_att : r_f32);
    if (!k.failed) check_tail(&k, r_store > r_f32 ? r_store : r_f32, r_f32);
    backend_sync(gpu);
    gpu->bytes_allocated = allocated;   // the run's plan counts its own allocations only
    if (k.failed) return -1;
    int len = snprintf(line, n, "self-check: passed, %d outputs of every op the run uses against the CPU reference "
                       "(%.2f s); worst error as a fraction of its bound:", k.ops, backend_now_s() - t0);
    for (int f = 0; f < NFAM && len > 0 && (size_t)len < n; f++)
        len += snprintf(line + len, n - (size_t)len, "%s %s %.2g", f ? "," : "", FAM_NAMES[f], k.worst[f]);
    return 0;
}
