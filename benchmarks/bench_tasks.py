"""Centralized fine-tuning speed and quality per task (re-runnable figure for docs/tasks.md).

For each task: load a deterministic subset, fine-tune the model for a few
epochs with a plain AdamW loop (the real trainer lives in the engine; this
script only measures the task layer), then report the metric before and
after, training examples/second and evaluation examples/second.

Every task reads its offline default (QA: SQuAD v1.1 dev re-split by article,
or ``--qa-data``; generation: AESLC, reported beside the lead baseline) and is
scored on its validation split (test is for the engine's final evaluation).

    python benchmarks/bench_tasks.py --tasks classification tagging qa generation \
        --train-examples 1000 --eval-examples 300 --epochs 2 --out benchmarks/bench_tasks.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fednlp_bench.tasks import get_task


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=["classification", "tagging", "qa", "generation"])
    p.add_argument("--model", default="minilm")
    p.add_argument("--train-examples", type=int, default=1000)
    p.add_argument("--eval-examples", type=int, default=300)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=None, help="default: 1e-4 (5e-5 for generation)")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--qa-data", default=None, help="SQuAD-format folder or hub name (default: $FEDNLP_DATA_DIR/squad)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--out", type=Path, default=None, help="write results as JSON (atomically)")
    return p.parse_args(argv)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_epochs(task: Any, model: torch.nn.Module, opt: torch.optim.Optimizer, train_feats: Any,
                 args: argparse.Namespace) -> tuple[list[float], int]:
    """A bare shuffled AdamW loop (no engine), so the rate is the task's own cost; returns the losses and rows seen."""
    model.train()
    rng = np.random.default_rng(args.seed)
    losses: list[float] = []
    seen = 0
    for _ in range(args.epochs):
        order = rng.permutation(len(train_feats))
        for start in range(0, len(order), args.batch_size):
            rows = [train_feats[int(i)] for i in order[start : start + args.batch_size]]
            loss = model(**task.collate(rows)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad()
            losses.append(float(loss.detach()))
            seen += len(rows)
    return losses, seen


def bench_task(name: str, args: argparse.Namespace, qa_dir: str | None) -> dict[str, Any]:
    data = qa_dir if name == "qa" else None
    task = get_task(
        name,
        model=args.model,
        data=data,
        max_length=args.max_length,
        max_train_examples=args.train_examples,
        max_eval_examples=args.eval_examples,
        seed=args.seed,
    )
    splits = task.load()
    eval_name = "validation"
    train_feats = task.preprocess(splits["train"], train=True)
    eval_feats = task.preprocess(splits[eval_name], train=False)
    seed_everything(args.seed)
    model = task.build_model()
    lr = args.lr if args.lr is not None else (5e-5 if name == "generation" else 1e-4)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)

    t0 = time.perf_counter()
    before = task.evaluate(model, splits[eval_name], eval_feats, batch_size=args.batch_size)
    eval_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    losses, seen = train_epochs(task, model, opt, train_feats, args)
    train_s = time.perf_counter() - t0

    after = task.evaluate(model, splits[eval_name], eval_feats, batch_size=args.batch_size)
    k = max(1, len(losses) // 10)
    return {
        "task": name,
        "model": args.model,
        "source": task.source,  # type: ignore[attr-defined]
        "eval_split": eval_name,
        "train_examples": len(splits["train"]),
        "train_features": len(train_feats),
        "eval_examples": len(splits[eval_name]),
        "epochs": args.epochs,
        "lr": lr,
        "primary_metric": task.primary_metric,
        "before": before,
        "after": after,
        "first_loss": float(np.mean(losses[:k])),
        "last_loss": float(np.mean(losses[-k:])),
        "train_examples_per_s": seen / train_s,
        "eval_examples_per_s": len(splits[eval_name]) / eval_s,
        "baselines": task.baselines() if hasattr(task, "baselines") else None,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for name in args.tasks:
        r = bench_task(name, args, args.qa_data)
        m = r["primary_metric"]
        lead = (r["baselines"] or {}).get("lead")
        print(
            f"{name:15s} {m}={r['after'][m]:.4f} (before {r['before'][m]:.4f})  loss {r['first_loss']:.3f}->{r['last_loss']:.3f}  "
            f"train {r['train_examples_per_s']:.1f} ex/s  eval {r['eval_examples_per_s']:.1f} ex/s"
            + (f"  lead-{lead['k']} baseline {m}={lead['validation'][m]:.4f}" if lead else ""),
            flush=True,
        )
        results.append(r)
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_path = tempfile.mkstemp(dir=args.out.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump({"meta": meta, "results": results}, fh, indent=2)
        os.replace(tmp_path, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
