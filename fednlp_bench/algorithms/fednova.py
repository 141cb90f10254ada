"""FedNova (Wang et al., NeurIPS 2020): normalised averaging that removes FedAvg's objective inconsistency.

Clients with more data take more local steps, so FedAvg over-weights their
direction. Each client reports the l1 norm a_i of its local aggregation
vector (its "effective number of steps"), counted during training by the
client procedure: a <- (1 - lr * mu) * a + 1 per step (so a_i = tau_i for plain
local SGD, mu = 0; with the FedProx term mu > 0 later steps count less). The
server averages the normalised updates and rescales by the effective steps:

    p_i = n_i / n,   tau_eff = sum_i p_i * a_i,   w <- w + tau_eff * sum_i p_i * delta_i / a_i
"""

from __future__ import annotations

from typing import Any, Sequence

from fednlp_bench.algorithms.base import ClientResult, Strategy, Weights
from fednlp_bench.algorithms.client import FitContext
from fednlp_bench.algorithms.fedprox import ProximalTerm
from fednlp_bench.checks import at_least
from fednlp_bench.registry import Param, declare


class FedNovaClient(ProximalTerm):
    """FedProx's gradient term (mu >= 0) plus the count of a_i, uploaded as ``a``."""

    def on_fit_start(self, ctx: FitContext) -> None:
        super().on_fit_start(ctx)
        ctx.scratch["a"] = 0.0

    def after_backward(self, ctx: FitContext) -> None:
        super().after_backward(ctx)
        ctx.scratch["a"] = (1.0 - ctx.lr * float(ctx.instructions["mu"])) * ctx.scratch["a"] + 1.0

    def on_fit_end(self, ctx: FitContext) -> dict[str, Any]:
        return {"a": float(ctx.scratch["a"])}


class FedNova(Strategy):
    name = "fednova"
    label = "FedNova"
    param_specs = declare(Param("mu", float, 0.0, at_least(0), "proximal weight of the local objective (0: none)"))
    client = FedNovaClient

    def client_config(self, rnd: int) -> dict[str, Any]:
        return {"mu": float(self.params["mu"])}

    def aggregate(self, rnd: int, global_weights: Weights, results: Sequence[ClientResult]) -> Weights:
        total = sum(r.num_examples for r in results)
        p = [r.num_examples / total for r in results]
        a = [float(r.payload["a"]) for r in results]
        tau_eff = sum(pi * ai for pi, ai in zip(p, a))
        return {
            n: w + tau_eff * sum(pi / ai * r.delta[n] for pi, ai, r in zip(p, a, results))
            for n, w in global_weights.items()
        }
