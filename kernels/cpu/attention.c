/*
 * attention.c: causal multi-head self-attention, materialising the probabilities (the CPU reference; the fused
 * flash-attention kernels are the GPU's). Per (b, h), with scale 1/sqrt(HS):
 *   forward   s[t][t2] = q_t·k_t2 * scale (t2 <= t); p = softmax_t2(s); y_t = sum_t2 p[t][t2] v_t2
 *             2·HS FLOPs per (t, t2) pair for QK^T and again for PV: T(T+1)/2 pairs per head.
 *   backward  dp = dy_t·v_t2; dv_t2 += p dy_t; ds = p (dp - sum_t2 p dp); dq_t += scale ds k_t2; dk_t2 += scale ds q_t
 * Both are parallel over the B·NH (b, h) pairs, which own disjoint slices of q, k, v and their gradients, with t in
 * order inside, so the backward's accumulations are deterministic.
 *
 * The flash pair below computes the same function without the (B,NH,T,T) buffer, as FlashAttention-2 does (and as
 * the GPU kernels in kernels/cuda/flash_*.cu do, tile by tile): the forward walks the keys in blocks of
 * FLASH_CPU_KEYS with a running max m and sum l (online softmax: on a new block max m', acc *= exp(m - m'),
 * l *= exp(m - m')), then o = acc / l and lse = m + log l; the backward recomputes p = exp(s - lse) per pair, with
 * D_t = dO_t . O_t replacing the row sum of p·dp (equal by definition of O). Its extra work is the recompute of
 * s = q.k: one more QK^T-sized product (2·HS FLOPs per pair) than the materialised backward. Dot products are `omp simd` reductions (a fixed
 * vector-lane order, so still deterministic) and the softmax uses cpu_expf, so the inner loops vectorize.
 */
#include <math.h>
#include <string.h>

#include "cpu.h"

// qkv (B,T,3C) -> out (B,T,C), att (B,NH,T,T)
void cpu_attention_forward(Backend *be, float *out, float *att, const float *qkv, int B, int T, int C, int NH) {
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
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *v = base + t2 * C3 + 2 * C + h * HS;
                    const float pv = p[t2];
                    for (int i = 0; i < HS; i++) y[i] += pv * v[i];
                }
            }
        }
    }
}

// dqkv (B,T,3C) = ; from dout (B,T,C), qkv, att; datt_scratch (B,NH,T,T) scratch
void cpu_attention_backward(Backend *be, float *dqkv, float *datt_scratch, const float *dout, const float *qkv,
                            const float *att, int B, int T, int C, int NH) {
    const int HS = C / NH;
    const float scale = 1.0f / sqrtf((float)HS);
    const size_t C3 = 3 * (size_t)C;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const float *base = qkv + (size_t)b * T * C3;
            float *dbase = dqkv + (size_t)b * T * C3;
            for (int t = 0; t < T; t++)
                for (int part = 0; part < 3; part++) memset(dbase + t * C3 + part * C + h * HS, 0, HS * sizeof(float));
            for (int t = 0; t < T; t++) {
                const float *p = att + (((size_t)b * NH + h) * T + t) * T;
                float *dp = datt_scratch + (((size_t)b * NH + h) * T + t) * T;
                const float *dy = dout + ((size_t)b * T + t) * C + h * HS;
                const float *q = base + t * C3 + h * HS;
                float *dq = dbase + t * C3 + h * HS;
                float dot = 0;  // sum_t2 p dp
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *v = base + t2 * C3 + 2 * C + h * HS;
                    float *dv = dbase + t2 * C3 + 2 * C + h * HS;
                    float s = 0;
#pragma omp simd reduction(+ : s)
                    for (int i = 0; i < HS; i++) {
                        s += dy[i] * v[i];
                        dv[i] += p[t2] * dy[i];
                    }
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
void cpu_flash_attention_forward(Backend *be, float *out, float *lse, float *work, const float *qkv, int B, int T,
                                 int C, int NH) {
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
void cpu_flash_attention_backward(Backend *be, float *dqkv, float *work, const float *dout, const float *qkv,
                                  const float *out, const float *lse, int B, int T, int C, int NH) {
    (void)work;
    const int HS = C / NH;
    const float scale = 1.0f / sqrtf((float)HS);
    const size_t C3 = 3 * (size_t)C;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const float *base = qkv + (size_t)b * T * C3;
            float *dbase = dqkv + (size_t)b * T * C3;
            for (int t = 0; t < T; t++)
                for (int part = 0; part < 3; part++) memset(dbase + t * C3 + part * C + h * HS, 0, HS * sizeof(float));
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
