"""Run the trust experiments of configs/trust/trust_20news.yaml: populations and the audit (no DP / DP).

The audit's rows are the privacy-utility table's cells (its config and selection.json): the same model, lr and
privacy target, with the audit sections added.

Counterfactual fairness per algorithm is not run here: the cpu tier's 20News records carry it (its task
entry sets ``fairness``), and its leaderboard page shows it.

    python scripts/trust_experiments.py all --runs leaderboards/trust/records --dry-run   # validate, count, check
    python scripts/trust_experiments.py populations --runs leaderboards/trust/records --max-runs 4 --threads 2
    python scripts/trust_experiments.py all --runs leaderboards/trust/records             # everything left

Every config of the chosen grids is built and validated before the first run. Runs go one after another and
are resumable: a finished run (record.json) is skipped, an interrupted one continues from its last checkpoint,
so the same command finishes an interrupted batch. Each grid's records go to their own folder under --runs, and
the tables are built from them alone by the leaderboard (docs/trust.md, "Experiments"):

    fednlp-bench leaderboard --trust population --runs leaderboards/trust/records/populations \
        --out leaderboards/trust/populations_20news.md
    fednlp-bench leaderboard --trust audit --runs leaderboards/trust/records/audit --out leaderboards/trust/audit_20news.md

``--dry-run`` also checks that the populations grid's uniform/static rows are the cpu tier's FedAvg cell (same
config as its records, seed by seed).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from fednlp_bench.config import RunConfig
from fednlp_bench.results.record import RECORD_FILENAME, config_hash

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "configs/trust/trust_20news.yaml"
TIER_RECORDS = ROOT / "leaderboards/cpu/records"
GRIDS = ("populations", "audit")


def with_seed(config: dict[str, Any], seed: int, grid: str) -> dict[str, Any]:
    """The run of ``config`` for one seed. Populations: the partition seed follows it, as in the cpu tier; the
    audit keeps the privacy-utility experiment's fixed partition, so its rows stay that table's cells."""
    out = copy.deepcopy(config)
    out["seed"] = seed
    if grid == "populations":
        out["partition"] = {**out["partition"], "seed": seed}
    return out


def grid_configs(spec: dict[str, Any], grid: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, config without seed) of every row of one grid."""
    base, section = spec["base"], spec[grid]
    if grid == "populations":
        return [(f"{setting}-{name}", {**base, **sampling, **extra})
                for setting, extra in section["settings"].items() for name, sampling in section["samplings"].items()]
    cells = privacy_utility_cells(section["cells_from"])
    out = []
    for name, variant in section["variants"].items():
        if variant.get("cell") not in cells:
            raise SystemExit(f"{SPEC.name}: audit.variants.{name}.cell={variant.get('cell')!r} is not a cell of "
                             f"{section['cells_from']['experiment']}; choose one of {sorted(cells)}")
        out.append((name, {**cells[variant["cell"]], **section["changes"]}))
    return out


def privacy_utility_cells(source: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Each privacy-utility cell's config (without seed) at the lr its tuning chose: the audited models."""
    from fednlp_bench.privacy.experiment import SELECTION_FILE, Experiment

    exp = Experiment.load(ROOT / source["experiment"])
    path = ROOT / exp.runs_dir / SELECTION_FILE
    if not path.is_file():
        raise SystemExit(f"{path}: no selection yet; run scripts/privacy_utility.py {source['experiment']} first")
    selection = json.loads(path.read_text())
    return {cell.name: exp.config_dict(cell, selection[cell.name]["chosen"]) for cell in exp.cells()
            if cell.name in selection}


def planned_runs(spec: dict[str, Any], grids: list[str], seeds: list[int]) -> list[tuple[str, RunConfig]]:
    runs = []
    for grid in grids:
        for name, config in grid_configs(spec, grid):
            for seed in seeds:
                run_id = f"trust-{grid}-{name}-s{seed}"
                try:
                    runs.append((run_id, RunConfig.from_dict(with_seed(config, seed, grid))))
                except ValueError as err:
                    raise SystemExit(f"{SPEC.name}: {run_id}: {err}") from None
    return runs


def grid_dir(runs_dir: Path, run_id: str) -> Path:
    """Each grid's records in their own folder (``<runs>/populations``, ``<runs>/audit``): one table each."""
    return runs_dir / run_id.split("-")[1]


def status(runs_dir: Path, run_id: str) -> str:
    folder = grid_dir(runs_dir, run_id) / run_id
    if (folder / RECORD_FILENAME).is_file():
        return "done"
    return "partial" if folder.is_dir() and any(folder.iterdir()) else "todo"


def tier_cell_check(runs: list[tuple[str, RunConfig]]) -> list[str]:
    """Does each uniform/static run have the config of a cpu-tier FedAvg record (same seed)?

    Compared by ``config_hash`` and seed, so a field added after a record was written (holding its implicit
    default, ``FIELDS_ADDED_LATER``) does not make the same run look different."""
    tier = [json.loads(p.read_text())["config"] for p in TIER_RECORDS.glob(f"*/{RECORD_FILENAME}")]
    keys = {(config_hash(c), c.get("seed")) for c in tier}
    lines = []
    for run_id, cfg in runs:
        if "-static-uniform-" not in run_id:
            continue
        planned = cfg.to_dict()  # config_hash serialises it as JSON: tuples and lists hash alike
        same = (config_hash(planned), planned["seed"]) in keys
        lines.append(f"  {run_id}: {'matches a cpu-tier record' if same else 'NO cpu-tier record has this config'}")
    return lines


def median_seconds(folder: Path, pattern: str) -> float | None:
    """Median wall time of the records in ``folder`` matching ``pattern``: the per-run estimate of a grid."""
    times = [json.loads(p.read_text())["wall_time_s"] for p in folder.glob(f"{pattern}/{RECORD_FILENAME}")]
    return statistics.median(times) if times else None


#: Each grid's per-run estimate (records folder, run pattern, what they are, factor): populations run the cpu
#: tier's 20News FedAvg budget; the audit the privacy-utility table's head-only models, and its reference
#: model and canaries take about as long again.
ESTIMATE_FROM = {
    "populations": (TIER_RECORDS, "classification-fedavg-*", "the cpu tier's 20News FedAvg runs", 1),
    "audit": (ROOT / "leaderboards/trust/privacy_utility", "*", "the privacy-utility runs, x2 for the reference", 2),
}


def dry_run(runs: list[tuple[str, RunConfig]], runs_dir: Path) -> int:
    states = {run_id: status(runs_dir, run_id) for run_id, _ in runs}
    for run_id, _ in runs:
        print(f"{states[run_id]:8s} {run_id}")
    left = sum(s != "done" for s in states.values())
    print(f"{len(runs)} runs, {left} left ({sum(s == 'partial' for s in states.values())} partial)")
    for grid, (folder, pattern, source, factor) in ESTIMATE_FROM.items():
        todo = sum(s != "done" for run_id, s in states.items() if run_id.split("-")[1] == grid)
        per_run = median_seconds(folder, pattern)
        if todo and per_run is not None:
            per_run *= factor
            print(f"estimate, {grid}: {todo} x {per_run / 60:.1f} min (median of {source}) = "
                  f"{todo * per_run / 3600:.1f} h, plus data loading")
        elif todo:
            print(f"estimate, {grid}: {todo} runs; no records of {source} to time them by yet")
    checks = tier_cell_check(runs)
    if checks:
        print("uniform/static against the cpu tier's FedAvg cell:", *checks, sep="\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grid", choices=(*GRIDS, "all"))
    parser.add_argument("--runs", type=Path, required=True, help="folder of the run folders (records)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the spec's seeds")
    parser.add_argument("--max-runs", type=int, default=None, help="stop after this many runs (a chunk)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--dry-run", action="store_true", help="validate, list, count and check; run nothing")
    args = parser.parse_args(argv)
    spec = yaml.safe_load(SPEC.read_text())
    grids = list(GRIDS) if args.grid == "all" else [args.grid]
    runs = planned_runs(spec, grids, args.seeds or list(spec["seeds"]))  # every config checked before any run
    if args.dry_run:
        return dry_run(runs, args.runs)
    import torch

    from fednlp_bench.engine import run_experiment

    torch.set_num_threads(args.threads)
    todo = [(run_id, cfg) for run_id, cfg in runs if status(args.runs, run_id) != "done"]
    todo = todo[: args.max_runs] if args.max_runs is not None else todo
    print(f"{len(runs) - len(todo)} of {len(runs)} runs done or deferred; running {len(todo)}", flush=True)
    for i, (run_id, cfg) in enumerate(todo, start=1):
        started = time.perf_counter()
        print(f"[{i}/{len(todo)}] {run_id}", flush=True)
        rec = run_experiment(cfg, grid_dir(args.runs, run_id), run_id=run_id,
                             resume=status(args.runs, run_id) == "partial")
        print(f"[{i}/{len(todo)}] {run_id}: test {rec.primary_metric}={rec.final_metrics[rec.primary_metric]:.4f} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
