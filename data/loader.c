/*
 * loader.c: (B, T+1)-token windows from a split's shards, held in memory (the data issue adds streaming shards and
 * a prefetch thread behind the same calls).
 *   shuffle off: llm.c's DataLoader order: batch k of rank r covers [p, p + B·T + 1), p = (k·world + r)·B·T, back to
 *                r·B·T when the next batch would run past the end;
 *   shuffle on:  epochs of non-overlapping windows: per epoch an offset in [0, T) and a Fisher-Yates permutation of
 *                the windows starting at offset + i·T, from xorshift64* seeded by splitmix64(seed) (the same on every
 *                rank); rank r takes windows r, r + world, ... of it. Every token is read once per epoch (sampling
 *                with replacement would read some windows three times and others never in 1.5 epochs).
 */
#include <glob.h>
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

int data_loader_open(DataLoader *dl, const char *dir, const char *split, int B, int T, int rank, int world,
                     int shuffle, uint64_t seed, int vocab_size, char *err, size_t errlen) {
    memset(dl, 0, sizeof(*dl));
    char pattern[4096];
    snprintf(pattern, sizeof pattern, "%s/%s_*.bin", dir, split);
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0 || g.gl_pathc == 0) {
        snprintf(err, errlen, "%s: no %s shards (expected %s_000000.bin from `gptrain prepare`)", pattern, split,
                 split);
        return -1;
    }
    // glob(3) returns the names sorted, so shards concatenate in file-name order.
    for (size_t i = 0; i < g.gl_pathc; i++) {
        uint16_t *t;
        size_t n;
        if (shard_read(g.gl_pathv[i], &t, &n, vocab_size, err, errlen)) {
            globfree(&g);
            free(dl->tokens);
            dl->tokens = NULL;
            return -1;
        }
        uint16_t *all = realloc(dl->tokens, (dl->ntok + n) * sizeof(uint16_t) + 1);
        if (!all) { snprintf(err, errlen, "%s: out of memory", g.gl_pathv[i]); free(t); globfree(&g); return -1; }
        memcpy(all + dl->ntok, t, n * sizeof(uint16_t));
        dl->tokens = all;
        dl->ntok += n;
        free(t);
    }
    globfree(&g);
    size_t need = (size_t)B * T * world + 1;
    if (dl->ntok < need) {
        snprintf(err, errlen, "%s: the %s split has %zu tokens; --batch %d --seq-len %d%s needs at least %zu", dir,
                 split, dl->ntok, B, T, world > 1 ? " over all ranks" : "", need);
        free(dl->tokens);
        dl->tokens = NULL;
        return -1;
    }
    dl->perm = malloc(sizeof(uint32_t) * (dl->ntok / T + 1));
    if (!dl->perm) { snprintf(err, errlen, "%s: out of memory", dir); free(dl->tokens); dl->tokens = NULL; return -1; }
    dl->B = B;
    dl->T = T;
    dl->rank = rank;
    dl->world = world;
    dl->shuffle = shuffle;
    dl->seed = seed;
    data_loader_reset(dl);
    return 0;
}

// A new epoch's order: offset in [0, T), then the windows offset + i*T that have T+1 tokens, permuted.
static void new_epoch(DataLoader *dl) {
    const size_t T = dl->T;
    dl->offset = xorshift64s(&dl->rng) % T;
    dl->nwin = (dl->ntok - 1 - dl->offset) / T;
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
