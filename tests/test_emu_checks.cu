/*
 * test_emu_checks.cu: the emulated GPU's checker, proven on small kernels compiled like the backend's (host C++
 * against tests/emu, instrumented): each bug the checker is for, planted in a kernel or in host code, must end the
 * process with the emulator's status (86) and a report naming what happened, and its correct twin must run clean and
 * compute the right values. Each case runs in a child process (a report ends the process), so one case's state never
 * leaks into the next. Also the CUDA semantics the rest of the suite relies on: warp collectives' values, stream
 * ordering, the adversarial execution order, event queries, launch-configuration errors, the device size and
 * out-of-memory, cuBLAS argument checks.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "cuda_common.h"
#include "harness.h"

// ---- running a case in a child ----

typedef int (*CaseFn)(void);   // returns 0 when every value it checks is right

// Run fn in a child process. want == NULL: the child must exit 0 with fn() == 0. Otherwise it must exit with the
// emulator's status 86 and its stderr must contain want.
static void run_case(const char *name, const char *want, CaseFn fn, const char *env = NULL) {
    int pipefd[2];
    if (pipe(pipefd)) abort();
    fflush(stdout);
    const pid_t pid = fork();
    if (pid == 0) {
        close(pipefd[0]);
        dup2(pipefd[1], 2);
        if (env) putenv((char *)env);
        const int bad = fn();
        exit(bad ? 1 : 0);   // exit, not _exit: the emulator runs what is still queued at exit
    }
    close(pipefd[1]);
    std::string err;
    char buf[4096];
    ssize_t n;
    while ((n = read(pipefd[0], buf, sizeof buf)) > 0) err.append(buf, (size_t)n);
    close(pipefd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::string first = err.substr(0, err.find('\n'));
    if (first.size() > 300) first = first.substr(0, 300) + "...";
    if (!want) {
        harness_case(code == 0, name, "exit %d%s%s", code, err.empty() ? "" : "; stderr: ", first.c_str());
    } else {
        const bool ok = code == 86 && err.find(want) != std::string::npos;
        harness_case(ok, name, "exit %d, report: %s", code, first.c_str());
        if (!ok && !err.empty()) fprintf(stdout, "     (expected status 86 and '%s'; stderr was: %s)\n", want, err.c_str());
    }
}

#define CHECK(call)                                                                                           \
    do {                                                                                                      \
        cudaError_t e_ = (call);                                                                              \
        if (e_ != cudaSuccess) {                                                                              \
            fprintf(stderr, "CUDA error %s at %s:%d: %s\n", #call, __FILE__, __LINE__, cudaGetErrorString(e_));  \
            return 1;                                                                                         \
        }                                                                                                     \
    } while (0)

template <class T>
static T *dev_alloc(size_t n) {
    void *p = NULL;
    if (cudaMalloc(&p, n * sizeof(T)) != cudaSuccess) abort();
    return (T *)p;
}

// ---- kernels ----

// Block sum of 256 values through shared memory, the tree of a reduction; `sync` 0 leaves out the barrier between
// writing the values and the first step of the tree (the missing __syncthreads of a block reduction).
__global__ static void block_sum_kernel(float *out, const float *in, int sync) {
    __shared__ float sh[256];
    sh[threadIdx.x] = in[blockIdx.x * 256 + threadIdx.x];
    if (sync) __syncthreads();
    for (int o = 128; o > 0; o >>= 1) {
        if ((int)threadIdx.x < o) sh[threadIdx.x] += sh[threadIdx.x + o];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = sh[0];
}

// out[i] = 2 in[i] for i < n + extra: extra = 1 writes one element past the end.
__global__ static void scale_kernel(float *out, const float *in, int n, int extra) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n + extra) out[i] = 2.0f * in[i < n ? i : n - 1];
}
__global__ static void read_before_kernel(float *out, const float *in) { out[0] = in[-1]; }

// Every block adds its 1 into one counter, with an atomic or with a plain read-modify-write.
__global__ static void count_kernel(int *counter, int atomic) {
    if (threadIdx.x != 0) return;
    if (atomic) atomicAdd(counter, 1);
    else *counter = *counter + 1;
}

struct Args {
    const float *in;
    float *out;
};
__global__ static void struct_arg_kernel(Args a) { a.out[threadIdx.x] = a.in[threadIdx.x]; }
__global__ static void copy_kernel(float *out, const float *in, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = in[i];
}
__global__ static void fill_kernel(float *out, float v, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = v;
}

__global__ static void divergent_barrier_kernel(float *out) {
    if (threadIdx.x < 32) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = 1.0f;
}
__global__ static void stuck_kernel(float *out) {
    if (threadIdx.x % 32 < 16) __syncwarp();
    else __syncthreads();
    out[threadIdx.x] = 1.0f;
}
__global__ static void early_exit_barrier_kernel(float *out) {   // legal: exited threads count as arrived (PTX exit)
    if (threadIdx.x >= 48) return;
    out[threadIdx.x] = 1.0f;
    __syncthreads();
    out[threadIdx.x] += 1.0f;
}
__global__ static void shfl_exited_kernel(float *out) {
    if (threadIdx.x >= 16) return;   // lanes 16..31 exit; the xor 16 step reads them
    float v = (float)threadIdx.x;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    out[threadIdx.x] = v;
}
__global__ static void mask_self_kernel(float *out) {
    out[threadIdx.x] = __shfl_xor_sync(0x0000fffeu, 1.0f, 1);
}
__global__ static void shared_uninit_kernel(float *out) {
    __shared__ float sh[64];
    if (threadIdx.x < 32) sh[threadIdx.x] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = sh[threadIdx.x];   // threads 32..63 read what nobody wrote
}
__global__ static void trap_kernel(float *out) {
    if (threadIdx.x == 5) __trap();
    out[threadIdx.x] = 0.0f;
}

// Warp collectives' values (the CUDA guide's definitions), one warp, lane l: results into out[32 * k + l].
__global__ static void collectives_kernel(int *out) {
    const int l = threadIdx.x;
    out[0 * 32 + l] = __shfl_sync(0xffffffffu, l * 10, 3);                  // lane 3's value
    out[1 * 32 + l] = __shfl_up_sync(0xffffffffu, l, 2, 8);                  // l - 2 within groups of 8, else own
    out[2 * 32 + l] = __shfl_down_sync(0xffffffffu, l, 1);                   // l + 1, lane 31 keeps its own
    out[3 * 32 + l] = __shfl_xor_sync(0xffffffffu, l, 5);                    // l ^ 5
    out[4 * 32 + l] = (int)__ballot_sync(0xffffffffu, l % 3 == 0);           // bits 0, 3, 6, ...
    out[5 * 32 + l] = __any_sync(0xffffffffu, l == 7) + 2 * __all_sync(0xffffffffu, l < 32);
    out[6 * 32 + l] = __reduce_add_sync(0xffffffffu, l);                     // 496
    out[7 * 32 + l] = (int)__match_any_sync(0xffffffffu, l / 4);             // the lanes of my group of 4
    out[8 * 32 + l] = __syncthreads_count(l % 2);                            // 16
}

// ---- the cases: bugs the checker must report ----

static int case_shared_race() {
    float *in = dev_alloc<float>(256), *out = dev_alloc<float>(1);
    CHECK(cudaMemset(in, 0, 256 * sizeof(float)));
    CUDA_LAUNCH(1, 256, 0, 0, block_sum_kernel)(out, in, 0);
    CHECK(cudaDeviceSynchronize());
    return 0;
}
static int case_block_sum_ok() {
    float h[512], r[2];
    for (int i = 0; i < 512; i++) h[i] = (float)(i % 7);
    float *in = dev_alloc<float>(512), *out = dev_alloc<float>(2);
    CHECK(cudaMemcpy(in, h, sizeof h, cudaMemcpyHostToDevice));
    CUDA_LAUNCH(2, 256, 0, 0, block_sum_kernel)(out, in, 1);
    CHECK(cudaMemcpy(r, out, sizeof r, cudaMemcpyDeviceToHost));
    float want[2] = {0, 0};
    for (int i = 0; i < 512; i++) want[i / 256] += h[i];
    return r[0] != want[0] || r[1] != want[1];
}
static int case_write_past_end() {
    const int n = 100;
    float *in = dev_alloc<float>(n), *out = dev_alloc<float>(n);
    CHECK(cudaMemset(in, 0, n * sizeof(float)));
    CUDA_LAUNCH(1, 128, 0, 0, scale_kernel)(out, in, n, 1);
    CHECK(cudaDeviceSynchronize());
    return 0;
}
static int case_scale_ok() {
    const int n = 100;
    float h[100], r[100];
    for (int i = 0; i < n; i++) h[i] = (float)i;
    float *in = dev_alloc<float>(n), *out = dev_alloc<float>(n);
    CHECK(cudaMemcpy(in, h, sizeof h, cudaMemcpyHostToDevice));
    CUDA_LAUNCH(1, 128, 0, 0, scale_kernel)(out, in, n, 0);
    CHECK(cudaMemcpy(r, out, sizeof r, cudaMemcpyDeviceToHost));
    for (int i = 0; i < n; i++)
        if (r[i] != 2.0f * i) return 1;
    return 0;
}
static int case_read_before_start() {
    float *a = dev_alloc<float>(64), *b = dev_alloc<float>(64);
    CHECK(cudaMemset(a, 0, 64 * sizeof(float)));
    CHECK(cudaMemset(b, 0, 64 * sizeof(float)));
    CUDA_LAUNCH(1, 1, 0, 0, read_before_kernel)(a, b);
    CHECK(cudaDeviceSynchronize());
    return 0;
}
static int case_uninitialized_read() {
    float *in = dev_alloc<float>(128), *out = dev_alloc<float>(128);   // in: cudaMalloc'd, never written
    CUDA_LAUNCH(1, 128, 0, 0, copy_kernel)(out, in, 128);
    CHECK(cudaDeviceSynchronize());
    return 0;
}
static int case_global_race() {
    int *c = dev_alloc<int>(1);
    CHECK(cudaMemset(c, 0, sizeof(int)));
    CUDA_LAUNCH(4, 32, 0, 0, count_kernel)(c, 0);
    CHECK(cudaDeviceSynchronize());
    return 0;
}
static int case_atomics_ok() {
    int *c = dev_alloc<int>(1), r = 0;
    CHECK(cudaMemset(c, 0, sizeof(int)));
    CUDA_LAUNCH(37, 32, 0, 0, count_kernel)(c, 1);
    CHECK(cudaMemcpy(&r, c, sizeof r, cudaMemcpyDeviceToHost));
    return r != 37;
}
static int case_host_pointer_arg() {
    static float host[32];
    float *out = dev_alloc<float>(32);
    CUDA_LAUNCH(1, 32, 0, 0, copy_kernel)(out, host, 32);
    CHECK(cudaDeviceSynchronize());
    return 0;
}
static int case_host_pointer_in_struct() {
    float *host = (float *)calloc(32, sizeof(float));
    Args a = {host, dev_alloc<float>(32)};
    CUDA_LAUNCH(1, 32, 0, 0, struct_arg_kernel)(a);
    CHECK(cudaDeviceSynchronize());
    return 0;
}
static int case_host_reads_device() {
    float *d = dev_alloc<float>(16);
    CHECK(cudaMemset(d, 0, 16 * sizeof(float)));
    CHECK(cudaDeviceSynchronize());
    volatile float x = d[3];   // a device pointer dereferenced by host code
    return x != 0.0f;
}
static int case_divergent_barrier() {
    float *out = dev_alloc<float>(64);
    CUDA_LAUNCH(1, 64, 0, 0, divergent_barrier_kernel)(out);
    CHECK(cudaDeviceSynchronize());
    return 0;
}
static int case_stuck() {
    float *out = dev_alloc<float>(64);
    CUDA_LAUNCH(1, 64, 0, 0, stuck_kernel)(out);
    CHECK(cudaDeviceSynchronize());
    return 0;
}
static int case_early_exit_ok() {
    float *out = dev_alloc<float>(64), r[64];
    CHECK(cudaMemset(out, 0, sizeof r));
    CUDA_LAUNCH(1, 64, 0, 0, early_exit_barrier_kernel)(out);
    CHECK(cudaMemcpy(r, out, sizeof r, cudaMemcpyDeviceToHost));
    for (int i = 0; i < 64; i++)
        if (r[i] != (i < 48 ? 2.0f : 0.0f)) return 1;
    return 0;
}
static int case_shfl_exited() {
    float *out = dev_alloc<float>(32);
    CUDA_LAUNCH(1, 32, 0, 0, shfl_exited_kernel)(out);
    CHECK(cudaDeviceSynchronize());
    return 0;
}
static int case_mask_self() {
    float *out = dev_alloc<float>(32);
    CUDA_LAUNCH(1, 32, 0, 0, mask_self_kernel)(out);
    CHECK(cudaDeviceSynchronize());
    return 0;
}
static int case_shared_uninit() {
    float *out = dev_alloc<float>(64);
    CUDA_LAUNCH(1, 64, 0, 0, shared_uninit_kernel)(out);
    CHECK(cudaDeviceSynchronize());
    return 0;
}
static int case_trap() {
    float *out = dev_alloc<float>(32);
    CUDA_LAUNCH(1, 32, 0, 0, trap_kernel)(out);
    CHECK(cudaDeviceSynchronize());
    return 0;
}

// Stream A fills a buffer, stream B (non-blocking) copies it. Without the event B may run first; with it, B reads
// A's values. The emulator runs B's copy at the latest moment A's absence allows (first), and reports the race.
static int streams(int with_event) {
    const int n = 256;
    float *x = dev_alloc<float>(n), *y = dev_alloc<float>(n), r[256];
    CHECK(cudaMemset(x, 0, n * sizeof(float)));
    CHECK(cudaDeviceSynchronize());
    cudaStream_t a, b;
    cudaEvent_t e;
    CHECK(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking));
    CHECK(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking));
    CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    CUDA_LAUNCH(1, 256, 0, a, fill_kernel)(x, 3.0f, n);
    CHECK(cudaEventRecord(e, a));
    if (with_event) CHECK(cudaStreamWaitEvent(b, e, 0));
    CUDA_LAUNCH(1, 256, 0, b, copy_kernel)(y, x, n);
    CHECK(cudaStreamSynchronize(b));
    CHECK(cudaMemcpy(r, y, sizeof r, cudaMemcpyDeviceToHost));
    for (int i = 0; i < n; i++)
        if (r[i] != 3.0f) return 1;
    return 0;
}
static int case_missing_event() { return streams(0); }
static int case_event_ok() { return streams(1); }

// dist/nccl.c's old scalar pattern: a pageable cudaMemcpy to the device on the legacy stream returns with the DMA
// still pending; a kernel on a non-blocking stream that reads the value without an event races with it.
static int case_pageable_copy_race() {
    float *x = dev_alloc<float>(1), *y = dev_alloc<float>(1);
    cudaStream_t s;
    CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    float v = 5.0f;
    CHECK(cudaMemcpy(x, &v, sizeof v, cudaMemcpyHostToDevice));
    CUDA_LAUNCH(1, 1, 0, s, copy_kernel)(y, x, 1);
    CHECK(cudaStreamSynchronize(s));
    return 0;
}
// The same with the copy on the kernel's own stream: ordered, and the kernel sees the value.
static int case_pageable_copy_ok() {
    float *x = dev_alloc<float>(1), *y = dev_alloc<float>(1), r = 0;
    cudaStream_t s;
    CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    float v = 5.0f;
    CHECK(cudaMemcpyAsync(x, &v, sizeof v, cudaMemcpyHostToDevice, s));
    CUDA_LAUNCH(1, 1, 0, s, copy_kernel)(y, x, 1);
    CHECK(cudaMemcpyAsync(&r, y, sizeof r, cudaMemcpyDeviceToHost, s));
    CHECK(cudaStreamSynchronize(s));
    return r != 5.0f;
}

// ---- CUDA semantics the suites rely on ----

static int case_collectives() {
    int *d = dev_alloc<int>(9 * 32), h[9 * 32];
    CUDA_LAUNCH(1, 32, 0, 0, collectives_kernel)(d);
    CHECK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
    unsigned ballot = 0;
    for (int l = 0; l < 32; l += 3) ballot |= 1u << l;
    for (int l = 0; l < 32; l++) {
        const int up = l % 8 >= 2 ? l - 2 : l, down = l < 31 ? l + 1 : l;
        if (h[l] != 30 || h[32 + l] != up || h[64 + l] != down || h[96 + l] != (l ^ 5) ||
            (unsigned)h[128 + l] != ballot || h[160 + l] != 3 || h[192 + l] != 496 ||
            (unsigned)h[224 + l] != 0xfu << (l / 4 * 4) || h[256 + l] != 16) {
            fprintf(stderr, "lane %d: %d %d %d %d %x %d %d %x %d\n", l, h[l], h[32 + l], h[64 + l], h[96 + l],
                    h[128 + l], h[160 + l], h[192 + l], h[224 + l], h[256 + l]);
            return 1;
        }
    }
    return 0;
}

static int case_queries() {
    float *x = dev_alloc<float>(1024);
    cudaStream_t s;
    cudaEvent_t e0, e1;
    CHECK(cudaStreamCreate(&s));
    CHECK(cudaEventCreate(&e0));
    CHECK(cudaEventCreate(&e1));
    CHECK(cudaEventRecord(e0, s));
    CUDA_LAUNCH(4, 256, 0, s, fill_kernel)(x, 1.0f, 1024);
    CHECK(cudaEventRecord(e1, s));
    float ms = 0;
    if (cudaEventElapsedTime(&ms, e0, e1) != cudaErrorNotReady) return 1;   // not recorded yet
    cudaGetLastError();
    int polls = 0;
    while (cudaEventQuery(e1) == cudaErrorNotReady) polls++;   // queued work is not done when first asked
    CHECK(cudaEventElapsedTime(&ms, e0, e1));
    return !(polls >= 1 && ms > 0 && cudaStreamQuery(s) == cudaSuccess);
}

static int case_launch_config() {
    float *x = dev_alloc<float>(4);
    CUDA_LAUNCH(1, 2048, 0, 0, fill_kernel)(x, 1.0f, 4);   // more than 1024 threads per block
    if (cudaGetLastError() != cudaErrorInvalidConfiguration) return 1;
    if (cudaGetLastError() != cudaSuccess) return 1;   // launch errors are not sticky
    CUDA_LAUNCH(1, 32, 64 * 1024, 0, fill_kernel)(x, 1.0f, 4);   // 64 KB of dynamic shared memory, not opted in
    if (cudaGetLastError() != cudaErrorInvalidValue) return 1;
    CHECK(cudaFuncSetAttribute(fill_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024));
    CUDA_LAUNCH(1, 32, 64 * 1024, 0, fill_kernel)(x, 1.0f, 4);
    CHECK(cudaGetLastError());
    CHECK(cudaDeviceSynchronize());
    return 0;
}

static int case_memory_size() {
    size_t free_b = 0, total = 0;
    CHECK(cudaMemGetInfo(&free_b, &total));
    if (total != (size_t)8 << 20 || free_b != total) return 1;
    void *p = NULL, *q = NULL;
    CHECK(cudaMalloc(&p, (size_t)6 << 20));
    if (cudaMalloc(&q, (size_t)3 << 20) != cudaErrorMemoryAllocation || q) return 1;
    cudaGetLastError();
    CHECK(cudaMemGetInfo(&free_b, &total));
    if (free_b != total - ((size_t)6 << 20)) return 1;
    CHECK(cudaFree(p));
    CHECK(cudaMalloc(&q, (size_t)7 << 20));
    return 0;
}

static int case_no_device() {
    int n = -1;
    void *p = NULL;
    if (cudaGetDeviceCount(&n) != cudaErrorNoDevice || n != 0) return 1;
    if (cudaMalloc(&p, 16) != cudaErrorNoDevice) return 1;
    cudaGetLastError();
    CUDA_LAUNCH(1, 32, 0, 0, fill_kernel)((float *)NULL, 1.0f, 0);
    return cudaGetLastError() != cudaErrorNoDevice;
}

static int case_cublas_args() {
    cublasHandle_t h;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) return 1;
    float *a = dev_alloc<float>(64), *b = dev_alloc<float>(64), *c = dev_alloc<float>(64);
    const float one = 1.0f, zero = 0.0f;
    // lda smaller than the rows of A as stored (m = 8, transa = N): rejected as cuBLAS does
    if (cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 8, 8, 8, &one, a, CUDA_R_32F, 4, b, CUDA_R_32F, 8, &zero, c,
                     CUDA_R_32F, 8, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_INVALID_VALUE)
        return 1;
    // bf16 inputs with a "fast" compute type: not a combination cuBLAS offers
    if (cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 8, 8, 8, &one, a, CUDA_R_16BF, 8, b, CUDA_R_16BF, 8, &zero, c,
                     CUDA_R_32F, 8, CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_NOT_SUPPORTED)
        return 1;
    return 0;
}
static int case_cublas_not_emulated() {
    cublasHandle_t h;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) return 1;
    double *a = dev_alloc<double>(64);
    const double one = 1.0;
    cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 8, 8, 8, &one, a, CUDA_R_64F, 8, a, CUDA_R_64F, 8, &one, a, CUDA_R_64F,
                 8, CUBLAS_COMPUTE_64F, CUBLAS_GEMM_DEFAULT);
    return 0;
}
// cuBLAS with beta = 0 does not read C (here never written), and the result is op(A) op(B) with the transposes.
static int case_cublas_values() {
    cublasHandle_t h;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) return 1;
    const int m = 3, n = 2, k = 4;
    float A[4 * 3], B[4 * 2], C[3 * 2];   // A stored k x m (transa = T), B stored k x n (transb = N)
    for (int i = 0; i < 12; i++) A[i] = (float)(i + 1);
    for (int i = 0; i < 8; i++) B[i] = (float)(i % 3 - 1);
    float *a = dev_alloc<float>(12), *b = dev_alloc<float>(8), *c = dev_alloc<float>(6);
    CHECK(cudaMemcpy(a, A, sizeof A, cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(b, B, sizeof B, cudaMemcpyHostToDevice));
    const float alpha = 2.0f, beta = 0.0f;
    if (cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, a, CUDA_R_32F, k, b, CUDA_R_32F, k, &beta, c,
                     CUDA_R_32F, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS)
        return 1;
    CHECK(cudaMemcpy(C, c, sizeof C, cudaMemcpyDeviceToHost));
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float s = 0;
            for (int p = 0; p < k; p++) s += A[i * k + p] * B[j * k + p];
            if (C[j * m + i] != alpha * s) return 1;
        }
    return 0;
}

// cuBLASLt with C = D 16 bytes past a cudaMalloc'd (256-byte aligned) pointer: with the default alignment preference
// (256) the heuristic's algorithm may not work there on a real GPU, which the emulator reports; told the real
// alignment (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES and _D_BYTES = 16), the same product runs and is exact.
static int lt_offset(int tell) {
    cublasLtHandle_t h;
    if (cublasLtCreate(&h) != CUBLAS_STATUS_SUCCESS) return 1;
    const int m = 4, n = 4, k = 4;
    float A[16], B[16], D[16];
    for (int i = 0; i < 16; i++) { A[i] = (float)(i % 5); B[i] = (float)(i % 3 - 1); }
    float *a = dev_alloc<float>(16), *b = dev_alloc<float>(16), *d = dev_alloc<float>(20) + 4;   // 16 bytes in
    CHECK(cudaMemcpy(a, A, sizeof A, cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(b, B, sizeof B, cudaMemcpyHostToDevice));
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t La, Lb, Ld;
    cublasLtMatmulPreference_t pref;
    if (cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F) ||
        cublasLtMatrixLayoutCreate(&La, CUDA_R_32F, m, k, m) || cublasLtMatrixLayoutCreate(&Lb, CUDA_R_32F, k, n, k) ||
        cublasLtMatrixLayoutCreate(&Ld, CUDA_R_32F, m, n, m) || cublasLtMatmulPreferenceCreate(&pref))
        return 1;
    const uint32_t sixteen = 16;
    if (tell && (cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &sixteen,
                                                      sizeof sixteen) ||
                 cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &sixteen,
                                                      sizeof sixteen)))
        return 1;
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    if (cublasLtMatmulAlgoGetHeuristic(h, desc, La, Lb, Ld, Ld, pref, 1, &res, &found) || found != 1) return 1;
    const float one = 1.0f, zero = 0.0f;
    if (cublasLtMatmul(h, desc, &one, a, La, b, Lb, &zero, d, Ld, d, Ld, &res.algo, NULL, 0, 0)) return 1;
    CHECK(cudaMemcpy(D, d, sizeof D, cudaMemcpyDeviceToHost));
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float s = 0;
            for (int p = 0; p < k; p++) s += A[p * m + i] * B[j * k + p];
            if (D[j * m + i] != s) return 1;
        }
    return 0;
}
static int case_lt_misaligned() { return lt_offset(0); }
static int case_lt_aligned_told() { return lt_offset(1); }

int main(void) {
    // Bugs the checker is for: each must be reported, with what and where.
    run_case("missing __syncthreads in a block reduction: reported as a shared-memory race", "shared-memory race",
             case_shared_race);
    run_case("the same reduction with the barrier: clean, sums right", NULL, case_block_sum_ok);
    run_case("a kernel writing one element past its buffer: reported out of bounds",
             "out-of-bounds write of 4 bytes", case_write_past_end);
    run_case("the same kernel within bounds: clean, values right", NULL, case_scale_ok);
    run_case("a kernel reading element -1: reported before the start of the allocation",
             "bytes before the start of allocation", case_read_before_start);
    run_case("a kernel reading cudaMalloc'd memory no one wrote: reported", "reads device memory never written",
             case_uninitialized_read);
    run_case("blocks adding into one counter without atomics: reported as a device-memory race",
             "device-memory race", case_global_race);
    run_case("the same count with atomicAdd: clean, 37 blocks counted", NULL, case_atomics_ok);
    run_case("a kernel launched with a host pointer: reported at the launch", "which is host memory, not device memory",
             case_host_pointer_arg);
    run_case("a host pointer inside a struct argument: reported at the access", "of host memory at",
             case_host_pointer_in_struct);
    run_case("host code dereferencing a device pointer: reported by the fault handler",
             "host code dereferenced device memory", case_host_reads_device);
    run_case("__syncthreads at two places in one block: reported", "reached __syncthreads at different places",
             case_divergent_barrier);
    run_case("a barrier some threads never reach: reported, not hung", "no thread of the block can make progress",
             case_stuck);
    run_case("threads that exit before a __syncthreads count as arrived (PTX exit): clean", NULL, case_early_exit_ok);
    run_case("a shuffle reading a lane that exited: reported", "does not take part", case_shfl_exited);
    run_case("a warp collective whose mask leaves out the calling lane: reported", "leaves the lane itself out",
             case_mask_self);
    run_case("a read of shared memory no thread wrote: reported", "read of shared memory that no thread of this block",
             case_shared_uninit);
    run_case("__trap() in a kernel: reported with the kernel, block and thread", "executed __trap()", case_trap);
    run_case("a missing event wait between two streams: reported as a stream race", "stream race",
             case_missing_event);
    run_case("the same two streams with cudaStreamWaitEvent: clean, the copy sees the fill", NULL, case_event_ok);
    run_case("a pageable cudaMemcpy read by another stream without an event: reported as a stream race",
             "stream race", case_pageable_copy_race);
    run_case("the copy on the reading stream itself: clean, the value arrives", NULL, case_pageable_copy_ok);
    // The CUDA semantics the rest relies on.
    run_case("warp collectives: shfl idx/up(width 8)/down/xor, ballot, any/all, reduce_add, match_any, "
             "__syncthreads_count", NULL, case_collectives);
    run_case("stream and event queries answer 'not ready' before they wait; elapsed time after completion", NULL,
             case_queries);
    run_case("launch errors: more than 1024 threads, dynamic shared memory past 48 KB until opted in", NULL,
             case_launch_config);
    run_case("GPTRAIN_EMU_MEMORY=8M: cudaMemGetInfo reports it, cudaMalloc fails past it, frees are reused", NULL,
             case_memory_size, "GPTRAIN_EMU_MEMORY=8M");
    run_case("GPTRAIN_EMU_DEVICES=0: no device, cudaMalloc and launches fail with cudaErrorNoDevice", NULL,
             case_no_device, "GPTRAIN_EMU_DEVICES=0");
    run_case("cuBLAS: a short leading dimension is INVALID_VALUE, bf16 with a fast compute type NOT_SUPPORTED", NULL,
             case_cublas_args);
    run_case("cuBLAS: a compute type the emulator lacks is reported, naming the call", "cublasGemmEx: compute type",
             case_cublas_not_emulated);
    run_case("cuBLAS: transposed A, beta = 0 leaves C unread, values exact", NULL, case_cublas_values);
    run_case("cuBLASLt: C = D less aligned than the heuristic's algorithm assumed (default preference 256): reported",
             "is 16-byte aligned, but the heuristic chose the algorithm for 256-byte", case_lt_misaligned);
    run_case("cuBLASLt: the same C = D with MIN_ALIGNMENT_C/D_BYTES = 16 given: clean, values exact", NULL,
             case_lt_aligned_told);
    return harness_finish();
}
