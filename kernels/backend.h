/*
 * backend.h: what runs the ops. A Backend names its device kind, carries its settings (threads), and points at a
 * table of op implementations with exactly the signatures of ops.h. ops.c forwards each op_* call through the table,
 * so model/ is written once and a backend only fills a table: kernels/cpu/ fills two (OpenBLAS matmuls, and the
 * plain OpenMP reference loops) and kernels/cuda/ one (cuBLAS and our kernels).
 * Memory the ops read and write is the backend's ("device memory": host memory on the CPU backends, GPU memory on a
 * GPU). It is allocated and moved only through a MemOps table, so the model never touches it with the host except
 * through backend_to_host / backend_to_device, and the same model code runs where the memory is not host memory.
 */
#ifndef GPTRAIN_BACKEND_H
#define GPTRAIN_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    BACKEND_CPU = 0,      // C11 + OpenMP, matmuls on OpenBLAS when built with it
    BACKEND_CPU_REF = 1,  // C11 + OpenMP everywhere, the readable reference path
    BACKEND_CUDA = 2,     // NVIDIA GPU (kernels/cuda/), built when make finds nvcc
} BackendKind;

typedef struct Backend Backend;

// The element type of the compute-dtype tensors (ops.h): fp32 everywhere, bf16 on a GPU (Backend.dtype).
typedef enum { DTYPE_F32 = 0, DTYPE_BF16 = 1 } DType;
static inline size_t dtype_bytes(DType t) { return t == DTYPE_BF16 ? 2 : 4; }
static inline const char *dtype_name(DType t) { return t == DTYPE_BF16 ? "bf16" : "fp32"; }
// bf16 on the host: the top half of an fp32, rounded to nearest even (a NaN stays a quiet NaN); and back, exactly.
static inline uint16_t dtype_bf16_from_f32(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static inline float dtype_bf16_to_f32(uint16_t b) {
    const uint32_t u = (uint32_t)b << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}
// A parameter gradient (ops.h): its elements are in Backend.grad_dtype, fp32 unless the run chose bf16 gradients.
typedef void Grad;

// The AdamW step's per-tensor table and hyperparameters (ops.h op_adamw_step).
#define ADAMW_MAX_TENSORS 32
typedef struct AdamWTensors {
    int n;                           // tensor i covers [end[i-1], end[i]) of the flat buffer (end[-1] = 0)
    size_t end[ADAMW_MAX_TENSORS];
    uint32_t decay;                  // bit i set: weight decay applies to tensor i
    // Where the fp32 state starts (ZeRO-1 keeps a shard of it): params holds element i at params[i - master_base],
    // m and v at [i - moment_base]; 0 for whole buffers. grads and the working copy are always whole.
    size_t master_base, moment_base;
} AdamWTensors;
typedef struct AdamWHyper {
    float lr, beta1, beta2, eps, weight_decay;
    float grad_scale;
    double grad_clip;                // <= 0: no clipping
    int t;
    uint32_t seed;                   // the compute copy's stochastic rounding (0: to nearest even)
} AdamWHyper;

// One member per op of ops.h, same order, same arguments.
typedef struct OpTable {
    void (*encoder_forward)(Backend *, void *, const int32_t *, const void *, const void *, int, int, int);
    void (*encoder_backward)(Backend *, Grad *, Grad *, float *, const void *, const int32_t *, int, int, int);
    void (*layernorm_forward)(Backend *, void *, float *, float *, const void *, const void *, const void *, int,
                              int);
    void (*residual_layernorm_forward)(Backend *, void *, void *, float *, float *, const void *, const void *,
                                       const void *, const void *, int, int);
    void (*layernorm_backward)(Backend *, void *, Grad *, Grad *, const void *, const void *, const void *,
                               const float *, const float *, int, int);
    void (*matmul_forward)(Backend *, void *, const void *, const void *, const void *, int, int, int);
    void (*matmul_backward)(Backend *, void *, Grad *, Grad *, const void *, const void *, const void *, int, int,
                            int);
    void (*matmul_backward_gelu)(Backend *, void *, Grad *, Grad *, const void *, const void *, const void *,
                                 const void *, int, int, int);
    void (*attention_forward)(Backend *, void *, void *, void *, const void *, int, int, int, int, float, uint64_t);
    void (*attention_backward)(Backend *, void *, void *, const void *, const void *, const void *, int, int, int,
                               int, float, uint64_t);
    void (*flash_attention_forward)(Backend *, void *, float *, float *, const void *, int, int, int, int);
    void (*flash_attention_backward)(Backend *, void *, float *, const void *, const void *, const void *,
                                     const float *, int, int, int, int);
    void (*gelu_forward)(Backend *, void *, const void *, size_t);
    void (*gelu_backward)(Backend *, void *, const void *, const void *, size_t);
    void (*residual_forward)(Backend *, void *, const void *, const void *, size_t);
    void (*dropout)(Backend *, void *, const void *, size_t, float, uint64_t);
    void (*classifier_forward_backward)(Backend *, float *, void *, const int32_t *, int, int, int, float);
    void (*loss_accumulate)(Backend *, double *, const float *, size_t);
    double (*sum_squares)(Backend *, const Grad *, size_t);
    void (*scale)(Backend *, float *, float, size_t);
    void (*zero)(Backend *, void *, size_t);
    void (*to_compute)(Backend *, void *, const float *, size_t, size_t, uint32_t);
    void (*global_norm)(Backend *, float *, const Grad *, size_t);
    void (*adamw_step)(Backend *, float *, void *, const Grad *, float *, float *, size_t, size_t,
                       const AdamWTensors *, const AdamWHyper *, const float *, const double *);
} OpTable;

// The backend's memory. alloc returns zeroed memory and exits with a message naming `what` and the size when it
// cannot (everything is allocated once, at start, so this is a configuration error: the message says so).
typedef struct MemOps {
    void *(*alloc)(Backend *, size_t bytes, const char *what);
    void (*free)(Backend *, void *p);
    void (*to_device)(Backend *, void *dst, const void *src, size_t bytes);   // host -> backend memory
    void (*to_host)(Backend *, void *dst, const void *src, size_t bytes);     // backend memory -> host
    void (*sync)(Backend *);                                                  // wait for queued work
    // Host memory the backend copies from fastest (page-locked on a GPU, so copies are DMA and can overlap).
    void *(*host_alloc)(Backend *, size_t bytes, const char *what);
    void (*host_free)(Backend *, void *p);
    // Timing without stalls: mark(slot) records a mark in the backend's queue (a CUDA event on the compute stream;
    // on the CPU, whose ops run as they are called, the wall clock), mark_seconds(from, to) waits for mark `to` and
    // returns the seconds between the two marks. BACKEND_MARKS slots.
    void (*mark)(Backend *, int slot);
    double (*mark_seconds)(Backend *, int from, int to);
    // Host -> backend copy of a batch's small inputs without waiting for queued work: the n sources are gathered at
    // once into the backend's pinned staging (the caller may reuse them on return), then copied to dst contiguously
    // on the backend's copy stream. Ordered after every op queued before the PREVIOUS upload call (so a caller that
    // alternates between two dst buffers never overwrites one that queued work still reads) and before every op
    // queued after this one.
    void (*upload)(Backend *, void *dst, const void *const *srcs, const size_t *bytes, int n);
} MemOps;

#define BACKEND_MARKS 16

// Per-op profile of the ops run while Backend.profile is set (--profile): ops.c brackets each op with two marks
// (CUDA events; the wall clock on the CPU) and adds the time between them, its FLOPs and minimum bytes (each input
// read once, each output written once) to the op's row. Rows are keyed by op name, in first-call order.
#define OP_PROFILE_MAX 24
typedef struct OpProfileRow {
    const char *name;
    int calls;
    double seconds, flops, bytes;
} OpProfileRow;
typedef struct OpProfile {
    OpProfileRow rows[OP_PROFILE_MAX];
    int nrows;
} OpProfile;

struct Backend {
    BackendKind kind;
    const char *name;      // "cpu" or "cpu-ref", printed in the run header
    int threads;           // OpenMP (and OpenBLAS) threads
    const OpTable *ops;
    const MemOps *mem;
    DType dtype;           // the compute dtype of the ops' `void *` tensors (ops.h): fp32 unless the run chose bf16
    DType grad_dtype;      // the parameter gradients' (`Grad *`): fp32 unless the run chose bf16 (--grad-dtype)
    int deterministic;     // 1: ops whose fast GPU form sums in a varying order use a fixed order (--deterministic)
    OpProfile *profile;    // non-NULL: time every op into it (syncs around each op: for one profiled step only)
    size_t bytes_allocated; // backend memory requested through backend_alloc so far (the planner's check)
    // Named ranges for timeline tools (NVTX on the GPU: forward, backward, optimizer, each layer); NULL: none.
    void (*range_push)(Backend *, const char *name);
    void (*range_pop)(Backend *);
    int host_visible;      // 1: backend memory is host memory (the CPU backends), so tests may read it directly
    double mark_s[BACKEND_MARKS]; // the CPU backends' marks (wall clock)
    void *impl;            // the backend's private state (CUDA: device, cuBLAS handle, scratch)
};

// Fill *be for a kind; threads <= 0 means all cores. Returns 0, or -1 when the kind is not built in.
int backend_init(Backend *be, BackendKind kind, int threads);
// The CUDA backend (kernels/cuda/backend_cuda.cu; only in a build with GPTRAIN_CUDA defined).
int backend_cuda_device_count(void);
// Device `device`; matmul_mode 0: exact fp32, 1: TF32 tensor cores, 2: bf16 tensor cores (inputs rounded to bf16,
// fp32 accumulation, fp32 storage), 3: fp16 tensor cores (the same with fp16: inputs beyond 65504 become infinite,
// which loss scaling detects). 0, or -1 with err naming --device.
int backend_cuda_init(Backend *be, int device, int matmul_mode, char *err, size_t errlen);
// One line: name, compute capability, SMs, memory, CUDA runtime/driver and cuBLAS versions, matmul precision.
void backend_cuda_describe(Backend *be, char *buf, size_t n);
// The GPU's PCI bus id as sysfs names it ("0000:3b:00.0", lowercase).
void backend_cuda_pci_bus_id(Backend *be, char *buf, size_t n);
// Device memory in use now (cudaMemGetInfo), and what was in use right after the context and cuBLAS were created.
size_t backend_cuda_used_bytes(Backend *be, size_t *context_bytes);
// Device memory free now (cudaMemGetInfo).
size_t backend_cuda_free_bytes(Backend *be);
// Dense peak TFLOPS of this GPU for "fp32", "tf32", "bf16" or "fp16" from the datasheet table; 0 when the GPU is
// unknown.
double backend_cuda_peak_tflops(Backend *be, const char *precision);

// Which matmul library the CPU backend uses ("OpenBLAS x.y" or "none (reference loops)").
const char *backend_cpu_blas_name(void);

// Backend memory (dispatch through be->mem).
void *backend_alloc(Backend *be, size_t bytes, const char *what);
void backend_free(Backend *be, void *p);
void backend_to_device(Backend *be, void *dst, const void *src, size_t bytes);
void backend_to_host(Backend *be, void *dst, const void *src, size_t bytes);
void backend_sync(Backend *be);
void backend_mark(Backend *be, int slot);
double backend_mark_seconds(Backend *be, int from, int to);
void backend_upload(Backend *be, void *dst, const void *const *srcs, const size_t *bytes, int n);
void *backend_staging_alloc(Backend *be, size_t bytes, const char *what);   // be->mem->host_alloc
void backend_staging_free(Backend *be, void *p);

// Host memory: 64-byte aligned, zeroed; aborts with the request size on failure (never returns NULL).
void *backend_host_alloc(size_t bytes, const char *what);
void backend_host_free(void *p);

// Memory bandwidth in GB/s as the backend's own elementwise kernel sees it: the best of 5 passes of
// out = a + b over 3 x 64 MiB buffers (12 bytes per element moved). Allocates and frees its buffers.
double backend_measure_bandwidth_gbs(Backend *be);

// Open / close a named range (no-op when the backend has none).
void backend_range_push(Backend *be, const char *name);
void backend_range_pop(Backend *be);

// Monotonic wall clock in seconds.
double backend_now_s(void);

#ifdef __cplusplus
}
#endif

#endif
