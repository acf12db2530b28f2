/*
 * flash_emu.h: just enough of a CUDA thread block, written from the CUDA programming guide and the PTX ISA, to run
 * the sm80 flash-attention kernels (kernels/cuda/flash_sm80.cu) on the CPU, so that a machine without a GPU still
 * executes their index arithmetic, fragment layouts, masks and pipeline order. tests/test_flash_emu.cc compiles
 * flash_sm80.cu as host C++ with FLASH_SM80_EMULATE defined; the kernel file then includes this header in place of
 * its PTX wrappers and leaves out its host launch code.
 *
 * Model. Every thread of a block is a coroutine (ucontext) with its own stack; the scheduler resumes them in turn and
 * a thread runs until it reaches a point where it must meet others: __syncthreads (all live threads of the block),
 * or a warp collective (ldmatrix, mma.sync, __shfl_xor_sync: all 32 lanes of the warp). The last thread to arrive
 * computes the collective for every lane from the inputs each lane left, then all continue. A collective some lanes
 * never reach is a deadlock and is reported, not hung on. Blocks run one after another.
 *
 * Instruction semantics, independent of the kernel's own comments (PTX ISA 8.x):
 *   ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: lanes 8j..8j+7 give the addresses of rows 0..7 of 8x8 matrix j
 *     (16 bytes each); lane l receives in register j the elements (row l/4, columns 2(l%4), 2(l%4)+1) of matrix j,
 *     or with .trans those of its transpose (row 2(l%4) and 2(l%4)+1 of column l/4).
 *   mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, g = l/4, t = l%4:
 *     A (16x16) registers a0..a3 = (g, 2t..2t+1), (g+8, 2t..2t+1), (g, 2t+8..2t+9), (g+8, 2t+8..2t+9), low half first;
 *     B (16x8, K x N) b0 = (k 2t..2t+1, n g), b1 = (k 2t+8..2t+9, n g); C/D (16x8 f32) c0, c1 = (g, 2t), (g, 2t+1),
 *     c2, c3 = (g+8, 2t), (g+8, 2t+1). Products of bf16 values are exact in fp32; the sum here is in double and
 *     rounded once (the hardware's order of fp32 additions is unspecified; tolerances in the test allow for it).
 *   cp.async (cg 16 bytes, ca 4 bytes, src-size 0 zero-fills), commit_group, wait_group N: copies are queued per
 *     thread and performed when a wait_group leaves their group outside the N most recent ones, so a kernel that
 *     reads shared memory before waiting for the group that fills it reads stale data and fails the test.
 *   __shfl_xor_sync(full mask, v, m): lane l gets lane (l ^ m)'s v.
 */
#ifndef GPTRAIN_FLASH_EMU_H
#define GPTRAIN_FLASH_EMU_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>

#include <cuda_bf16.h>

// cuda_bf16.h's host_defines.h gives these attribute spellings for a host compiler; a host function is what we want.
#undef __global__
#undef __device__
#undef __forceinline__
#undef __shared__
#undef __align__
#undef __launch_bounds__
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__
#define __align__(n) __attribute__((aligned(n)))

using std::max;
using std::min;

struct EmuDim3 {
    unsigned x, y, z;
};

// ---- the emulated block (tests/test_flash_emu.cc owns the scheduler) ----
struct EmuCopy {
    void *dst;
    const void *src;
    int bytes;    // 16 or 4
    int valid;    // 0: zero-fill
    int group;    // commit group it belongs to (-1 until committed)
};

enum EmuOp { EMU_LDSM = 1, EMU_LDSM_T, EMU_MMA, EMU_SHFL, EMU_SYNCWARP, EMU_WGMMA };

struct EmuLane {   // what one lane brings to a warp collective and where its result goes
    const void *addr;
    uint32_t a[4], b[2];
    float c[4], v;
    int m;
    uint32_t r[4];
    float d[4];
    // wgmma (flash_emu_sm90.h): descriptors, A from registers or not, the accumulator (n/2 floats) updated in place
    uint64_t desc_a, desc_b;
    int a_regs, trans_b, n, accumulate;
    float *acc;
};

struct EmuThread {
    EmuDim3 tid;
    // cp.async queue
    EmuCopy *copies;
    int ncopies, cap, groups_committed;
};

EmuThread *emu_self(void);                 // the thread now running
void emu_syncthreads(void);                // block barrier
// Warp (width 32) or warpgroup (width 128) barrier + op: the last of the group to arrive runs emu_compute.
void emu_collective(EmuOp op, EmuLane *lane, int width);
static inline void emu_warp_collective(EmuOp op, EmuLane *lane) { emu_collective(op, lane, 32); }
extern EmuDim3 emu_block_idx, emu_grid_dim, emu_block_dim;

#define threadIdx (emu_self()->tid)
#define blockIdx emu_block_idx
#define gridDim emu_grid_dim
#define blockDim emu_block_dim
#define __syncthreads() emu_syncthreads()

static inline float __shfl_xor_sync(unsigned mask, float v, int m) {
    (void)mask;   // every call in these kernels names the full warp
    EmuLane l;
    memset(&l, 0, sizeof l);
    l.v = v;
    l.m = m;
    emu_warp_collective(EMU_SHFL, &l);
    return l.d[0];
}

static inline float atomicAdd(float *p, float v) {   // cooperative threads: no two run at once
    const float old = *p;
    *p = old + v;
    return old;
}

// ---- the PTX wrappers of flash_sm80.cu, emulated ----
typedef __nv_bfloat16 bf16;

static inline void emu_queue(void *dst, const void *src, int bytes, bool valid) {
    EmuThread *t = emu_self();
    if (t->ncopies == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 64;
        t->copies = (EmuCopy *)realloc(t->copies, (size_t)t->cap * sizeof *t->copies);
        if (!t->copies) abort();
    }
    EmuCopy c = {dst, src, bytes, valid ? 1 : 0, -1};
    t->copies[t->ncopies++] = c;
}

static inline void flash_cp_async16(void *dst, const void *src, bool valid) {
    if ((uintptr_t)dst % 16 || (valid && (uintptr_t)src % 16)) {
        fprintf(stderr, "emu: cp.async 16 bytes with a misaligned address (dst %p src %p)\n", dst, src);
        abort();
    }
    emu_queue(dst, src, 16, valid);
}
static inline void flash_cp_async4(void *dst, const void *src, bool valid) { emu_queue(dst, src, 4, valid); }

static inline void flash_cp_async_commit() {
    EmuThread *t = emu_self();
    for (int i = 0; i < t->ncopies; i++)
        if (t->copies[i].group < 0) t->copies[i].group = t->groups_committed;
    t->groups_committed++;
}

template <int N>
static inline void flash_cp_async_wait() {
    EmuThread *t = emu_self();
    const int upto = t->groups_committed - N;   // groups [0, upto) must have landed
    int keep = 0;
    for (int i = 0; i < t->ncopies; i++) {
        EmuCopy *c = &t->copies[i];
        if (c->group >= 0 && c->group < upto) {
            if (c->valid) memcpy(c->dst, c->src, (size_t)c->bytes);
            else memset(c->dst, 0, (size_t)c->bytes);
        } else {
            t->copies[keep++] = *c;
        }
    }
    t->ncopies = keep;
}

static inline void flash_ldsm_x4(uint32_t r[4], const bf16 *p) {
    EmuLane l;
    memset(&l, 0, sizeof l);
    l.addr = p;
    emu_warp_collective(EMU_LDSM, &l);
    memcpy(r, l.r, sizeof l.r);
}
static inline void flash_ldsm_x4_trans(uint32_t r[4], const bf16 *p) {
    EmuLane l;
    memset(&l, 0, sizeof l);
    l.addr = p;
    emu_warp_collective(EMU_LDSM_T, &l);
    memcpy(r, l.r, sizeof l.r);
}
static inline void flash_mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    EmuLane l;
    memset(&l, 0, sizeof l);
    memcpy(l.a, a, sizeof l.a);
    l.b[0] = b0;
    l.b[1] = b1;
    memcpy(l.c, c, sizeof l.c);
    emu_warp_collective(EMU_MMA, &l);
    memcpy(c, l.d, sizeof l.d);
}

#endif
