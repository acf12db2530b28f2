/*
 * checkpoint.c: the checkpoint format without the model: the hash, header checks, reading the texts, finding the
 * newest checkpoint in a directory and pruning old ones (the fuzz target links this file alone; saving and loading a
 * model's state is checkpoint_state.c). Every read is checked against the header before it is trusted: sizes must
 * add up to the file's size before anything is allocated, the header hash before any field is used.
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
#include "ops.h"

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

uint64_t ckpt_header_hash(const CkptHeader *h) {
    Hash64 s;
    hash64_init(&s);
    hash64_update(&s, h, offsetof(CkptHeader, header_hash));
    return hash64_final(&s);
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
    if (h->header_hash != ckpt_header_hash(h)) {
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

FILE *ckpt_open_checked(const char *path, CkptHeader *h, char *err, size_t errlen) {
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

char *ckpt_read_text(FILE *f, uint64_t n, Hash64 *s) {
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
    FILE *f = ckpt_open_checked(path, h, err, errlen);
    if (!f) return -1;
    *config_text = ckpt_read_text(f, h->config_bytes, NULL);
    *tokenizer_text = *config_text ? ckpt_read_text(f, h->tokenizer_bytes, NULL) : NULL;
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
