"""Label skew: for each label, client shares drawn from Dirichlet(alpha) (FedNLP's label-level non-IID).

Small alpha gives each label to few clients (strong skew); large alpha
approaches IID. ``balance=True`` (the default, as in FedNLP's and
flwr-datasets' implementations) stops giving rows to a client once it holds
more than the average client size, which keeps sizes from exploding at small
alpha. Only the per-label loop (K iterations over a vector of clients) is
sequential, because balancing depends on the sizes so far; rows are assigned
once, after a draw passes ``min_size``, with one radix sort.
"""

from __future__ import annotations

import numpy as np

from fednlp_bench.checks import positive
from fednlp_bench.registry import Param, declare
from fednlp_bench.partitioners.base import (
    Draw,
    Partitioner,
    assign_by_table,
    register_partitioner,
)
from fednlp_bench.partitioners.data import ColumnData


def dirichlet_label_table(
    label_counts: np.ndarray, num_clients: int, alpha: float, balance: bool, rng: np.random.Generator
) -> np.ndarray:
    """``table[k, c]``: rows of label ``k`` for client ``c``.

    Split points follow flwr-datasets (``int(cumsum(p) * n_k)``, last client
    takes the remainder), so both give the same statistics for the same alpha.
    """
    num_labels = label_counts.size
    total = int(label_counts.sum())
    average = total / num_clients
    alphas = np.full(num_clients, alpha)
    sizes = np.zeros(num_clients, dtype=np.int64)
    table = np.empty((num_labels, num_clients), dtype=np.int64)
    for k in range(num_labels):
        p = rng.dirichlet(alphas)
        if balance:
            open_ = sizes <= average
            p = np.where(open_, p, 0.0)
            mass = p.sum()
            if not mass > 0:  # every open client drew ~0: share evenly among open clients
                p, mass = open_.astype(float), float(open_.sum())
            p = p / mass
        n_k = int(label_counts[k])
        cuts = np.minimum((np.cumsum(p) * n_k).astype(np.int64), n_k)
        cuts[-1] = n_k
        table[k] = np.diff(cuts, prepend=0)
        sizes += table[k]
    return table


@register_partitioner
class DirichletLabelPartitioner(Partitioner):
    """Per-label Dirichlet(alpha) shares over clients."""

    name = "dirichlet_label"
    label = "Dirichlet"
    needs = frozenset({"labels"})
    param_specs = declare(
        Param("alpha", float, 0.5, positive, "Dirichlet concentration; small = skewed, large = IID"),
        Param("balance", bool, True, help="stop filling clients above the average size (FedNLP / flwr-datasets)"),
    )
    fix_hint = "raise alpha, lower num_clients or lower min_size"

    def _draw(self, data: ColumnData, rng: np.random.Generator) -> Draw:
        assert data.labels is not None
        labels = data.labels
        counts = np.bincount(labels, minlength=len(data.label_names) or 0)
        table = dirichlet_label_table(
            counts, self.resolve_num_clients(data), self.params["alpha"], self.params["balance"], rng
        )
        return table.sum(axis=0), lambda: assign_by_table(labels, table, rng)
