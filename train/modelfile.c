/*
 * modelfile.c: the model file, in llm.c's layout so llm.c and gptrain read each other's files: int32 header[256] =
 * {20240326, version, maxT, V, L, NH, C, Vp, F, 0...}, then every parameter tensor in GPT_PARAMS order (llm.c's:
 * wte with its Vp rows, wpe, then per-layer stacks; matrices as (out, in) rows), as fp32 (version 3) or bf16
 * (version 5, llm.c's mixed-precision files). header[8] (F) is our addition; llm.c leaves it 0, meaning 4*C.
 * bf16 is written round-to-nearest-even from the fp32 weights and read back exactly (bf16 -> fp32 is a shift).
 * A file is untrusted input: its header's model must pass the config's caps and the file's size must be exactly what
 * that header needs before anything is planned or allocated for it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "data.h"
#include "gptrain.h"

#define MODEL_MAGIC 20240326
#define MODEL_VERSION_FP32 3
#define MODEL_VERSION_BF16 5


uint32_t modelfile_tokenizer_id(const char *tokenizer_text) {
    Hash64 s;
    hash64_init(&s);
    hash64_update(&s, tokenizer_text, strlen(tokenizer_text));
    const uint64_t v = hash64_final(&s);
    const uint32_t id = (uint32_t)(v ^ (v >> 32));
    return id ? id : 1;
}

int modelfile_save_weights(const GPTConfig *c, const float *w, size_t np, const char *path, int bf16, uint32_t tok_id,
                           char *err, size_t errlen) {
    int32_t h[256] = {0};
    h[0] = MODEL_MAGIC;
    h[1] = bf16 ? MODEL_VERSION_BF16 : MODEL_VERSION_FP32;
    h[2] = c->max_seq_len;
    h[3] = c->vocab_size;
    h[4] = c->n_layer;
    h[5] = c->n_head;
    h[6] = c->d_model;
    h[7] = c->padded_vocab;
    h[8] = c->d_ff == 4 * c->d_model ? 0 : c->d_ff;   // 0 (4*C), as llm.c writes, unless F differs
    memcpy(&h[9], &tok_id, sizeof tok_id);
    char tmp[4096];
    FILE *f = file_create_tmp(path, tmp, sizeof tmp, err, errlen);
    if (!f) return -1;
    errno = 0;
    int ok = !file_write(f, h, sizeof h);
    if (!bf16) ok = ok && !file_write(f, w, sizeof(float) * np);
    else {
        uint16_t buf[4096];
        for (size_t i = 0; ok && i < np; i += 4096) {
            size_t n = np - i < 4096 ? np - i : 4096;
            for (size_t j = 0; j < n; j++) buf[j] = dtype_bf16_from_f32(w[i + j]);
            ok = !file_write(f, buf, n * sizeof(uint16_t));
        }
    }
    return file_commit_tmp(f, tmp, path, ok, err, errlen);
}

int modelfile_save_as(const GPT *g, const char *path, int bf16, uint32_t tok_id, char *err, size_t errlen) {
    // The weights live in the backend's memory: stage them on the host.
    float *w = malloc(g->mem.num_params * sizeof(float) + 1);
    gpt_state_to_host(g, GPT_STATE_PARAMS, w);   // (with w NULL too: sharded, the other ranks are gathering)
    if (!w) { snprintf(err, errlen, "%s: out of memory for a staging buffer", path); return -1; }
    const int rc = modelfile_save_weights(&g->cfg, w, g->mem.num_params, path, bf16, tok_id, err, errlen);
    free(w);
    return rc;
}

int modelfile_save(const GPT *g, const char *path, uint32_t tok_id, char *err, size_t errlen) {
    return modelfile_save_as(g, path, 0, tok_id, err, errlen);
}

static int read_header(FILE *f, const char *path, int32_t *h, char *err, size_t errlen) {
    if (fread(h, sizeof(int32_t), 256, f) != 256) {
        snprintf(err, errlen, "%s: shorter than the 1024-byte header of a model file", path);
        return -1;
    }
    if (h[0] != MODEL_MAGIC) {
        snprintf(err, errlen, "%s: bad magic %d, expected %d (an llm.c/gptrain model file)", path, h[0], MODEL_MAGIC);
        return -1;
    }
    if (h[1] != MODEL_VERSION_FP32 && h[1] != MODEL_VERSION_BF16) {
        snprintf(err, errlen, "%s: version %d, expected %d (fp32 weights) or %d (bf16 weights)", path, h[1],
                 MODEL_VERSION_FP32, MODEL_VERSION_BF16);
        return -1;
    }
    return 0;
}

// The bytes a model file of np parameters in header version `version` has: 1024 + np x 4 (fp32) or x 2 (bf16).
// np is below 2^60 for any config gpt_config_finalize accepts; the check keeps that an invariant, not an assumption.
static int expected_bytes(size_t np, int version, uint64_t *out) {
    const uint64_t esize = version == MODEL_VERSION_FP32 ? sizeof(float) : sizeof(uint16_t);
    if (np > (UINT64_MAX - sizeof(int32_t) * 256) / esize) return -1;
    *out = sizeof(int32_t) * 256 + (uint64_t)np * esize;
    return 0;
}

// The file's size against what its header needs, before anything is allocated for it: a header edited or damaged to
// say L=20000 would otherwise have its model planned and allocated (gigabytes) before the read found the file short.
static int check_size(FILE *f, const char *path, const int32_t *h, const GPTConfig *cfg, size_t np, char *err,
                      size_t errlen) {
    struct stat st;
    if (fstat(fileno(f), &st)) {
        snprintf(err, errlen, "%s: cannot check its size (%s)", path, strerror(errno));
        return -1;
    }
    uint64_t need;
    if (expected_bytes(np, h[1], &need)) {
        snprintf(err, errlen, "%s: its header's %zu parameters overflow a file size", path, np);
        return -1;
    }
    if ((uint64_t)st.st_size != need) {
        snprintf(err, errlen, "%s: %lld bytes, but its header (L=%d NH=%d C=%d F=%d V=%d maxT=%d, %s) needs %llu bytes: "
                 "%s", path, (long long)st.st_size, cfg->n_layer, cfg->n_head, cfg->d_model, cfg->d_ff,
                 cfg->vocab_size, cfg->max_seq_len, h[1] == MODEL_VERSION_FP32 ? "fp32" : "bf16",
                 (unsigned long long)need, (uint64_t)st.st_size < need ? "truncated or not a model file"
                                                                        : "trailing bytes or not a model file");
        return -1;
    }
    return 0;
}

int modelfile_read_config(const char *path, GPTConfig *cfg, uint32_t *tok_id, char *err, size_t errlen) {
    FILE *f = file_open_input(path, err, errlen);
    if (!f) return -1;
    int32_t h[256];
    if (read_header(f, path, h, err, errlen)) { fclose(f); return -1; }
    if (tok_id) memcpy(tok_id, &h[9], sizeof *tok_id);
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_seq_len = h[2];
    cfg->vocab_size = h[3];
    cfg->n_layer = h[4];
    cfg->n_head = h[5];
    cfg->d_model = h[6];
    cfg->d_ff = h[8];
    char why[256];
    if (gpt_config_finalize(cfg, why, sizeof why)) {
        fclose(f);
        snprintf(err, errlen, "%s: header describes an invalid model (%s)", path, why);
        return -1;
    }
    if (cfg->padded_vocab != h[7]) {
        fclose(f);
        snprintf(err, errlen, "%s: padded vocabulary %d, expected %d for vocabulary %d", path, h[7],
                 cfg->padded_vocab, cfg->vocab_size);
        return -1;
    }
    const int rc = check_size(f, path, h, cfg, gpt_param_count(cfg), err, errlen);
    fclose(f);
    return rc;
}

int modelfile_load_weights(GPT *g, const char *path, char *err, size_t errlen) {
    FILE *f = file_open_input(path, err, errlen);
    if (!f) return -1;
    int32_t h[256];
    if (read_header(f, path, h, err, errlen)) { fclose(f); return -1; }
    const size_t np = g->mem.num_params;
    // Checked again here, against the model the weights go into: the file may have changed since its config was read.
    if (check_size(f, path, h, &g->cfg, np, err, errlen)) { fclose(f); return -1; }
    float *w = malloc(np * sizeof(float) + 1);
    if (!w) { fclose(f); snprintf(err, errlen, "%s: out of memory for a staging buffer", path); return -1; }
    size_t n = 0;
    if (h[1] == MODEL_VERSION_FP32) n = fread(w, sizeof(float), np, f);
    else {
        uint16_t buf[4096];
        while (n < np) {
            const size_t want = np - n < 4096 ? np - n : 4096, got = fread(buf, sizeof(uint16_t), want, f);
            for (size_t j = 0; j < got; j++) w[n + j] = dtype_bf16_to_f32(buf[j]);
            n += got;
            if (got < want) break;
        }
    }
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (n != np || extra) {
        free(w);
        snprintf(err, errlen, "%s: %s: expected exactly %zu %s parameters after the header", path,
                 extra ? "trailing bytes" : "truncated", np, h[1] == MODEL_VERSION_FP32 ? "fp32" : "bf16");
        return -1;
    }
    gpt_state_from_host(g, GPT_STATE_PARAMS, w);
    free(w);
    return 0;
}
