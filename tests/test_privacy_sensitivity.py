"""Adaptive clipping: the released statistics move between neighbouring client sets by what the accountant assumes.

The accountant charges every round one Gaussian mechanism of noise multiplier
z. Adaptive clipping releases two noised sums at once: the clipped deltas
(noise std z_delta * C) and the unclipped-client count (noise std sigma_b).
Together they are that one mechanism only if the noise-normalised change of
both, when one client is added or removed, is at most 1/z:

    sqrt((||d sum|| / (z_delta C))^2 + (d count / sigma_b)^2) <= 1 / z.

The test measures the change through the public ``aggregate`` alone: the same
noise seed and round give the same noise draws on both neighbours, so the
difference of two releases is the difference of the noiseless statistics.
"""

from __future__ import annotations

import math

import pytest
import torch

from fednlp_bench.algorithms.base import ClientResult
from fednlp_bench.algorithms.fedavg import FedAvg
from fednlp_bench.privacy import PrivacySpec, PrivateAggregation

Z, C, SIGMA_B, ETA, GAMMA, M = 1.0, 1.0, 1.0, 0.2, 0.5, 4
ADAPTIVE = {"mechanism": "dp_adaptive_clip", "noise_multiplier": Z, "clip_norm": C, "delta": 1e-5,
            "target_quantile": GAMMA, "clip_learning_rate": ETA, "clipped_count_stddev": SIGMA_B}


def client(cid: int, norm: float) -> ClientResult:
    return ClientResult(client_id=cid, delta={"w": torch.tensor([norm, 0.0, 0.0], dtype=torch.float64)},
                        num_examples=10, num_steps=1, loss=0.0)


def release(clients: list[ClientResult]) -> tuple[torch.Tensor, float]:
    """(noised sum of clipped deltas, noised unclipped count) as the server releases them, noise seed 7."""
    spec = PrivacySpec.from_dict(ADAPTIVE)
    dp = PrivateAggregation(FedAvg(), spec, M, 7)
    weights = dp.aggregate(1, {"w": torch.zeros(3, dtype=torch.float64)}, clients)
    # FedAvg from zero weights: the new weights are the noised mean, noised sum / M.
    # The clip update C' = C exp(-eta (b - gamma)) gives back the released fraction b.
    fraction = GAMMA - math.log(dp.clip_norm / C) / ETA
    return weights["w"] * M, fraction * M


def normalised_change(a: list[ClientResult], b: list[ClientResult]) -> float:
    spec = PrivacySpec.from_dict(ADAPTIVE)
    z_delta = spec.update_noise_multiplier(M)
    sum_a, count_a = release(a)
    sum_b, count_b = release(b)
    return math.hypot(float((sum_a - sum_b).norm()) / (z_delta * C), (count_a - count_b) / SIGMA_B)


BASE = [client(0, 0.3), client(1, 2.0), client(2, 0.7)]  # two within C, one clipped


@pytest.mark.parametrize(
    ("name", "neighbour"),
    [
        ("add a client at norm C (within the bound)", BASE + [client(9, C)]),
        ("add a client far above C (clipped)", BASE + [client(9, 50.0)]),
        ("remove a clipped client", [BASE[0], BASE[2]]),
        ("remove a client within C", [BASE[1], BASE[2]]),
    ],
)
def test_released_statistics_change_by_at_most_the_accounted_sensitivity(name: str, neighbour: list) -> None:
    change = normalised_change(BASE, neighbour)
    assert change <= (1.0 / Z) * (1 + 1e-6), (
        f"{name}: the noise-normalised change of the released statistics is {change:.4f}, "
        f"but the accountant's noise multiplier z={Z} covers only 1/z = {1 / Z:.4f}"
    )


def test_the_worst_neighbour_uses_the_whole_budget() -> None:
    # Adding a client whose delta has norm exactly C and counts as unclipped is the worst case: it must
    # reach 1/z, or the split wastes budget (too much noise for the epsilon reported).
    assert normalised_change(BASE, BASE + [client(9, C)]) == pytest.approx(1.0 / Z, rel=1e-6)


def test_composed_noise_multiplier_equals_the_analytical_one() -> None:
    import dp_accounting

    spec = PrivacySpec.from_dict(ADAPTIVE)
    z_delta, z_count = spec.update_noise_multiplier(M), spec.count_noise_multiplier(M)
    assert z_count == pytest.approx(SIGMA_B / 0.5)  # count noise std over its sensitivity 1/2
    assert z_delta == pytest.approx((Z ** -2 - (2 * SIGMA_B) ** -2) ** -0.5)  # 1.1547 for z = sigma_b = 1
    assert (z_delta ** -2 + z_count ** -2) ** -0.5 == pytest.approx(Z, rel=1e-12)
    # Gaussian RDP adds up exactly (alpha / 2 z^2 per mechanism): the two releases cost what one z costs.
    pair, single = dp_accounting.rdp.RdpAccountant(), dp_accounting.rdp.RdpAccountant()
    pair.compose(dp_accounting.ComposedDpEvent([dp_accounting.GaussianDpEvent(z_delta),
                                                dp_accounting.GaussianDpEvent(z_count)]))
    single.compose(dp_accounting.GaussianDpEvent(Z))
    assert pair.get_epsilon(1e-5) == pytest.approx(single.get_epsilon(1e-5), rel=1e-9)
    # The numbers: had the count kept sensitivity 1, the true multiplier would be 0.756 and the
    # epsilon of q=0.1, 100 rounds, delta=1e-5 13.96 instead of the reported 7.90.
    true_z = (z_delta ** -2 + SIGMA_B ** -2) ** -0.5
    assert true_z == pytest.approx(0.756, abs=5e-4)
    from fednlp_bench.privacy.accountant import epsilon_rdp

    assert epsilon_rdp(0.1, Z, 100, 1e-5) == pytest.approx(7.90385, abs=1e-4)
    assert epsilon_rdp(0.1, true_z, 100, 1e-5) == pytest.approx(13.96, abs=0.01)
