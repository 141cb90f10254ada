"""Aggregation weights under a sampling design: the inverse-probability update is unbiased (exact enumeration)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from fednlp_bench.algorithms.base import ClientResult
from fednlp_bench.engine.server.aggregation_weights import horvitz_thompson
from fednlp_bench.sampling.policies import make_policy

SIZES = np.array([1.0, 4.0, 10.0, 25.0])
DELTAS = [torch.tensor([1.0, -2.0]), torch.tensor([0.5, 3.0]), torch.tensor([-1.0, 0.0]), torch.tensor([2.0, 1.0])]


def result(cid: int) -> ClientResult:
    return ClientResult(client_id=cid, delta={"w": DELTAS[cid]}, num_examples=int(SIZES[cid]), num_steps=1, loss=0.0)


def test_horvitz_thompson_is_unbiased_under_poisson_activity_sampling() -> None:
    """Sum over all 2^4 outcomes of P(S) * estimate(S) equals FedAvg's full-participation mean (empty S: 0)."""
    pi = make_policy("activity_poisson", {"gamma": 1.0}).inclusion(SIZES, 2)
    expected = torch.zeros(2, dtype=torch.float64)
    for joined in itertools.product([0, 1], repeat=4):
        prob = np.prod([p if j else 1 - p for p, j in zip(pi, joined)])
        chosen = [c for c, j in enumerate(joined) if j]
        if chosen:
            expected += prob * horvitz_thompson([result(c) for c in chosen], SIZES, pi).delta["w"].double()
    full = sum(SIZES[c] * DELTAS[c].double() for c in range(4)) / SIZES.sum()
    assert torch.allclose(expected, full, atol=1e-6)
    # The size-weighted mean of the joined clients is biased under the same design.
    biased = torch.zeros(2, dtype=torch.float64)
    for joined in itertools.product([0, 1], repeat=4):
        prob = np.prod([p if j else 1 - p for p, j in zip(pi, joined)])
        chosen = [c for c, j in enumerate(joined) if j]
        if chosen:
            biased += prob * sum(SIZES[c] * DELTAS[c].double() for c in chosen) / SIZES[chosen].sum()
    assert not torch.allclose(biased, full, atol=1e-2)


def test_horvitz_thompson_is_unbiased_under_systematic_sampling() -> None:
    """Fixed size K = 2: the empirical mean of the estimate over many seeded rounds approaches the full mean."""
    policy = make_policy("activity_systematic", {"gamma": 1.0})
    pi = policy.inclusion(SIZES, 2)
    estimates = [horvitz_thompson([result(c) for c in policy.select(SIZES, 2, rnd, 0)], SIZES, pi).delta["w"]
                 for rnd in range(1, 4001)]
    full = sum(SIZES[c] * DELTAS[c] for c in range(4)) / SIZES.sum()
    mean = torch.stack(estimates).mean(0)
    se = torch.stack(estimates).std(0) / np.sqrt(len(estimates))
    assert torch.all((mean - full).abs() <= 4 * se + 1e-6), (mean, full, se)


def test_zero_inclusion_is_an_error() -> None:
    with pytest.raises(ValueError, match="inclusion probability 0"):
        horvitz_thompson([result(0)], SIZES, np.zeros(4))
