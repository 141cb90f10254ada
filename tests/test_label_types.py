"""No silent label mix-ups: a label column of two types is refused with file:line, unless label_type says how to read it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fednlp_bench import cli
from fednlp_bench.tasks import get_task

pytestmark = pytest.mark.usefixtures("offline_task_env")

TOPICS = ["world", "sports", "tech"]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def news(tmp_path: Path, labels: list[Any], test_labels: list[Any] | None = None) -> Path:
    folder = tmp_path / "news"
    write_jsonl(folder / "train.jsonl", [{"id": str(i), "text": f"text {i}", "label": lab} for i, lab in enumerate(labels)])
    test = test_labels if test_labels is not None else labels[:3]
    write_jsonl(folder / "test.jsonl", [{"id": f"t{i}", "text": f"test {i}", "label": lab} for i, lab in enumerate(test)])
    return folder


def test_an_int_among_string_labels_names_the_line_and_both_types(tmp_path: Path) -> None:
    labels = [TOPICS[i % 3] for i in range(30)]
    labels[12] = 7
    folder = news(tmp_path, labels)
    with pytest.raises(ValueError) as caught:
        get_task("classification", model="tiny", data=str(folder)).load()
    message = str(caught.value)
    assert message.startswith(f"{folder / 'train.jsonl'}:13: label 7 is int, but the labels before it are str")
    assert f"(first at {folder / 'train.jsonl'}:1)" in message and "label_type=str" in message


def test_a_test_split_of_another_type_is_refused_too(tmp_path: Path) -> None:
    folder = news(tmp_path, [i % 3 for i in range(30)], test_labels=["0", "1"])
    with pytest.raises(ValueError, match=rf"{folder / 'test.jsonl'}:1: label '0' is str, but the labels before it are int"):
        get_task("classification", model="tiny", data=str(folder)).load()


def test_label_type_str_reads_every_label_as_text(tmp_path: Path) -> None:
    labels = [TOPICS[i % 3] for i in range(30)]
    labels[12] = 7
    task = get_task("classification", model="tiny", data=str(news(tmp_path, labels)), label_type="str")
    task.load()
    assert task.label_names == ["7", "sports", "tech", "world"]  # 7 is the label "7", said out loud


def test_label_type_int_reads_digit_strings_as_the_same_class(tmp_path: Path) -> None:
    labels: list[Any] = [i % 3 for i in range(30)]
    labels[5], labels[9] = "2", 1.0
    task = get_task("classification", model="tiny", data=str(news(tmp_path, labels)), label_type="int")
    splits = task.load()
    assert task.label_names == ["0", "1", "2"]
    assert len(splits["train"]) + len(splits["validation"]) == 30
    bad = list(labels)
    bad[3] = "sports"
    with pytest.raises(ValueError, match=r"train\.jsonl:4: label 'sports' is not an integer, but label_type=int"):
        get_task("classification", model="tiny", data=str(news(tmp_path, bad)), label_type="int").load()


def test_one_type_throughout_is_read_as_before(tmp_path: Path) -> None:
    task = get_task("classification", model="tiny", data=str(news(tmp_path, [i % 12 for i in range(36)])))
    task.load()
    assert task.label_names == [str(i) for i in range(12)]  # numeric labels sort as numbers


def test_bad_label_type_fails_before_reading(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"label_type='float' is not supported. Choose one of \['str', 'int'\] \(or leave it unset\)"):
        get_task("classification", model="tiny", data=str(tmp_path / "absent"), label_type="float")


def test_the_cli_run_refuses_a_mixed_column_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels = [TOPICS[i % 3] for i in range(30)]
    labels[20] = 7
    folder = news(tmp_path, labels)
    runs = tmp_path / "runs"
    argv = ["run", "--task", "classification", "--data", str(folder), "--model", "tiny", "--scheme", "iid",
            "--clients", "2", "--clients-per-round", "1", "--min-size", "1", "--rounds", "1", "--runs-dir", str(runs),
            "--no-progress"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert f"{folder / 'train.jsonl'}:21: label 7 is int, but the labels before it are str" in err
    assert not runs.exists() or not any(runs.rglob("*"))
    assert cli.main([*argv, "--task-param", "label_type=str"]) == 0
