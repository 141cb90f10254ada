"""Attention-probability dropout 0.1 (MiniLM's default) against 0 (``attention_dropout: 0``) on the QA tier's step.

With dropout on the attention probabilities, PyTorch's CPU attention cannot
run fused: it materializes the (batch, heads, length, length) probabilities,
draws a Bernoulli mask of that size and multiplies it in, forward and
backward. This benchmark times the cpu tier's QA training step (batches of 16
real SQuAD windows of up to 256 tokens, grouped by length as
``batching: length`` groups them, forward and backward) on MiniLM's QA model
cut to its top 3 encoder layers (the layers that train over the frozen cache
in the tier), with both settings, interleaved (A B, then B A, ...) in one
process. Hidden-state dropout stays at 0.1 in both arms.

    python benchmarks/bench_attention_dropout.py --threads 1 --repeats 6 [--json out.json]

Needs ``FEDNLP_DATA_DIR`` (SQuAD) and the MiniLM wheel; ``--model tiny`` is the smoke test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from fednlp_bench.atomic import atomic_write_text
from fednlp_bench.compute.attention_dropout import set_attention_dropout
from fednlp_bench.tasks import get_task
from interleave import interleaved, medians  # benchmarks/interleave.py

ARMS = {"dropout 0.1": 0.1, "dropout 0": 0.0}


def length_grouped_batches(task: Any, rows: int, size: int) -> list[dict[str, torch.Tensor]]:
    """Real training windows sorted by length and cut into batches (what ``batching: length`` yields)."""
    feats = task.preprocess(task.load()["train"].select(range(rows)), train=True)
    order = sorted(range(len(feats)), key=lambda i: len(feats[i]["input_ids"]))
    return [task.collate([feats[i] for i in order[j:j + size]]) for j in range(0, len(order), size)]


def top_layers_model(task: Any, layers: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = task.build_model()
    stack = model.base_model.encoder.layer
    del stack[: max(0, len(stack) - layers)]
    return model.train()


def one_pass(model: torch.nn.Module, data: list[dict[str, torch.Tensor]]) -> float:
    start = time.perf_counter()
    for batch in data:
        model.zero_grad()
        model(**batch).loss.backward()
    return time.perf_counter() - start


def measure(model: torch.nn.Module, data: list[dict[str, torch.Tensor]], repeats: int) -> dict[str, float]:
    for p in ARMS.values():  # warm-up
        set_attention_dropout(model, p)
        one_pass(model, data[:1])

    def arm(p: float) -> Callable[[int], float]:
        def one_repeat(rep: int) -> float:
            set_attention_dropout(model, p)
            torch.manual_seed(rep)
            return one_pass(model, data)
        return one_repeat

    return medians(interleaved({name: arm(p) for name, p in ARMS.items()}, repeats))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rows", type=int, default=96, help="SQuAD training questions (about 1.13 windows each)")
    p.add_argument("--layers", type=int, default=3, help="trained top layers (the cpu tier's QA: 3)")
    p.add_argument("--model", default="minilm", help="tiny: the smoke test")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    task = get_task("qa", model=args.model, max_length=256)
    data = length_grouped_batches(task, args.rows, 16)
    median = measure(top_layers_model(task, args.layers), data, args.repeats)
    tokens = sum(int(b["attention_mask"].sum()) for b in data)
    result = {"model": args.model, "threads": args.threads, "repeats": args.repeats, "layers": args.layers,
              "windows": sum(len(b["input_ids"]) for b in data), "real_tokens": tokens, "seconds": median,
              "speedup": median["dropout 0.1"] / median["dropout 0"]}
    print(f"QA training step over {result['windows']} windows, {args.layers} layers, {args.threads} thread(s): "
          f"attention dropout 0.1 {median['dropout 0.1']:.2f} s, 0 {median['dropout 0']:.2f} s -> "
          f"{result['speedup']:.2f}x (median of {args.repeats})")
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
