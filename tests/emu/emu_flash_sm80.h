/*
 * emu_flash_sm80.h: the PTX wrappers of kernels/cuda/flash_sm80.cu (cp.async, ldmatrix, mma.sync) for the emulated
 * device, same names and signatures; included by that file under GPTRAIN_EMU in place of its inline PTX. The
 * instructions themselves are emulated in emu_ptx.cc from the PTX ISA, not from the kernel's comments.
 */
#ifndef GPTRAIN_EMU_FLASH_SM80_H
#define GPTRAIN_EMU_FLASH_SM80_H

#include <stdint.h>

namespace emu {
// cp.async.{cg,ca}.shared.global: queued per thread, performed when a wait_group leaves its group behind.
void cp_async(void *dst, const void *src, int bytes, bool valid, const char *file, int line);
void cp_async_commit();
void cp_async_wait(int n);
// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16 and mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32.
void ldmatrix_x4(uint32_t r[4], const void *p, bool trans, const char *file, int line);
void mma_m16n8k16_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1, const char *file, int line);
}  // namespace emu

static inline void flash_cp_async16(void *dst, const void *src, bool valid) {
    emu::cp_async(dst, src, 16, valid, __FILE__, __LINE__);
}
static inline void flash_cp_async4(void *dst, const void *src, bool valid) {
    emu::cp_async(dst, src, 4, valid, __FILE__, __LINE__);
}
static inline void flash_cp_async_commit() { emu::cp_async_commit(); }
template <int N>
static inline void flash_cp_async_wait() {
    emu::cp_async_wait(N);
}
static inline void flash_ldsm_x4(uint32_t r[4], const __nv_bfloat16 *p) {
    emu::ldmatrix_x4(r, p, false, __FILE__, __LINE__);
}
static inline void flash_ldsm_x4_trans(uint32_t r[4], const __nv_bfloat16 *p) {
    emu::ldmatrix_x4(r, p, true, __FILE__, __LINE__);
}
static inline void flash_mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    emu::mma_m16n8k16_bf16(c, a, b0, b1, __FILE__, __LINE__);
}

#endif
