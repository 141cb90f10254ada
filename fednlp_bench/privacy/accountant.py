"""Epsilon of client-level DP-FedAvg, from Google's ``dp-accounting`` RDP accountant (never by hand).

Each round is one Poisson-subsampled Gaussian mechanism: every client joins
independently with probability q = expected clients / all clients, and the
sum of clipped deltas gets Gaussian noise of std z * C (sensitivity C under
add/remove-one-client adjacency). T rounds compose T such events. This is the
accounting of McMahan et al. (2018) and Andrew et al. (2021); it is valid
only for Poisson sampling, which is why DP runs must use ``sampling: poisson``.
"""

from __future__ import annotations

import logging

import dp_accounting
from dp_accounting.rdp import RdpAccountant


class ClientLevelAccountant:
    """epsilon(rounds) at a fixed delta for a fixed (q, z)."""

    def __init__(self, sampling_probability: float, noise_multiplier: float, delta: float) -> None:
        if not 0.0 < sampling_probability <= 1.0:
            raise ValueError(f"sampling probability q={sampling_probability} must lie in (0, 1]")
        if noise_multiplier <= 0:
            raise ValueError(f"noise_multiplier={noise_multiplier} must be > 0")
        if not 0.0 < delta < 1.0:
            raise ValueError(f"delta={delta} must lie in (0, 1)")
        self.sampling_probability = float(sampling_probability)
        self.noise_multiplier = float(noise_multiplier)
        self.delta = float(delta)

    def round_event(self) -> dp_accounting.DpEvent:
        return dp_accounting.PoissonSampledDpEvent(
            self.sampling_probability, dp_accounting.GaussianDpEvent(self.noise_multiplier)
        )

    def epsilon(self, rounds: int) -> float:
        """Epsilon after ``rounds`` rounds (0 rounds: 0). Recomputed from scratch, so resume needs no state."""
        if rounds < 0:
            raise ValueError(f"rounds={rounds} must be >= 0")
        if rounds == 0:
            return 0.0
        accountant = RdpAccountant()
        accountant.compose(dp_accounting.SelfComposedDpEvent(self.round_event(), int(rounds)))
        # The library drops fractional orders whose series does not converge and warns for each one
        # (every round); the epsilon is still its minimum over the remaining orders.
        absl = logging.getLogger("absl")
        level = absl.level
        absl.setLevel(logging.ERROR)
        try:
            return float(accountant.get_epsilon(self.delta))
        finally:
            absl.setLevel(level)

    def describe(self) -> dict[str, float | str]:
        return {
            "accountant": "dp_accounting.rdp.RdpAccountant (Poisson-sampled Gaussian, add/remove one client)",
            "sampling_probability": self.sampling_probability,
            "noise_multiplier": self.noise_multiplier,
            "delta": self.delta,
        }
