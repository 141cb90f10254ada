"""Throughput benchmark: the engine's LocalTrainer in each compute mode against a plain PyTorch loop.

One process, one model, one data slice and one fixed list of training batches
(same rows, same order, same padding) for every arm:

  plain       a bare PyTorch loop: collate, forward, backward, AdamW step (the reference)
  fp32 full   LocalTrainer.train, fp32, every weight trains (the engine's default)
  bf16 full   LocalTrainer.train under bf16 autocast
  top2 cache  LocalTrainer.train with trainable top_layers {layers: 2, cache: true}
  lora r=8    LocalTrainer.train with trainable lora {r: 8} (peft)

For each arm: training examples/s (one client's local training, including the
engine's weight load, delta and finiteness check), evaluation examples/s
(plain: a bare no-grad forward loop computing accuracy; arms: the task's
evaluate(), which adds the loss and macro-F1) and the bytes one client moves
per round (down + up, float32 trainable tensors), each also as a ratio to
the plain loop. Arms alternate in
order across repeats; medians are reported. The frozen-bottom cache is built
once before timing (its build time and size are reported on their own).

Targets (issue 9): fp32 full >= 0.95x plain; top2 cache >= 3x fp32 full on a
CPU; LoRA bytes <= 2% of full.

Usage (offline data from $FEDNLP_DATA_DIR; run on an idle machine):
  python benchmarks/bench_throughput.py --threads 2
  python benchmarks/bench_throughput.py --device cuda --precision bf16 --steps 50 --batch-size 32
  python benchmarks/bench_throughput.py --model tiny --steps 2 --eval-examples 8 --repeats 1   # smoke test
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from interleave import interleaved, medians  # benchmarks/interleave.py

ARMS = ("plain", "fp32 full", "bf16 full", "top2 cache", "lora r=8")
#: arm -> (precision, trainable, trainable_params) for the LocalTrainer arms.
ENGINE_ARMS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "fp32 full": ("fp32", "full", {}),
    "bf16 full": ("bf16", "full", {}),
    "top2 cache": ("fp32", "top_layers", {"layers": 2, "cache": True}),
    "lora r=8": ("fp32", "lora", {"r": 8}),
}


@dataclass
class Arm:
    name: str
    train: Callable[[], None]
    evaluate: Callable[[], None]
    bytes_per_round: int


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load(args: argparse.Namespace) -> dict[str, Any]:
    from fednlp_bench.tasks import get_task

    task = get_task("classification", model=args.model, data=args.data, max_length=args.max_length,
                    max_train_examples=args.train_examples, max_eval_examples=args.eval_examples, seed=0)
    splits = task.load()
    train = task.preprocess(splits["train"], train=True)
    eval_name = "validation"  # every task has one; test is for final reporting only
    evaluation = task.preprocess(splits[eval_name], train=False)
    rng = np.random.default_rng(0)
    batches: list[np.ndarray] = []
    while len(batches) < args.steps:
        perm = rng.permutation(len(train))
        batches += [perm[i : i + args.batch_size] for i in range(0, len(perm) - args.batch_size + 1, args.batch_size)]
    return {"task": task, "train": train, "eval": evaluation, "eval_raw": splits[eval_name],
            "batches": batches[: args.steps]}


def collate(task: Any, features: Any, rows: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
    cols = features[rows.tolist()]
    names = list(cols)
    batch = task.collate([dict(zip(names, values)) for values in zip(*(cols[n] for n in names))])
    return {k: v.to(device) for k, v in batch.items()}


def plain_arm(data: dict[str, Any], device: torch.device, lr: float) -> Arm:
    """The reference: what a researcher writes without any framework."""
    task = data["task"]
    torch.manual_seed(0)
    model = task.build_model().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)

    def train() -> None:
        model.train()
        for rows in data["batches"]:
            batch = collate(task, data["train"], rows, device)
            opt.zero_grad(set_to_none=True)
            loss = model(**batch).loss
            loss.backward()
            opt.step()
            float(loss.detach())

    def evaluate() -> None:
        model.eval()
        preds = []
        with torch.no_grad():
            for start in range(0, len(data["eval"]), 64):
                out = model(**collate(task, data["eval"], np.arange(start, min(start + 64, len(data["eval"]))), device))
                preds.append(out.logits.argmax(-1).cpu())
        float((torch.cat(preds) == torch.tensor(data["eval"]["labels"])).float().mean())  # accuracy

    n = sum(p.numel() for p in model.parameters())
    return Arm("plain", train, evaluate, 2 * 4 * n)


def engine_arm(name: str, data: dict[str, Any], device: torch.device, lr: float, cache_dir: Path,
               report: dict[str, Any], partial_precision: str = "fp32") -> Arm:
    from fednlp_bench.compute.precision import Precision
    from fednlp_bench.compute.setup import attach_frozen_cache, build_compute
    from fednlp_bench.config import RunConfig
    from fednlp_bench.engine.client.trainer import LocalTrainer

    precision_name, trainable, params = ENGINE_ARMS[name]
    if trainable != "full":
        precision_name = partial_precision  # --precision: e.g. bf16 for the top2/LoRA arms on a GPU
    task = data["task"]
    config = RunConfig(task="classification", model=task.model_name, precision=precision_name, trainable=trainable,
                       trainable_params=params, seed=0)
    precision = Precision(precision_name, device)
    compute = build_compute(task, config, device, precision)
    t0 = time.perf_counter()
    cache = attach_frozen_cache(compute, task, [data["train"], data["eval"]], cache_dir)
    if cache is not None:
        report["cache_build_s"] = time.perf_counter() - t0
        report["cache_mib"] = cache.size_bytes / 2**20
    steps = len(data["batches"])
    trainer = LocalTrainer(task, compute.model, data["train"], batch_size=len(data["batches"][0]), lr=lr,
                           optimizer="adamw", local_epochs=None, local_steps=steps, precision=precision)
    weights = trainer.state.get()
    rows = np.unique(np.concatenate(data["batches"]))

    def replay(*_: Any) -> Iterator[np.ndarray]:
        yield from data["batches"]  # the plain loop's batches, in its order

    trainer._batches = replay  # type: ignore[method-assign]

    def train() -> None:
        trainer.train(0, rows, weights, {}, seed=0)

    def evaluate() -> None:
        with precision.autocast():
            task.evaluate(compute.model, data["eval_raw"], data["eval"], batch_size=64)

    return Arm(name, train, evaluate, 2 * trainer.state.num_bytes)


def timed(fn: Callable[[], None], device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="minilm", help="minilm (default) or tiny (smoke tests only)")
    p.add_argument("--data", default="20news")
    p.add_argument("--device", default="cpu", help="cpu (default) | cuda | cuda:N | mps | auto")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--steps", type=int, default=12, help="training batches per timed repeat")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--train-examples", type=int, default=1000)
    p.add_argument("--eval-examples", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per arm (after one warm-up)")
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                   help="precision of the top2-cache and LoRA arms (the full arms stay fp32 and bf16)")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of: {', '.join(ARMS)} (plain is always run)")
    p.add_argument("--cache-dir", help="frozen-bottom cache folder (default: a temporary folder, removed after)")
    p.add_argument("--json", help="also write the results here")
    return p.parse_args()


def arm_names(spec: str) -> list[str]:
    """plain always comes first: every ratio in the report is against it."""
    names = ["plain"] + [a.strip() for a in spec.split(",") if a.strip() and a.strip() != "plain"]
    unknown = [a for a in names if a not in ARMS]
    if unknown:
        raise SystemExit(f"unknown arm(s) {unknown}; choose from {list(ARMS)}")
    return names


def rate_rows(arms: list[Arm], data: dict[str, Any], train_t: dict[str, float],
              eval_t: dict[str, float]) -> list[dict[str, Any]]:
    """Examples per second and bytes per arm, each also as a ratio to the plain arm (rows[0])."""
    n_train = sum(len(b) for b in data["batches"])
    n_eval = len(data["eval"])
    rows = [{"arm": arm.name, "train_ex_s": n_train / train_t[arm.name],
             "eval_ex_s": n_eval / eval_t[arm.name], "bytes_per_round": arm.bytes_per_round} for arm in arms]
    base = rows[0]
    for row in rows:
        row["train_ratio"] = row["train_ex_s"] / base["train_ex_s"]
        row["eval_ratio"] = row["eval_ex_s"] / base["eval_ex_s"]
        row["bytes_ratio"] = row["bytes_per_round"] / base["bytes_per_round"]
    return rows


def print_report(args: argparse.Namespace, device: torch.device, n_eval: int,
                 rows: list[dict[str, Any]], report: dict[str, Any]) -> None:
    from fednlp_bench.compute.device import device_name

    print(f"model {args.model}, device {device} ({device_name(device) or 'CPU'}), torch threads {torch.get_num_threads()}, "
          f"{args.steps} steps x batch {args.batch_size} x <= {args.max_length} tokens, {n_eval} eval examples, "
          f"median of {args.repeats} repeats; top2/LoRA arms in {args.precision}")
    print()
    print("| arm | train ex/s | x plain | eval ex/s | x plain | MiB/client/round (down+up) | x plain |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['arm']} | {r['train_ex_s']:.1f} | {r['train_ratio']:.3f} | {r['eval_ex_s']:.1f} | "
              f"{r['eval_ratio']:.3f} | {r['bytes_per_round'] / 2**20:.3f} | {r['bytes_ratio']:.4f} |")
    if "cache_build_s" in report:
        print(f"\nfrozen-bottom cache (top2): built once in {report['cache_build_s']:.1f} s, {report['cache_mib']:.1f} MiB")
    print_targets({r["arm"]: r for r in rows})


def print_targets(by: dict[str, dict[str, Any]]) -> None:
    print("\ntargets:")
    if "fp32 full" in by:
        print(f"  LocalTrainer fp32 full >= 0.95x plain: {by['fp32 full']['train_ratio']:.3f}")
    if "top2 cache" in by and "fp32 full" in by:
        print(f"  top2 cache >= 3x fp32 full (CPU): {by['top2 cache']['train_ex_s'] / by['fp32 full']['train_ex_s']:.2f}x")
    if "lora r=8" in by and "fp32 full" in by:
        share = by["lora r=8"]["bytes_per_round"] / by["fp32 full"]["bytes_per_round"]
        print(f"  LoRA bytes <= 2% of full: {100 * share:.2f}%")


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from fednlp_bench.compute.device import device_name, resolve_device

    device = resolve_device(args.device)
    names = arm_names(args.arms)
    data = load(args)
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = Path(args.cache_dir) if args.cache_dir else Path(tmp)
        arms = [plain_arm(data, device, args.lr)]
        arms += [engine_arm(n, data, device, args.lr, cache_dir, report, args.precision) for n in names[1:]]
        runs = interleaved({a.name: (lambda _rep, a=a: (timed(a.train, device), timed(a.evaluate, device)))
                            for a in arms}, args.repeats, warmup=1)
        train_t = medians({name: [t for t, _ in r] for name, r in runs.items()})
        eval_t = medians({name: [t for _, t in r] for name, r in runs.items()})
    rows = rate_rows(arms, data, train_t, eval_t)
    print_report(args, device, len(data["eval"]), rows, report)
    if args.json:
        result = {"args": vars(args), "device": str(device), "device_name": device_name(device),
                  "torch_threads": torch.get_num_threads(), "rows": rows, **report}
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
