"""The Python steps of scripts/gpu_check.sh and scripts/run_gpu_tier.sh (one subcommand each).

  env            the device: torch and CUDA versions, GPU name and memory, bf16 support (CPU: its capability)
  round          one FedAvg round of full fine-tuning on DEVICE/PRECISION vs the same round on the CPU in fp32
                 (the engine's own run: same config, seed, clients and batches); passes when the round's train
                 losses agree within --tolerance (relative)
  rate           the device rate bench_throughput.py measured (bf16/fp32 full arm), as TFLOP/s for --device-tflops
  tiny-suite     write a copy of a tier suite with tiny data and the tiny model (the CPU fallback's tier)

Every figure is printed and also written as JSON (--json), which gpu_check.sh gathers into one summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: The round compared: small enough for seconds on a GPU and a CPU, large enough to train every layer.
ROUND = {"task": "classification", "data": "20news", "model": "minilm", "max_length": 128, "max_train_examples": 400,
         "max_eval_examples": 64, "partition": {"scheme": "iid", "num_clients": 10, "min_size": 10, "params": {}},
         "algorithm": "fedavg", "rounds": 1, "clients_per_round": 2, "local_steps": 4, "local_epochs": None,
         "batch_size": 16, "lr": 5e-5, "optimizer": "adamw", "trainable": "full", "seed": 0}
#: bf16 keeps 8 bits of mantissa: a loss of ~3 differs by ~1e-2 from fp32 after 8 steps; 2% leaves room.
DEFAULT_TOLERANCE = 0.02
TINY = {"model": "tiny", "max_length": 32, "max_train_examples": 200, "max_eval_examples": 40, "rounds": 2,
        "clients_per_round": 2, "eval_every": 1, "precision": "fp32",
        "client_eval_params": {"source": "test", "rows": 5, "min_units": 1}}


def env_report(_: argparse.Namespace) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"torch": torch.__version__, "cuda_build": torch.version.cuda,
                            "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update({"gpus": torch.cuda.device_count(), "gpu": props.name, "gpu_memory_gib": props.total_memory / 2**30,
                     "capability": f"{props.major}.{props.minor}", "bf16_supported": torch.cuda.is_bf16_supported()})
    else:
        info.update({"cpu_capability": torch.backends.cpu.get_cpu_capability(),
                     "bf16_supported": "avx512_bf16" in Path("/proc/cpuinfo").read_text()})
    return info


def _train_loss(config: dict[str, Any], device: str, runs: Path) -> tuple[float, float, dict[str, float]]:
    from fednlp_bench.config import RunConfig
    from fednlp_bench.engine.run.runner import run_experiment

    start = time.perf_counter()
    record = run_experiment(RunConfig.from_dict(config), runs, device=device, keep_checkpoints="none")
    loss = record.rounds[0].train_loss
    assert loss is not None
    return float(loss), time.perf_counter() - start, dict(record.rounds[-1].metrics)


def round_check(args: argparse.Namespace) -> dict[str, Any]:
    config = {**ROUND, "model": args.model, "precision": args.precision}
    if args.model == "tiny":
        config.update({"max_length": 32, "max_train_examples": 200})
    reference = {**config, "precision": "fp32"}
    with tempfile.TemporaryDirectory() as tmp:
        loss, took, metrics = _train_loss(config, args.device, Path(tmp) / "device")
        ref_loss, ref_took, ref_metrics = _train_loss(reference, "cpu", Path(tmp) / "cpu")
    relative = abs(loss - ref_loss) / abs(ref_loss)
    return {"config": config, "device": args.device, "precision": args.precision, "train_loss": loss,
            "seconds": took, "validation": metrics, "cpu_fp32_train_loss": ref_loss, "cpu_seconds": ref_took,
            "cpu_validation": ref_metrics, "relative_difference": relative, "tolerance": args.tolerance,
            "passed": relative <= args.tolerance}


def rate(args: argparse.Namespace) -> dict[str, Any]:
    """TFLOP/s of a full fine-tuning arm: its training examples/s x FLOPs per example (compute_estimate's formula)."""
    from fednlp_bench.suite.compute_estimate import example_flops

    result = json.loads(Path(args.throughput_json).read_text())
    bench = result["args"]
    row = next((r for r in result["rows"] if r["arm"] == args.arm), None)
    if row is None:
        raise SystemExit(f"{args.throughput_json} has no arm {args.arm!r}")
    flops = example_flops({"task": "classification", "model": bench["model"], "max_length": bench["max_length"],
                           "trainable": "full"})
    if flops is None:
        raise SystemExit(f"cannot count the FLOPs of model {bench['model']!r} offline (its config is not reachable)")
    return {"arm": args.arm, "train_ex_s": row["train_ex_s"], "flops_per_train_example": flops[0],
            "tflops": row["train_ex_s"] * flops[0] / 1e12,
            "note": "measured by bench_throughput.py; every example counted at max_length (batches pad to their "
                    "longest row), so this overstates the rate a little"}


def tiny_suite(args: argparse.Namespace) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(Path(args.suite).read_text())
    data["base"] = {**data["base"], **TINY, "partition": {**data["base"].get("partition", {}), "num_clients": 6,
                                                         "min_size": 4}}
    data["tasks"] = [t for t in data["tasks"] if t["task"] in args.task] or data["tasks"][:1]
    for task in data["tasks"]:
        for key in ("max_length", "local_epochs"):
            task.pop(key, None)
    final = data.get("final") or {}
    if "centralized_converged" in final:
        final["centralized_converged"] = {**final["centralized_converged"], "rounds": 3}
    data["convergence"] = {**data.get("convergence", {}), "window": 1.0, "min_points": 2}  # 2 rounds, both validated
    data.update({"runs_dir": str(Path(args.out_dir) / "records"), "out": str(Path(args.out_dir))})
    Path(args.out).write_text(yaml.safe_dump(data, sort_keys=False))
    return {"suite": args.out, "tasks": [t["task"] for t in data["tasks"]]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="step", required=True)
    sub.add_parser("env")
    r = sub.add_parser("round")
    r.add_argument("--device", default="cuda")
    r.add_argument("--precision", default="bf16")
    r.add_argument("--model", default="minilm")
    r.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    t = sub.add_parser("rate")
    t.add_argument("throughput_json")
    t.add_argument("--arm", default="bf16 full")
    s = sub.add_parser("tiny-suite")
    s.add_argument("suite")
    s.add_argument("out")
    s.add_argument("--out-dir", required=True, help="records and tables of the tiny tier go here")
    s.add_argument("--task", action="append", default=["classification"])
    for parser in (p, *sub.choices.values()):
        parser.add_argument("--json", help="also write the result here")
    args = p.parse_args()
    result = {"env": env_report, "round": round_check, "rate": rate, "tiny-suite": tiny_suite}[args.step](args)
    print(json.dumps(result, indent=1, default=str))
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(result, indent=1, default=str) + "\n")
    if args.step == "round" and not result["passed"]:
        print(f"gpu_check: the {args.device} {args.precision} round's train loss differs from the CPU fp32 round's "
              f"by {result['relative_difference']:.4f} (relative), more than {args.tolerance}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
