"""Grids that can reach each optimum: extend an axis when the choice lies on its edge, re-select, repeat.

A choice on the edge of a grid says only that the optimum may lie beyond it.
So once a unit's grid is complete, every axis whose chosen value is its
smallest (largest) value gets one more log step below (above) it: a new
row or column of the grid, whose runs join the search. Selection is repeated
on the larger grid, up to ``tuning.extensions`` steps, a cap that is the same
for every algorithm. A choice still on an edge after the cap is flagged in
the tuning table, never hidden.

Everything here is derived from the declared grid and the records: the same
records always give the same extensions, so plan.json is rebuilt from
scratch after each stage, and selection (best validation primary metric at
the final round, ties to the earlier point: declared points first, then each
step's new points in grid order) reads no test metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from fednlp_bench.leaderboard.labels import canonical
from fednlp_bench.suite.grid import best_index, edges, extend, grid_points
from fednlp_bench.suite.spec import PlannedRun
from fednlp_bench.suite.tier_plan import TierPlan, TuningUnit

#: (run) -> validation primary metric at its final round, or None while the run has no record.
Validation = Callable[[PlannedRun], "float | None"]


@dataclass(frozen=True)
class Step:
    """One extension step: each extended axis, the side (``low``/``high``) and the value added."""

    number: int
    sides: dict[str, str]
    values: dict[str, Any]

    def to_json(self) -> list[dict[str, Any]]:
        return [{"step": self.number, "axis": k, "side": self.sides[k], "value": self.values[k]} for k in self.sides]


@dataclass
class UnitState:
    """A unit's grid as the records have grown it, its validations and (once settled) its choice."""

    unit: TuningUnit
    axes: dict[str, list[Any]]
    points: list[dict[str, Any]]
    runs: list[PlannedRun]
    #: 0 for a declared point, else the extension step that added it.
    step_of: list[int]
    validations: list[float | None]
    steps: list[Step] = field(default_factory=list)
    #: Index of the chosen point; None until the grid is complete and no further step is due.
    chosen: int | None = None
    #: Axes whose chosen value is still on an edge (only when settled: the cap was reached).
    on_edge: list[str] = field(default_factory=list)

    @property
    def settled(self) -> bool:
        return self.chosen is not None

    @property
    def missing(self) -> list[PlannedRun]:
        return [run for run, value in zip(self.runs, self.validations) if value is None]

    @property
    def chosen_point(self) -> dict[str, Any] | None:
        return None if self.chosen is None else self.points[self.chosen]


def resolve(plan: TierPlan, unit: TuningUnit, validation: Validation) -> UnitState:
    """Grow ``unit``'s grid as far as the records allow (see the module doc)."""
    cap = plan.suite.tuning.extensions
    axes = {k: list(v) for k, v in unit.axes.items()}
    state = UnitState(unit, axes, list(unit.points), list(unit.runs), [0] * len(unit.runs),
                      [validation(run) for run in unit.runs])
    while True:
        if any(v is None for v in state.validations):
            return state
        best = best_index([v for v in state.validations if v is not None])
        sides = edges(state.axes, state.points[best])
        if not sides or len(state.steps) == cap:
            state.chosen, state.on_edge = best, sorted(sides)
            return state
        state.axes, added = extend(state.axes, sides)
        step = Step(len(state.steps) + 1, sides, added)
        state.steps.append(step)
        known = {canonical(p) for p in state.points}
        for point in grid_points(state.axes):
            if canonical(point) not in known:
                run = plan.tuning_run(unit, point)
                state.points.append(point)
                state.runs.append(run)
                state.step_of.append(step.number)
                state.validations.append(validation(run))


def max_extension_runs(unit: TuningUnit, cap: int) -> int:
    """The most runs the cap can add to ``unit`` (every step extending every axis)."""
    declared = len(unit.points)
    total = 1
    for values in unit.axes.values():
        total *= len(values) + cap
    return total - declared
