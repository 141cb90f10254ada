"""`suite --list-runs`: one self-contained `fednlp-bench run` command per pending run of the current stage."""

from __future__ import annotations

import argparse
import io
import json
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from fednlp_bench.engine.run.run_id import run_id_of
from fednlp_bench.suite.execution import Execution, using
from fednlp_bench.suite.spec import parse_suite
from fednlp_bench.suite.stages import run_two_stage
from fednlp_bench.suite.tier_plan import build_tier_plan
from fednlp_bench.testing.fake_runs import FakeEngine

BASE = {"model": "tiny", "max_length": 32, "max_train_examples": 200, "max_eval_examples": 50,
        "partition": {"num_clients": 4, "min_size": 2}, "rounds": 2, "clients_per_round": 2,
        "local_epochs": 1, "batch_size": 8, "lr": 1e-4, "eval_every": 1}
TIER = {"tier": "smoke", "base": BASE,
        "tasks": [{"task": "classification", "data": "20news", "partitions": ["iid"]}],
        "algorithms": [{"algorithm": "centralized", "grid": {"lr": [1e-3, 3e-3]}},
                       {"algorithm": "fedavg", "grid": {"lr": [1.5e-3, 3e-5]}}],
        "convergence": {"window": 0.5, "tolerance": 0.01, "min_points": 2},
        "tuning": {"seed": 0, "partitions": "all"}, "final": {"seeds": [0, 1]}}


def list_runs(suite_path: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[list[str], str]:
    from fednlp_bench.commands import suite as command

    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    args = parser.parse_args(["suite", str(suite_path), "--list-runs", *flags])
    assert args.func(args) == 0
    captured = capsys.readouterr()
    return [line for line in captured.out.splitlines() if line], captured.err


def run_command_config(command: str) -> dict[str, Any]:
    """The config `fednlp-bench run` would build from a listed command (its own argument parser)."""
    from fednlp_bench import cli
    from fednlp_bench.commands.run import config_dict_from_args
    from fednlp_bench.config import RunConfig

    words = shlex.split(command)
    assert words[:2] == ["fednlp-bench", "run"]
    args = cli.parse_args(words[1:])
    data, _ = config_dict_from_args(args)
    return RunConfig.from_dict(data).to_dict()


def test_listed_commands_reproduce_each_pending_run_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    path = tmp_path / "tier.yaml"
    path.write_text(yaml.safe_dump({**TIER, "runs_dir": str(runs), "out": str(tmp_path / "out")}))
    commands, err = list_runs(path, capsys, "--threads", "1")
    tuning = build_tier_plan(parse_suite(TIER)).tuning_runs()
    assert len(commands) == len(tuning) == 4 and "4 pending run(s) of the current stage listed" in err
    for command, planned in zip(commands, tuning):  # in the stage's order
        assert run_command_config(command) == planned.config  # same config -> same hash and run id
        words = shlex.split(command)
        assert words[words.index("--runs-dir") + 1] == str(runs.resolve())
        assert "--threads" in words and "--resume" not in words and "--keep-checkpoints" in words
    assert not list(runs.glob("*/record.json"))  # nothing ran

    # A run a killed job left with a checkpoint is listed with --resume.
    state = runs / run_id_of(tuning[1].config) / "checkpoint" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text("{}")
    commands, _ = list_runs(path, capsys)
    assert ["--resume" in c for c in commands] == [False, True, False, False]


def test_listing_follows_the_stages_as_records_appear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs, out = tmp_path / "runs", tmp_path / "out"
    path = tmp_path / "tier.yaml"
    path.write_text(yaml.safe_dump({**TIER, "runs_dir": str(runs), "out": str(out)}))
    suite = parse_suite(TIER, source=str(path))
    engine = FakeEngine()
    for run in build_tier_plan(suite).tuning_runs():  # what the listed tuning commands would write
        engine(run.config, runs)
    commands, _ = list_runs(path, capsys)
    with using(Execution()):
        report = run_two_stage(suite, tmp_path / "ref", tmp_path / "ref-out", runner=engine, stream=io.StringIO())
    reference = sorted(p.parent.name for p in (tmp_path / "ref").glob("*/record.json"))
    listed = sorted(run_id_of(run_command_config(c)) for c in commands)
    tuned = sorted(run_id_of(r.config) for r in build_tier_plan(suite).tuning_runs())
    assert report.complete and sorted(tuned + listed) == reference  # the final stage's missing runs, no more
    plan = json.loads((out / "plan.json").read_text())
    assert all(unit["chosen"] is not None for unit in plan["tuning"])  # the listing saw the selection
    for command in commands:
        engine(run_command_config(command), runs)
    commands, err = list_runs(path, capsys)
    assert commands == [] and "nothing pending" in err
