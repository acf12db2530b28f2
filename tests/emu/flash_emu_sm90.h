/*
 * flash_emu_sm90.h: the Hopper parts of the emulated thread block (flash_emu.h), enough to run the sm90 forward
 * (kernels/cuda/flash_sm90.cu) on the CPU: shared-memory addresses, mbarriers with phases and transaction counts,
 * TMA tile loads with the 128-byte swizzle, and wgmma from shared-memory descriptors or registers. Written from the
 * PTX ISA (sections on mbarrier, cp.async.bulk.tensor, the tensor-map swizzle modes, wgmma's matrix descriptors and
 * register fragments) and CUDA's tensor-map documentation, not from the kernel's own comments.
 *
 *   shared addresses: byte offsets into the block's flash_sm90_smem buffer (the kernel aligns its base to 1024).
 *   mbarrier: init sets the expected arrival count; arrive counts one; expect_tx adds to the transaction count and
 *     TMA's complete_tx subtracts; a phase completes when both reach zero, and the counts re-arm for the next phase.
 *     try_wait.parity(P) is true once the phase of parity P has completed, i.e. while the current phase's parity is
 *     not P (so parity 1 is "complete" on a fresh barrier).
 *   TMA: a 3D tiled load of box (64 elements, rows, 1) at (c0, c1, c2); elements outside the tensor are zeros and
 *     their bytes still count. Two timings, each case run under both: late (one barrier's worth at a time and only
 *     when every thread of the block is waiting, so a consumer that reads a stage before its barrier completes reads
 *     the 0xff poison) and eager (the moment the copy is issued, so a producer that refills a stage some consumer
 *     has not finished reading changes the data under it). 128-byte swizzle: the 16-byte
 *     chunk at shared address a is stored at a ^ (((a >> 7) & 7) << 4) (address bits 4-6 XOR bits 7-9).
 *   wgmma.mma_async m64nNk16 bf16 -> f32, per warpgroup of 128 threads (warp w, lane = 4g + q):
 *     D fragment: d[4j + e] is row 16w + g + 8 (e >> 1), column 8j + 2q + (e & 1);
 *     A from registers: a0 (16w + g, 2q..2q+1), a1 (16w + g + 8, 2q..), a2 (16w + g, 2q+8..), a3 (16w + g + 8, 2q+8..);
 *     descriptor: start address bits 0-13, leading byte offset 16-29, stride byte offset 32-45 (each >> 4), swizzle
 *     mode bits 62-63 (1 = 128B). With the 128-byte swizzle, K-major (element (row, k), k contiguous): address =
 *     start + (row / 8) SBO + (row % 8) 128 + 2k. MN-major (element (k, n), n contiguous): address = start +
 *     (n / 64) LBO + (k / 8) SBO + (k % 8) 128 + 2 (n % 64). The swizzle above then gives the physical address.
 *     A is K-major (64 x 16) from its descriptor, B K-major or, with imm-trans-b = 1, MN-major (16 x N).
 *     wgmma is asynchronous on the GPU; here it completes when the warpgroup's last thread issues it (the kernel
 *     reads its accumulators only after wgmma.wait_group, so the order it sees is the same).
 */
#ifndef GPTRAIN_FLASH_EMU_SM90_H
#define GPTRAIN_FLASH_EMU_SM90_H

#include "flash_emu.h"

#include <cuda.h>

#undef __grid_constant__
#define __grid_constant__

extern unsigned char flash_sm90_smem[];   // the block's dynamic shared memory (tests/test_flash_emu.cc)
#define EMU_SM90_SMEM_BYTES (256 * 1024)

static inline uint32_t emu_cvta_shared(const void *p) {
    const long off = (const unsigned char *)p - flash_sm90_smem;
    if (off < 0 || off >= EMU_SM90_SMEM_BYTES) {
        fprintf(stderr, "emu: __cvta_generic_to_shared of a pointer outside shared memory\n");
        abort();
    }
    return (uint32_t)off;
}
#define __cvta_generic_to_shared(p) emu_cvta_shared(p)

static inline unsigned char *emu_smem(uint32_t addr, int bytes) {
    if ((uint64_t)addr + (uint64_t)bytes > EMU_SM90_SMEM_BYTES) {
        fprintf(stderr, "emu: shared address %u + %d past the %d-byte window\n", addr, bytes, EMU_SM90_SMEM_BYTES);
        abort();
    }
    return flash_sm90_smem + addr;
}
static inline uint32_t emu_swizzle128(uint32_t a) { return a ^ (((a >> 7) & 7u) << 4); }

static inline void __syncwarp() {
    EmuLane l;
    memset(&l, 0, sizeof l);
    emu_warp_collective(EMU_SYNCWARP, &l);
}

// ---- mbarriers ----
struct EmuBarrier {
    uint32_t addr;
    int expected, pending, phase;
    long long tx;
};
static EmuBarrier emu_bars[64];
static int emu_nbars;

static EmuBarrier *emu_bar(uint32_t addr) {
    for (int i = 0; i < emu_nbars; i++)
        if (emu_bars[i].addr == addr) return &emu_bars[i];
    fprintf(stderr, "emu: mbarrier at shared address %u used before mbarrier.init\n", addr);
    abort();
}
static void emu_bar_maybe_complete(EmuBarrier *b) {
    if (b->pending == 0 && b->tx == 0) {
        b->phase++;
        b->pending = b->expected;
    }
}
static inline void mbar_init(uint32_t bar, uint32_t count) {
    if (emu_nbars == 64) abort();
    if (bar % 8) {
        fprintf(stderr, "emu: mbarrier at %u is not 8-byte aligned\n", bar);
        abort();
    }
    EmuBarrier b = {bar, (int)count, (int)count, 0, 0};
    emu_bars[emu_nbars++] = b;
}
static inline void mbar_arrive(uint32_t bar) {
    EmuBarrier *b = emu_bar(bar);
    if (b->pending <= 0) {
        fprintf(stderr, "emu: more arrivals on the mbarrier at %u than its count\n", bar);
        abort();
    }
    b->pending--;
    emu_bar_maybe_complete(b);
}
static inline void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
    emu_bar(bar)->tx += bytes;
    mbar_arrive(bar);
}
static inline void mbar_wait(uint32_t bar, uint32_t parity) {
    extern void emu_wait_yield(void);
    while ((uint32_t)(emu_bar(bar)->phase & 1) == (parity & 1)) emu_wait_yield();
}

// ---- TMA: our own tensor-map contents (the test fills CUtensorMap's opaque bytes with this) ----
struct EmuTensorMap {
    const void *base;
    uint64_t dims[3];      // elements, innermost first
    uint64_t strides[2];   // bytes of dimensions 1 and 2
    uint32_t box[3];
    int swizzle128;
};
struct EmuTmaCopy {
    uint32_t dst, bar;
    const EmuTensorMap *map;
    int c0, c1, c2;
};
static EmuTmaCopy emu_tma[256];
static int emu_ntma;
static int emu_tma_eager;   // 1: a copy lands the moment it is issued (catches a stage refilled under a reader)
static int emu_tma_land(void);

static inline void tma_load_3d(uint32_t dst, const CUtensorMap *map, int c0, int c1, int c2, uint32_t bar) {
    static_assert(sizeof(EmuTensorMap) <= sizeof(CUtensorMap), "EmuTensorMap fits a CUtensorMap");
    if (emu_ntma == 256) abort();
    if (dst % 128) {
        fprintf(stderr, "emu: TMA destination %u not 128-byte aligned (the 128B swizzle needs 1024)\n", dst);
        abort();
    }
    EmuTmaCopy c = {dst, bar, (const EmuTensorMap *)map, c0, c1, c2};
    emu_tma[emu_ntma++] = c;
    if (emu_tma_eager) emu_tma_land();
}

// Land the oldest barrier's queued copies (bf16 elements, box[0] = 64 = one 128-byte row), so data guarded by a later
// barrier (V after K) is still poison while the earlier one completes. Returns how many copies landed.
static int emu_tma_land(void) {
    if (!emu_ntma) return 0;
    const uint32_t bar = emu_tma[0].bar;
    int n = 0, keep = 0;
    for (int i = 0; i < emu_ntma; i++) {
        const EmuTmaCopy *c = &emu_tma[i];
        if (c->bar != bar) {
            emu_tma[keep++] = *c;
            continue;
        }
        n++;
        const EmuTensorMap *m = c->map;
        const uint32_t row_bytes = m->box[0] * 2;
        for (uint32_t r = 0; r < m->box[1]; r++)
            for (uint32_t ch = 0; ch < row_bytes / 16; ch++) {
                const uint32_t lin = c->dst + r * row_bytes + ch * 16;
                unsigned char *dst = emu_smem(m->swizzle128 ? emu_swizzle128(lin) : lin, 16);
                const long long col = c->c0 + (long long)ch * 8, t = c->c1 + (long long)r, z = c->c2;
                if (col >= 0 && col + 8 <= (long long)m->dims[0] && t >= 0 && t < (long long)m->dims[1] && z >= 0 &&
                    z < (long long)m->dims[2])
                    memcpy(dst, (const unsigned char *)m->base + z * m->strides[1] + t * m->strides[0] + col * 2, 16);
                else
                    memset(dst, 0, 16);
            }
        EmuBarrier *b = emu_bar(c->bar);
        b->tx -= (long long)row_bytes * m->box[1] * m->box[2];
        emu_bar_maybe_complete(b);
    }
    emu_ntma = keep;
    return n;
}

static void emu_sm90_reset(void) {
    emu_nbars = 0;
    emu_ntma = 0;
}

// ---- wgmma ----
static inline float emu_bf16_at(uint32_t addr) {
    uint16_t h;
    memcpy(&h, emu_smem(addr, 2), 2);
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline float emu_bf16_half(uint32_t reg, int hi) {
    uint32_t u = (hi ? reg >> 16 : reg & 0xffff) << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint32_t emu_desc_field(uint64_t d, int shift) { return (uint32_t)((d >> shift) & 0x3fff) << 4; }

// Element address of a descriptor's matrix: K-major (i = row, k) or MN-major (k, i = n).
static inline uint32_t emu_desc_addr(uint64_t desc, int mn_major, int i, int k) {
    if ((desc >> 62) != 1) {
        fprintf(stderr, "emu: wgmma descriptor with swizzle mode %d (only 128B is emulated)\n", (int)(desc >> 62));
        abort();
    }
    const uint32_t start = emu_desc_field(desc, 0), lbo = emu_desc_field(desc, 16), sbo = emu_desc_field(desc, 32);
    const uint32_t lin = mn_major ? start + (uint32_t)(i / 64) * lbo + (uint32_t)(k / 8) * sbo + (uint32_t)(k % 8) * 128 +
                                        (uint32_t)(i % 64) * 2
                                  : start + (uint32_t)(i / 8) * sbo + (uint32_t)(i % 8) * 128 + (uint32_t)k * 2;
    return emu_swizzle128(lin);
}

static void emu_wgmma(EmuLane **L) {
    const EmuLane *l0 = L[0];
    const int N = l0->n;
    for (int t = 1; t < 128; t++)
        if (L[t]->n != N || L[t]->desc_b != l0->desc_b || L[t]->a_regs != l0->a_regs ||
            L[t]->accumulate != l0->accumulate || (!l0->a_regs && L[t]->desc_a != l0->desc_a)) {
            fprintf(stderr, "emu: the threads of a warpgroup issued different wgmma operands\n");
            abort();
        }
    static float A[64][16], Bm[16][256], D[64][256];
    for (int t = 0; t < 128; t++) {
        const int w = t / 32, g = (t % 32) / 4, q = t % 4;
        if (l0->a_regs) {
            const uint32_t *a = L[t]->a;
            for (int h = 0; h < 2; h++) {
                A[16 * w + g][2 * q + h] = emu_bf16_half(a[0], h);
                A[16 * w + g + 8][2 * q + h] = emu_bf16_half(a[1], h);
                A[16 * w + g][2 * q + 8 + h] = emu_bf16_half(a[2], h);
                A[16 * w + g + 8][2 * q + 8 + h] = emu_bf16_half(a[3], h);
            }
        }
        for (int j = 0; j < N / 8; j++)
            for (int e = 0; e < 4; e++)
                D[16 * w + g + 8 * (e >> 1)][8 * j + 2 * q + (e & 1)] = l0->accumulate ? L[t]->acc[4 * j + e] : 0.0f;
    }
    if (!l0->a_regs)
        for (int m = 0; m < 64; m++)
            for (int k = 0; k < 16; k++) A[m][k] = emu_bf16_at(emu_desc_addr(l0->desc_a, 0, m, k));
    for (int k = 0; k < 16; k++)
        for (int n = 0; n < N; n++)
            Bm[k][n] = emu_bf16_at(l0->trans_b ? emu_desc_addr(l0->desc_b, 1, n, k) : emu_desc_addr(l0->desc_b, 0, n, k));
    for (int m = 0; m < 64; m++)
        for (int n = 0; n < N; n++) {
            double s = D[m][n];
            for (int k = 0; k < 16; k++) s += (double)A[m][k] * Bm[k][n];
            D[m][n] = (float)s;
        }
    for (int t = 0; t < 128; t++) {
        const int w = t / 32, g = (t % 32) / 4, q = t % 4;
        for (int j = 0; j < N / 8; j++)
            for (int e = 0; e < 4; e++) L[t]->acc[4 * j + e] = D[16 * w + g + 8 * (e >> 1)][8 * j + 2 * q + (e & 1)];
    }
}

static inline void emu_issue_wgmma(float *acc, int n, const uint32_t *a, uint64_t desc_a, uint64_t desc_b, int trans_b,
                                   int accumulate) {
    EmuLane l;
    memset(&l, 0, sizeof l);
    l.acc = acc;
    l.n = n;
    l.a_regs = a != NULL;
    if (a) memcpy(l.a, a, sizeof l.a);
    l.desc_a = desc_a;
    l.desc_b = desc_b;
    l.trans_b = trans_b;
    l.accumulate = accumulate;
    emu_collective(EMU_WGMMA, &l, 128);
}

// The PTX wrappers of flash_sm90.cu, emulated (same names and signatures).
static inline void wgmma_m64n128k16_ss(float (&d)[64], uint64_t desc_a, uint64_t desc_b, int accumulate) {
    emu_issue_wgmma(d, 128, NULL, desc_a, desc_b, 0, accumulate);
}
static inline void wgmma_m64n128k16_rs(float (&d)[64], const uint32_t (&a)[4], uint64_t desc_b, int accumulate) {
    emu_issue_wgmma(d, 128, a, 0, desc_b, 1, accumulate);
}
static inline void wgmma_m64n64k16_rs(float (&d)[32], const uint32_t (&a)[4], uint64_t desc_b, int accumulate) {
    emu_issue_wgmma(d, 64, a, 0, desc_b, 1, accumulate);
}
static inline void wgmma_fence() {}
static inline void wgmma_commit() {}
static inline void wgmma_wait_all() {}
template <int N>
static inline void reg_fence(float (&)[N]) {}
template <int N>
static inline void reg_fence(uint32_t (&)[N][4]) {}
static inline void fence_barrier_init() {}
static inline void prefetch_tensormap(const CUtensorMap *) {}
template <int REGS>
static inline void setmaxnreg_dec() {}
template <int REGS>
static inline void setmaxnreg_inc() {}

#endif
