# train_cases.sh: gptrain end to end on a GPU, sourced by tests/gpu/test_gpu_train.sh (a real GPU) and
# tests/test_emu_train.sh (the emulated GPU of build/emu/), which set G (the gptrain binary), RUN (the run's data and
# model flags, STEPS steps) and T (a scratch folder). Cases: a fp32 run on --device cuda against the same run on the
# CPU (per-step losses within 1e-4 relative; also with --dropout 0.2), recompute full against none (identical losses), the run through NCCL
# with one rank (GPTRAIN_NCCL_WORLD1=1) against without (identical; "skip" where NCCL is not built in), the device
# line and the predicted vs measured memory printed, TF32 and bf16 within 2e-2 of fp32, --grad-dtype bf16 too (its
# gradients half the fp32 bytes), --attention flash (bf16)
# against naive (losses within 2e-2), its header line, --deterministic on repeating exactly, and sampling on the GPU.
losses() { /usr/bin/python3 -c "import json,sys; print(' '.join(repr(json.loads(l)['loss']) for l in open(sys.argv[1])))" "$1"; }
close() { /usr/bin/python3 -c "import sys; a=[float(x) for x in sys.argv[1].split()]; b=[float(x) for x in sys.argv[2].split()]; sys.exit(not (len(a) == len(b) == int(sys.argv[4]) and max(abs(x-y)/abs(y) for x,y in zip(a,b)) <= float(sys.argv[3])))" "$1" "$2" "$3" "$4"; }

$G train $RUN --device cuda --precision fp32 --log "$T/g.jsonl" --out "$T/g" >"$T/g.out" 2>&1 \
    && grep -q "^device: cuda:" "$T/g.out" && grep -q "device memory: predicted" "$T/g.out" \
    && ok "train --device cuda: $(grep '^device: cuda' "$T/g.out" | head -c 150)" || bad "GPU run" "$(tail -3 "$T/g.out")"
grep "device memory" "$T/g.out"
$G train $RUN --device cpu --log "$T/c.jsonl" --out "$T/c" >"$T/c.out" 2>&1
close "$(losses "$T/g.jsonl")" "$(losses "$T/c.jsonl")" 1e-4 $STEPS && ok "fp32: GPU losses = CPU losses within 1e-4 over $STEPS steps" \
    || bad "GPU vs CPU" "$(losses "$T/g.jsonl") / $(losses "$T/c.jsonl")"
# --dropout: the GPU draws the CPU's masks (kernels/dropout_mask.h), so the runs agree as without dropout; and the
# dropped run is another run.
$G train $RUN --device cuda --precision fp32 --dropout 0.2 --log "$T/gd.jsonl" --out "$T/gd" >/dev/null 2>&1
$G train $RUN --device cpu --dropout 0.2 --log "$T/cd.jsonl" --out "$T/cd" >/dev/null 2>&1
close "$(losses "$T/gd.jsonl")" "$(losses "$T/cd.jsonl")" 1e-4 $STEPS && [ "$(losses "$T/gd.jsonl")" != "$(losses "$T/g.jsonl")" ] \
    && ok "--dropout 0.2: GPU losses = CPU losses within 1e-4 (the same masks), and not the undropped run's" \
    || bad "GPU vs CPU with dropout" "$(losses "$T/gd.jsonl") / $(losses "$T/cd.jsonl")"
$G train $RUN --device cuda --precision fp32 --recompute full --log "$T/r.jsonl" --out "$T/r" >/dev/null 2>&1
[ "$(losses "$T/g.jsonl")" = "$(losses "$T/r.jsonl")" ] && ok "GPU --recompute full = none, identical losses" \
    || bad "GPU recompute" "$(losses "$T/r.jsonl")"
GPTRAIN_NCCL_WORLD1=1 $G train $RUN --device cuda --precision fp32 --log "$T/n.jsonl" --out "$T/n" >"$T/n.out" 2>&1
if ! grep -q "gradients over NCCL" "$T/n.out"; then
    # Without NCCL built in, GPTRAIN_NCCL_WORLD1 changes nothing: the comparison below would compare a run with itself.
    echo "skip NCCL with one rank: this gptrain has no NCCL ($(grep '^device: cuda' "$T/n.out" | grep -o 'ranks: .*'))"
else
    [ "$(losses "$T/g.jsonl")" = "$(losses "$T/n.jsonl")" ] && ok "NCCL with one rank = no distribution, identical losses" \
        || bad "NCCL world 1" "$(tail -2 "$T/n.out")"
fi
for p in tf32 bf16; do
    $G train $RUN --device cuda --precision $p --log "$T/$p.jsonl" --out "$T/$p" >/dev/null 2>&1
    close "$(losses "$T/$p.jsonl")" "$(losses "$T/c.jsonl")" 2e-2 $STEPS && ok "--precision $p: losses within 2e-2 of fp32 CPU" \
        || bad "--precision $p" "$(losses "$T/$p.jsonl")"
done
# --grad-dtype bf16: the gradients in bf16 (half the bytes the header reports for fp32 gradients), losses within 2e-2
$G train $RUN --device cuda --precision bf16 --grad-dtype bf16 --log "$T/bg.jsonl" --out "$T/bg" >"$T/bg.out" 2>&1
gb=$(grep -o "grads [0-9.]* MiB (bf16)" "$T/bg.out" | grep -o "[0-9.]*" | head -1)
gf=$(grep -o "grads [0-9.]* MiB (fp32)" "$T/g.out" | grep -o "[0-9.]*" | head -1)
close "$(losses "$T/bg.jsonl")" "$(losses "$T/c.jsonl")" 2e-2 $STEPS && [ -n "$gb" ] && [ -n "$gf" ] \
    && /usr/bin/python3 -c "import sys; sys.exit(abs(2 * float(sys.argv[1]) - float(sys.argv[2])) > 0.011)" "$gb" "$gf" \
    && ok "--grad-dtype bf16: gradients $gb MiB (fp32: $gf MiB), losses within 2e-2 of fp32 CPU" \
    || bad "--grad-dtype bf16" "$gb / $gf MiB; $(losses "$T/bg.jsonl"); $(tail -2 "$T/bg.out")"
# flash attention in the trainer (bf16): its losses track naive attention's, the header names it, and with
# --deterministic on two runs repeat exactly (the atomic dQ sum is replaced by the fixed-order pass)
BF="$RUN --device cuda --precision bf16"
$G train $BF --attention naive --log "$T/an.jsonl" --out "$T/an" >"$T/an.out" 2>&1
$G train $BF --attention flash --log "$T/af.jsonl" --out "$T/af" >"$T/af.out" 2>&1 \
    && grep -q "; attention flash" "$T/af.out" && ok "--attention flash: run header: $(grep -o 'recompute.*attention flash.*' "$T/af.out")" \
    || bad "--attention flash run" "$(grep -i attention "$T/af.out" | head -2; tail -2 "$T/af.out")"
close "$(losses "$T/af.jsonl")" "$(losses "$T/an.jsonl")" 2e-2 $STEPS \
    && ok "--attention flash vs naive (bf16): losses within 2e-2 relative over $STEPS steps" \
    || bad "flash vs naive" "$(losses "$T/af.jsonl") / $(losses "$T/an.jsonl")"
for i in 1 2; do
    $G train $BF --attention flash --deterministic on --log "$T/fd$i.jsonl" --out "$T/fd$i" >"$T/fd$i.out" 2>&1
done
l1=$(losses "$T/fd1.jsonl"); l2=$(losses "$T/fd2.jsonl")
[ "$(echo "$l1" | wc -w)" -eq $STEPS ] && [ "$l1" = "$l2" ] && grep -q "; attention flash (deterministic)" "$T/fd1.out" \
    && ok "--attention flash --deterministic on: two runs, identical losses" \
    || bad "flash deterministic" "$l1 / $l2 $(tail -2 "$T/fd1.out")"
$G sample --from "$T/g" --device cuda --tokens 50 --prompt "ROMEO:" >"$T/s" 2>&1 && [ "$(head -c -1 "$T/s" | wc -c)" -eq 56 ] \
    && ok "sample on the GPU" || bad "GPU sample" "$(cat "$T/s")"
