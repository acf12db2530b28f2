/*
 * matmul.cu: the linear layers on cuBLAS (ops.h op_matmul_*; reference kernels/cpu/matmul.c), and the GEMM helpers
 * attention.cu shares. Row-major X (r, c) is column-major X^T (c, r) with leading dimension c, so each product is
 * written for cuBLAS on the transposes.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cuda_common.h"

// ---- matmul ----
// Row-major X (r, c) is column-major X^T (c, r) with leading dimension c, so each product is written for cuBLAS on
// the transposes:  out^T (M,N) = w (as op T) x inp^T;  dinp^T (K,N) = w^T x dout^T;  dw^T (K,M) += inp^T x dout.

template <class T>
__global__ static void add_bias_kernel(T *out, const T *bias, size_t N, int M) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N * M) st(&out[i], f32(out[i]) + f32(bias[i % M]));
}

// dbias (M) += column sums of dout (N,M), deterministic in two passes: blocks of (32 columns) x (BIAS_ROWS rows), each
// thread (x, y) of a 32 x 8 block summing rows y, y+8, ... of its column (coalesced reads per warp), the 8 sums
// combined in order into partials[chunk][m]; then cuda_column_sums adds the chunks in order. Bytes: N·M·e read once
// (e the compute dtype's bytes), (N/BIAS_ROWS)·M·4 partials: at N = 16K, M = 3072 (the QKV bias) in fp32 201 MB,
// ~60 µs on an H100, where one thread per column walking all N rows took an estimated 1-2.5 ms per call.
#define BIAS_ROWS 256

template <class T>
__global__ static void bias_partials_kernel(float *partials, const T *dout, int N, int M, int rows) {
    CUDA_DYNAMIC_SMEM(float, s, 16);   // [8][33]: each row's sums, padded against bank conflicts
    const int m = blockIdx.x * 32 + threadIdx.x, r0 = blockIdx.y * rows;
    const int r1 = r0 + rows < N ? r0 + rows : N;
    float acc = 0.0f;
    if (m < M)
        for (int r = r0 + threadIdx.y; r < r1; r += 8) acc += f32(dout[(size_t)r * M + m]);
    s[threadIdx.y * 33 + threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && m < M) {
        float t = s[threadIdx.x];
        for (int y = 1; y < 8; y++) t += s[y * 33 + threadIdx.x];
        partials[(size_t)blockIdx.y * M + m] = t;
    }
}

template <class T>
static void bias_partials(float *partials, const void *dout, int N, int M, int rows, int chunks) {
    CUDA_LAUNCH(dim3(blocks_for((size_t)M, 32), chunks), dim3(32, 8), 8 * 33 * sizeof(float), 0,
                bias_partials_kernel<T>)(
        partials, (const T *)dout, N, M, rows);
    CUDA_LAUNCH_CHECK();
}

static void bias_grad(Backend *be, Grad *dbias, const void *dout, int N, int M) {
    CudaState *cs = cuda_state(be);
    int rows = BIAS_ROWS;
    while ((size_t)blocks_for((size_t)N, rows) * M > cs->scratch_floats || blocks_for((size_t)N, rows) > 65535)
        rows *= 2;
    const int chunks = blocks_for((size_t)N, rows);
    CUDA_BY_DTYPE(be, bias_partials, cs->scratch, dout, N, M, rows, chunks);
    cuda_column_sums(be, dbias, cs->scratch, chunks, M, (size_t)M);
}

// Every GEMM goes through these, so the precision is chosen in one place. On fp32 storage the products run in exact
// fp32 (CUBLAS_COMPUTE_32F), TF32, bf16 or fp16 tensor cores (CUBLAS_COMPUTE_32F_FAST_*: inputs rounded on the fly,
// fp32 accumulation); on bf16 storage the inputs are bf16 already and CUBLAS_COMPUTE_32F runs them on bf16 tensor
// cores with fp32 accumulation, C written in bf16 or (the weight gradients) the gradients' dtype, fp32 or bf16.
static cublasComputeType_t compute_type(Backend *be) {
    const int mode = cuda_state(be)->matmul_mode;
    if (be->dtype == DTYPE_BF16) return CUBLAS_COMPUTE_32F;
    return mode == CUDA_MATMUL_TF32   ? CUBLAS_COMPUTE_32F_FAST_TF32
           : mode == CUDA_MATMUL_BF16 ? CUBLAS_COMPUTE_32F_FAST_16BF
           : mode == CUDA_MATMUL_FP16 ? CUBLAS_COMPUTE_32F_FAST_16F
                                      : CUBLAS_COMPUTE_32F;
}

static cudaDataType data_type(Backend *be) { return be->dtype == DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_32F; }
static cudaDataType grad_type(Backend *be) { return be->grad_dtype == DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_32F; }

void cuda_gemm(Backend *be, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
               const void *A, int lda, const void *B, int ldb, float beta, void *C, int ldc, int c_grad) {
    const cudaDataType t = data_type(be), tg = grad_type(be);
    CUBLAS_CHECK(cublasGemmEx(cuda_state(be)->cublas, ta, tb, m, n, k, &alpha, A, t, lda, B, t, ldb, &beta, C,
                              c_grad ? tg : t, ldc, compute_type(be), CUBLAS_GEMM_DEFAULT));
}

void cuda_gemm_batched(Backend *be, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                       const void *A, int lda, long long sa, const void *B, int ldb, long long sb, float beta,
                       void *C, int ldc, long long sc, int batch) {
    const cudaDataType t = data_type(be);
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(cuda_state(be)->cublas, ta, tb, m, n, k, &alpha, A, t, lda, sa, B, t, ldb,
                                            sb, &beta, C, t, ldc, sc, batch, compute_type(be), CUBLAS_GEMM_DEFAULT));
}

// The largest power of two up to 256 that divides a pointer: what cuBLASLt's alignment preferences speak of.
static uint32_t lt_align(const void *p) {
    const uintptr_t a = (uintptr_t)p;
    uint32_t al = 1;
    while (al < 256 && !(a & al)) al <<= 1;
    return al;
}

// Descriptors, layouts and the heuristic's algorithm for key (cuBLASLt's heuristic reads the bias and aux pointers'
// alignment from the descriptor, and A, B, D's from the preference, whose default of 256 bytes a layer's slice of
// the weights or activations need not meet: each operand's real alignment goes in, so the algorithm is one that works
// for it).
static void lt_plan_make(Backend *be, LtPlan *p, const LtKey *key, const void *bias, const void *aux) {
    CudaState *cs = cuda_state(be);
    const cudaDataType t = (cudaDataType)key->dtype;
    const int32_t ta = key->opa, tb = key->opb;
    const uint32_t epilogue = key->epilogue;
    const int64_t aux_ld = key->aux_ld;
    const uint64_t ws = cs->lt_workspace_bytes;
    const int m = key->m, n = key->n, k = key->k;
    p->key = *key;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, (cublasComputeType_t)key->compute, CUDA_R_32F));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue));
    cublasLtMatmulDesc_t dd = p->desc;
    if (bias) CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(dd, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    if (aux) {
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(dd, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(dd, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &aux_ld, sizeof aux_ld));
    }
    const int na = key->opa == CUBLAS_OP_N, nb = key->opb == CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->La, t, na ? m : k, na ? k : m, key->lda));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->Lb, t, nb ? k : n, nb ? n : k, key->ldb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->Ld, key->dw ? grad_type(be) : t, m, n, key->ldd));
    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    // A, B, C (= D here), D
    const cublasLtMatmulPreferenceAttributes_t at[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    const uint32_t al[4] = {key->align[0], key->align[1], key->align[2], key->align[2]};
    for (int i = 0; i < 4; i++) CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, at[i], &al[i], sizeof al[i]));
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(cs->cublaslt, p->desc, p->La, p->Lb, p->Ld, p->Ld, pref, 1,
                                                             &res, &found);
    if (st != CUBLAS_STATUS_NOT_SUPPORTED) CUBLAS_CHECK(st);
    p->ok = st == CUBLAS_STATUS_SUCCESS && found > 0;
    if (p->ok) p->algo = res.algo;
    CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
}

static void lt_plan_free(LtPlan *p) {
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->Ld));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->Lb));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->La));
    CUBLAS_CHECK(cublasLtMatmulDescDestroy(p->desc));
}

// One product on cuBLASLt with an epilogue: column-major D (m,n) = op(A) op(B) (A, B, D in the compute dtype), then
// CUBLASLT_EPILOGUE_BIAS (+ bias[i] on row i: the linear layer's bias, per output feature, in D's dtype) or
// CUBLASLT_EPILOGUE_DGELU (* gelu'(aux[i][j]), aux in D's layout and dtype with leading dimension aux_ld: GELU's
// backward; cuBLASLt's GELU is the tanh approximation GPT-2 uses); or, dw set, a weight gradient D += op(A) op(B)
// (D in the gradients' dtype) with CUBLASLT_EPILOGUE_BGRADB writing bias[j] = sum over k of op(B)[k][j] (n values,
// in D's dtype: the bias gradient, overwritten, which the caller adds in). Returns 0 when cuBLASLt has no algorithm for
// these types (the caller then takes a GEMM and a separate kernel), as its heuristic may answer for some precision
// modes and for an aux_ld that is not a multiple of 8, and for a bias or aux vector under 16-byte alignment (which
// cuBLASLt's epilogues are reported to refuse). The set-up (descriptors and the heuristic, some tens of
// microseconds of host time) is made once per shape, epilogue and operand alignment and kept in the backend's state
// (CUDA_LT_PLANS of them); each call only points the descriptor at its bias or aux and queues the product.
//   forward with bias: D = out^T (M,N) = op_T(w: K x M) x inp^T (K x N): the transposed-operand trick of cuda_gemm.
//   For GPT-2 124M at B=16 T=1024 in fp32 the bias epilogue saves 10.9 GB (~3.3 ms) of memory traffic per step on
//   paper, the DGELU one 2.4 GB in bf16 (~0.7 ms): the GELU backward's pass over the (N,F) activations.
static int matmul_lt(Backend *be, cublasOperation_t opa, cublasOperation_t opb, int m, int n, int k, const void *A,
                     int lda, const void *B, int ldb, void *D, int ldd, int dw, uint32_t epilogue, const void *bias,
                     const void *aux, int64_t aux_ld) {
    CudaState *cs = cuda_state(be);
    if ((bias && lt_align(bias) < 16) || (aux && lt_align(aux) < 16)) return 0;
    LtKey key;
    memset(&key, 0, sizeof key);   // compared with memcmp: no stray padding bytes
    key.m = m, key.n = n, key.k = k, key.lda = lda, key.ldb = ldb, key.ldd = ldd, key.opa = opa, key.opb = opb;
    key.epilogue = epilogue, key.dtype = data_type(be), key.compute = compute_type(be), key.aux_ld = aux ? aux_ld : 0;
    key.dw = dw != 0;
    key.align[0] = lt_align(A), key.align[1] = lt_align(B), key.align[2] = lt_align(D);
    key.align[3] = bias ? lt_align(bias) : 0, key.align[4] = aux ? lt_align(aux) : 0;
    LtPlan *p = NULL, once;
    for (int i = 0; i < cs->lt_nplans && !p; i++)
        if (!memcmp(&cs->lt_plans[i].key, &key, sizeof key)) p = &cs->lt_plans[i];
    if (!p) {
        p = cs->lt_nplans < CUDA_LT_PLANS ? &cs->lt_plans[cs->lt_nplans++] : &once;
        lt_plan_make(be, p, &key, bias, aux);
    }
    if (p->ok) {
        const cublasLtMatmulDescAttributes_t ptr_attr =
            bias ? CUBLASLT_MATMUL_DESC_BIAS_POINTER : CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER;
        const void *ptr = bias ? bias : aux;
        if (ptr) CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, ptr_attr, &ptr, sizeof ptr));
        const float one = 1.0f, beta = dw ? 1.0f : 0.0f;
        CUBLAS_CHECK(cublasLtMatmul(cs->cublaslt, p->desc, &one, A, p->La, B, p->Lb, &beta, D, p->Ld, D, p->Ld,
                                    &p->algo, cs->lt_workspace, cs->lt_workspace_bytes, 0));
    }
    const int ok = p->ok;
    if (p == &once) lt_plan_free(p);
    return ok;
}

template <class T>
static void add_bias(void *out, const void *bias, int N, int M) {
    CUDA_LAUNCH(blocks_for((size_t)N * M, 256), 256, 0, 0, add_bias_kernel<T>)((T *)out, (const T *)bias, (size_t)N,
                                                                               M);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_matmul_forward(Backend *be, void *out, const void *inp, const void *w, const void *bias, int N,
                                    int K, int M) {
    if (bias && N &&
        matmul_lt(be, CUBLAS_OP_T, CUBLAS_OP_N, M, N, K, w, K, inp, K, out, M, 0, CUBLASLT_EPILOGUE_BIAS, bias, NULL,
                  0))
        return;
    cuda_gemm(be, CUBLAS_OP_T, CUBLAS_OP_N, M, N, K, 1.0f, w, K, inp, K, 0.0f, out, M, 0);
    if (bias && N) CUDA_BY_DTYPE(be, add_bias, out, bias, N, M);
}

template <class G>
__global__ static void add_grad_kernel(G *dst, const G *src, int M) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < M) st(&dst[i], f32(dst[i]) + f32(src[i]));
}

template <class G>
static void add_grad(Grad *dst, const Grad *src, int M) {
    CUDA_LAUNCH(blocks_for((size_t)M, 256), 256, 0, 0, add_grad_kernel<G>)((G *)dst, (const G *)src, M);
    CUDA_LAUNCH_CHECK();
}

// The weight gradient dw^T (K,M) += inp^T (K,N) x dout (N,M), and (dbias given) the bias gradient dbias (M) +=
// colsum(dout): on cuBLASLt with the BGRADB epilogue when it has an algorithm, the column sums taken from the dout
// tiles the product reads anyway (into the backend's scratch, then added: the epilogue overwrites, the gradient
// contract accumulates), saving the bias kernel's read of dout (N·M elements: GPT-2 124M at B=16 T=1024 in bf16,
// 2.7 GB per step, ~0.8 ms at 3.35 TB/s on paper); else cuBLAS's GEMM and bias_grad. Only where the product reads
// the operands as stored (CUBLAS_COMPUTE_32F: exact fp32, or bf16 storage): a TF32/bf16/fp16 mode on fp32 storage
// rounds dout on the fly, and whether the epilogue sums the rounded or the stored values is not documented, while
// the bias gradient of fp32 storage is exact fp32 in our kernel. And only with fp32 gradients: with bf16 ones the
// epilogue's vector is bf16 too (D's type, cuBLASLt's documentation), so adding it would round twice where the
// gradient contract rounds once per op (ops.h).
static void weight_grads(Backend *be, Grad *dw, Grad *dbias, const void *dout, const void *inp, int N, int K, int M) {
    CudaState *cs = cuda_state(be);
    if (dbias && N && (size_t)M <= cs->scratch_floats && compute_type(be) == CUBLAS_COMPUTE_32F &&
        be->grad_dtype == DTYPE_F32 &&
        matmul_lt(be, CUBLAS_OP_N, CUBLAS_OP_T, K, M, N, inp, K, dout, M, dw, K, 1, CUBLASLT_EPILOGUE_BGRADB,
                  cs->scratch, NULL, 0)) {
        CUDA_BY_GRAD(be, add_grad, dbias, cs->scratch, M);
        return;
    }
    cuda_gemm(be, CUBLAS_OP_N, CUBLAS_OP_T, K, M, N, 1.0f, inp, K, dout, M, 1.0f, dw, K, 1);
    if (dbias && N) bias_grad(be, dbias, dout, N, M);
}

extern "C" void cuda_matmul_backward(Backend *be, void *dinp, Grad *dw, Grad *dbias, const void *dout,
                                     const void *inp, const void *w, int N, int K, int M) {
    if (dinp) cuda_gemm(be, CUBLAS_OP_N, CUBLAS_OP_N, K, N, M, 1.0f, w, K, dout, M, 0.0f, dinp, K, 0);
    weight_grads(be, dw, dbias, dout, inp, N, K, M);
}

extern "C" void cuda_matmul_backward_gelu(Backend *be, void *dinp, Grad *dw, Grad *dbias, const void *dout,
                                          const void *inp, const void *w, const void *pre, int N, int K, int M) {
    // dinp^T (K,N) = w^T (K,M) x dout^T (M,N), times gelu'(pre) in the epilogue (pre in dinp's layout: ld K)
    if (!N || !matmul_lt(be, CUBLAS_OP_N, CUBLAS_OP_N, K, N, M, w, K, dout, M, dinp, K, 0, CUBLASLT_EPILOGUE_DGELU,
                         NULL, pre, K)) {
        cuda_gemm(be, CUBLAS_OP_N, CUBLAS_OP_N, K, N, M, 1.0f, w, K, dout, M, 0.0f, dinp, K, 0);
        cuda_gelu_backward(be, dinp, pre, dinp, (size_t)N * K);   // in place
    }
    weight_grads(be, dw, dbias, dout, inp, N, K, M);
}
