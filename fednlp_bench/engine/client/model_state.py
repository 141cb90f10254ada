"""What a client receives and sends: the named float tensors of "the model", and the finiteness checks on them.

``ModelState`` decides which tensors travel (the trainable ones plus the
persistent buffers of modules that train); ``all_finite`` is the cheap check
every update passes before the server may use it.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import torch

from fednlp_bench.algorithms.base import Weights

BYTES_PER_VALUE = 4  # float32 on the wire


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """True when no tensor holds NaN/inf; cheap enough to run for every client and round.

    Fast path: one float32 sum per tensor and a single host sync (a NaN/inf
    anywhere makes the total non-finite). Only when that total is non-finite
    (NaN/inf, or a float32 overflow of huge but finite values) is each tensor
    checked element-wise, so the answer is exact.
    """
    tensors = list(tensors)
    if not tensors or bool(torch.isfinite(torch.stack([t.sum() for t in tensors]).sum())):
        return True
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def non_finite_names(weights: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the tensors that hold NaN/inf (for error messages)."""
    return [name for name, t in weights.items() if not bool(torch.isfinite(t).all())]


class ClientUpdateRejected(RuntimeError):
    """A client's update is unusable (non-finite loss or weights); the round goes on without it."""


class ModelState:
    """The named float tensors that make up "the global model" of a torch module.

    Trainable parameters (tied ones once) plus persistent floating buffers
    (e.g. norm statistics) of modules that train: exactly what a client
    receives and sends back. Frozen tensors (``requires_grad=False``, see
    ``fednlp_bench.compute.trainable``) never leave the model, so deltas,
    bytes, aggregation, server moments and checkpoints cover only what trains.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        persistent = set(model.state_dict(keep_vars=True).keys())
        params = list(model.named_parameters())
        slots: list[tuple[str, torch.Tensor]] = [(n, p) for n, p in params if p.requires_grad]
        all_train = len(slots) == len(params)
        owners = {n.rpartition(".")[0] for n, _ in slots}
        slots += [
            (n, b) for n, b in model.named_buffers()
            if n in persistent and torch.is_floating_point(b) and (all_train or n.rpartition(".")[0] in owners)
        ]
        self.slots = slots
        self.param_names = [n for n, p in model.named_parameters() if p.requires_grad]

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.slots]

    @property
    def num_bytes(self) -> int:
        """float32 bytes of one model transfer, trainable tensors only (what one client downloads or uploads)."""
        return sum(t.numel() for _, t in self.slots) * BYTES_PER_VALUE

    def get(self) -> Weights:
        """A detached copy of the model's current weights."""
        return {n: t.detach().clone() for n, t in self.slots}

    @torch.no_grad()
    def load(self, weights: Mapping[str, torch.Tensor]) -> None:
        missing = [n for n, _ in self.slots if n not in weights]
        if missing:
            raise ValueError(f"weights lack {len(missing)} tensor(s) of the model, e.g. {missing[:3]}")
        for n, t in self.slots:
            t.copy_(weights[n])

    @torch.no_grad()
    def delta_from(self, weights: Mapping[str, torch.Tensor]) -> Weights:
        return {n: t.detach() - weights[n] for n, t in self.slots}
