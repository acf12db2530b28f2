/*
 * attention.c: causal multi-head self-attention, materialising the probabilities (the CPU reference; the fused
 * flash-attention kernels are the GPU's). Per (b, h), with scale 1/sqrt(HS):
 *   forward   s[t][t2] = q_t·k_t2 * scale (t2 <= t); p = softmax_t2(s); y_t = sum_t2 p[t][t2] v_t2
 *             2·HS FLOPs per (t, t2) pair for QK^T and again for PV: T(T+1)/2 pairs per head.
 *   backward  dp = dy_t·v_t2; dv_t2 += p dy_t; ds = p (dp - sum_t2 p dp); dq_t += scale ds k_t2; dk_t2 += scale ds q_t
 * With dropout on the probabilities (p_d > 0, mask m of kernels/dropout_mask.h over the flat (B,NH,T,T) index, as
 * op_dropout draws it): y_t = sum_t2 p m/(1-p_d) v_t2; backward dv_t2 += p m/(1-p_d) dy_t, dp = m/(1-p_d) dy_t·v_t2.
 * Both are parallel over the B·NH (b, h) pairs, which own disjoint slices of q, k, v and their gradients, with t in
 * order inside, so the backward's accumulations are deterministic.
 *
 * The flash pair below computes the same function without the (B,NH,T,T) buffer, as FlashAttention-2 does (and as
 * the GPU kernels in kernels/cuda/flash_*.cu do, tile by tile): the forward walks the keys in blocks of
 * FLASH_CPU_KEYS with a running max m and sum l (online softmax: on a new block max m', acc *= exp(m - m'),
 * l *= exp(m - m')), then o = acc / l and lse = m + log l; the backward recomputes p = exp(s - lse) per pair, with
 * D_t = dO_t . O_t replacing the row sum of p·dp (equal by definition of O). Its extra work is the recompute of
 * s = q.k: one more QK^T-sized product (2·HS FLOPs per pair) than the materialised backward. Dot products are
 * `omp simd` reductions (a fixed vector-lane order, so still deterministic) and the softmax uses cpu_expf, so the
 * inner loops vectorize. These loops are the "cpu-ref" table's flash attention and the reference for the blocked
 * OpenBLAS version at the end of the file (the "cpu" table's), which is 1.8x faster than naive attention at T = 1024
 * (bench/results/ab_attention_cpu-*).
 */
#include <math.h>
#include <string.h>

#include "cpu.h"
#include "dropout_mask.h"

// Zero head h's slices of dq, dk and dv in one sequence's dqkv (T,3C): the backwards write (=) their gradients and
// accumulate into them pair by pair, so each starts from zero.
static void zero_head_grads(float *dbase, int T, int C, int h, int HS) {
    for (int t = 0; t < T; t++)
        for (int part = 0; part < 3; part++) memset(dbase + (size_t)t * 3 * C + part * C + h * HS, 0, HS * sizeof(float));
}

// qkv (B,T,3C) -> out (B,T,C), att (B,NH,T,T)
void cpu_attention_forward(Backend *be, void *out_, void *att_, void *scratch, const void *qkv_, int B, int T, int C,
                           int NH, float pd, uint64_t key) {
    (void)scratch;   // the dropped probabilities are used as they are made
    const uint32_t thr = dropout_threshold(pd);
    const float dscale = pd > 0.0f ? 1.0f / (1.0f - pd) : 1.0f;
    float *out = out_;
    float *att = att_;
    const float *qkv = qkv_;
    const int HS = C / NH;
    const float scale = 1.0f / sqrtf((float)HS);
    const size_t C3 = 3 * (size_t)C;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const float *base = qkv + (size_t)b * T * C3;
            for (int t = 0; t < T; t++) {
                const float *q = base + t * C3 + h * HS;
                float *p = att + (((size_t)b * NH + h) * T + t) * T;
                float maxv = -INFINITY;
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *k = base + t2 * C3 + C + h * HS;
                    float s = 0;
#pragma omp simd reduction(+ : s)
                    for (int i = 0; i < HS; i++) s += q[i] * k[i];
                    s *= scale;
                    p[t2] = s;
                    if (s > maxv) maxv = s;
                }
                float sum = 0;
#pragma omp simd reduction(+ : sum)
                for (int t2 = 0; t2 <= t; t2++) {
                    p[t2] = cpu_expf(p[t2] - maxv);
                    sum += p[t2];
                }
                const float inv = 1.0f / sum;
                for (int t2 = 0; t2 <= t; t2++) p[t2] *= inv;
                for (int t2 = t + 1; t2 < T; t2++) p[t2] = 0.0f;  // masked: keep the buffer fully defined
                float *y = out + ((size_t)b * T + t) * C + h * HS;
                for (int i = 0; i < HS; i++) y[i] = 0.0f;
                const size_t row = (((size_t)b * NH + h) * T + t) * T;
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *v = base + t2 * C3 + 2 * C + h * HS;
                    const float pv = pd == 0.0f ? p[t2] : dropout_keep(key, row + t2, thr) ? p[t2] * dscale : 0.0f;
                    for (int i = 0; i < HS; i++) y[i] += pv * v[i];
                }
            }
        }
    }
}

// dqkv (B,T,3C) = ; from dout (B,T,C), qkv, att; datt_scratch (B,NH,T,T) scratch
void cpu_attention_backward(Backend *be, void *dqkv_, void *datt_scratch_, const void *dout_, const void *qkv_,
                            const void *att_, int B, int T, int C, int NH, float pd, uint64_t key) {
    const uint32_t thr = dropout_threshold(pd);
    const float dscale = pd > 0.0f ? 1.0f / (1.0f - pd) : 1.0f;
    float *dqkv = dqkv_;
    float *datt_scratch = datt_scratch_;
    const float *dout = dout_;
    const float *qkv = qkv_;
    const float *att = att_;
    const int HS = C / NH;
    const float scale = 1.0f / sqrtf((float)HS);
    const size_t C3 = 3 * (size_t)C;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const float *base = qkv + (size_t)b * T * C3;
            float *dbase = dqkv + (size_t)b * T * C3;
            zero_head_grads(dbase, T, C, h, HS);
            for (int t = 0; t < T; t++) {
                const float *p = att + (((size_t)b * NH + h) * T + t) * T;
                float *dp = datt_scratch + (((size_t)b * NH + h) * T + t) * T;
                const float *dy = dout + ((size_t)b * T + t) * C + h * HS;
                const float *q = base + t * C3 + h * HS;
                float *dq = dbase + t * C3 + h * HS;
                float dot = 0;  // sum_t2 p dp
                const size_t row = (((size_t)b * NH + h) * T + t) * T;
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *v = base + t2 * C3 + 2 * C + h * HS;
                    float *dv = dbase + t2 * C3 + 2 * C + h * HS;
                    // the dropped probability and the mask's factor (p itself and 1 without dropout)
                    const float md = pd == 0.0f ? 1.0f : dropout_keep(key, row + t2, thr) ? dscale : 0.0f;
                    const float pm = pd == 0.0f ? p[t2] : p[t2] * md;
                    float s = 0;
#pragma omp simd reduction(+ : s)
                    for (int i = 0; i < HS; i++) {
                        s += dy[i] * v[i];
                        dv[i] += pm * dy[i];
                    }
                    if (pd != 0.0f) s *= md;
                    dp[t2] = s;
                    dot += p[t2] * s;
                }
                for (int t2 = 0; t2 <= t; t2++) {
                    const float ds = p[t2] * (dp[t2] - dot) * scale;
                    const float *k = base + t2 * C3 + C + h * HS;
                    float *dk = dbase + t2 * C3 + C + h * HS;
                    for (int i = 0; i < HS; i++) {
                        dq[i] += ds * k[i];
                        dk[i] += ds * q[i];
                    }
                }
            }
        }
    }
}

// ---- flash attention (no T x T buffer) ----

#define FLASH_CPU_KEYS 64   // keys per block: the block's scores fit in L1 with q and the accumulator

// qkv (B,T,3C) -> out (B,T,C), lse (B,NH,T); work unused on the CPU (the accumulator is one row on the stack)
void cpu_flash_attention_forward(Backend *be, void *out_, float *lse, float *work, const void *qkv_, int B, int T,
                                 int C, int NH) {
    float *out = out_;
    const float *qkv = qkv_;
    (void)work;
    const int HS = C / NH;
    const float scale = 1.0f / sqrtf((float)HS);
    const size_t C3 = 3 * (size_t)C;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const float *base = qkv + (size_t)b * T * C3;
            float s[FLASH_CPU_KEYS];
            for (int t = 0; t < T; t++) {
                const float *q = base + t * C3 + h * HS;
                float *y = out + ((size_t)b * T + t) * C + h * HS;
                float m = -INFINITY, l = 0.0f;
                for (int i = 0; i < HS; i++) y[i] = 0.0f;   // the accumulator lives in the output row
                for (int k0 = 0; k0 <= t; k0 += FLASH_CPU_KEYS) {
                    const int nk = (t + 1 - k0) < FLASH_CPU_KEYS ? (t + 1 - k0) : FLASH_CPU_KEYS;
                    float bm = -INFINITY;
                    for (int j = 0; j < nk; j++) {
                        const float *k = base + (size_t)(k0 + j) * C3 + C + h * HS;
                        float d = 0;
#pragma omp simd reduction(+ : d)
                        for (int i = 0; i < HS; i++) d += q[i] * k[i];
                        s[j] = d * scale;
                        if (s[j] > bm) bm = s[j];
                    }
                    const float mn = bm > m ? bm : m;
                    const float corr = cpu_expf(m - mn);   // 0 on the first block (m = -inf clamps to exp(-87))
                    l *= corr;
                    for (int i = 0; i < HS; i++) y[i] *= corr;
                    for (int j = 0; j < nk; j++) {
                        const float pj = cpu_expf(s[j] - mn);
                        const float *v = base + (size_t)(k0 + j) * C3 + 2 * C + h * HS;
                        l += pj;
#pragma omp simd
                        for (int i = 0; i < HS; i++) y[i] += pj * v[i];
                    }
                    m = mn;
                }
                const float inv = 1.0f / l;
                for (int i = 0; i < HS; i++) y[i] *= inv;
                lse[((size_t)b * NH + h) * T + t] = m + logf(l);
            }
        }
    }
}

// dqkv (B,T,3C) = ; from dout (B,T,C), qkv, out (B,T,C), lse (B,NH,T); work unused on the CPU
void cpu_flash_attention_backward(Backend *be, void *dqkv_, float *work, const void *dout_, const void *qkv_,
                                  const void *out_, const float *lse, int B, int T, int C, int NH) {
    float *dqkv = dqkv_;
    const float *dout = dout_;
    const float *qkv = qkv_;
    const float *out = out_;
    (void)work;
    const int HS = C / NH;
    const float scale = 1.0f / sqrtf((float)HS);
    const size_t C3 = 3 * (size_t)C;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const float *base = qkv + (size_t)b * T * C3;
            float *dbase = dqkv + (size_t)b * T * C3;
            zero_head_grads(dbase, T, C, h, HS);
            for (int t = 0; t < T; t++) {
                const float *dy = dout + ((size_t)b * T + t) * C + h * HS;
                const float *y = out + ((size_t)b * T + t) * C + h * HS;
                const float *q = base + t * C3 + h * HS;
                float *dq = dbase + t * C3 + h * HS;
                const float L = lse[((size_t)b * NH + h) * T + t];
                float D = 0;
#pragma omp simd reduction(+ : D)
                for (int i = 0; i < HS; i++) D += dy[i] * y[i];
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *k = base + t2 * C3 + C + h * HS, *v = base + t2 * C3 + 2 * C + h * HS;
                    float *dk = dbase + t2 * C3 + C + h * HS, *dv = dbase + t2 * C3 + 2 * C + h * HS;
                    float sc = 0, dp = 0;
#pragma omp simd reduction(+ : sc, dp)
                    for (int i = 0; i < HS; i++) {
                        sc += q[i] * k[i];
                        dp += dy[i] * v[i];
                    }
                    const float p = cpu_expf(sc * scale - L);
                    const float ds = p * (dp - D) * scale;
#pragma omp simd
                    for (int i = 0; i < HS; i++) {
                        dv[i] += p * dy[i];
                        dq[i] += ds * k[i];
                        dk[i] += ds * q[i];
                    }
                }
            }
        }
    }
}

#ifdef GPTRAIN_OPENBLAS
// ---- flash attention in blocks of products (the "cpu" table: OpenBLAS) ----
//
// The same function as the flash pair above, computed the way the GPU kernels tile it: per (b, h), query blocks of
// FLASH_BLAS_Q rows against key blocks of FLASH_BLAS_K keys, every product a small sgemm on the strided views of
// qkv (rows 3C apart), so the inner work runs at BLAS speed instead of one HS-long dot product per (t, t2) pair.
//   forward   S = scale Q_i K_j^T; online softmax over the key blocks (running max m and sum l per row); O_i += P V_j
//   backward  for each key block j, for each query block i that sees it: S, P = exp(S - lse_i), dP = dO_i V_j^T,
//             dS = scale P (dP - D_i); dV_j += P^T dO_i, dK_j += dS^T Q_i, dQ_i += dS K_j
// FLOPs: the forward 4·HS per pair, the backward 10·HS per pair (the 5 products), as on the GPU, and the causal
// mask skips key blocks wholly after the query block. Deterministic: every output slice belongs to one (b, h) and
// is accumulated in a fixed block order; OpenBLAS runs single-threaded inside the OpenMP loop (backend_cpu.c).
// 64 x 64 blocks: S and P (16 KiB each) stay in L1/L2 beside the 64 x HS operand rows.
#include <cblas.h>
#include <stdlib.h>

#define FLASH_BLAS_Q 64
#define FLASH_BLAS_K 64

void cpu_flash_attention_forward_blas(Backend *be, void *out_, float *lse, float *work, const void *qkv_, int B,
                                      int T, int C, int NH) {
    float *out = out_;
    const float *qkv = qkv_;
    (void)work;
    const int HS = C / NH, C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            float S[FLASH_BLAS_Q * FLASH_BLAS_K], m[FLASH_BLAS_Q], l[FLASH_BLAS_Q];
            const float *base = qkv + (size_t)b * T * C3;
            for (int i0 = 0; i0 < T; i0 += FLASH_BLAS_Q) {
                const int nq = T - i0 < FLASH_BLAS_Q ? T - i0 : FLASH_BLAS_Q;
                float *y = out + ((size_t)b * T + i0) * C + h * HS;   // rows C apart: the accumulator
                for (int r = 0; r < nq; r++) {
                    m[r] = -INFINITY;
                    l[r] = 0.0f;
                    memset(y + (size_t)r * C, 0, HS * sizeof(float));
                }
                const int kend = i0 + nq;   // causal: no query of this block sees a key past its last row
                for (int j0 = 0; j0 < kend; j0 += FLASH_BLAS_K) {
                    const int nk = kend - j0 < FLASH_BLAS_K ? kend - j0 : FLASH_BLAS_K;
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, HS, scale, base + (size_t)i0 * C3 + h * HS,
                                C3, base + (size_t)j0 * C3 + C + h * HS, C3, 0.0f, S, FLASH_BLAS_K);
                    for (int r = 0; r < nq; r++) {
                        float *s = S + r * FLASH_BLAS_K;
                        const int ncol = i0 + r - j0 + 1 < nk ? i0 + r - j0 + 1 : nk;   // keys <= query i0 + r
                        float bm = -INFINITY;
                        for (int c = 0; c < ncol; c++) bm = s[c] > bm ? s[c] : bm;
                        const float mn = bm > m[r] ? bm : m[r];
                        const float corr = cpu_expf(m[r] - mn);   // ~0 on the row's first block (m = -inf clamps)
                        float rs = 0.0f;
                        for (int c = 0; c < ncol; c++) {
                            s[c] = cpu_expf(s[c] - mn);
                            rs += s[c];
                        }
                        for (int c = ncol < 0 ? 0 : ncol; c < nk; c++) s[c] = 0.0f;
                        l[r] = l[r] * corr + rs;
                        m[r] = mn;
                        if (corr != 1.0f) {
                            float *yr = y + (size_t)r * C;
                            for (int e = 0; e < HS; e++) yr[e] *= corr;
                        }
                    }
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, HS, nk, 1.0f, S, FLASH_BLAS_K,
                                base + (size_t)j0 * C3 + 2 * C + h * HS, C3, 1.0f, y, C);
                }
                for (int r = 0; r < nq; r++) {
                    const float inv = 1.0f / l[r];
                    float *yr = y + (size_t)r * C;
                    for (int e = 0; e < HS; e++) yr[e] *= inv;
                    lse[((size_t)b * NH + h) * T + i0 + r] = m[r] + logf(l[r]);
                }
            }
        }
    }
}

void cpu_flash_attention_backward_blas(Backend *be, void *dqkv_, float *work, const void *dout_, const void *qkv_,
                                       const void *out_, const float *lse, int B, int T, int C, int NH) {
    float *dqkv = dqkv_;
    const float *dout = dout_;
    const float *qkv = qkv_;
    const float *out = out_;
    (void)work;
    const int HS = C / NH, C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel
    {
        float *D = malloc((size_t)T * sizeof(float));   // D_t = dO_t . O_t of the head in hand
        if (!D) abort();
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++) {
            for (int h = 0; h < NH; h++) {
                float P[FLASH_BLAS_Q * FLASH_BLAS_K], dS[FLASH_BLAS_Q * FLASH_BLAS_K];
                const float *base = qkv + (size_t)b * T * C3;
                float *dbase = dqkv + (size_t)b * T * C3;
                const float *L = lse + ((size_t)b * NH + h) * T;
                zero_head_grads(dbase, T, C, h, HS);
                for (int t = 0; t < T; t++) {
                    const float *dy = dout + ((size_t)b * T + t) * C + h * HS, *y = out + ((size_t)b * T + t) * C + h * HS;
                    float d = 0;
#pragma omp simd reduction(+ : d)
                    for (int e = 0; e < HS; e++) d += dy[e] * y[e];
                    D[t] = d;
                }
                for (int j0 = 0; j0 < T; j0 += FLASH_BLAS_K) {
                    const int nk = T - j0 < FLASH_BLAS_K ? T - j0 : FLASH_BLAS_K;
                    const float *k = base + (size_t)j0 * C3 + C + h * HS, *v = base + (size_t)j0 * C3 + 2 * C + h * HS;
                    float *dk = dbase + (size_t)j0 * C3 + C + h * HS, *dv = dbase + (size_t)j0 * C3 + 2 * C + h * HS;
                    for (int i0 = j0 / FLASH_BLAS_Q * FLASH_BLAS_Q; i0 < T; i0 += FLASH_BLAS_Q) {   // queries >= j0
                        const int nq = T - i0 < FLASH_BLAS_Q ? T - i0 : FLASH_BLAS_Q;
                        const float *q = base + (size_t)i0 * C3 + h * HS;
                        const float *dy = dout + ((size_t)b * T + i0) * C + h * HS;
                        float *dq = dbase + (size_t)i0 * C3 + h * HS;
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, HS, scale, q, C3, k, C3, 0.0f, P,
                                    FLASH_BLAS_K);
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, HS, 1.0f, dy, C, v, C3, 0.0f, dS,
                                    FLASH_BLAS_K);
                        for (int r = 0; r < nq; r++) {
                            const int t = i0 + r;
                            float *p = P + r * FLASH_BLAS_K, *ds = dS + r * FLASH_BLAS_K;
                            for (int c = 0; c < nk; c++) {
                                const float pr = j0 + c <= t ? cpu_expf(p[c] - L[t]) : 0.0f;
                                p[c] = pr;
                                ds[c] = scale * pr * (ds[c] - D[t]);
                            }
                        }
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, HS, nq, 1.0f, P, FLASH_BLAS_K, dy, C,
                                    1.0f, dv, C3);
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, HS, nq, 1.0f, dS, FLASH_BLAS_K, q, C3,
                                    1.0f, dk, C3);
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, HS, nk, 1.0f, dS, FLASH_BLAS_K, k, C3,
                                    1.0f, dq, C3);
                    }
                }
            }
        }
        free(D);
    }
}
#endif
