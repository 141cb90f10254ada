"""The numbers of a tier table, per cell and per task (pure data; building is in ``tier_build``, text in ``tier_render``).

A cell whose runs are not all done is kept as "k/n runs done" and never
averaged: a mean over the seeds that happen to be finished would be a
different statistic. Reported per cell: the test primary metric of the
final model (``final_metrics``), except for the centralized run trained to
convergence when it recorded ``test_best_round``: its figure is the test
metric of the round with the best validation score (chosen on validation,
never on test). Beside it, the cell's convergence status (``convergence``),
its validation score averaged over the convergence window, which alone picks "best" cells
and headlines, and the paired gap to centralized (``summary``).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from fednlp_bench.leaderboard.client_tail import CellClients, cell_clients
from fednlp_bench.leaderboard.convergence import Criterion, Status, records_status, window_validation
from fednlp_bench.leaderboard.labels import budget_of, canonical, fmt_param
from fednlp_bench.leaderboard.plan import PlanCell, PlanPartition, PlanTuning
from fednlp_bench.leaderboard.records import LoadedRecord
from fednlp_bench.leaderboard.summary import Difference, Summary, summarize
from fednlp_bench.results.record import RunRecord

CENTRALIZED_EQUAL = "centralized_equal"
CENTRALIZED_CONVERGED = "centralized_converged"
#: Share of the centralized reference that "bytes to reach" counts (issue 14: 90% of centralized).
TARGET_SHARE = 0.9
MIB = 2 ** 20


def reported_value(record: RunRecord, role: str) -> float:
    """The test number a cell averages (see the module docstring for the converged case)."""
    metric = record.primary_metric
    if role == CENTRALIZED_CONVERGED and record.test and isinstance(record.test.get("best_round"), dict):
        best = record.test["best_round"].get("test") or {}
        if metric in best:
            return float(best[metric])
    return float(record.final_metrics[metric])


@dataclass
class TierCell:
    plan: PlanCell
    #: Records of the runs marked done, in plan order.
    records: list[LoadedRecord]
    metric: str
    criterion: Criterion
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
        """Test metric over seeds (paired by seed); None until every planned run is done."""
        if not self.complete:
            return None
        return summarize([reported_value(i.record, self.plan.role) for i in self.records], self.seeds)

    @property
    def validation(self) -> Summary | None:
        """Final-round validation metric over seeds: what "best" marks and headlines are chosen by."""
        values = [window_validation(i.record, self.criterion) for i in self.records]
        if not self.complete or any(v is None for v in values):
            return None
        return summarize([v for v in values if v is not None], self.seeds)

    @property
    def convergence(self) -> Status | None:
        if not self.complete:
            return None
        return records_status([i.record for i in self.records], self.criterion)

    @property
    def converged(self) -> bool:
        status = self.convergence
        return status is not None and status.converged is True

    @property
    def clients(self) -> CellClients | None:
        """The worst-10%-client metric over seeds (qualifying clients only); None unless every run has it."""
        return cell_clients([i.record for i in self.records]) if self.complete else None

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
    def reached(self) -> list[int]:
        return [b for b in (self.bytes_to_target or []) if b is not None]

    @property
    def mean_bytes_to_target(self) -> float | None:
        return statistics.fmean(self.reached) if self.reached and self.complete else None


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
    #: Records of the tuning grid points (some are also cell records: seed 0 on the tuned partition).
    tuning_records: list[LoadedRecord] = field(default_factory=list)
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

    def federated_cells(self, index: int) -> list[TierCell]:
        return [c for a in self.algorithms if (c := self.cell(index, a)) is not None]

    def best_federated(self, index: int) -> TierCell | None:
        """The converged, complete FL cell on partition ``index`` with the highest *validation* mean.

        Test never selects: the mark and the headline go by the validation
        metric averaged over the convergence window (the selection rule); ties go to the earlier algorithm in registry order.
        A cell still rising (or undecided) is never the best.
        """
        scored = [(c.validation.mean, -k, c) for k, c in enumerate(self.federated_cells(index))
                  if c.converged and c.validation is not None and c.summary is not None]
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
        return shared({k: v for k, v in budget_of(i.record.config).items() if k not in tuned}
                      for i in self.cell_records(exclude_role=CENTRALIZED_CONVERGED))

    @property
    def converged_overrides(self) -> dict[str, Any]:
        """Settings in which the converged centralized runs differ from the equal-budget ones."""
        equal, converged = self.centralized(CENTRALIZED_EQUAL), self.centralized(CENTRALIZED_CONVERGED)
        if equal is None or converged is None or not equal.records or not converged.records:
            return {}
        a = shared(budget_of(i.record.config) for i in equal.records)
        b = shared(budget_of(i.record.config) for i in converged.records)
        return {k: v for k, v in sorted(b.items()) if canonical(a.get(k, "<unset>")) != canonical(v)}

    @property
    def models(self) -> list[str]:
        return sorted({str(i.record.config.get("model")) for i in self.cell_records()})

    @property
    def hardware(self) -> list[str]:
        return sorted({hardware_label(i.record.hardware) for i in self.cell_records()})

    @property
    def cpu_hours(self) -> float:
        """Wall time of every record behind the task's cells and tuning grid, in hours (the closing note's figure)."""
        runs = {i.record.run_id: i.record.wall_time_s for i in (*self.records, *self.tuning_records)}
        return sum(runs.values()) / 3600

    def cell_records(self, exclude_role: str | None = None) -> list[LoadedRecord]:
        seen: dict[str, LoadedRecord] = {}
        for cell in self.cells.values():
            if cell.plan.role == exclude_role:
                continue
            for item in cell.records:
                seen.setdefault(item.record.run_id, item)
        return list(seen.values())


def shared(dicts: Any) -> dict[str, Any]:
    """Keys with one value across every dict (missing in one -> not shared)."""
    items = list(dicts)
    if not items:
        return {}
    first = items[0]
    return {k: v for k, v in sorted(first.items())
            if all(k in d and canonical(d[k]) == canonical(v) for d in items[1:])}


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


def point_text(point: dict[str, Any] | None) -> str:
    """``lr=0.003, mu=0.1``: a grid point as a table shows it."""
    if not point:
        return "defaults"
    return ", ".join(f"{k}={fmt_param(v)}" for k, v in sorted(point.items()))


def same_point(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    return a is not None and b is not None and canonical(a) == canonical(b)
