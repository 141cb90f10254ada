"""Preparing a run: everything between a resolved run folder and the first round.

Loads the task, builds the model (first: a bad trainable setting fails before
any data work), regenerates the partition from the config's spec (or loads a
saved one after checking it belongs to this data), sets up the optional
features, tokenizes, builds the client side (engine/client/setup.py, the same
for every backend) and the backend, and restores a checkpoint. Every bad input
fails here, before any training. Which folder and checkpoint a call means is
resolved before (engine/run/resolve.py).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from datasets import Dataset

from fednlp_bench import progress as report
from fednlp_bench.algorithms.base import Strategy, Weights
from fednlp_bench.algorithms.registry import create_strategy
from fednlp_bench.compute.device import set_cuda_rng_states, to_device
from fednlp_bench.compute.precision import Precision
from fednlp_bench.compute.setup import Compute, build_compute
from fednlp_bench.config import RunConfig
from fednlp_bench.engine.client.data import ClientData
from fednlp_bench.engine.client.setup import ClientSetup, prepare_client
from fednlp_bench.engine.client.state import ClientStateStore
from fednlp_bench.engine.client.trainer import LocalTrainer
from fednlp_bench.engine.run import checkpoint as ckpt
from fednlp_bench.engine.run import sources
from fednlp_bench.engine.run.features import RunFeatures
from fednlp_bench.engine.run.sources import PartitionLike
from fednlp_bench.engine.server.simulator import Backend, InProcessBackend
from fednlp_bench.results.record import RoundResult
from fednlp_bench.tasks.base import Task

log = logging.getLogger("fednlp_bench.engine")

#: ``factory(client_runner, client_rows(cid, rnd), progress=...) -> Backend``; ``InProcessBackend`` is the default.
BackendFactory = Callable[..., Backend]


def centralized_steps_per_round(config: RunConfig, union_size: int, num_clients: int) -> int:
    """Optimizer steps of one centralized round: FedAvg's expected local examples per round / batch size.

    With ``local_steps`` S, FedAvg runs K * S steps per round; with
    ``local_epochs`` E a uniformly sampled client holds n / N examples on
    average, so a round processes E * K * n / N examples in expectation.
    """
    if config.local_steps is not None:
        return config.clients_per_round * config.local_steps
    assert config.local_epochs is not None
    examples = config.local_epochs * config.clients_per_round * union_size / num_clients
    return max(1, math.ceil(examples / config.batch_size))


# ------------------------------------------------------------------ the prepared run
@dataclass
class PreparedRun:
    """A run ready for its first (or next) round: what the round loop and the record need."""

    config: RunConfig
    run_id: str
    run_dir: Path
    task: Task
    eval_raw: Dataset  # validation: every evaluated round
    eval_features: Dataset
    test_raw: Dataset  # test: once, at the end (engine/eval/test_split.py)
    test_features: Dataset
    partition: PartitionLike
    partition_info: dict[str, Any]
    strategy: Strategy
    client: ClientSetup
    trainer: LocalTrainer
    client_states: ClientStateStore
    backend: Backend
    global_weights: Weights
    start_round: int
    rounds: list[RoundResult]
    created: str
    union_rows: np.ndarray
    central_opt: torch.optim.Optimizer | None
    central_steps: int
    compute: Compute
    #: DP wrapper and accountant, client_eval split, continual population, audit (engine/run/features.py).
    run_features: RunFeatures
    keep_all_checkpoints: bool = False
    #: Rounds after which this run was resumed from its checkpoint ([] : it ran in one go); kept in checkpoints.
    resumed_after: list[int] = field(default_factory=list)


@dataclass
class _Data:
    """The splits, the partition and the tokenized features of one run (what prepare_run builds first)."""

    train_raw: Dataset
    eval_raw: Dataset
    test_raw: Dataset
    partition: PartitionLike
    features: list[Dataset] = field(default_factory=list)  # train, validation, test


def prepare_run(
    config: RunConfig,
    run_id: str,
    run_dir: Path,
    checkpoint: ckpt.Checkpoint | None,
    *,
    task: Task | None = None,
    partition_file: str | Path | None = None,
    progress: bool | None = None,
    backend_factory: BackendFactory | None = None,
    device: torch.device | None = None,
    precision: Precision | None = None,
    frozen_cache_dir: str | Path | None = None,
) -> PreparedRun:
    """Load data, partition, model, trainer and backend; restore ``checkpoint`` when resuming.

    ``device``/``precision`` come from :func:`fednlp_bench.compute.setup.check_run_options`
    (default: the CPU, ``config.precision``); ``frozen_cache_dir`` is where the
    frozen-bottom cache of ``top_layers`` + ``cache`` lives.
    """
    if task is not None and task.name != config.task:
        raise ValueError(f"the given task object is {task.name!r} but config.task is {config.task!r}")
    strategy = create_strategy(config.algorithm, config.algorithm_params)
    task = task if task is not None else sources.build_task(config)
    report.phase(f"loading {config.task} data ({config.data or 'default source'})")
    splits = task.load()
    device = device if device is not None else torch.device("cpu")
    precision = precision if precision is not None else Precision(config.precision, device)
    # The model comes before the partition and tokenizing, so a bad trainable setting (depth, LoRA module) fails first.
    report.phase(f"building model {config.model} ({config.trainable}, {precision.name})")
    compute = build_compute(task, config, device, precision)
    data = _load_partition(config, task, splits, partition_file, checkpoint, run_dir)
    client_data = ClientData(config, data.partition, data.train_raw, task)
    features = RunFeatures(config, client_data, data.train_raw)  # DP, client_eval, continual, audits: before training
    strategy = features.wrap_strategy(strategy)
    _tokenize(config, task, data)
    if compute.trainable.wants_cache:
        # Loaded from disk when present; computing it is the one slow step of the fast path.
        report.phase(f"caching the frozen layers' hidden states ({len(data.features[0]):,} train + "
                     f"{len(data.features[1]):,} validation + {len(data.features[2]):,} test rows)")
    extra_features = features.extra_features(task, data.test_raw)  # canary candidates, swapped texts
    client = prepare_client(config, task, data.train_raw, client_data.partition, run_dir,
                            procedure=strategy.make_client(), device=device, precision=precision, compute=compute,
                            data=client_data, train_features=data.features[0],
                            cached=[*data.features[1:], *extra_features], frozen_cache_dir=frozen_cache_dir)
    prepared = _assemble(config, run_id, run_dir, task, data, strategy, client, features, progress, backend_factory)
    if checkpoint is not None:
        restore(prepared, checkpoint)
    return prepared


def _load_partition(config: RunConfig, task: Task, splits: Mapping[str, Any], partition_file: str | Path | None,
                    checkpoint: ckpt.Checkpoint | None, run_dir: Path) -> _Data:
    train_raw = splits["train"]
    eval_raw, test_raw = split_of(task, splits, "validation"), split_of(task, splits, "test")
    report.phase(f"partitioning {len(train_raw):,} train rows ({config.partition['scheme']})")
    if partition_file is not None:
        part = sources.load_partition_file(partition_file, train_raw, config)
    else:
        part = sources.build_partition(train_raw, config.partition)
    check_partition(config, part, checkpoint, run_dir)
    return _Data(train_raw, eval_raw, test_raw, part)


def _tokenize(config: RunConfig, task: Task, data: _Data) -> None:
    report.phase(f"tokenizing {len(data.train_raw):,} train + {len(data.eval_raw):,} validation + "
                 f"{len(data.test_raw):,} test rows (max_length {config.max_length})")
    data.features = [task.preprocess(data.train_raw, train=True), task.preprocess(data.eval_raw, train=False),
                     task.preprocess(data.test_raw, train=False)]


def _assemble(config: RunConfig, run_id: str, run_dir: Path, task: Task, data: _Data, strategy: Strategy,
              client: ClientSetup, features: RunFeatures, progress: bool | None,
              backend_factory: BackendFactory | None) -> PreparedRun:
    """The trainer attached to the features, the strategy set up, the backend built: the run ready to go."""
    trainer, part = client.trainer, client.data.partition
    features.attach_trainer(trainer, client.compute)  # DP-SGD: the private local loop
    union_rows = trainer.rows_for(np.concatenate([np.asarray(part.indices(c)) for c in range(part.num_clients)]))
    features.attach(trainer, run_dir)  # before a checkpoint is restored: the audit keeps the initial weights
    strategy.setup(part.num_clients, trainer.state.get(), trainer.state.param_names)
    make_backend = backend_factory or InProcessBackend
    return PreparedRun(
        config=config, run_id=run_id, run_dir=run_dir, task=task, eval_raw=data.eval_raw,
        eval_features=data.features[1], test_raw=data.test_raw, test_features=data.features[2], partition=part,
        partition_info={**data.partition.spec.to_dict(), "content_hash": data.partition.content_hash},
        strategy=strategy, client=client, trainer=trainer, client_states=client.runner.store,
        backend=make_backend(client.runner, client.rows, progress=progress),
        global_weights=trainer.state.get(), start_round=1, rounds=[],
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), union_rows=union_rows,
        central_opt=trainer.make_optimizer() if strategy.centralized else None,
        central_steps=centralized_steps_per_round(config, len(union_rows), part.num_clients),
        compute=client.compute, run_features=features,
    )


def check_partition(config: RunConfig, part: PartitionLike, checkpoint: ckpt.Checkpoint | None, run_dir: Path) -> None:
    wanted = config.partition["num_clients"]
    if wanted is not None and part.num_clients != wanted:
        raise ValueError(f"partition has {part.num_clients} clients but the config says {wanted}")
    if config.clients_per_round > part.num_clients:
        raise ValueError(
            f"clients_per_round={config.clients_per_round} is larger than the {part.num_clients} clients "
            f"of the partition; lower clients_per_round"
        )
    if checkpoint is not None and checkpoint.meta.get("partition", {}).get("content_hash") != part.content_hash:
        raise ValueError(
            f"{run_dir}: the partition regenerated now (hash {part.content_hash[:12]}) differs from the one the "
            f"checkpoint was trained on; the data or partitioner changed, so the run cannot be resumed"
        )


def restore(prepared: PreparedRun, checkpoint: ckpt.Checkpoint) -> None:
    """Put a checkpoint's weights, server state, optimizer and RNG back: the run continues exactly.

    Checkpoints hold CPU tensors; they move to the run's device here, so a run
    started on a GPU resumes on a CPU and the reverse.
    """
    device = prepared.compute.device
    prepared.global_weights = to_device(checkpoint.weights, device)
    prepared.trainer.state.load(prepared.global_weights)
    prepared.strategy.load_state_dict(to_device(checkpoint.server_state, device))
    prepared.rounds = [RoundResult(**r) for r in checkpoint.meta["rounds"]]
    prepared.created = checkpoint.meta.get("created", prepared.created)
    if prepared.central_opt is not None and "central_optimizer" in checkpoint.meta:
        ckpt.optimizer_state_from_flat(prepared.central_opt, checkpoint.extra_tensors, checkpoint.meta["central_optimizer"])
    if "rng/torch" in checkpoint.extra_tensors:
        torch.set_rng_state(checkpoint.extra_tensors["rng/torch"])
    set_cuda_rng_states(checkpoint.extra_tensors.get("rng/cuda"))
    prepared.client_states.recover(checkpoint.round)
    prepared.start_round = checkpoint.round + 1
    prepared.resumed_after = [*checkpoint.meta.get("resumed_after", []), checkpoint.round]
    log.info("resuming %s after round %d", prepared.run_id, checkpoint.round)


def split_of(task: Task, splits: Mapping[str, Any], name: str) -> Any:
    if name not in splits:
        raise ValueError(
            f"task {task.name!r} has no {name!r} split (found {sorted(splits)}); a task's load() must return "
            f"train, validation (per-round evaluation) and test (evaluated once, at the end)"
        )
    return splits[name]


