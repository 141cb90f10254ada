"""The first-token last layer on a classification run: speed-up and equality against the full last layer.

The cpu tier's classification runs train MiniLM's top layer over the cached
bottom; the head reads only position 0, so ``compute/first_token.py`` runs the
last layer for that position alone. This benchmark runs the same federated
run with and without it, alternating (A B A B ...) in one process so machine
load falls on both alike, and reports the ratio of the rounds' wall time and
the largest difference of any validation or test metric.

    python benchmarks/bench_first_token.py --threads 2 --repeats 2 [--json out.json]

Needs ``FEDNLP_DATA_DIR`` (20News); the first, unmeasured run builds the
frozen cache of its splits.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any
from unittest import mock

import torch

from fednlp_bench.atomic import atomic_write_text
from fednlp_bench.config import RunConfig
from fednlp_bench.engine.run.runner import run_experiment

CONFIG: dict[str, Any] = {
    "task": "classification", "data": "20news", "model": "minilm", "max_length": 128,
    "algorithm": "fedavg", "lr": 1.0e-3, "optimizer": "adamw", "batch_size": 16, "dropout": 0.0,
    "partition": {"scheme": "dirichlet_label", "num_clients": 100, "min_size": 5, "seed": 0, "params": {"alpha": 1.0}},
    "clients_per_round": 10, "local_epochs": 1, "eval_every": 3, "max_eval_examples": 500, "seed": 0,
    "precision": "fp32", "trainable": "top_layers", "trainable_params": {"layers": 1, "cache": True},
}


def one_run(rounds: int, first_token: bool, folder: Path) -> dict[str, Any]:
    config = RunConfig.from_dict({**CONFIG, "rounds": rounds})
    patch = (mock.patch("fednlp_bench.compute.setup.install_first_token_top", return_value=False)
             if not first_token else nullcontext())
    with patch:
        record = run_experiment(config, folder, run_id=f"r{rounds}-{int(first_token)}", progress=False)
    assert record.hardware.get("first_token_top_layer") is first_token
    metrics = {f"test_{k}": v for k, v in record.final_metrics.items() if isinstance(v, float)}
    for row in record.rounds:
        metrics.update({f"round{row.round}_{k}": v for k, v in (row.metrics or {}).items() if isinstance(v, float)})
    return {"rounds_s": sum(float(r.wall_time_s) for r in record.rounds), "wall_s": record.wall_time_s,
            "metrics": metrics}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        one_run(1, True, Path(tmp) / "warm")  # builds the frozen cache of the evaluated subsets
        runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
        for i in range(args.repeats):
            for first_token in (False, True):
                runs[first_token].append(one_run(args.rounds, first_token, Path(tmp) / f"{i}-{first_token}"))
    full = statistics.median(r["rounds_s"] for r in runs[False])
    first = statistics.median(r["rounds_s"] for r in runs[True])
    a, b = runs[False][0]["metrics"], runs[True][0]["metrics"]
    diff = max(abs(a[k] - b[k]) for k in a)
    result = {"config": CONFIG, "rounds": args.rounds, "threads": args.threads, "repeats": args.repeats,
              "full_rounds_s": full, "first_token_rounds_s": first, "speedup": full / first,
              "max_metric_diff": diff, "metrics_full": a, "metrics_first_token": b}
    print(f"rounds' wall time, median of {args.repeats}: full last layer {full:.1f} s, first token {first:.1f} s "
          f"-> {full / first:.2f}x; largest metric difference {diff:.2e} over {len(a)} metrics")
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
