"""Diagnostic for bench_engine.py: why do the FedAvg arm's training steps take longer than the central arm's?

Same setting as bench_engine.py (MiniLM, K clients x S steps, identical batches
in both arms), but every training step is measured with counters that do not
depend on how loaded the machine is, beside its wall time:

* minor page faults (``getrusage``): pages the kernel had to map and zero for
  this step's allocations. glibc returns freed memory above its trim threshold
  to the OS and serves large tensors with fresh ``mmap`` calls, so a step
  whose allocations do not fit the memory the process kept pays for new pages;
* system CPU time: where those page faults are paid;
* subnormal float32 values in the gradients, weights and AdamW moments after
  the step (``--census``; slow): denormal arithmetic is the other suspect.

``--mode`` picks the process setting: ``none``; ``ftz`` (flush-to-zero on
every torch thread: ``torch.set_flush_denormal`` alone sets it on the calling
thread only, so it is also run inside an OpenMP parallel region of torch's
libgomp); ``malloc`` (freed memory kept, ``fednlp_bench/compute/host_memory.py``);
``engine`` (what the engine applies). One launch per mode; the first round is
a warm-up and is not reported.

  python benchmarks/diag_engine_steps.py --threads 2 --mode none --census   # counters + subnormal census
  python benchmarks/diag_engine_steps.py --threads 2 --mode malloc
  python benchmarks/diag_engine_steps.py --model tiny --threads 1 --rounds 2   # smoke test
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import engine_arms  # noqa: E402  (bench_engine.py's own arms, so the diagnostic measures the same loop)
from interleave import interleaved  # noqa: E402  (benchmarks/interleave.py)

TINY = torch.finfo(torch.float32).tiny


def flush_denormals_all_threads() -> str:
    """FTZ/DAZ on the calling thread and on every worker of torch's OpenMP pool (libgomp)."""
    if not torch.set_flush_denormal(True):
        return "unsupported"
    libs = sorted({line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines() if "libgomp" in line})
    if not libs:
        return "calling thread"
    gomp = ctypes.CDLL(libs[0])
    callback_type = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
    gomp.GOMP_parallel.argtypes = [callback_type, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    callback = callback_type(lambda _: torch.set_flush_denormal(True))
    gomp.GOMP_parallel(callback, None, torch.get_num_threads(), 0)
    return "all threads"


def subnormals(tensors: Any) -> int:
    return int(sum(int(((t != 0) & (t.abs() < TINY)).sum()) for t in tensors))


def step_counters(trainer: Any, census: bool) -> tuple[list[dict[str, float]], Any]:
    """Wrap ``trainer._step`` so each call appends its counters; return the list and the original."""
    rows: list[dict[str, float]] = []
    original = trainer._step

    def measured(ctx: Any, opt: Any, procedure: Any, batch_rows: np.ndarray) -> float:
        before, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        value = original(ctx, opt, procedure, batch_rows)
        wall, after = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
        row = {"wall_s": wall, "user_s": after.ru_utime - before.ru_utime, "sys_s": after.ru_stime - before.ru_stime,
               "minor_faults": after.ru_minflt - before.ru_minflt}
        if census:
            params = [p for p in trainer.model.parameters() if p.requires_grad]
            moments = [v for s in opt.state.values() for k, v in s.items() if k in ("exp_avg", "exp_avg_sq")]
            row["subnormal_grads"] = subnormals(p.grad for p in params if p.grad is not None)
            row["subnormal_weights"] = subnormals(params)
            row["subnormal_moments"] = subnormals(moments)
        rows.append(row)
        return value

    trainer._step = measured
    return rows, original


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = rows[0].keys() if rows else []
    out = {f"median_{k}": statistics.median(r[k] for r in rows) for k in keys if not k.startswith("subnormal")}
    out.update({f"total_{k}": sum(r[k] for r in rows) for k in keys})
    return out


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="minilm")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--local-steps", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--max-train", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3, help="rounds per arm, the first one a warm-up")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mode", choices=("none", "ftz", "malloc", "engine"), default="engine",
                   help="none: no process settings; ftz: flush-to-zero in every torch thread; malloc: keep freed "
                   "memory; engine: what the engine applies (fednlp_bench/compute/host_memory.py)")
    p.add_argument("--census", action="store_true", help="also count subnormal values after every step (slow)")
    p.add_argument("--json")
    args = p.parse_args()
    if args.rounds < 2:
        p.error(f"--rounds {args.rounds}: the first round is a warm-up; give at least 2")
    return args


def print_summary(args: argparse.Namespace, result: dict[str, Any], n_fed_steps: int) -> None:
    c, f = result["arms"]["central"], result["arms"]["fed"]
    print(f"mode {args.mode}, {result['threads']} thread(s), {n_fed_steps} timed steps per arm "
          f"(rounds 2..{args.rounds}); machine load average {Path('/proc/loadavg').read_text().split()[0]}")
    for key in ("wall_s", "user_s", "sys_s", "minor_faults"):
        ratio = f[f"total_{key}"] / c[f"total_{key}"] if c[f"total_{key}"] else float("nan")
        print(f"  {key:>13}: central total {c[f'total_{key}']:10.2f}, fedavg total {f[f'total_{key}']:10.2f}, "
              f"fedavg/central {ratio:.3f}")
    if args.census:
        for key in ("subnormal_grads", "subnormal_weights", "subnormal_moments"):
            print(f"  {key}: central {int(c[f'total_{key}'])}, fedavg {int(f[f'total_{key}'])}")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    from fednlp_bench.compute import host_memory

    if args.mode != "engine":  # the trainer applies the engine's setting itself when it is built
        os.environ[host_memory.SWITCH_ENV] = "default"
    setting = {"none": lambda: None, "ftz": flush_denormals_all_threads, "malloc": host_memory.keep_freed_memory,
               "engine": host_memory.configure_host_memory}[args.mode]()
    env = engine_arms.build(args.model, args.max_train, args.max_length, 10, args.batch_size, args.local_steps)
    trainer = env["trainer"]
    weights = trainer.state.get()
    plans = {r: engine_arms.round_batches(env, r, args.k) for r in range(args.rounds)}
    opt = trainer.make_optimizer()
    rows, _ = step_counters(trainer, args.census)

    def arm(name: str) -> Callable[[int], list[dict[str, float]]]:
        def one_round(rnd: int) -> list[dict[str, float]]:
            trainer.state.load(weights)
            rows.clear()
            if name == "central":
                engine_arms.central_steps(env, weights, rnd, plans[rnd], opt)
            else:
                engine_arms.fedavg_round(env, weights, rnd, args.k)
            return list(rows)
        return one_round

    runs = interleaved({name: arm(name) for name in ("central", "fed")}, args.rounds - 1, warmup=1)
    arms = {name: [step for steps in r for step in steps] for name, r in runs.items()}
    del trainer._step
    result = {"mode": args.mode, "setting": setting, "threads": torch.get_num_threads(), "model": args.model,
              "arms": {name: summarise(r) for name, r in arms.items()},
              "per_step": arms}
    print_summary(args, result, len(arms["fed"]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
