"""Pathological label skew ("shards", McMahan et al. 2017): each client holds exactly c classes.

Instead of cutting the label-sorted data into equal shards (which, with
unbalanced classes, gives clients shard pieces of a third class or two shards
of the same one), every client is dealt c *distinct* classes, always from the
classes held by the fewest clients so far (ties at random), and each class's
rows are split evenly among its holders. Every class is covered once
``num_clients * c >= num_classes``.
"""

from __future__ import annotations

import numpy as np

from fednlp_bench.registry import Param, declare
from fednlp_bench.checks import at_least
from fednlp_bench.partitioners.base import Draw, Partitioner, assign_by_table, register_partitioner
from fednlp_bench.partitioners.data import ColumnData
from fednlp_bench.partitioners.errors import PartitionError


def shard_table(label_counts: np.ndarray, num_clients: int, per_client: int, rng: np.random.Generator) -> np.ndarray:
    num_labels = label_counts.size
    holders = np.zeros(num_labels, dtype=np.int64)
    held = np.zeros((num_labels, num_clients), dtype=bool)
    for c in range(num_clients):
        # Fewest holders first, random among ties: balanced coverage, varied class combinations.
        pick = np.lexsort((rng.random(num_labels), holders))[:per_client]
        held[pick, c] = True
        holders[pick] += 1
    table = np.zeros((num_labels, num_clients), dtype=np.int64)
    for k in range(num_labels):
        owners = np.nonzero(held[k])[0]
        base, extra = divmod(int(label_counts[k]), owners.size)
        share = np.full(owners.size, base, dtype=np.int64)
        share[rng.permutation(owners.size)[:extra]] += 1
        table[k, owners] = share
    return table


@register_partitioner
class ShardPartitioner(Partitioner):
    """Each client gets rows of exactly ``classes_per_client`` labels."""

    name = "shard"
    label = "Shards"
    needs = frozenset({"labels"})
    param_specs = declare(Param("classes_per_client", int, 2, at_least(1), "labels per client"))
    fix_hint = "raise classes_per_client, lower num_clients or lower min_size"

    def _check_data(self, data: ColumnData) -> None:
        c, k = self.params["classes_per_client"], self.resolve_num_clients(data)
        num_labels = len(data.label_names)
        if c > num_labels:
            raise PartitionError(
                f"shard: classes_per_client={c} but the label column has only {num_labels} classes; use at most {num_labels}"
            )
        if k * c < num_labels:
            raise PartitionError(
                f"shard: {k} clients x classes_per_client={c} cannot cover all {num_labels} classes "
                f"(rows of uncovered classes would be dropped); raise num_clients or classes_per_client"
            )

    def _draw(self, data: ColumnData, rng: np.random.Generator) -> Draw:
        assert data.labels is not None
        labels = data.labels
        counts = np.bincount(labels, minlength=len(data.label_names))
        table = shard_table(counts, self.resolve_num_clients(data), self.params["classes_per_client"], rng)
        return table.sum(axis=0), lambda: assign_by_table(labels, table, rng)
