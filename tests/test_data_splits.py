"""Issue 10: a validation split for every task, test evaluated once at the end, no silent data loss, user data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fednlp_bench import cli
from fednlp_bench.config import RunConfig
from fednlp_bench.engine.run import runner, sources
from fednlp_bench.testing.toy import ToyTask, toy_partition
from fednlp_bench.results.record import RunRecord
from fednlp_bench.tasks import get_task
from fednlp_bench.tasks.metrics import lead_baseline, lead_words, rouge
from fednlp_bench.tasks.messages import looks_like_email, split_message
from fednlp_bench.tasks.sources import parse_hub_name
from fednlp_bench.tasks.tagging import bio_error, iob1_to_bio

pytestmark = pytest.mark.usefixtures("offline_task_env")

#: Plain news texts that open with "Word:" (the AG-News rows the old header rule dropped).
PLAIN = [
    "MLB: Milwaukee 7, St. Louis 6 Scott Podsednik and Keith Ginter homered.",
    "PSP: Region Free There have been reports that the PSP is region free.",
]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ----------------------------------------------------------------------------- text formats
def test_auto_needs_real_header_names() -> None:
    assert [looks_like_email(t) for t in PLAIN] == [False, False]
    assert split_message(PLAIN[0]) == ({}, PLAIN[0])
    assert not looks_like_email("Note: x\nKeywords: y\n\nbody")  # header-shaped, but no From/Subject
    msg = "From: a@b.c\nSubject: hi\nLines: 2\n\nthe body"
    assert looks_like_email(msg) and split_message(msg) == ({"from": "a@b.c", "subject": "hi", "lines": "2"}, "the body")
    assert split_message(msg, "plain") == ({}, msg)
    with pytest.raises(ValueError, match=r"f\.jsonl:3: text_format=email but the text does not open with a header"):
        split_message("A sentence, no headers.\n\nMore.", "email", "f.jsonl:3")
    assert split_message(PLAIN[0], "email") == ({"mlb": PLAIN[0][5:]}, "")  # email: any header-shaped opening


def test_word_colon_texts_are_kept_whole_in_every_task(tmp_path: Path) -> None:
    d = tmp_path / "news"
    write_jsonl(d / "train.jsonl", [{"id": str(i), "text": t, "label": "sports"} for i, t in enumerate(PLAIN * 2)])
    write_jsonl(d / "test.jsonl", [{"id": "t", "text": PLAIN[1], "label": "sports"}])
    task = get_task("classification", model="tiny", data=str(d))
    splits = task.load()
    assert sorted([*splits["train"]["text"], *splits["validation"]["text"]]) == sorted(PLAIN * 2)
    assert splits["test"]["text"] == [PLAIN[1]] and task.skipped == {"train": 0, "test": 0}
    write_jsonl(d / "test.jsonl", [{"id": "t", "text": "no header here", "label": "sports"}])
    with pytest.raises(ValueError, match=r"test\.jsonl:1: text_format=email"):
        get_task("classification", model="tiny", data=str(d), text_format="email").load()

    g = tmp_path / "gen"
    write_jsonl(g / "train.jsonl", [{"id": str(i), "document": t, "summary": "Re: PSP"} for i, t in enumerate(PLAIN * 2)])
    write_jsonl(g / "test.jsonl", [{"id": "t", "document": PLAIN[0], "summary": "MLB"}])
    gen = get_task("generation", model="tiny", data=str(g)).load()
    assert sorted([*gen["train"]["document"], *gen["validation"]["document"]]) == sorted(PLAIN * 2)

    q = tmp_path / "qa"
    ctx = PLAIN[0]
    row = {"context": ctx, "question": "Who homered?", "answers": {"text": ["Scott Podsednik"], "answer_start": ctx.index("Scott")}}
    row["answers"]["answer_start"] = [row["answers"]["answer_start"]]
    write_jsonl(q / "train.jsonl", [{**row, "id": f"q{i}"} for i in range(3)])
    write_jsonl(q / "test.jsonl", [{**row, "id": "t"}])
    assert get_task("qa", model="tiny", data=str(q)).load()["test"]["context"] == [ctx]

    n = tmp_path / "ner"
    toks = PLAIN[0].split()
    write_jsonl(n / "train.jsonl", [{"id": str(i), "tokens": toks, "tags": ["B-org"] + ["O"] * (len(toks) - 1)} for i in range(3)])
    write_jsonl(n / "test.jsonl", [{"id": "t", "tokens": toks, "tags": ["O"] * len(toks)}])
    assert get_task("tagging", model="tiny", data=str(n)).load()["test"]["tokens"] == [toks]


# ----------------------------------------------------------------------------- validation split
def test_20news_validation_is_a_stratified_seeded_holdout() -> None:
    task = get_task("classification", model="tiny", seed=0)
    splits = task.load()
    sizes = {k: len(v) for k, v in splits.items()}
    assert sizes == {"train": 10182, "validation": 1132, "test": 7532}  # 11,314 + 7,532: no row lost
    assert task.skipped == {"train": 0, "test": 0}
    info = task.validation_info
    assert info == {"source": "held out of train", "test_from": "test", "fraction": 0.1, "seed": 0,
                    "split_by": "stratified by label", "rows": 1132, "train_rows_before": 11314}
    assert not set(splits["train"]["id"]) & set(splits["validation"]["id"])
    per_label = np.bincount(splits["validation"]["label"], minlength=20) / (
        np.bincount(splits["validation"]["label"], minlength=20) + np.bincount(splits["train"]["label"], minlength=20))
    assert np.all(np.abs(per_label - 0.1) < 0.01)
    again = get_task("classification", model="tiny", seed=0).load()["validation"]["id"]
    other = get_task("classification", model="tiny", seed=1).load()["validation"]["id"]
    assert again == splits["validation"]["id"] and other != again


def test_squad_holds_out_whole_articles_and_partitions_by_title() -> None:
    from fednlp_bench.partitioners import partition_dataset

    task = get_task("qa", model="tiny")
    splits = task.load()
    assert {k: len(v) for k, v in splits.items()} == {"train": 7004, "validation": 997, "test": 2569}
    titles = {k: set(v["title"]) for k, v in splits.items()}
    assert len(titles["train"]) == 33 and len(titles["validation"]) == 3 and len(titles["test"]) == 12
    assert not titles["train"] & titles["validation"] and not titles["train"] & titles["test"]
    part = partition_dataset(splits["train"], scheme="natural_id", num_clients=None, seed=0, min_size=1,
                             label_column="partition_key", group_column="title")
    assert part.num_clients == 33
    train_titles = np.asarray(splits["train"]["title"])
    assert all(len(set(train_titles[part.indices(c)])) == 1 for c in range(part.num_clients))


def test_aeslc_references_clients_and_lead_baseline(monkeypatch: pytest.MonkeyPatch) -> None:
    from fednlp_bench.tasks import generation
    from fednlp_bench.partitioners import partition_dataset

    task = get_task("generation", model="tiny", max_eval_examples=200)
    splits = task.load()
    assert task.source.endswith("aeslc") and len(splits["train"]) == 14436
    assert task.validation_info["source"] == "dataset"
    assert all(len(r) == 4 and r[0] == s for r, s in zip(splits["test"]["references"], splits["test"]["summary"]))
    assert all(len(r) == 1 for r in splits["train"]["references"][:100])  # train rows have no annotations
    assert len(set(splits["train"]["client_id"])) == 143
    part = partition_dataset(splits["train"], scheme="natural_id", num_clients=None, seed=0, min_size=1,
                             label_column="partition_key", group_column="client_id")
    assert part.num_clients == 143
    calls: list[int] = []

    def counted_lead_baseline(*args: object, **kwargs: object) -> dict:
        calls.append(1)
        return lead_baseline(*args, **kwargs)

    monkeypatch.setattr(generation, "_LEAD_BASELINES", {})
    monkeypatch.setattr(generation, "lead_baseline", counted_lead_baseline)
    lead = task.baselines()["lead"]
    assert 1 <= lead["k"] <= task.lead_max_k and lead["chosen_on"] == "validation"
    assert lead["validation"]["rougeL"] == max(lead["validation_by_k"].values())
    # Lead-k of an e-mail body against its subject: small but clearly above 0 (real numbers, seeded subset).
    assert 0.05 < lead["test"]["rougeL"] < 0.4
    # Scored once per process and subset; each caller gets its own copy of the stored result.
    lead["test"]["rougeL"] = -1.0
    again = task.baselines()["lead"]
    assert again["test"]["rougeL"] > 0.05 and again["validation_by_k"] == lead["validation_by_k"]
    assert len(calls) == 1


def test_multi_reference_rouge_takes_the_best_reference() -> None:
    single = rouge(["budget meeting today"], ["budget meeting"])["rougeL"]
    multi = rouge(["budget meeting today"], [["lunch plans", "budget meeting"]])["rougeL"]
    assert single == multi == pytest.approx(0.8)
    assert rouge(["lunch"], [["lunch plans", "budget meeting"]])["rouge1"] == pytest.approx(2 / 3)
    assert lead_words("  a b\n c d ", 3) == "a b c"
    base = lead_baseline(["x y z w"], [["x y"]], ["p q r"], [["p q", "zz"]], max_k=4)
    assert base["k"] == 2 and base["test"]["rougeL"] == pytest.approx(1.0)


# ----------------------------------------------------------------------------- user data
@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_column_mapping_for_each_file_format(tmp_path: Path, fmt: str) -> None:
    rows = [{"body": f"text number {i}", "topic": ["world", "sports", "tech"][i % 3]} for i in range(30)]
    d = tmp_path / fmt
    d.mkdir()
    for split, part in (("train", rows), ("test", rows[:6])):
        path = d / f"{split}.{fmt}"
        if fmt == "jsonl":
            write_jsonl(path, part)
        elif fmt == "csv":
            path.write_text("body,topic\n" + "".join(f"{r['body']},{r['topic']}\n" for r in part))
        else:
            pq.write_table(pa.Table.from_pylist(part), path)
    task = get_task("classification", model="tiny", data=str(d), columns={"text": "body", "label": "topic"})
    splits = task.load()
    assert task.label_names == ["sports", "tech", "world"]
    assert len(splits["train"]) + len(splits["validation"]) == 30 and len(splits["validation"]) == 3
    assert sorted(splits["validation"]["label"]) == [0, 1, 2]  # stratified: one of each topic
    with pytest.raises(ValueError, match=r"(lacks column\(s\) \['text'|missing field\(s\) 'text').*columns: \{field: column\}"):
        get_task("classification", model="tiny", data=str(d)).load()
    with pytest.raises(ValueError, match=r"columns: 'txt' is not a field of task 'classification'"):
        get_task("classification", model="tiny", data=str(d), columns={"txt": "body"})


def test_tagging_checks_bio_and_converts_iob1(tmp_path: Path) -> None:
    assert bio_error(["B-PER", "I-PER", "O", "B-LOC"]) is None
    assert "follows 'O'" in bio_error(["O", "I-PER"])
    assert iob1_to_bio(["I-PER", "I-PER", "B-PER", "O", "I-LOC"]) == ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]
    d = tmp_path / "ner"
    write_jsonl(d / "train.jsonl", [{"tokens": ["Ann", "Lee", "met", "Bob"], "tags": ["I-PER", "I-PER", "O", "I-PER"]}] * 3)
    write_jsonl(d / "test.jsonl", [{"tokens": ["Bob"], "tags": ["I-PER"]}])
    with pytest.raises(ValueError, match=r"train\.jsonl:1: not valid BIO/IOB2 tags.*looks like IOB1.*tag_scheme=iob1"):
        get_task("tagging", model="tiny", data=str(d)).load()
    task = get_task("tagging", model="tiny", data=str(d), tag_scheme="iob1")
    splits = task.load()
    assert task.label_names == ["O", "B-PER", "I-PER"]
    assert splits["test"]["tags"] == [["B-PER"]]
    write_jsonl(d / "test.jsonl", [{"tokens": ["Bob"], "tags": ["S-PER"]}])
    with pytest.raises(ValueError, match=r"test\.jsonl:1: not valid BIO/IOB2 tags: tag 'S-PER'"):
        get_task("tagging", model="tiny", data=str(d), tag_scheme="iob1").load()


def test_hub_names_take_a_config(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    assert parse_hub_name("conll2003") == ("conll2003", None)
    assert parse_hub_name("glue:sst2") == ("glue", "sst2")
    calls: list[tuple] = []

    def fake_load(path: str, *config: str) -> datasets.DatasetDict:
        calls.append((path, *config))
        ds = datasets.Dataset.from_dict({"sentence": ["good", "bad", "fine", "meh"], "label": [1, 0, 1, 0]})
        return datasets.DatasetDict({"train": ds, "validation": ds})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    task = get_task("classification", model="tiny", data="glue:sst2", columns={"text": "sentence"})
    splits = task.load()
    assert calls == [("glue", "sst2")] and task.source == "hub glue:sst2"
    assert len(splits["test"]) == 4 and task.validation_info["test_from"] == "validation"


def test_partition_cli_gives_the_same_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "bad"
    d.mkdir()
    (d / "train.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": \n')
    assert cli.main(["partition", "--data", str(d), "--scheme", "iid", "--clients", "2", "--out", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"fednlp-bench partition: error: {d / 'train.jsonl'}:2: not valid JSON (Expecting value); each line must be one JSON object"
    assert not (tmp_path / "p.json").exists()


# ----------------------------------------------------------------------------- engine
class CountingToy(ToyTask):
    """Toy task whose metrics say which split they came from."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(n_train=80, n_test=50, n_val=30, **kwargs)
        self.evaluated: list[int] = []

    def evaluate(self, model: Any, raw: Any, features: Any, batch_size: int = 32) -> dict[str, float]:
        self.evaluated.append(len(raw))
        return {**super().evaluate(model, raw, features, batch_size), "num_examples": float(len(raw))}


@pytest.mark.parametrize("best", [False, True])
def test_rounds_read_validation_and_test_is_evaluated_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, best: bool) -> None:
    monkeypatch.setattr(sources, "build_partition", toy_partition)
    task = CountingToy(seed=0)
    config = RunConfig(task="toy", model="toy", partition={"scheme": "iid", "num_clients": 4, "min_size": 1},
                       rounds=4, clients_per_round=2, lr=0.5, optimizer="sgd", batch_size=8, test_best_round=best)
    record = runner.run_experiment(config, tmp_path, run_id="r", task=task, progress=False)
    assert [r.metrics["num_examples"] for r in record.rounds] == [30.0] * 4  # every round: validation
    assert record.final_metrics["num_examples"] == 50.0  # the final model on test
    assert record.test["split"] == "test" and record.test["rows"] == 50
    assert task.evaluated[:4] == [30] * 4 and task.evaluated[4] == 50
    saved = RunRecord.load(tmp_path / "r")
    assert saved.final_metrics == record.final_metrics and saved.test == record.test
    if best:
        got = record.test["best_round"]
        accs = [r.metrics["accuracy"] for r in record.rounds]
        assert got["round"] == 1 + int(np.argmax(accs)) and got["validation"]["accuracy"] == max(accs)
        assert got["test"]["num_examples"] == 50.0
        assert task.evaluated.count(50) == (1 if got["round"] == 4 else 2)
    else:
        assert record.test["best_round"] is None and task.evaluated.count(50) == 1


def test_task_params_are_checked_before_data(tmp_path: Path) -> None:
    config = RunConfig(task="tagging", model="tiny", task_params={"tag_schema": "iob1"})
    with pytest.raises(ValueError, match=r"task 'tagging' has no parameter 'tag_schema'\. Did you mean 'tag_scheme'"):
        sources.build_task(config)
    task = sources.build_task(RunConfig(task="tagging", model="tiny", columns={"tokens": "words"},
                                       task_params={"tag_scheme": "iob1", "validation_fraction": 0.2}))
    assert task.tag_scheme == "iob1" and task.columns == {"tokens": "words"} and task.validation_fraction == 0.2
