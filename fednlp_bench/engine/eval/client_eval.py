"""Per-client evaluation: how the global model serves each client, not just the average one.

A global model that is good on average can fail its smallest or most unusual
clients (LEAF reports per-client accuracy distributions for this reason).
With ``client_eval: true`` the final model is evaluated on every client's
local test rows, which come from one of two sources
(``client_eval_params.source``):

- ``holdout`` (the default, what records before protocol v2 used): each
  client's rows are split once, deterministically from the partition seed,
  into local train (used for FL) and local test (20%, never trained on);
- ``test`` (protocol v2): clients train on all their rows, and each gets
  ``rows`` rows of the test split drawn with its own mixture (local_test.py).

A client counts only when its local set holds at least ``min_units`` units:
examples, or the task's own unit (gold entities for tagging; declared by the
task as ``evaluation_unit``). The record keeps each client's metric (qualified
clients only: the others are not evaluated), how many qualified, and a
summary over the qualified ones: mean, std, worst/best 10%, a bootstrap
interval of the worst 10% (clients resampled) and the correlation with
client size.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from fednlp_bench.config_sections import MIN_CLIENT_SIZE, ClientEvalParams
from fednlp_bench.results.client_stats import bootstrap_worst

#: Share of each client's rows held out as its local test set (at least one row).
TEST_FRACTION = 0.2
_SPLIT_STREAM = 6



@dataclass
class ClientSplit:
    train: list[np.ndarray]
    test: list[np.ndarray]
    seed: int

    @property
    def num_clients(self) -> int:
        return len(self.train)

    def describe(self) -> dict[str, Any]:
        test = {str(c): t.tolist() for c, t in enumerate(self.test)}
        return {
            "test_fraction": TEST_FRACTION,
            "seed": self.seed,
            "test_rows": test,
            "test_rows_hash": hashlib.sha256(json.dumps(test, sort_keys=True).encode()).hexdigest(),
        }


def split_clients(client_rows: Sequence[np.ndarray], seed: int) -> ClientSplit:
    """Split every client's rows into local train/test; a client below MIN_CLIENT_SIZE rows is an error."""
    small = [(c, len(r)) for c, r in enumerate(client_rows) if len(r) < MIN_CLIENT_SIZE]
    if small:
        shown = ", ".join(f"client {c} holds {n}" for c, n in small[:5])
        raise ValueError(
            f"client_eval needs every client to hold at least {MIN_CLIENT_SIZE} rows (one to train, one to test); "
            f"{shown}{' ...' if len(small) > 5 else ''}. Raise partition.min_size to {MIN_CLIENT_SIZE} or more, "
            f"or turn client_eval off"
        )
    train, test = [], []
    for cid, rows in enumerate(client_rows):
        rows = np.asarray(rows, dtype=np.int64)
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), _SPLIT_STREAM, cid]))
        perm = rng.permutation(len(rows))
        n_test = max(1, int(math.floor(TEST_FRACTION * len(rows))))
        test.append(np.sort(rows[perm[:n_test]]))
        train.append(np.sort(rows[perm[n_test:]]))
    return ClientSplit(train, test, int(seed))


def summarize(values: Sequence[float], sizes: Sequence[int]) -> dict[str, Any]:
    """mean, std (ddof=1), worst/best 10% (mean of the lowest/highest ceil(N/10) clients) with a bootstrap
    interval of the worst 10%, and Pearson r with size, over the qualified clients' values."""
    vals = np.asarray(values, dtype=np.float64)
    if len(vals) == 0:
        raise ValueError("no client metrics to summarize")
    k = max(1, math.ceil(len(vals) / 10))
    ordered = np.sort(vals)
    size_arr = np.asarray(sizes, dtype=np.float64)
    corr: float | None = None
    if len(vals) >= 2 and np.std(size_arr) > 0 and np.std(vals) > 0:
        corr = float(np.corrcoef(size_arr, vals)[0, 1])
    interval = bootstrap_worst([vals])
    return {
        "mean": float(vals.mean()),
        "std": float(statistics.stdev(vals.tolist())) if len(vals) >= 2 else None,
        "worst_10pct": float(ordered[:k].mean()),
        "worst_10pct_ci": None if interval is None else [interval[0], interval[1]],
        "best_10pct": float(ordered[-k:].mean()),
        "tail_clients": k,
        #: None when sizes or metrics are all equal (the correlation is undefined).
        "size_correlation": corr,
    }


def evaluate_clients(task: Any, model: Any, raw_split: Any, sets: Sequence[np.ndarray], sizes: Sequence[int],
                     batch_size: int, params: ClientEvalParams, described: dict[str, Any]) -> dict[str, Any]:
    """The global model's metrics on every qualifying client's local rows of ``raw_split``, and their summary."""
    unit = str(getattr(task, "evaluation_unit", "examples"))
    per_client = []
    for cid, rows in enumerate(sets):
        raw = raw_split.select(rows.tolist())
        units = int(sum(task.evaluation_units(raw))) if hasattr(task, "evaluation_units") else len(rows)
        entry: dict[str, Any] = {"client": cid, "train_size": int(sizes[cid]), "test_size": int(len(rows)),
                                 "units": units, "qualified": units >= params.min_units}
        if entry["qualified"]:
            metrics = task.evaluate(model, raw, task.preprocess(raw, train=False), batch_size=batch_size)
            value = float(metrics[task.primary_metric])
            if not math.isfinite(value):
                raise ValueError(f"client {cid}: {task.primary_metric} is {value} on its local test rows")
            entry[task.primary_metric] = value
        per_client.append(entry)
    qualified = [c for c in per_client if c["qualified"]]
    summary: dict[str, Any] = {"clients": len(per_client), "qualified": len(qualified), "min_units": params.min_units,
                               "unit": unit, "worst_10pct": None}
    if qualified:
        summary.update(summarize([c[task.primary_metric] for c in qualified], [c["train_size"] for c in qualified]))
    return {"metric": task.primary_metric, "summary": summary, "clients": per_client, "split": described}
