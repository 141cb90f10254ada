"""The statistics of a tier table: mean ± std, Student-t intervals, and bytes to a target.

Three seeds give a wide interval, and a reader must see how wide: a normal
(z = 1.96) interval would understate it by more than half at n = 3 (t = 4.303),
so every interval here uses Student's t with n - 1 degrees of freedom (scipy).
The gap to centralized is a difference of two independent seed means; its
interval is Welch's (unequal variances, Welch-Satterthwaite df), which is what
the error bars of the gap figure show.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

from fednlp_bench.results.record import RunRecord

CONFIDENCE = 0.95


def t_quantile(df: float, confidence: float = CONFIDENCE) -> float:
    """Two-sided Student-t critical value, e.g. 4.303 for df=2 at 95%."""
    from scipy.stats import t

    if not df > 0:
        raise ValueError(f"degrees of freedom {df!r} must be positive (an interval needs at least 2 seeds)")
    return float(t.ppf(0.5 + confidence / 2, df))


@dataclass(frozen=True)
class Summary:
    """Mean, sample std (ddof=1) and 95% t interval of one cell's per-seed values."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        """None for one seed: there is no spread to report."""
        return statistics.stdev(self.values) if self.n >= 2 else None

    @property
    def half_width(self) -> float | None:
        """t_{0.975, n-1} * std / sqrt(n); None for one seed (no interval, shown as ``n=1``)."""
        if self.std is None:
            return None
        return t_quantile(self.n - 1) * self.std / math.sqrt(self.n)

    @property
    def interval(self) -> tuple[float, float] | None:
        hw = self.half_width
        return None if hw is None else (self.mean - hw, self.mean + hw)


def summarize(values: Sequence[float]) -> Summary:
    if not values:
        raise ValueError("no values to summarize: a cell needs at least one finished run")
    return Summary(tuple(float(v) for v in values))


@dataclass(frozen=True)
class Difference:
    """``a.mean - b.mean`` and its 95% Welch interval half-width (None unless both have >= 2 seeds)."""

    value: float
    half_width: float | None


def welch_difference(a: Summary, b: Summary) -> Difference:
    value = a.mean - b.mean
    if a.std is None or b.std is None:
        return Difference(value, None)
    va, vb = a.std ** 2 / a.n, b.std ** 2 / b.n
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(value, 0.0)
    df = (va + vb) ** 2 / (va ** 2 / (a.n - 1) + vb ** 2 / (b.n - 1))
    return Difference(value, t_quantile(df) * se)


def best_validation(record: RunRecord, metric: str) -> float:
    """Highest validation ``metric`` over the evaluated rounds (higher is better for every primary metric)."""
    scores = [float(r.metrics[metric]) for r in record.rounds if metric in r.metrics]
    if not scores:
        raise ValueError(f"record {record.run_id}: no round has a validation {metric!r}, so it cannot set the "
                         "bytes-to-target reference; re-run it with eval_every that evaluates at least one round")
    return max(scores)


def bytes_to_target(record: RunRecord, metric: str, target: float) -> int | None:
    """Cumulative bytes up + down through the first round whose validation ``metric`` >= ``target``.

    Rounds that were not evaluated still count their bytes (they were sent);
    None when no evaluated round reaches the target.
    """
    total = 0
    for r in record.rounds:
        total += int(r.bytes_up) + int(r.bytes_down)
        if metric in r.metrics and float(r.metrics[metric]) >= target:
            return total
    return None
