"""Machinery every built-in task shares: loading once, subsetting, cached tokenization, padding, eval mode.

Kept out of ``base.py`` so the ABC stays the small contract the engine sees;
a new task may use this helper class or implement :class:`Task` directly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
import torch
from datasets import Dataset, DatasetDict

from fednlp_bench.paths import cache_dir
from fednlp_bench.tasks.base import Task
from fednlp_bench.tasks.models import load_tokenizer
from fednlp_bench.tasks.sources import RawSplits, check_columns

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
    #: Fields a user's column mapping may name (``columns: {field: column}``).
    input_fields: ClassVar[tuple[str, ...]] = ("id",)
    #: Column the validation hold-out is stratified by (classification: the label).
    holdout_stratify: ClassVar[str | None] = None
    #: Column whose groups stay whole in the hold-out (QA: ``title``, so no article is in both).
    holdout_group: ClassVar[str | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.columns = check_columns(self.columns, self.input_fields, self.name)
        self._splits: DatasetDict | None = None
        self.source: str | None = None
        #: Rows skipped while loading, per split; non-zero only with ``skip_invalid_rows``. Goes into the record.
        self.skipped: dict[str, int] = {}
        #: Where the validation split came from (the dataset's own, or held out of train: fraction, seed, rows).
        self.validation_info: dict[str, Any] = {}
        # Fail fast on an unknown model name, before any data work.
        self._tokenizer = load_tokenizer(self.model_name)

    def partition_key_names(self) -> list[str] | None:
        """Names of the ``partition_key`` values (index -> name) after :meth:`load`; None when it has none.

        Statistics tables and plots show these instead of bare ids.
        """
        return None

    # ----- data -------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def load(self) -> DatasetDict:
        if self._splits is None:
            raw = self._read_raw()
            self.source = raw.origin
            self.skipped = {split: 0 for split in raw.splits}
            full = self._build_splits(raw)
            full = self._with_validation(full)
            out = {}
            for split, ds in full.items():
                limit = {"train": self.max_train_examples,
                         "validation": self.max_validation_examples}.get(split, self.max_eval_examples)
                idx = subset_indices(len(ds), limit, self.seed)
                out[split] = ds if idx is None else ds.select(idx)
            self._splits = DatasetDict(out)
        return self._splits

    def _read_raw(self) -> RawSplits:
        raise NotImplementedError

    def _build_splits(self, raw: RawSplits) -> dict[str, Dataset]:
        raise NotImplementedError

    def unusable(self, split: str, where: str, reason: str) -> None:
        """A row that cannot be used: an error naming ``file:line``, or (when allowed) skipped and counted."""
        if not self.skip_invalid_rows:
            raise ValueError(
                f"{where}: {reason}; fix or remove the row, or allow skipping such rows with "
                f"--task-skip-invalid-rows (skip_invalid_rows: true; the count goes into the record)"
            )
        self.skipped[split] = self.skipped.get(split, 0) + 1

    def _with_validation(self, full: dict[str, Dataset]) -> dict[str, Dataset]:
        """Ensure ``train``/``validation``/``test``: use the data's own validation split, else hold one out.

        A source without a test split but with a validation split (hub ``squad``,
        SQuAD's ``train``/``dev`` files) reports on that split, as is standard, so
        it becomes ``test`` and validation is held out of train. The hold-out is
        deterministic in ``seed``: stratified by :attr:`holdout_stratify`, or whole
        groups of :attr:`holdout_group` (never one article on both sides).
        """
        full = dict(full)
        if "test" not in full:
            if "validation" not in full:
                raise ValueError(f"{self.source}: no test or validation split to evaluate on (found {sorted(full)})")
            full["test"] = full.pop("validation")
            test_from = "validation"
        else:
            test_from = "test"
        if "validation" in full:
            self.validation_info = {"source": "dataset", "test_from": test_from, "rows": len(full["validation"])}
            return {k: full[k] for k in ("train", "validation", "test")}
        train = full["train"]
        keep, held, how = holdout_split(
            train, self.validation_fraction, self.seed, stratify=self.holdout_stratify, group=self.holdout_group
        )
        self.validation_info = {
            "source": "held out of train", "test_from": test_from, "fraction": self.validation_fraction,
            "seed": self.seed, "split_by": how, "rows": len(held), "train_rows_before": len(train),
        }
        log.info("%s: held out %d of %d train rows as validation (%s, seed %d)", self.name, len(held), len(train), how, self.seed)
        return {"train": train.select(keep), "validation": train.select(held), "test": full["test"]}

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

    def data_summary(self) -> dict[str, Any]:
        """What a record stores about the data: source, rows per split, skipped rows, validation origin."""
        return {"source": self.source, "splits": self.split_sizes(), "skipped": dict(self.skipped),
                "validation": dict(self.validation_info)}


def holdout_split(
    train: Dataset, fraction: float, seed: int, stratify: str | None = None, group: str | None = None
) -> tuple[list[int], list[int], str]:
    """(kept rows, held-out rows, how) of a deterministic ``fraction`` hold-out, both in file order.

    ``group``: whole groups go to validation, in a seeded order, each taken when it brings the
    held-out rows closer to ``fraction`` of the rows; used when the column exists and has
    at least 2 distinct non-empty values (rows with an empty group stay in train).
    ``stratify``: per-label shares kept (``StratifiedShuffleSplit``) when every
    label has at least 2 rows; otherwise a plain seeded shuffle, and ``how`` says so.
    """
    from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

    n = len(train)
    if n < 2:
        raise ValueError(f"cannot hold out a validation split from {n} training row(s); give a validation file")
    index = np.arange(n)
    if group and group in train.column_names:
        groups = [str(g or "") for g in train[group]]
        names = sorted({g for g in groups if g})
        if len(names) >= 2:
            # Whole groups in a seeded order until the hold-out reaches the fraction of rows
            # (sklearn's GroupShuffleSplit counts groups, which overshoots when group sizes differ).
            sizes = {g: 0 for g in names}
            for g in groups:
                if g:
                    sizes[g] += 1
            target, chosen, held_rows = fraction * n, set(), 0
            for k in np.random.default_rng(seed).permutation(len(names)):
                name = names[int(k)]
                # Take a group when it brings the held-out row count closer to the target.
                if len(chosen) < len(names) - 1 and abs(held_rows + sizes[name] - target) < abs(held_rows - target):
                    chosen.add(name)
                    held_rows += sizes[name]
            held = [i for i, g in enumerate(groups) if g in chosen]
            keep = [i for i, g in enumerate(groups) if g not in chosen]
            return keep, held, f"whole {group} groups ({len(chosen)} of {len(names)})"
    if stratify and stratify in train.column_names:
        labels = np.asarray(train[stratify])
        counts = np.unique(labels, return_counts=True)[1]
        n_held = max(1, int(math.ceil(fraction * n)))
        if counts.min() >= 2 and n_held >= len(counts) and n - n_held >= len(counts):
            splitter = StratifiedShuffleSplit(n_splits=1, test_size=n_held, random_state=seed)
            keep, held = next(splitter.split(index, labels))
            return sorted(map(int, keep)), sorted(map(int, held)), f"stratified by {stratify}"
        how = f"random (not stratified: a {stratify} has fewer than 2 rows or there are too few rows)"
    else:
        how = "random"
    splitter = ShuffleSplit(n_splits=1, test_size=max(1, int(math.ceil(fraction * n))), random_state=seed)
    keep, held = next(splitter.split(index))
    return sorted(map(int, keep)), sorted(map(int, held)), how
