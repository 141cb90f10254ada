"""Differential privacy: client-level DP-FedAvg and example-level DP-SGD, their accounting and what records hold.

``spec`` validates the ``privacy:`` config section and ``rules`` what it may be
combined with; ``aggregation`` clips, sums and noises client deltas around any
strategy that takes a noised mean (client level); ``dpsgd`` and
``per_example`` are the clients' DP-SGD loop (example level); ``accountant``
and ``example_accountant`` turn the mechanism into epsilon with Google's
``dp-accounting`` (RDP and PLD side by side), ``calibrate`` a target epsilon
into a noise multiplier; ``secret`` is the run's secret noise seed; ``records``
keeps what epsilon does not cover out of the record; ``run_privacy`` ties
them into one run.
"""

from fednlp_bench.privacy.accountant import ClientLevelAccountant
from fednlp_bench.privacy.aggregation import PrivateAggregation, clip_delta
from fednlp_bench.privacy.rules import check_privacy_setting, dp_compatible_algorithms, dp_sgd_algorithms, is_dp_compatible
from fednlp_bench.privacy.spec import PRIVACY_MECHANISMS, PrivacySpec

__all__ = [
    "ClientLevelAccountant",
    "PRIVACY_MECHANISMS",
    "PrivacySpec",
    "PrivateAggregation",
    "check_privacy_setting",
    "clip_delta",
    "dp_compatible_algorithms",
    "dp_sgd_algorithms",
    "is_dp_compatible",
]
