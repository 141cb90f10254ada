"""Client populations: activity-based and Poisson sampling, the continual setting, per-client evaluation split."""

from __future__ import annotations

import numpy as np
import pytest

from fednlp_bench.config import RunConfig
from fednlp_bench.engine.eval.client_eval import MIN_CLIENT_SIZE, split_clients, summarize
from fednlp_bench.engine.server.populations import (
    ContinualPopulation, arrival_keys, find_order_column, within_group_position,
)
from fednlp_bench.sampling.seeds import sample_clients
from fednlp_bench.config_sections import ContinualSpec
from fednlp_bench.sampling.policies import (
    SAMPLING_POLICIES, activity_probabilities, capped_inclusion, make_policy, select_clients,
)

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
    with pytest.raises(ValueError, match="has no parameter 'power'"):
        RunConfig(sampling="uniform", sampling_params={"power": 1.0})
    with pytest.raises(ValueError, match="gamma=-1.0 must be >= 0"):
        RunConfig(sampling="activity_poisson", sampling_params={"gamma": -1})
    with pytest.raises(ValueError, match="Did you mean 'activity_poisson'"):
        RunConfig(sampling="activity_poison")
    with pytest.raises(ValueError, match="power=-1.0 must be >= 0"):
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


def test_continual_uses_an_order_column() -> None:
    spec = ContinualSpec.from_dict({"periods": 2, "retention": 1, "rounds_per_period": 1})
    times = np.array([5, 1, 7, 3, 2, 8], dtype=object)  # rows 1, 4, 3 are the earliest half
    pop = ContinualPopulation(spec, [np.array([0, 1, 2]), np.array([3, 4, 5])], seed=0, times=times, source="column 't'")
    assert pop.indices(0, 1).tolist() == [1] and pop.indices(1, 1).tolist() == [3, 4]
    assert pop.indices(0, 2).tolist() == [0, 2] and pop.indices(1, 2).tolist() == [5]
    assert pop.describe()["arrival_source"] == "column 't'" and pop.describe()["arrival_seed"] is None
    assert find_order_column(["id", "text", "timestamp"], None) == "timestamp"
    assert find_order_column(["id", "text"], None) is None
    with pytest.raises(ValueError, match="order_by='when' is not a column"):
        find_order_column(["id"], "when")


def test_order_within_ranks_a_per_group_counter() -> None:
    """20News article numbers count per newsgroup: rank them inside their group, then compare across groups."""
    from datasets import Dataset

    numbers = [9000, 9100, 9200, 9300, 150000, 150010, 150020, 150030]  # two groups, four posts each
    groups = ["a"] * 4 + ["b"] * 4
    assert within_group_position(numbers, groups).tolist() == [0.125, 0.375, 0.625, 0.875] * 2
    train = Dataset.from_dict({"article_number": numbers, "label": groups})
    spec = ContinualSpec.from_dict({"periods": 2, "retention": 1, "rounds_per_period": 1,
                                    "order_by": "article_number", "order_within": "label"})
    keys, source = arrival_keys(train, spec)
    assert source == "column 'article_number' ranked within each 'label'"
    pop = ContinualPopulation(spec, [np.arange(8)], seed=0, times=keys, source=source)
    # Raw numbers would put all of group a before group b; ranked within groups, each period holds half of both.
    assert pop.indices(0, 1).tolist() == [0, 1, 4, 5] and pop.indices(0, 2).tolist() == [2, 3, 6, 7]
    raw, _ = arrival_keys(train, ContinualSpec.from_dict({**spec.__dict__, "order_within": None}))
    assert ContinualPopulation(spec, [np.arange(8)], 0, raw).indices(0, 1).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="set order_by too"):
        ContinualSpec.from_dict({"periods": 2, "retention": 1, "rounds_per_period": 1, "order_within": "label"})
    with pytest.raises(ValueError, match="has missing values"):
        arrival_keys(Dataset.from_dict({"article_number": [1, None]}), ContinualSpec.from_dict(
            {"periods": 1, "retention": 1, "rounds_per_period": 1, "order_by": "article_number"}))


def test_20news_exposes_article_numbers(offline_task_env: object) -> None:
    from fednlp_bench.tasks.classification import ClassificationTask, article_number

    assert article_number("sci.space/59497") == 59497 and article_number("train-3") is None
    task = ClassificationTask(model="tiny", data="20news", max_train_examples=40, max_eval_examples=10)
    train = task.load()["train"]
    assert all(n == int(i.split("/")[1]) for n, i in zip(train["article_number"], train["id"]))


def test_continual_bad_input() -> None:
    with pytest.raises(ValueError, match="retention=3 exceeds continual.periods=2"):
        ContinualSpec.from_dict({"periods": 2, "retention": 3, "rounds_per_period": 1})
    with pytest.raises(ValueError, match="set rounds: 6"):
        RunConfig(rounds=5, continual={"periods": 3, "retention": 1, "rounds_per_period": 2})
    with pytest.raises(ValueError, match="not 'centralized'"):
        RunConfig(rounds=2, algorithm="centralized", continual={"periods": 2, "retention": 1, "rounds_per_period": 1})
    with pytest.raises(ValueError, match="continual has no parameter 'period'"):
        RunConfig(continual={"period": 2})
    with pytest.raises(ValueError, match="time_column is now continual.order_by"):
        RunConfig(rounds=2, continual={"periods": 2, "retention": 1, "rounds_per_period": 1, "time_column": "t"})


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


# ------------------------------------------------------------------ inclusion probabilities
ACTIVITY_SIZES = np.array([1, 2, 3, 50, 100, 5, 0, 7, 20, 12], dtype=np.int64)


def empirical_inclusion(method: str, params: dict, sizes: np.ndarray, k: int, rounds: int) -> np.ndarray:
    counts = np.zeros(len(sizes))
    for rnd in range(1, rounds + 1):
        counts[select_clients(method, params, len(sizes), k, rnd, 3, sizes)] += 1
    return counts / rounds


@pytest.mark.parametrize("method,params", [("activity_poisson", {"gamma": 1.0}), ("activity_poisson", {"gamma": 0.5}),
                                           ("activity_systematic", {"gamma": 1.0}), ("uniform", {}), ("poisson", {})])
def test_inclusion_frequencies_match_the_declared_probabilities(method: str, params: dict) -> None:
    """Over R = 4000 seeded rounds each client's share of rounds must lie within 4 binomial standard errors of pi_i.

    Tolerance: |f_i - pi_i| <= 4 sqrt(pi_i (1 - pi_i) / R) per client (a false alarm has probability ~6e-5 per
    client for correct code); clients with pi_i in {0, 1} must match exactly.
    """
    rounds, k = 4000, 3
    pi = make_policy(method, params).inclusion(ACTIVITY_SIZES, k)
    freq = empirical_inclusion(method, params, ACTIVITY_SIZES, k, rounds)
    tolerance = 4 * np.sqrt(pi * (1 - pi) / rounds)
    assert np.all(np.abs(freq - pi) <= tolerance + 1e-12), (freq, pi)
    assert freq[6] == 0  # no data, never chosen


def test_activity_probabilities_by_hand() -> None:
    sizes = np.array([1, 3, 6, 0])
    assert activity_probabilities(sizes, 2, 1.0) == pytest.approx([0.2, 0.6, 1.0, 0.0])  # min(1, 2*6/10) = 1
    assert activity_probabilities(sizes, 1, 0.0) == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0.0])
    # Capped design: client 2 is certain (share 1.2 > 1), the other unit of K = 2 goes 1:3 to clients 0 and 1.
    assert capped_inclusion(sizes, 2, 1.0) == pytest.approx([0.25, 0.75, 1.0, 0.0])
    assert capped_inclusion(sizes, 2, 1.0).sum() == pytest.approx(2.0)


def test_systematic_sampling_takes_exactly_k_distinct_clients() -> None:
    for rnd in range(1, 200):
        chosen = select_clients("activity_systematic", {}, len(ACTIVITY_SIZES), 4, rnd, 0, ACTIVITY_SIZES)
        assert len(chosen) == len(set(chosen)) == 4 and 6 not in chosen and 4 in chosen  # the 100-row client: pi = 1


def test_successive_draws_do_not_give_size_proportional_inclusion() -> None:
    """The historical ``weighted`` sampling: the largest client is included less often than K n / sum n says."""
    sizes = np.array([40, 20, 10, 10, 10, 5, 5])
    freq = empirical_inclusion("weighted", {}, sizes, 2, 4000)
    p = sizes / sizes.sum()
    # Two draws: pi_i = p_i + sum_{j != i} p_j p_i / (1 - p_j); nominal K p_i = 0.8 for client 0, exact 0.675.
    exact = np.array([p[i] + sum(p[j] * p[i] / (1 - p[j]) for j in range(len(p)) if j != i) for i in range(len(p))])
    assert np.abs(freq - exact).max() < 4 * np.sqrt(0.25 / 4000)
    assert exact[0] < 2 * p[0] - 0.1 and exact[-1] > 2 * p[-1] + 0.01


def test_policy_registry_is_the_one_list_of_names() -> None:
    from fednlp_bench.config_fields import FIELDS

    assert FIELDS["sampling"].options() == tuple(SAMPLING_POLICIES.names())
    assert {"activity_poisson", "activity_systematic", "top_active"} <= set(SAMPLING_POLICIES.names())
