"""plan.json + records -> the numbers of the tier tables (pure data; text is in ``tier_render``).

Every number must trace to a record the plan names, so a run the plan marks
done must exist at ``<runs_dir>/<run_id>/record.json`` with the plan's
config hash and seed, else the build stops naming the run id. A cell whose
runs are not all done is kept as "k/n runs done" and never averaged: a mean
over the seeds that happen to be finished would be a different statistic.

What is reported per cell: the test primary metric of the final model
(``final_metrics``), except for the centralized run trained to convergence
when it recorded ``test_best_round``: its figure is the test metric of the
round with the best validation score (the converged model, chosen on
validation, never on test).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fednlp_bench.leaderboard.collect import LoadedRecord, load_record
from fednlp_bench.leaderboard.plan import Plan, PlanCell, PlanPartition, PlanTuning
from fednlp_bench.leaderboard.tables import _canonical, _fmt_param, algorithm_rank, budget_of
from fednlp_bench.leaderboard.tier_stats import (
    Difference,
    Summary,
    best_validation,
    bytes_to_target,
    summarize,
    welch_difference,
)
from fednlp_bench.results.record import RECORD_FILENAME, RecordError, RunRecord

CENTRALIZED_EQUAL = "centralized_equal"
CENTRALIZED_CONVERGED = "centralized_converged"
#: Share of the centralized reference that "bytes to reach" counts (issue 14: 90% of centralized).
TARGET_SHARE = 0.9
MIB = 2 ** 20


class TraceError(RecordError):
    """A run named in plan.json has no matching record: the table would not trace to records."""


# ---------------------------------------------------------------- records
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


def reported_value(record: RunRecord, role: str) -> float:
    """The test number a cell averages (see the module docstring for the converged case)."""
    metric = record.primary_metric
    if role == CENTRALIZED_CONVERGED and record.test and isinstance(record.test.get("best_round"), dict):
        best = record.test["best_round"].get("test") or {}
        if metric in best:
            return float(best[metric])
    return float(record.final_metrics[metric])


# ---------------------------------------------------------------- cells
@dataclass
class TierCell:
    plan: PlanCell
    #: Records of the runs marked done, in plan order.
    records: list[LoadedRecord]
    metric: str
    gap: Difference | None = None
    #: Bytes to reach the task's target, per done run (None: not reached); None when there is no target.
    bytes_to_target: list[int | None] | None = None

    @property
    def n_planned(self) -> int:
        return len(self.plan.runs)

    @property
    def n_done(self) -> int:
        return len(self.records)

    @property
    def complete(self) -> bool:
        return self.n_done == self.n_planned

    @property
    def summary(self) -> Summary | None:
        """Mean/std/interval over seeds; None until every planned run is done."""
        if not self.complete:
            return None
        return summarize([reported_value(item.record, self.plan.role) for item in self.records])

    @property
    def run_ids(self) -> list[str]:
        return [run.run_id for run in self.plan.runs]

    @property
    def seeds(self) -> list[int]:
        return [item.record.seed for item in self.records]

    def _mean(self, values: list[float]) -> float | None:
        return statistics.fmean(values) if values and self.complete else None

    @property
    def mean_total_bytes(self) -> float | None:
        return self._mean([float(i.record.bytes_up + i.record.bytes_down) for i in self.records])

    @property
    def mean_wall_time_s(self) -> float | None:
        return self._mean([float(i.record.wall_time_s) for i in self.records])

    @property
    def worst_10pct(self) -> float | None:
        """Mean over seeds of the worst-10%-client metric (``client_eval``); None unless every run has it."""
        values = []
        for item in self.records:
            summary = (item.record.client_eval or {}).get("summary") or {}
            value = summary.get("worst_10pct")
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                return None
            values.append(float(value))
        return self._mean(values)

    @property
    def reached(self) -> list[int]:
        return [b for b in (self.bytes_to_target or []) if b is not None]

    @property
    def mean_bytes_to_target(self) -> float | None:
        return statistics.fmean(self.reached) if self.reached and self.complete else None


# ---------------------------------------------------------------- tasks
@dataclass
class TierTask:
    task: str
    data: str | None
    metric: str
    partitions: list[PlanPartition]
    algorithms: list[str]  # federated algorithms, registry order
    cells: dict[tuple[int, str, str], TierCell]  # (partition index, algorithm, role)
    tuning: list[PlanTuning]
    records: list[LoadedRecord] = field(default_factory=list)
    #: 90% of the reference's mean best validation metric; None while the reference is incomplete or absent.
    target: float | None = None
    target_role: str | None = None

    def cell(self, index: int, algorithm: str, role: str = "federated") -> TierCell | None:
        return self.cells.get((index, algorithm, role))

    def centralized(self, role: str) -> TierCell | None:
        """The task's centralized cell of ``role`` (it runs on one partition, shared by every row)."""
        found = [c for (_, _, r), c in self.cells.items() if r == role]
        return found[0] if len(found) == 1 else None

    def partition(self, index: int) -> PlanPartition | None:
        return next((p for p in self.partitions if p.index == index), None)

    def most_skewed(self) -> PlanPartition:
        """The smallest α if any partition has one, else the last non-IID partition, else the first."""
        with_alpha = [p for p in self.partitions if p.alpha is not None]
        if with_alpha:
            return min(with_alpha, key=lambda p: (p.alpha, p.index))
        skewed = [p for p in self.partitions if not p.is_iid]
        return skewed[-1] if skewed else self.partitions[0]

    def best_federated(self, index: int) -> TierCell | None:
        """Highest-mean complete FL cell on partition ``index`` (ties: registry order)."""
        scored = [(c.summary.mean, -k, c) for k, a in enumerate(self.algorithms)
                  if (c := self.cell(index, a)) is not None and c.summary is not None]
        return max(scored, key=lambda t: (t[0], t[1]))[2] if scored else None

    @property
    def budget(self) -> dict[str, Any]:
        """Config fields every done run shares, less the tuned ones and the converged run's overrides.

        The converged centralized run is left out on purpose: its longer
        training would otherwise drop ``rounds`` from the budget every other
        cell shares; its overrides are stated on their own.
        """
        tuned = {k for c in self.cells.values() for k in c.plan.hyperparameters}
        tuned |= {k for t in self.tuning for p in t.grid for k in p.point}
        return _shared({k: v for k, v in budget_of(i.record.config).items() if k not in tuned}
                       for i in self._cell_records(exclude_role=CENTRALIZED_CONVERGED))

    @property
    def converged_overrides(self) -> dict[str, Any]:
        """Settings in which the converged centralized runs differ from the equal-budget ones."""
        equal, converged = self.centralized(CENTRALIZED_EQUAL), self.centralized(CENTRALIZED_CONVERGED)
        if equal is None or converged is None or not equal.records or not converged.records:
            return {}
        a = _shared(budget_of(i.record.config) for i in equal.records)
        b = _shared(budget_of(i.record.config) for i in converged.records)
        return {k: v for k, v in sorted(b.items()) if _canonical(a.get(k, "<unset>")) != _canonical(v)}

    @property
    def models(self) -> list[str]:
        return sorted({str(i.record.config.get("model")) for i in self._cell_records()})

    @property
    def hardware(self) -> list[str]:
        return sorted({hardware_label(i.record.hardware) for i in self._cell_records()})

    def _cell_records(self, exclude_role: str | None = None) -> list[LoadedRecord]:
        seen: dict[str, LoadedRecord] = {}
        for cell in self.cells.values():
            if cell.plan.role == exclude_role:
                continue
            for item in cell.records:
                seen.setdefault(item.record.run_id, item)
        return list(seen.values())


def _shared(dicts: Any) -> dict[str, Any]:
    """Keys with one value across every dict (missing in one -> not shared)."""
    items = list(dicts)
    if not items:
        return {}
    first = items[0]
    return {k: v for k, v in sorted(first.items())
            if all(k in d and _canonical(d[k]) == _canonical(v) for d in items[1:])}


def hardware_label(hardware: dict[str, Any]) -> str:
    """``GPU NVIDIA H100`` or ``CPU AMD EPYC, 1 torch thread(s) of 2 cores``: what ran the numbers."""
    device = str(hardware.get("device") or "")
    if hardware.get("gpu") and not device.startswith("cpu"):
        return f"GPU {hardware['gpu']}"
    parts = [f"CPU {hardware.get('cpu') or hardware.get('processor') or 'unknown'}"]
    threads, cores = hardware.get("torch_threads"), hardware.get("cpu_cores", hardware.get("cpu_count"))
    if threads is not None:
        parts.append(f"{threads} torch thread(s)" + (f" of {cores} cores" if cores is not None else ""))
    elif cores is not None:
        parts.append(f"{cores} cores")
    return ", ".join(parts)


# ---------------------------------------------------------------- build
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


def _check_tuning(entry: PlanTuning, store: RecordStore, where: str) -> None:
    """A grid point with a validation value must be a record whose final-round validation is that value."""
    for k, point in enumerate(entry.grid):
        if point.validation is None:
            continue
        item = store.get(point.run_id, point.config_hash, point.seed, f"{where}.grid[{k}]")
        metric = entry.metric or item.record.primary_metric
        last = item.record.rounds[-1].metrics.get(metric)
        if last is None or not math.isclose(float(last), point.validation, rel_tol=1e-9, abs_tol=1e-12):
            raise TraceError(f"run {point.run_id!r} ({where}.grid[{k}]): plan.json says validation "
                             f"{metric} {point.validation!r}, the record's final round has {last!r}")


def _metric(task: str, records: list[LoadedRecord], tuning: list[PlanTuning]) -> str:
    names = {i.record.primary_metric for i in records} | {t.metric for t in tuning if t.metric is not None}
    if len(names) > 1:
        raise TraceError(f"task {task!r}: records and plan disagree on the primary metric ({', '.join(sorted(names))}); "
                         "one table compares one metric")
    return names.pop() if names else "primary metric"


def build_tier_tasks(plan: Plan, runs_dir: Path) -> list[TierTask]:
    """Every task of the plan with its cells' records loaded and checked, and the derived figures."""
    store = RecordStore(runs_dir)
    tasks = []
    for task in plan.tasks:
        cells: dict[tuple[int, str, str], TierCell] = {}
        loaded: list[tuple[PlanCell, list[LoadedRecord]]] = []
        for i, cell in enumerate(plan.cells):
            if cell.task == task:
                loaded.append((cell, _load_cell(cell, store, f"cells[{i}]")))
        tuning = [t for t in plan.tuning if t.task == task]
        for i, entry in enumerate(plan.tuning):
            if entry.task == task:
                _check_tuning(entry, store, f"tuning[{i}]")
        metric = _metric(task, [i for _, records in loaded for i in records], tuning)
        for cell, records in loaded:
            cells[(cell.partition.index, cell.algorithm, cell.role)] = TierCell(cell, records, metric)
        partitions = {c.plan.partition.index: c.plan.partition for c in cells.values()}
        for entry in tuning:
            partitions.setdefault(entry.partition.index, entry.partition)
        algorithms = {c.plan.algorithm for c in cells.values() if c.plan.is_federated}
        algorithms |= {t.algorithm for t in tuning if t.algorithm != "centralized"}
        data = next((e.data for e in (*[c.plan for c in cells.values()], *tuning) if e.data is not None), None)
        tier_task = TierTask(task, data, metric, [partitions[k] for k in sorted(partitions)],
                             sorted(algorithms, key=algorithm_rank), cells, tuning)
        tier_task.records = tier_task._cell_records()
        _derive(tier_task)
        tasks.append(tier_task)
    return tasks


def _derive(task: TierTask) -> None:
    """Gaps to centralized (equal budget) and bytes to reach the task's target."""
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
            cell.gap = welch_difference(summary, equal_summary)
        if task.target is not None:
            cell.bytes_to_target = [bytes_to_target(i.record, task.metric, task.target) for i in cell.records]


def point_text(point: dict[str, Any] | None) -> str:
    """``lr=0.003, mu=0.1``: a grid point as a table shows it."""
    if not point:
        return "defaults"
    return ", ".join(f"{k}={_fmt_param(v)}" for k, v in sorted(point.items()))


def same_point(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    return a is not None and b is not None and _canonical(a) == _canonical(b)


__all__ = ["TierCell", "TierTask", "TraceError", "build_tier_tasks", "hardware_label", "reported_value",
           "point_text", "same_point"]
