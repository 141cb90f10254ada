"""Checked field access into ``plan.json``: every problem names the file, the entry and the field.

A table built from a misread plan would publish wrong numbers, so each getter
checks the JSON type it expects (a bool is not an int) and says how to fix it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fednlp_bench.leaderboard.plan_types import (
    ROLES, GridPoint, PlanCell, PlanError, PlanPartition, PlanRun, PlanTuning,
)


class PlanReader:
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
