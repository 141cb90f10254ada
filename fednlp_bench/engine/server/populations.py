"""Who is in the population each round: client selection and the continual setting.

Two questions from industrial FL ("Learnings from Federated Learning in the
Real World", ICASSP 2022) that no NLP FL benchmark answered:

* Does choosing clients by *activity* (how much data they hold) beat uniform
  selection? The policies live in ``sampling/policies.py`` (uniform,
  the exact-inclusion ``activity_poisson`` / ``activity_systematic``,
  ``top_active``, ``poisson`` and the historical successive-draw ones);
  ``select_clients`` applies one to the sizes clients hold this round.
* How does FL behave when clients keep generating data and delete old data?
  ``ContinualPopulation`` spreads each client's rows over T periods (in the
  order of a data column when the config names one, ``order_by``, else a
  conventional time column, else a seeded, recorded arrival order), keeps
  only the last W periods, and runs R rounds per period.

Every draw is seeded by ``(seed, round)`` like ``engine.sampling``, so a
resumed run sees the same clients.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Sequence

import numpy as np

from fednlp_bench.config_sections import ContinualSpec

#: Column names taken as the arrival time of a row when the config names none.
TIME_COLUMNS = ("timestamp", "time", "date", "created_at", "created_utc")
_ARRIVAL_STREAM = 5


class ContinualPopulation:
    """Each client's rows with their arrival period; ``indices(c, t)`` is what client c holds in period t.

    ``times`` (one sortable key per raw train row) gives global calendar
    periods; ``source`` says where the keys came from (for the record).
    """

    def __init__(
        self,
        spec: ContinualSpec,
        client_rows: Sequence[np.ndarray],
        seed: int,
        times: np.ndarray | None = None,
        source: str | None = None,
    ) -> None:
        self.spec = spec
        self.seed = int(seed)
        self.rows = [np.asarray(r, dtype=np.int64) for r in client_rows]
        self.source = (source or "data column") if times is not None else None
        if times is not None:
            self.arrival = _arrival_by_time(self.rows, np.asarray(times), spec.periods)
        else:
            self.arrival = _arrival_by_seeded_order(self.rows, spec.periods, self.seed)

    @property
    def num_clients(self) -> int:
        return len(self.rows)

    def indices(self, cid: int, period: int) -> np.ndarray:
        if not 1 <= period <= self.spec.periods:
            raise ValueError(f"period {period} is outside 1..{self.spec.periods}")
        arrived = self.arrival[cid]
        keep = (arrived <= period) & (arrived > period - self.spec.retention)
        return np.sort(self.rows[cid][keep])

    def sizes(self, period: int) -> np.ndarray:
        return np.array([len(self.indices(c, period)) for c in range(self.num_clients)], dtype=np.int64)

    def describe(self) -> dict[str, Any]:
        """What the record keeps: how rows arrived (source, seed, per-client arrival lists) and its hash."""
        order = {
            str(c): [self.rows[c][self.arrival[c] == t].tolist() for t in range(1, self.spec.periods + 1)]
            for c in range(self.num_clients)
        }
        return {
            "periods": self.spec.periods,
            "retention": self.spec.retention,
            "rounds_per_period": self.spec.rounds_per_period,
            "arrival_source": self.source or "seeded order",
            "arrival_seed": None if self.source else self.seed,
            "arrival_hash": hashlib.sha256(json.dumps(order, sort_keys=True).encode()).hexdigest(),
            #: client -> [rows arriving in period 1, period 2, ...] (raw train-split row indices).
            "arrival": order,
        }


def find_order_column(column_names: Sequence[str], requested: str | None) -> str | None:
    """The arrival-order column: the requested one (must exist), else a conventional time name, else None."""
    if requested is not None:
        if requested not in column_names:
            raise ValueError(
                f"continual.order_by={requested!r} is not a column of the training data "
                f"(columns: {list(column_names)}); drop it to use a seeded arrival order"
            )
        return requested
    for name in TIME_COLUMNS:
        if name in column_names:
            return name
    return None


def arrival_keys(train_raw: Any, spec: ContinualSpec) -> tuple[np.ndarray | None, str | None]:
    """(one arrival key per raw train row, its description) from the spec's columns; (None, None): seeded order."""
    column = find_order_column(train_raw.column_names, spec.order_by)
    if column is None:
        return None, None
    values = list(train_raw[column])
    if any(v is None for v in values):
        raise ValueError(f"continual.order_by column {column!r} has missing values; every row needs an arrival key")
    if spec.order_within is None:
        return np.asarray(values, dtype=object), f"column {column!r}"
    if spec.order_within not in train_raw.column_names:
        raise ValueError(f"continual.order_within={spec.order_within!r} is not a column of the training data "
                         f"(columns: {list(train_raw.column_names)})")
    return (within_group_position(values, list(train_raw[spec.order_within])),
            f"column {column!r} ranked within each {spec.order_within!r}")


def within_group_position(values: Sequence[Any], groups: Sequence[Any]) -> np.ndarray:
    """Each row's position in its group's order, (rank - 1/2) / group size in (0, 1); ties share their mean rank."""
    from scipy.stats import rankdata

    out = np.empty(len(values), dtype=np.float64)
    by_group: dict[Any, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    for members in by_group.values():
        ranks = rankdata([values[i] for i in members], method="average")
        out[members] = (ranks - 0.5) / len(members)
    return out


def _arrival_by_time(rows: Sequence[np.ndarray], times: np.ndarray, periods: int) -> list[np.ndarray]:
    """Global calendar periods: rows sorted by time over all clients, cut into T equal-count slices."""
    every = np.concatenate(rows) if rows else np.array([], dtype=np.int64)
    values = [times[i] for i in every.tolist()]
    if any(v is None for v in values):
        raise ValueError("the time column has missing values; every row needs an arrival time")
    order = np.argsort(np.asarray(values), kind="stable")
    rank = np.empty(len(every), dtype=np.int64)
    rank[order] = np.arange(len(every))
    period_of = dict(zip(every.tolist(), (rank * periods // max(len(every), 1) + 1).tolist()))
    return [np.array([period_of[int(i)] for i in r], dtype=np.int64) for r in rows]


def _arrival_by_seeded_order(rows: Sequence[np.ndarray], periods: int, seed: int) -> list[np.ndarray]:
    """Each client's rows in a seeded random order, cut into T nearly equal consecutive chunks."""
    out = []
    for cid, r in enumerate(rows):
        rng = np.random.default_rng(np.random.SeedSequence([seed, _ARRIVAL_STREAM, cid]))
        perm = rng.permutation(len(r))
        arrival = np.empty(len(r), dtype=np.int64)
        for t, chunk in enumerate(np.array_split(perm, periods), start=1):
            arrival[chunk] = t
        out.append(arrival)
    return out
