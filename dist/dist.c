/*
 * dist.c: the process group. Without MPI built in (or without an MPI launcher) it is the single-process group and
 * refuses a multi-process launch rather than silently training N independent copies. With MPI (make finds mpicc):
 * MPI_Init when a launcher that MPI understands started us (mpirun: OMPI_COMM_WORLD_SIZE; srun/PMIx: PMIX_RANK;
 * PMI: PMI_SIZE), MPI_ERRORS_ARE_FATAL on the world communicator (an error or a dead peer ends the whole job, and
 * mpirun names the rank), and the collectives on CPU buffers. MPI's reductions are not specified to sum in rank
 * order, but Open MPI's on one node with 2 ranks sums a + b, which is exact in either order; for more ranks the sum
 * is deterministic for a fixed launch but may differ in the last bits from one large batch.
 */
#include "dist.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef GPTRAIN_MPI
#include <mpi.h>
#endif

static int env_int(const char *name) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : 0;
}

// The launcher's world size, and which variable said it (0 when no launcher set one).
static int launcher_world(const char **var) {
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS", "WORLD_SIZE"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        // Inside a Slurm allocation SLURM_NTASKS is set for the batch script too; only srun's tasks have SLURM_PROCID.
        if (!strcmp(vars[i], "SLURM_NTASKS") && !getenv("SLURM_PROCID")) continue;
        int n = env_int(vars[i]);
        if (n > 0) { *var = vars[i]; return n; }
    }
    *var = NULL;
    return 0;
}

int dist_init(Dist *d, char *err, size_t errlen) {
    d->rank = 0;
    d->world = 1;
    d->local_rank = 0;
    d->backend = "none";
    d->nccl = 0;
    const char *var;
    const int n = launcher_world(&var);
#ifdef GPTRAIN_MPI
    const int mpi_launch = getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_SIZE");
    if (mpi_launch) {
        int provided;
        MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
        MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
        MPI_Comm_size(MPI_COMM_WORLD, &d->world);
        // The rank among the processes of this node: from the launcher when it says (Open MPI, Slurm, torchrun),
        // else from MPI itself (MPICH and others set none of these): the ranks that share memory with this one.
        const char *lr = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
        if (!lr) lr = getenv("SLURM_LOCALID");
        if (!lr) lr = getenv("LOCAL_RANK");
        if (lr) {
            d->local_rank = atoi(lr);
        } else {
            MPI_Comm node;
            MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &node);
            MPI_Comm_rank(node, &d->local_rank);
            MPI_Comm_free(&node);
        }
        d->backend = "mpi";
        if (var && n != d->world && strcmp(var, "WORLD_SIZE")) {
            snprintf(err, errlen, "%s=%d but MPI started %d processes: a mismatched launch", var, n, d->world);
            return -1;
        }
        return 0;
    }
#endif
#ifdef GPTRAIN_NCCL
    // torchrun-style: RANK / WORLD_SIZE / LOCAL_RANK; the collectives are NCCL's, bootstrapped over TCP later.
    if (n > 1 && var && !strcmp(var, "WORLD_SIZE") && getenv("RANK")) {
        d->rank = env_int("RANK");
        d->world = n;
        d->local_rank = env_int("LOCAL_RANK");
        d->backend = "nccl";
        if (d->rank < 0 || d->rank >= n) {
            snprintf(err, errlen, "RANK=%d: expected 0 <= RANK < WORLD_SIZE=%d", d->rank, n);
            return -1;
        }
        return 0;
    }
#endif
    if (n > 1) {
#ifdef GPTRAIN_MPI
        snprintf(err, errlen,
                 "%s=%d: launch the ranks with mpirun or srun (MPI carries the collectives on CPU buffers; "
                 "torchrun-style variables alone are for the NCCL bootstrap, which this build lacks)", var, n);
#else
        snprintf(err, errlen,
                 "%s=%d: this build trains in a single process (make found no mpicc; apt-get install "
                 "libopenmpi-dev openmpi-bin for data parallelism); expected a launch of 1 process", var, n);
#endif
        return -1;
    }
    return 0;
}

void dist_allreduce_mean(Dist *d, float *buf, size_t n) {
    if (d->world == 1) return;
#ifdef GPTRAIN_MPI
    // MPI counts are int: large buffers go in pieces of 2^30 floats.
    for (size_t off = 0; off < n; off += (size_t)1 << 30) {
        const size_t m = n - off < ((size_t)1 << 30) ? n - off : ((size_t)1 << 30);
        MPI_Allreduce(MPI_IN_PLACE, buf + off, (int)m, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
    const float s = 1.0f / (float)d->world;
    for (size_t i = 0; i < n; i++) buf[i] *= s;
#else
    (void)buf;
    (void)n;
#endif
}

double dist_allreduce_sum(Dist *d, double x) {
#ifdef GPTRAIN_NCCL
    if (d->world > 1 && !strcmp(d->backend, "nccl")) return dist_nccl_sum(d, x);
#endif
#ifdef GPTRAIN_MPI
    if (d->world > 1) MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
#else
    (void)d;
#endif
    return x;
}

int dist_allreduce_max_int(Dist *d, int x) {
#ifdef GPTRAIN_NCCL
    // Over NCCL alone: a sum of "this rank saw it" flags is non-zero exactly when the max is.
    if (d->world > 1 && !strcmp(d->backend, "nccl")) return dist_nccl_sum(d, x != 0) > 0 ? (x ? x : 1) : 0;
#endif
#ifdef GPTRAIN_MPI
    if (d->world > 1) MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
#else
    (void)d;
#endif
    return x;
}

void dist_reduce_scatter_mean(Dist *d, float *buf, size_t shard) {
    if (d->world == 1) return;
#ifdef GPTRAIN_MPI
    // In place, MPI_Reduce_scatter_block leaves the result at the start of the buffer; a scratch shard (allocated
    // on the first call, kept for the run) puts it at this rank's offset instead.
    static float *scratch;
    static size_t cap;
    if (cap < shard) {
        free(scratch);
        scratch = malloc(shard * sizeof(float));
        cap = scratch ? shard : 0;
        if (!scratch) { fprintf(stderr, "gptrain: error: out of memory for the reduce-scatter shard\n"); dist_abort(d, 2); }
    }
    MPI_Reduce_scatter_block(buf, scratch, (int)shard, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    const float s = 1.0f / (float)d->world;
    float *mine = buf + (size_t)d->rank * shard;
    for (size_t i = 0; i < shard; i++) mine[i] = scratch[i] * s;
#else
    (void)buf;
    (void)shard;
#endif
}

void dist_allgather(Dist *d, float *buf, size_t shard) {
    if (d->world == 1) return;
#ifdef GPTRAIN_MPI
    MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, (int)shard, MPI_FLOAT, MPI_COMM_WORLD);
#else
    (void)buf;
    (void)shard;
#endif
}

void dist_allgather_bytes(Dist *d, const void *send, void *recv, size_t bytes) {
    if (d->world == 1) {
        if (send != recv) memmove(recv, send, bytes);
        return;
    }
#ifdef GPTRAIN_MPI
    // In units of the largest power-of-two block up to 8 bytes that divides the size (MPI counts are int).
    MPI_Datatype unit = bytes % 8 == 0 ? MPI_DOUBLE : bytes % 4 == 0 ? MPI_FLOAT : bytes % 2 == 0 ? MPI_SHORT : MPI_BYTE;
    const size_t us = bytes % 8 == 0 ? 8 : bytes % 4 == 0 ? 4 : bytes % 2 == 0 ? 2 : 1, count = bytes / us;
    if (count > (size_t)INT_MAX) {
        fprintf(stderr, "gptrain: error: an all-gather of %zu bytes per rank: more than MPI takes in one call\n", bytes);
        dist_abort(d, 2);
    }
    const int in_place = (const char *)send == (const char *)recv + (size_t)d->rank * bytes;
    MPI_Allgather(in_place ? MPI_IN_PLACE : send, (int)count, unit, recv, (int)count, unit, MPI_COMM_WORLD);
#else
    (void)send;
    (void)recv;
#endif
}

#ifdef GPTRAIN_MPI
static MPI_Request pending_req[DIST_MAX_PENDING];
static float *pending_buf[DIST_MAX_PENDING];
static size_t pending_n[DIST_MAX_PENDING];
static int npending;
#endif

void dist_iallreduce_sum(Dist *d, float *buf, size_t n) {
    if (d->world == 1 || n == 0) return;
#ifdef GPTRAIN_MPI
    if (npending == DIST_MAX_PENDING || n > ((size_t)1 << 30)) {   // full, or too large for one request: block
        dist_wait_mean(d);
        dist_allreduce_mean(d, buf, n);
        return;
    }
    MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &pending_req[npending]);
    pending_buf[npending] = buf;
    pending_n[npending++] = n;
    int done;
    MPI_Testall(npending, pending_req, &done, MPI_STATUSES_IGNORE);   // progress the ones already in flight
#else
    (void)buf;
#endif
}

void dist_wait_mean(Dist *d) {
#ifdef GPTRAIN_MPI
    if (!npending) return;
    MPI_Waitall(npending, pending_req, MPI_STATUSES_IGNORE);
    const float s = 1.0f / (float)d->world;
    for (int k = 0; k < npending; k++)
        for (size_t i = 0; i < pending_n[k]; i++) pending_buf[k][i] *= s;
    npending = 0;
#else
    (void)d;
#endif
}

void dist_barrier(Dist *d) {
#ifdef GPTRAIN_MPI
    if (strcmp(d->backend, "mpi") == 0) MPI_Barrier(MPI_COMM_WORLD);
#else
    (void)d;
#endif
}

void dist_abort(Dist *d, int code) {
#ifdef GPTRAIN_MPI
    if (strcmp(d->backend, "mpi") == 0) MPI_Abort(MPI_COMM_WORLD, code);
#else
    (void)d;
#endif
    exit(code);
}

void dist_finalize(Dist *d) {
#ifdef GPTRAIN_NCCL
    dist_nccl_finalize(d);
#endif
#ifdef GPTRAIN_MPI
    if (strcmp(d->backend, "mpi") == 0) MPI_Finalize();
#endif
    d->backend = "none";
}

#ifndef GPTRAIN_NCCL
// Without NCCL the GPU paths are never taken (dist.nccl stays 0); these keep one set of calls in the trainer.
int dist_nccl_init(Dist *d, int device_count, char *err, size_t errlen) {
    (void)d;
    (void)device_count;
    snprintf(err, errlen, "NCCL is not built into this binary (make found no nccl.h/libnccl)");
    return -1;
}
void dist_nccl_allreduce_mean(Dist *d, void *dev_buf, size_t n, int bf16) {
    (void)dev_buf;
    (void)n;
    (void)bf16;
    fprintf(stderr, "gptrain: internal error at %s:%d: NCCL all-reduce without NCCL\n", __FILE__, __LINE__);
    dist_abort(d, 1);
}
void dist_nccl_allreduce_mean_async(Dist *d, void *const *bufs, const size_t *ns, int count, int bf16) {
    (void)bufs;
    (void)ns;
    (void)count;
    dist_nccl_allreduce_mean(d, NULL, 0, bf16);
}
void dist_nccl_wait_buckets(Dist *d, double *comm_s, double *exposed_s) {
    (void)comm_s;
    (void)exposed_s;
    dist_nccl_allreduce_mean(d, NULL, 0, 0);
}
double dist_nccl_sum(Dist *d, double x) {
    (void)d;
    return x;
}
void dist_nccl_finalize(Dist *d) { (void)d; }
#endif
