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
Adaptive Clipping"): each client also reports b_i = 1[||delta_i|| <= C]; the
server releases b = (sum_i b_i + N(0, sigma_b^2)) / m and moves
C <- C * exp(-eta * (b - gamma)), so C tracks the gamma-quantile of the
update norms. The noise in the count is paid for by using
z_delta = (z^-2 - (2 sigma_b)^-2)^-1/2 on the updates.

The noise comes from a generator seeded by (seed, round) so a benchmark run is
reproducible and resumable; a deployment would draw it from a secure source.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from fednlp_bench.algorithms.base import ClientResult, Strategy, Weights
from fednlp_bench.privacy.spec import PrivacySpec

_NOISE_STREAM = 4  # distinct from engine.sampling's streams 0-3
_STATE_PREFIX = "inner/"


def update_norm(delta: Mapping[str, torch.Tensor]) -> float:
    """Global L2 norm over every tensor of a delta."""
    return math.sqrt(sum(float(t.detach().double().pow(2).sum()) for t in delta.values()))


def clip_delta(delta: Mapping[str, torch.Tensor], clip_norm: float) -> tuple[Weights, float]:
    """(delta scaled to norm <= clip_norm, its original norm)."""
    norm = update_norm(delta)
    scale = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    return {k: t * scale for k, t in delta.items()}, norm


def noise_generator(seed: int, rnd: int) -> torch.Generator:
    seq = np.random.SeedSequence([int(seed), int(rnd), _NOISE_STREAM])
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seq.generate_state(1, dtype=np.uint64)[0]) % (2**63 - 1))
    return gen


class PrivateAggregation:
    """Wraps a strategy: clip, sum, noise, divide by expected clients, then the inner aggregate.

    Everything the runner asks of a strategy that this class does not define
    (``name``, ``centralized``, ``configure_round`` and any client-side hooks)
    is forwarded to the inner strategy, so the wrapper is transparent to the
    clients and only changes what the server sees.
    """

    #: The runner calls aggregate even when no client update arrived: the noise is still released.
    aggregates_empty_rounds = True

    def __init__(self, inner: Strategy, spec: PrivacySpec, expected_clients: float, seed: int) -> None:
        if expected_clients <= 0:
            raise ValueError(f"expected clients per round must be > 0, got {expected_clients}")
        self.inner = inner
        self.spec = spec
        self.expected_clients = float(expected_clients)
        self.seed = int(seed)
        self.clip_norm = float(spec.clip_norm)
        self.update_noise_multiplier = spec.update_noise_multiplier(expected_clients)
        #: What the last aggregate did (clip norm used, noise std, clipped fraction): goes into the round row.
        self.last_round: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not found on the wrapper; guard against recursion before __init__ ran.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    # ------------------------------------------------------------ aggregation
    def aggregate(self, rnd: int, global_weights: Weights, results: Sequence[ClientResult]) -> Weights:
        clip = self.clip_norm
        total = {k: torch.zeros_like(t) for k, t in global_weights.items()}
        within = 0
        norms = []
        for r in results:
            clipped, norm = clip_delta(r.delta, clip)
            norms.append(norm)
            within += int(norm <= clip)
            for k, t in clipped.items():
                total[k].add_(t)
        gen = noise_generator(self.seed, rnd)
        std = self.update_noise_multiplier * clip
        mean: Weights = {}
        for k in sorted(total):
            noise = torch.randn(total[k].shape, generator=gen, dtype=torch.float32).to(total[k])
            mean[k] = (total[k] + std * noise) / self.expected_clients
        info: dict[str, Any] = {
            "clip_norm": clip,
            "noise_std": std,
            "clients_aggregated": len(results),
            "clipped_fraction": (1.0 - within / len(results)) if results else 0.0,
        }
        if self.spec.adaptive:
            sigma_b = self.spec.count_stddev(self.expected_clients)
            count_noise = float(torch.randn((), generator=gen, dtype=torch.float64)) * sigma_b
            noised_fraction = (within + count_noise) / self.expected_clients
            assert self.spec.clip_learning_rate is not None and self.spec.target_quantile is not None
            self.clip_norm = clip * math.exp(-self.spec.clip_learning_rate * (noised_fraction - self.spec.target_quantile))
            info["next_clip_norm"] = self.clip_norm
        self.last_round = info
        synthetic = ClientResult(
            client_id=-1,
            delta=mean,
            num_examples=1,
            num_steps=max(1, round(float(np.mean([r.num_steps for r in results])))) if results else 1,
            loss=float(np.mean([r.loss for r in results])) if results else float("nan"),
        )
        return self.inner.aggregate(rnd, global_weights, [synthetic])

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        state = {f"{_STATE_PREFIX}{k}": v for k, v in self.inner.state_dict().items()}
        state["dp/clip_norm"] = self.clip_norm
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "dp/clip_norm" not in state:
            raise ValueError("the checkpoint has no DP state (dp/clip_norm); it was not made by a DP run")
        self.clip_norm = float(state["dp/clip_norm"])
        inner = {k[len(_STATE_PREFIX):]: v for k, v in state.items() if k.startswith(_STATE_PREFIX)}
        self.inner.load_state_dict(inner)
