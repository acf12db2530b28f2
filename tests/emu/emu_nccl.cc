/*
 * emu_nccl.cc: NCCL on the emulated device, carried over MPI (the process group dist/ already starts under mpirun),
 * so two or more ranks, each with its emulated GPU, run dist/nccl.c's real code path: the unique id from rank 0, a
 * communicator per rank, collectives queued on a CUDA stream and executed when that stream is waited for.
 *
 *   ncclCommInitRank(Config): nranks must equal the MPI world (the emulator's communicator is a duplicate of
 *     MPI_COMM_WORLD) unless nranks is 1, which needs no MPI. As NCCL does, it refuses ranks that were given different
 *     unique ids and two ranks of one host on the same CUDA device ("Duplicate GPU detected").
 *   Collectives: the send buffer is read and the receive buffer written through the access checker (so a missing
 *     event between the stream that wrote a gradient and the communication stream is a stream race), the data goes
 *     through MPI in host memory. Reductions follow NCCL's arithmetic: sums in the element type's precision (fp32,
 *     fp64; fp16 and bf16 summed in fp32 and rounded once), ncclAvg as a sum of inputs each premultiplied by
 *     1/nranks for floating types and as a sum divided by nranks for integers.
 * ncclGroupStart/End are accepted (each call is queued at once, which NCCL's semantics allow).
 */
#include <limits.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#ifdef GPTRAIN_MPI
#include <mpi.h>
#endif

#include "emu_internal.h"
#include "nccl.h"

struct ncclComm {
    int nranks, rank, device;
    int aborted;
#ifdef GPTRAIN_MPI
    MPI_Comm mpi;
#endif
};

namespace emu {

static std::string nccl_last_error;

static ncclResult_t nccl_fail(ncclResult_t r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static ncclResult_t nccl_fail(ncclResult_t r, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    nccl_last_error = buf;
    note("NCCL WARN %s", buf);
    return r;
}

static size_t nccl_size(ncclDataType_t t) {
    switch (t) {
    case ncclInt8: case ncclUint8: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
    default: return 0;
    }
}
static bool nccl_floating(ncclDataType_t t) {
    return t == ncclFloat16 || t == ncclBfloat16 || t == ncclFloat32 || t == ncclFloat64;
}

static float h2f(uint16_t h, ncclDataType_t t) {
    if (t == ncclBfloat16) {
        const uint32_t u = (uint32_t)h << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    float f;
    if (e == 0) return (sign ? -1.0f : 1.0f) * (float)m / 16777216.0f;
    const uint32_t u = e == 31 ? sign | 0x7f800000u | (m << 13) : sign | ((e + 112) << 23) | (m << 13);
    memcpy(&f, &u, 4);
    return f;
}
static uint16_t f2h(float f, ncclDataType_t t) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if (t == ncclBfloat16) {
        if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fff;
        u += 0x7fffu + ((u >> 16) & 1u);
        return (uint16_t)(u >> 16);
    }
    const uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) {
        float s;
        memcpy(&s, &a, 4);
        return (uint16_t)(sign | (uint32_t)nearbyintf(s * 16777216.0f));
    }
    return (uint16_t)(sign | ((a + 0xfffu + ((a >> 13) & 1u) - (112u << 23)) >> 13));
}

// The elements as the reduction computes on them: floats for fp16/bf16/fp32, doubles, or 64-bit integers.
struct Vals {
    ncclDataType_t t;
    std::vector<float> f;
    std::vector<double> d;
    std::vector<long long> i;
    std::vector<unsigned long long> u;
};
static Vals unpack(const unsigned char *p, size_t n, ncclDataType_t t) {
    Vals v;
    v.t = t;
    switch (t) {
    case ncclFloat16: case ncclBfloat16:
        v.f.resize(n);
        for (size_t k = 0; k < n; k++) v.f[k] = h2f(((const uint16_t *)p)[k], t);
        break;
    case ncclFloat32: v.f.assign((const float *)p, (const float *)p + n); break;
    case ncclFloat64: v.d.assign((const double *)p, (const double *)p + n); break;
    case ncclInt8: v.i.resize(n); for (size_t k = 0; k < n; k++) v.i[k] = ((const int8_t *)p)[k]; break;
    case ncclInt32: v.i.resize(n); for (size_t k = 0; k < n; k++) v.i[k] = ((const int32_t *)p)[k]; break;
    case ncclInt64: v.i.assign((const long long *)p, (const long long *)p + n); break;
    case ncclUint8: v.u.resize(n); for (size_t k = 0; k < n; k++) v.u[k] = ((const uint8_t *)p)[k]; break;
    case ncclUint32: v.u.resize(n); for (size_t k = 0; k < n; k++) v.u[k] = ((const uint32_t *)p)[k]; break;
    case ncclUint64: v.u.assign((const unsigned long long *)p, (const unsigned long long *)p + n); break;
    }
    return v;
}
static void pack(const Vals &v, unsigned char *p, size_t n) {
    switch (v.t) {
    case ncclFloat16: case ncclBfloat16: for (size_t k = 0; k < n; k++) ((uint16_t *)p)[k] = f2h(v.f[k], v.t); break;
    case ncclFloat32: memcpy(p, v.f.data(), n * 4); break;
    case ncclFloat64: memcpy(p, v.d.data(), n * 8); break;
    case ncclInt8: for (size_t k = 0; k < n; k++) ((int8_t *)p)[k] = (int8_t)v.i[k]; break;
    case ncclInt32: for (size_t k = 0; k < n; k++) ((int32_t *)p)[k] = (int32_t)v.i[k]; break;
    case ncclInt64: memcpy(p, v.i.data(), n * 8); break;
    case ncclUint8: for (size_t k = 0; k < n; k++) ((uint8_t *)p)[k] = (uint8_t)v.u[k]; break;
    case ncclUint32: for (size_t k = 0; k < n; k++) ((uint32_t *)p)[k] = (uint32_t)v.u[k]; break;
    case ncclUint64: memcpy(p, v.u.data(), n * 8); break;
    }
}

#ifdef GPTRAIN_MPI
static MPI_Op mpi_op(ncclRedOp_t op) {
    return op == ncclProd ? MPI_PROD : op == ncclMax ? MPI_MAX : op == ncclMin ? MPI_MIN : MPI_SUM;
}
#endif

// Reduce v over the communicator (every rank gets the result when root < 0, else only root): in place.
static void reduce_vals(ncclComm *c, Vals &v, ncclRedOp_t op, int root) {
    const size_t n = v.f.size() + v.d.size() + v.i.size() + v.u.size();
    if (op == ncclAvg && nccl_floating(v.t)) {   // PreMulSum: x / nranks first
        const float sf = 1.0f / (float)c->nranks;
        const double sd = 1.0 / (double)c->nranks;
        for (auto &x : v.f) x *= sf;
        for (auto &x : v.d) x *= sd;
    }
    if (c->nranks > 1) {
#ifdef GPTRAIN_MPI
        MPI_Datatype dt = !v.f.empty() ? MPI_FLOAT : !v.d.empty() ? MPI_DOUBLE : !v.i.empty() ? MPI_LONG_LONG
                                                                                         : MPI_UNSIGNED_LONG_LONG;
        void *buf = !v.f.empty() ? (void *)v.f.data() : !v.d.empty() ? (void *)v.d.data()
                  : !v.i.empty() ? (void *)v.i.data() : (void *)v.u.data();
        for (size_t off = 0; off < n;) {   // MPI counts are int
            const int m = (int)std::min(n - off, (size_t)1 << 30);
            const size_t es = !v.f.empty() ? 4 : 8;
            void *p = (unsigned char *)buf + off * es;
            if (root < 0) MPI_Allreduce(MPI_IN_PLACE, p, m, dt, mpi_op(op), c->mpi);
            else if (c->rank == root) MPI_Reduce(MPI_IN_PLACE, p, m, dt, mpi_op(op), root, c->mpi);
            else MPI_Reduce(p, NULL, m, dt, mpi_op(op), root, c->mpi);
            off += (size_t)m;
        }
#else
        fatal("emulated NCCL with %d ranks in a build without MPI", c->nranks);
#endif
    }
    if (op == ncclAvg && !nccl_floating(v.t)) {   // SumPostDiv
        for (auto &x : v.i) x /= c->nranks;
        for (auto &x : v.u) x /= (unsigned long long)c->nranks;
    }
}

static ncclResult_t check_call(const char *fn, ncclComm *c, ncclDataType_t t, const void *send, const void *recv,
                               cudaStream_t stream, ncclRedOp_t op) {
    if (!c) return nccl_fail(ncclInvalidArgument, "%s: comm is NULL", fn);
    if (c->aborted) return nccl_fail(ncclInvalidUsage, "%s: the communicator was aborted or destroyed", fn);
    if (!nccl_size(t)) return nccl_fail(ncclInvalidArgument, "%s: invalid data type %d", fn, (int)t);
    if ((int)op < 0 || (int)op > ncclAvg) return nccl_fail(ncclInvalidArgument, "%s: invalid reduction %d", fn, (int)op);
    if (!stream_ok(stream)) return nccl_fail(ncclInvalidArgument, "%s: invalid stream", fn);
    if (current_device() != c->device)
        return nccl_fail(ncclInvalidUsage, "%s: called on device %d with a communicator of device %d", fn,
                         current_device(), c->device);
    if ((send && device_of(send) != c->device) || (recv && device_of(recv) != c->device))
        return nccl_fail(ncclInvalidArgument, "%s: a buffer (send %p, recv %p) is not device memory of device %d", fn,
                         send, recv, c->device);
    return ncclSuccess;
}

static ncclResult_t queue(const char *fn, ncclComm *c, cudaStream_t stream, size_t elems, void *recv, size_t recv_bytes,
                          std::function<void()> run) {
    char name[128];
    snprintf(name, sizeof name, "%s of %zu elements (rank %d of %d)", fn, elems, c->rank, c->nranks);
    auto guarded = [c, fn, run]() {
#ifdef GPTRAIN_MPI
        int fin = 0;
        if (c->nranks > 1) MPI_Finalized(&fin);
        if (fin) fatal("%s was still queued when MPI was finalized: nothing waited for the communication stream", fn);
#endif
        run();
    };
    if (submit_op(stream, "NCCL", name, guarded, recv, recv_bytes) != cudaSuccess)
        return nccl_fail(ncclInvalidArgument, "%s: invalid stream", fn);
    return ncclSuccess;
}

}  // namespace emu

using namespace emu;

extern "C" {

ncclResult_t ncclGetVersion(int *version) {
    *version = NCCL_VERSION_CODE;
    return ncclSuccess;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
    static unsigned counter;
    memset(id, 0, sizeof *id);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(id->internal, sizeof id->internal, "gptrain-emu-nccl %d %lld.%09ld %u", (int)getpid(),
             (long long)ts.tv_sec, ts.tv_nsec, ++counter);
    return ncclSuccess;
}

ncclResult_t ncclCommInitRankConfig(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank, ncclConfig_t *config) {
    (void)config;
    if (nranks < 1 || rank < 0 || rank >= nranks)
        return nccl_fail(ncclInvalidArgument, "ncclCommInitRank: rank %d of %d ranks", rank, nranks);
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) {
        cudaGetLastError();
        return nccl_fail(ncclUnhandledCudaError, "ncclCommInitRank: no CUDA device");
    }
    ncclComm *c = new ncclComm();
    c->nranks = nranks;
    c->rank = rank;
    c->device = dev;
    c->aborted = 0;
    if (nranks > 1) {
#ifdef GPTRAIN_MPI
        int init = 0, ws = 0, wr = 0;
        MPI_Initialized(&init);
        if (!init) {
            delete c;
            return nccl_fail(ncclSystemError, "the emulated NCCL carries its collectives over MPI: launch the %d ranks "
                             "with mpirun", nranks);
        }
        MPI_Comm_size(MPI_COMM_WORLD, &ws);
        MPI_Comm_rank(MPI_COMM_WORLD, &wr);
        if (ws != nranks || wr != rank) {
            delete c;
            return nccl_fail(ncclInvalidUsage, "ncclCommInitRank: rank %d of %d, but MPI's world is rank %d of %d (the "
                             "emulated NCCL needs the two to agree)", rank, nranks, wr, ws);
        }
        MPI_Comm_dup(MPI_COMM_WORLD, &c->mpi);
        std::vector<char> ids((size_t)nranks * NCCL_UNIQUE_ID_BYTES);
        MPI_Allgather(id.internal, NCCL_UNIQUE_ID_BYTES, MPI_BYTE, ids.data(), NCCL_UNIQUE_ID_BYTES, MPI_BYTE, c->mpi);
        for (int r = 1; r < nranks; r++)
            if (memcmp(&ids[0], &ids[(size_t)r * NCCL_UNIQUE_ID_BYTES], NCCL_UNIQUE_ID_BYTES))
                return nccl_fail(ncclInvalidUsage, "ncclCommInitRank: rank %d was given another ncclUniqueId than "
                                 "rank 0", r);
        struct Where {
            char host[64];
            int device;
        } me, *all = new Where[nranks];
        memset(&me, 0, sizeof me);
        gethostname(me.host, sizeof me.host - 1);
        me.device = dev;
        MPI_Allgather(&me, (int)sizeof me, MPI_BYTE, all, (int)sizeof me, MPI_BYTE, c->mpi);
        for (int a = 0; a < nranks; a++)
            for (int b = a + 1; b < nranks; b++)
                if (!strcmp(all[a].host, all[b].host) && all[a].device == all[b].device) {
                    const int d = all[a].device;
                    delete[] all;
                    return nccl_fail(ncclInvalidUsage, "Duplicate GPU detected : rank %d and rank %d both on CUDA "
                                     "device %d of host %s", a, b, d, me.host);
                }
        delete[] all;
#else
        delete c;
        return nccl_fail(ncclSystemError, "the emulated NCCL needs MPI for %d ranks (this build has none)", nranks);
#endif
    }
    *comm = c;
    return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank) {
    return ncclCommInitRankConfig(comm, nranks, id, rank, NULL);
}

ncclResult_t ncclCommFinalize(ncclComm_t comm) { return comm ? ncclSuccess : ncclInvalidArgument; }
ncclResult_t ncclCommDestroy(ncclComm_t comm) {
    if (!comm) return ncclInvalidArgument;
    comm->aborted = 1;   // the communicator stays allocated: its MPI duplicate is freed with MPI_Finalize
    return ncclSuccess;
}
ncclResult_t ncclCommAbort(ncclComm_t comm) { return ncclCommDestroy(comm); }
ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *asyncError) {
    if (!comm) return ncclInvalidArgument;
    *asyncError = ncclSuccess;
    return ncclSuccess;
}
ncclResult_t ncclCommCount(const ncclComm_t comm, int *count) {
    if (!comm) return ncclInvalidArgument;
    *count = comm->nranks;
    return ncclSuccess;
}
ncclResult_t ncclCommCuDevice(const ncclComm_t comm, int *device) {
    if (!comm) return ncclInvalidArgument;
    *device = comm->device;
    return ncclSuccess;
}
ncclResult_t ncclCommUserRank(const ncclComm_t comm, int *rank) {
    if (!comm) return ncclInvalidArgument;
    *rank = comm->rank;
    return ncclSuccess;
}
const char *ncclGetErrorString(ncclResult_t r) {
    switch (r) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
    case ncclSystemError: return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
    case ncclInternalError: return "internal error - please report this issue to the NCCL developers";
    case ncclInvalidArgument: return "invalid argument (run with NCCL_DEBUG=WARN for details)";
    case ncclInvalidUsage: return "invalid usage (run with NCCL_DEBUG=WARN for details)";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "unknown result code";
    }
}
const char *ncclGetLastError(ncclComm_t comm) {
    (void)comm;
    return nccl_last_error.c_str();
}

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t t, ncclRedOp_t op, ncclComm_t c,
                           cudaStream_t stream) {
    ncclResult_t r = check_call("ncclAllReduce", c, t, send, recv, stream, op);
    if (r != ncclSuccess || !count) return r;
    return queue("ncclAllReduce", c, stream, count, recv, count * nccl_size(t), [=]() {
        const size_t bytes = count * nccl_size(t);
        op_read(send, bytes, "ncclAllReduce sendbuff");
        Vals v = unpack((const unsigned char *)send, count, t);
        reduce_vals(c, v, op, -1);
        op_write(recv, bytes, "ncclAllReduce recvbuff");
        pack(v, (unsigned char *)recv, count);
    });
}

ncclResult_t ncclReduce(const void *send, void *recv, size_t count, ncclDataType_t t, ncclRedOp_t op, int root,
                        ncclComm_t c, cudaStream_t stream) {
    ncclResult_t r = check_call("ncclReduce", c, t, send, c && c->rank == root ? recv : NULL, stream, op);
    if (r != ncclSuccess || !count) return r;
    if (root < 0 || root >= c->nranks) return nccl_fail(ncclInvalidArgument, "ncclReduce: root %d", root);
    return queue("ncclReduce", c, stream, count, c->rank == root ? recv : NULL, c->rank == root ? count * nccl_size(t) : 0, [=]() {
        const size_t bytes = count * nccl_size(t);
        op_read(send, bytes, "ncclReduce sendbuff");
        Vals v = unpack((const unsigned char *)send, count, t);
        reduce_vals(c, v, op, root);
        if (c->rank == root) {
            op_write(recv, bytes, "ncclReduce recvbuff");
            pack(v, (unsigned char *)recv, count);
        }
    });
}

ncclResult_t ncclReduceScatter(const void *send, void *recv, size_t recvcount, ncclDataType_t t, ncclRedOp_t op,
                               ncclComm_t c, cudaStream_t stream) {
    ncclResult_t r = check_call("ncclReduceScatter", c, t, send, recv, stream, op);
    if (r != ncclSuccess || !recvcount) return r;
    return queue("ncclReduceScatter", c, stream, recvcount * c->nranks, recv, recvcount * nccl_size(t), [=]() {
        const size_t es = nccl_size(t), n = recvcount * (size_t)c->nranks;
        op_read(send, n * es, "ncclReduceScatter sendbuff");
        Vals v = unpack((const unsigned char *)send, n, t);
        reduce_vals(c, v, op, -1);   // every rank reduces all, keeps its part (the same sums as a reduce-scatter)
        std::vector<unsigned char> all(n * es);
        pack(v, all.data(), n);
        op_write(recv, recvcount * es, "ncclReduceScatter recvbuff");
        memmove(recv, all.data() + (size_t)c->rank * recvcount * es, recvcount * es);
    });
}

ncclResult_t ncclAllGather(const void *send, void *recv, size_t sendcount, ncclDataType_t t, ncclComm_t c,
                           cudaStream_t stream) {
    ncclResult_t r = check_call("ncclAllGather", c, t, send, recv, stream, ncclSum);
    if (r != ncclSuccess || !sendcount) return r;
    return queue("ncclAllGather", c, stream, sendcount * c->nranks, recv, sendcount * nccl_size(t) * c->nranks, [=]() {
        const size_t bytes = sendcount * nccl_size(t);
        op_read(send, bytes, "ncclAllGather sendbuff");
        std::vector<unsigned char> mine((const unsigned char *)send, (const unsigned char *)send + bytes);
        std::vector<unsigned char> all(bytes * (size_t)c->nranks);
        if (c->nranks > 1) {
#ifdef GPTRAIN_MPI
            if (bytes > (size_t)INT_MAX) fatal("ncclAllGather of %zu bytes per rank: more than the emulator passes to MPI", bytes);
            MPI_Allgather(mine.data(), (int)bytes, MPI_BYTE, all.data(), (int)bytes, MPI_BYTE, c->mpi);
#endif
        } else {
            memcpy(all.data(), mine.data(), bytes);
        }
        op_write(recv, all.size(), "ncclAllGather recvbuff");
        memmove(recv, all.data(), all.size());
    });
}

ncclResult_t ncclBroadcast(const void *send, void *recv, size_t count, ncclDataType_t t, int root, ncclComm_t c,
                           cudaStream_t stream) {
    ncclResult_t r = check_call("ncclBroadcast", c, t, c && c->rank == root ? send : NULL, recv, stream, ncclSum);
    if (r != ncclSuccess || !count) return r;
    if (root < 0 || root >= c->nranks) return nccl_fail(ncclInvalidArgument, "ncclBroadcast: root %d", root);
    return queue("ncclBroadcast", c, stream, count, recv, count * nccl_size(t), [=]() {
        const size_t bytes = count * nccl_size(t);
        std::vector<unsigned char> buf(bytes);
        if (c->rank == root) {
            op_read(send, bytes, "ncclBroadcast sendbuff");
            memcpy(buf.data(), send, bytes);
        }
        if (c->nranks > 1) {
#ifdef GPTRAIN_MPI
            if (bytes > (size_t)INT_MAX) fatal("ncclBroadcast of %zu bytes: more than the emulator passes to MPI", bytes);
            MPI_Bcast(buf.data(), (int)bytes, MPI_BYTE, root, c->mpi);
#endif
        }
        op_write(recv, bytes, "ncclBroadcast recvbuff");
        memmove(recv, buf.data(), bytes);
    });
}

ncclResult_t ncclGroupStart(void) { return ncclSuccess; }
ncclResult_t ncclGroupEnd(void) { return ncclSuccess; }

}  // extern "C"
