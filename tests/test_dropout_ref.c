/*
 * test_dropout_ref.c: dropout's gradients against PyTorch fed the same masks. One training forward and backward of
 * a small model with dropout 0.25 on the CPU backend (fp32); the masks it drew at every site are exported from their
 * documented keys (gpt.h: dropout_key(seed, step, micro-step, layer, GptDropSite), element-wise in memory order) into
 * a fixture with the weights and the batch; tests/ref/gpt_ref.py --dropout-ref applies them at nanoGPT's sites in
 * float64 and writes back the loss and every parameter gradient, which ours must match to the fp32 bound
 * (|a-b| <= 1e-5 (|b| + rms(b)); the loss to 1e-5 relative). So that the check can fail, the same is done with the
 * attention masks transposed within each T x T block (a wrong layout of the probabilities' mask): ours must then
 * miss by far more than the bound. Run from the repository root (the script's path is relative).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "dropout_mask.h"
#include "fixture.h"
#include "gpt.h"
#include "harness.h"

enum { L = 2, NH = 4, C = 32, V = 65, MAXT = 16, B = 3, T = 13, N = B * T };
static const float P = 0.25f;
static const uint64_t SEED = 11;
static const int STEP = 3, MICRO = 1;

// The 0/1 mask of one site: what op_dropout (and the attention ops on the probabilities) keep for this key.
static void site_mask(int32_t *m, size_t n, int layer, GptDropSite site) {
    const uint64_t key = dropout_key(SEED, (uint64_t)STEP, (uint64_t)MICRO, (uint64_t)layer, (uint64_t)site);
    const uint32_t thr = dropout_threshold(P);
    for (size_t i = 0; i < n; i++) m[i] = dropout_keep(key, i, thr);
}

// Writes the inputs and masks to dir/in_<tag>.bin, runs the oracle, loads its answer into out. 0 on success.
static int oracle(const char *dir, const char *tag, const GPT *g, const float *params, const int32_t *in,
                  const int32_t *tg, int transpose_attn, Fixture *out) {
    Fixture fx = {0};
    const int32_t cfg[9] = {L, NH, C, g->cfg.d_ff, V, g->cfg.padded_vocab, MAXT, B, T};
    const double p = P;
    int64_t d9 = 9, d1 = 1, dn = N;
    fixture_add(&fx, "config", FIX_I32, 1, &d9, cfg);
    fixture_add(&fx, "dropout", FIX_F64, 1, &d1, &p);
    fixture_add(&fx, "inputs", FIX_I32, 1, &dn, in);
    fixture_add(&fx, "targets", FIX_I32, 1, &dn, tg);
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        const ParamInfo *pi = &g->param_info[i];
        char name[160];
        snprintf(name, sizeof name, "param.%s", pi->name);
        const int64_t numel = (int64_t)pi->numel;
        fixture_add(&fx, name, FIX_F32, 1, &numel, params + pi->offset);   // gpt_ref.py reshapes by name
    }
    const size_t nbtc = (size_t)N * C, natt = (size_t)B * NH * T * T;
    int32_t *m = malloc(L * natt * sizeof *m);
    site_mask(m, nbtc, 0, GPT_DROP_EMBED);
    const int64_t dembed[3] = {B, T, C}, dattn[5] = {L, B, NH, T, T}, dlayer[4] = {L, B, T, C};
    fixture_add(&fx, "mask.embed", FIX_I32, 3, dembed, m);
    for (int l = 0; l < L; l++) site_mask(m + l * natt, natt, l, GPT_DROP_ATTN_PROBS);
    if (transpose_attn) {   // (t, t2) -> (t2, t) in every (layer, b, h) block
        int32_t *tr = malloc(L * natt * sizeof *tr);
        for (size_t blk = 0; blk < (size_t)L * B * NH; blk++)
            for (int t = 0; t < T; t++)
                for (int t2 = 0; t2 < T; t2++) tr[blk * T * T + t * T + t2] = m[blk * T * T + t2 * T + t];
        memcpy(m, tr, L * natt * sizeof *m);
        free(tr);
    }
    fixture_add(&fx, "mask.attn", FIX_I32, 5, dattn, m);
    for (int l = 0; l < L; l++) site_mask(m + l * nbtc, nbtc, l, GPT_DROP_ATTPROJ);
    fixture_add(&fx, "mask.attproj", FIX_I32, 4, dlayer, m);
    for (int l = 0; l < L; l++) site_mask(m + l * nbtc, nbtc, l, GPT_DROP_MLP);
    fixture_add(&fx, "mask.mlp", FIX_I32, 4, dlayer, m);
    free(m);
    char inp[600], outp[600], cmd[1400];
    snprintf(inp, sizeof inp, "%s/in_%s.bin", dir, tag);
    snprintf(outp, sizeof outp, "%s/out_%s.bin", dir, tag);
    int rc = fixture_save(&fx, inp);
    fixture_free(&fx);
    if (rc) return -1;
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/gpt_ref.py --dropout-ref '%s' '%s'", inp, outp);
    if (system(cmd)) {
        fprintf(stderr, "%s: failed (python3-torch installed? run from the repository root)\n", cmd);
        return -1;
    }
    return fixture_load(out, outp);
}

// The worst error of our gradients against the oracle's, in units of the bound; *name gets the tensor's.
static double worst_grad(const GPT *g, const float *grads, const Fixture *ref, double rtol, const char **name,
                         size_t *where) {
    double worst = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        const ParamInfo *pi = &g->param_info[i];
        char rn[160];
        snprintf(rn, sizeof rn, "grad.%s", pi->name);
        const FixRecord *r = fixture_get(ref, rn, FIX_F64, pi->numel);
        if (!r) return INFINITY;
        size_t w;
        const double e = harness_compare(grads + pi->offset, r->data, pi->numel, rtol, &w);
        if (e > worst || i == 0) {
            worst = e;
            *name = pi->name;
            *where = w;
        }
    }
    return worst;
}

int main(void) {
    GPTConfig cfg = {.n_layer = L, .n_head = NH, .d_model = C, .d_ff = 0, .vocab_size = V, .max_seq_len = MAXT};
    char err[256], dir[] = "/tmp/gptrain-test-dropout-ref-XXXXXX";
    if (gpt_config_finalize(&cfg, err, sizeof err) || !mkdtemp(dir)) {
        harness_case(0, "setup", "%s", err);
        return harness_finish();
    }
    Backend be;
    GPT g;
    if (backend_init(&be, BACKEND_CPU, 0) ||
        gpt_create(&g, &cfg, &be, B, T, RECOMPUTE_NONE, ATTN_NAIVE, err, sizeof err)) {
        harness_case(0, "create", "%s", err);
        return harness_finish();
    }
    gpt_init_weights(&g, 20261202);
    int32_t in[N], tg[N];
    uint64_t s = 0x5eed;
    for (int i = 0; i < N; i++) {
        in[i] = (int32_t)(dropout_mix64(s++) % V);
        tg[i] = (int32_t)(dropout_mix64(s++) % V);
    }
    float *params = malloc(g.mem.num_params * sizeof(float));
    gpt_state_to_host(&g, GPT_STATE_PARAMS, params);
    g.dropout = P;
    g.dropout_seed = SEED;
    g.dropout_step = STEP;
    g.dropout_micro = MICRO;
    gpt_zero_grad(&g);
    gpt_loss_reset(&g);
    gpt_forward_train(&g, in, tg, B, T, 1.0f / N);
    const double loss = gpt_loss_sum(&g);
    gpt_backward(&g);
    float *grads = malloc(g.mem.num_params * sizeof(float));
    backend_to_host(&be, grads, g.grads_mem, g.mem.num_params * sizeof(float));

    const double rtol = 1e-5;
    Fixture ref, wrong;
    if (oracle(dir, "masks", &g, params, in, tg, 0, &ref)) {
        harness_case(0, "the PyTorch oracle with our masks", "see stderr");
    } else {
        const double rl = ((const double *)fixture_get(&ref, "loss", FIX_F64, 1)->data)[0];
        harness_case(fabs(loss - rl) <= rtol * fabs(rl),
                     "dropout 0.25: our fp32 loss = PyTorch's float64 loss with the same masks (1e-5 relative)",
                     "%.8f vs %.8f", loss, rl);
        const char *name = "";
        size_t where = 0;
        const double w = worst_grad(&g, grads, &ref, rtol, &name, &where);
        harness_case(w <= 1.0,
                     "dropout 0.25: every parameter gradient = PyTorch's (float64, the same masks at nanoGPT's four "
                     "sites) within 1e-5 (|b| + rms b)",
                     "worst %.3g of the bound, in %s at %zu", w, name, where);
        fixture_free(&ref);
    }
    if (oracle(dir, "transposed", &g, params, in, tg, 1, &wrong)) {
        harness_case(0, "the PyTorch oracle with transposed attention masks", "see stderr");
    } else {
        const char *name = "";
        size_t where = 0;
        const double w = worst_grad(&g, grads, &wrong, rtol, &name, &where);
        harness_case(w > 100.0,
                     "the check can fail: with the attention masks transposed (a wrong layout) ours miss PyTorch's "
                     "by over 100x the bound",
                     "worst %.3g of the bound, in %s", w, name);
        fixture_free(&wrong);
    }
    free(params);
    free(grads);
    gpt_destroy(&g);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    return harness_finish();
}
