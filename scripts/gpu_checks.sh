#!/usr/bin/env bash
# The checks that need a GPU, for a CUDA machine: every test marked `gpu` (skipped elsewhere),
# then `nasedu bench` where the CLI has it. Run from anywhere:
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

# `nasedu bench` exists once the CLI registers it; report, never assert, its numbers.
if "$PYTHON" -m nasedu --help 2>/dev/null | grep -qw bench; then
  mkdir -p _build/bench
  "$PYTHON" -m nasedu bench train --device cuda --out _build/bench/train.json || status=$?
else
  echo "note: this nasedu has no \`bench\` command; skipped"
fi
exit "$status"
