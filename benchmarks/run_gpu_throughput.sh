#!/usr/bin/env bash
# The throughput benchmark on a GPU, as one prepared script (issue 9): prints the GPU, then the ratio table
# for the CPU-style arms in fp32 and with the top2/LoRA arms in bf16. Needs the CUDA build of torch (README)
# and the offline data (FEDNLP_DATA_DIR). Usage: bash benchmarks/run_gpu_throughput.sh [extra bench flags]
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA'; print(torch.__version__, torch.cuda.get_device_name(0))"
python benchmarks/bench_throughput.py --device cuda --precision bf16 --steps 50 --batch-size 32 --max-length 128 \
    --train-examples 2000 --eval-examples 512 --repeats 3 --json gpu_throughput.json "$@"
