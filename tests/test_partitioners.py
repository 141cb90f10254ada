"""Properties of the partition schemes on real 20 Newsgroups labels (and WNUT sentences).

Each test asserts a number the scheme is meant to move (heterogeneity,
sizes, coverage), not just that the code runs.
"""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset

from fednlp_bench.partitioners import (
    PARTITIONERS,
    ColumnData,
    MinSizeError,
    Partition,
    PartitionError,
    dataset_fingerprint,
    partition_dataset,
    partition_stats,
)
from fednlp_bench.partitioners import embeddings as emb
from fednlp_bench.partitioners.feature_cluster import FeatureClusterPartitioner
from partitioner_data import DATA_DIR, load_news, read_jsonl  # tests/partitioner_data.py

ALPHAS = (0.1, 0.5, 1, 5, 10, 100)


@pytest.fixture(scope="module")
def news() -> Dataset:
    return load_news()


def _codes(ds: Dataset, column: str = "label") -> tuple[np.ndarray, list[str]]:
    names, codes = np.unique(np.asarray(ds[column]), return_inverse=True)
    return codes, [str(n) for n in names]


def _stats(part: Partition, ds: Dataset):
    codes, names = _codes(ds)
    return partition_stats(part, codes, names)


def _assert_valid(part: Partition, n: int, min_size: int) -> None:
    flat = np.concatenate([part.indices(c) for c in range(part.num_clients)])
    assert flat.size == n
    assert np.array_equal(np.bincount(flat, minlength=n), np.ones(n, dtype=np.int64)), "a row is missing or duplicated"
    for c in range(part.num_clients):
        idx = part.indices(c)
        assert idx.dtype == np.int64
        assert np.all(np.diff(idx) > 0), "indices must be sorted"
    assert part.sizes().min() >= min_size
    assert int(part.sizes().sum()) == n


SCHEME_CASES = [
    ("iid", 37, {}),
    ("dirichlet_label", 50, {"alpha": 0.5}),
    ("quantity_skew", 30, {"beta": 1.0}),
    ("quantity_skew", 30, {"distribution": "power_law", "exponent": 0.8}),
    ("shard", 40, {"classes_per_client": 3}),
]


@pytest.mark.parametrize("scheme,clients,params", SCHEME_CASES)
def test_every_row_assigned_exactly_once(news, scheme, clients, params):
    part = partition_dataset(news, scheme, clients, seed=3, min_size=5, label_column="label", **params)
    assert part.num_clients == clients
    assert part.spec.scheme == scheme and part.spec.num_rows == len(news)
    assert part.spec.fingerprint == dataset_fingerprint(news)
    _assert_valid(part, len(news), min_size=5)


@pytest.mark.parametrize("scheme,clients,params", SCHEME_CASES)
def test_same_seed_identical_different_seed_different(news, scheme, clients, params):
    a = partition_dataset(news, scheme, clients, seed=11, label_column="label", **params)
    b = partition_dataset(news, scheme, clients, seed=11, label_column="label", **params)
    c = partition_dataset(news, scheme, clients, seed=12, label_column="label", **params)
    assert a.content_hash == b.content_hash
    assert all(np.array_equal(a.indices(i), b.indices(i)) for i in range(clients))
    assert a.content_hash != c.content_hash
    assert any(not np.array_equal(a.indices(i), c.indices(i)) for i in range(clients))


def test_all_alphas_work_and_small_alpha_is_more_skewed(news):
    js = {}
    for alpha in ALPHAS:
        part = partition_dataset(news, "dirichlet_label", 50, seed=0, min_size=10, label_column="label", alpha=alpha)
        _assert_valid(part, len(news), min_size=10)
        js[alpha] = _stats(part, news).mean_js
    # The headline property: alpha=0.1 is far from IID, alpha=100 close to it.
    assert js[0.1] > 0.6, js
    assert js[100] < 0.2, js
    assert js[0.1] - js[100] > 0.45, js
    assert js[0.1] > js[0.5] > js[1] > js[5] > js[100], js


def test_balance_caps_client_sizes_at_small_alpha(news):
    kwargs = dict(seed=0, min_size=0, label_column="label", alpha=0.1)
    balanced = partition_dataset(news, "dirichlet_label", 50, **kwargs)
    unbalanced = partition_dataset(news, "dirichlet_label", 50, balance=False, **kwargs)
    assert _stats(balanced, news).gini < _stats(unbalanced, news).gini - 0.1
    assert balanced.spec.params == {"alpha": 0.1, "balance": True}


def test_quantity_skew_varies_sizes_not_label_mix(news):
    iid = _stats(partition_dataset(news, "iid", 20, seed=0, label_column="label"), news)
    qs_part = partition_dataset(news, "quantity_skew", 20, seed=0, min_size=50, label_column="label", beta=0.5)
    qs = _stats(qs_part, news)
    label_skew = _stats(partition_dataset(news, "dirichlet_label", 20, seed=0, label_column="label", alpha=0.5), news)
    # Sizes: strongly unequal, unlike iid.
    assert iid.gini < 0.01
    assert qs.gini > 0.3
    assert qs.sizes.max() > 5 * qs.sizes.min()
    # Label mix: every client with a few hundred rows looks like the global mix.
    big = qs.sizes >= 300
    assert big.sum() >= 5
    assert np.nanmax(qs.js[big]) < 0.2
    assert qs.mean_tv < 0.5 * label_skew.mean_tv
    assert qs_part.spec.params == {"distribution": "dirichlet", "beta": 0.5}


def test_quantity_skew_power_law_sizes_follow_ranks(news):
    part = partition_dataset(news, "quantity_skew", 10, seed=0, label_column="label",
                             distribution="power_law", exponent=1.0)
    sizes = np.sort(part.sizes())[::-1]
    # min_size (1) is reserved per client, the rest is shared in proportion to rank^-1.
    expected = 1 + (len(news) - 10) / np.sum(1 / np.arange(1, 11)) / np.arange(1, 11)
    assert np.all(np.abs(sizes - expected) <= 1.0)
    assert part.spec.params == {"distribution": "power_law", "exponent": 1.0}


def test_shard_gives_each_client_exactly_c_classes(news):
    part = partition_dataset(news, "shard", 40, seed=0, label_column="label", classes_per_client=2)
    st = _stats(part, news)
    assert np.all(st.classes_per_client == 2)
    assert np.all(st.counts.sum(axis=0) > 0)  # every class is held by someone
    iid = _stats(partition_dataset(news, "iid", 40, seed=0, label_column="label"), news)
    assert st.mean_js > iid.mean_js + 0.6


def test_natural_id_one_client_per_author(news):
    counts = {}
    for a in news["author"]:
        counts[a] = counts.get(a, 0) + 1
    keep = [i for i, a in enumerate(news["author"]) if counts[a] >= 20]
    sub = news.select(keep)
    authors = sorted(set(sub["author"]))
    part = partition_dataset(sub, "natural_id", None, group_column="author", min_size=20)
    assert part.num_clients == len(authors) >= 10
    column = np.asarray(sub["author"])
    for c, author in enumerate(authors):
        assert set(column[part.indices(c)]) == {author}
    # Explicit num_clients must agree with the data; the error says what it must be.
    same = partition_dataset(sub, "natural_id", len(authors), group_column="author")
    assert same.content_hash != part.content_hash  # min_size is part of the spec ...
    assert all(np.array_equal(same.indices(c), part.indices(c)) for c in range(len(authors)))  # ... rows are not
    with pytest.raises(PartitionError, match=rf"has {len(authors)} distinct values"):
        partition_dataset(sub, "natural_id", len(authors) + 1, group_column="author")
    with pytest.raises(PartitionError, match="lower min_size, pool them with merge_below=30 .* or group by a coarser column"):
        partition_dataset(sub, "natural_id", None, group_column="author", min_size=30)


def test_string_and_int_labels_give_the_same_partition(news):
    codes, _ = _codes(news)
    as_int = Dataset.from_dict({"id": news["id"], "label": codes.tolist()})
    a = partition_dataset(news, "dirichlet_label", 25, seed=4, label_column="label", alpha=0.3)
    b = partition_dataset(as_int, "dirichlet_label", 25, seed=4, label_column="label", alpha=0.3)
    assert a.content_hash == b.content_hash


def test_min_size_guaranteed_or_clear_error(news):
    ok = partition_dataset(news, "dirichlet_label", 100, seed=0, min_size=40, label_column="label", alpha=0.5)
    assert ok.sizes().min() >= 40
    with pytest.raises(MinSizeError, match=r"raise alpha, lower num_clients or lower min_size") as err:
        partition_dataset(news, "dirichlet_label", 100, seed=0, min_size=100, label_column="label", alpha=0.1)
    assert "min_size=100" in str(err.value) and "100 tries" in str(err.value)
    # Quantity skew reserves min_size per client, so even a very skewed draw meets it exactly.
    qs = partition_dataset(news, "quantity_skew", 100, seed=0, min_size=50, label_column="label", beta=0.05)
    assert qs.sizes().min() == 50 and qs.sizes().max() > 1000


def test_fingerprint_tracks_ids_and_honours_select(news):
    fp = dataset_fingerprint(news)
    assert fp == dataset_fingerprint(Dataset.from_dict({"id": news["id"], "other": [0] * len(news)}))
    first = news.select(range(100))
    fresh = Dataset.from_dict({"id": news["id"][:100]})
    assert dataset_fingerprint(first) == dataset_fingerprint(fresh) != fp
    assert dataset_fingerprint(news.select(range(1, 101))) != dataset_fingerprint(first)
    # A contiguous select is an Arrow slice with a non-zero offset: same rows, same fingerprint.
    assert dataset_fingerprint(news.select(range(1, 101))) == dataset_fingerprint(
        Dataset.from_dict({"id": news["id"][1:101]})
    )
    # Without an id column the row contents are hashed.
    no_id = Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]})
    assert dataset_fingerprint(no_id) != dataset_fingerprint(Dataset.from_dict({"text": ["a", "b"], "label": [1, 0]}))


# ----- bad input: clear errors before any work --------------------------------------------


def test_column_data_accepts_plain_arrays():
    labels = np.array(["b", "a", "b", "c"] * 25)
    data = ColumnData.from_labels(labels)
    assert data.label_names == ("a", "b", "c")
    assert np.array_equal(data.labels[:4], [1, 0, 1, 2])
    part = PARTITIONERS["dirichlet_label"](4, seed=0, alpha=1.0).partition(data)
    _assert_valid(part, 100, min_size=1)


# ----- feature clustering on real sentences with the pretrained MiniLM ----------------------


def _near_duplicate(tokens: list[str]) -> str:
    # Same tweet, lightly edited: lower-cased, last token dropped, an exclamation added.
    return " ".join(t.lower() for t in tokens[:-1]) + " !"


@pytest.fixture(scope="module")
def wnut_pairs() -> Dataset:
    rows = [r for r in read_jsonl(DATA_DIR / "wnut17" / "train.jsonl") if len(r["tokens"]) >= 8][:120]
    texts = [" ".join(r["tokens"]) for r in rows] + [_near_duplicate(r["tokens"]) for r in rows]
    ids = [r["id"] for r in rows] + [r["id"] + "-dup" for r in rows]
    return Dataset.from_dict({"id": ids, "text": texts})


@pytest.mark.slow
def test_feature_cluster_groups_near_duplicates_and_caches(wnut_pairs, monkeypatch, tmp_path, capfd):
    monkeypatch.setenv("FEDNLP_CACHE_DIR", str(tmp_path / "cache"))
    n = len(wnut_pairs) // 2
    part = partition_dataset(wnut_pairs, "feature_cluster", 6, seed=0, clusters=12, alpha=0.1, min_size=5)
    printed = capfd.readouterr()
    assert "Loading weights" not in printed.err + printed.out  # no transformers bar in a run's log
    _assert_valid(part, 2 * n, min_size=5)
    assert part.spec.params == {"alpha": 0.1, "balance": True, "clusters": 12, "max_length": 128, "model": "minilm"}
    cached = list((tmp_path / "cache" / "embeddings").glob("*.npy"))
    assert len(cached) == 1

    # The k-means step puts a sentence and its near-duplicate in the same cluster (chance: ~1/12).
    partitioner = FeatureClusterPartitioner(6, seed=0, clusters=12, alpha=0.1)
    data = ColumnData(num_rows=2 * n, fingerprint=dataset_fingerprint(wnut_pairs), texts=wnut_pairs["text"])

    def no_reembed(*args, **kwargs):
        raise AssertionError("a re-run must read the embedding cache")

    monkeypatch.setattr(emb, "embed_texts", no_reembed)
    clusters = partitioner.cluster_ids(data)
    assert np.mean(clusters[:n] == clusters[n:]) > 0.9

    # ... so they also share a client far more often than under iid.
    owner = part.client_of_row()
    iid_owner = partition_dataset(wnut_pairs, "iid", 6, seed=0).client_of_row()
    together = np.mean(owner[:n] == owner[n:])
    iid_together = np.mean(iid_owner[:n] == iid_owner[n:])
    assert together > 0.5 and together > 2.5 * iid_together, (together, iid_together)

    # Same seed (from the cache) -> identical partition.
    again = partition_dataset(wnut_pairs, "feature_cluster", 6, seed=0, clusters=12, alpha=0.1, min_size=5)
    assert again.content_hash == part.content_hash


def test_natural_id_merge_below_pools_the_small_groups_into_one_last_client():
    authors = ["a"] * 12 + ["b"] * 3 + ["c"] * 15 + ["d"] * 1 + ["e"] * 2
    data = Dataset.from_dict({"id": [str(i) for i in range(len(authors))], "author": authors})
    with pytest.raises(PartitionError, match=r"3 groups .* fewer than min_size=5 .* merge_below=5"):
        partition_dataset(data, "natural_id", None, group_column="author", min_size=5)
    part = partition_dataset(data, "natural_id", None, group_column="author", min_size=5, merge_below=5)
    assert part.num_clients == 3  # a, c, and b+d+e pooled last
    column = np.asarray(authors)
    assert set(column[part.indices(0)]) == {"a"} and set(column[part.indices(1)]) == {"c"}
    assert sorted(column[part.indices(2)]) == ["b", "b", "b", "d", "e", "e"]
    assert part.spec.params["merge_below"] == 5
    # The pooled client must itself reach min_size, or the error says so.
    with pytest.raises(PartitionError, match=r"pooled client needs 7 rows"):
        partition_dataset(data, "natural_id", None, group_column="author", min_size=7, merge_below=7)
    with pytest.raises(PartitionError, match=r"all would merge into one client"):
        partition_dataset(data, "natural_id", None, group_column="author", merge_below=100)


def _authors(sizes: dict[str, int]) -> Dataset:
    authors = [name for name, n in sizes.items() for _ in range(n)]
    return Dataset.from_dict({"id": [str(i) for i in range(len(authors))], "author": authors})


def test_natural_id_warns_once_when_most_clients_are_tiny_and_names_the_fixing_merge_below(caplog):
    import logging

    from fednlp_bench.partitioners import natural_id

    natural_id._WARNED.clear()
    # 2 big authors and 8 with 1-3 rows: 80% of the clients hold fewer than 10 rows.
    data = _authors({"big1": 40, "big2": 30, **{f"a{i}": 1 + i % 3 for i in range(8)}})
    with caplog.at_level(logging.WARNING, logger="fednlp_bench"):
        part = partition_dataset(data, "natural_id", None, group_column="author")
        partition_dataset(data, "natural_id", None, group_column="author")  # the same partition again: said once
    lines = [r.getMessage() for r in caplog.records if "natural_id" in r.getMessage()]
    assert lines == ["natural_id: 8 of 10 clients (80%) of column 'author' have fewer than 10 rows (median 2); pool "
                     "them with merge_below=4 (3 clients then) or group by a coarser column (warn_share=1 turns this "
                     "warning off)"]
    assert part.num_clients == 10
    # The value it names is the smallest that fixes it: merge_below=3 still leaves 3 of 5 clients small.
    caplog.clear()
    natural_id._WARNED.clear()
    with caplog.at_level(logging.WARNING, logger="fednlp_bench"):
        fixed = partition_dataset(data, "natural_id", None, group_column="author", merge_below=4)
        assert not caplog.records
        partition_dataset(data, "natural_id", None, group_column="author", merge_below=3)
        assert "3 of 5 clients (60%)" in caplog.records[-1].getMessage()
        caplog.clear()
        partition_dataset(data, "natural_id", None, group_column="author", warn_share=1.0)
        partition_dataset(data, "natural_id", None, group_column="author", warn_below=2, warn_share=0.7)
    assert not [r for r in caplog.records if "natural_id" in r.getMessage()]
    assert fixed.num_clients == 3
    # The warning's parameters change no client, so they are not in the spec (nor its hash).
    quiet = partition_dataset(data, "natural_id", None, group_column="author", warn_share=1.0)
    assert quiet.spec.params == part.spec.params == {"group_column": "author", "merge_below": 0}
    assert quiet.content_hash == part.content_hash
    with pytest.raises(PartitionError, match=r"warn_share=2.0 is invalid: must be in \[0, 1\]"):
        partition_dataset(data, "natural_id", None, group_column="author", warn_share=2.0)
