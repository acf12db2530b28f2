/*
 * fixture.h: reader (and writer) of the PyTorch fixture format of tests/ref/gpt_ref.py (in that script's
 * docstring): named records of float32, float64 or int32 arrays.
 */
#ifndef GPTRAIN_FIXTURE_H
#define GPTRAIN_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

enum { FIX_F32 = 0, FIX_F64 = 1, FIX_I32 = 2 };

typedef struct FixRecord {
    char name[128];
    int dtype, ndim;
    int64_t dims[8];
    size_t numel;
    void *data;
} FixRecord;

typedef struct Fixture {
    FixRecord *rec;
    int n;
} Fixture;

// Load a fixture file; on failure prints why (file, offset) and returns -1.
int fixture_load(Fixture *fx, const char *path);
// The record `name` with dtype `dtype` and `numel` elements (numel 0: any); prints and returns NULL if it is absent
// or different.
const FixRecord *fixture_get(const Fixture *fx, const char *name, int dtype, size_t numel);
void fixture_free(Fixture *fx);

// Writing one (the format gpt_ref.py reads back): the records of fx, in order. 0, or -1 with the reason printed.
int fixture_save(const Fixture *fx, const char *path);
// Append a record holding a copy of numel elements of data, shaped dims[0..ndim) (their product is numel).
void fixture_add(Fixture *fx, const char *name, int dtype, int ndim, const int64_t *dims, const void *data);

#endif
