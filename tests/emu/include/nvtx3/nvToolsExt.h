/*
 * nvtx3/nvToolsExt.h (emulated device): NVTX ranges are for timeline tools, which the emulated device has none of;
 * pushes and pops only keep their nesting (checked by the emulator's exit report would add nothing), so both are
 * no-ops returning the depth as NVTX does.
 */
#ifndef GPTRAIN_EMU_NVTOOLSEXT_H
#define GPTRAIN_EMU_NVTOOLSEXT_H

static int emu_nvtx_depth;
static inline int nvtxRangePushA(const char *message) {
    (void)message;
    return emu_nvtx_depth++;
}
static inline int nvtxRangePop(void) { return emu_nvtx_depth > 0 ? --emu_nvtx_depth : -2; }

#endif
