"""Convergence as a property of every cell: is the validation curve still rising at the end of the budget?

A gap between FL and centralized training measured while FL is still
climbing is a statement about the budget, not about federated learning. So
each tier declares a criterion and every cell is tested against it:

    The window is the last ``window`` share of the R rounds: the evaluated
    rounds r with r >= R - ceil(window * R). A seed's curve is converged when
    the window holds at least ``min_points`` evaluated rounds and the
    ordinary least-squares slope of its validation metric against the round
    number is below ``tolerance`` (metric units per round). A falling curve
    (overfitting) counts as converged: more rounds would not help. A cell is
    judged on its seed-mean curve (the mean over its seeds at every evaluated
    round; the seeds share the evaluation schedule): one seed's slope over a
    handful of evaluations is dominated by round-to-round noise under strong
    skew (20News Dirichlet 0.1 jumps by +-0.05 between evaluations, a slope
    standard error of about 0.002 per round over 6 points), so requiring
    every seed to pass would flag flat cells as rising by chance. The table
    also says how many single seeds would have failed.

Only records are read (the validation metric of each evaluated round), so the
status is recomputed from the published records by anyone. The suite checks,
before anything runs, that every run's evaluation schedule puts enough
evaluated rounds in the window (:func:`window_start`, :func:`points_in_window`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from fednlp_bench.hints import closest_hint

KEYS = ("window", "tolerance", "min_points")
#: ``fednlp-bench compare`` has no tier; it marks its cells with this criterion (docs/protocol.md).
DEFAULT = {"window": 0.25, "tolerance": 0.002, "min_points": 3}


@dataclass(frozen=True)
class Criterion:
    window: float
    tolerance: float
    min_points: int = 3

    @classmethod
    def from_dict(cls, value: Any, source: str = "convergence") -> "Criterion":
        """Parse ``{window: 0.25, tolerance: 0.002, min_points: 3}``; every bad value is named."""
        if not isinstance(value, Mapping):
            raise ValueError(f"{source}: 'convergence' must be a mapping such as {DEFAULT}, got {value!r}")
        for key in value:
            if key not in KEYS:
                raise ValueError(f"{source}: unknown key {key!r} in 'convergence'.{closest_hint(str(key), KEYS)} "
                                 f"Valid keys: {', '.join(KEYS)}")
        for key in ("window", "tolerance"):
            if key not in value:
                raise ValueError(f"{source}: convergence needs {key!r} (e.g. {DEFAULT})")
        window, tolerance = value["window"], value["tolerance"]
        points = value.get("min_points", DEFAULT["min_points"])
        if not _number(window) or not 0 < window <= 1:
            raise ValueError(f"{source}: convergence.window={window!r} must be a share of the rounds in (0, 1], "
                             "e.g. 0.25 for the last quarter")
        if not _number(tolerance) or not tolerance > 0:
            raise ValueError(f"{source}: convergence.tolerance={tolerance!r} must be a positive number "
                             "(the largest slope of the validation metric per round still called flat), e.g. 0.002")
        if isinstance(points, bool) or not isinstance(points, int) or points < 2:
            raise ValueError(f"{source}: convergence.min_points={points!r} must be an integer >= 2 (a slope needs "
                             "two evaluated rounds; 3 or more make it meaningful)")
        return cls(float(window), float(tolerance), points)

    def to_dict(self) -> dict[str, Any]:
        return {"window": self.window, "tolerance": self.tolerance, "min_points": self.min_points}

    def text(self) -> str:
        return (f"OLS slope of the seed-mean validation metric per round below {self.tolerance:g} over the last "
                f"{self.window:.0%} of the rounds (at least {self.min_points} evaluated rounds)")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def window_start(rounds: int, criterion: Criterion) -> int:
    """First round of the window: R - ceil(window * R) (the round the last share starts from)."""
    return max(1, rounds - math.ceil(criterion.window * rounds - 1e-9))


def points_in_window(rounds: int, criterion: Criterion, evaluates: Callable[[int], bool]) -> int:
    """Evaluated rounds inside the window, for an evaluation schedule ``evaluates(round)``."""
    return sum(1 for r in range(window_start(rounds, criterion), rounds + 1) if evaluates(r))


def ols_slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y on x (x: round numbers, all distinct)."""
    n = len(points)
    if n < 2:
        raise ValueError("a slope needs at least two points")
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        raise ValueError("a slope needs at least two distinct rounds")
    return sum((x - mx) * (y - my) for x, y in points) / sxx


@dataclass(frozen=True)
class Status:
    """One curve's (or one cell's) verdict: converged, still rising, or undecidable (too few points)."""

    #: None: the window holds fewer evaluated rounds than the criterion needs.
    converged: bool | None
    #: The slope per round (a cell: of its seed-mean curve); None when undecidable.
    slope: float | None
    points: int
    seeds: int = 1
    rising_seeds: int = 0

    def text(self, digits: int = 4) -> str:
        if self.converged is None:
            return f"undecided ({self.points} evaluated round(s) in the window)"
        if self.converged:
            return f"converged (slope {self.slope:+.{digits}f}/round)"
        share = f", {self.rising_seeds}/{self.seeds} single seeds rising" if self.seeds > 1 else ""
        return f"still rising (+{self.slope:.{digits}f} per round{share})"

    def to_dict(self) -> dict[str, Any]:
        return {"converged": self.converged, "slope": self.slope, "points": self.points, "seeds": self.seeds,
                "rising_seeds": self.rising_seeds}


def convergence_status(curve: Sequence[tuple[int, float]], rounds: int, criterion: Criterion) -> Status:
    """The verdict for one seed's validation curve ``[(round, value), ...]`` of a run of ``rounds`` rounds."""
    start = window_start(rounds, criterion)
    window = [(float(r), float(v)) for r, v in curve if start <= r <= rounds]
    if len(window) < criterion.min_points:
        return Status(None, None, len(window))
    slope = ols_slope(window)
    rising = slope >= criterion.tolerance
    return Status(not rising, slope, len(window), 1, int(rising))


def cell_status(curves: Sequence[Sequence[tuple[int, float]]], rounds: int, criterion: Criterion) -> Status:
    """The verdict for a cell: the slope of its seed-mean curve; ``rising_seeds`` counts single seeds that fail."""
    if not curves:
        raise ValueError("no curves: a cell's status needs at least one finished run")
    singles = [convergence_status(c, rounds, criterion) for c in curves]
    if any(s.converged is None for s in singles):
        return Status(None, None, min(s.points for s in singles), len(curves))
    shared = set.intersection(*(set(dict(c)) for c in curves))
    mean_curve = [(r, sum(dict(c)[r] for c in curves) / len(curves)) for r in sorted(shared)]
    cell = convergence_status(mean_curve, rounds, criterion)
    rising = sum(not s.converged for s in singles)
    return Status(cell.converged, cell.slope, cell.points, len(curves), rising)


def record_curve(record: Any, metric: str | None = None) -> list[tuple[int, float]]:
    """``[(round, validation metric)]`` of a run record's evaluated rounds (the primary metric by default)."""
    metric = metric or record.primary_metric
    return [(int(r.round), float(r.metrics[metric])) for r in record.rounds if metric in r.metrics]


def record_rounds(record: Any) -> int:
    """The rounds a record was budgeted (a converged-centralized run is judged on its longer curve)."""
    return int(record.config.get("rounds") or len(record.rounds))


def record_status(record: Any, criterion: Criterion, metric: str | None = None) -> Status:
    """The verdict for one record."""
    return convergence_status(record_curve(record, metric), record_rounds(record), criterion)


def records_status(records: Sequence[Any], criterion: Criterion, metric: str | None = None) -> Status:
    """The verdict for a cell's records (one per seed, the same budget)."""
    budgets = {record_rounds(r) for r in records}
    if len(budgets) != 1:
        raise ValueError(f"a cell's records must share one budget, got rounds {sorted(budgets)}")
    return cell_status([record_curve(r, metric) for r in records], budgets.pop(), criterion)


def window_validation(record: Any, criterion: Criterion, metric: str | None = None) -> float | None:
    """Mean validation metric over the evaluated rounds of the convergence window; None if it holds none.

    What selection, the best mark and the headline read. One round's value
    is noisy under skew (a 20News Dirichlet 0.1 curve moves by +-0.05 between
    evaluations), so choosing on the last round alone would pick a grid
    point by luck; the window is the part of the curve the criterion already
    calls flat for a converged run.
    """
    start = window_start(record_rounds(record), criterion)
    values = [v for r, v in record_curve(record, metric) if r >= start]
    return math.fsum(values) / len(values) if values else None  # fsum: a flat curve averages to its value exactly
