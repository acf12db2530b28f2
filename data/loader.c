/*
 * loader.c: (B, T+1)-token windows from a split's shards, held in memory (the data issue adds streaming shards and
 * a prefetch thread behind the same calls).
 *   shuffle off: llm.c's DataLoader order: batch k of rank r covers [p, p + B·T + 1), p = (k·world + r)·B·T, back to
 *                r·B·T when the next batch would run past the end;
 *   shuffle on:  each row starts at a uniform offset in [0, ntok − T − 1] from xorshift64* seeded by
 *                splitmix64(seed ⊕ rank·golden), so runs repeat for a seed and ranks draw different windows.
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
    dl->B = B;
    dl->T = T;
    dl->rank = rank;
    dl->world = world;
    dl->shuffle = shuffle;
    dl->seed = seed;
    data_loader_reset(dl);
    return 0;
}

void data_loader_reset(DataLoader *dl) {
    dl->rng = splitmix64(dl->seed ^ ((uint64_t)dl->rank * 0x9E3779B97F4A7C15ull));
    if (!dl->rng) dl->rng = 1;
    dl->pos = (size_t)dl->rank * dl->B * dl->T;
    dl->batches = 0;
}

void data_loader_next(DataLoader *dl, int32_t *inputs, int32_t *targets) {
    const size_t B = dl->B, T = dl->T;
    if (dl->shuffle) {
        const uint64_t span = dl->ntok - T;  // starts 0 .. ntok-T-1 leave room for the T+1 window
        for (size_t b = 0; b < B; b++) {
            const uint16_t *w = dl->tokens + xorshift64s(&dl->rng) % span;
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
    dl->tokens = NULL;
}
