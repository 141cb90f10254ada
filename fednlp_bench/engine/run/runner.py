"""One experiment from config to result record: the entry points every FL number in the project comes from.

``run_experiment`` is three steps, each its own module: :mod:`.prepare`
(validate, load data and partition, build model/trainer/backend, restore a
checkpoint), :mod:`.rounds` (the round loop with a checkpoint per round) and
:mod:`.finish` (the record). This function runs the rounds in this process;
which backend a config runs on is chosen above the engine
(``fednlp_bench/backends/launch.py``): the FedML launcher's rank-0 process
calls it with a ``backend_factory`` whose rounds go to FedML's clients.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from fednlp_bench.compute.setup import check_run_options
from fednlp_bench.config import RunConfig
from fednlp_bench.engine.run.checkpoint import drop_weights
from fednlp_bench.engine.run.finish import finish_record
from fednlp_bench.engine.run.prepare import BackendFactory, prepare_run
from fednlp_bench.engine.run.resolve import resolve_run
from fednlp_bench.engine.server.rounds import NonFiniteModelError, RoundCallback, run_rounds
from fednlp_bench.progress import reporting
from fednlp_bench.results.record import RunRecord
from fednlp_bench.run_options import check_keep_checkpoints
from fednlp_bench.tasks.base import Task

__all__ = ["NonFiniteModelError", "run_experiment", "run_from_config_dict"]

log = logging.getLogger("fednlp_bench.engine")


def run_from_config_dict(config: Mapping[str, Any], runs_dir: str | Path, run_id: str | None = None) -> RunRecord:
    """Re-run a stored in-process config (``fednlp_bench.backends.launch.run_config`` runs any backend's)."""
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
    device: str | None = None,
    frozen_cache_dir: str | Path | None = None,
    keep_checkpoints: str = "last",
) -> RunRecord:
    """Run (or resume) one experiment and write ``runs_dir/<run_id>/record.json`` + ``metrics.csv``.

    ``task`` injects a ready task object (custom tasks, tests); ``partition_file``
    uses a saved partition (its spec is copied into the config);
    ``on_round_end`` is called after each round's checkpoint is written.
    ``backend_factory`` builds the object that runs each round's clients
    (default ``InProcessBackend``); a config whose backend runs elsewhere
    (``fedml``) needs one, so such configs are started by
    ``fednlp_bench.backends.launch.run_config``, whose FedML server calls
    this function with its factory. ``device`` (auto|cpu|cuda|cuda:N|mps) and ``frozen_cache_dir`` are run
    options: they change where and how fast a run computes, not its config.
    ``keep_checkpoints`` (:data:`~fednlp_bench.run_options.KEEP_CHECKPOINTS`):
    ``last`` keeps the newest checkpoint, ``all`` one per round, ``none``
    deletes the weights once the record is written.
    """
    keep_checkpoints = check_keep_checkpoints(keep_checkpoints)
    if not isinstance(config, RunConfig):
        raise TypeError(f"config must be a RunConfig (use run_from_config_dict for dicts), got {type(config).__name__}")
    run_device, precision = check_run_options(config.precision, device)  # bad device/precision: before any work
    if config.backend != "inprocess" and backend_factory is None:
        raise ValueError(f"backend {config.backend!r} runs its clients in other processes: start it with "
                         f"fednlp_bench.backends.launch.run_config (the CLI does), not the in-process engine")
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

