#!/bin/sh
# deps.sh: make sure what the build and the tests need is installed. Installs with apt-get when run as root,
# otherwise names exactly what is missing and exits 1.
#   sh tests/deps.sh          build + test dependencies (OpenBLAS, Open MPI for the data-parallel tests, python3-torch
#                             for the PyTorch oracle, gnuplot for `gptrain plot`)
#   sh tests/deps.sh build    build dependencies only (what ./run.sh needs)
need_build="libopenblas-dev"
missing=""
have_openblas() { printf '#include <cblas.h>\nint main(void){return 0;}\n' | ${CC:-cc} -x c - -o /dev/null -lopenblas >/dev/null 2>&1; }
have_torch() { /usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1; }
have_mpi() { command -v mpicc >/dev/null 2>&1 && command -v mpirun >/dev/null 2>&1; }
command -v ${CC:-cc} >/dev/null 2>&1 || missing="$missing build-essential"
command -v make >/dev/null 2>&1 || missing="$missing make"
have_openblas || missing="$missing $need_build"
if [ "${1:-all}" != build ]; then
    have_torch || missing="$missing python3-torch python3-numpy"
    have_mpi || missing="$missing libopenmpi-dev openmpi-bin"
    command -v gnuplot >/dev/null 2>&1 || missing="$missing gnuplot-nox"
fi
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "deps: installing$missing (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq $missing; } >/tmp/gptrain-deps.log 2>&1 || {
        echo "deps: apt-get failed (log: /tmp/gptrain-deps.log); missing:$missing" >&2
        exit 1
    }
    exit 0
fi
echo "deps: missing:$missing — install with: sudo apt-get install$missing" >&2
exit 1
