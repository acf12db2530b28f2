/*
 * test_flash_emu.cc: the flash-attention kernels (kernels/cuda/flash_sm80.cu: forward, dK/dV, dQ; flash_sm90.cu: the
 * Hopper forward), compiled as host C++ and run on an emulated thread block (tests/emu/flash_emu.h and
 * flash_emu_sm90.h), against a float64 reference, on a machine without a GPU. This checks what a GPU run would check
 * of the kernels' own logic: tile loops and causal bounds, masks of the tails (T not a multiple of any tile), the
 * fragment layouts of ldmatrix/mma.sync and of wgmma, shared-memory descriptors and the 128-byte swizzle that TMA
 * writes, the mbarrier pipeline between the producer and the consumer warpgroups, the online softmax, the strides of
 * the outputs (the model's (B,T,C) and interleaved (B,T,3C) buffers), the order of cp.async waits, both dQ modes. It
 * does not check timing, occupancy, bank conflicts, races that depend on timing (the emulated threads take turns),
 * or anything the hardware does differently from the PTX ISA's description: that is tests/gpu/test_flash.cu's job,
 * on a device.
 *
 * Cases: B = 2, H = 2 (so batch and head strides are exercised), T in {1, 17, 64, 127, 130, 200} for head sizes 64 and
 * 128 (both paths), T in {17, 130} for 32, 80, 96 (sm80); and B = H = 1 at T = 700 for 64 and 128, long enough for
 * the sm90 K/V ring to wrap; causal and not. Inputs are fresh random bf16 values;
 * outputs are poisoned with NaN and shared memory with 0xff (bf16 NaN) first, so an element never written fails.
 * Tolerance by rule, per element: the kernels round P (forward, dV) and dS (dK, dQ) to bf16 before the second
 * product, so an element's error is bounded by 2^-8 times the sum of the magnitudes of its terms; the test allows
 * twice that, plus 1e-5 of the output's largest magnitude (at least 1e-5: T = 1 has dQ = dK = 0 exactly) for fp32
 * accumulation, and reports the worst element as a fraction of its allowance. lse: 1e-4 + 1e-6 T absolute. Any
 * index or layout error is far outside these (a swapped fragment register, a missing wait, an off-by-one mask, LBO
 * and SBO exchanged: each fails dozens of cases).
 */
#include <setjmp.h>
#include <ucontext.h>

#include <functional>
#include <vector>

#define FLASH_SM80_EMULATE 1
#include "../kernels/cuda/flash_sm80.cu"
#define FLASH_SM90_EMULATE 1
#include "../kernels/cuda/flash_sm90.cu"

#include "harness.h"

// ---- the scheduler behind flash_emu.h ----

#define EMU_MAX_THREADS 384   // the sm90 forward's producer + 2 consumer warpgroups
#define EMU_STACK (64 * 1024)

alignas(128) unsigned char flash_smem[128 * 1024];   // the block's dynamic shared memory (blocks run one at a time)
alignas(1024) unsigned char flash_sm90_smem[EMU_SM90_SMEM_BYTES];   // the same for the sm90 kernel
EmuDim3 emu_block_idx, emu_grid_dim, emu_block_dim;

struct EmuWarp {   // one warp, or one warpgroup of 4 warps
    int count, gen;
    EmuOp op;
    EmuLane *lanes[128];
};

static struct {
    int n, cur, live;
    EmuThread th[EMU_MAX_THREADS];
    // A thread is entered the first time through its ucontext (makecontext gives it its own stack) and switched to
    // and from afterwards with _setjmp/_longjmp, which, unlike swapcontext, make no signal-mask system call: the
    // switches are most of the emulation's time.
    ucontext_t ctx[EMU_MAX_THREADS], main_ctx;
    jmp_buf jb[EMU_MAX_THREADS], main_jb;
    int done[EMU_MAX_THREADS], started[EMU_MAX_THREADS];
    char *stacks;
    int bar_count, bar_gen;
    EmuWarp warps[EMU_MAX_THREADS / 32], groups[EMU_MAX_THREADS / 128];
    long progress;
    std::function<void()> body;
} emu;

EmuThread *emu_self(void) { return &emu.th[emu.cur]; }

static void emu_yield(void) {
    if (!_setjmp(emu.jb[emu.cur])) _longjmp(emu.main_jb, 1);
}
void emu_wait_yield(void) { emu_yield(); }   // an mbarrier wait that has to wait

void emu_syncthreads(void) {
    const int gen = emu.bar_gen;
    emu.bar_count++;
    emu.progress++;
    while (emu.bar_gen == gen) {
        if (emu.bar_count == emu.live) {   // every live thread has arrived (threads that returned do not count)
            emu.bar_count = 0;
            emu.bar_gen++;
            break;
        }
        emu_yield();
    }
}

static float bf(uint32_t half) {   // bf16 bits -> float
    uint32_t u = half << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void emu_compute(EmuWarp *w) {
    EmuLane **L = w->lanes;
    switch (w->op) {
    case EMU_LDSM:
    case EMU_LDSM_T:
        for (int l = 0; l < 32; l++) {
            const int g = l / 4, t = l % 4;
            for (int j = 0; j < 4; j++) {
                uint16_t lo, hi;
                if (w->op == EMU_LDSM) {   // row g of matrix j, columns 2t, 2t+1
                    const uint16_t *row = (const uint16_t *)L[8 * j + g]->addr;
                    lo = row[2 * t];
                    hi = row[2 * t + 1];
                } else {                   // transposed: rows 2t, 2t+1 of matrix j, column g
                    lo = ((const uint16_t *)L[8 * j + 2 * t]->addr)[g];
                    hi = ((const uint16_t *)L[8 * j + 2 * t + 1]->addr)[g];
                }
                L[l]->r[j] = (uint32_t)lo | (uint32_t)hi << 16;
            }
        }
        break;
    case EMU_MMA: {
        double A[16][16], Bm[16][8], Cm[16][8];
        for (int l = 0; l < 32; l++) {
            const int g = l / 4, t = l % 4;
            const uint32_t *a = L[l]->a, *b = L[l]->b;
            for (int h = 0; h < 2; h++) {   // low half: the lower column / k
                A[g][2 * t + h] = bf(a[0] >> (16 * h) & 0xffff);
                A[g + 8][2 * t + h] = bf(a[1] >> (16 * h) & 0xffff);
                A[g][2 * t + 8 + h] = bf(a[2] >> (16 * h) & 0xffff);
                A[g + 8][2 * t + 8 + h] = bf(a[3] >> (16 * h) & 0xffff);
                Bm[2 * t + h][g] = bf(b[0] >> (16 * h) & 0xffff);
                Bm[2 * t + 8 + h][g] = bf(b[1] >> (16 * h) & 0xffff);
            }
            Cm[g][2 * t] = L[l]->c[0];
            Cm[g][2 * t + 1] = L[l]->c[1];
            Cm[g + 8][2 * t] = L[l]->c[2];
            Cm[g + 8][2 * t + 1] = L[l]->c[3];
        }
        for (int l = 0; l < 32; l++) {
            const int g = l / 4, t = l % 4;
            const int rows[4] = {g, g, g + 8, g + 8}, cols[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
            for (int e = 0; e < 4; e++) {
                double s = Cm[rows[e]][cols[e]];
                for (int k = 0; k < 16; k++) s += A[rows[e]][k] * Bm[k][cols[e]];
                L[l]->d[e] = (float)s;
            }
        }
        break;
    }
    case EMU_SHFL:
        for (int l = 0; l < 32; l++) L[l]->d[0] = L[l ^ L[l]->m]->v;
        break;
    case EMU_SYNCWARP:
        break;
    case EMU_WGMMA:
        emu_wgmma(L);
        break;
    }
}

void emu_collective(EmuOp op, EmuLane *lane, int width) {
    EmuWarp *w = width == 32 ? &emu.warps[emu.cur / 32] : &emu.groups[emu.cur / 128];
    if (w->count == 0) w->op = op;
    else if (w->op != op) {
        fprintf(stderr, "emu: threads of %s %d met at different instructions (%d and %d)\n",
                width == 32 ? "warp" : "warpgroup", emu.cur / width, w->op, op);
        abort();
    }
    w->lanes[emu.cur % width] = lane;
    const int gen = w->gen;
    emu.progress++;
    if (++w->count == width) {
        emu_compute(w);
        w->count = 0;
        w->gen++;
        return;
    }
    while (w->gen == gen) emu_yield();
}

static void emu_entry(void) {
    emu.body();
    emu.done[emu.cur] = 1;
    emu.live--;
    emu.progress++;
    _longjmp(emu.main_jb, 1);   // never returns through uc_link: the scheduler resumes from its _setjmp
}

// Run thread i until it yields or finishes (its own frame holds the jump target, so the caller's locals are safe).
static void __attribute__((noinline)) emu_resume(int i) {
    emu.cur = i;
    if (_setjmp(emu.main_jb)) return;   // back from thread i
    if (!emu.started[i]) {
        emu.started[i] = 1;
        swapcontext(&emu.main_ctx, &emu.ctx[i]);
    } else {
        _longjmp(emu.jb[i], 1);
    }
}

// Run body() as every thread of every block of grid (gx, gy) x block of `threads`; shared memory poisoned with 0xff
// bytes (bf16 NaN) before each block. Returns 0, or -1 on a deadlock (message printed).
static int emu_launch(unsigned gx, unsigned gy, int threads, const std::function<void()> &body) {
    if (!emu.stacks) emu.stacks = (char *)malloc((size_t)EMU_MAX_THREADS * EMU_STACK);
    emu.body = body;
    emu.n = threads;
    emu_grid_dim = {gx, gy, 1};
    emu_block_dim = {(unsigned)threads, 1, 1};
    for (unsigned by = 0; by < gy; by++)
        for (unsigned bx = 0; bx < gx; bx++) {
            emu_block_idx = {bx, by, 0};
            memset(flash_smem, 0xff, sizeof flash_smem);
            memset(emu.warps, 0, sizeof emu.warps);
            memset(emu.groups, 0, sizeof emu.groups);
            memset(flash_sm90_smem, 0xff, sizeof flash_sm90_smem);
            emu_sm90_reset();
            emu.bar_count = emu.bar_gen = 0;
            emu.live = threads;
            for (int i = 0; i < threads; i++) {
                free(emu.th[i].copies);
                memset(&emu.th[i], 0, sizeof emu.th[i]);
                emu.th[i].tid = {(unsigned)i, 0, 0};
                emu.done[i] = emu.started[i] = 0;
                getcontext(&emu.ctx[i]);
                emu.ctx[i].uc_stack.ss_sp = emu.stacks + (size_t)i * EMU_STACK;
                emu.ctx[i].uc_stack.ss_size = EMU_STACK;
                emu.ctx[i].uc_link = &emu.main_ctx;
                makecontext(&emu.ctx[i], emu_entry, 0);
            }
            while (emu.live > 0) {
                const long before = emu.progress;
                for (int i = 0; i < threads; i++) {
                    if (emu.done[i]) continue;
                    emu_resume(i);
                }
                // TMA copies land as late as they can: only when every live thread is waiting (one barrier's
                // copies at a time), so a read that does not wait for its barrier finds the poison.
                if (emu.progress == before && emu_tma_land()) continue;
                if (emu.progress == before) {
                    fprintf(stderr, "emu: deadlock in block (%u, %u): %d threads wait at a barrier no one else reaches\n",
                            bx, by, emu.live);
                    return -1;
                }
            }
        }
    return 0;
}

// ---- the kernels' launches, as flash_sm80.cu's host code makes them ----

template <int D>
static int run_forward(const FlashForward &p) {
    typedef FlashSm80Fwd<D> C;
    const float scale_log2 = (float)(1.4426950408889634 / sqrt((double)D));
    return emu_launch((unsigned)(p.B * p.H), (unsigned)((p.T + C::BLOCK_M - 1) / C::BLOCK_M), C::THREADS,
                      [&] { flash_forward_sm80_kernel<D>(p, scale_log2); });
}

template <int D>
static int run_backward(const FlashBackward &p) {
    typedef FlashSm80Dkdv<D> A;
    typedef FlashSm80Dq<D> Q;
    const float scale = (float)(1.0 / sqrt((double)D)), scale_log2 = (float)(1.4426950408889634 / sqrt((double)D));
    const int BH = p.B * p.H;
    if (!p.deterministic) {
        const long long n = (long long)BH * p.T * D, blocks = (n + 255) / 256;
        if (emu_launch((unsigned)(blocks < 65536 ? blocks : 65536), 1, 256,
                       [&] { flash_zero_dq_sm80_kernel(p.dq, p.dq_strides, p.H, p.T, D, n); }))
            return -1;
    }
    if (emu_launch((unsigned)BH, (unsigned)((p.T + A::BLOCK_N - 1) / A::BLOCK_N), A::THREADS,
                   [&] { flash_backward_dkdv_sm80_kernel<D>(p, scale, scale_log2, !p.deterministic); }))
        return -1;
    if (p.deterministic &&
        emu_launch((unsigned)BH, (unsigned)((p.T + Q::BLOCK_M - 1) / Q::BLOCK_M), Q::THREADS,
                   [&] { flash_backward_dq_sm80_kernel<D>(p, scale, scale_log2); }))
        return -1;
    return 0;
}

// The sm90 forward, with tensor maps as flash_sm90.cu's host code describes them: (d, T, BH) bf16, rows d*2 bytes,
// heads T*d*2, boxes of 64 columns x rows x 1 head, 128-byte swizzle.
static void emu_map(CUtensorMap *map, const bf16 *base, int BH, int T, int d, int rows) {
    memset(map, 0, sizeof *map);
    EmuTensorMap *m = (EmuTensorMap *)map;
    m->base = base;
    m->dims[0] = (uint64_t)d;
    m->dims[1] = (uint64_t)T;
    m->dims[2] = (uint64_t)BH;
    m->strides[0] = (uint64_t)d * 2;
    m->strides[1] = (uint64_t)T * d * 2;
    m->box[0] = FLASH_SM90_PANEL;
    m->box[1] = (uint32_t)rows;
    m->box[2] = 1;
    m->swizzle128 = 1;
}

template <int D, bool CAUSAL>
static int run_forward_sm90(const FlashForward &p) {
    const int BH = p.B * p.H;
    CUtensorMap tm_q, tm_k, tm_v;
    emu_map(&tm_q, p.q, BH, p.T, D, FLASH_SM90_BLOCK_M);
    emu_map(&tm_k, p.k, BH, p.T, D, FLASH_SM90_BLOCK_N);
    emu_map(&tm_v, p.v, BH, p.T, D, FLASH_SM90_BLOCK_N);
    FlashSm90Params prm;
    prm.o = p.o;
    prm.sb = p.o_strides.sb;
    prm.sh = p.o_strides.sh;
    prm.st = p.o_strides.st;
    prm.lse = p.lse;
    prm.H = p.H;
    prm.T = p.T;
    prm.scale_log2 = (float)(1.4426950408889634 / sqrt((double)D));
    prm.o_vec2 = (uintptr_t)p.o % 8 == 0 && prm.sb % 2 == 0 && prm.sh % 2 == 0 && prm.st % 2 == 0;
    if (FlashSm90Layout<D>::ALLOC > EMU_SM90_SMEM_BYTES) return -1;
    return emu_launch((unsigned)((p.T + FLASH_SM90_BLOCK_M - 1) / FLASH_SM90_BLOCK_M), (unsigned)BH,
                      FLASH_SM90_THREADS, [&] { flash_forward_sm90_kernel<D, CAUSAL>(tm_q, tm_k, tm_v, prm); });
}
static int run_sm90(const FlashForward &p) {
    if (p.d == 64) return p.causal ? run_forward_sm90<64, true>(p) : run_forward_sm90<64, false>(p);
    return p.causal ? run_forward_sm90<128, true>(p) : run_forward_sm90<128, false>(p);
}

template <int D>
static int dispatch(const FlashForward *f, const FlashBackward *b) { return f ? run_forward<D>(*f) : run_backward<D>(*b); }
static int run(int d, const FlashForward *f, const FlashBackward *b) {
    switch (d) {
    case 32: return dispatch<32>(f, b);
    case 64: return dispatch<64>(f, b);
    case 80: return dispatch<80>(f, b);
    case 96: return dispatch<96>(f, b);
    default: return dispatch<128>(f, b);
    }
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

static void one_case(int B, int H, int d, int T, int causal) {
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

    // ---- forward: O into a (B,T,C) buffer (strided), lse ----
    std::vector<float> out((size_t)B * T * C, NAN), lse_k((size_t)BH * T, NAN);
    FlashForward f;
    memset(&f, 0, sizeof f);
    f.q = q.data();
    f.k = k.data();
    f.v = v.data();
    f.o = out.data();
    f.o_strides = {(long long)T * C, d, C};
    f.lse = lse_k.data();
    f.B = B;
    f.H = H;
    f.T = T;
    f.d = d;
    f.causal = causal;
    double omax = 0;
    for (size_t i = 0; i < n; i++) omax = fmax(omax, fabs(O[i]));
    // paths: sm80, then sm90 with TMA copies landing late, then eager (flash_emu_sm90.h)
    for (int path = 0; path < 3; path++) {
    if (path > 0 && d != 64 && d != 128) break;   // the sm90 forward takes these two head sizes
    std::fill(out.begin(), out.end(), NAN);
    std::fill(lse_k.begin(), lse_k.end(), NAN);
    emu_tma_eager = path == 2;
    snprintf(name, sizeof name, "forward %s B=%d H=%d d=%d T=%d %s", path == 0 ? "sm80" : path == 1 ? "sm90 (TMA late)" : "sm90 (TMA eager)", B, H, d, T, causal ? "causal" : "full");
    if (path == 0 ? run(d, &f, NULL) : run_sm90(f)) {
        harness_case(0, name, "emulation failed");
        continue;
    }
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
    for (int det = 1; det >= 0; det--) {
        std::vector<float> dqkv((size_t)B * T * 3 * C, NAN);
        FlashBackward bp;
        memset(&bp, 0, sizeof bp);
        bp.q = q.data();
        bp.k = k.data();
        bp.v = v.data();
        bp.dout = dob.data();
        bp.lse = lse_f.data();
        bp.delta = D_f.data();
        bp.dq = dqkv.data();
        bp.dk = dqkv.data() + C;
        bp.dv = dqkv.data() + 2 * C;
        bp.dq_strides = bp.dk_strides = bp.dv_strides = {(long long)T * 3 * C, d, 3LL * C};
        bp.B = B;
        bp.H = H;
        bp.T = T;
        bp.d = d;
        bp.causal = causal;
        bp.deterministic = det;
        snprintf(name, sizeof name, "backward B=%d H=%d d=%d T=%d %s, dQ %s", B, H, d, T, causal ? "causal" : "full",
                 det ? "deterministic pass" : "atomic");
        if (run(d, NULL, &bp)) {
            harness_case(0, name, "emulation failed");
            continue;
        }
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
}

int main(void) {
    const int big[] = {1, 17, 64, 127, 130, 200}, small[] = {17, 130};
    const int dims[] = {64, 128, 32, 80, 96};
    for (int di = 0; di < 5; di++) {
        const int d = dims[di];
        const int *Ts = d == 64 || d == 128 ? big : small;
        const int nT = d == 64 || d == 128 ? 6 : 2;
        for (int ti = 0; ti < nT; ti++)
            for (int causal = 1; causal >= 0; causal--) one_case(2, 2, d, Ts[ti], causal);
    }
    // One head at T = 700 (not a multiple of any tile): enough key tiles that the sm90 forward's K/V ring wraps
    // (6 tiles of 128 keys over 3 stages at d = 64, 2 stages at d = 128) and the sm80 kernels stream 11-22 tiles.
    for (int di = 0; di < 2; di++)
        for (int causal = 1; causal >= 0; causal--) one_case(1, 1, dims[di], 700, causal);
    return harness_finish();
}
