"""Mixed precision: ``precision: fp32 | bf16 | fp16`` (a config field: it changes results).

The model's master weights stay float32 (so deltas, aggregation and server
optimizer state are float32 whatever the precision); only the forward pass
runs under ``torch.autocast``, and backward follows the dtypes autocast
chose. fp16 needs a gradient scaler against underflow; the scaler's
``unscale_`` runs right after backward, so anything that edits gradients
afterwards (client hooks, e.g. a proximal term) sees true gradients.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

#: precision name -> autocast dtype (None: plain float32). The config validates against these keys.
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> None:
    """Raise ``ValueError`` (before any work) when ``precision`` cannot run on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not supported; choose one of {list(PRECISIONS)}")
    if precision == "fp16" and device.type == "cpu":
        raise ValueError(
            "precision: fp16 needs a GPU (CPU autocast has no float16 gradient scaling); "
            "on a CPU use precision: bf16 or fp32"
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"precision: bf16 is not supported by {torch.cuda.get_device_name(device.index or 0)}; use fp16 or fp32"
        )


class Precision:
    """Autocast + (for fp16) gradient scaling for one device; fp32 is a no-op."""

    def __init__(self, name: str = "fp32", device: torch.device | str = "cpu") -> None:
        device = torch.device(device)
        check_precision(name, device)
        self.name = name
        self.device = device
        self.dtype = PRECISIONS[name]
        self.scaler = torch.amp.GradScaler(device.type) if name == "fp16" else None

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Context for forward passes (training and evaluation)."""
        if self.dtype is None:
            yield
            return
        with torch.autocast(device_type=self.device.type, dtype=self.dtype):
            yield

    def backward(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward; with fp16 scaled, then unscaled in place so gradients are true values afterwards."""
        if self.scaler is None:
            loss.backward()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Optimizer step (fp16: skipped by the scaler when a gradient overflowed)."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()
