"""Bad partition input fails before any work with one line that names the value and the fix."""

from __future__ import annotations

import pytest
from datasets import Dataset, DatasetDict

from fednlp_bench.partitioners import PARTITIONERS, PartitionError, partition_dataset
from fednlp_bench.partitioners import embeddings as emb
from partitioner_data import load_news  # tests/partitioner_data.py


@pytest.fixture(scope="module")
def news() -> Dataset:
    return load_news()


@pytest.mark.parametrize("alpha", [0, -1.0])
def test_rejects_non_positive_alpha(news, alpha):
    with pytest.raises(PartitionError, match=r"alpha=.* must be > 0"):
        partition_dataset(news, "dirichlet_label", 10, label_column="label", alpha=alpha)


@pytest.mark.parametrize("clients", [0, -3])
def test_rejects_fewer_than_one_client(news, clients):
    with pytest.raises(PartitionError, match=rf"num_clients={clients} is invalid: must be >= 1"):
        partition_dataset(news, "iid", clients, label_column="label")


def test_rejects_more_clients_than_rows(news):
    small = news.select(range(30))
    with pytest.raises(PartitionError, match=r"num_clients=31 exceeds the 30 rows"):
        partition_dataset(small, "dirichlet_label", 31, label_column="label")


def test_rejects_impossible_min_size(news):
    with pytest.raises(PartitionError, match=r"min_size=200 is impossible: 100 clients x 200 rows = 20000 > 11314"):
        partition_dataset(news, "iid", 100, min_size=200, label_column="label")


def test_unknown_scheme_suggests_closest():
    with pytest.raises(PartitionError, match=r"unknown partition scheme 'dirichlet'.*Did you mean 'dirichlet_label'"):
        partition_dataset(Dataset.from_dict({"label": [0, 1]}), "dirichlet", 2)


def test_unknown_parameter_suggests_closest(news):
    with pytest.raises(PartitionError, match=r"scheme 'dirichlet_label' has no parameter 'alpah'\. Did you mean 'alpha'"):
        partition_dataset(news, "dirichlet_label", 10, label_column="label", alpah=0.5)
    with pytest.raises(PartitionError, match=r"exponent is only used with distribution='power_law'"):
        partition_dataset(news, "quantity_skew", 10, label_column="label", exponent=2.0)


def test_missing_label_column_lists_available(news):
    with pytest.raises(PartitionError, match=r"label column 'partition_key' is not in the dataset; "
                                             r"available columns: \['id', 'label', 'author'\]"):
        partition_dataset(news, "dirichlet_label", 10)


def test_rejects_dataset_dict(news):
    with pytest.raises(PartitionError, match=r"pass one split"):
        partition_dataset(DatasetDict({"train": news}), "iid", 10)


def test_shard_rejects_too_many_classes_per_client(news):
    with pytest.raises(PartitionError, match=r"classes_per_client=25 but the label column has only 20 classes"):
        partition_dataset(news, "shard", 10, label_column="label", classes_per_client=25)
    with pytest.raises(PartitionError, match=r"cannot cover all 20 classes"):
        partition_dataset(news, "shard", 5, label_column="label", classes_per_client=2)


def test_feature_cluster_checks_before_embedding(monkeypatch, news):
    def boom(*args, **kwargs):
        raise AssertionError("embedding must not start on bad input")

    monkeypatch.setattr(emb, "embed_texts", boom)
    tiny = Dataset.from_dict({"id": ["a", "b", "c"], "text": ["x", "y", "z"]})
    with pytest.raises(PartitionError, match=r"clusters=5 exceeds the 3 rows"):
        partition_dataset(tiny, "feature_cluster", 2, clusters=5)
    with pytest.raises(PartitionError, match=r"num_clients=4 exceeds the 3 rows"):
        partition_dataset(tiny, "feature_cluster", 4, clusters=2)
    with pytest.raises(PartitionError, match=r"text column 'text' is not in the dataset"):
        partition_dataset(news, "feature_cluster", 4)
    with pytest.raises(PartitionError, match=r"alpha=-0.5 is invalid"):
        partition_dataset(tiny, "feature_cluster", 2, alpha=-0.5)


def test_registry_has_one_class_per_scheme():
    assert sorted(PARTITIONERS) == ["dirichlet_label", "feature_cluster", "iid", "natural_id", "quantity_skew", "shard"]
    assert len(set(PARTITIONERS.values())) == len(PARTITIONERS)
