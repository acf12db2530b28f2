/*
 * test_equiv.c: equivalences the trainer relies on.
 *   - recompute none / selective / full give bitwise identical loss and gradients (the recompute re-runs the same
 *     ops on the same inputs), on both CPU backends;
 *   - gradient accumulation: one batch of 4 equals 2 micro-batches of 2 and 4 of 1 (relative error <= 1e-6 in the
 *     L2 norm of the difference over the whole gradient; summation order differs, so not bitwise);
 *   - the FLOP walk equals the closed form written out here independently, and HFU accounting (hardware FLOPs) is
 *     model FLOPs plus exactly one forward of the blocks under full recompute;
 *   - activation memory shrinks none > selective > full;
 *   - flash attention (no T x T buffer): recompute modes bitwise equal among themselves, gradients equal to naive
 *     attention's within fp32 rounding (rel L2 <= 1e-5: the softmax sums in another order), memory smaller by
 *     exactly the (B,NH,T,T) buffers, HFU counting one more QK^T per layer;
 *   - dropout (naive attention: every site, the probabilities too): p = 0 bitwise no dropout; p > 0 recompute modes
 *     bitwise equal (the masks are regenerated, not stored), evaluation without dropout, the same masks for the same (seed, step, micro-step)
 *     and others for another step, and the backward's gradients against central finite differences of the
 *     dropped loss (which the no-dropout gradients fail: the masks matter).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "gpt.h"
#include "harness.h"

static GPTConfig micro_config(void) {
    GPTConfig c = {.n_layer = 2, .n_head = 2, .d_model = 32, .d_ff = 0, .vocab_size = 65, .max_seq_len = 16};
    char err[256];
    if (gpt_config_finalize(&c, err, sizeof err)) { fprintf(stderr, "%s\n", err); exit(1); }
    return c;
}

static void random_tokens(int32_t *t, int n, int V, uint64_t seed) {
    for (int i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        t[i] = (int32_t)((seed >> 33) % (uint64_t)V);
    }
}

// Gradients of one step over `micro` micro-batches splitting B sequences. Returns a malloc'd copy and the mean loss.
static float *grads_of(Backend *be, RecomputeMode rc, AttentionKind attn, int B, int T, int micro, const int32_t *in,
                       const int32_t *tg, float *loss_out) {
    GPTConfig cfg = micro_config();
    GPT g;
    char err[256];
    if (gpt_create(&g, &cfg, be, B, T, rc, attn, err, sizeof err)) { fprintf(stderr, "%s\n", err); exit(1); }
    gpt_init_weights(&g, 42);
    gpt_zero_grad(&g);
    int b = B / micro;
    double loss = 0;
    for (int m = 0; m < micro; m++) {
        loss += gpt_forward(&g, in + (size_t)m * b * T, tg + (size_t)m * b * T, b, T, 1.0f / ((float)b * T * micro));
        gpt_backward(&g);
    }
    *loss_out = (float)(loss / micro);
    float *copy = malloc(g.mem.num_params * sizeof(float));
    memcpy(copy, g.grads_mem, g.mem.num_params * sizeof(float));
    gpt_destroy(&g);
    return copy;
}

// One training forward and backward with dropout p (seed 7, step `step`, micro-step 0) on a fresh seed-42 model: the
// gradients (malloc'd) and the loss. With fd_n > 0 also central differences of the dropped loss at fd_idx, into fd.
static float *drop_grads(Backend *be, RecomputeMode rc, AttentionKind attn, int B, int T, const int32_t *in,
                         const int32_t *tg, float p, int step, double *loss_out, const size_t *fd_idx, int fd_n,
                         double *fd) {
    GPTConfig cfg = micro_config();
    GPT g;
    char err[256];
    if (gpt_create(&g, &cfg, be, B, T, rc, attn, err, sizeof err)) { fprintf(stderr, "%s\n", err); exit(1); }
    gpt_init_weights(&g, 42);
    g.dropout = p;
    g.dropout_seed = 7;
    g.dropout_step = step;
    g.dropout_micro = 0;
    const float s = 1.0f / ((float)B * T);
    gpt_zero_grad(&g);
    gpt_loss_reset(&g);
    gpt_forward_train(&g, in, tg, B, T, s);
    *loss_out = gpt_loss_sum(&g);
    gpt_backward(&g);
    float *copy = malloc(g.mem.num_params * sizeof(float));
    memcpy(copy, g.grads_mem, g.mem.num_params * sizeof(float));
    for (int k = 0; k < fd_n; k++) {
        float *w = g.params_mem + fd_idx[k];   // CPU: host memory, and the weights the ops read (fp32)
        // a step whose loss change (about g h) stands well above the fp32 loss's rounding (~5e-7), at most 0.05
        const float w0 = *w, gk = fabsf(copy[fd_idx[k]]);
        const float h = fminf(0.05f, fmaxf(1e-2f * fabsf(w0), gk > 0 ? 2e-3f / gk : 0.05f));
        double l[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            *w = w0 + (sgn ? -h : h);
            gpt_loss_reset(&g);
            gpt_forward_train(&g, in, tg, B, T, 0.0f);   // the same masks: the same (seed, step, micro-step)
            l[sgn] = gpt_loss_sum(&g);
        }
        *w = w0;
        fd[k] = (l[0] - l[1]) / (2.0 * ((double)(w0 + h) - (double)w0));
    }
    gpt_destroy(&g);
    return copy;
}

static double rel_l2(const float *a, const float *b, size_t n) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return sqrt(d / r);
}

int main(void) {
    const int B = 4, T = 16;
    GPTConfig cfg = micro_config();
    GPTMemory mem;
    gpt_memory_plan(&cfg, B, T, ATTN_NAIVE, DTYPE_F32, DTYPE_F32, &mem);
    const size_t np = mem.num_params;
    int32_t in[4 * 16], tg[4 * 16];
    random_tokens(in, B * T, cfg.vocab_size, 1);
    random_tokens(tg, B * T, cfg.vocab_size, 2);

    BackendKind kinds[2] = {BACKEND_CPU, BACKEND_CPU_REF};
    for (int k = 0; k < 2; k++) {
        Backend be;
        backend_init(&be, kinds[k], 0);
        float l0, l1, l2;
        float *g0 = grads_of(&be, RECOMPUTE_NONE, ATTN_NAIVE, B, T, 1, in, tg, &l0);
        float *g1 = grads_of(&be, RECOMPUTE_SELECTIVE, ATTN_NAIVE, B, T, 1, in, tg, &l1);
        float *g2 = grads_of(&be, RECOMPUTE_FULL, ATTN_NAIVE, B, T, 1, in, tg, &l2);
        char name[96];
        snprintf(name, sizeof name, "recompute selective == none, bitwise [%s]", be.name);
        harness_case(!memcmp(g0, g1, np * sizeof(float)) && l0 == l1, name, "loss %.7f vs %.7f, %zu gradients",
                     l1, l0, np);
        snprintf(name, sizeof name, "recompute full == none, bitwise [%s]", be.name);
        harness_case(!memcmp(g0, g2, np * sizeof(float)) && l0 == l2, name, "loss %.7f vs %.7f, %zu gradients",
                     l2, l0, np);
        float la, lb;
        float *ga = grads_of(&be, RECOMPUTE_NONE, ATTN_NAIVE, B, T, 2, in, tg, &la);
        float *gb = grads_of(&be, RECOMPUTE_FULL, ATTN_NAIVE, B, T, 4, in, tg, &lb);
        double ea = rel_l2(ga, g0, np), eb = rel_l2(gb, g0, np);
        snprintf(name, sizeof name, "grad-accum 2x2 == 1x4 [%s]", be.name);
        harness_case(ea <= 1e-6 && fabsf(la - l0) <= 1e-6f * fabsf(l0), name, "rel L2 error %.3g (<= 1e-6), loss %.7f vs %.7f", ea, la, l0);
        snprintf(name, sizeof name, "grad-accum 4x1 (recompute full) == 1x4 [%s]", be.name);
        harness_case(eb <= 1e-6 && fabsf(lb - l0) <= 1e-6f * fabsf(l0), name, "rel L2 error %.3g (<= 1e-6), loss %.7f vs %.7f", eb, lb, l0);
        double gn = 0;
        for (size_t i = 0; i < np; i++) gn += (double)g0[i] * g0[i];
        snprintf(name, sizeof name, "gradient is non-trivial [%s]", be.name);
        harness_case(gn > 1e-6 && isfinite(gn), name, "|g|^2 = %.4g", gn);
        float lf0, lf1, lf2;
        float *f0 = grads_of(&be, RECOMPUTE_NONE, ATTN_FLASH, B, T, 1, in, tg, &lf0);
        float *f1 = grads_of(&be, RECOMPUTE_SELECTIVE, ATTN_FLASH, B, T, 1, in, tg, &lf1);
        float *f2 = grads_of(&be, RECOMPUTE_FULL, ATTN_FLASH, B, T, 1, in, tg, &lf2);
        snprintf(name, sizeof name, "flash: recompute selective and full == none, bitwise [%s]", be.name);
        harness_case(!memcmp(f0, f1, np * sizeof(float)) && !memcmp(f0, f2, np * sizeof(float)) && lf0 == lf1 &&
                         lf0 == lf2, name, "loss %.7f %.7f %.7f", lf0, lf1, lf2);
        const double ef = rel_l2(f0, g0, np);
        snprintf(name, sizeof name, "flash == naive attention within fp32 rounding [%s]", be.name);
        harness_case(ef <= 1e-5 && fabsf(lf0 - l0) <= 1e-6f * fabsf(l0), name,
                     "rel L2 error %.3g (<= 1e-5), loss %.7f vs %.7f", ef, lf0, l0);
        free(g0); free(g1); free(g2); free(ga); free(gb); free(f0); free(f1); free(f2);
    }

    {   // Dropout (CPU backend).
        Backend be;
        backend_init(&be, BACKEND_CPU, 0);
        double l0, lp0, ld[3], le, l2;
        float g0_;
        float *g0 = grads_of(&be, RECOMPUTE_NONE, ATTN_NAIVE, B, T, 1, in, tg, &g0_);
        float *gp0 = drop_grads(&be, RECOMPUTE_NONE, ATTN_NAIVE, B, T, in, tg, 0.0f, 0, &lp0, NULL, 0, NULL);
        l0 = g0_;
        harness_case(!memcmp(g0, gp0, np * sizeof(float)) && (float)lp0 == (float)l0,
                     "dropout 0: the training forward and backward bitwise without dropout", "loss %.7f vs %.7f", lp0, l0);
        float *gd[3];
        for (int rc = 0; rc < 3; rc++)
            gd[rc] = drop_grads(&be, (RecomputeMode)rc, ATTN_NAIVE, B, T, in, tg, 0.3f, 0, &ld[rc], NULL, 0, NULL);
        harness_case(!memcmp(gd[0], gd[1], np * sizeof(float)) && !memcmp(gd[0], gd[2], np * sizeof(float)) &&
                         ld[0] == ld[1] && ld[0] == ld[2],
                     "dropout 0.3 (every site, the attention probabilities too): recompute none, selective, full "
                     "bitwise equal", "losses %.7f %.7f %.7f", ld[0], ld[1], ld[2]);
        const double changed = rel_l2(gd[0], g0, np);
        float *gs = drop_grads(&be, RECOMPUTE_NONE, ATTN_NAIVE, B, T, in, tg, 0.3f, 0, &le, NULL, 0, NULL);
        float *g2 = drop_grads(&be, RECOMPUTE_NONE, ATTN_NAIVE, B, T, in, tg, 0.3f, 1, &l2, NULL, 0, NULL);
        harness_case(changed > 0.05 && ld[0] != l0 && !memcmp(gs, gd[0], np * sizeof(float)) && le == ld[0] &&
                         rel_l2(g2, gd[0], np) > 0.05 && l2 != ld[0],
                     "dropout 0.3 changes the step; the same (seed, step) draws the same masks, the next step others",
                     "gradients %.3g from no dropout's (rel L2), loss %.5f vs %.5f; step 1's loss %.5f", changed, ld[0],
                     l0, l2);
        {   // evaluation: gpt_forward never drops
            GPT g;
            char err[256];
            if (gpt_create(&g, &cfg, &be, B, T, RECOMPUTE_NONE, ATTN_NAIVE, err, sizeof err)) exit(1);
            gpt_init_weights(&g, 42);
            g.dropout = 0.3f;
            const float le0 = gpt_forward(&g, in, tg, B, T, 0.0f);
            harness_case(le0 == (float)l0 && !g.dropout_active, "dropout 0.3: evaluation (gpt_forward) runs without it",
                         "loss %.7f vs %.7f without dropout", le0, l0);
            gpt_destroy(&g);
        }
        // The backward through the masks against central differences of the dropped loss, at the 2 largest
        // gradients of every parameter tensor (well above the differences' fp32 rounding, and every site's mask on
        // the path of some: the attention probabilities' reach only qkv); the undropped gradients must fail it.
        enum { NFD = 2 * NUM_PARAM_TENSORS };
        ParamInfo pinfo[NUM_PARAM_TENSORS];
        gpt_plan_params(&cfg, pinfo);
        size_t idx[NFD];
        for (int k = 0; k < NFD; k++) {
            const ParamInfo *pi = &pinfo[k / 2];
            size_t best = pi->offset + (k % 2 && pi->numel > 1 && idx[k - 1] == pi->offset ? 1 : 0);
            for (size_t i = pi->offset; i < pi->offset + pi->numel; i++)
                if ((k % 2 == 0 || i != idx[k - 1]) && fabsf(gd[0][i]) > fabsf(gd[0][best])) best = i;
            idx[k] = best;
        }
        double fd[NFD], lfd, worst = 0, worst_plain = 0;
        free(drop_grads(&be, RECOMPUTE_NONE, ATTN_NAIVE, B, T, in, tg, 0.3f, 0, &lfd, idx, NFD, fd));
        int worst_at = 0;
        for (int k = 0; k < NFD; k++) {
            // relative to the element, or to its tensor's largest where the element is near zero
            const double ref = fmax(fabs(gd[0][idx[k]]), 0.05 * fabs(gd[0][idx[k & ~1]]));
            if (ref == 0) continue;   // a tensor whose gradient is exactly zero (none here)
            const double e = fabs(fd[k] - gd[0][idx[k]]) / ref, ep = fabs(fd[k] - g0[idx[k]]) / ref;
            if (e > worst) worst = e, worst_at = k;
            worst_plain = fmax(worst_plain, ep);
        }
        harness_case(worst < 0.05 && worst_plain > 0.3,
                     "dropout 0.3: gradients = central differences of the dropped loss (2 per tensor, within 5%)",
                     "worst relative error %.3g (%s); the no-dropout gradients' %.3g (must exceed 0.3)", worst,
                     pinfo[worst_at / 2].name, worst_plain);
        for (int rc = 0; rc < 3; rc++) free(gd[rc]);
        free(g0); free(gp0); free(gs); free(g2);
    }

    // FLOPs: the closed form, written independently of plan.c's walk.
    GPTFlops fl;
    gpt_flops(&cfg, B, T, ATTN_NAIVE, &fl);
    {
        double N = B * T, C = cfg.d_model, F = cfg.d_ff, V = cfg.vocab_size, L = cfg.n_layer;
        double block = 2 * N * C * (3 * C) + 2 * N * C * C + 2 * N * C * F + 2 * N * F * C  // linear layers
                       + 2 * (2 * (C / cfg.n_head) * cfg.n_head * B * (T * (T + 1) / 2));  // QK^T and AV, causal
        double fwd = L * block + 2 * N * C * V;
        harness_case(fabs(fl.forward - fwd) <= 1e-9 * fwd, "flops: forward walk == closed form", "%.6g vs %.6g",
                     fl.forward, fwd);
        harness_case(fabs(fl.model - 3 * fwd) <= 1e-9 * fwd, "flops: model = 3 x forward", "%.6g", fl.model);
        harness_case(fl.hardware[RECOMPUTE_NONE] == fl.model && fl.hardware[RECOMPUTE_SELECTIVE] == fl.model &&
                         fabs(fl.hardware[RECOMPUTE_FULL] - (fl.model + L * block)) <= 1e-9 * fwd,
                     "flops: hardware = model + recomputed blocks", "full %.6g", fl.hardware[RECOMPUTE_FULL]);
    }
    {
        // GPT-2 124M at T = 1024: the exact count is close to 6N' + 6LCT (N' without wpe; causal half).
        GPTConfig g2;
        char err[256];
        gpt_config_preset(&g2, "gpt2-124m");
        gpt_config_finalize(&g2, err, sizeof err);
        GPTFlops f2;
        GPTMemory m2;
        gpt_flops(&g2, 1, 1024, ATTN_NAIVE, &f2);
        gpt_memory_plan(&g2, 1, 1024, ATTN_NAIVE, DTYPE_F32, DTYPE_F32, &m2);
        double Np = (double)m2.num_params_real - 1024.0 * 768;
        double rule = 6 * Np + 6 * 12.0 * 768 * 1024;
        double ratio = (f2.model / 1024) / rule;
        harness_case(fabs(ratio - 1) < 0.01, "flops: gpt2-124m per token within 1% of 6N' + 6LCT", "ratio %.5f",
                     ratio);
        harness_case(m2.num_params_real == 124439808, "params: gpt2-124m has 124,439,808 parameters",
                     "%zu", m2.num_params_real);
    }
    {
        GPTFlops ff;
        gpt_flops(&cfg, B, T, ATTN_FLASH, &ff);
        const double qk = cfg.n_layer * (double)B * cfg.d_model * T * (T + 1);   // 2*HS*NH per pair, T(T+1)/2 pairs
        harness_case(ff.model == fl.model && fabs(ff.hardware[RECOMPUTE_NONE] - (fl.hardware[RECOMPUTE_NONE] + qk)) <=
                                                 1e-9 * fl.model &&
                         fabs(ff.hardware[RECOMPUTE_FULL] - (fl.hardware[RECOMPUTE_FULL] + qk)) <= 1e-9 * fl.model,
                     "flops: flash hardware = naive hardware + one QK^T per layer", "none %.6g vs %.6g + %.6g",
                     ff.hardware[0], fl.hardware[0], qk);
        GPTMemory mf;
        gpt_memory_plan(&cfg, B, T, ATTN_FLASH, DTYPE_F32, DTYPE_F32, &mf);
        const size_t L = cfg.n_layer, NH = cfg.n_head, TT = (size_t)B * NH * T * T * 4, TL = (size_t)B * NH * T * 4;
        harness_case(mf.act_bytes[0] == mem.act_bytes[0] - L * TT + L * TL &&
                         mf.act_bytes[1] == mem.act_bytes[1] - L * TT + L * TL && mf.act_bytes[2] == mem.act_bytes[2] - TT + TL &&
                         mf.grad_act_bytes == mem.grad_act_bytes - TT + 4 * (2 * (size_t)B * T * cfg.d_model + (size_t)B * NH * T + 64),
                     "memory: flash drops the (B,NH,T,T) buffers (per layer kept, the shared slot, the scratch's)",
                     "activations none %zu vs %zu, scratch %zu vs %zu", mf.act_bytes[0], mem.act_bytes[0],
                     mf.grad_act_bytes, mem.grad_act_bytes);
    }
    harness_case(mem.act_bytes[0] > mem.act_bytes[1] && mem.act_bytes[1] > mem.act_bytes[2],
                 "memory: activations none > selective > full", "%zu > %zu > %zu bytes", mem.act_bytes[0],
                 mem.act_bytes[1], mem.act_bytes[2]);
    return harness_finish();
}
