"""Text classification (FedNLP's 20News): message body -> newsgroup.

Offline data: ``$FEDNLP_DATA_DIR/20news/{train,test}.jsonl`` with
``{"id", "text", "label"}`` where ``text`` is the raw message. E-mail/netnews
headers (up to the first blank line) are stripped as is usual for 20News,
because the ``Newsgroups:``/``Path:`` lines would give the label away;
``From:`` and ``Organization:`` survive as the ``author``/``organization``
columns for natural-id partitions. ``text_format`` decides when a text is a
message: ``auto`` (default) only when it opens with real header names
(From/Subject...), so a news text that begins ``MLB: ...`` is kept whole;
``email`` always; ``plain`` never. A message whose body is empty once its
headers are gone is kept with an empty text (as sklearn's
``fetch_20newsgroups(remove=("headers",))`` does), so no test row is lost.
``article_number`` is the netnews number of ids like ``sci.space/59497``
(None otherwise): the arrival order of ``continual: {order_by: article_number}``.
Any label set works: labels are the sorted names seen in train. Hub:
``SetFit/20_newsgroups`` (or ``ag_news`` etc.: any dataset with ``text`` and
``label``/``label_text``). The data has no validation split, so 10% of train
is held out, stratified by label (see ``HFTask._with_validation``).

A label column must hold one type: an int ``7`` among string labels would
silently become a class of its own, so it is an error naming ``file:line``
and both types, unless ``label_type`` (task param) says how to read every
label: ``str`` (``7`` is the label "7") or ``int`` (``"7"`` is 7; a name is an
error).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Mapping

import numpy as np
import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification

from fednlp_bench.registry import Param, declare
from fednlp_bench.tasks.common import HFTask
from fednlp_bench.tasks.metrics import classification_metrics
from fednlp_bench.tasks.models import build_auto_model
from fednlp_bench.tasks.messages import author_id, split_message
from fednlp_bench.tasks.sources import RawSplits, load_raw, log_skipped, read_csv, read_jsonl, read_parquet

log = logging.getLogger(__name__)


#: ``label_type`` values: how to read a label column (None: as it is, one type throughout).
LABEL_TYPES = ("str", "int")


class LabelReader:
    """Reads every label of one load as one type, so an ``int`` among ``str`` labels cannot become a class."""

    def __init__(self, label_type: str | None) -> None:
        if label_type is not None and label_type not in LABEL_TYPES:
            raise ValueError(f"label_type={label_type!r} is not one of {list(LABEL_TYPES)} (or omit it: labels as "
                             "they are, all of one type)")
        self.label_type = label_type
        self._first: tuple[str, str] | None = None  # (type name, where) of the first label read

    def __call__(self, value: Any, where: str) -> str:
        if self.label_type == "str":
            return str(value)
        if self.label_type == "int":
            return str(self._as_int(value, where))
        kind = type(value).__name__
        if self._first is None:
            self._first = (kind, where)
        elif kind != self._first[0]:
            raise ValueError(
                f"{where}: label {value!r} is {kind}, but the labels before it are {self._first[0]} (first at "
                f"{self._first[1]}); make the column one type, or say how to read it with --task-param "
                f"label_type=str (every label as text) or label_type=int (task_params: {{label_type: str}})"
            )
        return str(value)

    @staticmethod
    def _as_int(value: Any, where: str) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value.strip())
        raise ValueError(f"{where}: label {value!r} is not an integer, but label_type=int; use label_type=str "
                         "to read the labels as text")


_ARTICLE_ID = re.compile(r"^[^/\s]+/(\d+)$")


def article_number(row_id: str) -> int | None:
    """The netnews article number of a 20News id ``newsgroup/number``, None for ids of another form.

    Numbers count up per newsgroup on the posting server, so within a group
    they follow posting time (the by-date test split's numbers lie above the
    train split's in 89-100% of pairs per group); across groups they are not
    comparable (continual.order_within ranks them per group: docs/trust.md).
    """
    match = _ARTICLE_ID.match(row_id)
    return int(match.group(1)) if match else None


def _label_sort_key(name: str) -> tuple[int, Any]:
    """Numeric labels sort as numbers ("2" < "10"), names alphabetically."""
    return (0, int(name)) if name.lstrip("-").isdigit() else (1, name)


class ClassificationTask(HFTask):
    name = "classification"
    primary_metric = "accuracy"
    hub_default = "SetFit/20_newsgroups"
    local_default = "20news"
    local_formats = ("jsonl", "csv", "parquet")
    partition_key_meaning = "label id (index into sorted label names)"
    input_fields = ("id", "text", "label")
    holdout_stratify = "label"
    # The sequence-classification heads of these model types read only position 0 of the encoder's output
    # (BERT's pooler, RoBERTa's head), so the last layer may run for that position alone (compute/first_token.py).
    first_token_model_types = ("bert", "roberta", "xlm-roberta", "camembert", "electra")

    def partition_key_names(self) -> list[str] | None:
        return list(self.label_names) or None

    param_specs = {**HFTask.param_specs, **declare(
        Param("label_type", str, None, help="read every label as str or int (default: as they are, all of one type)",
              choices=(*LABEL_TYPES, None)))}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Sorted label names; ``label`` column holds indices into this list (set by :meth:`load`).
        self.label_names: list[str] = []

    # ----- data -------------------------------------------------------------
    def _read_raw(self) -> RawSplits:
        need, cols = ("text", "label"), self.columns
        readers = {
            "jsonl": lambda p: read_jsonl(p, need, cols),
            "csv": lambda p: read_csv(p, need, cols),
            "parquet": lambda p: read_parquet(p, need, cols),
        }
        return load_raw(self.data, self.local_default, self.hub_default, readers, cols)

    def _build_splits(self, raw: RawSplits) -> dict[str, Dataset]:
        if "train" not in raw.splits:
            raise ValueError(f"{raw.origin} has no train split (found {sorted(raw.splits)})")
        for rows in raw.splits.values():  # hub copies may carry the name in label_text
            for record, _ in rows:
                if "label_text" in record and record["label_text"] not in (None, ""):
                    record["label"] = record["label_text"]
        read = LabelReader(self.label_type)
        labels = {split: [read(r["label"], where) for r, where in rows] for split, rows in raw.splits.items()}
        self.label_names = sorted(set(labels["train"]), key=_label_sort_key)
        index = {name: i for i, name in enumerate(self.label_names)}
        out: dict[str, Dataset] = {}
        for split, rows in raw.splits.items():
            cols: dict[str, list[Any]] = {k: [] for k in ("id", "text", "label", "partition_key", "author", "organization")}
            for n, (record, where) in enumerate(rows):
                label = labels[split][n]
                if label not in index:
                    raise ValueError(
                        f"{where}: label {label!r} does not occur in the training split; "
                        f"known labels: {self.label_names}"
                    )
                if not isinstance(record["text"], str):
                    raise ValueError(f"{where}: 'text' must be a string, got {type(record['text']).__name__}")
                if not record["text"].strip():
                    self.unusable(split, where, "empty 'text'")
                    continue
                headers, body = split_message(record["text"], self.text_format, where)
                cols["id"].append(str(record.get("id", f"{split}-{n}")))
                cols["text"].append(body)
                cols["label"].append(index[label])
                cols["partition_key"].append(index[label])
                cols["author"].append(author_id(headers.get("from", "")))
                cols["organization"].append(headers.get("organization", "").strip().lower())
            if not cols["id"]:
                raise ValueError(f"{raw.origin}: split {split!r} has no non-empty texts")
            table = Dataset.from_dict(cols)
            # The article number never reaches a tokenized feature, so the split keeps the fingerprint it had
            # without it: tokenized maps and frozen-bottom caches (keyed on it, GBs for 20News) stay valid.
            out[split] = table.add_column("article_number", [article_number(i) for i in cols["id"]],
                                          new_fingerprint=table._fingerprint)
        log_skipped(self.name, self.skipped, "an empty text")
        return out

    # ----- tokenization -----------------------------------------------------
    def preprocess(self, split: Dataset, train: bool) -> Dataset:
        tok, max_length = self.tokenizer, self.max_length

        def fn(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
            enc = tok(batch["text"], truncation=True, max_length=max_length)
            return {**enc, "labels": batch["label"], "example_index": indices}

        return self._cached_map(split, fn, train, with_indices=True)

    def collate(self, features: list[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        return self._pad(features, {})

    # ----- model ------------------------------------------------------------
    def build_model(self) -> torch.nn.Module:
        if not self.label_names:
            self.load()
        n = len(self.label_names)
        return build_auto_model(
            AutoModelForSequenceClassification,
            self.model_name,
            num_labels=n,
            id2label=dict(enumerate(self.label_names)),
            label2id={name: i for i, name in enumerate(self.label_names)},
        )

    def eval_start(self, raw: Dataset, features: Dataset) -> dict[str, Any]:
        return {"preds": np.zeros(len(features), dtype=np.int64)}

    def eval_accumulate(self, acc: dict[str, Any], rows: range, out: Any) -> None:
        acc["preds"][rows.start : rows.stop] = out.logits.argmax(-1).cpu().numpy()

    def eval_finish(self, acc: dict[str, Any], model: torch.nn.Module, raw: Dataset, features: Dataset,
                    batch_size: int) -> dict[str, float]:
        gold = np.asarray(features["labels"])
        result = classification_metrics(gold.tolist(), acc["preds"].tolist())
        result["num_examples"] = float(len(features))
        return result
