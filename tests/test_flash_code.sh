#!/bin/sh
# test_flash_code.sh: the flash-attention kernels as the compiler built them, checked without a GPU. `make flash-code`
# writes the PTX of each device pass and ptxas's resource report; this test asserts that
#   - the sm80 kernels' PTX (both passes) holds the instructions the file comment promises: mma.sync m16n8k16 with
#     bf16 inputs and fp32 accumulation, ldmatrix (plain and .trans), cp.async with its commit/wait groups;
#   - the sm90 forward's sm_90a PTX holds wgmma (m64n128k16 from shared memory and from registers), TMA tensor copies
#     completing on mbarriers, mbarrier waits and setmaxnreg (warp specialization), and its sm_80 pass holds none of
#     them, only the trap stub;
#   - every flash kernel is compiled for both sm_80 and sm_90a, the expected number of kernels is there, and none has
#     a stack frame or spills (0 bytes spill stores and loads), the reason the tile shapes are what they are.
# Prints "skipped: no CUDA toolkit" on a build without the CUDA backend.
. tests/lib.sh
if ! make -s flash-code >"$T/make" 2>&1; then
    bad "make flash-code" "$(tail -5 "$T/make")"
    finish
    exit 1
fi
if grep -q "skipped" "$T/make"; then
    echo "skipped: no CUDA toolkit (this build has no CUDA backend)"
    finish
    exit 0
fi
P=build/flash-code
R=build/bench/attention-ptxas.log

# has FILE NAME PATTERN...: every fixed-string PATTERN occurs in FILE
has() {
    f=$1 name=$2; shift 2
    for pat in "$@"; do
        grep -qF -e "$pat" "$f" || { bad "$name" "$f lacks '$pat'"; return; }
    done
    ok "$name"
}
for a in sm_80 sm_90a; do
    has "$P/flash_sm80.$a.ptx" "flash_sm80 PTX ($a): mma.sync bf16/fp32, ldmatrix (.trans too), cp.async groups" \
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32" "ldmatrix.sync.aligned.m8n8.x4.shared.b16" \
        "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16" "cp.async.cg.shared.global" "cp.async.commit_group" \
        "cp.async.wait_group"
done
has "$P/flash_sm90.sm_90a.ptx" "flash_sm90 PTX (sm_90a): wgmma SS and RS, TMA on mbarriers, setmaxnreg" \
    "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16" "wgmma.fence.sync.aligned" "wgmma.commit_group.sync.aligned" \
    "wgmma.wait_group.sync.aligned" "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes" \
    "mbarrier.try_wait.parity.shared::cta.b64" "mbarrier.arrive.expect_tx.shared::cta.b64" \
    "setmaxnreg.dec.sync.aligned.u32" "setmaxnreg.inc.sync.aligned.u32" "m64n64k16"
n=$(grep -cE "wgmma|cp\.async\.bulk|setmaxnreg" "$P/flash_sm90.sm_80.ptx")
[ "$n" -eq 0 ] && grep -q "trap;" "$P/flash_sm90.sm_80.ptx" \
    && ok "flash_sm90 PTX (sm_80): no Hopper instruction, the trap stub only" \
    || bad "flash_sm90 sm_80 pass" "$n Hopper instructions, or no trap"

# The resource report: one "Compiling entry function 'NAME' for 'ARCH'" line per kernel and pass, followed by its
# "N bytes stack frame, N bytes spill stores, N bytes spill loads" line.
awk '/Compiling entry function/ { split($0, q, "'"'"'"); name = q[2]; arch = q[4] }
     /bytes stack frame/ { print arch, name, $1, $5, $9 }' "$R" >"$T/res"
count() { grep -c "$1" "$T/res"; }
for a in sm_80 sm_90a; do
    # sm80 file: 5 head sizes x (forward, dK/dV, dQ) + the dq zeroing kernel = 16 per pass
    n=$(grep "^$a " "$T/res" | grep -c "sm80")
    [ "$n" -eq 16 ] && ok "flash_sm80: 16 kernels compiled for $a (5 head sizes x 3 + dq zeroing)" \
        || bad "flash_sm80 kernels for $a" "$n, expected 16"
done
n=$(grep "^sm_90a " "$T/res" | grep -c "flash_forward_sm90_kernel")
[ "$n" -eq 4 ] && ok "flash_sm90: 4 forward kernels for sm_90a (d 64, 128 x causal, not)" \
    || bad "flash_sm90 kernels" "$n, expected 4"
total=$(wc -l <"$T/res")
spills=$(awk '$3 != 0 || $4 != 0 || $5 != 0' "$T/res")
[ "$total" -ge 40 ] && [ -z "$spills" ] \
    && ok "no flash kernel has a stack frame or spills ($total kernel x pass entries in the ptxas report)" \
    || bad "spills" "$total entries; with stack or spills: $spills"
finish
