"""Length-grouped local batches (``batching: length``) against random ones, on the cpu tier's QA or generation shape.

A batch is padded to its longest row. SQuAD windows (max_length 256) average
163 word pieces and AESLC e-mails (128) 93, so random batches of 16 carry
1.55x and 1.37x the tokens they hold. This benchmark runs the same federated
run (the task's pilot config, fewer rows) with both batchings, alternating
(A B A B ...) in one process so machine load falls on both alike, and reports
the ratio of the rounds' wall time and the padded-token ratio of each.
Metrics differ (other batches give other steps), so it prints them for
information; the learning curves are compared by the pilots.

    python benchmarks/bench_length_batching.py --task qa --threads 2 --repeats 2 [--json out.json]

Needs ``FEDNLP_DATA_DIR``; the first, unmeasured run builds the frozen cache.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fednlp_bench.atomic import atomic_write_text
from fednlp_bench.config import RunConfig, load_yaml_config
from fednlp_bench.engine.client.trainer import LocalTrainer
from fednlp_bench.engine.run.runner import run_experiment

ROOT = Path(__file__).resolve().parents[1]
PILOTS = {"qa": ROOT / "configs/pilots/cpu-v2-squad.yaml", "generation": ROOT / "configs/pilots/cpu-v2-aeslc.yaml"}
#: Fewer rows than the pilot, same client shape: 10 clients per round, one epoch, the pilot's trained layers.
SMALLER = {"max_train_examples": 3000, "max_eval_examples": 100, "eval_every": 100}
#: Rows per client in the cpu tier (SQuAD 7,004 and AESLC 14,436 train rows over 100 clients): how many
#: batches a client's epoch has is what grouping by length works with, so fewer rows means fewer clients.
ROWS_PER_CLIENT = {"qa": 70, "generation": 144}


class PaddingMeter:
    """Counts the tokens the training batches hold and cost (``attention_mask``), by wrapping the trainer's collate."""

    def __init__(self) -> None:
        self.real = self.padded = 0
        self._original = LocalTrainer._collate

    def __enter__(self) -> "PaddingMeter":
        meter = self

        def counted(trainer: LocalTrainer, rows: np.ndarray) -> dict[str, Any]:
            batch = meter._original(trainer, rows)
            mask = batch["attention_mask"]
            meter.real += int(mask.sum())
            meter.padded += int(mask.numel())
            return batch

        LocalTrainer._collate = counted  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: Any) -> None:
        LocalTrainer._collate = self._original  # type: ignore[method-assign]

    @property
    def ratio(self) -> float:
        return self.padded / max(self.real, 1)


def bench_config(task: str, changes: dict[str, Any], **more: Any) -> RunConfig:
    fields, _ = load_yaml_config(PILOTS[task])
    return RunConfig.from_dict({**fields, **SMALLER, **changes, **more})


def one_run(task: str, changes: dict[str, Any], rounds: int, batching: str, folder: Path) -> dict[str, Any]:
    config = bench_config(task, changes, rounds=rounds, batching=batching)
    with PaddingMeter() as meter:
        record = run_experiment(config, folder, run_id=f"{batching}-r{rounds}", progress=False)
    metrics = {f"test_{k}": v for k, v in record.final_metrics.items() if isinstance(v, float)}
    return {"rounds_s": sum(float(r.wall_time_s) for r in record.rounds), "wall_s": record.wall_time_s,
            "padded_token_ratio": meter.ratio, "metrics": metrics}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=sorted(PILOTS), default="qa")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model", default=None, help="another model than the pilot's (tiny: the smoke test)")
    p.add_argument("--train-examples", type=int, default=SMALLER["max_train_examples"])
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    clients = max(args.train_examples // ROWS_PER_CLIENT[args.task], 10)
    changes: dict[str, Any] = {"max_train_examples": args.train_examples,
                               "partition": {"scheme": "iid", "num_clients": clients, "seed": 0, "min_size": 10,
                                             "params": {}}}
    if args.model:
        changes.update(model=args.model, trainable_params={"layers": 1, "cache": True})
    runs: dict[str, list[dict[str, Any]]] = {"random": [], "length": []}
    with tempfile.TemporaryDirectory() as tmp:
        one_run(args.task, changes, 1, "length", Path(tmp) / "warm")  # builds the frozen cache
        for i in range(args.repeats):
            for batching in ("random", "length"):
                runs[batching].append(one_run(args.task, changes, args.rounds, batching, Path(tmp) / f"{i}-{batching}"))
    median = {b: statistics.median(r["rounds_s"] for r in runs[b]) for b in runs}
    padded = {b: runs[b][0]["padded_token_ratio"] for b in runs}
    result = {"task": args.task, "pilot": str(PILOTS[args.task].relative_to(ROOT)), "changes": {**SMALLER, **changes},
              "rounds": args.rounds, "threads": args.threads, "repeats": args.repeats, "rounds_s": median,
              "speedup": median["random"] / median["length"], "padded_token_ratio": padded,
              "metrics": {b: runs[b][0]["metrics"] for b in runs}}
    print(f"{args.task}: rounds' wall time, median of {args.repeats}: random {median['random']:.1f} s, length "
          f"{median['length']:.1f} s -> {result['speedup']:.2f}x; padded/real tokens {padded['random']:.2f} vs "
          f"{padded['length']:.2f}")
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
