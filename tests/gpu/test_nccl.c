/*
 * test_nccl.c: dist/nccl.c's GPU collectives with one rank, on a GPU (make test-gpu) or the emulated GPU (make test,
 * build/emu/): the ordering between the compute stream that writes a buffer and the communication stream that
 * reduces it. With one rank the sums are the identity, so a wrong value means the collective read the buffer before
 * the compute stream finished writing it; on the emulated GPU, which runs every op at the latest moment the streams'
 * ordering allows, the checker reports that as a stream race.
 *   sum: dist_nccl_sum of a host scalar returns it (its copies are ordered around the all-reduce).
 *   all-reduce: a gradient buffer written by a copy and then a kernel on the compute stream, then
 *               dist_nccl_allreduce_mean: the mean over one rank is the buffer itself.
 *   buckets: two halves of a buffer, each scaled by a kernel and then sent with dist_nccl_allreduce_mean_async
 *            (the second after its own kernel, the first while it runs), dist_nccl_wait_buckets, then a kernel
 *            that reads the buffer: the values, and device times that are finite and not negative.
 *   the communication stream is its own (emulated GPU only): a bucket sent, then a kernel queued on the compute
 *            stream that rewrites it without waiting: run in a child, the emulator must report a stream race
 *            between the two. Were the all-reduce queued on the compute stream, the two would be ordered, nothing
 *            would overlap the backward, and this case fails.
 *   ZeRO-1: dist_nccl_reduce_scatter_mean and dist_nccl_allgather (fp32 and bf16) after a kernel: one rank's
 *            shard is the whole buffer, unchanged.
 * Prints "skipped" without a GPU or without NCCL in the build.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend.h"
#include "dist.h"
#include "harness.h"
#include "ops.h"

#if !defined(GPTRAIN_CUDA) || !defined(GPTRAIN_NCCL)
int main(void) {
    printf("skipped: this build has no CUDA backend with NCCL\n");
    printf("0 passed, 0 failed\n");
    return 0;
}
#else
int main(void) {
    if (backend_cuda_device_count() <= 0) {
        printf("skipped: no GPU (cudaGetDeviceCount found none)\n");
        printf("0 passed, 0 failed\n");
        return 0;
    }
    Backend be;
    char err[256];
    if (backend_cuda_init(&be, 0, 0, err, sizeof err)) {
        harness_case(0, "CUDA backend", "%s", err);
        return harness_finish();
    }
    Dist d;
    memset(&d, 0, sizeof d);
    d.world = 1;
    d.backend = "none";
    if (dist_nccl_init(&d, backend_cuda_device_count(), err, sizeof err)) {
        harness_case(0, "dist_nccl_init (one rank)", "%s", err);
        return harness_finish();
    }
    const double x = dist_nccl_sum(&d, 3.25);
    harness_case(x == 3.25, "dist_nccl_sum with one rank returns the value", "%.17g", x);

    const size_t n = 4099;
    float *h = malloc(n * sizeof(float)), *back = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = (float)i * 0.5f - 7.0f;
    float *g = backend_alloc(&be, n * sizeof(float), "gradients");
    backend_to_device(&be, g, h, n * sizeof(float));   // queued on the compute stream
    op_scale(&be, g, 2.0f, n);                          // a kernel on the compute stream
    dist_nccl_allreduce_mean(&d, g, n, 0);                 // the communication stream must wait for both
    backend_to_host(&be, back, g, n * sizeof(float));
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (back[i] != 2.0f * h[i]) bad++;
    harness_case(bad == 0, "dist_nccl_allreduce_mean with one rank after a copy and a kernel: the written values",
                 "%zu of %zu elements differ", bad, n);
    {   // two buckets, the first sent before the kernel that writes the second half is queued
        const size_t h1 = n / 2, h2 = n - h1;
        backend_to_device(&be, g, h, n * sizeof(float));
        op_scale(&be, g, 2.0f, h1);
        void *b1[1] = {g};
        size_t n1[1] = {h1};
        dist_nccl_allreduce_mean_async(&d, b1, n1, 1, 0);
        op_scale(&be, g + h1, 3.0f, h2);
        void *b2[1] = {g + h1};
        size_t n2[1] = {h2};
        dist_nccl_allreduce_mean_async(&d, b2, n2, 1, 0);
        double comm_s = -1, exposed_s = -1;
        dist_nccl_wait_buckets(&d, &comm_s, &exposed_s);
        op_scale(&be, g, 0.5f, n);   // the compute stream after the buckets
        backend_to_host(&be, back, g, n * sizeof(float));
        bad = 0;
        for (size_t i = 0; i < n; i++)
            if (back[i] != (i < h1 ? 1.0f : 1.5f) * h[i]) bad++;
        harness_case(bad == 0 && comm_s >= 0 && exposed_s >= 0 && isfinite(comm_s) && isfinite(exposed_s),
                     "two overlapped buckets (dist_nccl_allreduce_mean_async + dist_nccl_wait_buckets): the values, "
                     "and the device times", "%zu of %zu elements differ; comm %.3g s, exposed %.3g s", bad, n,
                     comm_s, exposed_s);
        // More buckets in a step than there are event slots (a model of thousands of layers): every one still goes
        // out, and the times stay finite.
        backend_to_device(&be, g, h, n * sizeof(float));
        const int nb = DIST_NCCL_BUCKETS + 44;
        for (int k = 0; k < nb; k++) {
            const size_t lo = n * k / nb, hi = n * (k + 1) / nb;
            op_scale(&be, g + lo, 2.0f, hi - lo);
            void *bk[1] = {g + lo};
            size_t nk[1] = {hi - lo};
            dist_nccl_allreduce_mean_async(&d, bk, nk, 1, 0);
        }
        dist_nccl_wait_buckets(&d, &comm_s, &exposed_s);
        backend_to_host(&be, back, g, n * sizeof(float));
        bad = 0;
        for (size_t i = 0; i < n; i++)
            if (back[i] != 2.0f * h[i]) bad++;
        harness_case(bad == 0 && comm_s >= 0 && isfinite(comm_s) && isfinite(exposed_s),
                     "more overlapped buckets in a step than event slots: every value averaged, finite times",
                     "%d buckets; %zu of %zu elements differ; comm %.3g s", nb, bad, n, comm_s);
    }
    {   // ZeRO-1's collectives with one rank: the buffer itself, in fp32 and in bf16 units
        backend_to_device(&be, g, h, n * sizeof(float));
        op_scale(&be, g, 2.0f, n);
        dist_nccl_reduce_scatter_mean(&d, g, n, 0);
        dist_nccl_allgather(&d, g, g, n, sizeof(float));   // in place
        dist_nccl_allgather(&d, g, g, 2 * n, 2);           // the same bytes as bf16 elements
        backend_to_host(&be, back, g, n * sizeof(float));
        bad = 0;
        for (size_t i = 0; i < n; i++)
            if (back[i] != 2.0f * h[i]) bad++;
        harness_case(bad == 0, "ZeRO-1 with one rank: reduce-scatter and in-place all-gathers after a kernel leave "
                     "the written values", "%zu of %zu elements differ", bad, n);
    }
#ifdef GPTRAIN_EMU
    {   // the bucket and a compute-stream kernel that rewrites it, unordered: a race only across two streams
        fflush(stdout);
        int pipefd[2];
        if (pipe(pipefd)) abort();
        const pid_t pid = fork();
        if (pid == 0) {
            close(pipefd[0]);
            dup2(pipefd[1], 2);
            void *b[1] = {g};
            size_t nb[1] = {n};
            dist_nccl_allreduce_mean_async(&d, b, nb, 1, 0);
            op_scale(&be, g, 3.0f, n);   // not ordered after the bucket's all-reduce
            double c, e;
            dist_nccl_wait_buckets(&d, &c, &e);
            exit(0);
        }
        close(pipefd[1]);
        char rep[8192];
        size_t got = 0;
        ssize_t r;
        while ((r = read(pipefd[0], rep + got, sizeof rep - 1 - got)) > 0) got += (size_t)r;
        rep[got] = 0;
        close(pipefd[0]);
        int status = 0;
        waitpid(pid, &status, 0);
        const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        harness_case(code == 86 && strstr(rep, "stream race") && strstr(rep, "ncclAllReduce"),
                     "the bucket's all-reduce runs on a stream of its own: a compute-stream kernel not ordered after "
                     "it races with it", "exit %d; %.300s", code, rep);
    }
#endif
    dist_nccl_finalize(&d);
    backend_free(&be, g);
    free(h);
    free(back);
    return harness_finish();
}
#endif
