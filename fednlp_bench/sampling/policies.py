"""Client sampling policies: who takes part in a round, and with what inclusion probability.

A sampling policy is more than a way to pick clients: what the aggregate
estimates depends on each client's *inclusion probability* pi_i (the chance it
takes part in a round). Drawing K clients one after another with probability
proportional to size (``weighted``, ``activity_power``) gives inclusion
probabilities that are *not* proportional to size (the largest clients are
under-, the smallest over-represented), and there is no closed form for them.
The ``activity_*`` policies therefore give exact ones:

* ``activity_poisson``: each client joins independently with
  p_i = min(1, K * n_i^gamma / sum_j n_j^gamma) (gamma = 1: proportional to
  activity), so pi_i = p_i by construction and the number of clients varies;
* ``activity_systematic``: exactly K clients by systematic probability-
  proportional-to-size sampling over a random order (Madow 1949), with the
  capped pi_i (clients whose share would exceed 1 always take part, the rest
  share what is left) summing to K; each client's inclusion is exactly pi_i.

Each policy declares the aggregation weighting it uses when the config says
none (``default_weights``, see ``engine/server/aggregation_weights.py``): plain
FedAvg size weighting for the historical policies, inverse-probability
weighting for the exact-inclusion ones, so that sampling by activity changes
which clients are seen, not the objective being optimised.

The registry below is the one list of policy names (``config.SAMPLING_METHODS``
and the CLI read it). Every draw uses the generator of ``(seed, round)``
(``engine.sampling.round_rng``), so a resumed run sees the same clients.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Mapping

import numpy as np

from fednlp_bench.checks import at_least
from fednlp_bench.registry import Param, Registry, declare, resolve_params
from fednlp_bench.sampling.seeds import _SAMPLE_STREAM, round_rng, sample_clients

log = logging.getLogger("fednlp_bench.engine")


class SamplingPolicy:
    """Base class: ``select`` draws a round's clients, ``inclusion`` gives each client's exact pi_i (or None)."""

    name: ClassVar[str]
    #: The policy's parameters (``sampling_params`` in the config).
    param_specs: ClassVar[Mapping[str, Param]] = {}
    #: ``aggregation_weights`` when the config gives none.
    default_weights: ClassVar[str] = "size"
    #: One line for the docs table and error messages.
    summary: ClassVar[str] = ""

    def __init__(self, **params: Any) -> None:
        self.values: dict[str, float] = resolve_params(self.param_specs, params, owner=f"sampling {self.name!r}",
                                                       prefix="sampling_params.")

    def select(self, sizes: np.ndarray, k: int, rnd: int, seed: int) -> list[int]:
        """Sorted ids of round ``rnd``'s clients; only clients holding data (size > 0) are eligible."""
        raise NotImplementedError

    def inclusion(self, sizes: np.ndarray, k: int) -> np.ndarray | None:
        """Each client's probability of taking part in a round with these sizes; None when no closed form exists."""
        return None


def _eligible(sizes: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.asarray(sizes) > 0)


class _FixedSize(SamplingPolicy):
    """K distinct clients; when at most K hold data (a continual period), all of them take part."""

    def select(self, sizes: np.ndarray, k: int, rnd: int, seed: int) -> list[int]:
        eligible = _eligible(sizes)
        if len(eligible) <= k:
            if len(eligible) < k:
                log.info("round %d: only %d client(s) hold data; all of them take part", rnd, len(eligible))
            return [int(c) for c in eligible]
        return sorted(int(c) for c in self._draw(np.asarray(sizes, dtype=np.float64), eligible, k, rnd, seed))

    def _draw(self, sizes: np.ndarray, eligible: np.ndarray, k: int, rnd: int, seed: int) -> np.ndarray:
        raise NotImplementedError


class _SuccessiveDraws(_FixedSize):
    """K successive draws without replacement, each with probability proportional to size**power."""

    power: ClassVar[float] = 0.0

    def _power(self) -> float:
        return self.power

    def _draw(self, sizes: np.ndarray, eligible: np.ndarray, k: int, rnd: int, seed: int) -> np.ndarray:
        if len(eligible) == len(sizes) and self.name in ("uniform", "weighted"):
            # The engine's original draws, kept bit-identical for records made before policies existed.
            return np.asarray(sample_clients(len(sizes), k, rnd, seed, self.name, sizes))
        p = sizes[eligible] ** self._power()
        return round_rng(seed, rnd, _SAMPLE_STREAM).choice(eligible, size=k, replace=False, p=p / p.sum())


class Uniform(_SuccessiveDraws):
    name = "uniform"
    summary = "K clients uniformly without replacement (pi_i = K / clients holding data)"

    def inclusion(self, sizes: np.ndarray, k: int) -> np.ndarray:
        eligible = np.asarray(sizes) > 0
        return np.where(eligible, min(1.0, k / max(int(eligible.sum()), 1)), 0.0)


class Weighted(_SuccessiveDraws):
    name = "weighted"
    power = 1.0
    summary = "K successive draws with probability proportional to size (inclusion NOT proportional to size)"


class ActivityPower(_SuccessiveDraws):
    name = "activity_power"
    param_specs = declare(Param("power", float, 1.0, at_least(0, "0: uniform, 1: by size"),
                                "draw probability proportional to size^power"))
    summary = "K successive draws proportional to size^power (inclusion has no closed form)"

    def _power(self) -> float:
        return self.values["power"]


class TopActive(_FixedSize):
    name = "top_active"
    summary = "the K clients holding the most data (ties: lower id); deterministic"

    def _draw(self, sizes: np.ndarray, eligible: np.ndarray, k: int, rnd: int, seed: int) -> np.ndarray:
        order = sorted(eligible.tolist(), key=lambda c: (-sizes[c], c))
        return np.asarray(order[:k])

    def inclusion(self, sizes: np.ndarray, k: int) -> np.ndarray:
        chosen = self._draw(np.asarray(sizes, dtype=np.float64), _eligible(sizes), k, 0, 0)
        out = np.zeros(len(sizes))
        out[chosen] = 1.0
        return out


class Poisson(SamplingPolicy):
    name = "poisson"
    summary = "each client independently with q = K / N (the sampling client-level DP accounting assumes)"

    def select(self, sizes: np.ndarray, k: int, rnd: int, seed: int) -> list[int]:
        joins = round_rng(seed, rnd, _SAMPLE_STREAM).random(len(sizes)) < self.inclusion(sizes, k)
        return [int(c) for c in np.flatnonzero(joins)]

    def inclusion(self, sizes: np.ndarray, k: int) -> np.ndarray:
        return np.where(np.asarray(sizes) > 0, k / len(sizes), 0.0)


#: The activity exponent of the exact-inclusion policies.
GAMMA = Param("gamma", float, 1.0, at_least(0, "0: uniform, 1: by size"), "inclusion proportional to size^gamma")


def activity_probabilities(sizes: np.ndarray, k: int, gamma: float) -> np.ndarray:
    """p_i = min(1, K n_i^gamma / sum_j n_j^gamma) over clients holding data, 0 for the rest."""
    sizes = np.asarray(sizes, dtype=np.float64)
    weight = np.where(sizes > 0, np.power(sizes, gamma, where=sizes > 0, out=np.zeros_like(sizes)), 0.0)
    total = weight.sum()
    return np.minimum(1.0, k * weight / total) if total > 0 else weight


def capped_inclusion(sizes: np.ndarray, k: int, gamma: float) -> np.ndarray:
    """pi_i proportional to n_i^gamma, capped at 1, summing to min(K, clients holding data).

    Clients whose share would exceed 1 are set to 1 and the remaining budget is
    shared out again among the others until no share exceeds 1.
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    eligible = sizes > 0
    budget = float(min(k, int(eligible.sum())))
    pi = np.zeros(len(sizes))
    capped = np.zeros(len(sizes), dtype=bool)
    weight = np.where(eligible, np.power(sizes, gamma, where=eligible, out=np.zeros_like(sizes)), 0.0)
    while True:
        free = eligible & ~capped
        left = budget - capped.sum()
        share = weight[free].sum()
        pi[free] = left * weight[free] / share if share > 0 else 0.0
        pi[capped] = 1.0
        over = free & (pi >= 1.0)
        if not over.any():
            return pi
        capped |= over


class ActivityPoisson(SamplingPolicy):
    name = "activity_poisson"
    param_specs = declare(GAMMA)
    default_weights = "inverse_probability"
    summary = "each client independently with p_i = min(1, K n_i^gamma / sum n^gamma) (exact inclusion)"

    def select(self, sizes: np.ndarray, k: int, rnd: int, seed: int) -> list[int]:
        joins = round_rng(seed, rnd, _SAMPLE_STREAM).random(len(sizes)) < self.inclusion(sizes, k)
        return [int(c) for c in np.flatnonzero(joins)]

    def inclusion(self, sizes: np.ndarray, k: int) -> np.ndarray:
        return activity_probabilities(sizes, k, self.values["gamma"])


class ActivitySystematic(SamplingPolicy):
    name = "activity_systematic"
    param_specs = declare(GAMMA)
    default_weights = "inverse_probability"
    summary = "exactly K clients, systematic PPS over a random order; pi_i proportional to n_i^gamma, capped at 1"

    def select(self, sizes: np.ndarray, k: int, rnd: int, seed: int) -> list[int]:
        pi = self.inclusion(sizes, k)
        rng = round_rng(seed, rnd, _SAMPLE_STREAM)
        order = rng.permutation(np.flatnonzero(pi > 0))
        edges = np.concatenate([[0.0], np.cumsum(pi[order])])
        points = rng.random() + np.arange(int(round(edges[-1])))
        # Unit j covers [edges[j], edges[j+1]); each point falls in exactly one, and pi <= 1 means no unit gets two.
        slots = np.clip(np.searchsorted(edges, points, side="right") - 1, 0, len(order) - 1)
        return sorted(int(c) for c in order[slots])

    def inclusion(self, sizes: np.ndarray, k: int) -> np.ndarray:
        return capped_inclusion(sizes, k, self.values["gamma"])


def _builtins() -> list[type]:
    return [Uniform, Weighted, ActivityPower, TopActive, Poisson, ActivityPoisson, ActivitySystematic]


#: The one list of sampling method names (``config.SAMPLING_METHODS`` and the CLI's choices read it).
SAMPLING_POLICIES: Registry[type[SamplingPolicy]] = Registry("sampling method", SamplingPolicy, builtins=_builtins)


def make_policy(method: str, params: Mapping[str, Any] | None = None) -> SamplingPolicy:
    """The policy ``method`` with validated parameters (unknown names and parameters fail with a hint)."""
    if params is not None and not isinstance(params, Mapping):
        raise ValueError(f"sampling_params must be a mapping such as {{gamma: 1.0}}, got {params!r}")
    return SAMPLING_POLICIES.lookup(method)(**dict(params or {}))


def select_clients(
    method: str,
    params: Mapping[str, Any],
    num_clients: int,
    k: int,
    rnd: int,
    seed: int,
    sizes: np.ndarray,
) -> list[int]:
    """Sorted client ids for round ``rnd``; only clients holding data (size > 0) are eligible.

    ``k`` is the number of clients per round (its expectation for the Poisson
    policies). When fewer than ``k`` clients hold data (a continual period), a
    fixed-size policy takes all of them. ``uniform`` and ``weighted`` over a
    full population give exactly the draws of ``sampling.seeds.sample_clients``.
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    if len(sizes) != num_clients:
        raise ValueError(f"need one size per client ({num_clients}), got {len(sizes)}")
    return make_policy(method, params).select(sizes, k, rnd, seed)
