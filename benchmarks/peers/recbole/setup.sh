#!/usr/bin/env bash
# Create the RecBole peer environment: benchmarks/peers/recbole/.venv (git-ignored).
#
# RecBole is installed --no-deps because its declared requirements pull packages this
# benchmark never uses (ray, kmeans_pytorch, lightgbm, xgboost, ...) and, through them, an
# unpinned torch (a multi-GB CUDA build). We install the pinned CPU torch first, then only
# what RecBole needs to import and run KTUP and BPR. `ray` is imported at module level by
# recbole.quick_start but only used for hyper-parameter tuning, so a tiny stub stands in.
# Idempotent: a marker file records a finished setup.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
VENV="$HERE/.venv"
MARKER="$VENV/.ktup-peer-setup-v1"
if [[ -f "$MARKER" ]]; then
  echo "recbole peer venv ready: $VENV"
  exit 0
fi
PY="${PYTHON:-python3.11}"
"$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
$PIP install -q "torch==2.13.0"
$PIP install -q --no-deps "recbole==1.2.1"
# What RecBole 1.2.1 imports for KTUP/BPR (found by trying). numpy<2: RecBole's Config sets
# `np.float = np.float_` (gone in numpy 2) for its metrics; tensorboard: its Trainer always
# opens a SummaryWriter; thop: run_recbole counts FLOPs; scikit-learn: recbole.model imports
# every model module, some of which import it; texttable, psutil: its environment table.
$PIP install -q "numpy<2" "scipy<1.14" "pandas<2.3" tqdm "colorlog==4.7.2" "colorama==0.4.4" \
  texttable pyyaml psutil tabulate "scikit-learn<1.6" tensorboard thop
# Stub for `ray` (imported at module level in recbole.quick_start; only used for tuning).
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if ! "$VENV/bin/python" -c 'import ray' 2>/dev/null; then
  mkdir -p "$SITE/ray/tune"
  cat > "$SITE/ray/__init__.py" <<'PY'
"""Stub of `ray` for the ktup RecBole peer venv: RecBole imports it at module level, the
benchmark never tunes hyper-parameters, so nothing here is ever called."""
def init(*args, **kwargs):
    raise RuntimeError("ray is a stub in this venv")
PY
  cat > "$SITE/ray/tune/__init__.py" <<'PY'
"""Stub of ray.tune (see ray/__init__.py)."""
PY
fi
# Our own package, so the drop-in (ktup.integrations.recbole) can run inside RecBole, and
# pytest for tests/test_integrations_recbole.py.
$PIP install -q -e "$REPO" --no-deps
$PIP install -q pytest
"$VENV/bin/python" - <<'PY'
import torch, numpy, recbole
from recbole.quick_start import run_recbole  # noqa: F401
print("torch", torch.__version__, "numpy", numpy.__version__, "recbole", recbole.__version__)
PY
touch "$MARKER"
echo "recbole peer venv ready: $VENV"
