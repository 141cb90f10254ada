"""The centralized baseline, expressed as a strategy so it shares the runner and the record.

The runner sees :attr:`Strategy.centralized` and trains one virtual client on
the union of all client data, with the same number of examples per round as
FedAvg's expected per-round budget and one optimizer kept across rounds (as in
ordinary training). Aggregating a single result is taking its weights.
"""

from __future__ import annotations

from typing import Sequence

from fednlp_bench.algorithms.base import ClientResult, Strategy, Weights, add_scaled


class Centralized(Strategy):
    name = "centralized"
    label = "Centralized"
    centralized = True

    def aggregate(self, rnd: int, global_weights: Weights, results: Sequence[ClientResult]) -> Weights:
        if len(results) != 1:
            raise ValueError(f"centralized training has exactly one (virtual) client, got {len(results)} results")
        return add_scaled(global_weights, results[0].delta)
