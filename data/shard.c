/*
 * shard.c: llm.c's token shard: int32 header[256] = {20240520, 1, ntok, 0...}, then ntok uint16 tokens, all
 * little-endian. Written atomically; read with every check that can name what is wrong with a file.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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
    int ok = !file_write(f, h, sizeof h) && !file_write(f, tokens, sizeof(uint16_t) * ntok);
    return file_commit_tmp(f, tmp, path, ok, err, errlen);
}

int shard_check_header(const char *path, const int32_t *h, long long file_size, size_t *ntok, char *err,
                       size_t errlen) {
    if (file_size < (long long)(SHARD_HEADER_INTS * sizeof(int32_t))) {
        snprintf(err, errlen, "%s: shorter than the %zu-byte header of an llm.c token shard", path,
                 SHARD_HEADER_INTS * sizeof(int32_t));
        return -1;
    }
    if (h[0] != SHARD_MAGIC) {
        snprintf(err, errlen, "%s: bad magic %d, expected %d (an llm.c token shard)", path, h[0], SHARD_MAGIC);
        return -1;
    }
    if (h[1] != SHARD_VERSION) {
        snprintf(err, errlen, "%s: version %d, expected %d (uint16 tokens)", path, h[1], SHARD_VERSION);
        return -1;
    }
    const long long have = file_size - (long long)(SHARD_HEADER_INTS * sizeof(int32_t)), want = 2LL * h[2];
    if (h[2] < 0 || have != want) {
        snprintf(err, errlen, "%s: %s: header says %d tokens (%lld bytes) but the file has %lld bytes after the header",
                 path, have < want ? "truncated" : "wrong size", h[2], want, have);
        return -1;
    }
    if (h[2] == 0) {
        snprintf(err, errlen, "%s: the header says 0 tokens, expected a shard holding tokens", path);
        return -1;
    }
    *ntok = (size_t)h[2];
    return 0;
}

int shard_check_tokens(const char *path, const uint16_t *t, size_t n, size_t first, int vocab_size, char *err,
                       size_t errlen) {
    if (vocab_size <= 0) return 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i] >= vocab_size) {
            snprintf(err, errlen, "%s: token %d at position %zu is outside the vocabulary (size %d)", path, t[i],
                     first + i, vocab_size);
            return -1;
        }
    }
    return 0;
}

// Open PATH and read its header: the FILE is left positioned after the header. file_open_input opens it
// non-blocking and refuses anything but a regular file, so a FIFO named like a shard is refused at once instead of
// blocking the run until some process writes to it.
static FILE *shard_open(const char *path, size_t *ntok, long long *size, char *err, size_t errlen) {
    FILE *f = file_open_input(path, err, errlen);
    if (!f) return NULL;
    struct stat st;
    if (fstat(fileno(f), &st)) {
        snprintf(err, errlen, "%s: cannot check it (%s)", path, strerror(errno));
        fclose(f);
        return NULL;
    }
    int32_t h[SHARD_HEADER_INTS] = {0};
    size_t got = fread(h, 1, sizeof h, f);
    if (shard_check_header(path, h, got < sizeof h ? (long long)got : (long long)st.st_size, ntok, err, errlen)) {
        fclose(f);
        return NULL;
    }
    *size = (long long)st.st_size;
    return f;
}

int shard_read(const char *path, uint16_t **tokens, size_t *ntok, int vocab_size, char *err, size_t errlen) {
    *tokens = NULL;
    *ntok = 0;
    size_t n;
    long long size;
    FILE *f = shard_open(path, &n, &size, err, errlen);
    if (!f) return -1;
    uint16_t *t = malloc(n * sizeof(uint16_t) + 1);
    if (!t) { snprintf(err, errlen, "%s: out of memory for %zu tokens", path, n); fclose(f); return -1; }
    if (fread(t, sizeof(uint16_t), n, f) != n) {
        snprintf(err, errlen, "%s: read failed (%s)", path, strerror(errno));
        free(t);
        fclose(f);
        return -1;
    }
    fclose(f);
    if (shard_check_tokens(path, t, n, 0, vocab_size, err, errlen)) { free(t); return -1; }
    *tokens = t;
    *ntok = n;
    return 0;
}

int shard_map(const char *path, ShardMap *m, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    long long size;
    FILE *f = shard_open(path, &m->ntok, &size, err, errlen);
    if (!f) { errno = 0; return -1; }
    void *p = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fileno(f), 0);
    const int e = errno;
    fclose(f);   // the mapping keeps the file alive
    if (p == MAP_FAILED) {
        snprintf(err, errlen, "%s: cannot map it (%s)", path, strerror(e));
        errno = e;   // the loader explains ENOMEM (a limit on mappings or address space) with what it knows
        return -1;
    }
    m->map = p;
    m->map_bytes = (size_t)size;
    m->tokens = (const uint16_t *)((const char *)p + SHARD_HEADER_INTS * sizeof(int32_t));
    return 0;
}

void shard_unmap(ShardMap *m) {
    if (m->map) munmap(m->map, m->map_bytes);
    memset(m, 0, sizeof *m);
}
