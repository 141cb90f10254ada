"""Per-client evaluation: how the global model serves each client, not just the average one.

A global model that is good on average can fail its smallest or most unusual
clients (LEAF reports per-client accuracy distributions for this reason). With
``client_eval: true`` each client's rows are split once, deterministically
from the partition seed, into local train (used for FL) and local test (never
trained on); after the last round the global model is evaluated on every
client's local test rows, and the record keeps each client's metric and a
summary: mean, std, worst/best 10% and the correlation with client size.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

#: Share of each client's rows held out as its local test set (at least one row).
TEST_FRACTION = 0.2
#: One local-train and one local-test row.
MIN_CLIENT_SIZE = 2
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
    """mean, std (ddof=1), worst/best 10% (mean of the lowest/highest ceil(N/10) clients), Pearson r with size."""
    vals = np.asarray(values, dtype=np.float64)
    if len(vals) == 0:
        raise ValueError("no client metrics to summarize")
    k = max(1, math.ceil(len(vals) / 10))
    ordered = np.sort(vals)
    size_arr = np.asarray(sizes, dtype=np.float64)
    corr: float | None = None
    if len(vals) >= 2 and np.std(size_arr) > 0 and np.std(vals) > 0:
        corr = float(np.corrcoef(size_arr, vals)[0, 1])
    return {
        "clients": int(len(vals)),
        "mean": float(vals.mean()),
        "std": float(statistics.stdev(vals.tolist())) if len(vals) >= 2 else None,
        "worst_10pct": float(ordered[:k].mean()),
        "best_10pct": float(ordered[-k:].mean()),
        "tail_clients": k,
        #: None when sizes or metrics are all equal (the correlation is undefined).
        "size_correlation": corr,
    }


def evaluate_clients(task: Any, model: Any, train_raw: Any, split: ClientSplit, sizes: Sequence[int],
                     batch_size: int) -> dict[str, Any]:
    """The global model's metrics on every client's local test rows, and the summary of the primary one."""
    per_client = []
    for cid, rows in enumerate(split.test):
        raw = train_raw.select(rows.tolist())
        features = task.preprocess(raw, train=False)
        metrics = task.evaluate(model, raw, features, batch_size=batch_size)
        value = float(metrics[task.primary_metric])
        if not math.isfinite(value):
            raise ValueError(f"client {cid}: {task.primary_metric} is {value} on its local test rows")
        per_client.append({"client": cid, "train_size": int(sizes[cid]), "test_size": int(len(rows)),
                           task.primary_metric: value})
    summary = summarize([c[task.primary_metric] for c in per_client], [c["train_size"] for c in per_client])
    return {"metric": task.primary_metric, "summary": summary, "clients": per_client, "split": split.describe()}
