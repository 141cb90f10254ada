"""Worked example of a user-defined algorithm: FedNova (Wang et al. 2020), one class.

``docs/custom_algorithm.md`` shows this file; ``tests/test_algorithms.py``
imports and runs it, so the documentation cannot drift from working code.

FedNova fixes FedAvg's "objective inconsistency": clients with more data take
more local steps, so plain averaging over-weights their direction. FedNova
normalises each client's delta by its number of local steps tau_i, averages
the per-step updates, then rescales by the effective step count:

    d_i     = delta_i / tau_i
    tau_eff = sum_i p_i * tau_i                 (p_i = n_i / n)
    w_new   = w + tau_eff * sum_i p_i * d_i

(This is FedNova for local SGD without momentum; with equal tau_i it is FedAvg.)
"""

from __future__ import annotations

from typing import Sequence

from fednlp_bench.algorithms.base import ClientResult, Strategy, Weights, add_scaled, weighted_mean_delta


class FedNova(Strategy):
    name = "fednova"
    label = "FedNova"
    defaults: dict = {}

    def aggregate(self, rnd: int, global_weights: Weights, results: Sequence[ClientResult]) -> Weights:
        total = sum(r.num_examples for r in results)
        p = [r.num_examples / total for r in results]
        tau_eff = sum(pi * max(r.num_steps, 1) for pi, r in zip(p, results))
        # sum_i p_i * delta_i / tau_i == weighted mean of deltas with weights p_i / tau_i (unnormalised)
        weights = [pi / max(r.num_steps, 1) for pi, r in zip(p, results)]
        mean_per_step = weighted_mean_delta(results, weights)  # = sum_i w_i d_i / sum_i w_i
        scale = tau_eff * sum(weights)  # undo the normalisation by sum_i w_i
        return add_scaled(global_weights, mean_per_step, scale)
