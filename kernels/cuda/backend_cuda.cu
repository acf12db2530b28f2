/*
 * backend_cuda.cu: the CUDA backend: device selection, the cuBLAS handle, device memory behind MemOps (allocations
 * fail with what was asked, what is free and which flag to change), the op table, the device description printed
 * at start-up, and the peak-FLOPS table that MFU divides by.
 */
#include <string.h>

#include <nvtx3/nvToolsExt.h>

#include "cuda_common.h"

static void *cuda_alloc(Backend *be, size_t bytes, const char *what) {
    (void)be;
    void *p = NULL;
    size_t rounded = (bytes + 255) / 256 * 256;
    cudaError_t e = cudaMalloc(&p, rounded ? rounded : 256);
    if (e != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        cudaGetLastError();
        cudaMemGetInfo(&free_b, &total_b);
        fprintf(stderr,
                "gptrain: error: GPU memory: %s needs %.1f MiB but only %.1f MiB of %.1f MiB are free (%s); "
                "use a smaller --batch or --recompute full\n",
                what, bytes / 1048576.0, free_b / 1048576.0, total_b / 1048576.0, cudaGetErrorString(e));
        exit(2);
    }
    CUDA_CHECK(cudaMemset(p, 0, rounded ? rounded : 256));
    return p;
}

static void cuda_free(Backend *be, void *p) {
    (void)be;
    CUDA_CHECK(cudaFree(p));
}

static void cuda_to_device(Backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

// The classifier flags a target outside [0, V) in device memory instead of stopping the queue to ask; the flag is
// read wherever the host waits anyway (a copy back, a sync, a mark's time). A bad target is an internal error: the
// loader validates every token.
static void check_flags(CudaState *cs) {
    int flag = -1;
    CUDA_CHECK(cudaMemcpy(&flag, cs->bad_target, sizeof flag, cudaMemcpyDeviceToHost));
    if (flag != -1) {
        fprintf(stderr, "gptrain: internal error at %s:%d: the classifier saw target %d outside the vocabulary\n",
                __FILE__, __LINE__, flag);
        abort();
    }
}

static void cuda_to_host(Backend *be, void *dst, const void *src, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
    check_flags(cuda_state(be));
}

static void cuda_sync(Backend *be) {
    CUDA_CHECK(cudaDeviceSynchronize());
    check_flags(cuda_state(be));
}

static void cuda_mark(Backend *be, int slot) { CUDA_CHECK(cudaEventRecord(cuda_state(be)->marks[slot], 0)); }

static double cuda_mark_seconds(Backend *be, int from, int to) {
    CudaState *cs = cuda_state(be);
    float ms = 0;
    CUDA_CHECK(cudaEventSynchronize(cs->marks[to]));
    CUDA_CHECK(cudaEventElapsedTime(&ms, cs->marks[from], cs->marks[to]));
    check_flags(cs);
    return ms / 1e3;
}

static void cuda_upload(Backend *be, void *dst, const void *const *srcs, const size_t *bytes, int n) {
    CudaState *cs = cuda_state(be);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += bytes[i];
    if (total > CUDA_STAGE_BYTES) {   // larger than the staging: plain copies, which wait for queued work
        for (int i = 0; i < n; i++) {
            CUDA_CHECK(cudaMemcpy(dst, srcs[i], bytes[i], cudaMemcpyHostToDevice));
            dst = (char *)dst + bytes[i];
        }
        CUDA_CHECK(cudaEventRecord(cs->prev_upload, 0));   // the next upload's ordering point, as below
        cs->have_prev_upload = 1;
        return;
    }
    const int k = cs->stage_next;
    cs->stage_next ^= 1;
    CUDA_CHECK(cudaEventSynchronize(cs->stage_done[k]));   // this slot's previous copy has read it
    char *stage = (char *)cs->stage[k];
    for (size_t i = 0, off = 0; i < (size_t)n; off += bytes[i], i++) memcpy(stage + off, srcs[i], bytes[i]);
    // dst was last read by work queued before the previous upload call: wait for exactly that much of the compute
    // stream, copy, and make every later op wait for the copy.
    if (cs->have_prev_upload) CUDA_CHECK(cudaStreamWaitEvent(cs->copy_stream, cs->prev_upload, 0));
    CUDA_CHECK(cudaMemcpyAsync(dst, stage, total, cudaMemcpyHostToDevice, cs->copy_stream));
    CUDA_CHECK(cudaEventRecord(cs->stage_done[k], cs->copy_stream));
    CUDA_CHECK(cudaStreamWaitEvent(0, cs->stage_done[k], 0));
    CUDA_CHECK(cudaEventRecord(cs->prev_upload, 0));
    cs->have_prev_upload = 1;
}

static void *cuda_host_alloc(Backend *be, size_t bytes, const char *what) {
    (void)be;
    void *p = NULL;
    cudaError_t e = cudaHostAlloc(&p, bytes ? bytes : 64, cudaHostAllocDefault);
    if (e != cudaSuccess) {
        fprintf(stderr, "gptrain: error: pinned host memory: %s needs %.1f MiB (%s)\n", what, bytes / 1048576.0,
                cudaGetErrorString(e));
        exit(2);
    }
    memset(p, 0, bytes);
    return p;
}

static void cuda_host_free(Backend *be, void *p) {
    (void)be;
    CUDA_CHECK(cudaFreeHost(p));
}

// NVTX ranges (header-only NVTX 3: no library to link; a no-op unless a tool such as Nsight Systems is attached).
static void cuda_range_push(Backend *be, const char *name) {
    (void)be;
    nvtxRangePushA(name);
}
static void cuda_range_pop(Backend *be) {
    (void)be;
    nvtxRangePop();
}

static const MemOps CUDA_MEM = {cuda_alloc,      cuda_free,      cuda_to_device, cuda_to_host,
                                cuda_sync,       cuda_host_alloc, cuda_host_free, cuda_mark,
                                cuda_mark_seconds, cuda_upload};

static const OpTable CUDA_OPS = {
    cuda_encoder_forward,     cuda_encoder_backward,         cuda_layernorm_forward,
    cuda_residual_layernorm_forward,                         cuda_layernorm_backward,
    cuda_matmul_forward,      cuda_matmul_backward,          cuda_matmul_backward_gelu,
    cuda_attention_forward,   cuda_attention_backward,       cuda_flash_attention_forward,
    cuda_flash_attention_backward, cuda_gelu_forward,        cuda_gelu_backward,
    cuda_residual_forward,    cuda_dropout,                  cuda_classifier_forward_backward, cuda_loss_accumulate,
    cuda_sum_squares,         cuda_scale,                    cuda_zero,
    cuda_to_compute,          cuda_global_norm,              cuda_adamw_step};

extern "C" void backend_cuda_pci_bus_id(Backend *be, char *buf, size_t n) {
    const cudaDeviceProp *p = &cuda_state(be)->prop;
    snprintf(buf, n, "%04x:%02x:%02x.0", p->pciDomainID, p->pciBusID, p->pciDeviceID);
}

extern "C" size_t backend_cuda_free_bytes(Backend *be) {
    (void)be;
    size_t free_b = 0, total_b = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    return free_b;
}

extern "C" int backend_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

extern "C" int backend_cuda_init(Backend *be, int device, int matmul_mode, char *err, size_t errlen) {
    memset(be, 0, sizeof(*be));
    const int n = backend_cuda_device_count();
    if (n <= 0) {
        snprintf(err, errlen, "--device cuda: no usable CUDA GPU (cudaGetDeviceCount found none)");
        return -1;
    }
    if (device < 0 || device >= n) {
        snprintf(err, errlen, "--device cuda: GPU %d does not exist (%d found)", device, n);
        return -1;
    }
    CudaState *cs = (CudaState *)calloc(1, sizeof(CudaState));
    if (!cs) { snprintf(err, errlen, "out of memory"); return -1; }
    cs->device = device;
    cs->matmul_mode = matmul_mode;
    CUDA_CHECK(cudaSetDevice(device));
    CUDA_CHECK(cudaGetDeviceProperties(&cs->prop, device));
    CUDA_CHECK(cudaFree(0));   // create the context now, so its memory is counted before the model's
    CUBLAS_CHECK(cublasCreate(&cs->cublas));
    CUBLAS_CHECK(cublasLtCreate(&cs->cublaslt));
    CUDA_CHECK(cudaMalloc(&cs->partials, (CUDA_SUMSQ_BLOCKS + 1) * sizeof(double)));
    cs->scratch = (float *)cuda_alloc(be, CUDA_SCRATCH_FLOATS * sizeof(float), "the reductions' scratch");
    cs->scratch_floats = CUDA_SCRATCH_FLOATS;
    cs->lt_workspace = cuda_alloc(be, CUDA_LT_WORKSPACE_BYTES, "the cuBLASLt workspace");
    cs->lt_workspace_bytes = CUDA_LT_WORKSPACE_BYTES;
    cs->bad_target = (int *)cuda_alloc(be, sizeof(int), "the classifier's flag");
    const int none = -1;
    CUDA_CHECK(cudaMemcpy(cs->bad_target, &none, sizeof none, cudaMemcpyHostToDevice));
    for (int i = 0; i < BACKEND_MARKS; i++) CUDA_CHECK(cudaEventCreate(&cs->marks[i]));
    CUDA_CHECK(cudaStreamCreateWithFlags(&cs->copy_stream, cudaStreamNonBlocking));
    for (int i = 0; i < 2; i++) {
        cs->stage[i] = cuda_host_alloc(be, CUDA_STAGE_BYTES, "upload staging");
        CUDA_CHECK(cudaEventCreateWithFlags(&cs->stage_done[i], cudaEventDisableTiming));
    }
    CUDA_CHECK(cudaEventCreateWithFlags(&cs->prev_upload, cudaEventDisableTiming));
    size_t free_b = 0, total_b = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    cs->context_bytes = total_b - free_b;
    be->kind = BACKEND_CUDA;
    be->name = "cuda";
    be->threads = 1;
    be->ops = &CUDA_OPS;
    be->range_push = cuda_range_push;
    be->range_pop = cuda_range_pop;
    be->mem = &CUDA_MEM;
    be->host_visible = 0;
    be->impl = cs;
    return 0;
}

extern "C" void backend_cuda_describe(Backend *be, char *buf, size_t n) {
    CudaState *cs = cuda_state(be);
    int rt = 0, drv = 0, cublas_ver = 0;
    cudaRuntimeGetVersion(&rt);
    cudaDriverGetVersion(&drv);
    cublasGetVersion(cs->cublas, &cublas_ver);
    snprintf(buf, n, "%s (sm_%d%d), %d SMs, %.1f GiB; CUDA runtime %d.%d, driver %d.%d, cuBLAS %d; matmuls %s",
             cs->prop.name, cs->prop.major, cs->prop.minor, cs->prop.multiProcessorCount,
             cs->prop.totalGlobalMem / 1073741824.0, rt / 1000, rt % 1000 / 10, drv / 1000, drv % 1000 / 10,
             cublas_ver,
             be->dtype == DTYPE_BF16               ? "bf16 tensor cores on bf16 storage (fp32 accumulation)"
             : cs->matmul_mode == CUDA_MATMUL_TF32 ? "TF32 tensor cores"
             : cs->matmul_mode == CUDA_MATMUL_BF16 ? "bf16 tensor cores (fp32 storage, fp32 accumulation)"
             : cs->matmul_mode == CUDA_MATMUL_FP16 ? "fp16 tensor cores (fp32 storage, fp32 accumulation)"
                                                   : "fp32");
}

extern "C" size_t backend_cuda_used_bytes(Backend *be, size_t *context_bytes) {
    size_t free_b = 0, total_b = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    if (context_bytes) *context_bytes = cuda_state(be)->context_bytes;
    return total_b - free_b;
}

// Dense peak TFLOPS from NVIDIA's datasheets (no structured sparsity), matched by a substring of the device name.
// Columns: fp32 (CUDA cores), tf32 and bf16 (tensor cores, fp32 accumulate). GeForce cards accumulate in fp32 at
// half their fp16-accumulate rate, which is the figure listed.
typedef struct PeakRow {
    const char *match;
    double fp32, tf32, bf16;
} PeakRow;
static const PeakRow PEAKS[] = {
    {"H100 SXM", 66.9, 494.7, 989.4}, {"H100 80GB HBM3", 66.9, 494.7, 989.4}, {"H100 NVL", 60.0, 417.5, 835.0},
    {"H100 PCIe", 51.2, 378.0, 756.0}, {"H200", 66.9, 494.7, 989.4},        {"A100-SXM", 19.5, 156.0, 312.0},
    {"A100 SXM", 19.5, 156.0, 312.0},  {"A100-PCIE", 19.5, 156.0, 312.0},    {"A100 PCIe", 19.5, 156.0, 312.0},
    {"L40S", 91.6, 183.0, 362.1},      {"RTX 4090", 82.6, 82.6, 165.2},      {"RTX 3090", 35.6, 35.6, 71.0},
    {"B200", 80.0, 1100.0, 2250.0},
};

extern "C" double backend_cuda_peak_tflops(Backend *be, const char *precision) {
    const char *name = cuda_state(be)->prop.name;
    for (size_t i = 0; i < sizeof PEAKS / sizeof PEAKS[0]; i++)
        if (strstr(name, PEAKS[i].match))
            return !strcmp(precision, "bf16") || !strcmp(precision, "fp16") ? PEAKS[i].bf16   // the same rate
                   : !strcmp(precision, "tf32")                          ? PEAKS[i].tf32
                                                                         : PEAKS[i].fp32;
    return 0.0;   // unknown: the caller prints a warning and MFU n/a
}
