"""Data sources and bad input: every error names the file and line (or what was looked for)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fednlp_bench.paths import DataSourceError
from fednlp_bench.tasks import get_task, task_names
from fednlp_bench.tasks.common import subset_indices
from fednlp_bench.tasks.generation import clean_subject
from fednlp_bench.tasks.qa import question_type
from fednlp_bench.tasks.messages import author_id, split_message
from fednlp_bench.tasks.formats import read_conll, read_squad_json

DATA = Path(os.environ.get("FEDNLP_DATA_DIR", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FEDNLP_DATA_DIR", str(DATA))
    monkeypatch.setenv("FEDNLP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_registry_lists_the_four_tasks_and_rejects_unknown_names() -> None:
    assert task_names() == ["classification", "tagging", "qa", "generation"]  # registry order
    with pytest.raises(ValueError, match=r"unknown task 'taging'.*Did you mean 'tagging'"):
        get_task("taging")


def test_unknown_model_fails_before_loading_data() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'no-such-model-xyz'"):
        get_task("classification", model="no-such-model-xyz")


def test_missing_data_lists_what_was_looked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDNLP_DATA_DIR", str(tmp_path))
    task = get_task("qa", model="tiny")
    with pytest.raises(DataSourceError, match=r"looked for \$FEDNLP_DATA_DIR/squad.*hub dataset 'squad'"):
        task.load()
    with pytest.raises(DataSourceError, match="no such data directory"):
        get_task("classification", model="tiny", data="./does/not/exist").load()


def test_folder_without_train_file_names_expected_files(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d" / "test.jsonl", [{"id": "a", "text": "x", "label": "l"}])
    with pytest.raises(DataSourceError, match=r"no training file.*train\.jsonl, train\.csv"):
        get_task("classification", model="tiny", data=str(tmp_path / "d")).load()


def test_missing_field_names_file_and_line(tmp_path: Path) -> None:
    d = tmp_path / "news"
    write_jsonl(d / "train.jsonl", [{"id": "a", "text": "hello", "label": "x"}, {"id": "b", "text": "hi"}])
    write_jsonl(d / "test.jsonl", [{"id": "c", "text": "hey", "label": "x"}])
    with pytest.raises(ValueError, match=r"train\.jsonl:2: missing field\(s\) 'label'"):
        get_task("classification", model="tiny", data=str(d)).load()


def test_invalid_json_names_line(tmp_path: Path) -> None:
    d = tmp_path / "news"
    d.mkdir()
    (d / "train.jsonl").write_text('{"text": "a", "label": "x"}\n{oops\n')
    write_jsonl(d / "test.jsonl", [{"text": "hey", "label": "x"}])
    with pytest.raises(ValueError, match=r"train\.jsonl:2: not valid JSON"):
        get_task("classification", model="tiny", data=str(d)).load()


def test_unseen_test_label_is_an_error(tmp_path: Path) -> None:
    d = tmp_path / "news"
    write_jsonl(d / "train.jsonl", [{"text": "a b", "label": "x"}, {"text": "c d", "label": "y"}])
    write_jsonl(d / "test.jsonl", [{"text": "e", "label": "x"}, {"text": "f", "label": "z"}])
    with pytest.raises(ValueError, match=r"test\.jsonl:2: label 'z' does not occur in the training split"):
        get_task("classification", model="tiny", data=str(d)).load()


def test_headers_stripped_empty_bodies_kept_and_empty_texts_refused(tmp_path: Path) -> None:
    d = tmp_path / "news"
    rows = [
        {"id": "1", "text": "From: A <a@x.org>\nSubject: hi\nOrganization: X Corp\n\nbody one", "label": "g1"},
        {"id": "2", "text": "From: b@y.org\nSubject: empty\n\n   \n", "label": "g2"},
        {"id": "3", "text": "plain text without headers: kept whole", "label": "g2"},
        {"id": "4", "text": "From: c@y.org\nSubject: more\n\nbody four", "label": "g1"},
    ]
    write_jsonl(d / "train.jsonl", rows)
    write_jsonl(d / "validation.jsonl", rows[:1])
    write_jsonl(d / "test.jsonl", rows[:1])
    task = get_task("classification", model="tiny", data=str(d))
    train = task.load()["train"]
    assert task.skipped == {"train": 0, "validation": 0, "test": 0}
    # A message whose body is empty stays (as sklearn's remove=headers keeps it): no row is lost.
    assert train["text"] == ["body one", "", "plain text without headers: kept whole", "body four"]
    assert train["author"] == ["a@x.org", "b@y.org", "", "c@y.org"]
    assert train["organization"] == ["x corp", "", "", ""]
    assert task.label_names == ["g1", "g2"]
    assert train["partition_key"] == [0, 1, 1, 0]
    write_jsonl(d / "test.jsonl", [rows[0], {"id": "5", "text": "  ", "label": "g1"}])
    with pytest.raises(ValueError, match=r"test\.jsonl:2: empty 'text'.*--task-skip-invalid-rows"):
        get_task("classification", model="tiny", data=str(d)).load()
    task = get_task("classification", model="tiny", data=str(d), skip_invalid_rows=True)
    assert len(task.load()["test"]) == 1 and task.skipped == {"train": 0, "validation": 0, "test": 1}


def test_tag_outside_label_set_names_file_and_line(tmp_path: Path) -> None:
    d = tmp_path / "ner"
    write_jsonl(d / "train.jsonl", [{"id": "a", "tokens": ["Paris", "!"], "tags": ["B-loc", "O"]}])
    write_jsonl(d / "test.jsonl", [{"id": "b", "tokens": ["Bob"], "tags": ["B-loc"]}, {"id": "c", "tokens": ["Bob"], "tags": ["B-per"]}])
    with pytest.raises(ValueError, match=r"test\.jsonl:2: tag 'B-per' is not in the label set"):
        get_task("tagging", model="tiny", data=str(d)).load()


def test_token_tag_count_mismatch(tmp_path: Path) -> None:
    d = tmp_path / "ner"
    write_jsonl(d / "train.jsonl", [{"tokens": ["a", "b"], "tags": ["O"]}])
    write_jsonl(d / "test.jsonl", [{"tokens": ["a"], "tags": ["O"]}])
    with pytest.raises(ValueError, match=r"train\.jsonl:1: 2 tokens but 1 tags"):
        get_task("tagging", model="tiny", data=str(d)).load()


def test_answer_start_must_match_context(tmp_path: Path) -> None:
    d = tmp_path / "qa"
    good = {"id": "q1", "context": "Paris is in France.", "question": "Where is Paris?", "answers": {"text": ["France"], "answer_start": [12]}}
    bad = {**good, "id": "q2", "answers": {"text": ["France"], "answer_start": [3]}}
    write_jsonl(d / "train.jsonl", [good, bad])
    write_jsonl(d / "validation.jsonl", [good])
    with pytest.raises(ValueError, match=r"train\.jsonl:2: answer_start=3 does not match.*occurs at 12"):
        get_task("qa", model="tiny", data=str(d)).load()


def test_squad_nested_json_reader_and_errors(tmp_path: Path) -> None:
    doc = {"data": [{"title": "T", "paragraphs": [{"context": "Ada wrote code.", "qas": [
        {"id": "x1", "question": "Who wrote code?", "answers": [{"text": "Ada", "answer_start": 0}]}]}]}]}
    (tmp_path / "train-v1.1.json").write_text(json.dumps(doc))
    rows = read_squad_json(tmp_path / "train-v1.1.json")
    assert rows[0][0]["answers"] == {"text": ["Ada"], "answer_start": [0]}
    assert "question id x1" in rows[0][1]
    doc["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 4
    (tmp_path / "dev-v1.1.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"dev-v1\.1\.json \(question id x1\): answer_start=4"):
        get_task("qa", model="tiny", data=str(tmp_path)).load()


def test_conll_reader(tmp_path: Path) -> None:
    p = tmp_path / "train.conll"
    p.write_text("-DOCSTART- O\n\nEU\tB-ORG\nrejects\tO\n\nPeter B-PER\nBlackburn I-PER\n")
    rows = read_conll(p)
    assert [r["tokens"] for r, _ in rows] == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert [r["tags"] for r, _ in rows] == [["B-ORG", "O"], ["B-PER", "I-PER"]]
    assert rows[1][1].endswith("train.conll:6")
    (tmp_path / "bad.conll").write_text("lonely\n")
    with pytest.raises(ValueError, match=r"bad\.conll:1"):
        read_conll(tmp_path / "bad.conll")


def test_message_helpers() -> None:
    headers, body = split_message(" folded!path\nFrom: x@y.z (X)\nArticle-I.D.: 1\nSubject: Re: RE: hi\n\nhello\n\nworld")
    assert headers["subject"] == "Re: RE: hi" and body == "hello\n\nworld"
    assert split_message("Note: not a header block\nsecond line\n\nbody")[0] == {}
    assert clean_subject("Re: RE:Re: Fwd:  Jupiter  probe") == "Jupiter probe"
    assert author_id("Mathew <Mathew@Mantis.co.uk>") == "mathew@mantis.co.uk"
    assert [question_type(q) for q in ("In what year?", "Whom did he meet?", "Name the river.")] == [0, 2, 7]


def test_subset_is_seeded_random_and_ordered() -> None:
    a = subset_indices(100, 10, seed=0)
    assert a == subset_indices(100, 10, seed=0) and a == sorted(a) and len(set(a)) == 10
    assert a != subset_indices(100, 10, seed=1)
    assert a != list(range(10))
    assert subset_indices(5, 10, seed=0) is None


def test_max_examples_slice_real_data() -> None:
    task = get_task("tagging", model="tiny", max_train_examples=50, max_eval_examples=20, seed=3)
    splits = task.load()
    assert {k: len(v) for k, v in splits.items()} == {"train": 50, "validation": 20, "test": 20}
    again = get_task("tagging", model="tiny", max_train_examples=50, max_eval_examples=20, seed=3).load()
    assert splits["train"]["id"] == again["train"]["id"]
    with pytest.raises(ValueError, match="max_train_examples=0"):
        get_task("tagging", model="tiny", max_train_examples=0)


def test_validation_may_take_a_smaller_subset_than_test() -> None:
    """Validation is read every evaluated round, test once: the cpu tier's AESLC cells validate on a subset."""
    task = get_task("tagging", model="tiny", max_validation_examples=30, seed=3)
    sizes = {k: len(v) for k, v in task.load().items()}
    full = {k: len(v) for k, v in get_task("tagging", model="tiny", seed=3).load().items()}
    assert sizes == {**full, "validation": 30} and full["validation"] > 30
    both = get_task("tagging", model="tiny", max_eval_examples=40, max_validation_examples=30, seed=3).load()
    assert (len(both["validation"]), len(both["test"])) == (30, 40)
    # The same seeded rows as max_eval_examples=30 would give validation: one subset rule for both fields.
    assert both["validation"]["id"] == get_task("tagging", model="tiny", max_eval_examples=30,
                                                seed=3).load()["validation"]["id"]
    with pytest.raises(ValueError, match="max_validation_examples=0"):
        get_task("tagging", model="tiny", max_validation_examples=0)


def test_datasets_command_lists_sources_and_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from fednlp_bench.commands import datasets

    parser = argparse.ArgumentParser()
    datasets.register(parser.add_subparsers())
    args = parser.parse_args(["datasets", "--task", "tagging", "--task", "qa", "--json"])
    assert args.func(args) == 0
    rows = {r["task"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["tagging"]["splits"] == {"train": 3394, "validation": 1009, "test": 1287}
    assert rows["tagging"]["source"] == f"local {DATA / 'wnut17'}"
    # The offline SQuAD v1.1 dev re-split by article (../shared/DATA.md); validation = whole articles of train.
    assert rows["qa"]["source"] == f"local {DATA / 'squad'}"
    assert rows["qa"]["splits"] == {"train": 7004, "validation": 997, "test": 2569}
    assert rows["qa"]["validation"]["split_by"].startswith("whole title groups")
    assert rows["tagging"]["validation"]["source"] == "dataset"
    assert rows["tagging"]["skipped"] == {"train": 0, "validation": 0, "test": 0}
    assert rows["qa"]["partition_key"].startswith("question type")
    with pytest.raises(ValueError, match="unknown task 'tagger'"):
        args = parser.parse_args(["datasets", "--task", "tagger"])
        args.func(args)
