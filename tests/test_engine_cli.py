"""`fednlp-bench run` / `compare` on the toy task: flag merging, resume, gap table, clean errors."""

from __future__ import annotations

import argparse
import copy
import re
from pathlib import Path

import pytest

from fednlp_bench import cli
from fednlp_bench.commands import run as run_cmd
from fednlp_bench.commands.compare_tables import gap_table
from fednlp_bench.engine.run import runner, sources
from fednlp_bench.testing.toy import ToyTask, toy_partition
from fednlp_bench.results.record import RunRecord


@pytest.fixture(autouse=True)
def toy_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "build_partition", toy_partition)
    monkeypatch.setattr(sources, "build_task", lambda config: ToyTask(n_train=60, seed=config.partition["seed"]))


TOY = ["--task", "toy", "--model", "toy", "--scheme", "iid", "--clients", "4", "--clients-per-round", "2",
       "--rounds", "2", "--lr", "0.1", "--optimizer", "sgd", "--batch-size", "8", "--no-progress"]


def parse(argv: list[str]) -> argparse.Namespace:
    return cli.parse_args(argv)


def test_run_writes_record_and_resume_returns_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", *TOY, "--runs-dir", str(tmp_path), "--run-id", "one"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"fedavg on toy: test accuracy=0\.\d{4}", out)
    record = RunRecord.load(tmp_path / "one")
    assert record.config["partition"] == {"scheme": "iid", "num_clients": 4, "seed": 0, "min_size": 10, "params": {}}
    assert cli.main(argv) == 2  # exists, no --resume
    assert "already exists; pass --resume" in capsys.readouterr().err
    assert cli.main([*argv, "--resume"]) == 0
    assert RunRecord.load(tmp_path / "one").final_metrics == record.final_metrics


def test_flags_override_yaml_and_reset_foreign_params(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "task: toy\nmodel: toy\nalgorithm: fedprox\nalgorithm_params: {mu: 0.5}\nrounds: 7\n"
        "partition: {scheme: dirichlet_label, num_clients: 8, params: {alpha: 0.3}}\n"
    )
    data, _ = run_cmd.config_dict_from_args(parse(["run", "--config", str(cfg), "--rounds", "2", "--local-steps", "3"]))
    assert data["rounds"] == 2 and data["local_steps"] == 3 and data["local_epochs"] is None
    assert data["algorithm_params"] == {"mu": 0.5} and data["partition"]["params"] == {"alpha": 0.3}
    data, _ = run_cmd.config_dict_from_args(
        parse(["run", "--config", str(cfg), "--algorithm", "fedadam", "--server-lr", "0.01", "--scheme", "iid"])
    )
    assert data["algorithm"] == "fedadam" and data["algorithm_params"] == {"server_lr": 0.01}
    assert data["partition"] == {"scheme": "iid", "num_clients": 8, "params": {}}
    data, _ = run_cmd.config_dict_from_args(parse(["run", "--config", str(cfg), "--partition-alpha", "2", "--partition-param", "balance=false"]))
    assert data["partition"]["params"] == {"alpha": 2.0, "balance": False}


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--partition", "p.json", "--partition-alpha", "0.1"], "--partition FILE already fixes the partition; drop --scheme, --clients, --partition-alpha"),
        (["--clients-per-round", "9"], "clients_per_round=9 is larger than the number of clients (4)"),
        (["--algorithm", "fedprox", "--mu", "-1"], "mu=-1 must be >= 0"),
        (["--algorithm", "fedprox", "--muu", "0.1"], "unknown option --muu: not an option of this command and not a "
                                                     "parameter of fedprox (parameters: ['mu']). Did you mean '--mu'?"),
        (["--roundz", "3"], "Did you mean '--rounds'?"),
        (["--algo-param", "oops"], "--algo-param 'oops' must look like KEY=VALUE"),
        (["--threads", "0"], "--threads 0 must be >= 1"),
    ],
)
def test_bad_run_flags_fail_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    assert cli.main(["run", *TOY, "--runs-dir", str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written


def test_compare_prints_gap_table_and_reuses_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["compare", *TOY, "--runs-dir", str(tmp_path), "--algorithms", "centralized,fedavg,fedprox",
            "--algo-param", "fedprox.mu=0.1", "--out", str(tmp_path / "gap.md")]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| algorithm | accuracy | gap vs centralized")
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in lines[1:]}
    assert set(rows) == {"centralized", "fedavg", "fedprox"}
    assert rows["centralized"][1] == "+0.0000"
    central = float(rows["centralized"][0])
    for algo in ("fedavg", "fedprox"):
        assert float(rows[algo][1]) == pytest.approx(float(rows[algo][0]) - central, abs=2e-4)
    prox = RunRecord.load(next(p for p in tmp_path.iterdir() if "fedprox" in p.name))
    assert prox.config["algorithm_params"] == {"mu": 0.1}
    assert (tmp_path / "gap.md").read_text().strip() == out.strip()
    n_runs = len([p for p in tmp_path.iterdir() if p.is_dir()])
    assert cli.main(argv) == 0  # second time: finished runs are reused, none added
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == n_runs == 3


def test_compare_with_seeds_reports_mean_and_std(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["compare", *TOY, "--runs-dir", str(tmp_path), "--algorithms", "centralized,fedavg", "--seeds", "0,1"]) == 0
    out = capsys.readouterr().out
    assert "seed(s) [0, 1]" in out and out.count("±") >= 3


def test_compare_bad_input_fails_before_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["compare", *TOY, "--runs-dir", str(tmp_path), "--algorithms", "centralized,fedavgg"]) == 2
    assert "unknown algorithm 'fedavgg'. Did you mean 'fedavg'?" in capsys.readouterr().err
    assert cli.main(["compare", *TOY, "--runs-dir", str(tmp_path), "--algorithms", "fedavg", "--algo-param", "fedadam.tau=1"]) == 2
    assert "'fedadam' is not among the algorithms" in capsys.readouterr().err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_gap_table_without_centralized_says_na(tmp_path: Path) -> None:
    cfg = runner.RunConfig.from_dict(dict(task="toy", model="toy", rounds=1, clients_per_round=2, lr=0.1,
                                          partition={"scheme": "iid", "num_clients": 4, "params": {}}))
    rec = runner.run_experiment(cfg, tmp_path, task=ToyTask(n_train=60), progress=False)
    table = gap_table({"fedavg": [rec]})
    assert "| fedavg | " in table and "n/a" in table
    # one evaluated round: too few in the default criterion's window to tell
    assert "| undecided (1 evaluated round(s) in the window) |" in table and "convergence: OLS slope" in table


def test_gap_table_marks_rising_and_converged_cells(tmp_path: Path) -> None:
    cfg = runner.RunConfig.from_dict(dict(task="toy", model="toy", rounds=8, clients_per_round=2, lr=0.1,
                                          partition={"scheme": "iid", "num_clients": 4, "params": {}}))
    rec = runner.run_experiment(cfg, tmp_path, task=ToyTask(n_train=60), progress=False)
    rising, flat = copy.deepcopy(rec), copy.deepcopy(rec)
    for r in rising.rounds:
        r.metrics["accuracy"] = 0.1 * r.round
    for r in flat.rounds:
        r.metrics["accuracy"] = 0.5
    table = gap_table({"fedavg": [rising], "fedprox": [flat]})
    assert "| still rising (+0.1000 per round) |" in table and "| converged (slope +0.0000/round) |" in table


def test_algorithms_command_lists_every_registered_algorithm(capsys: pytest.CaptureFixture[str]) -> None:
    from fednlp_bench.algorithms import algorithm_names

    assert cli.main(["algorithms"]) == 0
    out = capsys.readouterr().out
    assert f"{len(algorithm_names())} algorithms" in out and len(algorithm_names()) >= 13
    assert re.search(r"^scaffold\s+SCAFFOLD\s+-\s+ScaffoldClient\s+server_lr=1.0$", out, flags=re.M)
    assert re.search(r"^krum\s+Krum\s+robust\s+-\s+num_malicious_clients=0, num_clients_to_keep=0$", out, flags=re.M)


def test_help_lists_come_from_the_registries(capsys: pytest.CaptureFixture[str]) -> None:
    from fednlp_bench.algorithms.registry import ALGORITHMS
    from fednlp_bench.partitioners import PARTITIONERS
    from fednlp_bench.tasks.registry import TASKS

    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for registry in (ALGORITHMS, PARTITIONERS, TASKS):
        assert " | ".join(registry.names()) in text
    takes_alpha = ", ".join(n for n in PARTITIONERS.names() if "alpha" in PARTITIONERS[n].param_specs)
    help_text = PARTITIONERS["dirichlet_label"].param_specs["alpha"].help
    assert f"--partition-alpha ALPHA {help_text} (schemes: {takes_alpha})" in text
