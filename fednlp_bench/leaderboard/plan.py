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
from pathlib import Path
from typing import Any

from fednlp_bench.leaderboard.convergence import Criterion
from fednlp_bench.leaderboard.plan_reader import PlanReader
from fednlp_bench.leaderboard.plan_types import (  # noqa: F401 - the plan's types are read from here too
    ROLES, SCHEMA, GridPoint, Plan, PlanCell, PlanError, PlanPartition, PlanRun, PlanTuning,
)


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
    read = PlanReader(path)
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


def _task_partitions(read: PlanReader, data: Any) -> dict[str, tuple[PlanPartition, ...]]:
    out = {}
    for i, entry in enumerate(read.get(data, "tasks", "top level", list, optional=True) or []):
        where = f"tasks[{i}]"
        parts = read.get(entry, "partitions", where, list)
        out[read.get(entry, "task", where, str)] = tuple(read.partition({"partition": p}, f"{where}.partitions[{k}]")
                                                          for k, p in enumerate(parts))
    return out


def _criterion(read: PlanReader, data: Any) -> Criterion:
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
