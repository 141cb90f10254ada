"""Fixtures shared by several test modules, and what keeps the test workers (pytest-xdist) independent.

Under ``-n auto`` every worker is its own process: each gets its own
``FEDNLP_CACHE_DIR`` (``<cache>/pytest-<worker>``), so no two workers build
the same tokenization or frozen-bottom file at once, and a share of the cores
as torch threads, so two workers do not oversubscribe two cores. Tests that
must not overlap (the FedML ones: many processes, fixed ports) carry
``@pytest.mark.xdist_group("fedml")`` and run on one worker, one after another.
"""

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


_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER:
    from fednlp_bench.paths import CACHE_DIR_ENV

    _base = Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "fednlp_bench").expanduser()
    os.environ[CACHE_DIR_ENV] = str(_base / f"pytest-{_WORKER}")
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    _threads = max(1, (os.cpu_count() or 1) // max(1, _workers))
    torch.set_num_threads(min(torch.get_num_threads(), _threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(_threads))  # subprocesses (benchmarks, FedML) likewise


@pytest.fixture(scope="module")
def offline_task_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point tasks at the offline data and a per-module token cache, so tests never share cached maps."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEDNLP_DATA_DIR", str(DATA_DIR))
        mp.setenv("FEDNLP_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield DATA_DIR
