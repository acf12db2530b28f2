/*
 * dist.h: the process group the trainer talks to. Backends: "none" (one process; every collective is the identity)
 * and "mpi" (Open MPI, CPU buffers), chosen from the launcher's environment: mpirun (OMPI_COMM_WORLD_*), srun with
 * PMIx (PMIX_RANK) or any PMI launcher (PMI_SIZE) start MPI; a single process never touches MPI. The trainer routes
 * its gradient averaging, its scalar reductions (loss, norms, the stop flag) and its per-rank data striding through
 * here, and only rank 0 prints and writes files.
 */
#ifndef GPTRAIN_DIST_H
#define GPTRAIN_DIST_H

#include <stddef.h>

typedef struct Dist {
    int rank, world, local_rank;
    const char *backend;   // "none", "mpi", or "nccl" (a torchrun-style launch: NCCL alone, bootstrapped over TCP)
    int nccl;              // 1 once dist_nccl_init made the GPU communicator
} Dist;

// Start the group from the launcher's environment. A multi-process launch this build cannot serve (no MPI built in,
// or torchrun-style WORLD_SIZE without a launcher MPI understands) is refused with a message in err (-1).
int dist_init(Dist *d, char *err, size_t errlen);
// Average a host buffer over ranks, in place (MPI_Allreduce, sum, then scaled by 1/world).
void dist_allreduce_mean(Dist *d, float *buf, size_t n);
// Sum / max of a scalar over ranks (every rank gets the result).
double dist_allreduce_sum(Dist *d, double x);
int dist_allreduce_max_int(Dist *d, int x);
// ZeRO-1 pieces: reduce-scatter the mean of buf (n = world * shard floats) so rank r's shard [r*shard, (r+1)*shard)
// holds the averaged values; all-gather each rank's shard of buf back into every rank's full buffer.
void dist_reduce_scatter_mean(Dist *d, float *buf, size_t shard);
void dist_allgather(Dist *d, float *buf, size_t shard);
// Every rank's `bytes` at send concatenated in rank order into recv (world * bytes) on every rank; send may be
// recv + rank * bytes (in place). Host memory (MPI).
void dist_allgather_bytes(Dist *d, const void *send, void *recv, size_t bytes);
// Non-blocking sum of a host buffer over ranks, in place (MPI_Iallreduce); dist_wait_mean completes every pending
// one and scales each by 1/world. Up to DIST_MAX_PENDING may be in flight; each call also lets MPI progress the
// earlier ones. Sums are the same as dist_allreduce_mean's, so the two paths give identical results.
#define DIST_MAX_PENDING 1024
void dist_iallreduce_sum(Dist *d, float *buf, size_t n);
void dist_wait_mean(Dist *d);
// TCP rendezvous (bootstrap.c) for torchrun-style launches: rank 0 listens on addr:port and sends its n-byte blob
// to every other rank, which connects (retrying) and receives it into blob. Bounded by timeout_s: a rank that never
// arrives fails rank 0 with a message naming it. 0, or -1 with err.
int dist_tcp_broadcast(int rank, int world, const char *addr, int port, void *blob, size_t n, double timeout_s,
                       char *err, size_t errlen);
void dist_barrier(Dist *d);
// NCCL for GPU buffers (nccl.c; builds with CUDA and NCCL). dist_nccl_init makes the communicator (unique id over MPI
// or the TCP rendezvous) for this rank's GPU, refusing a rank without a GPU of its own; the all-reduce averages a
// device buffer of n fp32 (or, bf16 set, bf16) values in place; scalar sums go through NCCL too when MPI is absent.
int dist_nccl_init(Dist *d, int device_count, char *err, size_t errlen);
void dist_nccl_allreduce_mean(Dist *d, void *dev_buf, size_t n, int bf16);
// ZeRO-1 on device memory, each ordered after the compute (legacy) stream's queued work and waited for (errors
// polled, with the timeout): the mean of dev_buf (world * shard values, fp32 or bf16) reduce-scattered in place, so
// this rank's shard [rank * shard, (rank + 1) * shard) holds the averages; and the all-gather of count elements of
// elem bytes (1, 2, 4 or 8) per rank from send into recv (send == recv + rank * count * elem: in place).
void dist_nccl_reduce_scatter_mean(Dist *d, void *dev_buf, size_t shard, int bf16);
void dist_nccl_allgather(Dist *d, const void *send, void *recv, size_t count, size_t elem);
// The overlapped form (a bucket of gradients as soon as they are final, while the backward goes on): one call
// averages count device buffers (bufs[i], ns[i] values, fp32 or bf16) in place on the communication stream, in one
// NCCL group, ordered after everything the compute (legacy) stream has queued so far; it does not wait. Any number of
// calls per step (past DIST_NCCL_BUCKETS - 1 the rest are timed as one span). dist_nccl_wait_buckets then orders the compute stream after all of them, waits
// for them on the host (NCCL's errors polled, with the timeout), and gives the time the all-reduces took on the
// communication stream (*comm_s, their sum) and how long they ran past the end of the work queued on the compute
// stream before the call (*exposed_s: what the backward did not hide). Both from CUDA events.
#define DIST_NCCL_BUCKETS 256
void dist_nccl_allreduce_mean_async(Dist *d, void *const *bufs, const size_t *ns, int count, int bf16);
void dist_nccl_wait_buckets(Dist *d, double *comm_s, double *exposed_s);
double dist_nccl_sum(Dist *d, double x);
void dist_nccl_finalize(Dist *d);
// Bind this process's threads to the CPUs that sysfs names as nearest the GPU of PCI bus id `bus_id`
// ("0000:3b:00.0"; sysfs_root normally "/sys"), within what the launcher allowed (affinity.c). 0: bound; 1: left as
// it was. msg gets one line saying which, for the run's log.
int dist_bind_near_gpu(const char *sysfs_root, const char *bus_id, char *msg, size_t n);
// End the whole job (all ranks) with status code after a fatal error on this rank.
void dist_abort(Dist *d, int code);
void dist_finalize(Dist *d);

#endif
