"""RunConfig: round trips, YAML, and every bad input failing with a helpful message before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from fednlp_bench.config import RunConfig, config_tasks, load_yaml_config, select_task, task_compare_section

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_round_trip_through_dict() -> None:
    cfg = RunConfig()
    again = RunConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert set(cfg.to_dict()) == {
        "task", "data", "model", "max_length", "max_train_examples", "max_eval_examples", "partition", "algorithm",
        "algorithm_params", "rounds", "clients_per_round", "local_epochs", "local_steps", "batch_size", "lr",
        "optimizer", "sampling", "dropout", "eval_every", "seed", "backend", "precision", "trainable",
        "trainable_params", "columns", "task_params", "test_best_round", "batching", "max_validation_examples",
        "attention_dropout",
    }
    assert set(cfg.partition) == {"scheme", "num_clients", "seed", "min_size", "params"}


def test_local_steps_alone_replaces_epochs() -> None:
    cfg = RunConfig.from_dict({"local_steps": 5})
    assert cfg.local_steps == 5 and cfg.local_epochs is None
    with pytest.raises(ValueError, match="set exactly one of local_epochs and local_steps"):
        RunConfig.from_dict({"local_steps": 5, "local_epochs": 2})


def test_partial_partition_fills_defaults() -> None:
    cfg = RunConfig.from_dict({"partition": {"scheme": "iid", "num_clients": 20}, "clients_per_round": 20})
    assert cfg.partition["scheme"] == "iid" and cfg.partition["num_clients"] == 20 and "min_size" in cfg.partition


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"rounds": 0}, "rounds=0 must be >= 1"),
        ({"roundz": 3}, "unknown config key 'roundz'. Did you mean 'rounds'?"),
        ({"clients_per_rnd": 3}, "Did you mean 'clients_per_round'?"),
        ({"clients_per_round": 11}, r"clients_per_round=11 is larger than the number of clients \(10\)"),
        ({"algorithm": "fedprox", "algorithm_params": {"mu": -1}}, "mu=-1 must be >= 0"),
        ({"algorithm": "fedavgg"}, "unknown algorithm 'fedavgg'. Did you mean 'fedavg'?"),
        ({"algorithm": "fedadam", "algorithm_params": {"server_rl": 0.1}}, "Did you mean 'server_lr'?"),
        ({"partition": {"scheme": "dirichlet_label", "num_clients": 10, "alpha": 0.5}}, "unknown partition key 'alpha'"),
        ({"partition": {"scheme": "dirichlet_labels", "num_clients": 10}}, "Did you mean 'dirichlet_label'?"),
        ({"optimizer": "adam"}, "optimizer='adam' is not supported. Did you mean 'adamw'?"),
        ({"sampling": "random"}, "sampling='random' is not supported"),
        ({"backend": "fedmll"}, r"backend='fedmll' is not supported. Did you mean 'fedml'\?.*\['inprocess', 'fedml'\]"),
        ({"dropout": 1.0}, r"dropout=1.0 must be in \[0, 1\)"),
        ({"lr": -0.1}, "lr=-0.1 must be a positive finite number"),
        ({"lr": float("nan")}, "lr=nan must be a finite number"),
        ({"batch_size": 0}, "batch_size=0 must be >= 1"),
        ({"rounds": 2.5}, "rounds=2.5 must be an integer"),
        ({"eval_every": 0}, "eval_every=0 must be >= 1"),
        ({"max_length": 4}, "max_length=4 must be >= 8"),
        ({"max_train_examples": 0}, "max_train_examples=0 must be >= 1"),
    ],
)
def test_bad_configs_name_the_problem(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RunConfig.from_dict(changes)


def test_replace_validates() -> None:
    cfg = RunConfig()
    assert cfg.replace(algorithm="fedprox", algorithm_params={"mu": 0.1}).algorithm_params == {"mu": 0.1}
    with pytest.raises(ValueError, match="rounds=-1"):
        cfg.replace(rounds=-1)


def test_yaml_with_compare_section(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("task: classification\nrounds: 2\ncompare:\n  algorithms: [centralized, fedavg]\n")
    run_dict, compare = load_yaml_config(path)
    assert run_dict == {"task": "classification", "rounds": 2}
    assert compare == {"algorithms": ["centralized", "fedavg"]}
    assert RunConfig.from_yaml(path).rounds == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("rounds: [1\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_yaml_config(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_yaml_config(tmp_path / "missing.yaml")


#: Run/compare configs shipped for users (configs/suite.yaml is a suite file, tested with the leaderboard).
RUN_CONFIGS = ("quickstart.yaml", "quickstart_fast.yaml", "tagging_wnut17.yaml")


@pytest.mark.parametrize("name", RUN_CONFIGS)
def test_shipped_configs_are_valid(name: str) -> None:
    run_dict, compare = load_yaml_config(ROOT / "configs" / name)
    for task in config_tasks(run_dict) or [None]:
        cfg = RunConfig.from_dict(select_task(run_dict, task))
        section = task_compare_section(run_dict, task, compare)
        for algorithm in section.get("algorithms", []):
            cfg.replace(algorithm=algorithm, algorithm_params=(section.get("params") or {}).get(algorithm, {}))


def test_quickstart_covers_the_four_tasks() -> None:
    run_dict, compare = load_yaml_config(ROOT / "configs" / "quickstart.yaml")
    assert config_tasks(run_dict) == ["classification", "tagging", "qa", "generation"]
    assert compare["algorithms"] == ["centralized", "fedavg", "fedprox", "fedadam"]


def test_multi_task_entries_override_the_shared_fields() -> None:
    data = {"lr": 0.1, "partition": {"scheme": "dirichlet_label", "num_clients": 4, "params": {"alpha": 0.5}},
            "tasks": [{"task": "classification"},
                      {"task": "generation", "lr": 0.2, "partition": {"scheme": "iid"}}]}
    assert select_task(data, "classification")["lr"] == 0.1
    gen = select_task(data, "generation")
    assert gen["lr"] == 0.2 and gen["task"] == "generation" and "tasks" not in gen
    assert gen["partition"] == {"scheme": "iid", "num_clients": 4, "params": {}}
    assert select_task(data, None)["task"] == "classification"
    with pytest.raises(ValueError, match="no entry for task 'qa'"):
        select_task(data, "qa")
    with pytest.raises(ValueError, match="lists a task twice"):
        config_tasks({"tasks": [{"task": "qa"}, {"task": "qa"}]})
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['lrr'\]"):
        config_tasks({"tasks": [{"task": "qa", "lrr": 1}]})


def test_a_task_entry_may_update_the_compare_section_for_its_task_only() -> None:
    data = {"tasks": [{"task": "classification"},
                      {"task": "tagging", "lr": 0.03, "compare": {"params": {"fedadam": {"server_lr": 0.05, "beta1": 0.0}}}}]}
    top = {"algorithms": ["centralized", "fedadam"], "params": {"fedadam": {"server_lr": 0.01, "tau": 0.001}}}
    assert task_compare_section(data, "classification", top) == top
    assert task_compare_section(data, None, top) == top  # the first entry, as select_task
    tagging = task_compare_section(data, "tagging", top)
    assert tagging == {"algorithms": ["centralized", "fedadam"],
                       "params": {"fedadam": {"server_lr": 0.05, "tau": 0.001, "beta1": 0.0}}}
    assert top["params"]["fedadam"] == {"server_lr": 0.01, "tau": 0.001}  # the shared section is not edited
    assert "compare" not in select_task(data, "tagging")  # `run` never sees it as a field
    RunConfig.from_dict(select_task(data, "tagging"))
    with pytest.raises(ValueError, match=r"tasks\[0\].compare must be a mapping"):
        config_tasks({"tasks": [{"task": "qa", "compare": [1]}]})
    with pytest.raises(ValueError, match="compare.params.fedadam of task 'qa' must be a mapping"):
        task_compare_section({"tasks": [{"task": "qa", "compare": {"params": {"fedadam": 3}}}]}, "qa", {})


def test_compare_plans_the_quickstart_fedadam_per_task() -> None:
    """The quickstart's tagging entry sets FedAdam's server step; the other tasks keep the shared one."""
    from fednlp_bench import cli
    from fednlp_bench.commands.compare import plan_tasks

    args = cli.build_parser().parse_args(["compare", "--config", str(ROOT / "configs" / "quickstart.yaml")])
    plans = {p.task: p for p in plan_tasks(args)}
    assert plans["tagging"].params["fedadam"]["server_lr"] == 0.05 and plans["tagging"].params["fedadam"]["beta1"] == 0.0
    assert plans["classification"].params["fedadam"]["server_lr"] == 0.01
    assert plans["classification"].params["fedadam"]["beta1"] == 0.9
    assert plans["tagging"].params["fedprox"] == {"mu": 0.01}


def test_default_scheme_params_do_not_leak_into_other_schemes() -> None:
    assert RunConfig.from_dict({"partition": {"scheme": "iid"}}).partition["params"] == {}
    assert RunConfig.from_dict({"partition": {"num_clients": 12}}).partition["params"] == {"alpha": 0.5}
