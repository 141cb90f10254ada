"""One experiment from config to result record: the loop every FL number in the project comes from.

``run_experiment`` loads the task, regenerates the partition from the config's
spec (or loads a saved one after checking it belongs to this data), builds one
model, and runs ``rounds`` rounds of: sample clients -> configure -> local
training on the backend -> aggregate -> (evaluate on *validation*) ->
checkpoint. The test split is evaluated once, after the last round, on the
final model (``final_metrics``) and, with ``test_best_round``, on the round
with the best validation score; nothing during training reads test. The
centralized baseline runs through the same loop as one virtual client holding
the union of all client data, with the per-round budget FedAvg spends in
expectation, so the gap compares like with like.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from fednlp_bench.algorithms.base import Strategy, Weights
from fednlp_bench.algorithms.registry import create_strategy
from fednlp_bench.config import PARTITION_KEYS, RunConfig, closest_hint
from fednlp_bench.engine import checkpoint as ckpt
from fednlp_bench.engine.environment import git_commit, hardware_info, package_versions
from fednlp_bench.engine.local_trainer import ClientUpdateRejected, LocalTrainer, all_finite, non_finite_names
from fednlp_bench.engine.sampling import apply_dropout, central_seed, sample_clients
from fednlp_bench.engine.simulator import Backend, InProcessBackend
from fednlp_bench.results.record import RECORD_FILENAME, RoundResult, RunRecord, config_hash
from fednlp_bench.tasks.base import Task

log = logging.getLogger("fednlp_bench.engine")

EVAL_BATCH_SIZE = 64
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class NonFiniteModelError(RuntimeError):
    """The global model became NaN/inf; the run stopped and its last good checkpoint is kept."""


class PartitionLike(Protocol):
    """What the engine needs of ``fednlp_bench.partitioners.Partition``."""

    num_clients: int
    content_hash: str

    def indices(self, cid: int) -> np.ndarray: ...

    def sizes(self) -> np.ndarray: ...


RoundCallback = Callable[[RoundResult], None]
#: ``factory(trainer, client_rows, progress=...) -> Backend``; ``InProcessBackend`` is the default.
BackendFactory = Callable[..., Backend]


# ------------------------------------------------------------------ seams
def build_task(config: RunConfig) -> Task:
    from fednlp_bench.tasks import get_task

    # The data subset follows the partition seed, not the run seed, so repeated
    # seeds of one setting train on the same rows and the same partition.
    from fednlp_bench.tasks import get_task_class

    cls = get_task_class(config.task)
    accepted = _constructor_params(cls)
    unknown = sorted(k for k in config.task_params if accepted is not None and k not in accepted)
    if unknown:
        raise ValueError(
            f"task_params {unknown} are not options of task {config.task!r}; valid: {sorted(accepted or [])}"
        )
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


def _constructor_params(cls: type) -> set[str] | None:
    """Keyword names a task class accepts over its MRO (None when one takes ``**kwargs`` it does not forward)."""
    import inspect

    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        names |= {n for n, p in params.items() if n != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
    return names - {"model", "data", "max_length", "max_train_examples", "max_eval_examples", "seed", "columns"}


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


def load_partition_file(path: str | Path, train: Any | None = None) -> PartitionLike:
    """A saved partition; with ``train`` given it must have been made from exactly that data."""
    from fednlp_bench.partitioners import Partition, dataset_fingerprint

    if train is None:
        return Partition.load(path)
    return Partition.load(path, fingerprint=dataset_fingerprint(train))


def partition_spec_for_config(part: Any) -> dict[str, Any]:
    spec = part.spec.to_dict()
    return {k: spec[k] for k in PARTITION_KEYS if k in spec}


# ------------------------------------------------------------------ budget
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


# ------------------------------------------------------------------ entry points
def default_run_id(config: RunConfig) -> str:
    algo = re.sub(r"[^A-Za-z0-9_.-]", "_", config.algorithm)
    return f"{config.task}-{algo}-{config_hash(config.to_dict())[:8]}-s{config.seed}"


def run_from_config_dict(config: Mapping[str, Any], runs_dir: str | Path, run_id: str | None = None) -> RunRecord:
    """Re-run a stored config (what ``leaderboard --verify`` and the suite call)."""
    return run_experiment(RunConfig.from_dict(config), runs_dir, run_id=run_id)


def run_experiment(
    config: RunConfig,
    runs_dir: str | Path,
    run_id: str | None = None,
    resume: bool = False,
    *,
    task: Task | None = None,
    partition_file: str | Path | None = None,
    on_round_end: RoundCallback | None = None,
    progress: bool | None = None,
    backend_factory: BackendFactory | None = None,
    backend_options: Mapping[str, Any] | None = None,
) -> RunRecord:
    """Run (or resume) one experiment and write ``runs_dir/<run_id>/record.json`` + ``metrics.csv``.

    ``task`` injects a ready task object (custom tasks, tests); ``partition_file``
    uses a saved partition (its spec is copied into the config);
    ``on_round_end`` is called after each round's checkpoint is written.
    ``backend_factory`` builds the object that runs each round's clients
    (default ``InProcessBackend``). With ``config.backend == "fedml"`` and no
    factory, the run goes to the FedML launcher, which starts the processes;
    its rank 0 calls this function again with a factory. ``backend_options``
    are that launcher's run options (processes, comm, round_timeout_s, ...).
    """
    if not isinstance(config, RunConfig):
        raise TypeError(f"config must be a RunConfig (use run_from_config_dict for dicts), got {type(config).__name__}")
    if config.backend == "fedml" and backend_factory is None:
        return _run_on_fedml(config, runs_dir, run_id, resume, task, partition_file, on_round_end, backend_options)
    if backend_options:
        raise ValueError(
            f"backend options {sorted(backend_options)} apply only to backend 'fedml' (this run's backend is "
            f"{config.backend!r}); drop them or set backend: fedml"
        )
    if task is not None and task.name != config.task:
        raise ValueError(f"the given task object is {task.name!r} but config.task is {config.task!r}")
    part_from_file = None
    if partition_file is not None:
        part_from_file = load_partition_file(partition_file)  # spec only; the data check follows below
        config = config.replace(partition=partition_spec_for_config(part_from_file))
    run_id = run_id or default_run_id(config)
    if not _RUN_ID_RE.match(run_id):
        raise ValueError(f"run id {run_id!r} may only contain letters, digits, '.', '_' and '-'")
    run_dir = Path(runs_dir) / run_id
    checkpoint = None
    if resume:
        if (run_dir / RECORD_FILENAME).is_file():
            # A finished run (its checkpoint may have been deleted to save space): nothing to train.
            finished = RunRecord.load(run_dir)
            _check_same_config(finished.config, config, run_dir)
            log.info("run %s is already complete; returning its record", run_id)
            return finished
        checkpoint = ckpt.load_checkpoint(run_dir)
        _check_same_config(checkpoint.meta.get("config", {}), config, run_dir)
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise ValueError(
            f"run directory {run_dir} already exists; pass --resume to continue it, "
            f"or choose another --run-id / --runs-dir"
        )

    strategy = create_strategy(config.algorithm, config.algorithm_params)
    task = task if task is not None else build_task(config)
    splits = task.load()
    train_raw = splits["train"]
    eval_raw = _split(task, splits, "validation")
    test_raw = _split(task, splits, "test")
    if partition_file is not None:
        part = load_partition_file(partition_file, train_raw)  # refuses a partition of other data
    else:
        part = build_partition(train_raw, config.partition)
    wanted = config.partition["num_clients"]
    if wanted is not None and part.num_clients != wanted:
        raise ValueError(f"partition has {part.num_clients} clients but the config says {wanted}")
    if config.clients_per_round > part.num_clients:
        raise ValueError(
            f"clients_per_round={config.clients_per_round} is larger than the {part.num_clients} clients "
            f"of the partition; lower clients_per_round"
        )
    partition_info = {**part.spec.to_dict(), "content_hash": part.content_hash}
    if checkpoint is not None and checkpoint.meta.get("partition", {}).get("content_hash") != part.content_hash:
        raise ValueError(
            f"{run_dir}: the partition regenerated now (hash {part.content_hash[:12]}) differs from the one the "
            f"checkpoint was trained on; the data or partitioner changed, so the run cannot be resumed"
        )

    train_features = task.preprocess(train_raw, train=True)
    eval_features = task.preprocess(eval_raw, train=False)
    torch.manual_seed(config.seed)
    model = task.build_model()
    trainer = LocalTrainer(
        task,
        model,
        train_features,
        batch_size=config.batch_size,
        lr=config.lr,
        optimizer=config.optimizer,
        local_epochs=config.local_epochs,
        local_steps=config.local_steps,
    )
    model_bytes = trainer.state.num_bytes
    sizes = np.asarray(part.sizes(), dtype=np.int64)
    union_rows = trainer.rows_for(np.concatenate([np.asarray(part.indices(c)) for c in range(part.num_clients)]))
    central_opt = trainer.make_optimizer() if strategy.centralized else None
    central_steps = centralized_steps_per_round(config, len(union_rows), part.num_clients)
    make_backend = backend_factory or InProcessBackend
    backend = make_backend(trainer, lambda cid: trainer.rows_for(part.indices(cid)), progress=progress)

    run_dir.mkdir(parents=True, exist_ok=True)
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rounds: list[RoundResult] = []
    if checkpoint is None:
        global_weights = trainer.state.get()
        start = 1
        _save(run_dir, 0, global_weights, strategy, config, partition_info, rounds, created, central_opt)
    else:
        global_weights = checkpoint.weights
        trainer.state.load(global_weights)
        strategy.load_state_dict(checkpoint.server_state)
        rounds = [RoundResult(**r) for r in checkpoint.meta["rounds"]]
        created = checkpoint.meta.get("created", created)
        if central_opt is not None and "central_optimizer" in checkpoint.meta:
            ckpt.optimizer_state_from_flat(central_opt, checkpoint.extra_tensors, checkpoint.meta["central_optimizer"])
        if "rng/torch" in checkpoint.extra_tensors:
            torch.set_rng_state(checkpoint.extra_tensors["rng/torch"])
        start = checkpoint.round + 1
        log.info("resuming %s after round %d", run_id, checkpoint.round)

    bar = tqdm(
        range(start, config.rounds + 1), initial=start - 1, total=config.rounds, unit="round",
        desc=f"{config.algorithm} rounds", disable=None if progress is None else not progress,
    )
    for rnd in bar:
        t0 = time.perf_counter()
        if strategy.centralized:
            assert central_opt is not None
            step = _centralized_round(rnd, config, run_dir, trainer, strategy, global_weights, union_rows,
                                      central_opt, central_steps)
        else:
            step = _federated_round(rnd, config, part, sizes, strategy, backend, global_weights, model_bytes)
        new_weights = step.weights
        if not all_finite(new_weights.values()):
            bad = non_finite_names(new_weights)
            raise NonFiniteModelError(
                _nonfinite_message(run_dir, rnd, config, f"{len(bad)} tensor(s) non-finite, e.g. {bad[0]!r}")
            )
        global_weights = new_weights
        metrics: dict[str, float] = {}
        if rnd % config.eval_every == 0 or rnd == config.rounds:
            trainer.state.load(global_weights)
            metrics = _finite_metrics(task.evaluate(model, eval_raw, eval_features, batch_size=EVAL_BATCH_SIZE), rnd)
            if config.test_best_round:
                _keep_if_best(run_dir, rnd, metrics, rounds, task.primary_metric, global_weights)
        result_row = RoundResult(
            round=rnd,
            clients=[int(c) for c in step.clients],
            train_loss=None if step.train_loss is None else float(step.train_loss),
            metrics=metrics,
            bytes_up=int(step.bytes_up),
            bytes_down=int(step.bytes_down),
            wall_time_s=time.perf_counter() - t0,
            rejected_clients=[int(c) for c in step.rejected],
        )
        rounds.append(result_row)
        _save(run_dir, rnd, global_weights, strategy, config, partition_info, rounds, created, central_opt)
        if metrics and task.primary_metric in metrics:
            bar.set_postfix({task.primary_metric: f"{metrics[task.primary_metric]:.4f}"})
        if on_round_end is not None:
            on_round_end(result_row)
    bar.close()

    test_features = task.preprocess(test_raw, train=False)
    trainer.state.load(global_weights)
    final_test = _finite_metrics(task.evaluate(model, test_raw, test_features, batch_size=EVAL_BATCH_SIZE), config.rounds)
    test_info: dict[str, Any] = {"split": "test", "rows": len(test_raw), "model": "final round", "best_round": None}
    if config.test_best_round:
        test_info["best_round"] = _test_best_round(run_dir, rounds, task, model, trainer, test_raw, test_features, final_test)
        trainer.state.load(global_weights)
    summary = getattr(task, "data_summary", None)
    data_info = summary() if callable(summary) else {"splits": {k: len(v) for k, v in splits.items()}}
    make_baselines = getattr(task, "baselines", None)
    baselines = make_baselines() if callable(make_baselines) else None

    record_config = config.to_dict()
    record = RunRecord(
        run_id=run_id,
        created=created,
        task=config.task,
        algorithm=config.algorithm,
        seed=config.seed,
        config=record_config,
        config_hash=config_hash(record_config),
        partition=partition_info,
        primary_metric=task.primary_metric,
        final_metrics=final_test,
        test=test_info,
        data=data_info,
        baselines=baselines,
        rounds=rounds,
        wall_time_s=float(sum(r.wall_time_s for r in rounds)),
        bytes_up=int(sum(r.bytes_up for r in rounds)),
        bytes_down=int(sum(r.bytes_down for r in rounds)),
        versions=package_versions(),
        git_commit=git_commit(),
        hardware=hardware_info(trainer.device),
    )
    record.save(run_dir)
    return record


def _run_on_fedml(
    config: RunConfig,
    runs_dir: str | Path,
    run_id: str | None,
    resume: bool,
    task: Task | None,
    partition_file: str | Path | None,
    on_round_end: RoundCallback | None,
    options: Mapping[str, Any] | None,
) -> RunRecord:
    """Hand a ``backend: fedml`` run to the FedML launcher, which starts the FedML venv's processes."""
    import inspect

    from fednlp_bench.backends.fedml_backend import run_fedml_experiment

    if task is not None or on_round_end is not None:
        raise ValueError(
            "backend 'fedml' trains in other processes, so it takes no task object or on_round_end callback: "
            "pass backend_options={'task_factory': 'module:callable'} instead, and read metrics.csv for progress"
        )
    sig = inspect.signature(run_fedml_experiment).parameters
    valid = [n for n, p in sig.items() if p.kind is p.KEYWORD_ONLY and n != "partition_file"]
    options = dict(options or {})
    for key in options:
        if key not in valid:
            raise ValueError(f"unknown fedml backend option {key!r}.{closest_hint(key, valid)} Valid: {', '.join(valid)}")
    return run_fedml_experiment(config, runs_dir, run_id, resume, partition_file=partition_file, **options)


# ------------------------------------------------------------------ one round
@dataclass
class RoundWork:
    """What one training round produced, before evaluation and checkpointing."""

    weights: Weights
    clients: list[int]
    rejected: list[int]
    train_loss: float | None
    bytes_up: int
    bytes_down: int


def _federated_round(
    rnd: int,
    config: RunConfig,
    part: PartitionLike,
    sizes: np.ndarray,
    strategy: Strategy,
    backend: Backend,
    global_weights: Weights,
    model_bytes: int,
) -> RoundWork:
    sampled = sample_clients(part.num_clients, config.clients_per_round, rnd, config.seed, config.sampling, sizes)
    clients, dropped = apply_dropout(sampled, config.dropout, rnd, config.seed)
    if dropped:
        log.info("round %d: clients %s dropped out", rnd, dropped)
    outcome = backend.run_round(rnd, strategy.configure_round(rnd, clients), global_weights, config.seed)
    rejected = sorted(outcome.rejected)
    if outcome.results:
        weights = strategy.aggregate(rnd, global_weights, outcome.results)
        n = sum(r.num_examples for r in outcome.results)
        loss: float | None = sum(r.loss * r.num_examples for r in outcome.results) / n
    else:
        log.warning("round %d: no client update survived; the global model is unchanged", rnd)
        weights, loss = global_weights, None
    return RoundWork(
        weights=weights,
        clients=clients,
        rejected=rejected,
        train_loss=loss,
        bytes_up=(len(outcome.results) + len(rejected)) * model_bytes,  # rejected clients did upload
        bytes_down=len(sampled) * model_bytes,  # dropped clients had already downloaded
    )


def _centralized_round(
    rnd: int,
    config: RunConfig,
    run_dir: Path,
    trainer: LocalTrainer,
    strategy: Strategy,
    global_weights: Weights,
    union_rows: np.ndarray,
    optimizer: torch.optim.Optimizer,
    steps: int,
) -> RoundWork:
    try:
        result = trainer.train(
            -1, union_rows, global_weights, {}, central_seed(config.seed, rnd), optimizer=optimizer, num_steps=steps
        )
    except ClientUpdateRejected as err:  # the only "client": nothing to fall back on
        raise NonFiniteModelError(_nonfinite_message(run_dir, rnd, config, str(err))) from err
    weights = strategy.aggregate(rnd, global_weights, [result])
    return RoundWork(weights=weights, clients=[], rejected=[], train_loss=result.loss, bytes_up=0, bytes_down=0)


# ------------------------------------------------------------------ helpers
def _split(task: Task, splits: Mapping[str, Any], name: str) -> Any:
    if name not in splits:
        raise ValueError(
            f"task {task.name!r} has no {name!r} split (found {sorted(splits)}); a task's load() must return "
            f"train, validation (per-round evaluation) and test (evaluated once, at the end)"
        )
    return splits[name]


BEST_WEIGHTS_FILE = "best_validation.pt"


def _keep_if_best(run_dir: Path, rnd: int, metrics: Mapping[str, float], rounds: list[RoundResult],
                  metric: str, weights: Weights) -> None:
    """Save this round's weights when its validation score beats every earlier round (ties: the earlier)."""
    earlier = [r.metrics[metric] for r in rounds if metric in r.metrics]
    if metric in metrics and (not earlier or metrics[metric] > max(earlier)):
        tmp = run_dir / f".{BEST_WEIGHTS_FILE}.tmp"
        torch.save({"round": rnd, "weights": {k: v.detach().cpu() for k, v in weights.items()}}, tmp)
        tmp.replace(run_dir / BEST_WEIGHTS_FILE)


def _test_best_round(run_dir: Path, rounds: list[RoundResult], task: Task, model: torch.nn.Module,
                     trainer: LocalTrainer, test_raw: Any, test_features: Any,
                     final_test: dict[str, float]) -> dict[str, Any] | None:
    """Test metrics of the round with the best validation score (the final round's are reused)."""
    metric = task.primary_metric
    scored = [r for r in rounds if metric in r.metrics]
    if not scored:
        return None
    best = max(scored, key=lambda r: (r.metrics[metric], -r.round))
    if best.round == rounds[-1].round:
        test = dict(final_test)
    else:
        saved = torch.load(run_dir / BEST_WEIGHTS_FILE, weights_only=True)
        if int(saved["round"]) != best.round:
            raise RuntimeError(f"{run_dir / BEST_WEIGHTS_FILE} holds round {saved['round']}, expected {best.round}")
        trainer.state.load(saved["weights"])
        test = _finite_metrics(task.evaluate(model, test_raw, test_features, batch_size=EVAL_BATCH_SIZE), best.round)
    return {"round": best.round, "validation": dict(best.metrics), "test": test}


def _finite_metrics(metrics: Mapping[str, Any], rnd: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            continue
        value = float(value)
        if not math.isfinite(value):
            raise NonFiniteModelError(f"round {rnd}: evaluation metric {name!r} is {value}; the model diverged")
        out[name] = value
    return out


def _nonfinite_message(run_dir: Path, rnd: int, config: RunConfig, detail: str) -> str:
    return (
        f"round {rnd}: the global model became non-finite ({detail}); the run stopped. "
        f"The last good checkpoint (round {rnd - 1}) is kept in {ckpt.checkpoint_dir(run_dir)}. "
        f"Lower lr (now {config.lr}) or the algorithm's server_lr and start a new run."
    )


def _check_same_config(saved: Mapping[str, Any], config: RunConfig, run_dir: Path) -> None:
    now = json.loads(json.dumps(config.to_dict()))
    if saved == now:
        return
    diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    raise ValueError(
        f"cannot resume {run_dir}: its checkpoint was made with a different config "
        f"(differs in {diff}); resume with the same config or start a new --run-id"
    )


def _save(
    run_dir: Path,
    rnd: int,
    weights: Weights,
    strategy: Strategy,
    config: RunConfig,
    partition_info: Mapping[str, Any],
    rounds: list[RoundResult],
    created: str,
    central_opt: torch.optim.Optimizer | None,
) -> None:
    extra = {"rng/torch": torch.get_rng_state()}
    meta: dict[str, Any] = {
        "config": config.to_dict(),
        "partition": dict(partition_info),
        "rounds": [asdict(r) for r in rounds],
        "created": created,
        "strategy": strategy.name,
    }
    if central_opt is not None:
        tensors, plain = ckpt.optimizer_state_to_flat(central_opt)
        extra.update(tensors)
        meta["central_optimizer"] = plain
    ckpt.save_checkpoint(run_dir, rnd, weights, strategy.state_dict(), meta, extra)
