"""The shipped tier suites (configs/suite-cpu.yaml, configs/suite-gpu.yaml) validate and have protocol v2's shape.

docs/protocol.md states the tiers' budgets and grids; these tests keep the
YAML files and the document from drifting apart, and prove the gpu tier can be
checked without a GPU (``--dry-run``), which is how a CPU-only CI covers it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fednlp_bench.suite.stages import pending_final_count
from fednlp_bench.suite.spec import load_suite
from fednlp_bench.suite.tier_plan import build_tier_plan

REPO = Path(__file__).resolve().parents[1]
FL = ("fedavg", "fedprox", "fedadam", "fedyogi")


def _plan(name: str):
    return build_tier_plan(load_suite(REPO / "configs" / name))


@pytest.mark.parametrize("name", ["suite-cpu.yaml", "suite-gpu.yaml"])
def test_tier_suite_has_the_protocol_shape(name: str) -> None:
    plan = _plan(name)
    suite = plan.suite
    assert suite.final.seeds == (0, 1, 2, 3, 4) and suite.tuning.extensions == 2
    assert suite.convergence.to_dict() == {"window": 0.25, "tolerance": 0.002, "min_points": 3}
    algorithms = [a["algorithm"] for a in suite.algorithms]
    assert algorithms == ["centralized", *FL]
    # Equal tuning effort: 4 grid points per algorithm, every one searching the client lr, every unit seed 0.
    assert {len(unit.points) for unit in plan.units} == {4}
    assert all("lr" in unit.axes for unit in plan.units)
    assert {tuple(u.axes) for u in plan.units if u.algorithm == "fedprox"} == {("lr", "mu")}
    assert {tuple(u.axes) for u in plan.units if u.algorithm in ("fedadam", "fedyogi")} == {("lr", "server_lr")}
    assert {run.config["seed"] for unit in plan.units for run in unit.runs} == {0}
    configs = [run.config for unit in plan.units for run in unit.runs]
    assert {c["optimizer"] for c in configs} == {"adamw"}  # the same client optimizer for every algorithm
    assert all(c["client_eval"] and c["client_eval_params"]["source"] == "test" for c in configs)
    assert {c["algorithm_params"]["bias_correction"] for c in configs if c["algorithm"] in ("fedadam", "fedyogi")} \
        == {True}
    assert {c["partition"]["num_clients"] for c in configs if c["partition"]["scheme"] != "natural_id"} == {100}
    assert {c["local_epochs"] for c in configs} == {1}
    # Participation fraction 0.1 everywhere: 10 of 100 clients, 4 of SQuAD's 36 articles, 14 of AESLC's 143
    # mailboxes, so a round trains on about as many examples as the centralized equal-budget bound's.
    finals = [r.config for c in plan.cells for r in plan.final_runs(c, c.unit.points[0])]
    per_round: dict[tuple[str, bool], set[int]] = {}
    for c in configs + finals:
        per_round.setdefault((c["task"], c["partition"]["scheme"] == "natural_id"), set()).add(c["clients_per_round"])
    assert {k: v for k, v in per_round.items() if not k[1]} == {(t, False): {10} for t, _ in per_round}
    assert {k: v for k, v in per_round.items() if k[1]} == {("qa", True): {4}, ("generation", True): {14}}
    central = [r.config for c in plan.cells if c.role == "centralized_equal" for r in plan.final_runs(c, c.unit.points[0])]
    assert {r["clients_per_round"] for r in central} == {10} and {r["partition"]["scheme"] for r in central} == {"iid"}


def test_cpu_tier_has_four_tasks_with_their_budgets() -> None:
    plan = _plan("suite-cpu.yaml")
    suite = plan.suite
    names = [str(t["task"]) for t in suite.tasks]
    assert names == ["classification", "tagging", "qa", "generation"]
    by_task = {name: [u for u in plan.units if u.task_index == t] for t, name in enumerate(names)}
    assert {u.algorithm for u in by_task["classification"]} == {"centralized", *FL}
    assert {u.algorithm for u in by_task["qa"]} == {u.algorithm for u in by_task["generation"]} == \
        {"centralized", "fedavg", "fedprox", "fedadam"}
    assert [suite.seeds_for(t) for t in range(4)] == [(0, 1, 2, 3, 4)] * 2 + [(0, 1, 2)] * 2
    schemes = {name: [p["scheme"] for p in suite.partitions_for(t)] for t, name in enumerate(names)}
    assert schemes == {"classification": ["iid", "dirichlet_label", "dirichlet_label"],
                       "tagging": ["iid", "feature_cluster", "feature_cluster"],
                       "qa": ["iid", "natural_id"], "generation": ["iid", "natural_id"]}
    qa = by_task["qa"][0].runs[0].config
    assert qa["max_length"] == 256 and qa["trainable_params"] == {"layers": 3, "cache": True}
    generation = by_task["generation"][0].runs[0].config
    assert generation["task_params"] == {"pointer": True, "decoder_layers": 2, "max_target_length": 16}
    # A pilot chooses a tier's rounds only if it trains the tier's model the tier's way.
    from fednlp_bench.config import load_yaml_config

    shaped = ("model", "max_length", "batching", "attention_dropout", "task_params", "trainable",
              "trainable_params", "precision", "batch_size", "local_epochs")
    for name, pilot in (("qa", "cpu-v2-squad.yaml"), ("generation", "cpu-v2-aeslc.yaml")):
        fields, _ = load_yaml_config(REPO / "configs" / "pilots" / pilot)
        tier = by_task[name][0].runs[0].config
        unset = ({}, None)  # an empty task_params is no task_params; attention_dropout 0.0 stays 0.0
        assert {k: None if fields.get(k) in unset else fields[k] for k in shaped} == \
            {k: None if tier.get(k) in unset else tier[k] for k in shaped}, pilot
    run = by_task["classification"][0].runs[0].config
    assert run["trainable"] == "top_layers" and run["trainable_params"] == {"layers": 1, "cache": True}
    assert run["precision"] == "fp32" and run["batch_size"] == 16
    for t in range(4):
        # final = partitions x FL x seeds + centralized equal and converged x seeds, minus the reused tuning runs
        fl, seeds = len(by_task[names[t]]) - 1, len(suite.seeds_for(t))
        assert pending_final_count(plan, t) == len(suite.partitions_for(t)) * fl * seeds + 2 * seeds - fl
    assert set(suite.rates) == {"classification", "tagging", "qa", "generation"}


def test_gpu_tier_is_fednlp_scale() -> None:
    plan = _plan("suite-gpu.yaml")
    configs = [run.config for unit in plan.units for run in unit.runs]
    assert {c["trainable"] for c in configs} == {"full"} and {c["precision"] for c in configs} == {"bf16"}
    assert {c["max_train_examples"] for c in configs} == {None}  # full training sets
    by_task = {c["task"]: c for c in configs}
    assert by_task["classification"]["max_length"] == 256 and by_task["qa"]["max_length"] == 384
    assert set(by_task) == {"classification", "tagging", "qa", "generation"}


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="with a GPU the script would start the tier")
def test_gpu_script_refuses_a_machine_without_cuda() -> None:
    result = subprocess.run(["bash", str(REPO / "scripts" / "run_gpu_tier.sh")], cwd=REPO, capture_output=True,
                            text=True, env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
                            timeout=120)
    assert result.returncode != 0
    assert "sees no CUDA GPU" in result.stderr and "run_gpu_tier.sh --dry-run" in result.stderr
