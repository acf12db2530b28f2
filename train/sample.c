/*
 * sample.c: `gptrain sample`, text from a finished run's model.bin: the forward over the last maxT tokens, then
 * temperature and top-k sampling from the softmax of the real vocabulary, one token at a time.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "gptrain.h"

static uint64_t xorshift64s(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

// Draw a token from logits (V) with temperature and top-k; probs is scratch (V).
static int sample_token(const float *logits, int V, double temperature, int top_k, double *probs, uint64_t *rng) {
    double cutoff = -INFINITY;
    if (top_k > 0 && top_k < V) {
        // The k-th largest logit by selection over a copy: V is small for sampling, O(V k) is fine.
        for (int i = 0; i < V; i++) probs[i] = logits[i];
        for (int k = 0; k < top_k; k++) {
            int best = -1;
            for (int i = 0; i < V; i++)
                if (probs[i] != -INFINITY && (best < 0 || probs[i] > probs[best])) best = i;
            cutoff = probs[best];
            probs[best] = -INFINITY;
        }
    }
    double maxv = -INFINITY, sum = 0;
    for (int i = 0; i < V; i++) if (logits[i] > maxv) maxv = logits[i];
    for (int i = 0; i < V; i++) {
        probs[i] = logits[i] >= cutoff ? exp((logits[i] - maxv) / temperature) : 0.0;
        sum += probs[i];
    }
    double r = ((xorshift64s(rng) >> 11) * (1.0 / 9007199254740992.0)) * sum, acc = 0;
    for (int i = 0; i < V; i++) {
        acc += probs[i];
        if (r < acc && probs[i] > 0) return i;
    }
    for (int i = V - 1; i >= 0; i--) if (probs[i] > 0) return i;
    return 0;
}

int cmd_sample(Options *o) {
    char err[1024], path[4096];
    if (o->tokens < 0) die_user("--tokens %d: expected 0 or more", o->tokens);
    if (!(o->temperature > 0)) die_user("--temperature %g: expected a positive temperature", o->temperature);
    if (o->top_k < 0) die_user("--top-k %d: expected 0 (off) or more", o->top_k);
    snprintf(path, sizeof path, "%s/model.bin", o->from);
    GPTConfig cfg;
    if (modelfile_read_config(path, &cfg, err, sizeof err)) die_user("--from: %s", err);
    CharTokenizer tok;
    snprintf(path, sizeof path, "%s/tokenizer.txt", o->from);
    if (char_tokenizer_load(&tok, path, err, sizeof err)) die_user("--from: %s", err);
    if (tok.vocab_size > cfg.vocab_size)
        die_user("--from %s: tokenizer has %d tokens but the model only %d", o->from, tok.vocab_size, cfg.vocab_size);
    size_t plen = strlen(o->prompt);
    if (plen == 0) die_user("--prompt: expected at least one character");
    Backend be;
    resolve_backend(o, &be);
    GPT g;
    if (gpt_create(&g, &cfg, &be, 1, cfg.max_seq_len, RECOMPUTE_NONE, err, sizeof err)) die_user("%s", err);
    snprintf(path, sizeof path, "%s/model.bin", o->from);
    if (modelfile_load_weights(&g, path, err, sizeof err)) die_user("--from: %s", err);

    size_t cap = plen + (size_t)o->tokens;
    int32_t *ctx = malloc(cap * sizeof(int32_t));
    uint16_t *enc = malloc(plen * sizeof(uint16_t));
    double *probs = malloc((size_t)cfg.vocab_size * sizeof(double));
    if (!ctx || !enc || !probs) die_user("out of memory for --tokens %d", o->tokens);
    if (char_tokenizer_encode(&tok, (const uint8_t *)o->prompt, plen, enc, err, sizeof err)) die_user("--prompt: %s", err);
    for (size_t i = 0; i < plen; i++) ctx[i] = enc[i];
    size_t n = plen;
    uint64_t rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)o->seed;
    if (!rng) rng = 1;
    fwrite(o->prompt, 1, plen, stdout);
    for (int i = 0; i < o->tokens; i++) {
        int t = n < (size_t)cfg.max_seq_len ? (int)n : cfg.max_seq_len;
        gpt_forward(&g, ctx + n - t, NULL, 1, t, 0.0f);
        const float *row = g.acts.logits + (size_t)(t - 1) * cfg.padded_vocab;
        int id = sample_token(row, tok.vocab_size, o->temperature, o->top_k, probs, &rng);
        ctx[n++] = id;
        putchar(char_tokenizer_decode(&tok, id));
        fflush(stdout);
    }
    putchar('\n');
    free(ctx);
    free(enc);
    free(probs);
    gpt_destroy(&g);
    return 0;
}
