/*
 * backend_cpu.c: the CPU backend: its two op tables (OpenBLAS matmuls, or the plain OpenMP reference loops for
 * everything), thread setup, aligned host memory and the clock.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu.h"

#ifdef GPTRAIN_OPENBLAS
#include <cblas.h>
#endif

#define CPU_TABLE(matmul_fwd, matmul_bwd, flash_fwd, flash_bwd)                                                \
    {cpu_encoder_forward,     cpu_encoder_backward,   cpu_layernorm_forward,   cpu_residual_layernorm_forward,      \
     cpu_layernorm_backward,  matmul_fwd,             matmul_bwd,              cpu_matmul_backward_gelu,            \
     cpu_attention_forward,   cpu_attention_backward, flash_fwd,               flash_bwd,                           \
     cpu_gelu_forward,        cpu_gelu_backward,      cpu_residual_forward,    cpu_dropout,                         \
     cpu_classifier_forward_backward,                                                                             \
     cpu_loss_accumulate,     cpu_sum_squares,        cpu_scale,               cpu_zero,                            \
     cpu_to_compute,          cpu_global_norm,        cpu_adamw_step}

static const OpTable CPU_REF_OPS = CPU_TABLE(cpu_matmul_forward_ref, cpu_matmul_backward_ref,
                                             cpu_flash_attention_forward, cpu_flash_attention_backward);
#ifdef GPTRAIN_OPENBLAS
static const OpTable CPU_BLAS_OPS = CPU_TABLE(cpu_matmul_forward_blas, cpu_matmul_backward_blas,
                                              cpu_flash_attention_forward_blas, cpu_flash_attention_backward_blas);
#endif

// The CPU backends' memory is host memory: allocation is the aligned host allocator, copies are memcpy.
static void *cpu_alloc(Backend *be, size_t bytes, const char *what) { (void)be; return backend_host_alloc(bytes, what); }
static void cpu_free(Backend *be, void *p) { (void)be; backend_host_free(p); }
static void cpu_copy(Backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes && dst != src) memcpy(dst, src, bytes);
}
static void cpu_sync(Backend *be) { (void)be; }
// Ops run as they are called, so a mark is the wall clock when it is reached and an upload a copy.
static void cpu_mark(Backend *be, int slot) { be->mark_s[slot] = backend_now_s(); }
static double cpu_mark_seconds(Backend *be, int from, int to) { return be->mark_s[to] - be->mark_s[from]; }
static void cpu_upload(Backend *be, void *dst, const void *const *srcs, const size_t *bytes, int n) {
    (void)be;
    for (int i = 0; i < n; i++) {
        memcpy(dst, srcs[i], bytes[i]);
        dst = (char *)dst + bytes[i];
    }
}

static const MemOps CPU_MEM = {cpu_alloc, cpu_free, cpu_copy,         cpu_copy,  cpu_sync,
                               cpu_alloc, cpu_free, cpu_mark, cpu_mark_seconds, cpu_upload};

int backend_init(Backend *be, BackendKind kind, int threads) {
    memset(be, 0, sizeof(*be));
    if (threads <= 0) threads = omp_get_num_procs();
    be->mem = &CPU_MEM;
    be->host_visible = 1;
    be->kind = kind;
    be->threads = threads;
    omp_set_num_threads(threads);
    if (kind == BACKEND_CPU_REF) {
        be->name = "cpu-ref";
        be->ops = &CPU_REF_OPS;
        return 0;
    }
#ifdef GPTRAIN_OPENBLAS
    openblas_set_num_threads(1);  // matmul.c splits the work over the OpenMP threads itself
    be->name = "cpu";
    be->ops = &CPU_BLAS_OPS;
    return 0;
#else
    return -1;
#endif
}

const char *backend_cpu_blas_name(void) {
#ifdef GPTRAIN_OPENBLAS
    static char name[160];
    snprintf(name, sizeof name, "OpenBLAS (%s)", openblas_get_config());
    return name;
#else
    return "none (reference loops)";
#endif
}

void *backend_host_alloc(size_t bytes, const char *what) {
    size_t rounded = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) {
        fprintf(stderr, "gptrain: error: out of memory allocating %zu bytes for %s\n", bytes, what);
        exit(2);
    }
    memset(p, 0, rounded);
    return p;
}

void backend_host_free(void *p) { free(p); }

double backend_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
