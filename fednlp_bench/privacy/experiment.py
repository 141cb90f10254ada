"""The privacy-utility experiment: epsilon levels x DP mechanisms x seeds, tuned on validation, reported on test.

One YAML file (``configs/trust/privacy_utility_20news.yaml``) holds a base run
config, the epsilon targets, the mechanisms (their clip settings), one grid
searched for every cell alike and the seeds. Cells are the no-DP run (epsilon
infinity) and every mechanism x epsilon, each DP cell with
``privacy.target_epsilon``, so the run calibrates its own noise multiplier.
Stage 1 runs every grid point with the tuning seed and keeps the one with the
best final-round validation metric (test selects nothing); stage 2 runs the
kept point with every seed. Runs resume; ``selection.json`` in the runs folder
names each cell's final runs (what a table reads, with the records).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from fednlp_bench.config import RunConfig
from fednlp_bench.hints import closest_hint
from fednlp_bench.privacy.spec import PRIVACY_MECHANISMS

_KEYS = ("base", "epsilons", "delta", "mechanisms", "grid", "tuning_seed", "seeds", "runs_dir")
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
        if not data["seeds"] or data["tuning_seed"] not in data["seeds"]:
            raise ValueError(f"{path}: tuning_seed {data['tuning_seed']} must be one of seeds {data['seeds']}")
        return cls(dict(data["base"]), [float(e) for e in data["epsilons"]], float(data["delta"]),
                   {m: dict(v or {}) for m, v in data["mechanisms"].items()}, grid, int(data["tuning_seed"]),
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
        keys = sorted(self.grid)
        return [dict(zip(keys, values)) for values in itertools.product(*(self.grid[k] for k in keys))]

    def config(self, cell: Cell, point: Mapping[str, Any], seed: int) -> RunConfig:
        """The validated run config of one cell, grid point and seed (client-level targets calibrate here)."""
        data = {**self.base, **dict(point), "seed": seed}
        if cell.privacy is not None:
            data["privacy"] = dict(cell.privacy)
        try:
            return RunConfig.from_dict(data)
        except ValueError as err:
            raise ValueError(f"cell {cell.name}, {point_name(point)}, seed {seed}: {err}") from err

    def all_runs(self) -> list[tuple[str, RunConfig]]:
        """(run id, config) of every run either stage may start: every config is checked before any work."""
        runs = []
        for cell in self.cells():
            for point in self.grid_points():
                for seed in self.seeds:
                    runs.append((run_id(cell, point, seed), self.config(cell, point, seed)))
        return runs

    def run_count(self) -> int:
        """Tuning runs plus final runs that are not tuning runs (the tuning seed's final run is its tuning run)."""
        cells, points = len(self.cells()), len(self.grid_points())
        return cells * points + cells * (len(self.seeds) - 1)


def point_name(point: Mapping[str, Any]) -> str:
    return "-".join(f"{k.replace('.', '_')}{v:g}" if isinstance(v, (int, float)) else f"{k}{v}"
                    for k, v in sorted(point.items())) or "base"


def run_id(cell: Cell, point: Mapping[str, Any], seed: int) -> str:
    return f"{cell.name}-{point_name(point)}-s{seed}"


def validation_score(record: Any) -> float:
    """Final-round validation metric (what tuning selects on; test never selects)."""
    metrics = record.rounds[-1].metrics
    if record.primary_metric not in metrics:
        raise ValueError(f"run {record.run_id}: its last round has no validation {record.primary_metric!r}; "
                         f"tuning needs the final round evaluated")
    return float(metrics[record.primary_metric])


def run_experiment_grid(exp: Experiment, run: Callable[[str, RunConfig], Any], log: Callable[[str], None] = print) -> dict:
    """Stage 1 (tune, seed ``tuning_seed``) then stage 2 (the chosen point, every seed); returns the selection."""
    selection: dict[str, Any] = {}
    for cell in exp.cells():
        scores = []
        for point in exp.grid_points():
            rid = run_id(cell, point, exp.tuning_seed)
            record = run(rid, exp.config(cell, point, exp.tuning_seed))
            scores.append((validation_score(record), point, rid))
            log(f"tune {rid}: validation {record.primary_metric} {scores[-1][0]:.4f}")
        best = max(scores, key=lambda s: s[0])  # the first grid point wins a tie (max keeps the first)
        finals = [run_id(cell, best[1], s) for s in exp.seeds]
        for seed, rid in zip(exp.seeds, finals):
            record = run(rid, exp.config(cell, best[1], seed))
            log(f"final {rid}: test {record.primary_metric} {record.final_metrics[record.primary_metric]:.4f}"
                + (f", epsilon RDP {record.privacy['epsilon_rdp']:.3f} PLD {record.privacy['epsilon_pld']:.3f}"
                   if record.privacy else ""))
        selection[cell.name] = {"mechanism": cell.mechanism, "target_epsilon": cell.target_epsilon,
                                "chosen": dict(best[1]), "validation": {rid: s for s, _, rid in scores},
                                "final_runs": finals}
    return selection


def write_selection(runs_dir: Path, selection: Mapping[str, Any]) -> Path:
    from fednlp_bench.atomic import atomic_write_text

    path = Path(runs_dir) / SELECTION_FILE
    atomic_write_text(path, json.dumps(selection, indent=1, sort_keys=True) + "\n")
    return path
