"""FedTrimmedAvg (Yin et al., ICML 2018): coordinate-wise mean after cutting the extremes.

For every coordinate the floor(beta * K) largest and smallest client values
are dropped and the rest averaged (Flower's ``beta``, default 0.2). Clients
are not weighted by data size.
"""

from __future__ import annotations

import math
from typing import Sequence

from fednlp_bench.algorithms.base import ClientResult, Strategy, Weights
from fednlp_bench.algorithms.robust import stacked
from fednlp_bench.checks import in_range
from fednlp_bench.registry import Param, declare


class FedTrimmedAvg(Strategy):
    name = "fedtrimmedavg"
    label = "FedTrimmedAvg"
    family = "robust"
    param_specs = declare(Param("beta", float, 0.2, in_range(0, 0.5, note="the fraction cut per side"),
                                "fraction of the client updates cut on each side, per coordinate"))

    def aggregate(self, rnd: int, global_weights: Weights, results: Sequence[ClientResult]) -> Weights:
        k = len(results)
        cut = math.floor(self.params["beta"] * k)
        return {n: w + stacked(results, n)[cut : k - cut].mean(dim=0) for n, w in global_weights.items()}
