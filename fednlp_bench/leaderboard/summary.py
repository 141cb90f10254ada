"""The one statistics type of every table: per-seed values, mean ± std, t interval, paired and Welch differences.

Five seeds still leave a wide interval, and a reader must see how wide: a
normal (z = 1.96) interval would understate it (t = 2.776 at n = 5), so every
interval is Student's t with n - 1 degrees of freedom (scipy.stats).

A gap between two cells is reported two ways. The suite runs every cell with
the same seeds, and a seed fixes the partition draw and the client sequence,
so the per-seed differences a_s - b_s are paired observations: their t
interval removes the seed-to-seed variation both cells share, which is what
the protocol reports first. Welch's interval (unequal variances,
Welch-Satterthwaite df) ignores the pairing and is kept beside it, because
it is what a reader can recompute from two published means and stds.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

CONFIDENCE = 0.95


def t_quantile(df: float, confidence: float = CONFIDENCE) -> float:
    """Two-sided Student-t critical value, e.g. 4.303 for df=2 and 2.776 for df=4 at 95%."""
    from scipy.stats import t

    if not df > 0:
        raise ValueError(f"degrees of freedom {df!r} must be positive (an interval needs at least 2 seeds)")
    return float(t.ppf(0.5 + confidence / 2, df))


@dataclass(frozen=True)
class Summary:
    """Values of one cell (one per seed, ``seeds[i]`` the seed of ``values[i]`` when known)."""

    values: tuple[float, ...]
    seeds: tuple[int, ...] | None = None

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        """Sample std (ddof=1); None for one value: there is no spread to report."""
        return statistics.stdev(self.values) if self.n >= 2 else None

    @property
    def half_width(self) -> float | None:
        """t_{0.975, n-1} * std / sqrt(n); None for one value (no interval, shown as ``n=1``)."""
        if self.std is None:
            return None
        return t_quantile(self.n - 1) * self.std / math.sqrt(self.n)

    @property
    def interval(self) -> tuple[float, float] | None:
        hw = self.half_width
        return None if hw is None else (self.mean - hw, self.mean + hw)

    def by_seed(self) -> dict[int, float]:
        if self.seeds is None:
            raise ValueError("this summary has no seeds, so it cannot be paired with another")
        return dict(zip(self.seeds, self.values))

    def text(self, digits: int = 4, sep: str = " ") -> str:
        """``0.6000 ± 0.1000 95% CI [0.3516, 0.8484], n=3``; one value: ``0.6000 n=1``."""
        if self.std is None:
            return f"{self.mean:.{digits}f}{sep}n=1"
        low, high = self.interval  # type: ignore[misc]
        return (f"{self.mean:.{digits}f} ± {self.std:.{digits}f}{sep}{CONFIDENCE:.0%} CI "
                f"[{low:.{digits}f}, {high:.{digits}f}], n={self.n}")


def summarize(values: Sequence[float], seeds: Sequence[int] | None = None) -> Summary:
    if not values:
        raise ValueError("no values to summarize: a cell needs at least one finished run")
    if seeds is not None:
        if len(seeds) != len(values):
            raise ValueError(f"{len(values)} values but {len(seeds)} seeds")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds {list(seeds)} repeat a seed: each seed is one run")
    return Summary(tuple(float(v) for v in values), None if seeds is None else tuple(int(s) for s in seeds))


@dataclass(frozen=True)
class Difference:
    """``a - b``: the difference of the means, the paired one over matched seeds, and Welch's interval."""

    value: float
    #: Per-seed differences a_s - b_s over the seeds both have (None when a or b has no seeds or none match).
    paired: Summary | None
    #: Welch's 95% half-width for a difference of independent means (None unless both have >= 2 values).
    welch_half_width: float | None

    @property
    def paired_half_width(self) -> float | None:
        return None if self.paired is None else self.paired.half_width

    @property
    def excludes_zero(self) -> bool | None:
        """Whether the paired interval lies on one side of 0 (None without a paired interval)."""
        if self.paired is None or self.paired.interval is None:
            return None
        low, high = self.paired.interval
        return low > 0 or high < 0


def welch_half_width(a: Summary, b: Summary) -> float | None:
    if a.std is None or b.std is None:
        return None
    va, vb = a.std ** 2 / a.n, b.std ** 2 / b.n
    se = math.sqrt(va + vb)
    if se == 0:
        return 0.0
    df = (va + vb) ** 2 / (va ** 2 / (a.n - 1) + vb ** 2 / (b.n - 1))
    return t_quantile(df) * se


def paired_summary(a: Summary, b: Summary) -> Summary | None:
    """Summary of a_s - b_s over the seeds both summaries have, in seed order."""
    if a.seeds is None or b.seeds is None:
        return None
    left, right = a.by_seed(), b.by_seed()
    common = sorted(set(left) & set(right))
    if not common:
        return None
    return summarize([left[s] - right[s] for s in common], common)


def difference(a: Summary, b: Summary) -> Difference:
    return Difference(a.mean - b.mean, paired_summary(a, b), welch_half_width(a, b))


def difference_text(diff: Difference, digits: int = 4) -> str:
    """``-0.0500 (paired 95% CI ±0.0100, n=5; Welch ±0.0300)``: the paired interval first, Welch beside it."""
    parts = []
    if diff.paired is not None:
        hw = diff.paired.half_width
        parts.append(f"paired {CONFIDENCE:.0%} CI ±{hw:.{digits}f}, n={diff.paired.n}" if hw is not None
                     else f"paired n={diff.paired.n}, no interval")
    if diff.welch_half_width is not None:
        parts.append(f"Welch ±{diff.welch_half_width:.{digits}f}")
    value = diff.paired.mean if diff.paired is not None else diff.value
    return f"{value:+.{digits}f}" + (f" ({'; '.join(parts)})" if parts else "")
