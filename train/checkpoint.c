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
#include <time.h>
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
    FILE *f = file_open_input(path, err, errlen);   // a FIFO or device is refused at once, never waited on
    if (!f) return NULL;
    struct stat st;
    if (fstat(fileno(f), &st)) {
        snprintf(err, errlen, "%s: cannot read it (%s)", path, strerror(errno));
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

int ckpt_verify(const char *path, char *err, size_t errlen) {
    CkptHeader h;
    FILE *f = ckpt_open_checked(path, &h, err, errlen);
    if (!f) return -1;
    Hash64 s;
    hash64_init(&s);
    static char buf[1 << 20];
    uint64_t left = h.payload_bytes;
    while (left) {
        const size_t want = left < sizeof buf ? (size_t)left : sizeof buf;
        if (fread(buf, 1, want, f) != want) break;
        hash64_update(&s, buf, want);
        left -= want;
    }
    fclose(f);
    if (left) { snprintf(err, errlen, "%s: read failed", path); return -1; }
    if (hash64_final(&s) != h.payload_hash) {
        snprintf(err, errlen, "%s: the payload fails its checksum: the file is corrupt", path);
        return -1;
    }
    return 0;
}

// ---- the directory: DIR/ckpt_<step>.bin, one trajectory ----

void ckpt_path_for_step(const char *dir, long step, char *path, size_t pathlen) {
    snprintf(path, pathlen, "%s/ckpt_%08ld.bin", dir, step);
}

typedef struct CkptEntry {
    long step;
    char name[64];
    int ok;          // the header checks (then h is valid)
    CkptHeader h;
} CkptEntry;

// DIR's ckpt_<digits>.bin with their headers, sorted by ascending step; the count, or -1 (errno) when DIR cannot
// be read. Headers are read with the same checks as a load (a corrupt one leaves ok = 0).
static long list_ckpts(const char *dir, CkptEntry **out) {
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d) return -1;
    CkptEntry *es = NULL;
    long n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *s = e->d_name;
        size_t len = strlen(s);
        if (len < 10 || len >= sizeof es->name || strncmp(s, "ckpt_", 5) || strcmp(s + len - 4, ".bin")) continue;
        long v = 0;
        int digits = 1;
        for (size_t i = 5; i < len - 4; i++) {
            if (s[i] < '0' || s[i] > '9' || v > 100000000000L) { digits = 0; break; }
            v = v * 10 + (s[i] - '0');
        }
        if (!digits) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            CkptEntry *grown = realloc(es, (size_t)cap * sizeof *es);
            if (!grown) break;
            es = grown;
        }
        memset(&es[n], 0, sizeof es[n]);
        es[n].step = v;
        snprintf(es[n].name, sizeof es[n].name, "%s", s);
        n++;
    }
    closedir(d);
    for (long i = 0; i < n; i++) {
        char p[4200], err[512];
        snprintf(p, sizeof p, "%s/%s", dir, es[i].name);
        FILE *f = ckpt_open_checked(p, &es[i].h, err, sizeof err);
        es[i].ok = f != NULL;
        if (f) fclose(f);
    }
    for (long i = 1; i < n; i++)   // insertion sort: a directory holds a handful
        for (long j = i; j > 0 && es[j - 1].step > es[j].step; j--) {
            CkptEntry t = es[j];
            es[j] = es[j - 1];
            es[j - 1] = t;
        }
    *out = es;
    return n;
}

int ckpt_find_latest(const char *dir, char *path, size_t pathlen, char *err, size_t errlen) {
    CkptEntry *es;
    long n = list_ckpts(dir, &es);
    if (n < 0) {
        if (errno == ENOENT) return 1;
        snprintf(err, errlen, "%s: cannot read the checkpoint directory (%s)", dir, strerror(errno));
        return -1;
    }
    // The trajectory that saved last (ties: the higher step).
    long last = -1;
    for (long i = 0; i < n; i++)
        if (es[i].ok && (last < 0 || es[i].h.saved_ns >= es[last].h.saved_ns)) last = i;
    int rc = 1;
    for (long i = n - 1; i >= 0 && last >= 0; i--) {
        char p[4200], why[1024];
        snprintf(p, sizeof p, "%s/%s", dir, es[i].name);
        if (es[i].ok && es[i].h.run_id != es[last].h.run_id) continue;   // another trajectory
        if (!es[i].ok) {
            CkptHeader h;
            FILE *f = ckpt_open_checked(p, &h, why, sizeof why);
            if (f) fclose(f);
        }
        if (es[i].ok && !ckpt_verify(p, why, sizeof why)) {
            snprintf(path, pathlen, "%s", p);
            rc = 0;
            break;
        }
        printf("warning: --resume auto: passing over %s (%s); trying an older checkpoint\n", p, why);
    }
    free(es);
    return rc;
}

int ckpt_count(const char *dir, char *newest, size_t n) {
    CkptEntry *es;
    const long k = list_ckpts(dir, &es);
    if (k > 0 && newest) snprintf(newest, n, "%s/%s", dir, es[k - 1].name);
    free(es);
    return k > 0 ? (int)k : 0;
}

int ckpt_adopt_dir(const char *dir, uint64_t run_id, long step, char *moved, size_t movedlen, char *err,
                   size_t errlen) {
    moved[0] = 0;
    CkptEntry *es;
    const long n = list_ckpts(dir, &es);
    if (n <= 0) return 0;
    // A checkpoint of another trajectory: this run's checkpoints would mix with it. (Run id 0: written before run
    // ids, so of no known trajectory; it counts as this run's own.)
    for (long i = 0; i < n; i++)
        if (es[i].ok && es[i].h.run_id && run_id && es[i].h.run_id != run_id) {
            snprintf(err, errlen, "%s/%s is a checkpoint of another run (step %lld): this run's checkpoints would mix "
                     "with that run's in one directory: give another --checkpoint-dir (or --out)", dir, es[i].name,
                     (long long)es[i].h.step);
            free(es);
            return -1;
        }
    // Later checkpoints (the future this run abandons, or corrupt files) are set aside, not overwritten.
    char aside[4200] = "";
    int rc = 0;
    for (long i = 0; i < n && !rc; i++) {
        if (es[i].step <= step) continue;
        if (!aside[0]) {
            struct timespec now;
            clock_gettime(CLOCK_REALTIME, &now);
            snprintf(aside, sizeof aside, "%s/abandoned_after_%ld_%lld", dir, step, (long long)now.tv_sec);
            if (mkdir(aside, 0755) && errno != EEXIST) {
                snprintf(err, errlen, "%s: cannot create it to set the later checkpoints aside (%s)", aside,
                         strerror(errno));
                rc = -1;
                break;
            }
            snprintf(moved, movedlen, "%s", aside);
        }
        char from[4200], to[4300];
        snprintf(from, sizeof from, "%s/%s", dir, es[i].name);
        snprintf(to, sizeof to, "%s/%s", aside, es[i].name);
        if (rename(from, to)) {
            snprintf(err, errlen, "%s: cannot move it into %s (%s)", from, aside, strerror(errno));
            rc = -1;
        }
    }
    free(es);
    return rc;
}

void ckpt_prune(const char *dir, int keep, uint64_t run_id) {
    if (keep <= 0) return;
    CkptEntry *es;
    const long n = list_ckpts(dir, &es);
    long mine = 0;
    for (long i = 0; i < n; i++) mine += es[i].ok && es[i].h.run_id == run_id;
    for (long i = 0; i < n && mine > keep; i++) {
        if (!es[i].ok || es[i].h.run_id != run_id) continue;
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", dir, es[i].name);
        unlink(p);
        mine--;
    }
    free(es);
}

uint64_t ckpt_new_run_id(void) {
    uint64_t id = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(&id, sizeof id, 1, f) != 1) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        id = ((uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec) * P1 ^ (uint64_t)getpid() * P2;
    }
    if (f) fclose(f);
    return id ? id : 1;
}
