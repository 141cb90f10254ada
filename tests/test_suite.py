"""Benchmark suite: grid expansion, validation before running, skip-existing, then the leaderboard."""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from fednlp_bench.suite import spec as suite_mod
from fednlp_bench.suite.spec import expand_suite, parse_suite, plan_suite, run_suite
from fednlp_bench.results.record import RoundResult, RunRecord, config_hash

REPO = Path(__file__).resolve().parents[1]

SMALL = {
    "base": {"model": "tiny", "max_length": 32, "max_train_examples": 200, "max_eval_examples": 50,
             "partition": {"num_clients": 4, "min_size": 2}, "rounds": 2, "clients_per_round": 2,
             "local_epochs": 1, "batch_size": 8, "lr": 1e-4},
    "tasks": [{"task": "classification", "data": "20news"}, {"task": "tagging", "data": "wnut17", "lr": 3e-4}],
    "partitions": ["iid", {"scheme": "dirichlet_label", "params": {"alpha": 0.1}}],
    "algorithms": ["centralized", "fedavg", {"algorithm": "fedprox", "algorithm_params": {"mu": 0.1}}],
    "seeds": [0, 1],
}


class FakeRunner:
    """Stands in for run_from_config_dict: writes a valid record whose metric depends on the config."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail_at = fail_at

    def __call__(self, config: dict[str, Any], runs_dir: Path) -> RunRecord:
        self.calls.append(config)
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise RuntimeError("client 3 produced a NaN loss")
        digest = config_hash(config) + str(config["seed"])
        value = int(hashlib.sha256(digest.encode()).hexdigest()[:6], 16) / 0xFFFFFF
        metric = "accuracy" if config["task"] == "classification" else "f1"
        run_id = f"run-{hashlib.sha256(digest.encode()).hexdigest()[:10]}"
        record = RunRecord(
            run_id=run_id, created="2026-11-25T12:00:00", task=config["task"], algorithm=config["algorithm"],
            seed=config["seed"], config=config, config_hash=config_hash(config),
            partition={**config["partition"], "content_hash": "c" * 64}, primary_metric=metric,
            final_metrics={metric: value},
            rounds=[RoundResult(round=r, clients=[0], train_loss=1.0, metrics={metric: value * r / 2},
                                bytes_up=1, bytes_down=1, wall_time_s=0.1) for r in (1, 2)],
            wall_time_s=0.2, bytes_up=2, bytes_down=2, versions={}, git_commit=None, hardware={})
        record.save(Path(runs_dir) / run_id)
        (Path(runs_dir) / run_id / "checkpoint").mkdir()  # as the engine leaves it
        (Path(runs_dir) / run_id / "checkpoint" / "round_0002.safetensors").write_bytes(b"weights")
        return record


def test_grid_expansion_and_merge_order() -> None:
    suite = parse_suite(SMALL)
    runs = expand_suite(suite)
    # 2 tasks x (centralized once + 2 partitions x 2 FL algorithms) x 2 seeds
    assert len(runs) == 2 * (1 + 2 * 2) * 2
    configs = [c for c, _ in runs]
    central = [c for c in configs if c["algorithm"] == "centralized"]
    assert len(central) == 4 and {c["partition"]["scheme"] for c in central} == {"iid"}
    iid = next(c for c in configs if c["partition"]["scheme"] == "iid")
    assert iid["partition"]["params"] == {}  # never inherits RunConfig's default alpha
    assert iid["partition"]["num_clients"] == 4 and iid["partition"]["min_size"] == 2
    for c in configs:
        assert c["partition"]["seed"] == c["seed"]  # partition_seed: run (default)
        assert c["lr"] == (3e-4 if c["task"] == "tagging" else 1e-4)
    prox = next(c for c in configs if c["algorithm"] == "fedprox")
    assert prox["algorithm_params"] == {"mu": 0.1}
    assert len(expand_suite(parse_suite({**SMALL, "centralized_once": False}))) == 2 * 2 * 3 * 2
    fixed = expand_suite(parse_suite({**SMALL, "partition_seed": 7}))
    assert {c["partition"]["seed"] for c, _ in fixed} == {7}


def test_plan_validates_whole_grid_before_running(tmp_path: Path) -> None:
    bad = {**SMALL, "algorithms": ["fedavg", "fedavgg"], "base": {**SMALL["base"], "rounds": 0}}
    runner = FakeRunner()
    with pytest.raises(ValueError) as err:
        run_suite(parse_suite(bad, source="s.yaml"), tmp_path / "runs", runner=runner, stream=io.StringIO())
    message = str(err.value)
    assert "s.yaml: 16 invalid run config(s); nothing was run" in message
    assert "rounds=0 must be >= 1" in message
    assert runner.calls == [] and not (tmp_path / "runs").exists()


def test_planned_configs_are_canonical(tmp_path: Path) -> None:
    from fednlp_bench.config import RunConfig

    planned = plan_suite(parse_suite(SMALL))
    for run in planned:
        assert RunConfig.from_dict(run.config).to_dict() == run.config
        assert run.key == (config_hash(run.config), run.config["seed"])


def test_suite_shape_errors() -> None:
    with pytest.raises(ValueError, match="unknown suite key 'algorithm'. Did you mean 'algorithms'"):
        parse_suite({**SMALL, "algorithm": ["fedavg"]})
    with pytest.raises(ValueError, match="'seeds' must be a non-empty list"):
        parse_suite({**SMALL, "seeds": []})
    with pytest.raises(ValueError, match="seeds .* repeat a value"):
        parse_suite({**SMALL, "seeds": [0, 0]})
    with pytest.raises(ValueError, match="'partitions' entry must be a scheme name"):
        parse_suite({**SMALL, "partitions": [{"params": {"alpha": 1}}]})
    repeated = {**SMALL, "algorithms": ["fedavg", {"algorithm": "fedavg"}]}
    with pytest.raises(ValueError, match="are the same run"):
        plan_suite(parse_suite(repeated))


def test_skip_existing_and_resume(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    suite = parse_suite(SMALL)
    first = FakeRunner(fail_at=5)
    with pytest.raises(RuntimeError, match="suite stopped at run 5/20 .*4 finished run"):
        run_suite(suite, runs, runner=first, stream=io.StringIO())
    assert len(list(runs.rglob("record.json"))) == 4
    assert list(runs.rglob("checkpoint")) == []  # finished runs keep only record.json + metrics.csv

    second = FakeRunner()
    log = io.StringIO()
    ran, skipped = run_suite(suite, runs, runner=second, stream=log)
    assert (len(ran), len(skipped), len(second.calls)) == (16, 4, 16)
    assert "20 runs in the grid, 4 already recorded" in log.getvalue()
    assert second.calls[0] == first.calls[4]  # resumes with the run that failed

    third = FakeRunner()
    ran, skipped = run_suite(suite, runs, runner=third, stream=io.StringIO())
    assert (ran, len(skipped), third.calls) == ([], 20, [])

    victim = next(iter(runs.iterdir()))
    shutil.rmtree(victim)
    fourth = FakeRunner()
    run_suite(suite, runs, runner=fourth, stream=io.StringIO())
    assert len(fourth.calls) == 1 and (runs / victim.name / "record.json").exists()  # same run re-made
    assert len(list(runs.rglob("record.json"))) == 20
    kept = tmp_path / "kept"
    run_suite(parse_suite({**SMALL, "keep_checkpoints": True}), kept, runner=FakeRunner(), stream=io.StringIO())
    assert len(list(kept.rglob("checkpoint"))) == 20


def test_suite_command_runs_then_builds_leaderboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys) -> None:
    from fednlp_bench.commands import suite as command

    runner = FakeRunner()
    monkeypatch.setattr(suite_mod, "_load_runner", lambda: runner)
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({**SMALL, "runs_dir": str(tmp_path / "records"), "out": str(tmp_path / "lb")}))
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())

    args = parser.parse_args(["suite", str(path), "--dry-run"])
    assert args.func(args) == 0 and runner.calls == []
    assert "would run: classification · iid · centralized · seed 0" in capsys.readouterr().out

    args = parser.parse_args(["suite", str(path), "--no-plots"])
    assert args.func(args) == 0 and len(runner.calls) == 20
    md = (tmp_path / "lb" / "classification.md").read_text()
    assert "| Partition | Centralized | FedAvg | FedProx | Gap FedAvg | Gap FedProx |" in md
    assert (tmp_path / "lb" / "tagging.csv").exists()
    assert f"fednlp-bench suite {path}" in (tmp_path / "lb" / "README.md").read_text()


def test_shipped_suite_is_valid_and_sized_as_published() -> None:
    suite = suite_mod.load_suite(REPO / "configs" / "suite.yaml")
    planned = plan_suite(suite)
    assert len(planned) == 40  # 2 tasks x (2 centralized + 3 partitions x 3 FL x 2 seeds)
    assert {r.config["task"] for r in planned} == {"classification", "tagging"}
    assert {r.config["algorithm"] for r in planned} == {"centralized", "fedavg", "fedprox", "fedadam"}
    assert suite.runs_dir == "leaderboards/smoke/records" and suite.seeds == [0, 1]


def test_default_runner_resumes_a_killed_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fednlp_bench.config import RunConfig
    from fednlp_bench.engine import runner as engine
    from fednlp_bench.engine.run_id import default_run_id

    calls: list[tuple[str, bool]] = []
    monkeypatch.setattr(engine, "run_experiment", lambda cfg, runs_dir, resume=False: calls.append(("exp", resume)))
    monkeypatch.setattr(engine, "run_from_config_dict", lambda cfg, runs_dir: calls.append(("fresh", False)))
    config = plan_suite(parse_suite(SMALL))[0].config
    run = suite_mod._load_runner()
    run(config, tmp_path)
    state = tmp_path / default_run_id(RunConfig.from_dict(config)) / "checkpoint" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text("{}")
    run(config, tmp_path)
    assert calls == [("fresh", False), ("exp", True)]


def test_drop_weights_leaves_only_the_record(tmp_path: Path) -> None:
    """Suites publish run folders: every weight file a run leaves (incl. test_best_round's) must go."""
    from fednlp_bench.engine.checkpoint import checkpoint_dir, drop_weights
    from fednlp_bench.engine.client_state import DIRNAME
    from fednlp_bench.engine.test_eval import BEST_WEIGHTS_FILE

    run = tmp_path / "run"
    checkpoint_dir(run).mkdir(parents=True)
    (run / DIRNAME).mkdir()
    (run / BEST_WEIGHTS_FILE).write_bytes(b"weights")
    (run / "record.json").write_text("{}")
    drop_weights(run)
    assert sorted(p.name for p in run.iterdir()) == ["record.json"]
