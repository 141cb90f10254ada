"""Hyperparameter grids of a tier suite: log-spaced axes, key routing, expansion, equal effort.

The tuning protocol compares algorithms fairly only when each gets the same
search effort and each search can reach its optimum (protocol v2):

- every algorithm searches its client ``lr``, plus the parameters its
  strategy declares in ``search_params`` (FedProx ``mu``, FedOpt ``server_lr``);
- every axis is log-spaced (at least two positive values with one constant
  ratio), so an axis can be extended by one more step on either side
  (``extension.py``) when the choice lies on its edge;
- every algorithm's grid has the same number of points (tuning runs).

A grid key that is a RunConfig field (``lr``, ``local_epochs``, ...) sets that
field; any other key (``mu``, ``server_lr``, ``tau``, ...) is an algorithm
parameter. The routing is checked against the algorithm's own parameters, so
``muu`` fails with "Did you mean 'mu'?" before anything runs.
"""

from __future__ import annotations

import copy
import itertools
import math
from typing import Any, Mapping

from fednlp_bench.hints import closest_hint
from fednlp_bench.leaderboard.labels import canonical

#: Keys that define a cell, not a hyperparameter: a grid may not vary them.
GRID_RESERVED = ("task", "data", "partition", "algorithm", "algorithm_params", "seed")
#: Relative tolerance on the ratio of consecutive axis values (1e-3, 2e-3, 4e-3 is log-spaced; 1e-3, 3e-3, 1e-2 is not).
RATIO_TOLERANCE = 0.01
#: The client learning rate: every algorithm searches it.
CLIENT_LR = "lr"


def _field_names() -> list[str]:
    from fednlp_bench.config import RunConfig

    return RunConfig.field_names()


def parse_grid(value: Any, algorithm: str, source: str) -> dict[str, list[Any]]:
    """``{key: [values...]}`` with non-empty lists of distinct values, keys in the order written."""
    where = f"{source}: algorithm {algorithm!r}: grid"
    if not isinstance(value, Mapping) or not value:
        raise ValueError(f"{where} must be a non-empty mapping of key -> list of values, e.g. {{lr: [1.0e-3, 3.0e-3]}}; "
                         f"got {value!r}")
    grid: dict[str, list[Any]] = {}
    for key, values in value.items():
        if not isinstance(key, str):
            raise ValueError(f"{where} key {key!r} must be a name such as 'lr' or 'mu'")
        if key in GRID_RESERVED:
            raise ValueError(f"{where} key {key!r} defines the cell, not a hyperparameter; a grid varies e.g. lr, "
                             f"local_epochs or algorithm parameters (mu, server_lr, tau). Not allowed: "
                             f"{', '.join(GRID_RESERVED)}")
        if not isinstance(values, list) or not values:
            raise ValueError(f"{where} {key!r} must be a non-empty list of values, e.g. {key}: [{values!r}]; "
                             f"got {values!r}")
        if any(isinstance(v, (list, dict)) for v in values):
            raise ValueError(f"{where} {key!r} values must be scalars (numbers, strings, booleans), got {values!r}")
        if len({repr(v) for v in values}) != len(values):
            raise ValueError(f"{where} {key!r} lists a value twice ({values}); each value is one tuning run")
        values = check_log_axis(values, f"{where} {key!r}")
        grid[key] = values
    return grid


def grid_points(grid: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """The cartesian product, first key slowest (``{}`` alone when there is no grid: the fixed settings)."""
    if not grid:
        return [{}]
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def check_equal_sizes(names: list[str], grids: list[Mapping[str, list[Any]]], source: str) -> int:
    """Every algorithm's grid has the same number of points (equal tuning effort); returns that number."""
    sizes = [len(grid_points(g)) for g in grids]
    if not any(grids):
        return 1
    if len(set(sizes)) == 1 and all(grids):
        return sizes[0]
    listing = ", ".join(f"{name}: {size}" + ("" if grid else " (no grid)") for name, size, grid in zip(names, sizes, grids))
    raise ValueError(f"{source}: every algorithm's grid must have the same number of points (equal tuning effort); "
                     f"got {listing}. Give each algorithm a grid of the same size")


def check_grid_keys(grid: Mapping[str, list[Any]], algorithm: str, source: str) -> None:
    """A key that is not a RunConfig field must be a parameter of ``algorithm``; else a did-you-mean error."""
    fields = _field_names()
    params = [k for k in grid if k not in fields]
    if not params:
        return
    from fednlp_bench.algorithms.registry import get_algorithm_class

    accepted = sorted(getattr(get_algorithm_class(algorithm), "defaults", {}) or {})
    for key in params:
        if key not in accepted:
            raise ValueError(
                f"{source}: algorithm {algorithm!r}: grid key {key!r} is neither a run config field nor a parameter "
                f"of {algorithm!r}.{closest_hint(key, [*fields, *accepted])} Its parameters: {accepted or 'none'}"
            )


def apply_point(config: Mapping[str, Any], point: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with the point applied: run config fields set, the other keys merged into algorithm_params."""
    fields = _field_names()
    out = copy.deepcopy(dict(config))
    params = dict(out.get("algorithm_params") or {})
    for key, value in point.items():
        if key in fields:
            out[key] = copy.deepcopy(value)
        else:
            params[key] = copy.deepcopy(value)
    if params or "algorithm_params" in out:
        out["algorithm_params"] = params
    return out


def point_label(point: Mapping[str, Any]) -> str:
    """``lr=0.001,mu=0.1`` (empty for the fixed settings)."""
    return ",".join(f"{k}={v}" for k, v in point.items())


def check_log_axis(values: list[Any], where: str) -> list[Any]:
    """At least two positive numbers with one constant ratio (1% tolerance), returned in ascending order."""
    if len(values) < 2:
        raise ValueError(f"{where} has {len(values)} value: an axis needs at least two log-spaced values, so the "
                         f"suite can tell an edge from an interior choice (e.g. [{values[0]!r}, "
                         f"{_example_next(values[0])}])")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0 for v in values):
        raise ValueError(f"{where} = {values} must be positive numbers (a log-spaced axis)")
    ordered = sorted(values)
    ratios = [b / a for a, b in zip(ordered, ordered[1:])]
    if max(ratios) > min(ratios) * (1 + RATIO_TOLERANCE):
        shown = ", ".join(f"{r:.3g}" for r in ratios)
        raise ValueError(f"{where} = {values} is not log-spaced (consecutive ratios {shown}); use one constant "
                         f"ratio, e.g. {[_round(ordered[0] * ratios[0] ** i) for i in range(len(ordered))]}")
    return ordered


def _example_next(value: Any) -> str:
    return repr(value * 2) if isinstance(value, (int, float)) and not isinstance(value, bool) else "..."


def axis_ratio(values: list[Any]) -> float:
    """The axis's constant ratio (geometric mean of consecutive ratios, so 1% noise does not compound)."""
    return (values[-1] / values[0]) ** (1.0 / (len(values) - 1))


def _round(value: float) -> float:
    """Six significant digits: an extended axis reads 4e-3, not 0.0040000000000000001."""
    return float(f"{value:.6g}")


def step_value(values: list[Any], side: str) -> Any:
    """The next value one log step beyond the axis on ``side`` ("low" or "high")."""
    ratio = axis_ratio(values)
    value = values[0] / ratio if side == "low" else values[-1] * ratio
    if all(isinstance(v, int) for v in values):
        return int(round(value))
    return _round(value)


def check_required_axes(grid: Mapping[str, list[Any]], algorithm: str, source: str) -> None:
    """The client lr and the strategy's ``search_params`` are all axes of the grid (each optimum reachable)."""
    from fednlp_bench.algorithms.registry import get_algorithm_class

    required = [CLIENT_LR, *getattr(get_algorithm_class(algorithm), "search_params", ())]
    missing = [key for key in required if key not in grid]
    if missing:
        shown = ", ".join(f"{k}: [...]" for k in missing)
        raise ValueError(f"{source}: algorithm {algorithm!r}: its grid must search {required} (protocol v2: every "
                         f"algorithm tunes its client lr, and {algorithm} also {required[1:] or 'nothing else'}); "
                         f"add {shown} to its grid")


def best_index(values: list[float]) -> int:
    """The highest value; ties keep the earlier point."""
    best = 0
    for i, value in enumerate(values):
        if value > values[best]:
            best = i
    return best


def edges(axes: dict[str, list[Any]], point: dict[str, Any]) -> dict[str, str]:
    """``{axis: "low"|"high"}`` for each axis whose value in ``point`` is that axis's smallest or largest."""
    sides = {}
    for key, values in axes.items():
        value = canonical(point[key])
        if value == canonical(values[0]):
            sides[key] = "low"
        elif value == canonical(values[-1]):
            sides[key] = "high"
    return sides


def extend(axes: dict[str, list[Any]], sides: dict[str, str]) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """The axes with one more log step on each given side, and the values added."""
    grown, added = {k: list(v) for k, v in axes.items()}, {}
    for key, side in sides.items():
        value = step_value(grown[key], side)
        added[key] = value
        grown[key] = [value, *grown[key]] if side == "low" else [*grown[key], value]
    return grown, added
