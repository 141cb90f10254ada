"""Metric wrappers against values worked out by hand (see the comments for the arithmetic)."""

from __future__ import annotations

import pytest

from fednlp_bench.tasks.metrics import (
    classification_metrics,
    normalize_answer,
    rouge,
    span_f1,
    squad_exact,
    squad_f1,
    squad_metrics,
)


def test_classification_accuracy_and_macro_f1() -> None:
    # class 0: P=1, R=1/2 -> F=2/3; class 1: P=1/2, R=1 -> F=2/3; class 2: F=1 -> macro (2/3+2/3+1)/3 = 7/9
    m = classification_metrics([0, 0, 1, 2], [0, 1, 1, 2])
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["macro_f1"] == pytest.approx(7 / 9)


def test_seqeval_span_f1_counts_exact_typed_spans_only() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "I-PER"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-PER", "O"]]
    # gold spans: PER(0-1), LOC(3), PER(0-1); predicted: PER(0-1) ok, ORG(3) wrong type, PER(0) wrong span
    m = span_f1(gold, pred)
    assert m["precision"] == pytest.approx(1 / 3)
    assert m["recall"] == pytest.approx(1 / 3)
    assert m["f1"] == pytest.approx(1 / 3)
    # one missed entity only: P = 2/2, R = 2/3, F = 0.8
    m = span_f1(gold, [["B-PER", "I-PER", "O", "B-LOC"], ["O", "O"]])
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((1.0, 2 / 3, 0.8))


def test_span_f1_rejects_length_mismatch() -> None:
    with pytest.raises(ValueError, match="same lengths"):
        span_f1([["O", "O"]], [["O"]])


def test_squad_normalisation_matches_official_v11() -> None:
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert normalize_answer("an apple a day") == "apple day"
    assert normalize_answer("theatre") == "theatre"  # articles only as whole words


def test_squad_exact_and_f1_hand_values() -> None:
    assert squad_exact("The Cat", "cat") == 1.0
    assert squad_exact("cat sat", "cat") == 0.0
    # pred [cat, sat], gold [cat, sat, down]: 2 shared, P=1, R=2/3 -> F1=0.8
    assert squad_f1("the cat sat", "a cat sat down") == pytest.approx(0.8)
    assert squad_f1("", "cat") == 0.0
    assert squad_f1("dog", "cat") == 0.0


def test_squad_metrics_take_max_over_gold_answers() -> None:
    preds = ["Denver Broncos", "the Panthers"]
    golds = [["Denver Broncos", "Broncos"], ["Carolina Panthers"]]
    # EM: [1, 0]; F1: [1, P=1 R=1/2 -> 2/3]
    m = squad_metrics(preds, golds)
    assert m["exact_match"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx((1 + 2 / 3) / 2)


def test_rouge_hand_values() -> None:
    pred, ref = "the cat sat on the mat", "the cat was on the mat"
    m = rouge([pred], [ref])
    # unigrams: 5 of 6 shared both ways -> 5/6; bigrams: the-cat, on-the, the-mat = 3 of 5 -> 0.6;
    # LCS "the cat on the mat" = 5 -> 5/6
    assert m["rouge1"] == pytest.approx(5 / 6)
    assert m["rouge2"] == pytest.approx(0.6)
    assert m["rougeL"] == pytest.approx(5 / 6)
    # mean over examples: second pair shares nothing
    assert rouge([pred, "dogs"], [ref, "cats"])["rouge1"] == pytest.approx(5 / 12)


# ------------------------------------------------------------------ declarations: inputs and direction
from fednlp_bench.tasks.metric_base import HIGHER, LOWER  # noqa: E402
from fednlp_bench.tasks.metrics import METRICS, direction  # noqa: E402


def test_every_metric_declares_its_inputs_and_which_way_is_better() -> None:
    for metric in METRICS:
        assert metric.inputs and metric.outputs, metric.name
        assert set(metric.outputs.values()) <= {HIGHER, LOWER}
    assert direction("accuracy") == HIGHER and direction("rougeL") == HIGHER and direction("loss") == LOWER
    assert span_f1.better("f1", 0.5, 0.4) and not span_f1.better("f1", 0.4, 0.4)
    with pytest.raises(ValueError, match=r"no metric declares a score 'acuracy' \(declared: \['accuracy'"):
        direction("acuracy")


def test_registered_tasks_headline_metrics_are_declared_higher_is_better() -> None:
    """The leaderboard picks the max of a primary metric: every task's must be declared HIGHER by its metric."""
    from fednlp_bench.tasks.registry import TASKS

    names = TASKS.names()
    assert {"classification", "tagging", "qa", "generation"} <= set(names)
    for name in names:
        assert direction(TASKS.lookup(name).primary_metric) == HIGHER, name


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: classification_metrics([0, 1], [0]), r"classification_metrics: 2 y_true but 1 y_pred"),
        (lambda: classification_metrics([0, "1"], [0, 1]), r"y_true\[1\] is str '1', expected int"),
        (lambda: classification_metrics([0, True], [0, 1]), r"y_true\[1\] is bool"),
        (lambda: squad_metrics(["a"], ["a"]), r"golds\[0\] is str 'a', expected a list"),
        (lambda: squad_metrics(["a"], [[1]]), r"golds\[0\] holds int 1, expected str entries"),
        (lambda: rouge("abc", ["abc"]), r"predictions must be a sequence with one item per example, got str"),
        (lambda: rouge(["a"], [None]), r"references\[0\] is NoneType None, expected str or a list"),
        (lambda: span_f1([["O"], ["O", "O"]], [["O"], ["O"]]), r"example 1 has 2 and 1"),
    ],
)
def test_inputs_are_checked_once_by_the_declaration(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
