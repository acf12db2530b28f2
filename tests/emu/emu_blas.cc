/*
 * emu_blas.cc: cuBLAS on the emulated device, a reference GEMM behind the API the CUDA backend calls, written from
 * the cuBLAS 12 reference (cublasGemmEx, cublasGemmStridedBatchedEx and their compute types):
 *
 *   C = alpha op(A) op(B) + beta C, column-major, op(X) = X or X^T; A is stored (transa == N ? m x k : k x m) with
 *   leading dimension lda, B (transb == N ? k x n : n x k) with ldb, C m x n with ldc; strided batches add
 *   batch * stride elements to each pointer. Arguments cuBLAS rejects (a negative size, a leading dimension below
 *   the stored rows, a batch count below zero) return CUBLAS_STATUS_INVALID_VALUE as cuBLAS does, and a data type
 *   combination the reference does not list for the compute type returns CUBLAS_STATUS_NOT_SUPPORTED. With beta = 0,
 *   C is not read (it may hold NaN), as cuBLAS specifies.
 *
 * Precision, by compute type: CUBLAS_COMPUTE_32F and _PEDANTIC use the inputs as stored (fp32, bf16 or fp16
 * converted exactly to fp32); _FAST_TF32 rounds fp32 inputs to TF32 (10 mantissa bits, to nearest with ties away
 * from zero, as cvt.rna.tf32.f32); _FAST_16BF to bf16 and _FAST_16F to fp16 (to nearest even). Products are exact in
 * fp32 for rounded inputs; they are accumulated in fp32 in k order (one fused multiply-add each), then
 * alpha * acc + beta * C is rounded once to C's type. Real tensor cores sum in another order; the tests' tolerances
 * allow for that.
 *
 * Each GEMM is an op on the handle's stream: it runs when the host waits for that stream, and every element of A, B
 * and C it reads or writes goes through the access checker (bounds, never-written memory, stream races).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "cublasLt.h"
#include "cublas_v2.h"
#include "emu_internal.h"

struct cublasContext {
    cudaStream_t stream;
    cublasPointerMode_t pointer_mode;
    cublasMath_t math;
    int device;
};

namespace emu {

enum Round { ROUND_NONE, ROUND_TF32, ROUND_BF16, ROUND_FP16 };

static float bits_f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint32_t f_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float round_tf32(float f) {
    uint32_t u = f_bits(f);
    if ((u & 0x7f800000u) == 0x7f800000u) return f;   // Inf, NaN
    u += 0x1000u;                                     // half of the last kept bit: ties away from zero
    return bits_f(u & ~0x1fffu);
}
static uint16_t f_to_bf16(float f) {
    uint32_t u = f_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fff;
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static float bf16_to_f(uint16_t h) { return bits_f((uint32_t)h << 16); }
static uint16_t f_to_fp16(float f) {   // round to nearest even, with subnormals, overflow to Inf
    const uint32_t u = f_bits(f), sign = (u >> 16) & 0x8000u;
    const uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);   // rounds to >= 65520: Inf
    if (a < 0x38800000u) {                                      // below 2^-14: subnormal or zero
        const float r = bits_f(a) * 16777216.0f;                // scaled by 2^24: the subnormal's integer
        return (uint16_t)(sign | (uint32_t)nearbyintf(r));
    }
    uint32_t m = a + 0xfffu + ((a >> 13) & 1u) - (112u << 23);
    return (uint16_t)(sign | (m >> 13));
}
static float fp16_to_f(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0) return (sign ? -1.0f : 1.0f) * (float)m / 16777216.0f;
    if (e == 31) return bits_f(sign | 0x7f800000u | (m << 13));
    return bits_f(sign | ((e + 112) << 23) | (m << 13));
}

static size_t type_size(cudaDataType t) { return t == CUDA_R_32F ? 4 : 2; }
static float load(const void *p, cudaDataType t, size_t i) {
    if (t == CUDA_R_32F) return ((const float *)p)[i];
    if (t == CUDA_R_16BF) return bf16_to_f(((const uint16_t *)p)[i]);
    return fp16_to_f(((const uint16_t *)p)[i]);
}
static void store(void *p, cudaDataType t, size_t i, float v) {
    if (t == CUDA_R_32F) ((float *)p)[i] = v;
    else if (t == CUDA_R_16BF) ((uint16_t *)p)[i] = f_to_bf16(v);
    else ((uint16_t *)p)[i] = f_to_fp16(v);
}
static float round_in(float v, Round r) {
    switch (r) {
    case ROUND_TF32: return round_tf32(v);
    case ROUND_BF16: return bf16_to_f(f_to_bf16(v));
    case ROUND_FP16: return fp16_to_f(f_to_fp16(v));
    default: return v;
    }
}

// A stored matrix: rows x cols, column-major, leading dimension ld, batch stride in elements.
struct Mat {
    const void *p;
    cudaDataType type;
    int rows, cols;
    long long ld, stride;
};

static void check_matrix(const Mat &x, int b, bool write, const char *what) {
    const size_t es = type_size(x.type);
    const unsigned char *base = (const unsigned char *)x.p + (size_t)b * (size_t)x.stride * es;
    for (int j = 0; j < x.cols; j++) {
        const void *col = base + (size_t)j * (size_t)x.ld * es;
        if (write) op_write((void *)col, (size_t)x.rows * es, what);
        else op_read(col, (size_t)x.rows * es, what);
    }
}

struct Gemm {
    char fn[64];
    int m, n, k, batch;
    bool ta, tb;
    Mat A, B, C;
    Round round;
    float alpha, beta;
    const float *alpha_dev, *beta_dev;
    const void *bias;          // cuBLASLt's BIAS epilogue: + bias[i] on row i of the result (m values), or NULL
    cudaDataType bias_type;
    const void *aux;           // cuBLASLt's DGELU epilogue: * gelu'(aux[j][i]) (aux in C's type, leading dim aux_ld)
    long long aux_ld;
    void *bgrad;               // cuBLASLt's BGRADB epilogue: bgrad[j] = sum over k of op(B)[k][j] (n values, C's type)
};

// GELU's derivative for the tanh approximation, the GELU cuBLASLt's epilogues document:
// gelu(x) = x/2 (1 + tanh(s (x + 0.044715 x^3))), s = sqrt(2/pi).
static float gelu_grad(float x) {
    const float s = 0.7978845608028654f, u = s * (x + 0.044715f * x * x * x), th = tanhf(u);
    return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * s * (1.0f + 3.0f * 0.044715f * x * x);
}

static void run_gemm(const Gemm &g) {
    char wa[96], wb[96], wc[96];
    snprintf(wa, sizeof wa, "%s A", g.fn);
    snprintf(wb, sizeof wb, "%s B", g.fn);
    snprintf(wc, sizeof wc, "%s C", g.fn);
    float alpha = g.alpha, beta = g.beta;
    if (g.alpha_dev) {
        op_read(g.alpha_dev, 4, wa);
        alpha = *g.alpha_dev;
    }
    if (g.beta_dev) {
        op_read(g.beta_dev, 4, wc);
        beta = *g.beta_dev;
    }
    if (g.bias) {
        char wbias[96];
        snprintf(wbias, sizeof wbias, "%s bias", g.fn);
        op_read(g.bias, (size_t)g.m * type_size(g.bias_type), wbias);
    }
    if (g.aux) {
        char waux[96];
        snprintf(waux, sizeof waux, "%s aux", g.fn);
        check_matrix(Mat{g.aux, g.C.type, g.m, g.n, g.aux_ld, 0}, 0, false, waux);
    }
    std::vector<float> a((size_t)g.m * g.k), bt((size_t)g.n * g.k), out((size_t)g.m * g.n);
    for (int b = 0; b < g.batch; b++) {
        check_matrix(g.A, b, false, wa);
        check_matrix(g.B, b, false, wb);
        if (beta != 0.0f) check_matrix(g.C, b, false, wc);
        const void *A = (const unsigned char *)g.A.p + (size_t)b * g.A.stride * type_size(g.A.type);
        const void *B = (const unsigned char *)g.B.p + (size_t)b * g.B.stride * type_size(g.B.type);
        void *C = (unsigned char *)g.C.p + (size_t)b * g.C.stride * type_size(g.C.type);
        // op(A) as a[i][p] (m x k, row-major) and op(B) as bt[j][p] (n x k), rounded as the compute type does.
        for (int i = 0; i < g.m; i++)
            for (int p = 0; p < g.k; p++) {
                const size_t idx = g.ta ? (size_t)i * g.A.ld + p : (size_t)p * g.A.ld + i;
                a[(size_t)i * g.k + p] = round_in(load(A, g.A.type, idx), g.round);
            }
        for (int j = 0; j < g.n; j++)
            for (int p = 0; p < g.k; p++) {
                const size_t idx = g.tb ? (size_t)p * g.B.ld + j : (size_t)j * g.B.ld + p;
                bt[(size_t)j * g.k + p] = round_in(load(B, g.B.type, idx), g.round);
            }
        for (int j = 0; j < g.n; j++)
            for (int i = 0; i < g.m; i++) {
                const float *ar = &a[(size_t)i * g.k], *br = &bt[(size_t)j * g.k];
                float acc = 0.0f;
                for (int p = 0; p < g.k; p++) acc = fmaf(ar[p], br[p], acc);
                float v = alpha * acc;
                if (beta != 0.0f) v = fmaf(beta, load(C, g.C.type, (size_t)j * g.C.ld + i), v);
                if (g.bias) v += load(g.bias, g.bias_type, i);
                if (g.aux) v *= gelu_grad(load(g.aux, g.C.type, (size_t)j * g.aux_ld + i));
                out[(size_t)j * g.m + i] = v;
            }
        check_matrix(g.C, b, true, wc);
        for (int j = 0; j < g.n; j++)
            for (int i = 0; i < g.m; i++) store(C, g.C.type, (size_t)j * g.C.ld + i, out[(size_t)j * g.m + i]);
        if (g.bgrad) {   // the bias gradient of op(B), summed over k in order from the inputs as the product reads them
            char wg[96];
            snprintf(wg, sizeof wg, "%s bias gradient", g.fn);
            op_write(g.bgrad, (size_t)g.n * type_size(g.C.type), wg);
            for (int j = 0; j < g.n; j++) {
                float s = 0.0f;
                for (int p = 0; p < g.k; p++) s += bt[(size_t)j * g.k + p];
                store(g.bgrad, g.C.type, j, s);
            }
        }
    }
}

static const char *type_name(cudaDataType t) {
    switch (t) {
    case CUDA_R_32F: return "CUDA_R_32F";
    case CUDA_R_16BF: return "CUDA_R_16BF";
    case CUDA_R_16F: return "CUDA_R_16F";
    case CUDA_R_64F: return "CUDA_R_64F";
    case CUDA_R_8I: return "CUDA_R_8I";
    case CUDA_R_32I: return "CUDA_R_32I";
    default: return "another type";
    }
}

// Which (A/B, C) types a compute type takes (the cuBLAS reference's table for cublasGemmEx), and its rounding.
static cublasStatus_t gemm_types(const char *fn, cublasComputeType_t ct, cudaDataType ab, cudaDataType bt,
                                 cudaDataType c, Round *r) {
    if (ab != bt) return CUBLAS_STATUS_NOT_SUPPORTED;
    switch (ct) {
    case CUBLAS_COMPUTE_32F:
    case CUBLAS_COMPUTE_32F_PEDANTIC:
        *r = ROUND_NONE;
        if ((ab == CUDA_R_32F && c == CUDA_R_32F) || (ab == CUDA_R_16BF && (c == CUDA_R_16BF || c == CUDA_R_32F)) ||
            (ab == CUDA_R_16F && (c == CUDA_R_16F || c == CUDA_R_32F)))
            return CUBLAS_STATUS_SUCCESS;
        if (ab == CUDA_R_8I) fatal("%s: 8-bit integer inputs are not emulated", fn);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    case CUBLAS_COMPUTE_32F_FAST_TF32:
    case CUBLAS_COMPUTE_32F_FAST_16BF:
    case CUBLAS_COMPUTE_32F_FAST_16F:
        *r = ct == CUBLAS_COMPUTE_32F_FAST_TF32 ? ROUND_TF32 : ct == CUBLAS_COMPUTE_32F_FAST_16BF ? ROUND_BF16 : ROUND_FP16;
        return ab == CUDA_R_32F && c == CUDA_R_32F ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_SUPPORTED;
    default:
        fatal("%s: compute type %d (A %s, C %s) is not emulated", fn, (int)ct, type_name(ab), type_name(c));
    }
}

static cublasStatus_t gemm_submit(cublasHandle_t h, const char *fn, cublasOperation_t transa, cublasOperation_t transb,
                                  int m, int n, int k, const void *alpha, const void *A, cudaDataType Atype, int lda,
                                  long long sa, const void *B, cudaDataType Btype, int ldb, long long sb,
                                  const void *beta, void *C, cudaDataType Ctype, int ldc, long long sc, int batch,
                                  cublasComputeType_t ct) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if ((transa != CUBLAS_OP_N && transa != CUBLAS_OP_T && transa != CUBLAS_OP_C) ||
        (transb != CUBLAS_OP_N && transb != CUBLAS_OP_T && transb != CUBLAS_OP_C))
        return CUBLAS_STATUS_INVALID_VALUE;
    const bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
    if (m < 0 || n < 0 || k < 0 || batch < 0 || lda < std::max(1, ta ? k : m) || ldb < std::max(1, tb ? n : k) ||
        ldc < std::max(1, m))
        return CUBLAS_STATUS_INVALID_VALUE;
    Round r;
    const cublasStatus_t st = gemm_types(fn, ct, Atype, Btype, Ctype, &r);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
    Gemm g;
    memset(&g, 0, sizeof g);
    snprintf(g.fn, sizeof g.fn, "%s", fn);
    g.m = m;
    g.n = n;
    g.k = k;
    g.batch = batch;
    g.ta = ta;
    g.tb = tb;
    g.A = Mat{A, Atype, ta ? k : m, ta ? m : k, lda, sa};
    g.B = Mat{B, Btype, tb ? n : k, tb ? k : n, ldb, sb};
    g.C = Mat{C, Ctype, m, n, ldc, sc};
    g.round = r;
    if (h->pointer_mode == CUBLAS_POINTER_MODE_DEVICE) {
        g.alpha_dev = (const float *)alpha;
        g.beta_dev = (const float *)beta;
    } else {
        g.alpha = *(const float *)alpha;
        g.beta = *(const float *)beta;
    }
    if (current_device() != h->device)
        fatal("%s on device %d with a cuBLAS handle created on device %d", fn, current_device(), h->device);
    char name[256];
    snprintf(name, sizeof name, "%s %c%c m=%d n=%d k=%d%s", fn, ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k,
             batch > 1 ? " (batched)" : "");
    const size_t c_bytes = ((size_t)(batch - 1) * (size_t)sc + (size_t)(n - 1) * (size_t)ldc + (size_t)m) * type_size(Ctype);
    if (submit_op(h->stream, "cuBLAS", name, [g]() { run_gemm(g); }, C, c_bytes) != cudaSuccess)
        return CUBLAS_STATUS_EXECUTION_FAILED;
    return CUBLAS_STATUS_SUCCESS;
}

// ---- cuBLASLt (cublasLt.h): descriptors, and a matmul on the same reference GEMM ----

}  // namespace emu

struct cublasLtContext {
    int device;
};
struct cublasLtMatmulDescEmu {
    cublasComputeType_t compute;
    cudaDataType_t scale;
    cublasOperation_t ta, tb;
    uint32_t epilogue;
    const void *bias;
    int32_t bias_type;   // -1: the type of D
    const void *aux;
    int64_t aux_ld;
};
struct cublasLtMatrixLayoutEmu {
    cudaDataType type;
    uint64_t rows, cols;
    int64_t ld;
};
struct cublasLtMatmulPreferenceEmu {
    size_t max_workspace;
    uint32_t min_align[4];   // A, B, C, D: the alignment in bytes the caller promises (cuBLASLt's default 256)
};

namespace emu {

// The largest power of two up to 256 that divides the address (256 for NULL).
static uint64_t ptr_align(const void *p) {
    const uintptr_t a = (uintptr_t)p;
    uint64_t al = 1;
    while (al < 256 && !(a & al)) al <<= 1;
    return a ? al : 256;
}

// A real GPU may refuse, or run a kernel that reads misaligned vectors, when a matmul's pointers are less aligned
// than the algorithm its heuristic returned was chosen for: report it, naming the operand and the attribute to set.
static void lt_check_alignment(const cublasLtMatmulAlgo_t *algo, cublasLtMatmulDesc_t d, const void *A, const void *B,
                               const void *C, const void *D) {
    if (algo->data[6] != 0x65ed1a11u) fatal("cublasLtMatmul: an algorithm that cublasLtMatmulAlgoGetHeuristic did not return");
    const void *ptrs[4] = {A, B, C, D};
    static const char names[4] = {'A', 'B', 'C', 'D'};
    for (int i = 0; i < 4; i++)
        if (ptr_align(ptrs[i]) < algo->data[i])
            fatal("cublasLtMatmul: %c at %p is %llu-byte aligned, but the heuristic chose the algorithm for %llu-byte "
                  "alignment (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_%c_BYTES, default 256)", names[i], ptrs[i],
                  (unsigned long long)ptr_align(ptrs[i]), (unsigned long long)algo->data[i], names[i]);
    if (ptr_align(d->bias) < algo->data[4] || ptr_align(d->aux) < algo->data[5])
        fatal("cublasLtMatmul: the %s pointer is less aligned than when the heuristic chose the algorithm (%llu vs "
              "%llu bytes): ask the heuristic again for this pointer", ptr_align(d->bias) < algo->data[4] ? "bias" : "aux",
              (unsigned long long)(ptr_align(d->bias) < algo->data[4] ? ptr_align(d->bias) : ptr_align(d->aux)),
              (unsigned long long)(ptr_align(d->bias) < algo->data[4] ? algo->data[4] : algo->data[5]));
}

// Everything a matmul needs checked before it is queued: shapes that agree, types cublasGemmEx would take, an
// epilogue the emulator implements. CUBLAS_STATUS_NOT_SUPPORTED for a combination the library may refuse.
static cublasStatus_t lt_check(const char *fn, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t A,
                               cublasLtMatrixLayout_t B, cublasLtMatrixLayout_t C, cublasLtMatrixLayout_t D,
                               Round *r, int *m, int *n, int *k) {
    if (!d || !A || !B || !C || !D) return CUBLAS_STATUS_INVALID_VALUE;
    if (d->scale != CUDA_R_32F) fatal("%s: scale type %d is not emulated (only CUDA_R_32F)", fn, (int)d->scale);
    if (d->epilogue != CUBLASLT_EPILOGUE_DEFAULT && d->epilogue != CUBLASLT_EPILOGUE_BIAS &&
        d->epilogue != CUBLASLT_EPILOGUE_DGELU && d->epilogue != CUBLASLT_EPILOGUE_BGRADB)
        fatal("%s: epilogue %u is not emulated (DEFAULT, BIAS, DGELU and BGRADB are)", fn, d->epilogue);
    const bool ta = d->ta != CUBLAS_OP_N, tb = d->tb != CUBLAS_OP_N;
    *m = (int)(ta ? A->cols : A->rows);
    *k = (int)(ta ? A->rows : A->cols);
    *n = (int)(tb ? B->rows : B->cols);
    if ((uint64_t)*k != (tb ? B->cols : B->rows) || D->rows != (uint64_t)*m || D->cols != (uint64_t)*n ||
        C->rows != D->rows || C->cols != D->cols || C->type != D->type)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (A->ld < (int64_t)std::max<uint64_t>(1, A->rows) || B->ld < (int64_t)std::max<uint64_t>(1, B->rows) ||
        C->ld < (int64_t)std::max<uint64_t>(1, C->rows) || D->ld < (int64_t)std::max<uint64_t>(1, D->rows))
        return CUBLAS_STATUS_INVALID_VALUE;
    const cublasStatus_t st = gemm_types(fn, d->compute, A->type, B->type, D->type, r);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    if (d->epilogue == CUBLASLT_EPILOGUE_BIAS) {
        const int32_t bt = d->bias_type == -1 ? (int32_t)D->type : d->bias_type;
        if (bt != CUDA_R_32F && bt != (int32_t)D->type) return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (d->epilogue == CUBLASLT_EPILOGUE_DGELU) {   // the GELU input: a multiple of 8 as its leading dimension
        if (!d->aux || d->aux_ld < (int64_t)D->rows) return CUBLAS_STATUS_INVALID_VALUE;
        if (d->aux_ld % 8) return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    // The bias gradient's output vector (BGRADB: the bias pointer, written, in C's type: cuBLASLt's documentation)
    if (d->epilogue == CUBLASLT_EPILOGUE_BGRADB && !d->bias) return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}

}  // namespace emu

using namespace emu;

extern "C" {

cublasStatus_t cublasCreate(cublasHandle_t *handle) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        cudaGetLastError();
        return CUBLAS_STATUS_NOT_INITIALIZED;
    }
    cublasContext *c = new cublasContext();
    c->stream = NULL;
    c->pointer_mode = CUBLAS_POINTER_MODE_HOST;
    c->math = CUBLAS_DEFAULT_MATH;
    c->device = current_device();
    *handle = c;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t handle) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    host_wait(handle->stream);
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetVersion(cublasHandle_t handle, int *version) {
    (void)handle;
    *version = CUBLAS_VERSION;
    return CUBLAS_STATUS_SUCCESS;
}
const char *cublasGetStatusName(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_INTERNAL_ERROR";
    }
}
const char *cublasGetStatusString(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "an absent device architectural feature is required";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    default: return "an internal operation failed";
    }
}
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!stream_ok(stream)) return CUBLAS_STATUS_INVALID_VALUE;
    handle->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetStream(cublasHandle_t handle, cudaStream_t *stream) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    *stream = handle->stream;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->math = mode;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t *mode) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    *mode = handle->math;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetPointerMode(cublasHandle_t handle, cublasPointerMode_t mode) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->pointer_mode = mode;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetPointerMode(cublasHandle_t handle, cublasPointerMode_t *mode) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    *mode = handle->pointer_mode;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void *workspace, size_t bytes) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (bytes && device_of(workspace) < 0) return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void *alpha, const void *A, cudaDataType Atype, int lda, const void *B,
                            cudaDataType Btype, int ldb, const void *beta, void *C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
    (void)algo;
    return gemm_submit(handle, "cublasGemmEx", transa, transb, m, n, k, alpha, A, Atype, lda, 0, B, Btype, ldb, 0,
                       beta, C, Ctype, ldc, 0, 1, computeType);
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                          int m, int n, int k, const void *alpha, const void *A, cudaDataType Atype,
                                          int lda, long long int strideA, const void *B, cudaDataType Btype, int ldb,
                                          long long int strideB, const void *beta, void *C, cudaDataType Ctype, int ldc,
                                          long long int strideC, int batchCount, cublasComputeType_t computeType,
                                          cublasGemmAlgo_t algo) {
    (void)algo;
    return gemm_submit(handle, "cublasGemmStridedBatchedEx", transa, transb, m, n, k, alpha, A, Atype, lda, strideA, B,
                       Btype, ldb, strideB, beta, C, Ctype, ldc, strideC, batchCount, computeType);
}

cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                           int k, const float *alpha, const float *A, int lda, const float *B, int ldb,
                           const float *beta, float *C, int ldc) {
    const cublasComputeType_t ct = handle && handle->math == CUBLAS_TF32_TENSOR_OP_MATH ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                                                       : CUBLAS_COMPUTE_32F;
    return gemm_submit(handle, "cublasSgemm", transa, transb, m, n, k, alpha, A, CUDA_R_32F, lda, 0, B, CUDA_R_32F,
                       ldb, 0, beta, C, CUDA_R_32F, ldc, 0, 1, ct);
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                         int m, int n, int k, const float *alpha, const float *A, int lda,
                                         long long int strideA, const float *B, int ldb, long long int strideB,
                                         const float *beta, float *C, int ldc, long long int strideC, int batchCount) {
    const cublasComputeType_t ct = handle && handle->math == CUBLAS_TF32_TENSOR_OP_MATH ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                                                       : CUBLAS_COMPUTE_32F;
    return gemm_submit(handle, "cublasSgemmStridedBatched", transa, transb, m, n, k, alpha, A, CUDA_R_32F, lda,
                       strideA, B, CUDA_R_32F, ldb, strideB, beta, C, CUDA_R_32F, ldc, strideC, batchCount, ct);
}

// ---- cuBLASLt ----

cublasStatus_t cublasLtCreate(cublasLtHandle_t *handle) {
    if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
    *handle = new cublasLtContext{current_device()};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}
size_t cublasLtGetVersion(void) { return CUBLAS_VERSION; }

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *desc, cublasComputeType_t computeType,
                                        cudaDataType_t scaleType) {
    if (!desc) return CUBLAS_STATUS_INVALID_VALUE;
    *desc = new cublasLtMatmulDescEmu{computeType, scaleType, CUBLAS_OP_N, CUBLAS_OP_N, CUBLASLT_EPILOGUE_DEFAULT,
                                      NULL, -1, NULL, 0};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
    delete desc;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr,
                                              const void *buf, size_t size) {
    if (!desc || !buf) return CUBLAS_STATUS_INVALID_VALUE;
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB: {
        if (size != sizeof(int32_t)) return CUBLAS_STATUS_INVALID_VALUE;
        int32_t v;
        memcpy(&v, buf, sizeof v);
        if (v != CUBLAS_OP_N && v != CUBLAS_OP_T) fatal("cublasLtMatmulDescSetAttribute: operation %d is not emulated", v);
        (attr == CUBLASLT_MATMUL_DESC_TRANSA ? desc->ta : desc->tb) = (cublasOperation_t)v;
        return CUBLAS_STATUS_SUCCESS;
    }
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
        if (size != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&desc->epilogue, buf, sizeof desc->epilogue);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
        if (size != sizeof(void *)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&desc->bias, buf, sizeof desc->bias);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE:
        if (size != sizeof(int32_t)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&desc->bias_type, buf, sizeof desc->bias_type);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER:
        if (size != sizeof(void *)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&desc->aux, buf, sizeof desc->aux);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD:
        if (size != sizeof(int64_t)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&desc->aux_ld, buf, sizeof desc->aux_ld);
        return CUBLAS_STATUS_SUCCESS;
    default:
        fatal("cublasLtMatmulDescSetAttribute: attribute %d is not emulated", (int)attr);
    }
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *layout, cudaDataType type, uint64_t rows,
                                          uint64_t cols, int64_t ld) {
    if (!layout || ld < 0) return CUBLAS_STATUS_INVALID_VALUE;
    *layout = new cublasLtMatrixLayoutEmu{type, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
    delete layout;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *pref) {
    if (!pref) return CUBLAS_STATUS_INVALID_VALUE;
    *pref = new cublasLtMatmulPreferenceEmu{0, {256, 256, 256, 256}};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
    delete pref;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void *buf,
                                                    size_t size) {
    if (!pref || !buf) return CUBLAS_STATUS_INVALID_VALUE;
    if (attr >= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES && attr <= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES) {
        if (size != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE;
        uint32_t v;
        memcpy(&v, buf, sizeof v);
        if (!v || (v & (v - 1))) return CUBLAS_STATUS_INVALID_VALUE;   // a power of two
        pref->min_align[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES] = v;
        return CUBLAS_STATUS_SUCCESS;
    }
    if (attr != CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES)
        fatal("cublasLtMatmulPreferenceSetAttribute: attribute %d is not emulated", (int)attr);
    if (size != sizeof(uint64_t)) return CUBLAS_STATUS_INVALID_VALUE;
    uint64_t v;
    memcpy(&v, buf, sizeof v);
    pref->max_workspace = (size_t)v;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                              cublasLtMatrixLayout_t Adesc, cublasLtMatrixLayout_t Bdesc,
                                              cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t results[], int *returned) {
    if (!handle || !pref || requested < 1 || !results || !returned) return CUBLAS_STATUS_INVALID_VALUE;
    *returned = 0;
    Round r;
    int m, n, k;
    const cublasStatus_t st = lt_check("cublasLtMatmulAlgoGetHeuristic", desc, Adesc, Bdesc, Cdesc, Ddesc, &r, &m, &n, &k);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    // GPTRAIN_EMU_LT_NO=BIAS,DGELU,BGRADB: a library whose heuristic has no algorithm for these epilogues, as a real
    // one may answer for some types or shapes (the tests run the callers' fallbacks with it).
    if (const char *no = getenv("GPTRAIN_EMU_LT_NO")) {
        const char *ep = desc->epilogue == CUBLASLT_EPILOGUE_BIAS     ? "BIAS"
                         : desc->epilogue == CUBLASLT_EPILOGUE_DGELU  ? "DGELU"
                         : desc->epilogue == CUBLASLT_EPILOGUE_BGRADB ? "BGRADB"
                                                                      : NULL;
        for (const char *s = no; ep && *s;) {
            const size_t len = strcspn(s, ",");
            if (len == strlen(ep) && !strncmp(s, ep, len)) return CUBLAS_STATUS_NOT_SUPPORTED;
            s += len + (s[len] == ',');
        }
    }
    memset(&results[0], 0, sizeof results[0]);
    results[0].state = CUBLAS_STATUS_SUCCESS;   // one algorithm, needing no workspace
    results[0].wavesCount = 1.0f;
    // What the algorithm may assume, as the real library's may (its documentation: A, B, C and D as aligned as the
    // preference says, 256 bytes by default; the bias and aux vectors as aligned as the pointers in the descriptor
    // were when the heuristic ran): cublasLtMatmul checks its pointers against these (lt_check_alignment).
    for (int i = 0; i < 4; i++) results[0].algo.data[i] = pref->min_align[i];
    results[0].algo.data[4] = ptr_align(desc->bias);
    results[0].algo.data[5] = ptr_align(desc->aux);
    results[0].algo.data[6] = 0x65ed1a11u;   // marks an algorithm this heuristic returned
    *returned = 1;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void *alpha, const void *A,
                              cublasLtMatrixLayout_t Adesc, const void *B, cublasLtMatrixLayout_t Bdesc,
                              const void *beta, const void *C, cublasLtMatrixLayout_t Cdesc, void *D,
                              cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t *algo, void *workspace,
                              size_t workspaceSize, cudaStream_t stream) {
    (void)workspace;
    (void)workspaceSize;
    if (!handle || !alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
    Round r;
    int m, n, k;
    const cublasStatus_t st = lt_check("cublasLtMatmul", desc, Adesc, Bdesc, Cdesc, Ddesc, &r, &m, &n, &k);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    if (algo) lt_check_alignment(algo, desc, A, B, C, D);
    Gemm g;
    memset(&g, 0, sizeof g);
    snprintf(g.fn, sizeof g.fn, "cublasLtMatmul");
    g.alpha = *(const float *)alpha;
    g.beta = *(const float *)beta;
    if (C != D && g.beta != 0.0f) fatal("cublasLtMatmul: C distinct from D with beta != 0 is not emulated");
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    g.m = m;
    g.n = n;
    g.k = k;
    g.batch = 1;
    g.ta = desc->ta != CUBLAS_OP_N;
    g.tb = desc->tb != CUBLAS_OP_N;
    g.A = Mat{A, Adesc->type, (int)Adesc->rows, (int)Adesc->cols, Adesc->ld, 0};
    g.B = Mat{B, Bdesc->type, (int)Bdesc->rows, (int)Bdesc->cols, Bdesc->ld, 0};
    g.C = Mat{D, Ddesc->type, (int)Ddesc->rows, (int)Ddesc->cols, Ddesc->ld, 0};
    g.round = r;
    if (desc->epilogue == CUBLASLT_EPILOGUE_BIAS) {
        if (!desc->bias) return CUBLAS_STATUS_INVALID_VALUE;
        g.bias = desc->bias;
        g.bias_type = desc->bias_type == -1 ? Ddesc->type : (cudaDataType)desc->bias_type;
    }
    if (desc->epilogue == CUBLASLT_EPILOGUE_DGELU) {
        g.aux = desc->aux;
        g.aux_ld = desc->aux_ld;
    }
    if (desc->epilogue == CUBLASLT_EPILOGUE_BGRADB) g.bgrad = (void *)desc->bias;
    if (current_device() != handle->device)
        fatal("cublasLtMatmul on device %d with a cuBLASLt handle created on device %d", current_device(),
              handle->device);
    char name[256];
    snprintf(name, sizeof name, "cublasLtMatmul %c%c m=%d n=%d k=%d%s", g.ta ? 'T' : 'N', g.tb ? 'T' : 'N', m, n, k,
             g.bias ? " +bias" : g.aux ? " *dgelu(aux)" : g.bgrad ? " bgradb" : "");
    const size_t d_bytes = ((size_t)(n - 1) * (size_t)Ddesc->ld + (size_t)m) * type_size(Ddesc->type);
    if (submit_op(stream, "cuBLASLt", name, [g]() { run_gemm(g); }, D, d_bytes) != cudaSuccess)
        return CUBLAS_STATUS_EXECUTION_FAILED;
    return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"
