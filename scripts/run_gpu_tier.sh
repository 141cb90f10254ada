#!/usr/bin/env bash
# The gpu tier (docs/protocol.md) as one prepared command: the tuning grid, then the final seeds, of the tasks
# named (default: classification), --jobs runs at once sharing the GPU, then the tier tables in leaderboards/gpu.
# With --budget-minutes M it runs as many runs as fit in M minutes: tuning first (a finished tuning stage is
# useful on its own: its selection is in plan.json), no run starts that would end after M minutes, and runs still
# going at M minutes stop and resume from their checkpoints on the next call. It commits nothing: it leaves the
# records (leaderboards/gpu/records; they name the GPU in record.hardware), the tables so far, and a summary of
# what is left (printed and in <out>/window-summary.txt). Run the same command again to continue.
#
#   bash scripts/run_gpu_tier.sh --budget-minutes 8                 # 20News, 4 runs at once, 8 minutes
#   bash scripts/run_gpu_tier.sh --jobs 6 tagging qa                # several tasks: all their tuning first
#   bash scripts/run_gpu_tier.sh --dry-run                          # anywhere: the runs and the device estimate
#   bash scripts/run_gpu_tier.sh --cpu --budget-minutes 2           # no GPU (tests; SUITE= a tiny tier copy)
#   CARRY=.carry bash scripts/run_gpu_tier.sh                      # offline image: install the carry first
set -euo pipefail
cd "$(dirname "$0")/.."
suite="${SUITE:-configs/suite-gpu.yaml}"
jobs=4 budget="" dry=0 cpu=0 tasks=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --budget-minutes) budget="$2"; shift 2 ;;
        --jobs) jobs="$2"; shift 2 ;;
        --dry-run) dry=1; shift ;;
        --cpu) cpu=1; shift ;;
        -*) echo "run_gpu_tier.sh: unknown option $1 (options: --budget-minutes M, --jobs N, --dry-run, --cpu)" >&2
            exit 2 ;;
        *) tasks+=("$1"); shift ;;
    esac
done
[[ ${#tasks[@]} -gt 0 ]] || tasks=(classification)
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if [[ -n "${CARRY:-}" ]]; then  # scripts/make_gpu_carry.sh's folder: packages the image lacks, MiniLM, the data
    [[ -f "$CARRY/install.sh" ]] || { echo "run_gpu_tier.sh: CARRY=$CARRY has no install.sh; build it with scripts/make_gpu_carry.sh" >&2; exit 2; }
    eval "$(bash "$CARRY/install.sh")"
fi
out=$(python -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1])).get('out', 'leaderboards/gpu'))" "$suite")
run=(fednlp-bench suite "$suite" --task "${tasks[@]}" --jobs "$jobs")
if [[ $dry == 1 ]]; then
    "${run[@]}" --dry-run | grep -v "would run"
    echo "run_gpu_tier.sh: would run: ${run[*]}${budget:+ --budget-minutes $budget} --no-leaderboard"
    exit 0
fi
if [[ $cpu == 0 ]]; then
    python - <<'PY'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit(f"run_gpu_tier.sh: torch {torch.__version__} sees no CUDA GPU; install the CUDA build (README), or "
             "validate anywhere with: bash scripts/run_gpu_tier.sh --dry-run")
print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
PY
fi
start=$(date +%s)
"${run[@]}" ${budget:+--budget-minutes "$budget"} --no-leaderboard
if [[ -f "$out/plan.json" ]]; then
    fednlp-bench leaderboard --plan "$out/plan.json" --out "$out" \
        || echo "run_gpu_tier.sh: the tables wait for more records (plan: $out/plan.json)"
fi
{
    echo "gpu tier window: ${tasks[*]}, --jobs $jobs${budget:+, budget $budget min}, $(( $(date +%s) - start )) s"
    "${run[@]}" --dry-run | grep -v "would run"
    echo "continue with: bash scripts/run_gpu_tier.sh${budget:+ --budget-minutes $budget} --jobs $jobs ${tasks[*]}"
} | tee "$out/window-summary.txt"
