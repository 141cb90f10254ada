"""Extractive question answering (SQuAD v1.1 style): predict the answer span in the context.

Sources: offline ``$FEDNLP_DATA_DIR/squad`` (SQuAD v1.1 dev re-split by
article: train 8,001 questions / 36 articles, test 2,569 / 12 articles; see
``../shared/DATA.md``); hub ``squad`` (its ``validation`` split is the one
reported, so it becomes ``test``); local folders with the official nested
SQuAD JSON (``train-v1.1.json``, ``dev-v1.1.json``; ``train.json``...) or flat
JSONL/Parquet rows ``{"id", "title", "context", "question", "answers":
{"text": [...], "answer_start": [...]}}``. The validation split is held out
of train by whole articles (``title``), so no context is on both sides, and
``natural_id`` over ``title`` gives one Wikipedia article per client.
Every gold answer is checked against its context when loading: a wrong
``answer_start`` would otherwise train the model on the wrong span silently.

Long contexts overflow into several features with ``doc_stride`` tokens of
overlap (HF ``run_qa`` recipe); the best span over all of an example's
features (n-best start/end logits, at most ``max_answer_length`` tokens) is
mapped back to text through the offset mapping and scored by SQuAD EM/F1.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Mapping

import numpy as np
import torch
from datasets import Dataset
from transformers import AutoModelForQuestionAnswering

from fednlp_bench.checks import at_least
from fednlp_bench.registry import Param, declare
from fednlp_bench.tasks.common import HFTask
from fednlp_bench.tasks.metrics import squad_metrics
from fednlp_bench.tasks.models import build_auto_model
from fednlp_bench.tasks.formats import read_squad_json
from fednlp_bench.tasks.sources import RawSplits, load_raw, log_skipped, read_jsonl, read_parquet

log = logging.getLogger(__name__)

#: ``partition_key`` values: index into this list (first wh-word found; ``other`` when none).
WH_TYPES = ("what", "which", "who", "when", "where", "why", "how", "other")
_WH_ALIASES = {"whom": "who", "whose": "who"}
_WORD = re.compile(r"[a-z]+")


def question_type(question: str) -> int:
    """Index in :data:`WH_TYPES` of the first wh-word in the question (``In what year..`` -> what)."""
    for word in _WORD.findall(question.lower()):
        word = _WH_ALIASES.get(word, word)
        if word in WH_TYPES[:-1]:
            return WH_TYPES.index(word)
    return len(WH_TYPES) - 1


def check_answers(record: Mapping[str, Any], where: str) -> tuple[list[str], list[int]]:
    """Gold answers of one row, each verified to sit at ``answer_start`` in the context."""
    answers = record["answers"]
    if not isinstance(answers, Mapping) or "text" not in answers or "answer_start" not in answers:
        raise ValueError(f"{where}: 'answers' must be {{'text': [...], 'answer_start': [...]}}")
    texts, starts = list(answers["text"]), list(answers["answer_start"])
    if len(texts) != len(starts):
        raise ValueError(f"{where}: {len(texts)} answer texts but {len(starts)} answer_start values")
    context = record["context"]
    for text, start in zip(texts, starts):
        if not isinstance(text, str) or not isinstance(start, int) or start < 0:
            raise ValueError(f"{where}: answer {text!r} needs a string text and a non-negative integer answer_start")
        found = context[start : start + len(text)]
        if found != text:
            hint = context.find(text)
            fix = f" (the text occurs at {hint})" if hint >= 0 else " (the text does not occur in the context)"
            raise ValueError(
                f"{where}: answer_start={start} does not match the context: expected {text!r}, "
                f"the context has {found!r} there{fix}"
            )
    return texts, starts


class QATask(HFTask):
    name = "qa"
    primary_metric = "f1"
    hub_default = "squad"
    local_default = "squad"
    local_formats = ("json", "jsonl", "parquet")
    partition_key_meaning = "question type: index into " + "/".join(WH_TYPES)
    input_fields = ("id", "title", "context", "question", "answers")
    holdout_group = "title"

    def partition_key_names(self) -> list[str] | None:
        return list(WH_TYPES)

    param_specs = {**HFTask.param_specs, **declare(
        Param("doc_stride", int, None, help="overlap between consecutive windows of a long context (default: a "
              "quarter of max_length)"),
        Param("max_answer_length", int, 30, at_least(1), "longest answer span predicted, in tokens"),
        Param("n_best", int, 20, at_least(1), "start/end candidates scored per window"),
    )}

    def check_options(self) -> None:
        self.doc_stride = self.doc_stride if self.doc_stride is not None else self.max_length // 4
        if not 0 <= self.doc_stride < self.max_length // 2:
            raise ValueError(f"doc_stride={self.doc_stride} must be in [0, max_length/2 = {self.max_length // 2})")

    # ----- data -------------------------------------------------------------
    def _read_raw(self) -> RawSplits:
        need, cols = ("context", "question", "answers"), self.columns
        readers = {
            "json": read_squad_json,
            "jsonl": lambda p: read_jsonl(p, need, cols),
            "parquet": lambda p: read_parquet(p, need, cols),
        }
        return load_raw(self.data, self.local_default, self.hub_default, readers, cols)

    def _build_splits(self, raw: RawSplits) -> dict[str, Dataset]:
        out: dict[str, Dataset] = {}
        for split, rows in raw.splits.items():
            cols: dict[str, list[Any]] = {
                k: [] for k in ("id", "text", "title", "question", "context", "answers", "partition_key")
            }
            for n, (record, where) in enumerate(rows):
                for key in ("context", "question"):
                    if not isinstance(record.get(key), str):
                        raise ValueError(f"{where}: {key!r} must be a string")
                question = record["question"].strip()
                if not question or not record["context"].strip():
                    self.unusable(split, where, "empty 'question' or 'context'")
                    continue
                texts, starts = check_answers(record, where)
                if split == "train" and not texts:
                    raise ValueError(f"{where}: training question has no answer (SQuAD v1.1 needs one)")
                cols["id"].append(str(record.get("id", f"{split}-{n}")))
                cols["text"].append(question)
                cols["title"].append(str(record.get("title") or ""))
                cols["question"].append(question)
                cols["context"].append(record["context"])
                cols["answers"].append({"text": texts, "answer_start": starts})
                cols["partition_key"].append(question_type(question))
            out[split] = Dataset.from_dict(cols)
        log_skipped(self.name, self.skipped, "an empty question or context")
        return out

    # ----- tokenization -----------------------------------------------------
    def _preprocess_params(self) -> dict[str, Any]:
        return {"max_length": self.max_length, "doc_stride": self.doc_stride}

    def preprocess(self, split: Dataset, train: bool) -> Dataset:
        tok, max_length, stride = self.tokenizer, self.max_length, self.doc_stride
        pad_right = tok.padding_side == "right"

        def fn(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
            questions = [q.lstrip() for q in batch["question"]]
            first, second = (questions, batch["context"]) if pad_right else (batch["context"], questions)
            enc = tok(
                first,
                second,
                truncation="only_second" if pad_right else "only_first",
                max_length=max_length,
                stride=stride,
                return_overflowing_tokens=True,
                return_offsets_mapping=True,
            )
            sample_map = enc.pop("overflow_to_sample_mapping")
            offsets = enc.pop("offset_mapping")
            ctx_id = 1 if pad_right else 0
            starts, ends, masked_offsets = [], [], []
            for f, sample in enumerate(sample_map):
                seq_ids = enc.sequence_ids(f)
                masked_offsets.append([list(o) if seq_ids[k] == ctx_id else None for k, o in enumerate(offsets[f])])
                if not train:
                    continue
                answers = batch["answers"][sample]
                cls = enc["input_ids"][f].index(tok.cls_token_id) if tok.cls_token_id in enc["input_ids"][f] else 0
                a_start = answers["answer_start"][0]
                a_end = a_start + len(answers["text"][0])
                ctx = [k for k, s in enumerate(seq_ids) if s == ctx_id]
                if not ctx or offsets[f][ctx[0]][0] > a_start or offsets[f][ctx[-1]][1] < a_end:
                    starts.append(cls)  # answer not inside this window: point at [CLS]
                    ends.append(cls)
                    continue
                s = ctx[0]
                while s <= ctx[-1] and offsets[f][s][0] <= a_start:
                    s += 1
                e = ctx[-1]
                while e >= ctx[0] and offsets[f][e][1] >= a_end:
                    e -= 1
                starts.append(s - 1)
                ends.append(e + 1)
            out = {**enc, "example_index": [indices[s] for s in sample_map]}
            if train:
                out.update(start_positions=starts, end_positions=ends)
            else:
                out["offset_mapping"] = masked_offsets
            return out

        return self._cached_map(split, fn, train, with_indices=True)

    def collate(self, features: list[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        return self._pad(features, {})

    # ----- model ------------------------------------------------------------
    def build_model(self) -> torch.nn.Module:
        return build_auto_model(AutoModelForQuestionAnswering, self.model_name)

    def predict(self, model: torch.nn.Module, raw: Dataset, features: Dataset, batch_size: int = 32) -> list[str]:
        """Best answer text per raw example (``""`` when no valid span exists)."""
        acc = self.eval_start(raw, features)
        self.run_eval_loop(model, features, batch_size, acc)
        return self._answers(acc, raw)

    def eval_start(self, raw: Dataset, features: Dataset) -> dict[str, Any]:
        if "offset_mapping" not in features.column_names:
            raise ValueError("QA evaluation needs features from preprocess(split, train=False) (they keep offset_mapping)")
        return {"best": {}, "contexts": raw["context"], "example_index": features["example_index"],
                "offsets": features["offset_mapping"]}

    def eval_accumulate(self, acc: dict[str, Any], rows: range, out: Any) -> None:
        """Keep, per raw example, the highest-scoring valid span over its context windows."""
        best = acc["best"]
        start_logits = out.start_logits.float().cpu().numpy()
        end_logits = out.end_logits.float().cpu().numpy()
        for j, row in enumerate(rows):
            ex, offsets = acc["example_index"][row], acc["offsets"][row]
            n = len(offsets)
            s_log, e_log = start_logits[j, :n], end_logits[j, :n]
            s_top = np.argsort(s_log)[::-1][: self.n_best]
            e_top = np.argsort(e_log)[::-1][: self.n_best]
            for s in s_top:
                if offsets[s] is None:
                    continue
                for e in e_top:
                    if offsets[e] is None or e < s or e - s + 1 > self.max_answer_length:
                        continue
                    score = float(s_log[s] + e_log[e])
                    if ex not in best or score > best[ex][0]:
                        best[ex] = (score, acc["contexts"][ex][offsets[s][0] : offsets[e][1]])

    def _answers(self, acc: dict[str, Any], raw: Dataset) -> list[str]:
        return [acc["best"].get(i, (0.0, ""))[1] for i in range(len(raw))]

    def eval_finish(self, acc: dict[str, Any], model: torch.nn.Module, raw: Dataset, features: Dataset,
                    batch_size: int) -> dict[str, float]:
        result = squad_metrics(self._answers(acc, raw), [a["text"] for a in raw["answers"]])
        result["num_examples"] = float(len(raw))
        return result
