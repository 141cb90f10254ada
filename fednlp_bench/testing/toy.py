"""Test fixture: a synthetic task and partition for engine tests, benchmarks and the custom-algorithm docs.

The engine only talks to tasks through :class:`~fednlp_bench.tasks.base.Task`
and to partitions through ``num_clients / indices / sizes / spec /
content_hash``. These tiny stand-ins (Gaussian features, a linear or one-layer
model, contiguous client blocks) make exact-math tests run in milliseconds and
without any dataset on disk. Never use them for reported numbers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from datasets import Dataset, DatasetDict

from fednlp_bench.tasks.base import Task


class ToyModel(torch.nn.Module):
    """Linear classifier (``hidden=0``) or one ReLU layer; ``forward`` returns ``.loss`` and ``.logits``."""

    def __init__(self, dim: int, classes: int, hidden: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        if hidden:
            self.net: torch.nn.Module = torch.nn.Sequential(
                torch.nn.Linear(dim, hidden), torch.nn.ReLU(), torch.nn.Dropout(dropout), torch.nn.Linear(hidden, classes)
            )
        else:
            self.net = torch.nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> SimpleNamespace:
        logits = self.net(x)
        loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SimpleNamespace(loss=loss, logits=logits, labels=labels)


class ToyTask(Task):
    """Gaussian features, labels from a fixed random linear map (learnable, so accuracy moves)."""

    name = "toy"
    primary_metric = "accuracy"
    hub_default = ""
    local_default = ""

    def __init__(
        self,
        n_train: int = 60,
        n_test: int = 40,
        n_val: int = 40,
        dim: int = 6,
        classes: int = 3,
        hidden: int = 0,
        dropout: float = 0.0,
        nan_rows: Sequence[int] = (),
        data_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("model", "toy")
        super().__init__(**kwargs)
        self.n_train, self.n_test, self.dim, self.classes = n_train, n_test, dim, classes
        self.n_val = n_val
        self.hidden, self.dropout = hidden, dropout
        self.nan_rows = list(nan_rows)
        self.data_seed = data_seed
        self._splits: DatasetDict | None = None

    def load(self) -> DatasetDict:
        if self._splits is None:
            rng = np.random.default_rng(self.data_seed)
            w = rng.normal(size=(self.dim, self.classes))
            splits = {}
            # validation is drawn last, so train/test are the same rows as before it existed.
            for split, n in (("train", self.n_train), ("test", self.n_test), ("validation", self.n_val)):
                x = rng.normal(size=(n, self.dim)).astype(np.float32)
                y = (x @ w + 0.3 * rng.normal(size=(n, self.classes))).argmax(1)
                if split == "train":
                    x[self.nan_rows] = np.nan
                splits[split] = Dataset.from_dict(
                    {
                        "id": [f"toy-{split}-{i}" for i in range(n)],
                        "text": [f"example {i}" for i in range(n)],
                        "partition_key": [int(v) for v in y],
                        "x": x.tolist(),
                        "label": [int(v) for v in y],
                    }
                )
            self._splits = DatasetDict({k: splits[k] for k in ("train", "validation", "test")})
        return self._splits

    @property
    def tokenizer(self) -> Any:
        return None

    def preprocess(self, split: Dataset, train: bool) -> Dataset:
        return Dataset.from_dict(
            {"x": split["x"][:], "labels": split["label"][:], "example_index": list(range(len(split)))}
        )

    def collate(self, features: list[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        return {
            "x": torch.tensor([f["x"] for f in features], dtype=torch.float32),
            "labels": torch.tensor([f["labels"] for f in features], dtype=torch.long),
        }

    def build_model(self) -> torch.nn.Module:
        return ToyModel(self.dim, self.classes, self.hidden, self.dropout)

    def eval_start(self, raw: Dataset, features: Dataset) -> dict[str, Any]:
        return {"correct": 0}

    def eval_accumulate(self, acc: dict[str, Any], rows: range, out: Any) -> None:
        acc["correct"] += int((out.logits.argmax(-1) == out.labels).sum())

    def eval_finish(self, acc: dict[str, Any], model: torch.nn.Module, raw: Dataset, features: Dataset,
                    batch_size: int) -> dict[str, float]:
        return {"accuracy": acc["correct"] / max(len(features), 1)}


@dataclass
class ToySpec:
    scheme: str
    num_clients: int
    seed: int
    min_size: int
    params: dict[str, Any] = field(default_factory=dict)
    num_rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "num_clients": self.num_clients,
            "seed": self.seed,
            "min_size": self.min_size,
            "params": dict(self.params),
            "fingerprint": "toy",
            "num_rows": self.num_rows,
        }


class ToyPartition:
    """Contiguous blocks of rows; scheme ``quantity_skew`` makes client c's block (c+1) times bigger.

    (A real scheme name, so the config's up-front scheme validation accepts it; the toy ignores its params.)
    """

    def __init__(self, num_rows: int, spec: Mapping[str, Any]) -> None:
        n_clients = int(spec["num_clients"])
        skew = spec.get("scheme") == "quantity_skew"
        weights = np.arange(1, n_clients + 1, dtype=np.float64) if skew else np.ones(n_clients)
        bounds = np.round(np.concatenate([[0], np.cumsum(weights)]) / weights.sum() * num_rows).astype(np.int64)
        if np.any(np.diff(bounds) < max(1, int(spec.get("min_size", 1)))):
            raise ValueError(f"{num_rows} rows are too few for {n_clients} toy clients")
        self._blocks = [np.arange(bounds[c], bounds[c + 1], dtype=np.int64) for c in range(n_clients)]
        self.num_clients = n_clients
        self.spec = ToySpec(
            scheme=str(spec["scheme"]), num_clients=n_clients, seed=int(spec.get("seed", 0)),
            min_size=int(spec.get("min_size", 1)), params=dict(spec.get("params") or {}), num_rows=num_rows,
        )
        self.content_hash = hashlib.sha256(
            json.dumps([b.tolist() for b in self._blocks]).encode()
        ).hexdigest()

    def indices(self, cid: int) -> np.ndarray:
        return self._blocks[cid]

    def sizes(self) -> np.ndarray:
        return np.array([len(b) for b in self._blocks], dtype=np.int64)


def toy_partition(train: Any, spec: Mapping[str, Any]) -> ToyPartition:
    """Drop-in for ``runner.build_partition`` (monkeypatch it in tests)."""
    return ToyPartition(len(train), spec)
