"""Range checks for :class:`fednlp_bench.registry.Param`: each returns a problem phrase or None.

A phrase completes ``name=value ...`` ("alpha=-1 must be > 0"), so every
family's error reads the same way; the note says what the bound means.
"""

from __future__ import annotations

from typing import Any, Callable

Check = Callable[[Any], "str | None"]


def positive(value: Any) -> str | None:
    return None if value > 0 else "must be > 0"


def at_least(lo: float, note: str = "") -> Check:
    """``value >= lo``."""
    return lambda v: None if v >= lo else f"must be >= {lo}" + (f" ({note})" if note else "")


def in_range(lo: float, hi: float, *, closed_high: bool = False, note: str = "") -> Check:
    """``lo <= value < hi`` (``<= hi`` with ``closed_high``)."""
    def check(v: Any) -> str | None:
        if lo <= v < hi or (closed_high and v == hi):
            return None
        return f"must be in [{lo}, {hi}{']' if closed_high else ')'}" + (f": {note}" if note else "")

    return check


def positive_or_null(value: Any) -> str | None:
    return None if value is None or value >= 1 else "must be a positive integer (or null)"
