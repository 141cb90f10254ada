"""How many device minutes a suite needs: FLOPs per run from its config, over a device rate.

Printed by ``fednlp-bench suite ... --dry-run`` for the gpu tier (or any suite
given ``--device-tflops``), so a GPU window can be planned before it opens.

FLOPs per token of a forward pass through ``n`` encoder layers:
``2 * n * P_layer + 2 * n * s * h`` (weights, then attention over ``s``
positions of width ``h``; Kaplan et al. 2020, table 1). A training example
costs the forward over the layers that run plus twice the forward over the
layers backward passes through (full fine-tuning: 3x forward); with
``top_layers`` + ``cache`` only the top layers run at all. An evaluation
example costs one forward. Every example counts ``max_length`` tokens (an
upper bound: batches pad to their longest row), generation's bert2bert twice
the encoder (autoregressive decoding is not counted: a lower bound there).
Examples per round as ``cost.examples_per_round`` (``local_epochs * K * rows /
clients``, or ``local_steps * K * batch``; the same for centralized, equal
budget); validation on every evaluated round, test once (twice with
``test_best_round``), ``client_eval`` on each client's local set drawn from
test (``rows`` per client) or, in v1 configs, its held-out 20% of train.

The device rate is *declared*, never measured here: ``DECLARED_TFLOPS``
unless ``--device-tflops`` gives one (``scripts/gpu_check.sh`` prints the rate
it measured). Each run also pays ``RUN_OVERHEAD_S`` of setup (process start,
data, tokenizing, model), declared, which ``--jobs`` overlaps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence, TextIO

from fednlp_bench.suite.cost import evaluated_rounds, examples_per_round
from fednlp_bench.suite.sizes import ModelShape, client_count, model_shape, split_rows, trained_layers

#: Declared sustained bf16 rate of one H100/H200 for MiniLM-sized models: ~13% of the ~790 TFLOP/s an 8192^3 bf16
#: matrix product reaches on the H200 lent here (device README); a 22M-parameter encoder at batch 32 x 256 tokens
#: keeps the tensor cores far from full.
DECLARED_TFLOPS = 100.0
#: Declared per-run setup seconds on a GPU machine (start, data loading, tokenizing, model build, test).
RUN_OVERHEAD_S = 45.0
CLIENT_EVAL_SHARE = 0.2


def _forward_per_token(layers: int, shape: ModelShape, seq: int) -> float:
    return 2.0 * layers * shape.per_layer + 2.0 * layers * seq * shape.hidden


def example_flops(config: Mapping[str, Any]) -> tuple[float, float] | None:
    """FLOPs of one training example and of one evaluation example (None: the model's shape is not known)."""
    shape = model_shape(str(config.get("model", "minilm")))
    if shape is None:
        return None
    seq = int(config.get("max_length", 128))
    trained = trained_layers(config, shape)
    cached = config.get("trainable") == "top_layers" and (config.get("trainable_params") or {}).get("cache")
    forward_layers = trained if cached else shape.layers
    backward_layers = trained if config.get("trainable") == "top_layers" else shape.layers
    factor = 2.0 if config.get("task") == "generation" else 1.0
    forward = seq * _forward_per_token(forward_layers, shape, seq) * factor
    return forward + 2.0 * seq * _forward_per_token(backward_layers, shape, seq) * factor, forward


def _client_eval_rows(config: Mapping[str, Any], train_rows: int, clients: int) -> int:
    """Rows the per-client evaluation reads: local sets drawn from test (v2), or 20% of train held out (v1)."""
    if not config.get("client_eval"):
        return 0
    params = config.get("client_eval_params") or {}
    if params.get("source") == "test":
        return int(params.get("rows", 0)) * clients
    return int(CLIENT_EVAL_SHARE * train_rows)


def run_flops(config: Mapping[str, Any]) -> float | None:
    """FLOPs of one run (None when its data or model shape is not known offline)."""
    per_example = example_flops(config)
    rows, clients = split_rows(config), client_count(config)
    if per_example is None or rows is None or not clients:
        return None
    train_example, forward = per_example
    v1_hold_out = config.get("client_eval") and (config.get("client_eval_params") or {}).get("source") != "test"
    local_rows = int(rows.train * (1 - CLIENT_EVAL_SHARE)) if v1_hold_out else rows.train
    per_round = examples_per_round({"local_epochs": 1, "batch_size": 16, "clients_per_round": 1, **config},
                                   local_rows, clients)
    rounds = int(config.get("rounds", 1))
    eval_rows = evaluated_rounds(rounds, int(config.get("eval_every", 1))) * rows.validation
    eval_rows += rows.test * (2 if config.get("test_best_round") else 1)
    eval_rows += _client_eval_rows(config, rows.train, clients)
    return rounds * per_round * train_example + eval_rows * forward


def estimate_lines(configs: Sequence[Mapping[str, Any]], tflops: float | None, jobs: int) -> list[str]:
    """The dry run's estimate: per task and in total, device minutes at the (declared or given) rate."""
    rate = (tflops or DECLARED_TFLOPS) * 1e12
    source = (f"the given --device-tflops {tflops:g}" if tflops else
              f"a declared {DECLARED_TFLOPS:g} TFLOP/s (not measured: ~13% of an H200's bf16 matrix-product rate; "
              "pass --device-tflops with the rate scripts/gpu_check.sh measures)")
    per_task: dict[str, list[float]] = {}
    unknown = 0
    for config in configs:
        flops = run_flops(config)
        if flops is None:
            unknown += 1
            continue
        per_task.setdefault(str(config["task"]), []).append(flops)
    lines = [f"device estimate (FLOPs per example from each config, every example at max_length; rate: {source}; "
             f"{RUN_OVERHEAD_S:g} s declared setup per run, {jobs} at a time):"]
    total_s = 0.0
    for task, costs in per_task.items():
        seconds = sum(costs) / rate + len(costs) * RUN_OVERHEAD_S / jobs
        total_s += seconds
        lines.append(f"  {task}: {len(costs)} runs, {sum(costs) / 1e15:.1f} PFLOP -> {seconds / 60:.1f} device minutes")
    lines.append(f"  total: {sum(map(len, per_task.values()))} runs -> {total_s / 60:.1f} device minutes")
    if unknown:
        lines.append(f"  ({unknown} run(s) not estimated: their data is not a local JSONL folder or their model's "
                     "config is not reachable offline)")
    return lines


def print_estimate(configs: Sequence[Mapping[str, Any]], tflops: float | None, jobs: int, stream: TextIO) -> None:
    for line in estimate_lines(configs, tflops, jobs):
        print(line, file=stream)


def runs_left(suite: Any, tasks: set[int], runs_dir: str | Path) -> list[dict[str, Any]]:
    """What the dry run counts as left: the tuning runs due now, the final runs of settled tasks, and the final
    runs pending tuning (a cell's first grid point: any point costs the same but for a changed ``rounds``)."""
    from fednlp_bench.suite.selection import load_records
    from fednlp_bench.suite.stages import final_todo, tuning_todo
    from fednlp_bench.suite.tier_plan import build_tier_plan, pending_final_runs

    plan = build_tier_plan(suite)
    records = load_records(runs_dir)
    runs = list(tuning_todo(plan, tasks, records))
    final, pending = final_todo(plan, tasks, records)
    for t in sorted(tasks):
        runs += pending_final_runs(plan, t) if t in pending else final[t]
    return [run.config for run in runs]
