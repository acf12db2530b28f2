#!/bin/sh
# test_ckpt.sh: checkpoints end to end. Bit-exact resume (20 steps straight vs 10 + resume + 10, gradient accumulation
# on, shuffled data crossing epochs: identical per-step losses and a byte-identical final model); SIGINT finishes
# the step, writes a checkpoint and exits 130 (SIGTERM: 143), and resuming from it lands on the same weights;
# --keep-last; every
# refusal (another model, another batch shape, a corrupt payload, a corrupt header, a truncated file, a full disk
# while writing) with its one-line message and the previous checkpoint intact; llm.c model files: a tiny GPT written
# by tests/ref/llmc_files.py (an independent writer following llm.c's published layout, v3 fp32 and v5 bf16) loads
# through --init-from and gives PyTorch's loss, and our export reads back into the same file bytes.
# Run from the repository root after `make`.
. tests/lib.sh
losses() { /usr/bin/python3 -c "import json,sys; print(' '.join(repr(json.loads(l)['loss']) for l in open(sys.argv[1])))" "$1"; }

D=$T/data
# A small corpus (the first 20000 bytes) so that 20 steps of 2 x 4 x 32 tokens cover several shuffled epochs.
head -c 20000 data/tinyshakespeare/input.txt >"$T/small.txt"
$G prepare --input "$T/small.txt" --out "$D" --shard-tokens 7000 >"$T/prep" 2>&1 \
    && [ -f "$D/train_000002.bin" ] && ok "prepare: --shard-tokens 7000 cuts train into 3 shards" \
    || bad "prepare" "$(cat "$T/prep")"
RUN="--data $D --preset micro --batch 4 --seq-len 32 --grad-accum 2 --steps 20 --warmup-steps 2 --eval-every 0 --eval-steps 2 --threads 2"

# ---- bit-exact resume ----
$G train $RUN --log "$T/a.jsonl" --out "$T/a" >"$T/a.out" 2>&1 || bad "straight run" "$(tail -3 "$T/a.out")"
$G train $RUN --log "$T/b.jsonl" --out "$T/b" --stop-at-step 10 >"$T/b1.out" 2>&1 \
    && [ -f "$T/b/checkpoints/ckpt_00000010.bin" ] && [ ! -f "$T/b/model.bin" ] \
    && ok "--stop-at-step 10 writes ckpt_00000010.bin and stops" || bad "stop-at-step" "$(tail -3 "$T/b1.out")"
$G train $RUN --log "$T/b.jsonl" --out "$T/b" --resume auto >"$T/b2.out" 2>&1 || bad "resume run" "$(tail -3 "$T/b2.out")"
grep -q "resume: $T/b/checkpoints/ckpt_00000010.bin: step 10, loader at batch 20" "$T/b2.out" \
    && ok "--resume auto finds the newest checkpoint (step 10, loader at batch 20)" || bad "resume auto" "$(grep resume "$T/b2.out")"
la=$(losses "$T/a.jsonl"); lb=$(losses "$T/b.jsonl")
[ -n "$la" ] && [ "$la" = "$lb" ] && [ "$(echo "$la" | wc -w)" -eq 20 ] \
    && ok "resume: the 20 per-step losses of 10 + resume + 10 equal the straight run's exactly" \
    || bad "resume losses" "straight: $la / resumed: $lb"
cmp -s "$T/a/model.bin" "$T/b/model.bin" && ok "resume: the final weights are byte-identical" \
    || bad "resume weights" "model.bin differs"
# The check can fail: a resume with another seed-independent change (lr) gives other weights.
$G train $RUN --out "$T/c" --stop-at-step 10 >/dev/null 2>&1
$G train $RUN --out "$T/c" --resume auto --lr 2e-3 >"$T/c.out" 2>&1
grep -q "warning: resuming with --lr 0.002 (the checkpoint's run had 0.001)" "$T/c.out" && ! cmp -s "$T/a/model.bin" "$T/c/model.bin" \
    && ok "resume with another --lr warns and (as it should) ends elsewhere" || bad "resume lr warning" "$(grep -i warn "$T/c.out")"

# ---- SIGINT: finish the step, checkpoint, exit 130; resume lands on the straight run's weights ----
# Evaluating 30 val batches after every step slows the run (without touching its trajectory), so the signal lands
# mid-run on any machine.
SLOW="--eval-every 1 --eval-steps 30"
# interrupt SIGNAL STATUS DIR: start the run into DIR, send SIGNAL once step 2 is printed, and check it exits with
# STATUS after writing a checkpoint.
interrupt() {
    $G train $RUN $SLOW --out "$3" --steps 20 --print-every 1 >"$3.out" 2>&1 &
    pid=$!
    i=0
    while [ $i -lt 200 ] && ! grep -q "^ *2/20" "$3.out" 2>/dev/null; do sleep 0.05; i=$((i + 1)); done
    kill -"$1" $pid
    wait $pid
    st=$?
    ck=$(ls "$3/checkpoints" 2>/dev/null | tail -n 1)
    [ "$st" -eq "$2" ] && [ -n "$ck" ] && grep -q "stopped after step .* (SIG$1)" "$3.out" \
        && ok "SIG$1: the step finishes, $ck is written, exit $2" || bad "SIG$1" "exit $st, checkpoint '$ck': $(tail -2 "$3.out")"
    if [ -n "$ck" ]; then
        $G train $RUN --out "$3" --resume auto >"$3.resume.out" 2>&1
        cmp -s "$T/a/model.bin" "$3/model.bin" && ok "SIG$1 + --resume auto ends on the straight run's weights" \
            || bad "SIG$1 resume" "model.bin differs: $(tail -2 "$3.resume.out")"
    fi
}
interrupt INT 130 "$T/s"
# SIGTERM is what Slurm sends before a job's time limit.
interrupt TERM 143 "$T/t"

# ---- --keep-last ----
$G train $RUN --out "$T/k" --checkpoint-every 3 --keep-last 2 >"$T/k.out" 2>&1
[ "$(ls "$T/k/checkpoints" | tr '\n' ' ')" = "ckpt_00000018.bin ckpt_00000020.bin " ] \
    && ok "--checkpoint-every 3 --keep-last 2 keeps steps 18 and 20 (the last step always)" \
    || bad "keep-last" "$(ls "$T/k/checkpoints" | tr '\n' ' ')"

# ---- sample and export from a checkpoint ----
C10=$T/b/checkpoints/ckpt_00000010.bin
$G sample --checkpoint "$C10" --tokens 40 --prompt "First" --seed 3 >"$T/sa" 2>&1 \
    && [ "$(head -c -1 "$T/sa" | wc -c)" -eq 45 ] && ok "sample --checkpoint decodes 40 characters with the run's tokenizer" \
    || bad "sample checkpoint" "$(cat "$T/sa")"

# ---- refusals; the checkpoint they were aimed at stays intact ----
cp "$C10" "$T/orig.bin"
expect_error "resume: another batch shape" 2 "differs: --batch 4 (checkpoint) vs 8 (now)" $G train $RUN --batch 8 --out "$T/b" --resume "$C10"
expect_error "resume: another model" 2 "checkpoint's model is L=2" $G train $RUN --n-layer 3 --out "$T/b" --resume "$C10"
expect_error "resume: another seed" 2 "\-\-seed 1337 (checkpoint) vs 5 (now)" $G train $RUN --seed 5 --out "$T/b" --resume "$C10"
expect_error "resume: a missing checkpoint" 2 "nope.bin: cannot open" $G train $RUN --out "$T/b" --resume "$T/nope.bin"
cp "$C10" "$T/flip.bin"
printf '\377' | dd of="$T/flip.bin" bs=1 seek=50000 conv=notrunc 2>/dev/null
expect_error "resume: a flipped payload byte" 2 "payload fails its checksum" $G train $RUN --out "$T/b" --resume "$T/flip.bin"
cp "$C10" "$T/hflip.bin"
printf '\377' | dd of="$T/hflip.bin" bs=1 seek=40 conv=notrunc 2>/dev/null
expect_error "resume: a flipped header byte" 2 "header fails its checksum" $G train $RUN --out "$T/b" --resume "$T/hflip.bin"
cp "$C10" "$T/ver.bin"
printf '\002' | dd of="$T/ver.bin" bs=1 seek=8 conv=notrunc 2>/dev/null
expect_error "resume: a checkpoint of another format version" 2 "checkpoint version 2 (header 224 bytes), expected version 1" \
    $G train $RUN --out "$T/b" --resume "$T/ver.bin"
head -c 30000 "$C10" >"$T/trunc.bin"
expect_error "resume: a truncated checkpoint" 2 "truncated or wrong size" $G train $RUN --out "$T/b" --resume "$T/trunc.bin"
: >"$T/empty.bin"
expect_error "resume: an empty file" 2 "shorter than the 224-byte header" $G train $RUN --out "$T/b" --resume "$T/empty.bin"
expect_error "resume: not a checkpoint" 2 "not a gptrain checkpoint" $G train $RUN --out "$T/b" --resume "$D/train_000000.bin"
# A full disk while writing the step-20 checkpoint: the write fails with one message, no .tmp is left, and the
# step-10 checkpoint is still the newest and loads.
mkdir -p "$T/full" && cp -r "$T/b/checkpoints" "$T/full/"
expect_error "checkpoint on a full disk" 2 "No space left on device" \
    env GPTRAIN_TEST_FAIL_WRITE_AFTER=100000 $G train $RUN --out "$T/full" --resume auto --checkpoint-every 20
[ "$(ls "$T/full/checkpoints")" = "ckpt_00000010.bin" ] && cmp -s "$T/full/checkpoints/ckpt_00000010.bin" "$T/orig.bin" \
    && ok "after the failed write only the intact step-10 checkpoint is there" || bad "full disk" "$(ls "$T/full/checkpoints")"
cmp -s "$C10" "$T/orig.bin" && ok "refused resumes left the checkpoint untouched" || bad "untouched" "$C10 changed"

# ---- bad flags ----
expect_error "--zero 2" 2 "\-\-zero 2: expected 0" $G train $RUN --zero 2 --out "$T/x"
expect_error "--keep-last -1" 2 "\-\-keep-last -1" $G train $RUN --keep-last -1 --out "$T/x"
expect_error "--checkpoint-every -1" 2 "\-\-checkpoint-every -1" $G train $RUN --checkpoint-every -1 --out "$T/x"
expect_error "--stop-at-step beyond --steps" 2 "\-\-stop-at-step 99: expected 0 (off) up to \-\-steps 20" $G train $RUN --stop-at-step 99 --out "$T/x"
expect_error "--train-data that matches nothing" 2 "\-\-train-data $T/none_\*.bin: matches no file" \
    $G train --train-data "$T/none_*.bin" --val-data "$D/val_*.bin" --preset micro --out "$T/x"
expect_error "--val-data missing with --train-data" 2 "\-\-val-data: expected a glob" \
    $G train --train-data "$D/train_*.bin" --preset micro --out "$T/x"
$G train --train-data "$D/train_*.bin" --val-data "$D/val_*.bin" --preset micro --batch 4 --seq-len 32 --steps 3 \
    --eval-every 0 --eval-steps 1 --out "$T/glob" >"$T/glob.out" 2>&1 && grep -q "train 18000 tokens in 3 shards" "$T/glob.out" \
    && ok "--train-data/--val-data globs train (3 train shards; tokenizer.txt found beside them)" || bad "globs" "$(tail -3 "$T/glob.out")"

# ---- llm.c model files ----
if /usr/bin/python3 tests/ref/llmc_files.py "$T/llmc" >"$T/py" 2>&1; then
    ok "tests/ref/llmc_files.py wrote v3 and v5 files: $(tail -n 1 "$T/py")"
    for v in 3 5; do
        want=$(cat "$T/llmc/loss_v$v.txt")
        $G train --data "$T/llmc" --init-from "$T/llmc/gpt_v$v.bin" --batch 2 --seq-len 16 --steps 1 --lr 0 --min-lr 0 \
            --warmup-steps 0 --shuffle off --eval-every 0 --eval-steps 1 --out "$T/ll$v" --log "$T/ll$v.jsonl" >"$T/ll$v.out" 2>&1
        got=$(/usr/bin/python3 -c "import json; print(json.loads(open('$T/ll$v.jsonl').readline())['loss'])" 2>/dev/null)
        /usr/bin/python3 -c "import sys; g, w = float(sys.argv[1]), float(sys.argv[2]); sys.exit(abs(g - w) > 1e-4 * abs(w))" "$got" "$want" 2>/dev/null \
            && ok "--init-from v$v: first loss $got matches PyTorch's $want (rtol 1e-4)" \
            || bad "--init-from v$v" "loss '$got' vs '$want': $(tail -3 "$T/ll$v.out")"
    done
    $G export --checkpoint "$T/llmc/gpt_v3.bin" --out "$T/re3.bin" >/dev/null 2>&1 && cmp -s "$T/re3.bin" "$T/llmc/gpt_v3.bin" \
        && ok "export --dtype fp32 of the v3 file reproduces it byte for byte" || bad "export v3" "differs"
    $G export --checkpoint "$T/llmc/gpt_v5.bin" --out "$T/re5.bin" --dtype bf16 >/dev/null 2>&1 && cmp -s "$T/re5.bin" "$T/llmc/gpt_v5.bin" \
        && ok "export --dtype bf16 of the v5 file reproduces it byte for byte" || bad "export v5" "differs"
    expect_error "--init-from with a contradicting shape" 2 "\-\-n-layer 5 contradicts --init-from" \
        $G train --data "$T/llmc" --init-from "$T/llmc/gpt_v3.bin" --n-layer 5 --out "$T/x"
    head -c 2000 "$T/llmc/gpt_v3.bin" >"$T/short.bin"
    expect_error "--init-from a truncated file" 2 "short.bin: 2000 bytes, but its header .* needs .* bytes: truncated" \
        $G train --data "$T/llmc" --init-from "$T/short.bin" --batch 2 --seq-len 16 --out "$T/x"
else
    bad "llm.c files" "$(tail -5 "$T/py")"
fi
finish
