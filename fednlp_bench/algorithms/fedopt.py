"""Server optimizers on the averaged client delta (Reddi et al. 2021, "Adaptive Federated Optimization").

The averaged delta Delta_t = sum_i p_i (w_i - w_t) is a pseudo-gradient step
(Delta_t = -g_t). Algorithm 2 of the paper, implemented literally:

    m_t = beta1 * m_{t-1} + (1 - beta1) * Delta_t
    FedAdagrad: v_t = v_{t-1} + Delta_t^2
    FedYogi:    v_t = v_{t-1} - (1 - beta2) * Delta_t^2 * sign(v_{t-1} - Delta_t^2)
    FedAdam:    v_t = beta2 * v_{t-1} + (1 - beta2) * Delta_t^2
    w_{t+1} = w_t + server_lr * m_t / (sqrt(v_t) + tau)

with m_{-1} = 0 and v_{-1} = tau^2 (the paper requires v_{-1} >= tau^2) and no
bias correction: the default, so every record made before the option existed
re-runs exactly.

``bias_correction: true`` is Adam's form instead (Kingma & Ba 2015,
Algorithm 1, with tau in the role of epsilon): m_{-1} = v_{-1} = 0 and, at
server step t = 1, 2, ...,

    w_{t+1} = w_t + server_lr * m_hat / (sqrt(v_hat) + tau),
    m_hat = m_t / (1 - beta1^t),  v_hat = v_t / (1 - beta2^t)

(FedAdagrad has no beta2, so only m is corrected). Without it the first
moment reaches 1 - beta1^t of its steady value after t server steps (57% after
8 rounds at beta1 = 0.9), so the effective server step grows over the whole
budget of a short run and a tuned server lr means something else at round 8
than at round 100; with it the step has its steady size from the first round.
FedAvgM (Hsu et al. 2019) is server momentum:
v_t = momentum * v_{t-1} + Delta_t; w_{t+1} = w_t + server_lr * v_t.
The moments are server state, so checkpoints carry them.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Mapping, Sequence

import torch

from fednlp_bench.algorithms.base import ClientResult, Strategy, Weights, weighted_mean_delta
from fednlp_bench.checks import in_range, positive
from fednlp_bench.registry import Param, declare

SERVER_LR = "server step size on the averaged delta"
BETA1 = Param("beta1", float, 0.9, in_range(0.0, 1.0), "first-moment decay")
TAU = Param("tau", float, 1e-3, lambda v: None if v > 0 else "must be > 0 (it bounds the adaptive step)",
            "adaptivity: bounds the step where the second moment is small")
BIAS = Param("bias_correction", bool, False, help="Adam's bias-corrected moments (off: the paper's form)")


def _moments_state(prefix: str, moments: Weights | None) -> dict[str, Any]:
    return {} if moments is None else {f"{prefix}/{k}": v for k, v in moments.items()}


def _moments_from_state(prefix: str, state: Mapping[str, Any]) -> Weights | None:
    found = {k[len(prefix) + 1 :]: v.clone() for k, v in state.items() if k.startswith(prefix + "/")}
    return found or None


class FedOpt(Strategy):
    """Shared body of FedAdam / FedYogi / FedAdagrad; subclasses define the second moment."""

    family = "fedopt"
    param_specs = declare(Param("server_lr", float, 1e-3, positive, SERVER_LR), BETA1,
                          Param("beta2", float, 0.99, in_range(0.0, 1.0), "second-moment decay"), TAU, BIAS)
    dp_compatible = True
    search_params = ("server_lr",)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.m: Weights | None = None
        self.v: Weights | None = None
        self.steps = 0

    @abstractmethod
    def second_moment(self, v: torch.Tensor, delta_sq: torch.Tensor) -> torch.Tensor:
        """v_t from v_{t-1} and Delta_t^2."""

    def aggregate(self, rnd: int, global_weights: Weights, results: Sequence[ClientResult]) -> Weights:
        delta = weighted_mean_delta(results)
        beta1, tau, lr = self.params["beta1"], self.params["tau"], self.params["server_lr"]
        corrected = self.params["bias_correction"]
        if self.m is None or self.v is None:
            self.m = {k: torch.zeros_like(t) for k, t in delta.items()}
            self.v = {k: torch.full_like(t, 0.0 if corrected else tau * tau) for k, t in delta.items()}
        m_scale, v_scale = self._corrections(self.steps + 1) if corrected else (1.0, 1.0)
        new: Weights = {}
        for k, d in delta.items():
            self.m[k] = beta1 * self.m[k] + (1.0 - beta1) * d
            self.v[k] = self.second_moment(self.v[k], d * d)
            new[k] = global_weights[k] + lr * (self.m[k] * m_scale) / ((self.v[k] * v_scale).sqrt() + tau)
        self.steps += 1
        return new

    def _corrections(self, t: int) -> tuple[float, float]:
        """1 / (1 - beta1^t) and 1 / (1 - beta2^t) at server step t (1 for v when there is no beta2)."""
        m_scale = 1.0 / (1.0 - self.params["beta1"] ** t)
        beta2 = self.params.get("beta2")
        return m_scale, (1.0 if beta2 is None else 1.0 / (1.0 - beta2 ** t))

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, **_moments_state("m", self.m), **_moments_state("v", self.v)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.steps = int(state.get("steps", 0))
        self.m = _moments_from_state("m", state)
        self.v = _moments_from_state("v", state)


class FedAdam(FedOpt):
    name = "fedadam"
    label = "FedAdam"

    def second_moment(self, v: torch.Tensor, delta_sq: torch.Tensor) -> torch.Tensor:
        beta2 = self.params["beta2"]
        return beta2 * v + (1.0 - beta2) * delta_sq


class FedYogi(FedOpt):
    name = "fedyogi"
    label = "FedYogi"

    def second_moment(self, v: torch.Tensor, delta_sq: torch.Tensor) -> torch.Tensor:
        return v - (1.0 - self.params["beta2"]) * delta_sq * torch.sign(v - delta_sq)


class FedAdagrad(FedOpt):
    name = "fedadagrad"
    label = "FedAdagrad"
    param_specs = declare(Param("server_lr", float, 1e-2, positive, SERVER_LR), BETA1, TAU, BIAS)

    def second_moment(self, v: torch.Tensor, delta_sq: torch.Tensor) -> torch.Tensor:
        return v + delta_sq


class FedAvgM(Strategy):
    """FedAvg with server momentum (Hsu et al. 2019): a heavy-ball step on the averaged delta."""

    name = "fedavgm"
    label = "FedAvgM"
    family = "fedopt"
    param_specs = declare(Param("server_lr", float, 1.0, positive, SERVER_LR),
                          Param("momentum", float, 0.9, in_range(0.0, 1.0), "server momentum"))
    dp_compatible = True
    search_params = ("server_lr",)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.velocity: Weights | None = None

    def aggregate(self, rnd: int, global_weights: Weights, results: Sequence[ClientResult]) -> Weights:
        delta = weighted_mean_delta(results)
        mom, lr = self.params["momentum"], self.params["server_lr"]
        if self.velocity is None:
            self.velocity = {k: torch.zeros_like(t) for k, t in delta.items()}
        new: Weights = {}
        for k, d in delta.items():
            self.velocity[k] = mom * self.velocity[k] + d
            new[k] = global_weights[k] + lr * self.velocity[k]
        return new

    def state_dict(self) -> dict[str, Any]:
        return _moments_state("velocity", self.velocity)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.velocity = _moments_from_state("velocity", state)
