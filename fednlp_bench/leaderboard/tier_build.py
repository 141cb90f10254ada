"""plan.json + records -> tier tasks and cells, every number traced to a record the plan names.

A run the plan marks done must exist at ``<runs_dir>/<run_id>/record.json``
with the plan's config hash and seed, and a tuning point's record must hold
the plan's validation value at its last round, else the build stops naming
the run id: a table that does not trace to its records is not published.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from fednlp_bench.leaderboard.labels import algorithm_rank, is_centralized
from fednlp_bench.leaderboard.convergence import Criterion, window_validation
from fednlp_bench.leaderboard.plan import Plan, PlanCell, PlanTuning
from fednlp_bench.leaderboard.records import LoadedRecord, load_record
from fednlp_bench.leaderboard.summary import difference
from fednlp_bench.leaderboard.tier_cells import (
    CENTRALIZED_CONVERGED,
    CENTRALIZED_EQUAL,
    TARGET_SHARE,
    TierCell,
    TierTask,
)
from fednlp_bench.results.record import RECORD_FILENAME, RecordError, RunRecord


class TraceError(RecordError):
    """A run named in plan.json has no matching record: the table would not trace to records."""


class RecordStore:
    """Loads each record the plan names once, and checks it is the run the plan says."""

    def __init__(self, runs_dir: Path) -> None:
        self.runs_dir = runs_dir
        self._cache: dict[str, LoadedRecord] = {}

    def get(self, run_id: str, config_hash: str, seed: int, where: str) -> LoadedRecord:
        item = self._cache.get(run_id)
        if item is None:
            path = self.runs_dir / run_id / RECORD_FILENAME
            if not path.is_file():
                raise TraceError(f"run {run_id!r} ({where}) is marked done in plan.json but {path} does not exist; "
                                 "restore the record (e.g. from git) or re-run `fednlp-bench suite` to redo it")
            record = load_record(path)
            if record.run_id != run_id:
                raise TraceError(f"run {run_id!r} ({where}): {path} holds run_id {record.run_id!r}")
            item = LoadedRecord(record, path)
            self._cache[run_id] = item
        record = item.record
        if record.config_hash != config_hash or record.seed != seed:
            raise TraceError(
                f"run {run_id!r} ({where}): the record has config_hash {record.config_hash[:12]}… seed {record.seed}, "
                f"plan.json says {config_hash[:12]}… seed {seed}; the record is not the planned run (re-run the "
                "suite so plan.json and the records agree)")
        return item


def best_validation(record: RunRecord, metric: str) -> float:
    """Highest validation ``metric`` over the evaluated rounds (higher is better for every primary metric)."""
    scores = [float(r.metrics[metric]) for r in record.rounds if metric in r.metrics]
    if not scores:
        raise ValueError(f"record {record.run_id}: no round has a validation {metric!r}, so it cannot set the "
                         "bytes-to-target reference; re-run it with eval_every that evaluates at least one round")
    return max(scores)


def bytes_to_target(record: RunRecord, metric: str, target: float) -> int | None:
    """Cumulative bytes up + down through the first round whose validation ``metric`` >= ``target``.

    Rounds that were not evaluated still count their bytes (they were sent);
    None when no evaluated round reaches the target.
    """
    total = 0
    for r in record.rounds:
        total += int(r.bytes_up) + int(r.bytes_down)
        if metric in r.metrics and float(r.metrics[metric]) >= target:
            return total
    return None


def _load_cell(cell: PlanCell, store: RecordStore, where: str) -> list[LoadedRecord]:
    items = []
    for k, run in enumerate(cell.runs):
        if not run.done:
            continue
        item = store.get(run.run_id, run.config_hash, run.seed, f"{where}.runs[{k}]")
        if item.record.task != cell.task or item.record.algorithm != cell.algorithm:
            raise TraceError(f"run {run.run_id!r} ({where}): record is {item.record.task}/{item.record.algorithm}, "
                             f"the plan's cell is {cell.task}/{cell.algorithm}")
        items.append(item)
    return items


def _load_tuning(entry: PlanTuning, store: RecordStore, where: str, criterion: Criterion) -> list[LoadedRecord]:
    """A grid point with a validation value must be a record whose window-mean validation is that value."""
    items = []
    for k, point in enumerate(entry.grid):
        if point.validation is None:
            continue
        item = store.get(point.run_id, point.config_hash, point.seed, f"{where}.grid[{k}]")
        metric = entry.metric or item.record.primary_metric
        score = window_validation(item.record, criterion, metric)
        if score is None or not math.isclose(score, point.validation, rel_tol=1e-9, abs_tol=1e-12):
            raise TraceError(f"run {point.run_id!r} ({where}.grid[{k}]): plan.json says validation "
                             f"{metric} {point.validation!r}, the record's convergence window averages {score!r}")
        items.append(item)
    return items


def _metric(task: str, records: list[LoadedRecord], tuning: list[PlanTuning]) -> str:
    names = {i.record.primary_metric for i in records} | {t.metric for t in tuning if t.metric is not None}
    if len(names) > 1:
        raise TraceError(f"task {task!r}: records and plan disagree on the primary metric ({', '.join(sorted(names))}); "
                         "one table compares one metric")
    return names.pop() if names else "primary metric"


def _build_task(plan: Plan, task: str, store: RecordStore) -> TierTask:
    loaded = [(cell, _load_cell(cell, store, f"cells[{i}]")) for i, cell in enumerate(plan.cells) if cell.task == task]
    tuning = [t for t in plan.tuning if t.task == task]
    tuning_records = [item for i, t in enumerate(plan.tuning) if t.task == task
                      for item in _load_tuning(t, store, f"tuning[{i}]", plan.convergence)]
    metric = _metric(task, [i for _, records in loaded for i in records], tuning)
    cells = {(c.partition.index, c.algorithm, c.role): TierCell(c, records, metric, plan.convergence)
             for c, records in loaded}
    partitions = {p.index: p for p in plan.task_partitions.get(task, ())}
    for c in cells.values():
        partitions.setdefault(c.plan.partition.index, c.plan.partition)
    for entry in tuning:
        partitions.setdefault(entry.partition.index, entry.partition)
    algorithms = {c.plan.algorithm for c in cells.values() if c.plan.is_federated}
    algorithms |= {t.algorithm for t in tuning if not is_centralized(t.algorithm)}
    data = next((e.data for e in (*[c.plan for c in cells.values()], *tuning) if e.data is not None), None)
    tier_task = TierTask(task, data, metric, [partitions[k] for k in sorted(partitions)],
                         sorted(algorithms, key=algorithm_rank), cells, tuning)
    tier_task.records = tier_task.cell_records()
    tier_task.tuning_records = tuning_records
    _derive(tier_task)
    return tier_task


def build_tier_tasks(plan: Plan, runs_dir: Path) -> list[TierTask]:
    """Every task of the plan with its cells' records loaded and checked, and the derived figures."""
    store = RecordStore(runs_dir)
    return [_build_task(plan, task, store) for task in plan.tasks]


def _derive(task: TierTask) -> None:
    """Gaps to centralized (equal budget, paired by seed) and bytes to reach the task's target."""
    equal = task.centralized(CENTRALIZED_EQUAL)
    reference = task.centralized(CENTRALIZED_CONVERGED) or equal
    if reference is not None and reference.complete:
        task.target = TARGET_SHARE * statistics.fmean(best_validation(i.record, task.metric) for i in reference.records)
        task.target_role = reference.plan.role
    equal_summary = equal.summary if equal is not None else None
    for cell in task.cells.values():
        if not cell.plan.is_federated:
            continue
        summary = cell.summary
        if summary is not None and equal_summary is not None:
            cell.gap = difference(summary, equal_summary)
        if task.target is not None:
            cell.bytes_to_target = [bytes_to_target(i.record, task.metric, task.target) for i in cell.records]


__all__ = ["RecordStore", "TraceError", "best_validation", "build_tier_tasks", "bytes_to_target"]
