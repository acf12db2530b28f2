#!/usr/bin/env bash
# one_node.sh: data-parallel training on one machine with Open MPI: NP ranks (default: the number of GPUs, else 2),
# each rank's OpenMP threads = cores / NP so the ranks do not oversubscribe the CPU. Flags pass to `gptrain train`.
#   dist/launch/one_node.sh --data build/shakespeare_char --batch 6
# As root, Open MPI wants --allow-run-as-root (added when needed).
set -euo pipefail
cd "$(dirname "$0")/../.."
gpus=$(nvidia-smi -L 2>/dev/null | wc -l || true)
NP=${NP:-$([ "${gpus:-0}" -gt 0 ] && echo "$gpus" || echo 2)}
threads=$(( $(nproc) / NP )); [ "$threads" -ge 1 ] || threads=1
root=$([ "$(id -u)" = 0 ] && echo --allow-run-as-root || true)
exec mpirun $root -np "$NP" --bind-to none ./gptrain train --threads "$threads" "$@"
