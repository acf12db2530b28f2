/*
 * attention.c: causal multi-head self-attention, materialising the probabilities (the CPU reference; the fused
 * flash-attention kernels are the GPU's). Per (b, h), with scale 1/sqrt(HS):
 *   forward   s[t][t2] = q_t·k_t2 * scale (t2 <= t); p = softmax_t2(s); y_t = sum_t2 p[t][t2] v_t2
 *             2·HS FLOPs per (t, t2) pair for QK^T and again for PV: T(T+1)/2 pairs per head.
 *   backward  dp = dy_t·v_t2; dv_t2 += p dy_t; ds = p (dp - sum_t2 p dp); dq_t += scale ds k_t2; dk_t2 += scale ds q_t
 * Both are parallel over the B·NH (b, h) pairs, which own disjoint slices of q, k, v and their gradients, with t in
 * order inside, so the backward's accumulations are deterministic. Dot products are `omp simd` reductions (a fixed
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
