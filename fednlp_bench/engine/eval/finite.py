"""Metric and weight finiteness checks shared by the round loop and the final test evaluation.

Kept apart from ``rounds`` so that ``test_eval`` (called by the round loop)
can use them without importing the loop back.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np


class NonFiniteModelError(RuntimeError):
    """The global model became NaN/inf; the run stopped and its last good checkpoint is kept."""


def finite_metrics(metrics: Mapping[str, Any], rnd: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            continue
        value = float(value)
        if not math.isfinite(value):
            raise NonFiniteModelError(f"round {rnd}: evaluation metric {name!r} is {value}; the model diverged")
        out[name] = value
    return out
