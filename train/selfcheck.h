/*
 * selfcheck.h: the GPU self-check a run does before its first step (--self-check on): every op the run will use,
 * in the run's precision and attention kind, on small fresh random inputs, on the run's GPU against the CPU
 * reference on the same inputs (train/selfcheck.c says how, and with which bounds).
 */
#ifndef GPTRAIN_SELFCHECK_H
#define GPTRAIN_SELFCHECK_H

#include <stddef.h>

#include "backend.h"
#include "gpt.h"

typedef struct SelfCheckSpec {
    int matmul_mode;          // the GPU backend's: 0 fp32, 1 TF32, 2 bf16, 3 fp16 tensor cores (backend_cuda_init)
    AttentionKind attention;  // the run's
    int head_size;            // the run's C / NH (the flash kernels take a few)
    float dropout;            // the run's --dropout (0: op_dropout is not checked)
    uint64_t seed;            // the inputs' (fresh per run: the trainer passes its seed mixed with the clock)
} SelfCheckSpec;

// Runs the check on `gpu`, leaving its memory and allocation count as they were. Returns 0 with a one-line
// summary in line (the worst error per op family, as a fraction of its bound), or -1 with the one line that
// names the op and output that disagreed, the error found and the bound.
int selfcheck_run(Backend *gpu, const SelfCheckSpec *spec, char *line, size_t n);

#endif
