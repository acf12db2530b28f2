/*
 * test_flash_emu.cc: the flash-attention kernels (kernels/cuda/flash_sm80.cu: forward, dK/dV, dQ; flash_sm90.cu: the
 * Hopper forward) on the emulated GPU (tests/emu/), through flash.h's host entry points (the real grids, shared-memory
 * opt-ins, tensor maps and launches), against a float64 reference, on a machine without a GPU. This checks what a GPU
 * run would check of the kernels' own logic: tile loops and causal bounds, masks of the tails (T not a multiple of any
 * tile), the fragment layouts of ldmatrix/mma.sync and of wgmma, shared-memory descriptors and the 128-byte swizzle
 * that TMA writes, the mbarrier pipeline between the producer and the consumer warpgroups, the online softmax, the
 * strides of the outputs (the model's (B,T,C) and interleaved (B,T,3C) buffers), the order of cp.async waits, both dQ
 * modes; and, through the emulator's checker, every shared-memory race, out-of-bounds access and read of memory never
 * written. It does not check timing, occupancy, bank conflicts, or anything the hardware does differently from the
 * PTX ISA's description: that is tests/gpu/test_flash.cu's job, on a device.
 *
 * Cases: B = 2, H = 2 (so batch and head strides are exercised), T in {1, 17, 64, 127, 130, 200} for head sizes 64 and
 * 128 (both paths), T in {17, 130} for 32, 80, 96 (sm80); and B = H = 1 at T = 700 for 64 and 128, long enough for
 * the sm90 K/V ring to wrap; causal and not; the sm90 forward under both timings of the emulator's asynchronous copies
 * (TMA landing as late as possible, and at once), and the sm80 kernels under both too (cp.async) at T = 130 and 700. Inputs are fresh random bf16 values; outputs are poisoned with NaN (and the
 * emulator poisons shared memory with 0xff, bf16 NaN), so an element never written fails.
 * Tolerance by rule, per element: the kernels round P (forward, dV) and dS (dK, dQ) to bf16 before the second
 * product, so an element's error is bounded by 2^-8 times the sum of the magnitudes of its terms; the test allows
 * twice that, plus 1e-5 of the output's largest magnitude (at least 1e-5: T = 1 has dQ = dK = 0 exactly) for fp32
 * accumulation, and reports the worst element as a fraction of its allowance. lse: 1e-4 + 1e-6 T absolute. Any
 * index or layout error is far outside these (a swapped fragment register, a missing wait, an off-by-one mask, LBO
 * and SBO exchanged: each fails dozens of cases).
 */
#include <stdlib.h>
#include <string.h>

#include <vector>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "flash.h"
#include "harness.h"

typedef __nv_bfloat16 bf16;

// A CUDA error ends the run: the emulator has already said why.
#define CK(call)                                                                                              \
    do {                                                                                                      \
        cudaError_t e_ = (call);                                                                              \
        if (e_ != cudaSuccess) {                                                                              \
            harness_case(0, "CUDA", "%s at %s:%d: %s", #call, __FILE__, __LINE__, cudaGetErrorString(e_));   \
            exit(harness_finish());                                                                           \
        }                                                                                                     \
    } while (0)

// Device copies of host vectors; results come back after a device synchronize.
template <class T>
static T *to_dev(const std::vector<T> &h) {
    T *d = NULL;
    CK(cudaMalloc(&d, h.size() * sizeof(T)));
    CK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}
template <class T>
static void to_host(std::vector<T> &h, const T *d) {
    CK(cudaMemcpy(h.data(), d, h.size() * sizeof(T), cudaMemcpyDeviceToHost));
}

// The forward on a path (sm80; sm90 with TMA copies landing late or eager) or the backward, through flash.h's host
// entry points: the real grid, shared-memory opt-in, tensor maps and launches. 0, or -1 when a call refused.
// timing: when the asynchronous copies (cp.async, TMA) land on the emulated GPU: "late" (at the wait that covers
// them: a read before its wait finds poison) or "eager" (at issue: a refill of a buffer another warp still reads is a
// race).
static int run_forward(const FlashForward &f, FlashPath path, const char *timing) {
    setenv("GPTRAIN_EMU_ASYNC", timing, 1);
    const int r = flash_forward(&f, path, 0);
    CK(cudaDeviceSynchronize());
    return r;
}
static int run_backward(const FlashBackward &b, const char *timing) {
    setenv("GPTRAIN_EMU_ASYNC", timing, 1);
    const int r = flash_backward(&b, FLASH_PATH_SM80, 0);
    CK(cudaDeviceSynchronize());
    return r;
}

// ---- float64 reference and the comparison ----

static uint64_t rng_state;
static double urand(void) {   // xorshift64*, uniform in [-1, 1)
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ull) >> 11) / 4503599627370496.0 - 1.0;
}

static void random_bf16(std::vector<bf16> &x, std::vector<double> &xd, size_t n, double amp) {
    x.resize(n);
    xd.resize(n);
    for (size_t i = 0; i < n; i++) {
        x[i] = __float2bfloat16((float)(amp * urand()));
        xd[i] = (double)__bfloat162float(x[i]);
    }
}

struct Worst {
    double frac;   // worst |error| / allowance
    long where;
    double got, want;
    int bad;       // NaN or over the allowance
};
static void check(Worst *w, long i, double got, double want, double allow) {
    const double e = fabs(got - want), f = allow > 0 ? e / allow : (e > 0 ? INFINITY : 0);
    if (!(e <= allow)) w->bad = 1;   // NaN fails too
    if (!(f <= w->frac)) {
        w->frac = isnan(f) ? INFINITY : f;
        w->where = i;
        w->got = got;
        w->want = want;
    }
}

static void one_case(int B, int H, int d, int T, int causal, int both_timings) {
    const int BH = B * H, C = H * d;
    const double scale = 1.0 / sqrt((double)d);
    rng_state = 0x9e3779b97f4a7c15ull ^ ((uint64_t)d << 40) ^ ((uint64_t)T << 8) ^ (uint64_t)causal;
    std::vector<bf16> q, k, v, dob;
    std::vector<double> qd, kd, vd, dod;
    const size_t n = (size_t)BH * T * d;
    random_bf16(q, qd, n, 2.0);   // scores of either sign, up to a few units: softmaxes neither flat nor one-hot
    random_bf16(k, kd, n, 2.0);
    random_bf16(v, vd, n, 1.0);
    random_bf16(dob, dod, n, 1.0);

    // reference: per head, S, P, O, lse; then dP, dS and the three gradients, with the term magnitudes for the bounds
    std::vector<double> O(n), Obound(n), lse((size_t)BH * T), D((size_t)BH * T);
    std::vector<double> dQ(n, 0), dK(n, 0), dV(n, 0), bQ(n, 0), bK(n, 0), bV(n, 0);
    std::vector<double> P((size_t)T * T), dS((size_t)T * T);
    for (int bh = 0; bh < BH; bh++) {
        const double *Q = &qd[(size_t)bh * T * d], *K = &kd[(size_t)bh * T * d], *V = &vd[(size_t)bh * T * d];
        const double *dO = &dod[(size_t)bh * T * d];
        for (int i = 0; i < T; i++) {
            const int jn = causal ? i + 1 : T;
            double m = -INFINITY;
            for (int j = 0; j < jn; j++) {
                double s = 0;
                for (int e = 0; e < d; e++) s += Q[i * d + e] * K[j * d + e];
                P[(size_t)i * T + j] = s * scale;
                m = fmax(m, s * scale);
            }
            double l = 0;
            for (int j = 0; j < jn; j++) l += exp(P[(size_t)i * T + j] - m);
            lse[(size_t)bh * T + i] = m + log(l);
            for (int j = 0; j < T; j++) P[(size_t)i * T + j] = j < jn ? exp(P[(size_t)i * T + j] - m) / l : 0.0;
            double dd = 0;
            for (int e = 0; e < d; e++) {
                double o = 0, ob = 0;
                for (int j = 0; j < jn; j++) {
                    o += P[(size_t)i * T + j] * V[j * d + e];
                    ob += P[(size_t)i * T + j] * fabs(V[j * d + e]);
                }
                O[((size_t)bh * T + i) * d + e] = o;
                Obound[((size_t)bh * T + i) * d + e] = ob;
                dd += dO[i * d + e] * o;
            }
            D[(size_t)bh * T + i] = dd;
        }
        for (int i = 0; i < T; i++)
            for (int j = 0; j < T; j++) {
                double dp = 0;
                for (int e = 0; e < d; e++) dp += dO[i * d + e] * V[j * d + e];
                dS[(size_t)i * T + j] = P[(size_t)i * T + j] * (dp - D[(size_t)bh * T + i]);
            }
        for (int i = 0; i < T; i++)
            for (int j = 0; j < T; j++) {
                const double p = P[(size_t)i * T + j], ds = dS[(size_t)i * T + j];
                if (p == 0 && ds == 0) continue;
                for (int e = 0; e < d; e++) {
                    const size_t qi = ((size_t)bh * T + i) * d + e, kj = ((size_t)bh * T + j) * d + e;
                    dV[kj] += p * dO[i * d + e];
                    bV[kj] += p * fabs(dO[i * d + e]);
                    dK[kj] += scale * ds * Q[i * d + e];
                    bK[kj] += scale * fabs(ds * Q[i * d + e]);
                    dQ[qi] += scale * ds * K[j * d + e];
                    bQ[qi] += scale * fabs(ds * K[j * d + e]);
                }
            }
    }
    const double U = 1.0 / 256;   // bf16 rounding of P and dS: relative 2^-8 at most
    char name[160];
    // The same inputs in the model's layout, read in place through strides by the sm80 kernels: q, k, v interleaved
    // per token (B,T,3C), dO (B,T,C).
    std::vector<bf16> qkv_i((size_t)B * T * 3 * C), do_i((size_t)B * T * C);
    for (int bh = 0; bh < BH; bh++)
        for (int t = 0; t < T; t++)
            for (int e = 0; e < d; e++) {
                const size_t r = ((size_t)bh * T + t) * d + e, row = (size_t)(bh / H) * T + t, c = (size_t)(bh % H) * d + e;
                qkv_i[row * 3 * C + c] = q[r];
                qkv_i[row * 3 * C + C + c] = k[r];
                qkv_i[row * 3 * C + 2 * C + c] = v[r];
                do_i[row * C + c] = dob[r];
            }
    bf16 *qkv_id = to_dev(qkv_i), *do_id = to_dev(do_i);
    const FlashStrides in_st = {(long long)T * 3 * C, d, 3LL * C}, do_st = {(long long)T * C, d, (long long)C};

    // ---- forward: O into a (B,T,C) buffer (strided), lse ----
    std::vector<float> out((size_t)B * T * C, NAN), lse_k((size_t)BH * T, NAN);
    bf16 *qd_ = to_dev(q), *kd_ = to_dev(k), *vd_ = to_dev(v), *dod_ = to_dev(dob);
    float *out_d = to_dev(out), *lse_d = to_dev(lse_k);
    FlashForward f;
    memset(&f, 0, sizeof f);
    f.q = qd_;
    f.k = kd_;
    f.v = vd_;
    f.o = out_d;
    f.o_strides = {(long long)T * C, d, C};
    f.lse = lse_d;
    f.B = B;
    f.H = H;
    f.T = T;
    f.d = d;
    f.causal = causal;
    double omax = 0;
    for (size_t i = 0; i < n; i++) omax = fmax(omax, fabs(O[i]));
    // paths: sm80 with copies landing late, then early; sm90 late, then early
    for (int path = 0; path < 4; path++) {
    if (path == 1 && !both_timings) continue;
    if (path > 1 && d != 64 && d != 128) break;   // the sm90 forward takes these two head sizes
    std::fill(out.begin(), out.end(), NAN);
    std::fill(lse_k.begin(), lse_k.end(), NAN);
    CK(cudaMemcpy(out_d, out.data(), out.size() * sizeof(float), cudaMemcpyHostToDevice));   // poison
    CK(cudaMemcpy(lse_d, lse_k.data(), lse_k.size() * sizeof(float), cudaMemcpyHostToDevice));
    static const char *path_name[4] = {"sm80", "sm80 (copies eager)", "sm90 (TMA late)", "sm90 (TMA eager)"};
    snprintf(name, sizeof name, "forward %s B=%d H=%d d=%d T=%d %s", path_name[path], B, H, d, T,
             causal ? "causal" : "full");
    if (run_forward(f, path < 2 ? FLASH_PATH_SM80 : FLASH_PATH_SM90, path % 2 ? "eager" : "late")) {
        harness_case(0, name, "flash_forward refused the call");
        continue;
    }
    to_host(out, out_d);
    to_host(lse_k, lse_d);
    Worst wo = {0, -1, 0, 0, 0}, wl = {0, -1, 0, 0, 0};
    for (int bh = 0; bh < BH; bh++)
        for (int t = 0; t < T; t++) {
            for (int e = 0; e < d; e++) {
                const size_t r = ((size_t)bh * T + t) * d + e;
                const double got = out[(size_t)(bh / H) * T * C + (size_t)t * C + (bh % H) * d + e];
                check(&wo, (long)r, got, O[r], 2 * U * Obound[r] + 1e-5 * fmax(omax, 1.0));
            }
            check(&wl, (long)bh * T + t, lse_k[(size_t)bh * T + t], lse[(size_t)bh * T + t], 1e-4 + 1e-6 * T);
        }
    harness_case(!wo.bad && !wl.bad, name,
                 "O worst %.3g of allowance at %ld (%.6g vs %.6g); lse worst %.3g at %ld (%.6g vs %.6g)", wo.frac,
                 wo.where, wo.got, wo.want, wl.frac, wl.where, wl.got, wl.want);
    if (path == 0 || path == 2) {   // q, k, v read in place from the interleaved (B,T,3C) buffer: the same O, bitwise
        std::vector<float> o2(out.size(), NAN);
        float *o2_d = to_dev(o2);
        FlashForward fi = f;
        fi.q = qkv_id;
        fi.k = qkv_id + C;
        fi.v = qkv_id + 2 * C;
        fi.in_strides = in_st;
        fi.o = o2_d;
        if (run_forward(fi, path < 2 ? FLASH_PATH_SM80 : FLASH_PATH_SM90, "late")) {
            harness_case(0, name, "flash_forward refused the strided inputs");
        } else {
            to_host(o2, o2_d);
            harness_case(!memcmp(o2.data(), out.data(), out.size() * sizeof(float)), name,
                         "q, k, v read in place from (B,T,3C): O bitwise equal to the head-major inputs' O");
        }
        CK(cudaFree(o2_d));
    }
    // The same call writing O in bf16 (the model's bf16 activations): the fp32 result rounded to nearest, bit for
    // bit, every element written (the buffer starts as bf16 NaN).
    {
        std::vector<bf16> o16((size_t)B * T * C, __float2bfloat16(NAN));
        bf16 *o16_d = to_dev(o16);
        FlashForward f16 = f;
        f16.o = NULL;
        f16.o16 = o16_d;
        if (run_forward(f16, path < 2 ? FLASH_PATH_SM80 : FLASH_PATH_SM90, path % 2 ? "eager" : "late")) {
            harness_case(0, name, "flash_forward refused the bf16 output");
        } else {
            to_host(o16, o16_d);
            size_t bad = 0;
            for (size_t i = 0; i < o16.size(); i++)
                if (__bfloat16_as_ushort(o16[i]) != __bfloat16_as_ushort(__float2bfloat16(out[i]))) bad++;
            harness_case(!bad, name, "O in bf16 = the fp32 O rounded to nearest: %zu of %zu differ", bad, o16.size());
        }
        CK(cudaFree(o16_d));
    }
    }

    // ---- backward, both dQ modes: dq, dk, dv interleaved in a (B,T,3C) buffer, from the reference's lse and D ----
    std::vector<float> lse_f((size_t)BH * T), D_f((size_t)BH * T);
    for (size_t i = 0; i < lse_f.size(); i++) {
        lse_f[i] = (float)lse[i];
        D_f[i] = (float)D[i];
    }
    double gmax[3] = {0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        gmax[0] = fmax(gmax[0], fabs(dQ[i]));
        gmax[1] = fmax(gmax[1], fabs(dK[i]));
        gmax[2] = fmax(gmax[2], fabs(dV[i]));
    }
    float *lse_fd = to_dev(lse_f), *D_fd = to_dev(D_f);
    for (int run = 0; run < (both_timings ? 4 : 2); run++) {
        const int det = run % 2 == 0;
        const char *timing = run < 2 ? "late" : "eager";
        std::vector<float> dqkv((size_t)B * T * 3 * C, NAN);
        float *dqkv_d = to_dev(dqkv);
        FlashBackward bp;
        memset(&bp, 0, sizeof bp);
        bp.q = qd_;
        bp.k = kd_;
        bp.v = vd_;
        bp.dout = dod_;
        bp.lse = lse_fd;
        bp.delta = D_fd;
        bp.dq = dqkv_d;
        bp.dk = dqkv_d + C;
        bp.dv = dqkv_d + 2 * C;
        bp.dq_strides = bp.dk_strides = bp.dv_strides = {(long long)T * 3 * C, d, 3LL * C};
        bp.B = B;
        bp.H = H;
        bp.T = T;
        bp.d = d;
        bp.causal = causal;
        bp.deterministic = det;
        snprintf(name, sizeof name, "backward B=%d H=%d d=%d T=%d %s, dQ %s%s", B, H, d, T, causal ? "causal" : "full",
                 det ? "deterministic pass" : "atomic", run < 2 ? "" : " (copies eager)");
        if (run_backward(bp, timing)) {
            harness_case(0, name, "flash_backward refused the call");
            continue;
        }
        to_host(dqkv, dqkv_d);
        if (run < 2) {   // q, k, v and dO read in place from the model's layouts: the same dq, dk, dv, bitwise
            std::vector<float> d2(dqkv.size(), NAN);
            float *d2_d = to_dev(d2);
            FlashBackward bi = bp;
            bi.q = qkv_id;
            bi.k = qkv_id + C;
            bi.v = qkv_id + 2 * C;
            bi.dout = do_id;
            bi.in_strides = in_st;
            bi.do_strides = do_st;
            bi.dq = d2_d;
            bi.dk = d2_d + C;
            bi.dv = d2_d + 2 * C;
            char namei[200];
            snprintf(namei, sizeof namei, "%s: inputs in place", name);
            if (run_backward(bi, timing)) {
                harness_case(0, namei, "flash_backward refused the strided inputs");
            } else {
                to_host(d2, d2_d);
                // the atomic dQ sums in a varying order: compare it within the same allowance, dK and dV bitwise
                size_t bad = 0;
                for (size_t i = 0; i < d2.size(); i++)
                    if (det || i % (3 * C) >= (size_t)C ? memcmp(&d2[i], &dqkv[i], sizeof(float)) != 0
                                                        : !(fabs(d2[i] - dqkv[i]) <= 1e-5 * fmax(gmax[0], 1.0)))
                        bad++;
                harness_case(!bad, namei, "dq, dk, dv from (B,T,3C) qkv and (B,T,C) dO equal the head-major run's "
                             "(bitwise%s): %zu of %zu differ", det ? "" : "; the atomic dQ within 1e-5", bad, d2.size());
            }
            CK(cudaFree(d2_d));
        }
        if (det && run < 2) {   // dK and dV in bf16 into an interleaved bf16 buffer: the fp32 ones rounded, bitwise
            std::vector<bf16> d16((size_t)B * T * 3 * C, __float2bfloat16(NAN));
            bf16 *d16_d = to_dev(d16);
            FlashBackward b16 = bp;
            b16.dk = b16.dv = NULL;
            b16.dk16 = d16_d + C;
            b16.dv16 = d16_d + 2 * C;
            char name16[200];
            snprintf(name16, sizeof name16, "%s: dK, dV in bf16", name);
            if (run_backward(b16, timing)) {
                harness_case(0, name16, "flash_backward refused the bf16 outputs");
            } else {
                to_host(d16, d16_d);
                size_t bad = 0, n16 = 0;
                for (size_t i = 0; i < d16.size(); i++) {
                    if (i % (3 * C) < (size_t)C) continue;   // the dq part: not written in bf16
                    n16++;
                    if (__bfloat16_as_ushort(d16[i]) != __bfloat16_as_ushort(__float2bfloat16(dqkv[i]))) bad++;
                }
                harness_case(!bad, name16, "the fp32 dK, dV rounded to nearest: %zu of %zu differ", bad, n16);
            }
            CK(cudaFree(d16_d));
        }
        CK(cudaFree(dqkv_d));
        Worst w[3] = {{0, -1, 0, 0, 0}, {0, -1, 0, 0, 0}, {0, -1, 0, 0, 0}};
        const std::vector<double> *ref[3] = {&dQ, &dK, &dV}, *bnd[3] = {&bQ, &bK, &bV};
        for (int part = 0; part < 3; part++)
            for (int bh = 0; bh < BH; bh++)
                for (int t = 0; t < T; t++)
                    for (int e = 0; e < d; e++) {
                        const size_t r = ((size_t)bh * T + t) * d + e;
                        const double got =
                            dqkv[(size_t)(bh / H) * T * 3 * C + (size_t)t * 3 * C + part * C + (bh % H) * d + e];
                        check(&w[part], (long)r, got, (*ref[part])[r], 2 * U * (*bnd[part])[r] + 1e-5 * fmax(gmax[part], 1.0));
                    }
        harness_case(!w[0].bad && !w[1].bad && !w[2].bad, name,
                     "worst of allowance: dq %.3g (%.5g vs %.5g), dk %.3g (%.5g vs %.5g), dv %.3g (%.5g vs %.5g)",
                     w[0].frac, w[0].got, w[0].want, w[1].frac, w[1].got, w[1].want, w[2].frac, w[2].got, w[2].want);
    }
    CK(cudaFree(qd_));
    CK(cudaFree(kd_));
    CK(cudaFree(vd_));
    CK(cudaFree(dod_));
    CK(cudaFree(out_d));
    CK(cudaFree(lse_d));
    CK(cudaFree(lse_fd));
    CK(cudaFree(D_fd));
    CK(cudaFree(qkv_id));
    CK(cudaFree(do_id));
}

int main(void) {
    const int big[] = {1, 17, 64, 127, 130, 200}, small[] = {17, 130};
    const int dims[] = {64, 128, 32, 80, 96};
    for (int di = 0; di < 5; di++) {
        const int d = dims[di];
        const int *Ts = d == 64 || d == 128 ? big : small;
        const int nT = d == 64 || d == 128 ? 6 : 2;
        for (int ti = 0; ti < nT; ti++)
            for (int causal = 1; causal >= 0; causal--) one_case(2, 2, d, Ts[ti], causal, Ts[ti] == 130);
    }
    // One head at T = 700 (not a multiple of any tile): enough key tiles that the sm90 forward's K/V ring wraps
    // (6 tiles of 128 keys over 3 stages at d = 64, 2 stages at d = 128) and the sm80 kernels stream 11-22 tiles.
    for (int di = 0; di < 2; di++)
        for (int causal = 1; causal >= 0; causal--) one_case(1, 1, dims[di], 700, causal, 1);
    return harness_finish();
}
