"""The ``privacy:`` config section: which DP mechanism and its parameters (combinations: ``rules.py``).

Everything is checked when the ``RunConfig`` is built, before any data is
loaded: a DP run whose accounting would be invalid must never start, because
its epsilon would be a wrong number printed next to a real accuracy.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from fednlp_bench.hints import closest_hint
from fednlp_bench.privacy.calibrate import check_target_epsilon

#: mechanism -> (unit of privacy, one-line description); help text and errors derive from this.
PRIVACY_MECHANISMS: dict[str, tuple[str, str]] = {
    "dp_fixed_clip": ("client", "clip each client delta to clip_norm, sum, add N(0, (z*C)^2), divide by expected clients"),
    "dp_adaptive_clip": ("client", "as dp_fixed_clip, with C tracking the target_quantile of update norms "
                                   "(Andrew et al. 2021)"),
    "dp_sgd": ("example", "DP-SGD on every client: Poisson batches, each example's gradient clipped to clip_norm, "
                          "N(0, (z*C)^2) per local step (Abadi et al. 2016)"),
}
#: Adaptive clipping releases the sum of centred bits b_i - 1/2 (b_i = 1 when client i was not clipped), as
#: TF-Privacy's quantile estimator does: adding or removing one client moves that sum by exactly 1/2.
COUNT_SENSITIVITY = 0.5
_KEYS = (
    "mechanism", "noise_multiplier", "target_epsilon", "clip_norm", "delta",
    "target_quantile", "clip_learning_rate", "clipped_count_stddev",
)
_ADAPTIVE_ONLY = ("target_quantile", "clip_learning_rate", "clipped_count_stddev")


@dataclass(frozen=True)
class PrivacySpec:
    """Validated DP parameters.

    ``clip_norm`` is C (the initial C for adaptive clipping; the per-example
    bound for DP-SGD). ``noise_multiplier`` is z, the *total* noise multiplier
    the accountant uses; with ``target_epsilon`` it is None until the run
    calibrates it (``with_noise_multiplier``). For adaptive clipping part of
    the budget pays for the noised count (``clipped_count_stddev`` = sigma_b,
    sensitivity 1/2), so the updates use z_delta = (z^-2 - (sigma_b / (1/2))^-2)^-1/2:
    the two releases are one Gaussian mechanism of multiplier z (Andrew et al. 2021, Thm. 1).
    """

    mechanism: str
    noise_multiplier: float | None
    clip_norm: float
    delta: float
    target_epsilon: float | None = None
    target_quantile: float | None = None
    clip_learning_rate: float | None = None
    clipped_count_stddev: float | None = None

    @property
    def adaptive(self) -> bool:
        return self.mechanism == "dp_adaptive_clip"

    @property
    def level(self) -> str:
        """``client`` (DP-FedAvg: the unit of privacy is a client) or ``example`` (DP-SGD: one training example)."""
        return PRIVACY_MECHANISMS[self.mechanism][0]

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
        z, target = _noise_or_target(data)
        for key in ("clip_norm", "delta"):
            if key not in data:
                raise ValueError(f"privacy.{key} is required for {mech} (e.g. clip_norm: 0.5, delta: 1e-5)")
        clip = _number("clip_norm", data["clip_norm"])
        if clip <= 0:
            raise ValueError(f"privacy.clip_norm={clip} must be > 0 (the L2 bound on each client's delta or example's gradient)")
        delta = _number("delta", data["delta"])
        if not 0.0 < delta < 1.0:
            raise ValueError(f"privacy.delta={delta} must lie in (0, 1); typically below 1/number of clients, e.g. 1e-5")
        if mech != "dp_adaptive_clip":
            given = [k for k in _ADAPTIVE_ONLY if data.get(k) is not None]
            if given:
                raise ValueError(f"privacy keys {given} apply only to dp_adaptive_clip; drop them or switch mechanism")
            return cls(mech, z, clip, delta, target)
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
        return cls(mech, z, clip, delta, target, quantile, eta, sigma_b)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def with_noise_multiplier(self, z: float) -> "PrivacySpec":
        """The spec with z set (a ``target_epsilon`` spec once the run has calibrated z)."""
        return dataclasses.replace(self, noise_multiplier=float(z))

    def resolved_noise_multiplier(self) -> float:
        if self.noise_multiplier is None:
            raise ValueError("privacy.target_epsilon: the noise multiplier has not been calibrated yet")
        return self.noise_multiplier

    def count_stddev(self, expected_clients: float) -> float:
        """sigma_b: given, or Andrew et al.'s default of expected clients / 20."""
        return self.clipped_count_stddev if self.clipped_count_stddev is not None else expected_clients / 20.0

    def count_noise_multiplier(self, expected_clients: float) -> float:
        """Noise multiplier of the released count: its noise std over its sensitivity, sigma_b / (1/2)."""
        return self.count_stddev(expected_clients) / COUNT_SENSITIVITY

    def update_noise_multiplier(self, expected_clients: float) -> float:
        """Noise multiplier of the summed deltas: z (fixed) or z_delta (adaptive, see class docstring)."""
        z = self.resolved_noise_multiplier()
        if not self.adaptive:
            return z
        z_count = self.count_noise_multiplier(expected_clients)
        rest = z ** -2 - z_count ** -2
        if rest <= 0:
            sigma_b = self.count_stddev(expected_clients)
            floor = z * COUNT_SENSITIVITY
            raise ValueError(
                f"dp_adaptive_clip: clipped_count_stddev={sigma_b:g} leaves no budget for the updates at "
                f"noise_multiplier={z:g}; it must exceed noise_multiplier/2 = {floor:g} "
                f"(set privacy.clipped_count_stddev, e.g. {max(2 * floor, 1e-3):g})"
            )
        return rest ** -0.5


def _noise_or_target(data: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """Exactly one of noise_multiplier (z) and target_epsilon (z calibrated by the run)."""
    has_z, has_target = data.get("noise_multiplier") is not None, data.get("target_epsilon") is not None
    if has_z == has_target:
        raise ValueError(
            "privacy needs exactly one of noise_multiplier (e.g. 1.0) and target_epsilon (e.g. 4: the run then "
            f"finds the smallest noise multiplier that meets it); got {'both' if has_z else 'neither'}"
        )
    if has_target:
        return None, check_target_epsilon(data["target_epsilon"])
    z = _number("noise_multiplier", data["noise_multiplier"])
    if z <= 0:
        raise ValueError(f"privacy.noise_multiplier={z} must be > 0 (z = noise std / clip norm; 0 gives no privacy)")
    return z, None


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"privacy.{name}={value!r} must be a finite number")
    return float(value)
