"""End to end on the toy task: the audit, per-client evaluation, the continual setting (DP runs: test_privacy_runs.py)."""

from __future__ import annotations

import math

from pathlib import Path

import numpy as np
import pytest

from fednlp_bench.config import RunConfig
from fednlp_bench.engine.run import sources
from fednlp_bench.engine.run.runner import run_experiment
from fednlp_bench.engine.client.trainer import LocalTrainer
from fednlp_bench.testing.toy import ToyPartition, ToyTask, toy_partition
from fednlp_bench.results.record import RunRecord

DP = {"mechanism": "dp_adaptive_clip", "noise_multiplier": 0.8, "clip_norm": 0.5, "delta": 1e-3,
      "target_quantile": 0.5, "clipped_count_stddev": 1.0}


@pytest.fixture(autouse=True)
def toy_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "build_partition", toy_partition)


def toy_config(**changes: object) -> RunConfig:
    base = dict(task="toy", model="toy", algorithm="fedavg", rounds=4, clients_per_round=3,
                partition={"scheme": "quantity_skew", "num_clients": 6, "seed": 0, "min_size": 2},
                lr=0.1, optimizer="sgd", batch_size=8, local_epochs=1)
    base.update(changes)
    return RunConfig.from_dict(base)


def run(cfg: RunConfig, runs_dir: Path, **kw: object) -> RunRecord:
    return run_experiment(cfg, runs_dir, task=ToyTask(n_train=84, n_test=40, hidden=4), progress=False, **kw)  # type: ignore[arg-type]


def test_dp_run_audit_redacts_participation(tmp_path: Path) -> None:
    cfg = toy_config(sampling="poisson", privacy=DP, client_eval=True, membership_audit={"examples": 30, "bootstrap": 50})
    rec = run(cfg, tmp_path)
    audit = rec.membership_audit
    assert audit["members"]["sampled"] == audit["nonmembers"]["sampled"] and 0.0 <= audit["auc"] <= 1.0
    assert audit["auc"] == audit["example_level"]["calibrated"]["auc"]
    assert audit["nonmembers"]["source"].startswith("client_eval local test rows")
    assert rec.population["aggregation_weights"] == "dp_fixed_denominator"
    # Who took part is what client-level DP hides: the audit's participation counts stay out of a DP record.
    assert audit["members"]["pool"] is None and audit["client_level"]["participating"] is None
    assert "members.pool" in audit["redacted"]
    assert "epsilon" in (tmp_path / rec.run_id / "metrics.csv").read_text().splitlines()[0]
    again = RunRecord.load(tmp_path / rec.run_id)  # the optional fields survive validation and loading
    assert again.privacy == rec.privacy and again.membership_audit == rec.membership_audit



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
    monkeypatch.setattr(sources, "build_partition", lambda train, spec: ToyPartition(len(train), {**spec, "min_size": 1}))
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


def test_trust_tables(tmp_path: Path) -> None:
    from fednlp_bench.leaderboard.records import collect_records
    from fednlp_bench.leaderboard.trust_tables import population_table, privacy_table

    runs = tmp_path / "runs"
    audit = {"examples": 20, "bootstrap": 20}
    plain = run(toy_config(sampling="poisson", membership_audit=audit, client_eval=True, rounds=2), runs)
    dp = run(toy_config(sampling="poisson", membership_audit=audit, client_eval=True, rounds=2,
                        privacy={**DP, "mechanism": "dp_fixed_clip", "target_quantile": None, "clipped_count_stddev": None}),
             runs)
    # Non-members: the held-out local test rows of the clients that took part (at most 1+1+2+3+4+4 = 15).
    nonmembers = plain.membership_audit["nonmembers"]
    assert nonmembers["sampled"] == plain.membership_audit["members"]["sampled"] <= nonmembers["pool"] <= 15
    records = collect_records(runs)
    text = privacy_table(records)
    assert "| off | 0 |" in text and "| dp_fixed_clip | 0.8 | 0.5 | 0.001 |" in text
    assert f"{dp.privacy['epsilon']:.2f}" in text and f"{plain.membership_audit['auc']:.3f} n=1" in text
    with pytest.raises(ValueError, match=r"differs .* in \['client_eval', 'membership_audit'\]"):
        privacy_table(collect_records(runs) + [
            type(records[0])(run(toy_config(sampling="poisson", rounds=2), tmp_path / "other"), tmp_path / "other")])

    pop_runs = tmp_path / "pop"
    static = run(toy_config(rounds=4, sampling="uniform", client_eval=True), pop_runs)
    run(toy_config(rounds=4, sampling="activity_power", sampling_params={"power": 1.0}, client_eval=True,
                   continual={"periods": 2, "retention": 1, "rounds_per_period": 2}), pop_runs)
    table = population_table(collect_records(pop_runs))
    assert "| static | uniform |" in table and "| continual T=2, W=1, R=2 | activity_power (p=1) |" in table
    assert " → " in table
    # Worst-10% clients as the tier tables give it: the qualifying clients only, and how many qualified.
    summary = static.client_eval["summary"]
    row = next(line for line in table.splitlines() if line.startswith("| static | uniform |"))
    assert f"{summary['qualified']}/{summary['clients']} clients with ≥{summary['min_units']} " in row


def test_population_rows_pair_with_static_uniform_seed_by_seed(tmp_path: Path) -> None:
    """Seeds that reseed the partition too (the tier's pairing) are one row; each row's gap is paired by seed."""
    from fednlp_bench.leaderboard.records import collect_records
    from fednlp_bench.leaderboard.summary import difference, difference_text, summarize
    from fednlp_bench.leaderboard.trust_tables import population_table

    runs, made = tmp_path / "pop", {}
    for seed in (0, 1, 2):
        partition = {"scheme": "quantity_skew", "num_clients": 6, "seed": seed, "min_size": 2}
        for name, extra in {"uniform": {}, "activity": {"sampling": "activity_systematic",
                                                        "sampling_params": {"gamma": 1.0}}}.items():
            made[name, seed] = run(toy_config(seed=seed, partition=partition, rounds=3, **extra), runs)
    table = population_table(collect_records(runs))
    assert "(partition seed = run seed)" in table
    uniform, activity = ([float(made[name, s].final_metrics["accuracy"]) for s in (0, 1, 2)]
                         for name in ("uniform", "activity"))
    expected = difference_text(difference(summarize(activity, [0, 1, 2]), summarize(uniform, [0, 1, 2])))
    row = next(line for line in table.splitlines() if line.startswith("| static | activity_systematic (γ=1) |"))
    assert f"| {expected} |" in row and "paired 95% CI" in expected
    uniform_row = next(line for line in table.splitlines() if line.startswith("| static | uniform |"))
    assert f"| {summarize(uniform).text()} | — |" in uniform_row
    # A partition seeded apart from the run seed is a different setting, not a replicate.
    other = toy_config(seed=0, rounds=3, partition={"scheme": "quantity_skew", "num_clients": 6, "seed": 7,
                                                       "min_size": 2})
    run(other, runs)
    with pytest.raises(ValueError, match=r"differs .* in \['partition'\]"):
        population_table(collect_records(runs))


def test_audit_table_rows_are_seed_summaries_of_the_records(tmp_path: Path) -> None:
    from fednlp_bench.leaderboard.audit_table import audit_table
    from fednlp_bench.leaderboard.records import collect_records
    from fednlp_bench.leaderboard.summary import summarize

    runs, audit = tmp_path / "runs", {"examples": 20, "bootstrap": 20, "holdout_clients": 2}
    fixed = {**DP, "mechanism": "dp_fixed_clip", "target_quantile": None, "clipped_count_stddev": None}
    made = {}
    for seed in (0, 1):
        partition = {"scheme": "quantity_skew", "num_clients": 6, "seed": seed, "min_size": 2}
        for name, privacy in (("nodp", None), ("dp", fixed)):
            made[name, seed] = run(toy_config(sampling="poisson", membership_audit=audit, client_eval=True, seed=seed,
                                              partition=partition, privacy=privacy), runs, run_id=f"{name}-s{seed}")
    table = audit_table(collect_records(runs))
    rows = {line.split(" | ")[0]: line for line in table.splitlines() if line.startswith("| ")}
    nodp, dp = rows["| no DP, lr 0.1"], rows["| client-level DP-FedAvg (fixed clip), lr 0.1"]
    calibrated = summarize([made["nodp", s].membership_audit["example_level"]["calibrated"]["auc"] for s in (0, 1)])
    assert f"| {calibrated.text(3)} |" in nodp and nodp.endswith("| nodp-s0, nodp-s1 |")
    client = summarize([made["dp", s].membership_audit["client_auc"] for s in (0, 1)])
    assert f"| {client.text(3)} |" in dp and f"| {made['dp', 0].privacy['epsilon_rdp']:.2f}" in dp
    loss = summarize([made["dp", s].membership_audit["client_level"]["loss_only_auc"] for s in (0, 1)])
    assert f"| {client.text(3)} | {loss.text(3)} |" in dp
    assert "(one client)" in dp and "| ∞ |" in nodp
    # Rows may differ in privacy and in their own tuned lr, nothing else.
    with pytest.raises(ValueError, match=r"differs .* in \['rounds'\]"):
        audit_table(collect_records(runs) + [type(collect_records(runs)[0])(
            run(toy_config(sampling="poisson", membership_audit=audit, client_eval=True, rounds=1), tmp_path / "o"),
            tmp_path / "o")])


# ------------------------------------------------------------------ audit v2: members, resume, client level
AUDIT = {"examples": 50, "bootstrap": 50, "holdout_clients": 2}


def test_audit_members_are_exactly_the_rows_in_aggregated_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: set[int] = set()
    original = LocalTrainer._step

    def spy(self: LocalTrainer, ctx: object, opt: object, procedure: object, batch_rows: np.ndarray) -> float:
        seen.update(int(r) for r in batch_rows)  # toy features: feature row == raw row
        return original(self, ctx, opt, procedure, batch_rows)  # type: ignore[arg-type]

    monkeypatch.setattr(LocalTrainer, "_step", spy)
    cfg = toy_config(client_eval=True, local_epochs=None, local_steps=1, batch_size=2, rounds=3,
                     membership_audit=AUDIT)
    rec = run(cfg, tmp_path)
    import json

    saved = json.loads((tmp_path / rec.run_id / "trained_rows.json").read_text())
    tracked = {r for v in saved["rounds"].values() for rows in v["clients"].values() for r in rows}
    assert tracked == seen  # one step of 2 rows per client and round: far fewer than the clients hold
    held = sum(len(rows) for rows in rec.client_eval["split"]["test_rows"].values())
    assert rec.membership_audit["members"]["pool"] == len(seen) < 84 - held
    taken = {c for r in rec.rounds for c in r.clients}
    client = rec.membership_audit["client_level"]
    assert client["participating"] == len(taken) and client["not_participating"] == 6 - len(taken)
    assert rec.membership_audit["holdout_clients"] == 2 and len(taken) <= 4
    assert rec.population["held_out_clients"] == 2


def test_audit_survives_a_resume_exactly(tmp_path: Path) -> None:
    cfg = toy_config(client_eval=True, local_epochs=None, local_steps=2, rounds=4,
                     membership_audit={**AUDIT, "reference": "population"})
    full = run(cfg, tmp_path / "full")

    class Killed(Exception):
        pass

    def kill(result: object) -> None:
        if result.round == 2:  # type: ignore[attr-defined]
            raise Killed

    with pytest.raises(Killed):
        run(cfg, tmp_path / "cut", on_round_end=kill)
    resumed = run(cfg, tmp_path / "cut", resume=True)
    assert resumed.membership_audit == full.membership_audit
    assert full.membership_audit["reference"]["kind"] == "population"
    # As many epochs per row as the target: rounds x K x local_steps x batch examples over the participating
    # clients' training rows (the held-out clients' rows and the client_eval test rows excluded), not equal steps.
    reference = full.membership_audit["reference"]
    examples = 4 * 3 * 2 * cfg.batch_size
    participating_rows = examples / reference["epochs"]
    assert participating_rows == pytest.approx(round(participating_rows), abs=0.01)
    assert round(participating_rows) < 84 - sum(len(r) for r in full.client_eval["split"]["test_rows"].values())
    assert reference["steps"] == math.ceil(reference["epochs"] * reference["rows"] / cfg.batch_size) < 4 * 3 * 2


# ------------------------------------------------------------------ aggregation weights
def test_inverse_probability_weighting_runs_and_is_recorded(tmp_path: Path) -> None:
    rec = run(toy_config(sampling="activity_systematic", rounds=2), tmp_path)
    assert rec.population == {"sampling": "activity_systematic", "sampling_params": {"gamma": 1.0},
                              "aggregation_weights": "inverse_probability", "exact_inclusion": True,
                              "held_out_clients": 0}
    assert "aggregation_weights" not in rec.config  # the policy's default
    size = run(toy_config(sampling="activity_systematic", rounds=2, aggregation_weights="size"), tmp_path)
    assert size.config["aggregation_weights"] == "size" and size.final_metrics != rec.final_metrics


@pytest.mark.parametrize("changes,message", [
    ({"sampling": "weighted", "aggregation_weights": "inverse_probability"}, "does not have; use activity_poisson"),
    ({"sampling": "top_active", "aggregation_weights": "inverse_probability"}, "inclusion 0"),
    ({"sampling": "activity_poisson", "algorithm": "fedmedian"}, "cannot take"),
    ({"sampling": "poisson", "privacy": {"mechanism": "dp_fixed_clip", "noise_multiplier": 1.0, "clip_norm": 1.0,
                                         "delta": 1e-3}, "aggregation_weights": "uniform"}, "does not apply with privacy"),
    ({"aggregation_weights": "ipw"}, "aggregation_weights='ipw' is not supported"),
])
def test_aggregation_weights_that_cannot_hold_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        toy_config(**changes)


@pytest.mark.slow
def test_every_trust_feature_runs_on_the_frozen_bottom_cache(tmp_path: Path, offline_task_env: object) -> None:
    """Canary candidates and swapped texts are inputs outside the splits: the cache must hold them too."""
    cfg = RunConfig(task="classification", model="tiny", data="20news", max_length=48, max_train_examples=120,
                    max_eval_examples=30, partition={"scheme": "iid", "num_clients": 6, "seed": 0, "min_size": 4},
                    rounds=2, clients_per_round=3, local_epochs=1, batch_size=8, lr=3e-3, sampling="poisson",
                    trainable="top_layers", trainable_params={"layers": 1, "cache": True}, client_eval=True,
                    membership_audit={"examples": 20, "bootstrap": 20, "reference": "population", "holdout_clients": 1},
                    canary={"count": 3, "candidates": 20, "secret_length": 3}, fairness={"counterfactual": "gender"})
    rec = run_experiment(cfg, tmp_path / "runs", frozen_cache_dir=tmp_path / "frozen", progress=False)
    assert rec.membership_audit["reference"]["kind"] == "population"
    assert rec.canary["candidates"] == 20 and rec.fairness["counterfactual"]["changed_rows"] > 0
    assert rec.membership_audit["excluded_rows"] == 3  # the canaries are not audited as members
