"""Epsilon of example-level DP-SGD on the clients: per client, then the worst client.

An example lives on one client and is only ever touched by that client's
DP-SGD steps. Client i takes ``steps_i`` local steps per participation, each
a Poisson-subsampled (rate q_i) Gaussian mechanism of noise multiplier z on
its rows (add/remove-one-example adjacency), so after its participations P_i
an example of client i is covered by T_i = P_i * steps_i compositions. The
run reports the largest epsilon over the clients (and which q and T gave it).

``local_schedule`` is the one definition of q_i and steps_i, shared by the
trainer (``dpsgd.py``) and the accountant, so what is accounted is what runs:

* ``local_steps: S``: S steps at q = min(1, B / n) (expected batch B, as the plain trainer's batches);
* ``local_epochs: E``: the plain trainer's E * ceil(n / B) steps at q = 1 / ceil(n / B),
  so a participation touches E * n examples in expectation, as E plain epochs do.

Client sizes come from the partition, which is public in this benchmark (a
deployment treats the client's dataset size as public, as DP-SGD's q = B / N
does). Participation counts come from the run's client selection and
include sampled clients that dropped out (conservative). Epsilon grows with
q and with T, so only clients not dominated in both can be the worst: the
accountant evaluates those alone.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterable, Sequence

from fednlp_bench.privacy.accountant import RDP_NAME, PLD_NAME, check_accounting_inputs, epsilon_pld, epsilon_rdp
from fednlp_bench.privacy.calibrate import smallest_noise_multiplier


def local_schedule(rows: int, batch_size: int, local_epochs: int | None, local_steps: int | None) -> tuple[float, int]:
    """(Poisson sampling rate q, DP-SGD steps per participation) of a client holding ``rows`` rows."""
    if rows <= 0:
        raise ValueError(f"a DP-SGD client needs at least one row, got {rows}")
    if local_steps is not None:
        return min(1.0, batch_size / rows), int(local_steps)
    assert local_epochs is not None
    batches = math.ceil(rows / batch_size)
    return 1.0 / batches, int(local_epochs) * batches


def frontier(points: Iterable[tuple[float, int]]) -> list[tuple[float, int]]:
    """The (q, T) pairs no other pair dominates (>= in both): the only candidates for the largest epsilon."""
    unique = sorted(set(points), key=lambda p: (-p[0], -p[1]))
    kept: list[tuple[float, int]] = []
    best_steps = -1
    for q, steps in unique:  # by q descending: keep a pair only if it has more steps than every larger q
        if steps > best_steps:
            kept.append((q, steps))
            best_steps = steps
    return kept


class ExampleLevelAccountant:
    """Worst-client epsilon of DP-SGD from each client's (q, steps) and its participations so far."""

    def __init__(self, schedules: Sequence[tuple[float, int]], participants: Sequence[Sequence[int]],
                 noise_multiplier: float | None, delta: float) -> None:
        self.schedules = list(schedules)
        self.participants = [list(p) for p in participants]
        self.noise_multiplier = noise_multiplier
        self.delta = float(delta)

    def compositions(self, rounds: int) -> list[tuple[float, int]]:
        """(q_i, T_i) of every client that took part in rounds 1..``rounds``."""
        counts = Counter(c for per_round in self.participants[:rounds] for c in per_round)
        return [(self.schedules[c][0], n * self.schedules[c][1]) for c, n in counts.items()]

    def worst(self, rounds: int, accountant: str = "rdp", z: float | None = None) -> tuple[float, float, int]:
        """(largest epsilon over the clients, its q, its T) after ``rounds`` rounds; (0, 0, 0) before any step."""
        z = self.noise_multiplier if z is None else z
        if z is None:
            raise ValueError("privacy.target_epsilon: the noise multiplier has not been calibrated yet")
        epsilon = epsilon_rdp if accountant == "rdp" else epsilon_pld
        best = (0.0, 0.0, 0)
        for q, steps in frontier(self.compositions(rounds)):
            check_accounting_inputs(q, z, self.delta)
            eps = epsilon(q, z, steps, self.delta)
            if eps > best[0]:
                best = (eps, q, steps)
        return best

    def epsilon(self, rounds: int) -> float:
        return self.worst(rounds)[0]

    def calibrate(self, target_epsilon: float) -> float:
        """Smallest z whose worst-client RDP epsilon over the whole run meets ``target_epsilon``."""
        rounds = len(self.participants)
        if not self.compositions(rounds):
            raise ValueError("privacy.target_epsilon: no client takes part in any round, so there is nothing to calibrate")
        what = f"example-level DP-SGD (worst client over {rounds} rounds, delta={self.delta:g})"
        return smallest_noise_multiplier(lambda z: self.worst(rounds, "rdp", z)[0], target_epsilon, what)

    def describe(self, rounds: int) -> dict[str, object]:
        """The record's accounting fields: both accountants' worst-client epsilon and the (q, T) behind it."""
        eps_rdp, q_rdp, steps_rdp = self.worst(rounds, "rdp")
        eps_pld, _, _ = self.worst(rounds, "pld")
        rates = [q for q, _ in self.schedules]
        return {
            "accountant": f"{RDP_NAME} and {PLD_NAME}: per client, Poisson-sampled Gaussian per local step, "
                          f"add/remove one example; the worst client is reported",
            "noise_multiplier": self.noise_multiplier,
            "delta": self.delta,
            "epsilon": eps_rdp,
            "epsilon_rdp": eps_rdp,
            "epsilon_pld": eps_pld,
            "worst_client_sampling_rate": q_rdp,
            "worst_client_steps": steps_rdp,
            "sampling_rate_range": [min(rates), max(rates)] if rates else None,
            "local_batches": "Poisson: each row joins each local step independently with the client's q",
        }
