#!/usr/bin/env bash
# The checks that need a GPU, for a CUDA machine: every test marked `gpu` (skipped elsewhere),
# then the benchmarks (`nasedu bench train`, `nasedu bench darts`), whose JSON reports land
# in _build/bench/. Run from anywhere:
#     bash scripts/gpu_checks.sh            # uses .venv/bin/python when present, else python3
#     PYTHON=/path/to/python bash scripts/gpu_checks.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "error: CUDA is not available to $PYTHON (torch.cuda.is_available() is False):" \
       "run this script on a machine with an NVIDIA GPU and a CUDA build of PyTorch." >&2
  exit 1
fi
"$PYTHON" -c 'import torch; print("GPU:", torch.cuda.get_device_name(0), "| torch", torch.__version__)'

status=0
"$PYTHON" -m pytest -m gpu -rs "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "note: no test is marked gpu yet"
  status=0
fi

# Benchmarks are reported, never asserted (shared machines are noisy).
mkdir -p _build/bench
for name in train darts; do
  "$PYTHON" -m nasedu bench "$name" --device cuda --out "_build/bench/$name.json" || status=$?
done
exit "$status"
