"""Client-level differential privacy: the DP aggregation wrapper, its config and its accountant.

``spec`` validates the ``privacy:`` config section, ``aggregation`` clips,
sums and noises client deltas around any strategy that can take a noised
mean, and ``accountant`` turns (sampling rate, noise multiplier, rounds) into
epsilon with Google's ``dp-accounting`` library.
"""

from fednlp_bench.privacy.accountant import ClientLevelAccountant
from fednlp_bench.privacy.aggregation import PrivateAggregation, clip_delta
from fednlp_bench.privacy.spec import (
    PRIVACY_MECHANISMS,
    PrivacySpec,
    check_privacy_setting,
    dp_compatible_algorithms,
    is_dp_compatible,
)

__all__ = [
    "ClientLevelAccountant",
    "PRIVACY_MECHANISMS",
    "PrivacySpec",
    "PrivateAggregation",
    "check_privacy_setting",
    "clip_delta",
    "dp_compatible_algorithms",
    "is_dp_compatible",
]
