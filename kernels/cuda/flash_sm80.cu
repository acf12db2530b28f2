/*
 * flash_sm80.cu: the Ampere flash-attention kernels (flash.h, path sm80; Hopper runs them too), after
 * FlashAttention-2 (Dao 2023: Algorithm 1 for the forward, Algorithm 2 for the backward), written from the paper and
 * the PTX ISA. Tensor cores through mma.sync.m16n8k16 (bf16 inputs, fp32 accumulation), operands loaded from shared
 * memory with ldmatrix, tiles copied global -> shared with 16-byte cp.async into two buffers so the next tile lands
 * while the current one is computed on. Shared rows are padded by 8 bf16 (16 bytes): a row stride of 2d + 16 bytes
 * puts the 8 rows one ldmatrix phase reads on 8 different 4-bank groups for every d here (32, 64, 80, 96, 128; all
 * multiples of 16, so the mma K steps and 16-byte chunks cover d exactly and no zero padding of d is needed).
 *
 * Kernels and tiles (every warp owns 16 rows of the mma's M side, so no warp ever reduces across warps):
 *   forward      one block per (head, 128 query rows), 8 warps x 16 rows; K/V tiles of BN = 64 keys (d <= 64) or
 *                32 keys (d > 64), double buffered. 128 rows halve the K/V re-reads against 64-row blocks; the
 *                smaller key tile at large d keeps shared memory at (128 + 4 BN)(d + 8) 2 bytes: d = 32 30720,
 *                64 55296, 80 45056, 96 53248, 128 69632, so two blocks fit an A100 SM and the kernel fits the
 *                99 KB opt-in of sm_86 parts. S is 16 x BN fp32 a warp (BN/2 registers a thread), O 16 x d (d/2).
 *                FLOPs per (128 x BN) tile: 4 * 128 * BN * d (S = Q K^T and O += P V).
 *   dK/dV        one block per (head, 64 keys), 4 warps x 16 keys; loops over query tiles of BM = 64 (d <= 64) or
 *                32 (d > 64) rows, Q, dO, lse and D double buffered. Each warp computes S^T = K Q^T and dP^T = V dO^T
 *                for its keys, so P^T and dS^T come out of the accumulators already in the A-operand layout of
 *                dV += P^T dO and dK += dS^T Q; dK and dV (16 x d each, d/2 + d/2 registers) stay in registers for
 *                the whole loop, which is why BM drops to 32 at d > 64 (255-register budget, no spills). Shared
 *                memory: (2*64 + 4*BM)(d + 8) 2 + 64 (BM + 8) 2 + 16 BM bytes: d = 32 40960, 64 65536, 80 50688,
 *                96 58880, 128 75264. Atomic dQ mode: dS^T also goes to shared memory and the block adds
 *                scale dS K into dq with fp32 atomics. FLOPs per (64 x BM) tile: 8 * 64 * BM * d (four products),
 *                plus 2 * 64 * BM * d for dQ in atomic mode.
 *   dQ           (deterministic mode) one block per (head, 64 query rows), 4 warps x 16 rows, K/V tiles of 64 or
 *                32 keys double buffered: recomputes S, P, dP, dS like the forward and accumulates dQ = scale dS K
 *                in registers, keys in a fixed order, written once with '='. Shared memory (2*64 + 4 BN)(d + 8) 2
 *                + 512 bytes: d = 32 31232, 64 55808, 80 45568, 96 53760, 128 70144. FLOPs per (64 x BN) tile:
 *                6 * 64 * BN * d.
 * Causal: key tiles wholly above the diagonal are never loaded (loop bounds), warps whose 16 rows see only masked
 * keys skip the tile, and the mask is applied only in tiles that cross the diagonal or the sequence end. Rows past T
 * are zero-filled in shared memory (cp.async with source size 0), masked out of every sum, and never written.
 *
 * Fragment layouts (PTX ISA, mma.m16n8k16 with .bf16 and ldmatrix), lane = 4 g + t (g = lane / 4, t = lane % 4):
 *   A (16 x 16, row major), 4 registers of 2 bf16 (lower column in the low half):
 *     a0 = (g, 2t..2t+1)  a1 = (g+8, 2t..2t+1)  a2 = (g, 2t+8..2t+9)  a3 = (g+8, 2t+8..2t+9)
 *   B (16 x 8, K x N), 2 registers:  b0 = (k 2t..2t+1, n g)  b1 = (k 2t+8..2t+9, n g)
 *   C (16 x 8 fp32), 4 floats:  c0, c1 = (g, 2t), (g, 2t+1)   c2, c3 = (g+8, 2t), (g+8, 2t+1)
 *   ldmatrix .x4: lanes 8j..8j+7 give the row addresses of 8 x 8 matrix j; register j of a lane receives row g,
 *     columns 2t, 2t+1 of matrix j, or with .trans row-and-column swapped: rows 2t, 2t+1 of column g.
 * So an accumulator S over 16 columns (n tiles 2k and 2k+1) packs into the A fragment of the next product:
 *   a0 = S[2k](c0,c1), a1 = S[2k](c2,c3), a2 = S[2k+1](c0,c1), a3 = S[2k+1](c2,c3)   (FA2's P reuse in registers).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cuda_common.h"
#include "flash.h"

typedef __nv_bfloat16 bf16;

#define FLASH_SM80_LOG2E 1.4426950408889634f
#define FLASH_SM80_LN2 0.6931471805599453f
#define FLASH_SM80_PAD 8   // bf16 padding per shared row (16 bytes)

// ---- tile shapes (see the file comment) ----

template <int D>
struct FlashSm80Fwd {
    static constexpr int BLOCK_M = 128, BLOCK_N = D <= 64 ? 64 : 32, WARPS = 8, THREADS = 32 * WARPS;
    static constexpr int LD = D + FLASH_SM80_PAD;
    // bf16 elements: Q [BLOCK_M][LD], K [2][BLOCK_N][LD], V [2][BLOCK_N][LD]
    static constexpr int Q_OFF = 0, K_OFF = BLOCK_M * LD, V_OFF = K_OFF + 2 * BLOCK_N * LD;
    static constexpr int SMEM_BYTES = (V_OFF + 2 * BLOCK_N * LD) * 2;
};

template <int D>
struct FlashSm80Dkdv {
    static constexpr int BLOCK_N = 64, BLOCK_M = D <= 64 ? 64 : 32, WARPS = 4, THREADS = 32 * WARPS;
    static constexpr int LD = D + FLASH_SM80_PAD, LDS = BLOCK_M + FLASH_SM80_PAD;
    // bf16 elements: K, V [BLOCK_N][LD]; Q, dO [2][BLOCK_M][LD]; dS^T [BLOCK_N][LDS]; then fp32 lse, D [2][BLOCK_M]
    static constexpr int K_OFF = 0, V_OFF = BLOCK_N * LD, Q_OFF = 2 * BLOCK_N * LD;
    static constexpr int DO_OFF = Q_OFF + 2 * BLOCK_M * LD, DS_OFF = DO_OFF + 2 * BLOCK_M * LD;
    static constexpr int F32_BYTE_OFF = (DS_OFF + BLOCK_N * LDS) * 2;   // a multiple of 16
    static constexpr int SMEM_BYTES = F32_BYTE_OFF + 4 * BLOCK_M * 4;
};

template <int D>
struct FlashSm80Dq {
    static constexpr int BLOCK_M = 64, BLOCK_N = D <= 64 ? 64 : 32, WARPS = 4, THREADS = 32 * WARPS;
    static constexpr int LD = D + FLASH_SM80_PAD;
    // bf16 elements: Q, dO [BLOCK_M][LD]; K, V [2][BLOCK_N][LD]; then fp32 lse, D [BLOCK_M]
    static constexpr int Q_OFF = 0, DO_OFF = BLOCK_M * LD, K_OFF = 2 * BLOCK_M * LD;
    static constexpr int V_OFF = K_OFF + 2 * BLOCK_N * LD;
    static constexpr int F32_BYTE_OFF = (V_OFF + 2 * BLOCK_N * LD) * 2;
    static constexpr int SMEM_BYTES = F32_BYTE_OFF + 2 * BLOCK_M * 4;
};

// ---- PTX wrappers ----
#ifdef GPTRAIN_EMU
// On the emulated device (make emu) the same wrappers, emulated from the PTX ISA (tests/emu/emu_flash_sm80.h).
#include "emu_flash_sm80.h"
#else

__device__ __forceinline__ uint32_t flash_smem_addr(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

// 16 bytes global -> shared, bypassing L1; valid == false reads nothing and zero-fills the 16 bytes.
__device__ __forceinline__ void flash_cp_async16(void *dst, const void *src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(flash_smem_addr(dst)),
                 "l"((unsigned long long)__cvta_generic_to_global(src)), "r"(valid ? 16 : 0)
                 : "memory");
}

// 4 bytes (one fp32 of lse or D, whose rows need not be 16-byte aligned); valid == false zero-fills.
__device__ __forceinline__ void flash_cp_async4(void *dst, const void *src, bool valid) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(flash_smem_addr(dst)),
                 "l"((unsigned long long)__cvta_generic_to_global(src)), "r"(valid ? 4 : 0)
                 : "memory");
}

__device__ __forceinline__ void flash_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// Wait until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void flash_cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void flash_ldsm_x4(uint32_t r[4], const bf16 *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(flash_smem_addr(p))
                 : "memory");
}

__device__ __forceinline__ void flash_ldsm_x4_trans(uint32_t r[4], const bf16 *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(flash_smem_addr(p))
                 : "memory");
}

// c (16 x 8 fp32) += a (16 x 16 bf16) * b (16 x 8 bf16), fragments as in the file comment.
__device__ __forceinline__ void flash_mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

#endif   // GPTRAIN_EMU

// Two fp32 -> one register of two bf16, lo in the low half (the lower column of an A fragment register).
__device__ __forceinline__ uint32_t flash_pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    uint32_t r;
    memcpy(&r, &v, 4);
    return r;
}

// ---- tile copies ----

// ROWS x D bf16 rows row0.. of one head's [T][D] rows, ld elements apart (src = the head's row 0), into shared dst
// (row stride D + PAD),
// rows at or past T zero-filled. 16-byte chunk c of the tile is row c / (D/8), columns 8 (c % (D/8)) ...
template <int ROWS, int D, int THREADS>
__device__ __forceinline__ void flash_load_tile(bf16 *dst, const bf16 *src, int row0, int T, long long ld,
                                                int tid) {
    constexpr int CH = D / 8, LD = D + FLASH_SM80_PAD;
#pragma unroll
    for (int c = tid; c < ROWS * CH; c += THREADS) {
        const int r = c / CH, col = (c % CH) * 8;
        const bool valid = row0 + r < T;
        const bf16 *s = valid ? src + (long long)(row0 + r) * ld + col : src;   // a valid address even when unread
        flash_cp_async16(dst + r * LD + col, s, valid);
    }
}

// n fp32 values rows row0.. of one head's [T] array (src = its row 0) into shared dst, zero past T.
template <int THREADS>
__device__ __forceinline__ void flash_load_rows(float *dst, const float *src, int row0, int T, int n, int tid) {
    for (int r = tid; r < n; r += THREADS) {
        const bool valid = row0 + r < T;
        flash_cp_async4(dst + r, valid ? src + row0 + r : src, valid);
    }
}

// ---- warp-level products (each warp owns 16 rows of the M side) ----

// acc (16 x N fp32) += A B^T: A is 16 x K bf16 at a (shared, row stride lda), B is N x K bf16 at b (row stride ldb),
// i.e. both operands stored with K contiguous (Q K^T, dO V^T, K Q^T, V dO^T).
//   A, plain ldmatrix: lane gives row (lane % 8) + 8 ((lane / 8) % 2), column 8 (lane / 16) of the k step, so
//     matrices 0..3 are (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15) = a0..a3.
//   B for two n tiles, plain ldmatrix on the N x K storage: lane gives row (lane % 8) + 8 (lane / 16), column
//     8 ((lane / 8) % 2), so matrices 0..3 are (n 0-7, k 0-7) = b0 of n tile 0, (n 0-7, k 8-15) = b1 of tile 0,
//     (n 8-15, k 0-7) = b0 of tile 1, (n 8-15, k 8-15) = b1 of tile 1 (a lane gets n = g, k = 2t, 2t+1: B's layout).
template <int K, int N>
__device__ __forceinline__ void flash_warp_mma_abt(float (*acc)[4], const bf16 *a, int lda, const bf16 *b, int ldb,
                                                   int lane) {
    const bf16 *a_lane = a + ((lane & 7) + ((lane >> 3) & 1) * 8) * lda + (lane >> 4) * 8;
    const bf16 *b_lane = b + ((lane & 7) + (lane >> 4) * 8) * ldb + ((lane >> 3) & 1) * 8;
#pragma unroll
    for (int kk = 0; kk < K / 16; ++kk) {
        uint32_t af[4];
        flash_ldsm_x4(af, a_lane + kk * 16);
#pragma unroll
        for (int np = 0; np < N / 16; ++np) {
            uint32_t bf[4];
            flash_ldsm_x4(bf, b_lane + np * 16 * ldb + kk * 16);
            flash_mma(acc[2 * np], af, bf[0], bf[1]);
            flash_mma(acc[2 * np + 1], af, bf[2], bf[3]);
        }
    }
}

// acc (16 x N fp32) += P B: P is 16 x K as A fragments in registers (pa[k step]), B is K x N bf16 at b (shared, row
// stride ldb, N contiguous: V, dO, Q, K as stored). B needs k = 2t, 2t+1 at n = g, i.e. down a stored column: .trans.
//   lane gives row (k) (lane % 8) + 8 ((lane / 8) % 2), column (n) 8 (lane / 16), so matrices 0..3 are
//   (k 0-7, n 0-7) = b0 of n tile 0, (k 8-15, n 0-7) = b1 of tile 0, (k 0-7, n 8-15) = b0 of tile 1, (k 8-15,
//   n 8-15) = b1 of tile 1.
template <int K, int N>
__device__ __forceinline__ void flash_warp_mma_pb(float (*acc)[4], const uint32_t (*pa)[4], const bf16 *b, int ldb,
                                                  int lane) {
    const bf16 *b_lane = b + ((lane & 7) + ((lane >> 3) & 1) * 8) * ldb + (lane >> 4) * 8;
#pragma unroll
    for (int kk = 0; kk < K / 16; ++kk) {
#pragma unroll
        for (int np = 0; np < N / 16; ++np) {
            uint32_t bf[4];
            flash_ldsm_x4_trans(bf, b_lane + kk * 16 * ldb + np * 16);
            flash_mma(acc[2 * np], pa[kk], bf[0], bf[1]);
            flash_mma(acc[2 * np + 1], pa[kk], bf[2], bf[3]);
        }
    }
}

// A fragments of the 16 x N accumulator s (bf16), k step k = columns 16k..16k+15 = n tiles 2k, 2k+1.
template <int N>
__device__ __forceinline__ void flash_acc_to_a(uint32_t (*pa)[4], const float (*s)[4]) {
#pragma unroll
    for (int k = 0; k < N / 16; ++k) {
        pa[k][0] = flash_pack_bf16(s[2 * k][0], s[2 * k][1]);
        pa[k][1] = flash_pack_bf16(s[2 * k][2], s[2 * k][3]);
        pa[k][2] = flash_pack_bf16(s[2 * k + 1][0], s[2 * k + 1][1]);
        pa[k][3] = flash_pack_bf16(s[2 * k + 1][2], s[2 * k + 1][3]);
    }
}

// ---- forward ----

// Grid (B*H, query tiles); blockIdx.y is reversed so the causal mask's longest tiles start first.
template <int D>
__global__ void __launch_bounds__(FlashSm80Fwd<D>::THREADS)
    flash_forward_sm80_kernel(const FlashForward p, float scale_log2) {
    typedef FlashSm80Fwd<D> C;
    constexpr int BM = C::BLOCK_M, BN = C::BLOCK_N, LD = C::LD, THREADS = C::THREADS;
    CUDA_DYNAMIC_SMEM(unsigned char, flash_smem, 16);
    bf16 *sq = reinterpret_cast<bf16 *>(flash_smem) + C::Q_OFF;
    bf16 *sk = reinterpret_cast<bf16 *>(flash_smem) + C::K_OFF;   // stage s at sk + s * BN * LD
    bf16 *sv = reinterpret_cast<bf16 *>(flash_smem) + C::V_OFF;

    const int T = p.T, bh = blockIdx.x, m0 = (gridDim.y - 1 - blockIdx.y) * BM;
    const long long head = (bh / p.H) * p.in_strides.sb + (bh % p.H) * p.in_strides.sh, ld = p.in_strides.st;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t4 = lane % 4;
    const int row0 = m0 + warp * 16;   // this warp's first query row; it holds rows row0 + g and row0 + g + 8
    const int n_end = p.causal ? min(T, m0 + BM) : T;   // keys past n_end are masked for every row of the block
    const int ntiles = (n_end + BN - 1) / BN;

    flash_load_tile<BM, D, THREADS>(sq, p.q + head, m0, T, ld, tid);
    flash_cp_async_commit();
    flash_load_tile<BN, D, THREADS>(sk, p.k + head, 0, T, ld, tid);
    flash_load_tile<BN, D, THREADS>(sv, p.v + head, 0, T, ld, tid);
    flash_cp_async_commit();

    float o[D / 8][4] = {};                         // O tile 16 x d, C layout, unnormalised
    float m_run[2] = {-INFINITY, -INFINITY};        // running max of rows g, g+8 in base-2 units (quad-uniform)
    float l_run[2] = {0.0f, 0.0f};                  // running sum of exp, this thread's columns only

    for (int j = 0; j < ntiles; ++j) {
        const int stage = j & 1;
        if (j + 1 < ntiles) {
            flash_load_tile<BN, D, THREADS>(sk + (stage ^ 1) * BN * LD, p.k + head, (j + 1) * BN, T, ld, tid);
            flash_load_tile<BN, D, THREADS>(sv + (stage ^ 1) * BN * LD, p.v + head, (j + 1) * BN, T, ld, tid);
        }
        flash_cp_async_commit();   // possibly empty, so that wait_group 1 always means "tile j has landed"
        flash_cp_async_wait<1>();
        __syncthreads();

        const int n0 = j * BN;
        if (!(p.causal && n0 > row0 + 15)) {   // else every key of the tile is above this warp's rows
            float s[BN / 8][4] = {};
            flash_warp_mma_abt<D, BN>(s, sq + warp * 16 * LD, LD, sk + stage * BN * LD, LD, lane);

            // s[nt][e] is row row0 + g + 8 (e / 2), key n0 + 8 nt + 2 t4 + (e % 2).
            const bool mask = n0 + BN > T || (p.causal && n0 + BN - 1 > row0);
            float mx[2] = {m_run[0], m_run[1]};
#pragma unroll
            for (int nt = 0; nt < BN / 8; ++nt) {
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    float x = s[nt][e] * scale_log2;
                    if (mask) {
                        const int key = n0 + nt * 8 + 2 * t4 + (e & 1), row = row0 + g + (e >> 1) * 8;
                        if (key >= T || (p.causal && key > row)) x = -INFINITY;
                    }
                    s[nt][e] = x;
                    mx[e >> 1] = fmaxf(mx[e >> 1], x);
                }
            }
            float alpha[2], base[2], rs[2] = {0.0f, 0.0f};
#pragma unroll
            for (int r = 0; r < 2; ++r) {   // the row's 4 quad lanes hold its BN columns between them
                mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
                mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
                base[r] = mx[r] == -INFINITY ? 0.0f : mx[r];   // a row with nothing admissible yet stays at 0
                alpha[r] = exp2f(m_run[r] - base[r]);
                m_run[r] = mx[r];
            }
#pragma unroll
            for (int nt = 0; nt < BN / 8; ++nt) {
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    s[nt][e] = exp2f(s[nt][e] - base[e >> 1]);
                    rs[e >> 1] += s[nt][e];
                }
            }
#pragma unroll
            for (int r = 0; r < 2; ++r) l_run[r] = l_run[r] * alpha[r] + rs[r];
#pragma unroll
            for (int dt = 0; dt < D / 8; ++dt) {
                o[dt][0] *= alpha[0];
                o[dt][1] *= alpha[0];
                o[dt][2] *= alpha[1];
                o[dt][3] *= alpha[1];
            }
            uint32_t pa[BN / 16][4];
            flash_acc_to_a<BN>(pa, s);
            flash_warp_mma_pb<BN, D>(o, pa, sv + stage * BN * LD, LD, lane);
        }
        __syncthreads();   // every warp is done with this stage before iteration j + 1 refills it
    }

    const int b = bh / p.H, h = bh % p.H;
    const long long ob = b * p.o_strides.sb + h * p.o_strides.sh;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float l = l_run[r];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        const int row = row0 + g + 8 * r;
        if (row < T) {
            const float inv = 1.0f / l;
            const long long orow = ob + row * p.o_strides.st;
#pragma unroll
            for (int dt = 0; dt < D / 8; ++dt) {
                flash_store(p.o, p.o16, orow + dt * 8 + 2 * t4, o[dt][2 * r] * inv);
                flash_store(p.o, p.o16, orow + dt * 8 + 2 * t4 + 1, o[dt][2 * r + 1] * inv);
            }
            if (t4 == 0) p.lse[(size_t)bh * T + row] = m_run[r] * FLASH_SM80_LN2 + logf(l);
        }
    }
}

// ---- backward ----

// dq = 0 at every (b, h, t, i) of a strided view (dq may interleave with dk and dv: never a contiguous memset).
__global__ void flash_zero_dq_sm80_kernel(float *dq, FlashStrides s, int H, int T, int d, long long n) {
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < n;
         idx += (long long)gridDim.x * blockDim.x) {
        const long long row = idx / d, bh = row / T;
        const int i = (int)(idx % d), t = (int)(row % T);
        dq[(bh / H) * s.sb + (bh % H) * s.sh + t * s.st + i] = 0.0f;
    }
}

// dK, dV (and, when atomic_dq, scale dS K added into dq) for one (head, 64-key tile). Grid (B*H, key tiles).
template <int D>
__global__ void __launch_bounds__(FlashSm80Dkdv<D>::THREADS)
    flash_backward_dkdv_sm80_kernel(const FlashBackward p, float scale, float scale_log2, int atomic_dq) {
    typedef FlashSm80Dkdv<D> C;
    constexpr int BM = C::BLOCK_M, BN = C::BLOCK_N, LD = C::LD, LDS = C::LDS, THREADS = C::THREADS;
    constexpr int WARPS = C::WARPS;
    CUDA_DYNAMIC_SMEM(unsigned char, flash_smem, 16);
    bf16 *sk = reinterpret_cast<bf16 *>(flash_smem) + C::K_OFF;
    bf16 *sv = reinterpret_cast<bf16 *>(flash_smem) + C::V_OFF;
    bf16 *sq = reinterpret_cast<bf16 *>(flash_smem) + C::Q_OFF;     // stage s at sq + s * BM * LD
    bf16 *sdo = reinterpret_cast<bf16 *>(flash_smem) + C::DO_OFF;   // stage s at sdo + s * BM * LD
    bf16 *sds = reinterpret_cast<bf16 *>(flash_smem) + C::DS_OFF;   // dS^T [key][query]
    float *slse = reinterpret_cast<float *>(flash_smem + C::F32_BYTE_OFF);   // stage s at slse + s * BM
    float *sdelta = slse + 2 * BM;                                          // stage s at sdelta + s * BM

    const int T = p.T, bh = blockIdx.x, n0 = blockIdx.y * BN;
    const long long head = (bh / p.H) * p.in_strides.sb + (bh % p.H) * p.in_strides.sh, ld = p.in_strides.st;
    const long long dohead = (bh / p.H) * p.do_strides.sb + (bh % p.H) * p.do_strides.sh, ldo = p.do_strides.st;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t4 = lane % 4;
    const int key0 = n0 + warp * 16;   // this warp's first key; it holds keys key0 + g and key0 + g + 8
    const int i_begin = p.causal ? n0 / BM : 0;   // earlier query tiles see none of this block's keys
    const int i_end = (T + BM - 1) / BM;
    const float *lse_head = p.lse + (size_t)bh * T, *delta_head = p.delta + (size_t)bh * T;
    const int b = bh / p.H, h = bh % p.H;

    flash_load_tile<BN, D, THREADS>(sk, p.k + head, n0, T, ld, tid);
    flash_load_tile<BN, D, THREADS>(sv, p.v + head, n0, T, ld, tid);
    flash_cp_async_commit();
    flash_load_tile<BM, D, THREADS>(sq, p.q + head, i_begin * BM, T, ld, tid);
    flash_load_tile<BM, D, THREADS>(sdo, p.dout + dohead, i_begin * BM, T, ldo, tid);
    flash_load_rows<THREADS>(slse, lse_head, i_begin * BM, T, BM, tid);
    flash_load_rows<THREADS>(sdelta, delta_head, i_begin * BM, T, BM, tid);
    flash_cp_async_commit();

    float dk[D / 8][4] = {}, dv[D / 8][4] = {};   // 16 keys x d each, C layout

    for (int i = i_begin; i < i_end; ++i) {
        const int stage = (i - i_begin) & 1, m0 = i * BM;
        if (i + 1 < i_end) {
            const int nx = stage ^ 1;
            flash_load_tile<BM, D, THREADS>(sq + nx * BM * LD, p.q + head, m0 + BM, T, ld, tid);
            flash_load_tile<BM, D, THREADS>(sdo + nx * BM * LD, p.dout + dohead, m0 + BM, T, ldo, tid);
            flash_load_rows<THREADS>(slse + nx * BM, lse_head, m0 + BM, T, BM, tid);
            flash_load_rows<THREADS>(sdelta + nx * BM, delta_head, m0 + BM, T, BM, tid);
        }
        flash_cp_async_commit();
        flash_cp_async_wait<1>();
        __syncthreads();

        const bf16 *q_t = sq + stage * BM * LD, *do_t = sdo + stage * BM * LD;
        const float *lse_t = slse + stage * BM, *delta_t = sdelta + stage * BM;
        uint32_t dsa[BM / 16][4] = {};   // dS^T (16 keys x BM queries) as A fragments; zero for a skipping warp
        if (!(key0 >= T || (p.causal && key0 > m0 + BM - 1))) {   // else P = 0 for all of this warp's keys
            float s[BM / 8][4] = {}, dp[BM / 8][4] = {};
            flash_warp_mma_abt<D, BM>(s, sk + warp * 16 * LD, LD, q_t, LD, lane);     // S^T = K Q^T
            flash_warp_mma_abt<D, BM>(dp, sv + warp * 16 * LD, LD, do_t, LD, lane);   // dP^T = V dO^T

            // s[nt][e] is key key0 + g + 8 (e / 2), query m0 + 8 nt + 2 t4 + (e % 2).
            const bool mask = m0 + BM > T || n0 + BN > T || (p.causal && key0 + 15 > m0);
#pragma unroll
            for (int nt = 0; nt < BM / 8; ++nt) {
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int ql = nt * 8 + 2 * t4 + (e & 1);
                    float pr = exp2f(s[nt][e] * scale_log2 - lse_t[ql] * FLASH_SM80_LOG2E);
                    if (mask) {
                        const int key = key0 + g + (e >> 1) * 8, q = m0 + ql;
                        if (key >= T || q >= T || (p.causal && key > q)) pr = 0.0f;
                    }
                    s[nt][e] = pr;                             // P^T
                    dp[nt][e] = pr * (dp[nt][e] - delta_t[ql]);   // dS^T
                }
            }
            uint32_t pa[BM / 16][4];
            flash_acc_to_a<BM>(pa, s);
            flash_acc_to_a<BM>(dsa, dp);
            flash_warp_mma_pb<BM, D>(dv, pa, do_t, LD, lane);   // dV += P^T dO
            flash_warp_mma_pb<BM, D>(dk, dsa, q_t, LD, lane);   // dK += dS^T Q
        }

        if (atomic_dq) {
            // dS^T to shared, from the A layout: dsa[k] holds keys g / g+8, queries 16k + 2t (+8).
            bf16 *ds_w = sds + (warp * 16 + g) * LDS + 2 * t4;
#pragma unroll
            for (int k = 0; k < BM / 16; ++k) {
                *reinterpret_cast<uint32_t *>(ds_w + 16 * k) = dsa[k][0];
                *reinterpret_cast<uint32_t *>(ds_w + 8 * LDS + 16 * k) = dsa[k][1];
                *reinterpret_cast<uint32_t *>(ds_w + 16 * k + 8) = dsa[k][2];
                *reinterpret_cast<uint32_t *>(ds_w + 8 * LDS + 16 * k + 8) = dsa[k][3];
            }
            __syncthreads();
            // dQ (BM x d) += dS (BM x 64 keys) K (64 x d), split into 16 x 16 items (m tile, d chunk) over the warps.
            // A = dS[query][key] = dS^T stored [key][query]: .trans ldmatrix with lane row (key) (lane % 8) +
            // 8 (lane / 16) and column (query) 8 ((lane / 8) % 2): matrices 0..3 = (queries 0-7, keys 0-7),
            // (queries 8-15, keys 0-7), (queries 0-7, keys 8-15), (queries 8-15, keys 8-15) = a0..a3.
            const bf16 *ds_lane = sds + ((lane & 7) + (lane >> 4) * 8) * LDS + ((lane >> 3) & 1) * 8;
            const bf16 *k_lane = sk + ((lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8;
            float *dqb = p.dq + b * p.dq_strides.sb + h * p.dq_strides.sh;
            for (int item = warp; item < (BM / 16) * (D / 16); item += WARPS) {
                const int mt = item / (D / 16), dc = item % (D / 16);
                const int qrow0 = m0 + mt * 16;
                if (qrow0 >= T || (p.causal && n0 > qrow0 + 15)) continue;   // past T, or dS = 0 there
                float acc[2][4] = {};
#pragma unroll
                for (int kk = 0; kk < BN / 16; ++kk) {
                    uint32_t af[4], bf[4];
                    flash_ldsm_x4_trans(af, ds_lane + kk * 16 * LDS + mt * 16);
                    flash_ldsm_x4_trans(bf, k_lane + kk * 16 * LD + dc * 16);
                    flash_mma(acc[0], af, bf[0], bf[1]);
                    flash_mma(acc[1], af, bf[2], bf[3]);
                }
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    const int q = qrow0 + g + 8 * r;
                    if (q < T) {
                        float *dqrow = dqb + q * p.dq_strides.st + dc * 16 + 2 * t4;
#pragma unroll
                        for (int nt = 0; nt < 2; ++nt) {
                            atomicAdd(dqrow + nt * 8, scale * acc[nt][2 * r]);
                            atomicAdd(dqrow + nt * 8 + 1, scale * acc[nt][2 * r + 1]);
                        }
                    }
                }
            }
        }
        __syncthreads();   // this stage (and dS^T) is free before iteration i + 1 refills it
    }

    const long long dkb = b * p.dk_strides.sb + h * p.dk_strides.sh;
    const long long dvb = b * p.dv_strides.sb + h * p.dv_strides.sh;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int key = key0 + g + 8 * r;
        if (key < T) {
            const long long dkrow = dkb + key * p.dk_strides.st + 2 * t4, dvrow = dvb + key * p.dv_strides.st + 2 * t4;
#pragma unroll
            for (int dt = 0; dt < D / 8; ++dt) {
                flash_store(p.dk, p.dk16, dkrow + dt * 8, scale * dk[dt][2 * r]);
                flash_store(p.dk, p.dk16, dkrow + dt * 8 + 1, scale * dk[dt][2 * r + 1]);
                flash_store(p.dv, p.dv16, dvrow + dt * 8, dv[dt][2 * r]);
                flash_store(p.dv, p.dv16, dvrow + dt * 8 + 1, dv[dt][2 * r + 1]);
            }
        }
    }
}

// Deterministic dQ for one (head, 64-row query tile): key tiles in increasing order, dq written with '='.
// Grid (B*H, query tiles), blockIdx.y reversed like the forward.
template <int D>
__global__ void __launch_bounds__(FlashSm80Dq<D>::THREADS)
    flash_backward_dq_sm80_kernel(const FlashBackward p, float scale, float scale_log2) {
    typedef FlashSm80Dq<D> C;
    constexpr int BM = C::BLOCK_M, BN = C::BLOCK_N, LD = C::LD, THREADS = C::THREADS;
    CUDA_DYNAMIC_SMEM(unsigned char, flash_smem, 16);
    bf16 *sq = reinterpret_cast<bf16 *>(flash_smem) + C::Q_OFF;
    bf16 *sdo = reinterpret_cast<bf16 *>(flash_smem) + C::DO_OFF;
    bf16 *sk = reinterpret_cast<bf16 *>(flash_smem) + C::K_OFF;   // stage s at sk + s * BN * LD
    bf16 *sv = reinterpret_cast<bf16 *>(flash_smem) + C::V_OFF;
    float *slse = reinterpret_cast<float *>(flash_smem + C::F32_BYTE_OFF);
    float *sdelta = slse + BM;

    const int T = p.T, bh = blockIdx.x, m0 = (gridDim.y - 1 - blockIdx.y) * BM;
    const long long head = (bh / p.H) * p.in_strides.sb + (bh % p.H) * p.in_strides.sh, ld = p.in_strides.st;
    const long long dohead = (bh / p.H) * p.do_strides.sb + (bh % p.H) * p.do_strides.sh, ldo = p.do_strides.st;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t4 = lane % 4;
    const int row0 = m0 + warp * 16;
    const int n_end = p.causal ? min(T, m0 + BM) : T;
    const int ntiles = (n_end + BN - 1) / BN;

    flash_load_tile<BM, D, THREADS>(sq, p.q + head, m0, T, ld, tid);
    flash_load_tile<BM, D, THREADS>(sdo, p.dout + dohead, m0, T, ldo, tid);
    flash_load_rows<THREADS>(slse, p.lse + (size_t)bh * T, m0, T, BM, tid);
    flash_load_rows<THREADS>(sdelta, p.delta + (size_t)bh * T, m0, T, BM, tid);
    flash_cp_async_commit();
    flash_load_tile<BN, D, THREADS>(sk, p.k + head, 0, T, ld, tid);
    flash_load_tile<BN, D, THREADS>(sv, p.v + head, 0, T, ld, tid);
    flash_cp_async_commit();

    float dq[D / 8][4] = {};   // 16 rows x d, C layout
    for (int j = 0; j < ntiles; ++j) {
        const int stage = j & 1;
        if (j + 1 < ntiles) {
            flash_load_tile<BN, D, THREADS>(sk + (stage ^ 1) * BN * LD, p.k + head, (j + 1) * BN, T, ld, tid);
            flash_load_tile<BN, D, THREADS>(sv + (stage ^ 1) * BN * LD, p.v + head, (j + 1) * BN, T, ld, tid);
        }
        flash_cp_async_commit();
        flash_cp_async_wait<1>();
        __syncthreads();

        const int n0 = j * BN;
        if (!(p.causal && n0 > row0 + 15)) {
            const bf16 *k_t = sk + stage * BN * LD, *v_t = sv + stage * BN * LD;
            float s[BN / 8][4] = {}, dp[BN / 8][4] = {};
            flash_warp_mma_abt<D, BN>(s, sq + warp * 16 * LD, LD, k_t, LD, lane);     // S = Q K^T
            flash_warp_mma_abt<D, BN>(dp, sdo + warp * 16 * LD, LD, v_t, LD, lane);   // dP = dO V^T

            // s[nt][e] is row row0 + g + 8 (e / 2), key n0 + 8 nt + 2 t4 + (e % 2).
            const float lse2[2] = {slse[warp * 16 + g] * FLASH_SM80_LOG2E, slse[warp * 16 + g + 8] * FLASH_SM80_LOG2E};
            const float dlt[2] = {sdelta[warp * 16 + g], sdelta[warp * 16 + g + 8]};
            const bool mask = n0 + BN > T || (p.causal && n0 + BN - 1 > row0);
#pragma unroll
            for (int nt = 0; nt < BN / 8; ++nt) {
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    float pr = exp2f(s[nt][e] * scale_log2 - lse2[e >> 1]);
                    if (mask) {
                        const int key = n0 + nt * 8 + 2 * t4 + (e & 1), row = row0 + g + (e >> 1) * 8;
                        if (key >= T || (p.causal && key > row)) pr = 0.0f;
                    }
                    dp[nt][e] = pr * (dp[nt][e] - dlt[e >> 1]);   // dS
                }
            }
            uint32_t dsa[BN / 16][4];
            flash_acc_to_a<BN>(dsa, dp);
            flash_warp_mma_pb<BN, D>(dq, dsa, k_t, LD, lane);   // dQ += dS K
        }
        __syncthreads();
    }

    const int b = bh / p.H, h = bh % p.H;
    float *dqb = p.dq + b * p.dq_strides.sb + h * p.dq_strides.sh;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int row = row0 + g + 8 * r;
        if (row < T) {
            float *dqrow = dqb + row * p.dq_strides.st + 2 * t4;
#pragma unroll
            for (int dt = 0; dt < D / 8; ++dt) {
                dqrow[dt * 8] = scale * dq[dt][2 * r];
                dqrow[dt * 8 + 1] = scale * dq[dt][2 * r + 1];
            }
        }
    }
}

// ---- host side ----

static int flash_sm80_check(const char *what, int B, int H, int T, int d, const void *const *ptrs, int nptrs) {
    if (B < 1 || H < 1 || T < 1) {
        fprintf(stderr, "gptrain: %s: bad shape B=%d H=%d T=%d (each must be >= 1)\n", what, B, H, T);
        return -1;
    }
    if (d != 32 && d != 64 && d != 80 && d != 96 && d != 128) {
        fprintf(stderr, "gptrain: %s: head size d=%d unsupported (32, 64, 80, 96 or 128)\n", what, d);
        return -1;
    }
    if ((long long)B * H > 2147483647LL || (T + 63) / 64 > 65535) {   // grid.x = B*H; grid.y = tiles of >= 64 rows
        fprintf(stderr, "gptrain: %s: grid too large for B*H=%lld T=%d\n", what, (long long)B * H, T);
        return -1;
    }
    for (int i = 0; i < nptrs; ++i)
        if ((uintptr_t)ptrs[i] % 16) {
            fprintf(stderr, "gptrain: %s: bf16 inputs must be 16-byte aligned for cp.async\n", what);
            return -1;
        }
    return 0;
}

// Opt a kernel into `bytes` of dynamic shared memory (needed past 48 KB), or say why the device cannot.
static int flash_sm80_smem(const char *what, const void *kernel, int bytes) {
    int dev = 0, optin = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    if (bytes > optin) {
        fprintf(stderr, "gptrain: %s: needs %d bytes of shared memory per block, device allows %d\n", what, bytes,
                optin);
        return -1;
    }
    if (bytes > 48 * 1024)
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
    return 0;
}

// The inputs' strides with the default (all zero: head-major [B*H][T][d]) filled in; -1 when a row is not 16-byte
// aligned (cp.async copies 16 bytes).
static int flash_sm80_strides(const char *what, FlashStrides *s, int H, int T, int d) {
    if (!s->sb && !s->sh && !s->st) {
        s->st = d;
        s->sh = (long long)T * d;
        s->sb = (long long)H * T * d;
    }
    if (s->sb % 8 || s->sh % 8 || s->st % 8) {
        fprintf(stderr, "gptrain: %s: input strides %lld, %lld, %lld (elements) must keep rows 16-byte aligned\n",
                what, s->sb, s->sh, s->st);
        return -1;
    }
    return 0;
}

template <int D>
static int flash_forward_sm80_launch(const FlashForward *p0, cudaStream_t stream) {
    typedef FlashSm80Fwd<D> C;
    FlashForward pr = *p0;
    const FlashForward *p = &pr;
    if (flash_sm80_strides("flash_forward_sm80", &pr.in_strides, p->H, p->T, D)) return -1;
    if (flash_sm80_smem("flash_forward_sm80", (const void *)flash_forward_sm80_kernel<D>, C::SMEM_BYTES)) return -1;
    const dim3 grid((unsigned)(p->B * p->H), (unsigned)((p->T + C::BLOCK_M - 1) / C::BLOCK_M));
    const float scale_log2 = (float)(1.4426950408889634 / sqrt((double)D));
    CUDA_LAUNCH(grid, C::THREADS, C::SMEM_BYTES, stream, flash_forward_sm80_kernel<D>)(*p, scale_log2);
    CUDA_LAUNCH_CHECK();
    return 0;
}

template <int D>
static int flash_backward_sm80_launch(const FlashBackward *p0, cudaStream_t stream) {
    typedef FlashSm80Dkdv<D> A;
    typedef FlashSm80Dq<D> Q;
    FlashBackward pr = *p0;
    const FlashBackward *p = &pr;
    if (flash_sm80_strides("flash_backward_sm80", &pr.in_strides, p->H, p->T, D) ||
        flash_sm80_strides("flash_backward_sm80", &pr.do_strides, p->H, p->T, D))
        return -1;
    const float scale = (float)(1.0 / sqrt((double)D)), scale_log2 = (float)(1.4426950408889634 / sqrt((double)D));
    const int BH = p->B * p->H;
    if (flash_sm80_smem("flash_backward_sm80", (const void *)flash_backward_dkdv_sm80_kernel<D>, A::SMEM_BYTES))
        return -1;
    if (p->deterministic &&
        flash_sm80_smem("flash_backward_sm80", (const void *)flash_backward_dq_sm80_kernel<D>, Q::SMEM_BYTES))
        return -1;
    if (!p->deterministic) {
        const long long n = (long long)BH * p->T * D;
        const long long blocks = (n + 255) / 256;
        CUDA_LAUNCH((unsigned)(blocks < 65536 ? blocks : 65536), 256, 0, stream, flash_zero_dq_sm80_kernel)(
            p->dq, p->dq_strides, p->H, p->T, D, n);
        CUDA_LAUNCH_CHECK();
    }
    const dim3 grid_a((unsigned)BH, (unsigned)((p->T + A::BLOCK_N - 1) / A::BLOCK_N));
    CUDA_LAUNCH(grid_a, A::THREADS, A::SMEM_BYTES, stream, flash_backward_dkdv_sm80_kernel<D>)(*p, scale, scale_log2,
                                                                                             !p->deterministic);
    CUDA_LAUNCH_CHECK();
    if (p->deterministic) {
        const dim3 grid_q((unsigned)BH, (unsigned)((p->T + Q::BLOCK_M - 1) / Q::BLOCK_M));
        CUDA_LAUNCH(grid_q, Q::THREADS, Q::SMEM_BYTES, stream, flash_backward_dq_sm80_kernel<D>)(*p, scale, scale_log2);
        CUDA_LAUNCH_CHECK();
    }
    return 0;
}

// The one place the run-time head size picks a specialised kernel.
extern "C" int flash_forward_sm80(const FlashForward *p, cudaStream_t stream) {
    const void *ptrs[3] = {p->q, p->k, p->v};
    if (flash_sm80_check("flash_forward_sm80", p->B, p->H, p->T, p->d, ptrs, 3)) return -1;
    switch (p->d) {
    case 32: return flash_forward_sm80_launch<32>(p, stream);
    case 64: return flash_forward_sm80_launch<64>(p, stream);
    case 80: return flash_forward_sm80_launch<80>(p, stream);
    case 96: return flash_forward_sm80_launch<96>(p, stream);
    default: return flash_forward_sm80_launch<128>(p, stream);
    }
}

extern "C" int flash_backward_sm80(const FlashBackward *p, cudaStream_t stream) {
    const void *ptrs[4] = {p->q, p->k, p->v, p->dout};
    if (flash_sm80_check("flash_backward_sm80", p->B, p->H, p->T, p->d, ptrs, 4)) return -1;
    switch (p->d) {
    case 32: return flash_backward_sm80_launch<32>(p, stream);
    case 64: return flash_backward_sm80_launch<64>(p, stream);
    case 80: return flash_backward_sm80_launch<80>(p, stream);
    case 96: return flash_backward_sm80_launch<96>(p, stream);
    default: return flash_backward_sm80_launch<128>(p, stream);
    }
}
