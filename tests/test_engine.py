"""Engine tests on the synthetic toy task: exact math, determinism, resume, memory, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from fednlp_bench.config import RunConfig
from fednlp_bench.engine.run import checkpoint as ckpt
from fednlp_bench.algorithms.fedprox import ProximalTerm
from fednlp_bench.engine.run import sources
from fednlp_bench.engine.client.trainer import LocalTrainer
from fednlp_bench.engine.client.model_state import ClientUpdateRejected
from fednlp_bench.engine.run.prepare import centralized_steps_per_round
from fednlp_bench.engine.run.runner import NonFiniteModelError, run_experiment
from fednlp_bench.sampling.seeds import apply_dropout, sample_clients
from fednlp_bench.testing.toy import ToyTask, toy_partition
from fednlp_bench.results.record import RunRecord, validate_record_dict


@pytest.fixture(autouse=True)
def toy_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    """The toy task gets contiguous-block partitions (no dependency on the partitioners)."""
    monkeypatch.setattr(sources, "build_partition", toy_partition)


def toy_config(**changes: object) -> RunConfig:
    base = dict(
        task="toy",
        model="toy",
        algorithm="fedavg",
        rounds=3,
        clients_per_round=3,
        partition={"scheme": "iid", "num_clients": 5, "seed": 0, "min_size": 1, "params": {}},
        lr=0.1,
        optimizer="sgd",
        batch_size=8,
        local_epochs=1,
    )
    base.update(changes)
    return RunConfig.from_dict(base)


def run(cfg: RunConfig, runs_dir: Path, task: ToyTask | None = None, **kw: object) -> RunRecord:
    return run_experiment(cfg, runs_dir, task=task or ToyTask(n_train=60), progress=False, **kw)  # type: ignore[arg-type]


def final_weights(runs_dir: Path, record: RunRecord) -> dict[str, torch.Tensor]:
    return ckpt.load_checkpoint(runs_dir / record.run_id).weights


# ------------------------------------------------------------------ exactness
def test_fedavg_one_client_one_step_equals_centralized_sgd(tmp_path: Path) -> None:
    task = ToyTask(n_train=24)
    cfg = toy_config(
        rounds=1, clients_per_round=1, partition={"scheme": "iid", "num_clients": 1, "seed": 0, "min_size": 1, "params": {}},
        local_epochs=None, local_steps=1, batch_size=24, lr=0.5,
    )
    fed = run(cfg, tmp_path / "fed", task)
    central = run(cfg.replace(algorithm="centralized"), tmp_path / "central", task)
    w_fed = final_weights(tmp_path / "fed", fed)
    w_central = final_weights(tmp_path / "central", central)

    # Hand-made SGD step on the same (full) batch from the same initial model.
    torch.manual_seed(cfg.seed)
    model = task.build_model()
    feats = task.preprocess(task.load()["train"], train=True)
    batch = task.collate([{"x": x, "labels": y} for x, y in zip(feats["x"], feats["labels"])])
    model(**batch).loss.backward()
    expected = {n: (p - 0.5 * p.grad).detach() for n, p in model.named_parameters()}
    for name, value in expected.items():
        assert not torch.allclose(value, model.state_dict()[name])  # the step moved the weights
        torch.testing.assert_close(w_fed[name], value, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(w_central[name], value, rtol=1e-6, atol=1e-6)
    assert fed.rounds[0].train_loss == pytest.approx(central.rounds[0].train_loss, rel=1e-6)


def test_fedprox_with_mu_zero_is_fedavg_exactly(tmp_path: Path) -> None:
    cfg = toy_config(optimizer="adamw", lr=0.05, local_epochs=2)
    avg = run(cfg, tmp_path / "a")
    prox = run(cfg.replace(algorithm="fedprox", algorithm_params={"mu": 0.0}), tmp_path / "p")
    wa, wp = final_weights(tmp_path / "a", avg), final_weights(tmp_path / "p", prox)
    assert all(torch.equal(wa[k], wp[k]) for k in wa)
    assert [r.metrics for r in avg.rounds] == [r.metrics for r in prox.rounds]
    assert [r.train_loss for r in avg.rounds] == [r.train_loss for r in prox.rounds]


def test_fedprox_term_pulls_clients_towards_the_global_model() -> None:
    task = ToyTask(n_train=40)
    task.load()
    torch.manual_seed(0)
    model = task.build_model()
    feats = task.preprocess(task.load()["train"], train=True)
    trainer = LocalTrainer(task, model, feats, batch_size=8, lr=0.2, optimizer="sgd", local_epochs=3)
    start = trainer.state.get()
    rows = np.arange(40)
    norms = {}
    for mu in (0.0, 1.0, 4.0):
        res = trainer.train(0, rows, start, {"mu": mu}, seed=7, procedure=ProximalTerm())
        norms[mu] = float(sum((d**2).sum() for d in res.delta.values()) ** 0.5)
    assert norms[0.0] > norms[1.0] > norms[4.0] > 0


def test_centralized_budget_matches_fedavg_expected_examples() -> None:
    cfg = toy_config(clients_per_round=3, batch_size=8, local_epochs=2)
    # 2 epochs * 3 clients * (60 / 5 rows per client) = 72 examples = 9 batches of 8
    assert centralized_steps_per_round(cfg, union_size=60, num_clients=5) == 9
    cfg_steps = toy_config(clients_per_round=3, local_epochs=None, local_steps=4)
    assert centralized_steps_per_round(cfg_steps, union_size=60, num_clients=5) == 12


# ------------------------------------------------------------------ determinism and resume
def test_same_seed_gives_identical_metrics_and_other_seed_differs(tmp_path: Path) -> None:
    cfg = toy_config(algorithm="fedadam", algorithm_params={"server_lr": 0.05}, sampling="weighted", dropout=0.2,
                     rounds=4, partition={"scheme": "quantity_skew", "num_clients": 6, "seed": 0, "min_size": 1})
    first = run(cfg, tmp_path / "1", ToyTask(n_train=60, hidden=8, dropout=0.3))
    second = run(cfg, tmp_path / "2", ToyTask(n_train=60, hidden=8, dropout=0.3))
    other = run(cfg.replace(seed=1), tmp_path / "3", ToyTask(n_train=60, hidden=8, dropout=0.3))
    key = lambda rec: [(r.clients, r.train_loss, r.metrics, r.bytes_up) for r in rec.rounds]  # noqa: E731
    assert key(first) == key(second)
    assert key(first) != key(other)


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


def test_trainer_maps_overflowing_features_to_their_examples() -> None:
    from datasets import Dataset

    task = ToyTask(n_train=6)
    feats = Dataset.from_dict({"x": [[0.0] * 6] * 5, "labels": [0] * 5, "example_index": [0, 0, 1, 2, 2]})
    trainer = LocalTrainer(task, task.build_model(), feats, batch_size=2, lr=0.1, local_epochs=1)
    assert trainer.rows_for(np.array([0, 2])).tolist() == [0, 1, 3, 4]
    assert trainer.rows_for(np.array([1])).tolist() == [2]


# ------------------------------------------------------------------ sampling
def test_sampling_is_seeded_per_round_and_weighted_prefers_big_clients() -> None:
    sizes = np.array([1] * 9 + [100])
    assert sample_clients(10, 3, 5, 0) == sample_clients(10, 3, 5, 0)
    assert len({tuple(sample_clients(10, 3, r, 0)) for r in range(20)}) > 5
    uniform = sum(9 in sample_clients(10, 1, r, 0, "uniform", sizes) for r in range(400))
    weighted = sum(9 in sample_clients(10, 1, r, 0, "weighted", sizes) for r in range(400))
    assert uniform < 80 and weighted > 300
    assert sample_clients(4, 4, 1, 0) == [0, 1, 2, 3]
    kept, dropped = apply_dropout(list(range(1000)), 0.25, 1, 0)
    assert 200 < len(dropped) < 300 and sorted(kept + dropped) == list(range(1000))
    with pytest.raises(ValueError, match="clients_per_round=5"):
        sample_clients(4, 5, 1, 0)


# ------------------------------------------------------------------ memory
_MEMORY_SCRIPT = textwrap.dedent(
    """
    import resource, sys, tempfile
    from fednlp_bench.config import RunConfig
    from fednlp_bench.engine.run import runner, sources
    from fednlp_bench.testing.toy import ToyTask, toy_partition
    sources.build_partition = toy_partition
    n_clients = int(sys.argv[1])
    cfg = RunConfig(task="toy", model="toy", rounds=1, clients_per_round=4, lr=0.01, optimizer="sgd",
                    batch_size=4, local_epochs=1,
                    partition={"scheme": "iid", "num_clients": n_clients, "seed": 0, "min_size": 1, "params": {}})
    task = ToyTask(n_train=400, dim=64, classes=4, hidden=8192)  # ~0.56M params = 2.2 MB per model copy
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    runner.run_experiment(cfg, tempfile.mkdtemp(), task=task, progress=False)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
    """
)


def test_memory_does_not_grow_with_the_number_of_clients(tmp_path: Path) -> None:
    """200 vs 10 clients: same K per round, so peak memory must stay within a few model copies."""
    model_mb = (64 * 8192 + 8192 + 8192 * 4 + 4) * 4 / 2**20
    growth = {}
    for n in (10, 200):
        out = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(n)], capture_output=True, text=True, check=True)
        growth[n] = int(out.stdout.strip().splitlines()[-1]) / 1024  # MB (ru_maxrss is KiB on Linux)
    # 200 clients holding their own model or delta would add ~440 MB.
    assert growth[200] - growth[10] < 10 * model_mb, growth


def test_all_finite_is_exact() -> None:
    from fednlp_bench.engine.client.model_state import all_finite

    ts = [torch.ones(3), torch.zeros(2, 2)]
    assert all_finite(ts) and all_finite([])
    for bad in (float("nan"), float("inf"), float("-inf")):
        broken = [torch.ones(3), torch.tensor([0.0, bad])]
        assert not all_finite(broken)
    # Huge but finite values overflow the float32 fast-path sum; the exact check still says finite.
    assert all_finite([torch.full((4,), 3e38), torch.full((2,), 3e38)])
