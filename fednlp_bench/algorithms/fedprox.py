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
from fednlp_bench.checks import at_least
from fednlp_bench.registry import Param, declare


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
    param_specs = declare(Param("mu", float, 0.01, at_least(0, "0 turns FedProx into FedAvg"),
                                "proximal weight: mu/2 * ||w - w_global||^2 added to the client loss"))
    client = ProximalTerm
    search_params = ("mu",)

    def client_config(self, rnd: int) -> dict[str, Any]:
        return {"mu": float(self.params["mu"])}
