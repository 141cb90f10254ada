"""FedMedian (Yin et al., ICML 2018): the coordinate-wise median of the client models.

A minority of arbitrarily bad clients cannot move a median far, unlike a mean.
With an even number of clients the median is the mean of the two middle
values (as numpy's and Flower's). Clients are not weighted by data size.
"""

from __future__ import annotations

from typing import Sequence

from fednlp_bench.algorithms.base import ClientResult, Strategy, Weights
from fednlp_bench.algorithms.robust import stacked


class FedMedian(Strategy):
    name = "fedmedian"
    label = "FedMedian"
    family = "robust"

    def aggregate(self, rnd: int, global_weights: Weights, results: Sequence[ClientResult]) -> Weights:
        k = len(results)
        out: Weights = {}
        for n, w in global_weights.items():
            s = stacked(results, n)
            out[n] = w + (s[(k - 1) // 2] + s[k // 2]) / 2
        return out
