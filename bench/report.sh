# report.sh: what the table benchmarks share, sourced by bench/shapes.sh and bench/attention_table.sh:
#   report_args NAME "$@"   accept nothing or --save (else a one-line refusal, exit 2); sets SAVE
#   COMMIT                  the short commit, "+dirty" when the tree has changes (also exported as GPTRAIN_COMMIT)
#   report_run NAME CMD     run the report function CMD, print it, and with --save keep it in
#                           bench/results/NAME-<date>-<commit>.txt
report_args() {
    local name=$1
    shift
    SAVE=0
    case "${1:-}" in
        "") ;;
        --save) SAVE=1 ;;
        *) echo "$name.sh: $1: unknown argument (expected --save or nothing)" >&2; exit 2 ;;
    esac
}
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo '+dirty')
GPTRAIN_COMMIT=$COMMIT
export GPTRAIN_COMMIT
report_run() {
    local name=$1 fn=$2 tmp start
    tmp=$(mktemp)
    start=$(date +%s)
    { "$fn"; echo; echo "elapsed: $(($(date +%s) - start)) s"; } | tee "$tmp"
    if [ "$SAVE" = 1 ]; then
        local f=bench/results/$name-$(date -u +%Y%m%d)-${COMMIT%+dirty}.txt
        cp "$tmp" "$f"
        echo "saved $f"
    fi
    rm -f "$tmp"
}
gpu_skip_reason() {
    nvidia-smi -L >/dev/null 2>&1 && echo 'binary built without CUDA' || echo 'nvidia-smi -L sees no GPU'
}
