#!/usr/bin/env bash
# A GPU window's prepared check, at most --minutes M (default 5) from start to the last line:
#   1. the device: torch, CUDA, GPU name and memory, bf16 support;
#   2. one FedAvg round of full fine-tuning on CUDA in bf16 vs the same round on the CPU in fp32: the train
#      losses must agree within 2% (relative; scripts/gpu_check.py round);
#   3. benchmarks/bench_throughput.py on CUDA (fp32 and bf16 full fine-tuning vs a plain loop), and the
#      device rate it implies (TFLOP/s, for `fednlp-bench suite configs/suite-gpu.yaml --dry-run --device-tflops`);
#   4. the gpu tier's 20News tuning stage with --jobs 4 (or --jobs N) for the rest of the window; its
#      records land in leaderboards/gpu/records (commit them yourself; interrupted runs resume next time).
# Everything it measured is in $OUT/summary.json (default gpu-check/).
#
#   bash scripts/gpu_check.sh                   # on the GPU machine
#   bash scripts/gpu_check.sh --dry-run         # anywhere: print the steps and the tier's estimate, run nothing
#   bash scripts/gpu_check.sh --cpu --minutes 4 # no GPU: every step on the CPU (tiny model, tiny tier copy)
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=5 jobs=4 dry=0 cpu=0 out=gpu-check
while [[ $# -gt 0 ]]; do
    case "$1" in
        --minutes) minutes="$2"; shift 2 ;;
        --jobs) jobs="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --dry-run) dry=1; shift ;;
        --cpu) cpu=1; shift ;;
        *) echo "gpu_check.sh: unknown option $1 (options: --minutes M, --jobs N, --out DIR, --dry-run, --cpu)" >&2
           exit 2 ;;
    esac
done
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
start=$(date +%s)
mkdir -p "$out"
if [[ $cpu == 1 ]]; then
    device=cpu model=tiny suite="$out/tiny-gpu-tier.yaml"
    bench=(--device cpu --model tiny --steps 2 --batch-size 4 --train-examples 32 --eval-examples 8 --max-length 32
           --repeats 1 --threads 1 --arms "fp32 full,bf16 full")
else
    device=cuda model=minilm suite=configs/suite-gpu.yaml
    bench=(--device cuda --precision bf16 --steps 30 --batch-size 32 --max-length 128 --train-examples 1000
           --eval-examples 256 --repeats 2 --arms "fp32 full,bf16 full")
fi
step() { echo "gpu_check [$(( $(date +%s) - start )) s] $*"; }
if [[ $dry == 1 ]]; then
    step "1. device: python scripts/gpu_check.py env"
    step "2. round: python scripts/gpu_check.py round --device $device --precision bf16 --model $model"
    step "3. throughput: python benchmarks/bench_throughput.py ${bench[*]}; python scripts/gpu_check.py rate"
    step "4. tuning: fednlp-bench suite $suite --task classification --stage tune --jobs $jobs --budget-minutes <rest of $minutes min>"
    fednlp-bench suite configs/suite-gpu.yaml --task classification --dry-run --jobs "$jobs" | grep -v "would run"
    exit 0
fi
if [[ $cpu == 0 ]]; then
    python -c "import sys, torch; torch.cuda.is_available() or sys.exit('gpu_check.sh: torch ' + torch.__version__ + ' sees no CUDA GPU; use --cpu (CPU fallback) or --dry-run')"
else
    python scripts/gpu_check.py tiny-suite configs/suite-gpu.yaml "$suite" --out-dir "$out/tiny-tier" >/dev/null
fi
step "1. device"
python scripts/gpu_check.py env --json "$out/env.json"
step "2. one FedAvg round, full fine-tuning: $device bf16 vs CPU fp32"
python scripts/gpu_check.py round --device "$device" --precision bf16 --model "$model" --json "$out/round.json"
step "3. bench_throughput.py on $device"
python benchmarks/bench_throughput.py "${bench[@]}" --json "$out/throughput.json"
python scripts/gpu_check.py rate "$out/throughput.json" --json "$out/rate.json"
left=$(python -c "print(round(($minutes * 60 - ($(date +%s) - $start) - 20) / 60, 2))")
if python -c "import sys; sys.exit(0 if $left >= 1 else 1)"; then
    step "4. 20News tuning stage, --jobs $jobs, $left min"
    fednlp-bench suite "$suite" --task classification --stage tune --jobs "$jobs" --budget-minutes "$left" \
        --no-leaderboard | tee "$out/tuning.log"
else
    step "4. skipped: $left min left of $minutes"
    echo "skipped: $left min left" > "$out/tuning.log"
fi
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
summary = {name: json.loads((out / f"{name}.json").read_text()) for name in ("env", "round", "throughput", "rate")}
summary["tuning_log_tail"] = (out / "tuning.log").read_text().splitlines()[-6:]
(out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
r, t = summary["round"], summary["rate"]
print(f"gpu_check: {summary['env'].get('gpu') or summary['env'].get('cpu_capability')}; round loss {r['train_loss']:.5f} "
      f"vs CPU fp32 {r['cpu_fp32_train_loss']:.5f} (relative {r['relative_difference']:.4f}, tolerance "
      f"{r['tolerance']}: {'pass' if r['passed'] else 'FAIL'}); {t['arm']}: {t['train_ex_s']:.1f} ex/s = "
      f"{t['tflops']:.2f} TFLOP/s; summary: {out / 'summary.json'}")
PY
step "done"
