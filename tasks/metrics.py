"""The standard metric of each field, as thin wrappers around the reference libraries.

Each metric declares its inputs and which way each score is better
(tasks/metric_base.py); the base class checks the inputs once.
All scores are fractions in [0, 1] (the official SQuAD script prints them x100;
we keep one scale across tasks so leaderboards compare like with like).
SQuAD EM/F1 follow the official v1.1 evaluation script exactly (the HF
``evaluate`` package is not a dependency): lower-case, drop punctuation and
the articles a/an/the, collapse whitespace, then max over the gold answers.
"""

from __future__ import annotations

import functools
import re
import string
from collections import Counter
from typing import Sequence

import numpy as np

from fednlp_bench.tasks.metric_base import HIGHER, LOWER, Input, Metric


# ----------------------------------------------------------------------------- classification
class ClassificationMetrics(Metric):
    """Accuracy and macro-F1 (sklearn; classes absent from both lists are ignored by macro-F1)."""

    name = "classification_metrics"
    inputs = (Input("y_true", int, help="gold label ids"), Input("y_pred", int, help="predicted label ids"))
    outputs = {"accuracy": HIGHER, "macro_f1": HIGHER}

    def compute(self, y_true: Sequence[int], y_pred: Sequence[int], num_labels: int | None = None) -> dict[str, float]:
        from sklearn.metrics import accuracy_score, f1_score

        return {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        }


# ----------------------------------------------------------------------------- tagging
class SpanF1(Metric):
    """Entity-level (exact span and type) precision/recall/F1, seqeval's default CoNLL mode."""

    name = "span_f1"
    inputs = (Input("gold", list, str, "gold BIO tags per sentence"), Input("pred", list, str, "predicted tags"))
    outputs = {"precision": HIGHER, "recall": HIGHER, "f1": HIGHER}
    aligned = ("gold", "pred")

    def compute(self, gold: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
        from seqeval.metrics import f1_score, precision_score, recall_score

        return {
            "precision": float(precision_score(gold, pred, zero_division=0)),
            "recall": float(recall_score(gold, pred, zero_division=0)),
            "f1": float(f1_score(gold, pred, zero_division=0)),
        }


# ----------------------------------------------------------------------------- SQuAD v1.1
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Official SQuAD v1.1 normalisation: lower, strip punctuation and articles, squash spaces."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def squad_exact(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def squad_f1(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


class SquadMetrics(Metric):
    """Mean over questions of the max EM/F1 against any gold answer (a question without gold scores 0)."""

    name = "squad_metrics"
    inputs = (Input("predictions", str, help="one answer per question"),
              Input("golds", list, str, "the gold answers of each question"))
    outputs = {"exact_match": HIGHER, "f1": HIGHER}

    def compute(self, predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
        if not predictions:
            return {"exact_match": 0.0, "f1": 0.0}
        em = [max(squad_exact(p, g) for g in gs) if gs else 0.0 for p, gs in zip(predictions, golds)]
        f1 = [max(squad_f1(p, g) for g in gs) if gs else 0.0 for p, gs in zip(predictions, golds)]
        return {"exact_match": float(np.mean(em)), "f1": float(np.mean(f1))}


# ----------------------------------------------------------------------------- ROUGE
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


class Rouge(Metric):
    """Mean ROUGE-1/2/L F-measure (Google's ``rouge-score``, Porter stemming as in the papers).

    A reference may be a list of strings (several human references, as in
    AESLC's validation/test): each example then scores against the reference
    with the highest F-measure, separately for each ROUGE type
    (``RougeScorer.score_multi``, the usual multi-reference convention).
    """

    name = "rouge"
    inputs = (Input("predictions", str, help="one summary per example"),
              Input("references", (str, list), str, "the reference, or several references, of each example"))
    outputs = {k: HIGHER for k in ROUGE_TYPES}

    def compute(self, predictions: Sequence[str], references: Sequence[str | Sequence[str]],
                use_stemmer: bool = True) -> dict[str, float]:
        scorer = _rouge_scorer(use_stemmer)
        totals = {k: 0.0 for k in ROUGE_TYPES}
        for pred, ref in zip(predictions, references):
            if isinstance(ref, str):
                scores = scorer.score(ref, pred)  # (target, prediction)
            else:
                if not ref:
                    raise ValueError("rouge: an example has an empty list of references")
                scores = scorer.score_multi(list(ref), pred)
            for k in ROUGE_TYPES:
                totals[k] += scores[k].fmeasure
        n = max(len(predictions), 1)
        return {k: totals[k] / n for k in ROUGE_TYPES}


classification_metrics = ClassificationMetrics()
span_f1 = SpanF1()
squad_metrics = SquadMetrics()
rouge = Rouge()
#: Every metric a built-in task reports with.
METRICS: tuple[Metric, ...] = (classification_metrics, span_f1, squad_metrics, rouge)


def direction(score: str) -> str:
    """HIGHER or LOWER for a score a built-in metric declares (``loss``: LOWER); an unknown score is an error."""
    if score == "loss":
        return LOWER
    for metric in METRICS:
        if score in metric.outputs:
            return metric.outputs[score]
    known = sorted({"loss", *(k for m in METRICS for k in m.outputs)})
    raise ValueError(f"no metric declares a score {score!r} (declared: {known})")


class _CachedTokenizer:
    """rouge-score's own tokenizer (lower-case, alphanumerics, Porter stems) with a memo.

    The same references are scored again for every lead length and every
    evaluation round; stemming them once makes the lead baseline ~several x faster.
    """

    def __init__(self, use_stemmer: bool) -> None:
        from rouge_score import tokenizers

        self._tokenize = functools.lru_cache(maxsize=1 << 18)(tokenizers.DefaultTokenizer(use_stemmer=use_stemmer).tokenize)

    def tokenize(self, text: str) -> list[str]:
        return list(self._tokenize(text))


@functools.lru_cache(maxsize=2)
def _rouge_scorer(use_stemmer: bool) -> object:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=_CachedTokenizer(use_stemmer))


def lead_words(document: str, k: int) -> str:
    """The first ``k`` whitespace-separated words of a document (the lead baseline's output)."""
    return " ".join(document.split()[:k])


def lead_baseline(
    val_documents: Sequence[str], val_references: Sequence[str | Sequence[str]],
    test_documents: Sequence[str], test_references: Sequence[str | Sequence[str]],
    metric: str = "rougeL", max_k: int = 15,
) -> dict[str, object]:
    """Lead-k baseline: ``k`` in 1..max_k chosen by ``metric`` on validation, then scored on test.

    A trained summarizer that does not beat copying the first words of the
    input has learnt little; every generation result is reported beside this.
    Ties go to the smaller ``k``.
    """
    if metric not in ROUGE_TYPES:
        raise ValueError(f"lead_baseline: metric {metric!r} is not one of {ROUGE_TYPES}")
    if max_k < 1:
        raise ValueError(f"lead_baseline: max_k={max_k} must be >= 1")
    by_k = {k: rouge([lead_words(d, k) for d in val_documents], val_references) for k in range(1, max_k + 1)}
    best = max(by_k, key=lambda k: (by_k[k][metric], -k))
    return {
        "k": best,
        "chosen_on": "validation",
        "metric": metric,
        "validation": by_k[best],
        "test": rouge([lead_words(d, best) for d in test_documents], test_references),
        "validation_by_k": {str(k): v[metric] for k, v in by_k.items()},
    }
