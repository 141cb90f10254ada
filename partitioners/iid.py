"""IID: a random permutation cut into near-equal clients (the no-skew reference point)."""

from __future__ import annotations

import numpy as np

from fednlp_bench.partitioners.base import Draw, Partitioner, assign_in_order, register_partitioner
from fednlp_bench.partitioners.data import ColumnData


@register_partitioner
class IidPartitioner(Partitioner):
    """Each client gets ``num_rows // num_clients`` rows (the first ``num_rows % num_clients`` one more)."""

    name = "iid"
    label = "IID"
    random_sizes = False  # sizes are fixed by n and num_clients

    def _draw(self, data: ColumnData, rng: np.random.Generator) -> Draw:
        n, k = data.num_rows, self.resolve_num_clients(data)
        sizes = np.full(k, n // k, dtype=np.int64)
        sizes[: n % k] += 1
        return sizes, lambda: assign_in_order(rng.permutation(n), sizes, np.arange(k), n)
