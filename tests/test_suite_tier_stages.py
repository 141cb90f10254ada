"""Tier suites: selection on validation, extensions, final runs, chunks, plan.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fednlp_bench.engine.run.run_id import run_id_of
from fednlp_bench.results.record import config_hash

from suite_tier_fakes import LRS, TierRunner, chosen, lr_prefers, plan_json, run, tier


# ---------------------------------------------------------------- selection and stages
def test_selection_uses_validation_never_test(tmp_path: Path) -> None:
    # validation peaks at lr=4e-3, test at lr=1e-3: the choice must follow validation
    runner = TierRunner(validation=lr_prefers(4e-3), test=lambda c: 0.9 - abs(c["lr"] - 1e-3) * 10)
    report, _ = run(tier(), tmp_path, runner)
    assert report.complete
    assert chosen(tmp_path) == {("centralized", 0): {"lr": 4e-3}, ("fedavg", 0): {"lr": 4e-3},
                                ("fedavg", 1): {"lr": 4e-3}, ("fedprox", 0): {"lr": 4e-3, "mu": 0.1},
                                ("fedprox", 1): {"lr": 4e-3, "mu": 0.1}}
    plan = plan_json(tmp_path)
    assert {c["algorithm"]: c["hyperparameters"] for c in plan["cells"]}["fedavg"] == {"lr": 4e-3}
    # no extension allowed (cap 0): FedProx's choice is on the edge of both axes, and says so
    prox = next(t for t in plan["tuning"] if t["algorithm"] == "fedprox")
    assert prox["on_edge"] == ["lr", "mu"] and prox["extensions"] == [] and prox["extension_cap"] == 0
    assert next(t for t in plan["tuning"] if t["algorithm"] == "fedavg")["on_edge"] == []


def test_ties_go_to_the_earlier_grid_point(tmp_path: Path) -> None:
    run(tier(), tmp_path, TierRunner(validation=lambda c: 0.5))
    assert chosen(tmp_path)[("fedprox", 0)] == {"lr": 2e-3, "mu": 0.01}


def test_an_edge_choice_extends_the_axis_and_selection_repeats(tmp_path: Path) -> None:
    runner = TierRunner(validation=lr_prefers(16e-3))
    data = tier(tuning={"seed": 0, "partitions": [1], "extensions": 2})
    report, _ = run(data, tmp_path, runner, stage="tune")
    plan = plan_json(tmp_path)
    by = {t["algorithm"]: t for t in plan["tuning"]}
    # FedAvg: 8e-3 is the edge -> + 16e-3 (step 1), now the edge -> + 32e-3 (step 2): 16e-3 is interior
    fedavg = by["fedavg"]
    assert fedavg["chosen"] == {"lr": 0.016} and fedavg["on_edge"] == []
    assert fedavg["extensions"] == [{"step": 1, "axis": "lr", "side": "high", "value": 0.016},
                                    {"step": 2, "axis": "lr", "side": "high", "value": 0.032}]
    assert [g["step"] for g in fedavg["grid"]] == [0, 0, 0, 0, 1, 2]
    assert fedavg["declared_axes"] == {"lr": LRS} and fedavg["axes"] == {"lr": [*LRS, 0.016, 0.032]}
    # FedProx: a corner of lr x mu: each step adds a row and a column; still on both edges after the cap
    prox = by["fedprox"]
    assert prox["axes"] == {"lr": [2e-3, 4e-3, 8e-3, 0.016], "mu": [0.01, 0.1, 1.0, 10.0]}
    assert len(prox["grid"]) == 16 and [g["step"] for g in prox["grid"]].count(1) == 5
    assert prox["chosen"] == {"lr": 0.016, "mu": 10.0} and prox["on_edge"] == ["lr", "mu"]
    # one call ran every wave: 3 x 4 declared + 1 + 1 (centralized) + 1 + 1 (fedavg) + 5 + 7 (fedprox)
    assert len(runner.calls) == 12 + 2 + 2 + 12 and report.complete
    again = TierRunner(validation=lr_prefers(16e-3))
    run(data, tmp_path, again, stage="tune")
    assert again.calls == []


def test_extension_waves_survive_max_runs(tmp_path: Path) -> None:
    data = tier(tuning={"seed": 0, "partitions": [1], "extensions": 1})
    calls = []
    for _ in range(20):
        runner = TierRunner(validation=lr_prefers(16e-3))
        report, _ = run(data, tmp_path, runner, max_runs=3)
        calls += runner.keys
        if report.complete:
            break
    # tuning: 12 declared + 1 + 1 + 5 extensions; final: centralized 2 (partition 0) + 2 FL x (2 on p0 + 1 on p1)
    assert len(calls) == 19 + 2 + 6 and len(set(calls)) == len(calls)


def test_final_runs_identical_to_tuning_runs_are_not_rerun(tmp_path: Path) -> None:
    runner = TierRunner()
    report, log = run(tier(), tmp_path, runner)
    # tuning: 20; final: every cell's seed 0 run is its tuning run, so only seed 1 is new: 5 cells x 1
    assert len(runner.calls) == 25 and len(set(runner.keys)) == 25
    assert [c["seed"] for c in runner.calls[20:]] == [1] * 5
    assert "final: 5 runs to do" in log
    plan = plan_json(tmp_path)
    fedavg1 = next(c for c in plan["cells"] if c["algorithm"] == "fedavg" and c["partition"]["index"] == 1)
    tuned = next(t for t in plan["tuning"] if t["algorithm"] == "fedavg" and t["partition"]["index"] == 1)
    assert fedavg1["runs"][0]["run_id"] == tuned["grid"][2]["run_id"]  # seed 0 is the tuning record
    again = TierRunner()
    report, _ = run(tier(), tmp_path, again)
    assert again.calls == [] and report.complete


def test_tuning_on_listed_partitions_applies_the_choice_everywhere(tmp_path: Path) -> None:
    data = tier(tuning={"seed": 0, "partitions": [1]})
    prefers = {0: 1e-3, 1: 4e-3}  # the partition tuned on (1) prefers 4e-3

    def validation(c: dict[str, Any]) -> float:
        return lr_prefers(prefers[0 if c["partition"]["scheme"] == "iid" else 1])(c)

    runner = TierRunner(validation=validation)
    run(data, tmp_path, runner)
    plan = plan_json(tmp_path)
    assert [(t["algorithm"], t["partition"]["index"]) for t in plan["tuning"]] == [
        ("centralized", 1), ("fedavg", 1), ("fedprox", 1)]
    fedavg = [c for c in plan["cells"] if c["algorithm"] == "fedavg"]
    assert [(c["partition"]["index"], c["tuned_on"], c["hyperparameters"]) for c in fedavg] == [
        (0, 1, {"lr": 4e-3}), (1, 1, {"lr": 4e-3})]
    central = next(c for c in plan["cells"] if c["role"] == "centralized_equal")
    assert (central["partition"]["index"], central["tuned_on"]) == (0, 1)
    # tuning 12; final: centralized 2 seeds on partition 0 (not tuned there), fedavg/fedprox p0 2 seeds, p1 seed 1
    assert len(runner.calls) == 12 + 2 + 2 * 2 + 2 * 1
    assert all(c["lr"] == 4e-3 for c in runner.calls[12:] if c["algorithm"] == "fedavg")


def test_centralized_equal_and_converged_cells(tmp_path: Path) -> None:
    data = tier(final={"seeds": [0, 1], "centralized_converged": {"rounds": 8, "test_best_round": True}})
    runner = TierRunner()
    run(data, tmp_path, runner)
    cells = [c for c in plan_json(tmp_path)["cells"] if c["algorithm"] == "centralized"]
    assert [(c["role"], c["partition"]["index"], c["hyperparameters"]) for c in cells] == [
        ("centralized_equal", 0, {"lr": 4e-3}), ("centralized_converged", 0, {"lr": 4e-3})]
    assert cells[1]["overrides"] == {"rounds": 8, "test_best_round": True} and "overrides" not in cells[0]
    converged = [c for c in runner.calls if c["algorithm"] == "centralized" and c["rounds"] == 8]
    assert [(c["seed"], c["lr"], c["test_best_round"]) for c in converged] == [(0, 4e-3, True), (1, 4e-3, True)]
    assert all(r["done"] for c in cells for r in c["runs"])
    assert len(runner.calls) == 20 + 5 + 2  # the converged runs are new for every seed


def test_max_runs_stops_cleanly_and_the_next_call_continues(tmp_path: Path) -> None:
    calls: list[tuple[str, int]] = []
    logs = []
    for _ in range(10):
        runner = TierRunner()
        report, log = run(tier(), tmp_path, runner, max_runs=8, command="fednlp-bench suite t.yaml")
        calls += runner.keys
        logs.append(log)
        assert len(runner.calls) <= 8
        if report.complete:
            break
    assert len(calls) == 25 and len(set(calls)) == 25  # the same 25 runs as one call, none twice
    assert ("stopped after 8 run(s): 17 run(s) remain; continue with: fednlp-bench suite t.yaml --max-runs 8"
            in logs[0])
    assert "final: classification: pending tuning: 5 runs once tuning is complete" in logs[0]
    assert "stopped after 8 run(s): 1 run(s) remain" in logs[2]  # 20 tuning done, final: 4 of 5 done
    assert "remain" not in logs[3] and len(logs) == 4
    assert (tmp_path / "out" / "plan.json").exists()


def test_plan_is_written_after_a_stopped_tuning_stage(tmp_path: Path) -> None:
    run(tier(), tmp_path, TierRunner(), max_runs=5)
    plan = plan_json(tmp_path)
    done = [g["done"] for t in plan["tuning"] for g in t["grid"]]
    assert done.count(True) == 5
    # only centralized (tuned first) has a known choice: its cell is listed, its seed-1 run not done yet
    assert [(c["role"], [r["done"] for r in c["runs"]]) for c in plan["cells"]] == [
        ("centralized_equal", [True, False])]
    central = plan["tuning"][0]
    assert central["chosen"] == {"lr": 4e-3} and central["grid"][2]["validation"] == pytest.approx(0.9)
    assert plan["tuning"][1]["chosen"] is None and plan["tuning"][1]["grid"][1]["validation"] is None


def test_task_filter_runs_only_that_task(tmp_path: Path) -> None:
    data = tier(tasks=[{"task": "classification", "data": "20news", "partitions": ["iid"]},
                       {"task": "tagging", "data": "wnut17", "partitions": ["iid"]}])
    runner = TierRunner()
    report, _ = run(data, tmp_path, runner, tasks=["tagging"])
    assert report.complete and {c["task"] for c in runner.calls} == {"tagging"}
    assert len(runner.calls) == 12 + 3  # 3 algorithms x 4 points, then seed 1 of 3 cells
    plan = plan_json(tmp_path)
    assert {t["task"] for t in plan["tuning"]} == {"classification", "tagging"}  # the plan covers the suite
    assert {c["task"] for c in plan["cells"]} == {"tagging"}
    with pytest.raises(ValueError, match="--task 'taging': .* Did you mean 'tagging'"):
        run(data, tmp_path, TierRunner(), tasks=["taging"])


def test_dry_run_lists_tuning_and_counts_final_runs(tmp_path: Path) -> None:
    runner = TierRunner()
    data = tier(final={"seeds": [0, 1, 2], "centralized_converged": {"rounds": 8}},
                tuning={"seed": 0, "extensions": 1})
    _, log = run(data, tmp_path, runner, dry_run=True)
    assert runner.calls == [] and not (tmp_path / "out").exists()
    assert "tuning: 20 runs in the grid, 0 already recorded in the runs folder, 20 to run now" in log
    assert log.count("  would run: ") == 20
    assert "would run: classification · dirichlet_label(alpha=0.1) · fedprox · lr=0.002,mu=0.1 · seed 0 (tuning)" in log
    # 1 + 1 + 1 + 5 + 5: an extension step adds one lr value, or a row and a column of lr x mu
    assert "grid extensions may add up to 13 more run(s) (cap 1 step(s) per unit" in log
    # 5 cells x seeds 1, 2 + converged x 3 seeds
    assert "final: classification: pending tuning: 13 runs once tuning is complete" in log
    assert "total: 33 runs to do (20 tuning + 13 final)" in log
    assert "classification: 33 run(s), hours unknown" in log
    run(data, tmp_path, TierRunner(validation=lr_prefers(4e-3)), stage="tune")
    _, log = run(data, tmp_path, TierRunner(), dry_run=True)
    assert "final: classification: 13 runs to do" in log and "total: 13 runs to do (0 tuning + 13 final)" in log
    full = TierRunner()
    run(data, tmp_path, full, stage="final")
    assert len(full.calls) == 13


def test_final_stage_refuses_unsettled_tuning(tmp_path: Path) -> None:
    run(tier(), tmp_path, TierRunner(), stage="tune", max_runs=17)
    runner = TierRunner()
    with pytest.raises(ValueError, match=r"task 'classification': tuning is not settled \(1 unit\(s\), 3 tuning "
                                         r"run\(s\) missing, extensions included\); run `fednlp-bench suite t.yaml "
                                         r"--stage tune --task classification` first"):
        run(tier(), tmp_path, runner, stage="final")
    assert runner.calls == []


def test_record_without_last_round_validation_is_an_error_naming_the_run(tmp_path: Path) -> None:
    runner = TierRunner(last_metric=False)
    with pytest.raises(ValueError, match=r"run classification-centralized-[0-9a-f]{8}-s0 .* its last round "
                                         r"\(round 4\) has no validation 'accuracy'"):
        run(tier(), tmp_path, runner, max_runs=1)


def test_plan_json_of_a_tiny_grid_field_by_field(tmp_path: Path) -> None:
    data = tier(tasks=[{"task": "classification", "data": "20news",
                        "partitions": [{"scheme": "dirichlet_label", "params": {"alpha": 1.0}}]}],
                algorithms=[{"algorithm": "fedavg", "grid": {"lr": [1e-3, 2e-3, 4e-3]}}], final={"seeds": [0, 1]},
                tuning={"seed": 0, "extensions": 1})
    scores = {1e-3: 0.7, 2e-3: 0.8, 4e-3: 0.6}
    runner = TierRunner(validation=lambda c: scores[c["lr"]], test=lambda c: 0.4)
    run(data, tmp_path, runner)
    plan = plan_json(tmp_path)
    assert len(runner.calls) == 4
    by_lr_seed = {(c["lr"], c["seed"]): (config_hash(c), c) for c in runner.calls}
    partition = {"scheme": "dirichlet_label", "params": {"alpha": 1.0}, "index": 0,
                 "label": "dirichlet_label(alpha=1.0)"}

    def entry(lr: float, seed: int) -> dict[str, Any]:
        digest, config = by_lr_seed[(lr, seed)]
        return {"config_hash": digest, "seed": seed, "run_id": run_id_of(config), "done": True}

    assert plan == {
        "schema": 2, "tier": "smoke", "suite": "t.yaml", "runs_dir": str(tmp_path / "runs"),
        "selection": "validation primary metric averaged over the evaluated rounds of the convergence window, ties to "
                     "the earlier grid point, on the grid as "
                     "its edge extensions grew it; tuning seed 0",
        "convergence": {"window": 0.5, "tolerance": 0.01, "min_points": 3},
        "tasks": [{"task": "classification", "partitions": [partition]}],
        "tuning": [{
            "task": "classification", "data": "20news", "partition": partition, "algorithm": "fedavg",
            "metric": "accuracy", "declared_axes": {"lr": [1e-3, 2e-3, 4e-3]}, "axes": {"lr": [1e-3, 2e-3, 4e-3]},
            "extension_cap": 1, "extensions": [],
            "grid": [{"point": {"lr": lr}, **entry(lr, 0), "validation": pytest.approx(scores[lr]), "step": 0}
                     for lr in (1e-3, 2e-3, 4e-3)],
            "chosen": {"lr": 2e-3}, "on_edge": [],
        }],
        "cells": [{
            "task": "classification", "data": "20news", "partition": partition, "algorithm": "fedavg",
            "algorithm_params": {}, "role": "federated", "hyperparameters": {"lr": 2e-3},
            "tuned_on": 0, "metric": "accuracy", "runs": [entry(2e-3, 0), entry(2e-3, 1)],
        }],
    }
    assert (tmp_path / "runs" / plan["cells"][0]["runs"][1]["run_id"] / "record.json").exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["plan.json"]  # atomic: no temp file left
