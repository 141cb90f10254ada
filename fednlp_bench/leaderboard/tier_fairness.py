"""The counterfactual-fairness section of a tier task's page, from the ``fairness`` section of its records.

A tier whose task entry sets ``fairness: {counterfactual: gender}`` scores
every final model on the test rows with binary-gendered words swapped
(``fednlp_bench/fairness``), so the flip rate per algorithm and partition
comes with the tier's own seeds and tuned settings, at no extra training.
Each figure is a ``Summary`` over the cell's seeds (Student-t interval): the
share of changed test rows whose predicted class flips, the mean change of
the true class's probability, and over the clients' local sets (the
partition's client groups) the mean and the worst-10% flip rate. A cell
appears once all its runs are recorded, and only if every record has the
section.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from fednlp_bench.leaderboard.summary import summarize
from fednlp_bench.leaderboard.tier_cells import TierCell

HEADER = ["Partition", "Algorithm", "Flip rate (changed test rows)", "Δ P(true class), swapped − original",
          "Mean client flip rate", "Worst-10% clients' flip rate", "Clients with a changed row"]


def _sections(cell: TierCell) -> list[dict[str, Any]] | None:
    if not cell.complete or not cell.records:
        return None
    found = [(item.record.fairness or {}).get("counterfactual") for item in cell.records]
    return None if any(f is None for f in found) else found  # type: ignore[return-value]


def _over_seeds(sections: Sequence[dict[str, Any]], value: Callable[[dict[str, Any]], Any], digits: int = 4) -> str:
    values = [value(s) for s in sections]
    return "—" if any(v is None for v in values) else summarize([float(v) for v in values]).text(digits)


def _client(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda s: ((s.get("clients") or {}).get("summary") or {}).get(key)


def fairness_markdown(cells: Sequence[TierCell], label: Callable[[TierCell], tuple[str, str]]) -> list[str]:
    """The section's lines (none when no cell has fairness records); ``label``: a cell's (partition, algorithm)."""
    rows = []
    for cell in cells:
        sections = _sections(cell)
        if sections is None:
            continue
        first = sections[0]
        clients = _client("clients")(first)
        rows.append([*label(cell), _over_seeds(sections, lambda s: s["flip_rate"]),
                     _over_seeds(sections, lambda s: s["delta_true_prob_mean"]),
                     _over_seeds(sections, _client("mean_flip_rate")),
                     _over_seeds(sections, _client("worst_10pct_flip_rate")),
                     "—" if clients is None else f"{clients} of {len(first['clients']['per_client'])}"])
    if not rows:
        return []
    first = _sections(next(c for c in cells if _sections(c) is not None))[0]  # type: ignore[index]
    return ["## Counterfactual fairness (final models)", "",
            f"Word list `{first['word_list']}` ({first['pairs']} pairs, sha256 {first['word_list_sha256'][:12]}…): "
            f"{first['changed_rows']:,} of {first['split_rows']:,} test rows hold a listed word and are scored as "
            "written and swapped. Mean ± std over seeds, 95% t interval. Client columns: over each client's local set "
            f"({(first.get('clients') or {}).get('source', 'no client_eval')}), clients with at least one changed "
            "row; worst 10%: the mean of the highest tenth of client flip rates. The final model of every run "
            "(the converged centralized cell's test figure is at its best validation round; this one is not).", "",
            "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER),
            *("| " + " | ".join(row) + " |" for row in rows), ""]
