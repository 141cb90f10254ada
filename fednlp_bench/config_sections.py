"""Two config sections whose code lives in the engine, declared here so the config validates them alone.

``continual`` (the engine's continual population, engine/server/populations.py)
and ``client_eval_params`` (per-client evaluation, engine/eval/client_eval.py)
are parsed into small frozen specs from :class:`~fednlp_bench.registry.Param`
declarations: the engine builds its runtime objects from these specs, and
``config.py`` checks a config without importing the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from fednlp_bench.checks import at_least
from fednlp_bench.registry import REQUIRED, Param, declare, resolve_params

# ---------------------------------------------------------------- continual
CONTINUAL_PARAMS = declare(
    Param("periods", int, REQUIRED, at_least(1), "periods T the run's data arrives in"),
    Param("retention", int, REQUIRED, at_least(1), "periods W a row stays on its client after it arrives"),
    Param("rounds_per_period", int, REQUIRED, at_least(1), "rounds R run in each period"),
    Param("order_by", str, None, help="data column whose order is the arrival order (default: a time column, "
          "else a seeded order)"),
    Param("order_within", str, None, help="rank order_by within each value of this column first"),
)


@dataclass(frozen=True)
class ContinualSpec:
    """``continual: {periods: T, retention: W, rounds_per_period: R, order_by: COLUMN, order_within: COLUMN}``.

    ``order_by`` names the data column whose order is the arrival order;
    ``order_within`` ranks it within each value of another column first, for
    counters that are only comparable inside a group (20News article numbers
    count per newsgroup: docs/trust.md). Retention W is counted in periods.
    """

    periods: int
    retention: int
    rounds_per_period: int
    order_by: str | None = None
    order_within: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ContinualSpec":
        if not isinstance(data, Mapping):
            raise ValueError(f"continual must be a mapping such as {{periods: 4, retention: 2, rounds_per_period: 2}}, got {data!r}")
        if "time_column" in data:
            raise ValueError("continual.time_column is now continual.order_by (the column whose order is the arrival order)")
        spec = cls(**resolve_params(CONTINUAL_PARAMS, data, owner="continual", prefix="continual."))
        if spec.retention > spec.periods:
            raise ValueError(
                f"continual.retention={spec.retention} exceeds continual.periods={spec.periods}: data cannot be "
                f"kept for more periods than exist; set retention <= periods (retention = periods keeps everything)"
            )
        if spec.order_within is not None and spec.order_by is None:
            raise ValueError("continual.order_within ranks the order_by column within groups; set order_by too")
        return spec

    @property
    def total_rounds(self) -> int:
        return self.periods * self.rounds_per_period

    def period_of_round(self, rnd: int) -> int:
        """1-based period of 1-based round ``rnd``."""
        return (int(rnd) - 1) // self.rounds_per_period + 1

    def is_period_end(self, rnd: int) -> bool:
        return int(rnd) % self.rounds_per_period == 0


# ---------------------------------------------------------------- client_eval_params
#: One local-train and one local-test row (the hold-out source).
MIN_CLIENT_SIZE = 2
#: Minimum units of a local set: the protocol's 20 for sets drawn from test; 1 keeps the hold-out's old meaning.
DEFAULT_MIN_UNITS = {"holdout": 1, "test": 20}
CLIENT_EVAL_PARAMS = declare(
    Param("source", str, "holdout", help="holdout: 20% of each client's rows; test: rows drawn from the test split "
          "with the client's mixture", choices=("holdout", "test")),
    Param("rows", int, 100, at_least(1), "local test rows per client drawn from the test split (source: test)"),
    Param("min_units", int, None, at_least(1), "units a local set needs for its client to count (default: 1 for "
          "holdout, 20 for test)"),
)


@dataclass(frozen=True)
class ClientEvalParams:
    source: str = "holdout"
    rows: int = 100
    min_units: int = 1

    @classmethod
    def from_dict(cls, value: Any) -> "ClientEvalParams":
        """Parse ``client_eval_params`` (e.g. ``{source: test, rows: 100, min_units: 20}``); bad values are named."""
        if not isinstance(value, dict):
            raise ValueError(f"client_eval_params must be a mapping such as {{source: test, rows: 100, "
                             f"min_units: 20}}, got {value!r}")
        out = resolve_params(CLIENT_EVAL_PARAMS, value, owner="client_eval_params", prefix="client_eval_params.")
        if out["min_units"] is None:
            out["min_units"] = DEFAULT_MIN_UNITS[out["source"]]
        if out["source"] == "holdout" and "rows" in value:
            raise ValueError("client_eval_params.rows applies to source: test only (the hold-out is 20% of each "
                             "client's rows)")
        return cls(**out)
