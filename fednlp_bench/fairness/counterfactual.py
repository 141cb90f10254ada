"""Counterfactual fairness of a text classifier: does the prediction change when gendered words are swapped?

Garg et al. (2019, "Counterfactual Fairness in Text Classification through
Robustness") measure how a classifier's output moves when identity words in an
input are replaced by their counterparts. Here the final global model scores
each evaluation row that contains at least one word of a declared list
(``fairness/word_lists/``) twice, as written and with every listed word swapped
(she <-> he, ...), and the record keeps the share of those rows whose predicted
class flips and the mean change of the true class's probability; per client
too when ``client_eval`` gives each client its own local test rows (the
per-client group; a client's flip rate is over its local test rows that the
swap changed). Rows without a listed word cannot change and are counted but
not scored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from fednlp_bench.fairness.wordlists import SwapList
from fednlp_bench.tasks.base import evaluating


@dataclass
class CounterfactualSet:
    """The rows of one split that a swap changes, as written and swapped (features), and where they came from."""

    rows: np.ndarray  # indices into the source split, sorted
    original: Any  # features of those rows as written
    swapped: Any  # features of the same rows, words swapped
    words_swapped: int
    source_rows: int

    def positions(self, rows: Sequence[int]) -> np.ndarray:
        """Positions in this set of those of ``rows`` (source indices) that the swap changed."""
        wanted = np.asarray(rows, dtype=np.int64)
        return np.flatnonzero(np.isin(self.rows, wanted))


def build_counterfactual_set(task: Any, raw: Any, swaps: SwapList) -> CounterfactualSet:
    """Swap the words of every row of ``raw``; keep (and preprocess) the rows that changed.

    Built over a whole split, independent of the partition, so its features
    (and a frozen-bottom cache of them) serve every run on that split.
    """
    changed, swapped_text, words = [], [], 0
    for row, text in enumerate(raw["text"]):
        new, count = swaps.swap(text)
        if count:
            changed.append(row)
            swapped_text.append(new)
            words += count
    subset = raw.select(changed)
    swapped = subset.remove_columns("text").add_column("text", swapped_text)
    return CounterfactualSet(
        rows=np.asarray(changed, dtype=np.int64),
        original=task.preprocess(subset, train=False),
        swapped=task.preprocess(swapped, train=False),
        words_swapped=words,
        source_rows=len(raw),
    )


@torch.no_grad()
def class_probabilities(task: Any, model: torch.nn.Module, features: Any, batch_size: int) -> np.ndarray:
    """Softmax of the model's logits for every feature row, in order: shape (rows, classes)."""
    device = next(model.parameters()).device
    out: list[np.ndarray] = []
    with evaluating(model):
        for _, batch in task.iter_batches(features, batch_size):
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            out.append(torch.softmax(model(**batch).logits.float(), dim=-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def flip_statistics(p_original: np.ndarray, p_swapped: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Flip count and rate, and the change of the true class's probability (swapped minus original)."""
    n = int(len(labels))
    if n == 0:
        return {"rows": 0, "flips": 0, "flip_rate": None, "flip_rate_ci95": None, "delta_true_prob_mean": None,
                "delta_true_prob_std": None, "abs_delta_true_prob_mean": None}
    flips = int((p_original.argmax(1) != p_swapped.argmax(1)).sum())
    idx = np.arange(n)
    delta = p_swapped[idx, labels] - p_original[idx, labels]
    return {
        "rows": n,
        "flips": flips,
        "flip_rate": flips / n,
        "flip_rate_ci95": list(wilson_interval(flips, n)),
        "delta_true_prob_mean": float(delta.mean()),
        "delta_true_prob_std": float(delta.std(ddof=1)) if n > 1 else None,
        "abs_delta_true_prob_mean": float(np.abs(delta).mean()),
        "accuracy_original": float((p_original.argmax(1) == labels).mean()),
        "accuracy_swapped": float((p_swapped.argmax(1) == labels).mean()),
    }


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion (sensible at 0 and n, unlike the normal one)."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def set_probabilities(task: Any, model: torch.nn.Module, cset: CounterfactualSet, positions: np.ndarray,
                      batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probabilities as written, swapped, true labels) of the set's rows at ``positions``."""
    idx = [int(i) for i in positions]
    original, swapped = cset.original.select(idx), cset.swapped.select(idx)
    labels = np.asarray(original["labels"], dtype=np.int64)
    if not idx:
        return np.zeros((0, 1)), np.zeros((0, 1)), labels
    return (class_probabilities(task, model, original, batch_size),
            class_probabilities(task, model, swapped, batch_size), labels)


def counterfactual_report(task: Any, model: torch.nn.Module, swaps: SwapList, test_set: CounterfactualSet,
                          batch_size: int, client_set: CounterfactualSet | None = None,
                          client_test_rows: Sequence[np.ndarray] | None = None,
                          client_source: str = "client_eval local test rows") -> dict[str, Any]:
    """The record's ``fairness.counterfactual``: the test split's flip statistics, and per client when given.

    ``client_test_rows`` index the split ``client_set`` was built from: the training split for a hold-out, the
    test split when each client's local set is drawn from test with its mixture (the cpu tier's setting).
    """
    p0, p1, y = set_probabilities(task, model, test_set, np.arange(len(test_set.rows)), batch_size)
    stats = flip_statistics(p0, p1, y)
    report: dict[str, Any] = {
        "word_list": swaps.name, "word_list_sha256": swaps.sha256, "pairs": swaps.pairs,
        "split": "test", "split_rows": test_set.source_rows, "changed_rows": int(len(test_set.rows)),
        "words_swapped": test_set.words_swapped,
        **{k: v for k, v in stats.items() if k != "rows"},
        "flip_rate_all_rows": stats["flips"] / max(test_set.source_rows, 1),
        "clients": None,
    }
    if client_set is not None and client_test_rows is not None:
        per_client = []
        for cid, rows in enumerate(client_test_rows):
            pos = client_set.positions(rows)
            c0, c1, cy = set_probabilities(task, model, client_set, pos, batch_size)
            s = flip_statistics(c0, c1, cy)
            per_client.append({"client": cid, "test_rows": int(len(rows)), "changed_rows": s["rows"], "flips": s["flips"],
                               "flip_rate": s["flip_rate"], "delta_true_prob_mean": s["delta_true_prob_mean"]})
        report["clients"] = {"source": client_source, "summary": summarize_clients(per_client),
                             "per_client": per_client}
    return report


def summarize_clients(per_client: list[dict[str, Any]]) -> dict[str, Any]:
    """Over clients with at least one changed row: mean, max and worst-10% (highest) flip rate."""
    rates = sorted((c["flip_rate"] for c in per_client if c["flip_rate"] is not None), reverse=True)
    if not rates:
        return {"clients": 0, "mean_flip_rate": None, "max_flip_rate": None, "worst_10pct_flip_rate": None}
    k = max(1, math.ceil(len(rates) / 10))
    return {"clients": len(rates), "mean_flip_rate": float(np.mean(rates)), "max_flip_rate": float(rates[0]),
            "worst_10pct_flip_rate": float(np.mean(rates[:k])), "tail_clients": k}
