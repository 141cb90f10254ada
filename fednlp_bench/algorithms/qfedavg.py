"""q-FedAvg (Li et al., ICLR 2020, "Fair Resource Allocation in Federated Learning"): q-FFL aggregation.

Clients with a higher loss get more weight (q > 0; q = 0 is FedAvg-like).
Each client reports F_k, its loss on its own data at the global model (one
no-grad pass before training). With L = 1 / ``qffl_learning_rate`` and
dw_k = L * (w - w_k) = -L * delta_k (Flower's names ``q_param`` and
``qffl_learning_rate``):

    Delta_k = F_k^q * dw_k,     h_k = q * F_k^(q-1) * ||dw_k||^2 + L * F_k^q
    w <- w - sum_k Delta_k / sum_k h_k
"""

from __future__ import annotations

from typing import Any, Sequence

from fednlp_bench.algorithms.base import ClientResult, Strategy, Weights
from fednlp_bench.algorithms.client import ClientProcedure, FitContext
from fednlp_bench.checks import at_least, positive
from fednlp_bench.registry import Param, declare

_EPS = 1e-10  # keeps F^(q-1) finite at a zero loss (as Flower)


class LossAtStart(ClientProcedure):
    """Uploads ``loss_start``: the client's mean loss at the global weights, before any local step."""

    def on_fit_start(self, ctx: FitContext) -> None:
        ctx.scratch["loss_start"] = ctx.evaluate_loss()

    def on_fit_end(self, ctx: FitContext) -> dict[str, Any]:
        return {"loss_start": float(ctx.scratch["loss_start"])}


class QFedAvg(Strategy):
    name = "qfedavg"
    label = "q-FedAvg"
    family = "fair"
    param_specs = declare(
        Param("q_param", float, 0.2, at_least(0), "fairness exponent q (0: FedAvg-like)"),
        Param("qffl_learning_rate", float, 0.1, positive, "the q-FFL step size (its Lipschitz constant is 1/lr)"),
    )
    client = LossAtStart

    def aggregate(self, rnd: int, global_weights: Weights, results: Sequence[ClientResult]) -> Weights:
        q, big_l = float(self.params["q_param"]), 1.0 / float(self.params["qffl_learning_rate"])
        weights, h_total = [], 0.0
        for r in results:
            f = float(r.payload["loss_start"]) + _EPS
            sq_norm = big_l**2 * sum(float((d.double() ** 2).sum()) for d in r.delta.values())
            weights.append(f**q * big_l)  # Delta_k = -F^q * L * delta_k
            h_total += q * f ** (q - 1) * sq_norm + big_l * f**q
        return {n: w + sum(c * r.delta[n] for c, r in zip(weights, results)) / h_total for n, w in global_weights.items()}
