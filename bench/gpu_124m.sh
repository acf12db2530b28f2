#!/usr/bin/env bash
# gpu_124m.sh: GPT-2 124M (T=1024) training speed on one GPU: gptrain with our flash attention and with the naive
# attention, beside llm.c built from its source twice (without cuDNN, and with cuDNN's fused attention, USE_CUDNN=1,
# when the cudnn-frontend headers are in bench/peers/cudnn-frontend; random init "-e d12") and PyTorch
# (bench/torch_gpt2_gpu.py: bf16 autocast, torch.compile, SDPA, fused AdamW; $PYTHON or the first python3 that
# imports torch), the same micro-batch B for all, STEPS steps each (default 60), median step after 10 warm-up steps,
# all reading the same synthetic GPT-2 token shards (bench/synthetic_shards.py). bench/device_check.sh is the
# shorter, all-in-one form for a device window.
# Prints tokens/s, MFU by llm.c's formula (6N + 6LCT FLOPs per token, N with the padded vocabulary, against the same
# datasheet peak for all three) and gptrain's own MFU, and the ratios. Run it on the device, in one call:
#   bash bench/gpu_124m.sh [--save]          (env: B=16 STEPS=60 PREC=bf16|tf32|fp32, LLMC=bench/peers/llm.c)
# llm.c (and NVIDIA/cudnn-frontend for the cuDNN build) must have been fetched (the search tool's fetch) into
# bench/peers/, which git ignores; none of their code is committed. A peer that is missing or fails is reported as
# such, never silently dropped.
set -uo pipefail
cd "$(dirname "$0")/.."
B=${B:-16}
T=1024
STEPS=${STEPS:-60}
PREC=${PREC:-bf16}
LLMC=${LLMC:-bench/peers/llm.c}
CUDNN_FE=${CUDNN_FE:-bench/peers/cudnn-frontend}
W=build/bench-gpu
mkdir -p "$W"
make -s gptrain || { echo "bench: build failed" >&2; exit 1; }
. bench/python.sh
# Random GPT-2 token ids, enough for every step and one eval batch at this B (Tiny Shakespeare's GPT-2 val split,
# ~33.8K tokens, is smaller than one batch of 64 x 1024).
"$PY" bench/synthetic_shards.py --out "$W/data" --train-tokens $((B * T * (STEPS + 2) + 1)) --val-tokens $((B * T + 1)) \
    || exit 1
median() { sort -g | awk '{a[NR]=$1} END {print (NR ? a[int((NR + 1) / 2)] : "nan")}'; }

# ---- gptrain: flash attention (the GPU default), then the naive attention ----
for attn in flash naive; do
    ./gptrain train --data "$W/data" --preset gpt2-124m --seq-len $T --batch "$B" --steps "$STEPS" --device cuda \
        --precision "$PREC" --attention $attn --eval-every 0 --eval-steps 1 --print-every 10 \
        --log "$W/gptrain-$attn.jsonl" --out "$W/out-$attn" >"$W/gptrain-$attn.log" 2>&1
    echo $? >"$W/gptrain-$attn.rc"
done
g_rc=$(cat "$W/gptrain-flash.rc")
col() { tail -n +11 "$1" 2>/dev/null | sed -n "s/.*\"$2\": \([0-9.]*\).*/\1/p" | median; }
g_tok=$(col "$W/gptrain-flash.jsonl" tokens_per_s)
g_mfu=$(col "$W/gptrain-flash.jsonl" mfu)
n_tok=$(col "$W/gptrain-naive.jsonl" tokens_per_s)
n_mfu=$(col "$W/gptrain-naive.jsonl" mfu)
peak=$(sed -n 's/.*peak \([0-9.]*\) TFLOPS.*/\1/p' "$W/gptrain-flash.log" | head -1)
nparams=$(sed -n 's/.*parameters (\([0-9]*\) with vocabulary padding).*/\1/p' "$W/gptrain-flash.log" | head -1)
device=$(sed -n 's/^device: cuda: \(.*\)/\1/p' "$W/gptrain-flash.log" | head -1)

# ---- llm.c, built from source without cuDNN, then with cuDNN attention ----
# (train_gpt2cu is a phony target in llm.c's Makefile: each make rebuilds it, so the first build is copied aside.)
llmc_run() {   # llmc_run BINARY LOG: train on the same data, batch and steps; prints the median tokens/s or nan
    "$1" -i "$W/data/train_*.bin" -j "$W/data/val_*.bin" -e d12 -b "$B" -t $T -d $((B * T)) \
        -x "$STEPS" -v 100000 -s 0 -h 0 -n 0 >"$2" 2>&1
    t=$(grep -o '[0-9.]* tok/s' "$2" | awk '{print $1}' | tail -n +11 | median)
    echo "${t:-nan}"
}
l_tok=nan
c_tok=nan
if [ -d "$LLMC" ]; then
    if (cd "$LLMC" && make train_gpt2cu USE_CUDNN=0 >"$OLDPWD/$W/llmc-build.log" 2>&1 &&
        cp train_gpt2cu train_gpt2cu_nocudnn); then
        l_tok=$(llmc_run "$LLMC/train_gpt2cu_nocudnn" "$W/llmc.log")
    fi
    if [ -d "$CUDNN_FE/include" ]; then
        fe=$(cd "$CUDNN_FE/include" && pwd)
        if (cd "$LLMC" && make train_gpt2cu USE_CUDNN=1 CUDNN_FRONTEND_PATH="$fe" \
            >"$OLDPWD/$W/llmc-cudnn-build.log" 2>&1 && cp train_gpt2cu train_gpt2cu_cudnn); then
            c_tok=$(llmc_run "$LLMC/train_gpt2cu_cudnn" "$W/llmc-cudnn.log")
        else
            echo "bench: llm.c with USE_CUDNN=1 did not build (see $W/llmc-cudnn-build.log)" >"$W/llmc-cudnn.log"
        fi
    else
        echo "bench: $CUDNN_FE/include missing (fetch NVIDIA/cudnn-frontend into bench/peers/cudnn-frontend)" \
            >"$W/llmc-cudnn.log"
    fi
else
    echo "bench: $LLMC missing (fetch llm.c with the search tool into bench/peers/llm.c)" >"$W/llmc.log"
    cp "$W/llmc.log" "$W/llmc-cudnn.log"
fi

# ---- PyTorch ----
p_tok=$("$PY" bench/torch_gpt2_gpu.py --data "$W/data/train_*.bin" --batch "$B" --seq-len $T \
        --steps "$STEPS" 2>"$W/torch.err" | sed -n 's/.*"tokens_per_s": \([0-9.]*\).*/\1/p')
[ -n "$p_tok" ] || p_tok=nan

mfu() { awk -v tok="$1" -v n="${nparams:-0}" -v peak="${peak:-0}" \
        'BEGIN { if (tok == "nan" || peak == 0) print "n/a"; else printf "%.1f%%", 100 * tok * (6 * n + 6 * 12 * 768 * 1024) / (peak * 1e12) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b == 0) print "n/a"; else printf "%.2fx", a / b }'; }
report=$(cat <<EOT
benchmark: GPT-2 124M, T=$T, B=$B, $STEPS steps (median after 10), one GPU
device:    ${device:-unknown (gptrain exit $g_rc; see $W/gptrain-flash.log)}
commit:    $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo '+dirty'); llm.c $(git -C "$LLMC" rev-parse --short HEAD 2>/dev/null || echo absent)
peak:      ${peak:-?} TFLOPS (gptrain's datasheet entry for --precision $PREC; llm.c and PyTorch compute in bf16)
                             tokens/s   MFU (6N+6LCT)   own MFU
gptrain ($PREC, flash)      ${g_tok}   $(mfu "$g_tok")   ${g_mfu}
gptrain ($PREC, naive)      ${n_tok}   $(mfu "$n_tok")   ${n_mfu}
llm.c (no cuDNN)             ${l_tok}   $(mfu "$l_tok")
llm.c (cuDNN attention)      ${c_tok}   $(mfu "$c_tok")
PyTorch (compile)            ${p_tok}   $(mfu "$p_tok")
gptrain flash / naive:       $(ratio "$g_tok" "$n_tok")
gptrain / llm.c:             $(ratio "$g_tok" "$l_tok")
gptrain / llm.c+cuDNN:       $(ratio "$g_tok" "$c_tok")
gptrain / PyTorch:           $(ratio "$g_tok" "$p_tok")
EOT
)
echo "$report"
if [ "${1:-}" = "--save" ]; then
    f=bench/results/gpu_124m-$(date -u +%Y%m%d)-$(git rev-parse --short HEAD 2>/dev/null || echo unknown).txt
    { echo "$report"; for attn in flash naive; do echo "--- raw: gptrain --attention $attn";
      tail -n 20 "$W/gptrain-$attn.log"; done; echo "--- raw: llm.c"; tail -n 20 "$W/llmc.log";
      echo "--- raw: llm.c + cuDNN"; tail -n 20 "$W/llmc-cudnn.log";
      echo "--- raw: torch stderr"; tail -n 5 "$W/torch.err"; } >"$f"
    echo "saved $f"
fi
