"""Shared piece of the robust aggregators: client updates of one tensor stacked along a new first axis."""

from __future__ import annotations

from typing import Sequence

import torch

from fednlp_bench.algorithms.base import ClientResult


def stacked(results: Sequence[ClientResult], name: str) -> torch.Tensor:
    """``[K, *shape]`` deltas of tensor ``name``, sorted along the client axis (what median/trim need)."""
    return torch.stack([r.delta[name] for r in results]).sort(dim=0).values
