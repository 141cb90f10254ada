"""Tier suites: grid expansion, equal effort, selection on validation, extensions, plan.json, stages, chunks."""

from __future__ import annotations

import argparse
import copy
import io
import json
import math
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from fednlp_bench.engine.run.run_id import run_id_of
from fednlp_bench.results.record import RoundResult, RunRecord, config_hash
from fednlp_bench.suite import dispatch as suite_mod
from fednlp_bench.suite import plan_checks
from fednlp_bench.suite.spec import parse_suite
from fednlp_bench.suite.stages import run_two_stage
from fednlp_bench.suite.tier_plan import build_tier_plan

REPO = Path(__file__).resolve().parents[1]

BASE = {"model": "tiny", "max_length": 32, "max_train_examples": 200, "max_eval_examples": 50,
        "partition": {"num_clients": 4, "min_size": 2}, "rounds": 4, "clients_per_round": 2,
        "local_epochs": 1, "batch_size": 8, "lr": 1e-4, "eval_every": 1}
LRS = [1e-3, 2e-3, 4e-3, 8e-3]


def tier(**changes: Any) -> dict[str, Any]:
    """A one-task smoke-tier suite: 2 partitions, centralized + fedavg + fedprox, 4 grid points each."""
    data = {
        "tier": "smoke",
        "base": copy.deepcopy(BASE),
        "tasks": [{"task": "classification", "data": "20news",
                   "partitions": ["iid", {"scheme": "dirichlet_label", "params": {"alpha": 0.1}}]}],
        "algorithms": [
            {"algorithm": "centralized", "grid": {"lr": list(LRS)}},
            {"algorithm": "fedavg", "grid": {"lr": list(LRS)}},
            {"algorithm": "fedprox", "grid": {"lr": [2e-3, 4e-3], "mu": [0.01, 0.1]}},
        ],
        "convergence": {"window": 0.5, "tolerance": 0.01, "min_points": 3},
        "tuning": {"seed": 0, "partitions": "all"},
        "final": {"seeds": [0, 1]},
    }
    data.update(changes)
    return data


def lr_prefers(best: float) -> Callable[[dict[str, Any]], float]:
    """A validation score that peaks at lr == best on a log scale (and prefers a larger mu a little)."""
    return lambda c: 0.9 - 0.05 * abs(math.log2(c["lr"] / best)) + 0.01 * c.get("algorithm_params", {}).get("mu", 0)


class TierRunner:
    """Writes a real RunRecord under the engine's run id, with chosen validation and test values.

    The validation curve is flat at its final value (``rising`` adds a slope per round), so cells converge.
    """

    def __init__(self, validation: Callable[[dict[str, Any]], float] = lr_prefers(4e-3),
                 test: Callable[[dict[str, Any]], float] = lambda c: 0.5, last_metric: bool = True,
                 rising: float = 0.0) -> None:
        self.calls: list[dict[str, Any]] = []
        self.validation, self.test, self.last_metric, self.rising = validation, test, last_metric, rising

    def __call__(self, config: dict[str, Any], runs_dir: Path) -> RunRecord:
        self.calls.append(config)
        run_id = run_id_of(config)
        metric = "accuracy" if config["task"] == "classification" else "f1"
        final, rounds = self.validation(config), int(config["rounds"])

        def metrics(r: int) -> dict[str, float]:
            if r == rounds and not self.last_metric:
                return {}
            return {metric: final - self.rising * (rounds - r)}

        record = RunRecord(
            run_id=run_id, created="2026-11-26T04:00:00", task=config["task"], algorithm=config["algorithm"],
            seed=config["seed"], config=config, config_hash=config_hash(config),
            partition={**config["partition"], "content_hash": "c" * 64}, primary_metric=metric,
            final_metrics={metric: self.test(config)},
            rounds=[RoundResult(round=r, clients=[0], train_loss=1.0, metrics=metrics(r), bytes_up=1, bytes_down=1,
                                wall_time_s=0.1) for r in range(1, rounds + 1)],
            wall_time_s=0.1 * rounds, bytes_up=rounds, bytes_down=rounds, versions={}, git_commit=None, hardware={})
        record.save(Path(runs_dir) / run_id)
        return record

    @property
    def keys(self) -> list[tuple[str, int]]:
        return [(config_hash(c), c["seed"]) for c in self.calls]


def run(data: dict[str, Any], tmp: Path, runner: TierRunner, **kwargs: Any) -> tuple[Any, str]:
    log = io.StringIO()
    report = run_two_stage(parse_suite(data, source="t.yaml"), tmp / "runs", tmp / "out", runner=runner,
                           stream=log, **kwargs)
    return report, log.getvalue()


def plan_json(tmp: Path) -> dict[str, Any]:
    return json.loads((tmp / "out" / "plan.json").read_text())


def chosen(tmp: Path) -> dict[tuple[str, int], Any]:
    return {(t["algorithm"], t["partition"]["index"]): t["chosen"] for t in plan_json(tmp)["tuning"]}


# ---------------------------------------------------------------- parsing and expansion
def test_grid_expansion_counts_and_key_routing() -> None:
    plan = build_tier_plan(parse_suite(tier()))
    # centralized tuned once (first partition) + fedavg and fedprox on each of 2 partitions, 4 points each
    assert [(u.algorithm, u.partition.index, len(u.runs)) for u in plan.units] == [
        ("centralized", 0, 4), ("fedavg", 0, 4), ("fedavg", 1, 4), ("fedprox", 0, 4), ("fedprox", 1, 4)]
    assert len(plan.tuning_runs()) == 20
    prox = [u for u in plan.units if u.algorithm == "fedprox"][1]
    assert prox.points == [{"lr": 2e-3, "mu": 0.01}, {"lr": 2e-3, "mu": 0.1}, {"lr": 4e-3, "mu": 0.01},
                           {"lr": 4e-3, "mu": 0.1}]
    config = prox.runs[1].config
    assert config["lr"] == 2e-3 and config["algorithm_params"] == {"mu": 0.1} and "mu" not in config
    assert config["partition"]["params"] == {"alpha": 0.1} and config["partition"]["seed"] == 0
    assert config["eval_every"] == 1 and config["seed"] == 0
    assert [r.config["lr"] for r in plan.units[1].runs] == LRS and plan.units[1].runs[0].config["algorithm_params"] == {}
    assert [(c.algorithm, c.partition.index, c.role) for c in plan.cells] == [
        ("centralized", 0, "centralized_equal"), ("fedavg", 0, "federated"), ("fedprox", 0, "federated"),
        ("fedavg", 1, "federated"), ("fedprox", 1, "federated")]
    # fixed algorithm_params and grid parameters merge; the grid wins on a shared key; axes are sorted
    fixed = tier(algorithms=[{"algorithm": "fedadam", "algorithm_params": {"beta1": 0.8, "server_lr": 0.5},
                              "grid": {"lr": [2e-3, 1e-3], "server_lr": [0.01, 0.02]}}])
    unit = build_tier_plan(parse_suite(fixed)).units[0]
    assert unit.axes == {"lr": [1e-3, 2e-3], "server_lr": [0.01, 0.02]}
    assert unit.runs[1].config["algorithm_params"] == {"beta1": 0.8, "server_lr": 0.02}


@pytest.mark.parametrize("grid, message", [
    ({"lr": [1e-3, 2e-3, 4e-3], "mu": [0.01]}, "'mu' has 1 value: an axis needs at least two log-spaced values"),
    ({"lr": [1e-3, 3e-3, 1e-2]}, r"'lr' = \[0.001, 0.003, 0.01\] is not log-spaced \(consecutive ratios 3, 3.33\)"),
    ({"lr": [0.0, 1e-3]}, "must be positive numbers"),
    ({"lr": [1e-3, 1e-3]}, "lists a value twice"),
])
def test_axes_must_be_log_spaced(grid: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_suite(tier(algorithms=[{"algorithm": "fedavg", "grid": grid}]))


def test_equal_effort_rules() -> None:
    unequal = tier(algorithms=[{"algorithm": "fedavg", "grid": {"lr": [1e-3, 2e-3, 4e-3]}},
                               {"algorithm": "fedprox", "grid": {"lr": [1e-3, 2e-3], "mu": [0.01, 0.1]}}])
    with pytest.raises(ValueError, match=r"same number of points .*fedavg: 3, fedprox: 4"):
        build_tier_plan(parse_suite(unequal))
    cases = [
        ({"algorithm": "fedprox", "grid": {"lr": [1e-3, 2e-3]}}, r"must search \['lr', 'mu'\].* add mu: \[...\]"),
        ({"algorithm": "fedadam", "grid": {"tau": [1e-3, 1e-2], "lr": [1e-3, 2e-3]}}, r"add server_lr: \[...\]"),
        ({"algorithm": "fedavg", "grid": {"local_epochs": [1, 2]}}, r"add lr: \[...\]"),
        ({"algorithm": "fedavg"}, r"add lr: \[...\]"),
    ]
    for entry, message in cases:
        with pytest.raises(ValueError, match=message):
            build_tier_plan(parse_suite(tier(algorithms=[entry])))


def test_unknown_keys_get_did_you_mean() -> None:
    cases = [
        (tier(tuning={"sed": 0}), "unknown key 'sed' in 'tuning'. Did you mean 'seed'?"),
        (tier(final={"seed": [0]}), "unknown key 'seed' in 'final'. Did you mean 'seeds'?"),
        (tier(tier="cpuu"), "unknown tier 'cpuu'. Did you mean 'cpu'?"),
        (tier(final={"seeds": [0, 1], "centralized_converged": {"roundz": 9}}), "Did you mean 'rounds'?"),
        (tier(tuning={"partitions": "every"}), "tuning.partitions must be 'all' or a non-empty list"),
        (tier(tuning={"extensions": -1}), "tuning.extensions must be a non-negative integer"),
        (tier(seeds=[0, 1]), "'seeds' is not a suite key any more"),
        (tier(centralized_once=False), "'centralized_once' is not a suite key any more"),
        (tier(final={"seeds": [0, 1], "centralized_converged": {"seed": 3}}), "may not set 'seed'"),
        ({k: v for k, v in tier().items() if k != "final"}, "a suite needs 'final'"),
        ({k: v for k, v in tier().items() if k != "convergence"}, "a suite needs 'convergence'"),
        (tier(convergence={"window": 0.25, "tolerance": 0.002, "min_point": 3}), "Did you mean 'min_points'?"),
        (tier(convergence={"window": 1.5, "tolerance": 0.002}), "convergence.window=1.5 must be a share"),
        (tier(convergence={"window": 0.25, "tolerance": 0}), "convergence.tolerance=0 must be a positive"),
        (tier(algorithm=[]), "unknown suite key 'algorithm'. Did you mean 'algorithms'"),
    ]
    for data, message in cases:
        with pytest.raises(ValueError) as err:
            parse_suite(data, source="t.yaml")
        assert message in str(err.value)
    grid_typo = tier(algorithms=[{"algorithm": "fedprox", "grid": {"lr": [1e-3, 2e-3], "muu": [0.01, 0.1],
                                                                    "mu": [0.01, 0.1]}}])
    with pytest.raises(ValueError, match="grid key 'muu' is neither .* Did you mean 'mu'"):
        build_tier_plan(parse_suite(grid_typo))
    with pytest.raises(ValueError, match="grid key 'seed' defines the cell"):
        parse_suite(tier(algorithms=[{"algorithm": "fedavg", "grid": {"seed": [0, 1]}}]))
    with pytest.raises(ValueError, match=r"tuning.partitions \[2\] names index\(es\) \[2\], but task "
                                         r"'classification' has 2 partition"):
        build_tier_plan(parse_suite(tier(tuning={"partitions": [2]})))
    no_central = tier(algorithms=[{"algorithm": "fedavg", "grid": {"lr": LRS}}],
                      final={"seeds": [0, 1], "centralized_converged": {"rounds": 4}})
    with pytest.raises(ValueError, match="centralized_converged is set but the centralized baseline is not listed"):
        build_tier_plan(parse_suite(no_central))


def test_final_seeds_meet_the_tier_minimum() -> None:
    with pytest.raises(ValueError, match=r"task 'classification' reports 3 final seed\(s\) \[0, 1, 2\], but the cpu "
                                         r"tier needs at least 5 \(5 per task; generation: 3, qa: 3\)"):
        parse_suite(tier(tier="cpu", final={"seeds": [0, 1, 2]}), source="t.yaml")
    qa = tier(tier="cpu", final={"seeds": [0, 1, 2, 3, 4]},
              tasks=[{"task": "classification", "data": "20news", "partitions": ["iid"]},
                     {"task": "qa", "data": "squad", "partitions": ["iid"], "final_seeds": [0, 1, 2]}])
    suite = parse_suite(qa)
    assert suite.seeds_for(0) == (0, 1, 2, 3, 4) and suite.seeds_for(1) == (0, 1, 2)
    assert "final_seeds" not in suite.tasks[1]
    qa["tasks"][1]["final_seeds"] = [0, 1]
    with pytest.raises(ValueError, match="task 'qa' reports 2 final seed"):
        parse_suite(qa)


def test_whole_protocol_is_validated_before_anything_runs(tmp_path: Path) -> None:
    bad = tier(final={"seeds": [0, 1], "centralized_converged": {"rounds": 0}})
    runner = TierRunner()
    with pytest.raises(ValueError, match=r"4 invalid run config\(s\); nothing was run:\n .*lr=0.001 · seed 0 "
                                         r"\(centralized_converged\): rounds=0"):
        run(bad, tmp_path, runner)
    assert runner.calls == [] and not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()
    far = tier(tuning={"seed": 0, "extensions": 2},
               algorithms=[{"algorithm": "centralized", "grid": {"lr": [0.25, 0.5, 1.0, 2.0]}},
                           {"algorithm": "fedavg", "grid": {"lr": [0.25, 0.5, 1.0, 2.0]}}],
               base={**BASE, "dropout": 0.3})
    build_tier_plan(parse_suite(far))  # lr 8 is a valid (if absurd) run
    prox = tier(tuning={"seed": 0, "extensions": 3},
                algorithms=[{"algorithm": "fedprox", "grid": {"lr": [1e-3, 2e-3], "mu": [0.01, 0.1]}}],
                final={"seeds": [0, 1]})
    build_tier_plan(parse_suite(prox))


def test_eval_schedule_must_serve_selection_and_convergence(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"eval_every=2 evaluates 2 round\(s\) in the convergence window "
                                         r"\(rounds 2-4, the last 50% of 4\), but the criterion needs 3"):
        build_tier_plan(parse_suite(tier(base={**BASE, "eval_every": 2})))
    converged = tier(base={**BASE, "eval_every": 1}, final={"seeds": [0, 1], "centralized_converged": {"rounds": 8,
                                                                                                     "eval_every": 8}})
    with pytest.raises(ValueError, match=r"centralized_converged\): eval_every=8 evaluates 1 round"):
        build_tier_plan(parse_suite(converged))
    monkeypatch.setattr(plan_checks, "evaluates_round", lambda rnd, rounds, every: rnd % every == 0)
    with pytest.raises(ValueError, match="eval_every=3 does not evaluate the last round \\(4\\)"):
        build_tier_plan(parse_suite(tier(base={**BASE, "eval_every": 3})))


def test_tiers_registry_and_help() -> None:
    from fednlp_bench.commands import suite as command
    from fednlp_bench.leaderboard.tiers import TIERS

    assert TIERS.names() == ["smoke", "cpu", "gpu"]
    assert TIERS.label("cpu") == "CPU tier"
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    help_text = parser._subparsers._group_actions[0].choices["suite"].format_help()  # type: ignore[union-attr]
    assert "cpu: the tables published from a 2-core CPU machine" in " ".join(help_text.split())


# ---------------------------------------------------------------- selection and stages
def test_selection_uses_validation_never_test(tmp_path: Path) -> None:
    # validation peaks at lr=4e-3, test at lr=1e-3: the choice must follow validation
    runner = TierRunner(validation=lr_prefers(4e-3), test=lambda c: 0.9 - abs(c["lr"] - 1e-3) * 10)
    report, _ = run(tier(), tmp_path, runner)
    assert report.complete
    assert chosen(tmp_path) == {("centralized", 0): {"lr": 4e-3}, ("fedavg", 0): {"lr": 4e-3},
                                ("fedavg", 1): {"lr": 4e-3}, ("fedprox", 0): {"lr": 4e-3, "mu": 0.1},
                                ("fedprox", 1): {"lr": 4e-3, "mu": 0.1}}
    plan = plan_json(tmp_path)
    assert {c["algorithm"]: c["hyperparameters"] for c in plan["cells"]}["fedavg"] == {"lr": 4e-3}
    # no extension allowed (cap 0): FedProx's choice is on the edge of both axes, and says so
    prox = next(t for t in plan["tuning"] if t["algorithm"] == "fedprox")
    assert prox["on_edge"] == ["lr", "mu"] and prox["extensions"] == [] and prox["extension_cap"] == 0
    assert next(t for t in plan["tuning"] if t["algorithm"] == "fedavg")["on_edge"] == []


def test_ties_go_to_the_earlier_grid_point(tmp_path: Path) -> None:
    run(tier(), tmp_path, TierRunner(validation=lambda c: 0.5))
    assert chosen(tmp_path)[("fedprox", 0)] == {"lr": 2e-3, "mu": 0.01}


def test_an_edge_choice_extends_the_axis_and_selection_repeats(tmp_path: Path) -> None:
    runner = TierRunner(validation=lr_prefers(16e-3))
    data = tier(tuning={"seed": 0, "partitions": [1], "extensions": 2})
    report, _ = run(data, tmp_path, runner, stage="tune")
    plan = plan_json(tmp_path)
    by = {t["algorithm"]: t for t in plan["tuning"]}
    # FedAvg: 8e-3 is the edge -> + 16e-3 (step 1), now the edge -> + 32e-3 (step 2): 16e-3 is interior
    fedavg = by["fedavg"]
    assert fedavg["chosen"] == {"lr": 0.016} and fedavg["on_edge"] == []
    assert fedavg["extensions"] == [{"step": 1, "axis": "lr", "side": "high", "value": 0.016},
                                    {"step": 2, "axis": "lr", "side": "high", "value": 0.032}]
    assert [g["step"] for g in fedavg["grid"]] == [0, 0, 0, 0, 1, 2]
    assert fedavg["declared_axes"] == {"lr": LRS} and fedavg["axes"] == {"lr": [*LRS, 0.016, 0.032]}
    # FedProx: a corner of lr x mu: each step adds a row and a column; still on both edges after the cap
    prox = by["fedprox"]
    assert prox["axes"] == {"lr": [2e-3, 4e-3, 8e-3, 0.016], "mu": [0.01, 0.1, 1.0, 10.0]}
    assert len(prox["grid"]) == 16 and [g["step"] for g in prox["grid"]].count(1) == 5
    assert prox["chosen"] == {"lr": 0.016, "mu": 10.0} and prox["on_edge"] == ["lr", "mu"]
    # one call ran every wave: 3 x 4 declared + 1 + 1 (centralized) + 1 + 1 (fedavg) + 5 + 7 (fedprox)
    assert len(runner.calls) == 12 + 2 + 2 + 12 and report.complete
    again = TierRunner(validation=lr_prefers(16e-3))
    run(data, tmp_path, again, stage="tune")
    assert again.calls == []


def test_extension_waves_survive_max_runs(tmp_path: Path) -> None:
    data = tier(tuning={"seed": 0, "partitions": [1], "extensions": 1})
    calls = []
    for _ in range(20):
        runner = TierRunner(validation=lr_prefers(16e-3))
        report, _ = run(data, tmp_path, runner, max_runs=3)
        calls += runner.keys
        if report.complete:
            break
    # tuning: 12 declared + 1 + 1 + 5 extensions; final: centralized 2 (partition 0) + 2 FL x (2 on p0 + 1 on p1)
    assert len(calls) == 19 + 2 + 6 and len(set(calls)) == len(calls)


def test_final_runs_identical_to_tuning_runs_are_not_rerun(tmp_path: Path) -> None:
    runner = TierRunner()
    report, log = run(tier(), tmp_path, runner)
    # tuning: 20; final: every cell's seed 0 run is its tuning run, so only seed 1 is new: 5 cells x 1
    assert len(runner.calls) == 25 and len(set(runner.keys)) == 25
    assert [c["seed"] for c in runner.calls[20:]] == [1] * 5
    assert "final: 5 runs to do" in log
    plan = plan_json(tmp_path)
    fedavg1 = next(c for c in plan["cells"] if c["algorithm"] == "fedavg" and c["partition"]["index"] == 1)
    tuned = next(t for t in plan["tuning"] if t["algorithm"] == "fedavg" and t["partition"]["index"] == 1)
    assert fedavg1["runs"][0]["run_id"] == tuned["grid"][2]["run_id"]  # seed 0 is the tuning record
    again = TierRunner()
    report, _ = run(tier(), tmp_path, again)
    assert again.calls == [] and report.complete


def test_tuning_on_listed_partitions_applies_the_choice_everywhere(tmp_path: Path) -> None:
    data = tier(tuning={"seed": 0, "partitions": [1]})
    prefers = {0: 1e-3, 1: 4e-3}  # the partition tuned on (1) prefers 4e-3

    def validation(c: dict[str, Any]) -> float:
        return lr_prefers(prefers[0 if c["partition"]["scheme"] == "iid" else 1])(c)

    runner = TierRunner(validation=validation)
    run(data, tmp_path, runner)
    plan = plan_json(tmp_path)
    assert [(t["algorithm"], t["partition"]["index"]) for t in plan["tuning"]] == [
        ("centralized", 1), ("fedavg", 1), ("fedprox", 1)]
    fedavg = [c for c in plan["cells"] if c["algorithm"] == "fedavg"]
    assert [(c["partition"]["index"], c["tuned_on"], c["hyperparameters"]) for c in fedavg] == [
        (0, 1, {"lr": 4e-3}), (1, 1, {"lr": 4e-3})]
    central = next(c for c in plan["cells"] if c["role"] == "centralized_equal")
    assert (central["partition"]["index"], central["tuned_on"]) == (0, 1)
    # tuning 12; final: centralized 2 seeds on partition 0 (not tuned there), fedavg/fedprox p0 2 seeds, p1 seed 1
    assert len(runner.calls) == 12 + 2 + 2 * 2 + 2 * 1
    assert all(c["lr"] == 4e-3 for c in runner.calls[12:] if c["algorithm"] == "fedavg")


def test_centralized_equal_and_converged_cells(tmp_path: Path) -> None:
    data = tier(final={"seeds": [0, 1], "centralized_converged": {"rounds": 8, "test_best_round": True}})
    runner = TierRunner()
    run(data, tmp_path, runner)
    cells = [c for c in plan_json(tmp_path)["cells"] if c["algorithm"] == "centralized"]
    assert [(c["role"], c["partition"]["index"], c["hyperparameters"]) for c in cells] == [
        ("centralized_equal", 0, {"lr": 4e-3}), ("centralized_converged", 0, {"lr": 4e-3})]
    assert cells[1]["overrides"] == {"rounds": 8, "test_best_round": True} and "overrides" not in cells[0]
    converged = [c for c in runner.calls if c["algorithm"] == "centralized" and c["rounds"] == 8]
    assert [(c["seed"], c["lr"], c["test_best_round"]) for c in converged] == [(0, 4e-3, True), (1, 4e-3, True)]
    assert all(r["done"] for c in cells for r in c["runs"])
    assert len(runner.calls) == 20 + 5 + 2  # the converged runs are new for every seed


def test_max_runs_stops_cleanly_and_the_next_call_continues(tmp_path: Path) -> None:
    calls: list[tuple[str, int]] = []
    logs = []
    for _ in range(10):
        runner = TierRunner()
        report, log = run(tier(), tmp_path, runner, max_runs=8, command="fednlp-bench suite t.yaml")
        calls += runner.keys
        logs.append(log)
        assert len(runner.calls) <= 8
        if report.complete:
            break
    assert len(calls) == 25 and len(set(calls)) == 25  # the same 25 runs as one call, none twice
    assert ("stopped after 8 run(s): 17 run(s) remain; continue with: fednlp-bench suite t.yaml --max-runs 8"
            in logs[0])
    assert "final: classification: pending tuning: 5 runs once tuning is complete" in logs[0]
    assert "stopped after 8 run(s): 1 run(s) remain" in logs[2]  # 20 tuning done, final: 4 of 5 done
    assert "remain" not in logs[3] and len(logs) == 4
    assert (tmp_path / "out" / "plan.json").exists()


def test_plan_is_written_after_a_stopped_tuning_stage(tmp_path: Path) -> None:
    run(tier(), tmp_path, TierRunner(), max_runs=5)
    plan = plan_json(tmp_path)
    done = [g["done"] for t in plan["tuning"] for g in t["grid"]]
    assert done.count(True) == 5
    # only centralized (tuned first) has a known choice: its cell is listed, its seed-1 run not done yet
    assert [(c["role"], [r["done"] for r in c["runs"]]) for c in plan["cells"]] == [
        ("centralized_equal", [True, False])]
    central = plan["tuning"][0]
    assert central["chosen"] == {"lr": 4e-3} and central["grid"][2]["validation"] == pytest.approx(0.9)
    assert plan["tuning"][1]["chosen"] is None and plan["tuning"][1]["grid"][1]["validation"] is None


def test_task_filter_runs_only_that_task(tmp_path: Path) -> None:
    data = tier(tasks=[{"task": "classification", "data": "20news", "partitions": ["iid"]},
                       {"task": "tagging", "data": "wnut17", "partitions": ["iid"]}])
    runner = TierRunner()
    report, _ = run(data, tmp_path, runner, tasks=["tagging"])
    assert report.complete and {c["task"] for c in runner.calls} == {"tagging"}
    assert len(runner.calls) == 12 + 3  # 3 algorithms x 4 points, then seed 1 of 3 cells
    plan = plan_json(tmp_path)
    assert {t["task"] for t in plan["tuning"]} == {"classification", "tagging"}  # the plan covers the suite
    assert {c["task"] for c in plan["cells"]} == {"tagging"}
    with pytest.raises(ValueError, match="--task 'taging': .* Did you mean 'tagging'"):
        run(data, tmp_path, TierRunner(), tasks=["taging"])


def test_dry_run_lists_tuning_and_counts_final_runs(tmp_path: Path) -> None:
    runner = TierRunner()
    data = tier(final={"seeds": [0, 1, 2], "centralized_converged": {"rounds": 8}},
                tuning={"seed": 0, "extensions": 1})
    _, log = run(data, tmp_path, runner, dry_run=True)
    assert runner.calls == [] and not (tmp_path / "out").exists()
    assert "tuning: 20 runs in the grid, 0 already recorded in the runs folder, 20 to run now" in log
    assert log.count("  would run: ") == 20
    assert "would run: classification · dirichlet_label(alpha=0.1) · fedprox · lr=0.002,mu=0.1 · seed 0 (tuning)" in log
    # 1 + 1 + 1 + 5 + 5: an extension step adds one lr value, or a row and a column of lr x mu
    assert "grid extensions may add up to 13 more run(s) (cap 1 step(s) per unit" in log
    # 5 cells x seeds 1, 2 + converged x 3 seeds
    assert "final: classification: pending tuning: 13 runs once tuning is complete" in log
    assert "total: 33 runs to do (20 tuning + 13 final)" in log
    assert "classification: 33 run(s), hours unknown" in log
    run(data, tmp_path, TierRunner(validation=lr_prefers(4e-3)), stage="tune")
    _, log = run(data, tmp_path, TierRunner(), dry_run=True)
    assert "final: classification: 13 runs to do" in log and "total: 13 runs to do (0 tuning + 13 final)" in log
    full = TierRunner()
    run(data, tmp_path, full, stage="final")
    assert len(full.calls) == 13


def test_final_stage_refuses_unsettled_tuning(tmp_path: Path) -> None:
    run(tier(), tmp_path, TierRunner(), stage="tune", max_runs=17)
    runner = TierRunner()
    with pytest.raises(ValueError, match=r"task 'classification': tuning is not settled \(1 unit\(s\), 3 tuning "
                                         r"run\(s\) missing, extensions included\); run `fednlp-bench suite t.yaml "
                                         r"--stage tune --task classification` first"):
        run(tier(), tmp_path, runner, stage="final")
    assert runner.calls == []


def test_record_without_last_round_validation_is_an_error_naming_the_run(tmp_path: Path) -> None:
    runner = TierRunner(last_metric=False)
    with pytest.raises(ValueError, match=r"run classification-centralized-[0-9a-f]{8}-s0 .* its last round "
                                         r"\(round 4\) has no validation 'accuracy'"):
        run(tier(), tmp_path, runner, max_runs=1)


def test_plan_json_of_a_tiny_grid_field_by_field(tmp_path: Path) -> None:
    data = tier(tasks=[{"task": "classification", "data": "20news",
                        "partitions": [{"scheme": "dirichlet_label", "params": {"alpha": 1.0}}]}],
                algorithms=[{"algorithm": "fedavg", "grid": {"lr": [1e-3, 2e-3, 4e-3]}}], final={"seeds": [0, 1]},
                tuning={"seed": 0, "extensions": 1})
    scores = {1e-3: 0.7, 2e-3: 0.8, 4e-3: 0.6}
    runner = TierRunner(validation=lambda c: scores[c["lr"]], test=lambda c: 0.4)
    run(data, tmp_path, runner)
    plan = plan_json(tmp_path)
    assert len(runner.calls) == 4
    by_lr_seed = {(c["lr"], c["seed"]): (config_hash(c), c) for c in runner.calls}
    partition = {"scheme": "dirichlet_label", "params": {"alpha": 1.0}, "index": 0,
                 "label": "dirichlet_label(alpha=1.0)"}

    def entry(lr: float, seed: int) -> dict[str, Any]:
        digest, config = by_lr_seed[(lr, seed)]
        return {"config_hash": digest, "seed": seed, "run_id": run_id_of(config), "done": True}

    assert plan == {
        "schema": 2, "tier": "smoke", "suite": "t.yaml", "runs_dir": str(tmp_path / "runs"),
        "selection": "validation primary metric averaged over the evaluated rounds of the convergence window, ties to "
                     "the earlier grid point, on the grid as "
                     "its edge extensions grew it; tuning seed 0",
        "convergence": {"window": 0.5, "tolerance": 0.01, "min_points": 3},
        "tasks": [{"task": "classification", "partitions": [partition]}],
        "tuning": [{
            "task": "classification", "data": "20news", "partition": partition, "algorithm": "fedavg",
            "metric": "accuracy", "declared_axes": {"lr": [1e-3, 2e-3, 4e-3]}, "axes": {"lr": [1e-3, 2e-3, 4e-3]},
            "extension_cap": 1, "extensions": [],
            "grid": [{"point": {"lr": lr}, **entry(lr, 0), "validation": pytest.approx(scores[lr]), "step": 0}
                     for lr in (1e-3, 2e-3, 4e-3)],
            "chosen": {"lr": 2e-3}, "on_edge": [],
        }],
        "cells": [{
            "task": "classification", "data": "20news", "partition": partition, "algorithm": "fedavg",
            "algorithm_params": {}, "role": "federated", "hyperparameters": {"lr": 2e-3},
            "tuned_on": 0, "metric": "accuracy", "runs": [entry(2e-3, 0), entry(2e-3, 1)],
        }],
    }
    assert (tmp_path / "runs" / plan["cells"][0]["runs"][1]["run_id"] / "record.json").exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["plan.json"]  # atomic: no temp file left


# ---------------------------------------------------------------- the command
def _command(tmp_path: Path, data: dict[str, Any], runner: TierRunner,
             monkeypatch: pytest.MonkeyPatch) -> Callable[..., int]:
    from fednlp_bench.commands import suite as command

    monkeypatch.setattr(suite_mod, "_load_runner", lambda: runner)
    path = tmp_path / "tier.yaml"
    path.write_text(yaml.safe_dump({**data, "runs_dir": str(tmp_path / "runs"), "out": str(tmp_path / "out")}))
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())

    def call(*argv: str) -> int:
        args = parser.parse_args(["suite", str(path), *argv])
        return args.func(args)

    return call


def test_command_stages_then_tier_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    runner = TierRunner()
    call = _command(tmp_path, tier(), runner, monkeypatch)
    assert call("--max-runs", "22") == 0 and len(runner.calls) == 22
    out = capsys.readouterr().out
    assert f"continue with: fednlp-bench suite {tmp_path / 'tier.yaml'} --max-runs 22" in out
    assert "tier tables" not in out  # not complete yet: no tables
    assert call("--stage", "final", "--task", "classification") == 0 and len(runner.calls) == 25
    assert not (tmp_path / "out" / "classification.md").exists()  # --stage final builds no tables
    assert call() == 0 and len(runner.calls) == 25
    assert "tier tables: written to" in capsys.readouterr().out
    md = (tmp_path / "out" / "classification.md").read_text()
    assert "converged (slope +0.0000/round)" in md and (tmp_path / "out" / "README.md").exists()
    with pytest.raises(ValueError, match="--max-runs 0 must be a positive integer"):
        call("--max-runs", "0")


def test_partition_entry_settings_reach_only_that_partitions_runs() -> None:
    """A partition entry's own min_size/num_clients override the base for its runs (they were once dropped)."""
    data = tier()
    data["tasks"][0]["partitions"] = ["iid", {"scheme": "dirichlet_label", "min_size": 1, "params": {"alpha": 0.1}}]
    plan = build_tier_plan(parse_suite(data))
    by_scheme = {unit.partition.scheme: unit for unit in plan.units if unit.algorithm == "fedavg"}
    assert {r.config["partition"]["min_size"] for r in by_scheme["dirichlet_label"].runs} == {1}
    assert {r.config["partition"]["min_size"] for r in by_scheme["iid"].runs} == {BASE["partition"]["min_size"]}
    cells = [c for c in plan.cells if c.partition.scheme == "dirichlet_label"]
    assert cells and all(r.config["partition"]["min_size"] == 1
                         for c in cells for r in plan.final_runs(c, c.unit.points[0]))


def test_a_task_may_run_a_subset_of_algorithms_and_its_own_converged_rounds(tmp_path: Path) -> None:
    data = tier(final={"seeds": [0, 1], "centralized_converged": {"rounds": 8}},
                tasks=[{"task": "classification", "data": "20news", "partitions": ["iid"]},
                       {"task": "tagging", "data": "wnut17", "partitions": ["iid"], "algorithms": ["centralized", "fedavg"],
                        "centralized_converged": {"rounds": 12, "test_best_round": True}}])
    plan = build_tier_plan(parse_suite(data))
    assert [(u.task_index, u.algorithm) for u in plan.units] == [
        (0, "centralized"), (0, "fedavg"), (0, "fedprox"), (1, "centralized"), (1, "fedavg")]
    converged = {c.task_index: c.overrides for c in plan.cells if c.role == "centralized_converged"}
    assert converged == {0: {"rounds": 8}, 1: {"rounds": 12, "test_best_round": True}}
    with pytest.raises(ValueError, match="'fedavgg' is not one of the suite's algorithms. Did you mean 'fedavg'"):
        parse_suite(tier(tasks=[{"task": "classification", "partitions": ["iid"], "algorithms": ["fedavgg"]}]))


def test_plan_only_rewrites_plan_json_and_runs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys) -> None:
    runner = TierRunner()
    call = _command(tmp_path, tier(), runner, monkeypatch)
    assert call("--plan-only") == 0 and runner.calls == []
    plan = plan_json(tmp_path)
    assert [t["task"] for t in plan["tasks"]] == ["classification"] and len(plan["tasks"][0]["partitions"]) == 2
    assert plan["cells"] == [] and all(not g["done"] for t in plan["tuning"] for g in t["grid"])
    assert "from 0 record(s); 0/5 tuning choice(s) made" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--plan-only runs nothing"):
        call("--plan-only", "--max-runs", "2")
