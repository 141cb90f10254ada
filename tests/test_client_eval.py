"""Per-client evaluation under protocol v2: local sets drawn from test with each client's mixture, a size minimum."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from fednlp_bench.config import RunConfig
from fednlp_bench.engine.eval.client_eval import ClientEvalParams
from fednlp_bench.engine.eval.local_test import Strata, allocate, draw_local_sets, strata_for
from fednlp_bench.engine.run.runner import run_experiment
from fednlp_bench.testing.toy import ToyTask


def test_allocation_is_proportional_and_sums_to_rows() -> None:
    assert allocate(np.array([3.0, 1.0, 0.0]), 8).tolist() == [6, 2, 0]
    assert allocate(np.array([1.0, 1.0, 1.0]), 10).tolist() == [4, 3, 3]  # ties to the lower code
    assert allocate(np.array([0.0, 5.0]), 3).tolist() == [0, 3]


def test_local_sets_follow_each_clients_label_mixture() -> None:
    train_labels = np.array([0] * 30 + [1] * 30 + [2] * 30)
    test_labels = np.array([0, 1, 2] * 40)
    strata = Strata(train_labels, test_labels, "partition_key")
    clients = [np.arange(0, 30), np.concatenate([np.arange(30, 45), np.arange(60, 75)])]
    sets = draw_local_sets(clients, strata, rows=20, seed=3)
    assert np.bincount(test_labels[sets[0]], minlength=3).tolist() == [20, 0, 0]
    assert np.bincount(test_labels[sets[1]], minlength=3).tolist() == [0, 10, 10]
    assert len(set(sets[1].tolist())) == 20  # without replacement
    again = draw_local_sets(clients, strata, rows=20, seed=3)
    assert all((a == b).all() for a, b in zip(sets, again))
    assert not (draw_local_sets(clients, strata, rows=20, seed=4)[1] == sets[1]).all()
    # a stratum with fewer test rows than asked gives all it has
    scarce = Strata(train_labels, np.array([0] * 5 + [1] * 50), "partition_key")
    assert len(draw_local_sets(clients[:1], scarce, rows=20, seed=0)[0]) == 5


def test_strata_per_scheme() -> None:
    train = Dataset.from_dict({"partition_key": [0, 1, 1, 2], "author": ["a", "b", "b", "c"], "text": ["x"] * 4})
    test = Dataset.from_dict({"partition_key": [2, 1, 0], "author": ["b", "c", "z"], "text": ["y"] * 3})
    keyed = strata_for({"scheme": "dirichlet_label", "seed": 0, "params": {"alpha": 1}}, train, test)
    assert (keyed.name, keyed.train.tolist(), keyed.test.tolist()) == ("partition_key", [0, 1, 1, 2], [2, 1, 0])
    groups = strata_for({"scheme": "natural_id", "seed": 0, "params": {"group_column": "author"}}, train, test)
    assert (groups.name, groups.train.tolist(), groups.test.tolist()) == ("group (author)", [0, 1, 1, 2], [1, 2, -1])
    disjoint = Dataset.from_dict({"partition_key": [2, 1, 0], "author": ["x", "y", "z"], "text": ["y"] * 3})
    assert strata_for({"scheme": "natural_id", "seed": 0, "params": {"group_column": "author"}}, train,
                      disjoint).name == "partition_key"  # no shared groups (SQuAD articles): the task's key
    none = Dataset.from_dict({"partition_key": [-1] * 4, "text": ["x"] * 4})
    assert strata_for({"scheme": "iid", "seed": 0, "params": {}}, none, none).name == "none"


def test_params_are_validated() -> None:
    assert ClientEvalParams.from_dict({}) == ClientEvalParams("holdout", 100, 1)
    assert ClientEvalParams.from_dict({"source": "test"}) == ClientEvalParams("test", 100, 20)
    with pytest.raises(ValueError, match="client_eval_params has no parameter 'row'. Did you mean 'rows'"):
        ClientEvalParams.from_dict({"row": 5})
    with pytest.raises(ValueError, match=r"source='train' is not supported\. Choose one of \['holdout', 'test'\]"):
        ClientEvalParams.from_dict({"source": "train"})
    with pytest.raises(ValueError, match="min_units=0 must be >= 1"):
        ClientEvalParams.from_dict({"source": "test", "min_units": 0})
    with pytest.raises(ValueError, match="client_eval_params is set but client_eval is off"):
        RunConfig(client_eval_params={"source": "test"})
    # off by default: configs and hashes of runs without it are unchanged
    assert "client_eval_params" not in RunConfig().to_dict()


def test_run_with_local_sets_from_test(tmp_path: Path) -> None:
    config = RunConfig.from_dict(dict(
        task="toy", model="toy", algorithm="fedavg", rounds=2, clients_per_round=3, lr=0.1, optimizer="sgd",
        batch_size=8, local_epochs=1, client_eval=True,
        client_eval_params={"source": "test", "rows": 12, "min_units": 10},
        partition={"scheme": "quantity_skew", "num_clients": 6, "seed": 0, "min_size": 2}))
    plain = run_experiment(config.replace(client_eval=False, client_eval_params={}), tmp_path / "plain",
                           task=ToyTask(n_train=84, n_test=40, hidden=4), progress=False)
    record = run_experiment(config, tmp_path / "v2", task=ToyTask(n_train=84, n_test=40, hidden=4), progress=False)
    # clients train on all their rows: the same training as without per-client evaluation
    assert [r.metrics for r in record.rounds] == [r.metrics for r in plain.rounds]
    section = record.client_eval
    summary = section["summary"]
    assert section["split"]["source"] == "test" and section["split"]["strata"] == "partition_key"
    assert (summary["clients"], summary["min_units"], summary["unit"]) == (6, 10, "examples")
    sizes = [c["test_size"] for c in section["clients"]]
    assert all(10 <= n <= 12 for n in sizes)
    qualified = [c for c in section["clients"] if c["qualified"]]
    assert summary["qualified"] == len(qualified) == sum(n >= 10 for n in sizes)
    assert all(("accuracy" in c) == c["qualified"] for c in section["clients"])
    low, high = summary["worst_10pct_ci"]
    assert low <= summary["worst_10pct"] <= high


def test_feature_cluster_test_rows_take_the_nearest_centroid_of_the_same_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    import fednlp_bench.partitioners.embeddings as embeddings

    centers = {"a": [0.0, 0.0], "b": [10.0, 0.0], "c": [0.0, 10.0]}

    def fake(texts, fingerprint, model, max_length, **_):  # noqa: ANN001 - the cached_embeddings signature
        return np.array([np.array(centers[t[0]]) + 0.1 * len(t) for t in texts], dtype=np.float32)

    monkeypatch.setattr(embeddings, "cached_embeddings", fake)
    train = Dataset.from_dict({"text": ["a", "aa", "b", "bb", "c", "cc"], "partition_key": [0] * 6})
    test = Dataset.from_dict({"text": ["bbb", "a", "ccc"], "partition_key": [0] * 3})
    strata = strata_for({"scheme": "feature_cluster", "seed": 0, "params": {"clusters": 3}}, train, test)
    assert strata.name == "feature cluster (nearest centroid)"
    code = {t: c for t, c in zip(train["text"], strata.train.tolist())}
    assert strata.test.tolist() == [code["b"], code["a"], code["c"]]


@pytest.mark.slow
def test_tagging_counts_gold_entities(tmp_path: Path) -> None:
    """WNUT-17, tiny model: the per-client minimum counts gold entities of the sets drawn from test."""
    from fednlp_bench.engine.run.sources import build_task

    config = RunConfig.from_dict(dict(
        task="tagging", data="wnut17", model="tiny", max_length=32, max_train_examples=200, max_eval_examples=200,
        rounds=1, clients_per_round=2, lr=1e-3, batch_size=8, client_eval=True,
        client_eval_params={"source": "test", "rows": 30, "min_units": 20},
        partition={"scheme": "iid", "num_clients": 4, "seed": 0, "min_size": 2, "params": {}}))
    record = run_experiment(config, tmp_path, progress=False)
    section = record.client_eval
    assert section["summary"]["unit"] == "gold entities" and section["split"]["strata"] == "partition_key"
    task = build_task(config)
    test = task.load()["test"]
    for client in section["clients"]:
        rows = section["split"]["test_rows"][str(client["client"])]
        assert client["units"] == sum(task.evaluation_units(test.select(rows)))
        assert client["qualified"] == (client["units"] >= 20) and client["test_size"] == 30


def test_the_membership_audit_needs_the_holdout_source() -> None:
    """The audit's non-members are the clients' own held-out rows; sets drawn from test are not theirs."""
    base = dict(task="toy", model="toy", algorithm="fedavg", rounds=2, clients_per_round=3, client_eval=True,
                membership_audit={"examples": 10},
                partition={"scheme": "quantity_skew", "num_clients": 6, "seed": 0, "min_size": 2})
    RunConfig.from_dict(base)
    with pytest.raises(ValueError, match="client_eval"):
        RunConfig.from_dict({**base, "client_eval_params": {"source": "test"}})
