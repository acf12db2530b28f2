/*
 * flash.h: our flash-attention kernels (FlashAttention-2's tiling and online softmax, Dao 2023; FlashAttention-3's
 * Hopper techniques, Shah et al. 2024), written from the papers. No T x T buffer: the forward keeps, per query row,
 * the running max and sum of exp and writes O and the row's logsumexp; the backward recomputes the probabilities
 * tile by tile from Q, K and that logsumexp.
 *
 * The raw interface works on bf16 Q, K, V (and dO) in head-major layout [BH][T][d] (row t of head bh at
 * (bh*T + t)*d), fp32 accumulation, and writes its results through strides in fp32 or (O, dK, dV) in bf16, so the
 * model's (B,T,C) and (B,T,3C) buffers are written directly in either compute dtype and the benchmark can pass plain
 * [BH][T][d] arrays. A bf16 result is the fp32 one rounded to nearest even, bit for bit. The seam ops (ops.h
 * op_flash_attention_*) convert the model's qkv into the head-major layout in their workspace and call these.
 *
 * Math, with scale = 1/sqrt(d) and s_ij = scale q_i.k_j (j <= i when causal):
 *   forward   m_i = max_j s_ij, l_i = sum_j exp(s_ij - m_i), lse_i = m_i + log l_i, o_i = sum_j exp(s_ij - lse_i) v_j
 *   backward  p_ij = exp(s_ij - lse_i), D_i = do_i.o_i (computed by the caller, fp32), dp_ij = do_i.v_j,
 *             ds_ij = p_ij (dp_ij - D_i); dv_j = sum_i p_ij do_i; dk_j = scale sum_i ds_ij q_i;
 *             dq_i = scale sum_j ds_ij k_j
 * A row with no admissible key (never happens for causal self-attention, where j = i is always admissible) is not
 * supported.
 *
 * Two paths, picked at run time by compute capability (flash_kernel_path):
 *   sm80: mma.sync.m16n8k16 bf16 tensor-core instructions, ldmatrix, cp.async double buffering (Ampere and later,
 *         so it also runs on Hopper);
 *   sm90: the Hopper forward: wgmma from shared memory, TMA bulk tensor copies completing on mbarriers, a producer
 *         warp loading K/V tiles while consumer warpgroups compute (warp specialization). The backward on Hopper
 *         uses the sm80 kernels.
 * Determinism: the forward and the dK/dV pass are deterministic by construction (each output tile is owned by one
 * thread block, reduced in a fixed order). dQ has two modes: atomic (fp32 atomicAdd into dq from the K/V-block
 * pass: fastest, the order of additions varies run to run) or deterministic (a second pass over query blocks that
 * recomputes P and dS and owns each dq tile: bitwise repeatable, about 1.4x the backward's FLOPs).
 */
#ifndef GPTRAIN_FLASH_H
#define GPTRAIN_FLASH_H

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Strides in elements of a [B][H][T][d] tensor: element (b, h, t, i) is at p + b*sb + h*sh + t*st + i. The inputs
// take them too (in_strides, do_strides; all zero means head-major, sb = H*T*d, sh = T*d, st = d), so the sm80
// kernels read the model's interleaved (B,T,3C) qkv and (B,T,C) dO in place; their rows must be 16-byte aligned
// (cp.async). The sm90 forward takes only the head-major layout (its TMA maps are 3D over [B*H][T][d]).
typedef struct FlashStrides {
    long long sb, sh, st;
} FlashStrides;

typedef struct FlashForward {
    const __nv_bfloat16 *q, *k, *v;  // bf16 through in_strides
    FlashStrides in_strides;         // all 0: head-major [B*H][T][d]
    float *o;                        // fp32 through o_strides (unused when o16 is set)
    __nv_bfloat16 *o16;              // non-NULL: O in bf16 here through o_strides instead
    FlashStrides o_strides;
    float *lse;                      // [B*H][T] fp32 (natural log)
    int B, H, T, d;                  // d in {64, 128} (the sm80 path also 32, 80, 96)
    int causal;
} FlashForward;

typedef struct FlashBackward {
    const __nv_bfloat16 *q, *k, *v, *dout;  // bf16 through in_strides (q, k, v) and do_strides (dout)
    FlashStrides in_strides, do_strides;    // all 0: head-major [B*H][T][d]
    const float *lse;                       // [B*H][T], from the forward
    const float *delta;                     // [B*H][T], D_i = do_i . o_i in fp32
    float *dq, *dk, *dv;                    // fp32 through the strides below; all three are WRITTEN (=)
    __nv_bfloat16 *dk16, *dv16;             // non-NULL: dK, dV in bf16 here (dk_strides, dv_strides) instead; dQ
                                            // stays fp32 (the atomic mode adds into it)
    FlashStrides dq_strides, dk_strides, dv_strides;
    int B, H, T, d;
    int causal;
    int deterministic;                      // 1: the dQ pass over query blocks; 0: atomicAdd into dq
} FlashBackward;

typedef enum { FLASH_PATH_AUTO = 0, FLASH_PATH_SM80 = 1, FLASH_PATH_SM90 = 2 } FlashPath;

// Whether head dim d is supported on a path (0/1).
int flash_supports(FlashPath path, int d);
// The path for the current device: sm90 on compute capability 9.0 (when d is supported there), else sm80. The
// environment variable GPTRAIN_FLASH_PATH=sm80|sm90 overrides (tests run both paths on a Hopper GPU).
FlashPath flash_kernel_path(int d);
const char *flash_path_name(FlashPath p);

// Launch on `stream`. Return 0, or -1 when the shape is unsupported (message on stderr naming it).
int flash_forward(const FlashForward *p, FlashPath path, cudaStream_t stream);
int flash_backward(const FlashBackward *p, FlashPath path, cudaStream_t stream);

// Per path entry points (flash_sm80.cu, flash_sm90.cu).
int flash_forward_sm80(const FlashForward *p, cudaStream_t stream);
int flash_backward_sm80(const FlashBackward *p, cudaStream_t stream);
int flash_forward_sm90(const FlashForward *p, cudaStream_t stream);

#ifdef __cplusplus
}

// A result element: into the bf16 buffer when there is one, else the fp32 one (both kernels' epilogues).
__device__ static inline void flash_store(float *f, __nv_bfloat16 *h, long long i, float v) {
    if (h) h[i] = __float2bfloat16(v);
    else f[i] = v;
}
#endif

#endif
