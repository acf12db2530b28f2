/*
 * emu_ptx.cc: the PTX instructions of the flash-attention kernels, emulated for the emulated device from the PTX
 * ISA (8.x) and CUDA's tensor-map documentation, independently of the kernels' own comments:
 *
 *   cp.async.{cg,ca}.shared.global (16 or 4 bytes; src-size 0 zero-fills), commit_group, wait_group N: the hardware
 *     may land a copy at any moment between its issue and the wait that covers it, so the emulator offers both ends
 *     (GPTRAIN_EMU_ASYNC): late (default: queued and performed when a wait_group leaves its group outside the N
 *     most recent, so a kernel that reads shared memory before waiting for the group that fills it reads the 0xFF
 *     poison) and eager (at issue, so a copy into a buffer that another warp still reads, with no barrier between,
 *     is a shared-memory race). The copy is a read of global memory and a write of shared memory by the issuing
 *     thread, for the checker.
 *   ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: lanes 8j..8j+7 give the 16-byte row addresses of 8x8 matrix j;
 *     lane l receives in register j the elements (row l/4, columns 2(l%4), 2(l%4)+1) of matrix j, or with .trans
 *     those of its transpose (rows 2(l%4) and 2(l%4)+1 of column l/4). Each row is a shared read by the lane that
 *     gave its address.
 *   mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, g = l/4, t = l%4: A registers a0..a3 = (g, 2t..2t+1),
 *     (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..), low half first; B b0 = (k 2t..2t+1, n g), b1 = (k 2t+8..2t+9, n g);
 *     C/D c0, c1 = (g, 2t), (g, 2t+1), c2, c3 = (g+8, 2t), (g+8, 2t+1). Products of bf16 are exact in fp32; the sum
 *     is taken in double and rounded once (the hardware's order of fp32 additions is unspecified).
 *   mbarrier: init sets the expected arrival count; arrive counts one; expect_tx adds to the transaction count and
 *     a TMA copy's complete_tx subtracts; a phase completes when both reach zero and the counts re-arm.
 *     try_wait.parity(P) is true once the phase of parity P has completed (so parity 1 is "complete" when fresh).
 *   cp.async.bulk.tensor (TMA), a 3D tiled load of a box at (c0, c1, c2): elements outside the tensor are zeros and
 *     their bytes still count; with the 128-byte swizzle the 16-byte chunk at shared address a lands at
 *     a ^ (((a >> 7) & 7) << 4). The same two timings (GPTRAIN_EMU_ASYNC): late (default: one barrier's copies at a time, only
 *     when no thread of the block can move, so a consumer that reads a stage before its barrier completes reads
 *     poison) and eager (at issue, so a producer that refills a stage a consumer still reads changes data under it).
 *   wgmma.mma_async m64nNk16 bf16 -> f32 over a warpgroup (warp w, lane = 4g + q): D fragment d[4j + e] is row
 *     16w + g + 8(e >> 1), column 8j + 2q + (e & 1); A from registers as mma's A per warp; descriptors: start
 *     address bits 0-13, LBO 16-29, SBO 32-45 (each >> 4), swizzle mode bits 62-63 (1 = 128B only). K-major:
 *     address = start + (row / 8) SBO + (row % 8) 128 + 2k; MN-major: start + (n / 64) LBO + (k / 8) SBO +
 *     (k % 8) 128 + 2 (n % 64), then the swizzle.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "cuda.h"
#include "cudaTypedefs.h"
#include "emu_internal.h"

namespace emu {

static float bf16f(uint32_t half) {
    const uint32_t u = (half & 0xffffu) << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// ---- cp.async ----

struct AsyncCopy {
    void *dst;
    const void *src;
    int bytes, valid, group;
    const char *file;
    int line;
};
struct CopyQueue {
    std::vector<AsyncCopy> q;
    int committed = 0;
};
static std::vector<CopyQueue *> queues_in_use;

static CopyQueue *my_queue() {
    const int t = thread_linear();
    if (t < 0) fatal("cp.async outside a kernel");
    void **slot = thread_slot(t, 0);
    if (!*slot) {
        *slot = new CopyQueue();
        queues_in_use.push_back((CopyQueue *)*slot);
    }
    return (CopyQueue *)*slot;
}

static int async_eager;   // GPTRAIN_EMU_ASYNC=eager: cp.async and TMA copies land when issued

static void cp_land(const AsyncCopy &x) {
    shared_access_as(thread_linear(), x.dst, (size_t)x.bytes, true);
    if (x.valid) {
        global_read_as_thread(x.src, (size_t)x.bytes);
        memcpy(x.dst, x.src, (size_t)x.bytes);
    } else {
        memset(x.dst, 0, (size_t)x.bytes);
    }
}

void cp_async(void *dst, const void *src, int bytes, bool valid, const char *file, int line) {
    if ((uintptr_t)dst % (uintptr_t)bytes || (valid && (uintptr_t)src % (uintptr_t)bytes))
        fatal("cp.async of %d bytes at %s:%d with a misaligned address (dst %p, src %p)", bytes, file, line, dst, src);
    (void)cvta_shared(dst);   // the destination must be shared memory
    const AsyncCopy x = {dst, src, bytes, valid ? 1 : 0, -1, file, line};
    if (async_eager) cp_land(x);
    else my_queue()->q.push_back(x);
}

void cp_async_commit() {
    CopyQueue *c = my_queue();
    for (auto &x : c->q)
        if (x.group < 0) x.group = c->committed;
    c->committed++;
}

void cp_async_wait(int n) {
    CopyQueue *c = my_queue();
    const int upto = c->committed - n;   // groups [0, upto) must have landed
    size_t keep = 0;
    for (size_t i = 0; i < c->q.size(); i++) {
        AsyncCopy &x = c->q[i];
        if (x.group >= 0 && x.group < upto) {
            cp_land(x);
        } else {
            c->q[keep++] = x;
        }
    }
    c->q.resize(keep);
}

// ---- ldmatrix, mma.sync ----

struct LdsmLane {
    const void *addr;
    uint32_t r[4];
    int trans;
};

static void ldsm_compute(Coll **L, int n, void *) {
    (void)n;
    const int warp_base = thread_linear() / 32 * 32;
    for (int j = 0; j < 4; j++)
        for (int g = 0; g < 8; g++) {
            const LdsmLane *row = (const LdsmLane *)L[8 * j + g]->ext;
            if ((uintptr_t)row->addr % 16)
                fatal("ldmatrix: lane %d gives row address %p, which is not 16-byte aligned", 8 * j + g, row->addr);
            (void)cvta_shared(row->addr);
            shared_access_as(warp_base + 8 * j + g, row->addr, 16, false);
        }
    for (int l = 0; l < 32; l++) {
        LdsmLane *me = (LdsmLane *)L[l]->ext;
        const int g = l / 4, t = l % 4;
        for (int j = 0; j < 4; j++) {
            uint16_t lo, hi;
            if (!me->trans) {
                const uint16_t *row = (const uint16_t *)((const LdsmLane *)L[8 * j + g]->ext)->addr;
                lo = row[2 * t];
                hi = row[2 * t + 1];
            } else {
                lo = ((const uint16_t *)((const LdsmLane *)L[8 * j + 2 * t]->ext)->addr)[g];
                hi = ((const uint16_t *)((const LdsmLane *)L[8 * j + 2 * t + 1]->ext)->addr)[g];
            }
            me->r[j] = (uint32_t)lo | (uint32_t)hi << 16;
        }
    }
}

void ldmatrix_x4(uint32_t r[4], const void *p, bool trans, const char *file, int line) {
    LdsmLane me = {p, {0, 0, 0, 0}, trans ? 1 : 0};
    Coll c;
    memset(&c, 0, sizeof c);
    c.ext = &me;
    warp_external(file, line, trans ? 2 : 1, &c, ldsm_compute);
    memcpy(r, me.r, sizeof me.r);
}

struct MmaLane {
    uint32_t a[4], b[2];
    float c[4], d[4];
};

static void mma_compute(Coll **L, int n, void *) {
    (void)n;
    double A[16][16], Bm[16][8], Cm[16][8];
    for (int l = 0; l < 32; l++) {
        const MmaLane *m = (const MmaLane *)L[l]->ext;
        const int g = l / 4, t = l % 4;
        for (int h = 0; h < 2; h++) {   // low half: the lower column / k
            A[g][2 * t + h] = bf16f(m->a[0] >> (16 * h));
            A[g + 8][2 * t + h] = bf16f(m->a[1] >> (16 * h));
            A[g][2 * t + 8 + h] = bf16f(m->a[2] >> (16 * h));
            A[g + 8][2 * t + 8 + h] = bf16f(m->a[3] >> (16 * h));
            Bm[2 * t + h][g] = bf16f(m->b[0] >> (16 * h));
            Bm[2 * t + 8 + h][g] = bf16f(m->b[1] >> (16 * h));
        }
        Cm[g][2 * t] = m->c[0];
        Cm[g][2 * t + 1] = m->c[1];
        Cm[g + 8][2 * t] = m->c[2];
        Cm[g + 8][2 * t + 1] = m->c[3];
    }
    for (int l = 0; l < 32; l++) {
        MmaLane *m = (MmaLane *)L[l]->ext;
        const int g = l / 4, t = l % 4;
        const int rows[4] = {g, g, g + 8, g + 8}, cols[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
        for (int e = 0; e < 4; e++) {
            double s = Cm[rows[e]][cols[e]];
            for (int k = 0; k < 16; k++) s += A[rows[e]][k] * Bm[k][cols[e]];
            m->d[e] = (float)s;
        }
    }
}

void mma_m16n8k16_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1, const char *file, int line) {
    MmaLane me;
    memcpy(me.a, a, sizeof me.a);
    me.b[0] = b0;
    me.b[1] = b1;
    memcpy(me.c, c, sizeof me.c);
    Coll col;
    memset(&col, 0, sizeof col);
    col.ext = &me;
    warp_external(file, line, 3, &col, mma_compute);
    memcpy(c, me.d, sizeof me.d);
}

// ---- mbarriers ----

struct Barrier {
    uint32_t addr;
    int expected, pending, phase;
    long long tx;
};
static std::vector<Barrier> bars;

static Barrier *bar_at(uint32_t addr) {
    for (auto &b : bars)
        if (b.addr == addr) return &b;
    fatal("mbarrier at shared address 0x%x used before mbarrier.init", addr);
}
static void bar_maybe_complete(Barrier *b) {
    if (b->pending == 0 && b->tx == 0) {
        b->phase++;
        b->pending = b->expected;
        progress();
    }
}

void mbar_init(uint32_t bar, uint32_t count) {
    if (bar % 8) fatal("mbarrier at shared address 0x%x is not 8-byte aligned", bar);
    (void)shared_at(bar, 8);
    for (auto &b : bars)
        if (b.addr == bar) fatal("mbarrier at shared address 0x%x initialised twice", bar);
    bars.push_back(Barrier{bar, (int)count, (int)count, 0, 0});
}

void mbar_arrive(uint32_t bar, uint32_t tx_bytes) {
    Barrier *b = bar_at(bar);
    if (b->pending <= 0) fatal("more arrivals on the mbarrier at shared address 0x%x than its count %d", bar, b->expected);
    b->tx += tx_bytes;
    b->pending--;
    progress();
    bar_maybe_complete(b);
}

void mbar_wait(uint32_t bar, uint32_t parity) {
    while ((uint32_t)(bar_at(bar)->phase & 1) == (parity & 1)) spin_yield();
}

// ---- TMA ----

struct TensorMap {   // what emu_tensor_map_encode_tiled keeps inside a CUtensorMap's opaque bytes
    uint32_t magic;
    uint32_t rank, elem, swizzle128;
    const void *base;
    uint64_t dims[5];
    uint64_t strides[4];   // bytes of dimensions 1..rank-1
    uint32_t box[5];
};
static const uint32_t MAP_MAGIC = 0x7e5a0a93u;
static_assert(sizeof(TensorMap) <= sizeof(CUtensorMap), "the emulator's tensor map fits a CUtensorMap");

struct TmaCopy {
    uint32_t dst, bar;
    TensorMap map;
    int c[3];
};
static std::vector<TmaCopy> tma;

// A box lands in shared memory in element order, dimension 0 fastest: row (y, z) of the box at (z * box[1] + y).
static void tma_land_one(const TmaCopy &c) {
    const TensorMap &m = c.map;
    const uint32_t row_bytes = m.box[0] * m.elem;
    for (uint32_t r = 0; r < m.box[1] * m.box[2]; r++)
        for (uint32_t ch = 0; ch < row_bytes / 16; ch++) {
            const uint32_t lin = c.dst + r * row_bytes + ch * 16;
            unsigned char *dst = shared_at(m.swizzle128 ? lin ^ (((lin >> 7) & 7u) << 4) : lin, 16);
            const long long col = c.c[0] + (long long)ch * (16 / m.elem), t = c.c[1] + (long long)(r % m.box[1]);
            const long long z = c.c[2] + (long long)(r / m.box[1]);
            if (col >= 0 && col + 16 / m.elem <= (long long)m.dims[0] && t >= 0 && t < (long long)m.dims[1] && z >= 0 &&
                z < (long long)m.dims[2]) {
                const unsigned char *src =
                    (const unsigned char *)m.base + z * m.strides[1] + t * m.strides[0] + col * m.elem;
                if (thread_linear() >= 0) global_read_as_thread(src, 16);
                else op_read(src, 16, "a TMA tensor copy");
                memcpy(dst, src, 16);
            } else {
                memset(dst, 0, 16);
            }
            shared_async_write(dst, 16);
        }
    Barrier *b = bar_at(c.bar);
    b->tx -= (long long)row_bytes * m.box[1] * m.box[2];
    bar_maybe_complete(b);
}

// Land the oldest barrier's queued copies, so data guarded by a later barrier (V after K) is still poison while the
// earlier one completes. Returns whether anything landed.
static int tma_land(void) {
    if (tma.empty()) return 0;
    const uint32_t bar = tma[0].bar;
    std::vector<TmaCopy> rest;
    for (auto &c : tma)
        if (c.bar != bar) rest.push_back(c);
    std::vector<TmaCopy> now;
    for (auto &c : tma)
        if (c.bar == bar) now.push_back(c);
    tma.swap(rest);
    for (auto &c : now) tma_land_one(c);
    return 1;
}

void tma_load_3d(uint32_t dst, const CUtensorMap *map, int c0, int c1, int c2, uint32_t bar) {
    const TensorMap *m = (const TensorMap *)map;
    if (m->magic != MAP_MAGIC) fatal("TMA copy with a tensor map that cuTensorMapEncodeTiled did not write");
    if (m->rank != 3) fatal("TMA 3D copy with a rank-%u tensor map", m->rank);
    if (dst % 128) fatal("TMA destination 0x%x is not 128-byte aligned", dst);
    if (m->swizzle128 && dst % 1024)
        fatal("TMA destination 0x%x is not 1024-byte aligned, as the 128-byte swizzle pattern needs", dst);
    (void)bar_at(bar);
    TmaCopy c;
    c.dst = dst;
    c.bar = bar;
    c.map = *m;
    c.c[0] = c0;
    c.c[1] = c1;
    c.c[2] = c2;
    if (async_eager) tma_land_one(c);
    else tma.push_back(c);
}

// ---- wgmma ----

struct WgLane {
    float *acc;
    int n, a_regs, trans_b, accumulate;
    uint32_t a[4];
    uint64_t desc_a, desc_b;
};

static float bf16_at(uint32_t addr) {
    uint16_t h;
    memcpy(&h, shared_at(addr, 2), 2);
    return bf16f(h);
}
static uint32_t desc_field(uint64_t d, int shift) { return (uint32_t)((d >> shift) & 0x3fff) << 4; }
static uint32_t desc_addr(uint64_t desc, int mn_major, int i, int k) {
    if ((desc >> 62) != 1) fatal("wgmma descriptor with swizzle mode %d (only the 128-byte swizzle is emulated)", (int)(desc >> 62));
    const uint32_t start = desc_field(desc, 0), lbo = desc_field(desc, 16), sbo = desc_field(desc, 32);
    const uint32_t lin = mn_major ? start + (uint32_t)(i / 64) * lbo + (uint32_t)(k / 8) * sbo + (uint32_t)(k % 8) * 128 +
                                        (uint32_t)(i % 64) * 2
                                  : start + (uint32_t)(i / 8) * sbo + (uint32_t)(i % 8) * 128 + (uint32_t)k * 2;
    return lin ^ (((lin >> 7) & 7u) << 4);
}

static void wgmma_compute(Coll **L, int nl, void *) {
    (void)nl;
    const WgLane *l0 = (const WgLane *)L[0]->ext;
    const int N = l0->n;
    for (int t = 1; t < 128; t++) {
        const WgLane *o = (const WgLane *)L[t]->ext;
        if (o->n != N || o->desc_b != l0->desc_b || o->a_regs != l0->a_regs || o->accumulate != l0->accumulate ||
            o->trans_b != l0->trans_b || (!l0->a_regs && o->desc_a != l0->desc_a))
            fatal("the threads of a warpgroup issued wgmma with different operands (thread 0 and thread %d)", t);
    }
    static float A[64][16], Bm[16][256], D[64][256];
    for (int t = 0; t < 128; t++) {
        const WgLane *m = (const WgLane *)L[t]->ext;
        const int w = t / 32, g = (t % 32) / 4, q = t % 4;
        if (l0->a_regs)
            for (int h = 0; h < 2; h++) {
                A[16 * w + g][2 * q + h] = bf16f(m->a[0] >> (16 * h));
                A[16 * w + g + 8][2 * q + h] = bf16f(m->a[1] >> (16 * h));
                A[16 * w + g][2 * q + 8 + h] = bf16f(m->a[2] >> (16 * h));
                A[16 * w + g + 8][2 * q + 8 + h] = bf16f(m->a[3] >> (16 * h));
            }
        for (int j = 0; j < N / 8; j++)
            for (int e = 0; e < 4; e++)
                D[16 * w + g + 8 * (e >> 1)][8 * j + 2 * q + (e & 1)] = l0->accumulate ? m->acc[4 * j + e] : 0.0f;
    }
    if (!l0->a_regs)
        for (int m = 0; m < 64; m++)
            for (int k = 0; k < 16; k++) A[m][k] = bf16_at(desc_addr(l0->desc_a, 0, m, k));
    for (int k = 0; k < 16; k++)
        for (int n = 0; n < N; n++)
            Bm[k][n] = bf16_at(l0->trans_b ? desc_addr(l0->desc_b, 1, n, k) : desc_addr(l0->desc_b, 0, n, k));
    for (int m = 0; m < 64; m++)
        for (int n = 0; n < N; n++) {
            double s = D[m][n];
            for (int k = 0; k < 16; k++) s += (double)A[m][k] * Bm[k][n];
            D[m][n] = (float)s;
        }
    for (int t = 0; t < 128; t++) {
        const WgLane *m = (const WgLane *)L[t]->ext;
        const int w = t / 32, g = (t % 32) / 4, q = t % 4;
        for (int j = 0; j < N / 8; j++)
            for (int e = 0; e < 4; e++) m->acc[4 * j + e] = D[16 * w + g + 8 * (e >> 1)][8 * j + 2 * q + (e & 1)];
    }
}

void wgmma(float *acc, int n, const uint32_t *a, uint64_t desc_a, uint64_t desc_b, int trans_b, int accumulate,
           const char *file, int line) {
    WgLane me;
    memset(&me, 0, sizeof me);
    me.acc = acc;
    me.n = n;
    me.a_regs = a != NULL;
    if (a) memcpy(me.a, a, sizeof me.a);
    me.desc_a = desc_a;
    me.desc_b = desc_b;
    me.trans_b = trans_b;
    me.accumulate = accumulate;
    Coll c;
    memset(&c, 0, sizeof c);
    c.ext = &me;
    group_collective(file, line, 128, 4, &c, wgmma_compute);
}

// ---- per-block and per-launch state ----

static void block_start(void) {
    for (CopyQueue *q : queues_in_use) delete q;
    queues_in_use.clear();
    bars.clear();
    tma.clear();
}
static void launch_start(void) {
    const char *t = getenv("GPTRAIN_EMU_ASYNC");
    async_eager = t && !strcmp(t, "eager");
    if (t && strcmp(t, "eager") && strcmp(t, "late")) fatal("GPTRAIN_EMU_ASYNC=%s: expected late or eager", t);
}
static struct Register {
    Register() {
        set_stuck_hook(tma_land);
        add_block_start_hook(block_start);
        add_launch_start_hook(launch_start);
    }
} register_hooks;

}  // namespace emu

// cuTensorMapEncodeTiled, as cudaGetDriverEntryPointByVersion hands it out on the emulated device.
extern "C" CUresult emu_tensor_map_encode_tiled(CUtensorMap *map, CUtensorMapDataType type, cuuint32_t rank, void *base,
                                                const cuuint64_t *dims, const cuuint64_t *strides, const cuuint32_t *box,
                                                const cuuint32_t *elem_strides, CUtensorMapInterleave interleave,
                                                CUtensorMapSwizzle swizzle, CUtensorMapL2promotion l2,
                                                CUtensorMapFloatOOBfill oob) {
    using namespace emu;
    (void)l2;
    (void)oob;
    const uint32_t elem = type == CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 || type == CU_TENSOR_MAP_DATA_TYPE_FLOAT16 ? 2
                        : type == CU_TENSOR_MAP_DATA_TYPE_FLOAT32 ? 4 : 0;
    if (!elem || rank < 1 || rank > 5 || interleave != CU_TENSOR_MAP_INTERLEAVE_NONE ||
        (swizzle != CU_TENSOR_MAP_SWIZZLE_NONE && swizzle != CU_TENSOR_MAP_SWIZZLE_128B))
        fatal("cuTensorMapEncodeTiled: data type %d, rank %u, interleave %d, swizzle %d: not emulated", (int)type,
              rank, (int)interleave, (int)swizzle);
    if ((uintptr_t)base % 16) return CUDA_ERROR_INVALID_VALUE;
    if (device_of(base) < 0) fatal("cuTensorMapEncodeTiled: the global address %p is not device memory", base);
    TensorMap m;
    memset(&m, 0, sizeof m);
    m.magic = MAP_MAGIC;
    m.rank = rank;
    m.elem = elem;
    m.swizzle128 = swizzle == CU_TENSOR_MAP_SWIZZLE_128B;
    m.base = base;
    for (uint32_t i = 0; i < rank; i++) {
        if (!dims[i] || box[i] == 0 || box[i] > 256 || elem_strides[i] != 1) return CUDA_ERROR_INVALID_VALUE;
        m.dims[i] = dims[i];
        m.box[i] = box[i];
        if (i + 1 < rank) {
            if (strides[i] % 16) return CUDA_ERROR_INVALID_VALUE;
            m.strides[i] = strides[i];
        }
    }
    if ((box[0] * elem) % 16 || (m.swizzle128 && box[0] * elem > 128)) return CUDA_ERROR_INVALID_VALUE;
    memset(map, 0, sizeof *map);
    memcpy(map, &m, sizeof m);
    return CUDA_SUCCESS;
}
