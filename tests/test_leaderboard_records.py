"""Records a leaderboard is built from: validation, refusals naming the file, duplicates, and re-running one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fednlp_bench.leaderboard.records import DuplicateRecordError, collect_records, find_record
from fednlp_bench.leaderboard.labels import partition_label
from fednlp_bench.results.record import RecordError, RoundResult, RunRecord, config_hash
from fednlp_bench.suite import verify as verify_mod
from fednlp_bench.suite.verify import save_verification

_counter = iter(range(10_000))


def make_config(task: str = "classification", algorithm: str = "fedavg", scheme: str = "iid",
                params: dict[str, Any] | None = None, seed: int = 0, **changes: Any) -> dict[str, Any]:
    config = {
        "task": task, "data": "20news" if task == "classification" else "wnut17", "model": "minilm",
        "max_length": 64, "max_train_examples": 100, "max_eval_examples": 50,
        "partition": {"scheme": scheme, "num_clients": 10, "seed": seed, "min_size": 1, "params": params or {}},
        "algorithm": algorithm, "algorithm_params": {}, "rounds": 3, "clients_per_round": 5, "local_epochs": 1,
        "local_steps": None, "batch_size": 8, "lr": 1e-4, "optimizer": "adamw", "sampling": "uniform",
        "dropout": 0.0, "eval_every": 1, "seed": seed, "backend": "inprocess",
    }
    config.update(changes)
    return config


def record_from_config(config: dict[str, Any], final: float, run_id: str | None = None,
                       curve: list[float] | None = None) -> RunRecord:
    metric = "accuracy" if config["task"] == "classification" else "f1"
    curve = curve if curve is not None else [final / 2, final * 0.8, final]
    rounds = [RoundResult(round=r, clients=[0, 1], train_loss=1.0 / r, metrics={metric: v}, bytes_up=100,
                          bytes_down=100, wall_time_s=0.5) for r, v in enumerate(curve, start=1)]
    n = next(_counter)
    return RunRecord(
        run_id=run_id or f"{config['task'][:4]}-{config['algorithm']}-{n:04d}",
        created=f"2026-11-25T10:{n // 60 % 60:02d}:{n % 60:02d}", task=config["task"],
        algorithm=config["algorithm"], seed=config["seed"], config=config, config_hash=config_hash(config),
        partition={**config["partition"], "fingerprint": "f" * 64, "content_hash": "c" * 64},
        primary_metric=metric, final_metrics={metric: final, "loss": 1.0 - final}, rounds=rounds,
        wall_time_s=12.0, bytes_up=300, bytes_down=300, versions={"torch": "2.13.0"}, git_commit="abc123",
        hardware={"cpu_count": 2, "processor": "x86_64"},
    )


def write(runs: Path, final: float, run_id: str | None = None, **config_kw: Any) -> Path:
    record = record_from_config(make_config(**config_kw), final, run_id=run_id)
    return record.save(runs / record.run_id)


def test_partition_labels() -> None:
    assert partition_label("iid", {}) == "IID"
    assert partition_label("dirichlet_label", {"alpha": 10.0}) == "Dirichlet α=10"
    assert partition_label("quantity_skew", {"beta": 0.5}) == "Quantity skew (β=0.5)"
    assert partition_label("feature_cluster", {"alpha": 0.5, "num_clusters": 10}) == \
        "Feature clusters (α=0.5, num_clusters=10)"


def _corrupt(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("case, fragment", [
    ("missing", "missing field(s) ['hardware']"),
    ("schema", "schema_version 2 is not supported"),
    ("nan", "is not a finite number"),
    ("hash", "config_hash does not match"),
    ("json", "not valid JSON"),
    ("algorithm", "disagrees with config['algorithm']"),
])
def test_bad_records_are_refused_naming_the_file(tmp_path: Path, case: str, fragment: str) -> None:
    runs = tmp_path / "runs"
    write(runs, 0.7, run_id="good", algorithm="fedavg")
    bad = write(runs, 0.6, run_id="bad", algorithm="fedprox")
    if case == "missing":
        _corrupt(bad, lambda d: d.pop("hardware"))
    elif case == "schema":
        _corrupt(bad, lambda d: d.update(schema_version=2))
    elif case == "nan":
        _corrupt(bad, lambda d: d["final_metrics"].update(accuracy=float("nan")))
    elif case == "hash":
        _corrupt(bad, lambda d: d["config"].update(lr=0.5))
    elif case == "json":
        bad.write_text(bad.read_text()[:-20])
    elif case == "algorithm":
        _corrupt(bad, lambda d: d.update(algorithm="fedavg"))
    with pytest.raises(RecordError) as err:
        collect_records(runs)
    assert str(bad) in str(err.value) and fragment in str(err.value)
    with pytest.warns(UserWarning, match="skipping invalid record"):
        kept = collect_records(runs, skip_invalid=True)
    assert [item.record.run_id for item in kept] == ["good"]


def test_duplicates_are_detected_with_both_paths(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first = write(runs, 0.7, run_id="a", algorithm="fedavg", seed=0)
    copy = runs / "b" / "record.json"
    copy.parent.mkdir()
    data = json.loads(first.read_text())
    data["run_id"], data["created"] = "b", "2099-01-01T00:00:00"
    copy.write_text(json.dumps(data))
    write(runs, 0.7, run_id="c", algorithm="fedavg", seed=1)  # other seed: not a duplicate
    with pytest.raises(DuplicateRecordError) as err:
        collect_records(runs)
    assert str(first) in str(err.value) and str(copy) in str(err.value) and "identical" in str(err.value)
    with pytest.warns(UserWarning, match="duplicate run"):
        kept = collect_records(runs, skip_duplicates=True)
    assert sorted(item.record.run_id for item in kept) == ["a", "c"]


def test_reused_run_id_is_refused(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    record = record_from_config(make_config(algorithm="fedavg"), 0.5, run_id="same")
    record.save(runs / "x")
    record_from_config(make_config(algorithm="fedprox"), 0.5, run_id="same").save(runs / "y")
    with pytest.raises(DuplicateRecordError, match="run_id 'same' is used by two different runs"):
        collect_records(runs)


def test_empty_or_missing_runs_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        collect_records(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    assert collect_records(tmp_path / "empty") == []


# ---------------------------------------------------------------- verify
@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for seed in (0, 1):
        write(root, 0.7 + seed / 100, run_id=f"fedavg-iid-s{seed}", algorithm="fedavg", seed=seed)
    return root


def _rerun(runs: Path, shift: float):
    def runner(config: dict[str, Any], runs_dir: Path) -> RunRecord:
        original = next(item.record for item in collect_records(runs) if item.record.config == config)
        curve = [r.metrics[original.primary_metric] + shift for r in original.rounds]
        return record_from_config(config, original.final_metrics[original.primary_metric] + shift, run_id="rerun",
                                  curve=curve)

    return runner


@pytest.mark.parametrize("shift, tolerance, passed", [(0.0, 1e-6, True), (1e-3, 1e-6, False), (1e-3, 1e-2, True)])
def test_verify_compares_final_and_round_metrics(runs: Path, tmp_path: Path, shift: float, tolerance: float,
                                                 passed: bool) -> None:
    item = find_record(runs, "fedavg-iid-s1")
    result = verify_mod.verify_record(item, tolerance=tolerance, runner=_rerun(runs, shift))
    assert result.passed is passed and result.max_abs_diff == pytest.approx(shift, abs=1e-12)
    assert len(result.comparisons) == 5  # 2 final metrics + 3 rounds
    report = result.report()
    assert "final accuracy" in report and "round 3 accuracy" in report
    assert ("NOT REPRODUCED" in report) is (not passed)
    save_verification(result, tmp_path / "lb")
    saved = json.loads((tmp_path / "lb" / "verification.json").read_text())["fedavg-iid-s1"]
    assert saved["passed"] is passed and saved["n_compared"] == 5
    with pytest.raises(ValueError, match="--tolerance -1 must be a non-negative number"):
        verify_mod.verify_record(item, tolerance=-1, runner=_rerun(runs, 0.0))


def test_verify_by_path_and_bad_input(runs: Path) -> None:
    item = find_record(None, str(runs / "fedavg-iid-s0"))
    assert item.record.run_id == "fedavg-iid-s0"
    with pytest.raises(FileNotFoundError, match="no record with run_id 'nope'"):
        find_record(runs, "nope")


def test_verify_flags_a_different_partition(runs: Path) -> None:
    item = find_record(runs, "fedavg-iid-s0")

    def runner(config: dict[str, Any], runs_dir: Path) -> RunRecord:
        record = record_from_config(config, item.record.final_metrics["accuracy"],
                                    curve=[r.metrics["accuracy"] for r in item.record.rounds])
        record.partition["content_hash"] = "d" * 64
        return record

    result = verify_mod.verify_record(item, runner=runner)
    assert all(c.ok for c in result.comparisons) and not result.passed
    assert "partition content hash differs" in result.problems[0]
