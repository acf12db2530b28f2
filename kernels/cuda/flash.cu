/*
 * flash.cu: the flash-attention seam ops on the GPU (ops.h op_flash_attention_*) and the path dispatch of flash.h.
 *
 * The model keeps its activations (fp32 or bf16, the compute dtype) with q, k, v interleaved per token (B,T,3C).
 * In bf16 the kernels read them in place through strides (each head's row is HS contiguous bf16, 16-byte aligned;
 * the sm90 forward through TMA maps over the tokens), and dO too; only D_t = dO_t . O_t needs a pass of its own
 * (reading dO and O). fp32 activations need converting: then the op first packs qkv into bf16 head-major
 * [B*NH][T][HS] tiles in its workspace (one pass: 3·N·C·4 bytes read, 6·N·C written, against the attention's
 * 4·N·T·C FLOPs: negligible once T is in the hundreds), and the backward packs qkv again and dO with D. The kernels write their
 * results through strides straight into the model's buffers, in fp32 or bf16 (O, dK, dV; flash.h), but for dQ in
 * bf16: the kernels sum it in fp32 (the atomic mode adds into it), so it goes to fp32 staging in the workspace,
 * (B,T,C), and one more pass rounds it into the model's dqkv (N·C·(4 + 4 + 2) bytes more traffic per backward).
 *
 * Workspace layout (FLASH_WORK_FLOATS floats, aligned up to 256 bytes inside): in fp32, q, k, v, dO as bf16
 * [B*NH][T][HS] (N·C bf16 each), then D (B*NH*T fp32); in bf16, D, then dQ's fp32 staging (N·C, 256-byte aligned).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_common.h"
#include "flash.h"
#include "ops.h"

// ---- path selection ----

extern "C" int flash_supports(FlashPath path, int d) {
    if (path == FLASH_PATH_SM90) return d == 64 || d == 128;
    return FLASH_GPU_HEAD_SIZE_OK(d);
}

extern "C" const char *flash_path_name(FlashPath p) {
    return p == FLASH_PATH_SM90 ? "sm90 (wgmma + TMA)" : p == FLASH_PATH_SM80 ? "sm80 (mma.sync)" : "auto";
}

extern "C" FlashPath flash_kernel_path(int d) {
    const char *env = getenv("GPTRAIN_FLASH_PATH");
    if (env && !strcmp(env, "sm80")) return FLASH_PATH_SM80;
    if (env && !strcmp(env, "sm90")) return FLASH_PATH_SM90;
    int dev = 0, major = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    return major == 9 && flash_supports(FLASH_PATH_SM90, d) ? FLASH_PATH_SM90 : FLASH_PATH_SM80;
}

extern "C" int flash_forward(const FlashForward *p, FlashPath path, cudaStream_t stream) {
    if (path == FLASH_PATH_AUTO) path = flash_kernel_path(p->d);
    return path == FLASH_PATH_SM90 ? flash_forward_sm90(p, stream) : flash_forward_sm80(p, stream);
}

extern "C" int flash_backward(const FlashBackward *p, FlashPath path, cudaStream_t stream) {
    (void)path;   // one backward: the sm80 kernels, on Ampere and Hopper alike
    return flash_backward_sm80(p, stream);
}

// ---- layout conversion ----

// qkv (B,T,3C) in the compute dtype -> q, k, v bf16 [B*NH][T][HS]; one thread per (b, t, c) of each of the three.
template <class T>
__global__ static void flash_pack_qkv_kernel(bf16 *q, bf16 *k, bf16 *v, const T *qkv, int B, int Tlen, int C,
                                             int NH) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;   // over B*T*C
    if (i >= (size_t)B * Tlen * C) return;
    const int HS = C / NH, c = (int)(i % C), h = c / HS, e = c % HS;
    const size_t n = i / C;
    const int t = (int)(n % Tlen), b = (int)(n / Tlen);
    const T *row = qkv + n * 3 * C;
    const size_t dst = (((size_t)b * NH + h) * Tlen + t) * HS + e;
    q[dst] = __float2bfloat16(f32(row[c]));
    k[dst] = __float2bfloat16(f32(row[C + c]));
    v[dst] = __float2bfloat16(f32(row[2 * C + c]));
}

// dout (B,T,C) -> bf16 [B*NH][T][HS] (unless dob is NULL: the kernels read dO in place), and
// delta[(b*NH + h)*T + t] = dO_t . O_t over the head's HS channels in fp32. One warp per (b, t, h) row.
template <class T>
__global__ static void flash_pack_dout_kernel(bf16 *dob, float *delta, const T *dout, const T *out, int B, int Tlen,
                                              int C, int NH) {
    const int HS = C / NH;
    const size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;   // over B*T*NH, h fastest
    const int lane = threadIdx.x % 32;
    if (row >= (size_t)B * Tlen * NH) return;
    const int h = (int)(row % NH);
    const size_t n = row / NH;
    const int t = (int)(n % Tlen), b = (int)(n / Tlen);
    const T *dy = dout + n * C + (size_t)h * HS, *y = out + n * C + (size_t)h * HS;
    bf16 *dst = dob ? dob + (((size_t)b * NH + h) * Tlen + t) * HS : NULL;
    float s = 0.0f;
    for (int e = lane; e < HS; e += 32) {
        s += f32(dy[e]) * f32(y[e]);
        if (dst) dst[e] = __float2bfloat16(f32(dy[e]));
    }
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) delta[((size_t)b * NH + h) * Tlen + t] = s;
}

// dQ's fp32 staging (B,T,C) rounded into the q part of the model's bf16 dqkv (B,T,3C).
__global__ static void flash_unstage_dq_kernel(bf16 *dqkv, const float *dq, size_t n, int C) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;   // over B*T*C
    if (i < n) dqkv[i / C * 3 * C + i % C] = __float2bfloat16(dq[i]);
}

template <class T>
static void flash_pack_qkv(bf16 *q, bf16 *k, bf16 *v, const void *qkv, int B, int Tlen, int C, int NH) {
    const size_t nc = (size_t)B * Tlen * C;
    CUDA_LAUNCH((unsigned)((nc + 255) / 256), 256, 0, 0, flash_pack_qkv_kernel<T>)(q, k, v, (const T *)qkv, B, Tlen, C,
                                                                                   NH);
    CUDA_LAUNCH_CHECK();
}

template <class T>
static void flash_pack_dout(bf16 *dob, float *delta, const void *dout, const void *out, int B, int Tlen, int C,
                            int NH) {
    const size_t rows = (size_t)B * Tlen * NH;
    CUDA_LAUNCH((unsigned)((rows + 7) / 8), 256, 0, 0, flash_pack_dout_kernel<T>)(dob, delta, (const T *)dout,
                                                                                  (const T *)out, B, Tlen, C, NH);
    CUDA_LAUNCH_CHECK();
}

static void flash_unstage_dq(void *dqkv, const float *dq, size_t n, int C) {
    CUDA_LAUNCH(blocks_for(n, 256), 256, 0, 0, flash_unstage_dq_kernel)((bf16 *)dqkv, dq, n, C);
    CUDA_LAUNCH_CHECK();
}

typedef struct FlashWork {
    bf16 *q, *k, *v, *dout;
    float *delta;
    float *stage;   // dQ in fp32 before it is rounded into a bf16 dqkv (NULL in fp32)
} FlashWork;

static FlashWork flash_work(Backend *be, float *work, int B, int T, int C, int NH) {
    const size_t nc = (size_t)B * T * C;
    uintptr_t a = ((uintptr_t)work + 255) & ~(uintptr_t)255;   // 64 floats of slack in FLASH_WORK_FLOATS
    FlashWork w;
    memset(&w, 0, sizeof w);
    if (be->dtype == DTYPE_F32) {   // the packed bf16 copies, then D
        w.q = (bf16 *)a;
        w.k = w.q + nc;
        w.v = w.k + nc;
        w.dout = w.v + nc;
        w.delta = (float *)(w.dout + nc);   // 4·N·C bf16 = 8·N·C bytes: 4-byte aligned
    } else {   // bf16: the kernels read the model's buffers; D, then dQ's staging (64 more floats of slack)
        w.delta = (float *)a;
        w.stage = (float *)(((uintptr_t)(w.delta + (size_t)B * NH * T) + 255) & ~(uintptr_t)255);
    }
    return w;
}

static void flash_check_shape(const char *what, int C, int NH) {
    const int HS = C / NH;
    if (!flash_supports(FLASH_PATH_SM80, HS)) {   // the trainer checks this at start-up (resolve_attention)
        fprintf(stderr, "gptrain: internal error at %s:%d: flash %s: head size %d unsupported\n", __FILE__, __LINE__,
                what, HS);
        abort();
    }
}

extern "C" void cuda_flash_attention_forward(Backend *be, void *out, float *lse, float *work, const void *qkv,
                                             int B, int T, int C, int NH) {
    flash_check_shape("forward", C, NH);
    if (!B || !T) return;
    const int HS = C / NH;
    FlashWork w = flash_work(be, work, B, T, C, NH);
    const FlashPath path = flash_kernel_path(HS);
    FlashForward p;
    memset(&p, 0, sizeof p);
    // In bf16 the kernels read q, k, v in place: row (b, h, t) at qkv + b*T*3C + h*HS + t*3C (token-major)
    if (be->dtype == DTYPE_BF16) {
        p.q = (const bf16 *)qkv;
        p.k = p.q + C;
        p.v = p.q + 2 * C;
        p.in_strides = {(long long)T * 3 * C, HS, 3LL * C};
    } else {
        CUDA_BY_DTYPE(be, flash_pack_qkv, w.q, w.k, w.v, qkv, B, T, C, NH);
        p.q = w.q;
        p.k = w.k;
        p.v = w.v;
    }
    // (b, h, t, i) at out + b*T*C + h*HS + t*C + i, in the compute dtype
    if (be->dtype == DTYPE_BF16) p.o16 = (bf16 *)out;
    else p.o = (float *)out;
    p.o_strides.sb = (long long)T * C;
    p.o_strides.sh = HS;
    p.o_strides.st = C;
    p.lse = lse;
    p.B = B;
    p.H = NH;
    p.T = T;
    p.d = HS;
    p.causal = 1;
    if (flash_forward(&p, path, 0)) {
        fprintf(stderr, "gptrain: internal error at %s:%d: flash forward refused B=%d T=%d C=%d NH=%d\n", __FILE__,
                __LINE__, B, T, C, NH);
        abort();
    }
}

extern "C" void cuda_flash_attention_backward(Backend *be, void *dqkv, float *work, const void *dout,
                                              const void *qkv, const void *out, const float *lse, int B, int T,
                                              int C, int NH) {
    flash_check_shape("backward", C, NH);
    if (!B || !T) return;
    const int HS = C / NH;
    FlashWork w = flash_work(be, work, B, T, C, NH);
    FlashBackward p;
    memset(&p, 0, sizeof p);
    if (be->dtype == DTYPE_BF16) {   // the (sm80) backward reads q, k, v and dO in place; only D needs a pass
        CUDA_BY_DTYPE(be, flash_pack_dout, (bf16 *)NULL, w.delta, dout, out, B, T, C, NH);
        p.q = (const bf16 *)qkv;
        p.k = p.q + C;
        p.v = p.q + 2 * C;
        p.dout = (const bf16 *)dout;
        p.in_strides = {(long long)T * 3 * C, HS, 3LL * C};
        p.do_strides = {(long long)T * C, HS, (long long)C};
    } else {
        CUDA_BY_DTYPE(be, flash_pack_qkv, w.q, w.k, w.v, qkv, B, T, C, NH);
        CUDA_BY_DTYPE(be, flash_pack_dout, w.dout, w.delta, dout, out, B, T, C, NH);
        p.q = w.q;
        p.k = w.k;
        p.v = w.v;
        p.dout = w.dout;
    }
    p.lse = lse;
    p.delta = w.delta;
    // dq, dk, dv interleave in dqkv (B,T,3C): (b, h, t, i) of dq at dqkv + b*T*3C + t*3C + h*HS + i, dk at +C, dv +2C
    const FlashStrides st = {(long long)T * 3 * C, HS, 3LL * C};
    p.dq_strides = p.dk_strides = p.dv_strides = st;
    if (w.stage) {   // bf16: dK, dV straight into dqkv, dQ into the (B,T,C) staging
        p.dk16 = (bf16 *)dqkv + C;
        p.dv16 = (bf16 *)dqkv + 2 * C;
        p.dq = w.stage;
        p.dq_strides.sb = (long long)T * C;
        p.dq_strides.st = C;
    } else {
        p.dq = (float *)dqkv;
        p.dk = (float *)dqkv + C;
        p.dv = (float *)dqkv + 2 * C;
    }
    p.B = B;
    p.H = NH;
    p.T = T;
    p.d = HS;
    p.causal = 1;
    p.deterministic = be->deterministic;
    if (flash_backward(&p, FLASH_PATH_AUTO, 0)) {
        fprintf(stderr, "gptrain: internal error at %s:%d: flash backward refused B=%d T=%d C=%d NH=%d\n", __FILE__,
                __LINE__, B, T, C, NH);
        abort();
    }
    if (w.stage) flash_unstage_dq(dqkv, w.stage, (size_t)B * T * C, C);
}
