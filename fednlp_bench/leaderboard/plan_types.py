"""The parsed ``plan.json``: which records make which tier-table cell (schema in docs/leaderboard.md).

Why apart from the parser (``plan.py``, ``plan_reader.py``): the table builders
and the suite's selection read these types; only ``load_plan`` builds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fednlp_bench.leaderboard.convergence import Criterion

SCHEMA = 2
ROLES = ("federated", "centralized_equal", "centralized_converged")


class PlanError(ValueError):
    """plan.json is malformed; the message names the file, the entry and the field."""


@dataclass(frozen=True)
class PlanPartition:
    scheme: str
    params: dict[str, Any]
    index: int

    @property
    def alpha(self) -> float | None:
        """Concentration of the skew (dirichlet_label, feature_cluster); None for IID and natural splits."""
        value = self.params.get("alpha")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        return None

    @property
    def is_iid(self) -> bool:
        return self.scheme == "iid"


@dataclass(frozen=True)
class PlanRun:
    config_hash: str
    seed: int
    run_id: str
    done: bool


@dataclass(frozen=True)
class PlanCell:
    task: str
    data: str | None
    partition: PlanPartition
    algorithm: str
    algorithm_params: dict[str, Any]
    role: str
    hyperparameters: dict[str, Any]
    tuned_on: int | None
    runs: tuple[PlanRun, ...]

    @property
    def is_federated(self) -> bool:
        return self.role == "federated"


@dataclass(frozen=True)
class GridPoint:
    point: dict[str, Any]
    config_hash: str
    seed: int
    run_id: str
    #: Validation primary metric averaged over the convergence window; None while the run is missing.
    validation: float | None
    #: 0 for a declared grid point, else the extension step that added it.
    step: int = 0


@dataclass(frozen=True)
class PlanTuning:
    task: str
    data: str | None
    partition: PlanPartition
    algorithm: str
    #: The task's primary metric; None when the suite could not name it yet (no record, no registry entry).
    metric: str | None
    grid: tuple[GridPoint, ...]
    #: The chosen grid point; None while any grid run is missing or an extension step is due.
    chosen: dict[str, Any] | None
    #: The declared axes, the axes after extensions, the cap, and each extension ({step, axis, side, value}).
    declared_axes: dict[str, list[Any]] = field(default_factory=dict)
    axes: dict[str, list[Any]] = field(default_factory=dict)
    extension_cap: int = 0
    extensions: tuple[dict[str, Any], ...] = ()
    #: Axes on whose edge the choice still lies after the cap (flagged in the tuning table).
    on_edge: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    path: Path
    tier: str
    suite: str | None
    runs_dir: str
    selection: str
    convergence: Criterion
    tuning: tuple[PlanTuning, ...]
    cells: tuple[PlanCell, ...]
    #: Each task's partitions as the suite declares them (so a table lists every row before any cell exists).
    task_partitions: dict[str, tuple[PlanPartition, ...]] = field(default_factory=dict)

    @property
    def tasks(self) -> list[str]:
        """Tasks in plan order (the suite's list, then first appearance in cells and tuning)."""
        seen: dict[str, None] = dict.fromkeys(self.task_partitions)
        for entry in (*self.cells, *self.tuning):
            seen.setdefault(entry.task, None)
        return list(seen)
