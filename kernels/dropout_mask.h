/*
 * dropout_mask.h: the dropout mask, one function of (key, element) that the CPU op (kernels/cpu/dropout.c) and the
 * GPU op (kernels/cuda/dropout.cu) both evaluate, so the two backends drop the same elements and a recompute or a
 * resume regenerates the mask instead of storing it. Counter-based: element i of a call keyed k keeps its value when
 * the top 32 bits of splitmix64's finalizer of (k ^ i * an odd constant) are at least p * 2^32; the caller derives k
 * from (seed, step, micro-step, layer, site) with dropout_key. Kept values are scaled by 1 / (1 - p).
 */
#ifndef GPTRAIN_DROPOUT_MASK_H
#define GPTRAIN_DROPOUT_MASK_H

#include <stdint.h>

#ifdef __host__   // included after the CUDA headers (a .cu file, compiled by nvcc or for the emulated GPU)
#define DROPOUT_FN __host__ __device__ static inline
#else
#define DROPOUT_FN static inline
#endif

DROPOUT_FN uint64_t dropout_mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// A call's key: every input through the mixer in turn, so keys of nearby (step, layer, site) share nothing.
DROPOUT_FN uint64_t dropout_key(uint64_t seed, uint64_t step, uint64_t micro, uint64_t layer, uint64_t site) {
    return dropout_mix64(seed ^ dropout_mix64(step ^ dropout_mix64(micro ^ dropout_mix64(layer * 8 + site))));
}

// The threshold p * 2^32 (p in [0, 1)): element i is kept when its 32 bits are >= it.
DROPOUT_FN uint32_t dropout_threshold(float p) { return (uint32_t)((double)p * 4294967296.0); }

DROPOUT_FN int dropout_keep(uint64_t key, uint64_t i, uint32_t threshold) {
    return (uint32_t)(dropout_mix64(key ^ (i * 0xD1B54A32D192ED03ull)) >> 32) >= threshold;
}

#endif
