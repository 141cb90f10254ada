"""Client-level DP: clipping and noise against hand computations, epsilon against dp-accounting's reference."""

from __future__ import annotations

import math

import dp_accounting
import pytest
import torch

from fednlp_bench.algorithms.base import ClientResult
from fednlp_bench.algorithms.fedavg import FedAvg
from fednlp_bench.algorithms.fedopt import FedAdam
from fednlp_bench.algorithms.registry import algorithm_names
from fednlp_bench.config import RunConfig
from fednlp_bench.privacy import ClientLevelAccountant, PrivacySpec, PrivateAggregation, clip_delta, dp_compatible_algorithms
from fednlp_bench.privacy.aggregation import update_norm

FIXED = {"mechanism": "dp_fixed_clip", "noise_multiplier": 1.0, "clip_norm": 0.5, "delta": 1e-5}


def result(cid: int, delta: dict[str, torch.Tensor], n: int = 10) -> ClientResult:
    return ClientResult(client_id=cid, delta=delta, num_examples=n, num_steps=2, loss=1.0)


# ------------------------------------------------------------------ clipping and noise
def test_clip_delta_scales_to_the_norm_over_all_tensors() -> None:
    delta = {"a": torch.tensor([3.0, 0.0]), "b": torch.tensor([[0.0, 4.0]])}  # ||.|| = 5
    clipped, norm = clip_delta(delta, 1.0)
    assert norm == pytest.approx(5.0)
    torch.testing.assert_close(clipped["a"], torch.tensor([0.6, 0.0]))
    torch.testing.assert_close(clipped["b"], torch.tensor([[0.0, 0.8]]))
    same, _ = clip_delta(delta, 10.0)  # within the bound: untouched
    torch.testing.assert_close(same["a"], delta["a"])


def test_noised_mean_is_clipped_sum_over_the_fixed_denominator() -> None:
    # Tiny noise: the result must be the hand-computed clipped sum / expected clients (4), not / 2 arrivals.
    spec = PrivacySpec.from_dict({**FIXED, "noise_multiplier": 1e-9, "clip_norm": 1.0})
    dp = PrivateAggregation(FedAvg(), spec, expected_clients=4, noise_seed=0)
    w = {"w": torch.zeros(2)}
    out = dp.aggregate(1, w, [result(0, {"w": torch.tensor([3.0, 4.0])}), result(1, {"w": torch.tensor([0.2, 0.0])}, n=99)])
    expected = (torch.tensor([0.6, 0.8]) + torch.tensor([0.2, 0.0])) / 4  # FedAvg's size weights play no part
    torch.testing.assert_close(out["w"], expected, atol=1e-6, rtol=0)
    assert dp.last_round["nonprivate"]["clipped_fraction"] == pytest.approx(0.5)
    assert dp.last_round["noise_std"] == pytest.approx(1e-9)


def test_noise_std_is_z_times_c_over_expected_clients() -> None:
    z, c, m = 1.3, 0.7, 5
    spec = PrivacySpec.from_dict({**FIXED, "noise_multiplier": z, "clip_norm": c})
    dp = PrivateAggregation(FedAvg(), spec, expected_clients=m, noise_seed=3)
    w = {"w": torch.zeros(200_000)}
    out = dp.aggregate(1, w, [result(0, {"w": torch.zeros(200_000)})])
    assert float(out["w"].std()) == pytest.approx(z * c / m, rel=0.01)  # 0.182 by hand
    assert abs(float(out["w"].mean())) < 0.01 * z * c / m
    again = PrivateAggregation(FedAvg(), spec, expected_clients=m, noise_seed=3).aggregate(1, w, [result(0, {"w": torch.zeros(200_000)})])
    torch.testing.assert_close(out["w"], again["w"])  # seeded by (seed, round): reproducible
    other = PrivateAggregation(FedAvg(), spec, expected_clients=m, noise_seed=3).aggregate(2, w, [result(0, {"w": torch.zeros(200_000)})])
    assert not torch.allclose(out["w"], other["w"])


def test_empty_round_still_releases_noise_and_inner_state_is_checkpointed() -> None:
    spec = PrivacySpec.from_dict(FIXED)
    dp = PrivateAggregation(FedAdam(server_lr=0.1), spec, expected_clients=2, noise_seed=0)
    w = {"w": torch.zeros(3)}
    out = dp.aggregate(1, w, [])
    assert not torch.equal(out["w"], w["w"])
    state = dp.state_dict()
    assert state["dp/clip_norm"] == 0.5 and any(k.startswith("inner/m/") for k in state)
    fresh = PrivateAggregation(FedAdam(server_lr=0.1), spec, expected_clients=2, noise_seed=0)
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.inner.m["w"], dp.inner.m["w"])
    assert fresh.name == "fedadam" and fresh.centralized is False  # forwarded to the inner strategy


def test_adaptive_clipping_moves_geometrically_towards_the_quantile() -> None:
    # z tiny and sigma_b small: b ~ fraction unclipped; C <- C * exp(-eta * (b - gamma)) by hand.
    spec = PrivacySpec.from_dict({
        "mechanism": "dp_adaptive_clip", "noise_multiplier": 1e-4, "clip_norm": 1.0, "delta": 1e-5,
        "target_quantile": 0.5, "clip_learning_rate": 0.2, "clipped_count_stddev": 1e-3,
    })
    dp = PrivateAggregation(FedAvg(), spec, expected_clients=4, noise_seed=0)
    small = [result(i, {"w": torch.tensor([0.1, 0.0])}) for i in range(4)]  # all within C: b = 1
    dp.aggregate(1, {"w": torch.zeros(2)}, small)
    assert dp.clip_norm == pytest.approx(math.exp(-0.2 * 0.5), rel=1e-3)
    big = [result(i, {"w": torch.tensor([5.0, 0.0])}) for i in range(4)]  # all clipped: b = 0
    before = dp.clip_norm
    dp.aggregate(2, {"w": torch.zeros(2)}, big)
    assert dp.clip_norm == pytest.approx(before * math.exp(0.2 * 0.5), rel=1e-3)


def test_adaptive_update_noise_multiplier_follows_andrew_et_al() -> None:
    spec = PrivacySpec.from_dict({"mechanism": "dp_adaptive_clip", "noise_multiplier": 1.0, "clip_norm": 1.0,
                                  "delta": 1e-5, "clipped_count_stddev": 1.0})
    assert spec.update_noise_multiplier(10) == pytest.approx((1.0 - 0.25) ** -0.5)  # 1.1547
    default = PrivacySpec.from_dict({"mechanism": "dp_adaptive_clip", "noise_multiplier": 0.5, "clip_norm": 1.0, "delta": 1e-5})
    assert default.count_stddev(100) == pytest.approx(5.0)  # expected clients / 20
    with pytest.raises(ValueError, match="must exceed noise_multiplier/2 = 0.5"):
        spec_small = PrivacySpec.from_dict({**FIXED, "mechanism": "dp_adaptive_clip", "clipped_count_stddev": 0.25})
        spec_small.update_noise_multiplier(5)


# ------------------------------------------------------------------ accounting
def test_epsilon_matches_dp_accounting_reference_value() -> None:
    # dp-accounting's own test: q=1, sigma=4.530877117, one step is exactly (1, 1e-6)-DP.
    assert ClientLevelAccountant(1.0, 4.530877117, 1e-6).epsilon(1) == pytest.approx(1.0, abs=1e-4)
    # Without sampling, RDP is an upper bound on the exact Gaussian-mechanism epsilon of the library.
    exact = dp_accounting.get_epsilon_gaussian(2.0, 1e-5)
    assert exact <= ClientLevelAccountant(1.0, 2.0, 1e-5).epsilon(1) <= 1.3 * exact


def test_epsilon_composes_poisson_sampled_gaussian_rounds() -> None:
    acc = ClientLevelAccountant(0.1, 1.0, 1e-5)
    reference = dp_accounting.rdp.RdpAccountant()
    for _ in range(20):
        reference.compose(dp_accounting.PoissonSampledDpEvent(0.1, dp_accounting.GaussianDpEvent(1.0)))
    assert acc.epsilon(20) == pytest.approx(reference.get_epsilon(1e-5), rel=1e-9)
    eps = [acc.epsilon(t) for t in (0, 1, 5, 20)]
    assert eps[0] == 0 and eps == sorted(eps) and eps[1] < eps[3]
    assert ClientLevelAccountant(0.1, 2.0, 1e-5).epsilon(20) < acc.epsilon(20)  # more noise, less epsilon
    assert ClientLevelAccountant(1.0, 1.0, 1e-5).epsilon(20) > acc.epsilon(20)  # no amplification


# ------------------------------------------------------------------ bad input and combinations
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"noise_multiplier": 0}, "noise_multiplier=0.0 must be > 0"),
        ({"noise_multiplier": -1.0}, "noise_multiplier=-1.0 must be > 0"),
        ({"clip_norm": 0.0}, "clip_norm=0.0 must be > 0"),
        ({"delta": 0.0}, r"delta=0.0 must lie in \(0, 1\)"),
        ({"delta": 1.0}, r"delta=1.0 must lie in \(0, 1\)"),
        ({"mechanism": "dp_fixed"}, "Did you mean 'dp_fixed_clip'"),
        ({"target_quantile": 0.5}, "privacy mechanism 'dp_fixed_clip' has no parameter 'target_quantile'"),
        ({"noise": 1.0}, "has no parameter 'noise'"),
    ],
)
def test_bad_privacy_settings_fail_at_config_time(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RunConfig(sampling="poisson", privacy={**FIXED, **change})


def test_dp_needs_poisson_sampling_and_a_mean_aggregator() -> None:
    RunConfig(sampling="poisson", privacy=FIXED)  # valid
    with pytest.raises(ValueError, match="privacy needs sampling: poisson"):
        RunConfig(sampling="uniform", privacy=FIXED)
    with pytest.raises(ValueError, match="Algorithms that can: .*fedavg"):
        RunConfig(sampling="poisson", privacy=FIXED, algorithm="centralized")
    for robust_or_stateful in ("fednova", "krum", "fedmedian", "scaffold", "qfedavg"):
        with pytest.raises(ValueError, match=f"'{robust_or_stateful}' cannot"):
            RunConfig(sampling="poisson", privacy=FIXED, algorithm=robust_or_stateful)


def test_dp_compatible_algorithms_are_exactly_the_mean_aggregators() -> None:
    # Other tests register plugins (e.g. FedOpt subclasses, which inherit the flag); check the built-ins.
    builtin = {"centralized", "fedavg", "fedprox", "fedadam", "fedyogi", "fedadagrad", "fedavgm", "fednova",
               "scaffold", "feddyn", "fedmedian", "fedtrimmedavg", "krum", "qfedavg"}
    assert builtin <= set(algorithm_names())
    compatible = set(dp_compatible_algorithms()) & builtin
    assert compatible == {"fedavg", "fedprox", "fedadam", "fedyogi", "fedadagrad", "fedavgm"}


def test_dp_config_round_trips_and_plain_configs_are_unchanged() -> None:
    cfg = RunConfig(sampling="poisson", privacy=FIXED)
    assert RunConfig.from_dict(cfg.to_dict()).privacy == FIXED
    assert "privacy" not in RunConfig().to_dict()  # off: absent, so old config hashes stay valid


def test_update_norm_is_global() -> None:
    assert update_norm({"a": torch.ones(4), "b": torch.ones(5)}) == pytest.approx(3.0)
