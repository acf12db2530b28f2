/*
 * checkpoint.c: save, check and load gptrain's training checkpoints (layout in checkpoint.h), find the newest in a
 * directory, and prune old ones. Every read is checked against the header before it is trusted: sizes must add up
 * to the file's size before anything is allocated, the header hash before any field is used, and the payload hash
 * before a load returns success.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "data.h"

// ---- hash64: four lanes of v = rotl(v + w·P2, 31)·P1 over 8-byte words (the round of xxHash64's design), then
// the lanes merged with the length and avalanched. Not cryptographic: it detects corruption, not tampering. ----
#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull

static uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static uint64_t round64(uint64_t v, uint64_t w) { return rotl64(v + w * P2, 31) * P1; }

void hash64_init(Hash64 *h) {
    memset(h, 0, sizeof *h);
    h->lane[0] = P1 + P2;
    h->lane[1] = P2;
    h->lane[2] = 0;
    h->lane[3] = 0 - P1;
}

static void hash64_block(Hash64 *h, const uint8_t *p) {
    uint64_t w[4];
    memcpy(w, p, 32);
    for (int i = 0; i < 4; i++) h->lane[i] = round64(h->lane[i], w[i]);
}

void hash64_update(Hash64 *h, const void *data, size_t n) {
    const uint8_t *p = data;
    h->total += n;
    if (h->nbuf) {
        size_t take = 32 - h->nbuf < n ? 32 - h->nbuf : n;
        memcpy(h->buf + h->nbuf, p, take);
        h->nbuf += take;
        p += take;
        n -= take;
        if (h->nbuf < 32) return;
        hash64_block(h, h->buf);
        h->nbuf = 0;
    }
    for (; n >= 32; p += 32, n -= 32) hash64_block(h, p);
    memcpy(h->buf, p, n);
    h->nbuf = n;
}

uint64_t hash64_final(const Hash64 *h) {
    uint64_t v = rotl64(h->lane[0], 1) + rotl64(h->lane[1], 7) + rotl64(h->lane[2], 12) + rotl64(h->lane[3], 18);
    v ^= h->total * P3;
    for (size_t i = 0; i < h->nbuf; i++) v = rotl64(v ^ (h->buf[i] * P1), 11) * P2;
    v ^= v >> 33;
    v *= P2;
    v ^= v >> 29;
    v *= P3;
    v ^= v >> 32;
    return v;
}

static uint64_t header_hash(const CkptHeader *h) {
    Hash64 s;
    hash64_init(&s);
    hash64_update(&s, h, offsetof(CkptHeader, header_hash));
    return hash64_final(&s);
}

// ---- save ----

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
    const void *parts[5] = {config_text, tokenizer_text, g->params_mem, g->m_mem, g->v_mem};
    const size_t sizes[5] = {h->config_bytes, h->tokenizer_bytes, nbytes, nbytes, nbytes};
    // Hash first (a pass over memory at ~10 GB/s), so the header goes out complete and the file in one sequential write.
    Hash64 s;
    hash64_init(&s);
    for (int i = 0; i < 5; i++) hash64_update(&s, parts[i], sizes[i]);
    h->payload_hash = hash64_final(&s);
    h->header_hash = header_hash(h);
    char tmp[4096];
    FILE *f = file_create_tmp(path, tmp, sizeof tmp, err, errlen);
    if (!f) return -1;
    errno = 0;
    int ok = !file_write(f, h, sizeof *h);
    for (int i = 0; i < 5 && ok; i++) ok = !file_write(f, parts[i], sizes[i]);
    return file_commit_tmp(f, tmp, path, ok, err, errlen);
}

// ---- read ----

int ckpt_check_header(const char *path, const CkptHeader *h, long long file_size, char *err, size_t errlen) {
    if (file_size < (long long)sizeof *h) {
        snprintf(err, errlen, "%s: %lld bytes, shorter than the %zu-byte header of a gptrain checkpoint", path,
                 file_size, sizeof *h);
        return -1;
    }
    if (memcmp(h->magic, CKPT_MAGIC, 8)) {
        snprintf(err, errlen, "%s: not a gptrain checkpoint (magic is not \"%s\")", path, CKPT_MAGIC);
        return -1;
    }
    if (h->version != CKPT_VERSION || h->header_bytes != sizeof *h) {
        snprintf(err, errlen, "%s: checkpoint version %u (header %u bytes), expected version %d (%zu bytes)", path,
                 h->version, h->header_bytes, CKPT_VERSION, sizeof *h);
        return -1;
    }
    if (h->header_hash != header_hash(h)) {
        snprintf(err, errlen, "%s: the header fails its checksum: the file is corrupt", path);
        return -1;
    }
    // Sizes must add up to the file (checked without overflow: each part is bounded by the file first).
    const uint64_t fs = (uint64_t)file_size - sizeof *h;
    if (h->config_bytes > fs || h->tokenizer_bytes > fs || h->num_params > fs / 12 ||
        h->payload_bytes != h->config_bytes + h->tokenizer_bytes + 12 * h->num_params || h->payload_bytes != fs) {
        snprintf(err, errlen, "%s: truncated or wrong size: the header describes a %llu-byte payload, the file has %llu",
                 path, (unsigned long long)h->payload_bytes, (unsigned long long)fs);
        return -1;
    }
    return 0;
}

static FILE *open_checked(const char *path, CkptHeader *h, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "%s: cannot open (%s)", path, strerror(errno)); return NULL; }
    struct stat st;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file, expected a gptrain checkpoint", path);
        fclose(f);
        return NULL;
    }
    memset(h, 0, sizeof *h);
    size_t got = fread(h, 1, sizeof *h, f);
    if (ckpt_check_header(path, h, got < sizeof *h ? (long long)got : (long long)st.st_size, err, errlen)) {
        fclose(f);
        return NULL;
    }
    return f;
}

static char *read_text(FILE *f, uint64_t n, Hash64 *s) {
    char *t = malloc(n + 1);
    if (!t) return NULL;
    if (fread(t, 1, n, f) != n) { free(t); return NULL; }
    if (s) hash64_update(s, t, n);
    t[n] = 0;
    return t;
}

int ckpt_read_meta(const char *path, CkptHeader *h, char **config_text, char **tokenizer_text, char *err,
                   size_t errlen) {
    *config_text = *tokenizer_text = NULL;
    FILE *f = open_checked(path, h, err, errlen);
    if (!f) return -1;
    *config_text = read_text(f, h->config_bytes, NULL);
    *tokenizer_text = *config_text ? read_text(f, h->tokenizer_bytes, NULL) : NULL;
    fclose(f);
    if (!*config_text || !*tokenizer_text) {
        free(*config_text);
        free(*tokenizer_text);
        *config_text = *tokenizer_text = NULL;
        snprintf(err, errlen, "%s: read failed", path);
        return -1;
    }
    return 0;
}

int ckpt_load(const char *path, GPT *g, int with_optimizer, char *err, size_t errlen) {
    CkptHeader h;
    FILE *f = open_checked(path, &h, err, errlen);
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
    char *t1 = read_text(f, h.config_bytes, &s), *t2 = t1 ? read_text(f, h.tokenizer_bytes, &s) : NULL;
    int ok = t1 && t2;
    free(t1);
    free(t2);
    // m and v are read even when not wanted (into the model's buffers, which a sampler never uses) so the hash
    // covers the whole payload: a corrupt moment is a corrupt file.
    float *dst[3] = {g->params_mem, g->m_mem, g->v_mem};
    const size_t n = g->mem.num_params;
    for (int i = 0; i < 3 && ok; i++) {
        ok = fread(dst[i], sizeof(float), n, f) == n;
        if (ok) hash64_update(&s, dst[i], n * sizeof(float));
    }
    fclose(f);
    if (!ok) { snprintf(err, errlen, "%s: read failed", path); return -1; }
    if (hash64_final(&s) != h.payload_hash) {
        snprintf(err, errlen, "%s: the payload fails its checksum: the file is corrupt", path);
        return -1;
    }
    if (!with_optimizer) {
        memset(g->m_mem, 0, n * sizeof(float));
        memset(g->v_mem, 0, n * sizeof(float));
    } else g->adam_t = (int)h.adam_t;
    return 0;
}

// ---- the directory ----

void ckpt_path_for_step(const char *dir, long step, char *path, size_t pathlen) {
    snprintf(path, pathlen, "%s/ckpt_%08ld.bin", dir, step);
}

// Steps of DIR/ckpt_<digits>.bin, sorted ascending; returns the count (-1 when DIR cannot be read).
static long list_steps(const char *dir, long **steps_out) {
    *steps_out = NULL;
    DIR *d = opendir(dir);
    if (!d) return -1;
    long *steps = NULL, n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *s = e->d_name;
        size_t len = strlen(s);
        if (len < 10 || strncmp(s, "ckpt_", 5) || strcmp(s + len - 4, ".bin")) continue;
        long v = 0;
        int digits = 1;
        for (size_t i = 5; i < len - 4; i++) {
            if (s[i] < '0' || s[i] > '9' || v > 100000000000L) { digits = 0; break; }
            v = v * 10 + (s[i] - '0');
        }
        if (!digits) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            long *grown = realloc(steps, (size_t)cap * sizeof *steps);
            if (!grown) break;
            steps = grown;
        }
        steps[n++] = v;
    }
    closedir(d);
    for (long i = 1; i < n; i++)   // insertion sort: a directory holds a handful
        for (long j = i; j > 0 && steps[j - 1] > steps[j]; j--) { long t = steps[j]; steps[j] = steps[j - 1]; steps[j - 1] = t; }
    *steps_out = steps;
    return n;
}

int ckpt_find_latest(const char *dir, char *path, size_t pathlen, char *err, size_t errlen) {
    long *steps;
    long n = list_steps(dir, &steps);
    if (n < 0) {
        if (errno == ENOENT) return 1;
        snprintf(err, errlen, "%s: cannot read the checkpoint directory (%s)", dir, strerror(errno));
        return -1;
    }
    int rc = 1;
    if (n > 0) {
        ckpt_path_for_step(dir, steps[n - 1], path, pathlen);
        rc = 0;
    }
    free(steps);
    return rc;
}

void ckpt_prune(const char *dir, int keep) {
    if (keep <= 0) return;
    long *steps;
    long n = list_steps(dir, &steps);
    for (long i = 0; i + keep < n; i++) {
        char p[4096];
        ckpt_path_for_step(dir, steps[i], p, sizeof p);
        unlink(p);
    }
    free(steps);
}
