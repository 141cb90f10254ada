"""How a round's updates are weighted, and which weightings a run can honour (checked before any work).

The weighting itself is applied by ``engine/server/aggregation_weights.py``;
this module holds the names and the rules, so the config validates them
without importing the engine.
"""

from __future__ import annotations

from fednlp_bench.sampling.policies import SAMPLING_POLICIES, SamplingPolicy, TopActive

#: size: FedAvg's n_i weights; uniform: equal weights; inverse_probability: Horvitz-Thompson (exact inclusion).
AGGREGATION_WEIGHTS = ("size", "uniform", "inverse_probability")


def default_weights(sampling: str) -> str:
    """The weighting a policy uses when the config names none."""
    return SAMPLING_POLICIES.lookup(sampling).default_weights


def check_aggregation_weights(mode: str, *, sampling: str, algorithm: str, privacy: bool, explicit: bool) -> None:
    """Refuse weightings the run cannot honour, before any work (``mode`` is the resolved weighting)."""
    if privacy and explicit and mode != "size":
        raise ValueError(
            f"aggregation_weights={mode!r} does not apply with privacy: client-level DP sums the clipped updates with "
            f"equal weight and divides by the fixed expected count; drop aggregation_weights"
        )
    if mode != "inverse_probability":
        return
    from fednlp_bench.algorithms.registry import get_algorithm_class

    cls = get_algorithm_class(algorithm)
    if getattr(cls, "centralized", False) or not getattr(cls, "dp_compatible", False):
        raise ValueError(
            f"aggregation_weights=inverse_probability hands the strategy one estimated mean update, which "
            f"{algorithm!r} cannot take (it reads each client's own update or is centralized); use an algorithm "
            f"that aggregates a mean (fedavg, fedprox, the FedOpt family) or aggregation_weights: size"
        )
    policy = SAMPLING_POLICIES.lookup(sampling)
    if policy is TopActive:
        raise ValueError("aggregation_weights=inverse_probability needs every client to have a chance to take part; "
                         "top_active never picks the others (inclusion 0): use aggregation_weights: size or uniform")
    if policy.inclusion is SamplingPolicy.inclusion:
        raise ValueError(
            f"aggregation_weights=inverse_probability needs exact inclusion probabilities, which sampling "
            f"{sampling!r} (successive draws) does not have; use activity_poisson or activity_systematic"
        )
