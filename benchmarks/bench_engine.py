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
from typing import Any, Iterator

import numpy as np
import torch

from fednlp_bench.engine.client.model_state import all_finite


def build(model: str, max_train: int, max_length: int, num_clients: int, batch_size: int, local_steps: int) -> dict[str, Any]:
    from fednlp_bench.algorithms.registry import create_strategy
    from fednlp_bench.engine.client.trainer import LocalTrainer
    from fednlp_bench.engine.server.simulator import InProcessBackend
    from fednlp_bench.partitioners import partition_dataset
    from fednlp_bench.tasks import get_task

    task = get_task("classification", model=model, data="20news", max_length=max_length, max_train_examples=max_train,
                    max_eval_examples=50, seed=0)
    train = task.load()["train"]
    part = partition_dataset(train, scheme="iid", num_clients=num_clients, seed=0, min_size=1)
    features = task.preprocess(train, train=True)
    torch.manual_seed(0)
    net = task.build_model()
    trainer = LocalTrainer(task, net, features, batch_size=batch_size, lr=1e-4, optimizer="adamw",
                           local_epochs=None, local_steps=local_steps)
    backend = InProcessBackend(trainer, lambda cid, rnd: trainer.rows_for(part.indices(cid)), progress=False)
    return {"task": task, "part": part, "trainer": trainer, "backend": backend, "strategy": create_strategy("fedavg")}


def fedavg_round(env: dict[str, Any], weights: dict[str, torch.Tensor], rnd: int, k: int) -> dict[str, torch.Tensor]:
    """Exactly what the runner does in a federated round, minus evaluation and checkpoint."""
    from fednlp_bench.sampling.seeds import sample_clients

    strategy, part = env["strategy"], env["part"]
    clients = sample_clients(part.num_clients, k, rnd, 0)
    outcome = env["backend"].run_round(rnd, strategy.configure_round(rnd, clients), weights, 0)
    new = strategy.aggregate(rnd, weights, outcome.results)
    assert all_finite(new.values())
    return new


def round_batches(env: dict[str, Any], rnd: int, k: int) -> list[np.ndarray]:
    """The row batches a FedAvg round's clients draw, in the order they train (the engine's own batching)."""
    from fednlp_bench.sampling.seeds import client_seed, sample_clients

    trainer, part = env["trainer"], env["part"]
    batches: list[np.ndarray] = []
    for cid in sample_clients(part.num_clients, k, rnd, 0):
        rng = np.random.default_rng(client_seed(0, rnd, cid))
        batches += list(trainer._batches(trainer.rows_for(part.indices(cid)), rng, trainer.local_epochs,
                                         trainer.local_steps))
    return batches


@contextlib.contextmanager
def batch_source(trainer: Any, replay: list[np.ndarray] | None = None, record: list[np.ndarray] | None = None) -> Iterator[None]:
    """Make the trainer replay ``replay`` as its batches, or record the batches it draws into ``record``."""
    original = trainer._batches

    def patched(rows: np.ndarray, rng: np.random.Generator, epochs: int | None, steps: int | None) -> Iterator[np.ndarray]:
        if replay is not None:
            yield from replay
            return
        for batch in original(rows, rng, epochs, steps):
            if record is not None:
                record.append(batch)
            yield batch

    trainer._batches = patched
    try:
        yield
    finally:
        del trainer._batches


def central_steps(env: dict[str, Any], weights: dict[str, torch.Tensor], rnd: int, batches: list[np.ndarray],
                  optimizer: torch.optim.Optimizer) -> None:
    """The same batches as the FedAvg round, as a plain training loop: one optimizer, no per-client work."""
    trainer = env["trainer"]
    rows = np.unique(np.concatenate(batches))
    with batch_source(trainer, replay=batches):
        trainer.train(-1, rows, weights, {}, seed=rnd, optimizer=optimizer, num_steps=len(batches), load_weights=False)


def bookkeeping(env: dict[str, Any], weights: dict[str, torch.Tensor], k: int) -> float:
    """Seconds of the engine's own per-round work with the training steps left out.

    Per client: load the global weights, reset the client optimizer, compute the
    delta and check it is finite; per round: sampling, aggregation, the global
    finiteness check. Timed directly, this is far less noisy than the
    difference of two long training loops on a shared machine.
    """
    from fednlp_bench.algorithms.base import ClientResult
    from fednlp_bench.sampling.seeds import sample_clients

    trainer, strategy = env["trainer"], env["strategy"]
    t0 = time.perf_counter()
    clients = sample_clients(env["part"].num_clients, k, 1, 0)
    strategy.configure_round(1, clients)
    results = []
    for cid in clients:
        trainer.rows_for(env["part"].indices(cid))
        trainer.state.load(weights)
        trainer.client_optimizer()  # the engine's per-client optimizer reset (buffers zeroed in place)
        delta = trainer.state.delta_from(weights)
        assert all_finite(delta.values())
        results.append(ClientResult(cid, delta, 10, 1, 0.0))
    new = strategy.aggregate(1, weights, results)
    assert all_finite(new.values())
    return time.perf_counter() - t0


def overhead(args: argparse.Namespace) -> dict[str, Any]:
    from fednlp_bench.engine.run.checkpoint import save_checkpoint

    env = build(args.model, args.max_train, args.max_length, args.clients, args.batch_size, args.local_steps)
    trainer = env["trainer"]
    weights = trainer.state.get()
    # The centralized loop replays exactly the batches of the same round's K clients.
    plans = {r: round_batches(env, r, args.k) for r in range(args.repeats + 1)}
    opt = trainer.make_optimizer()
    fed_t, cen_t, ckpt_t, fed_steps, cen_steps = [], [], [], [], []
    step_time = [0.0]
    original_step = trainer._step

    def timed_step(*a: Any, **kw: Any) -> float:
        t = time.perf_counter()
        try:
            return original_step(*a, **kw)
        finally:
            step_time[0] += time.perf_counter() - t

    trainer._step = timed_step
    for rnd in range(args.repeats + 1):  # round 0 is warm-up
        # Alternate which arm goes first so drifting machine load does not favour one of them.
        order = ("central", "fed") if rnd % 2 == 0 else ("fed", "central")
        times: dict[str, float] = {}
        in_steps: dict[str, float] = {}
        new = weights
        for arm in order:
            trainer.state.load(weights)
            step_time[0] = 0.0
            t0 = time.perf_counter()
            if arm == "central":
                central_steps(env, weights, rnd, plans[rnd], opt)
            else:
                drawn: list[np.ndarray] = []
                with batch_source(trainer, record=drawn):
                    new = fedavg_round(env, weights, rnd, args.k)
            times[arm] = time.perf_counter() - t0
            in_steps[arm] = step_time[0]
            if arm == "fed":
                assert len(drawn) == len(plans[rnd]) and all(np.array_equal(a, b) for a, b in zip(drawn, plans[rnd])), \
                    "the FedAvg round drew other batches than the central arm replays"
        t2 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(Path(tmp), rnd, new, {}, {"config": {}})
        t3 = time.perf_counter()
        if rnd > 0:
            cen_t.append(times["central"])
            fed_t.append(times["fed"])
            cen_steps.append(in_steps["central"])
            fed_steps.append(in_steps["fed"])
            ckpt_t.append(t3 - t2)
    del trainer._step
    ratios = [f / c for f, c in zip(fed_t, cen_t)]
    in_round = [f / s for f, s in zip(fed_t, fed_steps)]
    books = [bookkeeping(env, weights, args.k) for _ in range(3)]
    book = statistics.median(books)
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
        "checkpoint_write_s": statistics.median(ckpt_t),
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
