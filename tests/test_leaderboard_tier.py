"""Tier tables from a hand-written plan.json and fabricated records: statistics, convergence, traceability, files, CLI."""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest

from fednlp_bench.leaderboard.plan import PlanError, load_plan
from fednlp_bench.leaderboard.tier_build import TraceError, bytes_to_target
from fednlp_bench.leaderboard.tier_cells import hardware_label
from fednlp_bench.leaderboard.tier_plots import draw_gap_figure
from fednlp_bench.leaderboard.tier_tables import build_tier, write_tier_leaderboard
from fednlp_bench.results.record import RoundResult, RunRecord, config_hash
from fednlp_bench.suite import verify as verify_mod

HARDWARE = {"cpu": "AMD EPYC", "cpu_cores": 2, "torch_threads": 1, "gpu": None, "device": "cpu", "ram_gb": 23.5}
#: Every round sends 100 bytes up and 50 down.
UP, DOWN = 100, 50
IID = {"scheme": "iid", "params": {}, "index": 0}
A1 = {"scheme": "dirichlet_label", "params": {"alpha": 1.0}, "index": 1}
A01 = {"scheme": "dirichlet_label", "params": {"alpha": 0.1}, "index": 2}


def _config(algorithm: str, partition: dict[str, Any], seed: int, **changes: Any) -> dict[str, Any]:
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


def _record(runs: Path, run_id: str, config: dict[str, Any], test: float, curve: list[float],
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


def _cell(algorithm: str, partition: dict[str, Any], role: str, runs: list[dict[str, Any]],
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


@pytest.fixture
def tier(tmp_path: Path) -> Path:
    """A plan with both centralized roles, complete/incomplete/n=1 cells, a tuning table; returns plan.json."""
    runs = tmp_path / "repo" / "records"
    cells = []
    equal = [_record(runs, f"cen-eq-s{s}", _config("centralized", IID, s), t, [0.5, 0.7, 0.8], wall=30.0 + s)
             for s, t in enumerate([0.80, 0.82, 0.84])]
    cells.append(_cell("centralized", IID, "centralized_equal", equal))
    # Converged: best validation 0.9, 0.8, 1.0 -> mean 0.9 -> target 0.9 * 0.9 = 0.81.
    converged = [_record(runs, f"cen-conv-s{s}", _config("centralized", IID, s, rounds=5, test_best_round=True),
                         t, curve, wall=100.0, best_round_test=b)
                 for s, (t, b, curve) in enumerate([(0.85, 0.88, [0.7, 0.9, 0.85]), (0.86, 0.89, [0.6, 0.8, 0.7]),
                                                     (0.87, 0.90, [0.9, 1.0, 0.95])])]
    cells.append(_cell("centralized", IID, "centralized_converged", converged))
    # FedAvg IID: test [0.5, 0.6, 0.7]; validation reaches 0.81 at round 2 (seed 0), round 3 (seed 1), never
    # (seed 2): still rising. Clients: 10 qualifying per seed (worst 10% = the lowest one), 2 too small.
    fedavg = [_record(runs, f"avg-iid-s{s}", _config("fedavg", IID, s), t, curve, wall=20.0 + s,
                      worst=[w + 0.05 * k for k in range(10)])
              for s, (t, curve, w) in enumerate([(0.5, [0.5, 0.82, 0.9], 0.2), (0.6, [0.3, 0.4, 0.81], 0.3),
                                                  (0.7, [0.1, 0.2, 0.3], 0.4)])]
    cells.append(_cell("fedavg", IID, "federated", fedavg))
    # FedAvg alpha=1: 2 of 3 seeds done.
    part = [_record(runs, f"avg-a1-s{s}", _config("fedavg", A1, s), 0.55, [0.5, 0.6, 0.7]) for s in (0, 1)]
    part.append(_planned("avg-a1-s2", _config("fedavg", A1, 2)))
    cells.append(_cell("fedavg", A1, "federated", part))
    # FedAvg alpha=0.1 and FedAdam alpha=0.1 (both converged: flat curves), FedAdam IID (n=1).
    # FedAdam has the higher test mean, FedAvg the higher validation: FedAvg is the best (test never selects).
    # ... and it has counterfactual fairness: flip rates 0.10 / 0.12 / 0.14, client worst 0.3 / 0.4 / 0.5.
    cells.append(_cell("fedavg", A01, "federated", [
        _record(runs, f"avg-a01-s{s}", _config("fedavg", A01, s), t, [0.45, 0.46, 0.45],
                fairness=_fairness(0.10 + 0.02 * s, -0.01 * (s + 1), [0.1, 0.2, 0.3 + 0.1 * s]))
        for s, t in enumerate([0.40, 0.44, 0.48])]))
    cells.append(_cell("fedadam", A01, "federated", [
        _record(runs, f"adam-a01-s{s}", _config("fedadam", A01, s, lr=0.001), t, [0.35, 0.35, 0.36])
        for s, t in enumerate([0.50, 0.52, 0.54])], hyper={"lr": 0.001}))
    cells.append(_cell("fedadam", IID, "federated", [
        _record(runs, "adam-iid-s0", _config("fedadam", IID, 0, lr=0.001), 0.65, [0.5, 0.6, 0.79])],
        hyper={"lr": 0.001}))
    low = _record(runs, "tune-avg-lr0.001", _config("fedavg", IID, 0, lr=0.001), 0.3, [0.5, 0.6, 0.7])
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


def _task(plan: Path):
    _, tasks = build_tier(plan)
    assert [t.task for t in tasks] == ["classification"]
    return tasks[0]


# ---------------------------------------------------------------- numbers
def test_bytes_to_target_on_a_curve(tier: Path) -> None:
    task = _task(tier)
    assert task.target == pytest.approx(0.81) and task.target_role == "centralized_converged"
    record = next(i.record for i in task.cell(0, "fedavg").records if i.record.seed == 0)
    assert bytes_to_target(record, "accuracy", 0.81) == 2 * (UP + DOWN)  # round 2: 0.82
    assert bytes_to_target(record, "accuracy", 0.9) == 3 * (UP + DOWN)  # equality counts
    assert bytes_to_target(record, "accuracy", 0.95) is None
    cell = task.cell(0, "fedavg")
    assert cell.bytes_to_target == [300, 450, None]
    assert cell.mean_bytes_to_target == pytest.approx(375.0)
    assert task.cell(2, "fedadam").bytes_to_target == [None, None, None]


# ---------------------------------------------------------------- cells
def test_cells_centralized_roles_gap_and_details(tier: Path) -> None:
    task = _task(tier)
    equal, converged = task.centralized("centralized_equal"), task.centralized("centralized_converged")
    assert equal.summary.mean == pytest.approx(0.82) and equal.summary.std == pytest.approx(0.02)
    # Converged reports the test metric of its best-validation round.
    assert converged.summary.mean == pytest.approx(0.89)
    fedavg = task.cell(0, "fedavg")
    assert fedavg.summary.mean == pytest.approx(0.6) and fedavg.summary.std == pytest.approx(0.1)
    # Paired by seed: 0.5-0.80, 0.6-0.82, 0.7-0.84 = -0.30, -0.22, -0.14 (sd 0.08); Welch beside it.
    gap = fedavg.gap
    assert gap.value == pytest.approx(0.6 - 0.82) and gap.paired.mean == pytest.approx(-0.22)
    assert gap.paired.values == pytest.approx((-0.30, -0.22, -0.14)) and gap.paired.seeds == (0, 1, 2)
    assert gap.paired_half_width == pytest.approx(4.302653 * 0.08 / math.sqrt(3), abs=1e-6)
    assert gap.welch_half_width > gap.paired_half_width
    assert task.cell(2, "fedavg").gap.value == pytest.approx(0.44 - 0.82)
    assert fedavg.mean_total_bytes == pytest.approx(450.0) and fedavg.mean_wall_time_s == pytest.approx(21.0)
    # Worst 10% of the 10 qualifying clients (the 2 below the minimum never count): 0.2, 0.3, 0.4 -> 0.3.
    clients = fedavg.clients
    assert clients.worst.mean == pytest.approx(0.3) and clients.qualified == (10, 10, 10) and clients.clients == (12,) * 3
    low, high = clients.interval
    assert low == pytest.approx(0.3) and 0.3 < high < 0.45 and equal.clients is None
    partial = task.cell(1, "fedavg")
    assert (partial.n_done, partial.n_planned, partial.summary, partial.gap, partial.convergence) == (2, 3, None, None, None)
    assert [p.index for p in task.partitions] == [0, 1, 2] and task.algorithms == ["fedavg", "fedadam"]
    assert task.converged_overrides == {"rounds": 5, "test_best_round": True}
    assert "lr" not in task.budget and task.budget["rounds"] == 3 and task.budget["partition.num_clients"] == 10
    assert task.hardware == ["CPU AMD EPYC, 1 torch thread(s) of 2 cores"]
    assert hardware_label({"gpu": "NVIDIA H100 80GB HBM3", "device": "cuda"}) == "GPU NVIDIA H100 80GB HBM3"


def test_convergence_and_best_go_by_validation(tier: Path) -> None:
    task = _task(tier)
    rising = task.cell(0, "fedavg").convergence
    # Seed slopes over rounds 1-3: 0.20, 0.255, 0.10: the cell reports the largest
    assert rising.converged is False and rising.slope == pytest.approx(0.185) and rising.rising_seeds == 3  # the seed-mean curve
    assert rising.text() == "still rising (+0.1850 per round, 3/3 single seeds rising)"
    flat = task.cell(2, "fedavg").convergence
    assert flat.converged is True and flat.slope == pytest.approx(0.0)
    # alpha=0.1: FedAdam has the higher test mean (0.52 > 0.44), FedAvg the higher validation (0.45 > 0.36).
    assert task.best_federated(2) is task.cell(2, "fedavg")
    assert task.best_federated(0) is None  # IID: every FL cell is still rising, so none is marked
    assert task.best_federated(1) is None  # alpha=1: incomplete


def test_files_markdown_csv_readme_and_figure(tier: Path, tmp_path: Path) -> None:
    out = tmp_path / "published"  # outside the plan's folder: links must still resolve
    files = write_tier_leaderboard(tier, out)
    assert sorted(p.name for p in files) == ["README.md", "classification.csv", "classification.md", "gap_vs_alpha.png"]
    md = (out / "classification.md").read_text()
    hw = 4.302653 * 0.1 / math.sqrt(3)
    paired = 4.302653 * 0.08 / math.sqrt(3)
    assert (f"0.6000 ± 0.1000<br>95% CI [{0.6 - hw:.4f}, {0.6 + hw:.4f}], n=3<br>gap -0.2200 (paired 95% CI "
            f"±{paired:.4f}, n=3; Welch ±") in md
    assert "<br>still rising (+0.1850 per round, 3/3 single seeds rising) |" in md
    assert "| **0.4400 ± 0.0400<br>95% CI [0.3406, 0.5394], n=3**<br>gap -0.3800" in md  # best by validation
    assert "| Dirichlet α=1 | 0.8900 ± 0.0100" in md and "2/3 runs done" in md
    assert "0.6500<br>n=1<br>gap -0.1500 (paired n=1, no interval)" in md  # FedAdam IID: one seed
    assert "tuning pending" in md  # FedAdam alpha=1: its grid is not finished
    assert "| Partition | Centralized (converged) † | Centralized (equal budget) † | FedAvg | FedAdam |" in md
    assert "- Tier: `cpu`" in md and "- Hardware: CPU AMD EPYC, 1 torch thread(s) of 2 cores" in md
    assert "- Convergence: OLS slope of the seed-mean validation metric per round below 0.02 over the last 100% of the rounds" in md
    assert "- Every cell: run ids in [classification.csv](classification.csv)" in md
    assert "rounds=5, test_best_round=True" in md and "3 rounds" in md and "10 clients" in md
    assert ("| IID | FedAvg | lr=0.003 (tuned on IID) | 0.4811 ± 0.2707 95% CI [-0.1913, 1.1535], n=3 | 450 B | "
            "375 B (2/3 reached) | 21.0 s | 0.3000 [0.3000, ") in md
    assert "(10/12 clients with ≥20 examples) |" in md
    assert "| Dirichlet α=0.1 | FedAdam | lr=0.001 (tuned on IID) | 0.3533 ± 0.0000" in md
    assert "| IID | FedAvg | 2 | step 1: lr ↑ 0.003 (1) | lr=0.003 ⚠ still on the edge of lr after the cap |" in md
    assert "| IID | FedAvg | lr=0.003 | 1 | 0 | **0.7400** | **chosen** |" in md
    assert "| IID | FedAvg | lr=0.001 | 0 | 0 | 0.6000 |  |" in md
    assert "| Dirichlet α=1 | FedAdam | lr=0.001 | 0 | 0 | pending | choice pending |" in md

    rows = list(csv.DictReader((out / "classification.csv").open()))
    avg = next(r for r in rows if r["algorithm"] == "fedavg" and r["partition_index"] == "0")
    assert float(avg["mean"]) == pytest.approx(0.6) and float(avg["ci_high"]) == pytest.approx(0.6 + hw, abs=1e-6)
    assert avg["run_ids"] == "avg-iid-s0 avg-iid-s1 avg-iid-s2" and avg["bytes_to_target_runs"] == "300 450 none"
    assert avg["bytes_to_target_reached"] == "2/3" and float(avg["bytes_to_target_mean"]) == 375.0
    assert (avg["converged"], avg["best"], avg["gap_paired_n"]) == ("False", "False", "3")
    assert float(avg["gap_paired_ci_half_width"]) == pytest.approx(paired, abs=1e-6)
    assert avg["clients_qualified"] == "10 10 10" and float(avg["worst_10pct"]) == pytest.approx(0.3)
    best = next(r for r in rows if r["algorithm"] == "fedavg" and r["partition_index"] == "2")
    assert (best["converged"], best["best"]) == ("True", "True") and float(best["validation_mean"]) == pytest.approx((0.45 + 0.46 + 0.45) / 3)  # window mean
    partial = next(r for r in rows if r["algorithm"] == "fedavg" and r["partition_index"] == "1")
    assert (partial["complete"], partial["mean"], partial["n_done"], partial["done_run_ids"]) == \
        ("False", "", "2", "avg-a1-s0 avg-a1-s1")
    assert {r["role"] for r in rows} == {"federated", "centralized_equal", "centralized_converged"}

    readme = (out / "README.md").read_text()
    assert readme.index("## Headline") < readme.index("## Tables") < readme.index("gap_vs_alpha.png")
    assert "| classification | `20news` | `accuracy` | 0.8900 ± 0.0100 95% CI" in readme
    # Most skewed = alpha 0.1; best FL there by validation = FedAvg, though FedAdam's test mean is higher.
    assert ("FedAvg on Dirichlet α=0.1: 0.4400 ± 0.0400 95% CI [0.3406, 0.5394], n=3; gap -0.3800 (paired 95% CI "
            "±0.0497, n=3; Welch ±0.0831); converged (slope +0.0000/round)") in readme
    assert "— (IID: no converged FL cell; FedAvg still rising (+0.1850 per round, 3/3 single seeds rising)" in readme
    assert "| classification | 19 | 0.29 |" in readme  # records and CPU hours, tuning records included
    assert "[classification.md](classification.md)" in readme
    link = readme.split("[plan.json](")[1].split(")")[0]
    assert (out / link).resolve() == tier.resolve()

    png = (out / "gap_vs_alpha.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    assert matplotlib.image.imread(out / "gap_vs_alpha.png").shape[1] == 420  # one 4.2-inch panel at 100 dpi
    # Rebuilding from unchanged inputs gives identical files.
    before = {p.name: p.read_bytes() for p in files}
    write_tier_leaderboard(tier, out)
    assert {p.name: p.read_bytes() for p in files} == before


def test_fairness_section_lists_the_cells_whose_records_have_it(tier: Path, tmp_path: Path) -> None:
    write_tier_leaderboard(tier, tmp_path / "out")
    md = (tmp_path / "out" / "classification.md").read_text()
    section = md.split("## Counterfactual fairness (final models)")[1].split("## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| Dirichlet") or line.startswith("| IID")]
    assert len(rows) == 1 and rows[0].startswith("| Dirichlet α=0.1 | FedAvg |")  # only that cell has the section
    hw = 4.302653 * 0.02 / math.sqrt(3)
    assert f"| 0.1200 ± 0.0200 95% CI [{0.12 - hw:.4f}, {0.12 + hw:.4f}], n=3 |" in rows[0]  # flip rate over seeds
    assert "| -0.0200 ± 0.0100 " in rows[0] and "| 0.4000 ± 0.1000 " in rows[0]  # Δp and worst-10% clients
    assert f"| {(0.1 + 0.2 + 0.4) / 3:.4f} ± " in rows[0] and rows[0].endswith("| 3 of 4 |")
    assert "400 of 1,000 test rows" in section and "drawn from test" in section


def test_headline_copes_with_a_task_without_cells(tier: Path, tmp_path: Path) -> None:
    """A task whose tuning has just started (no cell yet) still gets its headline row."""
    def add_task(data: dict[str, Any]) -> None:
        entry = json.loads(json.dumps(data["tuning"][1]))
        entry.update(task="qa", data="squad", metric=None)
        data["tuning"].append(entry)

    _edit(tier, add_task)
    out = tmp_path / "out"
    write_tier_leaderboard(tier, out, figure=False)
    row = next(line for line in (out / "README.md").read_text().splitlines() if line.startswith("| qa |"))
    assert "| not run | not run | — (no such partition) | — (Dirichlet α=1: tuning pending) |" in row


def test_figure_has_one_panel_per_task_with_iid_at_the_right(tier: Path) -> None:
    task = _task(tier)
    fig = draw_gap_figure([task, task])
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.1", "1", "IID"]
    assert list(ax.get_xticks()) == pytest.approx([0.1, 1.0, 10.0])
    assert len(ax.get_legend().get_texts()) == 2  # FedAvg and FedAdam


def test_partition_without_alpha_is_left_out_of_the_figure_and_named(tier: Path, tmp_path: Path) -> None:
    runs = tier.parent.parent / "records"
    natural = {"scheme": "natural_id", "params": {"column": "author"}, "index": 3}
    cell = _cell("fedavg", natural, "federated", [
        _record(runs, f"avg-nat-s{s}", _config("fedavg", natural, s), 0.3 + s / 100, [0.1, 0.2, 0.3])
        for s in range(3)])
    _edit(tier, lambda d: d["cells"].append(cell))
    task = _task(tier)
    assert [p.scheme for p in task.partitions][-1] == "natural_id"
    assert task.most_skewed().alpha == pytest.approx(0.1)  # an alpha partition wins over natural_id
    out = tmp_path / "out"
    write_tier_leaderboard(tier, out)
    readme = (out / "README.md").read_text()
    assert "Partitions without α are not in the figure (see their tables): classification: Natural (author)." in readme
    assert "| Natural (author) | 0.8900" in (out / "classification.md").read_text()
    # Without any alpha (AESLC: IID + mailboxes) the most skewed partition is the last non-IID one.
    task.partitions = [p for p in task.partitions if p.alpha is None]
    assert task.most_skewed().scheme == "natural_id"


# ---------------------------------------------------------------- trace errors
def _edit(plan: Path, change) -> None:
    data = json.loads(plan.read_text())
    change(data)
    plan.write_text(json.dumps(data))


def test_missing_record_names_the_run_id(tier: Path) -> None:
    import shutil

    shutil.rmtree(tier.parent.parent / "records" / "avg-iid-s1")
    with pytest.raises(TraceError, match="run 'avg-iid-s1'.*does not exist"):
        build_tier(tier)


def test_mismatched_seed_or_hash_names_the_run_id(tier: Path) -> None:
    _edit(tier, lambda d: d["cells"][2]["runs"][1].update(seed=7))
    with pytest.raises(TraceError, match="run 'avg-iid-s1'.*seed 1, plan.json says .* seed 7"):
        build_tier(tier)
    _edit(tier, lambda d: d["cells"][2]["runs"][1].update(seed=1, config_hash="0" * 64))
    with pytest.raises(TraceError, match="run 'avg-iid-s1'.*not the planned run"):
        build_tier(tier)


def test_tuning_value_must_match_the_record(tier: Path) -> None:
    _edit(tier, lambda d: d["tuning"][0]["grid"][0].update(validation=0.71))
    with pytest.raises(TraceError, match="run 'tune-avg-lr0.001'.*0.71.*0.6"):
        build_tier(tier)


def test_bad_plan_is_named(tmp_path: Path, tier: Path) -> None:
    _edit(tier, lambda d: d["cells"][0].update(role="upper"))
    with pytest.raises(PlanError, match=r"cells\[0\]: role 'upper' is not one of federated"):
        load_plan(tier)
    with pytest.raises(PlanError, match="no such plan file"):
        load_plan(tmp_path / "nowhere.json")
    _edit(tier, lambda d: d["cells"][0].update(role="centralized_equal"))
    _edit(tier, lambda d: d.update(schema=1))
    with pytest.raises(PlanError, match="schema 1 is not supported"):
        load_plan(tier)
    _edit(tier, lambda d: (d.update(schema=2), d["convergence"].update(window=2)))
    with pytest.raises(PlanError, match="convergence.window=2 must be a share"):
        load_plan(tier)


def test_runs_dir_not_found(tier: Path) -> None:
    _edit(tier, lambda d: d.update(runs_dir="elsewhere/records"))
    with pytest.raises(FileNotFoundError, match="runs_dir 'elsewhere/records' was not found.*--runs"):
        build_tier(tier)
    assert build_tier(tier, runs_dir=tier.parent.parent / "records")[1][0].task == "classification"


# ---------------------------------------------------------------- CLI
def _cli(argv: list[str]) -> int:
    from fednlp_bench.commands import leaderboard

    parser = argparse.ArgumentParser()
    leaderboard.register(parser.add_subparsers())
    args = parser.parse_args(["leaderboard", *argv])
    return args.func(args)


@pytest.mark.parametrize("shift, code", [(0.0, 0), (1e-3, 1)])
def test_cli_verify_per_task_picks_the_fastest_run(tier: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys, shift: float, code: int) -> None:
    calls: list[dict[str, Any]] = []

    def runner(config: dict[str, Any], runs_dir: Path) -> RunRecord:
        calls.append(config)
        original = RunRecord.load(tier.parent.parent / "records" / "avg-iid-s0")
        rerun = RunRecord.from_dict(json.loads(json.dumps(original.to_dict())))
        rerun.final_metrics = {k: v + shift for k, v in rerun.final_metrics.items()}
        return rerun

    monkeypatch.setattr(verify_mod, "_load_runner", lambda: runner)
    out = tmp_path / "out"
    assert _cli(["--plan", str(tier), "--out", str(out), "--verify-per-task"]) == code
    # Fastest finished run: avg-iid-s0 (20 s); the 0.5 s cells are absent, tuning-only runs are not candidates.
    assert len(calls) == 1 and calls[0]["algorithm"] == "fedavg" and calls[0]["seed"] == 0
    printed = capsys.readouterr().out
    verdict = "REPRODUCED" if code == 0 else "NOT REPRODUCED"
    assert "classification: verifying avg-iid-s0 (fastest finished run, 20.0 s)" in printed
    assert f"classification: avg-iid-s0 -> {verdict}" in printed
    saved = json.loads((out / "verification.json").read_text())["avg-iid-s0"]
    assert saved["passed"] is (code == 0)
    assert ("| avg-iid-s0 | reproduced |" in (out / "README.md").read_text()) == (code == 0)


def test_cli_flags(tier: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert _cli(["--plan", str(tier), "--out", str(out), "--no-plots"]) == 0
    assert not (out / "gap_vs_alpha.png").exists() and (out / "classification.md").exists()
    assert "classification: 3 partitions x 2 FL algorithms, 6/7 cells complete" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # a tier plan or a trust table: one leaderboard command builds every table
        _cli(["--runs", str(tmp_path), "--out", str(out)])
    assert "one of the arguments --plan --trust is required" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--tolerance only applies to --verify"):
        _cli(["--plan", str(tier), "--out", str(out), "--tolerance", "1e-3"])


def test_cli_verify_one_run_id_with_plan(tier: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    def runner(config: dict[str, Any], runs_dir: Path) -> RunRecord:
        return RunRecord.load(tier.parent.parent / "records" / "adam-a01-s1")

    monkeypatch.setattr(verify_mod, "_load_runner", lambda: runner)
    out = tmp_path / "out"
    assert _cli(["--plan", str(tier), "--out", str(out), "--verify", "adam-a01-s1", "--tolerance", "0"]) == 0
    assert "REPRODUCED" in capsys.readouterr().out
    assert "| adam-a01-s1 | reproduced |" in (out / "README.md").read_text()


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} \
        if folder.exists() else {}


def test_failing_plan_verify_writes_nothing(tier: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--plan with an unknown --verify id (once 13 files were written first), or a task with nothing to verify."""
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="no record with run_id 'nope'"):
        _cli(["--plan", str(tier), "--out", str(out), "--verify", "nope"])
    assert not out.exists()
    assert _cli(["--plan", str(tier), "--out", str(out), "--no-plots"]) == 0
    before = _tree(out)
    from fednlp_bench.suite import tier_verify

    monkeypatch.setattr(tier_verify, "fastest_record", lambda task: None)
    with pytest.raises(ValueError, match=r"--verify-per-task: task\(s\) classification .* no finished run"):
        _cli(["--plan", str(tier), "--out", str(out), "--verify-per-task"])
    assert _tree(out) == before
