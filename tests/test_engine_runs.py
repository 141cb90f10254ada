"""Engine runs on the toy task: kill and resume, checkpoints, the record, non-finite updates, bad run folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import engine_toy  # tests/engine_toy.py
from engine_toy import final_weights, run, toy_config
from fednlp_bench.engine.client.model_state import ClientUpdateRejected
from fednlp_bench.engine.client.trainer import LocalTrainer
from fednlp_bench.engine.run import checkpoint as ckpt
from fednlp_bench.engine.run.runner import NonFiniteModelError, run_experiment
from fednlp_bench.results.record import RunRecord, validate_record_dict
from fednlp_bench.testing.toy import ToyTask

toy_partitions = engine_toy.toy_partitions  # autouse: the toy task's block partitions


@pytest.mark.parametrize("algorithm,params,optimizer", [
    ("fedadam", {"server_lr": 0.05}, "sgd"),
    ("fedavgm", {"momentum": 0.5}, "adamw"),
    ("centralized", {}, "adamw"),  # persistent optimizer state must survive the restart
    ("scaffold", {}, "sgd"),  # per-client control variates on disk must follow the checkpoint
    ("feddyn", {"alpha": 0.1}, "sgd"),
])
def test_kill_and_resume_equals_uninterrupted(tmp_path: Path, algorithm: str, params: dict, optimizer: str) -> None:
    cfg = toy_config(algorithm=algorithm, algorithm_params=params, optimizer=optimizer, rounds=4, dropout=0.1,
                     lr=0.05, sampling="weighted")
    full = run(cfg, tmp_path / "full", ToyTask(n_train=60, hidden=8, dropout=0.2))

    class Killed(Exception):
        pass

    def kill_after_two(result: object) -> None:
        if result.round == 2:  # type: ignore[attr-defined]
            raise Killed

    with pytest.raises(Killed):
        run(cfg, tmp_path / "cut", ToyTask(n_train=60, hidden=8, dropout=0.2), on_round_end=kill_after_two)
    run_dir = tmp_path / "cut" / full.run_id
    assert not (run_dir / "record.json").exists()
    assert ckpt.load_checkpoint(run_dir).round == 2
    resumed = run(cfg, tmp_path / "cut", ToyTask(n_train=60, hidden=8, dropout=0.2), resume=True)
    assert [r.metrics for r in resumed.rounds] == [r.metrics for r in full.rounds]
    assert [r.train_loss for r in resumed.rounds] == [r.train_loss for r in full.rounds]
    assert resumed.final_metrics == full.final_metrics
    # The record says it was resumed, and after which round; the uninterrupted one says it was not.
    assert resumed.resumed_after == [2] and full.resumed_after == []
    assert RunRecord.load(run_dir).resumed_after == [2]
    wf, wr = final_weights(tmp_path / "full", full), final_weights(tmp_path / "cut", resumed)
    assert all(torch.equal(wf[k], wr[k]) for k in wf)
    # Resuming a finished run returns its record without training again.
    again = run(cfg, tmp_path / "cut", resume=True)
    assert again.final_metrics == full.final_metrics


def test_checkpoint_keeps_one_round_file_and_server_moments(tmp_path: Path) -> None:
    cfg = toy_config(algorithm="fedadam", algorithm_params={"server_lr": 0.01})
    rec = run(cfg, tmp_path)
    directory = ckpt.checkpoint_dir(tmp_path / rec.run_id)
    assert sorted(p.name for p in directory.iterdir()) == ["round_0003.safetensors", "state.json"]
    loaded = ckpt.load_checkpoint(tmp_path / rec.run_id)
    assert loaded.round == 3
    assert loaded.server_state["steps"] == 3
    assert {k.split("/")[0] for k in loaded.server_state if "/" in k} == {"m", "v"}
    assert "rng/torch" in loaded.extra_tensors


# ------------------------------------------------------------------ record and accounting
def test_record_is_complete_and_valid(tmp_path: Path) -> None:
    cfg = toy_config(rounds=4, eval_every=2, dropout=0.3)
    rec = run(cfg, tmp_path)
    run_dir = tmp_path / rec.run_id
    data = json.loads((run_dir / "record.json").read_text())
    validate_record_dict(data, "test")
    assert data["config"] == cfg.to_dict()
    assert data["primary_metric"] == "accuracy"
    assert set(data["versions"]) >= {"torch", "transformers", "datasets", "numpy", "fednlp-bench"}
    assert {"cpu", "cpu_cores", "ram_gb", "torch_threads", "gpu"} <= set(data["hardware"])
    assert data["partition"]["num_clients"] == 5 and data["partition"]["content_hash"]
    assert [bool(r["metrics"]) for r in data["rounds"]] == [False, True, False, True]
    model_bytes = (6 * 3 + 3) * 4  # linear 6 -> 3, float32
    for r in rec.rounds:
        assert r.bytes_down == 3 * model_bytes  # every sampled client downloads
        assert r.bytes_up == len(r.clients) * model_bytes  # only survivors upload
    assert any(len(r.clients) < 3 for r in rec.rounds)  # dropout 0.3 removed someone
    assert rec.bytes_up == sum(r.bytes_up for r in rec.rounds)
    csv_lines = (run_dir / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("round,train_loss,bytes_up,bytes_down") and len(csv_lines) == 5


def test_fednova_example_runs_through_the_engine(tmp_path: Path) -> None:
    cfg = toy_config(algorithm="fednova", partition={"scheme": "quantity_skew", "num_clients": 4, "seed": 0, "min_size": 1})
    rec = run(cfg, tmp_path)
    assert rec.algorithm == "fednova" and 0.0 <= rec.final_metrics["accuracy"] <= 1.0


# ------------------------------------------------------------------ failures
def test_nan_client_is_rejected_and_the_round_goes_on(tmp_path: Path) -> None:
    task = ToyTask(n_train=60, nan_rows=[0, 1])  # rows 0-1 belong to client 0
    cfg = toy_config(clients_per_round=5, rounds=2)
    rec = run(cfg, tmp_path, task)
    for r in rec.rounds:
        assert r.rejected_clients == [0]
        assert r.clients == [0, 1, 2, 3, 4]
        assert r.train_loss is not None and np.isfinite(r.train_loss)
    assert np.isfinite(rec.final_metrics["loss"])


def test_trainer_rejects_non_finite_loss() -> None:
    task = ToyTask(n_train=20, nan_rows=[3])
    torch.manual_seed(0)
    model = task.build_model()
    trainer = LocalTrainer(task, model, task.preprocess(task.load()["train"], True), batch_size=4, lr=0.1,
                           optimizer="sgd", local_epochs=1)
    with pytest.raises(ClientUpdateRejected, match="non-finite training loss"):
        trainer.train(2, np.arange(20), trainer.state.get(), {}, seed=0)


def test_non_finite_global_model_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    cfg = toy_config(algorithm="fedavgm", algorithm_params={"server_lr": 1e39, "momentum": 0.9}, rounds=3)
    with pytest.raises(NonFiniteModelError, match=r"round \d: the global model became non-finite.*last good checkpoint"):
        run(cfg, tmp_path)
    run_dir = next(tmp_path.iterdir())
    assert not (run_dir / "record.json").exists()
    good = ckpt.load_checkpoint(run_dir)
    assert all(bool(torch.isfinite(t).all()) for t in good.weights.values())


def test_existing_run_dir_needs_resume_and_resume_needs_same_config(tmp_path: Path) -> None:
    cfg = toy_config(rounds=1)
    run(cfg, tmp_path, run_id="r1")
    with pytest.raises(ValueError, match="already exists; pass --resume"):
        run(cfg, tmp_path, run_id="r1")
    with pytest.raises(ValueError, match=r"other settings \(lr: 0.1 -> 0.3, as saved -> as given\)"):
        run(cfg.replace(lr=0.3), tmp_path, run_id="r1", resume=True)
    # A finished run whose checkpoint was deleted (the suite does that) still resumes to its record.
    import shutil

    first = RunRecord.load(tmp_path / "r1")
    shutil.rmtree(ckpt.checkpoint_dir(tmp_path / "r1"))
    assert run(cfg, tmp_path, run_id="r1", resume=True).final_metrics == first.final_metrics
    with pytest.raises(FileNotFoundError, match="no run named 'never-ran'"):
        run(cfg, tmp_path, run_id="never-ran", resume=True)
    with pytest.raises(ValueError, match="may only contain"):
        run(cfg, tmp_path, run_id="../escape")


def test_task_object_must_match_config(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'toy' but config.task is 'classification'"):
        run_experiment(toy_config().replace(task="classification"), tmp_path, task=ToyTask())
