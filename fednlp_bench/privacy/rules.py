"""What a DP mechanism may be combined with: refused before any work when the epsilon would not hold.

Client-level DP hands the strategy one clipped, noised mean, so the strategy
must need nothing else, and the accountant's amplification needs Poisson
client sampling. Example-level DP-SGD replaces each client's local step, so
the client must run plain local training (a client procedure's loss terms,
gradient edits or loss evaluations on the client's data are not covered);
any server aggregation is then post-processing of DP outputs.
"""

from __future__ import annotations

from typing import Any

from fednlp_bench.privacy.spec import PrivacySpec

#: The only client sampling whose privacy amplification the client-level accountant models.
DP_SAMPLING = "poisson"
#: DP-SGD: where its per-example gradients are implemented and checked (see dpsgd.py).
DPSGD_BACKEND = "inprocess"
DPSGD_PRECISION = "fp32"


def check_privacy_setting(spec: PrivacySpec, config: Any) -> None:
    """Refuse combinations for which the accountant's epsilon would not hold (``config``: a RunConfig)."""
    if spec.level == "client":
        _check_client_level(spec, config)
    else:
        _check_example_level(spec, config)


def _check_client_level(spec: PrivacySpec, config: Any) -> None:
    from fednlp_bench.privacy.accountant import client_noise_for_target

    if not is_dp_compatible(config.algorithm):
        raise ValueError(
            f"privacy ({spec.mechanism}) needs an aggregator that takes one clipped, noised mean delta; "
            f"{config.algorithm!r} cannot (it needs each client's own update, loss or state). "
            f"Algorithms that can: {dp_compatible_algorithms()}"
        )
    if config.sampling != DP_SAMPLING:
        raise ValueError(
            f"privacy needs sampling: {DP_SAMPLING} (got {config.sampling!r}): the accountant's amplification by "
            f"sampling assumes each client joins a round independently with probability q = "
            f"clients_per_round / num_clients; fixed-size or size-dependent sampling has no valid accounting here"
        )
    num_clients = config.partition.get("num_clients")
    if num_clients is not None and config.clients_per_round > num_clients:
        raise ValueError(f"clients_per_round={config.clients_per_round} exceeds num_clients={num_clients}: q would exceed 1")
    if spec.target_epsilon is not None:
        if num_clients is None:
            return  # q is known once the partition exists: the run calibrates (and checks) then, before training
        z = client_noise_for_target(spec.target_epsilon, config.clients_per_round / num_clients, config.rounds, spec.delta)
        spec = spec.with_noise_multiplier(z)
    spec.update_noise_multiplier(config.clients_per_round)  # adaptive: sigma_b must leave budget for the updates


def _check_example_level(spec: PrivacySpec, config: Any) -> None:
    if config.algorithm not in dp_sgd_algorithms():
        raise ValueError(
            f"privacy: dp_sgd replaces each client's local step, so the client must run plain local training; "
            f"{config.algorithm!r} {'is centralized' if _is_centralized(config.algorithm) else 'has a client procedure'}"
            f" (its loss terms, gradient edits or loss evaluations are not covered). Algorithms that can: "
            f"{dp_sgd_algorithms()}"
        )
    if config.backend != DPSGD_BACKEND:
        raise ValueError(f"privacy: dp_sgd runs on backend: {DPSGD_BACKEND} (got {config.backend!r}); its secret noise "
                         f"seed stays in the server process")
    if config.precision != DPSGD_PRECISION:
        raise ValueError(f"privacy: dp_sgd needs precision: {DPSGD_PRECISION} (got {config.precision!r}): its "
                         f"per-example gradients are computed without autocast or loss scaling")
    if config.batching != "random":
        raise ValueError(f"privacy: dp_sgd draws its own Poisson batches (the accountant's sampling rate), so "
                         f"batching={config.batching!r} would not apply: set batching: random")
    if config.continual is not None:
        raise ValueError("privacy: dp_sgd's accounting fixes each client's sampling rate from its size; the continual "
                         "setting changes the sizes every period: drop continual or use client-level DP")


def _is_centralized(algorithm: str) -> bool:
    from fednlp_bench.algorithms.registry import get_algorithm_class

    return bool(getattr(get_algorithm_class(algorithm), "centralized", False))


def is_dp_compatible(algorithm: str) -> bool:
    """True when the algorithm's strategy declares it aggregates one mean delta (``dp_compatible``)."""
    from fednlp_bench.algorithms.registry import get_algorithm_class

    cls = get_algorithm_class(algorithm)
    return bool(getattr(cls, "dp_compatible", False)) and not getattr(cls, "centralized", False)


def dp_compatible_algorithms() -> list[str]:
    from fednlp_bench.algorithms.registry import algorithm_names

    return [name for name in algorithm_names() if is_dp_compatible(name)]


def dp_sgd_algorithms() -> list[str]:
    """Federated algorithms whose clients train plainly (no client procedure): DP-SGD can be their local step."""
    from fednlp_bench.algorithms.registry import algorithm_names, get_algorithm_class

    return [n for n in algorithm_names()
            if get_algorithm_class(n).client is None and not getattr(get_algorithm_class(n), "centralized", False)]
