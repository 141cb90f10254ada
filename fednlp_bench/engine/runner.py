"""One experiment from config to result record: the entry points every FL number in the project comes from.

``run_experiment`` is three steps, each its own module: :mod:`.prepare`
(validate, load data and partition, build model/trainer/backend, restore a
checkpoint), :mod:`.rounds` (the round loop with a checkpoint per round) and
:mod:`.finish` (the record). ``backend: fedml`` runs are handed to the FedML
launcher, whose rank-0 process calls ``run_experiment`` again with a backend
factory.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any, Mapping

from fednlp_bench.compute.setup import check_run_options
from fednlp_bench.config import RunConfig, check_keep_checkpoints
from fednlp_bench.engine.checkpoint import drop_weights
from fednlp_bench.engine.finish import finish_record
from fednlp_bench.engine.prepare import BackendFactory, prepare_run, resolve_run
from fednlp_bench.engine.rounds import NonFiniteModelError, RoundCallback, run_rounds
from fednlp_bench.hints import closest_hint
from fednlp_bench.progress import reporting
from fednlp_bench.results.record import RunRecord
from fednlp_bench.tasks.base import Task

__all__ = ["NonFiniteModelError", "run_experiment", "run_from_config_dict"]

log = logging.getLogger("fednlp_bench.engine")


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
    device: str | None = None,
    frozen_cache_dir: str | Path | None = None,
    keep_checkpoints: str = "last",
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
    ``device`` (auto|cpu|cuda|cuda:N|mps) and ``frozen_cache_dir`` are run
    options: they change where and how fast a run computes, not its config.
    ``keep_checkpoints`` (:data:`~fednlp_bench.config.KEEP_CHECKPOINTS`):
    ``last`` keeps the newest checkpoint, ``all`` one per round, ``none``
    deletes the weights once the record is written.
    """
    keep_checkpoints = check_keep_checkpoints(keep_checkpoints)
    if not isinstance(config, RunConfig):
        raise TypeError(f"config must be a RunConfig (use run_from_config_dict for dicts), got {type(config).__name__}")
    run_device, precision = check_run_options(config.precision, device)  # bad device/precision: before any work
    if config.backend == "fedml" and backend_factory is None:
        extra = {"device": device, "frozen_cache_dir": None if frozen_cache_dir is None else str(frozen_cache_dir)}
        backend_options = {**dict(backend_options or {}), **{k: v for k, v in extra.items() if v is not None}}
        record = _run_on_fedml(config, runs_dir, run_id, resume, task, partition_file, on_round_end, backend_options)
        if keep_checkpoints == "none":
            drop_weights(Path(runs_dir) / record.run_id)
        return record
    if backend_options:
        raise ValueError(
            f"backend options {sorted(backend_options)} apply only to backend 'fedml' (this run's backend is "
            f"{config.backend!r}); drop them or set backend: fedml"
        )
    config, run_id, run_dir, found = resolve_run(config, runs_dir, run_id, resume, partition_file)
    if isinstance(found, RunRecord):
        log.info("run %s is already complete; returning its record", run_id)
        return found
    with reporting(progress, prefix=f"{config.task}/{config.algorithm}: "):
        run = prepare_run(config, run_id, run_dir, found, task=task, partition_file=partition_file,
                          progress=progress, backend_factory=backend_factory, device=run_device,
                          precision=precision, frozen_cache_dir=frozen_cache_dir)
        run.keep_all_checkpoints = keep_checkpoints == "all"
        run_rounds(run, on_round_end, progress)
        record = finish_record(run)
    if keep_checkpoints == "none":
        drop_weights(run_dir)
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
