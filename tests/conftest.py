"""Fixtures shared by several test modules."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator

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


#: The offline data (../shared/data beside the checkout unless FEDNLP_DATA_DIR says otherwise).
DATA_DIR = Path(os.environ.get("FEDNLP_DATA_DIR", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")).resolve()
# The README passes a relative FEDNLP_DATA_DIR; tests that chdir (CLI tests) need it absolute.
os.environ["FEDNLP_DATA_DIR"] = str(DATA_DIR)


@pytest.fixture(scope="module")
def offline_task_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point tasks at the offline data and a per-module token cache, so tests never share cached maps."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEDNLP_DATA_DIR", str(DATA_DIR))
        mp.setenv("FEDNLP_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield DATA_DIR
