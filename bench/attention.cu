/*
 * attention.cu: the flash-attention benchmark (bench/attention.sh, make bench-attention). Times our flash kernels
 * through their raw interface (kernels/cuda/flash.h: bf16 [B*H][T][d] inputs, fp32 outputs) on each path, and our
 * naive CUDA attention (attention.cu cuda_attention_*: head-batched cuBLAS GEMMs through a (B,H,T,T) fp32
 * probability buffer, in the trainer's default bf16 tensor-core mode on fp32 storage), over the grid
 *   causal and non-causal x d in {64, 128} x T in {512, 1024, 2048, 4096, 8192, 16384},
 *   B*T = 16384 tokens (B = 16384 / T), H*d = 2048 (H = 32 at d = 64, H = 16 at d = 128; the model width C = 2048).
 * One row per (impl, causal, d, T):
 *   flash-sm80  flash_forward / flash_backward on FLASH_PATH_SM80 (mma.sync; Ampere and Hopper);
 *   flash-sm90  flash_forward on FLASH_PATH_SM90 (wgmma + TMA), forward only: the Hopper backward is the sm80 one.
 *               Printed only on a compute capability 9.0 GPU (sm_90a code runs nowhere else);
 *   naive       cuda_attention_forward / cuda_attention_backward on the model's layout (qkv (B,T,3C) fp32). Causal
 *               only (the op is the model's causal attention): its non-causal rows print n/a.
 * Arithmetic: forward FLOPs = 4 B H T^2 d (S = Q K^T and O = P V, 2 FLOPs per multiply-add), half when causal;
 * backward = 2.5 x forward (five T x T x d products against two). The same formula for every implementation (the
 * naive one computes the full square and masks it; its TFLOPS count only the useful half).
 * What is timed, with cudaEvents on the default stream, 3 warm-up calls then the median of 10:
 *   flash forward   one flash_forward;
 *   flash backward  the D_i = dO_i . O_i kernel (fp32, one warp per row) + flash_backward in atomic dQ mode (the
 *                   trainer's default; dq is zeroed inside it). PyTorch's backward times its own D pass too;
 *   naive           one cuda_attention_forward / cuda_attention_backward call.
 * Inputs: q, k, v and dO drawn from N(0, 1) by a counter-based hash on the GPU, rounded to bf16; the naive path gets
 * the same values in fp32 in the (B,T,3C) layout. Outputs (and the naive T x T buffers) are poisoned with 0xFF bytes
 * (NaN) before the first call and checked finite after it: "FAIL: non-finite output" and exit 1 otherwise.
 * Memory (mem_MiB): the bytes this program cudaMallocs for the row's implementation, counted by bench_alloc: inputs,
 * outputs, lse, D and gradients, and for the naive path its two (B,H,T,T) fp32 buffers (att, datt). All of them live
 * for the whole case, so this is the peak. Not counted: the CUDA context and cuBLAS's own workspace (the same
 * accounting as torch.cuda.max_memory_allocated in bench/attention_torch.py, which counts tensors only).
 * Second section: memory per T for B = 1, H = 16, d = 128, causal, T = 1024 .. 32768, flash (sm80 path) and naive:
 * one poisoned forward + backward, checked finite, the bytes allocated, or "OOM" when a cudaMalloc fails (the
 * program goes on). The naive path needs 8 H T^2 bytes (att and datt): 128 GiB at T = 32768; flash needs O(T).
 *   attention [--quick | --tiny] [--csv FILE]    --quick: T in {1024, 4096} only; --tiny: a small check of the
 *   program (the dry run of bench/device_check.sh on the emulated GPU); --csv: every row also as CSV.
 * Without a CUDA GPU it prints "bench/attention: skipped: no CUDA GPU" and exits 0. The kernels' registers and
 * spills come from the build (nvcc -Xptxas -v), which bench/attention.sh captures.
 */
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_common.h"
#include "flash.h"

// The grid's size; --tiny shrinks it to a check of the program itself (bench/device_check.sh --dry-run runs it on the
// emulated GPU).
static int bench_tokens = 16384;   // B*T of every grid row
static int bench_width = 2048;     // H*d of every grid row
static int bench_warmup = 3;
#define BENCH_MAX_ITERS 10
static int bench_iters = BENCH_MAX_ITERS;
#define BENCH_MAX_BUFS 16

typedef __nv_bfloat16 bf16;

// ---- device memory, counted; a failed cudaMalloc is reported (OOM), never fatal ----

typedef struct BenchMem {
    void *bufs[BENCH_MAX_BUFS];
    int n;
    size_t bytes;   // allocated now; every buffer lives until bench_mem_free_all, so this is also the peak
    int oom;        // a cudaMalloc failed for lack of memory
} BenchMem;

static void *bench_alloc(BenchMem *m, size_t bytes) {
    if (m->oom) return NULL;
    if (m->n == BENCH_MAX_BUFS) {
        fprintf(stderr, "bench/attention: internal error at %s:%d: more than %d buffers\n", __FILE__, __LINE__,
                BENCH_MAX_BUFS);
        abort();
    }
    void *p = NULL;
    const cudaError_t e = cudaMalloc(&p, bytes ? bytes : 256);
    if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError();   // not sticky: clear it and go on
        m->oom = 1;
        return NULL;
    }
    CUDA_CHECK(e);
    m->bufs[m->n++] = p;
    m->bytes += bytes;
    return p;
}

static void bench_mem_free_all(BenchMem *m) {
    for (int i = 0; i < m->n; i++) CUDA_CHECK(cudaFree(m->bufs[i]));
    memset(m, 0, sizeof *m);
}

// ---- inputs, poison, checks ----

// A standard normal for element i of tensor `seed`: splitmix64 of (seed, i), two 24-bit uniforms, Box-Muller.
__device__ static float bench_normal(uint64_t seed, uint64_t i) {
    uint64_t z = seed * 0x9e3779b97f4a7c15ull + i + 0x632be59bd9b4e019ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    const float u1 = ((float)(z >> 40) + 1.0f) * (1.0f / 16777216.0f);   // (0, 1]
    const float u2 = (float)((z >> 16) & 0xffffff) * (1.0f / 16777216.0f);
    return sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
}

// x [B*H][T][d] bf16 <- N(0, 1) of tensor `seed`, element index = its offset.
__global__ static void bench_fill_bf16_kernel(bf16 *x, size_t n, uint64_t seed) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = __float2bfloat16(bench_normal(seed, i));
}

// The same values as bench_fill_bf16_kernel (tensor seeds seed0 + part for parts q, k, v, or one part for dO) in the
// model's layout: out (B,T,parts*C) fp32, element (b, t, part, h, e) from head-major offset ((b*H + h)*T + t)*d + e.
__global__ static void bench_fill_model_kernel(float *out, int B, int T, int H, int d, int parts, uint64_t seed0) {
    const int C = H * d;
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;   // over B*T*parts*C
    if (i >= (size_t)B * T * parts * C) return;
    const int c = (int)(i % C);
    const size_t r = i / C;
    const int part = (int)(r % parts);
    const size_t n = r / parts;
    const int t = (int)(n % T), b = (int)(n / T), h = c / d, e = c % d;
    const size_t src = (((size_t)b * H + h) * T + t) * d + e;
    out[i] = __bfloat162float(__float2bfloat16(bench_normal(seed0 + part, src)));
}

// delta[r] = dO_r . O_r in fp32 over d channels, one warp per row r of [B*H*T].
__global__ static void bench_delta_kernel(float *delta, const bf16 *dout, const float *o, size_t rows, int d) {
    const size_t r = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (r >= rows) return;
    float s = 0.0f;
    for (int e = lane; e < d; e += 32) s += __bfloat162float(dout[r * d + e]) * o[r * d + e];
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0) delta[r] = s;
}

__global__ static void bench_count_nonfinite_kernel(const float *x, size_t n, unsigned long long *count) {
    unsigned long long c = 0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        c += !isfinite(x[i]);
    if (c) atomicAdd(count, c);
}

static unsigned bench_blocks(size_t n, int threads) { return (unsigned)((n + threads - 1) / threads); }

static void bench_fill_bf16(bf16 *x, size_t n, uint64_t seed) {
    CUDA_LAUNCH(bench_blocks(n, 256), 256, 0, 0, bench_fill_bf16_kernel)(x, n, seed);
    CUDA_LAUNCH_CHECK();
}

static void bench_poison(void *p, size_t bytes) { CUDA_CHECK(cudaMemset(p, 0xff, bytes)); }

static unsigned long long *bench_counter;   // one device counter for bench_count_nonfinite (allocated in main)

static unsigned long long bench_count_nonfinite(const float *x, size_t n) {
    unsigned long long c = 0;
    CUDA_CHECK(cudaMemset(bench_counter, 0, sizeof c));
    CUDA_LAUNCH(1024, 256, 0, 0, bench_count_nonfinite_kernel)(x, n, bench_counter);
    CUDA_LAUNCH_CHECK();
    CUDA_CHECK(cudaMemcpy(&c, bench_counter, sizeof c, cudaMemcpyDeviceToHost));
    return c;
}

// Exit 1 when any of the named fp32 outputs holds a NaN or an infinity after the first call.
static void bench_require_finite(const char *impl, int causal, int d, int T, const char *tensor, const float *x,
                                 size_t n) {
    const unsigned long long bad = bench_count_nonfinite(x, n);
    if (bad) {
        printf("FAIL: non-finite output: %s causal=%d d=%d T=%d: %s has %llu of %zu elements non-finite\n", impl,
               causal, d, T, tensor, bad, n);
        fflush(stdout);
        exit(1);
    }
}

// ---- timing ----

static int bench_cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

// Median milliseconds of bench_iters calls of fn(ctx), each bracketed by its own pair of events on stream 0.
typedef int (*BenchFn)(void *ctx);
static float bench_time_ms(BenchFn fn, void *ctx) {
    cudaEvent_t ev[2 * BENCH_MAX_ITERS];
    for (int i = 0; i < 2 * bench_iters; i++) CUDA_CHECK(cudaEventCreate(&ev[i]));
    for (int i = 0; i < bench_iters; i++) {
        CUDA_CHECK(cudaEventRecord(ev[2 * i], 0));
        fn(ctx);
        CUDA_CHECK(cudaEventRecord(ev[2 * i + 1], 0));
    }
    CUDA_CHECK(cudaEventSynchronize(ev[2 * bench_iters - 1]));
    float ms[BENCH_MAX_ITERS];
    for (int i = 0; i < bench_iters; i++) CUDA_CHECK(cudaEventElapsedTime(&ms[i], ev[2 * i], ev[2 * i + 1]));
    for (int i = 0; i < 2 * bench_iters; i++) CUDA_CHECK(cudaEventDestroy(ev[i]));
    qsort(ms, bench_iters, sizeof ms[0], bench_cmp_float);
    return 0.5f * (ms[bench_iters / 2 - 1] + ms[bench_iters / 2]);
}

// ---- the implementations ----

// Flash buffers: q, k, v, dO bf16 [B*H][T][d]; o, dq, dk, dv fp32 [B][H][T][d] (contiguous strides); lse, D [B*H][T].
typedef struct FlashCase {
    FlashForward fwd;
    FlashBackward bwd;
    FlashPath path;
    float *o, *lse, *delta, *dq, *dk, *dv;
    bf16 *dout;
    size_t n, rows;
} FlashCase;

static int flash_case_init(FlashCase *fc, BenchMem *m, int B, int H, int T, int d, int causal) {
    memset(fc, 0, sizeof *fc);
    fc->n = (size_t)B * H * T * d;
    fc->rows = (size_t)B * H * T;
    bf16 *q = (bf16 *)bench_alloc(m, fc->n * sizeof(bf16)), *k = (bf16 *)bench_alloc(m, fc->n * sizeof(bf16));
    bf16 *v = (bf16 *)bench_alloc(m, fc->n * sizeof(bf16));
    fc->dout = (bf16 *)bench_alloc(m, fc->n * sizeof(bf16));
    fc->o = (float *)bench_alloc(m, fc->n * sizeof(float));
    fc->dq = (float *)bench_alloc(m, fc->n * sizeof(float));
    fc->dk = (float *)bench_alloc(m, fc->n * sizeof(float));
    fc->dv = (float *)bench_alloc(m, fc->n * sizeof(float));
    fc->lse = (float *)bench_alloc(m, fc->rows * sizeof(float));
    fc->delta = (float *)bench_alloc(m, fc->rows * sizeof(float));
    if (m->oom) return -1;
    bench_fill_bf16(q, fc->n, 1);
    bench_fill_bf16(k, fc->n, 2);
    bench_fill_bf16(v, fc->n, 3);
    bench_fill_bf16(fc->dout, fc->n, 4);
    const FlashStrides st = {(long long)H * T * d, (long long)T * d, d};
    FlashForward *f = &fc->fwd;
    f->q = q;
    f->k = k;
    f->v = v;
    f->o = fc->o;
    f->o_strides = st;
    f->lse = fc->lse;
    f->B = B;
    f->H = H;
    f->T = T;
    f->d = d;
    f->causal = causal;
    FlashBackward *b = &fc->bwd;
    b->q = q;
    b->k = k;
    b->v = v;
    b->dout = fc->dout;
    b->lse = fc->lse;
    b->delta = fc->delta;
    b->dq = fc->dq;
    b->dk = fc->dk;
    b->dv = fc->dv;
    b->dq_strides = b->dk_strides = b->dv_strides = st;
    b->B = B;
    b->H = H;
    b->T = T;
    b->d = d;
    b->causal = causal;
    b->deterministic = 0;
    return 0;
}

static int flash_run_forward(void *ctx) {
    FlashCase *fc = (FlashCase *)ctx;
    return flash_forward(&fc->fwd, fc->path, 0);
}

static int flash_run_backward(void *ctx) {
    FlashCase *fc = (FlashCase *)ctx;
    CUDA_LAUNCH(bench_blocks(fc->rows, 8), 256, 0, 0, bench_delta_kernel)(fc->delta, fc->dout, fc->o, fc->rows,
                                                                           fc->fwd.d);
    CUDA_LAUNCH_CHECK();
    return flash_backward(&fc->bwd, FLASH_PATH_SM80, 0);   // one backward on every GPU (flash.h)
}

// Naive buffers in the model's layout: qkv (B,T,3C), out and dO (B,T,C), dqkv (B,T,3C) fp32, att and datt (B,H,T,T).
typedef struct NaiveCase {
    Backend *be;
    float *qkv, *out, *att, *dout, *dqkv, *datt;
    int B, T, C, H;
    size_t att_n;
} NaiveCase;

static int naive_case_init(NaiveCase *nc, Backend *be, BenchMem *m, int B, int H, int T, int d) {
    memset(nc, 0, sizeof *nc);
    nc->be = be;
    nc->B = B;
    nc->T = T;
    nc->H = H;
    nc->C = H * d;
    const size_t nc1 = (size_t)B * T * nc->C;
    nc->att_n = (size_t)B * H * T * T;
    nc->qkv = (float *)bench_alloc(m, 3 * nc1 * sizeof(float));
    nc->out = (float *)bench_alloc(m, nc1 * sizeof(float));
    nc->dout = (float *)bench_alloc(m, nc1 * sizeof(float));
    nc->dqkv = (float *)bench_alloc(m, 3 * nc1 * sizeof(float));
    nc->att = (float *)bench_alloc(m, nc->att_n * sizeof(float));
    nc->datt = (float *)bench_alloc(m, nc->att_n * sizeof(float));
    if (m->oom) return -1;
    // seeds 1, 2, 3
    CUDA_LAUNCH(bench_blocks(3 * nc1, 256), 256, 0, 0, bench_fill_model_kernel)(nc->qkv, B, T, H, d, 3, 1);
    CUDA_LAUNCH_CHECK();
    CUDA_LAUNCH(bench_blocks(nc1, 256), 256, 0, 0, bench_fill_model_kernel)(nc->dout, B, T, H, d, 1, 4);
    CUDA_LAUNCH_CHECK();
    return 0;
}

static int naive_run_forward(void *ctx) {
    NaiveCase *nc = (NaiveCase *)ctx;
    cuda_attention_forward(nc->be, nc->out, nc->att, NULL, nc->qkv, nc->B, nc->T, nc->C, nc->H, 0.0f, 0);
    return 0;
}

static int naive_run_backward(void *ctx) {
    NaiveCase *nc = (NaiveCase *)ctx;
    cuda_attention_backward(nc->be, nc->dqkv, nc->datt, nc->dout, nc->qkv, nc->att, nc->B, nc->T, nc->C, nc->H, 0.0f,
                            0);
    return 0;
}

// ---- output ----

typedef struct BenchRow {
    const char *section;   // "grid" or "memory"
    const char *impl;
    int causal, d, T, B, H;
    double fwd_ms, fwd_tflops, bwd_ms, bwd_tflops;   // < 0: not measured
    double mem_mib;                                  // < 0: none
    const char *status;                              // "ok", "OOM", "n/a (...)", "refused", ...
} BenchRow;

static FILE *bench_csv;
static const char *bench_csv_path;

static void bench_csv_write(const BenchRow *r) {
    if (!bench_csv) return;
    char f[4][32], mem[32];
    const double vals[4] = {r->fwd_ms, r->fwd_tflops, r->bwd_ms, r->bwd_tflops};
    for (int i = 0; i < 4; i++) {
        if (vals[i] < 0) f[i][0] = 0;
        else snprintf(f[i], sizeof f[i], "%.4f", vals[i]);
    }
    if (r->mem_mib < 0) mem[0] = 0;
    else snprintf(mem, sizeof mem, "%.1f", r->mem_mib);
    if (fprintf(bench_csv, "%s,%s,%d,%d,%d,%d,%d,%s,%s,%s,%s,%s,%s\n", r->section, r->impl, r->causal, r->d, r->T,
                r->B, r->H, f[0], f[1], f[2], f[3], mem, r->status) < 0) {
        fprintf(stderr, "bench/attention: --csv %s: write failed\n", bench_csv_path);
        exit(1);
    }
}

static void bench_grid_header(void) {
    printf("%-11s %6s %4s %6s %4s %4s %9s %10s %9s %10s %9s  %s\n", "impl", "causal", "d", "T", "B", "H", "fwd_ms",
           "fwd_TFLOPS", "bwd_ms", "bwd_TFLOPS", "mem_MiB", "status");
}

static void bench_print_row(const BenchRow *r) {
    char f[4][32], mem[32];
    const double vals[4] = {r->fwd_ms, r->fwd_tflops, r->bwd_ms, r->bwd_tflops};
    for (int i = 0; i < 4; i++) {
        if (vals[i] < 0) snprintf(f[i], sizeof f[i], "-");
        else snprintf(f[i], sizeof f[i], i % 2 ? "%.1f" : "%.3f", vals[i]);
    }
    if (r->mem_mib < 0) snprintf(mem, sizeof mem, "-");
    else snprintf(mem, sizeof mem, "%.1f", r->mem_mib);
    printf("%-11s %6d %4d %6d %4d %4d %9s %10s %9s %10s %9s  %s\n", r->impl, r->causal, r->d, r->T, r->B, r->H, f[0],
           f[1], f[2], f[3], mem, r->status);
    fflush(stdout);
    bench_csv_write(r);
}

static BenchRow bench_row(const char *section, const char *impl, int causal, int d, int T, int B, int H) {
    BenchRow r = {section, impl, causal, d, T, B, H, -1, -1, -1, -1, -1, "ok"};
    return r;
}

static double bench_fwd_flops(int B, int H, int T, int d, int causal) {
    const double f = 4.0 * B * H * (double)T * T * d;
    return causal ? 0.5 * f : f;
}

// ---- one grid case ----

// Warm up bench_warmup calls (checking the outputs after the first), then time. Returns the median ms, or -1 when
// the call refused the shape.
typedef void (*BenchCheck)(void *ctx, const char *impl);
static double bench_measure(BenchFn fn, BenchCheck check, void *ctx, const char *impl) {
    for (int i = 0; i < bench_warmup; i++) {
        if (fn(ctx)) return -1;
        if (i == 0) {
            CUDA_CHECK(cudaDeviceSynchronize());
            check(ctx, impl);
        }
    }
    return bench_time_ms(fn, ctx);
}

static void flash_check_forward(void *ctx, const char *impl) {
    FlashCase *fc = (FlashCase *)ctx;
    const FlashForward *f = &fc->fwd;
    bench_require_finite(impl, f->causal, f->d, f->T, "o", fc->o, fc->n);
    bench_require_finite(impl, f->causal, f->d, f->T, "lse", fc->lse, fc->rows);
}

static void flash_check_backward(void *ctx, const char *impl) {
    FlashCase *fc = (FlashCase *)ctx;
    const FlashForward *f = &fc->fwd;
    bench_require_finite(impl, f->causal, f->d, f->T, "dq", fc->dq, fc->n);
    bench_require_finite(impl, f->causal, f->d, f->T, "dk", fc->dk, fc->n);
    bench_require_finite(impl, f->causal, f->d, f->T, "dv", fc->dv, fc->n);
}

static void naive_check_forward(void *ctx, const char *impl) {
    NaiveCase *nc = (NaiveCase *)ctx;
    bench_require_finite(impl, 1, nc->C / nc->H, nc->T, "out", nc->out, (size_t)nc->B * nc->T * nc->C);
}

static void naive_check_backward(void *ctx, const char *impl) {
    NaiveCase *nc = (NaiveCase *)ctx;
    bench_require_finite(impl, 1, nc->C / nc->H, nc->T, "dqkv", nc->dqkv, (size_t)nc->B * nc->T * 3 * nc->C);
}

static void flash_poison_forward(FlashCase *fc) {
    bench_poison(fc->o, fc->n * sizeof(float));
    bench_poison(fc->lse, fc->rows * sizeof(float));
}

static void flash_poison_backward(FlashCase *fc) {
    bench_poison(fc->dq, fc->n * sizeof(float));
    bench_poison(fc->dk, fc->n * sizeof(float));
    bench_poison(fc->dv, fc->n * sizeof(float));
    bench_poison(fc->delta, fc->rows * sizeof(float));
}

static void bench_grid_flash(int causal, int d, int T, int run_sm90) {
    const int B = bench_tokens / T, H = bench_width / d;
    const double ff = bench_fwd_flops(B, H, T, d, causal);
    BenchMem m;
    memset(&m, 0, sizeof m);
    FlashCase fc;
    BenchRow r80 = bench_row("grid", "flash-sm80", causal, d, T, B, H);
    BenchRow r90 = bench_row("grid", "flash-sm90", causal, d, T, B, H);
    if (flash_case_init(&fc, &m, B, H, T, d, causal)) {
        r80.status = r90.status = "OOM";
        bench_print_row(&r80);
        if (run_sm90) bench_print_row(&r90);
        bench_mem_free_all(&m);
        return;
    }
    r80.mem_mib = r90.mem_mib = m.bytes / 1048576.0;
    fc.path = FLASH_PATH_SM80;
    flash_poison_forward(&fc);
    flash_poison_backward(&fc);
    r80.fwd_ms = bench_measure(flash_run_forward, flash_check_forward, &fc, "flash-sm80");
    if (r80.fwd_ms < 0) {
        r80.status = "refused (see stderr)";
    } else {
        r80.fwd_tflops = ff / (r80.fwd_ms * 1e-3) / 1e12;
        r80.bwd_ms = bench_measure(flash_run_backward, flash_check_backward, &fc, "flash-sm80");
        if (r80.bwd_ms < 0) r80.status = "backward refused (see stderr)";
        else r80.bwd_tflops = 2.5 * ff / (r80.bwd_ms * 1e-3) / 1e12;
    }
    bench_print_row(&r80);
    if (run_sm90) {
        fc.path = FLASH_PATH_SM90;
        flash_poison_forward(&fc);
        r90.fwd_ms = bench_measure(flash_run_forward, flash_check_forward, &fc, "flash-sm90");
        if (r90.fwd_ms < 0) r90.status = "refused (see stderr)";
        else {
            r90.fwd_tflops = ff / (r90.fwd_ms * 1e-3) / 1e12;
            r90.status = "ok (forward only; backward is flash-sm80's)";
        }
        bench_print_row(&r90);
    }
    bench_mem_free_all(&m);
}

static void bench_grid_naive(Backend *be, int causal, int d, int T) {
    const int B = bench_tokens / T, H = bench_width / d;
    BenchRow r = bench_row("grid", "naive", causal, d, T, B, H);
    if (!causal) {
        r.status = "n/a (the naive op is causal only)";
        bench_print_row(&r);
        return;
    }
    const double ff = bench_fwd_flops(B, H, T, d, causal);
    BenchMem m;
    memset(&m, 0, sizeof m);
    NaiveCase nc;
    if (naive_case_init(&nc, be, &m, B, H, T, d)) {
        r.status = "OOM";
        bench_print_row(&r);
        bench_mem_free_all(&m);
        return;
    }
    r.mem_mib = m.bytes / 1048576.0;
    bench_poison(nc.out, (size_t)B * T * nc.C * sizeof(float));
    bench_poison(nc.att, nc.att_n * sizeof(float));
    bench_poison(nc.dqkv, (size_t)B * T * 3 * nc.C * sizeof(float));
    bench_poison(nc.datt, nc.att_n * sizeof(float));
    r.fwd_ms = bench_measure(naive_run_forward, naive_check_forward, &nc, "naive");
    r.fwd_tflops = ff / (r.fwd_ms * 1e-3) / 1e12;
    r.bwd_ms = bench_measure(naive_run_backward, naive_check_backward, &nc, "naive");
    r.bwd_tflops = 2.5 * ff / (r.bwd_ms * 1e-3) / 1e12;
    bench_print_row(&r);
    bench_mem_free_all(&m);
}

// ---- the memory section: one checked forward + backward per T, or OOM ----

static void bench_memory_flash(int T) {
    const int B = 1, H = 16, d = 128;
    BenchRow r = bench_row("memory", "flash-sm80", 1, d, T, B, H);
    BenchMem m;
    memset(&m, 0, sizeof m);
    FlashCase fc;
    if (flash_case_init(&fc, &m, B, H, T, d, 1)) {
        r.status = "OOM";
    } else {
        r.mem_mib = m.bytes / 1048576.0;
        fc.path = FLASH_PATH_SM80;
        flash_poison_forward(&fc);
        flash_poison_backward(&fc);
        if (flash_run_forward(&fc) || flash_run_backward(&fc)) {
            r.status = "refused (see stderr)";
        } else {
            CUDA_CHECK(cudaDeviceSynchronize());
            flash_check_forward(&fc, "flash-sm80");
            flash_check_backward(&fc, "flash-sm80");
        }
    }
    bench_print_row(&r);
    bench_mem_free_all(&m);
}

static void bench_memory_naive(Backend *be, int T) {
    const int B = 1, H = 16, d = 128;
    BenchRow r = bench_row("memory", "naive", 1, d, T, B, H);
    BenchMem m;
    memset(&m, 0, sizeof m);
    NaiveCase nc;
    if (naive_case_init(&nc, be, &m, B, H, T, d)) {
        r.status = "OOM";
    } else {
        r.mem_mib = m.bytes / 1048576.0;
        bench_poison(nc.out, (size_t)B * T * nc.C * sizeof(float));
        bench_poison(nc.att, nc.att_n * sizeof(float));
        bench_poison(nc.dqkv, (size_t)B * T * 3 * nc.C * sizeof(float));
        bench_poison(nc.datt, nc.att_n * sizeof(float));
        naive_run_forward(&nc);
        naive_run_backward(&nc);
        CUDA_CHECK(cudaDeviceSynchronize());
        naive_check_forward(&nc, "naive");
        naive_check_backward(&nc, "naive");
    }
    bench_print_row(&r);
    bench_mem_free_all(&m);
}

// ---- main ----

static void bench_usage(FILE *f) {
    fprintf(f,
            "usage: attention [--quick | --tiny] [--csv FILE]\n"
            "  --quick      the grid at T = 1024 and 4096 only\n"
            "  --tiny       B*T = 128, H*d = 128, T = 64, memory rows to T = 128, 2 timed calls: a check of the\n"
            "               program, not a measurement (for bench/device_check.sh --dry-run on the emulated GPU)\n"
            "  --csv FILE   also write every row to FILE as CSV\n");
}

int main(int argc, char **argv) {
    int quick = 0, tiny = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) {
            quick = 1;
        } else if (!strcmp(argv[i], "--tiny")) {
            tiny = 1;
            bench_tokens = 128;
            bench_width = 128;
            bench_warmup = 1;
            bench_iters = 2;
        } else if (!strcmp(argv[i], "--csv")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "bench/attention: --csv needs a file name\n");
                return 2;
            }
            bench_csv_path = argv[++i];
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            bench_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "bench/attention: %s: unknown argument (expected --quick, --tiny or --csv FILE)\n",
                    argv[i]);
            return 2;
        }
    }

    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev <= 0) {
        cudaGetLastError();
        printf("bench/attention: skipped: no CUDA GPU\n");
        return 0;
    }
    if (bench_csv_path) {
        bench_csv = fopen(bench_csv_path, "w");
        if (!bench_csv) {
            fprintf(stderr, "bench/attention: --csv %s: cannot open for writing\n", bench_csv_path);
            return 2;
        }
        fprintf(bench_csv, "section,impl,causal,d,T,B,H,fwd_ms,fwd_tflops,bwd_ms,bwd_tflops,mem_mib,status\n");
    }

    // The naive path runs through the CUDA backend (cuBLAS handle, bf16 tensor-core GEMMs: the trainer's default).
    Backend be;
    char err[256];
    if (backend_cuda_init(&be, 0, CUDA_MATMUL_BF16, err, sizeof err)) {
        fprintf(stderr, "bench/attention: %s\n", err);
        return 1;
    }
    const cudaDeviceProp *prop = &cuda_state(&be)->prop;
    const int run_sm90 = prop->major == 9 && prop->minor == 0;
    CUDA_CHECK(cudaMalloc(&bench_counter, sizeof *bench_counter));

    printf("bench/attention: flash attention forward and backward, bf16 inputs N(0,1), fp32 outputs\n");
    printf("device: %s, compute capability %d.%d, %d SMs, %.1f GiB\n", prop->name, prop->major, prop->minor,
           prop->multiProcessorCount, prop->totalGlobalMem / 1073741824.0);
    printf("grid: B*T = %d tokens, H*d = %d (H = %d at d = 64, %d at d = 128); warm-up %d, median of %d (cudaEvent)\n",
           bench_tokens, bench_width, bench_width / 64, bench_width / 128, bench_warmup, bench_iters);
    printf("FLOPs: fwd 4*B*H*T^2*d (x0.5 causal), bwd 2.5 x fwd; flash bwd = D kernel + atomic-dQ backward\n");
    printf("mem_MiB: bytes this program cudaMallocs for the row (inputs, outputs, lse/D, gradients, naive att+datt); "
           "not the context or cuBLAS workspace\n");
    printf("naive: cuda_attention_* (cuBLAS bf16 tensor cores on fp32 storage, (B,H,T,T) fp32 buffers), causal only\n");
    if (!run_sm90)
        printf("flash-sm90: not run (its sm_90a code needs compute capability 9.0; this GPU is %d.%d)\n", prop->major,
               prop->minor);
    printf("\n");

    static const int GRID_T[] = {512, 1024, 2048, 4096, 8192, 16384};
    static const int QUICK_T[] = {1024, 4096};
    static const int TINY_T[] = {64};
    const int *Ts = tiny ? TINY_T : quick ? QUICK_T : GRID_T;
    const int nT = tiny ? 1 : quick ? 2 : 6;
    static const int DS[] = {64, 128};
    bench_grid_header();
    for (int causal = 1; causal >= 0; causal--)
        for (int di = 0; di < 2; di++)
            for (int ti = 0; ti < nT; ti++) {
                bench_grid_flash(causal, DS[di], Ts[ti], run_sm90);
                bench_grid_naive(&be, causal, DS[di], Ts[ti]);
            }

    printf("\nmemory: B = 1, H = 16, d = 128, causal; one checked forward + backward per T (flash on the sm80 path)\n");
    bench_grid_header();
    for (int T = tiny ? 64 : 1024; T <= (tiny ? 128 : 32768); T *= 2) {
        bench_memory_flash(T);
        bench_memory_naive(&be, T);
    }

    CUDA_CHECK(cudaFree(bench_counter));
    if (bench_csv && fclose(bench_csv)) {
        fprintf(stderr, "bench/attention: --csv %s: write failed\n", bench_csv_path);
        return 1;
    }
    return 0;
}
