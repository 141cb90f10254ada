"""SCAFFOLD (Karimireddy et al., ICML 2020) with option II control variates.

Client i keeps a control variate c_i (on disk, per client); the server keeps c.
Every local step corrects the gradient, g <- g - c_i + c, and after K local
steps with learning rate eta_l the client updates (option II)

    c_i+ = c_i - c + (x - y_i) / (K * eta_l)

and uploads dy_i = y_i - x (the delta) and dc_i = c_i+ - c_i. The server:

    x <- x + server_lr * mean_i dy_i,        c <- c + (|S| / N) * mean_i dc_i

(N = all clients). The correction is exact for plain SGD (``--optimizer sgd``),
as in the paper; with AdamW it corrects the gradient AdamW consumes.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from fednlp_bench.algorithms.base import ClientResult, Strategy, Weights
from fednlp_bench.algorithms.client import ClientProcedure, FitContext, zeros_like_params
from fednlp_bench.checks import positive
from fednlp_bench.registry import Param, declare


class ScaffoldClient(ClientProcedure):
    instructions = ("c",)
    stateful = True

    def on_fit_start(self, ctx: FitContext) -> None:
        if not ctx.state:
            ctx.state.update(zeros_like_params(ctx))
        c = ctx.instruction("c")
        # c - c_i, fixed during the local epochs
        ctx.scratch["correction"] = {n: c[n] - ctx.state[n] for n in ctx.params}

    def after_backward(self, ctx: FitContext) -> None:
        for n, p in ctx.params.items():
            if p.grad is not None:
                p.grad.add_(ctx.scratch["correction"][n])

    def on_fit_end(self, ctx: FitContext) -> dict[str, Any]:
        c = ctx.instructions["c"]
        scale = 1.0 / (max(ctx.steps, 1) * ctx.lr)
        delta_c = {}
        for n, p in ctx.params.items():
            new = ctx.state[n] - c[n] + (ctx.global_weights[n] - p.detach()) * scale
            delta_c[n] = new - ctx.state[n]
            ctx.state[n] = new
        return {"delta_c": delta_c}


class Scaffold(Strategy):
    name = "scaffold"
    label = "SCAFFOLD"
    param_specs = declare(Param("server_lr", float, 1.0, positive, "global step size on the averaged delta"))
    client = ScaffoldClient

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.c: Weights | None = None
        self.num_clients = 0

    def setup(self, num_clients: int, global_weights: Weights, trainable: Sequence[str]) -> None:
        self.num_clients = num_clients
        self.c = {n: torch.zeros_like(global_weights[n], dtype=torch.float32) for n in trainable}

    def client_config(self, rnd: int) -> dict[str, Any]:
        if self.c is None:
            raise RuntimeError("scaffold: setup() (called by the engine) must run before the first round")
        return {"c": self.c}

    def aggregate(self, rnd: int, global_weights: Weights, results: Sequence[ClientResult]) -> Weights:
        lr, k = self.params["server_lr"], len(results)
        new = {n: t + lr * sum(r.delta[n] for r in results) / k for n, t in global_weights.items()}
        assert self.c is not None
        frac = k / max(self.num_clients, k)
        for n in self.c:
            self.c[n] = self.c[n] + frac * sum(r.payload["delta_c"][n] for r in results) / k
        return new

    def state_dict(self) -> dict[str, Any]:
        return {} if self.c is None else {f"c/{n}": t for n, t in self.c.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.c = {k[2:]: v.clone() for k, v in state.items() if k.startswith("c/")} or None
