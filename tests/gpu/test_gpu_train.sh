#!/bin/sh
# test_gpu_train.sh: gptrain end to end on the GPU (`make test-gpu`): the cases of tests/gpu/train_cases.sh on the
# tiny preset, 20 steps. Prints "skipped: no GPU" without one (tests/test_emu_train.sh runs the same cases on the
# emulated GPU in every make test).
. tests/lib.sh
if ! nvidia-smi -L >/dev/null 2>&1 || ! ldd "$G" | grep -q libcudart; then
    echo "skipped: no GPU (or gptrain built without CUDA)"
    echo "0 passed, 0 failed"
    exit 0
fi
$G prepare --input data/tinyshakespeare/input.txt --out "$T/data" >/dev/null
STEPS=20
RUN="--data $T/data --preset tiny --steps $STEPS --eval-every 10 --eval-steps 8 --print-every 5"
. tests/gpu/train_cases.sh
finish
