"""No partial output: every command that writes files refuses bad input before writing any (one test each).

leaderboard --verify / --verify-per-task: tests/test_leaderboard.py and tests/test_leaderboard_tier.py.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from datasets import Dataset

from fednlp_bench import cli
from fednlp_bench.commands import partition as partition_cmd
from fednlp_bench.engine.run import sources
from fednlp_bench.testing.toy import ToyTask, toy_partition

TOY = ["--task", "toy", "--model", "toy", "--scheme", "iid", "--clients", "4", "--clients-per-round", "2",
       "--rounds", "1", "--lr", "0.1", "--optimizer", "sgd", "--batch-size", "8", "--no-progress"]


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "build_partition", toy_partition)
    monkeypatch.setattr(sources, "build_task", lambda config: ToyTask(n_train=60, seed=config.partition["seed"]))


def raw_data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps({"id": str(i), "text": f"t {i}", "label": f"l{i % 3}"}) + "\n"
                                                for i in range(60)))
    return folder


def test_partition_leaves_no_file_when_its_png_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    data, out = raw_data(tmp_path), tmp_path / "out"
    out.mkdir()
    argv = ["partition", "--data", str(data), "--scheme", "iid", "--clients", "3", "--out", str(out / "p.json")]
    assert cli.main([*argv, "--plot", str(out / "p.jpg")]) == 2  # checked before any data is read
    assert cli.main([*argv, "--plot", str(out / "absent" / "p.png")]) == 2

    def broken_plot(stats: object, path: object) -> None:
        raise ValueError("the PNG could not be drawn")

    monkeypatch.setattr("fednlp_bench.partitioners.plot.plot_partition", broken_plot)
    assert cli.main([*argv, "--plot", str(out / "p.png")]) == 2
    assert "the PNG could not be drawn" in capsys.readouterr().err
    assert files(out) == []  # the partition file written before the PNG failed is gone again
    monkeypatch.undo()
    assert cli.main([*argv, "--plot", str(out / "p.png")]) == 0
    assert files(out) == ["p.json", "p.png"]


def test_run_with_a_partition_of_other_data_writes_nothing_and_prints_a_complete_command(
        tmp_path: Path, toy: None, capsys: pytest.CaptureFixture[str]) -> None:
    from fednlp_bench.partitioners import partition_dataset

    other = Dataset.from_dict({"id": [f"x{i}" for i in range(50)], "partition_key": [i % 2 for i in range(50)],
                               "text": ["t"] * 50})
    saved = tmp_path / "part.json"
    partition_dataset(other, "dirichlet_label", 4, seed=2, min_size=1, alpha=0.3, balance=False).save(saved)
    runs = tmp_path / "runs"
    argv = ["run", "--task", "toy", "--model", "toy", "--partition", str(saved), "--clients-per-round", "2",
            "--rounds", "1", "--lr", "0.1", "--runs-dir", str(runs), "--no-progress"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert not runs.exists() or files(runs) == []
    command = err.split("Make the same partition of exactly these rows with: ", 1)[1].split(" (then pass", 1)[0]
    words = shlex.split(command)
    assert "..." not in words and words[:4] == ["fednlp-bench", "partition", "--task", "toy"]
    assert words[words.index("--out") + 1] == str(tmp_path / "part-fit.json")  # a new file, not the user's
    for flag, value in (("--scheme", "dirichlet_label"), ("--clients", "4"), ("--seed", "2"), ("--alpha", "0.3")):
        assert words[words.index(flag) + 1] == value
    assert "--no-balance" in words
    args = cli.parse_args(words[1:])  # the printed command is one the CLI accepts as it is
    out, _, partitioner = partition_cmd.check_request(args)
    assert out == tmp_path / "part-fit.json" and partitioner.params == {"alpha": 0.3, "balance": False}


def test_compare_checks_out_before_running(tmp_path: Path, toy: None, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    base = ["compare", *TOY, "--runs-dir", str(runs), "--algorithms", "centralized,fedavg"]
    assert cli.main([*base, "--out", str(tmp_path / "absent" / "gaps.md")]) == 2
    assert "folder" in capsys.readouterr().err and not runs.exists()
    assert cli.main([*base, "--out", str(tmp_path)]) == 2  # a folder, not a file
    assert cli.main([*base, "--seeds", "0,x", "--out", str(tmp_path / "gaps.md")]) == 2
    assert not runs.exists() and not (tmp_path / "gaps.md").exists()


def test_run_bad_input_writes_nothing(tmp_path: Path, toy: None) -> None:
    runs = tmp_path / "runs"
    assert cli.main(["run", *TOY, "--runs-dir", str(runs), "--algorithm", "fedprox", "--mu", "-1"]) == 2
    assert cli.main(["run", *TOY, "--runs-dir", str(runs), "--keep-checkpoints", "last", "--threads", "0"]) == 2
    assert not runs.exists()
    assert cli.main(["run", *TOY, "--runs-dir", str(runs), "--run-id", "ok"]) == 0
    assert "ok/curve.png" in files(runs) and "ok/record.json" in files(runs)


def test_suite_bad_input_writes_nothing(tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    runs, out = tmp_path / "records", tmp_path / "lb"
    suite.write_text("base: {task: toy, model: toy, rounds: 1, clients_per_round: 2}\ntasks: [toy]\n"
                     f"partitions: [iid]\nalgorithms: [fedavg, fedavgg]\nseeds: [0]\nruns_dir: {runs}\nout: {out}\n")
    assert cli.main(["suite", str(suite)]) == 2  # an unknown algorithm: found before the first run
    (tmp_path / "taken").write_text("x")
    suite.write_text(suite.read_text().replace("fedavgg", "fedprox"))
    assert cli.main(["suite", str(suite), "--out", str(tmp_path / "taken")]) == 2  # not after every run
    assert not runs.exists() and not out.exists()
