"""benchmarks/interleave.py: the alternating arm order and warm-up handling five benchmarks time with."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from interleave import arm_order, interleaved, medians  # noqa: E402


def test_order_reverses_on_odd_repeats() -> None:
    assert arm_order(["a", "b", "c"], 0) == ["a", "b", "c"]
    assert arm_order(["a", "b", "c"], 1) == ["c", "b", "a"]
    assert arm_order(["a", "b", "c"], 2) == ["a", "b", "c"]


def test_every_arm_runs_once_per_repeat_in_alternating_order_and_warmups_are_dropped() -> None:
    calls: list[tuple[str, int]] = []

    def arm(name: str):
        def one(rep: int) -> float:
            calls.append((name, rep))
            return 10.0 * rep + (1.0 if name == "b" else 0.0)
        return one

    kept = interleaved({"a": arm("a"), "b": arm("b")}, repeats=3, warmup=1)
    assert calls == [("a", 0), ("b", 0), ("b", 1), ("a", 1), ("a", 2), ("b", 2), ("b", 3), ("a", 3)]
    assert kept == {"a": [10.0, 20.0, 30.0], "b": [11.0, 21.0, 31.0]}
    assert medians(kept) == {"a": 20.0, "b": 21.0}


def test_median_ignores_one_spoiled_repeat() -> None:
    assert medians({"a": [1.0, 9.0, 1.2]}) == {"a": 1.2}


@pytest.mark.parametrize(("repeats", "warmup"), [(0, 1), (2, -1)])
def test_bad_counts_are_refused(repeats: int, warmup: int) -> None:
    with pytest.raises(ValueError, match=f"repeats={repeats}, warmup={warmup}"):
        interleaved({"a": lambda rep: 0.0}, repeats=repeats, warmup=warmup)
