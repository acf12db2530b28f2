/*
 * loader.c: (B, T+1)-token windows from a split's shards, held in memory (the data issue adds streaming shards and
 * a prefetch thread behind the same calls).
 *   shuffle off: llm.c's DataLoader order: batch k of rank r covers [p, p + B·T + 1), p = (k·world + r)·B·T, back to
 *                r·B·T when the next batch would run past the end;
 *   shuffle on:  epochs of non-overlapping windows: per epoch an offset in [0, T) and a Fisher-Yates permutation of
 *                the windows starting at offset + i·T, from xorshift64* seeded by splitmix64(seed) (the same on every
 *                rank); rank r takes windows r, r + world, ... of it. Every token is read once per epoch (sampling
 *                with replacement would read some windows three times and others never in 1.5 epochs). On a split
 *                shorter than (world + 1)·T the offset is drawn from a narrower range so each rank still has a window.
 * Shards are found with readdir and sorted bytewise by name, then concatenated.
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static uint64_t xorshift64s(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void free_names(char **names, size_t n) {
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

// The names DIR/<split>_*.bin, sorted bytewise. readdir rather than glob(3): a directory whose name holds '*', '?'
// or '[' is still just a directory, and a missing one is reported as missing rather than as "no shards".
static int list_shards(const char *dir, const char *split, char ***names_out, size_t *n_out, char *err, size_t errlen) {
    *names_out = NULL;
    *n_out = 0;
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "%s: cannot open (%s), expected the directory `gptrain prepare` wrote", dir,
                 strerror(errno));
        return -1;
    }
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s_", split);
    const size_t plen = strlen(prefix);
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const size_t len = strlen(e->d_name);
        if (len < plen + 4 || strncmp(e->d_name, prefix, plen) || strcmp(e->d_name + len - 4, ".bin")) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown) {
                free_names(names, n);
                closedir(d);
                snprintf(err, errlen, "%s: out of memory", dir);
                return -1;
            }
            names = grown;
        }
        const size_t size = strlen(dir) + 1 + len + 1;
        if (!(names[n] = malloc(size))) {
            free_names(names, n);
            closedir(d);
            snprintf(err, errlen, "%s: out of memory", dir);
            return -1;
        }
        snprintf(names[n++], size, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (!n) {
        snprintf(err, errlen, "%s: no %s shards (expected %s_000000.bin from `gptrain prepare`)", dir, split, split);
        free(names);
        return -1;
    }
    qsort(names, n, sizeof *names, cmp_names);
    *names_out = names;
    *n_out = n;
    return 0;
}

int data_loader_open(DataLoader *dl, const char *dir, const char *split, int B, int T, int rank, int world,
                     int shuffle, uint64_t seed, int vocab_size, char *err, size_t errlen) {
    memset(dl, 0, sizeof(*dl));
    assert(world >= 1 && rank >= 0 && rank < world);   // the rank and world come from dist/, not from the user
    if (B < 1 || T < 1) {
        snprintf(err, errlen, "data_loader: --batch %d --seq-len %d: expected positive sizes", B, T);
        return -1;
    }
    char **names;
    size_t nfiles;
    if (list_shards(dir, split, &names, &nfiles, err, errlen)) return -1;
    // Shards concatenate in file-name order, each read whole and appended.
    for (size_t i = 0; i < nfiles; i++) {
        uint16_t *t;
        size_t n;
        if (shard_read(names[i], &t, &n, vocab_size, err, errlen)) {
            free_names(names, nfiles);
            data_loader_close(dl);
            return -1;
        }
        uint16_t *all = realloc(dl->tokens, (dl->ntok + n) * sizeof(uint16_t) + 1);
        if (!all) {
            snprintf(err, errlen, "%s: out of memory", names[i]);
            free(t);
            free_names(names, nfiles);
            data_loader_close(dl);
            return -1;
        }
        memcpy(all + dl->ntok, t, n * sizeof(uint16_t));
        dl->tokens = all;
        dl->ntok += n;
        free(t);
    }
    free_names(names, nfiles);
    // Every rank's first batch must fit: rank world-1 starts at (world-1)*B*T. This also leaves every shuffled epoch
    // at least world windows (see new_epoch).
    size_t need = (size_t)B * T * world + 1;
    if (dl->ntok < need) {
        snprintf(err, errlen, "%s: the %s split has %zu tokens; --batch %d --seq-len %d%s needs at least %zu", dir,
                 split, dl->ntok, B, T, world > 1 ? " over all ranks" : "", need);
        data_loader_close(dl);
        return -1;
    }
    if (dl->ntok / T > UINT32_MAX) {
        snprintf(err, errlen, "%s: the %s split's %zu tokens make more than 2^32 windows of --seq-len %d", dir, split,
                 dl->ntok, T);
        data_loader_close(dl);
        return -1;
    }
    dl->perm = malloc(sizeof(uint32_t) * (dl->ntok / T + 1));
    if (!dl->perm) { snprintf(err, errlen, "%s: out of memory", dir); data_loader_close(dl); return -1; }
    dl->B = B;
    dl->T = T;
    dl->rank = rank;
    dl->world = world;
    dl->shuffle = shuffle;
    dl->seed = seed;
    data_loader_reset(dl);
    return 0;
}

// A new epoch's order: offset in [0, T), then the windows offset + i*T that have T+1 tokens, permuted. On a split too
// short for every offset (ntok < (world+1)*T) the offset is drawn from [0, ntok - world*T) instead, so the epoch still
// holds at least world windows and every rank gets one; on longer splits the draw is the plain one.
static void new_epoch(DataLoader *dl) {
    const size_t T = dl->T, min_span = (size_t)dl->world * T;
    const size_t offsets = dl->ntok - min_span < T ? dl->ntok - min_span : T;   // >= 1: open checked ntok > world*T
    dl->offset = xorshift64s(&dl->rng) % offsets;
    dl->nwin = (dl->ntok - 1 - dl->offset) / T;
    assert(dl->nwin >= (size_t)dl->world);
    for (size_t i = 0; i < dl->nwin; i++) dl->perm[i] = (uint32_t)i;
    for (size_t i = dl->nwin - 1; i > 0; i--) {
        size_t j = xorshift64s(&dl->rng) % (i + 1);
        uint32_t t = dl->perm[i];
        dl->perm[i] = dl->perm[j];
        dl->perm[j] = t;
    }
    dl->pos = dl->rank;
    dl->epoch++;
}

void data_loader_reset(DataLoader *dl) {
    dl->rng = splitmix64(dl->seed);
    if (!dl->rng) dl->rng = 1;
    dl->batches = 0;
    dl->epoch = 0;
    if (dl->shuffle) new_epoch(dl);
    else dl->pos = (size_t)dl->rank * dl->B * dl->T;
}

void data_loader_next(DataLoader *dl, int32_t *inputs, int32_t *targets) {
    const size_t B = dl->B, T = dl->T;
    if (dl->shuffle) {
        for (size_t b = 0; b < B; b++) {
            if (dl->pos >= dl->nwin) new_epoch(dl);
            const uint16_t *w = dl->tokens + dl->offset + (size_t)dl->perm[dl->pos] * T;
            dl->pos += dl->world;
            for (size_t t = 0; t < T; t++) {
                inputs[b * T + t] = w[t];
                targets[b * T + t] = w[t + 1];
            }
        }
    } else {
        const uint16_t *w = dl->tokens + dl->pos;
        for (size_t i = 0; i < B * T; i++) {
            inputs[i] = w[i];
            targets[i] = w[i + 1];
        }
        dl->pos += B * T * dl->world;
        if (dl->pos + B * T + 1 > dl->ntok) dl->pos = (size_t)dl->rank * B * T;
    }
    dl->batches++;
}

void data_loader_close(DataLoader *dl) {
    free(dl->tokens);
    free(dl->perm);
    dl->tokens = NULL;
    dl->perm = NULL;
}
