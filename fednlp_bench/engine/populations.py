"""Who is in the population each round: activity-based client selection and the continual setting.

Two questions from industrial FL ("Learnings from Federated Learning in the
Real World", ICASSP 2022) that no NLP FL benchmark answered:

* Does choosing clients by *activity* (how much data they hold) beat uniform
  selection? ``select_clients`` offers ``uniform``, ``weighted`` (probability
  proportional to size), ``activity_power`` (proportional to size**p; p=0 is
  uniform, p=1 is weighted), ``top_active`` (the K largest clients) and
  ``poisson`` (each client joins independently with q = K / N, the sampling
  client-level DP accounting assumes).
* How does FL behave when clients keep generating data and delete old data?
  ``ContinualPopulation`` spreads each client's rows over T periods (by a time
  column when the data has one, else by a seeded, recorded arrival order),
  keeps only the last W periods, and runs R rounds per period.

Every draw is seeded by ``(seed, round)`` like ``engine.sampling``, so a
resumed run sees the same clients.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from fednlp_bench.hints import closest_hint
from fednlp_bench.engine.sampling import _SAMPLE_STREAM, round_rng, sample_clients

log = logging.getLogger("fednlp_bench.engine")

#: Parameters (with defaults) of the sampling methods that take any; the names themselves are
#: ``config.SAMPLING_METHODS``, checked there.
SAMPLING_PARAMS: dict[str, dict[str, float]] = {"activity_power": {"power": 1.0}}
#: Column names taken as the arrival time of a row when the data has one.
TIME_COLUMNS = ("timestamp", "time", "date", "created_at", "created_utc")
_ARRIVAL_STREAM = 5


def check_sampling(method: str, params: Mapping[str, Any]) -> dict[str, float]:
    """Validated parameters of a sampling method (defaults filled in)."""
    if not isinstance(params, Mapping):
        raise ValueError(f"sampling_params must be a mapping such as {{power: 0.5}}, got {params!r}")
    allowed = SAMPLING_PARAMS.get(method, {})
    for key in params:
        if key not in allowed:
            raise ValueError(
                f"sampling {method!r} takes no parameter {key!r}; "
                f"its parameters: {sorted(allowed) or 'none'} (activity_power takes 'power')"
            )
    merged = {**allowed, **dict(params)}
    if method == "activity_power":
        power = merged["power"]
        if isinstance(power, bool) or not isinstance(power, (int, float)) or not np.isfinite(power) or power < 0:
            raise ValueError(f"sampling_params.power={power!r} must be a finite number >= 0 (0: uniform, 1: weighted)")
        merged["power"] = float(power)
    return merged


def select_clients(
    method: str,
    params: Mapping[str, Any],
    num_clients: int,
    k: int,
    rnd: int,
    seed: int,
    sizes: np.ndarray,
) -> list[int]:
    """Sorted client ids for round ``rnd``; only clients holding data (size > 0) are eligible.

    ``k`` is the number of clients per round (its expectation for ``poisson``).
    When fewer than ``k`` clients hold data (a continual period), all of them
    take part. ``uniform`` and ``weighted`` over a full population give exactly
    the draws of ``engine.sampling.sample_clients``.
    """
    params = check_sampling(method, params)
    sizes = np.asarray(sizes, dtype=np.float64)
    if len(sizes) != num_clients:
        raise ValueError(f"need one size per client ({num_clients}), got {len(sizes)}")
    eligible = np.flatnonzero(sizes > 0)
    if method == "poisson":
        q = k / num_clients
        joins = round_rng(seed, rnd, _SAMPLE_STREAM).random(num_clients) < q
        return [int(c) for c in np.flatnonzero(joins & (sizes > 0))]
    if len(eligible) == num_clients and method in ("uniform", "weighted"):
        return sample_clients(num_clients, k, rnd, seed, method, sizes)
    if len(eligible) <= k:
        if len(eligible) < k:
            log.info("round %d: only %d client(s) hold data; all of them take part", rnd, len(eligible))
        return [int(c) for c in eligible]
    if method == "top_active":
        # Largest first, ties broken by the lower id, so the choice is deterministic.
        order = sorted(eligible.tolist(), key=lambda c: (-sizes[c], c))
        return sorted(int(c) for c in order[:k])
    powers = {"uniform": 0.0, "weighted": 1.0, "activity_power": params.get("power", 1.0)}
    if method not in powers:
        raise ValueError(f"unknown sampling method {method!r}")
    weights = powers[method]
    p = sizes[eligible] ** weights
    chosen = round_rng(seed, rnd, _SAMPLE_STREAM).choice(eligible, size=k, replace=False, p=p / p.sum())
    return sorted(int(c) for c in chosen)


# ---------------------------------------------------------------- continual
@dataclass(frozen=True)
class ContinualSpec:
    """``continual: {periods: T, retention: W, rounds_per_period: R, time_column: optional}``."""

    periods: int
    retention: int
    rounds_per_period: int
    time_column: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ContinualSpec":
        keys = ("periods", "retention", "rounds_per_period", "time_column")
        if not isinstance(data, Mapping):
            raise ValueError(f"continual must be a mapping such as {{periods: 4, retention: 2, rounds_per_period: 2}}, got {data!r}")
        for key in data:
            if key not in keys:
                raise ValueError(f"unknown continual key {key!r}.{closest_hint(key, keys)} Valid keys: {', '.join(keys)}")
        for key in keys[:3]:
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"continual.{key}={value!r} must be an integer >= 1")
        if data["retention"] > data["periods"]:
            raise ValueError(
                f"continual.retention={data['retention']} exceeds continual.periods={data['periods']}: data cannot be "
                f"kept for more periods than exist; set retention <= periods (retention = periods keeps everything)"
            )
        col = data.get("time_column")
        if col is not None and (not isinstance(col, str) or not col):
            raise ValueError(f"continual.time_column={col!r} must be a column name")
        return cls(int(data["periods"]), int(data["retention"]), int(data["rounds_per_period"]), col)

    @property
    def total_rounds(self) -> int:
        return self.periods * self.rounds_per_period

    def period_of_round(self, rnd: int) -> int:
        """1-based period of 1-based round ``rnd``."""
        return (int(rnd) - 1) // self.rounds_per_period + 1

    def is_period_end(self, rnd: int) -> bool:
        return int(rnd) % self.rounds_per_period == 0


class ContinualPopulation:
    """Each client's rows with their arrival period; ``indices(c, t)`` is what client c holds in period t."""

    def __init__(
        self,
        spec: ContinualSpec,
        client_rows: Sequence[np.ndarray],
        seed: int,
        times: np.ndarray | None = None,
        time_column: str | None = None,
    ) -> None:
        self.spec = spec
        self.seed = int(seed)
        self.rows = [np.asarray(r, dtype=np.int64) for r in client_rows]
        self.time_column = time_column if times is not None else None
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
            "arrival_source": f"time column {self.time_column!r}" if self.time_column else "seeded order",
            "arrival_seed": None if self.time_column else self.seed,
            "arrival_hash": hashlib.sha256(json.dumps(order, sort_keys=True).encode()).hexdigest(),
            #: client -> [rows arriving in period 1, period 2, ...] (raw train-split row indices).
            "arrival": order,
        }


def find_time_column(column_names: Sequence[str], requested: str | None) -> str | None:
    """The arrival-time column: the requested one (must exist), else a conventional name, else None."""
    if requested is not None:
        if requested not in column_names:
            raise ValueError(
                f"continual.time_column={requested!r} is not a column of the training data "
                f"(columns: {list(column_names)}); drop it to use a seeded arrival order"
            )
        return requested
    for name in TIME_COLUMNS:
        if name in column_names:
            return name
    return None


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
