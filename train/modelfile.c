/*
 * modelfile.c: the model file, in llm.c's layout (magic 20240326, version 3 = fp32 weights) so llm.c tools can read
 * what we write: int32 header[256] = {magic, version, maxT, V, L, NH, C, Vp, F, 0...}, then every parameter tensor
 * in GPT_PARAMS order (wte with its Vp rows). header[8] (F) is our addition; 0 there means 4*C, as llm.c assumes.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "data.h"
#include "gptrain.h"

#define MODEL_MAGIC 20240326
#define MODEL_VERSION_FP32 3

int modelfile_save(const GPT *g, const char *path, char *err, size_t errlen) {
    int32_t h[256] = {0};
    h[0] = MODEL_MAGIC;
    h[1] = MODEL_VERSION_FP32;
    h[2] = g->cfg.max_seq_len;
    h[3] = g->cfg.vocab_size;
    h[4] = g->cfg.n_layer;
    h[5] = g->cfg.n_head;
    h[6] = g->cfg.d_model;
    h[7] = g->cfg.padded_vocab;
    h[8] = g->cfg.d_ff;
    char tmp[4096];
    FILE *f = file_create_tmp(path, tmp, sizeof tmp, err, errlen);
    if (!f) return -1;
    int ok = fwrite(h, sizeof h, 1, f) == 1 &&
             fwrite(g->params_mem, sizeof(float), g->mem.num_params, f) == g->mem.num_params;
    return file_commit_tmp(f, tmp, path, ok, err, errlen);
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
    if (h[1] != MODEL_VERSION_FP32) {
        snprintf(err, errlen, "%s: version %d, expected %d (fp32 weights)", path, h[1], MODEL_VERSION_FP32);
        return -1;
    }
    return 0;
}

int modelfile_read_config(const char *path, GPTConfig *cfg, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "%s: cannot open (%s)", path, strerror(errno)); return -1; }
    int32_t h[256];
    int rc = read_header(f, path, h, err, errlen);
    fclose(f);
    if (rc) return rc;
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_seq_len = h[2];
    cfg->vocab_size = h[3];
    cfg->n_layer = h[4];
    cfg->n_head = h[5];
    cfg->d_model = h[6];
    cfg->d_ff = h[8];
    char why[256];
    if (gpt_config_finalize(cfg, why, sizeof why)) {
        snprintf(err, errlen, "%s: header describes an invalid model (%s)", path, why);
        return -1;
    }
    if (cfg->padded_vocab != h[7]) {
        snprintf(err, errlen, "%s: padded vocabulary %d, expected %d for vocabulary %d", path, h[7],
                 cfg->padded_vocab, cfg->vocab_size);
        return -1;
    }
    return 0;
}

int modelfile_load_weights(GPT *g, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "%s: cannot open (%s)", path, strerror(errno)); return -1; }
    int32_t h[256];
    if (read_header(f, path, h, err, errlen)) { fclose(f); return -1; }
    size_t n = fread(g->params_mem, sizeof(float), g->mem.num_params, f);
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (n != g->mem.num_params || extra) {
        snprintf(err, errlen, "%s: %s: expected exactly %zu fp32 parameters after the header", path,
                 extra ? "trailing bytes" : "truncated", g->mem.num_params);
        return -1;
    }
    return 0;
}
