"""The statistics every table uses: Summary, paired and Welch differences, convergence, the client tail."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from fednlp_bench.leaderboard.convergence import (
    Criterion,
    cell_status,
    convergence_status,
    ols_slope,
    points_in_window,
    record_status,
    window_start,
)
from fednlp_bench.leaderboard.summary import difference, difference_text, summarize, t_quantile
from fednlp_bench.results.client_stats import bootstrap_worst, worst_share_mean


def test_t_interval_of_known_numbers() -> None:
    s = summarize([0.5, 0.6, 0.7])
    assert s.mean == pytest.approx(0.6) and s.std == pytest.approx(0.1) and s.n == 3
    assert t_quantile(2) == pytest.approx(4.302653, abs=1e-6) and t_quantile(4) == pytest.approx(2.776445, abs=1e-6)
    assert s.half_width == pytest.approx(4.302653 * 0.1 / math.sqrt(3), abs=1e-6)
    assert s.interval == pytest.approx((0.6 - 0.248414, 0.6 + 0.248414), abs=1e-6)
    assert s.text() == "0.6000 ± 0.1000 95% CI [0.3516, 0.8484], n=3"
    one = summarize([0.7])
    assert one.std is None and one.half_width is None and one.interval is None and one.text() == "0.7000 n=1"
    with pytest.raises(ValueError, match="repeat a seed"):
        summarize([0.1, 0.2], seeds=[0, 0])


def test_paired_and_welch_differences_match_scipy() -> None:
    a = summarize([0.61, 0.65, 0.58, 0.70, 0.66], seeds=[0, 1, 2, 3, 4])
    b = summarize([0.70, 0.73, 0.69, 0.77, 0.71], seeds=[0, 1, 2, 3, 4])
    d = difference(a, b)
    paired = stats.ttest_rel(a.values, b.values).confidence_interval(0.95)
    assert d.paired.interval == pytest.approx((paired.low, paired.high))
    welch = stats.ttest_ind(a.values, b.values, equal_var=False).confidence_interval(0.95)
    assert d.welch_half_width == pytest.approx((welch.high - welch.low) / 2)
    # the seeds share their variation, so pairing narrows the interval
    assert d.paired_half_width < d.welch_half_width and d.excludes_zero is True
    assert difference_text(d).startswith(f"{d.paired.mean:+.4f} (paired 95% CI ±{d.paired_half_width:.4f}, n=5; Welch ±")


def test_pairing_matches_seeds_not_positions() -> None:
    a = summarize([0.5, 0.6, 0.9], seeds=[2, 0, 1])
    b = summarize([0.4, 0.5, 0.7], seeds=[0, 1, 3])
    d = difference(a, b)
    assert d.paired.seeds == (0, 1) and d.paired.values == pytest.approx((0.6 - 0.4, 0.9 - 0.5))
    assert difference(summarize([0.5]), summarize([0.4])).paired is None  # no seeds: nothing to pair
    assert difference(a, summarize([0.8], seeds=[7])).paired is None


def test_convergence_window_and_slope() -> None:
    criterion = Criterion.from_dict({"window": 0.25, "tolerance": 0.002, "min_points": 3})
    assert window_start(100, criterion) == 75 and window_start(8, criterion) == 6 and window_start(3, criterion) == 2
    assert points_in_window(100, criterion, lambda r: r % 5 == 0) == 6  # 75, 80, ..., 100
    assert points_in_window(100, criterion, lambda r: r % 20 == 0 or r == 100) == 2  # 80, 100
    assert ols_slope([(1, 1.0), (2, 3.0), (3, 2.0)]) == pytest.approx(0.5)
    rising = [(r, 0.5 + 0.003 * r) for r in range(5, 101, 5)]
    flat = [(r, 0.7 - 0.0001 * r) for r in range(5, 101, 5)]
    status = convergence_status(rising, 100, criterion)
    assert (status.converged, status.points) == (False, 6) and status.slope == pytest.approx(0.003)
    assert status.text() == "still rising (+0.0030 per round)"
    assert convergence_status(flat, 100, criterion).converged is True  # falling counts as converged
    few = convergence_status([(r, 0.5) for r in (50, 80, 100)], 100, criterion)
    assert few.converged is None and "2 evaluated round(s)" in few.text()
    # A cell is judged on its seed-mean curve: one rising and one flat seed average to +0.00145 per round.
    cell = cell_status([flat, rising], 100, criterion)
    assert (cell.converged, cell.rising_seeds, cell.seeds) == (True, 1, 2) and cell.slope == pytest.approx(0.00145)
    assert cell.text() == "converged (slope +0.0015/round)"
    both = cell_status([rising, [(r, v + 0.01) for r, v in rising]], 100, criterion)
    assert (both.converged, both.rising_seeds) == (False, 2) and both.slope == pytest.approx(0.003)
    assert both.text() == "still rising (+0.0030 per round, 2/2 single seeds rising)"
    # Noise around a flat line: single seeds may fail by chance, their mean does not.
    noisy = [[(r, 0.7 + (0.04 if (r // 5 + k) % 2 else -0.04)) for r in range(5, 101, 5)] for k in range(2)]
    assert cell_status(noisy, 100, criterion).converged is True
    assert cell_status([[(r, 0.5) for r in (50, 80, 100)], rising], 100, criterion).converged is None
    record = SimpleNamespace(primary_metric="f1", config={"rounds": 100},
                             rounds=[SimpleNamespace(round=r, metrics={"f1": v} if r % 5 == 0 else {})
                                     for r, v in [(r, 0.5 + 0.003 * r) for r in range(1, 101)]])
    assert record_status(record, criterion).slope == pytest.approx(0.003)


def test_worst_share_and_its_bootstrap() -> None:
    assert worst_share_mean([0.9, 0.1, 0.5, 0.3]) == pytest.approx(0.1)  # ceil(0.4) = 1 client
    assert worst_share_mean(list(range(11))) == pytest.approx(0.5)  # ceil(1.1) = 2 clients: 0 and 1
    rng = np.random.default_rng(3)
    seeds = [rng.uniform(0.2, 0.9, 40), rng.uniform(0.2, 0.9, 30)]
    low, high = bootstrap_worst(seeds)
    point = np.mean([worst_share_mean(s) for s in seeds])
    assert low <= point + 1e-12 and low < high and 0.2 <= low and high <= 0.9
    assert bootstrap_worst(seeds) == (low, high)  # fixed seed: a rebuilt table is identical
    assert bootstrap_worst([[0.5]]) is None and bootstrap_worst([[0.5, 0.5]]) == (0.5, 0.5)
