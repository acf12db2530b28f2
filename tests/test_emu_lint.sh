#!/bin/sh
# test_emu_lint.sh: the emulated build sees every kernel's shared memory. Under the emulator `__shared__` is a static
# in the section "emu_shared", which the emulator gives each block afresh, poisons and race-checks; host C++
# compilers silently drop that section attribute from the statics of template instantiations, which would leave a
# template kernel's `__shared__` one unchecked static for every block. So every function-local static of the
# emulated kernel objects must be in emu_shared, but for the host-side ones listed here. The check is shown to fail
# on a template kernel with a `__shared__` array.
. tests/lib.sh
if [ ! -f build/emu/libgptrain.a ]; then
    bad "build/emu/libgptrain.a" "missing (make emu builds it)"
    finish
    exit 1
fi
# Host-side function-local statics (not shared memory): the driver entry point flash_sm90.cu looks up once.
ALLOW='flash_sm90_encode_fn()::fn'
# lost OBJECT...: the demangled function-local statics outside emu_shared.
lost() {
    for o in "$@"; do
        objdump -t "$o" | awk '$NF ~ /^_ZZ/ && $4 != "emu_shared" {print $NF}'
    done | c++filt | grep -v -x -F "$ALLOW"
}
out=$(lost build/emu/kernels/cuda/*.o)
[ -z "$out" ] && ok "emulated kernels: every __shared__ variable is in emu_shared ($(ls build/emu/kernels/cuda/*.o | wc -l) objects)" \
    || bad "emulated kernels: __shared__ outside emu_shared (use CUDA_DYNAMIC_SMEM in templates)" "$out"
cat >"$T/k.cu" <<'CU'
#include "cuda_common.h"
template <class T> __global__ static void k(T *o) {
    __shared__ float s[32];
    s[threadIdx.x] = 1.0f;
    __syncthreads();
    o[threadIdx.x] = s[31 - threadIdx.x];
}
void launch_k(float *o) { CUDA_LAUNCH(1, 32, 0, 0, k<float>)(o); }
CU
if make -s emu-compile SRC="$T/k.cu" OBJ="$T/k.o" >"$T/k.build" 2>&1; then
    out=$(lost "$T/k.o")
    echo "$out" | grep -q "k<float>(float\*)::s" && ok "the check finds a template kernel's __shared__ array: $out" \
        || bad "the check on a template kernel's __shared__" "found: '$out'"
else
    bad "compile the template kernel" "$(tail -3 "$T/k.build")"
fi
finish
