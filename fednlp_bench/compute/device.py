"""Where a run computes: ``--device auto|cpu|cuda|cuda:N|mps``.

The device is a *run option*, like ``--threads``: it changes how fast a run
goes, not what it computes (up to float noise), so it is not part of the
config or its hash; the record's ``hardware.device`` says which one was used.
A device that does not exist is an error before any data is loaded, never a
quiet fall-back to the CPU (a GPU record saying ``device: cpu`` is the bug
this module exists to prevent).
"""

from __future__ import annotations

import os
import re
from typing import Any

import torch

#: Accepted forms of ``--device`` (help text and errors are derived from this).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
_CUDA_RE = re.compile(r"^cuda(?::(\d+))?$")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(spec: str | torch.device | None) -> torch.device:
    """The torch device for ``spec``; raises ``ValueError`` naming the fix when it does not exist here.

    ``auto`` (and None) picks CUDA device 0 when present, else MPS, else the CPU.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = "auto" if spec is None else str(spec).strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not _mps_available():
            raise ValueError("--device mps: this torch build or machine has no Apple MPS backend; use --device cpu")
        return torch.device("mps")
    match = _CUDA_RE.match(spec)
    if match is None:
        raise ValueError(f"--device {spec!r} is not supported; choose one of {', '.join(DEVICE_CHOICES)}")
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise ValueError(
            f"--device {spec}: CUDA is not available (torch {torch.__version__} is {build}, or no GPU/driver is "
            f"visible). Install the CUDA build of torch (see README: 'GPU'), or run with --device cpu"
        )
    index = int(match.group(1) or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise ValueError(f"--device {spec}: only {count} CUDA device(s) are visible (cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)


def device_for_rank(spec: str | None, rank: int) -> str:
    """The device of multi-process worker ``rank`` (1-based clients): one GPU per process, round-robin.

    ``cuda``/``auto`` with several GPUs spread the processes over them; an
    explicit ``cuda:N``, ``cpu`` or ``mps`` pins every process to it.
    """
    device = resolve_device(spec)
    explicit_index = spec is not None and ":" in str(spec)
    if device.type != "cuda" or explicit_index:
        return str(device)
    return f"cuda:{max(rank, 0) % torch.cuda.device_count()}"


def device_name(device: torch.device) -> str | None:
    """Human name of an accelerator (GPU model), None for the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device.index or 0)
    if device.type == "mps":
        return "Apple MPS"
    return None


def cuda_rng_states() -> torch.Tensor | None:
    """All CUDA generators' states stacked (for checkpoints), None without CUDA."""
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.stack(torch.cuda.get_rng_state_all())


def set_cuda_rng_states(states: torch.Tensor | None) -> None:
    """Restore what :func:`cuda_rng_states` saved when this machine has the same number of GPUs.

    A run resumed on another machine (CPU, or fewer GPUs) cannot replay the
    GPU's random stream anyway; it goes on with a fresh one (logged by the caller).
    """
    if states is None or not torch.cuda.is_available():
        return
    if states.shape[0] != torch.cuda.device_count():
        return
    torch.cuda.set_rng_state_all(list(states.cpu()))


def to_device(tree: Any, device: torch.device | str) -> Any:
    """``tree`` (tensors in nested dicts/lists/tuples) with every tensor moved to ``device``.

    Used wherever tensors cross a device boundary: checkpoints (saved on the
    CPU), per-client state on disk, and FedML messages between processes.
    """
    if isinstance(tree, torch.Tensor):
        return tree.to(device)
    if isinstance(tree, dict):
        return {k: to_device(v, device) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_device(v, device) for v in tree)
    return tree


def available_cores() -> int:
    """Cores this process may use (its CPU affinity, e.g. a Slurm allocation), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
