"""A hand-written tier plan.json and fabricated records for the tier-table tests: both centralized roles,
complete, incomplete and n=1 cells, a tuning table with an extension, fairness sections."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


from fednlp_bench.leaderboard.tier_tables import build_tier
from fednlp_bench.results.record import RoundResult, RunRecord, config_hash


HARDWARE = {"cpu": "AMD EPYC", "cpu_cores": 2, "torch_threads": 1, "gpu": None, "device": "cpu", "ram_gb": 23.5}
#: Every round sends 100 bytes up and 50 down.
UP, DOWN = 100, 50
IID = {"scheme": "iid", "params": {}, "index": 0}
A1 = {"scheme": "dirichlet_label", "params": {"alpha": 1.0}, "index": 1}
A01 = {"scheme": "dirichlet_label", "params": {"alpha": 0.1}, "index": 2}


def run_config(algorithm: str, partition: dict[str, Any], seed: int, **changes: Any) -> dict[str, Any]:
    config = {
        "task": "classification", "data": "20news", "model": "minilm", "max_length": 128,
        "max_train_examples": 2000, "max_eval_examples": 500,
        "partition": {"scheme": partition["scheme"], "num_clients": 10, "seed": seed, "min_size": 2,
                      "params": partition["params"]},
        "algorithm": algorithm, "algorithm_params": {}, "rounds": 3, "clients_per_round": 5, "local_epochs": 1,
        "local_steps": None, "batch_size": 16, "lr": 0.003, "optimizer": "adamw", "sampling": "uniform",
        "dropout": 0.0, "eval_every": 1, "seed": seed, "backend": "inprocess", "client_eval": True,
    }
    config.update(changes)
    return config


def _client_eval(values: list[float], small: int = 0) -> dict[str, Any]:
    """A v2 client_eval section: ``values`` of qualifying clients, plus ``small`` clients below the minimum."""
    clients = [{"client": i, "accuracy": v, "units": 40, "qualified": True} for i, v in enumerate(values)]
    clients += [{"client": len(values) + i, "accuracy": 0.0, "units": 3, "qualified": False} for i in range(small)]
    return {"metric": "accuracy", "clients": clients,
            "summary": {"clients": len(clients), "qualified": len(values), "min_units": 20, "unit": "examples"}}


def _fairness(flip_rate: float, delta: float, client_rates: list[float]) -> dict[str, Any]:
    """A record's fairness section: 400 of 1,000 test rows changed; client flip rates as given."""
    per_client = [{"client": i, "test_rows": 50, "changed_rows": 20, "flips": round(r * 20), "flip_rate": r,
                   "delta_true_prob_mean": delta} for i, r in enumerate(client_rates)]
    per_client.append({"client": len(client_rates), "test_rows": 50, "changed_rows": 0, "flips": 0,
                       "flip_rate": None, "delta_true_prob_mean": None})
    ordered = sorted(client_rates, reverse=True)
    return {"counterfactual": {
        "word_list": "gender", "word_list_sha256": "ab" * 32, "pairs": 120, "split": "test", "split_rows": 1000,
        "changed_rows": 400, "flips": round(flip_rate * 400), "flip_rate": flip_rate, "delta_true_prob_mean": delta,
        "clients": {"source": "client_eval local sets drawn from test", "per_client": per_client,
                    "summary": {"clients": len(client_rates), "mean_flip_rate": sum(client_rates) / len(client_rates),
                                "max_flip_rate": ordered[0], "worst_10pct_flip_rate": ordered[0]}}}}


def write_record(runs: Path, run_id: str, config: dict[str, Any], test: float, curve: list[float],
            wall: float = 60.0, worst: list[float] | None = None, best_round_test: float | None = None,
            fairness: dict[str, Any] | None = None) -> dict[str, Any]:
    """Save a record; return its plan.json run entry."""
    rounds = [RoundResult(round=r, clients=[0, 1], train_loss=0.5, metrics={"accuracy": v}, bytes_up=UP,
                          bytes_down=DOWN, wall_time_s=wall / len(curve)) for r, v in enumerate(curve, start=1)]
    record = RunRecord(
        run_id=run_id, created="2026-11-26T00:00:00", task="classification", algorithm=config["algorithm"],
        seed=config["seed"], config=config, config_hash=config_hash(config),
        partition={**config["partition"], "fingerprint": "f" * 64, "content_hash": "c" * 64},
        primary_metric="accuracy", final_metrics={"accuracy": test, "loss": 1.0 - test}, rounds=rounds,
        wall_time_s=wall, bytes_up=UP * len(curve), bytes_down=DOWN * len(curve), versions={"torch": "2.13.0"},
        git_commit="abc123", hardware=dict(HARDWARE),
        client_eval=None if worst is None else _client_eval(worst, small=2), fairness=fairness,
        test=None if best_round_test is None else {
            "split": "test", "rows": 500, "model": "final round",
            "best_round": {"round": 2, "validation": {"accuracy": max(curve)}, "test": {"accuracy": best_round_test}}},
    )
    record.save(runs / run_id)
    return {"config_hash": record.config_hash, "seed": record.seed, "run_id": run_id, "done": True}


def plan_cell(algorithm: str, partition: dict[str, Any], role: str, runs: list[dict[str, Any]],
          hyper: dict[str, Any] | None = None, tuned_on: int = 0) -> dict[str, Any]:
    label = partition["scheme"]
    # "metric" and "overrides" are written by the suite too; the tables read the records' own values.
    return {"task": "classification", "data": "20news", "partition": {**partition, "label": label},
            "algorithm": algorithm, "algorithm_params": {}, "role": role, "metric": "accuracy",
            "hyperparameters": hyper or {"lr": 0.003}, "tuned_on": tuned_on, "runs": runs,
            **({"overrides": {"rounds": 5, "test_best_round": True}} if role == "centralized_converged" else {})}


def _planned(run_id: str, config: dict[str, Any]) -> dict[str, Any]:
    """A run the plan lists but that has not finished (no record)."""
    return {"config_hash": config_hash(config), "seed": config["seed"], "run_id": run_id, "done": False}


def build_tier_plan(tmp_path: Path) -> Path:
    """A plan with both centralized roles, complete/incomplete/n=1 cells, a tuning table; returns plan.json."""
    runs = tmp_path / "repo" / "records"
    cells = []
    equal = [write_record(runs, f"cen-eq-s{s}", run_config("centralized", IID, s), t, [0.5, 0.7, 0.8], wall=30.0 + s)
             for s, t in enumerate([0.80, 0.82, 0.84])]
    cells.append(plan_cell("centralized", IID, "centralized_equal", equal))
    # Converged: best validation 0.9, 0.8, 1.0 -> mean 0.9 -> target 0.9 * 0.9 = 0.81.
    converged = [write_record(runs, f"cen-conv-s{s}", run_config("centralized", IID, s, rounds=5, test_best_round=True),
                         t, curve, wall=100.0, best_round_test=b)
                 for s, (t, b, curve) in enumerate([(0.85, 0.88, [0.7, 0.9, 0.85]), (0.86, 0.89, [0.6, 0.8, 0.7]),
                                                     (0.87, 0.90, [0.9, 1.0, 0.95])])]
    cells.append(plan_cell("centralized", IID, "centralized_converged", converged))
    # FedAvg IID: test [0.5, 0.6, 0.7]; validation reaches 0.81 at round 2 (seed 0), round 3 (seed 1), never
    # (seed 2): still rising. Clients: 10 qualifying per seed (worst 10% = the lowest one), 2 too small.
    fedavg = [write_record(runs, f"avg-iid-s{s}", run_config("fedavg", IID, s), t, curve, wall=20.0 + s,
                      worst=[w + 0.05 * k for k in range(10)])
              for s, (t, curve, w) in enumerate([(0.5, [0.5, 0.82, 0.9], 0.2), (0.6, [0.3, 0.4, 0.81], 0.3),
                                                  (0.7, [0.1, 0.2, 0.3], 0.4)])]
    cells.append(plan_cell("fedavg", IID, "federated", fedavg))
    # FedAvg alpha=1: 2 of 3 seeds done.
    part = [write_record(runs, f"avg-a1-s{s}", run_config("fedavg", A1, s), 0.55, [0.5, 0.6, 0.7]) for s in (0, 1)]
    part.append(_planned("avg-a1-s2", run_config("fedavg", A1, 2)))
    cells.append(plan_cell("fedavg", A1, "federated", part))
    # FedAvg alpha=0.1 and FedAdam alpha=0.1 (both converged: flat curves), FedAdam IID (n=1).
    # FedAdam has the higher test mean, FedAvg the higher validation: FedAvg is the best (test never selects).
    # ... and it has counterfactual fairness: flip rates 0.10 / 0.12 / 0.14, client worst 0.3 / 0.4 / 0.5.
    cells.append(plan_cell("fedavg", A01, "federated", [
        write_record(runs, f"avg-a01-s{s}", run_config("fedavg", A01, s), t, [0.45, 0.46, 0.45],
                fairness=_fairness(0.10 + 0.02 * s, -0.01 * (s + 1), [0.1, 0.2, 0.3 + 0.1 * s]))
        for s, t in enumerate([0.40, 0.44, 0.48])]))
    cells.append(plan_cell("fedadam", A01, "federated", [
        write_record(runs, f"adam-a01-s{s}", run_config("fedadam", A01, s, lr=0.001), t, [0.35, 0.35, 0.36])
        for s, t in enumerate([0.50, 0.52, 0.54])], hyper={"lr": 0.001}))
    cells.append(plan_cell("fedadam", IID, "federated", [
        write_record(runs, "adam-iid-s0", run_config("fedadam", IID, 0, lr=0.001), 0.65, [0.5, 0.6, 0.79])],
        hyper={"lr": 0.001}))
    low = write_record(runs, "tune-avg-lr0.001", run_config("fedavg", IID, 0, lr=0.001), 0.3, [0.5, 0.6, 0.7])
    tuning = [
        {"task": "classification", "data": "20news", "partition": {**IID, "label": "iid"}, "algorithm": "fedavg",
         "metric": "accuracy", "chosen": {"lr": 0.003},
         "declared_axes": {"lr": [0.001]}, "axes": {"lr": [0.001, 0.003]}, "extension_cap": 1,
         "extensions": [{"step": 1, "axis": "lr", "side": "high", "value": 0.003}], "on_edge": ["lr"],
         "grid": [{"point": {"lr": 0.001}, "validation": 0.6, "step": 0,  # window means (the window is every round)
                   **{k: low[k] for k in ("config_hash", "seed", "run_id")}},
                  {"point": {"lr": 0.003}, "validation": (0.5 + 0.82 + 0.9) / 3, "step": 1,
                   **{k: fedavg[0][k] for k in ("config_hash", "seed", "run_id")}}]},
        {"task": "classification", "data": "20news", "partition": {**A1, "label": "a1"}, "algorithm": "fedadam",
         "metric": None, "chosen": None,  # the suite writes null before any record names the metric
         "grid": [{"point": {"lr": 0.001}, "validation": None, "config_hash": "x" * 64, "seed": 0, "run_id": "nope",
                   "done": False}]},
    ]
    plan = {"schema": 2, "tier": "cpu", "suite": "configs/suite-cpu.yaml", "runs_dir": "records",
            "selection": "validation primary metric at the final round, tuning seed 0",
            "convergence": {"window": 1.0, "tolerance": 0.02, "min_points": 3}, "tuning": tuning, "cells": cells}
    path = tmp_path / "repo" / "lb" / "plan.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(plan, indent=1))
    return path


def only_task(plan: Path):
    _, tasks = build_tier(plan)
    assert [t.task for t in tasks] == ["classification"]
    return tasks[0]


def edit_plan(plan: Path, change) -> None:
    """Rewrite plan.json through ``change(data)``: how a test breaks one link of the trace."""
    data = json.loads(plan.read_text())
    change(data)
    plan.write_text(json.dumps(data))
