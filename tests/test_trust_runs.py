"""End to end on the toy task: the audit, per-client evaluation, the continual setting (DP runs: test_privacy_runs.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fednlp_bench.config import RunConfig
from fednlp_bench.engine import prepare
from fednlp_bench.engine.runner import run_experiment
from fednlp_bench.engine.local_trainer import LocalTrainer
from fednlp_bench.testing.toy import ToyPartition, ToyTask, toy_partition
from fednlp_bench.results.record import RunRecord

DP = {"mechanism": "dp_adaptive_clip", "noise_multiplier": 0.8, "clip_norm": 0.5, "delta": 1e-3,
      "target_quantile": 0.5, "clipped_count_stddev": 1.0}


@pytest.fixture(autouse=True)
def toy_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prepare, "build_partition", toy_partition)


def toy_config(**changes: object) -> RunConfig:
    base = dict(task="toy", model="toy", algorithm="fedavg", rounds=4, clients_per_round=3,
                partition={"scheme": "quantity_skew", "num_clients": 6, "seed": 0, "min_size": 2},
                lr=0.1, optimizer="sgd", batch_size=8, local_epochs=1)
    base.update(changes)
    return RunConfig.from_dict(base)


def run(cfg: RunConfig, runs_dir: Path, **kw: object) -> RunRecord:
    return run_experiment(cfg, runs_dir, task=ToyTask(n_train=84, n_test=40, hidden=4), progress=False, **kw)  # type: ignore[arg-type]


def test_client_eval_reports_per_client_metrics_on_held_out_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen_rows: set[int] = set()
    original = LocalTrainer.train

    def spy(self: LocalTrainer, client_id: int, rows: np.ndarray, *args: object, **kw: object) -> object:
        seen_rows.update(int(r) for r in rows)  # toy features: feature row == raw row
        return original(self, client_id, rows, *args, **kw)

    monkeypatch.setattr(LocalTrainer, "train", spy)
    rec = run(toy_config(client_eval=True, rounds=3, clients_per_round=6), tmp_path)
    ce = rec.client_eval
    assert ce["metric"] == "accuracy" and len(ce["clients"]) == 6
    values = [c["accuracy"] for c in ce["clients"]]
    assert ce["summary"]["mean"] == pytest.approx(np.mean(values))
    assert ce["summary"]["worst_10pct"] == pytest.approx(min(values))  # ceil(6/10) = 1 client
    assert ce["summary"]["best_10pct"] == pytest.approx(max(values))
    # Skewed toy partition: client c holds ~4(c+1) rows, 20% of them held out.
    sizes = [c["train_size"] + c["test_size"] for c in ce["clients"]]
    assert sizes == [4, 8, 12, 16, 20, 24]
    assert [c["test_size"] for c in ce["clients"]] == [1, 1, 2, 3, 4, 4]
    held_out = {int(i) for rows in ce["split"]["test_rows"].values() for i in rows}
    assert len(held_out) == sum(c["test_size"] for c in ce["clients"])
    assert not (seen_rows & held_out) and seen_rows  # clients trained only on their local-train rows


def test_client_eval_too_small_clients_fail_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A partition (e.g. a saved file) whose clients hold one row each, despite the config's min_size.
    monkeypatch.setattr(prepare, "build_partition", lambda train, spec: ToyPartition(len(train), {**spec, "min_size": 1}))
    cfg = toy_config(client_eval=True, partition={"scheme": "iid", "num_clients": 6, "seed": 0, "min_size": 2, "params": {}})
    with pytest.raises(ValueError, match="at least 2 rows"):
        run_experiment(cfg, tmp_path, task=ToyTask(n_train=6), progress=False)
    assert not any(tmp_path.iterdir())


def test_continual_run_has_a_row_per_period(tmp_path: Path) -> None:
    cfg = toy_config(rounds=6, eval_every=100, sampling="activity_power", sampling_params={"power": 1.0},
                     continual={"periods": 3, "retention": 1, "rounds_per_period": 2})
    rec = run(cfg, tmp_path)
    rows = rec.continual["rows"]
    assert [r["period"] for r in rows] == [1, 2, 3] and [r["last_round"] for r in rows] == [2, 4, 6]
    assert all("accuracy" in r["metrics"] for r in rows)
    assert [bool(r.metrics) for r in rec.rounds] == [False, True, False, True, False, True]
    # retention 1: a period holds only its own arrivals. Clients of 4, 8, ..., 24 rows cut into 3 chunks
    # by np.array_split (first chunks get the remainder): 2+3+4+6+7+8, 1+3+4+5+7+8, 1+2+4+5+6+8.
    assert [r["rows_available"] for r in rows] == [30, 28, 26]
    arrival = rec.continual["arrival"]
    assert rec.continual["arrival_source"] == "seeded order" and len(arrival) == 6
    assert sorted(i for per in arrival.values() for period in per for i in period) == list(range(84))


def test_trust_tables_and_leaderboard_columns(tmp_path: Path) -> None:
    from fednlp_bench.leaderboard.collect import collect_records
    from fednlp_bench.leaderboard.render import table_markdown, task_csv
    from fednlp_bench.leaderboard.tables import build_tables
    from fednlp_bench.leaderboard.trust_tables import population_table, privacy_table

    runs = tmp_path / "runs"
    plain = run(toy_config(sampling="poisson", mia_examples=20, client_eval=True, rounds=2), runs)
    dp = run(toy_config(sampling="poisson", mia_examples=20, client_eval=True, rounds=2,
                        privacy={**DP, "mechanism": "dp_fixed_clip", "target_quantile": None, "clipped_count_stddev": None}),
             runs)
    # client_eval holds out 1+1+2+3+4+4 = 15 rows of the clients themselves: the non-members.
    assert plain.membership_audit["nonmember_source"] == "client_eval local test rows"
    assert plain.membership_audit["nonmembers"] == plain.membership_audit["members"] == 15
    records = collect_records(runs)
    text = privacy_table(records)
    assert "| off | 0 |" in text and "| dp_fixed_clip | 0.8 | 0.5 | 0.001 |" in text
    assert f"{dp.privacy['epsilon']:.2f}" in text and f"{plain.membership_audit['auc']:.3f}" in text
    cell = next(c for t in build_tables(records) for c in t.cells.values() if c.records[0].record.run_id == dp.run_id)
    assert cell.epsilon == pytest.approx(dp.privacy["epsilon"])
    assert cell.worst_10pct == pytest.approx(dp.client_eval["summary"]["worst_10pct"])
    dp_table = next(t for t in build_tables(records) if cell in t.cells.values())
    md = table_markdown(dp_table, tmp_path, "dp", {})
    assert "| ε FedAvg | Worst 10% FedAvg | MIA AUC FedAvg |" in md
    assert f"| {dp.privacy['epsilon']:.2f} | {dp.client_eval['summary']['worst_10pct']:.4f} | " in md
    assert "epsilon,worst_10pct,mia_auc" in task_csv(build_tables(records)).splitlines()[0]
    with pytest.raises(ValueError, match=r"differs .* in \['client_eval'\]"):
        privacy_table(collect_records(runs) + [
            type(records[0])(run(toy_config(sampling="poisson", rounds=2), tmp_path / "other"), tmp_path / "other")])

    pop_runs = tmp_path / "pop"
    run(toy_config(rounds=4, sampling="uniform"), pop_runs)
    run(toy_config(rounds=4, sampling="activity_power", sampling_params={"power": 1.0},
                   continual={"periods": 2, "retention": 1, "rounds_per_period": 2}), pop_runs)
    table = population_table(collect_records(pop_runs))
    assert "| static | uniform |" in table and "| continual T=2, W=1, R=2 | activity_power (p=1) |" in table
    assert " → " in table
