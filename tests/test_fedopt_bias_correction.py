"""FedAdam/FedYogi with ``bias_correction: true`` take Adam's step (Kingma & Ba 2015), checked by hand and by torch."""

from __future__ import annotations

import math

import pytest
import torch

from fednlp_bench.algorithms.base import ClientResult
from fednlp_bench.algorithms.fedopt import FedAdam, FedYogi

PARAMS = {"server_lr": 0.1, "beta1": 0.9, "beta2": 0.99, "tau": 1e-3}
DELTAS = [0.2, -0.1, 0.05]


def _step(strategy, weights: dict[str, torch.Tensor], delta: float) -> dict[str, torch.Tensor]:
    result = ClientResult(client_id=0, delta={"w": torch.tensor([delta], dtype=torch.float64)}, num_examples=10,
                          num_steps=1, loss=0.0)
    return strategy.aggregate(1, weights, [result])


def _run(strategy, deltas: list[float]) -> list[float]:
    weights = {"w": torch.tensor([1.0], dtype=torch.float64)}
    out = []
    for d in deltas:
        weights = _step(strategy, weights, d)
        out.append(float(weights["w"]))
    return out


def test_bias_corrected_fedadam_matches_a_hand_computed_adam_step() -> None:
    got = _run(FedAdam(**PARAMS, bias_correction=True), DELTAS[:2])
    # step 1: m = 0.1 * 0.2 = 0.02, v = 0.01 * 0.04 = 4e-4; m_hat = 0.2, v_hat = 0.04
    w1 = 1.0 + 0.1 * 0.2 / (math.sqrt(0.04) + 1e-3)
    # step 2: m = 0.9 * 0.02 + 0.1 * -0.1 = 0.008, v = 0.99 * 4e-4 + 0.01 * 0.01 = 4.96e-4
    w2 = w1 + 0.1 * (0.008 / (1 - 0.9 ** 2)) / (math.sqrt(4.96e-4 / (1 - 0.99 ** 2)) + 1e-3)
    assert got == pytest.approx([w1, w2], abs=1e-12)
    assert w1 == pytest.approx(1.0995024876, abs=1e-9)


def test_bias_corrected_fedadam_is_torch_adam_on_the_pseudo_gradient() -> None:
    got = _run(FedAdam(**PARAMS, bias_correction=True), DELTAS)
    w = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    adam = torch.optim.Adam([w], lr=0.1, betas=(0.9, 0.99), eps=1e-3)
    expected = []
    for d in DELTAS:
        w.grad = torch.tensor([-d], dtype=torch.float64)  # the averaged delta is minus a gradient step
        adam.step()
        expected.append(float(w.detach()))
    assert got == pytest.approx(expected, abs=1e-12)


def test_default_keeps_reddi_et_al_without_correction() -> None:
    """Records made before the option existed re-run exactly: v starts at tau^2, no 1/(1-beta^t)."""
    got = _run(FedAdam(**PARAMS), DELTAS[:1])
    v1 = 0.99 * 1e-6 + 0.01 * 0.04
    assert got == pytest.approx([1.0 + 0.1 * 0.02 / (math.sqrt(v1) + 1e-3)], abs=1e-12)
    assert FedAdam().params["bias_correction"] is False


def test_fedyogi_correction_and_resume() -> None:
    yogi = _run(FedYogi(**PARAMS, bias_correction=True), DELTAS)
    # Yogi's first step from v = 0 is Adam's: v1 = (1 - beta2) d^2
    assert yogi[0] == pytest.approx(_run(FedAdam(**PARAMS, bias_correction=True), DELTAS[:1])[0], abs=1e-12)
    first = FedYogi(**PARAMS, bias_correction=True)
    weights = _step(first, {"w": torch.tensor([1.0], dtype=torch.float64)}, DELTAS[0])
    resumed = FedYogi(**PARAMS, bias_correction=True)
    resumed.load_state_dict(first.state_dict())  # the step count carries the corrections across a checkpoint
    for d in DELTAS[1:]:
        weights = _step(resumed, weights, d)
    assert float(weights["w"]) == pytest.approx(yogi[-1], abs=1e-12)
    with pytest.raises(ValueError, match="bias_correction='yes' must be true or false"):
        FedAdam(bias_correction="yes")
