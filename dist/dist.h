/*
 * dist.h: the process group the trainer talks to. Today it is the single-process group (rank 0 of 1): every
 * collective is the identity. The data-parallel issue adds MPI (CPU buffers) and NCCL (GPU buffers) behind the same
 * calls; the trainer already routes its gradient averaging and its per-rank data striding through here.
 */
#ifndef GPTRAIN_DIST_H
#define GPTRAIN_DIST_H

#include <stddef.h>

typedef struct Dist {
    int rank, world, local_rank;
    const char *backend;   // "none"
} Dist;

// Reads the launcher's environment (WORLD_SIZE, SLURM_NTASKS, OMPI_COMM_WORLD_SIZE). A launch with more than one
// process is refused with a message in err (-1): this build has no multi-process backend yet.
int dist_init(Dist *d, char *err, size_t errlen);
// Average a buffer over ranks, in place.
void dist_allreduce_mean(Dist *d, float *buf, size_t n);
void dist_barrier(Dist *d);
void dist_finalize(Dist *d);

#endif
