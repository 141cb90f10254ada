"""FedProx (Li et al. 2020): FedAvg whose clients add mu/2 * ||w - w_global||^2 to their loss.

The proximal term keeps heterogeneous clients from drifting far from the
global model during their local epochs. It lives entirely on the client (the
procedure below adds its gradient, mu * (w - w_global), after each backward
pass); the server aggregates exactly as FedAvg, so ``mu = 0`` *is* FedAvg.
"""

from __future__ import annotations

from typing import Any

from fednlp_bench.algorithms.client import ClientProcedure, FitContext
from fednlp_bench.algorithms.fedavg import FedAvg


class ProximalTerm(ClientProcedure):
    """Adds mu * (w - w_global) to every trainable parameter's gradient."""

    instructions = ("mu",)

    def on_fit_start(self, ctx: FitContext) -> None:
        mu = float(ctx.instruction("mu"))
        ctx.scratch["prox"] = [(p, ctx.global_weights[n]) for n, p in ctx.params.items()] if mu > 0 else []

    def after_backward(self, ctx: FitContext) -> None:
        mu = float(ctx.instructions["mu"])
        for p, g in ctx.scratch["prox"]:
            if p.grad is not None:
                p.grad.add_(p.detach() - g, alpha=mu)


class FedProx(FedAvg):
    name = "fedprox"
    label = "FedProx"
    defaults = {"mu": 0.01}
    client = ProximalTerm
    search_params = ("mu",)

    def validate_params(self) -> None:
        if self.params["mu"] < 0:
            raise ValueError(f"fedprox mu={self.params['mu']} must be >= 0 (0 turns FedProx into FedAvg)")

    def client_config(self, rnd: int) -> dict[str, Any]:
        return {"mu": float(self.params["mu"])}
