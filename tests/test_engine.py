"""Engine tests on the toy task: exact math, determinism, sampling, memory (runs, resume: test_engine_runs.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from fednlp_bench.algorithms.fedprox import ProximalTerm
from fednlp_bench.engine.client.trainer import LocalTrainer
from fednlp_bench.engine.run.prepare import centralized_steps_per_round
from fednlp_bench.sampling.seeds import apply_dropout, sample_clients
from fednlp_bench.testing.toy import ToyTask
import engine_toy  # tests/engine_toy.py
from engine_toy import final_weights, run, toy_config

toy_partitions = engine_toy.toy_partitions  # autouse: the toy task's block partitions


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
