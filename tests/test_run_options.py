"""Run options that do not change results: which weights are kept, and what a failed --resume says."""

from __future__ import annotations

from pathlib import Path

import pytest

from fednlp_bench.config import RunConfig
from fednlp_bench.engine.run import checkpoint as ckpt
from fednlp_bench.engine.run import sources
from fednlp_bench.engine.run.runner import run_experiment
from fednlp_bench.results.record import RunRecord
from fednlp_bench.testing.toy import ToyTask, toy_partition


@pytest.fixture(autouse=True)
def toy_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "build_partition", toy_partition)


def config(**changes: object) -> RunConfig:
    base = dict(task="toy", model="toy", algorithm="fedavg", rounds=3, clients_per_round=2, lr=0.1, optimizer="sgd",
                batch_size=8, local_epochs=1,
                partition={"scheme": "iid", "num_clients": 4, "seed": 0, "min_size": 1, "params": {}})
    base.update(changes)
    return RunConfig.from_dict(base)


def run(cfg: RunConfig, runs_dir: Path, **kw: object) -> RunRecord:
    return run_experiment(cfg, runs_dir, task=ToyTask(n_train=40), progress=False, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("keep", "files"), [("last", 1), ("all", 4), ("none", 0)])
def test_keep_checkpoints(tmp_path: Path, keep: str, files: int) -> None:
    record = run(config(), tmp_path, run_id="r", keep_checkpoints=keep)
    folder = ckpt.checkpoint_dir(tmp_path / "r")
    assert len(list(folder.glob("round_*.safetensors"))) == files  # rounds 0..3 with "all"
    assert (tmp_path / "r" / "record.json").is_file()
    # A finished run resumes to its record whatever was kept.
    assert run(config(), tmp_path, run_id="r", resume=True).final_metrics == record.final_metrics


def test_bad_keep_checkpoints_value(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"keep_checkpoints='lats'.*Did you mean 'last'"):
        run(config(), tmp_path, keep_checkpoints="lats")


def test_resume_with_a_changed_setting_names_the_change_and_the_old_run(tmp_path: Path) -> None:
    old = run(config(), tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        run(config(rounds=4), tmp_path, resume=True)
    text = str(err.value)
    assert "no run named" in text and "changed setting names another run" in text
    assert f"{old.run_id} (finished): rounds: 3 -> 4" in text
    assert f"--run-id {old.run_id} --resume" in text


def test_resume_of_a_run_that_never_existed(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no run named 'ghost' in .*; drop --resume to start it"):
        run(config(), tmp_path, run_id="ghost", resume=True)
