#!/usr/bin/env bash
# run.sh: build gptrain, turn the vendored Tiny Shakespeare into character-level shards, train the nanoGPT CPU
# configuration (4 layers, 4 heads, d_model 128, context 64, batch 12, 2000 steps), and print a 200-character sample.
# Extra flags pass through to `gptrain train`, e.g. ./run.sh --steps 200 --recompute full
set -euo pipefail
cd "$(dirname "$0")"
sh tests/deps.sh build
make -s gptrain
(cd data/tinyshakespeare && sha256sum --quiet -c input.txt.sha256) || {
    echo "run.sh: data/tinyshakespeare/input.txt does not match its sha256" >&2; exit 1; }
data=build/shakespeare_char
out=out/shakespeare_char
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do  # sample from wherever --out sends the model
    case "${args[$i]}" in
        --out) out="${args[$((i + 1))]:-$out}" ;;
        --out=*) out="${args[$i]#--out=}" ;;
    esac
done
./gptrain prepare --input data/tinyshakespeare/input.txt --out "$data" --tokenizer char --val-fraction 0.1
./gptrain train --data "$data" --out "$out" "$@"
echo "--- sample (200 characters) ---"
./gptrain sample --from "$out" --tokens 200 --prompt $'\n' --temperature 1.0
