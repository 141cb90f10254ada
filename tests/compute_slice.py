"""A 20News slice on the tiny model, run through the engine: what the compute-layer tests train on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fednlp_bench.compute.precision import Precision
from fednlp_bench.compute.setup import build_compute
from fednlp_bench.config import RunConfig
from fednlp_bench.engine.run.runner import run_experiment


SLICE = dict(
    task="classification", data="20news", model="tiny", max_length=32, max_train_examples=48, max_eval_examples=16,
    partition={"scheme": "iid", "num_clients": 2, "seed": 0, "min_size": 1, "params": {}},
    rounds=1, clients_per_round=2, local_epochs=None, local_steps=2, batch_size=8, lr=1e-3,
)


def run_slice(tmp_path: Path, name: str, **changes: Any) -> Any:
    cfg = RunConfig.from_dict({**SLICE, **changes})
    return run_experiment(cfg, tmp_path / name, progress=False, frozen_cache_dir=tmp_path / "frozen")


def prepared(config: RunConfig) -> tuple[Any, Any, Any]:
    from fednlp_bench.engine.run.sources import build_task

    task = build_task(config)
    splits = task.load()
    compute = build_compute(task, config, torch.device("cpu"), Precision(config.precision))
    feats = task.preprocess(splits["train"], train=True)
    return task, compute, feats
