"""Run (or check) the privacy-utility experiment of configs/trust/privacy_utility_20news.yaml.

    python scripts/privacy_utility.py configs/trust/privacy_utility_20news.yaml --dry-run    # check + calibrate
    python scripts/privacy_utility.py configs/trust/privacy_utility_20news.yaml --threads 2  # tune, then 3 seeds

``--dry-run`` builds every run config, then loads and partitions the training
split once and prints each DP cell's calibrated noise multiplier and its
epsilon by RDP and PLD; nothing trains. A real run goes cell by cell (stage 1:
the grid with the tuning seed on validation; stage 2: the chosen point with
every seed), one process on the CPU; finished runs are skipped, interrupted
ones resume. It ends with ``selection.json`` in the runs folder (each cell's
chosen point and final run ids), which the table builder reads with the records.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from fednlp_bench.config import RunConfig
from fednlp_bench.engine import run_experiment
from fednlp_bench.privacy.experiment import Experiment, run_experiment_grid, write_selection
from fednlp_bench.privacy.preview import preview


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", type=Path, help="the experiment YAML (configs/trust/privacy_utility_20news.yaml)")
    parser.add_argument("--dry-run", action="store_true", help="check every config and calibrate; train nothing")
    parser.add_argument("--runs", type=Path, default=None, help="runs folder (default: the file's runs_dir)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--frozen-cache-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        exp = Experiment.load(args.experiment)
        if args.runs is not None:
            exp.runs_dir = args.runs
        if args.dry_run:
            preview(exp)
            return 0
        exp.all_runs()  # every config checked before the first run starts
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)

    def run(rid: str, cfg: RunConfig) -> object:
        return run_experiment(cfg, exp.runs_dir, run_id=rid, resume=(exp.runs_dir / rid).exists(), progress=False,
                              frozen_cache_dir=args.frozen_cache_dir, keep_checkpoints="none")

    selection = run_experiment_grid(exp, run, log=lambda line: print(line, flush=True))
    print(f"selection: {write_selection(exp.runs_dir, selection)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
