"""Preparing a run: everything between a validated config and the first round.

Checks the run folder (new run, resume, or an already finished record), loads
the task, regenerates the partition from the config's spec (or loads a saved
one after checking it belongs to this data), builds the model, the local
trainer and the backend, and restores a checkpoint. Every bad input fails
here, before any training.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import numpy as np
import torch
from datasets import Dataset

from fednlp_bench import progress as report
from fednlp_bench.algorithms.base import Strategy, Weights
from fednlp_bench.algorithms.registry import create_strategy
from fednlp_bench.compute.device import set_cuda_rng_states, to_device
from fednlp_bench.compute.precision import Precision
from fednlp_bench.compute.setup import Compute, attach_frozen_cache, build_compute
from fednlp_bench.config import FIELDS_ADDED_LATER, PARTITION_KEYS, RunConfig
from fednlp_bench.engine import checkpoint as ckpt
from fednlp_bench.engine.client_runner import ClientRunner
from fednlp_bench.engine.client_state import ClientStateStore
from fednlp_bench.engine.local_trainer import LocalTrainer
from fednlp_bench.engine.resume_help import changed_config_message, no_run_message, saved_config
from fednlp_bench.engine.run_features import RunFeatures
from fednlp_bench.engine.run_id import check_run_id, default_run_id
from fednlp_bench.engine.simulator import Backend, InProcessBackend
from fednlp_bench.results.record import RECORD_FILENAME, RoundResult, RunRecord
from fednlp_bench.tasks.base import Task

log = logging.getLogger("fednlp_bench.engine")

#: ``factory(client_runner, client_rows, progress=...) -> Backend``; ``InProcessBackend`` is the default.
BackendFactory = Callable[..., Backend]


class PartitionLike(Protocol):
    """What the engine needs of ``fednlp_bench.partitioners.Partition``."""

    num_clients: int
    content_hash: str

    def indices(self, cid: int) -> np.ndarray: ...

    def sizes(self) -> np.ndarray: ...


# ------------------------------------------------------------------ seams (tests swap these)
def build_task(config: RunConfig) -> Task:
    from fednlp_bench.tasks import get_task_class

    cls = get_task_class(config.task)
    # task_params are checked by the task's declarations (Task.param_specs) as it is built. The data subset (and a held-out validation split) follows the partition seed, not the run
    # seed, so repeated seeds of one setting train on the same rows and the same partition.
    return cls(
        model=config.model,
        data=config.data,
        max_length=config.max_length,
        max_train_examples=config.max_train_examples,
        max_eval_examples=config.max_eval_examples,
        seed=int(config.partition["seed"]),
        columns=config.columns,
        **config.task_params,
    )


def build_partition(train: Any, spec: Mapping[str, Any]) -> PartitionLike:
    """Regenerate the partition a config describes (same spec + same data -> same partition)."""
    from fednlp_bench.partitioners import partition_dataset

    return partition_dataset(
        train,
        scheme=spec["scheme"],
        num_clients=None if spec["num_clients"] is None else int(spec["num_clients"]),
        seed=int(spec["seed"]),
        min_size=int(spec["min_size"]),
        label_column="partition_key",
        text_column="text",
        **dict(spec.get("params") or {}),
    )


def load_partition_file(path: str | Path, train: Any | None = None, config: RunConfig | None = None) -> PartitionLike:
    """A saved partition; with ``train`` given it must have been made from exactly that data.

    On a mismatch the error gives the ``fednlp-bench partition`` command that makes the partition of this
    run's training rows (the same task, subset size and seed: a run's subset follows the partition seed).
    """
    from fednlp_bench.partitioners import Partition, dataset_fingerprint
    from fednlp_bench.partitioners.errors import PartitionMismatchError

    if train is None:
        return Partition.load(path)
    try:
        return Partition.load(path, fingerprint=dataset_fingerprint(train))
    except PartitionMismatchError as err:
        if config is None:
            raise
        from fednlp_bench.partition_command import fresh_path, partition_command

        saved = Partition.load(path).spec
        command = partition_command(saved.to_dict(), task=config.task, data=config.data,
                                    max_train_examples=config.max_train_examples, out=fresh_path(path))
        raise PartitionMismatchError(
            f"{path} was made from {saved.num_rows} rows (fingerprint {saved.fingerprint[:12]}), but this run "
            f"trains on {len(train)} rows of task {config.task!r}{' (max_train_examples=' + str(config.max_train_examples) + ')' if config.max_train_examples else ''} "
            f"(fingerprint {dataset_fingerprint(train)[:12]}). Make the same partition of exactly these rows with: "
            f"{command} (then pass that file to --partition)"
        ) from err


def partition_spec_for_config(part: Any) -> dict[str, Any]:
    """The data-independent part of a partition's spec that a run config stores."""
    spec = part.spec.to_dict()
    return {k: spec[k] for k in PARTITION_KEYS if k in spec}


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
    test_raw: Dataset  # test: once, at the end (engine/test_eval.py)
    test_features: Dataset
    partition: PartitionLike
    partition_info: dict[str, Any]
    strategy: Strategy
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
    #: DP wrapper and accountant, client_eval split, continual population, audit (engine/run_features.py).
    run_features: RunFeatures
    keep_all_checkpoints: bool = False
    #: Rounds after which this run was resumed from its checkpoint ([] : it ran in one go); kept in checkpoints.
    resumed_after: list[int] = field(default_factory=list)


def resolve_run(
    config: RunConfig, runs_dir: str | Path, run_id: str | None, resume: bool, partition_file: str | Path | None
) -> tuple[RunConfig, str, Path, ckpt.Checkpoint | RunRecord | None]:
    """(config with a saved partition's spec, run id, run folder, checkpoint / finished record / None)."""
    if partition_file is not None:
        part_from_file = load_partition_file(partition_file)  # spec only; the data check comes later
        config = config.replace(partition=partition_spec_for_config(part_from_file))
    explicit_id = run_id is not None
    run_id = check_run_id(run_id or default_run_id(config))
    run_dir = Path(runs_dir) / run_id
    if resume:
        if saved_config(run_dir) is None:
            raise FileNotFoundError(no_run_message(Path(runs_dir), run_id, config.to_dict(), explicit_id))
        if (run_dir / RECORD_FILENAME).is_file():
            # A finished run (its checkpoint may have been deleted to save space): nothing to train.
            finished = RunRecord.load(run_dir)
            check_same_config(finished.config, config, run_dir)
            return config, run_id, run_dir, finished
        checkpoint = ckpt.load_checkpoint(run_dir)
        check_same_config(checkpoint.meta.get("config", {}), config, run_dir)
        return config, run_id, run_dir, checkpoint
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ValueError(
            f"run directory {run_dir} already exists; pass --resume to continue it, "
            f"or choose another --run-id / --runs-dir"
        )
    return config, run_id, run_dir, None


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
    task = task if task is not None else build_task(config)
    report.phase(f"loading {config.task} data ({config.data or 'default source'})")
    splits = task.load()
    device = device if device is not None else torch.device("cpu")
    precision = precision if precision is not None else Precision(config.precision, device)
    # The model comes before the partition and tokenizing, so a bad trainable setting (depth, LoRA module) fails first.
    report.phase(f"building model {config.model} ({config.trainable}, {precision.name})")
    compute = build_compute(task, config, device, precision)
    train_raw = splits["train"]
    eval_raw = split_of(task, splits, "validation")
    test_raw = split_of(task, splits, "test")
    report.phase(f"partitioning {len(train_raw):,} train rows ({config.partition['scheme']})")
    part = load_partition_file(partition_file, train_raw, config) if partition_file is not None else build_partition(
        train_raw, config.partition
    )
    check_partition(config, part, checkpoint, run_dir)
    partition_info = {**part.spec.to_dict(), "content_hash": part.content_hash}
    features = RunFeatures(config, part, train_raw, task)  # DP, client_eval, continual, audits: checked before training
    strategy = features.wrap_strategy(strategy)
    part = features.partition  # with client_eval: each client's local-train rows only
    report.phase(f"tokenizing {len(train_raw):,} train + {len(eval_raw):,} validation + {len(test_raw):,} test rows "
                 f"(max_length {config.max_length})")
    train_features = task.preprocess(train_raw, train=True)
    eval_features = task.preprocess(eval_raw, train=False)
    test_features = task.preprocess(test_raw, train=False)
    if compute.trainable.wants_cache:
        # Loaded from disk when present; computing it is the one slow step of the fast path.
        report.phase(f"caching the frozen layers' hidden states ({len(train_features):,} train + "
                     f"{len(eval_features):,} validation + {len(test_features):,} test rows)")
    extra_features = features.extra_features(task, test_raw)  # canary candidates, swapped texts
    attach_frozen_cache(compute, task, [train_features, eval_features, test_features, *extra_features], frozen_cache_dir)
    trainer = LocalTrainer(
        task, compute.model, features.train_features(task, train_features), batch_size=config.batch_size, lr=config.lr, optimizer=config.optimizer,
        local_epochs=config.local_epochs, local_steps=config.local_steps, precision=precision,
    )
    features.attach_trainer(trainer, compute)  # DP-SGD: the private local loop
    union_rows = trainer.rows_for(np.concatenate([np.asarray(part.indices(c)) for c in range(part.num_clients)]))
    features.attach(trainer, run_dir)  # before a checkpoint is restored: the audit keeps the initial weights
    strategy.setup(part.num_clients, trainer.state.get(), trainer.state.param_names)
    states = ClientStateStore(run_dir)
    client = ClientRunner(trainer, strategy.make_client(), states)
    make_backend = backend_factory or InProcessBackend
    prepared = PreparedRun(
        config=config, run_id=run_id, run_dir=run_dir, task=task, eval_raw=eval_raw, eval_features=eval_features,
        test_raw=test_raw, test_features=test_features,
        partition=part, partition_info=partition_info,
        strategy=strategy, trainer=trainer, client_states=states,
        backend=make_backend(client, lambda cid: trainer.rows_for(features.client_indices(cid)), progress=progress),
        global_weights=trainer.state.get(), start_round=1, rounds=[],
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), union_rows=union_rows,
        central_opt=trainer.make_optimizer() if strategy.centralized else None,
        central_steps=centralized_steps_per_round(config, len(union_rows), part.num_clients),
        compute=compute,
        run_features=features,
    )
    if checkpoint is not None:
        restore(prepared, checkpoint)
    return prepared


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


def check_same_config(saved: Mapping[str, Any], config: RunConfig, run_dir: Path) -> None:
    now = json.loads(json.dumps(config.to_dict()))
    # A checkpoint or record from before a field existed implicitly had its default value.
    saved = {**{k: v for k, v in FIELDS_ADDED_LATER.items() if k not in saved}, **saved}
    if saved == now:
        return
    raise ValueError(changed_config_message(run_dir, saved, now))
