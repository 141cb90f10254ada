#!/usr/bin/env bash
# The QA and generation pilots that choose the cpu tier's rounds (docs/protocol.md, "Pilot curves"), all at
# once on one GPU in fp32: on this project's 2-core VM each takes about 1.4 hours, on a GPU minutes. A pilot
# only shapes a budget (it is in no table), so running it on other hardware is sound as long as its record
# says so: record.hardware names the GPU, and the carry's MiniLM is float16-rounded (version 0.1.0+fp16,
# scripts/gpu_carry_weights.py). Each pilot is the same `fednlp-bench run` as on the CPU (configs/pilots).
#
# It stops every pilot at --minutes M (default 8) and packs what each wrote into ONE file, $OUT/gpu-pilots.tar.gz
# (the device tool brings back at most 8 files): pilots/<id>/ with record.json, metrics.csv and curve.png of a
# finished pilot, and logs/<id>.log, whose per-round lines hold the validation curve of one that was stopped.
# The runs live under $WORK (default /tmp/gpu-pilots); checkpoints and frozen caches stay on the device.
#
#   CARRY=.carry bash scripts/gpu_pilots.sh --minutes 8          # on the GPU machine (carry [".carry"])
#   bash scripts/gpu_pilots.sh --cpu --minutes 3                  # no GPU: tiny model, 4 IID clients, 2 rounds (smoke)
#   bash scripts/gpu_pilots.sh --only sq-central-iid,ae-central-iid
#   bash scripts/gpu_pilots.sh --only sq-fedavg-natural --rounds 100   # longer than its config: id sq-fedavg-natural-r100
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=8 cpu=0 only="" rounds="" out="${OUT:-gpu-pilots}" work="${WORK:-/tmp/gpu-pilots}"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --minutes) minutes="$2"; shift 2 ;;
        --cpu) cpu=1; shift ;;
        --only) only="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        *) echo "gpu_pilots.sh: unknown option $1 (options: --minutes M, --cpu, --only ID[,ID], --rounds N)" >&2; exit 2 ;;
    esac
done
[[ -z "$rounds" || "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "gpu_pilots.sh: --rounds '$rounds' must be a whole number >= 1" >&2; exit 2; }
[[ "$minutes" =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "gpu_pilots.sh: --minutes '$minutes' must be a number" >&2; exit 2; }
# id  config (configs/pilots/)  algorithm: the pilots left after sq-fedavg-iid-tier (docs/protocol.md)
pilots=(
    "sq-central-iid cpu-v2-squad.yaml centralized"
    "sq-fedavg-natural cpu-v2-squad-natural.yaml fedavg"
    "ae-central-iid cpu-v2-aeslc.yaml centralized"
    "ae-fedavg-iid cpu-v2-aeslc.yaml fedavg"
    "ae-fedavg-natural cpu-v2-aeslc-natural.yaml fedavg"
)
known=" $(for p in "${pilots[@]}"; do printf '%s ' "${p%% *}"; done)"
for id in ${only//,/ }; do
    [[ "$known" == *" $id "* ]] || { echo "gpu_pilots.sh: --only names '$id', not a pilot (pilots:$known)" >&2; exit 2; }
done
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if [[ -n "${CARRY:-}" ]]; then
    [[ -f "$CARRY/install.sh" ]] || { echo "gpu_pilots.sh: CARRY=$CARRY has no install.sh; build it with scripts/make_gpu_carry.sh" >&2; exit 2; }
    eval "$(bash "$CARRY/install.sh")"
fi
if [[ $cpu == 1 ]]; then
    device=cpu smoke=(--model tiny --trainable-layers 1 --scheme iid --clients 4 --clients-per-round 2 --rounds 2 --eval-every 1 --max-train-examples 64 --max-eval-examples 16
                      --max-validation-examples 16)
    threads=1
else
    python -c "import sys, torch; torch.cuda.is_available() or sys.exit('gpu_pilots.sh: torch ' + torch.__version__ + ' sees no CUDA GPU; use --cpu (smoke)')"
    python -c "import torch; print('gpu_pilots.sh: torch', torch.__version__, 'on', torch.cuda.get_device_name(0))"
    device=cuda smoke=() threads=$(( $(nproc) / ${#pilots[@]} > 0 ? $(nproc) / ${#pilots[@]} : 1 ))
fi
rm -rf "$work" && mkdir -p "$work/pilots" "$work/logs" "$out"
start=$(date +%s) pids=()
for p in "${pilots[@]}"; do
    read -r id config algorithm <<< "$p"
    [[ -z "$only" || ",$only," == *",$id,"* ]] || continue
    longer=()
    [[ -z "$rounds" ]] || { id="$id-r$rounds"; longer=(--rounds "$rounds"); }
    OMP_NUM_THREADS=$threads timeout --signal=TERM "$(python -c "print(int($minutes * 60))")" \
        fednlp-bench run --config "configs/pilots/$config" --algorithm "$algorithm" --device "$device" \
        --runs-dir "$work/pilots" --run-id "$id" --keep-checkpoints last --threads "$threads" --no-progress \
        --frozen-cache-dir "/tmp/gpu-pilots-cache/$id" "${smoke[@]}" "${longer[@]}" > "$work/logs/$id.log" 2>&1 &
    pids+=("$!:$id")
done
for entry in "${pids[@]}"; do
    pid="${entry%%:*}" id="${entry#*:}"
    if wait "$pid"; then status=finished; else status="stopped (exit $?; its log holds the curve so far)"; fi
    rounds=$(grep -c -E " round [0-9]+/[0-9]+:" "$work/logs/$id.log" || true)
    echo "gpu_pilots.sh: $id: $status after $(( $(date +%s) - start )) s, $rounds round(s) logged"
done
tar -czf "$out/gpu-pilots.tar.gz" -C "$work" --exclude='checkpoint*' pilots logs
echo "gpu_pilots.sh: $out/gpu-pilots.tar.gz ($(du -h "$out/gpu-pilots.tar.gz" | cut -f1))"
