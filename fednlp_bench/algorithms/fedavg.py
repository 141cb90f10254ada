"""FedAvg (McMahan et al. 2017): the example-weighted mean of client models."""

from __future__ import annotations

from typing import Sequence

from fednlp_bench.algorithms.base import ClientResult, Strategy, Weights, add_scaled, weighted_mean_delta


class FedAvg(Strategy):
    """w <- w + sum_i (n_i / n) * delta_i, with n_i the client's number of training examples."""

    name = "fedavg"
    label = "FedAvg"
    dp_compatible = True

    def aggregate(self, rnd: int, global_weights: Weights, results: Sequence[ClientResult]) -> Weights:
        return add_scaled(global_weights, weighted_mean_delta(results))
