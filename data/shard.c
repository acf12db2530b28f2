/*
 * shard.c: llm.c's token shard: int32 header[256] = {20240520, 1, ntok, 0...}, then ntok uint16 tokens, all
 * little-endian. Written atomically; read with every check that can name what is wrong with a file.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "shards are little-endian; big-endian hosts unsupported");

int shard_write(const char *path, const uint16_t *tokens, size_t ntok, char *err, size_t errlen) {
    if (ntok > 0x7fffffff) {
        snprintf(err, errlen, "%s: %zu tokens, expected at most 2^31 - 1 per shard (the header's count is int32)",
                 path, ntok);
        return -1;
    }
    int32_t h[SHARD_HEADER_INTS] = {0};
    h[0] = SHARD_MAGIC;
    h[1] = SHARD_VERSION;
    h[2] = (int32_t)ntok;
    char tmp[4096];
    FILE *f = file_create_tmp(path, tmp, sizeof tmp, err, errlen);
    if (!f) return -1;
    int ok = fwrite(h, sizeof h, 1, f) == 1 && fwrite(tokens, sizeof(uint16_t), ntok, f) == ntok;
    return file_commit_tmp(f, tmp, path, ok, err, errlen);
}

int shard_read(const char *path, uint16_t **tokens, size_t *ntok, int vocab_size, char *err, size_t errlen) {
    *tokens = NULL;
    *ntok = 0;
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "%s: cannot open (%s)", path, strerror(errno)); return -1; }
    struct stat st;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file, expected an llm.c token shard", path);
        fclose(f);
        return -1;
    }
    int32_t h[SHARD_HEADER_INTS];
    if (fread(h, sizeof h, 1, f) != 1) {
        snprintf(err, errlen, "%s: shorter than the %zu-byte header of an llm.c token shard", path, sizeof h);
        fclose(f);
        return -1;
    }
    if (h[0] != SHARD_MAGIC) {
        snprintf(err, errlen, "%s: bad magic %d, expected %d (an llm.c token shard)", path, h[0], SHARD_MAGIC);
        fclose(f);
        return -1;
    }
    if (h[1] != SHARD_VERSION) {
        snprintf(err, errlen, "%s: version %d, expected %d (uint16 tokens)", path, h[1], SHARD_VERSION);
        fclose(f);
        return -1;
    }
    const long long have = (long long)st.st_size - (long long)sizeof h, want = 2LL * h[2];
    if (h[2] < 0 || have != want) {
        snprintf(err, errlen, "%s: %s: header says %d tokens (%lld bytes) but the file has %lld bytes after the header",
                 path, have < want ? "truncated" : "wrong size", h[2], want, have);
        fclose(f);
        return -1;
    }
    uint16_t *t = malloc((size_t)h[2] * sizeof(uint16_t) + 1);
    if (!t) { snprintf(err, errlen, "%s: out of memory for %d tokens", path, h[2]); fclose(f); return -1; }
    if (fread(t, sizeof(uint16_t), (size_t)h[2], f) != (size_t)h[2]) {
        snprintf(err, errlen, "%s: read failed (%s)", path, strerror(errno));
        free(t);
        fclose(f);
        return -1;
    }
    fclose(f);
    if (vocab_size > 0) {
        for (int32_t i = 0; i < h[2]; i++) {
            if (t[i] >= vocab_size) {
                snprintf(err, errlen, "%s: token %d at position %d is outside the vocabulary (size %d)", path, t[i], i,
                         vocab_size);
                free(t);
                return -1;
            }
        }
    }
    *tokens = t;
    *ntok = (size_t)h[2];
    return 0;
}
