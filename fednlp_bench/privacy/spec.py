"""The ``privacy:`` config section: which DP mechanism and its parameters (combinations: ``rules.py``).

Everything is checked when the ``RunConfig`` is built, before any data is
loaded: a DP run whose accounting would be invalid must never start, because
its epsilon would be a wrong number printed next to a real accuracy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Mapping

from fednlp_bench.hints import closest_hint
from fednlp_bench.registry import REQUIRED, Param, Registry, declare, resolve_params

#: Adaptive clipping releases the sum of centred bits b_i - 1/2 (b_i = 1 when client i was not clipped), as
#: TF-Privacy's quantile estimator does: adding or removing one client moves that sum by exactly 1/2.
COUNT_SENSITIVITY = 0.5


def _positive(note: str) -> Any:
    return lambda v: None if v > 0 else f"must be > 0 ({note})"


def _target(value: Any) -> str | None:
    return None if value > 0 else "must be a finite number > 0, e.g. 8, 4 or 1"


#: What every mechanism takes.
_COMMON = declare(
    Param("noise_multiplier", float, None, _positive("z = noise std / clip norm; 0 gives no privacy"),
          "z, the total noise multiplier the accountant uses (or give target_epsilon)"),
    Param("target_epsilon", float, None, _target, "the run finds the smallest z whose epsilon meets it"),
    Param("clip_norm", float, REQUIRED, _positive("the L2 bound on each client's delta or example's gradient"),
          "C: the clip norm (the initial C for adaptive clipping; the per-example bound for DP-SGD)"),
    Param("delta", float, REQUIRED, lambda v: None if 0 < v < 1 else "must lie in (0, 1); typically below "
          "1/number of clients, e.g. 1e-5", "delta of (epsilon, delta)-DP"),
)


class PrivacyMechanism:
    """One DP mechanism: its unit of privacy (client or example), what it does, and its parameters."""

    name: ClassVar[str]
    level: ClassVar[str]
    help: ClassVar[str]
    param_specs: ClassVar[Mapping[str, Param]] = _COMMON


class DpFixedClip(PrivacyMechanism):
    name, level = "dp_fixed_clip", "client"
    help = "clip each client delta to clip_norm, sum, add N(0, (z*C)^2), divide by expected clients"


class DpAdaptiveClip(PrivacyMechanism):
    name, level = "dp_adaptive_clip", "client"
    help = "as dp_fixed_clip, with C tracking the target_quantile of update norms (Andrew et al. 2021)"
    param_specs = {**_COMMON, **declare(
        Param("target_quantile", float, 0.5, lambda v: None if 0 < v < 1 else "must lie in (0, 1), e.g. 0.5 (the "
              "median update norm)", "the update-norm quantile C tracks"),
        Param("clip_learning_rate", float, 0.2, _positive("Andrew et al. use 0.2"), "step of C's geometric update"),
        Param("clipped_count_stddev", float, None, _positive("the noise of the released count"),
              "sigma_b, the noise std of the released count (default: expected clients / 20)"),
    )}


class DpSgd(PrivacyMechanism):
    name, level = "dp_sgd", "example"
    help = ("DP-SGD on every client: Poisson batches, each example's gradient clipped to clip_norm, "
            "N(0, (z*C)^2) per local step (Abadi et al. 2016)")


#: The one list of DP mechanisms (``privacy.mechanism``); help text, errors and the docs' table derive from it.
PRIVACY_MECHANISMS: Registry[type[PrivacyMechanism]] = Registry(
    "privacy mechanism", PrivacyMechanism, builtins=lambda: (DpFixedClip, DpAdaptiveClip, DpSgd))


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
        return PRIVACY_MECHANISMS[self.mechanism].level

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PrivacySpec":
        if not isinstance(data, Mapping):
            raise ValueError(
                f"privacy must be a mapping such as {{mechanism: dp_fixed_clip, noise_multiplier: 1.0, "
                f"clip_norm: 0.5, delta: 1e-5}}, got {data!r}"
            )
        mech = data.get("mechanism")
        if mech not in PRIVACY_MECHANISMS:
            names = PRIVACY_MECHANISMS.names()
            raise ValueError(f"privacy.mechanism={mech!r} is not supported.{closest_hint(str(mech), names)} "
                             f"Choose one of {names}")
        specs = PRIVACY_MECHANISMS[mech].param_specs
        # Another mechanism's key set to null means "not used" (configs written for several mechanisms at once).
        others = set(PRIVACY_MECHANISMS.all_params()) - set(specs)
        given = {k: v for k, v in data.items() if k != "mechanism" and not (k in others and v is None)}
        values = resolve_params(specs, given, owner=f"privacy mechanism {mech!r}", prefix="privacy.")
        _noise_or_target(values)
        return cls(mechanism=mech, **values)

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


def _noise_or_target(values: Mapping[str, Any]) -> None:
    """Exactly one of noise_multiplier (z) and target_epsilon (z calibrated by the run)."""
    has_z, has_target = values.get("noise_multiplier") is not None, values.get("target_epsilon") is not None
    if has_z == has_target:
        raise ValueError(
            "privacy needs exactly one of noise_multiplier (e.g. 1.0) and target_epsilon (e.g. 4: the run then "
            f"finds the smallest noise multiplier that meets it); got {'both' if has_z else 'neither'}"
        )
