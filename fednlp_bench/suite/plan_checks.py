"""The checks a tier plan passes before the first run: equal effort, every possible config, the eval schedule.

A tier runs for days, so whatever can be known wrong up front must fail up
front, all errors at once: the grids (required axes, equal sizes, known
keys), every final config any choice could produce, the furthest points the
extension cap can reach, and every run's evaluation schedule against
selection (the last round) and the convergence criterion (enough validated
rounds in its window).
"""

from __future__ import annotations

import itertools
from typing import Any

from fednlp_bench.algorithms.registry import centralized_baseline, is_centralized
from fednlp_bench.engine.eval.schedule import evaluates_round
from fednlp_bench.leaderboard.convergence import points_in_window, window_start
from fednlp_bench.suite.grid import check_equal_sizes, check_grid_keys, check_required_axes, point_label, step_value

from fednlp_bench.suite.spec import Suite

#: A ``tier_plan.TierPlan`` (not imported: tier_plan imports this module to run the checks).
TierPlan = Any


def check_grids(suite: Suite) -> list[str]:
    """Equal effort: the required axes, the same number of points, known keys (raises on the first problem)."""
    names = [a["algorithm"] for a in suite.algorithms]
    for a, name in enumerate(names):
        check_required_axes(suite.grid_for(a), name, suite.source)
        check_grid_keys(suite.grid_for(a), name, suite.source)
    check_equal_sizes(names, [suite.grid_for(a) for a in range(len(names))], suite.source)
    converged = any(suite.converged_for(t) is not None for t in range(len(suite.tasks)))
    if converged and not any(is_centralized(n) for n in names):
        raise ValueError(f"{suite.source}: final.centralized_converged is set but the centralized baseline is not "
                         f"listed; add {centralized_baseline()} to 'algorithms' or remove the overrides")
    return names


def extreme_points(axes: dict[str, list[Any]], steps: int) -> list[dict[str, Any]]:
    """The corners of the grid after ``steps`` extensions on every side of every axis."""
    if steps == 0:
        return []
    ends = {}
    for key, values in axes.items():
        low, high = list(values), list(values)
        for _ in range(steps):
            low = [step_value(low, "low"), *low]
            high = [*high, step_value(high, "high")]
        ends[key] = (low[0], high[-1])
    keys = list(ends)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(ends[k] for k in keys))]


def check_extremes(plan: TierPlan) -> list[str]:
    """The furthest points the extension cap can reach are valid configs (a negative or absurd value fails now)."""
    errors = []
    for unit in plan.units:
        for point in extreme_points(unit.axes, plan.suite.tuning.extensions):
            if any(v <= 0 for v in point.values()):
                errors.append(f"{unit.algorithm} on {unit.partition.label}: extending its grid "
                              f"{plan.suite.tuning.extensions} step(s) reaches {point_label(point)}, not positive; "
                              "lower tuning.extensions or widen the axis ratio")
                continue
            try:
                plan.tuning_run(unit, point)
            except (ValueError, TypeError, KeyError) as err:
                errors.append(f"{unit.algorithm} on {unit.partition.label}: the furthest extension "
                              f"{point_label(point)} is not a valid run: {err}")
    return errors


def check_final_shapes(plan: TierPlan) -> list[str]:
    """Every final config any choice could produce (first final seed): a bad override fails now, not after tuning."""
    errors = []
    for cell in plan.cells:
        seed = plan.suite.seeds_for(cell.task_index)[0]
        for point in cell.unit.points:
            raw, label = plan.raw_config(cell.task_index, cell.partition, cell.algorithm_index, point, seed,
                                         cell.overrides, cell.role)
            try:
                plan.canonical(raw)
            except (ValueError, TypeError, KeyError) as err:
                errors.append(f"{label}: {err}")
    return errors


def check_eval_schedule(plan: TierPlan) -> list[str]:
    """Selection reads the last round's validation; the convergence test needs enough rounds in its window."""
    criterion = plan.suite.convergence
    runs = plan.tuning_runs() + [run for cell in plan.cells for run in plan.final_runs(cell, cell.unit.points[0])[:1]]
    errors, seen = [], set()
    for run in runs:
        rounds, every = int(run.config["rounds"]), int(run.config["eval_every"])
        if (rounds, every) in seen:
            continue
        seen.add((rounds, every))
        if not evaluates_round(rounds, rounds, every):
            errors.append(f"{run.label}: eval_every={every} does not evaluate the last round ({rounds}), which "
                          f"selection reads; use an eval_every that divides rounds={rounds}")
        found = points_in_window(rounds, criterion, lambda r: evaluates_round(r, rounds, every))
        if found < criterion.min_points:
            start = window_start(rounds, criterion)
            errors.append(f"{run.label}: eval_every={every} evaluates {found} round(s) in the convergence window "
                          f"(rounds {start}-{rounds}, the last {criterion.window:.0%} of {rounds}), but the criterion "
                          f"needs {criterion.min_points}; lower eval_every (at most "
                          f"{max(1, (rounds - start) // max(1, criterion.min_points - 1))}) or raise rounds")
    return errors


def check_repeats(plan: TierPlan) -> None:
    seen: dict[tuple[str, int], str] = {}
    for unit in plan.units:
        for run in unit.runs:
            if run.key in seen:
                raise ValueError(f"{plan.suite.source}: '{run.label}' and '{seen[run.key]}' are the same run "
                                 "(identical config and seed); remove the repeated entry or grid value")
            seen[run.key] = run.label
