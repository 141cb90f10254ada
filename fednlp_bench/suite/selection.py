"""Selection of each tuned setting, and ``plan.json``: the one place where the choice is made.

The tables read only ``plan.json`` plus the records, so selection is never
re-implemented (and cannot drift) elsewhere. The rule is fixed by the
protocol: the grid point with the best *validation* primary metric, averaged
over the evaluated rounds of the convergence window (the last quarter of the
rounds: ``leaderboard.convergence.window_validation``), ties to the earlier point, on
the grid as its edge extensions have grown it (``extension.py``). All
primary metrics are higher-is-better by the task contract (tasks/base.py).
Test metrics (``record.final_metrics``) are never read here: choosing on test
would report an optimistically biased number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fednlp_bench.atomic import atomic_write_text
from fednlp_bench.engine.run.run_id import run_id_of
from fednlp_bench.leaderboard.convergence import Criterion, window_validation
from fednlp_bench.leaderboard.records import LoadedRecord, collect_records
from fednlp_bench.suite.extension import UnitState, resolve
from fednlp_bench.suite.spec import PlannedRun
from fednlp_bench.suite.tier_plan import Cell, TierPlan, partition_refs

PLAN_SCHEMA = 2
PLAN_FILENAME = "plan.json"
SELECTION_RULE = ("validation primary metric averaged over the evaluated rounds of the convergence window, ties to "
                  "the earlier grid point, on the grid as its edge extensions grew it")
Records = dict[tuple[str, int], LoadedRecord]


def load_records(runs_dir: str | Path) -> Records:
    """Valid records by (config_hash, seed); a bad or duplicate record is an error naming its file."""
    if not Path(runs_dir).exists():
        return {}
    return {item.key: item for item in collect_records(runs_dir)}


def window_score(item: LoadedRecord, criterion: Criterion) -> float:
    """The validation score selection reads (window mean); a record without its last round's validation is an error."""
    record = item.record
    last = record.rounds[-1]
    if record.primary_metric not in last.metrics:
        raise ValueError(
            f"run {record.run_id} ({item.path}): its last round (round {last.round}) has no validation "
            f"{record.primary_metric!r}, which selection reads. Delete {item.path.parent} and run the suite again "
            "(the engine always evaluates the last round; this record was edited or made elsewhere)"
        )
    score = window_validation(record, criterion)
    assert score is not None  # the last round is in the window and was evaluated
    return score


def select_all(plan: TierPlan, records: Records) -> dict[int, UnitState]:
    """Each unit's grown grid and choice, by ``id(unit)``."""
    def validation(run: PlannedRun) -> float | None:
        return window_score(records[run.key], plan.suite.convergence) if run.key in records else None

    return {id(unit): resolve(plan, unit, validation) for unit in plan.units}


def cell_runs(plan: TierPlan, cell: Cell, states: dict[int, UnitState]) -> list[PlannedRun] | None:
    """The cell's final runs, or None while its unit's tuning is not settled."""
    point = states[id(cell.unit)].chosen_point
    return None if point is None else plan.final_runs(cell, point)


def _run_entry(run: PlannedRun, records: Records) -> dict[str, Any]:
    item = records.get(run.key)
    return {"config_hash": run.key[0], "seed": run.key[1],
            "run_id": item.record.run_id if item else run_id_of(run.config), "done": item is not None}


def _metric(plan: TierPlan, task_index: int, records: Records) -> str | None:
    for unit in plan.units:
        for run in unit.runs:
            if unit.task_index == task_index and run.key in records:
                return records[run.key].record.primary_metric
    from fednlp_bench.tasks.registry import TASKS

    cls = TASKS.find(plan.task_name(task_index))
    return getattr(cls, "primary_metric", None)


def _tuning_entry(plan: TierPlan, state: UnitState, records: Records, metric: str | None) -> dict[str, Any]:
    unit = state.unit
    grid = [{"point": dict(point), **_run_entry(run, records), "validation": value, "step": step}
            for point, run, value, step in zip(state.points, state.runs, state.validations, state.step_of)]
    return {
        "task": plan.task_name(unit.task_index), "data": unit.runs[0].config.get("data"),
        "partition": unit.partition.to_json(), "algorithm": unit.algorithm, "metric": metric,
        "declared_axes": {k: list(v) for k, v in unit.axes.items()}, "axes": {k: list(v) for k, v in state.axes.items()},
        "extension_cap": plan.suite.tuning.extensions,
        "extensions": [entry for step in state.steps for entry in step.to_json()],
        "grid": grid, "chosen": None if state.chosen_point is None else dict(state.chosen_point),
        "on_edge": list(state.on_edge),
    }


def build_plan(plan: TierPlan, records: Records, runs_dir: str | Path) -> dict[str, Any]:
    """The ``plan.json`` content (schema 2; fields: docs/leaderboard.md)."""
    suite = plan.suite
    states = select_all(plan, records)
    metrics = {t: _metric(plan, t, records) for t in range(len(suite.tasks))}
    tuning = [_tuning_entry(plan, states[id(unit)], records, metrics[unit.task_index]) for unit in plan.units]
    cells = []
    for cell in plan.cells:
        runs = cell_runs(plan, cell, states)
        if runs is None:
            continue
        chosen = states[id(cell.unit)].chosen_point
        entry: dict[str, Any] = {
            "task": plan.task_name(cell.task_index), "data": runs[0].config.get("data"),
            "partition": cell.partition.to_json(), "algorithm": cell.algorithm,
            "algorithm_params": dict(runs[0].config.get("algorithm_params") or {}),
            "role": cell.role, "hyperparameters": dict(chosen or {}),
            "tuned_on": cell.unit.partition.index, "metric": metrics[cell.task_index],
            "runs": [_run_entry(run, records) for run in runs],
        }
        if cell.overrides is not None:
            entry["overrides"] = dict(cell.overrides)
        cells.append(entry)
    return {
        "schema": PLAN_SCHEMA, "tier": suite.tier, "suite": suite.source, "runs_dir": str(runs_dir),
        "selection": f"{SELECTION_RULE}; tuning seed {suite.tuning.seed}",
        "convergence": suite.convergence.to_dict(),
        "tasks": [{"task": plan.task_name(t), "partitions": [ref.to_json() for ref in partition_refs(suite, t)]}
                  for t in range(len(suite.tasks))],
        "tuning": tuning, "cells": cells,
    }


def write_plan(plan: TierPlan, runs_dir: str | Path, out: str | Path, records: Records | None = None) -> Path:
    """Select from the records in ``runs_dir`` and write ``out/plan.json`` atomically (never half a file)."""
    records = load_records(runs_dir) if records is None else records
    data = build_plan(plan, records, runs_dir)
    path = Path(out) / PLAN_FILENAME
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    return path
