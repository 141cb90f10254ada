"""Round time of FedML over gRPC across network namespaces against the in-process backend, on the same work.

Three namespaces on one machine stand in for three hosts (see
``fednlp_bench/backends/netns.py``); each runs the command a user would run
on that machine (``fednlp-bench run ... --hosts H --role server`` /
``--rank N``). Arms, back to back in one invocation so that they share the
machine's load:

* ``inprocess``: ``run_experiment`` in this process;
* ``grpc-netns``: 1 server + P client ranks, each in its own namespace;
* ``grpc-loopback`` (``--loopback``): the same ranks on 127.0.0.1 in this namespace;
* ``grpc-netns-delay`` (``--delay-ms N``): as grpc-netns with ``tc netem delay`` on the last client's link
  (skipped with the reason where the kernel lacks sch_netem).

Per arm: wall time, the per-round times from the record, and start-up +
shut-down = wall - sum of rounds. The round median is over the rounds
without evaluation from round 2 on (round 1 also waits for the slowest
process to finish starting); evaluated rounds are listed apart. Needs root,
iproute2, the FedML venv and offline data. Example (tiny model, 20News)::

  sudo python benchmarks/bench_fedml_netns.py --rounds 6 --loopback --json netns.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from fednlp_bench.backends.netns import NetemUnavailable, NetnsLab, netns_unavailable
from fednlp_bench.config import RunConfig
from fednlp_bench.engine.run import checkpoint as ckpt
from fednlp_bench.engine.run import runner
from fednlp_bench.results.record import RunRecord


def make_config(ns: argparse.Namespace) -> RunConfig:
    return RunConfig.from_dict(dict(
        task="classification", model=ns.model, max_length=ns.max_length, max_train_examples=ns.max_train,
        max_eval_examples=ns.max_eval, algorithm="fedadam", algorithm_params={"server_lr": 0.01}, rounds=ns.rounds,
        clients_per_round=ns.processes, partition={"scheme": "iid", "num_clients": 2 * ns.processes, "seed": 0,
                                                   "min_size": 1, "params": {}},
        lr=1e-3, optimizer="adamw", batch_size=ns.batch_size, local_epochs=None, local_steps=ns.local_steps, seed=0,
        eval_every=ns.rounds,
    ))


def summarize(name: str, wall_s: float, record: RunRecord) -> dict[str, Any]:
    rounds = [r.wall_time_s for r in record.rounds]
    # Round 1 also waits for the slowest process to finish starting; evaluated rounds add the server's evaluation.
    plain = [r.wall_time_s for r in record.rounds[1:] if not r.metrics] or rounds
    evaluated = [r.wall_time_s for r in record.rounds if r.metrics]
    return {"arm": name, "wall_s": wall_s, "round_s": rounds, "round_median_s": statistics.median(plain),
            "evaluated_round_s": evaluated, "startup_and_shutdown_s": wall_s - sum(rounds),
            "final_metrics": record.final_metrics}


def host_argv(config_file: Path, runs: Path, hosts: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "fednlp_bench.cli", "run", "--config", str(config_file), "--runs-dir", str(runs),
            "--run-id", "bench", "--backend", "fedml", "--comm", "GRPC", "--hosts", hosts, "--threads", "1",
            "--round-timeout", "300", "--connect-timeout", "300", "--no-progress", *extra]


def run_netns(config: RunConfig, work: Path, processes: int, delay_ms: int | None) -> tuple[float, RunRecord]:
    config_file = work / "config.yaml"
    config_file.write_text(yaml.safe_dump(config.replace(backend="fedml").to_dict()))
    runs = work / "runs"
    with NetnsLab(hosts=processes + 1) as lab:
        if delay_ms:
            lab.delay(processes, delay_ms)
        hosts = ",".join(lab.addresses)
        t0 = time.perf_counter()
        procs = [lab.start(0, host_argv(config_file, runs, hosts, "--role", "server"), work / "server.log")]
        procs += [lab.start(r, host_argv(config_file, runs, hosts, "--rank", str(r)), work / f"client{r}.log")
                  for r in range(1, processes + 1)]
        for proc in procs:
            proc.wait(timeout=1800)
        wall = time.perf_counter() - t0
        if any(proc.returncode for proc in procs):
            raise SystemExit(f"a host failed: {[p.returncode for p in procs]}; see {work}/*.log:\n"
                             + (work / "server.log").read_text(errors="replace")[-3000:])
    return wall, RunRecord.load(runs / "bench")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--processes", type=int, default=2, help="client ranks P (= clients per round)")
    parser.add_argument("--local-steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--max-train", type=int, default=200)
    parser.add_argument("--max-eval", type=int, default=50)
    parser.add_argument("--loopback", action="store_true", help="also run the gRPC ranks on 127.0.0.1")
    parser.add_argument("--delay-ms", type=int, default=None, help="also run with netem delay on one client's link")
    parser.add_argument("--json", type=Path, default=None)
    ns = parser.parse_args(argv)
    reason = netns_unavailable()
    if reason:
        raise SystemExit(f"cannot make network namespaces: {reason}")
    torch.set_num_threads(1)
    config = make_config(ns)
    arms: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-netns-") as tmp:
        tmp_path = Path(tmp)
        t0 = time.perf_counter()
        inproc = runner.run_experiment(config, tmp_path / "inproc", run_id="bench", progress=False)
        arms.append(summarize("inprocess", time.perf_counter() - t0, inproc))
        reference = ckpt.load_checkpoint(tmp_path / "inproc" / "bench").weights

        def same_weights(run_dir: Path) -> bool:
            got = ckpt.load_checkpoint(run_dir).weights
            return all(torch.equal(got[k], reference[k]) for k in reference)

        (tmp_path / "netns").mkdir()
        wall, record = run_netns(config, tmp_path / "netns", ns.processes, None)
        arms.append({**summarize("grpc-netns", wall, record), "bit_identical": same_weights(tmp_path / "netns/runs/bench"),
                     "placement": record.hardware.get("fedml")})
        if ns.loopback:
            from fednlp_bench.backends.fedml.launcher import run_fedml_experiment

            t0 = time.perf_counter()
            record = run_fedml_experiment(config, tmp_path / "loop", run_id="bench", processes=ns.processes,
                                          comm="GRPC", torch_threads=1)
            arms.append({**summarize("grpc-loopback", time.perf_counter() - t0, record),
                         "bit_identical": same_weights(tmp_path / "loop" / "bench")})
        if ns.delay_ms:
            (tmp_path / "delay").mkdir()
            try:
                wall, record = run_netns(config, tmp_path / "delay", ns.processes, ns.delay_ms)
                arms.append({**summarize(f"grpc-netns-delay{ns.delay_ms}ms", wall, record),
                             "bit_identical": same_weights(tmp_path / "delay/runs/bench")})
            except NetemUnavailable as err:
                arms.append({"arm": f"grpc-netns-delay{ns.delay_ms}ms", "skipped": str(err)})
    base = arms[0]
    for arm in arms[1:]:
        if "wall_s" in arm:
            arm["round_ratio_vs_inprocess"] = arm["round_median_s"] / base["round_median_s"]
            arm["wall_ratio_vs_inprocess"] = arm["wall_s"] / base["wall_s"]
    report = {"config": {k: config.to_dict()[k] for k in ("task", "model", "rounds", "clients_per_round", "local_steps",
                                                          "batch_size", "max_length", "max_train_examples")},
              "processes": ns.processes, "load_avg_at_end": os.getloadavg(), "cpus": os.cpu_count(), "arms": arms}
    print(json.dumps(report, indent=1))
    for arm in arms:
        if "skipped" in arm:
            print(f"{arm['arm']:>24}: skipped ({arm['skipped']})")
            continue
        ratio = f" ({arm['round_ratio_vs_inprocess']:.2f}x in-process)" if "round_ratio_vs_inprocess" in arm else ""
        print(f"{arm['arm']:>24}: wall {arm['wall_s']:6.1f} s = start-up/shut-down {arm['startup_and_shutdown_s']:5.1f} s"
              f" + rounds {sum(arm['round_s']):5.1f} s; round median {arm['round_median_s']:.3f} s{ratio}; "
              f"evaluated round(s) {', '.join(f'{x:.2f}' for x in arm['evaluated_round_s'])} s")
    if ns.json:
        ns.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
