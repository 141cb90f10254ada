#!/usr/bin/env bash
# Build the benchmark's own virtualenv: fednlp-bench (editable) plus flwr-datasets,
# the baseline that bench_partition.py times against. flwr-datasets is NOT a
# project dependency (it pins datasets<5 and pulls seaborn/pandas/rich), so it
# lives here only.
#
#   benchmarks/setup_bench_env.sh [VENV_DIR]      (default: <repo>/.bench-venv)
#   BENCH_VENV=/somewhere benchmarks/setup_bench_env.sh
#
# torch is pinned so pip takes the local CPU wheel instead of a multi-GB CUDA
# build; flwr-datasets itself needs torch only for its [audio] extra.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-${BENCH_VENV:-$repo/.bench-venv}}
python=${PYTHON:-python3}

"$python" -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
python -m pip install -q --upgrade pip
# flwr-datasets 0.6.x: Python >= 3.11, datasets>=4,<5 (pip resolves one that both accept).
pip install -q "torch==2.13.0" -e "$repo" "flwr-datasets>=0.6,<0.7"
python - <<'PY'
from importlib.metadata import version

import flwr_datasets.partitioner  # noqa: F401
import fednlp_bench.partitioners  # noqa: F401

print("bench venv ok: " + ", ".join(f"{p} {version(p)}" for p in ("flwr-datasets", "datasets", "numpy", "torch")))
PY
echo "activate with: . $venv/bin/activate"
