/*
 * fixture.c: loads tests/ref/gpt_ref.py's fixture (b"GPTFIX01", record count, then name/dtype/dims/data records),
 * and writes one in that format (test_dropout_ref's inputs and masks for the script).
 */
#include "fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rd(FILE *f, void *p, size_t n) { return fread(p, 1, n, f) == n; }

int fixture_load(Fixture *fx, const char *path) {
    memset(fx, 0, sizeof(*fx));
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "fixture %s: cannot open\n", path); return -1; }
    char magic[8];
    uint32_t count;
    if (!rd(f, magic, 8) || memcmp(magic, "GPTFIX01", 8) || !rd(f, &count, 4) || count > 10000) {
        fprintf(stderr, "fixture %s: bad header (expected GPTFIX01)\n", path);
        fclose(f);
        return -1;
    }
    fx->rec = calloc(count, sizeof(FixRecord));
    for (uint32_t i = 0; i < count; i++) {
        FixRecord *r = &fx->rec[i];
        uint32_t len, dtype, ndim;
        if (!rd(f, &len, 4) || len >= sizeof r->name || !rd(f, r->name, len) || !rd(f, &dtype, 4) || dtype > 2 ||
            !rd(f, &ndim, 4) || ndim > 8 || !rd(f, r->dims, 8 * (size_t)ndim)) {
            fprintf(stderr, "fixture %s: malformed record %u at offset %ld\n", path, i, ftell(f));
            fclose(f);
            fixture_free(fx);
            return -1;
        }
        r->dtype = (int)dtype;
        r->ndim = (int)ndim;
        r->numel = 1;
        for (uint32_t d = 0; d < ndim; d++) r->numel *= (size_t)r->dims[d];
        size_t bytes = r->numel * (dtype == FIX_F64 ? 8 : 4);
        r->data = malloc(bytes ? bytes : 1);
        if (!rd(f, r->data, bytes)) {
            fprintf(stderr, "fixture %s: record '%s' truncated\n", path, r->name);
            fclose(f);
            fx->n = (int)i + 1;
            fixture_free(fx);
            return -1;
        }
        fx->n = (int)i + 1;
    }
    fclose(f);
    return 0;
}

const FixRecord *fixture_get(const Fixture *fx, const char *name, int dtype, size_t numel) {
    for (int i = 0; i < fx->n; i++) {
        const FixRecord *r = &fx->rec[i];
        if (strcmp(r->name, name)) continue;
        if (r->dtype != dtype || (numel && r->numel != numel)) {
            fprintf(stderr, "fixture record '%s': dtype %d with %zu elements, expected dtype %d with %zu\n", name,
                    r->dtype, r->numel, dtype, numel);
            return NULL;
        }
        return r;
    }
    fprintf(stderr, "fixture: no record '%s'\n", name);
    return NULL;
}

void fixture_free(Fixture *fx) {
    for (int i = 0; i < fx->n; i++) free(fx->rec[i].data);
    free(fx->rec);
    memset(fx, 0, sizeof(*fx));
}

void fixture_add(Fixture *fx, const char *name, int dtype, int ndim, const int64_t *dims, const void *data) {
    FixRecord *grown = realloc(fx->rec, (size_t)(fx->n + 1) * sizeof *grown);
    if (!grown || ndim > 8 || strlen(name) >= sizeof grown->name) { fprintf(stderr, "fixture_add %s\n", name); exit(1); }
    fx->rec = grown;
    FixRecord *r = &fx->rec[fx->n++];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    r->dtype = dtype;
    r->ndim = ndim;
    r->numel = 1;
    for (int d = 0; d < ndim; d++) r->numel *= (size_t)(r->dims[d] = dims[d]);
    const size_t bytes = r->numel * (dtype == FIX_F64 ? 8 : 4);
    if (!(r->data = malloc(bytes ? bytes : 1))) { fprintf(stderr, "fixture_add %s: out of memory\n", name); exit(1); }
    memcpy(r->data, data, bytes);
}

int fixture_save(const Fixture *fx, const char *path) {
    FILE *f = fopen(path, "wb");
    if (!f) { fprintf(stderr, "fixture %s: cannot create\n", path); return -1; }
    const uint32_t count = (uint32_t)fx->n;
    int ok = fwrite("GPTFIX01", 1, 8, f) == 8 && fwrite(&count, 4, 1, f) == 1;
    for (int i = 0; ok && i < fx->n; i++) {
        const FixRecord *r = &fx->rec[i];
        const uint32_t len = (uint32_t)strlen(r->name), dtype = (uint32_t)r->dtype, ndim = (uint32_t)r->ndim;
        const size_t bytes = r->numel * (r->dtype == FIX_F64 ? 8 : 4);
        ok = fwrite(&len, 4, 1, f) == 1 && fwrite(r->name, 1, len, f) == len && fwrite(&dtype, 4, 1, f) == 1 &&
             fwrite(&ndim, 4, 1, f) == 1 && fwrite(r->dims, 8, ndim, f) == ndim && fwrite(r->data, 1, bytes, f) == bytes;
    }
    if (fclose(f) || !ok) { fprintf(stderr, "fixture %s: write failed\n", path); return -1; }
    return 0;
}
