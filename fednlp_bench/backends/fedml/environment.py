"""Is the FedML virtualenv there? Where its python is, and the install command when something is missing.

FedML 0.9.6 pins numpy<2, protobuf<4, requests<2.32 and more, so it lives in
its own virtualenv (``scripts/setup_fedml_env.sh`` -> ``.fedml-venv``). This
module imports nothing from FedML: it only finds that environment and probes it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from fednlp_bench.execution import COMMS

REPO_ROOT = Path(__file__).resolve().parents[3]
#: Where scripts/setup_fedml_env.sh builds the FedML virtualenv by default.
DEFAULT_FEDML_VENV = REPO_ROOT / ".fedml-venv"
FEDML_PYTHON_ENV = "FEDNLP_FEDML_PYTHON"

INSTALL_FEDML = (
    "FedML is not installed. It needs its own virtualenv (it pins numpy<2, protobuf<4):\n"
    "    bash scripts/setup_fedml_env.sh            # builds .fedml-venv (~4 min, ~6 GB)\n"
    f"or point {FEDML_PYTHON_ENV} at a python that has fedml==0.9.6, mpi4py and this project installed."
)
INSTALL_MPI = (
    "MPI is missing (no `mpirun` on PATH). Install Open MPI and mpi4py:\n"
    "    apt-get install -y openmpi-bin libopenmpi-dev\n"
    "    .fedml-venv/bin/pip install mpi4py"
)
INSTALL_GRPC = "gRPC is missing in the FedML environment:\n    .fedml-venv/bin/pip install grpcio"


class FedMLUnavailable(RuntimeError):
    """The FedML environment or MPI is missing; the message says how to install it."""


class FedMLRunError(RuntimeError):
    """A FedML run failed or timed out; the message names the log and the checkpoint to resume from."""


# ------------------------------------------------------------------ environment
def find_fedml_python(python: str | os.PathLike[str] | None = None) -> Path:
    """The interpreter of the FedML virtualenv: argument, $FEDNLP_FEDML_PYTHON, or <repo>/.fedml-venv."""
    for given, what in ((python, "python="), (os.environ.get(FEDML_PYTHON_ENV), f"${FEDML_PYTHON_ENV}=")):
        if given:  # named explicitly: never fall back to another interpreter behind the user's back
            if not Path(given).is_file():
                raise FedMLUnavailable(f"{what}{given} does not exist.\n{INSTALL_FEDML}")
            return Path(given)
    default = DEFAULT_FEDML_VENV / "bin" / "python"
    if default.is_file():
        return default
    raise FedMLUnavailable(INSTALL_FEDML)


def check_fedml_environment(python: str | os.PathLike[str] | None = None, comm: str = "MPI") -> Path:
    """Fail early with the install command when FedML, mpi4py, mpirun or grpcio is missing."""
    if comm not in COMMS:
        raise ValueError(f"comm={comm!r}; choose one of {list(COMMS)}")
    py = find_fedml_python(python)
    if comm == "MPI" and shutil.which("mpirun") is None:
        raise FedMLUnavailable(INSTALL_MPI)
    modules = ["fedml", "fednlp_bench", "mpi4py" if comm == "MPI" else "grpc"]
    probe = "import importlib.util as u, sys; print(' '.join(m for m in sys.argv[1:] if u.find_spec(m) is None))"
    try:
        done = subprocess.run([str(py), "-c", probe, *modules], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise FedMLUnavailable(f"{py} does not run ({err}).\n{INSTALL_FEDML}") from err
    missing = done.stdout.split() if done.returncode == 0 else modules
    if "fedml" in missing or "fednlp_bench" in missing:
        raise FedMLUnavailable(f"{py} lacks {missing}.\n{INSTALL_FEDML}")
    if "mpi4py" in missing:
        raise FedMLUnavailable(INSTALL_MPI)
    if "grpc" in missing:
        raise FedMLUnavailable(INSTALL_GRPC)
    return py
