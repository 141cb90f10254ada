"""Classification on the real 20News files: columns, tokenization cache, training moves the metric."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from fednlp_bench.tasks import get_task
from fednlp_bench.tasks.base import Task

pytestmark = pytest.mark.usefixtures("offline_task_env")


@pytest.fixture(scope="module")
def tiny_task() -> Task:
    """Loaded once: parsing 20News takes seconds."""
    task = get_task("classification", model="tiny", max_train_examples=200, max_eval_examples=50, max_length=32)
    task.load()
    return task


def test_columns_and_partition_key(tiny_task: Task) -> None:
    task = tiny_task
    splits = task.load()
    assert set(splits) == {"train", "validation", "test"}
    train = splits["train"]
    assert {"id", "text", "label", "partition_key", "author", "organization"} <= set(train.column_names)
    assert len(task.label_names) == 20 and task.label_names == sorted(task.label_names)
    assert train["partition_key"] == train["label"]
    # headers are gone from the text (a few bodies quote another message), but survive as columns
    assert sum(t.startswith(("From:", "Subject:")) for t in train["text"]) <= 5
    assert sum("@" in a for a in train["author"]) > 190
    assert all(isinstance(i, str) for i in train["id"])
    # label name agrees with the newsgroup in the id (20News ids are "<group>/<n>")
    assert all(task.label_names[lab] == i.split("/")[0] for lab, i in zip(train["label"], train["id"]))


def test_preprocess_collate_and_cache(tiny_task: Task) -> None:
    task = tiny_task
    train = task.load()["train"]
    feats = task.preprocess(train, train=True)
    assert feats["example_index"] == list(range(200))
    assert max(len(x) for x in feats["input_ids"]) <= 32
    assert feats.cache_files, "tokenization should be cached on disk"
    again = task.preprocess(train, train=True)
    assert again.cache_files[0]["filename"] == feats.cache_files[0]["filename"]
    batch = task.collate([feats[0], feats[1], feats[2]])
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert batch["input_ids"].shape[0] == 3 and batch["labels"].tolist() == train["label"][:3]
    lengths = [len(feats[i]["input_ids"]) for i in range(3)]
    assert batch["attention_mask"].sum(1).tolist() == lengths


def test_build_model_is_deterministic(tiny_task: Task) -> None:
    task = tiny_task
    torch.manual_seed(1)
    a = task.build_model()
    torch.manual_seed(1)
    b = task.build_model()
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), n
    assert a.config.num_labels == 20


def test_tiny_model_trains_and_evaluate_restores_mode(tiny_task: Task, train_steps) -> None:
    task = tiny_task
    train = task.load()["train"].select(range(32))
    feats = task.preprocess(train, train=True)
    model, losses = train_steps(task, feats, steps=60, lr=1e-2)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5  # memorises 32 real messages
    model.train()
    result = task.evaluate(model, train, task.preprocess(train, train=False), batch_size=8)
    assert model.training
    assert result["accuracy"] > 0.3  # training-set accuracy: chance is 0.05
    assert {"accuracy", "macro_f1", "loss"} <= set(result)


@pytest.mark.slow
def test_minilm_learns_20news_above_chance(train_steps) -> None:
    task = get_task("classification", max_train_examples=480, max_eval_examples=150, max_length=48)
    splits = task.load()
    feats = task.preprocess(splits["train"], train=True)
    test_feats = task.preprocess(splits["test"], train=False)
    model, losses = train_steps(task, feats, steps=30, lr=3e-4, batch_size=16)
    result = task.evaluate(model, splits["test"], test_feats, batch_size=50)
    print("classification slow:", losses[:8], losses[-8:], result)
    assert np.mean(losses[-8:]) < np.mean(losses[:8])
    assert result["accuracy"] > 0.15  # held-out, 20 classes: chance is 0.05
