"""Per-client local test sets drawn from the test split with each client's own mixture (protocol v2).

Holding out 20% of each client's rows leaves most clients of a 100-client
partition with a handful of local test rows (WNUT-17: 13 sentences, some 1),
so their metric is noise. Instead every client keeps all its rows for
training and gets ``rows`` test rows drawn from the *test split* with the
same mixture as its training rows, over the strata its partition skews on:

- ``natural_id``: the group (mailbox, author) when the test split shares the
  groups of the training split (AESLC mailboxes: 1,903 of 1,906 test e-mails);
  else, as for SQuAD's articles (split by article), the task's
  ``partition_key`` below;
- ``feature_cluster``: the partition's own k-means cluster, test rows
  assigned to the nearest centroid of the same fit;
- every other scheme: the task's ``partition_key`` (20News: the label, SQuAD:
  the question type, WNUT-17: the dominant entity type), or one stratum
  (a uniform draw) when the task has none.

Per stratum k a client gets round(rows * p_k) rows (largest remainders, so
the counts sum to ``rows``), drawn without replacement from the test rows of
stratum k, or all of them when there are fewer. Draws are seeded by the
partition seed and the client id, so a re-run draws the same sets.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

_DRAW_STREAM = 7
#: Share of the test split whose group must also occur in train for group strata (else partition_key).
SHARED_GROUPS = 0.5


@dataclass
class Strata:
    """A code per train row and per test row (-1: no stratum) and what the codes are."""

    train: np.ndarray
    test: np.ndarray
    name: str


def _codes(train_values: Sequence[Any], test_values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Dense codes over the training values; a test value unseen in training gets -1."""
    index = {v: i for i, v in enumerate(sorted({str(v) for v in train_values}))}
    train = np.array([index[str(v)] for v in train_values], dtype=np.int64)
    test = np.array([index.get(str(v), -1) for v in test_values], dtype=np.int64)
    return train, test


def _partition_key(train_raw: Any, test_raw: Any) -> Strata:
    if "partition_key" in train_raw.column_names and "partition_key" in test_raw.column_names:
        keys = np.asarray(train_raw["partition_key"])
        if (keys >= 0).any():
            train, test = _codes(train_raw["partition_key"], test_raw["partition_key"])
            return Strata(train, test, "partition_key")
    return Strata(np.zeros(len(train_raw), dtype=np.int64), np.zeros(len(test_raw), dtype=np.int64), "none")


def _clusters(train_raw: Any, test_raw: Any, params: dict[str, Any], seed: int) -> Strata:
    from fednlp_bench.partitioners import dataset_fingerprint
    from fednlp_bench.partitioners.embeddings import cached_embeddings
    from fednlp_bench.partitioners.feature_cluster import FeatureClusterPartitioner, fit_clusters

    specs = FeatureClusterPartitioner.param_specs
    full = {name: params.get(name, spec.default) for name, spec in specs.items()}

    def vectors(split: Any) -> np.ndarray:
        return cached_embeddings(list(split["text"]), fingerprint=dataset_fingerprint(split), model=full["model"],
                                 max_length=int(full["max_length"]))

    km = fit_clusters(vectors(train_raw), int(full["clusters"]), seed)
    test = km.predict(vectors(test_raw).astype(np.float64)).astype(np.int64)
    return Strata(km.labels_.astype(np.int64), test, "feature cluster (nearest centroid)")


def strata_for(partition: dict[str, Any], train_raw: Any, test_raw: Any) -> Strata:
    """The strata a client's mixture is measured over, for its partition scheme (see the module doc)."""
    scheme, params = partition["scheme"], dict(partition.get("params") or {})
    if scheme == "natural_id":
        column = params.get("group_column", "author")
        if column in train_raw.column_names and column in test_raw.column_names:
            train, test = _codes(train_raw[column], test_raw[column])
            if (test >= 0).mean() >= SHARED_GROUPS:
                return Strata(train, test, f"group ({column})")
    if scheme == "feature_cluster":
        return _clusters(train_raw, test_raw, params, int(partition["seed"]))
    return _partition_key(train_raw, test_raw)


def allocate(shares: np.ndarray, rows: int) -> np.ndarray:
    """Integer counts proportional to ``shares`` summing to ``rows`` (largest remainders, ties to lower codes)."""
    exact = shares / shares.sum() * rows
    counts = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: rows - int(counts.sum())]] += 1
    return counts


def draw_local_sets(client_rows: Sequence[np.ndarray], strata: Strata, rows: int, seed: int) -> list[np.ndarray]:
    """Each client's local test rows (indexes into the test split), sorted."""
    by_stratum = {int(k): np.nonzero(strata.test == k)[0] for k in np.unique(strata.test) if k >= 0}
    size = int(strata.train.max()) + 1 if len(strata.train) else 1
    out = []
    for cid, train_rows in enumerate(client_rows):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), _DRAW_STREAM, cid]))
        shares = np.bincount(strata.train[np.asarray(train_rows, dtype=np.int64)], minlength=size).astype(np.float64)
        picked = []
        for k, count in enumerate(allocate(shares, rows)):
            pool = by_stratum.get(k)
            if count and pool is not None and len(pool):
                picked.append(rng.choice(pool, size=min(int(count), len(pool)), replace=False))
        out.append(np.sort(np.concatenate(picked)) if picked else np.array([], dtype=np.int64))
    return out


def describe(sets: Sequence[np.ndarray], strata: Strata, rows: int, seed: int) -> dict[str, Any]:
    test = {str(c): t.tolist() for c, t in enumerate(sets)}
    return {"source": "test", "strata": strata.name, "rows": rows, "seed": seed, "test_rows": test,
            "test_rows_hash": hashlib.sha256(json.dumps(test, sort_keys=True).encode()).hexdigest()}
