"""Turn validated records into leaderboard tables (pure data; rendering is in ``render``).

One table per (task, dataset, model, primary metric, budget): a table only
compares runs that differ in the partition and the algorithm, so a cell never
mixes budgets. Rows are partitions (scheme + params; the partition *seed* is
not part of the row because it varies with the run seed), columns are
algorithms (name + params), a cell is mean ± sample std (ddof=1) of the final
primary metric over seeds, and each FL column has a gap column: FL mean minus
centralized mean of the same row.

Centralized training pools every client's data, so its result does not depend
on the partition; the suite runs it once per seed. A row without its own
centralized records therefore borrows the group's centralized records when
they all share one partition, and the cell is flagged ``shared`` so the table
says so.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable

from fednlp_bench.leaderboard.collect import LoadedRecord

CENTRALIZED = "centralized"
#: Family whose best member is marked per row (Reddi et al.'s adaptive server optimizers).
FEDOPT_FAMILY = "fedopt"
_GREEK = {"alpha": "α", "beta": "β"}
#: Config keys that are not part of a table's budget: they pick the table, row or column.
_NOT_BUDGET = {"task", "data", "model", "algorithm", "algorithm_params", "seed", "partition"}


def _algorithms() -> Any:
    from fednlp_bench.algorithms.registry import ALGORITHMS

    return ALGORITHMS


def _schemes() -> Any:
    from fednlp_bench.partitioners import PARTITIONERS

    return PARTITIONERS


def is_fedopt(name: str) -> bool:
    """Member of the FedOpt family (a plug-in joins by subclassing ``FedOpt``); labels come from the registry.

    An algorithm whose plug-in is not installed here is simply not a member:
    a table must build from records alone.
    """
    return _algorithms().family(name) == FEDOPT_FAMILY


def algorithm_label(name: str) -> str:
    return _algorithms().label(name)


def algorithm_rank(name: str) -> tuple[int, int, str]:
    """Registry order, with each family kept together at its first member's place."""
    algos = _algorithms()
    family = algos.family(name)
    members = [n for n in algos.names() if family is not None and algos.family(n) == family]
    first = algos.order(members[0]) if members else algos.order(name)
    return (first, algos.order(name), name)


def _norm(value: Any) -> Any:
    """Canonical form so ``alpha: 1`` and ``alpha: 1.0`` land in the same row."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _norm(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    return str(value)


def _canonical(value: Any) -> str:
    return json.dumps(_norm(value), sort_keys=True)


def _fmt_param(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# ---------------------------------------------------------------- partitions
@dataclass(frozen=True)
class PartitionKey:
    scheme: str
    params_json: str  # canonical JSON of the scheme params

    @property
    def params(self) -> dict[str, Any]:
        return json.loads(self.params_json)

    @property
    def label(self) -> str:
        return partition_label(self.scheme, self.params)

    @property
    def slug(self) -> str:
        parts = [self.scheme.replace("_label", "")]
        for name, value in sorted(self.params.items()):
            parts += [name, _fmt_param(value)]
        text = "-".join(parts).lower()
        return "".join(ch if ch.isalnum() or ch in ".-" else "-" for ch in text)

    def sort_key(self) -> tuple[Any, ...]:
        order = _schemes().order(self.scheme)
        # Least to most skewed: a larger alpha (or beta) is closer to IID, so it comes first.
        conc = self.params.get("alpha", self.params.get("beta"))
        skew = -float(conc) if isinstance(conc, (int, float)) and not isinstance(conc, bool) else 0.0
        return (order, self.scheme, skew, self.params_json)


def partition_key(config: dict[str, Any]) -> PartitionKey:
    part = config.get("partition") or {}
    scheme = str(part.get("scheme", "unknown"))
    return PartitionKey(scheme, _canonical(part.get("params") or {}))


def partition_label(scheme: str, params: dict[str, Any]) -> str:
    """Human label: ``IID``, ``Dirichlet α=0.1``, ``Quantity skew (β=0.5)``, ``Natural (author)``."""
    base = _schemes().label(scheme)
    if not params:
        return base
    if scheme == "dirichlet_label" and set(params) == {"alpha"}:
        return f"{base} α={_fmt_param(params['alpha'])}"
    if scheme == "natural_id" and len(params) == 1:
        return f"{base} ({_fmt_param(next(iter(params.values())))})"
    shown = ", ".join(f"{_GREEK.get(k, k)}={_fmt_param(v)}" for k, v in sorted(params.items()))
    return f"{base} ({shown})"


# ---------------------------------------------------------------- columns
@dataclass(frozen=True)
class ColumnKey:
    algorithm: str
    params_json: str

    @property
    def params(self) -> dict[str, Any]:
        return json.loads(self.params_json)

    @property
    def is_centralized(self) -> bool:
        return self.algorithm == CENTRALIZED

    @property
    def is_fedopt(self) -> bool:
        return is_fedopt(self.algorithm)

    def sort_key(self) -> tuple[Any, ...]:
        return (*algorithm_rank(self.algorithm), self.params_json)


def column_key(config: dict[str, Any], algorithm: str) -> ColumnKey:
    return ColumnKey(algorithm, _canonical(config.get("algorithm_params") or {}))


# ---------------------------------------------------------------- cells
@dataclass
class Cell:
    """Final primary metric of the records behind one (partition, algorithm) cell."""

    records: list[LoadedRecord]
    metric: str
    #: True when a centralized cell borrows the group's partition-independent centralized runs.
    shared: bool = False

    @property
    def values(self) -> list[float]:
        return [float(item.record.final_metrics[self.metric]) for item in self.records]

    @property
    def n(self) -> int:
        return len(self.records)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        """Sample std (ddof=1) over seeds; ``None`` for a single seed (no spread to report)."""
        return statistics.stdev(self.values) if self.n >= 2 else None

    @property
    def seeds(self) -> list[int]:
        return [item.record.seed for item in self.records]

    @property
    def run_ids(self) -> list[str]:
        return [item.record.run_id for item in self.records]

    @property
    def mean_wall_time_s(self) -> float:
        return statistics.fmean(item.record.wall_time_s for item in self.records)

    def _optional_mean(self, section: str, *path: str) -> float | None:
        """Mean of a number every record of the cell has under ``section`` (e.g. DP's epsilon), else None."""
        values = []
        for item in self.records:
            value: Any = getattr(item.record, section, None)
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                return None
            values.append(float(value))
        return statistics.fmean(values) if values else None

    @property
    def epsilon(self) -> float | None:
        """Final epsilon of client-level DP (same for every seed of one setting); None without DP."""
        return self._optional_mean("privacy", "epsilon")

    @property
    def worst_10pct(self) -> float | None:
        """Mean over seeds of the per-client metric of the worst 10% of clients (``client_eval`` runs)."""
        return self._optional_mean("client_eval", "summary", "worst_10pct")

    @property
    def mia_auc(self) -> float | None:
        """Mean over seeds of the membership-inference AUC (runs with ``mia_examples``)."""
        return self._optional_mean("membership_audit", "auc")


@dataclass
class Table:
    task: str
    data: str | None
    model: str
    metric: str
    budget: dict[str, Any]
    rows: list[PartitionKey]
    columns: list[ColumnKey]
    cells: dict[tuple[PartitionKey, ColumnKey], Cell]
    records: list[LoadedRecord] = field(default_factory=list)

    @property
    def group_id(self) -> str:
        """Short stable id of (task, data, model, metric, budget): names plots and CSV rows."""
        text = _canonical([self.task, self.data, self.model, self.metric, self.budget])
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def cell(self, row: PartitionKey, column: ColumnKey) -> Cell | None:
        return self.cells.get((row, column))

    def centralized_cell(self, row: PartitionKey) -> Cell | None:
        found = [c for col, c in ((col, self.cell(row, col)) for col in self.columns if col.is_centralized) if c]
        return found[0] if len(found) == 1 else None

    def gap(self, row: PartitionKey, column: ColumnKey) -> float | None:
        """FL mean minus centralized mean in the same row (negative: FL is worse)."""
        cell, central = self.cell(row, column), self.centralized_cell(row)
        if column.is_centralized or cell is None or central is None:
            return None
        return cell.mean - central.mean

    def best_fedopt(self, row: PartitionKey) -> list[ColumnKey]:
        """FedOpt-family columns with the highest mean in ``row`` (ties all marked).

        Marked only when at least two family members have a value: with one,
        "best of the family" says nothing.
        """
        scored = [(col, c.mean) for col in self.columns if col.is_fedopt and (c := self.cell(row, col))]
        if len(scored) < 2:
            return []
        top = max(mean for _, mean in scored)
        return [col for col, mean in scored if mean == top]

    def column_label(self, column: ColumnKey) -> str:
        """Algorithm label; params are appended only when one algorithm appears with several."""
        label = algorithm_label(column.algorithm)
        same = [c for c in self.columns if c.algorithm == column.algorithm]
        if len(same) > 1:
            shown = ", ".join(f"{k}={_fmt_param(v)}" for k, v in sorted(column.params.items())) or "defaults"
            label = f"{label} ({shown})"
        return label


def budget_of(config: dict[str, Any]) -> dict[str, Any]:
    """Everything in a config that must be equal for two runs to share a table."""
    budget = {k: v for k, v in config.items() if k not in _NOT_BUDGET}
    part = config.get("partition") or {}
    for name in ("num_clients", "min_size"):
        if name in part:
            budget[f"partition.{name}"] = part[name]
    return budget


def build_tables(records: Iterable[LoadedRecord]) -> list[Table]:
    """Group records into tables, sorted by task then dataset/model/budget."""
    groups: dict[str, list[LoadedRecord]] = {}
    meta: dict[str, tuple[str, str | None, str, str, dict[str, Any]]] = {}
    for item in records:
        rec = item.record
        cfg = rec.config
        budget = budget_of(cfg)
        data = cfg.get("data")
        model = str(cfg.get("model"))
        key = _canonical([rec.task, data, model, rec.primary_metric, budget])
        groups.setdefault(key, []).append(item)
        meta[key] = (rec.task, data, model, rec.primary_metric, budget)

    tables = []
    for key, items in groups.items():
        task, data, model, metric, budget = meta[key]
        by_cell: dict[tuple[PartitionKey, ColumnKey], list[LoadedRecord]] = {}
        for item in items:
            cfg = item.record.config
            by_cell.setdefault((partition_key(cfg), column_key(cfg, item.record.algorithm)), []).append(item)
        for cell_records in by_cell.values():
            cell_records.sort(key=lambda it: (it.record.seed, it.record.run_id))
        rows = sorted({r for r, _ in by_cell}, key=PartitionKey.sort_key)
        columns = sorted({c for _, c in by_cell}, key=ColumnKey.sort_key)
        cells = {k: Cell(v, metric) for k, v in by_cell.items()}
        _share_centralized(rows, columns, cells, metric)
        rows = [r for r in rows if any((r, c) in cells and not c.is_centralized for c in columns)] or rows
        tables.append(Table(task, data, model, metric, budget, rows, columns, cells, sorted(
            items, key=lambda it: it.record.run_id)))
    tables.sort(key=lambda t: (t.task, str(t.data), t.model, t.group_id))
    return tables


def _share_centralized(rows: list[PartitionKey], columns: list[ColumnKey],
                       cells: dict[tuple[PartitionKey, ColumnKey], Cell], metric: str) -> None:
    """Fill rows lacking centralized runs from the group's runs when these use a single partition."""
    for col in columns:
        if not col.is_centralized:
            continue
        owners = [r for r in rows if (r, col) in cells]
        if len(owners) != 1:
            continue  # none, or one per partition: nothing unambiguous to share
        source = cells[(owners[0], col)]
        for row in rows:
            if (row, col) not in cells:
                cells[(row, col)] = Cell(source.records, metric, shared=True)


def format_cell(cell: Cell | None, digits: int = 4) -> str:
    """``0.8123 ± 0.0041 (n=2)``; one seed: ``0.8123 ± n/a (n=1)``; empty: ``—``."""
    if cell is None:
        return "—"
    std = "n/a" if cell.std is None else f"{cell.std:.{digits}f}"
    return f"{cell.mean:.{digits}f} ± {std} (n={cell.n})"


def format_gap(gap: float | None, digits: int = 4) -> str:
    if gap is None or not math.isfinite(gap):
        return "—"
    return f"{gap:+.{digits}f}"
