"""DP-SGD step time against the same non-DP step, in one run: full fine-tuning and the cpu tier's top-layer path.

Abadi et al.'s DP-SGD needs every example's gradient; computed one example at
a time it "extends training time as much as 130-fold". fednlp-bench computes
them in one vectorised pass (``torch.func`` vmap over grad,
``fednlp_bench/privacy/per_example.py``). This script times one local step
three ways on identical batches of 20News rows, alternating the arms step by
step so machine drift hits them alike, and reports medians:

* ``plain``: the engine's non-DP step (``LocalTrainer._step``: forward, backward, AdamW), SDPA attention;
* ``plain eager``: the same with eager attention, which DP-SGD uses (no vmap rule for the CPU flash backward),
  so the DP ratio can be split into "attention kernel" and "per-example gradients";
* ``dp-sgd``: the private step (``ExampleDP._step``): per-example gradients, clipping, Gaussian noise, AdamW.

for two trainable modes: ``full`` (every weight) and ``top`` (``top_layers`` with
``layers: 1, cache: true``, the cpu tier's path). Target: dp-sgd / plain <= 2 on ``top``.

Usage (offline data from $FEDNLP_DATA_DIR; the frozen cache is built once into --cache-dir):
  python benchmarks/bench_dpsgd.py --threads 2 --json dpsgd.json            # MiniLM, batch 16, length 128
  python benchmarks/bench_dpsgd.py --model tiny --steps 2 --repeats 1       # smoke run, seconds
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

MODES = {"full": ("full", {}), "top": ("top_layers", {"layers": 1, "cache": True})}


def build_arm(mode: str, args: argparse.Namespace, cache_dir: Path, attention: str) -> dict[str, Any]:
    """A fresh model (same seed) in ``mode`` with its trainer, on the benchmark's rows."""
    from fednlp_bench.compute.precision import Precision
    from fednlp_bench.compute.setup import attach_frozen_cache, build_compute
    from fednlp_bench.config import RunConfig
    from fednlp_bench.engine.client.trainer import LocalTrainer
    from fednlp_bench.engine.run.sources import build_task

    trainable, params = MODES[mode]
    config = RunConfig.from_dict({
        "task": "classification", "data": "20news", "model": args.model, "max_length": args.max_length,
        "max_train_examples": args.train_examples, "max_eval_examples": 8, "trainable": trainable,
        "trainable_params": params, "batch_size": args.batch_size, "lr": 1e-4, "local_epochs": None, "local_steps": 1,
        "partition": {"scheme": "iid", "num_clients": 1, "seed": 0, "min_size": 1, "params": {}},
        "clients_per_round": 1,
    })
    task = build_task(config)
    compute = build_compute(task, config, torch.device("cpu"), Precision("fp32"))
    feats = task.preprocess(task.load()["train"], train=True)
    attach_frozen_cache(compute, task, [feats], cache_dir)
    if attention != compute.model.config._attn_implementation:
        compute.model.set_attn_implementation(attention)
    trainer = LocalTrainer(task, compute.model, feats, batch_size=args.batch_size, lr=1e-4, optimizer="adamw",
                           local_epochs=None, local_steps=1)
    compute.model.train()
    return {"trainer": trainer, "compute": compute, "opt": trainer.make_optimizer(), "ctx": fit_context(trainer)}


def fit_context(trainer: Any) -> Any:
    from fednlp_bench.algorithms.client import FitContext

    model = trainer.model
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    return FitContext(client_id=0, rnd=1, model=model, params=params, global_weights={}, instructions={}, state={},
                      lr=trainer.lr, num_examples=len(trainer.features), evaluate_loss=lambda: 0.0)


def step_functions(mode: str, args: argparse.Namespace, cache_dir: Path) -> dict[str, Callable[[np.ndarray], None]]:
    from fednlp_bench.privacy.dpsgd import ExampleDP
    from fednlp_bench.privacy.per_example import PerExampleGradients
    from fednlp_bench.privacy.secret import PrivateSeed

    plain, eager, private = (build_arm(mode, args, cache_dir, a) for a in ("sdpa", "eager", "eager"))
    dp = ExampleDP(PerExampleGradients(private["trainer"].model, private["compute"].cache), noise_multiplier=1.0,
                   clip_norm=1.0, batch_size=args.batch_size, local_epochs=None, local_steps=1, noise_seed=PrivateSeed(0))
    noise = torch.Generator().manual_seed(0)

    def plain_step(arm: dict[str, Any]) -> Callable[[np.ndarray], None]:
        return lambda rows: arm["trainer"]._step(arm["ctx"], arm["opt"], None, rows)

    def dp_step(rows: np.ndarray) -> None:
        dp._step(private["ctx"], private["opt"], rows, private["trainer"]._collate, float(args.batch_size), noise)

    return {"plain": plain_step(plain), "plain eager": plain_step(eager), "dp-sgd": dp_step}


def time_mode(mode: str, args: argparse.Namespace, cache_dir: Path) -> dict[str, Any]:
    steps = step_functions(mode, args, cache_dir)
    rng = np.random.default_rng(0)
    n_rows = args.train_examples
    batches = [rng.choice(n_rows, size=args.batch_size, replace=False) for _ in range(args.steps + 1)]
    for fn in steps.values():  # warm-up (allocator, first-call costs), not timed
        fn(batches[0])
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for rows in batches[1:]:
            for name, fn in steps.items():  # interleaved: each batch through every arm in turn
                t0 = time.perf_counter()
                fn(rows)
                times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    return {
        "mode": mode, "step_s": med,
        "ratio_dpsgd_vs_plain": med["dp-sgd"] / med["plain"],
        "ratio_dpsgd_vs_plain_eager": med["dp-sgd"] / med["plain eager"],
        "ratio_eager_vs_sdpa": med["plain eager"] / med["plain"],
        "steps_timed": len(times["plain"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--train-examples", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per arm and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="frozen-bottom cache folder (default: temporary)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = args.cache_dir or Path(tmp)
        rows = [time_mode(mode, args, cache_dir) for mode in args.modes]
    print(f"DP-SGD vs non-DP local step, {args.model}, batch {args.batch_size}, length {args.max_length}, "
          f"{torch.get_num_threads()} thread(s), median of {rows[0]['steps_timed']} steps per arm")
    print(f"{'mode':<6} {'plain s':>9} {'eager s':>9} {'dp-sgd s':>9} {'dp/plain':>9} {'dp/eager':>9}")
    for r in rows:
        s = r["step_s"]
        print(f"{r['mode']:<6} {s['plain']:9.4f} {s['plain eager']:9.4f} {s['dp-sgd']:9.4f} "
              f"{r['ratio_dpsgd_vs_plain']:8.2f}x {r['ratio_dpsgd_vs_plain_eager']:8.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
