#!/bin/sh
# test_dist.sh: data parallelism over MPI on CPU buffers (mpirun -np 2, one thread per rank). 2 ranks x batch B
# against 1 rank x batch 2B, which read exactly the same tokens: per-step losses and validation losses within 1e-6
# relative (as logged, 6 decimals), final weights within 1e-3 of their rms (measured 5e-5 to 1.2e-4 depending on the
# build). Not bitwise: the all-reduce adds two half-batch gradient sums where one rank sums all rows in one GEMM, and
# AdamW divides each element by its own running magnitude, so the last bits of a near-cancelling sum grow to ~1e-6
# absolute over 20 steps. Also: the per-layer overlapped all-reduce equal to the blocking one; gradient
# accumulation; ZeRO-1 byte-identical to plain data parallelism; a 2-rank checkpoint resumed by 2 ranks byte-identical
# to the straight run, and refused by 1 rank; killing one rank ends the job with a message naming it, within a
# timeout. Prints "skipped: no MPI" where gptrain was built without MPI or mpirun is missing. Run from the repository
# root after `make`.
. tests/lib.sh
if ! command -v mpirun >/dev/null 2>&1 || ! ldd "$G" 2>/dev/null | grep -q libmpi; then
    echo "skipped: no MPI (mpirun missing or gptrain built without it; apt-get install libopenmpi-dev openmpi-bin)"
    echo "0 passed, 0 failed"
    exit 0
fi
# Containers often forbid the cross-memory attach Open MPI's shared-memory transport uses; copy-in/out works anywhere.
export OMPI_MCA_btl_vader_single_copy_mechanism=none
# Open MPI never frees some of its own memory (libmpi, libopen-pal, and the components it dlopens, whose frames
# LeakSanitizer cannot name, so no suppression can match them): in a sanitizer build (make test-sanitize) the ranks
# run with every ASan and UBSan check but the leak check. Elsewhere the variable is inert.
MPI="mpirun --allow-run-as-root --oversubscribe -x ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 -np 2"
if ! $MPI true >"$T/mpi-probe" 2>&1; then
    echo "skipped: mpirun cannot start 2 processes on this machine: $(head -c 200 "$T/mpi-probe")"
    echo "0 passed, 0 failed"
    exit 0
fi
head -c 60000 data/tinyshakespeare/input.txt >"$T/small.txt"
$G prepare --input "$T/small.txt" --out "$T/data" >/dev/null 2>&1 || bad "prepare" "failed"
RUN="--data $T/data --preset micro --seq-len 32 --steps 20 --warmup-steps 2 --eval-every 10 --eval-steps 4 --threads 1"

# compare A.jsonl B.jsonl A.bin B.bin: losses and val losses (rel) and weights (max |a-b| / rms(a)).
compare() { /usr/bin/python3 tests/ref/compare_runs.py "$@" --steps 20 --loss-rtol 1e-6 --val-rtol 1e-6 --weights-rms 1e-3; }

$MPI $G train $RUN --batch 2 --out "$T/r2" --log "$T/r2.jsonl" >"$T/r2.out" 2>&1 || bad "2-rank run" "$(tail -3 "$T/r2.out")"
$G train $RUN --batch 4 --out "$T/r1" --log "$T/r1.jsonl" >"$T/r1.out" 2>&1 || bad "1-rank run" "$(tail -3 "$T/r1.out")"
grep -q "ranks: 2 (mpi)" "$T/r2.out" && [ "$(grep -c '^ *20/20' "$T/r2.out")" -eq 1 ] \
    && ok "2 ranks over MPI: rank 0 alone prints (one final row)" || bad "2-rank output" "$(grep ranks "$T/r2.out")"
msg=$(compare "$T/r2.jsonl" "$T/r1.jsonl" "$T/r2/model.bin" "$T/r1/model.bin") \
    && ok "2 ranks x B=2 = 1 rank x B=4: $msg" || bad "2 ranks vs 1" "$msg"

# The bucketed, overlapped all-reduce (default) against one blocking all-reduce after the backward: the same sums.
$MPI $G train $RUN --batch 2 --comm-overlap off --out "$T/o2" --log "$T/o2.jsonl" >"$T/o2.out" 2>&1
cmp -s "$T/o2/model.bin" "$T/r2/model.bin" && grep -q '"exposed_comm_ms"' "$T/r2.jsonl" \
    && ok "--comm-overlap on (per-layer buckets during the backward) = off, byte for byte; comm_ms and exposed_comm_ms logged" \
    || bad "comm overlap" "model.bin differs or no exposed_comm_ms"

$MPI $G train $RUN --batch 1 --grad-accum 2 --out "$T/a2" --log "$T/a2.jsonl" >"$T/a2.out" 2>&1
$G train $RUN --batch 2 --grad-accum 2 --out "$T/a1" --log "$T/a1.jsonl" >"$T/a1.out" 2>&1
msg=$(compare "$T/a2.jsonl" "$T/a1.jsonl" "$T/a2/model.bin" "$T/a1/model.bin") \
    && ok "gradient accumulation: 2 ranks x B=1 x 2 = 1 rank x B=2 x 2: $msg" || bad "grad-accum" "$msg"

$MPI $G train $RUN --batch 2 --zero 1 --out "$T/z2" --log "$T/z2.jsonl" >"$T/z2.out" 2>&1 || bad "ZeRO-1 run" "$(tail -3 "$T/z2.out")"
msg=$(compare "$T/z2.jsonl" "$T/r2.jsonl" "$T/z2/model.bin" "$T/r2/model.bin") \
    && ok "ZeRO-1 (2 ranks) = plain data parallelism: $msg" || bad "ZeRO-1" "$msg"
cmp -s "$T/z2/model.bin" "$T/r2/model.bin" && ok "ZeRO-1 weights are byte-identical to plain data parallelism" \
    || bad "ZeRO-1 bitwise" "model.bin differs"

# ZeRO-1's checkpoint: the moments' shards gathered from both ranks into rank 0's file; resumed with --zero 1 onto
# 2 ranks: the straight ZeRO-1 run byte for byte.
$MPI $G train $RUN --batch 2 --zero 1 --out "$T/zc" --stop-at-step 10 >"$T/zc1.out" 2>&1
$MPI $G train $RUN --batch 2 --zero 1 --out "$T/zc" --resume auto >"$T/zc2.out" 2>&1
cmp -s "$T/zc/model.bin" "$T/z2/model.bin" && grep -q "^resume: " "$T/zc2.out" \
    && ok "ZeRO-1 (2 ranks): stop at step 10 + resume = the straight ZeRO-1 run, byte for byte" \
    || bad "ZeRO-1 resume" "$(tail -2 "$T/zc1.out"; tail -2 "$T/zc2.out")"

# Checkpoint and resume with 2 ranks: the same reduction order, so byte-identical.
$MPI $G train $RUN --batch 2 --out "$T/c2" --stop-at-step 10 >"$T/c2a.out" 2>&1
$MPI $G train $RUN --batch 2 --out "$T/c2" --resume auto >"$T/c2b.out" 2>&1
cmp -s "$T/c2/model.bin" "$T/r2/model.bin" && ok "2 ranks: stop at step 10 + resume = the straight 2-rank run, byte for byte" \
    || bad "2-rank resume" "$(tail -2 "$T/c2b.out")"
$G train $RUN --batch 2 --out "$T/c2" --resume "$T/c2/checkpoints/ckpt_00000010.bin" >"$T/c1.out" 2>"$T/c1.err"
grep -q "ranks 2 (checkpoint) vs 1 (now)" "$T/c1.err" && ok "a 2-rank checkpoint resumed by 1 rank is refused: $(cat "$T/c1.err")" \
    || bad "rank-count refusal" "$(cat "$T/c1.err")"

# One rank dies: the job ends within the timeout and the message names the rank.
$MPI $G train $RUN --batch 2 --steps 100000 --eval-every 0 --out "$T/k" >"$T/k.out" 2>&1 &
kill_rank "rank 1 killed" $! "$T/k" "$T/k.out" "" 30
finish
