/*
 * emu_flash_sm90.h: the PTX wrappers of kernels/cuda/flash_sm90.cu (mbarriers, TMA tensor copies, wgmma, the fences
 * and setmaxnreg) for the emulated device, same names and signatures; included by that file under GPTRAIN_EMU in
 * place of its inline PTX. Emulated in emu_ptx.cc from the PTX ISA and CUDA's tensor-map documentation.
 */
#ifndef GPTRAIN_EMU_FLASH_SM90_H
#define GPTRAIN_EMU_FLASH_SM90_H

#include <stdint.h>

#include <cuda.h>

namespace emu {
void mbar_init(uint32_t bar, uint32_t count);
void mbar_arrive(uint32_t bar, uint32_t tx_bytes);   // arrive.expect_tx when tx_bytes > 0
void mbar_wait(uint32_t bar, uint32_t parity);
void tma_load_3d(uint32_t dst, const CUtensorMap *map, int c0, int c1, int c2, uint32_t bar);
void wgmma(float *acc, int n, const uint32_t *a, uint64_t desc_a, uint64_t desc_b, int trans_b, int accumulate,
           const char *file, int line);
}  // namespace emu

static inline void mbar_init(uint32_t bar, uint32_t count) { emu::mbar_init(bar, count); }
static inline void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) { emu::mbar_arrive(bar, bytes); }
static inline void mbar_arrive(uint32_t bar) { emu::mbar_arrive(bar, 0); }
static inline void mbar_wait(uint32_t bar, uint32_t parity) { emu::mbar_wait(bar, parity); }
static inline void tma_load_3d(uint32_t dst, const CUtensorMap *map, int c0, int c1, int c2, uint32_t bar) {
    emu::tma_load_3d(dst, map, c0, c1, c2, bar);
}
// wgmma.mma_async completes here when the warpgroup's last thread issues it; the kernel reads its accumulators
// only after wgmma.wait_group, so the order it sees is the hardware's.
static inline void wgmma_m64n128k16_ss(float (&d)[64], uint64_t desc_a, uint64_t desc_b, int accumulate) {
    emu::wgmma(d, 128, NULL, desc_a, desc_b, 0, accumulate, __FILE__, __LINE__);
}
static inline void wgmma_m64n128k16_rs(float (&d)[64], const uint32_t (&a)[4], uint64_t desc_b, int accumulate) {
    emu::wgmma(d, 128, a, 0, desc_b, 1, accumulate, __FILE__, __LINE__);
}
static inline void wgmma_m64n64k16_rs(float (&d)[32], const uint32_t (&a)[4], uint64_t desc_b, int accumulate) {
    emu::wgmma(d, 64, a, 0, desc_b, 1, accumulate, __FILE__, __LINE__);
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
