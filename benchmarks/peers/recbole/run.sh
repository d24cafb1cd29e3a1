#!/usr/bin/env bash
# Set up the RecBole peer venv (idempotent) and run RecBole's KTUP and BPR on RecBole's exact
# ml-100k split. Extra arguments go to run_recbole.py, e.g.:  bash run.sh --epochs 20 --tag bounded
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$HERE/setup.sh"
exec "$HERE/.venv/bin/python" "$HERE/run_recbole.py" "$@"
