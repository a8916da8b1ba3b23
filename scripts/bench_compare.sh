#!/usr/bin/env bash
# Training throughput at batch 256: the native engine, candle and PyTorch on the same batches,
# one after the other in one run, then the ratios. PyTorch comes from a venv outside the
# repository (never CI):  python3 -m venv /work/venv-torch && /work/venv-torch/bin/pip install torch numpy
#
# Usage: scripts/bench_compare.sh [DATA] [STEPS]   (DATA default data/bach.arvae, STEPS default 8)
# Env: TORCH_THREADS (default 2), PYTHON (default /work/venv-torch/bin/python), TRAINER (default target/release/arvae-trainer)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-data/bach.arvae}
STEPS=${2:-8}
PYTHON=${PYTHON:-/work/venv-torch/bin/python}
TRAINER=${TRAINER:-target/release/arvae-trainer}
NPZ=$(mktemp --suffix .npz)
trap 'rm -f "$NPZ"' EXIT
data_flag=()
[ -f "$DATA" ] && data_flag=(--data "$DATA")
out=$("$TRAINER" bench "${data_flag[@]}" --batch 256 --steps "$STEPS" --warmup 2 --infer-runs 0 --export "$NPZ")
echo "$out"
torch_out=$("$PYTHON" scripts/bench_torch.py "$NPZ" --threads "${TORCH_THREADS:-2}")
echo "$torch_out"
rate() { grep "$1" <<<"$2" | sed -E 's/.*: ([0-9.]+) measures\/s.*/\1/'; }
native=$(rate "train native" "$out")
candle=$(rate "train candle" "$out")
torch=$(rate "train pytorch" "$torch_out")
awk -v n="$native" -v c="$candle" -v t="$torch" 'BEGIN {
  printf "native / pytorch = %.2fx, candle / pytorch = %.2fx, native / candle = %.2fx\n", n / t, c / t, n / c }'
