"""The per-client metric of a cell: worst 10% of the clients whose local evaluation set is large enough.

A client's metric on a handful of examples is noise (WNUT-17 clients with 13
sentences, some with 1, gave a worst-10% span F1 of exactly 0 in most
cells), so the engine marks which clients' local sets meet the declared
minimum (``client_eval_params.min_units``: examples, or gold entities for
tagging; engine/eval/client_eval.py) and only those count here. The cell
reports, over its seeds, the mean of each seed's worst-10% value with a
bootstrap interval that resamples clients within each seed
(results/client_stats.py), and how many clients qualified. Records without
the minimum (made before it existed) give no per-client figure at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from fednlp_bench.leaderboard.summary import Summary, summarize
from fednlp_bench.results.client_stats import bootstrap_worst, worst_share_mean


@dataclass(frozen=True)
class CellClients:
    """Qualifying clients' values per seed and the worst-10% figure of the cell."""

    values: tuple[tuple[float, ...], ...]
    clients: tuple[int, ...]
    unit: str
    min_units: int

    @property
    def qualified(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.values)

    @property
    def worst(self) -> Summary:
        return summarize([worst_share_mean(v) for v in self.values])

    @property
    def interval(self) -> tuple[float, float] | None:
        return bootstrap_worst(self.values)

    def qualified_text(self) -> str:
        low, high = min(self.qualified), max(self.qualified)
        share = f"{low}" if low == high else f"{low}-{high}"
        return f"{share}/{max(self.clients)} clients with ≥{self.min_units} {self.unit}"


def _record_values(record: Any) -> tuple[list[float], int, str, int] | None:
    section = record.client_eval or {}
    summary = section.get("summary") or {}
    metric = section.get("metric")
    if "min_units" not in summary or metric is None:
        return None
    values = [float(c[metric]) for c in section.get("clients") or [] if c.get("qualified")]
    return values, len(section.get("clients") or []), str(summary.get("unit", "examples")), int(summary["min_units"])


def cell_clients(records: Sequence[Any]) -> CellClients | None:
    """None unless every record has per-client results with a size minimum and at least one qualifying client."""
    found = [_record_values(r) for r in records]
    if not found or any(f is None or not f[0] for f in found):
        return None
    units = {(f[2], f[3]) for f in found if f is not None}
    if len(units) != 1:
        return None
    unit, minimum = units.pop()
    return CellClients(tuple(tuple(f[0]) for f in found if f is not None),
                       tuple(f[1] for f in found if f is not None), unit, minimum)
