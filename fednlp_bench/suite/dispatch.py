"""Executing a stage's batch of planned runs: here, in worker processes, or only listed.

Why a module of its own: the suite file's parsing (``spec``) is read by the
planner, the dry run and the tables' checks, none of which run anything; only
the stages (``stages``) execute, through :func:`execute_runs`, and how they do
is the ``Execution`` that ``fednlp-bench suite`` set (``suite/execution.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from fednlp_bench.suite.spec import PlannedRun, Runner

if TYPE_CHECKING:
    from fednlp_bench.suite.execution import Execution


def _load_runner() -> Runner:
    """The engine (``run_one.engine_run``: resumes a run a killed suite left with a checkpoint)."""
    from fednlp_bench.suite.run_one import engine_run

    return engine_run


def execute_runs(
    todo: list[PlannedRun],
    runs_dir: str | Path,
    *,
    runner: Runner | None,
    keep_checkpoints: str,
    stream: TextIO,
    max_runs: int | None = None,
    execution: Execution | None = None,
) -> list[PlannedRun]:
    """Run ``todo`` in order (at most ``max_runs`` of them); return the runs that finished.

    ``execution`` (default: the one ``fednlp-bench suite`` set, see
    ``suite/execution.py``) decides how: here, one at a time, or in worker
    processes (``--jobs``, ``--budget-minutes``), or only listed (``--list-runs``).
    A failing run stops everything with the finished count and how to continue;
    each finished run's record is already on disk, so nothing is lost.
    """
    from fednlp_bench.suite import execution as executions

    execution = execution or executions.current()
    todo = todo if max_runs is None else todo[:max_runs]
    if not todo:
        return []
    if execution.lister is not None:
        execution.lister.take(todo, runs_dir, keep_checkpoints)  # raises RunsListed: the stage stops here
    Path(runs_dir).mkdir(parents=True, exist_ok=True)
    if execution.in_workers:
        from fednlp_bench.suite.memory import check_jobs_fit
        from fednlp_bench.suite.workers import run_parallel

        check_jobs_fit([run.config for run in todo], execution)
        return run_parallel(todo, runs_dir, runner=runner, keep_checkpoints=keep_checkpoints, stream=stream,
                            execution=execution)
    from fednlp_bench.suite.in_process import run_in_process

    return run_in_process(todo, runs_dir, runner or _load_runner(), keep_checkpoints, stream, execution.threads)
