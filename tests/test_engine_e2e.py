"""End to end on real data: the classification task on a 20News slice with the tiny BERT.

Slow-marked (they read the 20News JSONL and tokenize); each stays well under a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest

from fednlp_bench import cli
from fednlp_bench.config import RunConfig
from fednlp_bench.engine.run.sources import partition_spec_for_config
from fednlp_bench.engine.run.runner import run_experiment
from fednlp_bench.results.record import RunRecord, validate_record_dict

pytestmark = pytest.mark.slow

DATA_DIR = os.environ.get("FEDNLP_DATA_DIR", "")
needs_data = pytest.mark.skipif(not (Path(DATA_DIR) / "20news").is_dir(), reason="FEDNLP_DATA_DIR/20news not found")

SLICE = dict(task="classification", data="20news", model="tiny", max_length=32, max_train_examples=240,
             max_eval_examples=80)


@needs_data
def test_fedavg_on_20news_slice_writes_a_valid_record(tmp_path: Path) -> None:
    cfg = RunConfig.from_dict({
        **SLICE,
        "partition": {"scheme": "dirichlet_label", "num_clients": 4, "seed": 0, "min_size": 5, "params": {"alpha": 0.5}},
        "algorithm": "fedprox", "algorithm_params": {"mu": 0.01},
        "rounds": 2, "clients_per_round": 2, "local_epochs": 1, "batch_size": 16, "lr": 1e-3,
    })
    record = run_experiment(cfg, tmp_path, progress=False)
    data = json.loads((tmp_path / record.run_id / "record.json").read_text())
    validate_record_dict(data, "e2e")
    assert data["config"] == cfg.to_dict()
    assert data["primary_metric"] == "accuracy"
    assert 0.0 <= data["final_metrics"]["accuracy"] <= 1.0
    assert data["final_metrics"]["num_examples"] == 80
    assert data["partition"]["scheme"] == "dirichlet_label" and data["partition"]["num_rows"] == 240
    assert len(data["partition"]["content_hash"]) == 64
    assert all(r["bytes_down"] > 0 and r["train_loss"] > 0 for r in data["rounds"])
    assert data["versions"]["transformers"] and data["hardware"]["cpu_cores"] >= 1


@needs_data
def test_cli_run_with_saved_partition_and_refusal_of_other_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fednlp_bench.partitioners import Partition, partition_dataset
    from fednlp_bench.tasks import get_task

    train = get_task("classification", model="tiny", data="20news", max_train_examples=240, seed=3).load()["train"]
    part = partition_dataset(train, scheme="iid", num_clients=3, seed=3, min_size=5)
    part_path = tmp_path / "part.json"
    part.save(part_path)
    base = ["run", "--task", "classification", "--data", "20news", "--model", "tiny", "--max-length", "32",
            "--max-train-examples", "240", "--max-eval-examples", "40", "--rounds", "1", "--clients-per-round", "2",
            "--lr", "1e-3", "--runs-dir", str(tmp_path / "runs"), "--no-progress"]
    # The task's subset follows the partition seed, so the file's spec (seed 3) selects the same 240 rows.
    assert cli.main([*base, "--partition", str(part_path), "--run-id", "from-file"]) == 0
    record = RunRecord.load(tmp_path / "runs" / "from-file")
    assert record.partition["content_hash"] == part.content_hash
    assert record.config["partition"] == partition_spec_for_config(part)
    # A partition of other data (a different subset) is refused with the reason.
    assert cli.main([*base, "--max-train-examples", "200", "--partition", str(part_path), "--run-id", "other"]) == 2
    err = capsys.readouterr().err
    assert "fednlp-bench run: error:" in err and ("fingerprint" in err or "rows" in err)
    assert not (tmp_path / "runs" / "other").exists()
    # The hint is a complete command, writing a new file; run as printed, it makes the partition that fits.
    command = err.split("exactly these rows with: ", 1)[1].split(" (then pass", 1)[0]
    words = shlex.split(command)
    assert "..." not in words and words[words.index("--out") + 1] == str(tmp_path / "part-fit.json")
    assert cli.main(words[1:]) == 0
    capsys.readouterr()
    assert cli.main([*base, "--max-train-examples", "200", "--partition", str(tmp_path / "part-fit.json"),
                     "--run-id", "other"]) == 0
    assert Partition.load(part_path).content_hash == part.content_hash  # the user's file is untouched
