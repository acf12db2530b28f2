#!/usr/bin/env bash
# device_check.sh: what a short GPU window measures, in one call (at most 8 minutes on a 16-core H200 machine with
# no network; README "The device check"):
#   1 build     make with all cores; the build's CUDA line is printed, and a build that fell back to CPU-only fails;
#   2 test-gpu  make test-gpu: every CUDA op and the model against the references, NCCL with one rank, the flash
#               kernels on each path, GPU training end to end;
#   3 profile   one --profile step of GPT-2 124M (per-op time, FLOPs, bytes, roofline);
#   4 attention bench/attention.sh --quick: our flash kernels beside PyTorch SDPA's flash and cuDNN backends;
#   5 speed     GPT-2 124M training (T = 1024, batch B, STEPS steps, median after the first 10): gptrain (its GPU
#               defaults: bf16, flash attention) beside PyTorch (bench/torch_gpt2_gpu.py: bf16 autocast,
#               torch.compile, SDPA, fused AdamW) and beside llm.c built from its source when it was carried to the
#               machine (bench/peers/llm.c, git-ignored; else one line says it was skipped): tokens/s, MFU
#               (6N + 6LCT per token against gptrain's datasheet peak for all three), the ratios; then gptrain alone
#               at each batch of MORE_B (default "32 auto": B=32 and the largest micro-batch that fits, --batch
#               auto), after the peers so that they keep their share of the budget: tokens/s, MFU and device memory
#               predicted (the plan's model buffers) and measured (the most in use at any step: the plan, the
#               CUDA context, cuBLAS and the backend's scratch).
# Speed runs read a synthetic stream of random GPT-2 token ids in llm.c's shard format (bench/synthetic_shards.py),
# sized for the batch: no dataset, no download. Python is $PYTHON, else the first python3 on PATH that imports torch
# (bench/python.sh); nothing is installed. Every log and CSV goes to $OUT (default build/device-check) with
# summary.txt: device, driver, commit, the exact command, one line per stage, the speed table. A stage that fails
# or runs out of its share of time is reported and the next one runs; the whole run keeps to BUDGET_S seconds and
# exits 0 only when every stage passed.
#   bash bench/device_check.sh [--dry-run]
#   env: OUT, PYTHON, LLMC (bench/peers/llm.c), B (16), MORE_B ("32 auto"), STEPS (30), JOBS (all cores),
#        BUDGET_S (450)
# --dry-run: the same script end to end on the emulated GPU (make emu: build/emu/), with the micro model and tiny
# shapes (PyTorch on the CPU), so that it cannot rot: it proves that every stage runs and every file is written,
# not any speed. make test runs it (tests/test_device_check.sh).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
DRY=0
case "${1:-}" in
    --dry-run) DRY=1 ;;
    "") ;;
    *) echo "device_check.sh: $1: unknown argument (expected --dry-run)" >&2; exit 2 ;;
esac
COMMAND="bash bench/device_check.sh $*"
OUT=${OUT:-build/device-check}
mkdir -p "$OUT" || { echo "device_check.sh: OUT=$OUT: cannot create it" >&2; exit 2; }
OUT=$(cd "$OUT" && pwd)
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 4)}
B=${B:-16}
MORE_B=${MORE_B-32 auto}
MAX_B=384   # the synthetic stream is sized for micro-batches up to this (GPT-2 124M in bf16 with flash: ~315 fit 141 GB)
STEPS=${STEPS:-30}
BUDGET_S=${BUDGET_S:-450}
LLMC=${LLMC:-bench/peers/llm.c}
WARM=10   # speed: steps left out of the median
W=build/device-check-work   # scratch that does not come back (model files, checkpoints)
mkdir -p "$W"
. bench/python.sh
T0=$(date +%s)
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ "$commit" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && commit="$commit+dirty"
if [ $DRY = 1 ]; then
    G=build/emu/gptrain
    device="gptrain emulated GPU (dry run: build/emu, no GPU)"
    driver="none (emulated)"
    B=2 STEPS=4 WARM=1 MORE_B="3 auto" MAX_B=8
    SMALL_GPU="env GPTRAIN_EMU_MEMORY=128M"   # --batch auto on a 128 MiB emulated GPU picks a small B
    MODEL="--preset micro --seq-len 32"
    SEQ=32
else
    G=./gptrain
    device=$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1)
    driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
    MODEL="--preset gpt2-124m --seq-len 1024"
    SEQ=1024
fi
say "device check: $(date -u '+%Y-%m-%d %H:%M UTC')"
say "command: $COMMAND (OUT=$OUT B=$B STEPS=$STEPS JOBS=$JOBS BUDGET_S=$BUDGET_S)"
say "device: ${device:-unknown (nvidia-smi found no GPU)}"
say "driver: ${driver:-unknown}"
say "commit: $commit"
say "host: $(uname -n), $(nproc 2>/dev/null) cores; python: $PY ($PY_WHY)"
FAILED=0

# stage NAME SECONDS CMD...: run CMD (its output to $OUT/NAME.log) for at most SECONDS or what is left of the budget;
# one summary line with its status and duration.
stage() {
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET_S - ($(date +%s) - T0)))
    if [ $left -lt 10 ]; then
        say "stage $name: skipped: the ${BUDGET_S}-second budget is spent"
        FAILED=1
        return 1
    fi
    [ $limit -gt $left ] && limit=$left
    local t=$(date +%s)
    timeout -k 5 $limit "$@" >"$OUT/$name.log" 2>&1
    local rc=$? dt=$(($(date +%s) - t))
    if [ $rc = 0 ]; then
        say "stage $name: ok (${dt} s)"
    elif [ $rc = 124 ] || [ $rc = 137 ]; then
        say "stage $name: FAIL: timed out after ${limit} s ($OUT/$name.log)"
        FAILED=1
    else
        say "stage $name: FAIL: exit $rc after ${dt} s: $(grep -E -m1 'error|FAIL|Error' "$OUT/$name.log" | cut -c1-200)"
        FAILED=1
    fi
    return $rc
}

# ---- 1: build ----
if [ $DRY = 1 ]; then
    stage build 300 make -j"$JOBS" gptrain emu
else
    stage build 200 make -j"$JOBS" gptrain build/tests/test_gpu build/tests/test_nccl build/tests/test_flash \
        build/bench/attention build/bench/attention-ptxas.log
fi
cuda_line=$(grep -m1 "gptrain build: CUDA" "$OUT/build.log")
say "build: ${cuda_line:-no CUDA line in the build output}"
if [ $DRY = 0 ] && ! echo "$cuda_line" | grep -q "CUDA *yes"; then
    say "build: FAIL: the build fell back to CPU only; no GPU figure below would be real"
    FAILED=1
fi

# ---- 2: the GPU test suites ----
if [ $DRY = 1 ]; then   # the emulated suites ran in make test; one stands in here
    stage test-gpu 60 build/emu/tests/test_nccl
else
    stage test-gpu 200 make test-gpu
fi
tail -n 1 "$OUT/test-gpu.log" | sed 's/^/test-gpu: /' | tee -a "$SUMMARY"

# ---- synthetic tokens for the model runs: enough for warm-up, the measured steps and one eval batch ----
SYN=$W/synthetic
python_any=$PY
"$PY" -c 'import sys' 2>/dev/null || python_any=python3
big=$B
[ -n "$MORE_B" ] && big=$MAX_B
if ! "$python_any" bench/synthetic_shards.py --out "$SYN" --train-tokens $((big * SEQ * (STEPS + 2) + 1)) \
    --val-tokens $((big * SEQ + 1)) >"$OUT/synthetic.log" 2>&1; then
    say "synthetic tokens: FAIL: $(tail -1 "$OUT/synthetic.log")"
    FAILED=1
fi
DATA="--train-data $SYN/train_*.bin --val-data $SYN/val_*.bin"
EXTRA=
[ $DRY = 1 ] && EXTRA="--bandwidth-gbs 1000"   # the measured bandwidth probe is 192 MiB: too much to emulate

# ---- 3: one profiled step ----
stage profile 90 $G train $DATA $MODEL --batch "$B" --steps 3 --profile 2 --device cuda --eval-every 0 \
    --eval-steps 1 --print-every 1 --out "$W/profile" --log "$OUT/profile.jsonl" $EXTRA

# ---- 4: the attention kernels beside SDPA ----
if [ $DRY = 1 ]; then
    stage attention 120 env OUT="$OUT/attention" ATTENTION_BIN=build/emu/bench/attention bash bench/attention.sh --tiny
else
    stage attention 120 env OUT="$OUT/attention" bash bench/attention.sh --quick
fi

# ---- 5: GPT-2 124M training speed: gptrain, PyTorch, llm.c ----
median_after() {   # median_after N: the median of the numbers on stdin after the first N
    tail -n +$(($1 + 1)) | sort -g | awk '{a[NR] = $1} END {print (NR ? a[int((NR + 1) / 2)] : "nan")}'
}
stage speed-gptrain 120 $G train $DATA $MODEL --batch "$B" --steps "$STEPS" --device cuda --eval-every 0 \
    --eval-steps 1 --print-every 10 --out "$W/speed" --log "$OUT/speed-gptrain.jsonl" $EXTRA
g_tok=$(sed -n 's/.*"tokens_per_s": \([0-9.]*\).*/\1/p' "$OUT/speed-gptrain.jsonl" 2>/dev/null | median_after $WARM)
g_mfu=$(sed -n 's/.*"mfu": \([0-9.]*\).*/\1/p' "$OUT/speed-gptrain.jsonl" 2>/dev/null | median_after $WARM)
peak=$(sed -n 's/.*peak \([0-9.]*\) TFLOPS.*/\1/p' "$OUT/speed-gptrain.log" | head -1)
nparams=$(sed -n 's/.*parameters (\([0-9]*\) with vocabulary padding).*/\1/p' "$OUT/speed-gptrain.log" | head -1)
shape=$(sed -n 's/^model: L=\([0-9]*\) NH=[0-9]* C=\([0-9]*\) .*/\1 \2/p' "$OUT/speed-gptrain.log" | head -1)

TORCH_ARGS="--data $SYN/train_*.bin --batch $B --seq-len $SEQ --steps $STEPS --warmup $WARM"
[ $DRY = 1 ] && TORCH_ARGS="$TORCH_ARGS --tiny"
stage speed-pytorch 200 "$PY" bench/torch_gpt2_gpu.py $TORCH_ARGS
p_tok=$(sed -n 's/.*"tokens_per_s": \([0-9.]*\).*/\1/p' "$OUT/speed-pytorch.log" | tail -1 | awk '{printf "%.1f", $1}')

l_tok=nan
if [ $DRY = 0 ] && [ -f "$LLMC/train_gpt2.cu" ]; then
    stage speed-llmc 240 bash -c "make -C '$LLMC' -j$JOBS train_gpt2cu USE_CUDNN=0 NO_MULTI_GPU=1 &&
        '$LLMC/train_gpt2cu' -i '$SYN/train_*.bin' -j '$SYN/val_*.bin' -e d12 -b $B -t $SEQ -d $((B * SEQ)) \
            -x $STEPS -v 100000 -s 0 -h 0 -n 0"
    l_tok=$(grep -o '[0-9.]* tok/s' "$OUT/speed-llmc.log" | awk '{print $1}' | median_after $WARM)
else
    say "stage speed-llmc: skipped: llm.c's source was not carried ($LLMC/train_gpt2.cu absent; fetch karpathy/llm.c into" \
        "bench/peers/llm.c and carry that folder)"
fi

mfu() {   # tokens/s -> 6N + 6LCT MFU against gptrain's peak
    awk -v tok="${1:-nan}" -v n="${nparams:-0}" -v peak="${peak:-0}" -v l="${shape% *}" -v c="${shape#* }" -v t=$SEQ \
        'BEGIN { if (tok == "nan" || tok == "" || peak + 0 == 0) print "n/a";
                 else printf "%.1f%%", 100 * tok * (6 * n + 6 * l * c * t) / (peak * 1e12) }'
}
ratio() { awk -v a="${1:-nan}" -v b="${2:-nan}" 'BEGIN { if (a == "nan" || b == "nan" || a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2fx", a / b }'; }
say ""
say "speed: $( [ $DRY = 1 ] && echo 'micro model (dry run: no figure here is a measurement)' || echo 'GPT-2 124M') T=$SEQ B=$B, $STEPS steps, median after $WARM; peak ${peak:-?} TFLOPS (gptrain's datasheet entry)"
say "$(printf '%-30s %12s %10s %10s' engine tokens/s 'MFU' 'own MFU')"
say "$(printf '%-30s %12s %10s %10s' 'gptrain (bf16, flash)' "${g_tok:-nan}" "$(mfu "$g_tok")" "${g_mfu:-n/a}")"
say "$(printf '%-30s %12s %10s' 'PyTorch (compile, SDPA)' "${p_tok:-nan}" "$(mfu "$p_tok")")"
say "$(printf '%-30s %12s %10s' 'llm.c (no cuDNN)' "${l_tok:-nan}" "$(mfu "$l_tok")")"
say "gptrain / PyTorch: $(ratio "$g_tok" "$p_tok"); gptrain / llm.c: $(ratio "$g_tok" "$l_tok")"

# gptrain alone at the larger batches: tokens/s, MFU, and the device memory the plan predicted beside what was in use.
mem_of() {   # mem_of LOG: the plan's MiB for the model's buffers, from the run's device memory line
    sed -n 's/^device memory: predicted \([0-9.]*\) MiB.*/\1/p' "$1" | head -1
}
rows=
for mb in $MORE_B; do
    name=speed-gptrain-b$mb
    if stage $name 150 ${SMALL_GPU:-} $G train $DATA $MODEL --batch "$mb" --steps "$STEPS" --device cuda --eval-every 0 \
        --eval-steps 1 --print-every 10 --out "$W/$name" --log "$OUT/$name.jsonl" $EXTRA; then
        got_b=$(sed -n 's/^batch: B=\([0-9]*\) .*/\1/p' "$OUT/$name.log" | head -1)
        tok=$(sed -n 's/.*"tokens_per_s": \([0-9.]*\).*/\1/p' "$OUT/$name.jsonl" | median_after $WARM)
        own=$(sed -n 's/.*"mfu": \([0-9.]*\).*/\1/p' "$OUT/$name.jsonl" | median_after $WARM)
        plan=$(mem_of "$OUT/$name.log")
        used=$(sed -n 's/.*"mem_mib": \([0-9.]*\).*/\1/p' "$OUT/$name.jsonl" | sort -g | tail -1)
        rows="$rows$(printf '%-30s %12s %10s %10s %10s %10s' "gptrain B=$mb (B=${got_b:-?})" "${tok:-nan}" \
            "$(mfu "$tok")" "${own:-n/a}" "${plan%% *}" "${used:-?}")
"
    fi
done
if [ -n "$rows" ]; then
    say "$(printf '%-30s %12s %10s %10s %10s %10s' engine tokens/s MFU 'own MFU' 'plan MiB' 'used MiB')"
    printf '%s' "$rows" | tee -a "$SUMMARY"
fi
say ""
say "elapsed: $(($(date +%s) - T0)) s of $BUDGET_S; files in $OUT; status: $([ $FAILED = 0 ] && echo 'every stage passed' || echo 'some stage FAILED')"
exit $FAILED
