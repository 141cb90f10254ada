"""Quantity skew: client sizes vary (Dirichlet(beta) shares or a power law), labels stay IID.

The rows are a random permutation cut into pieces of the drawn sizes, so any
client's label mix is a uniform sample of the global one; only *how much*
data a client has is non-IID.

``min_size`` rows are reserved for every client and only the rest is shared
out by the drawn proportions. Rejection sampling (redraw until the smallest
Dirichlet share is big enough, as NIID-Bench does) almost never succeeds with
many clients: at beta=0.5 and 20 clients, 10 draws over 11k rows gave a
smallest client of 0-29 rows. Reserving keeps the skew and always succeeds
when ``num_clients * min_size <= num_rows`` (checked up front).
"""

from __future__ import annotations

import numpy as np

from fednlp_bench.checks import at_least, positive
from fednlp_bench.registry import Param, declare
from fednlp_bench.partitioners.base import (
    Draw,
    Partitioner,
    assign_in_order,
    largest_remainder,
    register_partitioner,
)
from fednlp_bench.partitioners.data import ColumnData
from fednlp_bench.partitioners.errors import PartitionError

_VARIANT_PARAM = {"dirichlet": "beta", "power_law": "exponent"}


@register_partitioner
class QuantitySkewPartitioner(Partitioner):
    """Sizes ~ Dirichlet(beta) over clients, or proportional to rank^-exponent (Zipf-like)."""

    name = "quantity_skew"
    label = "Quantity skew"
    param_specs = declare(
        Param("distribution", str, "dirichlet", help="how sizes are drawn", choices=("dirichlet", "power_law")),
        Param("beta", float, 0.5, positive, "Dirichlet concentration of client shares (dirichlet)"),
        Param("exponent", float, 1.0, at_least(0),
              "size of the client at rank r is proportional to r^-exponent (power_law)"),
    )
    random_sizes = False  # min_size is reserved up front, so one draw always suffices

    def _check_params(self, given: set[str]) -> None:
        dist = self.params["distribution"]
        for variant, param in _VARIANT_PARAM.items():
            if variant != dist and param in given:
                raise PartitionError(
                    f"quantity_skew: {param} is only used with distribution={variant!r}, not {dist!r}; drop it or switch distribution"
                )

    def _spec_params(self) -> dict[str, object]:
        dist = self.params["distribution"]
        return {"distribution": dist, _VARIANT_PARAM[dist]: self.params[_VARIANT_PARAM[dist]]}

    def _draw(self, data: ColumnData, rng: np.random.Generator) -> Draw:
        n, k = data.num_rows, self.resolve_num_clients(data)
        if self.params["distribution"] == "dirichlet":
            shares = rng.dirichlet(np.full(k, self.params["beta"]))
        else:
            weights = np.arange(1, k + 1, dtype=float) ** -self.params["exponent"]
            shares = rng.permutation(weights / weights.sum())
        sizes = self.min_size + largest_remainder(shares, n - self.min_size * k)
        return sizes, lambda: assign_in_order(rng.permutation(n), sizes, np.arange(k), n)
