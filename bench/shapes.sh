#!/usr/bin/env bash
# shapes.sh: how the width of a layer moves the speed of its matmul (bench/matmul_shapes.c): the forward GEMM
# out (N,M) = x (N,d) . W (M,d)^T for d = 768 over widths near d_ff = 8/3*d (the best SwiGLU width is marked) and near
# GPT-2's vocab (50257 against its paddings), printing ms, TFLOPS and efficiency per width. On the CPU a short run
# (N = 512 rows for d_ff, 256 for the vocab: about 15 s on 2 cores); on the GPU too when `nvidia-smi -L` sees one and
# the binary was built with CUDA (N = 4096, bf16 tensor cores). --save writes bench/results/shapes-<date>-<commit>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/report.sh
report_args shapes "$@"
make -s build/bench/matmul_shapes >&2
bin=build/bench/matmul_shapes
report() {
    echo "benchmark: matmul shapes (bench/shapes.sh), $(date -u +%Y-%m-%d), $(nproc) CPUs"
    echo
    "$bin" --device cpu --sweep dff --d 768 --tokens 512 --repeats 9
    echo
    "$bin" --device cpu --sweep vocab --d 768 --tokens 256 --repeats 5
    if nvidia-smi -L >/dev/null 2>&1 && "$bin" --devices | grep -qx cuda; then
        echo
        "$bin" --device cuda --sweep dff --d 768 --tokens 4096 --precision bf16
        echo
        "$bin" --device cuda --sweep vocab --d 768 --tokens 4096 --precision bf16
    else
        echo
        echo "gpu: skipped ($(gpu_skip_reason))"
    fi
}
report_run shapes report
