#!/usr/bin/env bash
# lessons.sh: the experiments of docs/lessons.md, one per lesson, each printing the table the guide shows, on the
# CPU (CPU-sized: a few minutes each on a 2-core laptop) on Tiny Shakespeare (character level, prepared once).
#   bench/lessons.sh N [--quick] [--out DIR]   N = 1..9 or all; --quick: a reduced form (seconds), which
#                                              tests/test_lessons.sh runs so the guide cannot rot
# Lessons: 1 memory anatomy against the measured memory; 2 warm-up and timing noise; 3 batch size against throughput
# and memory; 4 recompute none/selective/full; 5 gradient accumulation; 6 naive against flash attention as T grows;
# 7 the per-op profile and roofline; 8 data parallelism with 2 ranks (mpirun); 9 precision modes on the emulated GPU
# (build/emu/gptrain, or GPTRAIN_EMU_BIN). PNGs (gptrain bench --plot, gnuplot)
# go to --out (default build/lessons).
set -euo pipefail
cd "$(dirname "$0")/.."
lesson=${1:-}
shift || true
quick=0
out=build/lessons
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --out) out=$2; shift ;;
        *) echo "lessons.sh: $1: unknown argument (expected --quick or --out DIR)" >&2; exit 2 ;;
    esac
    shift
done
case "$lesson" in
    [1-9] | all) ;;
    *) echo "lessons.sh: expected a lesson number 1..9 or all (got '${lesson}')" >&2; exit 2 ;;
esac
G=${GPTRAIN_BIN:-./gptrain}
[ -x "$G" ] || make -s gptrain >&2
mkdir -p "$out"
data=$out/shakespeare_char
[ -f "$data/train_000000.bin" ] || "$G" prepare --input data/tinyshakespeare/input.txt --out "$data" >/dev/null
# The lessons' model: nanoGPT's CPU Shakespeare model (preset tiny, context 64); quick: the micro model.
if [ $quick = 1 ]; then
    I="--data $data --preset micro --seq-len 32"
    M="$I --eval-steps 2 --threads 2"
    S=3; W=1
else
    I="--data $data --preset tiny --seq-len 64"
    M="$I --eval-steps 20"
    S=10; W=3
fi
py() { /usr/bin/python3 - "$@"; }
head_() { printf '\n== lesson %s: %s\n' "$1" "$2"; }

l1() {
    head_ 1 "where does the memory go? the plan (gptrain info) against what the run allocates and its peak RSS"
    "$G" info $I --batch 12 | sed -n '/^memory (/,/total, --recompute full/p'
    "$G" train $M --batch 12 --steps $S --eval-every 0 --log "$out/l1.jsonl" --out "$out/l1" >"$out/l1.out" 2>&1
    grep "^memory plan" "$out/l1.out"
    py "$out/l1.jsonl" <<'PY'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
print("peak RSS of the process (mem_mib, last step): %.1f MiB: the plan's buffers plus the program, OpenBLAS and the loader" % r[-1]["mem_mib"])
PY
}

l2() {
    head_ 2 "why warm up before timing? step time over all steps against after the first ones"
    local n=$((S * 3))
    "$G" train $M --batch 12 --steps $n --eval-every 0 --log "$out/l2.jsonl" --out "$out/l2" >/dev/null 2>&1
    py "$out/l2.jsonl" $W <<'PY'
import json, statistics as st, sys
ms = [json.loads(l)["step_ms"] for l in open(sys.argv[1])]
w = int(sys.argv[2])
for name, x in (("all %d steps" % len(ms), ms), ("after %d warm-up" % w, ms[w:])):
    print("  %-22s mean %8.2f ms  std %7.2f ms  min %7.2f  max %7.2f" % (name, st.mean(x), st.stdev(x), min(x), max(x)))
print("  first step %.2f ms: %.1fx the warm median" % (ms[0], ms[0] / st.median(ms[w:])))
PY
}

l3() {
    head_ 3 "batch size against throughput and memory"
    local bs="1,4,16,64"
    [ $quick = 1 ] && bs="1,4"
    "$G" bench $M --sweep batch=$bs --steps $S --warmup $W --plot "$out/l3.png" | sed -n '/^config/,$p'
}

l4() {
    head_ 4 "activation checkpointing: recompute none / selective / full (memory against speed, MFU against HFU)"
    "$G" bench $M --batch 16 --sweep recompute=none,selective,full --steps $S --warmup $W --plot "$out/l4.png" |
        sed -n '/^config/,$p'
}

l5() {
    head_ 5 "gradient accumulation: the same step with less memory"
    "$G" train $M --batch 16 --steps $S --eval-every 0 --log "$out/l5a.jsonl" --out "$out/l5a" >"$out/l5a.out" 2>&1
    "$G" train $M --batch 4 --grad-accum 4 --steps $S --eval-every 0 --log "$out/l5b.jsonl" --out "$out/l5b" \
        >"$out/l5b.out" 2>&1
    py "$out/l5a.jsonl" "$out/l5b.jsonl" "$out/l5a.out" "$out/l5b.out" <<'PY'
import json, re, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
plan = [re.search(r"memory plan: ([\d.]+) MiB", open(p).read()).group(1) for p in sys.argv[3:5]]
print("  %-28s %12s %12s %14s" % ("", "B=16", "B=4 x 4", "difference"))
for k in ("loss", "grad_norm"):
    print("  %-28s %12.6f %12.6f %14.2e" % ("step %d %s" % (len(a), k), a[-1][k], b[-1][k], abs(a[-1][k] - b[-1][k])))
print("  %-28s %12s %12s" % ("planned memory (MiB)", plan[0], plan[1]))
print("  %-28s %12.0f %12.0f" % ("tokens/s (last step)", a[-1]["tokens_per_s"], b[-1]["tokens_per_s"]))
PY
}

l6() {
    head_ 6 "naive against flash attention as the sequence grows (attention alone, d = 64)"
    make -s build/bench/attention_table >&2
    local ts="256,1024,4096"
    [ $quick = 1 ] && ts="64,256"
    build/bench/attention_table --d 64 --seq-len $ts --warmup 1 --reps 3
}

l7() {
    head_ 7 "the per-op profile and the roofline: which ops are memory-bound, and what fusing them saves"
    "$G" train $M --batch 12 --steps $((W + 2)) --eval-every 0 --profile $((W + 2)) --out "$out/l7" 2>&1 |
        sed -n '/^profile of step/,/^ *[0-9]*\/[0-9]* /p' | grep -v '^ *[0-9]*/[0-9]* '
}

l8() {
    head_ 8 "data parallelism with 2 ranks: the gradient all-reduce, and how much of it the backward hides"
    if ! command -v mpirun >/dev/null 2>&1 || ! ldd "$G" 2>/dev/null | grep libmpi >/dev/null; then
        echo "  skipped: no MPI (apt-get install libopenmpi-dev openmpi-bin, then make)"
        return
    fi
    for ov in off on; do
        # (Open MPI's own allocations are not freed at exit: a sanitized gptrain's leak check is off in the ranks, as
        # tests/test_dist.sh has it)
        OMPI_MCA_btl_vader_single_copy_mechanism=none mpirun --allow-run-as-root --oversubscribe -np 2 --bind-to none \
            -x ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
            "$G" train $M --batch 6 --threads 1 --steps $((S + W)) --eval-every 0 --comm-overlap $ov \
            --log "$out/l8$ov.jsonl" --out "$out/l8$ov" >"$out/l8$ov.out" 2>&1
    done
    py "$out/l8off.jsonl" "$out/l8on.jsonl" $W <<'PY'
import json, statistics as st, sys
w = int(sys.argv[3])
print("  %-26s %10s %12s %16s" % ("--comm-overlap", "step ms", "comm_ms", "exposed_comm_ms"))
for name, p in (("off (after the backward)", sys.argv[1]), ("on (per layer, overlapped)", sys.argv[2])):
    r = [json.loads(l) for l in open(p)][w:]
    print("  %-26s %10.2f %12.3f %16.3f" % (name, st.median(x["step_ms"] for x in r), st.median(x["comm_ms"] for x in r),
                                           st.median(x["exposed_comm_ms"] for x in r)))
PY
}

l9() {
    head_ 9 "precision modes on the emulated GPU: what bf16 changes in memory and in the loss (never a speed)"
    local E=${GPTRAIN_EMU_BIN:-build/emu/gptrain}
    if [ ! -x "$E" ]; then
        echo "  skipped: no emulated GPU build ($E: make emu)"
        return
    fi
    # The micro model always: the emulator runs every GPU thread on the CPU, about a second a step.
    local n=20 b=8
    [ $quick = 1 ] && n=3 && b=4
    local R="--data $data --preset micro --seq-len 32 --eval-steps 2 --device cuda --attention naive --batch $b"
    for v in "fp32:--precision fp32" "bf16:--precision bf16" "bf16g:--precision bf16 --grad-dtype bf16"; do
        "$E" train $R ${v#*:} --steps $n --eval-every 0 --lr 3e-3 --warmup-steps 2 --log "$out/l9${v%%:*}.jsonl" \
            --out "$out/l9${v%%:*}" >"$out/l9${v%%:*}.out" 2>&1
    done
    py "$out" <<'PY'
import json, re, sys
d = sys.argv[1]
runs = (("fp32", "fp32"), ("bf16", "bf16"), ("bf16 + bf16 grads", "bf16g"))
ref = [json.loads(l)["loss"] for l in open("%s/l9fp32.jsonl" % d)]
print("  %-18s %9s %9s %9s %9s %11s %9s %12s" % ("--precision", "plan MiB", "weights", "grads", "acts", "final loss",
                                                 "val loss", "max |dloss|"))
for name, tag in runs:
    out = open("%s/l9%s.out" % (d, tag)).read()
    m = re.search(r"^memory \(.*\): weights ([\d.]+) MiB(?: \+ ([\d.]+) MiB bf16 copy)?, grads ([\d.]+) MiB.*activations ([\d.]+) MiB", out, re.M)
    plan = re.search(r"memory plan: ([\d.]+) MiB in all", out).group(1)
    loss = [json.loads(l)["loss"] for l in open("%s/l9%s.jsonl" % (d, tag))]
    val = re.search(r"final val_loss ([\d.]+)", out).group(1)
    w = float(m.group(1)) + float(m.group(2) or 0)
    print("  %-18s %9s %9.2f %9s %9s %11.4f %9s %12.2e" % (name, plan, w, m.group(3), m.group(4), loss[-1], val,
                                                          max(abs(a - b) for a, b in zip(loss, ref))))
PY
}

echo "lessons.sh: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo '+dirty'), $(date -u +%Y-%m-%d), $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')$([ $quick = 1 ] && echo ', quick')"
if [ "$lesson" = all ]; then for n in 1 2 3 4 5 6 7 8 9; do "l$n"; done; else "l$lesson"; fi
