#!/bin/sh
# test_llmc_124m.sh: an llm.c model file at GPT-2 124M's full shape (L=12, NH=12, C=768, V=50257 padded to 50304,
# maxT=1024) trains and samples here, in both of llm.c's formats (v3 fp32 gpt2_124M.bin, v5 bf16
# gpt2_124M_bf16.bin). The files come from tests/ref/llmc_files.py --gpt2-124m, an independent writer of llm.c's
# published layout, with random weights (the real GPT-2 weights cannot be downloaded here); the first step's loss must
# equal PyTorch's float64 loss of the same file (rtol 1e-4), a second step on the same batch (the train shard is one
# window) must have a lower loss, and `sample --checkpoint`
# on the llm.c file must decode GPT-2 BPE text after the prompt. About 750 MB of temporary files and ~1 minute.
. tests/lib.sh
M=$T/m124
if ! /usr/bin/python3 tests/ref/llmc_files.py --gpt2-124m "$M" >"$T/py" 2>&1; then
    bad "llmc_files.py --gpt2-124m" "$(tail -5 "$T/py")"
    finish
    exit 1
fi
ok "tests/ref/llmc_files.py --gpt2-124m: $(tail -n 1 "$T/py")"
for v in 3 5; do
    f=$M/gpt2_124M.bin
    [ $v = 5 ] && f=$M/gpt2_124M_bf16.bin
    want=$(cat "$M/loss_v$v.txt")
    $G train --train-data "$M/train_*.bin" --val-data "$M/val_*.bin" --init-from "$f" --batch 1 --seq-len 32 \
        --steps 2 --lr 1e-4 --min-lr 1e-4 --warmup-steps 0 --shuffle off --eval-every 0 --eval-steps 1 \
        --out "$T/r$v" --log "$T/r$v.jsonl" >"$T/r$v.out" 2>&1
    /usr/bin/python3 - "$T/r$v.jsonl" "$want" <<'PY' >"$T/chk" 2>&1 \
        && ok "--init-from $(basename "$f") (v$v): $(cat "$T/chk")" \
        || bad "--init-from v$v 124M" "$(cat "$T/chk"; tail -3 "$T/r$v.out")"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
want = float(sys.argv[2])
assert len(rows) == 2, rows
got = rows[0]["loss"]
assert abs(got - want) <= 1e-4 * abs(want), (got, want)
print("first loss %.6f = PyTorch's %.6f (rtol 1e-4); the second step on the same batch: %.6f" % (got, want, rows[1]["loss"]))
assert rows[1]["loss"] < got, (rows[1]["loss"], got)
PY
done
grep -q "L=12 NH=12 C=768 F=3072 V=50257 (Vp=50304) maxT=1024" "$T/r3.out" \
    && ok "the run header shows GPT-2 124M's shape: $(grep -o 'L=12 NH=12.*maxT=1024' "$T/r3.out" | head -1)" \
    || bad "124M header" "$(grep -m1 'model:' "$T/r3.out")"
if $G sample --checkpoint "$M/gpt2_124M.bin" --prompt "ROMEO:" --tokens 8 --seed 3 >"$T/s" 2>"$T/se"; then
    case "$(head -c 6 "$T/s")" in
        "ROMEO:") [ "$(wc -c <"$T/s")" -gt 7 ] && ok "sample --checkpoint gpt2_124M.bin: 8 GPT-2 tokens after the prompt" \
                      || bad "sample 124M" "no tokens after the prompt: $(cat "$T/s")" ;;
        *) bad "sample 124M" "output does not start with the prompt: $(head -c 80 "$T/s")" ;;
    esac
else
    bad "sample 124M" "$(cat "$T/se")"
fi
finish
