/*
 * version.c: what `gptrain --version` and the first line of every run say: the version, the commit it was built
 * from, the build's options (OpenBLAS, MPI, CUDA and its device architectures, NCCL) and the compiler.
 */
#include <stdio.h>

#include "build/build_info.h"   // written by train/build_info.sh at every make
#include "gptrain.h"

#define GPTRAIN_VERSION "0.1.0"

#if defined(__clang__)
#define GPTRAIN_CC "clang " __clang_version__
#elif defined(__GNUC__)
#define GPTRAIN_CC "gcc " __VERSION__
#else
#define GPTRAIN_CC "cc"
#endif

const char *gptrain_version(void) {
    static char line[512];
    if (line[0]) return line;
    const char *mpi = GPTRAIN_MPI_VERSION[0] ? " (" GPTRAIN_MPI_VERSION ")" : "";
#ifndef GPTRAIN_MPI
    mpi = "";
#endif
    snprintf(line, sizeof line, "gptrain %s (commit %s): OpenBLAS %s, MPI %s%s, CUDA %s, NCCL %s; %s%s", GPTRAIN_VERSION,
             GPTRAIN_COMMIT,
#ifdef GPTRAIN_OPENBLAS
             "yes",
#else
             "no",
#endif
#ifdef GPTRAIN_MPI
             "yes",
#else
             "no",
#endif
             mpi,
#if defined(GPTRAIN_EMU)
             "emulated (tests/emu: correctness only, no GPU)",
#elif defined(GPTRAIN_CUDA)
             "yes (" GPTRAIN_CUDA_ARCHS "; " GPTRAIN_NVCC_VERSION "; cuBLAS, cuBLASLt)",
#else
             "no",
#endif
#ifdef GPTRAIN_NCCL
#ifdef GPTRAIN_EMU
             "emulated",
#else
             "yes",
#endif
#else
             "no",
#endif
             GPTRAIN_CC,
#if defined(__SANITIZE_ADDRESS__)
             "; ASan + UBSan"
#else
             ""
#endif
    );
    return line;
}
