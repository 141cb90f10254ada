"""Expand a tier suite into tuning units and final cells, all validated before the first run.

A tuning unit is one (task, partition, algorithm) searched over its grid with
the tuning seed; its grid may grow by extension steps (``extension.py``)
once its runs are recorded. A final cell is one (task, partition,
algorithm, role) whose runs are the chosen grid point over the task's final
seeds; which point is chosen is known only after tuning, so every *possible*
final config is validated here (with the first final seed), the furthest
extensions any cap allows too, and every run's evaluation schedule is checked
against the convergence criterion: a typo or an unusable schedule in the
last task fails in seconds, not after hours of runs.

Centralized training pools all clients' data, so it
is tuned once per task, on the first tuned partition, and runs its final
seeds on the task's first partition: role ``centralized_equal``, plus
``centralized_converged`` with ``final.centralized_converged`` on top.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from fednlp_bench.suite.grid import apply_point, grid_points, point_label
from fednlp_bench.algorithms.registry import is_centralized
from fednlp_bench.suite.plan_checks import (
    check_eval_schedule,
    check_extremes,
    check_final_shapes,
    check_grids,
    check_repeats,
)
from fednlp_bench.suite.spec import PlannedRun, Suite, _merge

ROLES = ("federated", "centralized_equal", "centralized_converged")
#: Run keys a partition entry may set for its own runs. ``clients_per_round``: a natural partition with fewer
#: (or more) than the base's clients keeps the base's participation fraction, so its rounds train on as many
#: examples as the centralized equal-budget bound's (which runs on the task's first partition).
PARTITION_RUN_KEYS = ("clients_per_round",)


@dataclass(frozen=True)
class PartitionRef:
    """A task's partition entry and its 0-based index in the task's list."""

    index: int
    scheme: str
    params: dict[str, Any]
    #: The entry's other keys: partition keys (``min_size``, ``num_clients``) and ``PARTITION_RUN_KEYS``
    #: (``clients_per_round``); they override the base's for this partition's runs only.
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        params = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.scheme}({params})" if params else self.scheme

    def to_json(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "params": dict(self.params), "index": self.index, "label": self.label}


@dataclass
class TuningUnit:
    """One (task, partition, algorithm) searched over its grid: ``runs[i]`` is ``points[i]`` at the tuning seed.

    ``axes`` and ``points`` are the declared grid; extensions are derived
    from the records (``extension.resolve``), never stored here.
    """

    task_index: int
    partition: PartitionRef
    algorithm_index: int
    algorithm: str
    axes: dict[str, list[Any]]
    runs: list[PlannedRun]

    @property
    def points(self) -> list[dict[str, Any]]:
        return grid_points(self.axes)


@dataclass
class Cell:
    """One reported cell; its runs are ``unit``'s chosen point over the final seeds (see :meth:`TierPlan.final_runs`)."""

    task_index: int
    partition: PartitionRef
    algorithm_index: int
    algorithm: str
    role: str
    unit: TuningUnit
    overrides: dict[str, Any] | None = None


@dataclass
class TierPlan:
    suite: Suite
    units: list[TuningUnit]
    cells: list[Cell]
    _canonical: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def task_name(self, task_index: int) -> str:
        return str(self.suite.tasks[task_index]["task"])

    def tuning_runs(self, tasks: set[int] | None = None) -> list[PlannedRun]:
        """Every tuning run (of the given task indexes), in run order, each once."""
        return unique_runs(run for unit in self.units if tasks is None or unit.task_index in tasks for run in unit.runs)

    def raw_config(self, task_index: int, partition: PartitionRef, algorithm_index: int, point: dict[str, Any],
                   seed: int, overrides: dict[str, Any] | None, role: str) -> tuple[dict[str, Any], str]:
        """The raw (not yet validated) config of one run and its label."""
        return _raw_config(self.suite, task_index, partition, algorithm_index, point, seed, overrides, role)

    def tuning_run(self, unit: TuningUnit, point: dict[str, Any]) -> PlannedRun:
        """The run of ``point`` (a declared or an extension point) at the tuning seed."""
        raw, label = _raw_config(self.suite, unit.task_index, unit.partition, unit.algorithm_index, point,
                                 self.suite.tuning.seed, None, "tuning")
        return PlannedRun(self.canonical(raw), label)

    def final_runs(self, cell: Cell, point: dict[str, Any]) -> list[PlannedRun]:
        """The cell's runs for ``point`` (one per final seed of its task), canonical like the engine's configs."""
        runs = []
        for seed in self.suite.seeds_for(cell.task_index):
            raw, label = _raw_config(self.suite, cell.task_index, cell.partition, cell.algorithm_index, point, seed,
                                     cell.overrides, cell.role)
            runs.append(PlannedRun(self.canonical(raw), label))
        return runs

    def canonical(self, raw: dict[str, Any]) -> dict[str, Any]:
        """``RunConfig.from_dict(raw).to_dict()``, cached (validation builds partitioners and strategies)."""
        from fednlp_bench.config import RunConfig

        key = json.dumps(raw, sort_keys=True, default=str)
        if key not in self._canonical:
            self._canonical[key] = RunConfig.from_dict(raw).to_dict()
        return self._canonical[key]


def unique_runs(runs: Iterable[PlannedRun]) -> list[PlannedRun]:
    """Each (config_hash, seed) once, first occurrence kept (a final run may be a tuning run)."""
    seen: set[tuple[str, int]] = set()
    out = []
    for run in runs:
        if run.key not in seen:
            seen.add(run.key)
            out.append(run)
    return out


def pending_final_runs(plan: TierPlan, task_index: int) -> list[PlannedRun]:
    """Final runs a task will need once tuning is settled (the same number for any choice).

    A final run equals a tuning run exactly when its seed is the tuning seed and
    its partition is the one tuned on; that holds for the first grid point as
    for any other, so counting with the first point is exact, and its configs
    stand in for the chosen ones in cost estimates.
    """
    tuning = {r.key for r in plan.tuning_runs({task_index})}
    runs = unique_runs(r for cell in plan.cells if cell.task_index == task_index
                       for r in plan.final_runs(cell, cell.unit.points[0]))
    return [r for r in runs if r.key not in tuning]


def _raw_config(suite: Suite, t: int, partition: PartitionRef, a: int, point: dict[str, Any], seed: int,
                overrides: dict[str, Any] | None, role: str) -> tuple[dict[str, Any], str]:
    """base <- task <- partition <- algorithm <- grid point <- overrides <- seed (later wins)."""
    config = _merge(suite.base, suite.tasks[t])
    run_keys = {k: v for k, v in partition.settings.items() if k in PARTITION_RUN_KEYS}
    part_keys = {k: v for k, v in partition.settings.items() if k not in PARTITION_RUN_KEYS}
    config = _merge(config, {**run_keys, "partition": {**part_keys, "scheme": partition.scheme,
                                                       "params": dict(partition.params)}})
    config = _merge(config, suite.algorithms[a])
    config = apply_point(config, point)
    if overrides:
        config = _merge(config, overrides)
    config["seed"] = seed
    part_seed = seed if suite.partition_seed == "run" else suite.partition_seed
    config["partition"] = {**config.get("partition", {}), "seed": part_seed}
    hyper = point_label(point)
    label = (f"{config.get('task')} · {partition.label} · {suite.algorithms[a]['algorithm']}"
             f"{' · ' + hyper if hyper else ''} · seed {seed} ({role})")
    return config, label


def _tuned_indexes(suite: Suite, t: int) -> list[int]:
    count = len(suite.partitions_for(t))
    if suite.tuning.partitions == "all":
        return list(range(count))
    bad = [i for i in suite.tuning.partitions if i >= count]
    if bad:
        raise ValueError(f"{suite.source}: tuning.partitions {list(suite.tuning.partitions)} names index(es) {bad}, "
                         f"but task {suite.tasks[t]['task']!r} has {count} partition(s) (indexes 0-{count - 1})")
    return list(suite.tuning.partitions)


def partition_refs(suite: Suite, t: int) -> list[PartitionRef]:
    return [PartitionRef(i, p["scheme"], dict(p["params"]), {k: v for k, v in p.items() if k not in ("scheme", "params")})
            for i, p in enumerate(suite.partitions_for(t))]


def build_tier_plan(suite: Suite) -> TierPlan:
    """Check the protocol rules, expand units and cells, validate every config; all errors at once."""
    names = check_grids(suite)
    plan = TierPlan(suite, [], [])
    errors: list[str] = []
    for t in range(len(suite.tasks)):
        refs, tuned, overrides = partition_refs(suite, t), _tuned_indexes(suite, t), suite.converged_for(t)
        units: dict[tuple[int, int], TuningUnit] = {}
        for a, name in enumerate(names):
            if not suite.runs_algorithm(t, a):
                continue
            for p in tuned[:1] if is_centralized(name) else tuned:
                unit = TuningUnit(t, refs[p], a, name, dict(suite.grid_for(a)), [])
                for point in unit.points:
                    try:
                        unit.runs.append(plan.tuning_run(unit, point))
                    except (ValueError, TypeError, KeyError) as err:
                        errors.append(f"{_raw_config(suite, t, refs[p], a, point, 0, None, 'tuning')[1]}: {err}")
                units[(p, a)] = unit
                plan.units.append(unit)
        for ref in refs:
            for a, name in enumerate(names):
                if not suite.runs_algorithm(t, a):
                    continue
                if is_centralized(name):
                    if ref.index == 0:
                        unit = units[(tuned[0], a)]
                        plan.cells.append(Cell(t, ref, a, name, "centralized_equal", unit))
                        if overrides is not None:
                            plan.cells.append(Cell(t, ref, a, name, "centralized_converged", unit, dict(overrides)))
                    continue
                source_index = ref.index if suite.tuning.partitions == "all" else tuned[0]
                plan.cells.append(Cell(t, ref, a, name, "federated", units[(source_index, a)]))
    for check in (check_final_shapes, check_extremes, check_eval_schedule):
        errors = errors or check(plan)  # each check needs the configs the previous ones validated
    if errors:
        listing = "\n  ".join(errors)
        raise ValueError(f"{suite.source}: {len(errors)} invalid run config(s); nothing was run:\n  {listing}")
    check_repeats(plan)
    return plan
