"""Run the small 20News grids behind leaderboards/privacy_20news.md and leaderboards/populations_20news.md.

    python scripts/trust_experiments.py privacy    --runs runs/trust-dp  --threads 1
    python scripts/trust_experiments.py population --runs runs/trust-pop --threads 1

Each grid is one YAML config (configs/trust/) varied in the few keys its table
compares; runs go one after another (one process on a shared CPU) and resume
if interrupted. The table is then written from the records alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from fednlp_bench.config import RunConfig
from fednlp_bench.engine import run_experiment
from fednlp_bench.leaderboard.trust_tables import main as write_table

ROOT = Path(__file__).resolve().parents[1]


def privacy_grid(noise: list[float]) -> list[tuple[str, dict[str, Any]]]:
    base = RunConfig.from_yaml(ROOT / "configs/trust/dp_20news.yaml").to_dict()
    grid = [("nodp", {k: v for k, v in base.items() if k != "privacy"})]
    for z in noise:
        grid.append((f"dp-z{z:g}", {**base, "privacy": {**base["privacy"], "noise_multiplier": z}}))
    return grid


def population_grid() -> list[tuple[str, dict[str, Any]]]:
    base = RunConfig.from_yaml(ROOT / "configs/trust/populations_20news.yaml").to_dict()
    static = {k: v for k, v in base.items() if k != "continual"}
    grid = []
    for name, sampling in (("uniform", {"sampling": "uniform"}),
                           ("activity", {"sampling": "activity_power", "sampling_params": {"power": 1.0}})):
        grid.append((f"static-{name}", {**static, **sampling}))
        grid.append((f"continual-{name}", {**base, **sampling}))
    return grid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grid", choices=("privacy", "population"))
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.01, 0.1, 1.0],
                        help="noise multipliers of the DP rows (privacy grid)")
    parser.add_argument("--out", type=Path, default=None, help="table file (default: leaderboards/<grid>_20news.md)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    grid = privacy_grid(args.noise) if args.grid == "privacy" else population_grid()
    configs = [(name, RunConfig.from_dict(cfg)) for name, cfg in grid]  # every config checked before any run
    for name, cfg in configs:
        run_id = f"20news-{name}"
        rec = run_experiment(cfg, args.runs, run_id=run_id, resume=(args.runs / run_id).exists(), progress=False)
        print(f"{name}: {rec.primary_metric}={rec.final_metrics[rec.primary_metric]:.4f} "
              f"wall={rec.wall_time_s:.0f}s", flush=True)
    out = args.out or ROOT / "leaderboards" / f"{'privacy' if args.grid == 'privacy' else 'populations'}_20news.md"
    return write_table([args.grid, str(args.runs), str(out)])


if __name__ == "__main__":
    sys.exit(main())
