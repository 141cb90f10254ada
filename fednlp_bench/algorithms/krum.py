"""Krum and Multi-Krum (Blanchard et al., NeurIPS 2017): keep the updates closest to their neighbours.

Each client's score is the sum of squared distances from its update to its
K - f - 2 nearest other updates (f = ``num_malicious_clients``; at least one
neighbour). Krum takes the update with the lowest score; with
``num_clients_to_keep`` m > 0 (Multi-Krum) the m lowest are averaged.
Parameter names follow Flower's ``Krum`` strategy.
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch

from fednlp_bench.algorithms.base import ClientResult, Strategy, Weights
from fednlp_bench.checks import at_least
from fednlp_bench.registry import Param, declare

log = logging.getLogger("fednlp_bench.engine")


class Krum(Strategy):
    name = "krum"
    label = "Krum"
    family = "robust"
    param_specs = declare(
        Param("num_malicious_clients", int, 0, at_least(0), "f: clients assumed malicious (scores sum K - f - 2 distances)"),
        Param("num_clients_to_keep", int, 0, at_least(0), "m: average the m best-scored updates (0: the single best)"),
    )

    def scores(self, results: Sequence[ClientResult]) -> list[float]:
        flat = torch.stack([torch.cat([r.delta[n].reshape(-1).double() for n in sorted(r.delta)]) for r in results])
        dist = torch.cdist(flat, flat).pow(2)
        k = len(results)
        closest = max(k - self.params["num_malicious_clients"] - 2, 1)
        if k - self.params["num_malicious_clients"] - 2 < 1:
            log.warning("krum: %d clients cannot tolerate %d malicious ones (needs > 2f+2); using 1 neighbour",
                        k, self.params["num_malicious_clients"])
        return [float(row[torch.arange(k) != i].sort().values[: min(closest, k - 1)].sum()) for i, row in enumerate(dist)]

    def aggregate(self, rnd: int, global_weights: Weights, results: Sequence[ClientResult]) -> Weights:
        if len(results) == 1:
            chosen = list(results)
        else:
            order = sorted(range(len(results)), key=self.scores(results).__getitem__)
            chosen = [results[i] for i in order[: max(self.params["num_clients_to_keep"], 1)]]
        return {n: w + sum(r.delta[n] for r in chosen) / len(chosen) for n, w in global_weights.items()}
