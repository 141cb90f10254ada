#!/usr/bin/env bash
# The gpu tier of one task (docs/protocol.md) as one prepared command: tuning grid, final seeds, then the task's
# tables in leaderboards/gpu. Needs a CUDA build of torch (README: "CPU-only or GPU torch") and the data
# (FEDNLP_DATA_DIR, or the hub with internet). Records name the GPU (record.hardware); commit
# leaderboards/gpu/records afterwards. Interrupted? Run the same command: finished runs are skipped.
#
#   bash scripts/run_gpu_tier.sh                   # classification (20News)
#   bash scripts/run_gpu_tier.sh tagging           # or qa, generation
#   WHEELS=/path/to/wheels bash scripts/run_gpu_tier.sh   # offline machine: install missing packages from wheels
set -euo pipefail
cd "$(dirname "$0")/.."
task="${1:-classification}"
suite="${SUITE:-configs/suite-gpu.yaml}"
if [[ -n "${WHEELS:-}" ]]; then
    pip install --no-index --find-links "$WHEELS" -e . >/dev/null
fi
python - <<'PY'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit(f"run_gpu_tier.sh: torch {torch.__version__} sees no CUDA GPU; install the CUDA build (README) or "
             "validate on a CPU with: fednlp-bench suite configs/suite-gpu.yaml --dry-run")
print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
PY
start=$(date +%s)
fednlp-bench suite "$suite" --task "$task" --no-leaderboard
fednlp-bench leaderboard --plan leaderboards/gpu/plan.json --out leaderboards/gpu
echo "run_gpu_tier.sh: $task done in $(( $(date +%s) - start )) s"
