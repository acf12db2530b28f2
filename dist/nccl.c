/*
 * nccl.c: the process group's NCCL side, for gradient buffers that live on the GPU (built when make finds CUDA and
 * NCCL). The communicator is made from a unique id that rank 0 creates and broadcasts: over MPI when MPI started
 * the ranks, else over the TCP rendezvous of bootstrap.c (torchrun-style RANK / WORLD_SIZE / MASTER_ADDR /
 * MASTER_PORT). Each rank drives the GPU of its local rank. ncclAvg averages in one pass. Every call is checked;
 * NCCL's asynchronous errors are polled while waiting, with a timeout, so a dead peer ends the job with a message
 * instead of a hang.
 */
#ifdef GPTRAIN_NCCL
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef GPTRAIN_MPI
#include <mpi.h>
#endif

#include "dist.h"

#define NCCL_CHECK(call)                                                                                        \
    do {                                                                                                        \
        ncclResult_t r_ = (call);                                                                               \
        if (r_ != ncclSuccess) {                                                                                \
            fprintf(stderr, "gptrain: NCCL error at %s:%d: %s: %s\n", __FILE__, __LINE__, #call,                \
                    ncclGetErrorString(r_));                                                                    \
            exit(1);                                                                                            \
        }                                                                                                       \
    } while (0)

#define CUDA_OK(call)                                                                                           \
    do {                                                                                                        \
        cudaError_t e_ = (call);                                                                                \
        if (e_ != cudaSuccess) {                                                                                \
            fprintf(stderr, "gptrain: CUDA error at %s:%d: %s: %s\n", __FILE__, __LINE__, #call,                \
                    cudaGetErrorString(e_));                                                                    \
            exit(1);                                                                                            \
        }                                                                                                       \
    } while (0)

static ncclComm_t comm;
static cudaStream_t stream;        // the communication stream (non-blocking: it never waits for the legacy stream)
static cudaEvent_t grads_ready;    // recorded on the compute (legacy) stream when the gradients are final
static double *scalar_dev, *scalar_host;   // one double on the device, and its pinned host side
// The overlapped all-reduce's buckets: an event on the compute stream before each (its gradients are final), one on
// the communication stream after each, and the compute stream's end mark and the communication stream's last mark.
static cudaEvent_t bucket_ready[DIST_NCCL_BUCKETS], bucket_start[DIST_NCCL_BUCKETS], bucket_end[DIST_NCCL_BUCKETS];
static cudaEvent_t compute_end, comm_end;
static int buckets;
static double timeout_s = 600.0;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

int dist_nccl_init(Dist *d, int device_count, char *err, size_t errlen) {
    if (device_count <= 0) { snprintf(err, errlen, "NCCL: no GPU"); return -1; }
    if (d->local_rank >= device_count) {
        snprintf(err, errlen,
                 "local rank %d has no GPU of its own (%d on this node): two ranks cannot share a GPU under NCCL; "
                 "launch at most %d ranks per node", d->local_rank, device_count, device_count);
        return -1;
    }
    const char *t = getenv("GPTRAIN_COMM_TIMEOUT");
    if (t && atof(t) > 0) timeout_s = atof(t);
    ncclUniqueId id;
    if (d->rank == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    if (d->world > 1) {
        if (!strcmp(d->backend, "mpi")) {
#ifdef GPTRAIN_MPI
            MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
#endif
        } else {
            const char *addr = getenv("MASTER_ADDR"), *port = getenv("MASTER_PORT");
            if (!addr || !port) {
                snprintf(err, errlen, "WORLD_SIZE=%d without mpirun: expected MASTER_ADDR and MASTER_PORT for the "
                         "NCCL bootstrap", d->world);
                return -1;
            }
            if (dist_tcp_broadcast(d->rank, d->world, addr, atoi(port), &id, sizeof id, timeout_s, err, errlen))
                return -1;
        }
    }
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 1;
    NCCL_CHECK(ncclCommInitRankConfig(&comm, d->world, id, d->rank, &cfg));
    if (cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess ||
        cudaEventCreateWithFlags(&grads_ready, cudaEventDisableTiming) != cudaSuccess ||
        cudaMalloc((void **)&scalar_dev, sizeof(double)) != cudaSuccess ||
        cudaHostAlloc((void **)&scalar_host, sizeof(double), cudaHostAllocDefault) != cudaSuccess ||
        cudaEventCreate(&compute_end) != cudaSuccess || cudaEventCreate(&comm_end) != cudaSuccess) {
        snprintf(err, errlen, "NCCL: cannot create the communication stream and its buffers");
        return -1;
    }
    for (int i = 0; i < DIST_NCCL_BUCKETS; i++)
        if (cudaEventCreate(&bucket_ready[i]) != cudaSuccess || cudaEventCreate(&bucket_start[i]) != cudaSuccess ||
            cudaEventCreate(&bucket_end[i]) != cudaSuccess) {
            snprintf(err, errlen, "NCCL: cannot create the buckets' events");
            return -1;
        }
    d->nccl = 1;
    return 0;
}

// Wait for the communication stream, polling NCCL's asynchronous error state, up to the timeout.
static void wait_stream(Dist *d) {
    const double t0 = now_s();
    for (;;) {
        cudaError_t q = cudaStreamQuery(stream);
        if (q == cudaSuccess) return;
        if (q != cudaErrorNotReady) {
            fprintf(stderr, "gptrain: error: rank %d: CUDA error in a collective: %s\n", d->rank, cudaGetErrorString(q));
            dist_abort(d, 1);
        }
        ncclResult_t async;
        ncclCommGetAsyncError(comm, &async);
        if (async != ncclSuccess || now_s() - t0 > timeout_s) {
            fprintf(stderr, "gptrain: error: rank %d: a collective %s (%s); another rank probably died\n", d->rank,
                    async != ncclSuccess ? "failed" : "timed out", async != ncclSuccess ? ncclGetErrorString(async)
                                                                                      : "GPTRAIN_COMM_TIMEOUT");
            ncclCommAbort(comm);
            dist_abort(d, 1);
        }
    }
}

void dist_nccl_allreduce_mean(Dist *d, void *dev_buf, size_t n, int bf16) {
    // The gradients were written on the default stream: the communication stream waits for them.
    CUDA_OK(cudaEventRecord(grads_ready, 0));
    CUDA_OK(cudaStreamWaitEvent(stream, grads_ready, 0));
    NCCL_CHECK(ncclAllReduce(dev_buf, dev_buf, n, bf16 ? ncclBfloat16 : ncclFloat, ncclAvg, comm, stream));
    wait_stream(d);
}

void dist_nccl_reduce_scatter_mean(Dist *d, void *dev_buf, size_t shard, int bf16) {
    CUDA_OK(cudaEventRecord(grads_ready, 0));
    CUDA_OK(cudaStreamWaitEvent(stream, grads_ready, 0));
    const size_t eb = bf16 ? 2 : 4;
    NCCL_CHECK(ncclReduceScatter(dev_buf, (char *)dev_buf + (size_t)d->rank * shard * eb, shard,
                                 bf16 ? ncclBfloat16 : ncclFloat, ncclAvg, comm, stream));
    wait_stream(d);
}

void dist_nccl_allgather(Dist *d, const void *send, void *recv, size_t count, size_t elem) {
    // The type only sets the unit: nothing is reduced.
    if (elem != 1 && elem != 2 && elem != 4 && elem != 8) {
        fprintf(stderr, "gptrain: internal error: an all-gather of %zu-byte elements\n", elem);
        abort();
    }
    const ncclDataType_t t = elem == 8 ? ncclFloat64 : elem == 4 ? ncclFloat32 : elem == 2 ? ncclBfloat16 : ncclInt8;
    CUDA_OK(cudaEventRecord(grads_ready, 0));
    CUDA_OK(cudaStreamWaitEvent(stream, grads_ready, 0));
    NCCL_CHECK(ncclAllGather(send, recv, count, t, comm, stream));
    wait_stream(d);
}

void dist_nccl_allreduce_mean_async(Dist *d, void *const *bufs, const size_t *ns, int count, int bf16) {
    (void)d;
    // Past DIST_NCCL_BUCKETS - 1 buckets in a step (a model of thousands of layers) the last slot's events span all
    // the rest: they are timed as one, waits for the backward between them included.
    const int b = buckets < DIST_NCCL_BUCKETS ? buckets : DIST_NCCL_BUCKETS - 1;
    // Ordered after the backward queued so far (this bucket's gradients are final), without the host waiting.
    CUDA_OK(cudaEventRecord(bucket_ready[b], 0));
    CUDA_OK(cudaStreamWaitEvent(stream, bucket_ready[b], 0));
    if (buckets++ <= DIST_NCCL_BUCKETS - 1) CUDA_OK(cudaEventRecord(bucket_start[b], stream));
    NCCL_CHECK(ncclGroupStart());
    for (int i = 0; i < count; i++)
        NCCL_CHECK(ncclAllReduce(bufs[i], bufs[i], ns[i], bf16 ? ncclBfloat16 : ncclFloat, ncclAvg, comm, stream));
    NCCL_CHECK(ncclGroupEnd());
    CUDA_OK(cudaEventRecord(bucket_end[b], stream));
}

void dist_nccl_wait_buckets(Dist *d, double *comm_s, double *exposed_s) {
    CUDA_OK(cudaEventRecord(compute_end, 0));    // the end of the backward (everything queued before this call)
    CUDA_OK(cudaEventRecord(comm_end, stream));
    CUDA_OK(cudaStreamWaitEvent(0, comm_end, 0));   // the optimizer reads the averaged gradients
    wait_stream(d);
    CUDA_OK(cudaEventSynchronize(compute_end));
    double sum = 0;
    for (int b = 0; b < buckets && b < DIST_NCCL_BUCKETS; b++) {
        float ms = 0;
        CUDA_OK(cudaEventElapsedTime(&ms, bucket_start[b], bucket_end[b]));
        sum += ms / 1e3;
    }
    float past = 0;
    CUDA_OK(cudaEventElapsedTime(&past, compute_end, comm_end));
    *comm_s = sum;
    *exposed_s = past > 0 ? past / 1e3 : 0.0;
    buckets = 0;
}

double dist_nccl_sum(Dist *d, double x) {
    // Both copies go on the communication stream, from pinned memory, so the all-reduce is ordered after the value
    // lands and the read-back after the all-reduce. (A pageable cudaMemcpy on the legacy stream may return before its
    // DMA lands, and the non-blocking communication stream would not wait for it.)
    *scalar_host = x;
    CUDA_OK(cudaMemcpyAsync(scalar_dev, scalar_host, sizeof x, cudaMemcpyHostToDevice, stream));
    NCCL_CHECK(ncclAllReduce(scalar_dev, scalar_dev, 1, ncclDouble, ncclSum, comm, stream));
    CUDA_OK(cudaMemcpyAsync(scalar_host, scalar_dev, sizeof x, cudaMemcpyDeviceToHost, stream));
    wait_stream(d);
    return *scalar_host;
}

void dist_nccl_finalize(Dist *d) {
    if (!d->nccl) return;
    ncclCommDestroy(comm);
    cudaStreamDestroy(stream);
    cudaEventDestroy(grads_ready);
    cudaFree(scalar_dev);
    cudaFreeHost(scalar_host);
    d->nccl = 0;
}
#endif
