"""Numbers as researchers write them: 1e-3, 5E-5, 1.0e-3 and plain decimals, in YAML and on the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from fednlp_bench import cli
from fednlp_bench.commands.run import config_dict_from_args
from fednlp_bench.config import RunConfig, load_yaml_config
from fednlp_bench.scalars import integer, load_yaml, number, parse_scalar

FORMS = [("1e-3", 1e-3), ("5E-5", 5e-5), ("1.0e-3", 1e-3), ("0.001", 1e-3), ("+2e2", 200.0), ("-1.5E+1", -15.0),
         (".5", 0.5), ("3.", 3.0), ("1e3", 1000.0)]


@pytest.mark.parametrize("text, value", FORMS)
def test_every_float_form_is_a_float_in_yaml_and_on_the_command_line(text: str, value: float) -> None:
    assert isinstance(parse_scalar(text), float) and parse_scalar(text) == pytest.approx(value)
    assert load_yaml(f"lr: {text}") == {"lr": pytest.approx(value)}
    assert number(text) == pytest.approx(value)


def test_other_scalars_keep_their_yaml_meaning() -> None:
    assert [parse_scalar(t) for t in ("3", "1_000", "true", "null", "abc", "1.5.2", "e5", "1e")] == [
        3, 1000, True, None, "abc", "1.5.2", "e5", "1e"]
    assert integer("2e3") == 2000 and integer("7") == 7
    for bad, parse in (("1.5", integer), ("abc", integer), ("abc", number), ("true", number)):
        with pytest.raises(argparse.ArgumentTypeError, match=repr(bad)):
            parse(bad)


def test_yaml_config_with_exponent_numbers_validates(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("task: toy\nlr: 1e-3\nalgorithm: fedadam\nalgorithm_params: {server_lr: 5E-5, tau: 1.0e-3}\n"
                    "max_train_examples: 2e3\npartition: {scheme: dirichlet_label, num_clients: 1e1, params: {alpha: 5e-1}}\n")
    config = RunConfig.from_dict(load_yaml_config(path)[0])
    assert config.lr == 1e-3 and config.algorithm_params == {"server_lr": 5e-5, "tau": 1e-3}
    assert config.max_train_examples == 2000 and isinstance(config.max_train_examples, int)
    assert config.partition["num_clients"] == 10 and config.partition["params"] == {"alpha": 0.5}
    # Integral floats become ints before anything reads them, so the config (and its hash) is the int one.
    assert config.to_dict() == RunConfig.from_dict({**config.to_dict(), "max_train_examples": 2000}).to_dict()


def test_command_line_numbers_in_every_kind_of_flag() -> None:
    args = cli.parse_args(["run", "--task", "toy", "--algorithm", "fedadam", "--server-lr", "1e-3", "--lr", "5E-5",
                           "--algo-param", "tau=1.0e-3", "--scheme", "dirichlet_label", "--partition-alpha", "5e-1",
                           "--partition-param", "balance=false", "--max-train-examples", "2e3",
                           "--task-validation-fraction", "1e-1"])
    config = RunConfig.from_dict(config_dict_from_args(args)[0])
    assert config.algorithm_params == {"server_lr": 1e-3, "tau": 1e-3} and config.lr == 5e-5
    assert config.partition["params"] == {"alpha": 0.5, "balance": False} and config.max_train_examples == 2000
    assert config.task_params == {"validation_fraction": 0.1}
    args = cli.parse_args(["run", "--task", "toy", "--algorithm", "fedprox", "--mu", "1e-2"])
    assert RunConfig.from_dict(config_dict_from_args(args)[0]).algorithm_params == {"mu": 0.01}


def test_a_bad_number_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["run", "--task", "toy", "--lr", "1e-3x"])
    assert "argument --lr: '1e-3x' is not a number (write e.g. 0.001 or 1e-3)" in capsys.readouterr().err


def test_the_lr_error_hint_is_a_form_that_is_accepted() -> None:
    with pytest.raises(ValueError, match=r"e\.g\. (\S+)") as caught:
        RunConfig(lr=-1.0)
    hint = caught.value.args[0].rsplit("e.g. ", 1)[1]
    assert RunConfig(lr=parse_scalar(hint)).lr == pytest.approx(5e-5)


def test_suite_grids_read_exponents_as_numbers(tmp_path: Path) -> None:
    from fednlp_bench.suite.spec import load_suite

    path = tmp_path / "suite.yaml"
    path.write_text("tier: smoke\nbase: {task: toy, model: toy, rounds: 4, eval_every: 1}\ntasks: [toy]\n"
                    "partitions: [iid]\nalgorithms:\n"
                    "  - {algorithm: fedadam, algorithm_params: {beta1: 9e-1}, grid: {lr: [1e-3, 2E-3], server_lr: [1.0e-2, 4e-2]}}\n"
                    "convergence: {window: 0.5, tolerance: 1e-2}\ntuning: {seed: 0}\nfinal: {seeds: [0, 1]}\n")
    suite = load_suite(path)
    assert suite.algorithms[0]["algorithm_params"] == {"beta1": 0.9}
    assert suite.grid_for(0) == {"lr": [1e-3, 2e-3], "server_lr": [1e-2, 4e-2]}
    assert suite.convergence.tolerance == 1e-2
