/*
 * checkpoint_state.c: saving a model's state into a checkpoint and loading it back (the format and its checks are
 * checkpoint.c). The weights and AdamW moments live in the backend's memory, so each goes through a host staging
 * buffer; the payload hash is computed over exactly the bytes written or read, and a load returns success only
 * after the hash over the whole payload matches.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint.h"
#include "data.h"
#include "ops.h"

int ckpt_save(const char *path, const GPT *g, CkptHeader *h, const char *config_text, const char *tokenizer_text,
              char *err, size_t errlen) {
    memcpy(h->magic, CKPT_MAGIC, 8);
    h->version = CKPT_VERSION;
    h->header_bytes = sizeof *h;
    h->n_layer = g->cfg.n_layer;
    h->n_head = g->cfg.n_head;
    h->d_model = g->cfg.d_model;
    h->d_ff = g->cfg.d_ff;
    h->vocab_size = g->cfg.vocab_size;
    h->padded_vocab = g->cfg.padded_vocab;
    h->max_seq_len = g->cfg.max_seq_len;
    h->adam_t = g->adam_t;
    h->num_params = g->mem.num_params;
    h->config_bytes = strlen(config_text);
    h->tokenizer_bytes = strlen(tokenizer_text);
    const size_t nbytes = g->mem.num_params * sizeof(float);
    h->payload_bytes = h->config_bytes + h->tokenizer_bytes + 3 * (uint64_t)nbytes;
    memset(h->reserved, 0, sizeof h->reserved);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    h->saved_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    // One pass: the header goes out with its hashes zeroed, each state buffer is copied to a host staging buffer
    // (it lives in the backend's memory), hashed and written, then the header is rewritten complete at offset 0
    // before the fsync and the rename.
    h->payload_hash = h->header_hash = 0;
    // A sharded model's states are gathered from every rank (gpt_state_to_host: a collective the other ranks join
    // alike), so all three are read whatever fails here.
    float *stage = malloc(nbytes ? nbytes : 1);
    char tmp[4096];
    FILE *f = stage ? file_create_tmp(path, tmp, sizeof tmp, err, errlen) : NULL;
    if (!stage) snprintf(err, errlen, "%s: out of memory for a %zu-byte staging buffer", path, nbytes);
    if (!f) {
        for (int i = 0; i < 3; i++) gpt_state_to_host(g, (GPTState)i, NULL);
        free(stage);
        return -1;
    }
    Hash64 s;
    hash64_init(&s);
    errno = 0;
    int ok = !file_write(f, h, sizeof *h);
    const char *texts[2] = {config_text, tokenizer_text};
    const size_t tlen[2] = {h->config_bytes, h->tokenizer_bytes};
    for (int i = 0; i < 2 && ok; i++) {
        hash64_update(&s, texts[i], tlen[i]);
        ok = !file_write(f, texts[i], tlen[i]);
    }
    for (int i = 0; i < 3; i++) {
        gpt_state_to_host(g, (GPTState)i, ok ? stage : NULL);
        if (!ok) continue;
        hash64_update(&s, stage, nbytes);
        ok = !file_write(f, stage, nbytes);
    }
    free(stage);
    if (ok) {
        h->payload_hash = hash64_final(&s);
        h->header_hash = ckpt_header_hash(h);
        ok = !fseek(f, 0, SEEK_SET) && !file_write(f, h, sizeof *h);
    }
    return file_commit_tmp(f, tmp, path, ok, err, errlen);
}

int ckpt_load(const char *path, GPT *g, int with_optimizer, char *err, size_t errlen) {
    CkptHeader h;
    FILE *f = ckpt_open_checked(path, &h, err, errlen);
    if (!f) return -1;
    const GPTConfig *c = &g->cfg;
    if (h.n_layer != c->n_layer || h.n_head != c->n_head || h.d_model != c->d_model || h.d_ff != c->d_ff ||
        h.vocab_size != c->vocab_size || h.padded_vocab != c->padded_vocab || h.max_seq_len != c->max_seq_len ||
        h.num_params != g->mem.num_params) {
        snprintf(err, errlen, "%s: model L=%d NH=%d C=%d F=%d V=%d maxT=%d, expected L=%d NH=%d C=%d F=%d V=%d maxT=%d",
                 path, h.n_layer, h.n_head, h.d_model, h.d_ff, h.vocab_size, h.max_seq_len, c->n_layer, c->n_head,
                 c->d_model, c->d_ff, c->vocab_size, c->max_seq_len);
        fclose(f);
        return -1;
    }
    Hash64 s;
    hash64_init(&s);
    char *t1 = ckpt_read_text(f, h.config_bytes, &s), *t2 = t1 ? ckpt_read_text(f, h.tokenizer_bytes, &s) : NULL;
    int ok = t1 && t2;
    free(t1);
    free(t2);
    // m and v are read even when not wanted so the hash covers the whole payload: a corrupt moment is a corrupt
    // file. Each buffer goes through a host staging buffer into the backend's memory.
    const size_t n = g->mem.num_params;
    float *stage = ok ? malloc(n * sizeof(float) + 1) : NULL;
    if (ok && !stage) { fclose(f); snprintf(err, errlen, "%s: out of memory for a staging buffer", path); return -1; }
    // The step count first: loading the weights rebuilds their bf16 copy as the step that wrote them rounded it
    // (gpt_state_from_host; bit-exact resume), once.
    if (with_optimizer) g->adam_t = (int)h.adam_t;
    for (int i = 0; i < 3 && ok; i++) {
        ok = fread(stage, sizeof(float), n, f) == n;
        if (!ok) break;
        hash64_update(&s, stage, n * sizeof(float));
        if (i == 0 || with_optimizer) gpt_state_from_host(g, (GPTState)i, stage);
    }
    free(stage);
    fclose(f);
    if (!ok) { snprintf(err, errlen, "%s: read failed", path); return -1; }
    if (hash64_final(&s) != h.payload_hash) {
        snprintf(err, errlen, "%s: the payload fails its checksum: the file is corrupt", path);
        return -1;
    }
    if (!with_optimizer) {
        op_zero(g->be, g->m_mem, g->mem.optim_bytes / 2);
        op_zero(g->be, g->v_mem, g->mem.optim_bytes / 2);
    }
    return 0;
}

