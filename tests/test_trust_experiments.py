"""The trust experiment spec (configs/trust/trust_20news.yaml) builds valid, comparable runs."""

from __future__ import annotations

import importlib.util
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
    assert len(runs) == 3 * (4 * 2 + 3 + 5) == 48   # populations 4x2, audit 3 (no DP, client DP, example DP), fairness 5
    base = spec["base"]
    # The uniform/static row is the base itself (the cpu tier's FedAvg cell), with the partition seed = the seed.
    cell = RunConfig.from_dict({**base, "seed": 1, "partition": {**base["partition"], "seed": 1}})
    assert runs["trust-populations-static-uniform-s1"].to_dict() == cell.to_dict()
    continual = runs["trust-populations-continual-activity-s0"]
    assert continual.continual["order_by"] == "article_number" and continual.rounds == base["rounds"]
    assert continual.effective_aggregation_weights() == "inverse_probability"
    assert runs["trust-populations-static-activity-size-weighted-s0"].effective_aggregation_weights() == "size"
    dp, nodp = runs["trust-audit-client-dp-s2"].to_dict(), runs["trust-audit-no-dp-s2"].to_dict()
    assert {k for k in dp.keys() | nodp.keys() if dp.get(k) != nodp.get(k)} == {"privacy"}
    example = runs["trust-audit-example-dp-s2"].to_dict()
    assert {k for k in example.keys() | nodp.keys() if example.get(k) != nodp.get(k)} == {"privacy"}
    assert example["privacy"]["mechanism"] == "dp_sgd" and nodp["membership_audit"]["holdout_clients"] == 20
    fair = {run_id: cfg for run_id, cfg in runs.items() if "-fairness-" in run_id}
    assert {cfg.algorithm for cfg in fair.values()} == {"centralized", "fedavg", "fedprox", "fedadam", "fedyogi"}
    assert all(cfg.fairness == {"counterfactual": "gender"} for cfg in fair.values())
    assert te.main(["audit", "--runs", str(tmp_path), "--dry-run", "--seeds", "0"]) == 0
    assert "3 runs, 3 left" in capsys.readouterr().out
