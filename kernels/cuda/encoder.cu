/*
 * encoder.cu: the token + position embedding on the GPU (ops.h op_encoder_*; reference kernels/cpu/encoder.c).
 *
 * Forward: out[n] = wte[tok[n]] + wpe[n % T], one block per row (no 64-bit division per element). Bytes: read
 * 2·N·C·e + N·4, write N·C·e (e the compute dtype's bytes); no FLOPs; at B=16 T=1024 C=768 in fp32 (150 MiB) the
 * H100 floor (3.35 TB/s) is ~47 µs, in bf16 half that.
 *
 * Backward, deterministic and parallel, each sum in token order exactly as the CPU reference adds it (so the fp32
 * results are bitwise the CPU's):
 *   - dwpe[t][c] += dout[b][t][c] for b = 0..B-1: one thread per (t, c), reads coalesced across threads;
 *   - dwte: the rows of equal tokens are summed together. The (token, position) pairs are sorted by a bitonic sort of
 *     64-bit keys token << 32 | position (unique keys, so the order is fixed), in the op's workspace
 *     (ENCODER_WORK_FLOATS); then one block per run of equal tokens (and per 256 channels) walks its positions in
 *     order and writes dwte[token] once. This replaces one thread per channel walking all N rows with a
 *     read-modify-write each (N dependent memory round trips: ~8-16 ms at N = 16K, by the review's estimate).
 *     Sort: log2(P)·(log2(P)+1)/2 compare-exchange passes over P = next power of two >= N keys, all but the
 *     strides >= SORT_TILE in shared memory (N = 16K: 14·15/2 = 105 passes in 10 launches, ~1.5 MB of global
 *     traffic). Sum: read N·C·4 (dout) + N·8 (keys), read+write U·C·4 for U distinct tokens: ~the floor of dout.
 */
#include <math.h>
#include <stdint.h>

#include "cuda_common.h"
#include "ops.h"

#define ENC_THREADS 256
#define SORT_TILE 1024             // keys a block sorts in shared memory (SORT_TILE / 2 threads, 8 KiB)
#define KEY_PAD 0xffffffffffffffffull

template <class T>
__global__ static void encoder_forward_kernel(T *out, const int32_t *tokens, const T *wte, const T *wpe, int Tlen,
                                              int C) {
    const size_t n = blockIdx.x;
    const T *te = wte + (size_t)tokens[n] * C, *pe = wpe + (size_t)(n % Tlen) * C;
    T *o = out + n * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) st(&o[c], f32(te[c]) + f32(pe[c]));
}

template <class T>
static void encoder_forward(void *out, const int32_t *tokens, const void *wte, const void *wpe, int B, int Tlen,
                            int C) {
    CUDA_LAUNCH(B * Tlen, ENC_THREADS, 0, 0, encoder_forward_kernel<T>)((T *)out, tokens, (const T *)wte,
                                                                        (const T *)wpe, Tlen, C);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_encoder_forward(Backend *be, void *out, const int32_t *tokens, const void *wte,
                                     const void *wpe, int B, int T, int C) {
    if (!B || !T) return;
    CUDA_BY_DTYPE(be, encoder_forward, out, tokens, wte, wpe, B, T, C);
}

// dwpe (t, c) += dout[b][t][c], b in order.
template <class T, class G>
__global__ static void encoder_backward_wpe_kernel(G *dwpe, const T *dout, int B, int Tlen, int C) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)Tlen * C) return;
    float s = f32(dwpe[i]);
    for (int b = 0; b < B; b++) s += f32(dout[(size_t)b * Tlen * C + i]);
    st(&dwpe[i], s);
}

// keys[i] = tok[i] << 32 | i for i < N, KEY_PAD up to P.
__global__ static void sort_keys_kernel(unsigned long long *keys, const int32_t *tokens, int N, size_t P) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < P) keys[i] = i < (size_t)N ? (unsigned long long)(uint32_t)tokens[i] << 32 | i : KEY_PAD;
}

// One compare-exchange of the bitonic network: elements i and i + j (i's bit j clear), ascending when i's bit k is 0.
__device__ static inline void bitonic_exchange(unsigned long long *a, unsigned long long *b, int ascending) {
    const unsigned long long x = *a, y = *b;
    if ((x > y) == (ascending != 0)) { *a = y; *b = x; }
}

// Global pass for a stride j >= SORT_TILE of stage k: one thread per pair.
__global__ static void bitonic_global_kernel(unsigned long long *keys, size_t j, size_t k, size_t P) {
    const size_t p = (size_t)blockIdx.x * blockDim.x + threadIdx.x;   // pair index
    if (p >= P / 2) return;
    const size_t i = 2 * j * (p / j) + p % j;
    bitonic_exchange(&keys[i], &keys[i + j], (i & k) == 0);
}

// In shared memory, on one tile of SORT_TILE keys: every stage k from k_first to k_last (powers of two), each with
// the strides j < SORT_TILE that stay inside the tile (all of them when k <= SORT_TILE). k_first = 2, k_last =
// SORT_TILE sorts each tile; k_first = k_last = k > SORT_TILE finishes stage k after its global passes.
__global__ static void bitonic_tile_kernel(unsigned long long *keys, size_t k_first, size_t k_last) {
    __shared__ unsigned long long s[SORT_TILE];
    const size_t base = (size_t)blockIdx.x * SORT_TILE;
    for (int i = threadIdx.x; i < SORT_TILE; i += blockDim.x) s[i] = keys[base + i];
    __syncthreads();
    for (size_t k = k_first; k <= k_last; k <<= 1) {
        for (size_t j = (k < SORT_TILE ? k : SORT_TILE) / 2; j > 0; j >>= 1) {
            for (int p = threadIdx.x; p < SORT_TILE / 2; p += blockDim.x) {
                const int i = (int)(2 * j * (p / j) + p % j);
                bitonic_exchange(&s[i], &s[i + j], ((base + i) & k) == 0);
            }
            __syncthreads();
        }
    }
    for (int i = threadIdx.x; i < SORT_TILE; i += blockDim.x) keys[base + i] = s[i];
}

// One block per sorted position s that starts a run of equal tokens (the others exit), channels
// [blockIdx.y * blockDim.x, ...): dwte[token][c] += dout[n][c] over the run's positions n in increasing order.
template <class T, class G>
__global__ static void encoder_backward_wte_kernel(G *dwte, const T *dout,
                                                   const unsigned long long *__restrict__ keys, int N, int C) {
    const int s = blockIdx.x;
    const uint32_t tok = (uint32_t)(keys[s] >> 32);
    if (s > 0 && (uint32_t)(keys[s - 1] >> 32) == tok) return;
    const int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float acc = f32(dwte[(size_t)tok * C + c]);
    for (int r = s; r < N && (uint32_t)(keys[r] >> 32) == tok; r++)
        acc += f32(dout[(size_t)(uint32_t)keys[r] * C + c]);
    st(&dwte[(size_t)tok * C + c], acc);
}

template <class T, class G>
static void encoder_backward_wpe(Grad *dwpe, const void *dout, int B, int Tlen, int C) {
    CUDA_LAUNCH(blocks_for((size_t)Tlen * C, ENC_THREADS), ENC_THREADS, 0, 0, encoder_backward_wpe_kernel<T, G>)(
        (G *)dwpe, (const T *)dout, B, Tlen, C);
    CUDA_LAUNCH_CHECK();
}

template <class T, class G>
static void encoder_backward_wte(Grad *dwte, const void *dout, const unsigned long long *keys, int N, int C) {
    const dim3 grid(N, blocks_for((size_t)C, ENC_THREADS));
    CUDA_LAUNCH(grid, ENC_THREADS, 0, 0, encoder_backward_wte_kernel<T, G>)((G *)dwte, (const T *)dout, keys, N, C);
    CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_encoder_backward(Backend *be, Grad *dwte, Grad *dwpe, float *work, const void *dout,
                                      const int32_t *tokens, int B, int T, int C) {
    const int N = B * T;
    if (!N) return;
    CUDA_BY_DTYPES(be, encoder_backward_wpe, dwpe, dout, B, T, C);
    // P >= SORT_TILE keys, a power of two (so every tile is whole) below 2 * max(N, SORT_TILE): its 2 * P floats fit
    // ENCODER_WORK_FLOATS(N) = 4 * N + 2 * SORT_TILE.
    size_t P = SORT_TILE;
    while (P < (size_t)N) P <<= 1;
    unsigned long long *keys = (unsigned long long *)work;
    CUDA_LAUNCH(blocks_for(P, ENC_THREADS), ENC_THREADS, 0, 0, sort_keys_kernel)(keys, tokens, N, P);
    CUDA_LAUNCH_CHECK();
    const int tiles = (int)(P / SORT_TILE);
    CUDA_LAUNCH(tiles, SORT_TILE / 2, 0, 0, bitonic_tile_kernel)(keys, (size_t)2, (size_t)SORT_TILE);
    CUDA_LAUNCH_CHECK();
    for (size_t k = 2 * SORT_TILE; k <= P; k <<= 1) {
        for (size_t j = k / 2; j >= SORT_TILE; j >>= 1) {
            CUDA_LAUNCH(blocks_for(P / 2, ENC_THREADS), ENC_THREADS, 0, 0, bitonic_global_kernel)(keys, j, k, P);
            CUDA_LAUNCH_CHECK();
        }
        CUDA_LAUNCH(tiles, SORT_TILE / 2, 0, 0, bitonic_tile_kernel)(keys, k, k);
        CUDA_LAUNCH_CHECK();
    }
    CUDA_BY_DTYPES(be, encoder_backward_wte, dwte, dout, keys, N, C);
}
