"""The standard metric of each field, as thin wrappers around the reference libraries.

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


# ----------------------------------------------------------------------------- classification
def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], num_labels: int | None = None) -> dict[str, float]:
    """Accuracy and macro-F1 (sklearn; classes absent from both lists are ignored by macro-F1)."""
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }


# ----------------------------------------------------------------------------- tagging
def span_f1(gold: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
    """Entity-level (exact span and type) precision/recall/F1, seqeval's default CoNLL mode."""
    from seqeval.metrics import f1_score, precision_score, recall_score

    if len(gold) != len(pred) or any(len(g) != len(p) for g, p in zip(gold, pred)):
        raise ValueError("span_f1: gold and predicted tag sequences must have the same lengths")
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


def squad_metrics(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean over questions of the max EM/F1 against any gold answer."""
    if len(predictions) != len(golds):
        raise ValueError(f"squad_metrics: {len(predictions)} predictions for {len(golds)} questions")
    if not predictions:
        return {"exact_match": 0.0, "f1": 0.0}
    em = [max(squad_exact(p, g) for g in gs) if gs else 0.0 for p, gs in zip(predictions, golds)]
    f1 = [max(squad_f1(p, g) for g in gs) if gs else 0.0 for p, gs in zip(predictions, golds)]
    return {"exact_match": float(np.mean(em)), "f1": float(np.mean(f1))}


# ----------------------------------------------------------------------------- ROUGE
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def rouge(
    predictions: Sequence[str], references: Sequence[str | Sequence[str]], use_stemmer: bool = True
) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure (Google's ``rouge-score``, Porter stemming as in the papers).

    A reference may be a list of strings (several human references, as in
    AESLC's validation/test): each example then scores against the reference
    with the highest F-measure, separately for each ROUGE type
    (``RougeScorer.score_multi``, the usual multi-reference convention).
    """
    if len(predictions) != len(references):
        raise ValueError(f"rouge: {len(predictions)} predictions for {len(references)} references")
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
