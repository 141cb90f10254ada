"""Hyperparameter grids of a two-stage suite: shape checks, key routing, expansion, equal effort.

The tuning protocol compares algorithms fairly only when each gets the same
search effort, so every algorithm's grid must have the same number of points.
A grid key that is a RunConfig field (``lr``, ``local_epochs``, ...) sets that
field; any other key (``mu``, ``server_lr``, ``tau``, ...) is an algorithm
parameter. The routing is checked against the algorithm's own parameters, so
``muu`` fails with "Did you mean 'mu'?" before anything runs.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any, Mapping

from fednlp_bench.hints import closest_hint

#: Keys that define a cell, not a hyperparameter: a grid may not vary them.
GRID_RESERVED = ("task", "data", "partition", "algorithm", "algorithm_params", "seed")


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
        grid[key] = list(values)
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
