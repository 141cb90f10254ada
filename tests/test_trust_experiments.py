"""The trust experiment spec (configs/trust/trust_20news.yaml) builds valid, comparable runs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import yaml

from fednlp_bench.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("trust_experiments", ROOT / "scripts" / "trust_experiments.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_every_trust_run_is_valid_and_rows_differ_only_where_the_table_compares(tmp_path: Path, capsys) -> None:
    te = load_script()
    spec = yaml.safe_load(te.SPEC.read_text())
    runs = dict(te.planned_runs(spec, list(te.GRIDS), [0, 1, 2]))
    assert len(runs) == 3 * (4 * 2 + 4) == 36   # populations 4x2, audit 4 (no DP, fixed/adaptive clip, DP-SGD)
    base = spec["base"]
    # The uniform/static row is the base itself (the cpu tier's FedAvg cell), with the partition seed = the seed.
    cell = RunConfig.from_dict({**base, "seed": 1, "partition": {**base["partition"], "seed": 1}})
    assert runs["trust-populations-static-uniform-s1"].to_dict() == cell.to_dict()
    continual = runs["trust-populations-continual-activity-s0"]
    assert continual.continual["order_by"] == "article_number" and continual.rounds == base["rounds"]
    assert continual.effective_aggregation_weights() == "inverse_probability"
    assert runs["trust-populations-static-activity-size-weighted-s0"].effective_aggregation_weights() == "size"
    # The audit's rows are the privacy-utility table's cells at their chosen lr, the audit sections added.
    from fednlp_bench.privacy.experiment import Experiment

    exp = Experiment.load(ROOT / "configs" / "trust" / "privacy_utility_20news.yaml")
    selection = json.loads((ROOT / "leaderboards" / "trust" / "privacy_utility" / "selection.json").read_text())
    cells = {c.name: c for c in exp.cells()}
    audit_keys = {"membership_audit", "canary", "client_eval", "client_eval_params"}
    for name, variant in spec["audit"]["variants"].items():
        table = exp.config(cells[variant["cell"]], selection[variant["cell"]]["chosen"], 2).to_dict()
        audited = runs[f"trust-audit-{name}-s2"].to_dict()
        assert {k for k in table.keys() | audited.keys() if table.get(k) != audited.get(k)} <= audit_keys, name
        assert audited["membership_audit"]["holdout_clients"] == 100 and audited["canary"]["count"] == 10
    assert runs["trust-audit-example-dp-s2"].privacy["mechanism"] == "dp_sgd"
    assert runs["trust-audit-client-dp-s2"].privacy["target_epsilon"] == 8
    assert runs["trust-audit-no-dp-s2"].privacy is None
    # Fairness per algorithm comes from the cpu tier's records: its 20News entry and base score the same swap.
    tier = yaml.safe_load((ROOT / "configs" / "suite-cpu.yaml").read_text())
    entry = next(t for t in tier["tasks"] if t["task"] == "classification")
    assert entry["fairness"] == base["fairness"] == {"counterfactual": "gender"}
    assert all(cfg.fairness == base["fairness"] for run_id, cfg in runs.items() if "-populations-" in run_id)
    assert te.main(["audit", "--runs", str(tmp_path), "--dry-run", "--seeds", "0"]) == 0
    assert "4 runs, 4 left" in capsys.readouterr().out


def test_uniform_static_rows_are_the_cpu_tiers_planned_fedavg_runs_on_alpha_1() -> None:
    """Checked on the plan, before 30 hours of compute: the trust row and the tier cell are the same runs."""
    from fednlp_bench.suite.spec import load_suite
    from fednlp_bench.suite.tier_plan import build_tier_plan

    te = load_script()
    spec = yaml.safe_load(te.SPEC.read_text())
    plan = build_tier_plan(load_suite(ROOT / "configs" / "suite-cpu.yaml"))
    cell = next(c for c in plan.cells if plan.task_name(c.task_index) == "classification" and c.algorithm == "fedavg"
                and c.partition.params == spec["base"]["partition"]["params"]
                and c.partition.scheme == spec["base"]["partition"]["scheme"])
    tier = {run.config["seed"]: run.config for run in plan.final_runs(cell, {"lr": spec["base"]["lr"]})}
    runs = dict(te.planned_runs(spec, ["populations"], spec["seeds"]))
    for seed in spec["seeds"]:
        assert runs[f"trust-populations-static-uniform-s{seed}"].to_dict() == tier[seed]


def test_tier_cell_check_matches_a_record_written_before_later_fields(tmp_path: Path) -> None:
    """A tier record made before max_validation_examples/attention_dropout existed lacks those keys; the check
    must still call it the same run (config hash and seed), and a different lr or seed must not match."""
    from fednlp_bench.config import FIELDS_ADDED_LATER

    te = load_script()
    spec = yaml.safe_load(te.SPEC.read_text())
    runs = [(rid, cfg) for rid, cfg in te.planned_runs(spec, ["populations"], [0, 1])
            if "-static-uniform-" in rid]
    old = {k: v for k, v in runs[0][1].to_dict().items() if k not in ("max_validation_examples", "attention_dropout")}
    assert set(FIELDS_ADDED_LATER) >= {"max_validation_examples", "attention_dropout"}
    folder = tmp_path / "classification-fedavg-x-s0"
    folder.mkdir()
    (folder / "record.json").write_text(json.dumps({"config": old}))
    other = tmp_path / "classification-fedavg-y-s1"
    other.mkdir()
    (other / "record.json").write_text(json.dumps({"config": {**runs[1][1].to_dict(), "lr": 0.002}}))
    te.TIER_RECORDS = tmp_path
    lines = te.tier_cell_check(runs)
    assert lines == ["  trust-populations-static-uniform-s0: matches a cpu-tier record",
                     "  trust-populations-static-uniform-s1: NO cpu-tier record has this config"]
