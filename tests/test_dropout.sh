#!/bin/sh
# test_dropout.sh: --dropout end to end on the CPU (micro model): 0 is the run without it, byte for byte; with 0.2
# the recompute modes and gradient accumulation's micro-steps draw their masks from (seed, step, micro-step, layer,
# site), so none / selective / full give byte-identical models, a stop and resume continues the straight run byte
# for byte, and the run differs from the undropped one; the header says where it drops; --attention flash, whose
# kernels do not drop the attention probabilities, is refused with it; a probability outside [0, 1) is refused.
. tests/lib.sh
head -c 200000 data/tinyshakespeare/input.txt >"$T/small.txt"
$G prepare --input "$T/small.txt" --out "$T/data" >/dev/null
RUN="--data $T/data --preset micro --batch 4 --seq-len 32 --steps 6 --eval-every 3 --eval-steps 2 --threads 2"
$G train $RUN --out "$T/p" >"$T/p.out" 2>&1
$G train $RUN --dropout 0 --out "$T/z" >"$T/z.out" 2>&1
cmp -s "$T/p/model.bin" "$T/z/model.bin" && ok "--dropout 0 = no dropout, model.bin byte for byte" \
    || bad "--dropout 0" "$(tail -2 "$T/z.out")"
for rc in none selective full; do
    $G train $RUN --dropout 0.2 --recompute $rc --out "$T/d$rc" >"$T/d$rc.out" 2>&1 || bad "--dropout 0.2 --recompute $rc" "$(tail -2 "$T/d$rc.out")"
done
cmp -s "$T/dnone/model.bin" "$T/dselective/model.bin" && cmp -s "$T/dnone/model.bin" "$T/dfull/model.bin" \
    && ! cmp -s "$T/dnone/model.bin" "$T/p/model.bin" \
    && grep -q "^dropout 0.2 in training: after the embeddings, on the attention probabilities, after the attention projection and after the MLP" "$T/dnone.out" \
    && ok "--dropout 0.2: recompute none = selective = full byte for byte (masks regenerated), unlike the undropped run; the header says where" \
    || bad "--dropout 0.2 recompute" "$(grep -i dropout "$T/dnone.out")"
$G train $RUN --dropout 0.2 --grad-accum 2 --batch 2 --out "$T/a" >"$T/a.out" 2>&1
$G train $RUN --dropout 0.2 --grad-accum 2 --batch 2 --out "$T/h" --stop-at-step 3 >"$T/h1.out" 2>&1
$G train $RUN --dropout 0.2 --grad-accum 2 --batch 2 --out "$T/h" --resume auto >"$T/h2.out" 2>&1
cmp -s "$T/a/model.bin" "$T/h/model.bin" && grep -q "^resume: " "$T/h2.out" \
    && ok "--dropout 0.2 with 2 micro-steps: stop at step 3 + --resume auto = the straight run, byte for byte" \
    || bad "--dropout resume" "$(tail -2 "$T/h2.out")"
# --preset shakespeare-char is nanoGPT's baby GPT recipe: 6 x 6 x 384, context 256, batch 64, 5000 steps, dropout
# 0.2 (the learning rate, warm-up, decay and beta2 are the defaults), each flag still the user's to override.
SC="--data $T/data --preset shakespeare-char --seq-len 16 --eval-steps 1 --eval-every 0"
$G train $SC --batch 1 --stop-at-step 1 --out "$T/sc" >"$T/sc.out" 2>&1
$G train $SC --batch 1 --steps 1 --dropout 0 --out "$T/sc0" >"$T/sc0.out" 2>&1
$G info --preset shakespeare-char --vocab-size 65 >"$T/sci.out" 2>&1
grep -q "^model: L=6 NH=6 C=384 F=1536 .* maxT=256" "$T/sc.out" && grep -q "^  steps = 5000$" "$T/sc/config.txt" \
    && grep -q "^  dropout = 0.2$" "$T/sc/config.txt" && grep -q "^  dropout = 0$" "$T/sc0/config.txt" && grep -q "^  steps = 1$" "$T/sc0/config.txt" \
    && grep -q "^model: L=6 NH=6 C=384 .*; B=64 T=256$" "$T/sci.out" \
    && ok "--preset shakespeare-char: nanoGPT's baby GPT (6x6x384, T=256, B=64, 5000 steps, dropout 0.2), flags still override" \
    || bad "--preset shakespeare-char" "$(grep -E '^model|^  (steps|dropout|batch) =' "$T/sc.out" "$T/sc0.out" "$T/sci.out")"
expect_error "--dropout with --attention flash" 2 "\-\-attention flash: the flash kernels do not drop the attention probabilities" \
    $G train $RUN --dropout 0.1 --attention flash --out "$T/bad"
expect_error "--dropout 1" 2 "\-\-dropout 1: expected a probability in \[0, 1)" $G train $RUN --dropout 1 --out "$T/bad"
expect_error "--dropout -0.1" 2 "\-\-dropout -0.1: expected a probability in \[0, 1)" $G train $RUN --dropout -0.1 --out "$T/bad"
finish
