"""The ``privacy:`` config section: which DP mechanism, its parameters, and what it may be combined with.

Everything is checked when the ``RunConfig`` is built, before any data is
loaded: a DP run whose accounting would be invalid must never start, because
its epsilon would be a wrong number printed next to a real accuracy.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from fednlp_bench.hints import closest_hint

#: mechanism -> one-line description (help text and errors are derived from this).
PRIVACY_MECHANISMS: dict[str, str] = {
    "dp_fixed_clip": "clip each client delta to clip_norm, sum, add N(0, (z*C)^2), divide by expected clients",
    "dp_adaptive_clip": "as dp_fixed_clip, with C tracking the target_quantile of update norms (Andrew et al. 2021)",
}
#: The only client sampling whose privacy amplification the accountant models.
DP_SAMPLING = "poisson"
_KEYS = (
    "mechanism", "noise_multiplier", "clip_norm", "delta",
    "target_quantile", "clip_learning_rate", "clipped_count_stddev",
)
_ADAPTIVE_ONLY = ("target_quantile", "clip_learning_rate", "clipped_count_stddev")


@dataclass(frozen=True)
class PrivacySpec:
    """Validated DP parameters.

    ``clip_norm`` is C (the initial C for adaptive clipping); ``noise_multiplier``
    is z, the *total* noise multiplier the accountant uses. For adaptive
    clipping part of the budget pays for the noised clipped-count
    (``clipped_count_stddev`` = sigma_b), so the update noise uses
    z_delta = (z^-2 - (2 sigma_b)^-2)^-1/2 (Andrew et al. 2021, Thm. 1).
    """

    mechanism: str
    noise_multiplier: float
    clip_norm: float
    delta: float
    target_quantile: float | None = None
    clip_learning_rate: float | None = None
    clipped_count_stddev: float | None = None

    @property
    def adaptive(self) -> bool:
        return self.mechanism == "dp_adaptive_clip"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PrivacySpec":
        if not isinstance(data, Mapping):
            raise ValueError(
                f"privacy must be a mapping such as {{mechanism: dp_fixed_clip, noise_multiplier: 1.0, "
                f"clip_norm: 0.5, delta: 1e-5}}, got {data!r}"
            )
        for key in data:
            if key not in _KEYS:
                raise ValueError(f"unknown privacy key {key!r}.{closest_hint(key, _KEYS)} Valid keys: {', '.join(_KEYS)}")
        mech = data.get("mechanism")
        if mech not in PRIVACY_MECHANISMS:
            raise ValueError(
                f"privacy.mechanism={mech!r} is not supported.{closest_hint(str(mech), list(PRIVACY_MECHANISMS))} "
                f"Choose one of {list(PRIVACY_MECHANISMS)}"
            )
        for key in ("noise_multiplier", "clip_norm", "delta"):
            if key not in data:
                raise ValueError(f"privacy.{key} is required for {mech} (e.g. noise_multiplier: 1.0, clip_norm: 0.5, delta: 1e-5)")
        z = _number("noise_multiplier", data["noise_multiplier"])
        if z <= 0:
            raise ValueError(
                f"privacy.noise_multiplier={z} must be > 0 (z = noise std / clip norm; 0 gives no privacy)"
            )
        clip = _number("clip_norm", data["clip_norm"])
        if clip <= 0:
            raise ValueError(f"privacy.clip_norm={clip} must be > 0 (the L2 bound on each client's delta)")
        delta = _number("delta", data["delta"])
        if not 0.0 < delta < 1.0:
            raise ValueError(f"privacy.delta={delta} must lie in (0, 1); typically below 1/number of clients, e.g. 1e-5")
        if mech == "dp_fixed_clip":
            given = [k for k in _ADAPTIVE_ONLY if data.get(k) is not None]
            if given:
                raise ValueError(f"privacy keys {given} apply only to dp_adaptive_clip; drop them or switch mechanism")
            return cls(mech, z, clip, delta)
        quantile = _number("target_quantile", data.get("target_quantile", 0.5))
        if not 0.0 < quantile < 1.0:
            raise ValueError(f"privacy.target_quantile={quantile} must lie in (0, 1), e.g. 0.5 (the median update norm)")
        eta = _number("clip_learning_rate", data.get("clip_learning_rate", 0.2))
        if eta <= 0:
            raise ValueError(f"privacy.clip_learning_rate={eta} must be > 0 (Andrew et al. use 0.2)")
        sigma_b = data.get("clipped_count_stddev")
        if sigma_b is not None:
            sigma_b = _number("clipped_count_stddev", sigma_b)
            if sigma_b <= 0:
                raise ValueError(f"privacy.clipped_count_stddev={sigma_b} must be > 0")
        return cls(mech, z, clip, delta, quantile, eta, sigma_b)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def count_stddev(self, expected_clients: float) -> float:
        """sigma_b: given, or Andrew et al.'s default of expected clients / 20."""
        return self.clipped_count_stddev if self.clipped_count_stddev is not None else expected_clients / 20.0

    def update_noise_multiplier(self, expected_clients: float) -> float:
        """Noise multiplier of the summed deltas: z (fixed) or z_delta (adaptive, see class docstring)."""
        z = self.noise_multiplier
        if not self.adaptive:
            return z
        sigma_b = self.count_stddev(expected_clients)
        rest = z ** -2 - (2.0 * sigma_b) ** -2
        if rest <= 0:
            raise ValueError(
                f"dp_adaptive_clip: clipped_count_stddev={sigma_b:g} leaves no budget for the updates at "
                f"noise_multiplier={z:g}; it must exceed noise_multiplier/2 = {z / 2:g} "
                f"(set privacy.clipped_count_stddev, e.g. {max(z, 1e-3):g})"
            )
        return rest ** -0.5


def check_privacy_setting(
    spec: PrivacySpec, *, algorithm: str, sampling: str, clients_per_round: int, num_clients: int | None
) -> None:
    """Refuse combinations for which the accountant's epsilon would not hold."""
    if not is_dp_compatible(algorithm):
        raise ValueError(
            f"privacy ({spec.mechanism}) needs an aggregator that takes one clipped, noised mean delta; "
            f"{algorithm!r} cannot (it needs each client's own update, loss or state). "
            f"Algorithms that can: {dp_compatible_algorithms()}"
        )
    if sampling != DP_SAMPLING:
        raise ValueError(
            f"privacy needs sampling: {DP_SAMPLING} (got {sampling!r}): the accountant's amplification by "
            f"sampling assumes each client joins a round independently with probability q = "
            f"clients_per_round / num_clients; fixed-size or size-dependent sampling has no valid accounting here"
        )
    if num_clients is not None and clients_per_round > num_clients:
        raise ValueError(f"clients_per_round={clients_per_round} exceeds num_clients={num_clients}: q would exceed 1")
    spec.update_noise_multiplier(clients_per_round)  # adaptive: sigma_b must leave budget for the updates


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"privacy.{name}={value!r} must be a finite number")
    return float(value)


def is_dp_compatible(algorithm: str) -> bool:
    """True when the algorithm's strategy declares it aggregates one mean delta (``dp_compatible``)."""
    from fednlp_bench.algorithms.registry import get_algorithm_class

    cls = get_algorithm_class(algorithm)
    return bool(getattr(cls, "dp_compatible", False)) and not getattr(cls, "centralized", False)


def dp_compatible_algorithms() -> list[str]:
    from fednlp_bench.algorithms.registry import algorithm_names

    return [name for name in algorithm_names() if is_dp_compatible(name)]
