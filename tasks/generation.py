"""Generation / summarization: document -> short summary, scored by ROUGE-1/2/L.

Offline data: 20News subject-line generation (message body -> ``Subject:``
header, like email subject generation (AESLC) or headline generation
(Gigaword)) from ``$FEDNLP_DATA_DIR/20news``. ``Re:`` prefixes are stripped
from subjects (a reply's subject is copied, not generated); rows with an empty
subject or body are skipped and counted. Local folders may instead hold
JSONL/CSV rows with ``document`` and ``summary``. Hub: ``xsum``, ``gigaword``
(any dataset with ``document``/``summary``).

Model: the offline MiniLM warm-starts a bert2bert ``EncoderDecoderModel``
(encoder and decoder both from MiniLM, as Rothe et al. 2020), ``decoder_start``
= [CLS], ``eos`` = [SEP]; any HF encoder-decoder name (BART, T5...) is used
as it is; ``tiny`` is a 2-layer bert2bert built from configs.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Mapping

import torch
from datasets import Dataset
from transformers import AutoConfig, AutoModelForSeq2SeqLM, EncoderDecoderConfig, EncoderDecoderModel

from fednlp_bench.paths import TINY_MODEL
from fednlp_bench.tasks.common import HFTask, evaluating, model_device
from fednlp_bench.tasks.metrics import rouge
from fednlp_bench.tasks.models import _source, _unknown, tiny_bert_config
from fednlp_bench.tasks.sources import RawSplits, load_raw, log_skipped, read_csv, read_jsonl, split_message

log = logging.getLogger(__name__)
IGNORE = -100
_REPLY = re.compile(r"^\s*((re|fwd?|fw)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)


def clean_subject(subject: str) -> str:
    """Drop any chain of ``Re:``/``Fwd:`` prefixes and squash whitespace."""
    return " ".join(_REPLY.sub("", subject).split())


class GenerationTask(HFTask):
    name = "generation"
    primary_metric = "rougeL"
    hub_default = "xsum"
    local_default = "20news"
    local_formats = ("jsonl", "csv")
    partition_key_meaning = "none (-1): use iid, quantity_skew or feature_cluster"

    def __init__(self, *args: Any, max_target_length: int = 32, num_beams: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if max_target_length < 2 or num_beams < 1:
            raise ValueError(f"max_target_length={max_target_length} must be >= 2 and num_beams={num_beams} >= 1")
        self.max_target_length = max_target_length
        self.num_beams = num_beams
        self._bert2bert = self._is_bert2bert()

    def _is_bert2bert(self) -> bool:
        if self.model_name == TINY_MODEL:
            return True
        try:
            return not AutoConfig.from_pretrained(_source(self.model_name)).is_encoder_decoder
        except (OSError, ValueError) as err:
            raise _unknown(self.model_name, err) from err

    # ----- data -------------------------------------------------------------
    def _read_raw(self) -> RawSplits:
        def jsonl(p: Any) -> list:
            rows = read_jsonl(p, ())
            return [(self._as_pair(r, w), w) for r, w in rows]

        def csv(p: Any) -> list:
            return [(self._as_pair(r, w), w) for r, w in read_csv(p, ())]

        raw = load_raw(self.data, self.local_default, self.hub_default, {"jsonl": jsonl, "csv": csv})
        if raw.origin.startswith("hub"):
            for rows in raw.splits.values():
                rows[:] = [(self._as_pair(r, w), w) for r, w in rows]
        return raw

    @staticmethod
    def _as_pair(record: dict[str, Any], where: str) -> dict[str, Any]:
        """``document``/``summary`` rows as they are; 20News-style ``text`` rows -> body/subject."""
        if "document" in record and "summary" in record:
            return {"id": record.get("id"), "document": str(record["document"] or ""), "summary": str(record["summary"] or "")}
        if "text" in record:
            headers, body = split_message(str(record["text"]))
            if not headers:
                raise ValueError(f"{where}: 'text' has no 'Subject:' header to generate; give document/summary fields")
            return {"id": record.get("id"), "document": body, "summary": clean_subject(headers.get("subject", ""))}
        raise ValueError(f"{where}: missing fields: need 'document' and 'summary' (or a 20News-style 'text' message)")

    def _build_splits(self, raw: RawSplits) -> dict[str, Dataset]:
        out: dict[str, Dataset] = {}
        skipped: dict[str, int] = {}
        for split, rows in raw.splits.items():
            cols: dict[str, list[Any]] = {k: [] for k in ("id", "text", "document", "summary", "partition_key")}
            skipped[split] = 0
            for n, (record, _) in enumerate(rows):
                document, summary = record["document"].strip(), record["summary"].strip()
                if not document or not summary:
                    skipped[split] += 1
                    continue
                cols["id"].append(str(record["id"] if record.get("id") is not None else f"{split}-{n}"))
                cols["text"].append(document)
                cols["document"].append(document)
                cols["summary"].append(summary)
                cols["partition_key"].append(-1)
            if not cols["id"]:
                raise ValueError(f"{raw.origin}: split {split!r} has no rows with both a document and a summary")
            out[split] = Dataset.from_dict(cols)
        self.skipped = skipped
        log_skipped(self.name, skipped, "an empty document or summary (subject)")
        return out

    # ----- tokenization -----------------------------------------------------
    def _preprocess_params(self) -> dict[str, Any]:
        return {"max_length": self.max_length, "max_target_length": self.max_target_length, "bert2bert": self._bert2bert}

    def preprocess(self, split: Dataset, train: bool) -> Dataset:
        tok, max_length, max_target = self.tokenizer, self.max_length, self.max_target_length
        bert2bert = self._bert2bert

        def fn(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
            enc = tok(batch["document"], truncation=True, max_length=max_length)
            if bert2bert:
                # [CLS] w1 .. wn [SEP] -> labels w1 .. wn [SEP]; decoder input is [CLS] w1 .. wn (shifted right).
                target = tok(batch["summary"], truncation=True, max_length=max_target + 1)["input_ids"]
                labels = [ids[1:] if ids and ids[0] == tok.cls_token_id else ids for ids in target]
            else:
                labels = tok(text_target=batch["summary"], truncation=True, max_length=max_target)["input_ids"]
            return {**enc, "labels": labels, "example_index": indices}

        return self._cached_map(split, fn, train, with_indices=True)

    def collate(self, features: list[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        return self._pad(features, {"labels": IGNORE})

    # ----- model ------------------------------------------------------------
    def build_model(self) -> torch.nn.Module:
        tok = self.tokenizer
        if self.model_name == TINY_MODEL:
            vocab = len(tok)
            config = EncoderDecoderConfig.from_encoder_decoder_configs(
                tiny_bert_config(vocab), tiny_bert_config(vocab, is_decoder=True, add_cross_attention=True)
            )
            model = EncoderDecoderModel(config=config)
        elif self._bert2bert:
            path = _source(self.model_name)
            model = EncoderDecoderModel.from_encoder_decoder_pretrained(path, path)
        else:
            return AutoModelForSeq2SeqLM.from_pretrained(_source(self.model_name))
        for cfg in (model.config, model.generation_config):
            cfg.decoder_start_token_id = tok.cls_token_id
            cfg.bos_token_id = tok.cls_token_id
            cfg.eos_token_id = tok.sep_token_id
            cfg.pad_token_id = tok.pad_token_id
        model.config.vocab_size = model.config.decoder.vocab_size
        return model

    def generate(self, model: torch.nn.Module, features: Dataset, batch_size: int = 32) -> list[str]:
        """Decoded summaries (greedy, or beam search with ``num_beams``) in feature order."""
        device = model_device(model)
        texts: list[str] = []
        with evaluating(model):
            for _, batch in self.iter_batches(features, batch_size):
                out = model.generate(
                    input_ids=batch["input_ids"].to(device),
                    attention_mask=batch["attention_mask"].to(device),
                    max_new_tokens=self.max_target_length,
                    num_beams=self.num_beams,
                    do_sample=False,
                )
                texts.extend(self.tokenizer.batch_decode(out, skip_special_tokens=True))
        return [t.strip() for t in texts]

    def eval_finish(self, acc: dict[str, Any], model: torch.nn.Module, raw: Dataset, features: Dataset,
                    batch_size: int) -> dict[str, float]:
        """ROUGE of generated summaries (a second pass: decoding is not the teacher-forced loss pass)."""
        predictions = self.generate(model, features, batch_size)
        summaries = raw["summary"]
        result = rouge(predictions, [summaries[i] for i in features["example_index"]])
        result["num_examples"] = float(len(features))
        return result
