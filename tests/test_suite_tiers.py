"""Two-stage tier suites: grid expansion, selection on validation, plan.json, stages, chunked runs."""

from __future__ import annotations

import argparse
import copy
import hashlib
import io
import json
import sys
import types
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from fednlp_bench.engine.run_id import run_id_of
from fednlp_bench.suite import spec as suite_mod
from fednlp_bench.suite import tier_plan
from fednlp_bench.suite.stages import run_two_stage
from fednlp_bench.suite.spec import parse_suite, plan_suite
from fednlp_bench.suite.tier_plan import build_tier_plan
from fednlp_bench.results.record import RoundResult, RunRecord, config_hash

REPO = Path(__file__).resolve().parents[1]

BASE = {"model": "tiny", "max_length": 32, "max_train_examples": 200, "max_eval_examples": 50,
        "partition": {"num_clients": 4, "min_size": 2}, "rounds": 2, "clients_per_round": 2,
        "local_epochs": 1, "batch_size": 8, "lr": 1e-4, "eval_every": 2}


def tier(**changes: Any) -> dict[str, Any]:
    """A one-task tier suite: 2 partitions, centralized + fedavg + fedprox, 2 grid points each."""
    data = {
        "tier": "smoke",
        "base": copy.deepcopy(BASE),
        "tasks": [{"task": "classification", "data": "20news",
                   "partitions": ["iid", {"scheme": "dirichlet_label", "params": {"alpha": 0.1}}]}],
        "algorithms": [
            {"algorithm": "centralized", "grid": {"lr": [1e-3, 3e-3]}},
            {"algorithm": "fedavg", "grid": {"lr": [1e-3, 3e-3]}},
            {"algorithm": "fedprox", "grid": {"lr": [1e-3], "mu": [0.01, 0.1]}},
        ],
        "tuning": {"seed": 0, "partitions": "all"},
        "final": {"seeds": [0, 1]},
    }
    data.update(changes)
    return data


def lr_prefers(best: float) -> Callable[[dict[str, Any]], float]:
    """A validation score that peaks at lr == best (and prefers mu=0.1 a little)."""
    return lambda c: 0.9 - abs(c["lr"] - best) * 10 + 0.01 * c.get("algorithm_params", {}).get("mu", 0)


class TierRunner:
    """Writes a real RunRecord under the engine's run id, with chosen validation and test values."""

    def __init__(self, validation: Callable[[dict[str, Any]], float] = lr_prefers(3e-3),
                 test: Callable[[dict[str, Any]], float] = lambda c: 0.5, last_metric: bool = True) -> None:
        self.calls: list[dict[str, Any]] = []
        self.validation, self.test, self.last_metric = validation, test, last_metric

    def __call__(self, config: dict[str, Any], runs_dir: Path) -> RunRecord:
        self.calls.append(config)
        run_id = run_id_of(config)
        metric = "accuracy" if config["task"] == "classification" else "f1"
        last = {metric: self.validation(config)} if self.last_metric else {}
        record = RunRecord(
            run_id=run_id, created="2026-11-26T04:00:00", task=config["task"], algorithm=config["algorithm"],
            seed=config["seed"], config=config, config_hash=config_hash(config),
            partition={**config["partition"], "content_hash": "c" * 64}, primary_metric=metric,
            final_metrics={metric: self.test(config)},
            rounds=[RoundResult(round=r, clients=[0], train_loss=1.0, metrics={} if r < 2 else last,
                                bytes_up=1, bytes_down=1, wall_time_s=0.1) for r in (1, 2)],
            wall_time_s=0.2, bytes_up=2, bytes_down=2, versions={}, git_commit=None, hardware={})
        record.save(Path(runs_dir) / run_id)
        return record

    @property
    def keys(self) -> list[tuple[str, int]]:
        return [(config_hash(c), c["seed"]) for c in self.calls]


def run(data: dict[str, Any], tmp: Path, runner: TierRunner, **kwargs: Any) -> tuple[Any, str]:
    log = io.StringIO()
    report = run_two_stage(parse_suite(data, source="t.yaml"), tmp / "runs", tmp / "out", runner=runner,
                           stream=log, **kwargs)
    return report, log.getvalue()


def plan_json(tmp: Path) -> dict[str, Any]:
    return json.loads((tmp / "out" / "plan.json").read_text())


# ---------------------------------------------------------------- parsing and expansion
def test_grid_expansion_counts_and_key_routing() -> None:
    plan = build_tier_plan(parse_suite(tier()))
    # centralized tuned once (first partition) + fedavg and fedprox on each of 2 partitions, 2 points each
    assert [(u.algorithm, u.partition.index, len(u.runs)) for u in plan.units] == [
        ("centralized", 0, 2), ("fedavg", 0, 2), ("fedavg", 1, 2), ("fedprox", 0, 2), ("fedprox", 1, 2)]
    assert len(plan.tuning_runs()) == 10
    prox = [u for u in plan.units if u.algorithm == "fedprox"][1]
    assert prox.points == [{"lr": 1e-3, "mu": 0.01}, {"lr": 1e-3, "mu": 0.1}]
    config = prox.runs[1].config
    assert config["lr"] == 1e-3 and config["algorithm_params"] == {"mu": 0.1} and "mu" not in config
    assert config["partition"]["params"] == {"alpha": 0.1} and config["partition"]["seed"] == 0
    assert config["eval_every"] == 2 and config["seed"] == 0
    fedavg = plan.units[1].runs
    assert [r.config["lr"] for r in fedavg] == [1e-3, 3e-3] and fedavg[0].config["algorithm_params"] == {}
    assert [(c.algorithm, c.partition.index, c.role) for c in plan.cells] == [
        ("centralized", 0, "centralized_equal"), ("fedavg", 0, "federated"), ("fedprox", 0, "federated"),
        ("fedavg", 1, "federated"), ("fedprox", 1, "federated")]
    # fixed algorithm_params and grid parameters merge; the grid wins on a shared key
    fixed = tier(algorithms=[{"algorithm": "fedadam", "algorithm_params": {"beta1": 0.8, "tau": 0.5},
                              "grid": {"server_lr": [0.01, 0.03], "tau": [1e-3]}}])
    run0 = build_tier_plan(parse_suite(fixed)).units[0].runs[1].config
    assert run0["algorithm_params"] == {"beta1": 0.8, "tau": 1e-3, "server_lr": 0.03}


def test_unequal_grid_sizes_are_an_error_naming_each_size() -> None:
    bad = tier(algorithms=[{"algorithm": "fedavg", "grid": {"lr": [1e-3, 3e-3, 1e-2]}},
                           {"algorithm": "fedprox", "grid": {"mu": [0.01, 0.1]}}, "fedadam"])
    with pytest.raises(ValueError, match=r"same number of points .*fedavg: 3, fedprox: 2, fedadam: 1 \(no grid\)"):
        build_tier_plan(parse_suite(bad))
    no_grids = build_tier_plan(parse_suite(tier(algorithms=["fedavg", "fedprox"])))
    assert [len(u.runs) for u in no_grids.units] == [1, 1, 1, 1]  # fixed settings: one point each


def test_unknown_keys_get_did_you_mean() -> None:
    cases = [
        (tier(tuning={"sed": 0}), "unknown key 'sed' in 'tuning'. Did you mean 'seed'?"),
        (tier(final={"seed": [0]}), "unknown key 'seed' in 'final'. Did you mean 'seeds'?"),
        (tier(tier="cpuu"), "unknown tier 'cpuu'. Did you mean 'cpu'?"),
        (tier(final={"seeds": [0], "centralized_converged": {"roundz": 9}}), "Did you mean 'rounds'?"),
        (tier(tuning={"partitions": "every"}), "tuning.partitions must be 'all' or a non-empty list"),
        (tier(seeds=[0, 1]), "remove the top-level 'seeds'"),
        (tier(final={"seeds": [0], "centralized_converged": {"seed": 3}}), "may not set 'seed'"),
        ({k: v for k, v in tier().items() if k != "final"}, "'tuning' needs a 'final' section too"),
    ]
    for data, message in cases:
        with pytest.raises(ValueError) as err:
            parse_suite(data, source="t.yaml")
        assert message in str(err.value)
    grid_typo = tier(algorithms=[{"algorithm": "fedprox", "grid": {"muu": [0.01, 0.1]}}])
    with pytest.raises(ValueError, match="grid key 'muu' is neither .* Did you mean 'mu'"):
        build_tier_plan(parse_suite(grid_typo))
    with pytest.raises(ValueError, match="grid key 'seed' defines the cell"):
        parse_suite(tier(algorithms=[{"algorithm": "fedavg", "grid": {"seed": [0, 1]}}]))
    with pytest.raises(ValueError, match="'fedavg' has a 'grid' but the suite has no 'tuning'"):
        parse_suite({"base": BASE, "tasks": ["classification"], "partitions": ["iid"], "seeds": [0],
                     "algorithms": [{"algorithm": "fedavg", "grid": {"lr": [1e-3]}}]})
    with pytest.raises(ValueError, match="a tier suite .* add 'tuning'"):
        parse_suite({"tier": "cpu", "base": BASE, "tasks": ["classification"], "partitions": ["iid"],
                     "seeds": [0], "algorithms": ["fedavg"]})
    with pytest.raises(ValueError, match=r"tuning.partitions \[2\] names index\(es\) \[2\], but task "
                                         r"'classification' has 2 partition"):
        build_tier_plan(parse_suite(tier(tuning={"partitions": [2]})))
    with pytest.raises(ValueError, match="centralized_converged is set but no 'centralized'"):
        build_tier_plan(parse_suite(tier(algorithms=["fedavg"], final={"seeds": [0], "centralized_converged":
                                                                        {"rounds": 4}})))


def test_empty_tuning_section_means_seed_0_on_all_partitions() -> None:
    spec = parse_suite(tier(tuning={})).tuning
    assert spec is not None and (spec.seed, spec.partitions) == (0, "all")


def test_whole_protocol_is_validated_before_anything_runs(tmp_path: Path) -> None:
    bad = tier(final={"seeds": [0], "centralized_converged": {"rounds": 0}})
    runner = TierRunner()
    with pytest.raises(ValueError, match=r"2 invalid run config\(s\); nothing was run:\n .*lr=0.001 · seed 0 \(centralized_converged\): rounds=0"):
        run(bad, tmp_path, runner)
    assert runner.calls == [] and not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


def test_eval_schedule_that_skips_the_last_round_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tier_plan, "evaluates_round", lambda rnd, rounds, every: rnd % every == 0)
    with pytest.raises(ValueError, match="eval_every=3 does not evaluate the last round \\(2\\)"):
        build_tier_plan(parse_suite(tier(base={**BASE, "eval_every": 3})))
    build_tier_plan(parse_suite(tier()))  # eval_every 2 divides rounds 2


def test_tiers_registry_and_help() -> None:
    from fednlp_bench.commands import suite as command
    from fednlp_bench.leaderboard.tiers import TIERS

    assert TIERS.names() == ["smoke", "cpu", "gpu"]
    assert TIERS.label("cpu") == "CPU tier"
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    help_text = parser._subparsers._group_actions[0].choices["suite"].format_help()  # type: ignore[union-attr]
    assert "cpu: the tables published from a 2-core CPU machine" in " ".join(help_text.split())


def test_shipped_one_stage_suite_plans_exactly_the_same_runs() -> None:
    # sha256 of the planned [config_hash, seed] list of configs/suite.yaml, computed before tier suites existed
    planned = plan_suite(suite_mod.load_suite(REPO / "configs" / "suite.yaml"))
    keys = json.dumps([list(r.key) for r in planned]).encode()
    assert hashlib.sha256(keys).hexdigest() == "3c63db9a3cb847044b9fb4d94c158a6208c91d4edf5d90e5e5ec76f5b222fbc6"


def test_one_stage_suite_takes_per_task_partitions() -> None:
    data = {"base": BASE, "seeds": [0], "algorithms": ["fedavg"], "partitions": ["iid"],
            "tasks": [{"task": "classification", "data": "20news",
                       "partitions": [{"scheme": "dirichlet_label", "params": {"alpha": 1.0}}, "iid"]},
                      {"task": "tagging", "data": "wnut17"}]}
    planned = plan_suite(parse_suite(data))
    assert [(r.config["task"], r.config["partition"]["scheme"]) for r in planned] == [
        ("classification", "dirichlet_label"), ("classification", "iid"), ("tagging", "iid")]
    assert "partitions" not in planned[0].config


# ---------------------------------------------------------------- selection and stages
def test_selection_uses_validation_never_test(tmp_path: Path) -> None:
    # validation peaks at lr=3e-3, test at lr=1e-3: the choice must follow validation
    runner = TierRunner(validation=lr_prefers(3e-3), test=lambda c: 0.9 - abs(c["lr"] - 1e-3) * 10)
    report, _ = run(tier(), tmp_path, runner)
    assert report.complete
    plan = plan_json(tmp_path)
    chosen = {(t["algorithm"], t["partition"]["index"]): t["chosen"] for t in plan["tuning"]}
    assert chosen == {("centralized", 0): {"lr": 3e-3}, ("fedavg", 0): {"lr": 3e-3}, ("fedavg", 1): {"lr": 3e-3},
                      ("fedprox", 0): {"lr": 1e-3, "mu": 0.1}, ("fedprox", 1): {"lr": 1e-3, "mu": 0.1}}
    assert {c["algorithm"]: c["hyperparameters"] for c in plan["cells"]}["fedavg"] == {"lr": 3e-3}


def test_ties_go_to_the_earlier_grid_point(tmp_path: Path) -> None:
    run(tier(), tmp_path, TierRunner(validation=lambda c: 0.5))
    assert {t["algorithm"]: t["chosen"] for t in plan_json(tmp_path)["tuning"]}["fedprox"] == {"lr": 1e-3, "mu": 0.01}


def test_final_runs_identical_to_tuning_runs_are_not_rerun(tmp_path: Path) -> None:
    runner = TierRunner()
    report, log = run(tier(), tmp_path, runner)
    # tuning: 10; final: every cell's seed 0 run is its tuning run, so only seed 1 is new: 5 cells x 1
    assert len(runner.calls) == 15 and len(set(runner.keys)) == 15
    assert [c["seed"] for c in runner.calls[10:]] == [1] * 5
    assert "final: 5 runs to do" in log
    plan = plan_json(tmp_path)
    fedavg1 = next(c for c in plan["cells"] if c["algorithm"] == "fedavg" and c["partition"]["index"] == 1)
    tuned = next(t for t in plan["tuning"] if t["algorithm"] == "fedavg" and t["partition"]["index"] == 1)
    assert fedavg1["runs"][0]["run_id"] == tuned["grid"][1]["run_id"]  # seed 0 is the tuning record
    again = TierRunner()
    report, _ = run(tier(), tmp_path, again)
    assert again.calls == [] and report.complete


def test_tuning_on_listed_partitions_applies_the_choice_everywhere(tmp_path: Path) -> None:
    data = tier(tuning={"seed": 0, "partitions": [1]})
    prefers = {0: 1e-3, 1: 3e-3}  # the partition tuned on (1) prefers 3e-3

    def validation(c: dict[str, Any]) -> float:
        return lr_prefers(prefers[0 if c["partition"]["scheme"] == "iid" else 1])(c)

    runner = TierRunner(validation=validation)
    run(data, tmp_path, runner)
    plan = plan_json(tmp_path)
    assert [(t["algorithm"], t["partition"]["index"]) for t in plan["tuning"]] == [
        ("centralized", 1), ("fedavg", 1), ("fedprox", 1)]
    fedavg = [c for c in plan["cells"] if c["algorithm"] == "fedavg"]
    assert [(c["partition"]["index"], c["tuned_on"], c["hyperparameters"]) for c in fedavg] == [
        (0, 1, {"lr": 3e-3}), (1, 1, {"lr": 3e-3})]
    central = next(c for c in plan["cells"] if c["role"] == "centralized_equal")
    assert (central["partition"]["index"], central["tuned_on"]) == (0, 1)
    # tuning 6; final: centralized 2 seeds on partition 0 (not tuned there), fedavg/fedprox p0 2 seeds, p1 seed 1
    assert len(runner.calls) == 6 + 2 + 2 * 2 + 2 * 1
    assert all(c["lr"] == 3e-3 for c in runner.calls[6:] if c["algorithm"] == "fedavg")


def test_centralized_equal_and_converged_cells(tmp_path: Path) -> None:
    data = tier(final={"seeds": [0, 1], "centralized_converged": {"rounds": 4, "test_best_round": True}})
    runner = TierRunner()
    run(data, tmp_path, runner)
    cells = [c for c in plan_json(tmp_path)["cells"] if c["algorithm"] == "centralized"]
    assert [(c["role"], c["partition"]["index"], c["hyperparameters"]) for c in cells] == [
        ("centralized_equal", 0, {"lr": 3e-3}), ("centralized_converged", 0, {"lr": 3e-3})]
    assert cells[1]["overrides"] == {"rounds": 4, "test_best_round": True} and "overrides" not in cells[0]
    converged = [c for c in runner.calls if c["algorithm"] == "centralized" and c["rounds"] == 4]
    assert [(c["seed"], c["lr"], c["test_best_round"]) for c in converged] == [(0, 3e-3, True), (1, 3e-3, True)]
    assert all(r["done"] for c in cells for r in c["runs"])
    assert len(runner.calls) == 10 + 5 + 2  # the converged runs are new for every seed


def test_max_runs_stops_cleanly_and_the_next_call_continues(tmp_path: Path) -> None:
    calls: list[tuple[str, int]] = []
    logs = []
    for _ in range(10):
        runner = TierRunner()
        report, log = run(tier(), tmp_path, runner, max_runs=4, command="fednlp-bench suite t.yaml")
        calls += runner.keys
        logs.append(log)
        assert len(runner.calls) <= 4
        if report.complete:
            break
    assert len(calls) == 15 and len(set(calls)) == 15  # the same 15 runs as one call, none twice
    assert ("stopped after 4 run(s): 11 run(s) remain; continue with: fednlp-bench suite t.yaml --max-runs 4"
            in logs[0])
    assert "final: classification: pending tuning: 5 runs once tuning is complete" in logs[0]
    assert "stopped after 4 run(s): 3 run(s) remain" in logs[2]  # 10 tuning done, final: 2 of 5 done
    assert "remain" not in logs[3] and len(logs) == 4
    assert (tmp_path / "out" / "plan.json").exists()


def test_plan_is_written_after_a_stopped_tuning_stage(tmp_path: Path) -> None:
    run(tier(), tmp_path, TierRunner(), max_runs=3)
    plan = plan_json(tmp_path)
    done = [g["done"] for t in plan["tuning"] for g in t["grid"]]
    assert done.count(True) == 3
    # only centralized (tuned first) has a known choice: its cell is listed, its seed-1 run not done yet
    assert [(c["role"], [r["done"] for r in c["runs"]]) for c in plan["cells"]] == [
        ("centralized_equal", [True, False])]
    central = plan["tuning"][0]
    assert central["chosen"] == {"lr": 3e-3} and central["grid"][1]["validation"] == pytest.approx(0.9)
    assert plan["tuning"][1]["chosen"] is None and plan["tuning"][1]["grid"][1]["validation"] is None


def test_task_filter_runs_only_that_task(tmp_path: Path) -> None:
    data = tier(tasks=[{"task": "classification", "data": "20news", "partitions": ["iid"]},
                       {"task": "tagging", "data": "wnut17", "partitions": ["iid"]}])
    runner = TierRunner()
    report, _ = run(data, tmp_path, runner, tasks=["tagging"])
    assert report.complete and {c["task"] for c in runner.calls} == {"tagging"}
    assert len(runner.calls) == 6 + 3  # 3 algorithms x 2 points, then seed 1 of 3 cells
    plan = plan_json(tmp_path)
    assert {t["task"] for t in plan["tuning"]} == {"classification", "tagging"}  # the plan covers the suite
    assert {c["task"] for c in plan["cells"]} == {"tagging"}
    with pytest.raises(ValueError, match="--task 'taging': .* Did you mean 'tagging'"):
        run(data, tmp_path, TierRunner(), tasks=["taging"])


def test_dry_run_lists_tuning_and_counts_final_runs(tmp_path: Path) -> None:
    runner = TierRunner()
    data = tier(final={"seeds": [0, 1, 2], "centralized_converged": {"rounds": 4}})
    _, log = run(data, tmp_path, runner, dry_run=True)
    assert runner.calls == [] and not (tmp_path / "out").exists()
    assert "tuning: 10 runs in the grid, 0 already recorded" in log and log.count("  would run: ") == 10
    assert "would run: classification · dirichlet_label(alpha=0.1) · fedprox · lr=0.001,mu=0.1 · seed 0 (tuning)" in log
    # 5 cells x seeds 1, 2 + converged x 3 seeds
    assert "final: classification: pending tuning: 13 runs once tuning is complete" in log
    assert "total: 23 runs to do (10 tuning + 13 final)" in log
    run(data, tmp_path, TierRunner(), stage="tune")
    _, log = run(data, tmp_path, TierRunner(), dry_run=True)
    assert "final: classification: 13 runs to do" in log and "total: 13 runs to do (0 tuning + 13 final)" in log
    full = TierRunner()
    run(data, tmp_path, full, stage="final")
    assert len(full.calls) == 13


def test_final_stage_refuses_incomplete_tuning(tmp_path: Path) -> None:
    run(tier(), tmp_path, TierRunner(), stage="tune", max_runs=7)
    runner = TierRunner()
    with pytest.raises(ValueError, match=r"task 'classification': tuning is incomplete \(3 of 10 tuning runs "
                                         r"missing\); run `fednlp-bench suite t.yaml --stage tune --task "
                                         r"classification` first"):
        run(tier(), tmp_path, runner, stage="final")
    assert runner.calls == []


def test_record_without_last_round_validation_is_an_error_naming_the_run(tmp_path: Path) -> None:
    runner = TierRunner(last_metric=False)
    with pytest.raises(ValueError, match=r"run classification-centralized-[0-9a-f]{8}-s0 .* its last round "
                                         r"\(round 2\) has no validation 'accuracy'"):
        run(tier(), tmp_path, runner, max_runs=1)


def test_plan_json_of_a_tiny_grid_field_by_field(tmp_path: Path) -> None:
    data = tier(tasks=[{"task": "classification", "data": "20news",
                        "partitions": [{"scheme": "dirichlet_label", "params": {"alpha": 1.0}}]}],
                algorithms=[{"algorithm": "fedprox", "grid": {"mu": [0.01, 0.1]}}], final={"seeds": [0, 1]})
    runner = TierRunner(validation=lambda c: {0.01: 0.7, 0.1: 0.6}[c["algorithm_params"]["mu"]],
                        test=lambda c: 0.4)
    run(data, tmp_path, runner)
    plan = plan_json(tmp_path)
    configs = {(config_hash(c), c["seed"]): c for c in runner.calls}
    assert len(configs) == 3
    by_mu_seed = {(c["algorithm_params"]["mu"], c["seed"]): (config_hash(c), c) for c in runner.calls}
    partition = {"scheme": "dirichlet_label", "params": {"alpha": 1.0}, "index": 0,
                 "label": "dirichlet_label(alpha=1.0)"}

    def entry(mu: float, seed: int) -> dict[str, Any]:
        digest, config = by_mu_seed[(mu, seed)]
        return {"config_hash": digest, "seed": seed, "run_id": run_id_of(config), "done": True}

    assert plan == {
        "schema": 1, "tier": "smoke", "suite": "t.yaml", "runs_dir": str(tmp_path / "runs"),
        "selection": "validation primary metric at the final round, tuning seed 0",
        "tuning": [{
            "task": "classification", "data": "20news", "partition": partition, "algorithm": "fedprox",
            "metric": "accuracy",
            "grid": [{"point": {"mu": 0.01}, **entry(0.01, 0), "validation": 0.7},
                     {"point": {"mu": 0.1}, **entry(0.1, 0), "validation": 0.6}],
            "chosen": {"mu": 0.01},
        }],
        "cells": [{
            "task": "classification", "data": "20news", "partition": partition, "algorithm": "fedprox",
            "algorithm_params": {"mu": 0.01}, "role": "federated", "hyperparameters": {"mu": 0.01},
            "tuned_on": 0, "metric": "accuracy", "runs": [entry(0.01, 0), entry(0.01, 1)],
        }],
    }
    assert (tmp_path / "runs" / plan["cells"][0]["runs"][1]["run_id"] / "record.json").exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["plan.json"]  # atomic: no temp file left


# ---------------------------------------------------------------- the command
def _command(tmp_path: Path, data: dict[str, Any], runner: TierRunner,
             monkeypatch: pytest.MonkeyPatch) -> Callable[..., int]:
    from fednlp_bench.commands import suite as command

    monkeypatch.setattr(suite_mod, "_load_runner", lambda: runner)
    path = tmp_path / "tier.yaml"
    path.write_text(yaml.safe_dump({**data, "runs_dir": str(tmp_path / "runs"), "out": str(tmp_path / "out")}))
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())

    def call(*argv: str) -> int:
        args = parser.parse_args(["suite", str(path), *argv])
        return args.func(args)

    return call


def test_command_stages_then_tier_tables_when_available(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys) -> None:
    runner = TierRunner()
    call = _command(tmp_path, tier(), runner, monkeypatch)
    monkeypatch.setitem(sys.modules, "fednlp_bench.leaderboard.tier_tables", None)  # import -> ImportError
    assert call("--max-runs", "12") == 0 and len(runner.calls) == 12
    out = capsys.readouterr().out
    assert f"continue with: fednlp-bench suite {tmp_path / 'tier.yaml'} --max-runs 12" in out
    assert "tier tables" not in out  # not complete yet: no tables
    assert call("--stage", "final", "--task", "classification") == 0 and len(runner.calls) == 15
    assert call() == 0 and len(runner.calls) == 15
    assert "tier tables: not available in this build" in capsys.readouterr().out

    written: list[tuple[Path, str]] = []
    fake = types.ModuleType("fednlp_bench.leaderboard.tier_tables")
    fake.write_tier_leaderboard = lambda plan, out: written.append((Path(plan), str(out)))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fednlp_bench.leaderboard.tier_tables", fake)
    assert call() == 0
    assert written == [(tmp_path / "out" / "plan.json", str(tmp_path / "out"))]


def test_command_refuses_stage_for_one_stage_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = {"base": BASE, "seeds": [0], "algorithms": ["fedavg"], "partitions": ["iid"],
            "tasks": [{"task": "classification", "data": "20news"}, {"task": "tagging", "data": "wnut17"}]}
    runner = TierRunner()
    call = _command(tmp_path, data, runner, monkeypatch)
    with pytest.raises(ValueError, match="--stage tune: .* has no 'tuning' section"):
        call("--stage", "tune")
    assert call("--task", "tagging", "--max-runs", "5", "--no-leaderboard") == 0
    assert [c["task"] for c in runner.calls] == ["tagging"]
    assert call("--max-runs", "1", "--no-leaderboard") == 0  # classification is left
    assert [c["task"] for c in runner.calls] == ["tagging", "classification"]
    with pytest.raises(ValueError, match="--max-runs 0 must be a positive integer"):
        call("--max-runs", "0")


def test_one_stage_max_runs_says_what_remains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    data = {"base": BASE, "seeds": [0, 1], "algorithms": ["fedavg"], "partitions": ["iid"],
            "tasks": [{"task": "classification", "data": "20news"}]}
    runner = TierRunner()
    call = _command(tmp_path, data, runner, monkeypatch)
    assert call("--max-runs", "1") == 0 and len(runner.calls) == 1
    assert "stopped after 1 run(s): 1 run(s) remain; continue with: fednlp-bench suite" in capsys.readouterr().out


def test_partition_entry_settings_reach_only_that_partitions_runs() -> None:
    """A partition entry's own min_size/num_clients override the base for its runs (they were once dropped)."""
    data = tier()
    data["tasks"][0]["partitions"] = ["iid", {"scheme": "dirichlet_label", "min_size": 1, "params": {"alpha": 0.1}}]
    plan = build_tier_plan(parse_suite(data))
    by_scheme = {unit.partition.scheme: unit for unit in plan.units if unit.algorithm == "fedavg"}
    assert {r.config["partition"]["min_size"] for r in by_scheme["dirichlet_label"].runs} == {1}
    assert {r.config["partition"]["min_size"] for r in by_scheme["iid"].runs} == {BASE["partition"]["min_size"]}
    cells = [c for c in plan.cells if c.partition.scheme == "dirichlet_label"]
    assert cells and all(r.config["partition"]["min_size"] == 1
                         for c in cells for r in plan.final_runs(c, c.unit.points[0]))
