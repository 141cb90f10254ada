"""How a round's client updates are weighted, given how the clients were sampled.

FedAvg's mean weights client i by its size n_i. That estimates the
population's size-weighted update when every client is equally likely to be
sampled; if clients are sampled with probability proportional to size, the
same mean weights a client by about n_i^2 (once for being picked, once in the
mean). ``aggregation_weights`` makes the choice explicit:

* ``size``: n_i, FedAvg's own weighting (normalised over the round's clients);
* ``uniform``: every client of the round counts the same;
* ``inverse_probability``: the Horvitz-Thompson estimator of the full-population
  size-weighted mean update, sum_{i in round} (n_i / pi_i) delta_i / sum_j n_j,
  with pi_i the client's inclusion probability (from the sampling policy) times
  its survival probability (1 - dropout). Its expectation over the sampling is
  exactly sum_j n_j delta_j / sum_j n_j, the update FedAvg would make if every
  client took part. It hands the strategy that one estimated mean delta, so it
  applies to algorithms that aggregate a mean (``dp_compatible``).

When the config gives none, the sampling policy's ``default_weights`` applies.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np
import torch

from fednlp_bench.algorithms.base import ClientResult, Strategy, Weights

#: (sizes n_j of every client this round, inclusion probabilities pi_j of every client) for a round.
RoundDesign = Callable[[int], tuple[np.ndarray, np.ndarray]]


class WeightedAggregation:
    """Wraps a strategy and re-weights (``uniform``) or replaces (``inverse_probability``) the round's updates.

    Everything else (name, client procedure, configure_round, state) is
    forwarded to the inner strategy, like ``privacy.PrivateAggregation``.
    """

    def __init__(self, inner: Strategy, mode: str, design: RoundDesign, dropout: float = 0.0) -> None:
        if mode not in ("uniform", "inverse_probability"):
            raise ValueError(f"WeightedAggregation handles 'uniform' and 'inverse_probability', not {mode!r}")
        self.inner = inner
        self.mode = mode
        self.design = design
        self.survival = 1.0 - float(dropout)

    def __getattr__(self, name: str) -> Any:
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def aggregate(self, rnd: int, global_weights: Weights, results: Sequence[ClientResult]) -> Weights:
        if self.mode == "uniform":
            return self.inner.aggregate(rnd, global_weights, [dataclasses.replace(r, num_examples=1) for r in results])
        sizes, pi = self.design(rnd)
        return self.inner.aggregate(rnd, global_weights, [horvitz_thompson(results, sizes, pi * self.survival)])


def horvitz_thompson(results: Sequence[ClientResult], sizes: np.ndarray, pi: np.ndarray) -> ClientResult:
    """One synthetic result whose delta is sum_i (n_i / pi_i) delta_i / sum_j n_j over the given results."""
    if not results:
        raise ValueError("cannot estimate a mean update from zero client results")
    total = float(np.asarray(sizes, dtype=np.float64).sum())
    mean: Weights = {name: torch.zeros_like(t) for name, t in results[0].delta.items()}
    for r in results:
        p = float(pi[r.client_id])
        if not p > 0:
            raise ValueError(f"client {r.client_id} took part with inclusion probability {p}; the design is inconsistent")
        scale = float(sizes[r.client_id]) / p / total
        for name, t in r.delta.items():
            mean[name].add_(t, alpha=scale)
    return ClientResult(
        client_id=-1, delta=mean, num_examples=1,
        num_steps=max(1, round(float(np.mean([r.num_steps for r in results])))),
        loss=float(np.mean([r.loss for r in results])),
    )
