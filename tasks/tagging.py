"""Sequence tagging / NER (FedNLP's W-NUT 2017): tokens -> BIO tags, scored by entity span F1.

Offline data: ``$FEDNLP_DATA_DIR/wnut17/{train,validation,test}.jsonl`` with
``{"id", "tokens", "tags"}`` (string BIO tags), or CoNLL files
(``train.conll``/``train.txt``: token first, tag last column). Hub: ``wnut_17``
(integer ``ner_tags`` become their names). The label set comes from the
training split; a tag outside it in another split is an error, since the
model head cannot predict it and the score would silently be capped. Any tag
set works, in BIO/IOB2 (``B-`` opens every entity): a sequence that is not
valid BIO (``I-x`` after ``O`` or after another type) is refused with its
``file:line``, and the message says so; IOB1 data (``I-`` opens an entity,
``B-`` only between two adjacent entities of one type, as in the original
CoNLL-2003 files) is converted to BIO on load with ``tag_scheme="iob1"``.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Mapping

import torch
from datasets import Dataset
from transformers import AutoModelForTokenClassification

from fednlp_bench.registry import Param, declare
from fednlp_bench.tasks.common import HFTask
from fednlp_bench.tasks.metrics import span_f1
from fednlp_bench.tasks.models import build_auto_model
from fednlp_bench.tasks.formats import read_conll
from fednlp_bench.tasks.sources import RawSplits, load_raw, log_skipped, read_jsonl, read_parquet

log = logging.getLogger(__name__)
IGNORE = -100


def entity_type(tag: str) -> str | None:
    """``B-person``/``I-person`` -> ``person``; ``O`` -> None."""
    return tag.split("-", 1)[1] if "-" in tag and tag[:2] in ("B-", "I-", "E-", "S-", "U-", "L-") else None


#: ``tag_scheme`` values: how the input tags are written.
TAG_SCHEMES = ("bio", "iob1")


def bio_error(tags: list[str]) -> str | None:
    """Why ``tags`` is not valid BIO/IOB2 (None when it is)."""
    previous = "O"
    for k, tag in enumerate(tags):
        if tag != "O" and tag[:2] not in ("B-", "I-"):
            return f"tag {tag!r} at token {k} is neither 'O' nor 'B-<type>'/'I-<type>'"
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            return f"tag {tag!r} at token {k} follows {previous!r}, so it opens an entity, which BIO does with 'B-'"
        previous = tag
    return None


def iob1_to_bio(tags: list[str]) -> list[str]:
    """IOB1 -> BIO/IOB2: an ``I-x`` that opens an entity becomes ``B-x`` (seqeval/CoNLL convention)."""
    out, previous = [], "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            tag = "B-" + tag[2:]
        out.append(tag)
        previous = tag
    return out


def dominant_type(tags: list[str], types: list[str]) -> int:
    """Index of the sentence's most frequent entity type (counted in spans); ``len(types)`` when all ``O``.

    Ties go to the type first in sorted order so the key is deterministic.
    """
    counts = Counter(entity_type(t) for t in tags if t.startswith(("B-", "S-", "U-")))
    if not counts:
        return len(types)
    best = max(counts.values())
    return min(types.index(t) for t, c in counts.items() if c == best)


class TaggingTask(HFTask):
    name = "tagging"
    primary_metric = "f1"
    hub_default = "wnut_17"
    local_default = "wnut17"
    local_formats = ("jsonl", "conll", "txt", "parquet")
    partition_key_meaning = "index of the sentence's most frequent entity type (sorted types); len(types) = no entity"
    input_fields = ("id", "tokens", "tags")
    #: Span F1 over a few sentences without entities says nothing: the per-client minimum counts gold entities.
    evaluation_unit = "gold entities"

    def evaluation_units(self, raw: Dataset) -> list[int]:
        """Gold entities (spans, seqeval's chunking) per sentence."""
        from seqeval.metrics.sequence_labeling import get_entities

        return [len(get_entities(list(tags))) for tags in raw["tags"]]

    def partition_key_names(self) -> list[str] | None:
        return [*self.entity_types, "(no entity)"] if self.entity_types else None

    param_specs = {**HFTask.param_specs, **declare(
        Param("tag_scheme", str, "bio", help="bio (checked) or iob1 (converted to BIO on load)", choices=TAG_SCHEMES))}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: ``O`` first, then the B-/I- tags sorted; ``labels`` index into this list.
        self.label_names: list[str] = []
        #: Sorted entity types; ``partition_key`` indexes into this list (``len`` = "O only").
        self.entity_types: list[str] = []

    # ----- data -------------------------------------------------------------
    def _read_raw(self) -> RawSplits:
        need, cols = ("tokens", "tags"), self.columns
        readers = {
            "jsonl": lambda p: read_jsonl(p, need, cols),
            "conll": read_conll,
            "txt": read_conll,
            "parquet": lambda p: read_parquet(p, need, cols),
        }
        raw = load_raw(self.data, self.local_default, self.hub_default, readers, cols)
        for rows in raw.splits.values():  # hub wnut_17 / conll2003 call the column ner_tags
            for record, where in rows:
                if "tags" not in record and "ner_tags" in record:
                    record["tags"] = record["ner_tags"]
                if "tags" not in record or "tokens" not in record:
                    raise ValueError(f"{where}: missing field 'tokens' or 'tags' (or 'ner_tags')")
                tags = [str(t) for t in record["tags"]]
                if self.tag_scheme == "iob1":
                    tags = iob1_to_bio(tags)
                problem = bio_error(tags)
                if problem is not None:
                    hint = (" The data looks like IOB1 (I- opens an entity): load it with tag_scheme=iob1 "
                            "(--task-param tag_scheme=iob1) to convert it to BIO."
                            if self.tag_scheme == "bio" and "opens an entity" in problem else "")
                    raise ValueError(f"{where}: not valid BIO/IOB2 tags: {problem}.{hint}")
                record["tags"] = tags
        return raw

    def _build_splits(self, raw: RawSplits) -> dict[str, Dataset]:
        if "train" not in raw.splits:
            raise ValueError(f"{raw.origin} has no train split (found {sorted(raw.splits)})")
        seen = {str(t) for r, _ in raw.splits["train"] for t in r["tags"]}
        self.label_names = ["O"] + sorted(seen - {"O"})
        self.entity_types = sorted({e for e in (entity_type(t) for t in seen) if e})
        index = {t: i for i, t in enumerate(self.label_names)}
        out: dict[str, Dataset] = {}
        for split, rows in raw.splits.items():
            cols: dict[str, list[Any]] = {k: [] for k in ("id", "text", "tokens", "tags", "labels_word", "partition_key")}
            for n, (record, where) in enumerate(rows):
                tokens, tags = [str(t) for t in record["tokens"]], [str(t) for t in record["tags"]]
                if len(tokens) != len(tags):
                    raise ValueError(f"{where}: {len(tokens)} tokens but {len(tags)} tags")
                if not tokens:
                    self.unusable(split, where, "no tokens")
                    continue
                bad = [t for t in tags if t not in index]
                if bad:
                    raise ValueError(
                        f"{where}: tag {bad[0]!r} is not in the label set of the training split "
                        f"{self.label_names}; fix the tag or add it to the training data"
                    )
                cols["id"].append(str(record.get("id", f"{split}-{n}")))
                cols["text"].append(" ".join(tokens))
                cols["tokens"].append(tokens)
                cols["tags"].append(tags)
                cols["labels_word"].append([index[t] for t in tags])
                cols["partition_key"].append(dominant_type(tags, self.entity_types))
            out[split] = Dataset.from_dict(cols)
        log_skipped(self.name, self.skipped, "no tokens")
        return out

    # ----- tokenization -----------------------------------------------------
    def preprocess(self, split: Dataset, train: bool) -> Dataset:
        tok, max_length = self.tokenizer, self.max_length

        def fn(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
            enc = tok(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
            labels, word_index = [], []
            for i, word_labels in enumerate(batch["labels_word"]):
                lab, widx, previous = [], [], None
                for w in enc.word_ids(i):
                    first = w is not None and w != previous
                    lab.append(word_labels[w] if first else IGNORE)
                    widx.append(w if first else -1)
                    previous = w
                labels.append(lab)
                word_index.append(widx)
            return {**enc, "labels": labels, "word_index": word_index, "example_index": indices}

        return self._cached_map(split, fn, train, with_indices=True)

    def collate(self, features: list[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        return self._pad(features, {"labels": IGNORE})

    # ----- model ------------------------------------------------------------
    def build_model(self) -> torch.nn.Module:
        if not self.label_names:
            self.load()
        return build_auto_model(
            AutoModelForTokenClassification,
            self.model_name,
            num_labels=len(self.label_names),
            id2label=dict(enumerate(self.label_names)),
            label2id={t: i for i, t in enumerate(self.label_names)},
        )

    def eval_start(self, raw: Dataset, features: Dataset) -> dict[str, Any]:
        return {"preds": {}, "example_index": features["example_index"], "word_index": features["word_index"],
                "gold": raw["tags"]}

    def eval_accumulate(self, acc: dict[str, Any], rows: range, out: Any) -> None:
        """Word-level predictions from each word's first sub-token; words cut by ``max_length`` count as ``O``."""
        argmax = out.logits.argmax(-1).cpu().numpy()
        for j, row in enumerate(rows):
            ex = acc["example_index"][row]
            words = ["O"] * len(acc["gold"][ex])
            for pos, w in enumerate(acc["word_index"][row]):
                if w >= 0:
                    words[w] = self.label_names[int(argmax[j, pos])]
            acc["preds"][ex] = words

    def eval_finish(self, acc: dict[str, Any], model: torch.nn.Module, raw: Dataset, features: Dataset,
                    batch_size: int) -> dict[str, float]:
        order = sorted(acc["preds"])
        result = span_f1([acc["gold"][i] for i in order], [acc["preds"][i] for i in order])
        result["num_examples"] = float(len(order))
        return result
