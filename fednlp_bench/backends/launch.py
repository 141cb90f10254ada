"""Start a run on the backend its config names: the one place above the engine that chooses it.

``fednlp-bench run``/``compare``, the suite and ``leaderboard --verify`` call
:func:`run_config`; the backend registry (``fednlp_bench/execution.py``) names
each backend's launcher and declares its run options, which are checked here
before anything starts.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, Mapping

from fednlp_bench.config import RunConfig
from fednlp_bench.execution import BACKENDS
from fednlp_bench.results.record import RunRecord
from fednlp_bench.run_options import check_keep_checkpoints


def launcher(backend: str) -> Callable[..., RunRecord]:
    """The function that starts a run on ``backend`` (imported now, not when the registry is read)."""
    module, _, attr = BACKENDS.lookup(backend).launcher.partition(":")
    return getattr(importlib.import_module(module), attr)


def run_config(
    config: RunConfig,
    runs_dir: str | Path,
    run_id: str | None = None,
    resume: bool = False,
    *,
    backend_options: Mapping[str, Any] | None = None,
    task: Any = None,
    on_round_end: Callable[..., None] | None = None,
    partition_file: str | Path | None = None,
    device: str | None = None,
    frozen_cache_dir: str | Path | None = None,
    keep_checkpoints: str = "last",
    progress: bool | None = None,
) -> RunRecord:
    """Run (or resume) ``config`` on its backend; the same arguments as ``engine.run.runner.run_experiment``.

    ``backend_options`` are the backend's own run options (FedML: processes,
    comm, round_timeout_s, ...); an in-process run takes none.
    """
    keep_checkpoints = check_keep_checkpoints(keep_checkpoints)
    backend = BACKENDS.lookup(config.backend)
    options = backend.check_options(backend_options)
    if backend.name == "inprocess":
        return launcher("inprocess")(config, runs_dir, run_id, resume, task=task, partition_file=partition_file,
                                     on_round_end=on_round_end, progress=progress, device=device,
                                     frozen_cache_dir=frozen_cache_dir, keep_checkpoints=keep_checkpoints)
    if task is not None or on_round_end is not None:
        raise ValueError(
            f"backend {backend.name!r} trains in other processes, so it takes no task object or on_round_end "
            f"callback: pass backend_options={{'task_factory': 'module:callable'}} instead, and read metrics.csv "
            f"for progress"
        )
    extra = {"device": device, "frozen_cache_dir": None if frozen_cache_dir is None else str(frozen_cache_dir)}
    options.update({k: v for k, v in extra.items() if v is not None})
    record = launcher(backend.name)(config, runs_dir, run_id, resume, partition_file=partition_file, **options)
    if keep_checkpoints == "none":
        from fednlp_bench.engine.run.checkpoint import drop_weights

        drop_weights(Path(runs_dir) / record.run_id)
    return record


def run_config_dict(config: Mapping[str, Any], runs_dir: str | Path, run_id: str | None = None,
                    **options: Any) -> RunRecord:
    """Re-run a stored config on its backend (what ``leaderboard --verify`` and the suite call)."""
    return run_config(RunConfig.from_dict(config), runs_dir, run_id=run_id, **options)
