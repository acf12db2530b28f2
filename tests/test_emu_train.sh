#!/bin/sh
# test_emu_train.sh: `gptrain train --device cuda` end to end on the emulated GPU (build/emu/gptrain, `make emu`), on
# the micro model: the GPU cases every real GPU runs (tests/gpu/train_cases.sh: against the CPU, recompute, NCCL with
# one rank, TF32/bf16, flash and naive attention, --deterministic, sampling), then what only the emulator can show
# on any machine: the device line (an unknown GPU: MFU n/a, never a made-up number), a checkpoint and a resume that
# is bit-exact on the GPU path, --cpu-affinity against a made-up sysfs, the out-of-memory message on a small device,
# no device at all, and data
# parallelism through NCCL: 2 and 4 ranks x 1 emulated GPU under mpirun against 1 rank with the whole batch (fp32,
# and bf16 gradients averaged in bf16), also when the launcher gives no local rank (MPICH), where each rank must still
# find its own GPU; ZeRO-1 (2 and 4 ranks, fp32 and bf16) byte-identical to plain data parallelism, its checkpoint
# and resume, and its memory per rank as `gptrain info` plans it; a 2-rank checkpoint and resume byte-identical to
# the straight run; a rank killed mid-run ends
# the job with a message, never a hang.
. tests/lib.sh
G=build/emu/gptrain
if [ ! -x "$G" ]; then
    bad "build/emu/gptrain" "missing (make emu builds it)"
    finish
    exit 1
fi
head -c 200000 data/tinyshakespeare/input.txt >"$T/small.txt"
$G prepare --input "$T/small.txt" --out "$T/data" >/dev/null
STEPS=6
RUN="--data $T/data --preset micro --batch 4 --seq-len 32 --steps $STEPS --eval-every 3 --eval-steps 2 --print-every 3"
. tests/gpu/train_cases.sh

# The self-check before the first step: every op of the run against the CPU reference, one line with the worst error
# per op family (a wrong kernel is refused: tests/test_emu_bugs.sh plants one); --self-check off skips it.
sc=$(grep "^self-check: passed, [0-9]* outputs of every op the run uses" "$T/g.out")
echo "$sc" | grep -qE "encoder [0-9.e-]+, layernorm [0-9.e-]+, matmul [0-9.e-]+, attention [0-9.e-]+, gelu/residual/dropout [0-9.e-]+, classifier [0-9.e-]+, adamw/norm [0-9.e-]+$" \
    && $G train $RUN --steps 1 --device cuda --self-check off --out "$T/nosc" >"$T/nosc.out" 2>&1 \
    && ! grep -q "self-check" "$T/nosc.out" \
    && ok "GPU run: $sc; --self-check off skips it" || bad "self-check line" "'$sc'; $(grep self-check "$T/nosc.out")"
# The device line and the peak table's unknown-GPU path.
grep -q "^device: cuda: gptrain emulated GPU (sm_90)" "$T/g.out" && grep -q "no peak-FLOPS entry for this GPU" "$T/g.out" \
    && grep -E "^ +$STEPS/$STEPS " "$T/g.out" | grep -q " n/a " \
    && ok "the emulated GPU is named as such; MFU and HFU print n/a (no datasheet peak)" \
    || bad "emulated device line" "$(grep -E '^device|peak|^ +[0-9]+/' "$T/g.out" | head -5)"

# A checkpoint and a bit-exact resume on the GPU path (3 steps, stop, resume, 3 more = 6 straight).
$G train $RUN --device cuda --precision bf16 --out "$T/st" --log "$T/st.jsonl" >"$T/st.out" 2>&1
$G train $RUN --device cuda --precision bf16 --out "$T/h" --log "$T/h.jsonl" --stop-at-step 3 >"$T/h1.out" 2>&1
$G train $RUN --device cuda --precision bf16 --out "$T/h" --log "$T/h.jsonl" --resume auto >"$T/h2.out" 2>&1
[ "$(losses "$T/st.jsonl")" = "$(losses "$T/h.jsonl")" ] && cmp -s "$T/st/model.bin" "$T/h/model.bin" \
    && grep -q "^resume: " "$T/h2.out" \
    && ok "GPU checkpoint at step 3 + --resume auto = $STEPS straight steps: identical losses, byte-identical model.bin" \
    || bad "GPU resume" "$(losses "$T/st.jsonl") / $(losses "$T/h.jsonl"); $(tail -2 "$T/h2.out")"

# CPU affinity from the GPU's sysfs entry (the emulated GPU is eeee:01:00.0, which no real /sys has): bound to the
# cores its local_cpulist names within what the process may use; none of them usable, an unreadable list, or no
# entry: left as the launcher set it, saying so; --cpu-affinity off: not a word.
P="$T/sys/bus/pci/devices/eeee:01:00.0"
mkdir -p "$P" && echo 0 >"$P/numa_node"
A="$RUN --steps 1 --eval-every 0 --device cuda --out $T/aff"
aff() { printf '%s\n' "$1" >"$P/local_cpulist"; GPTRAIN_SYSFS="$T/sys" $G train $A 2>&1 | grep "^affinity:"; }
a1=$(aff 0); a2=$(aff 1000-1001); a3=$(aff x); a4=$($G train $A 2>&1 | grep "^affinity:")
a5=$(GPTRAIN_SYSFS="$T/sys" $G train $A --cpu-affinity off 2>&1 | grep -c "^affinity:")
echo "$a1" | grep -q "is near CPUs 0 (NUMA node 0): this rank's threads bound to CPUs 0 " \
    && echo "$a2" | grep -q "near CPUs 1000-1001 (NUMA node 0), none of which this process may use" \
    && echo "$a3" | grep -q "cannot parse its local_cpulist 'x': left to the launcher" \
    && echo "$a4" | grep -q "no /sys/bus/pci/devices/eeee:01:00.0/local_cpulist for this rank's GPU" && [ "$a5" = 0 ] \
    && ok "--cpu-affinity: bound to the GPU's local CPUs; left alone (with the reason) when none is usable, the list is unreadable or absent; off: silent" \
    || bad "--cpu-affinity" "$a1 / $a2 / $a3 / $a4 / off: $a5"

# Out of memory on a small device: one line naming what did not fit and what to change.
GPTRAIN_EMU_MEMORY=1M expect_error "out of GPU memory (a 1 MiB emulated device)" 2 \
    "GPU memory: .* needs .* MiB but only .* MiB of 1.0 MiB are free.*use a smaller --batch or --recompute full" \
    $G train $RUN --device cuda --out "$T/oom"
GPTRAIN_EMU_DEVICES=0 expect_error "--device cuda with no GPU at all" 2 "--device cuda: no usable CUDA GPU" \
    $G train $RUN --device cuda --out "$T/none"

# Data parallelism on emulated GPUs: each rank drives its own (GPTRAIN_EMU_DEVICES=2: two GPUs on this node).
if ! command -v mpirun >/dev/null 2>&1 || ! ldd "$G" 2>/dev/null | grep -q libmpi; then
    echo "skip 2 ranks through NCCL: no MPI (mpirun missing or gptrain built without it)"
    finish
    exit $?
fi
export OMPI_MCA_btl_vader_single_copy_mechanism=none
MPI="mpirun --allow-run-as-root --oversubscribe -np 2 -x GPTRAIN_EMU_DEVICES=2"
compare() { /usr/bin/python3 tests/ref/compare_runs.py "$@" --steps 4 --loss-rtol 1e-5 --weights-rms 1e-4; }
D="--data $T/data --preset micro --seq-len 32 --steps 4 --eval-every 0 --eval-steps 1 --shuffle off --device cuda --precision fp32"
GPTRAIN_EMU_DEVICES=2 $MPI $G train $D --batch 2 --out "$T/r2" --log "$T/r2.jsonl" >"$T/r2.out" 2>&1 \
    || bad "2 emulated GPUs under mpirun" "$(tail -3 "$T/r2.out")"
$G train $D --batch 4 --out "$T/r1" --log "$T/r1.jsonl" >"$T/r1.out" 2>&1 || bad "1 rank" "$(tail -3 "$T/r1.out")"
grep -q "ranks: 2 (mpi, gradients over NCCL)" "$T/r2.out" && msg=$(compare "$T/r2.jsonl" "$T/r1.jsonl" "$T/r2/model.bin" "$T/r1/model.bin") \
    && ok "2 ranks x 1 emulated GPU through NCCL (B=2 each) = 1 rank with B=4: $msg" \
    || bad "2 ranks through NCCL vs 1" "$(grep ranks "$T/r2.out"; echo "$msg")"
# The overlapped all-reduce (buckets on NCCL's communication stream while the backward goes on; r2 above) against the
# blocking one after the backward (--comm-overlap off) and against a bucket per layer (--bucket-mb 0.01): the same
# averages of the same gradients, so byte-identical weights; the log carries comm_ms and exposed_comm_ms.
GPTRAIN_EMU_DEVICES=2 $MPI $G train $D --batch 2 --comm-overlap off --out "$T/o2" --log "$T/o2.jsonl" >"$T/o2.out" 2>&1
GPTRAIN_EMU_DEVICES=2 $MPI $G train $D --batch 2 --bucket-mb 0.01 --out "$T/u2" --log "$T/u2.jsonl" >"$T/u2.out" 2>&1
cmp -s "$T/o2/model.bin" "$T/r2/model.bin" && cmp -s "$T/u2/model.bin" "$T/r2/model.bin" \
    && grep -q '"exposed_comm_ms": ' "$T/r2.jsonl" \
    && ok "overlapped NCCL buckets (25 MiB; and one per layer) = the blocking all-reduce after the backward, byte for byte" \
    || bad "overlapped vs blocking NCCL all-reduce" "$(tail -2 "$T/o2.out"; tail -2 "$T/u2.out")"
# bf16 gradients averaged in bf16 over NCCL (--grad-dtype bf16: half the bytes) against 1 rank with the whole batch
# in the same precision: the ranks' gradients are rounded to bf16 before the average where the one rank rounds the
# whole sum once, so they differ by bf16 rounding, and AdamW moves a weight by at most about lr per step in these first
# steps (|mhat / sqrt(vhat)| <= 1): after 4 warm-up steps (lr 1e-5 .. 4e-5) at most 2 x sum(lr) = 2e-4, 0.0036 of the
# weights' rms (0.056); the losses within 1e-3.
DB="--data $T/data --preset micro --seq-len 32 --steps 4 --eval-every 0 --eval-steps 1 --shuffle off --device cuda --precision bf16 --grad-dtype bf16"
GPTRAIN_EMU_DEVICES=2 $MPI $G train $DB --batch 2 --out "$T/b2" --log "$T/b2.jsonl" >"$T/b2.out" 2>&1 \
    || bad "2 emulated GPUs, bf16 gradients" "$(tail -3 "$T/b2.out")"
$G train $DB --batch 4 --out "$T/b1" --log "$T/b1.jsonl" >"$T/b1.out" 2>&1 || bad "1 rank, bf16 gradients" "$(tail -3 "$T/b1.out")"
grep -q "grads [0-9.]* MiB (bf16)" "$T/b2.out" \
    && msg=$(/usr/bin/python3 tests/ref/compare_runs.py "$T/b2.jsonl" "$T/b1.jsonl" "$T/b2/model.bin" "$T/b1/model.bin" \
             --steps 4 --loss-rtol 1e-3 --weights-rms 0.0036) \
    && ok "2 ranks x 1 emulated GPU, bf16 gradients averaged in bf16 over NCCL = 1 rank with B=4: $msg" \
    || bad "bf16 gradients over NCCL vs 1 rank" "$(grep 'memory (' "$T/b2.out"; echo "$msg")"
# A launcher that names no local rank (MPICH sets none of Open MPI's variables): dist.c asks MPI which ranks share
# the node, so the two ranks take GPUs 0 and 1 (NCCL refuses two ranks on one GPU).
$MPI sh -c 'unset OMPI_COMM_WORLD_LOCAL_RANK OMPI_COMM_WORLD_NODE_RANK; exec "$@"' sh $G train $D --batch 2 \
    --out "$T/m2" --log "$T/m2.jsonl" >"$T/m2.out" 2>&1 && cmp -s "$T/m2/model.bin" "$T/r2/model.bin" \
    && ok "no local rank from the launcher: each rank still drives its own GPU (same weights as with Open MPI's)" \
    || bad "local rank without launcher variables" "$(grep -i "duplicate\|error" "$T/m2.out" | head -3)"
# 4 ranks x 1 emulated GPU (B=1 each) against the same 1 rank with B=4: the same bound as 2 ranks.
MPI4="mpirun --allow-run-as-root --oversubscribe -np 4 -x GPTRAIN_EMU_DEVICES=4"
GPTRAIN_EMU_DEVICES=4 $MPI4 $G train $D --batch 1 --out "$T/r4" --log "$T/r4.jsonl" >"$T/r4.out" 2>&1 \
    || bad "4 emulated GPUs under mpirun" "$(tail -3 "$T/r4.out")"
grep -q "ranks: 4 (mpi, gradients over NCCL)" "$T/r4.out" \
    && msg=$(compare "$T/r4.jsonl" "$T/r1.jsonl" "$T/r4/model.bin" "$T/r1/model.bin") \
    && ok "4 ranks x 1 emulated GPU through NCCL (B=1 each) = 1 rank with B=4: $msg" \
    || bad "4 ranks through NCCL vs 1" "$(grep ranks "$T/r4.out"; echo "$msg")"
# ZeRO-1 on emulated GPUs (--zero 1): the gradients reduce-scattered, AdamW on each rank's shard of the moments (and
# of the fp32 master under bf16), the weights the ops read all-gathered. The same averages and the same update of
# every element, so byte-identical to plain data parallelism: fp32 (the master whole), bf16 with bf16 gradients (the
# master sharded; the bf16 copy rounded stochastically by the element's index in the whole buffer), 4 ranks.
$MPI $G train $D --batch 2 --zero 1 --out "$T/z2" --log "$T/z2.jsonl" >"$T/z2.out" 2>&1
$MPI $G train $DB --batch 2 --zero 1 --out "$T/zb2" --log "$T/zb2.jsonl" >"$T/zb2.out" 2>&1
GPTRAIN_EMU_DEVICES=4 $MPI4 $G train $D --batch 1 --zero 1 --out "$T/z4" --log "$T/z4.jsonl" >"$T/z4.out" 2>&1
cmp -s "$T/z2/model.bin" "$T/r2/model.bin" && cmp -s "$T/zb2/model.bin" "$T/b2/model.bin" \
    && cmp -s "$T/z4/model.bin" "$T/r4/model.bin" && [ "$(losses "$T/z2.jsonl")" = "$(losses "$T/r2.jsonl")" ] \
    && [ "$(losses "$T/zb2.jsonl")" = "$(losses "$T/b2.jsonl")" ] \
    && grep -q "^zero: optimizer state sharded over 2 ranks" "$T/zb2.out" \
    && grep -q "^zero: optimizer state sharded over 4 ranks" "$T/z4.out" \
    && ok "ZeRO-1 on 2 and 4 emulated GPUs (fp32; bf16 with bf16 gradients) = plain data parallelism: same losses, model.bin byte for byte" \
    || bad "ZeRO-1 vs plain on emulated GPUs" "$(tail -2 "$T/z2.out"; tail -2 "$T/zb2.out"; tail -2 "$T/z4.out")"
# Its checkpoint: every rank's shards gathered into rank 0's file (through the bf16 gradient buffer, half a shard at a
# time), resumed onto the same rank count: the straight ZeRO-1 run's model byte for byte.
$MPI $G train $DB --batch 2 --zero 1 --out "$T/zc" --stop-at-step 2 >"$T/zc1.out" 2>&1
$MPI $G train $DB --batch 2 --zero 1 --out "$T/zc" --resume auto >"$T/zc2.out" 2>&1
# The file holds the whole state, as a plain run's does: resumed without --zero it continues the plain run.
$MPI $G train $DB --batch 2 --out "$T/zp" --resume "$T/zc/checkpoints/ckpt_00000002.bin" >"$T/zp.out" 2>&1
cmp -s "$T/zc/model.bin" "$T/zb2/model.bin" && grep -q "^resume: " "$T/zc2.out" && cmp -s "$T/zp/model.bin" "$T/b2/model.bin" \
    && ok "ZeRO-1 (bf16, 2 emulated GPUs): stop at step 2 + --resume auto = the straight run, model.bin byte for byte; resumed without --zero = the plain run" \
    || bad "ZeRO-1 resume" "$(tail -2 "$T/zc1.out"; tail -2 "$T/zc2.out")"
# What one rank allocates is what `gptrain info --gpus 2 --zero 1` plans for it (the same model, batch and attention).
for run in z2 zb2; do
    v=$(sed -n 's/^model: .* V=\([0-9]*\) .*/\1/p' "$T/$run.out")
    at=$(sed -n 's/^batch: .*; attention \([a-z]*\).*/\1/p' "$T/$run.out")
    pr=fp32; gd=fp32; [ $run = zb2 ] && pr=bf16 && gd=bf16
    alloc=$(sed -n 's/^memory plan: .* allocated through the backend: \([0-9.]*\) MiB/\1/p' "$T/$run.out")
    plan=$($G info --preset micro --vocab-size "$v" --batch 2 --seq-len 32 --precision $pr --grad-dtype $gd \
           --attention "$at" --gpus 2 --zero 1 | sed -n 's/^  total, --recompute none *\([0-9.]*\) MiB.*/\1/p')
    full=$($G info --preset micro --vocab-size "$v" --batch 2 --seq-len 32 --precision $pr --grad-dtype $gd \
           --attention "$at" | sed -n 's/^  total, --recompute none *\([0-9.]*\) MiB.*/\1/p')
    [ -n "$alloc" ] && [ "$alloc" = "$plan" ] && [ "$plan" != "$full" ] \
        && ok "ZeRO-1 $pr: one rank allocates $alloc MiB = info --gpus 2 --zero 1 (without --zero: $full MiB)" \
        || bad "ZeRO-1 $pr memory per rank" "allocated '$alloc' MiB, info --zero 1 '$plan' MiB, without '$full' MiB"
done
# A checkpoint and resume with 2 ranks on emulated GPUs: stop after step 2, resume, = the straight 2-rank run.
$MPI $G train $D --batch 2 --out "$T/c2" --stop-at-step 2 >"$T/c2a.out" 2>&1
$MPI $G train $D --batch 2 --out "$T/c2" --resume auto >"$T/c2b.out" 2>&1
cmp -s "$T/c2/model.bin" "$T/r2/model.bin" && grep -q "^resume: " "$T/c2b.out" \
    && ok "2 ranks on emulated GPUs: stop at step 2 + --resume auto = the straight run, model.bin byte for byte" \
    || bad "2-rank GPU resume" "$(tail -2 "$T/c2a.out"; tail -2 "$T/c2b.out")"
# One rank dies mid-run (once rank 0 has printed a step): the job ends (a message naming the rank), never a hang.
$MPI $G train $D --batch 2 --steps 100000 --print-every 1 --out "$T/k" >"$T/k.out" 2>&1 &
kill_rank "rank 1 of 2 on emulated GPUs killed mid-run" $! "$T/k" "$T/k.out" " 2/100000 " 60
finish
