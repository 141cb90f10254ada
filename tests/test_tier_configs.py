"""The shipped tier suites (configs/suite-cpu.yaml, configs/suite-gpu.yaml) validate and have the protocol's shape.

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
    assert suite.final is not None and tuple(suite.final.seeds) == (0, 1, 2)
    algorithms = [a["algorithm"] for a in suite.algorithms]
    assert algorithms == ["centralized", *FL]
    # Equal tuning effort: 4 grid points per algorithm, every unit tuned with seed 0.
    assert {len(unit.points) for unit in plan.units} == {4}
    assert {run.config["seed"] for unit in plan.units for run in unit.runs} == {0}
    # The same client optimizer for every algorithm (FedNLP's FedOpt runs used another one).
    configs = [run.config for unit in plan.units for run in unit.runs]
    assert {c["optimizer"] for c in configs} == {"adamw"}
    assert all(c["client_eval"] for c in configs)
    for task_index in range(len(suite.tasks)):
        partitions = len(suite.partitions_for(task_index))
        # final = partitions x 4 FL x 3 seeds + 3 centralized (equal) + 3 converged, minus the 4 FL tuning runs
        # of seed 0 on the tuned partition that are reused (centralized is tuned on partition 1, reported on 0).
        assert pending_final_count(plan, task_index) == partitions * len(FL) * 3 + 3 + 3 - len(FL)


def test_cpu_tier_budget_matches_the_protocol() -> None:
    plan = _plan("suite-cpu.yaml")
    run = plan.units[0].runs[0].config
    assert run["trainable"] == "top_layers" and run["trainable_params"] == {"layers": 1, "cache": True}
    assert run["precision"] == "fp32" and run["batch_size"] == 16
    assert run["partition"]["num_clients"] == 50 and run["clients_per_round"] == 5
    assert run["rounds"] == 8 and run["local_epochs"] == 1 and run["eval_every"] == 2
    assert plan.suite.final.centralized_converged == {"rounds": 32, "test_best_round": True}


def test_gpu_tier_is_fednlp_scale() -> None:
    plan = _plan("suite-gpu.yaml")
    configs = [run.config for unit in plan.units for run in unit.runs]
    assert {c["trainable"] for c in configs} == {"full"} and {c["precision"] for c in configs} == {"bf16"}
    assert {c["max_train_examples"] for c in configs} == {None}  # full training sets
    by_task = {c["task"]: c for c in configs}
    assert by_task["classification"]["partition"]["num_clients"] == 100
    assert by_task["classification"]["clients_per_round"] == 10
    assert by_task["classification"]["max_length"] == 256 and by_task["qa"]["max_length"] == 384
    assert set(by_task) == {"classification", "tagging", "qa", "generation"}


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="with a GPU the script would start the tier")
def test_gpu_script_refuses_a_machine_without_cuda() -> None:
    result = subprocess.run(["bash", str(REPO / "scripts" / "run_gpu_tier.sh")], cwd=REPO, capture_output=True,
                            text=True, env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
                            timeout=120)
    assert result.returncode != 0
    assert "sees no CUDA GPU" in result.stderr and "suite configs/suite-gpu.yaml --dry-run" in result.stderr
