"""Expand a two-stage suite into tuning units and final cells, all validated before the first run.

A tuning unit is one (task, partition, algorithm) searched over its grid with
the tuning seed. A final cell is one (task, partition, algorithm, role) whose
runs are the chosen grid point over the final seeds; which point is chosen is
known only after tuning, so every *possible* final config is validated here
(with the first final seed), and a typo in the last task fails in seconds.

Centralized training pools all clients' data, so (as ``centralized_once``) it
is tuned once per task, on the first tuned partition, and runs its final
seeds on the task's first partition: role ``centralized_equal``, plus
``centralized_converged`` with ``final.centralized_converged`` on top.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from fednlp_bench.engine.eval_schedule import evaluates_round
from fednlp_bench.suite.grid import apply_point, check_equal_sizes, check_grid_keys, grid_points, point_label
from fednlp_bench.suite.spec import PlannedRun, Suite, _merge

CENTRALIZED = "centralized"
ROLES = ("federated", "centralized_equal", "centralized_converged")


@dataclass(frozen=True)
class PartitionRef:
    """A task's partition entry and its 0-based index in the task's list."""

    index: int
    scheme: str
    params: dict[str, Any]
    #: The entry's other partition keys (``min_size``, ``num_clients``): they override the base's for this
    #: partition only, like every other key of the entry.
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        params = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.scheme}({params})" if params else self.scheme

    def to_json(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "params": dict(self.params), "index": self.index, "label": self.label}


@dataclass
class TuningUnit:
    """One (task, partition, algorithm) searched over its grid: ``runs[i]`` is ``points[i]`` at the tuning seed."""

    task_index: int
    partition: PartitionRef
    algorithm_index: int
    algorithm: str
    points: list[dict[str, Any]]
    runs: list[PlannedRun]


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

    def final_runs(self, cell: Cell, point: dict[str, Any]) -> list[PlannedRun]:
        """The cell's runs for ``point`` (one per final seed), canonical like the engine's configs."""
        assert self.suite.final is not None
        runs = []
        for seed in self.suite.final.seeds:
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


def _raw_config(suite: Suite, t: int, partition: PartitionRef, a: int, point: dict[str, Any], seed: int,
                overrides: dict[str, Any] | None, role: str) -> tuple[dict[str, Any], str]:
    """base <- task <- partition <- algorithm <- grid point <- overrides <- seed (later wins)."""
    config = _merge(suite.base, suite.tasks[t])
    config = _merge(config, {"partition": {**partition.settings, "scheme": partition.scheme,
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
    assert suite.tuning is not None
    if suite.tuning.partitions == "all":
        return list(range(count))
    bad = [i for i in suite.tuning.partitions if i >= count]
    if bad:
        raise ValueError(f"{suite.source}: tuning.partitions {list(suite.tuning.partitions)} names index(es) {bad}, "
                         f"but task {suite.tasks[t]['task']!r} has {count} partition(s) (indexes 0-{count - 1})")
    return list(suite.tuning.partitions)


def _refs(suite: Suite, t: int) -> list[PartitionRef]:
    return [PartitionRef(i, p["scheme"], dict(p["params"]), {k: v for k, v in p.items() if k not in ("scheme", "params")})
            for i, p in enumerate(suite.partitions_for(t))]


def build_tier_plan(suite: Suite) -> TierPlan:
    """Check the protocol rules, expand units and cells, validate every config; all errors at once."""
    if suite.tuning is None or suite.final is None:
        raise ValueError(f"{suite.source}: not a two-stage suite (no 'tuning'/'final' sections)")
    names = [a["algorithm"] for a in suite.algorithms]
    check_equal_sizes(names, [suite.grid_for(a) for a in range(len(names))], suite.source)
    for a, name in enumerate(names):
        check_grid_keys(suite.grid_for(a), name, suite.source)
    overrides = suite.final.centralized_converged
    if overrides is not None and CENTRALIZED not in names:
        raise ValueError(f"{suite.source}: final.centralized_converged is set but no 'centralized' algorithm is "
                         "listed; add centralized to 'algorithms' or remove the overrides")
    plan = TierPlan(suite, [], [])
    errors: list[str] = []
    for t in range(len(suite.tasks)):
        refs, tuned = _refs(suite, t), _tuned_indexes(suite, t)
        units: dict[tuple[int, int], TuningUnit] = {}
        for a, name in enumerate(names):
            points = grid_points(suite.grid_for(a))
            for p in tuned[:1] if name == CENTRALIZED else tuned:
                unit = TuningUnit(t, refs[p], a, name, points, [])
                for point in points:
                    raw, label = _raw_config(suite, t, refs[p], a, point, suite.tuning.seed, None, "tuning")
                    try:
                        unit.runs.append(PlannedRun(plan.canonical(raw), label))
                    except (ValueError, TypeError, KeyError) as err:
                        errors.append(f"{label}: {err}")
                units[(p, a)] = unit
                plan.units.append(unit)
        for ref in refs:
            for a, name in enumerate(names):
                if name == CENTRALIZED:
                    if ref.index == 0:
                        unit = units[(tuned[0], a)]
                        plan.cells.append(Cell(t, ref, a, name, "centralized_equal", unit))
                        if overrides is not None:
                            plan.cells.append(Cell(t, ref, a, name, "centralized_converged", unit, dict(overrides)))
                    continue
                source_index = ref.index if suite.tuning.partitions == "all" else tuned[0]
                plan.cells.append(Cell(t, ref, a, name, "federated", units[(source_index, a)]))
    if not errors:
        errors = _check_final_shapes(plan) + _check_eval_schedule(plan)
    if errors:
        listing = "\n  ".join(errors)
        raise ValueError(f"{suite.source}: {len(errors)} invalid run config(s); nothing was run:\n  {listing}")
    _check_repeats(plan)
    return plan


def _check_final_shapes(plan: TierPlan) -> list[str]:
    """Every final config any choice could produce (first final seed): a bad override fails now, not after tuning."""
    assert plan.suite.final is not None
    seed = plan.suite.final.seeds[0]
    errors = []
    for cell in plan.cells:
        for point in cell.unit.points:
            raw, label = _raw_config(plan.suite, cell.task_index, cell.partition, cell.algorithm_index, point, seed,
                                     cell.overrides, cell.role)
            try:
                plan.canonical(raw)
            except (ValueError, TypeError, KeyError) as err:
                errors.append(f"{label}: {err}")
    return errors


def _check_eval_schedule(plan: TierPlan) -> list[str]:
    """Selection reads the last round's validation metric, so every tuning run must evaluate its last round."""
    errors = []
    for run in plan.tuning_runs():
        rounds, every = run.config["rounds"], run.config["eval_every"]
        if not evaluates_round(rounds, rounds, every):
            errors.append(f"{run.label}: eval_every={every} does not evaluate the last round ({rounds}), which "
                          f"selection reads; use an eval_every that divides rounds={rounds}")
    return errors


def _check_repeats(plan: TierPlan) -> None:
    seen: dict[tuple[str, int], str] = {}
    for unit in plan.units:
        for run in unit.runs:
            if run.key in seen:
                raise ValueError(f"{plan.suite.source}: '{run.label}' and '{seen[run.key]}' are the same run "
                                 "(identical config and seed); remove the repeated entry or grid value")
            seen[run.key] = run.label
