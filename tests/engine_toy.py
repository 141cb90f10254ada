"""The toy-task run helpers the engine tests share (tests/test_engine.py, test_engine_runs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fednlp_bench.config import RunConfig
from fednlp_bench.engine.run import checkpoint as ckpt
from fednlp_bench.engine.run import sources
from fednlp_bench.engine.run.runner import run_experiment
from fednlp_bench.results.record import RunRecord
from fednlp_bench.testing.toy import ToyTask, toy_partition


@pytest.fixture(autouse=True)
def toy_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    """The toy task gets contiguous-block partitions (no dependency on the partitioners)."""
    monkeypatch.setattr(sources, "build_partition", toy_partition)


def toy_config(**changes: object) -> RunConfig:
    base = dict(
        task="toy",
        model="toy",
        algorithm="fedavg",
        rounds=3,
        clients_per_round=3,
        partition={"scheme": "iid", "num_clients": 5, "seed": 0, "min_size": 1, "params": {}},
        lr=0.1,
        optimizer="sgd",
        batch_size=8,
        local_epochs=1,
    )
    base.update(changes)
    return RunConfig.from_dict(base)


def run(cfg: RunConfig, runs_dir: Path, task: ToyTask | None = None, **kw: object) -> RunRecord:
    return run_experiment(cfg, runs_dir, task=task or ToyTask(n_train=60), progress=False, **kw)  # type: ignore[arg-type]


def final_weights(runs_dir: Path, record: RunRecord) -> dict[str, torch.Tensor]:
    return ckpt.load_checkpoint(runs_dir / record.run_id).weights
