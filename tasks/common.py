"""Machinery every built-in task shares: loading once, subsetting, cached tokenization, padding, eval mode.

Kept out of ``base.py`` so the ABC stays the small contract the engine sees;
a new task may use this helper class or implement :class:`Task` directly.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence

import numpy as np
import torch
from datasets import Dataset, DatasetDict

from fednlp_bench.paths import cache_dir
from fednlp_bench.tasks.base import Task, evaluating, model_device  # noqa: F401  (re-exported for tasks)
from fednlp_bench.tasks.models import load_tokenizer
from fednlp_bench.tasks.sources import RawSplits

log = logging.getLogger(__name__)

#: Columns that ``preprocess`` keeps for evaluation but the model must not see.
BOOKKEEPING = ("example_index", "word_index", "offset_mapping")
#: Bumped when a preprocessing function changes, so stale cache files are not reused.
PREPROCESS_VERSION = 1


def subset_indices(n: int, k: int | None, seed: int) -> list[int] | None:
    """A seeded random ``k`` of ``n`` rows, returned in their original order (``None``: keep all).

    Random rather than first-N because the local files are sorted by class
    (20News) and the first N rows would hold one newsgroup.
    """
    if k is None or k >= n:
        return None
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.permutation(n)[:k])


class HFTask(Task):
    """A :class:`Task` whose data loads once into a :class:`DatasetDict` and whose model is from transformers."""

    #: One line for ``fednlp-bench datasets``: what ``partition_key`` means for this task.
    partition_key_meaning: ClassVar[str] = "none (-1)"
    #: Extensions of local files this task reads, in preference order.
    local_formats: ClassVar[tuple[str, ...]] = ("jsonl",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._splits: DatasetDict | None = None
        self.source: str | None = None
        #: Rows skipped while loading, per split (e.g. empty bodies); reported by ``datasets``.
        self.skipped: dict[str, int] = {}
        # Fail fast on an unknown model name, before any data work.
        self._tokenizer = load_tokenizer(self.model_name)

    # ----- data -------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def load(self) -> DatasetDict:
        if self._splits is None:
            raw = self._read_raw()
            self.source = raw.origin
            full = self._build_splits(raw)
            out = {}
            for split, ds in full.items():
                limit = self.max_train_examples if split == "train" else self.max_eval_examples
                idx = subset_indices(len(ds), limit, self.seed)
                out[split] = ds if idx is None else ds.select(idx)
            self._splits = DatasetDict(out)
        return self._splits

    def _read_raw(self) -> RawSplits:
        raise NotImplementedError

    def _build_splits(self, raw: RawSplits) -> dict[str, Dataset]:
        raise NotImplementedError

    def eval_split_name(self) -> str:
        """``test`` when present, else ``validation`` (SQuAD ships no labelled test)."""
        splits = self.load()
        return "test" if "test" in splits else "validation"

    # ----- tokenization -----------------------------------------------------
    def _preprocess_params(self) -> dict[str, Any]:
        """Everything besides the split's content that changes the tokenized output."""
        return {"max_length": self.max_length}

    def _cached_map(self, split: Dataset, fn: Callable[..., dict], train: bool, **map_kwargs: Any) -> Dataset:
        """``Dataset.map`` with an on-disk cache keyed by split content, tokenizer and task settings."""
        key_src = json.dumps(
            {
                "task": self.name,
                "split": split._fingerprint,
                "tokenizer": getattr(self.tokenizer, "name_or_path", str(type(self.tokenizer))),
                "vocab": len(self.tokenizer),
                "train": train,
                "version": PREPROCESS_VERSION,
                **self._preprocess_params(),
            },
            sort_keys=True,
            default=str,
        )
        key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
        folder = cache_dir() / "tokenized"
        folder.mkdir(parents=True, exist_ok=True)
        return split.map(
            fn,
            batched=True,
            remove_columns=split.column_names,
            cache_file_name=str(folder / f"{self.name}-{key}.arrow"),
            load_from_cache_file=True,
            new_fingerprint=key,
            desc=f"tokenizing {self.name}",
            **map_kwargs,
        )

    # ----- batching ---------------------------------------------------------
    def _pad(self, features: Sequence[Mapping[str, Any]], label_pad: Mapping[str, int]) -> dict[str, torch.Tensor]:
        """Right-pad token lists to the longest in the batch; scalars become 1-D tensors."""
        pad_id = self.tokenizer.pad_token_id or 0
        batch: dict[str, torch.Tensor] = {}
        for key in features[0]:
            if key in BOOKKEEPING:
                continue
            values = [f[key] for f in features]
            if isinstance(values[0], (list, tuple)):
                width = max(len(v) for v in values)
                fill = label_pad.get(key, pad_id if key == "input_ids" else 0)
                batch[key] = torch.tensor([list(v) + [fill] * (width - len(v)) for v in values], dtype=torch.long)
            else:
                batch[key] = torch.tensor(values, dtype=torch.long)
        return batch

    # ----- description ------------------------------------------------------
    def split_sizes(self) -> dict[str, int]:
        return {name: len(ds) for name, ds in self.load().items()}
