"""Client-level DP around any strategy that aggregates a mean delta (DP-FedAvg, McMahan et al. 2018).

Per round, with C the clip norm, z the update noise multiplier and m the
*expected* number of clients (q * N, fixed in advance):

    clipped_i = delta_i * min(1, C / ||delta_i||_2)       (norm over all tensors)
    noised    = (sum_i clipped_i + N(0, (z C)^2 I)) / m
    w_new     = inner.aggregate(w, [noised])

Dividing by the fixed m rather than the number of clients that showed up
keeps the sensitivity of the released mean at C / m: the count itself would
otherwise leak who took part. The inner strategy (FedAvg, FedProx, the
FedOpt family) then treats the noised mean as the round's only delta, which
is post-processing, so the accountant's epsilon holds for its output.

Adaptive clipping (Andrew et al. 2021, "Differentially Private Learning with
Adaptive Clipping"), as TF-Privacy's quantile estimator implements it: each
client also reports the centred bit b_i - 1/2, b_i = 1[||delta_i|| <= C]; the
server releases b = (sum_i (b_i - 1/2) + N(0, sigma_b^2)) / m + 1/2 and moves
C <- C * exp(-eta * (b - gamma)), so C tracks the gamma-quantile of the update
norms. One client changes the centred sum by exactly 1/2, so the count's
noise multiplier is 2 sigma_b and the updates get
z_delta = (z^-2 - (2 sigma_b)^-2)^-1/2: together one Gaussian mechanism of multiplier z.

The noise comes from the run's secret seed (``secret.py``), never from the public run seed.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch

from fednlp_bench.algorithms.base import ClientResult, Strategy, Weights
from fednlp_bench.privacy.secret import NOISE_STREAM, PrivateSeed
from fednlp_bench.privacy.spec import COUNT_SENSITIVITY, PrivacySpec
from fednlp_bench.privacy.wrapper import PrivateStrategy

_CLIP_KEY = "dp/clip_norm"


def update_norm(delta: Mapping[str, torch.Tensor]) -> float:
    """Global L2 norm over every tensor of a delta."""
    return math.sqrt(sum(float(t.detach().double().pow(2).sum()) for t in delta.values()))


def clip_delta(delta: Mapping[str, torch.Tensor], clip_norm: float) -> tuple[Weights, float]:
    """(delta scaled to norm <= clip_norm, its original norm)."""
    norm = update_norm(delta)
    scale = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    return {k: t * scale for k, t in delta.items()}, norm


class PrivateAggregation(PrivateStrategy):
    """Wraps a strategy: clip, sum, noise, divide by expected clients, then the inner aggregate."""

    #: The runner calls aggregate even when no client update arrived: the noise is still released.
    aggregates_empty_rounds = True

    def __init__(self, inner: Strategy, spec: PrivacySpec, expected_clients: float, noise_seed: PrivateSeed | int) -> None:
        if expected_clients <= 0:
            raise ValueError(f"expected clients per round must be > 0, got {expected_clients}")
        super().__init__(inner, noise_seed)
        self.spec = spec
        self.expected_clients = float(expected_clients)
        self.clip_norm = float(spec.clip_norm)
        self.update_noise_multiplier = spec.update_noise_multiplier(expected_clients)

    def aggregate(self, rnd: int, global_weights: Weights, results: Sequence[ClientResult]) -> Weights:
        clip = self.clip_norm
        total = {k: torch.zeros_like(t) for k, t in global_weights.items()}
        unclipped = 0
        for r in results:
            clipped, norm = clip_delta(r.delta, clip)
            unclipped += int(norm <= clip)
            for k, t in clipped.items():
                total[k].add_(t)
        # Same draws for any set of results: the noise depends on the secret seed and the round only.
        gen = self.noise_seed.torch_generator(NOISE_STREAM, rnd)
        std = self.update_noise_multiplier * clip
        mean: Weights = {}
        for k in sorted(total):
            noise = torch.randn(total[k].shape, generator=gen, dtype=torch.float32).to(total[k])
            mean[k] = (total[k] + std * noise) / self.expected_clients
        released: dict[str, Any] = {"clip_norm": clip, "noise_std": std}
        if self.spec.adaptive:
            released.update(self._adapt_clip(clip, unclipped, len(results), gen))
        self.last_round = {**released, "nonprivate": {
            "clients_aggregated": len(results),
            "clipped_fraction": (1.0 - unclipped / len(results)) if results else 0.0,
        }}
        # The inner strategy sees only the noised mean: no client's size, steps or loss.
        synthetic = ClientResult(client_id=-1, delta=mean, num_examples=1, num_steps=1, loss=float("nan"))
        return self.inner.aggregate(rnd, global_weights, [synthetic])

    def _adapt_clip(self, clip: float, unclipped: int, clients: int, gen: torch.Generator) -> dict[str, float]:
        """Release the noised fraction of unclipped clients (centred bits) and move C geometrically."""
        assert self.spec.clip_learning_rate is not None and self.spec.target_quantile is not None
        sigma_b = self.spec.count_stddev(self.expected_clients)
        centred = unclipped - COUNT_SENSITIVITY * clients  # sum of (b_i - 1/2)
        noise = float(torch.randn((), generator=gen, dtype=torch.float64)) * sigma_b
        fraction = (centred + noise) / self.expected_clients + COUNT_SENSITIVITY
        self.clip_norm = clip * math.exp(-self.spec.clip_learning_rate * (fraction - self.spec.target_quantile))
        return {"unclipped_fraction_noised": fraction, "next_clip_norm": self.clip_norm}

    # ------------------------------------------------------------ state
    def dp_state(self) -> dict[str, Any]:
        return {_CLIP_KEY: self.clip_norm}

    def load_dp_state(self, state: Mapping[str, Any]) -> None:
        if _CLIP_KEY not in state:
            raise ValueError(f"the checkpoint has no DP state ({_CLIP_KEY}); it was not made by a client-level DP run")
        self.clip_norm = float(state[_CLIP_KEY])
