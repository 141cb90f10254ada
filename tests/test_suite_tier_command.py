"""The `suite` command on a tier: stages then tables, partition settings, task subsets, --plan-only."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from fednlp_bench.suite import dispatch as suite_mod
from fednlp_bench.suite.spec import parse_suite
from fednlp_bench.suite.tier_plan import build_tier_plan

from suite_tier_fakes import BASE, TierRunner, plan_json, tier


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


def test_command_stages_then_tier_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    runner = TierRunner()
    call = _command(tmp_path, tier(), runner, monkeypatch)
    assert call("--max-runs", "22") == 0 and len(runner.calls) == 22
    out = capsys.readouterr().out
    assert f"continue with: fednlp-bench suite {tmp_path / 'tier.yaml'} --max-runs 22" in out
    assert "tier tables" not in out  # not complete yet: no tables
    assert call("--stage", "final", "--task", "classification") == 0 and len(runner.calls) == 25
    assert not (tmp_path / "out" / "classification.md").exists()  # --stage final builds no tables
    assert call() == 0 and len(runner.calls) == 25
    assert "tier tables: written to" in capsys.readouterr().out
    md = (tmp_path / "out" / "classification.md").read_text()
    assert "converged (slope +0.0000/round)" in md and (tmp_path / "out" / "README.md").exists()
    with pytest.raises(ValueError, match="--max-runs 0 must be a positive integer"):
        call("--max-runs", "0")


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


def test_a_task_may_run_a_subset_of_algorithms_and_its_own_converged_rounds(tmp_path: Path) -> None:
    data = tier(final={"seeds": [0, 1], "centralized_converged": {"rounds": 8}},
                tasks=[{"task": "classification", "data": "20news", "partitions": ["iid"]},
                       {"task": "tagging", "data": "wnut17", "partitions": ["iid"], "algorithms": ["centralized", "fedavg"],
                        "centralized_converged": {"rounds": 12, "test_best_round": True}}])
    plan = build_tier_plan(parse_suite(data))
    assert [(u.task_index, u.algorithm) for u in plan.units] == [
        (0, "centralized"), (0, "fedavg"), (0, "fedprox"), (1, "centralized"), (1, "fedavg")]
    converged = {c.task_index: c.overrides for c in plan.cells if c.role == "centralized_converged"}
    assert converged == {0: {"rounds": 8}, 1: {"rounds": 12, "test_best_round": True}}
    with pytest.raises(ValueError, match="'fedavgg' is not one of the suite's algorithms. Did you mean 'fedavg'"):
        parse_suite(tier(tasks=[{"task": "classification", "partitions": ["iid"], "algorithms": ["fedavgg"]}]))


def test_plan_only_rewrites_plan_json_and_runs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys) -> None:
    runner = TierRunner()
    call = _command(tmp_path, tier(), runner, monkeypatch)
    assert call("--plan-only") == 0 and runner.calls == []
    plan = plan_json(tmp_path)
    assert [t["task"] for t in plan["tasks"]] == ["classification"] and len(plan["tasks"][0]["partitions"]) == 2
    assert plan["cells"] == [] and all(not g["done"] for t in plan["tuning"] for g in t["grid"])
    assert "from 0 record(s); 0/5 tuning choice(s) made" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--plan-only runs nothing"):
        call("--plan-only", "--max-runs", "2")
