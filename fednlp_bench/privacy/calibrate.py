"""``privacy.target_epsilon``: the smallest noise multiplier whose epsilon meets a target, found before any work.

Epsilon falls as the noise multiplier z grows (for every RDP order, so also
for their minimum), so a bisection on log z finds the smallest z meeting the
target. It stops when the bracket is within a relative 1e-4 and returns its
upper end, so the returned z always meets the target (never the lower end,
which may miss it). The calibration uses the RDP epsilon, the looser of the
two accountants a record reports, so the PLD epsilon meets the target too.
"""

from __future__ import annotations

import math
from typing import Callable

#: z outside this range is refused: below it the target is met with almost no noise (use no DP); above it
#: the run would learn nothing, and near z = 1000 the RDP library's epsilon underflows to exactly 0.
NOISE_RANGE = (0.1, 100.0)
RELATIVE_TOLERANCE = 1e-4


def check_target_epsilon(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"privacy.target_epsilon={value!r} must be a finite number > 0, e.g. 8, 4 or 1")
    return float(value)


def smallest_noise_multiplier(epsilon_of: Callable[[float], float], target: float, what: str) -> float:
    """Smallest z in :data:`NOISE_RANGE` with ``epsilon_of(z) <= target`` (within the tolerance, from above).

    ``what`` names the accounting (q, rounds, delta) in the error when the target cannot be met.
    """
    target = check_target_epsilon(target)
    low, high = NOISE_RANGE
    if epsilon_of(high) > target:
        raise ValueError(
            f"privacy.target_epsilon={target:g} is unreachable for {what}: even noise_multiplier={high:g} gives "
            f"epsilon {epsilon_of(high):.4g}; raise the target, or lower the rounds or the sampling rate"
        )
    if epsilon_of(low) <= target:
        raise ValueError(
            f"privacy.target_epsilon={target:g} is met already at noise_multiplier={low:g} for {what} "
            f"(epsilon {epsilon_of(low):.4g}): that is next to no privacy; lower the target or run without privacy"
        )
    while high / low > 1.0 + RELATIVE_TOLERANCE:
        middle = math.sqrt(low * high)
        if epsilon_of(middle) <= target:
            high = middle
        else:
            low = middle
    return high
