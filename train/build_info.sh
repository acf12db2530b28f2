#!/bin/sh
# build_info.sh OUT NVCC CUDA_ARCH: writes OUT, the header train/version.c reads (the commit, and the toolchain versions that
# only the build knows), and rewrites it only when its text changes, so a commit recompiles one file.
out=$1 nvcc=$2 archs=$(echo "$3" | tr ' ' '\n' | sed -n 's/.*code=\(sm_[0-9a-z]*\).*/\1/p' | tr '\n' ' ' | sed 's/ $//')
commit=$(git describe --always --dirty --abbrev=7 2>/dev/null || echo unknown)
mpi=$(mpirun --version 2>/dev/null | head -1 | sed 's/^mpirun (\(.*\)) /\1 /')
cuda=
[ -n "$nvcc" ] && cuda=$("$nvcc" --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/nvcc \1/p' | head -1)
text=$(printf '#define GPTRAIN_COMMIT "%s"\n#define GPTRAIN_MPI_VERSION "%s"\n#define GPTRAIN_NVCC_VERSION "%s"\n#define GPTRAIN_CUDA_ARCHS "%s"\n' \
    "$commit" "$mpi" "$cuda" "$archs")
mkdir -p "$(dirname "$out")"
[ -f "$out" ] && [ "$(cat "$out")" = "$text" ] || printf '%s\n' "$text" >"$out"
