#!/usr/bin/env bash
# Create the PyKEEN peer environment: benchmarks/peers/pykeen/.venv (git-ignored).
# torch is installed first, pinned (an unpinned torch pulls a multi-GB CUDA build); pykeen's
# own requirement on torch is then already met, so pip adds only its pure-Python deps.
# Idempotent: a marker file records a finished setup.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
VENV="$HERE/.venv"
MARKER="$VENV/.ktup-peer-setup-v1"
if [[ -f "$MARKER" ]]; then
  echo "pykeen peer venv ready: $VENV"
  exit 0
fi
PY="${PYTHON:-python3.11}"
"$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
$PIP install -q "torch==2.13.0"
$PIP install -q "pykeen==${PYKEEN_VERSION:-1.11.1}" "torch==2.13.0"
# Our package, so run_pykeen.py can use ktup's evaluator and TransH on the same data.
$PIP install -q -e "$REPO" --no-deps
$PIP install -q pyyaml tqdm
"$VENV/bin/python" -c 'import torch, pykeen; print("torch", torch.__version__, "pykeen", pykeen.get_version())'
touch "$MARKER"
echo "pykeen peer venv ready: $VENV"
