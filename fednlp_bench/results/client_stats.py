"""The worst-served clients' metric and its bootstrap interval, shared by the engine and the tables.

"Worst 10% of clients" is the mean metric of the ceil(N/10) lowest clients:
a tail statistic, so its uncertainty comes from which clients happen to be in
the tail. The interval resamples clients with replacement (percentile
bootstrap, scipy.stats.bootstrap, fixed seed so a table rebuilds
identically). Over several seeds of one cell the clients are resampled
within each seed and the statistic is the mean over seeds of each seed's
worst-10% value: the interval of that mean given those seeds' clients.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

WORST_SHARE = 0.1
#: Resamples of the bootstrap: enough for a stable 95% percentile interval of a mean of a few dozen values.
RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def worst_share_mean(values: Sequence[float] | np.ndarray, share: float = WORST_SHARE) -> float:
    """Mean of the lowest ceil(share * N) values (at least one)."""
    arr = np.sort(np.asarray(values, dtype=np.float64))
    if arr.size == 0:
        raise ValueError("no client values: the worst-share mean needs at least one qualifying client")
    k = max(1, math.ceil(share * arr.size))
    return float(arr[:k].mean())


def bootstrap_worst(samples: Sequence[Sequence[float]], confidence: float = 0.95,
                    share: float = WORST_SHARE) -> tuple[float, float] | None:
    """Percentile interval of mean_s(worst share of sample s), clients resampled within each sample.

    None when a sample has fewer than two clients (nothing to resample).
    """
    from scipy.stats import bootstrap

    data = [np.asarray(s, dtype=np.float64) for s in samples]
    if not data or any(d.size < 2 for d in data):
        return None
    if all(np.all(d == d[0]) for d in data):
        value = float(np.mean([worst_share_mean(d, share) for d in data]))
        return value, value

    def statistic(*xs: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean([_worst_along(x, share, axis) for x in xs], axis=0)

    result = bootstrap(tuple(data), statistic, n_resamples=RESAMPLES, confidence_level=confidence,
                       method="percentile", vectorized=True, rng=np.random.default_rng(BOOTSTRAP_SEED))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _worst_along(x: np.ndarray, share: float, axis: int) -> np.ndarray:
    k = max(1, math.ceil(share * x.shape[axis]))
    return np.mean(np.sort(x, axis=axis).take(np.arange(k), axis=axis), axis=axis)
