"""Suite throughput: runs per hour of a fixed 8-run slice of the cpu tier, --jobs 1 x 2 threads vs --jobs 2 x 1 thread.

The slice is the cpu tier's own first 8 tuning runs of 20News (configs/suite-cpu.yaml:
centralized and FedAvg over their 4-point lr grids, seed 0, on the tuning
partition), so the runs have the tier's shape (MiniLM, one trained layer over
the frozen-bottom cache, 50 clients, 5 per round, 8 rounds, validation every
2nd round, client_eval); only the data is subsampled (``--max-train``,
``--max-eval``) so the slice takes minutes, not hours. Both arms run the
identical 8 configs, each arm as one ``fednlp-bench suite`` process launch
timed from start to exit (planning, worker start-up and everything else a
user waits for included), after one untimed warm-up run that builds the
frozen-bottom cache and the tokenized data both arms then read. Reported:
runs per hour of each arm and their ratio (target >= 1.5 on a 2-core machine
if the runs are as thread-bound as the tier's records suggest), plus whether
the two arms' records have identical metrics (they need not: 2 vs 1 torch
threads may change float summation order).

  python benchmarks/bench_suite.py                          # the measurement (idle 2-core machine: ~15-25 min)
  python benchmarks/bench_suite.py --order 21               # the --jobs 2 arm first
  python benchmarks/bench_suite.py --runs 2 --max-train 200 --max-eval 40 --set model=tiny --set rounds=2 \
      --set partition.num_clients=6 --set partition.min_size=4 --set clients_per_round=2 --set max_length=32  # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
ARMS = {"1": {"jobs": 1, "threads": 2}, "2": {"jobs": 2, "threads": 1}}


def tier_slice(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The first ``args.runs`` tuning configs of the cpu tier's 20News task, data subsampled as asked."""
    from fednlp_bench.config import RunConfig
    from fednlp_bench.suite.spec import load_suite
    from fednlp_bench.suite.stages import task_indexes
    from fednlp_bench.suite.tier_plan import build_tier_plan

    suite = load_suite(ROOT / "configs" / "suite-cpu.yaml")
    plan = build_tier_plan(suite)
    runs = plan.tuning_runs(task_indexes(suite, ["classification"]))[: args.runs]
    out = []
    for run in runs:
        config = {**run.config, "max_train_examples": args.max_train, "max_eval_examples": args.max_eval}
        for item in args.set:
            key, _, value = item.partition("=")
            target = config
            *parents, leaf = key.split(".")
            for name in parents:
                target[name] = dict(target[name])
                target = target[name]
            target[leaf] = yaml.safe_load(value)
        out.append(RunConfig.from_dict(config).to_dict())
    return out


def slice_suite(configs: list[dict[str, Any]]) -> dict[str, Any]:
    """A one-stage suite whose grid is exactly ``configs`` (base = the first; each entry adds its differences)."""
    base = {k: v for k, v in configs[0].items() if k not in ("seed", "partition")}
    fixed = ("seed", "partition", "algorithm")
    entries = [{"algorithm": c["algorithm"], **{k: v for k, v in c.items() if k not in fixed and base.get(k) != v}}
               for c in configs]
    partition = dict(configs[0]["partition"])
    seed = configs[0]["seed"]
    return {"base": base, "tasks": [{"task": base["task"]}],
            "partitions": [{k: v for k, v in partition.items() if k != "seed"}], "algorithms": entries,
            "seeds": [seed], "partition_seed": partition["seed"], "centralized_once": False,
            "keep_checkpoints": "none"}


def check_slice(path: Path, configs: list[dict[str, Any]]) -> None:
    from fednlp_bench.suite.spec import load_suite, plan_suite

    planned = [run.config for run in plan_suite(load_suite(path))]
    if sorted(json.dumps(c, sort_keys=True) for c in planned) != sorted(json.dumps(c, sort_keys=True) for c in configs):
        raise SystemExit("bench_suite: the slice suite does not expand to the tier's configs (a bug here)")


def fednlp(args: list[str], env: dict[str, str], cwd: Path) -> float:
    """Run one fednlp-bench command; return its wall seconds (launch to exit)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "fednlp_bench", *args], cwd=cwd, env=env, capture_output=True,
                          text=True)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bench_suite: `fednlp-bench {' '.join(args)}` failed:\n"
                         f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return took


def warm_up(configs: list[dict[str, Any]], env: dict[str, str], work: Path) -> float:
    """One untimed 1-round run of the slice's data: builds the frozen-bottom cache and tokenized data."""
    warm = {**configs[0], "rounds": 1, "eval_every": 1}
    (work / "warm.yaml").write_text(yaml.safe_dump(warm))
    return fednlp(["run", "--config", "warm.yaml", "--runs-dir", "warm", "--keep-checkpoints", "none",
                   "--no-progress"], env, work)


def metrics_of(runs: Path) -> dict[str, Any]:
    out = {}
    for path in sorted(runs.glob("*/record.json")):
        record = json.loads(path.read_text())
        out[record["run_id"]] = [record["final_metrics"], [r["metrics"] for r in record["rounds"]],
                                 [r["train_loss"] for r in record["rounds"]]]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=8, help="runs in the slice (the measurement uses 8)")
    p.add_argument("--max-train", type=int, default=2000, help="train rows of 20News (the tier uses all ~10k)")
    p.add_argument("--max-eval", type=int, default=400, help="validation and test rows (the tier: all)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field of every run, e.g. model=tiny, partition.num_clients=4 (smoke tests "
                   "only: the measurement uses the tier's settings)")
    p.add_argument("--order", default="12", choices=("12", "21"), help="which arm runs first")
    p.add_argument("--work", help="keep the slice, records and caches here (default: a temporary folder)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    configs = tier_slice(args)
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as tmp:
        work = Path(args.work or tmp).resolve()
        work.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "FEDNLP_CACHE_DIR": str(work / "cache")}
        env.pop("OMP_NUM_THREADS", None)  # each arm sets its own threads
        (work / "slice.yaml").write_text(yaml.safe_dump(slice_suite(configs)))
        check_slice(work / "slice.yaml", configs)
        warm_s = warm_up(configs, env, work)
        arms: dict[str, dict[str, Any]] = {}
        for key in args.order:
            arm = ARMS[key]
            name = f"jobs{arm['jobs']}x{arm['threads']}"
            wall = fednlp(["suite", "slice.yaml", "--runs-dir", name, "--jobs", str(arm["jobs"]), "--threads",
                           str(arm["threads"]), "--no-leaderboard"], env, work)
            arms[name] = {**arm, "wall_s": wall, "runs": len(configs), "runs_per_hour": len(configs) / wall * 3600}
            print(f"{name}: {len(configs)} runs in {wall:.1f} s -> {arms[name]['runs_per_hour']:.1f} runs/hour",
                  flush=True)
        one, two = arms["jobs1x2"], arms["jobs2x1"]
        same = metrics_of(work / "jobs1x2") == metrics_of(work / "jobs2x1")
    result = {"slice": f"cpu tier, 20News, first {len(configs)} tuning runs", "max_train": args.max_train,
              "max_eval": args.max_eval, "overrides": args.set, "model": configs[0]["model"],
              "cores": len(os.sched_getaffinity(0)), "warm_up_s": warm_s, "arms": arms,
              "ratio_jobs2_over_jobs1": two["runs_per_hour"] / one["runs_per_hour"],
              "identical_metrics": same, "load_average": Path("/proc/loadavg").read_text().split()[:3]}
    print(f"runs per hour, --jobs 2 x 1 thread / --jobs 1 x 2 threads: {result['ratio_jobs2_over_jobs1']:.3f} "
          f"(target >= 1.5); records' metrics identical across the arms: {same}; "
          f"load average {' '.join(result['load_average'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
