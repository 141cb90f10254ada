"""Feature skew (FedNLP's clustering-based partition): embed texts, k-means, Dirichlet over clusters.

Clients then differ in *what their texts are about* rather than in their
labels, which is what label skew cannot express for tagging, QA or
generation. Clusters are treated exactly like labels by the Dirichlet
label-skew draw, so ``alpha`` means the same thing in both schemes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from fednlp_bench.checks import at_least, positive
from fednlp_bench.registry import Param, declare
from fednlp_bench.partitioners.base import (
    Draw,
    Partitioner,
    assign_by_table,
    register_partitioner,
)
from fednlp_bench.partitioners.data import ColumnData
from fednlp_bench.partitioners.dirichlet import dirichlet_label_table
from fednlp_bench.partitioners.embeddings import cached_embeddings
from fednlp_bench.partitioners.errors import PartitionError
from fednlp_bench.paths import DEFAULT_MODEL


def fit_clusters(vectors: np.ndarray, clusters: int, seed: int) -> Any:
    """The fitted k-means model (scikit-learn, fixed ``random_state``, so deterministic).

    Kept so other rows (a test split) can be assigned to the nearest centroid
    of exactly the clustering a partition was drawn from.
    """
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=clusters, random_state=seed, n_init=4).fit(vectors.astype(np.float64))


def cluster_embeddings(vectors: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    """k-means cluster id per row."""
    return fit_clusters(vectors, clusters, seed).labels_.astype(np.int64)


@register_partitioner
class FeatureClusterPartitioner(Partitioner):
    """Sentence embedding -> k-means(clusters) -> Dirichlet(alpha) over clusters."""

    name = "feature_cluster"
    label = "Feature clusters"
    needs = frozenset({"texts"})
    param_specs = declare(
        Param("clusters", int, 10, at_least(2), "number of k-means clusters"),
        Param("alpha", float, 0.5, positive, "Dirichlet concentration over clusters"),
        Param("balance", bool, True, help="stop filling clients above the average size"),
        Param("model", str, DEFAULT_MODEL, help="sentence encoder: 'minilm' (offline) or any HF encoder name/path"),
        Param("max_length", int, 128, at_least(8), "tokens embedded per text"),
    )
    fix_hint = "raise alpha, lower num_clients or lower min_size"

    def __init__(self, *args: object, batch_size: int = 64, progress: bool = False, **kwargs: object) -> None:
        # batch_size/progress change speed, not the result, so they stay out of the spec.
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise PartitionError(f"feature_cluster: batch_size={batch_size!r} must be an integer >= 1")
        self.batch_size = batch_size
        self.progress = progress

    def _check_data(self, data: ColumnData) -> None:
        if self.params["clusters"] > data.num_rows:
            raise PartitionError(
                f"feature_cluster: clusters={self.params['clusters']} exceeds the {data.num_rows} rows; lower clusters"
            )

    def cluster_ids(self, data: ColumnData) -> np.ndarray:
        """Cluster of every row (embeddings come from the on-disk cache when present)."""
        assert data.texts is not None
        vectors = cached_embeddings(
            data.texts,
            fingerprint=data.fingerprint,
            model=self.params["model"],
            max_length=self.params["max_length"],
            batch_size=self.batch_size,
            progress=self.progress,
        )
        return cluster_embeddings(vectors, self.params["clusters"], self.seed)

    def _prepare(self, data: ColumnData) -> ColumnData:
        ids = self.cluster_ids(data)
        names = tuple(f"cluster {c}" for c in range(self.params["clusters"]))
        return replace(data, labels=ids, label_names=names)

    def _draw(self, data: ColumnData, rng: np.random.Generator) -> Draw:
        assert data.labels is not None
        clusters = data.labels
        counts = np.bincount(clusters, minlength=self.params["clusters"])
        table = dirichlet_label_table(
            counts, self.resolve_num_clients(data), self.params["alpha"], self.params["balance"], rng
        )
        return table.sum(axis=0), lambda: assign_by_table(clusters, table, rng)
