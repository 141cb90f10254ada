"""Tier suite files and the run executor: shipped suites validate, failures stop cleanly, killed runs resume."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from fednlp_bench.results.record import RoundResult, RunRecord, config_hash
from fednlp_bench.suite import dispatch as suite_mod
from fednlp_bench.suite.dispatch import execute_runs
from fednlp_bench.suite.spec import PlannedRun, load_suite, parse_suite
from fednlp_bench.suite.tier_plan import build_tier_plan

REPO = Path(__file__).resolve().parents[1]


def record_for(config: dict[str, Any], run_id: str) -> RunRecord:
    return RunRecord(
        run_id=run_id, created="2026-11-25T12:00:00", task=config["task"], algorithm=config["algorithm"],
        seed=config["seed"], config=config, config_hash=config_hash(config),
        partition={**config["partition"], "content_hash": "c" * 64}, primary_metric="accuracy",
        final_metrics={"accuracy": 0.5},
        rounds=[RoundResult(round=1, clients=[0], train_loss=1.0, metrics={"accuracy": 0.5}, bytes_up=1,
                            bytes_down=1, wall_time_s=0.1)],
        wall_time_s=0.1, bytes_up=1, bytes_down=1, versions={}, git_commit=None, hardware={})


def _runs() -> list[PlannedRun]:
    plan = build_tier_plan(load_suite(REPO / "configs" / "suite.yaml"))
    return plan.tuning_runs()[:4]


def test_execute_runs_stops_at_a_failure_and_keeps_what_finished(tmp_path: Path) -> None:
    calls: list[dict[str, Any]] = []

    def runner(config: dict[str, Any], runs_dir: Path) -> RunRecord:
        calls.append(config)
        if len(calls) == 3:
            raise RuntimeError("client 3 produced a NaN loss")
        record = record_for(config, f"run-{len(calls)}")
        record.save(runs_dir / record.run_id)
        (runs_dir / record.run_id / "checkpoint").mkdir()
        return record

    with pytest.raises(RuntimeError, match=r"suite stopped at run 3/4 .*client 3 produced a NaN loss\. The 2 "
                                           r"finished run\(s\) are recorded"):
        execute_runs(_runs(), tmp_path, runner=runner, keep_checkpoints="none", stream=io.StringIO())
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["run-1", "run-2"]
    assert (tmp_path / ".suite" / "locks").is_dir()  # housekeeping (run locks) is hidden from the records
    assert list(tmp_path.rglob("checkpoint")) == []  # finished runs keep only record.json + metrics.csv
    log = io.StringIO()
    done = execute_runs(_runs()[3:], tmp_path, runner=runner, keep_checkpoints="last", stream=log, max_runs=1)
    assert len(done) == 1 and (tmp_path / "run-4" / "checkpoint").is_dir()
    assert "[1/1] done in" in log.getvalue()


def test_shipped_smoke_tier_is_small_and_two_stage() -> None:
    suite = load_suite(REPO / "configs" / "suite.yaml")
    plan = build_tier_plan(suite)
    assert suite.tier == "smoke" and suite.runs_dir == "leaderboards/smoke/records"
    assert {r.config["task"] for r in plan.tuning_runs()} == {"classification", "tagging"}
    assert len(plan.tuning_runs()) == 24 and suite.final.seeds == (0, 1) and suite.tuning.extensions == 1
    assert {r.config["max_train_examples"] for r in plan.tuning_runs()} <= {600, 1000}


def test_suite_shape_errors() -> None:
    data = load_suite_dict()
    with pytest.raises(ValueError, match="'partitions' entry must be a scheme name"):
        parse_suite({**data, "partitions": [{"params": {"alpha": 1}}]})
    with pytest.raises(ValueError, match="keep_checkpoints must be 'none'"):
        parse_suite({**data, "keep_checkpoints": "all"})
    with pytest.raises(ValueError, match="rate_records must be a list of folders"):
        parse_suite({**data, "rate_records": "pilots"})
    with pytest.raises(ValueError, match=r"rates.qa.train_rows = None must be a non-negative number"):
        parse_suite({**data, "rates": {"qa": {"train_examples_per_s": 6.5, "eval_examples_per_s": 24}}})
    repeated = {**data, "algorithms": [*data["algorithms"], data["algorithms"][1]]}
    with pytest.raises(ValueError, match="are the same run"):
        build_tier_plan(parse_suite(repeated))


def load_suite_dict() -> dict[str, Any]:
    import yaml

    return yaml.safe_load((REPO / "configs" / "suite.yaml").read_text())


def test_default_runner_resumes_a_killed_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fednlp_bench.config import RunConfig
    from fednlp_bench.engine.run import runner as engine
    from fednlp_bench.engine.run.run_id import default_run_id

    calls: list[tuple[str, bool]] = []
    monkeypatch.setattr(engine, "run_experiment", lambda cfg, runs_dir, resume=False: calls.append(("exp", resume)))
    monkeypatch.setattr(engine, "run_from_config_dict", lambda cfg, runs_dir: calls.append(("fresh", False)))
    config = _runs()[0].config
    run = suite_mod._load_runner()
    run(config, tmp_path)
    state = tmp_path / default_run_id(RunConfig.from_dict(config)) / "checkpoint" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text("{}")
    run(config, tmp_path)
    assert calls == [("fresh", False), ("exp", True)]


def test_drop_weights_leaves_only_the_record(tmp_path: Path) -> None:
    """Suites publish run folders: every weight file a run leaves (incl. test_best_round's) must go."""
    from fednlp_bench.engine.run.checkpoint import checkpoint_dir, drop_weights
    from fednlp_bench.engine.client.state import DIRNAME
    from fednlp_bench.engine.eval.test_split import BEST_WEIGHTS_FILE

    run = tmp_path / "run"
    checkpoint_dir(run).mkdir(parents=True)
    (run / DIRNAME).mkdir()
    (run / BEST_WEIGHTS_FILE).write_bytes(b"weights")
    (run / "record.json").write_text("{}")
    drop_weights(run)
    assert sorted(p.name for p in run.iterdir()) == ["record.json"]


def _timed_record(config: dict[str, Any], plain_s: float, eval_s: float) -> RunRecord:
    """Rounds without validation take ``plain_s``; validated rounds ``eval_s`` more."""
    record = record_for(config, "timed")
    record.partition["num_rows"] = 1000
    record.data = {"splits": {"train": 1000, "validation": 200, "test": 300}}  # the smoke suite's max_eval_examples
    record.rounds = [RoundResult(round=r, clients=[0], train_loss=1.0, metrics={"accuracy": 0.5} if r % 2 == 0 else {},
                                 bytes_up=1, bytes_down=1, wall_time_s=plain_s + (eval_s if r % 2 == 0 else 0.0))
                     for r in range(1, 5)]
    return record


def test_cost_rates_are_measured_per_shape_and_declared_otherwise() -> None:
    from fednlp_bench.suite import cost

    config = {**_runs()[0].config, "rounds": 4, "eval_every": 2, "clients_per_round": 5, "local_epochs": 1,
              "partition": {**_runs()[0].config["partition"], "num_clients": 10}}
    # a round trains 5/10 of 1000 rows = 500 examples in 10 s; validating 200 rows adds 4 s
    rates = cost.measure([_timed_record(config, 10.0, 4.0)])
    rate = rates[cost.shape_key(config)]
    assert rate.train_s == pytest.approx(10.0 / 500) and rate.eval_s == pytest.approx(4.0 / 200)
    assert rate.source == "measured (1 record(s))"
    # 8 rounds: 8 x 10 s training, 4 validations x 4 s, test 300 rows x 0.02 s
    planned = {**config, "rounds": 8}
    assert cost.run_seconds(planned, rate) == pytest.approx(80 + 16 + 6)
    declared = cost.parse_rates({"qa": {"train_examples_per_s": 5, "eval_examples_per_s": 20, "train_rows": 100,
                                        "validation_rows": 10, "test_rows": 20, "natural_clients": 4}}, "s.yaml")
    qa = {**planned, "task": "qa", "partition": {**planned["partition"], "num_clients": None}}
    found = cost.estimate([planned, qa, {**planned, "task": "generation"}], rates, declared)
    # qa: 8 rounds x 5/4 x 100 examples / 5 per s, + (4 x 10 + 20) rows / 20 per s
    assert found.seconds["qa"] == pytest.approx(8 * 125 / 5 + 60 / 20)
    assert found.sources["qa"] == {"declared in the suite"} and found.unknown == {"generation": 1}
    folded = cost.measure([_timed_record({**config, "eval_every": 1}, 10.0, 0.0)])
    assert "validation is folded" in next(iter(folded.values())).source


def test_the_tiers_own_records_measure_their_shape_before_the_pilots(monkeypatch: pytest.MonkeyPatch) -> None:
    from fednlp_bench.suite import cost, dry_run

    config = {**_runs()[0].config, "rounds": 4, "eval_every": 2, "clients_per_round": 5, "local_epochs": 1,
              "partition": {**_runs()[0].config["partition"], "num_clients": 10}}
    other = {**config, "batch_size": 2 * int(config["batch_size"])}
    pilots = [_timed_record(config, 60.0, 4.0), _timed_record(other, 30.0, 4.0)]  # older, slower code
    monkeypatch.setattr(cost, "load_rate_records", lambda folders: pilots)
    plan = SimpleNamespace(suite=SimpleNamespace(rate_records=["pilots"]))
    records = {"a": SimpleNamespace(record=_timed_record(config, 10.0, 4.0))}
    rates = dry_run._rates(plan, records)  # type: ignore[arg-type]
    assert rates[cost.shape_key(config)].train_s == pytest.approx(10.0 / 500)   # the tier's record, not the pilot
    assert rates[cost.shape_key(other)].train_s == pytest.approx(30.0 / 500)    # a shape only a pilot measured


def test_pilots_made_on_a_gpu_do_not_time_cpu_runs(tmp_path: Path) -> None:
    from fednlp_bench.suite import cost

    config = {**_runs()[0].config, "rounds": 4, "eval_every": 2}
    for name, hardware in (("cpu-pilot", {"device": "cpu", "gpu": None}),
                           ("gpu-pilot", {"device": "cuda", "gpu": "NVIDIA H200"})):
        record = _timed_record(config, 10.0, 4.0)
        record.run_id, record.hardware = name, hardware
        record.save(tmp_path / name)
    assert [r.run_id for r in cost.load_rate_records([tmp_path])] == ["cpu-pilot"]
    assert not cost.made_on_cpu(SimpleNamespace(hardware={"device": "cuda:1", "gpu": None}))


def test_a_validation_subset_is_timed_by_its_rows_and_keeps_old_hashes() -> None:
    from fednlp_bench.results.record import config_hash
    from fednlp_bench.suite import cost

    config = {**_runs()[0].config, "rounds": 8, "eval_every": 2, "client_eval": False, "test_best_round": False,
              "max_eval_examples": None}
    rate = cost.Rate(0.01, 0.1, 1000, 800, 600, source="declared")
    subset = {**config, "max_validation_examples": 200}
    full_s, subset_s = cost.run_seconds(config, rate), cost.run_seconds(subset, rate)
    assert full_s is not None and subset_s is not None
    assert full_s - subset_s == pytest.approx(4 * (800 - 200) * 0.1)  # 4 validated rounds, test untouched
    old = {k: v for k, v in config.items() if k != "max_validation_examples"}
    assert cost.shape_key({**config, "max_validation_examples": None}) == cost.shape_key(old)
    assert cost.shape_key(subset) != cost.shape_key(old)
    assert config_hash({**old, "max_validation_examples": None}) == config_hash(old)


def test_length_batched_cells_are_not_timed_by_random_batched_records() -> None:
    from fednlp_bench.suite import cost

    config = dict(_runs()[0].config)
    old = {k: v for k, v in config.items() if k != "batching"}  # a record made before the field existed
    assert cost.shape_key({**config, "batching": "random"}) == cost.shape_key(old)
    assert cost.shape_key({**config, "batching": "length"}) != cost.shape_key(old)
