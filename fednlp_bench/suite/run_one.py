"""One suite run, in whatever process executes it: locked, resumed when interrupted, weights dropped.

The suite runs the same code in its own process (``--jobs 1``) and in worker
processes (``--jobs N``, :mod:`fednlp_bench.suite.workers`), so this module
imports no executor and no suite spec. Housekeeping lives in
``<runs_dir>/.suite/`` (locks, worker logs, ``--list-runs`` configs): hidden
from the records, which are the only thing the leaderboard reads.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, Callable

from fednlp_bench.engine.run.run_id import run_id_of
from fednlp_bench.locks import LockBusy, exclusive
from fednlp_bench.results.record import RECORD_FILENAME, RunRecord

#: ``runner(config, runs_dir) -> RunRecord``: the engine by default, a fake in tests.
Runner = Callable[[dict[str, Any], Path], RunRecord]
HOUSEKEEPING_DIRNAME = ".suite"


class RunBusy(RuntimeError):
    """Another process (a second suite, a scheduler job) is running this run right now."""


def housekeeping_dir(runs_dir: str | Path, kind: str) -> Path:
    """``<runs_dir>/.suite/<kind>`` (locks, logs, pending)."""
    return Path(runs_dir) / HOUSEKEEPING_DIRNAME / kind


def lock_path(runs_dir: str | Path, config: dict[str, Any]) -> Path:
    return housekeeping_dir(runs_dir, "locks") / f"{run_id_of(config)}.lock"


def engine_run(config: dict[str, Any], runs_dir: Path) -> RunRecord:
    """Run one config with the engine; a run folder left by a killed suite (checkpoint, no record) is resumed."""
    from fednlp_bench.config import RunConfig
    from fednlp_bench.engine.run.checkpoint import has_checkpoint
    from fednlp_bench.engine.run.runner import run_experiment, run_from_config_dict

    run_dir = Path(runs_dir) / run_id_of(config)
    if has_checkpoint(run_dir):
        print(f"  resuming the interrupted run {run_dir.name}", file=sys.stderr)
        return run_experiment(RunConfig.from_dict(config), runs_dir, resume=True)
    _clear_debris(run_dir)
    return run_from_config_dict(config, runs_dir)


def _clear_debris(run_dir: Path) -> None:
    """A folder with neither record nor checkpoint is a run killed inside its first checkpoint write.

    Nothing in it can be resumed (the round-0 checkpoint is written before any
    training), and the engine refuses to start in a non-empty folder; the
    caller holds the run's lock, so no live process is using it.
    """
    if run_dir.is_dir() and any(run_dir.iterdir()) and not (run_dir / RECORD_FILENAME).is_file():
        shutil.rmtree(run_dir)


def run_locked(runner: Runner, config: dict[str, Any], runs_dir: str | Path, keep_checkpoints: str) -> RunRecord:
    """``runner(config)`` under the run's lock; raises :class:`RunBusy` when another process holds it.

    The lock is taken per (config hash, seed) through the run id, so two
    workers, two suites or a suite and a scheduler job never train the same run
    folder at once. A record that appeared meanwhile (another process finished
    the run) is returned as it is.
    """
    runs_dir = Path(runs_dir)
    try:
        with exclusive(lock_path(runs_dir, config), wait=False):
            done = runs_dir / run_id_of(config) / RECORD_FILENAME
            record = RunRecord.load(done.parent) if done.is_file() else runner(config, runs_dir)
            if keep_checkpoints == "none":
                from fednlp_bench.engine.run.checkpoint import drop_weights

                drop_weights(runs_dir / record.run_id)
            return record
    except LockBusy as err:
        raise RunBusy(f"run {run_id_of(config)} is being run by another process ({err}); skipped") from None
