"""FedDyn (Acar et al., ICLR 2021): dynamic regularisation that makes client optima agree with the global one.

Client k minimises  L_k(w) - <g_k, w> + alpha/2 * ||w - w_global||^2,  where
g_k is its gradient memory (on disk, per client; zero at first). After local
training  g_k <- g_k - alpha * (w_k - w_global). The server keeps h:

    h <- h - alpha * (1/N) * sum_{k in S} (w_k - w_global)
    w <- mean_{k in S} w_k - h / alpha
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from fednlp_bench.algorithms.base import ClientResult, Strategy, Weights
from fednlp_bench.algorithms.client import ClientProcedure, FitContext, zeros_like_params
from fednlp_bench.checks import positive
from fednlp_bench.registry import Param, declare


class FedDynClient(ClientProcedure):
    instructions = ("alpha",)
    stateful = True

    def on_fit_start(self, ctx: FitContext) -> None:
        if not ctx.state:
            ctx.state.update(zeros_like_params(ctx))

    def after_backward(self, ctx: FitContext) -> None:
        # gradient of -<g_k, w> + alpha/2 ||w - w_global||^2
        alpha = float(ctx.instructions["alpha"])
        for n, p in ctx.params.items():
            if p.grad is not None:
                p.grad.sub_(ctx.state[n]).add_(p.detach() - ctx.global_weights[n], alpha=alpha)

    def on_fit_end(self, ctx: FitContext) -> dict[str, Any]:
        alpha = float(ctx.instruction("alpha"))
        for n, p in ctx.params.items():
            ctx.state[n] = ctx.state[n] - alpha * (p.detach() - ctx.global_weights[n])
        return {}


class FedDyn(Strategy):
    name = "feddyn"
    label = "FedDyn"
    param_specs = declare(Param("alpha", float, 0.01, positive, "weight of the dynamic regulariser"))
    client = FedDynClient

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.h: Weights | None = None
        self.num_clients = 0

    def setup(self, num_clients: int, global_weights: Weights, trainable: Sequence[str]) -> None:
        self.num_clients = num_clients
        self.h = {n: torch.zeros_like(global_weights[n], dtype=torch.float32) for n in trainable}

    def client_config(self, rnd: int) -> dict[str, Any]:
        return {"alpha": float(self.params["alpha"])}

    def aggregate(self, rnd: int, global_weights: Weights, results: Sequence[ClientResult]) -> Weights:
        assert self.h is not None, "feddyn: setup() (called by the engine) must run before the first round"
        alpha, k = float(self.params["alpha"]), len(results)
        new: Weights = {}
        for n, w in global_weights.items():
            total = sum(r.delta[n] for r in results)
            if n in self.h:
                self.h[n] = self.h[n] - alpha * total / max(self.num_clients, k)
                new[n] = w + total / k - self.h[n] / alpha
            else:  # buffers (e.g. norm statistics): plain average
                new[n] = w + total / k
        return new

    def state_dict(self) -> dict[str, Any]:
        return {} if self.h is None else {f"h/{n}": t for n, t in self.h.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.h = {k[2:]: v.clone() for k, v in state.items() if k.startswith("h/")} or None
