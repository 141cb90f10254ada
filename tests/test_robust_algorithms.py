"""Robust and fair aggregation against a poisoned client, with hand-computed results."""

from __future__ import annotations

import pytest
import torch

from fednlp_bench.algorithms import ClientResult, create_strategy

W = {"w": torch.tensor([1.0, -2.0], dtype=torch.float64)}
HONEST = [[0.1, 0.2], [0.3, 0.0], [0.2, 0.1], [0.4, -0.1]]
POISON = [1000.0, -1000.0]


def clients(deltas: list[list[float]], sizes: list[int] | None = None) -> list[ClientResult]:
    sizes = sizes or [1] * len(deltas)
    return [ClientResult(i, {"w": torch.tensor(d, dtype=torch.float64)}, num_examples=n, num_steps=1, loss=0.0)
            for i, (d, n) in enumerate(zip(deltas, sizes))]


def new_w(name: str, params: dict, deltas: list[list[float]], sizes: list[int] | None = None) -> torch.Tensor:
    return create_strategy(name, params).aggregate(1, W, clients(deltas, sizes))["w"]


def test_fedavg_is_wrecked_by_one_poisoned_client() -> None:
    assert float(new_w("fedavg", {}, HONEST + [POISON])[0]) > 100


def test_fedmedian_ignores_the_poisoned_client() -> None:
    # coordinate 0: [0.1, 0.3, 0.2, 0.4, 1000] -> median 0.3;  coordinate 1: [0.2, 0, 0.1, -0.1, -1000] -> 0
    torch.testing.assert_close(new_w("fedmedian", {}, HONEST + [POISON]), torch.tensor([1.3, -2.0], dtype=torch.float64))
    # Even count: mean of the two middle values. [0.1, 0.2, 0.3, 0.4] -> 0.25; [-0.1, 0, 0.1, 0.2] -> 0.05
    torch.testing.assert_close(new_w("fedmedian", {}, HONEST), torch.tensor([1.25, -1.95], dtype=torch.float64))


def test_fedtrimmedavg_cuts_the_extremes() -> None:
    # beta 0.2 of 5 clients: cut 1 per side. coord 0: mean(0.2, 0.3, 0.4) = 0.3; coord 1: mean(0, 0.1, 0.2)... sorted
    # [-1000, -0.1, 0, 0.1, 0.2] -> keep [-0.1, 0, 0.1] -> 0
    torch.testing.assert_close(new_w("fedtrimmedavg", {"beta": 0.2}, HONEST + [POISON]),
                               torch.tensor([1.3, -2.0], dtype=torch.float64))
    # beta 0: the plain (unweighted) mean, poison included
    assert float(new_w("fedtrimmedavg", {"beta": 0.0}, HONEST + [POISON])[0]) == pytest.approx(1 + 1001.0 / 5)
    with pytest.raises(ValueError, match="beta=0.5 must be in"):
        create_strategy("fedtrimmedavg", {"beta": 0.5})


def test_krum_picks_the_most_central_update_and_multikrum_averages() -> None:
    s = create_strategy("krum", {"num_malicious_clients": 1})
    # K=5, f=1: each score sums the 5-1-2 = 2 smallest squared distances. Honest pairs:
    # d(0,1)=0.08 d(0,2)=0.02 d(0,3)=0.18 d(1,2)=0.02 d(1,3)=0.02 d(2,3)=0.08
    # scores: c0 0.02+0.08=0.10, c1 0.02+0.02=0.04, c2 0.02+0.02=0.04, c3 0.02+0.08=0.10; poison huge
    scores = s.scores(clients(HONEST + [POISON]))
    assert scores[:4] == pytest.approx([0.10, 0.04, 0.04, 0.10])
    assert scores[4] > 1e5
    # ties keep client order: client 1 ([0.3, 0]) is chosen
    torch.testing.assert_close(new_w("krum", {"num_malicious_clients": 1}, HONEST + [POISON]),
                               torch.tensor([1.3, -2.0], dtype=torch.float64))
    # Multi-Krum m=2: mean of clients 1 and 2 = [0.25, 0.05]
    torch.testing.assert_close(new_w("krum", {"num_malicious_clients": 1, "num_clients_to_keep": 2}, HONEST + [POISON]),
                               torch.tensor([1.25, -1.95], dtype=torch.float64))
    with pytest.raises(ValueError, match="num_malicious_clients=-1"):
        create_strategy("krum", {"num_malicious_clients": -1})
