"""FedProx (Li et al. 2020): FedAvg whose clients add mu/2 * ||w - w_global||^2 to their loss.

The proximal term keeps heterogeneous clients from drifting far from the
global model during their local epochs. It lives entirely on the client; the
server aggregates exactly as FedAvg, so ``mu = 0`` *is* FedAvg.
"""

from __future__ import annotations

from typing import Any

from fednlp_bench.algorithms.fedavg import FedAvg


class FedProx(FedAvg):
    name = "fedprox"
    label = "FedProx"
    defaults = {"mu": 0.01}

    def validate_params(self) -> None:
        if self.params["mu"] < 0:
            raise ValueError(f"fedprox mu={self.params['mu']} must be >= 0 (0 turns FedProx into FedAvg)")

    def client_config(self, rnd: int) -> dict[str, Any]:
        return {"mu": float(self.params["mu"])}
