"""Client populations: activity-based and Poisson sampling, the continual setting, per-client evaluation split."""

from __future__ import annotations

import numpy as np
import pytest

from fednlp_bench.config import RunConfig
from fednlp_bench.engine.client_eval import MIN_CLIENT_SIZE, split_clients, summarize
from fednlp_bench.engine.populations import ContinualPopulation, ContinualSpec, find_time_column, select_clients
from fednlp_bench.engine.sampling import sample_clients

SIZES = np.array([1, 2, 3, 50, 100, 5, 0, 7], dtype=np.int64)


def frequencies(method: str, params: dict, rounds: int = 2000, k: int = 2) -> np.ndarray:
    counts = np.zeros(len(SIZES))
    for rnd in range(1, rounds + 1):
        for c in select_clients(method, params, len(SIZES), k, rnd, 0, SIZES):
            counts[c] += 1
    return counts / rounds


def test_uniform_and_weighted_reproduce_the_engine_draws_on_a_full_population() -> None:
    sizes = np.array([5, 1, 9, 3, 4])
    for method in ("uniform", "weighted"):
        for rnd in range(1, 20):
            assert select_clients(method, {}, 5, 2, rnd, 7, sizes) == sample_clients(5, 2, rnd, 7, method, sizes)


def test_activity_power_interpolates_between_uniform_and_size_weighted() -> None:
    uniform = frequencies("activity_power", {"power": 0.0})
    steep = frequencies("activity_power", {"power": 2.0})
    assert uniform[6] == 0 and steep[6] == 0  # a client without data is never chosen
    assert np.ptp(uniform[[0, 1, 2, 3, 4, 5, 7]]) < 0.08  # ~2/7 each
    assert steep[4] > 0.95 and steep[0] < 0.01  # size^2: the 100-row client nearly always


def test_top_active_takes_the_largest_clients_deterministically() -> None:
    for rnd in (1, 2, 3):
        assert select_clients("top_active", {}, len(SIZES), 3, rnd, 0, SIZES) == [3, 4, 7]


def test_poisson_joins_each_client_independently_with_q() -> None:
    sizes = np.ones(10, dtype=np.int64)
    counts = [len(select_clients("poisson", {}, 10, 3, rnd, 0, sizes)) for rnd in range(1, 3001)]
    assert np.mean(counts) == pytest.approx(3.0, rel=0.03)  # q = 3/10
    assert min(counts) == 0 and max(counts) > 3  # variable size, sometimes nobody


def test_sampling_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="takes no parameter 'power'"):
        RunConfig(sampling="uniform", sampling_params={"power": 1.0})
    with pytest.raises(ValueError, match="power=-1 must be a finite number >= 0"):
        RunConfig(sampling="activity_power", sampling_params={"power": -1})
    assert RunConfig(sampling="activity_power", sampling_params={"power": 0.5}).to_dict()["sampling_params"] == {"power": 0.5}


# ------------------------------------------------------------------ continual
def test_continual_windows_follow_arrival_and_retention() -> None:
    spec = ContinualSpec.from_dict({"periods": 4, "retention": 2, "rounds_per_period": 3})
    rows = [np.arange(0, 8), np.arange(8, 11)]
    pop = ContinualPopulation(spec, rows, seed=1)
    # Each client's rows arrive in 4 near-equal chunks of a seeded order.
    assert [int((pop.arrival[0] == t).sum()) for t in range(1, 5)] == [2, 2, 2, 2]
    assert sorted(np.concatenate([pop.indices(0, 2), pop.indices(0, 4)]).tolist()) == list(range(8))
    assert len(pop.indices(0, 1)) == 2 and len(pop.indices(0, 3)) == 4  # window of 2 periods
    assert pop.sizes(4).tolist() == [4, 1]  # client 1: 3 rows over 4 periods, the last period holds 0 or 1
    assert spec.period_of_round(1) == 1 and spec.period_of_round(3) == 1 and spec.period_of_round(4) == 2
    assert spec.is_period_end(6) and not spec.is_period_end(7)
    again = ContinualPopulation(spec, rows, seed=1).describe()
    assert again["arrival_hash"] == pop.describe()["arrival_hash"]
    assert ContinualPopulation(spec, rows, seed=2).describe()["arrival_hash"] != again["arrival_hash"]


def test_continual_uses_a_time_column_when_there_is_one() -> None:
    spec = ContinualSpec.from_dict({"periods": 2, "retention": 1, "rounds_per_period": 1})
    times = np.array([5, 1, 7, 3, 2, 8], dtype=object)  # rows 1, 4, 3 are the earliest half
    pop = ContinualPopulation(spec, [np.array([0, 1, 2]), np.array([3, 4, 5])], seed=0, times=times, time_column="time")
    assert pop.indices(0, 1).tolist() == [1] and pop.indices(1, 1).tolist() == [3, 4]
    assert pop.indices(0, 2).tolist() == [0, 2] and pop.indices(1, 2).tolist() == [5]
    assert pop.describe()["arrival_source"] == "time column 'time'"
    assert find_time_column(["id", "text", "timestamp"], None) == "timestamp"
    assert find_time_column(["id", "text"], None) is None
    with pytest.raises(ValueError, match="'when' is not a column"):
        find_time_column(["id"], "when")


def test_continual_bad_input() -> None:
    with pytest.raises(ValueError, match="retention=3 exceeds continual.periods=2"):
        ContinualSpec.from_dict({"periods": 2, "retention": 3, "rounds_per_period": 1})
    with pytest.raises(ValueError, match="set rounds: 6"):
        RunConfig(rounds=5, continual={"periods": 3, "retention": 1, "rounds_per_period": 2})
    with pytest.raises(ValueError, match="not 'centralized'"):
        RunConfig(rounds=2, algorithm="centralized", continual={"periods": 2, "retention": 1, "rounds_per_period": 1})
    with pytest.raises(ValueError, match="use backend: inprocess"):
        RunConfig(backend="fedml", rounds=2, continual={"periods": 2, "retention": 1, "rounds_per_period": 1})
    with pytest.raises(ValueError, match="unknown continual key 'period'"):
        RunConfig(continual={"period": 2})


# ------------------------------------------------------------------ client_eval split and summary
def test_client_split_is_deterministic_and_disjoint() -> None:
    rows = [np.arange(0, 10), np.arange(10, 12), np.arange(12, 17)]
    split = split_clients(rows, seed=4)
    assert [len(t) for t in split.test] == [2, 1, 1] and [len(t) for t in split.train] == [8, 1, 4]
    for c, r in enumerate(rows):
        assert sorted(np.concatenate([split.train[c], split.test[c]]).tolist()) == r.tolist()
    assert split.describe()["test_rows_hash"] == split_clients(rows, seed=4).describe()["test_rows_hash"]
    assert split.describe()["test_rows_hash"] != split_clients(rows, seed=5).describe()["test_rows_hash"]


def test_client_split_names_the_minimum_size() -> None:
    with pytest.raises(ValueError, match=f"at least {MIN_CLIENT_SIZE} rows .* client 1 holds 1"):
        split_clients([np.arange(5), np.arange(5, 6)], seed=0)
    with pytest.raises(ValueError, match="partition.min_size >= 2"):
        RunConfig(client_eval=True, partition={"scheme": "iid", "num_clients": 5, "seed": 0, "min_size": 1, "params": {}})


def test_summary_by_hand() -> None:
    values = [0.1, 0.5, 0.9, 0.4, 0.6, 0.2, 0.8, 0.3, 0.7, 1.0, 0.0]  # 11 clients: tails of ceil(1.1) = 2
    sizes = list(range(11))
    s = summarize(values, sizes)
    assert s["mean"] == pytest.approx(np.mean(values))
    assert s["std"] == pytest.approx(np.std(values, ddof=1))
    assert s["worst_10pct"] == pytest.approx(0.05) and s["best_10pct"] == pytest.approx(0.95)
    assert s["size_correlation"] == pytest.approx(np.corrcoef(sizes, values)[0, 1])
    assert summarize([0.5, 0.5], [1, 2])["size_correlation"] is None
