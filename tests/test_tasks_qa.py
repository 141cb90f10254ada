"""Extractive QA end-to-end on a QA set built from real W-NUT sentences (answers = entity spans)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fednlp_bench.tasks import get_task
from fednlp_bench.tasks.base import Task
from fednlp_bench.testing.entity_qa import entity_qa_rows, write_entity_qa
from fednlp_bench.tasks.metrics import normalize_answer
from fednlp_bench.tasks.qa import WH_TYPES

pytestmark = pytest.mark.usefixtures("offline_task_env")


@pytest.fixture(scope="module")
def qa_dir(tmp_path_factory: pytest.TempPathFactory, offline_task_env: Path) -> Path:
    out = tmp_path_factory.mktemp("entity_qa")
    counts = write_entity_qa(offline_task_env / "wnut17", out)
    assert counts["train"] > 1000 and counts["validation"] > 300
    return out


@pytest.fixture(scope="module")
def tiny_task(qa_dir: Path) -> Task:
    # max_length 48 with stride 12 makes longer tweets overflow into several windows
    task = get_task("qa", model="tiny", data=str(qa_dir), max_length=48, doc_stride=12,
                    max_train_examples=300, max_eval_examples=120)
    task.load()
    return task


class SpanOracle(torch.nn.Module):
    """Peaks the start/end logits at known positions, looked up by the feature's token ids."""

    def __init__(self, spans: dict[tuple[int, ...], tuple[int, int]]) -> None:
        super().__init__()
        self.spans = spans
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, **_):
        start = torch.zeros(input_ids.shape)
        end = torch.zeros(input_ids.shape)
        for i, ids in enumerate(input_ids.tolist()):
            key = tuple(x for x in ids if x != 0)
            s, e = self.spans[key]
            start[i, s] = end[i, e] = 10.0
        return SimpleNamespace(start_logits=start, end_logits=end)


def test_entity_qa_rows_use_real_spans() -> None:
    rows = entity_qa_rows([{"id": "s", "tokens": ["I", "love", "New", "York", "and", "Bob"],
                            "tags": ["O", "O", "B-location", "I-location", "O", "B-person"]}])
    assert [(r["question"], r["answers"]) for r in rows] == [
        ("Which location is mentioned?", {"text": ["New York"], "answer_start": [7]}),
        ("Who is mentioned?", {"text": ["Bob"], "answer_start": [20]}),
    ]


def test_columns_and_question_type(tiny_task: Task) -> None:
    train = tiny_task.load()["train"]
    assert {"id", "text", "question", "context", "answers", "partition_key"} <= set(train.column_names)
    for q, key in zip(train["question"], train["partition_key"]):
        expected = "who" if q.startswith("Who") else ("which" if q.startswith("Which") else "what")
        assert WH_TYPES[key] == expected
    assert set(tiny_task.load()) == {"train", "validation", "test"}


def test_training_features_point_at_the_answer(tiny_task: Task) -> None:
    task = tiny_task
    split = task.load()["train"]
    feats = task.preprocess(split, train=True)
    assert len(feats) > len(split)  # some contexts overflow into several windows
    assert sorted(set(feats["example_index"])) == list(range(len(split)))
    hits = 0
    for f in feats:
        if f["start_positions"] == 0:
            continue  # answer outside this window -> [CLS]
        hits += 1
        span = task.tokenizer.decode(f["input_ids"][f["start_positions"] : f["end_positions"] + 1])
        gold = split[f["example_index"]]["answers"]["text"][0]
        assert normalize_answer(span).replace(" ", "") == normalize_answer(gold).replace(" ", "")
    assert hits >= 0.9 * len(split)


def test_post_processing_recovers_gold_text_across_windows(tiny_task: Task) -> None:
    task = tiny_task
    split = task.load()["validation"]
    train_feats = task.preprocess(split, train=True)  # same windows, with gold positions
    eval_feats = task.preprocess(split, train=False)
    assert train_feats["input_ids"] == eval_feats["input_ids"]
    assert len(eval_feats) > len(split)
    spans = {tuple(f["input_ids"]): (f["start_positions"], f["end_positions"]) for f in train_feats}
    preds = task.predict(SpanOracle(spans), split, eval_feats, batch_size=16)
    golds = [a["text"][0] for a in split["answers"]]
    assert preds == golds  # exact character spans, mapped back through the offsets
    result = task.evaluate(SpanOracle(spans), split, eval_feats, batch_size=16)
    assert result["exact_match"] == 1.0 and result["f1"] == 1.0


def test_tiny_model_loss_falls_and_evaluates(tiny_task: Task, train_steps) -> None:
    task = tiny_task
    feats = task.preprocess(task.load()["train"], train=True)
    model, losses = train_steps(task, feats, steps=25, lr=5e-3)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3
    split = task.load()["test"]
    result = task.evaluate(model, split, task.preprocess(split, train=False))
    assert model.training and 0.0 <= result["exact_match"] <= result["f1"] <= 1.0


def test_flat_jsonl_pipeline(tmp_path: Path) -> None:
    rows = [{"id": f"q{i}", "context": f"Ada Lovelace wrote the first program in {1840 + i}.",
             "question": "When was the first program written?",
             "answers": {"text": [str(1840 + i)], "answer_start": [40]}} for i in range(6)]
    for split in ("train", "dev"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = get_task("qa", model="tiny", data=str(tmp_path), max_length=32)
    splits = task.load()
    # dev is what SQuAD reports on, so it becomes test; validation is held out of train (1 of 6 rows).
    assert {k: len(v) for k, v in splits.items()} == {"train": 5, "validation": 1, "test": 6}
    assert task.validation_info["test_from"] == "validation"
    assert splits["train"]["partition_key"] == [WH_TYPES.index("when")] * 5
    feats = task.preprocess(splits["train"], train=True)
    assert all(task.tokenizer.decode(f["input_ids"][f["start_positions"]: f["end_positions"] + 1]) == a["text"][0]
               for f, a in zip(feats, splits["train"]["answers"]))


@pytest.mark.slow
def test_minilm_learns_entity_qa(qa_dir: Path, train_steps) -> None:
    task = get_task("qa", data=str(qa_dir), max_length=64, max_train_examples=800, max_eval_examples=150)
    splits = task.load()
    feats = task.preprocess(splits["train"], train=True)
    test_feats = task.preprocess(splits["test"], train=False)
    torch.manual_seed(0)
    before = task.evaluate(task.build_model(), splits["test"], test_feats, batch_size=50)
    model, losses = train_steps(task, feats, steps=40, lr=2e-4, batch_size=16)
    after = task.evaluate(model, splits["test"], test_feats, batch_size=50)
    print("slow:", before, after, losses[:5], losses[-5:])
    assert np.mean(losses[-8:]) < 0.6 * np.mean(losses[:5])
    assert after["f1"] > before["f1"] + 0.15 and after["exact_match"] > before["exact_match"]
