#!/usr/bin/env bash
# attention.sh: our flash-attention kernels beside PyTorch's, on the device in one call:
#   bash bench/attention.sh [--quick] [--save]
# Builds build/bench/attention and the kernels' resource report (make rebuilds flash_sm80.cu and flash_sm90.cu with
# -Xptxas -v into build/bench/attention-ptxas.log: registers, spills and stack per kernel and architecture), prints
# the machine (nvidia-smi -L) and the commit, runs bench/attention.cu (flash-sm80, flash-sm90 forward on
# compute capability 9.0, the naive CUDA attention) and then bench/attention_torch.py (SDPA pinned to its flash and
# cuDNN backends, with $PYTHON or the first python3 that imports torch: bench/python.sh), one after the other, and prints both tables and the ratios ours / SDPA-flash and
# ours / cuDNN of forward and backward TFLOPS at each (causal, d, T). "Ours" is the production path: the forward on
# flash-sm90 where that row exists (FLASH_PATH_AUTO picks it on Hopper), else flash-sm80; the backward is
# flash-sm80's on every GPU. --quick: T in {1024, 4096} only; --tiny: the benchmark's own check (device_check.sh
# --dry-run). Files (CSVs, logs) go to $OUT when set, else build/bench-attention. --save: the whole report goes to
# bench/results/attention-<date>-<commit>.txt. Without a GPU both programs print their skip line and exit 0.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
quick=
save=0
for a in "$@"; do
    case "$a" in
        --quick) quick=--quick ;;
        --tiny) quick=--tiny ;;
        --save) save=1 ;;
        *) echo "attention.sh: $a: unknown argument (expected --quick or --tiny, and/or --save)" >&2; exit 2 ;;
    esac
done
# Every file goes to $OUT when it is set (bench/device_check.sh), else to build/bench-attention.
W=${OUT:-build/bench-attention}
mkdir -p "$W"
rm -f "$W/ours.csv" "$W/torch.csv" "$W/ours.rc" "$W/torch.rc"
. bench/python.sh
# ATTENTION_BIN: a prebuilt benchmark to run instead (the emulated GPU's, for device_check.sh --dry-run), without
# the ptxas report.
bin=${ATTENTION_BIN:-build/bench/attention}
ptxas=build/bench/attention-ptxas.log
if [ -n "${ATTENTION_BIN:-}" ]; then
    ptxas=/dev/null
elif ! make -s build/bench/attention build/bench/attention-ptxas.log >"$W/build.log" 2>&1; then
    echo "bench/attention: build failed (make build/bench/attention needs a CUDA build; log: $W/build.log)" >&2
    tail -n 20 "$W/build.log" >&2
    exit 1
fi
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$([ -n "$(git status --porcelain 2>/dev/null)" ] && echo '+dirty')
nvcc_bin=$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)
machine=$(nvidia-smi -L 2>/dev/null | sed 's/ (UUID: [^)]*)//' | paste -sd';' -)
demangle() { if command -v c++filt >/dev/null 2>&1; then c++filt; else cat; fi; }

# One line per kernel and architecture from ptxas -v: registers, spill stores/loads (bytes), stack frame (bytes).
# The sm90 file's kernels compiled for sm_80 are empty stubs (their bodies are sm_90a only) and are left out.
resources() {
    printf '%-8s %-12s %4s %12s %11s %6s  %s\n' arch file regs spill_stores spill_loads stack kernel
    sed -n -e "s/^== kernels\/cuda\/\(.*\)\.cu$/F \1/p" \
        -e "s/.*Compiling entry function '\([^']*\)' for '\([^']*\)'.*/E \2 \1/p" \
        -e "s/.* \([0-9]*\) bytes stack frame, \([0-9]*\) bytes spill stores, \([0-9]*\) bytes spill loads.*/S \1 \2 \3/p" \
        -e "s/.*Used \([0-9]*\) registers.*/R \1/p" "$ptxas" | demangle |
    awk '$1 == "F" { file = $2 }
         $1 == "E" { arch = $2; name = substr($0, index($0, $3)); sub(/\(.*/, "", name); sub(/^void /, "", name) }
         $1 == "S" { stack = $2; ss = $3; sl = $4 }
         $1 == "R" { if (!(file ~ /sm90/ && arch == "sm_80"))
                         printf "%-8s %-12s %4s %12s %11s %6s  %s\n", arch, file, $2, ss, sl, stack, name }'
}

# Ratios from the two CSVs (columns: section,impl,causal,d,T,B,H,fwd_ms,fwd_tflops,bwd_ms,bwd_tflops,mem_mib,status).
ratios() {
    awk -F, '
        function r(a, b) { return (a == "" || b == "" || b + 0 == 0) ? "n/a" : sprintf("%.2fx", a / b) }
        function v(a) { return a == "" ? "-" : sprintf("%.1f", a) }
        FNR == 1 { next }
        $1 != "grid" { next }
        FILENAME == ARGV[1] {
            k = $3 "," $4 "," $5
            if ($2 == "flash-sm80") { f80[k] = $9; b80[k] = $11; keys[++n] = k }
            if ($2 == "flash-sm90") f90[k] = $9
        }
        FILENAME == ARGV[2] {
            k = $3 "," $4 "," $5
            if ($2 == "sdpa-flash") { ff[k] = $9; fb[k] = $11 }
            if ($2 == "sdpa-cudnn") { cf[k] = $9; cb[k] = $11 }
        }
        END {
            printf "%6s %4s %6s | %-5s %9s %9s %9s %11s %11s | %9s %9s %9s %11s %11s\n", "causal", "d", "T", "fwd",
                   "ours", "flash", "cudnn", "ours/flash", "ours/cudnn", "bwd ours", "flash", "cudnn", "ours/flash",
                   "ours/cudnn"
            for (i = 1; i <= n; i++) {
                k = keys[i]
                split(k, a, ",")
                path = (f90[k] != "") ? "sm90" : "sm80"
                of = (f90[k] != "") ? f90[k] : f80[k]
                printf "%6s %4s %6s | %-5s %9s %9s %9s %11s %11s | %9s %9s %9s %11s %11s\n", a[1], a[2], a[3], path,
                       v(of), v(ff[k]), v(cf[k]), r(of, ff[k]), r(of, cf[k]), v(b80[k]), v(fb[k]), v(cb[k]),
                       r(b80[k], fb[k]), r(b80[k], cb[k])
            }
            if (n == 0) print "(no rows: bench/attention ran no grid case)"
        }' "$W/ours.csv" "$W/torch.csv"
}

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
start=$(date +%s)
{
    echo "benchmark: flash attention (bench/attention.sh${quick:+ $quick}), $(date -u +%Y-%m-%d)"
    echo "machine:   ${machine:-(nvidia-smi -L sees no GPU)}"
    echo "commit:    $commit$dirty"
    echo "compiler:  $("$nvcc_bin" --version 2>/dev/null | grep -i release || echo unknown)"
    echo
    echo "--- ptxas resource report (nvcc -Xptxas -v; the full log is $ptxas)"
    resources
    echo
    echo "--- ours: $bin $quick"
    "$bin" $quick --csv "$W/ours.csv"
    echo $? >"$W/ours.rc"
    echo
    echo "--- PyTorch: $PY bench/attention_torch.py $quick ($PY_WHY)"
    "$PY" bench/attention_torch.py $quick --csv "$W/torch.csv"
    echo $? >"$W/torch.rc"
    [ -f "$W/ours.csv" ] || : >"$W/ours.csv"
    [ -f "$W/torch.csv" ] || : >"$W/torch.csv"
    echo
    echo "--- TFLOPS ratios (ours fwd: flash-sm90 where run, else flash-sm80; ours bwd: flash-sm80)"
    ratios
    echo
    echo "exit: ours $(cat "$W/ours.rc"), PyTorch $(cat "$W/torch.rc"); elapsed $(($(date +%s) - start)) s"
} 2>&1 | tee "$tmp"
rc=0
[ "$(cat "$W/ours.rc" 2>/dev/null)" = 0 ] || rc=1
[ "$(cat "$W/torch.rc" 2>/dev/null)" = 0 ] || rc=1
if [ "$save" = 1 ]; then
    f=bench/results/attention-$(date -u +%Y%m%d)-$commit.txt
    if { cat "$tmp"; echo; echo "--- ptxas lines (registers, spills)"; grep -E "Compiling entry|registers|spill" "$ptxas"; } >"$f"; then
        echo "saved $f"
    else
        echo "bench/attention: cannot write $f" >&2
        rc=1
    fi
fi
exit $rc
