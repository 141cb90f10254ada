"""FedML backend vs in-process backend: wall time of the same R rounds, and where FedML's time goes.

Both runs use one config (same task, partition, seed, algorithm, K clients
per round, S local steps); the FedML run uses P client processes under
``mpirun -np P+1`` (FedML cross-silo over MPI, see docs/fedml.md). Reported:

* total wall time of each backend and their ratio (FedML / in-process);
* FedML's split: process start-up (Python + FedML + torch imports, data and
  model build in every process, MPI handshake), the rounds (as the runner
  measured them; the part spent inside FedML's messaging is printed per round),
  and shut-down (FedML 0.9.6's server sleeps 5 s after the last client reports).

Needs the FedML virtualenv (``bash scripts/setup_fedml_env.sh``) and offline data
($FEDNLP_DATA_DIR). Run it from the core environment:

  python benchmarks/bench_fedml.py                              # tiny model, 20News, R=5, K=4, P=4
  python benchmarks/bench_fedml.py --rounds 10 --processes 2 --json fedml.json
  python benchmarks/bench_fedml.py --toy                        # synthetic task, no data needed
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from fednlp_bench.backends.fedml.launcher import FedMLRunStats, run_fedml_experiment
from fednlp_bench.config import RunConfig
from fednlp_bench.engine.run import runner


def make_config(ns: argparse.Namespace) -> RunConfig:
    base: dict[str, Any] = dict(
        algorithm="fedavg", rounds=ns.rounds, clients_per_round=ns.clients_per_round, local_epochs=None,
        local_steps=ns.local_steps, batch_size=ns.batch_size, lr=ns.lr, optimizer="adamw", seed=0,
        eval_every=ns.rounds,
        partition={"scheme": "iid", "num_clients": ns.num_clients, "seed": 0, "min_size": 1, "params": {}},
    )
    if ns.toy:
        base.update(task="toy", model="toy")
    else:
        base.update(task="classification", data="20news", model=ns.model, max_length=ns.max_length,
                    max_train_examples=ns.max_train, max_eval_examples=ns.max_eval)
    return RunConfig.from_dict(base)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients-per-round", type=int, default=4)
    parser.add_argument("--processes", type=int, default=None, help="FedML client processes (default: K)")
    parser.add_argument("--num-clients", type=int, default=10)
    parser.add_argument("--local-steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--max-train", type=int, default=400)
    parser.add_argument("--max-eval", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in every process (both backends)")
    parser.add_argument("--toy", action="store_true", help="synthetic toy task instead of 20News")
    parser.add_argument("--json", type=Path, default=None)
    ns = parser.parse_args(argv)
    config = make_config(ns)
    torch.set_num_threads(ns.threads)
    toy = {"task_factory": "fednlp_bench.testing.toy:ToyTask", "task_kwargs": {"n_train": 400, "hidden": 64},
           "partition_factory": "fednlp_bench.testing.toy:toy_partition"} if ns.toy else {}

    with tempfile.TemporaryDirectory(prefix="bench-fedml-") as tmp:
        kw: dict[str, Any] = {}
        if ns.toy:
            from fednlp_bench.testing.toy import ToyTask, toy_partition

            from fednlp_bench.engine.run import sources

            sources.build_partition = toy_partition
            kw["task"] = ToyTask(**toy["task_kwargs"])
        t0 = time.perf_counter()
        inproc = runner.run_experiment(config, Path(tmp) / "inprocess", progress=False, **kw)
        inproc_s = time.perf_counter() - t0

        stats: list[FedMLRunStats] = []
        t0 = time.perf_counter()
        fed = run_fedml_experiment(config, Path(tmp) / "fedml", processes=ns.processes, torch_threads=ns.threads,
                                   stats=stats, **toy)
        fed_s = time.perf_counter() - t0
    st = stats[0]
    in_rounds = [r.wall_time_s for r in inproc.rounds]
    fed_rounds = [r.wall_time_s for r in fed.rounds]
    runner_s = st.runner_s or 0.0
    report = {
        "config": {k: config.to_dict()[k] for k in ("task", "model", "rounds", "clients_per_round", "local_steps", "batch_size")},
        "processes": ns.processes or config.clients_per_round,
        "threads": ns.threads,
        "inprocess_s": inproc_s,
        "fedml_s": fed_s,
        "ratio": fed_s / inproc_s,
        "inprocess_round_median_s": statistics.median(in_rounds),
        "fedml_round_median_s": statistics.median(fed_rounds),
        "round_ratio": statistics.median(fed_rounds) / statistics.median(in_rounds),
        "fedml_round_in_fedml_median_s": statistics.median(st.round_seconds) if st.round_seconds else None,
        "fedml_startup_s": fed_s - (st.fedml_server_s or 0.0),
        "fedml_rank0_runner_s": runner_s,
        "fedml_after_last_round_s": (st.fedml_server_s or 0.0) - runner_s,
        "same_final_metrics": inproc.final_metrics == fed.final_metrics,
        "final_metrics": {"inprocess": inproc.final_metrics, "fedml": fed.final_metrics},
    }
    print(json.dumps(report, indent=1))
    print(
        f"\nFedML / in-process wall time: {report['ratio']:.1f}x  ({fed_s:.1f} s vs {inproc_s:.1f} s, "
        f"R={config.rounds}, K={config.clients_per_round}, P={report['processes']})\n"
        f"  FedML start-up (imports, data+model in {report['processes'] + 1} processes, MPI handshake): "
        f"{report['fedml_startup_s']:.1f} s\n"
        f"  rounds: median {report['fedml_round_median_s']:.3f} s FedML vs {report['inprocess_round_median_s']:.3f} s "
        f"in-process ({report['round_ratio']:.2f}x)\n"
        f"  after the last round (FedML's finish handshake + 5 s sleep): {report['fedml_after_last_round_s']:.1f} s"
    )
    if ns.json:
        ns.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
