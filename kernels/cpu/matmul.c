/*
 * matmul.c: the linear layer, out (N,M) = inp (N,K) · w (M,K)^T + bias, and its backward
 *   dinp (N,K) = dout · w            2·N·M·K FLOPs
 *   dw   (M,K) += dout^T · inp       2·N·M·K FLOPs
 *   dbias (M) += column sums of dout
 * Two implementations: CBLAS sgemm (OpenBLAS) for speed, and plain OpenMP loops as the readable reference. The bias
 * gradient is the same deterministic column sum in both.
 */
#include <omp.h>
#include <string.h>

#include "cpu.h"

#ifdef GPTRAIN_OPENBLAS
#include <cblas.h>
#endif

void cpu_colsum_accumulate(float *acc, const float *x, int N, int M) {
    const int CHUNK = 64;
    const int nchunks = (M + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) if ((size_t)N * M > CPU_PARALLEL_MIN)
    for (int ch = 0; ch < nchunks; ch++) {
        const int m0 = ch * CHUNK, m1 = m0 + CHUNK < M ? m0 + CHUNK : M;
        float s[64] = {0};
        for (int n = 0; n < N; n++) {
            const float *row = x + (size_t)n * M;
            for (int m = m0; m < m1; m++) s[m - m0] += row[m];
        }
        for (int m = m0; m < m1; m++) acc[m] += s[m - m0];
    }
}

// ---- reference loops ----

void cpu_matmul_forward_ref(Backend *be, void *out_, const void *inp_, const void *w_, const void *bias_, int N,
                            int K, int M) {
    float *out = out_;
    const float *inp = inp_;
    const float *w = w_;
    const float *bias = bias_;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * K;
        float *o = out + (size_t)n * M;
        for (int m = 0; m < M; m++) {
            const float *wr = w + (size_t)m * K;
            float acc = bias ? bias[m] : 0.0f;
            for (int k = 0; k < K; k++) acc += x[k] * wr[k];
            o[m] = acc;
        }
    }
}

void cpu_matmul_backward_ref(Backend *be, void *dinp_, Grad *dw_, Grad *dbias_, const void *dout_, const void *inp_,
                             const void *w_, int N, int K, int M) {
    float *dw = dw_, *dbias = dbias_;
    float *dinp = dinp_;
    const float *dout = dout_;
    const float *inp = inp_;
    const float *w = w_;
    if (dinp) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *d = dout + (size_t)n * M;
            float *di = dinp + (size_t)n * K;
            for (int k = 0; k < K; k++) di[k] = 0.0f;
            for (int m = 0; m < M; m++) {
                const float *wr = w + (size_t)m * K;
                const float dm = d[m];
                for (int k = 0; k < K; k++) di[k] += dm * wr[k];
            }
        }
    }
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        float *dwr = dw + (size_t)m * K;
        for (int n = 0; n < N; n++) {
            const float dm = dout[(size_t)n * M + m];
            const float *x = inp + (size_t)n * K;
            for (int k = 0; k < K; k++) dwr[k] += dm * x[k];
        }
    }
    if (dbias) cpu_colsum_accumulate(dbias, dout, N, M);
}

// ---- OpenBLAS ----
// OpenBLAS runs single-threaded (backend_init) and the OpenMP threads each take a block of output rows: one thread
// pool for every op instead of OpenMP's and OpenBLAS's pools spinning against each other on the same cores, and the
// partition (hence the result) is fixed for a given thread count.
#ifdef GPTRAIN_OPENBLAS
// Rows [*r0, *r1) of `rows` for thread `tid` of `nt`, in multiples of 8 so the sgemm micro-kernels stay aligned.
static void row_block(int rows, int tid, int nt, int *r0, int *r1) {
    int per = (rows + nt - 1) / nt;
    per = (per + 7) / 8 * 8;
    *r0 = tid * per < rows ? tid * per : rows;
    *r1 = *r0 + per < rows ? *r0 + per : rows;
}

void cpu_matmul_forward_blas(Backend *be, void *out_, const void *inp_, const void *w_, const void *bias_, int N,
                             int K, int M) {
    float *out = out_;
    const float *inp = inp_;
    const float *w = w_;
    const float *bias = bias_;
#pragma omp parallel
    {
        int r0, r1;
        row_block(N, omp_get_thread_num(), omp_get_num_threads(), &r0, &r1);
        if (r1 > r0) {
            float beta = 0.0f;
            if (bias) {
                // Seed the rows with the bias and let sgemm accumulate onto it (beta = 1): one pass over out.
                for (int n = r0; n < r1; n++) memcpy(out + (size_t)n * M, bias, (size_t)M * sizeof(float));
                beta = 1.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, M, K, 1.0f, inp + (size_t)r0 * K, K, w, K,
                        beta, out + (size_t)r0 * M, M);
        }
    }
}

void cpu_matmul_backward_blas(Backend *be, void *dinp_, Grad *dw_, Grad *dbias_, const void *dout_,
                              const void *inp_, const void *w_, int N, int K, int M) {
    float *dw = dw_, *dbias = dbias_;
    float *dinp = dinp_;
    const float *dout = dout_;
    const float *inp = inp_;
    const float *w = w_;
#pragma omp parallel
    {
        const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        int r0, r1;
        if (dinp) {  // dinp rows [r0, r1) = dout rows [r0, r1) · w
            row_block(N, tid, nt, &r0, &r1);
            if (r1 > r0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, K, M, 1.0f, dout + (size_t)r0 * M, M,
                            w, K, 0.0f, dinp + (size_t)r0 * K, K);
        }
        // dw rows [r0, r1) += dout[:, r0:r1]^T · inp: each thread reduces over all N for its own output rows.
        row_block(M, tid, nt, &r0, &r1);
        if (r1 > r0)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1 - r0, K, N, 1.0f, dout + r0, M, inp, K, 1.0f,
                        dw + (size_t)r0 * K, K);
    }
    if (dbias) cpu_colsum_accumulate(dbias, dout, N, M);
}
#endif
