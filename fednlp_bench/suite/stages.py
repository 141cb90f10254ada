"""Run a tier suite: tune (extending grids at their edges), select, write plan.json, run the final seeds.

A tier takes days of CPU, so it must run in chunks across sittings:
``--task`` limits a call to some tasks, ``--max-runs N`` stops cleanly after
N finished runs (records and plan.json written, the remaining count and the
command to continue printed), and every call skips runs that already have a
record. Tuning runs in waves: the declared grids, then each extension step
the records call for (``extension.py``). A final run identical to a tuning
run (same config hash and seed, e.g. seed 0 on the tuned partition) is that
record, not a re-run. ``--dry-run`` validates everything, counts the work and
estimates its CPU hours from measured rates (``cost.py``); it runs nothing
and loads no data.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, TextIO

from fednlp_bench.hints import closest_hint
from fednlp_bench.suite.dispatch import execute_runs
from fednlp_bench.suite.dry_run import print_dry_run
from fednlp_bench.suite.selection import Records, cell_runs, load_records, select_all, write_plan
from fednlp_bench.suite.spec import PlannedRun, Runner, Suite
from fednlp_bench.suite.tier_plan import TierPlan, build_tier_plan, pending_final_runs, unique_runs

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


def tuning_todo(plan: TierPlan, tasks: set[int], records: Records) -> list[PlannedRun]:
    """Tuning runs the records call for now: missing declared points and the current extension steps' points."""
    states = select_all(plan, records)
    return unique_runs(run for unit in plan.units if unit.task_index in tasks
                       for run in states[id(unit)].missing)


def final_todo(plan: TierPlan, tasks: set[int], records: Records) -> tuple[dict[int, list[PlannedRun]], set[int]]:
    """Missing final runs per task whose selection is settled, and the tasks still pending tuning."""
    states = select_all(plan, records)
    by_task: dict[int, list[PlannedRun]] = {t: [] for t in sorted(tasks)}
    pending: set[int] = set()
    for cell in plan.cells:
        if cell.task_index in tasks:
            runs = cell_runs(plan, cell, states)
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
    return len(pending_final_runs(plan, task_index))


def _tune(plan: TierPlan, suite: Suite, chosen: set[int], runs_dir: str | Path, runner: Runner | None,
          stream: TextIO, max_runs: int | None) -> tuple[list[PlannedRun], Records]:
    """Run tuning waves (declared grid, then each extension step) until settled or ``max_runs`` are done."""
    ran: list[PlannedRun] = []
    records = load_records(runs_dir)
    while True:
        todo = tuning_todo(plan, chosen, records)
        budget = None if max_runs is None else max_runs - len(ran)
        if not todo or budget == 0:
            return ran, records
        finished = execute_runs(todo, runs_dir, runner=runner, keep_checkpoints=suite.keep_checkpoints,
                                stream=stream, max_runs=budget)
        ran += finished
        records = load_records(runs_dir)
        if not finished:
            return ran, records


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
    if dry_run:
        todo = tuning_todo(plan, chosen, records)
        final, pending = final_todo(plan, chosen, records)
        remaining = print_dry_run(plan, chosen, records, todo, final, pending, stream)
        return StageReport(remaining=remaining)
    print(f"suite {suite.source} (tier {suite.tier}): tuning: {len(tuning_todo(plan, chosen, records))} run(s) to "
          f"do now (grid extensions follow when a choice lies on an axis edge; cap {suite.tuning.extensions} step(s))",
          file=stream)
    if stage == "final":
        _refuse_incomplete_tuning(plan, chosen, records, command)
    report = StageReport()
    if stage in ("all", "tune"):
        ran, records = _tune(plan, suite, chosen, runs_dir, runner, stream, max_runs)
        report.ran += ran
        report.plan_path = write_plan(plan, runs_dir, out, records)
        left = tuning_todo(plan, chosen, records)
        if left or stage == "tune":
            final = _final_counts(plan, chosen, records, stream) if left else 0
            report.remaining = len(left) + (final if stage == "all" else 0)
            return _finish(report, stream, command, stage, tasks, max_runs)
    budget = None if max_runs is None else max_runs - len(report.ran)
    final_runs = [r for runs in final_todo(plan, chosen, records)[0].values() for r in runs]
    print(f"final: {len(final_runs)} runs to do", file=stream)
    if budget != 0:
        report.ran += execute_runs(final_runs, runs_dir, runner=runner, keep_checkpoints=suite.keep_checkpoints,
                                   stream=stream, max_runs=budget)
    records = load_records(runs_dir)
    report.plan_path = write_plan(plan, runs_dir, out, records)
    report.remaining = sum(r.key not in records for r in final_runs)
    return _finish(report, stream, command, stage, tasks, max_runs)


def _final_counts(plan: TierPlan, tasks: set[int], records: Records, stream: TextIO) -> int:
    """Print per task the final runs to do (exact, or pending tuning); return their total."""
    todo, pending = final_todo(plan, tasks, records)
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


def refresh_plan(suite: Suite, runs_dir: str | Path, out: str | Path, stream: TextIO | None = None) -> Path:
    """Select from the records so far and rewrite plan.json; run nothing (``suite --plan-only``)."""
    plan = build_tier_plan(suite)
    records = load_records(runs_dir)
    path = write_plan(plan, runs_dir, out, records)
    states = select_all(plan, records)
    settled = sum(states[id(u)].settled for u in plan.units)
    print(f"plan: {path} from {len(records)} record(s); {settled}/{len(plan.units)} tuning choice(s) made",
          file=stream or sys.stdout)
    return path


def _refuse_incomplete_tuning(plan: TierPlan, tasks: set[int], records: Records, command: str) -> None:
    states = select_all(plan, records)
    problems = []
    for t in sorted(tasks):
        open_units = [states[id(u)] for u in plan.units if u.task_index == t and not states[id(u)].settled]
        if open_units:
            missing = sum(len(s.missing) for s in open_units)
            name = plan.task_name(t)
            problems.append(f"task {name!r}: tuning is not settled ({len(open_units)} unit(s), {missing} tuning "
                            f"run(s) missing, extensions included); run `{command} --stage tune --task {name}` first")
    if problems:
        raise ValueError("the final stage needs every tuning choice of its tasks; nothing was run:\n  "
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
