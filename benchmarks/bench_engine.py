"""Engine benchmark: simulation overhead and memory vs number of clients.

1. Simulation overhead = wall time of one FedAvg round over K clients (S local
   steps each: sampling, per-client weight load, fresh optimizer, training,
   delta, aggregation, finiteness check) divided by the wall time of the same
   K * S optimizer steps run centrally on the same model and data with one
   optimizer. Target <= 1.05. Both arms train on *identical batches*: the
   central arm replays, in order, exactly the row batches the FedAvg round's
   clients draw (same composition, so the same padding widths), and the
   FedAvg arm checks that it drew them. Before this, the central arm drew its
   own batches from the union of the clients' rows, so any difference in
   padded lengths or row mix between the arms was counted as "overhead".
   The per-round checkpoint write is timed separately (it is I/O the
   centralized loop does not do).

   The two arms run one after the other, and on a 2-core VM the *same* 20
   steps take up to ~10% longer in one arm than the other from machine drift
   alone (measured: the per-step times of the two arms differ by as much as
   their ratio does, with identical batches). So every local step is also
   timed, and the engine's overhead is read inside the FedAvg arm itself:
   round time / time spent in its training steps (everything else in the
   round: sampling, weight loads, optimizer resets, deltas, finiteness
   checks, aggregation). The end-to-end ratio and the two arms' step-time
   ratio (the noise floor: it would be 1.000 on a quiet machine) are printed
   beside it.
2. Peak RSS of a run with 10 vs 1,000 clients (same K, same data), each in a
   fresh subprocess so the numbers do not contaminate each other. Must be
   about equal: the engine holds one model and K deltas, never N of anything.

Usage (offline data from $FEDNLP_DATA_DIR):
  python benchmarks/bench_engine.py                       # MiniLM, K=5, S=4
  python benchmarks/bench_engine.py --model tiny --repeats 5 --threads 1
  python benchmarks/bench_engine.py --json bench.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from engine_arms import batch_source, bookkeeping, build, central_steps, fedavg_round, round_batches
from interleave import interleaved  # benchmarks/interleave.py


@contextlib.contextmanager
def step_timer(trainer: Any) -> Iterator[list[float]]:
    """Add the seconds of every training step the trainer takes to the yielded one-element list."""
    spent = [0.0]
    original_step = trainer._step

    def timed_step(*a: Any, **kw: Any) -> float:
        t = time.perf_counter()
        try:
            return original_step(*a, **kw)
        finally:
            spent[0] += time.perf_counter() - t

    trainer._step = timed_step
    try:
        yield spent
    finally:
        del trainer._step


def timed_arms(env: dict[str, Any], args: argparse.Namespace) -> dict[str, list[tuple[float, float]]]:
    """(round wall time, time in its training steps) of the central and FedAvg arms, interleaved by round."""
    trainer = env["trainer"]
    weights = trainer.state.get()
    # The centralized loop replays exactly the batches of the same round's K clients.
    plans = {r: round_batches(env, r, args.k) for r in range(args.repeats + 1)}
    opt = trainer.make_optimizer()
    with step_timer(trainer) as in_steps:
        def arm(name: str) -> Callable[[int], tuple[float, float]]:
            def one_round(rnd: int) -> tuple[float, float]:
                trainer.state.load(weights)
                in_steps[0] = 0.0
                t0 = time.perf_counter()
                if name == "central":
                    central_steps(env, weights, rnd, plans[rnd], opt)
                    return time.perf_counter() - t0, in_steps[0]
                drawn: list[np.ndarray] = []
                with batch_source(trainer, record=drawn):
                    fedavg_round(env, weights, rnd, args.k)
                took = time.perf_counter() - t0, in_steps[0]
                assert len(drawn) == len(plans[rnd]) and all(np.array_equal(a, b) for a, b in zip(drawn, plans[rnd])), \
                    "the FedAvg round drew other batches than the central arm replays"
                return took
            return one_round

        return interleaved({name: arm(name) for name in ("central", "fed")}, args.repeats, warmup=1)


def checkpoint_write_s(weights: dict[str, torch.Tensor], repeats: int) -> float:
    """Median seconds to write one round's checkpoint of ``weights``."""
    from fednlp_bench.engine.run.checkpoint import save_checkpoint

    seconds = []
    for rnd in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            save_checkpoint(Path(tmp), rnd, weights, {}, {"config": {}})
            seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds)


def overhead(args: argparse.Namespace) -> dict[str, Any]:
    env = build(args.model, args.max_train, args.max_length, args.clients, args.batch_size, args.local_steps)
    trainer = env["trainer"]
    runs = timed_arms(env, args)
    cen_t, cen_steps = (list(x) for x in zip(*runs["central"]))
    fed_t, fed_steps = (list(x) for x in zip(*runs["fed"]))
    ratios = [f / c for f, c in zip(fed_t, cen_t)]
    in_round = [f / s for f, s in zip(fed_t, fed_steps)]
    book = statistics.median(bookkeeping(env, trainer.state.get(), args.k) for _ in range(3))
    return {
        "model": args.model,
        "model_mb": trainer.state.num_bytes / 2**20,
        "k": args.k,
        "local_steps": args.local_steps,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "repeats": args.repeats,
        "fedavg_round_s": statistics.median(fed_t),
        "central_same_steps_s": statistics.median(cen_t),
        "overhead_ratio_median": statistics.median(ratios),
        "overhead_ratio_total": sum(fed_t) / sum(cen_t),
        "overhead_ratios": ratios,
        "overhead_in_round_median": statistics.median(in_round),
        "overhead_in_round_total": sum(fed_t) / sum(fed_steps),
        "overhead_in_round": in_round,
        "step_time_ratio_total": sum(fed_steps) / sum(cen_steps),
        "step_time_ratios": [f / c for f, c in zip(fed_steps, cen_steps)],
        "bookkeeping_s": book,
        "overhead_ratio_from_bookkeeping": 1.0 + book / statistics.median(cen_t),
        "checkpoint_write_s": checkpoint_write_s(trainer.state.get(), args.repeats),
        "torch_threads": torch.get_num_threads(),
    }


def rss_child(args: argparse.Namespace) -> None:
    """Build everything for ``--rss-child N`` clients, run rounds, print peak RSS (MiB) as JSON."""
    env = build(args.model, args.max_train, args.max_length, args.rss_child, args.batch_size, args.local_steps)
    weights = env["trainer"].state.get()
    for rnd in range(1, args.rss_rounds + 1):
        weights = fedavg_round(env, weights, rnd, args.k)
    print(json.dumps({"clients": args.rss_child, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def peak_rss(args: argparse.Namespace, clients: int) -> float:
    cmd = [sys.executable, __file__, "--rss-child", str(clients), "--model", args.model, "--max-train", str(args.max_train),
           "--max-length", str(args.max_length), "--k", str(args.k), "--local-steps", str(args.local_steps),
           "--batch-size", str(args.batch_size), "--rss-rounds", str(args.rss_rounds)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mib"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="minilm", help="minilm (default) or tiny")
    p.add_argument("--k", type=int, default=5, help="clients per round")
    p.add_argument("--clients", type=int, default=10, help="clients in the overhead partition")
    p.add_argument("--local-steps", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--max-train", type=int, default=2000, help="train rows (>= 1000 for the 1,000-client run)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (after one warm-up)")
    p.add_argument("--rss-rounds", type=int, default=2)
    p.add_argument("--threads", type=int, help="torch threads (1 on an oversubscribed machine)")
    p.add_argument("--skip-rss", action="store_true")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rss_child:
        rss_child(args)
        return
    result = overhead(args)
    print(f"model {result['model']} ({result['model_mb']:.1f} MiB float32), K={args.k}, S={args.local_steps}, "
          f"batch {args.batch_size}x{args.max_length} tokens, torch threads {result['torch_threads']}")
    print(f"FedAvg round (K={args.k} clients x {args.local_steps} steps): {result['fedavg_round_s']:.3f} s (median)")
    print(f"same {args.k * args.local_steps} steps centrally:              {result['central_same_steps_s']:.3f} s (median)")
    print(f"end-to-end ratio FedAvg round / central steps: median {result['overhead_ratio_median']:.3f}, total "
          f"{result['overhead_ratio_total']:.3f} (per repeat: "
          f"{', '.join(f'{r:.3f}' for r in result['overhead_ratios'])}; includes the noise below)")
    print(f"engine overhead inside the FedAvg round (round time / its training steps' time): median "
          f"{result['overhead_in_round_median']:.3f}, total {result['overhead_in_round_total']:.3f} (per repeat: "
          f"{', '.join(f'{r:.3f}' for r in result['overhead_in_round'])}; target <= 1.05)")
    print(f"noise floor: the identical training steps took {result['step_time_ratio_total']:.3f}x as long in the "
          f"FedAvg arm as in the central arm (per repeat: "
          f"{', '.join(f'{r:.3f}' for r in result['step_time_ratios'])})")
    print(f"engine bookkeeping per round (weight loads, optimizers, deltas, aggregation), timed alone: "
          f"{result['bookkeeping_s']:.3f} s -> overhead ratio {result['overhead_ratio_from_bookkeeping']:.3f}")
    print(f"checkpoint write per round (not in the ratio): {result['checkpoint_write_s']:.3f} s")
    if not args.skip_rss:
        rss = {n: peak_rss(args, n) for n in (10, 1000)}
        result["peak_rss_mib"] = rss
        print(f"peak RSS, one process per run, {args.rss_rounds} rounds of K={args.k}: "
              f"10 clients {rss[10]:.0f} MiB, 1000 clients {rss[1000]:.0f} MiB "
              f"(ratio {rss[1000] / rss[10]:.3f})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
