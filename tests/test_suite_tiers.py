"""Tier suites: grid expansion, equal effort, validation of the protocol before anything runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from fednlp_bench.suite import plan_checks
from fednlp_bench.suite.spec import parse_suite
from fednlp_bench.suite.tier_plan import build_tier_plan

from suite_tier_fakes import BASE, LRS, TierRunner, run, tier


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
