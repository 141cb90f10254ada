"""Run a two-stage suite: tune, select, write plan.json, run the final seeds, write plan.json again.

A tier takes hours (the CPU tier up to 12), so it must run in chunks across
sittings: ``--task`` limits a call to some tasks, ``--max-runs N`` stops
cleanly after N finished runs (records and plan.json written, the remaining
count and the command to continue printed), and every call skips runs that
already have a record. A final run identical to a tuning run (same config
hash and seed, e.g. seed 0 on the tuned partition) is that record, not a
re-run. ``--dry-run`` validates everything and counts the work; it runs
nothing and loads no data.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, TextIO

from fednlp_bench.hints import closest_hint
from fednlp_bench.suite.selection import Records, cell_runs, load_records, select_all, write_plan
from fednlp_bench.suite.spec import PlannedRun, Runner, Suite, execute_runs
from fednlp_bench.suite.tier_plan import TierPlan, build_tier_plan, unique_runs

STAGES = ("all", "tune", "final")


@dataclass
class StageReport:
    """What one call did: the runs it finished, what is left (for its tasks) and where plan.json is."""

    ran: list[PlannedRun] = field(default_factory=list)
    remaining: int = 0
    plan_path: Path | None = None

    @property
    def complete(self) -> bool:
        return self.remaining == 0


def task_indexes(suite: Suite, names: Iterable[str] | None) -> set[int]:
    """Indexes of the suite's task entries named in ``--task`` (all when None); unknown names are errors."""
    known = [str(t["task"]) for t in suite.tasks]
    if not names:
        return set(range(len(known)))
    for name in names:
        if name not in known:
            raise ValueError(f"--task {name!r}: the suite {suite.source} has no such task.{closest_hint(name, known)} "
                             f"It lists {known}")
    return {i for i, task in enumerate(known) if task in set(names)}


def _final_todo(plan: TierPlan, tasks: set[int], records: Records) -> tuple[dict[int, list[PlannedRun]], set[int]]:
    """Missing final runs per task whose selection is complete, and the tasks still pending tuning."""
    selections = select_all(plan, records)
    by_task: dict[int, list[PlannedRun]] = {t: [] for t in sorted(tasks)}
    pending: set[int] = set()
    for cell in plan.cells:
        if cell.task_index in tasks:
            runs = cell_runs(plan, cell, selections)
            if runs is None:
                pending.add(cell.task_index)
            else:
                by_task[cell.task_index].extend(runs)
    todo: dict[int, list[PlannedRun]] = {}
    seen: set[tuple[str, int]] = set()
    for t, runs in by_task.items():
        if t not in pending:
            todo[t] = [r for r in unique_runs(runs) if r.key not in records and r.key not in seen]
            seen.update(r.key for r in todo[t])
    return todo, pending


def pending_final_count(plan: TierPlan, task_index: int) -> int:
    """Final runs a task will need once tuning is complete (the same for any choice: see the module doc).

    A final run equals a tuning run exactly when its seed is the tuning seed and
    its partition is the one tuned on; that holds for the first grid point as
    for any other, so counting with the first point is exact.
    """
    tuning = {r.key for r in plan.tuning_runs({task_index})}
    runs = unique_runs(r for cell in plan.cells if cell.task_index == task_index
                   for r in plan.final_runs(cell, cell.unit.points[0]))
    return sum(r.key not in tuning for r in runs)


def _missing_tuning(plan: TierPlan, task_index: int, records: Records) -> tuple[int, int]:
    runs = plan.tuning_runs({task_index})
    return sum(r.key not in records for r in runs), len(runs)


def _final_counts(plan: TierPlan, tasks: set[int], records: Records, stream: TextIO) -> int:
    """Print per task the final runs to do (exact, or pending tuning); return their total."""
    todo, pending = _final_todo(plan, tasks, records)
    total = 0
    for t in sorted(tasks):
        name = plan.task_name(t)
        if t in pending:
            count = pending_final_count(plan, t)
            print(f"final: {name}: pending tuning: {count} runs once tuning is complete", file=stream)
        else:
            count = len(todo[t])
            print(f"final: {name}: {count} runs to do", file=stream)
        total += count
    return total


def run_two_stage(
    suite: Suite,
    runs_dir: str | Path,
    out: str | Path,
    *,
    stage: str = "all",
    tasks: Iterable[str] | None = None,
    max_runs: int | None = None,
    dry_run: bool = False,
    runner: Runner | None = None,
    stream: TextIO | None = None,
    command: str | None = None,
) -> StageReport:
    """Run the requested stage(s) of a two-stage suite for the chosen tasks; see the module doc."""
    stream = stream or sys.stdout
    if stage not in STAGES:
        raise ValueError(f"--stage {stage!r} is not a stage.{closest_hint(stage, STAGES)} Choose one of {list(STAGES)}")
    if max_runs is not None and (not isinstance(max_runs, int) or max_runs < 1):
        raise ValueError(f"--max-runs {max_runs!r} must be a positive integer (runs to finish in this call)")
    plan = build_tier_plan(suite)
    chosen = task_indexes(suite, tasks)
    command = command or f"fednlp-bench suite {suite.source}"
    records = load_records(runs_dir)
    tuning_todo = [r for r in plan.tuning_runs(chosen) if r.key not in records]
    tuning_all = plan.tuning_runs(chosen)
    tier = f" (tier {suite.tier})" if suite.tier else ""
    print(f"suite {suite.source}{tier}: tuning: {len(tuning_all)} runs in the grid, "
          f"{len(tuning_all) - len(tuning_todo)} already recorded in {runs_dir}, {len(tuning_todo)} to run",
          file=stream)
    if dry_run:
        for run in tuning_todo:
            print(f"  would run: {run.label}", file=stream)
        final = _final_counts(plan, chosen, records, stream)
        print(f"total: {len(tuning_todo) + final} runs to do ({len(tuning_todo)} tuning + {final} final)", file=stream)
        return StageReport(remaining=len(tuning_todo) + final)
    if stage == "final":
        _refuse_incomplete_tuning(plan, chosen, records, command)
    report = StageReport()
    if stage in ("all", "tune"):
        report.ran += execute_runs(tuning_todo, runs_dir, runner=runner, keep_checkpoints=suite.keep_checkpoints,
                                   stream=stream, max_runs=max_runs)
        records = load_records(runs_dir)
        report.plan_path = write_plan(plan, runs_dir, out, records)
        left = [r for r in tuning_todo if r.key not in records]
        if left or stage == "tune":
            final = _final_counts(plan, chosen, records, stream) if left else 0
            report.remaining = len(left) + (final if stage == "all" else 0)
            return _finish(report, stream, command, stage, tasks, max_runs)
    budget = None if max_runs is None else max_runs - len(report.ran)
    final_todo = [r for runs in _final_todo(plan, chosen, records)[0].values() for r in runs]
    print(f"final: {len(final_todo)} runs to do", file=stream)
    report.ran += execute_runs(final_todo, runs_dir, runner=runner, keep_checkpoints=suite.keep_checkpoints,
                               stream=stream, max_runs=budget)
    records = load_records(runs_dir)
    report.plan_path = write_plan(plan, runs_dir, out, records)
    report.remaining = sum(r.key not in records for r in final_todo)
    return _finish(report, stream, command, stage, tasks, max_runs)


def _refuse_incomplete_tuning(plan: TierPlan, tasks: set[int], records: Records, command: str) -> None:
    problems = []
    for t in sorted(tasks):
        missing, total = _missing_tuning(plan, t, records)
        if missing:
            name = plan.task_name(t)
            problems.append(f"task {name!r}: tuning is incomplete ({missing} of {total} tuning runs missing); "
                            f"run `{command} --stage tune --task {name}` first")
    if problems:
        raise ValueError("the final stage needs every tuning run of its tasks; nothing was run:\n  "
                         + "\n  ".join(problems))


def _finish(report: StageReport, stream: TextIO, command: str, stage: str, tasks: Iterable[str] | None,
            max_runs: int | None) -> StageReport:
    if report.plan_path is not None:
        print(f"plan: {report.plan_path}", file=stream)
    if report.remaining:
        again = command + ("" if stage == "all" else f" --stage {stage}")
        again += "".join(f" --task {t}" for t in tasks or [])
        again += f" --max-runs {max_runs}" if max_runs else ""
        print(f"stopped after {len(report.ran)} run(s): {report.remaining} run(s) remain; continue with: {again}",
              file=stream)
    return report
