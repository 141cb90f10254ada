"""Interleaved timing of benchmark arms, shared by the benchmarks that compare two or more ways of doing one step.

Why: on a shared 2-core machine the load drifts over a benchmark's run, and whichever arm runs during a slow
stretch looks slower. Running every arm once per repeat, in an order that reverses every repeat, spreads the
drift over all arms; reporting the median drops the odd repeat a neighbour's job spoiled. The warm-up repeats
(first allocations, thread-pool start, lazy kernels) run in the same order and are dropped.
"""

from __future__ import annotations

import statistics
from typing import Callable, Mapping, Sequence, TypeVar

T = TypeVar("T")


def arm_order(names: Sequence[str], rep: int) -> list[str]:
    """The arms in their given order on even repeats, reversed on odd ones."""
    return list(names) if rep % 2 == 0 else list(reversed(names))


def interleaved(arms: Mapping[str, Callable[[int], T]], repeats: int, warmup: int = 0) -> dict[str, list[T]]:
    """Each arm's results over ``repeats`` kept repeats; ``arms[name](rep)`` measures one repeat of one arm.

    ``rep`` counts the warm-up repeats too (0 .. warmup + repeats - 1), so an arm can seed its randomness by it
    and both arms of one repeat see the same seed.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    kept: dict[str, list[T]] = {name: [] for name in arms}
    for rep in range(warmup + repeats):
        for name in arm_order(list(arms), rep):
            result = arms[name](rep)
            if rep >= warmup:
                kept[name].append(result)
    return kept


def medians(samples: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """The median of each arm's samples."""
    return {name: statistics.median(values) for name, values in samples.items()}
