"""Sequence tagging on the real W-NUT 2017 files: label alignment, span-F1 evaluation, training."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fednlp_bench.tasks import get_task
from fednlp_bench.tasks.base import Task
from fednlp_bench.tasks.tagging import IGNORE, dominant_type

pytestmark = pytest.mark.usefixtures("offline_task_env")


@pytest.fixture(scope="module")
def tiny_task() -> Task:
    task = get_task("tagging", model="tiny", max_train_examples=300, max_eval_examples=100, max_length=64)
    task.load()
    return task


class GoldTagger(torch.nn.Module):
    """Returns one-hot logits of the gold labels: evaluate() must then score span F1 = 1."""

    def __init__(self, num_labels: int) -> None:
        super().__init__()
        self.num_labels = num_labels
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, labels, **_):
        logits = torch.nn.functional.one_hot(labels.clamp(min=0), self.num_labels).float()
        return SimpleNamespace(loss=self.dummy.sum(), logits=logits)


def test_label_set_and_partition_key() -> None:
    full = get_task("tagging", model="tiny")
    full.load()
    assert full.entity_types == ["corporation", "creative-work", "group", "location", "person", "product"]
    assert full.label_names[0] == "O" and len(full.label_names) == 13
    train = full.load()["train"]
    first = train[0]  # "... Empire State Building = ESB ..." : two location spans
    assert first["id"] == "train-0" and first["partition_key"] == full.entity_types.index("location")
    keys = np.asarray(train["partition_key"])
    assert set(keys.tolist()) == set(range(7))
    no_entity = [all(t == "O" for t in tags) for tags in train["tags"]]
    assert (keys == 6).tolist() == no_entity
    assert train["text"][0].startswith("@paulwalk It 's the view")


def test_dominant_type_counts_spans_and_breaks_ties_by_order() -> None:
    types = ["loc", "per"]
    assert dominant_type(["B-per", "I-per", "I-per", "B-loc"], types) == 0  # 1 span each: tie -> "loc"
    assert dominant_type(["B-per", "O", "B-per", "B-loc"], types) == 1
    assert dominant_type(["O", "O"], types) == 2


def test_first_subtoken_labelling(tiny_task: Task) -> None:
    task = tiny_task
    split = task.load()["validation"]
    feats = task.preprocess(split, train=True)
    tok = task.tokenizer
    for i in range(50):
        f, raw = feats[i], split[i]
        labelled = [(p, lab) for p, lab in enumerate(f["labels"]) if lab != IGNORE]
        words = [w for w in f["word_index"] if w >= 0]
        assert words == list(range(len(words)))  # each word labelled once, in order
        assert [lab for _, lab in labelled] == raw["labels_word"][: len(words)]
        if len(f["input_ids"]) < task.max_length:  # not truncated: every word got its label
            assert len(words) == len(raw["tokens"])
        for (p, _), w in zip(labelled, words):  # the labelled piece starts the word
            piece = tok.convert_ids_to_tokens(f["input_ids"][p])
            assert not piece.startswith("##")
            assert raw["tokens"][w].lower().startswith(piece.lower()[:1]) or piece == tok.unk_token


def test_evaluate_scores_gold_predictions_as_perfect(tiny_task: Task) -> None:
    task = tiny_task
    split = task.load()["test"]
    feats = task.preprocess(split, train=False)
    gold = GoldTagger(len(task.label_names))
    whole = [i for i, ids in enumerate(feats["input_ids"]) if len(ids) < task.max_length]
    assert 0 < len(whole) < len(feats)  # a few tweets exceed 64 word pieces
    assert task.evaluate(gold, split, feats.select(whole), batch_size=16)["f1"] == pytest.approx(1.0)
    # with truncation, words past max_length are predicted "O": no false positives, maybe misses
    assert task.evaluate(gold, split, feats, batch_size=16)["precision"] == pytest.approx(1.0)


def test_tiny_model_loss_falls(tiny_task: Task, train_steps) -> None:
    task = tiny_task
    feats = task.preprocess(task.load()["train"], train=True)
    model, losses = train_steps(task, feats, steps=25, lr=5e-3)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5
    model.train()
    split = task.load()["test"]
    result = task.evaluate(model, split, task.preprocess(split, train=False))
    assert model.training and {"f1", "precision", "recall", "loss"} <= set(result)


@pytest.mark.slow
def test_minilm_learns_entities_on_held_out_slice(train_steps) -> None:
    task = get_task("tagging", max_train_examples=800, max_eval_examples=200, max_length=48)
    splits = task.load()
    # Only sentences with an entity (W-NUT is ~90% "O" tokens): a few steps then learn spans, not just "O".
    train = splits["train"].filter(lambda r: r["partition_key"] < len(task.entity_types))
    feats = task.preprocess(train, train=True)
    test_feats = task.preprocess(splits["test"], train=False)
    torch.manual_seed(0)
    before = task.evaluate(task.build_model(), splits["test"], test_feats, batch_size=50)
    model, losses = train_steps(task, feats, steps=30, lr=5e-4, batch_size=16)
    after = task.evaluate(model, splits["test"], test_feats, batch_size=50)
    print("slow:", before, after, losses[:5], losses[-5:])
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert after["loss"] < before["loss"]
    assert after["f1"] > 0.08 and after["f1"] > before["f1"] + 0.05
