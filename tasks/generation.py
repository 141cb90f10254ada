"""Generation / summarization: document -> short summary, scored by ROUGE-1/2/L.

Offline data: AESLC (``$FEDNLP_DATA_DIR/aeslc``; Zhang & Tetreault 2019):
an Enron e-mail body -> its subject line; train 14,436 / validation 1,960 /
test 1,906; ``client_id`` is the mailbox owner (``natural_id`` over it gives
one user per client). Validation and test rows carry three human-written
subject lines in ``annotations``: those splits score against the original
subject *and* the annotations, taking per example and per ROUGE type the
reference with the highest F-measure (``rouge-score``'s ``score_multi``).
A lead baseline (first k words of the body, k chosen on validation) is
computed by :meth:`GenerationTask.baselines` and stored beside every result.

Also: 20News subject-line generation (``--data 20news``: message body ->
``Subject:`` header, ``Re:`` prefixes stripped, because a reply's subject is
copied, not generated); messages with an empty subject or body cannot be
used, so they are an error unless ``skip_invalid_rows`` (then counted).
Local folders may hold any JSONL/CSV/Parquet rows with ``document`` and
``summary`` (optionally ``annotations``, ``client_id``). Hub: ``xsum``,
``gigaword`` (any dataset with ``document``/``summary``).

Model: the offline MiniLM warm-starts a bert2bert ``EncoderDecoderModel``
(encoder and decoder both from MiniLM, as Rothe et al. 2020), ``decoder_start``
= [CLS], ``eos`` = [SEP]; any HF encoder-decoder name (BART, T5...) is used
as it is; ``tiny`` is a 2-layer bert2bert built from configs. Task options for
the bert2bert: ``pointer: true`` adds a copy distribution over the source
(pointer-generator, :mod:`fednlp_bench.tasks.pointer_generator`) and
``decoder_layers: N`` keeps the warm-started decoder's bottom N layers.
"""

from __future__ import annotations

import copy
import logging
import re
import warnings
from typing import Any, Mapping

import torch
from datasets import Dataset
from transformers import AutoConfig, AutoModelForSeq2SeqLM, EncoderDecoderConfig, EncoderDecoderModel

from fednlp_bench.partitioners.data import dataset_fingerprint
from fednlp_bench.paths import TINY_MODEL
from fednlp_bench.tasks.base import evaluating, model_device
from fednlp_bench.checks import at_least, positive_or_null
from fednlp_bench.registry import Param, declare
from fednlp_bench.tasks.common import HFTask
from fednlp_bench.tasks.metrics import lead_baseline, rouge
from fednlp_bench.tasks.pointer_generator import PointerGeneratorEncoderDecoder, truncate_decoder
from fednlp_bench.tasks.models import _source, _unknown, announce_new_weights, quiet_transformers, tiny_bert_config
from fednlp_bench.tasks.messages import split_message
from fednlp_bench.tasks.sources import RawSplits, load_raw, log_skipped, read_csv, read_jsonl, read_parquet

log = logging.getLogger(__name__)
# EncoderDecoderModel warns on every training forward that since v4.12 it computes the loss itself; we pass
# labels the v4.12 way, so the warning describes nothing wrong here and would repeat once per run.
warnings.filterwarnings("ignore", message=r"Version v4\.12\.0 introduces a better way", category=FutureWarning)
IGNORE = -100
# The lead baseline depends only on the evaluated e-mails (keyed by source and the splits' row fingerprints):
# `compare` and `suite` run several algorithms on the same subset in one process, and re-scoring 15 leads with
# rouge-score each time cost seconds per run.
_LEAD_BASELINES: dict[tuple[Any, ...], dict[str, Any]] = {}
_REPLY = re.compile(r"^\s*((re|fwd?|fw)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)


def clean_subject(subject: str) -> str:
    """Drop any chain of ``Re:``/``Fwd:`` prefixes and squash whitespace."""
    return " ".join(_REPLY.sub("", subject).split())


class GenerationTask(HFTask):
    name = "generation"
    primary_metric = "rougeL"
    hub_default = "xsum"
    local_default = "aeslc"
    local_formats = ("jsonl", "csv", "parquet")
    partition_key_meaning = "none (-1): use iid, quantity_skew, feature_cluster or natural_id (group_column=client_id)"
    input_fields = ("id", "document", "summary", "annotations", "client_id", "text")
    #: Longest lead tried by the lead baseline (words).
    lead_max_k = 15

    param_specs = {**HFTask.param_specs, **declare(
        Param("max_target_length", int, 32, at_least(2), "longest summary generated, in tokens"),
        Param("num_beams", int, 1, at_least(1), "beam width of decoding (1: greedy)"),
        Param("pointer", bool, False, help="copy words from the input with a pointer-generator head (bert2bert)"),
        Param("decoder_layers", int, None, positive_or_null, "decoder depth of the warm-started bert2bert "
              "(default: all of the encoder's)"),
    )}

    def check_options(self) -> None:
        self._bert2bert = self._is_bert2bert()
        if (self.pointer or self.decoder_layers is not None) and not self._bert2bert:
            raise ValueError(f"task_params pointer/decoder_layers apply to the warm-started bert2bert only; model "
                             f"{self.model_name!r} is a pretrained encoder-decoder: drop them")
        if self.pointer and self.num_beams != 1:
            raise ValueError(f"task_params.pointer=true decodes greedily; set num_beams: 1 (got {self.num_beams})")

    def _is_bert2bert(self) -> bool:
        if self.model_name == TINY_MODEL:
            depth = tiny_bert_config(1).num_hidden_layers
        else:
            try:
                config = AutoConfig.from_pretrained(_source(self.model_name))
            except (OSError, ValueError) as err:
                raise _unknown(self.model_name, err) from err
            if config.is_encoder_decoder:
                return False
            depth = config.num_hidden_layers
        if self.decoder_layers is not None and self.decoder_layers > depth:
            raise ValueError(f"task_params.decoder_layers={self.decoder_layers} must be in 1..{depth} "
                             f"(the depth of {self.model_name!r}, which warm-starts the decoder)")
        return True

    # ----- data -------------------------------------------------------------
    def _read_raw(self) -> RawSplits:
        cols = self.columns

        def pairs(rows: list) -> list:
            return [(self._as_pair(r, w), w) for r, w in rows]

        readers = {
            "jsonl": lambda p: pairs(read_jsonl(p, (), cols)),
            "csv": lambda p: pairs(read_csv(p, (), cols)),
            "parquet": lambda p: pairs(read_parquet(p, (), cols)),
        }
        raw = load_raw(self.data, self.local_default, self.hub_default, readers, cols)
        if raw.origin.startswith("hub"):
            for rows in raw.splits.values():
                rows[:] = pairs(rows)
        return raw

    def _as_pair(self, record: dict[str, Any], where: str) -> dict[str, Any]:
        """``document``/``summary`` rows as they are; 20News-style ``text`` messages -> body/subject."""
        out: dict[str, Any]
        if "document" in record and "summary" in record:
            out = {"id": record.get("id"), "document": str(record["document"] or ""), "summary": str(record["summary"] or "")}
        elif "text" in record:
            fmt = "email" if self.text_format == "auto" else self.text_format
            if fmt == "plain":
                raise ValueError(f"{where}: text_format=plain, but a 'text' row needs its 'Subject:' header as the "
                                 f"summary; give document/summary fields (or columns: {{document: ..., summary: ...}})")
            headers, body = split_message(str(record["text"]), fmt, where)
            out = {"id": record.get("id"), "document": body, "summary": clean_subject(headers.get("subject", ""))}
        else:
            raise ValueError(
                f"{where}: missing fields: need 'document' and 'summary' (or a 20News-style 'text' message); "
                f"map other names with columns: {{document: ..., summary: ...}}"
            )
        annotations = record.get("annotations")
        if annotations is not None and (not isinstance(annotations, list) or not all(isinstance(a, str) for a in annotations)):
            raise ValueError(f"{where}: 'annotations' must be a list of reference strings, got {annotations!r}")
        out["annotations"] = [a.strip() for a in annotations or [] if a.strip()]
        out["client_id"] = "" if record.get("client_id") is None else str(record["client_id"])
        return out

    def _build_splits(self, raw: RawSplits) -> dict[str, Dataset]:
        out: dict[str, Dataset] = {}
        names = ("id", "text", "document", "summary", "references", "client_id", "partition_key")
        for split, rows in raw.splits.items():
            cols: dict[str, list[Any]] = {k: [] for k in names}
            for n, (record, where) in enumerate(rows):
                document, summary = record["document"].strip(), record["summary"].strip()
                if not document or not summary:
                    self.unusable(split, where, f"empty {'document (body)' if not document else 'summary (subject)'}")
                    continue
                cols["id"].append(str(record["id"] if record.get("id") is not None else f"{split}-{n}"))
                cols["text"].append(document)
                cols["document"].append(document)
                cols["summary"].append(summary)
                cols["references"].append([summary, *record["annotations"]])
                cols["client_id"].append(record["client_id"])
                cols["partition_key"].append(-1)
            if not cols["id"]:
                raise ValueError(f"{raw.origin}: split {split!r} has no rows with both a document and a summary")
            out[split] = Dataset.from_dict(cols)
        log_skipped(self.name, self.skipped, "an empty document or summary (subject)")
        return out

    def baselines(self) -> dict[str, Any]:
        """The lead baseline on this task's (possibly subset) validation and test splits."""
        splits = self.load()
        val, test = splits["validation"], splits["test"]
        key = (self.source, dataset_fingerprint(val), dataset_fingerprint(test), self.primary_metric, self.lead_max_k)
        if key not in _LEAD_BASELINES:
            _LEAD_BASELINES[key] = lead_baseline(val["document"], val["references"], test["document"],
                                                 test["references"], metric=self.primary_metric, max_k=self.lead_max_k)
        return {"lead": copy.deepcopy(_LEAD_BASELINES[key])}

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
        cls = PointerGeneratorEncoderDecoder if self.pointer else EncoderDecoderModel
        if self.model_name == TINY_MODEL:
            vocab = len(tok)
            config = EncoderDecoderConfig.from_encoder_decoder_configs(
                tiny_bert_config(vocab), tiny_bert_config(vocab, is_decoder=True, add_cross_attention=True)
            )
            model = cls(config=config)
        elif self._bert2bert:
            path = _source(self.model_name)
            with quiet_transformers():
                model = cls.from_encoder_decoder_pretrained(path, path)
            new = ["decoder cross-attention", "decoder LM head"] + (["copy head"] if self.pointer else [])
            announce_new_weights(self.model_name, "the bert2bert decoder's cross-attention and LM head"
                                 + (" and the copy head" if self.pointer else ""), new)
        else:
            with quiet_transformers():
                return AutoModelForSeq2SeqLM.from_pretrained(_source(self.model_name))
        for cfg in (model.config, model.generation_config):
            cfg.decoder_start_token_id = tok.cls_token_id
            cfg.bos_token_id = tok.cls_token_id
            cfg.eos_token_id = tok.sep_token_id
            cfg.pad_token_id = tok.pad_token_id
        model.config.vocab_size = model.config.decoder.vocab_size
        if self.decoder_layers is not None:
            truncate_decoder(model, self.decoder_layers)
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
        refs = raw["references"]
        result = rouge(predictions, [refs[i] for i in features["example_index"]])
        result["num_examples"] = float(len(features))
        return result
