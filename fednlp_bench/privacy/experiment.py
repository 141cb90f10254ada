"""The privacy-utility experiment: epsilon levels x DP mechanisms x seeds, tuned on validation, reported on test.

One YAML file (``configs/trust/privacy_utility_20news.yaml``) holds a base run
config, the epsilon targets, the mechanisms (their clip settings), one grid
searched for every cell alike and the seeds. Cells are the no-DP run (epsilon
infinity) and every mechanism x epsilon, each DP cell with
``privacy.target_epsilon``, so the run calibrates its own noise multiplier.
Stage 1 runs every grid point with the tuning seed and keeps the one with the
best validation metric averaged over the convergence window (test selects
nothing). A choice on an
edge of a log-spaced axis extends that axis by one step and selects again, up
to ``extensions`` steps, the same cap for every cell (as the suite's tuning,
``fednlp_bench.suite.extension``); stage 2 runs the kept point with every seed. Runs resume; ``selection.json`` in the runs folder
names each cell's final runs (what a table reads, with the records).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from fednlp_bench.config import RunConfig
from fednlp_bench.hints import closest_hint
from fednlp_bench.leaderboard.convergence import Criterion, window_validation
from fednlp_bench.privacy.spec import PRIVACY_MECHANISMS
from fednlp_bench.suite.grid import best_index, check_log_axis, edges, extend, grid_points

_KEYS = ("base", "epsilons", "delta", "mechanisms", "grid", "extensions", "convergence", "tuning_seed", "seeds", "runs_dir")
NO_DP = "nodp"
SELECTION_FILE = "selection.json"


@dataclass(frozen=True)
class Cell:
    """One row x column of the table: a mechanism at a target epsilon, or no DP."""

    name: str
    mechanism: str | None
    target_epsilon: float | None
    privacy: dict[str, Any] | None


@dataclass
class Experiment:
    base: dict[str, Any]
    epsilons: list[float]
    delta: float
    mechanisms: dict[str, dict[str, Any]]
    grid: dict[str, list[Any]]
    extensions: int
    convergence: Criterion
    tuning_seed: int
    seeds: list[int]
    runs_dir: Path

    @classmethod
    def load(cls, path: str | Path) -> "Experiment":
        import yaml

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"experiment file {path} does not exist")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: must hold a mapping with keys {list(_KEYS)}")
        for key in data:
            if key not in _KEYS:
                raise ValueError(f"{path}: unknown key {key!r}.{closest_hint(key, _KEYS)} Valid: {', '.join(_KEYS)}")
        missing = [k for k in _KEYS if k not in data]
        if missing:
            raise ValueError(f"{path}: missing key(s) {missing}")
        unknown = [m for m in data["mechanisms"] if m not in PRIVACY_MECHANISMS]
        if unknown:
            raise ValueError(f"{path}: mechanisms {unknown} are not DP mechanisms.{closest_hint(unknown[0], list(PRIVACY_MECHANISMS))}")
        grid = dict(data["grid"] or {})
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"{path}: grid.{key} must be a non-empty list of values, got {values!r}")
            grid[key] = check_log_axis(values, f"{path}: grid.{key}")
        extensions = data["extensions"]
        if isinstance(extensions, bool) or not isinstance(extensions, int) or extensions < 0:
            raise ValueError(f"{path}: extensions must be a whole number >= 0 (the cap on edge extensions per "
                             f"cell), got {extensions!r}")
        if not data["seeds"] or data["tuning_seed"] not in data["seeds"]:
            raise ValueError(f"{path}: tuning_seed {data['tuning_seed']} must be one of seeds {data['seeds']}")
        return cls(dict(data["base"]), [float(e) for e in data["epsilons"]], float(data["delta"]),
                   {m: dict(v or {}) for m, v in data["mechanisms"].items()}, grid, extensions,
                   Criterion.from_dict(data["convergence"], f"{path}: convergence"), int(data["tuning_seed"]),
                   [int(s) for s in data["seeds"]], Path(data["runs_dir"]))

    # ------------------------------------------------------------ what runs
    def cells(self) -> list[Cell]:
        cells = [Cell(NO_DP, None, None, None)]
        for mech, params in self.mechanisms.items():
            for eps in self.epsilons:
                privacy = {"mechanism": mech, **params, "delta": self.delta, "target_epsilon": eps}
                cells.append(Cell(f"{mech}-eps{eps:g}", mech, eps, privacy))
        return cells

    def grid_points(self) -> list[dict[str, Any]]:
        """The declared grid's points (extensions add more in ``tune_cell``)."""
        return grid_points(self.grid)

    def config_dict(self, cell: Cell, point: Mapping[str, Any]) -> dict[str, Any]:
        """One cell at one grid point, without seed: the run config before validation (the audit adds to it)."""
        data = {**self.base, **dict(point)}
        if cell.privacy is not None:
            data["privacy"] = dict(cell.privacy)
        return data

    def config(self, cell: Cell, point: Mapping[str, Any], seed: int) -> RunConfig:
        """The validated run config of one cell, grid point and seed (client-level targets calibrate here)."""
        try:
            return RunConfig.from_dict({**self.config_dict(cell, point), "seed": seed})
        except ValueError as err:
            raise ValueError(f"cell {cell.name}, {point_name(point)}, seed {seed}: {err}") from err

    def widest_grid(self) -> dict[str, list[Any]]:
        """Every axis grown by the full extension cap on both sides: what tuning can reach at most."""
        axes = {k: list(v) for k, v in self.grid.items()}
        for _ in range(self.extensions):
            axes, _added = extend(axes, {k: "low" for k in axes})
            axes, _added = extend(axes, {k: "high" for k in axes})
        return axes

    def all_runs(self) -> list[tuple[str, RunConfig]]:
        """(run id, config) of every run either stage may start, extensions included: all checked before any work."""
        runs = []
        for cell in self.cells():
            for point in grid_points(self.widest_grid()):
                for seed in self.seeds:
                    runs.append((run_id(cell, point, seed), self.config(cell, point, seed)))
        return runs

    def run_count(self) -> int:
        """Tuning runs plus final runs that are not tuning runs (the tuning seed's final run is its tuning run)."""
        cells, points = len(self.cells()), len(self.grid_points())
        return cells * points + cells * (len(self.seeds) - 1)

    def max_run_count(self) -> int:
        """``run_count`` plus the most runs the extension cap can add (every step extending every axis)."""
        grown = 1
        for values in self.grid.values():
            grown *= len(values) + self.extensions
        return self.run_count() + len(self.cells()) * (grown - len(self.grid_points()))


def point_name(point: Mapping[str, Any]) -> str:
    return "-".join(f"{k.replace('.', '_')}{v:g}" if isinstance(v, (int, float)) else f"{k}{v}"
                    for k, v in sorted(point.items())) or "base"


def run_id(cell: Cell, point: Mapping[str, Any], seed: int) -> str:
    return f"{cell.name}-{point_name(point)}-s{seed}"


def validation_score(record: Any, criterion: Criterion) -> float:
    """Mean validation metric over the convergence window (what tuning selects on; test never selects).

    The window, not the last round: a DP curve moves by several points between evaluations, so one round would
    pick a grid point by luck (the cpu tier selects the same way, ``leaderboard.convergence.window_validation``).
    """
    value = window_validation(record, criterion)
    if value is None:
        raise ValueError(f"run {record.run_id}: no validated round in its last {criterion.window:.0%} of rounds; "
                         f"tuning needs them (lower eval_every)")
    return value


def tune_cell(exp: Experiment, cell: Cell, run: Callable[[str, RunConfig], Any],
              log: Callable[[str], None]) -> dict[str, Any]:
    """Stage 1 of one cell: the declared grid, then edge extensions up to ``exp.extensions`` (module doc)."""
    axes = {k: list(v) for k, v in exp.grid.items()}
    points: list[dict[str, Any]] = []
    step_of: list[int] = []
    scores: list[float] = []
    steps: list[dict[str, Any]] = []  # one entry per axis extended, numbered by step
    step = 0

    def add(point: dict[str, Any], step: int) -> None:
        rid = run_id(cell, point, exp.tuning_seed)
        record = run(rid, exp.config(cell, point, exp.tuning_seed))
        points.append(point)
        step_of.append(step)
        scores.append(validation_score(record, exp.convergence))
        log(f"tune {rid}: validation {record.primary_metric} {scores[-1]:.4f}" + (f" (extension {step})" if step else ""))

    for point in grid_points(axes):
        add(point, 0)
    while True:
        best = best_index(scores)  # the first point wins a tie: declared points, then each step's in grid order
        sides = edges(axes, points[best])
        if not sides or step == exp.extensions:
            break
        axes, added = extend(axes, sides)
        step += 1
        steps.extend({"step": step, "axis": k, "side": side, "value": added[k]} for k, side in sides.items())
        known = [dict(p) for p in points]
        for point in grid_points(axes):
            if point not in known:
                add(point, step)
    return {"chosen": dict(points[best]), "axes": axes, "extensions": steps, "on_edge": sorted(sides),
            "tuning_seed": exp.tuning_seed, "convergence": exp.convergence.to_dict(),
            "points": {run_id(cell, p, exp.tuning_seed): p for p in points},
            "validation": {run_id(cell, p, exp.tuning_seed): v for p, v in zip(points, scores)},
            "step_of": {run_id(cell, p, exp.tuning_seed): k for p, k in zip(points, step_of)}}


def run_experiment_grid(exp: Experiment, run: Callable[[str, RunConfig], Any], log: Callable[[str], None] = print) -> dict:
    """Stage 1 (tune, seed ``tuning_seed``, with edge extensions) then stage 2 (the chosen point, every seed)."""
    selection: dict[str, Any] = {}
    for cell in exp.cells():
        tuned = tune_cell(exp, cell, run, log)
        finals = [run_id(cell, tuned["chosen"], s) for s in exp.seeds]
        for seed, rid in zip(exp.seeds, finals):
            record = run(rid, exp.config(cell, tuned["chosen"], seed))
            log(f"final {rid}: test {record.primary_metric} {record.final_metrics[record.primary_metric]:.4f}"
                + (f", epsilon RDP {record.privacy['epsilon_rdp']:.3f} PLD {record.privacy['epsilon_pld']:.3f}"
                   if record.privacy else ""))
        selection[cell.name] = {"mechanism": cell.mechanism, "target_epsilon": cell.target_epsilon, **tuned,
                                "final_runs": finals}
    return selection


def write_selection(runs_dir: Path, selection: Mapping[str, Any]) -> Path:
    from fednlp_bench.atomic import atomic_write_text

    path = Path(runs_dir) / SELECTION_FILE
    atomic_write_text(path, json.dumps(selection, indent=1, sort_keys=True) + "\n")
    return path
