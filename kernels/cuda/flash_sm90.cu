/*
 * flash_sm90.cu: the Hopper flash-attention forward (flash.h, path sm90), after FlashAttention-3 (Shah, Bikshandi,
 * Zhang, Thakkar, Ramani, Dao 2024) on FlashAttention-2's tiling and online softmax (Dao 2023), written from the
 * papers and the PTX ISA. One thread block owns BLOCK_M = 128 query rows of one head and streams that head's K/V
 * tiles of BLOCK_N = 128 keys through shared memory. Warp specialization: warpgroup 0 is the producer (one thread
 * issues TMA bulk tensor copies, cp.async.bulk.tensor, completing on mbarriers) and warpgroups 1 and 2 are consumers,
 * each owning 64 query rows: S = Q K^T with wgmma (Q and K both read from shared memory through descriptors), the
 * online softmax in registers (exp2 with log2(e) folded into the scale), then O += P V with wgmma taking P from
 * registers (the C fragment of the first product is the A fragment of the second) and V from shared memory.
 *
 * Tile shapes. BLOCK_M = 128 = 2 consumer warpgroups x 64 rows, wgmma's M per warpgroup. BLOCK_N = 128: S is a
 * 64x128 fp32 accumulator (64 registers a thread), O is 64 x d (d/2 registers), P is 32 registers of bf16 pairs, so
 * a consumer needs about 180 registers at d = 128, inside the 240 that setmaxnreg gives it (the producer drops to
 * 24: 128*24 + 256*240 = 64512 <= 65536). d is loaded as 64-column panels because the 128-byte swizzle spans 64 bf16.
 * Shared memory: Q (128 x d) + STAGES x (K + V, 128 x d each) bf16: d = 128, 2 stages: 32 + 2 x 64 = 160 KB;
 * d = 64, 3 stages: 16 + 3 x 32 = 112 KB; plus the mbarriers and 1 KB to align the base to the swizzle's 1024-byte
 * repeat. Pipeline: a ring of STAGES K/V buffers, each with a "K full" and a "V full" barrier (the producer's
 * arrive.expect_tx plus the copies' byte count) and an "empty" barrier (one arrival per consumer warp once its
 * P V product has finished reading the stage). K and V have separate full barriers so S = Q K^T starts while V is
 * still in flight.
 *
 * Arithmetic: 4·T·T·d FLOPs per head (two GEMMs; about half when causal: fully masked key tiles are skipped and
 * only diagonal tiles are masked); bytes: Q read once, K and V once per query block (bf16, mostly from L2), O
 * written once in fp32 and lse once. Not yet here (FA3 §3.1-3.2): ping-pong scheduling between the two consumer
 * warpgroups and overlapping the softmax of one tile with the GEMMs of the next inside a warpgroup; the warp
 * scheduler interleaves the two warpgroups on its own.
 *
 * The sm_90a instructions (wgmma, setmaxnreg) exist only in the sm_90a device pass; the sm_80 pass compiles a
 * trapping stub and the host entry point refuses devices other than compute capability 9.x.
 */
#include <cuda.h>
#include <cudaTypedefs.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cuda_common.h"
#include "flash.h"

// FLASH_SM90_CODE: this pass compiles the kernel's real body: the sm_90a device pass, or the emulated device (make
// emu), where tests/emu/emu_flash_sm90.h supplies mbarriers, TMA and wgmma in place of the PTX below.
#if defined(GPTRAIN_EMU) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL))
#define FLASH_SM90_CODE 1
#endif

// ---- tile shapes (see the file comment for the reasons) ----

#define FLASH_SM90_BLOCK_M 128                            // query rows per thread block
#define FLASH_SM90_BLOCK_N 128                            // keys per K/V tile
#define FLASH_SM90_CONSUMERS 2                            // consumer warpgroups, 64 query rows each
#define FLASH_SM90_THREADS (128 * (1 + FLASH_SM90_CONSUMERS))   // producer warpgroup + consumers = 384
#define FLASH_SM90_PANEL 64                               // bf16 columns per 128-byte swizzled panel
#define FLASH_SM90_PRODUCER_REGS 24                       // setmaxnreg targets: 128*24 + 256*240 <= 65536
#define FLASH_SM90_CONSUMER_REGS 240

// Shared-memory layout for head size D, in bytes from a 1024-byte-aligned base. Every tile is stored as D/64 panels;
// a panel is `rows` rows of 128 bytes (64 bf16) written by one TMA box with the 128-byte swizzle, so each group of
// 8 rows is one 1024-byte swizzle atom and panel p of a tile starts at tile + p * rows * 128.
template <int D>
struct FlashSm90Layout {
    static constexpr int PANELS = D / FLASH_SM90_PANEL;
    static constexpr int STAGES = D == 64 ? 3 : 2;
    static constexpr int Q_BYTES = FLASH_SM90_BLOCK_M * D * 2;
    static constexpr int KV_BYTES = FLASH_SM90_BLOCK_N * D * 2;   // one K or one V tile
    static constexpr int Q_OFF = 0;
    static constexpr int K_OFF = Q_OFF + Q_BYTES;                  // K stage s at K_OFF + s * KV_BYTES
    static constexpr int V_OFF = K_OFF + STAGES * KV_BYTES;        // V stage s at V_OFF + s * KV_BYTES
    static constexpr int BAR_OFF = V_OFF + STAGES * KV_BYTES;      // 8-byte mbarriers: q, k_full[], v_full[], empty[]
    static constexpr int BARS = 1 + 3 * STAGES;
    static constexpr int BYTES = BAR_OFF + 8 * BARS;
    static constexpr int ALLOC = BYTES + 1024;                     // slack to align the dynamic base up to 1024
};

// Kernel parameters other than the tensor maps.
struct FlashSm90Params {
    float *o;                 // fp32, (b, h, t, i) at o + b*sb + h*sh + t*st + i
    __nv_bfloat16 *o16;       // non-NULL: O in bf16 there instead (the same strides)
    long long sb, sh, st;
    float *lse;               // [B*H][T], natural log
    int H, T;
    float scale_log2;         // log2(e) / sqrt(d): s * scale_log2 is the score in base-2 units
    int o_vec2;               // 1 when o (or o16) and its strides allow paired stores (float2 / bf16x2)
    int token_major;          // 1: q, k, v maps over (d, H, B*T) tokens (the model's qkv in place), 0: [B*H][T][d]
};

#ifdef GPTRAIN_EMU
#include "emu_flash_sm90.h"
#elif defined(FLASH_SM90_CODE)

// ---- mbarrier and TMA (PTX ISA: mbarrier, cp.async.bulk.tensor) ----

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}

// Arrive once and add `bytes` to the transaction count the current phase waits for (the TMA copies' complete_tx
// subtracts it again as their bytes land).
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}

__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory");
}

// Wait until the phase with parity `parity` has completed. A fresh barrier is in phase 0, and waiting for parity 1
// (the "preceding" phase) returns at once: that is how the producer's first pass over the ring sees empty buffers.
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
    uint32_t done;
    do {
        asm volatile(
            "{\n.reg .pred p;\n"
            "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
            "selp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(bar), "r"(parity)
            : "memory");
    } while (!done);
}

// One TMA box (64 columns x 128 rows x 1 head) of a 3D tensor map at element coordinates (c0 = column, c1 = row t,
// c2 = head bh) into shared memory at dst; completes `bar`'s transaction count by the box's bytes (rows past T are
// zero-filled and still counted).
__device__ __forceinline__ void tma_load_3d(uint32_t dst, const CUtensorMap *map, int c0, int c1, int c2,
                                            uint32_t bar) {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], "
        "[%5];" ::"r"(dst),
        "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
        : "memory");
}

// ---- wgmma (PTX ISA: asynchronous warpgroup-level matrix multiply) ----

// Order this thread's register writes before the wgmma that reads them (required before the first wgmma of a batch
// and whenever accumulator or A-fragment registers were written by ordinary instructions).
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait_all() { asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory"); }

// Compiler-level fence on registers that an in-flight wgmma owns: an empty asm that "modifies" each register, so the
// compiler keeps reads after the wait (and writes before the fence) where the source puts them.
template <int N>
__device__ __forceinline__ void reg_fence(float (&r)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(r[i])::"memory");
}
template <int N>
__device__ __forceinline__ void reg_fence(uint32_t (&r)[N][4]) {
#pragma unroll
    for (int i = 0; i < N; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) asm volatile("" : "+r"(r[i][j])::"memory");
}

// The wgmma wrappers. Operand order (PTX): d, a-desc | {a regs}, b-desc, scale-d (predicate: 0 means D = A*B,
// 1 means D += A*B), imm-scale-a = 1, imm-scale-b = 1, [imm-trans-a], imm-trans-b. Transpose 0 means K-major (the
// K index is the contiguous one), 1 means M/N-major.
//
// Accumulator fragment of m64nN with fp32 D (N/2 registers a thread): warp w of the warpgroup (w = warp % 4) owns
// rows 16w .. 16w+15; with g = lane / 4 and q = lane % 4, register d[4j + e] (j = 0 .. N/8-1, e = 0..3) holds
//   row 16w + g + 8 * (e >> 1), column 8j + 2q + (e & 1).
// So a thread holds two rows (g and g + 8) and N/4 columns of each; the 4 threads q = 0..3 with the same g share a
// row, which is why row max and row sum reduce with __shfl_xor over lane bits 0 and 1.
//
// A fragment of m64nNk16 from registers (bf16, 4 registers of 2 elements, low half = lower column): warp w owns rows
// 16w .. 16w+15 and, with g and q as above,
//   a[0] = (row g,     cols 2q, 2q+1)      a[1] = (row g + 8, cols 2q, 2q+1)
//   a[2] = (row g,     cols 2q+8, 2q+9)    a[3] = (row g + 8, cols 2q+8, 2q+9)
// Comparing with the accumulator layout: for key step kk (columns 16kk .. 16kk+15 of S), a[0] = d[8kk+0..1],
// a[1] = d[8kk+2..3], a[2] = d[8kk+4..5], a[3] = d[8kk+6..7]: P feeds the second product with no data movement.

// D (64 x 128, fp32) (+)= A (64 x 16 from shared memory, K-major) * B (16 x 128 from shared memory, K-major).
__device__ __forceinline__ void wgmma_m64n128k16_ss(float (&d)[64], uint64_t desc_a, uint64_t desc_b, int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, "
        "%11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, "
        "%31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, "
        "%51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;"
        "\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),
          "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),
          "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),
          "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]),
          "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]),
          "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
          "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),
          "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}

// D (64 x 128, fp32) (+)= A (64 x 16 bf16 from registers) * B (16 x 128 from shared memory, N-major).
__device__ __forceinline__ void wgmma_m64n128k16_rs(float (&d)[64], const uint32_t (&a)[4], uint64_t desc_b,
                                                    int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, "
        "%11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, "
        "%31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, "
        "%51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;"
        "\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),
          "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),
          "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),
          "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]),
          "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]),
          "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
          "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),
          "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate));
}

// D (64 x 64, fp32) (+)= A (64 x 16 bf16 from registers) * B (16 x 64 from shared memory, N-major).
__device__ __forceinline__ void wgmma_m64n64k16_rs(float (&d)[32], const uint32_t (&a)[4], uint64_t desc_b,
                                                   int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, "
        "%11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, "
        "%31}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;"
        "\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),
          "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),
          "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),
          "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate));
}

// The kernel's other PTX: initialisation fences for the barriers, the tensor-map prefetch, and the register
// re-allocation between the producer and the consumer warpgroups.
__device__ __forceinline__ void fence_barrier_init() {
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}
__device__ __forceinline__ void prefetch_tensormap(const CUtensorMap *map) {
    asm volatile("prefetch.tensormap [%0];" ::"l"((uint64_t)map) : "memory");
}
template <int REGS>
__device__ __forceinline__ void setmaxnreg_dec() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(REGS));
}
template <int REGS>
__device__ __forceinline__ void setmaxnreg_inc() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(REGS));
}

#endif   // the PTX of the sm_90a pass

#ifdef FLASH_SM90_CODE
// Shared-memory matrix descriptor (PTX ISA "matrix descriptor format"), 64 bits:
//   bits  0-13  start address >> 4 (shared-window byte address; ours stay below 228 KB, so 14 bits hold it)
//   bits 16-29  leading dimension byte offset >> 4 (LBO)
//   bits 32-45  stride dimension byte offset >> 4 (SBO)
//   bits 49-51  base offset: 0, because every tile and panel starts on a 1024-byte boundary (the 128B swizzle's
//               repeat) and the in-atom K offsets we add (0/32/64/96 bytes) leave address bits 7-9 at zero
//   bits 62-63  swizzle mode: 1 = 128-byte swizzle, the same pattern TMA's CU_TENSOR_MAP_SWIZZLE_128B writes
//               (16-byte chunk index, address bits 4-6, XORed with the row within the 8-row atom, bits 7-9)
// Advancing along a matrix is done by adding (bytes >> 4) to the start-address field (no carry: see above).
__device__ __forceinline__ uint64_t smem_desc(uint32_t addr, uint32_t lbo_bytes, uint32_t sbo_bytes) {
    return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)((lbo_bytes & 0x3FFFF) >> 4) << 16) |
           ((uint64_t)((sbo_bytes & 0x3FFFF) >> 4) << 32) | (1ull << 62);
}

template <int D>
__device__ __forceinline__ void wgmma_pv(float (&o)[D / 2], const uint32_t (&a)[4], uint64_t desc_v) {
    if constexpr (D == 128)
        wgmma_m64n128k16_rs(o, a, desc_v, 1);
    else
        wgmma_m64n64k16_rs(o, a, desc_v, 1);
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);   // .x (low 16 bits) = lo
    uint32_t r;
    memcpy(&r, &h, 4);
    return r;
}
#endif

// ---- the kernel ----

// q, k, v [B*H][T][D] bf16 (through the tensor maps) -> o (B,H,T,D) fp32 through strides, lse [B*H][T].
// Grid (ceil(T / BLOCK_M), B*H), query blocks in reverse so that under a causal mask the longest blocks start first.
template <int D, bool CAUSAL>
__global__ void __launch_bounds__(FLASH_SM90_THREADS, 1)
    flash_forward_sm90_kernel(const __grid_constant__ CUtensorMap tm_q, const __grid_constant__ CUtensorMap tm_k,
                              const __grid_constant__ CUtensorMap tm_v, const FlashSm90Params prm) {
#ifdef FLASH_SM90_CODE
    typedef FlashSm90Layout<D> L;
    constexpr int BM = FLASH_SM90_BLOCK_M, BN = FLASH_SM90_BLOCK_N;
    constexpr int Q_PANEL = BM * 128, KV_PANEL = BN * 128;   // bytes of one 64-column panel of a Q / K,V tile
    CUDA_DYNAMIC_SMEM(unsigned char, flash_sm90_smem, 1024);

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int T = prm.T;
    const int m_block = gridDim.x - 1 - blockIdx.x;
    const int bh = blockIdx.y;
    const int m0 = m_block * BM;
    const int n_tiles_all = (T + BN - 1) / BN;
    // Causal: key tile n holds keys n*BN .. n*BN+BN-1; the block's last query row is m0 + BM - 1, so tiles past
    // (m0 + BM - 1) / BN are fully masked and skipped.
    const int n_tiles = CAUSAL ? min(n_tiles_all, (m0 + BM - 1) / BN + 1) : n_tiles_all;

    const uint32_t base = ((uint32_t)__cvta_generic_to_shared(flash_sm90_smem) + 1023u) & ~1023u;
    const uint32_t q_smem = base + L::Q_OFF;
    const uint32_t bar_q = base + L::BAR_OFF;
    auto k_smem = [&](int s) { return base + L::K_OFF + (uint32_t)s * L::KV_BYTES; };
    auto v_smem = [&](int s) { return base + L::V_OFF + (uint32_t)s * L::KV_BYTES; };
    auto bar_k = [&](int s) { return bar_q + 8u * (1 + s); };
    auto bar_v = [&](int s) { return bar_q + 8u * (1 + L::STAGES + s); };
    auto bar_empty = [&](int s) { return bar_q + 8u * (1 + 2 * L::STAGES + s); };

    if (tid == 0) {
        mbar_init(bar_q, 1);
        for (int s = 0; s < L::STAGES; s++) {
            mbar_init(bar_k(s), 1);                            // the producer's arrive.expect_tx
            mbar_init(bar_v(s), 1);
            mbar_init(bar_empty(s), 4 * FLASH_SM90_CONSUMERS);   // one arrival per consumer warp
        }
        // The barriers were written by the generic proxy and are next updated by TMA's complete_tx (async proxy):
        // make the initialisation visible to it. No tile data is ever written by ordinary stores (TMA writes every
        // operand wgmma reads, and P goes register to register), so no other proxy fence is needed.
        fence_barrier_init();
    }
    __syncthreads();

    if (warp / 4 == 0) {
        // ---- producer warpgroup: one thread issues every copy; the rest only give their registers back ----
        setmaxnreg_dec<FLASH_SM90_PRODUCER_REGS>();
        // Row t of this head in the maps' coordinates (after the column): (t, bh) head-major; (h, b*T + t) over
        // tokens, where a box's rows run on into the next sequence's tokens (masked keys, unwritten queries).
        const int hy = prm.token_major ? bh % prm.H : 0, tz0 = prm.token_major ? (bh / prm.H) * T : bh;
        auto cy = [&](int t) { return prm.token_major ? hy : t; };
        auto cz = [&](int t) { return prm.token_major ? tz0 + t : tz0; };
        if (warp == 0 && lane == 0) {
            prefetch_tensormap(&tm_q);
            prefetch_tensormap(&tm_k);
            prefetch_tensormap(&tm_v);
            mbar_arrive_expect_tx(bar_q, L::Q_BYTES);
            for (int p = 0; p < L::PANELS; p++)
                tma_load_3d(q_smem + p * Q_PANEL, &tm_q, p * FLASH_SM90_PANEL, cy(m0), cz(m0), bar_q);
            for (int it = 0; it < n_tiles; it++) {
                const int s = it % L::STAGES;
                const uint32_t phase = (uint32_t)(it / L::STAGES) & 1u;
                mbar_wait(bar_empty(s), phase ^ 1u);   // pass `it - STAGES` released this stage
                mbar_arrive_expect_tx(bar_k(s), L::KV_BYTES);
                for (int p = 0; p < L::PANELS; p++)
                    tma_load_3d(k_smem(s) + p * KV_PANEL, &tm_k, p * FLASH_SM90_PANEL, cy(it * BN), cz(it * BN),
                                bar_k(s));
                mbar_arrive_expect_tx(bar_v(s), L::KV_BYTES);
                for (int p = 0; p < L::PANELS; p++)
                    tma_load_3d(v_smem(s) + p * KV_PANEL, &tm_v, p * FLASH_SM90_PANEL, cy(it * BN), cz(it * BN),
                                bar_v(s));
            }
        }
    } else {
        // ---- consumer warpgroup cw: query rows m0 + 64cw .. m0 + 64cw + 63 ----
        setmaxnreg_inc<FLASH_SM90_CONSUMER_REGS>();
        const int cw = warp / 4 - 1, w = warp % 4, g = lane / 4, q = lane % 4;
        const int wg_row0 = m0 + 64 * cw;                 // first query row of this warpgroup
        const int row0 = wg_row0 + 16 * w + g, row1 = row0 + 8;   // the two rows this thread holds

        // Q descriptor (A of S = Q K^T, K-major, 128B swizzle): the warpgroup's 64 rows start 64cw rows (8cw atoms,
        // 8192cw bytes) into each Q panel. SBO = 1024: from one 8-row group (core-matrix row) to the next along M.
        // LBO: unused for swizzled K-major layouts (the K extent of one instruction, 16 bf16 = 32 bytes, lies inside
        // the 128-byte swizzle row); set to 16 bytes (encoded 1) as the ISA prescribes.
        // Step kk (columns 16kk .. 16kk+15 of d): panel kk / 4, then 32 bytes per step inside the 128-byte row.
        const uint64_t desc_q = smem_desc(q_smem + 64 * cw * 128, 16, 1024);
        // K descriptor (B of S = Q K^T): K is [key][d], d contiguous, so B (d x keys) is K-major as well: the same
        // encoding, the 128 keys of the tile being N = 16 groups of 8 rows at SBO = 1024.
        // V descriptor (B of O += P V): V is [key][d] with d, the N index, contiguous, so B (keys x d) is N-major
        // (imm-trans-b = 1). In the MN-major 128B-swizzled layout an atom is 64 N-elements (128 bytes) x 8 K-rows:
        //   SBO = 1024 bytes: from one group of 8 keys (K) to the next;
        //   LBO = BN * 128 = 16384 bytes: from one 64-column N panel to the next (used when D = 128, N spans two).
        // Step kk (keys 16kk .. 16kk+15): 16 rows of 128 bytes = 2048 bytes further in every panel.
        constexpr uint32_t V_LBO = KV_PANEL, V_SBO = 1024;

        float o_acc[D / 2];
#pragma unroll
        for (int i = 0; i < D / 2; i++) o_acc[i] = 0.0f;
        float s_acc[BN / 2];
#pragma unroll
        for (int i = 0; i < BN / 2; i++) s_acc[i] = 0.0f;
        float m_run[2] = {-INFINITY, -INFINITY};   // running max of s * scale_log2 for rows row0, row1
        float l_run[2] = {0.0f, 0.0f};             // this thread's part of the running sum of exp2 (its 1/4 of cols)
        uint32_t p_frag[BN / 16][4];

        mbar_wait(bar_q, 0);
        for (int it = 0; it < n_tiles; it++) {
            const int s = it % L::STAGES;
            const uint32_t phase = (uint32_t)(it / L::STAGES) & 1u;
            const int n0 = it * BN;

            // S = Q K^T (64 x 128 per warpgroup), d / 16 wgmma steps.
            mbar_wait(bar_k(s), phase);
            const uint64_t desc_k = smem_desc(k_smem(s), 16, 1024);
            reg_fence(s_acc);
            wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                const uint32_t qoff = (uint32_t)((kk / 4) * Q_PANEL + (kk % 4) * 32);
                const uint32_t koff = (uint32_t)((kk / 4) * KV_PANEL + (kk % 4) * 32);
                wgmma_m64n128k16_ss(s_acc, desc_q + (qoff >> 4), desc_k + (koff >> 4), kk > 0);
            }
            wgmma_commit();
            wgmma_wait_all();
            reg_fence(s_acc);

            // Mask keys >= T (the zero-filled tail of the last tile) and, when causal, keys after the row. Only the
            // last tile and tiles crossing this warpgroup's diagonal need it (uniform across the warpgroup).
            const bool need_mask = n0 + BN > T || (CAUSAL && n0 + BN - 1 > wg_row0);
            if (need_mask) {
#pragma unroll
                for (int j = 0; j < BN / 8; j++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int col = n0 + 8 * j + 2 * q + (e & 1);
                        const int row = (e >> 1) ? row1 : row0;
                        if (col >= T || (CAUSAL && col > row)) s_acc[4 * j + e] = -INFINITY;
                    }
            }

            // Online softmax, base 2. Row max over this thread's columns, then across the 4 threads of the row
            // (lanes differing in bits 0 and 1: xor 1, xor 2).
            float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
            for (int j = 0; j < BN / 8; j++) {
                mx[0] = fmaxf(mx[0], fmaxf(s_acc[4 * j + 0], s_acc[4 * j + 1]));
                mx[1] = fmaxf(mx[1], fmaxf(s_acc[4 * j + 2], s_acc[4 * j + 3]));
            }
            float neg_m[2];
#pragma unroll
            for (int r = 0; r < 2; r++) {
                mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
                mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
                const float m_new = fmaxf(m_run[r], mx[r] * prm.scale_log2);   // scale > 0: max commutes with it
                // A row with every key so far masked keeps m = -inf; offset by 0 then so exp2 gives 0, not NaN.
                const float m_use = m_new == -INFINITY ? 0.0f : m_new;
                const float alpha = exp2f(m_run[r] - m_use);                     // 0 on the first tile
                m_run[r] = m_new;
                l_run[r] *= alpha;
                neg_m[r] = -m_use;
#pragma unroll
                for (int j = 0; j < D / 8; j++) {
                    o_acc[4 * j + 2 * r] *= alpha;
                    o_acc[4 * j + 2 * r + 1] *= alpha;
                }
            }
#pragma unroll
            for (int j = 0; j < BN / 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const float pv = exp2f(fmaf(s_acc[4 * j + e], prm.scale_log2, neg_m[e >> 1]));
                    s_acc[4 * j + e] = pv;
                    l_run[e >> 1] += pv;
                }
            // P to bf16 A fragments (see the layout note at the wgmma wrappers).
#pragma unroll
            for (int kk = 0; kk < BN / 16; kk++) {
                p_frag[kk][0] = pack_bf16x2(s_acc[8 * kk + 0], s_acc[8 * kk + 1]);
                p_frag[kk][1] = pack_bf16x2(s_acc[8 * kk + 2], s_acc[8 * kk + 3]);
                p_frag[kk][2] = pack_bf16x2(s_acc[8 * kk + 4], s_acc[8 * kk + 5]);
                p_frag[kk][3] = pack_bf16x2(s_acc[8 * kk + 6], s_acc[8 * kk + 7]);
            }

            // O += P V (64 x D per warpgroup), BN / 16 wgmma steps.
            mbar_wait(bar_v(s), phase);
            const uint64_t desc_v = smem_desc(v_smem(s), V_LBO, V_SBO);
            reg_fence(o_acc);
            reg_fence(p_frag);
            wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < BN / 16; kk++) wgmma_pv<D>(o_acc, p_frag[kk], desc_v + ((uint32_t)(kk * 2048) >> 4));
            wgmma_commit();
            wgmma_wait_all();
            reg_fence(o_acc);
            reg_fence(p_frag);   // the A registers are read asynchronously: keep them live until the wait

            // This warp is done reading stage s (its wgmma reads have completed): release it to the producer.
            __syncwarp();
            if (lane == 0) mbar_arrive(bar_empty(s));
        }

        // Epilogue: full row sums across the 4 threads of a row, O / l, lse = m ln 2 + ln l. Rows >= T not written.
        const int b = bh / prm.H, h = bh % prm.H;
#pragma unroll
        for (int r = 0; r < 2; r++) {
            l_run[r] += __shfl_xor_sync(0xffffffffu, l_run[r], 1);
            l_run[r] += __shfl_xor_sync(0xffffffffu, l_run[r], 2);
        }
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const int row = r ? row1 : row0;
            if (row >= T) continue;
            const float inv_l = 1.0f / l_run[r];
            const long long orow = b * prm.sb + h * prm.sh + (long long)row * prm.st;
#pragma unroll
            for (int j = 0; j < D / 8; j++) {
                const int col = 8 * j + 2 * q;
                const float x0 = o_acc[4 * j + 2 * r] * inv_l, x1 = o_acc[4 * j + 2 * r + 1] * inv_l;
                if (prm.o_vec2 && prm.o16) {
                    *reinterpret_cast<__nv_bfloat162 *>(prm.o16 + orow + col) = __floats2bfloat162_rn(x0, x1);
                } else if (prm.o_vec2) {
                    *reinterpret_cast<float2 *>(prm.o + orow + col) = make_float2(x0, x1);
                } else {
                    flash_store(prm.o, prm.o16, orow + col, x0);
                    flash_store(prm.o, prm.o16, orow + col + 1, x1);
                }
            }
            if (q == 0) prm.lse[(long long)bh * T + row] = m_run[r] * 0.69314718055994531f + logf(l_run[r]);
        }
    }
#elif defined(__CUDA_ARCH__)
    __trap();   // built for a target without wgmma / TMA; the host entry point never launches it there
#endif
}

// ---- host side ----

// cuTensorMapEncodeTiled through the runtime's driver entry point, so the program need not link libcuda itself.
static PFN_cuTensorMapEncodeTiled_v12000 flash_sm90_encode_fn(void) {
    static PFN_cuTensorMapEncodeTiled_v12000 fn = NULL;
    if (!fn) {
        void *ptr = NULL;
        cudaDriverEntryPointQueryResult found;
        CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &ptr, 12000, cudaEnableDefault,
                                                    &found));
        if (found != cudaDriverEntryPointSuccess || !ptr) {
            fprintf(stderr, "gptrain: flash_forward_sm90: the driver has no cuTensorMapEncodeTiled\n");
            return NULL;
        }
        fn = (PFN_cuTensorMapEncodeTiled_v12000)ptr;
    }
    return fn;
}

// A bf16 [BH][T][d] tensor as a 3D map (d, T, BH), innermost first, so a box never crosses from one head into the
// next: rows t >= T of a head are outside dimension 1 and read as zeros. Box: 64 columns (128 bytes, the 128B swizzle
// span) x `rows` x 1 head. Token-major inputs (s: element (b, h, t, i) at b*T*st + h*sh + t*st + i, the model's
// interleaved qkv) as a 3D map (d, H, B*T) instead, box 64 columns x 1 head x `rows` tokens: the same shared-memory
// layout (rows one after another), a box's rows past T running on into the next sequence (and past B*T, zeros).
static int flash_sm90_tensor_map(CUtensorMap *map, const __nv_bfloat16 *ptr, int BH, int T, int d, int rows,
                                 int token_major, const FlashStrides *s, int B, int H) {
    PFN_cuTensorMapEncodeTiled_v12000 encode = flash_sm90_encode_fn();
    if (!encode) return -1;
    const cuuint64_t dims[3] = {(cuuint64_t)d, token_major ? (cuuint64_t)H : (cuuint64_t)T,
                                token_major ? (cuuint64_t)B * T : (cuuint64_t)BH};
    const cuuint64_t strides[2] = {token_major ? (cuuint64_t)s->sh * 2 : (cuuint64_t)d * 2,   // bytes, of dims 1, 2
                                   token_major ? (cuuint64_t)s->st * 2 : (cuuint64_t)T * d * 2};
    const cuuint32_t box[3] = {FLASH_SM90_PANEL, token_major ? 1u : (cuuint32_t)rows, token_major ? (cuuint32_t)rows : 1u};
    const cuuint32_t elem_strides[3] = {1, 1, 1};
    const CUresult r = encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, (void *)ptr, dims, strides, box, elem_strides,
                              CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                              CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) {
        fprintf(stderr, "gptrain: flash_forward_sm90: cuTensorMapEncodeTiled failed (CUresult %d), BH=%d T=%d d=%d\n",
                (int)r, BH, T, d);
        return -1;
    }
    return 0;
}

template <int D, bool CAUSAL>
static int flash_forward_sm90_launch(const FlashForward *p, const FlashSm90Params &prm, cudaStream_t stream) {
    typedef FlashSm90Layout<D> L;
    const int BH = p->B * p->H;
    CUtensorMap tm_q, tm_k, tm_v;
    const int tok = prm.token_major;
    const FlashStrides *s = &p->in_strides;
    if (flash_sm90_tensor_map(&tm_q, p->q, BH, p->T, D, FLASH_SM90_BLOCK_M, tok, s, p->B, p->H) ||
        flash_sm90_tensor_map(&tm_k, p->k, BH, p->T, D, FLASH_SM90_BLOCK_N, tok, s, p->B, p->H) ||
        flash_sm90_tensor_map(&tm_v, p->v, BH, p->T, D, FLASH_SM90_BLOCK_N, tok, s, p->B, p->H))
        return -1;
    int dev = 0, smem_optin = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    if (smem_optin < L::ALLOC) {
        fprintf(stderr, "gptrain: flash_forward_sm90: needs %d bytes of shared memory per block, device allows %d\n",
                L::ALLOC, smem_optin);
        return -1;
    }
    CUDA_CHECK(cudaFuncSetAttribute(flash_forward_sm90_kernel<D, CAUSAL>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    L::ALLOC));
    const dim3 grid((unsigned)((p->T + FLASH_SM90_BLOCK_M - 1) / FLASH_SM90_BLOCK_M), (unsigned)BH);
    CUDA_LAUNCH(grid, FLASH_SM90_THREADS, L::ALLOC, stream, flash_forward_sm90_kernel<D, CAUSAL>)(tm_q, tm_k, tm_v,
                                                                                                  prm);
    CUDA_LAUNCH_CHECK();
    return 0;
}

extern "C" int flash_forward_sm90(const FlashForward *p, cudaStream_t stream) {
    if (p->d != 64 && p->d != 128) {
        fprintf(stderr, "gptrain: flash_forward_sm90: head size d=%d unsupported (64 or 128)\n", p->d);
        return -1;
    }
    if (p->T < 1 || p->B <= 0 || p->H <= 0) {
        fprintf(stderr, "gptrain: flash_forward_sm90: bad shape B=%d H=%d T=%d (each must be >= 1)\n", p->B, p->H,
                p->T);
        return -1;
    }
    if ((long long)p->B * p->H > 65535) {   // grid.y
        fprintf(stderr, "gptrain: flash_forward_sm90: B*H=%lld exceeds 65535\n", (long long)p->B * p->H);
        return -1;
    }
    // Inputs: head-major (strides all 0, or exactly [B*H][T][d]'s), or token-major (sb = T*st: the sequences' tokens
    // one after another, as the model's qkv), rows and heads 16-byte aligned for TMA.
    const FlashStrides *s = &p->in_strides;
    const int given = s->sb || s->sh || s->st;
    const int head_major = !given || (s->st == p->d && s->sh == (long long)p->T * p->d &&
                                      s->sb == (long long)p->H * p->T * p->d);
    const int token_major = !head_major && s->sb == (long long)p->T * s->st && s->st % 8 == 0 && s->sh % 8 == 0 &&
                            s->sh >= p->d && s->st >= (long long)p->H * s->sh && s->st % s->sh == 0;
    if (!head_major && !token_major) {
        fprintf(stderr, "gptrain: flash_forward_sm90: input strides %lld, %lld, %lld: expected head-major [B*H][T][d] "
                "or token-major (sb = T*st, st a multiple of sh, rows 16-byte aligned)\n", s->sb, s->sh, s->st);
        return -1;
    }
    if (((uintptr_t)p->q | (uintptr_t)p->k | (uintptr_t)p->v) % 16) {
        fprintf(stderr, "gptrain: flash_forward_sm90: q, k, v must be 16-byte aligned for TMA\n");
        return -1;
    }
    int dev = 0, major = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    if (major != 9) {
        fprintf(stderr, "gptrain: flash_forward_sm90: needs a compute capability 9.x GPU (this one is %d.x)\n", major);
        return -1;
    }
    FlashSm90Params prm;
    prm.o = p->o;
    prm.o16 = p->o16;
    prm.sb = p->o_strides.sb;
    prm.sh = p->o_strides.sh;
    prm.st = p->o_strides.st;
    prm.lse = p->lse;
    prm.H = p->H;
    prm.T = p->T;
    prm.scale_log2 = (float)(1.4426950408889634 / sqrt((double)p->d));
    prm.o_vec2 = (p->o16 ? (uintptr_t)p->o16 % 4 == 0 : (uintptr_t)p->o % 8 == 0) && prm.sb % 2 == 0 &&
                 prm.sh % 2 == 0 && prm.st % 2 == 0;
    prm.token_major = token_major;
    // The one place the run-time head size and mask pick a specialised kernel.
    if (p->d == 64)
        return p->causal ? flash_forward_sm90_launch<64, true>(p, prm, stream)
                         : flash_forward_sm90_launch<64, false>(p, prm, stream);
    return p->causal ? flash_forward_sm90_launch<128, true>(p, prm, stream)
                     : flash_forward_sm90_launch<128, false>(p, prm, stream);
}
