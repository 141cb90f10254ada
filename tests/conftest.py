"""Fixtures shared by several test modules."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
import torch


def _train_steps(task: Any, feats: Any, steps: int, lr: float, batch_size: int = 16, seed: int = 0):
    """Plain AdamW loop for task tests (the engine's trainer is tested on its own); returns model, losses."""
    torch.manual_seed(seed)
    model = task.build_model()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    order = np.random.default_rng(seed).permutation(len(feats))
    losses = []
    for step in range(steps):
        idx = [int(order[(step * batch_size + k) % len(order)]) for k in range(batch_size)]
        loss = model(**task.collate([feats[i] for i in idx])).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    return model, losses


@pytest.fixture
def train_steps() -> Callable[..., tuple[torch.nn.Module, list[float]]]:
    return _train_steps
