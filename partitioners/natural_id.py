"""Natural partition: one client per distinct value of an existing column (author, site, source).

This is the only scheme whose non-IIDness comes from the data itself, so it
has no randomness and no free ``num_clients``: the column decides both.
"""

from __future__ import annotations

import numpy as np

from fednlp_bench.partitioners.base import Draw, Param, Partitioner, register_partitioner
from fednlp_bench.partitioners.data import ColumnData
from fednlp_bench.partitioners.errors import PartitionError


@register_partitioner
class NaturalIdPartitioner(Partitioner):
    """Client ``i`` = rows whose group value is the i-th in sorted order of the distinct values."""

    name = "natural_id"
    label = "Natural"
    needs = frozenset({"groups"})
    param_specs = {"group_column": Param(str, "author", "column whose distinct values become the clients")}
    random_sizes = False
    infers_num_clients = True

    def resolve_num_clients(self, data: ColumnData) -> int:
        assert data.groups is not None
        distinct = len(data.group_names)
        if self.num_clients is not None and self.num_clients != distinct:
            raise PartitionError(
                f"natural_id: column {self.params['group_column']!r} has {distinct} distinct values, so num_clients "
                f"must be {distinct} (or omitted), not {self.num_clients}"
            )
        return distinct

    def check_size_limits(self, n: int, k: int) -> None:
        # Groups never outnumber rows, and too-small groups get the specific message of _check_data.
        if n < 1:
            raise PartitionError("the dataset is empty; nothing to partition")

    def _check_data(self, data: ColumnData) -> None:
        assert data.groups is not None
        sizes = np.bincount(data.groups, minlength=len(data.group_names))
        small = np.nonzero(sizes < self.min_size)[0]
        if small.size:
            example = data.group_names[int(small[0])]
            raise PartitionError(
                f"natural_id: {small.size} groups of column {self.params['group_column']!r} have fewer than "
                f"min_size={self.min_size} rows (e.g. {example!r} has {int(sizes[small[0]])}); lower min_size "
                f"or group by a coarser column"
            )

    def _draw(self, data: ColumnData, rng: np.random.Generator) -> Draw:
        assert data.groups is not None
        groups = data.groups
        return np.bincount(groups, minlength=len(data.group_names)), lambda: groups.astype(np.int64)
