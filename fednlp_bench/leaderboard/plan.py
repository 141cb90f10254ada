"""Read ``plan.json``: the suite's statement of which records make which tier-table cell.

The suite (``fednlp_bench/suite/selection.py``) owns selection: it writes,
after each stage, the tuning grid (extensions included) with every point's
validation score and its choice, the tier's convergence criterion, and the
final cells with the run ids behind them. The tier tables read ONLY this
file plus the records, so they can never disagree with the suite about
which hyperparameters won. This module parses and checks the file's shape
(schema 2, docs/leaderboard.md); every problem is an error naming the field
and the fix, because a table built from a misread plan would publish wrong
numbers.
"""

from __future__ import annotations

import json
import math
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


class _Reader:
    """Field access that names the file and entry in every error."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, message: str) -> PlanError:
        return PlanError(f"{self.path}: {where}: {message} (plan.json is written by `fednlp-bench suite`; "
                         "re-run the suite to regenerate it rather than editing it)")

    def get(self, obj: Any, key: str, where: str, kind: type | tuple[type, ...], optional: bool = False) -> Any:
        if not isinstance(obj, dict):
            raise self.fail(where, f"must be a JSON object, got {type(obj).__name__}")
        if key not in obj or obj[key] is None:
            if optional:
                return None
            raise self.fail(where, f"missing field {key!r}")
        value = obj[key]
        bad_bool = isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,))
        if not isinstance(value, kind) or bad_bool:
            raise self.fail(where, f"field {key!r} = {value!r} is not {_kind_name(kind)}")
        return value

    def partition(self, obj: Any, where: str) -> PlanPartition:
        part = self.get(obj, "partition", where, dict)
        at = f"{where}.partition"
        return PlanPartition(
            scheme=self.get(part, "scheme", at, str),
            params=dict(self.get(part, "params", at, dict, optional=True) or {}),
            index=self.get(part, "index", at, int),
        )

    def run(self, obj: Any, where: str) -> PlanRun:
        return PlanRun(
            config_hash=self.get(obj, "config_hash", where, str),
            seed=self.get(obj, "seed", where, int),
            run_id=self.get(obj, "run_id", where, str),
            done=self.get(obj, "done", where, bool),
        )

    def grid_point(self, obj: Any, where: str) -> GridPoint:
        value = self.get(obj, "validation", where, (int, float), optional=True)
        if value is not None and not math.isfinite(value):
            raise self.fail(where, f"validation = {value!r} is not a finite number")
        return GridPoint(
            point=dict(self.get(obj, "point", where, dict)),
            config_hash=self.get(obj, "config_hash", where, str),
            seed=self.get(obj, "seed", where, int),
            run_id=self.get(obj, "run_id", where, str),
            validation=None if value is None else float(value),
            step=self.get(obj, "step", where, int, optional=True) or 0,
        )

    def cell(self, obj: Any, where: str) -> PlanCell:
        role = self.get(obj, "role", where, str)
        if role not in ROLES:
            raise self.fail(where, f"role {role!r} is not one of {', '.join(ROLES)}")
        runs = self.get(obj, "runs", where, list)
        if not runs:
            raise self.fail(where, "'runs' is empty: a cell lists the runs (one per final seed) behind it")
        return PlanCell(
            task=self.get(obj, "task", where, str),
            data=self.get(obj, "data", where, str, optional=True),
            partition=self.partition(obj, where),
            algorithm=self.get(obj, "algorithm", where, str),
            algorithm_params=dict(self.get(obj, "algorithm_params", where, dict, optional=True) or {}),
            role=role,
            hyperparameters=dict(self.get(obj, "hyperparameters", where, dict, optional=True) or {}),
            tuned_on=self.get(obj, "tuned_on", where, int, optional=True),
            runs=tuple(self.run(r, f"{where}.runs[{i}]") for i, r in enumerate(runs)),
        )

    def tuning(self, obj: Any, where: str) -> PlanTuning:
        grid = self.get(obj, "grid", where, list)
        return PlanTuning(
            task=self.get(obj, "task", where, str),
            data=self.get(obj, "data", where, str, optional=True),
            partition=self.partition(obj, where),
            algorithm=self.get(obj, "algorithm", where, str),
            metric=self.get(obj, "metric", where, str, optional=True),
            grid=tuple(self.grid_point(p, f"{where}.grid[{i}]") for i, p in enumerate(grid)),
            chosen=self.get(obj, "chosen", where, dict, optional=True),
            declared_axes=dict(self.get(obj, "declared_axes", where, dict, optional=True) or {}),
            axes=dict(self.get(obj, "axes", where, dict, optional=True) or {}),
            extension_cap=self.get(obj, "extension_cap", where, int, optional=True) or 0,
            extensions=tuple(self.get(obj, "extensions", where, list, optional=True) or ()),
            on_edge=tuple(self.get(obj, "on_edge", where, list, optional=True) or ()),
        )


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", float: "a number", bool: "true/false", list: "a list",
             dict: "an object"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def load_plan(path: str | Path) -> Plan:
    """Parse and check ``plan.json``; raise :class:`PlanError` naming the entry on any problem."""
    path = Path(path)
    if path.is_dir():
        path = path / "plan.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise PlanError(f"{path}: no such plan file; pass --plan <out>/plan.json written by "
                        "`fednlp-bench suite` (it appears after the tuning stage)") from err
    except json.JSONDecodeError as err:
        raise PlanError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err
    read = _Reader(path)
    schema = read.get(data, "schema", "top level", int)
    if schema != SCHEMA:
        raise read.fail("top level", f"schema {schema!r} is not supported (expected {SCHEMA}); "
                                     "regenerate it with this version of fednlp-bench")
    cells = tuple(read.cell(c, f"cells[{i}]") for i, c in enumerate(read.get(data, "cells", "top level", list)))
    tuning = tuple(read.tuning(t, f"tuning[{i}]")
                   for i, t in enumerate(read.get(data, "tuning", "top level", list, optional=True) or []))
    seen: dict[tuple[str, int, str, str], int] = {}
    for i, cell in enumerate(cells):
        key = (cell.task, cell.partition.index, cell.algorithm, cell.role)
        if key in seen:
            raise read.fail(f"cells[{i}]", f"same task, partition index, algorithm and role as cells[{seen[key]}] "
                                           f"({key[0]}, partition {key[1]}, {key[2]}, {key[3]})")
        seen[key] = i
    return Plan(
        path=path,
        tier=read.get(data, "tier", "top level", str),
        suite=read.get(data, "suite", "top level", str, optional=True),
        runs_dir=read.get(data, "runs_dir", "top level", str),
        selection=read.get(data, "selection", "top level", str, optional=True) or "not stated in plan.json",
        convergence=_criterion(read, data),
        tuning=tuning,
        cells=cells,
        task_partitions=_task_partitions(read, data),
    )


def _task_partitions(read: _Reader, data: Any) -> dict[str, tuple[PlanPartition, ...]]:
    out = {}
    for i, entry in enumerate(read.get(data, "tasks", "top level", list, optional=True) or []):
        where = f"tasks[{i}]"
        parts = read.get(entry, "partitions", where, list)
        out[read.get(entry, "task", where, str)] = tuple(read.partition({"partition": p}, f"{where}.partitions[{k}]")
                                                          for k, p in enumerate(parts))
    return out


def _criterion(read: _Reader, data: Any) -> Criterion:
    try:
        return Criterion.from_dict(read.get(data, "convergence", "top level", dict), "convergence")
    except ValueError as err:
        raise read.fail("top level", str(err)) from None


def resolve_runs_dir(plan: Plan, override: str | Path | None = None) -> Path:
    """Where the plan's records live.

    ``runs_dir`` in plan.json is written as the suite saw it: relative to the
    folder the suite ran in (the repository root). It is looked up there
    (the working directory) first, then relative to each folder above the
    plan file, so the tables also build when run from elsewhere.
    """
    if override is not None:
        root = Path(override)
        if not root.is_dir():
            raise FileNotFoundError(f"--runs {str(root)!r} is not a folder of run records")
        return root
    given = Path(plan.runs_dir)
    candidates = [given] if given.is_absolute() else [given, *(parent / given for parent in plan.path.resolve().parents)]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    if not any(r.done for c in plan.cells for r in c.runs) and not any(
            g.validation is not None for t in plan.tuning for g in t.grid):
        return given  # nothing recorded yet: the tables show every run as pending, no record is read
    raise FileNotFoundError(
        f"{plan.path}: runs_dir {plan.runs_dir!r} was not found relative to the working directory or any folder "
        f"above the plan; run from the repository root or pass --runs <folder with the records>"
    )
