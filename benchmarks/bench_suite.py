"""Suite throughput: runs per hour of a fixed 8-run slice of the cpu tier, --jobs 1 x 2 threads vs --jobs 2 x 1 thread.

The slice is the cpu tier's own 20News tuning stage cut to centralized and
FedAvg (configs/suite-cpu.yaml: their 4-point lr grids at the tuning seed, on
the tuning partition, no grid extensions): 8 runs of the tier's shape (MiniLM,
one trained layer over the frozen-bottom cache, 100 clients, 10 per round,
client_eval on local sets drawn from test). To take minutes rather than hours
it subsamples the data (``--max-train``, ``--max-eval``), shortens the runs
(``--rounds 12 --eval-every 4``; the tier runs 100 rounds, validated every 4th) and the
per-client sets (``--client-eval-rows 20``); both arms run the identical 8
configs. Each arm is one ``fednlp-bench suite --stage tune`` process launch
timed from start to exit (planning, worker start-up, data loading: all a user
waits for), after one untimed warm-up run that builds the frozen-bottom cache
and the tokenized data both arms then read. Reported: runs per hour of each
arm and their ratio (target >= 1.5 on a 2-core machine if the runs are as
thread-bound as the tier's records suggest), and whether the arms' records
have identical metrics (they need not: the thread count is part of the arithmetic).

  python benchmarks/bench_suite.py --json bench_suite.json        # the measurement (idle 2-core machine)
  python benchmarks/bench_suite.py --order 21                     # the --jobs 2 arm first
  python benchmarks/bench_suite.py --max-train 200 --max-eval 40 --rounds 4 --eval-every 1 --client-eval-rows 5 \
      --set model=tiny --set max_length=32 --set partition.num_clients=6 --set clients_per_round=2 --runs 2  # smoke
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
RUNS = 8


def slice_tier(args: argparse.Namespace) -> dict[str, Any]:
    """The cpu tier cut to its 20News task, its tuning partition, centralized and FedAvg, data subsampled.

    Its tuning stage is exactly 8 runs: the two algorithms' 4-point lr grids at the tuning seed. Grid
    extensions are off (the slice is fixed) and the convergence window spans the whole (shortened) run, so
    the tier's own checks accept the shorter schedule; neither changes what a run computes.
    """
    tier = yaml.safe_load((ROOT / "configs" / "suite-cpu.yaml").read_text())
    task = next(t for t in tier["tasks"] if t["task"] == "classification")
    tuned = tier["tuning"]["partitions"][0]
    base = {**tier["base"], "max_train_examples": args.max_train, "max_eval_examples": args.max_eval,
            "rounds": args.rounds, "eval_every": args.eval_every,
            "client_eval_params": {**tier["base"].get("client_eval_params", {}), "rows": args.client_eval_rows}}
    for item in args.set:
        key, _, value = item.partition("=")
        target = base
        *parents, leaf = key.split(".")
        for name in parents:
            target[name] = dict(target.get(name) or {})
            target = target[name]
        target[leaf] = yaml.safe_load(value)
    return {"tier": tier["tier"], "base": base,
            "tasks": [{**{k: v for k, v in task.items() if k != "partitions"}, "partitions": [task["partitions"][tuned]]}],
            "algorithms": [a for a in tier["algorithms"] if a["algorithm"] in ("centralized", "fedavg")],
            "convergence": {**tier["convergence"], "window": 1.0},
            "tuning": {"seed": tier["tuning"]["seed"], "partitions": [0], "extensions": 0},
            "final": tier["final"], "keep_checkpoints": "none"}


def tuning_configs(path: Path, runs: int) -> list[dict[str, Any]]:
    from fednlp_bench.suite.spec import load_suite
    from fednlp_bench.suite.tier_plan import build_tier_plan

    configs = [run.config for run in build_tier_plan(load_suite(path)).tuning_runs()]
    if len(configs) != runs:
        raise SystemExit(f"bench_suite: the slice has {len(configs)} tuning runs, not {runs}; configs/suite-cpu.yaml "
                         "changed its centralized/FedAvg grids")
    return configs


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
    p.add_argument("--max-train", type=int, default=2000, help="train rows of 20News (the tier uses all ~10k)")
    p.add_argument("--max-eval", type=int, default=400, help="validation and test rows (the tier: all)")
    p.add_argument("--rounds", type=int, default=12, help="rounds per run (the tier: 100)")
    p.add_argument("--eval-every", type=int, default=4, help="validation every N rounds (the tier: 4)")
    p.add_argument("--client-eval-rows", type=int, default=20, help="rows of each client's local test set (tier: 100)")
    p.add_argument("--runs", type=int, default=RUNS, help=f"time the first N of the slice's {RUNS} runs (smoke tests)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a base field, e.g. model=tiny, partition.num_clients=6 (smoke tests only)")
    p.add_argument("--order", default="12", choices=("12", "21"), help="which arm runs first")
    p.add_argument("--work", help="keep the slice, records and caches here (default: a temporary folder)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as tmp:
        work = Path(args.work or tmp).resolve()
        work.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "FEDNLP_CACHE_DIR": str(work / "cache")}
        env.pop("OMP_NUM_THREADS", None)  # each arm sets its own threads
        (work / "slice.yaml").write_text(yaml.safe_dump(slice_tier(args), sort_keys=False))
        configs = tuning_configs(work / "slice.yaml", RUNS)[: args.runs]
        warm_s = warm_up(configs, env, work)
        arms: dict[str, dict[str, Any]] = {}
        for key in args.order:
            arm = ARMS[key]
            name = f"jobs{arm['jobs']}x{arm['threads']}"
            wall = fednlp(["suite", "slice.yaml", "--stage", "tune", "--runs-dir", name, "--out", f"{name}-out",
                           "--jobs", str(arm["jobs"]), "--threads", str(arm["threads"]), "--max-runs", str(len(configs)),
                           "--no-leaderboard"], env, work)
            arms[name] = {**arm, "wall_s": wall, "runs": len(configs), "runs_per_hour": len(configs) / wall * 3600}
            print(f"{name}: {len(configs)} runs in {wall:.1f} s -> {arms[name]['runs_per_hour']:.1f} runs/hour",
                  flush=True)
        one, two = arms["jobs1x2"], arms["jobs2x1"]
        done = [len(list((work / name).glob("*/record.json"))) for name in arms]
        if done != [len(configs)] * 2:
            raise SystemExit(f"bench_suite: the arms recorded {done} runs, not {len(configs)} each")
        same = metrics_of(work / "jobs1x2") == metrics_of(work / "jobs2x1")
    result = {"slice": f"cpu tier, 20News, its {len(configs)} centralized + FedAvg tuning runs",
              "max_train": args.max_train, "max_eval": args.max_eval, "rounds": args.rounds,
              "eval_every": args.eval_every, "client_eval_rows": args.client_eval_rows, "overrides": args.set,
              "model": configs[0]["model"], "cores": len(os.sched_getaffinity(0)), "warm_up_s": warm_s, "arms": arms,
              "ratio_jobs2_over_jobs1": two["runs_per_hour"] / one["runs_per_hour"],
              "identical_metrics": same, "load_average": Path("/proc/loadavg").read_text().split()[:3]}
    print(f"runs per hour, --jobs 2 x 1 thread / --jobs 1 x 2 threads: {result['ratio_jobs2_over_jobs1']:.3f} "
          f"(target >= 1.5); records' metrics identical across the arms: {same}; "
          f"load average {' '.join(result['load_average'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
