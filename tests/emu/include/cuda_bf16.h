/*
 * cuda_bf16.h (emulated device): bfloat16 as the CUDA math API defines it: 1 sign, 8 exponent, 7 mantissa bits;
 * float -> bf16 rounds to nearest even (__float2bfloat16, __float2bfloat16_rn, the constructor) or toward zero
 * (_rz), and any NaN becomes the canonical 0x7FFF; bf16 -> float is exact. Arithmetic (__hadd, __hmul, __hfma, the
 * operators) computes in fp32 and rounds once to nearest even, which is what the bf16 instructions return for these
 * operations. __nv_bfloat162 holds two: .x in the low 16 bits, .y in the high.
 */
#ifndef GPTRAIN_EMU_CUDA_BF16_H
#define GPTRAIN_EMU_CUDA_BF16_H

#include <stdint.h>
#include <string.h>

#include "cuda_runtime.h"

static inline unsigned short emu_f32_bits_to_bf16_rn(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fff;   // NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (unsigned short)(u >> 16);
}
static inline float emu_bf16_bits_to_f32(unsigned short h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

struct __nv_bfloat16 {
    unsigned short __x;
    __nv_bfloat16() = default;
    __nv_bfloat16(float f) : __x(emu_f32_bits_to_bf16_rn(f)) {}
    __nv_bfloat16(double f) : __x(emu_f32_bits_to_bf16_rn((float)f)) {}
    __nv_bfloat16(int i) : __x(emu_f32_bits_to_bf16_rn((float)i)) {}
    operator float() const { return emu_bf16_bits_to_f32(__x); }
};
struct __nv_bfloat162 {
    __nv_bfloat16 x, y;
};
typedef __nv_bfloat16 nv_bfloat16;
typedef __nv_bfloat162 nv_bfloat162;

static inline __nv_bfloat16 emu_bf16_from_bits(unsigned short h) {
    __nv_bfloat16 r;
    r.__x = h;
    return r;
}
static inline __nv_bfloat16 __float2bfloat16(float f) { return emu_bf16_from_bits(emu_f32_bits_to_bf16_rn(f)); }
static inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __float2bfloat16(f); }
static inline __nv_bfloat16 __float2bfloat16_rz(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return emu_bf16_from_bits(0x7fff);
    return emu_bf16_from_bits((unsigned short)(u >> 16));
}
static inline float __bfloat162float(__nv_bfloat16 h) { return emu_bf16_bits_to_f32(h.__x); }
static inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
static inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return emu_bf16_from_bits(u); }
static inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
    __nv_bfloat162 r;
    r.x = __float2bfloat16(a);
    r.y = __float2bfloat16(b);
    return r;
}
static inline __nv_bfloat162 __float22bfloat162_rn(float2 f) { return __floats2bfloat162_rn(f.x, f.y); }
static inline float2 __bfloat1622float2(__nv_bfloat162 h) {
    float2 r;
    r.x = __bfloat162float(h.x);
    r.y = __bfloat162float(h.y);
    return r;
}
static inline float __low2float(__nv_bfloat162 h) { return __bfloat162float(h.x); }
static inline float __high2float(__nv_bfloat162 h) { return __bfloat162float(h.y); }
static inline __nv_bfloat162 __halves2bfloat162(__nv_bfloat16 a, __nv_bfloat16 b) {
    __nv_bfloat162 r;
    r.x = a;
    r.y = b;
    return r;
}
static inline __nv_bfloat16 __hadd(__nv_bfloat16 a, __nv_bfloat16 b) { return __float2bfloat16((float)a + (float)b); }
static inline __nv_bfloat16 __hsub(__nv_bfloat16 a, __nv_bfloat16 b) { return __float2bfloat16((float)a - (float)b); }
static inline __nv_bfloat16 __hmul(__nv_bfloat16 a, __nv_bfloat16 b) { return __float2bfloat16((float)a * (float)b); }
static inline __nv_bfloat16 __hfma(__nv_bfloat16 a, __nv_bfloat16 b, __nv_bfloat16 c) {
    return __float2bfloat16(__builtin_fmaf((float)a, (float)b, (float)c));
}
static inline bool __hisnan(__nv_bfloat16 a) { return (a.__x & 0x7fff) > 0x7f80; }

#endif
