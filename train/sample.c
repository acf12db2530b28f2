/*
 * sample.c: `gptrain sample` and `gptrain export`. Sampling: the forward over the last maxT tokens, then temperature
 * and top-k sampling from the softmax of the real vocabulary, one token at a time, decoded with the run's tokenizer.
 * The weights come from a finished run (--from DIR: model.bin, tokenizer.txt), a gptrain checkpoint (which carries
 * its tokenizer) or an llm.c model file (--checkpoint PATH; its tokenizer.txt beside it, else GPT-2's when V=50257).
 * Export writes the weights of any of these as an llm.c model file, fp32 (version 3) or bf16 (version 5).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
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

// The model (created and loaded on be) and its tokenizer from --checkpoint or --from; *tok_id gets the id of the
// tokenizer it was trained with (0: unknown). A model file is decoded only with the tokenizer.txt it was written
// with (header[9]): a pair half-replaced by a failed write, or a model copied beside another run's tokenizer, is
// refused instead of printing garbage. When no tokenizer fits the model (an llm.c file of another vocabulary with
// no tokenizer.txt, or a tokenizer larger than the model's vocabulary, as after training on llm.c shards with a
// vocabulary of one's own), *ids_only is set and tok is not loaded: the caller speaks token ids.
static char ids_why[8400];   // why no tokenizer fits (load_model), for the line sample prints
static void load_model(Options *o, Backend *be, GPT *g, Tokenizer *tok, int want_tokenizer, uint32_t *tok_id,
                       int *ids_only) {
    char err[1024], path[4096], tokpath[4200];
    GPTConfig cfg;
    const char *flag = o->checkpoint[0] ? "--checkpoint" : "--from";
    int is_ckpt = 0, loaded = 0;
    if (ids_only) *ids_only = 0;
    if (o->checkpoint[0]) {
        snprintf(path, sizeof path, "%s", o->checkpoint);
        char magic[8] = {0};
        FILE *f = file_open_input(path, err, sizeof err);   // a FIFO or device is refused, not waited on
        if (!f) die_user("--checkpoint %s", err);
        size_t got = fread(magic, 1, 8, f);
        fclose(f);
        is_ckpt = got == 8 && !memcmp(magic, CKPT_MAGIC, 8);
    } else snprintf(path, sizeof path, "%s/model.bin", o->from);
    if (is_ckpt) {
        CkptHeader h;
        char *cfg_text, *tok_text;
        if (ckpt_read_meta(path, &h, &cfg_text, &tok_text, err, sizeof err)) die_user("--checkpoint: %s", err);
        memset(&cfg, 0, sizeof cfg);
        cfg.n_layer = h.n_layer;
        cfg.n_head = h.n_head;
        cfg.d_model = h.d_model;
        cfg.d_ff = h.d_ff;
        cfg.vocab_size = h.vocab_size;
        cfg.max_seq_len = h.max_seq_len;
        char why[256];
        if (gpt_config_finalize(&cfg, why, sizeof why)) die_user("--checkpoint %s: invalid model (%s)", path, why);
        if (want_tokenizer && tokenizer_load_text(tok, tok_text, path, err, sizeof err)) die_user("--checkpoint: %s", err);
        loaded = want_tokenizer;
        *tok_id = modelfile_tokenizer_id(tok_text);
        free(cfg_text);
        free(tok_text);
    } else {
        if (modelfile_read_config(path, &cfg, tok_id, err, sizeof err)) die_user("%s: %s", flag, err);
        if (want_tokenizer) {
            // tokenizer.txt beside the model file; an llm.c GPT-2 file without one decodes with GPT-2's.
            char dir[4096];
            snprintf(dir, sizeof dir, "%s", path);
            char *slash = strrchr(dir, '/');
            if (slash) *slash = 0; else snprintf(dir, sizeof dir, ".");
            snprintf(tokpath, sizeof tokpath, "%s/tokenizer.txt", dir);
            if (!access(tokpath, F_OK)) {
                char *text = file_read_text(tokpath, TOKENIZER_FILE_MAX, err, sizeof err);
                if (!text || tokenizer_load_text(tok, text, tokpath, err, sizeof err)) die_user("%s: %s", flag, err);
                if (*tok_id && modelfile_tokenizer_id(text) != *tok_id)
                    die_user("%s %s: was trained with another tokenizer than %s beside it (a half-written pair, or "
                             "files of two runs): decoding would print garbage", flag, path, tokpath);
                free(text);
                loaded = 1;
            } else if (cfg.vocab_size == GPT2_VOCAB_SIZE) {
                if (tokenizer_load_text(tok, GPT2_TOKENIZER_TEXT, "GPT-2 tokenizer", err, sizeof err))
                    die_user("%s: %s", flag, err);
                loaded = 1;
            } else {
                snprintf(ids_why, sizeof ids_why, "%s has no tokenizer.txt beside it and V=%d is not GPT-2's 50257",
                         path, cfg.vocab_size);
                *ids_only = 1;
            }
        }
    }
    if (loaded && tok->vocab_size > cfg.vocab_size) {
        snprintf(ids_why, sizeof ids_why, "%s: its tokenizer has %d tokens but the model only %d (trained on shards "
                 "without a tokenizer of theirs)", path, tok->vocab_size, cfg.vocab_size);
        tokenizer_free(tok);
        *ids_only = 1;
    }
    if (gpt_create(g, &cfg, be, 1, cfg.max_seq_len, RECOMPUTE_NONE, ATTN_NAIVE, err, sizeof err)) die_user("%s", err);
    if (is_ckpt ? ckpt_load(path, g, 0, err, sizeof err) : modelfile_load_weights(g, path, err, sizeof err))
        die_user("%s: %s", flag, err);
}

int cmd_sample(Options *o) {
    char err[1024];
    if (o->tokens < 0) die_user("--tokens %d: expected 0 or more", o->tokens);
    if (!(o->temperature > 0)) die_user("--temperature %g: expected a positive temperature", o->temperature);
    if (o->top_k < 0) die_user("--top-k %d: expected 0 (off) or more", o->top_k);
    size_t plen = strlen(o->prompt);
    if (plen == 0) die_user("--prompt: expected at least one character");
    Backend be;
    resolve_backend(o, &be, 0);
    GPT g;
    Tokenizer tok;
    memset(&tok, 0, sizeof tok);
    uint32_t tok_id;
    int ids = 0;
    load_model(o, &be, &g, &tok, 1, &tok_id, &ids);
    const GPTConfig cfg = g.cfg;
    size_t cap = plen + (size_t)o->tokens;
    int32_t *ctx = malloc(cap * sizeof(int32_t));
    uint16_t *enc = malloc(plen * sizeof(uint16_t));
    double *probs = malloc((size_t)cfg.vocab_size * sizeof(double));
    float *row = malloc((size_t)cfg.padded_vocab * sizeof(float));
    if (!ctx || !enc || !probs || !row) die_user("out of memory for --tokens %d", o->tokens);
    size_t n = 0;
    if (ids) {   // the prompt as token ids, separated by spaces or commas, each below the model's vocabulary
        for (const char *s = o->prompt; *s;) {
            while (*s == ' ' || *s == ',' || *s == '\n' || *s == '\t') s++;
            if (!*s) break;
            char *end;
            const long v = strtol(s, &end, 10);
            if (end == s || v < 0 || v >= cfg.vocab_size)
                die_user("--prompt '%s': expected token ids 0..%d separated by spaces (no tokenizer fits this model)",
                         o->prompt, cfg.vocab_size - 1);
            ctx[n++] = (int32_t)v;
            s = end;
        }
        if (!n) die_user("--prompt: expected at least one token id");
        fprintf(stderr, "sample: %s: the prompt is read as token ids and the output printed as token ids\n", ids_why);
        for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ctx[i]);
    } else {
        if (tokenizer_encode(&tok, (const uint8_t *)o->prompt, plen, enc, &n, err, sizeof err))
            die_user("--prompt: %s", err);
        for (size_t i = 0; i < n; i++) ctx[i] = enc[i];
        fwrite(o->prompt, 1, plen, stdout);
    }
    uint64_t rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)o->seed;
    if (!rng) rng = 1;
    for (int i = 0; i < o->tokens; i++) {
        int t = n < (size_t)cfg.max_seq_len ? (int)n : cfg.max_seq_len;
        gpt_forward(&g, ctx + n - t, NULL, 1, t, 0.0f);
        gpt_acts_to_host(&g, row, (char *)g.acts.logits + (size_t)(t - 1) * cfg.padded_vocab * dtype_bytes(g.dtype),
                         (size_t)cfg.padded_vocab);
        int id = sample_token(row, ids ? cfg.vocab_size : tok.vocab_size, o->temperature, o->top_k, probs, &rng);
        ctx[n++] = id;
        if (ids) printf(" %d", id);
        else {
            const uint8_t *bytes;
            int nb = tokenizer_decode(&tok, id, &bytes);
            if (nb > 0) fwrite(bytes, 1, (size_t)nb, stdout);
        }
        fflush(stdout);
    }
    putchar('\n');
    free(ctx);
    free(enc);
    free(probs);
    free(row);
    if (!ids) tokenizer_free(&tok);
    gpt_destroy(&g);
    return 0;
}

// Export never writes over what it reads, nor over a checkpoint (a training state is not a model file to replace).
static void check_export_target(const Options *o) {
    char src[4200];
    if (o->checkpoint[0]) snprintf(src, sizeof src, "%s", o->checkpoint);
    else snprintf(src, sizeof src, "%s/model.bin", o->from);
    struct stat a, b;
    if (!stat(o->out, &b) && !stat(src, &a) && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
        die_user("--out %s: is the file export reads (%s): give another path", o->out, src);
    char magic[8] = {0};
    FILE *f = S_ISREG(b.st_mode) ? fopen(o->out, "rb") : NULL;
    const int is_ckpt = f && fread(magic, 1, 8, f) == 8 && !memcmp(magic, CKPT_MAGIC, 8);
    if (f) fclose(f);
    if (is_ckpt) die_user("--out %s: is a gptrain checkpoint: export writes an llm.c model file; give another path", o->out);
}

int cmd_export(Options *o) {
    char err[1024];
    if (!o->out[0]) die_user("--out: expected the llm.c model file to write");
    check_export_target(o);
    Backend be;
    resolve_backend(o, &be, 0);
    GPT g;
    uint32_t tok_id = 0;
    load_model(o, &be, &g, NULL, 0, &tok_id, NULL);
    const int bf16 = !strcmp(o->dtype, "bf16");
    if (modelfile_save_as(&g, o->out, bf16, tok_id, err, sizeof err)) die_user("--out: %s", err);
    printf("export: %zu parameters -> %s (llm.c model file, version %d, %s)\n", g.mem.num_params, o->out,
           bf16 ? 5 : 3, o->dtype);
    gpt_destroy(&g);
    return 0;
}
