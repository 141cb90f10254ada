"""Epsilon from Google's ``dp-accounting``, by two accountants side by side (never by hand).

Both levels of DP compose Poisson-subsampled Gaussian mechanisms:

* client level (DP-FedAvg): one event per round, q = expected clients / all
  clients, sensitivity C under add/remove-one-client adjacency (adaptive
  clipping's two releases together are one such event: ``spec.py``);
* example level (DP-SGD on a client): one event per local step, q = batch
  size / client size, add/remove-one-example adjacency (``example_accountant.py``).

The RDP accountant (Mironov 2017; Mironov, Talwar, Zhang 2019) is the classic
upper bound; the PLD accountant (privacy loss distributions, Koskela et al.
2020, Doroshenko et al. 2022; pessimistic discretisation, so also an upper
bound) is tighter. A record reports both: ``epsilon`` is the RDP figure (the
looser one, what ``target_epsilon`` calibrates against), ``epsilon_pld`` the
PLD figure. The subsampling bound holds only for Poisson sampling, which is
why client-level DP needs ``sampling: poisson`` and DP-SGD draws Poisson batches.
"""

from __future__ import annotations

import functools
import logging
from contextlib import contextmanager
from typing import Iterator

import dp_accounting
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant

from fednlp_bench.privacy.calibrate import smallest_noise_multiplier

RDP_NAME = "dp_accounting.rdp.RdpAccountant"
PLD_NAME = "dp_accounting.pld.PLDAccountant (pessimistic, value discretisation 1e-4)"


def poisson_gaussian_event(q: float, noise_multiplier: float, count: int) -> dp_accounting.DpEvent:
    """``count`` compositions of a Poisson-subsampled (rate q) Gaussian of noise multiplier z."""
    event = dp_accounting.PoissonSampledDpEvent(float(q), dp_accounting.GaussianDpEvent(float(noise_multiplier)))
    return dp_accounting.SelfComposedDpEvent(event, int(count))


@contextmanager
def _quiet_absl() -> Iterator[None]:
    # The RDP library drops fractional orders whose series does not converge and warns for each one;
    # the epsilon is still its minimum over the remaining orders.
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        yield
    finally:
        absl.setLevel(level)


@functools.lru_cache(maxsize=4096)
def epsilon_rdp(q: float, noise_multiplier: float, count: int, delta: float) -> float:
    """RDP epsilon of :func:`poisson_gaussian_event` at ``delta`` (0 for no events)."""
    if count <= 0:
        return 0.0
    accountant = RdpAccountant()
    with _quiet_absl():
        accountant.compose(poisson_gaussian_event(q, noise_multiplier, count))
        return float(accountant.get_epsilon(delta))


@functools.lru_cache(maxsize=1024)
def epsilon_pld(q: float, noise_multiplier: float, count: int, delta: float) -> float:
    """PLD epsilon of :func:`poisson_gaussian_event` at ``delta`` (0 for no events)."""
    if count <= 0:
        return 0.0
    accountant = PLDAccountant()
    accountant.compose(poisson_gaussian_event(q, noise_multiplier, count))
    return float(accountant.get_epsilon(delta))


def check_accounting_inputs(q: float, noise_multiplier: float, delta: float) -> None:
    if not 0.0 < q <= 1.0:
        raise ValueError(f"sampling probability q={q} must lie in (0, 1]")
    if noise_multiplier <= 0:
        raise ValueError(f"noise_multiplier={noise_multiplier} must be > 0")
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta={delta} must lie in (0, 1)")


class ClientLevelAccountant:
    """epsilon(rounds) of client-level DP at a fixed delta for a fixed (q, z), by RDP and by PLD."""

    def __init__(self, sampling_probability: float, noise_multiplier: float, delta: float) -> None:
        check_accounting_inputs(sampling_probability, noise_multiplier, delta)
        self.sampling_probability = float(sampling_probability)
        self.noise_multiplier = float(noise_multiplier)
        self.delta = float(delta)

    def round_event(self) -> dp_accounting.DpEvent:
        return poisson_gaussian_event(self.sampling_probability, self.noise_multiplier, 1).event

    def epsilon(self, rounds: int) -> float:
        """RDP epsilon after ``rounds`` rounds (0 rounds: 0). Recomputed from scratch, so resume needs no state."""
        if rounds < 0:
            raise ValueError(f"rounds={rounds} must be >= 0")
        return epsilon_rdp(self.sampling_probability, self.noise_multiplier, int(rounds), self.delta)

    def epsilon_pld(self, rounds: int) -> float:
        """PLD epsilon after ``rounds`` rounds (0 rounds: 0)."""
        if rounds < 0:
            raise ValueError(f"rounds={rounds} must be >= 0")
        return epsilon_pld(self.sampling_probability, self.noise_multiplier, int(rounds), self.delta)

    def describe(self) -> dict[str, float | str]:
        return {
            "accountant": f"{RDP_NAME} and {PLD_NAME}: Poisson-sampled Gaussian per round, add/remove one client",
            "sampling_probability": self.sampling_probability,
            "noise_multiplier": self.noise_multiplier,
            "delta": self.delta,
        }


@functools.lru_cache(maxsize=256)
def client_noise_for_target(target_epsilon: float, q: float, rounds: int, delta: float) -> float:
    """Smallest z whose client-level RDP epsilon after ``rounds`` rounds at sampling rate q is <= the target."""
    what = f"client-level DP (q={q:g}, {rounds} rounds, delta={delta:g})"
    return smallest_noise_multiplier(lambda z: epsilon_rdp(q, z, rounds, delta), target_epsilon, what)
