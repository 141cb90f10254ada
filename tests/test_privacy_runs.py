"""DP runs end to end on the toy task: epsilon per round and in the record, records that leak nothing, resume."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Iterator

import dp_accounting
import numpy as np
import pytest
import torch

from fednlp_bench.config import RunConfig
from fednlp_bench.engine.run import checkpoint as ckpt
from fednlp_bench.engine.run import sources
from fednlp_bench.engine.run.runner import run_experiment
from fednlp_bench.privacy import ClientLevelAccountant
from fednlp_bench.privacy.accountant import client_noise_for_target
from fednlp_bench.privacy.records import NONPRIVATE_FILENAME
from fednlp_bench.privacy.secret import STATE_KEY
from fednlp_bench.results.record import RunRecord
from fednlp_bench.testing.toy import ToyTask, toy_partition

ADAPTIVE = {"mechanism": "dp_adaptive_clip", "noise_multiplier": 0.8, "clip_norm": 0.5, "delta": 1e-3,
            "target_quantile": 0.5, "clipped_count_stddev": 1.0}
FIXED = {"mechanism": "dp_fixed_clip", "noise_multiplier": 0.8, "clip_norm": 0.5, "delta": 1e-3}
DPSGD = {"mechanism": "dp_sgd", "noise_multiplier": 1.1, "clip_norm": 1.0, "delta": 1e-3}
#: What a round row of a plain run holds that no DP mechanism releases.
NONPRIVATE_ROUND_KEYS = ("clipped_fraction", "clients_aggregated", "nonprivate")


@pytest.fixture(autouse=True)
def toy_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "build_partition", toy_partition)


def toy_config(**changes: object) -> RunConfig:
    base = dict(task="toy", model="toy", algorithm="fedavg", rounds=4, clients_per_round=3, sampling="poisson",
                partition={"scheme": "quantity_skew", "num_clients": 6, "seed": 0, "min_size": 2},
                lr=0.1, optimizer="sgd", batch_size=8, local_epochs=1)
    base.update(changes)
    return RunConfig.from_dict(base)


def run(cfg: RunConfig, runs_dir: Path, **kw: object) -> RunRecord:
    return run_experiment(cfg, runs_dir, task=ToyTask(n_train=84, n_test=40, hidden=4), progress=False, **kw)  # type: ignore[arg-type]


def secret_seed(run_dir: Path) -> int:
    return int(ckpt.load_checkpoint(run_dir).server_state[STATE_KEY])


# ------------------------------------------------------------------ accounting in the record
def test_client_dp_records_rdp_and_pld_epsilon(tmp_path: Path) -> None:
    rec = run(toy_config(privacy=ADAPTIVE, client_eval=True, membership_audit={"examples": 30, "bootstrap": 50}), tmp_path)
    acc = ClientLevelAccountant(3 / 6, 0.8, 1e-3)
    eps = [r.privacy["epsilon"] for r in rec.rounds]
    assert eps == pytest.approx([acc.epsilon(t) for t in range(1, 5)])
    assert eps == sorted(eps) and eps[0] > 0
    p = rec.privacy
    reference = dp_accounting.pld.PLDAccountant()
    reference.compose(dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(0.5, dp_accounting.GaussianDpEvent(0.8)), 4))
    assert p["epsilon_pld"] == pytest.approx(reference.get_epsilon(1e-3), rel=1e-9)
    assert p["epsilon"] == p["epsilon_rdp"] == pytest.approx(eps[-1])
    assert 0 < p["epsilon_pld"] < p["epsilon_rdp"]  # PLD is the tighter bound
    assert p["mechanism"] == "dp_adaptive_clip" and p["level"] == "client" and p["noise_multiplier"] == 0.8
    assert p["update_noise_multiplier"] == pytest.approx((0.8 ** -2 - 2.0 ** -2) ** -0.5)
    assert p["count_noise_multiplier"] == 2.0 and p["count_sensitivity"] == 0.5
    clips = [r.privacy["clip_norm"] for r in rec.rounds]
    assert clips[0] == 0.5 and len(set(clips)) > 1  # adaptive clipping moved C
    assert "epsilon" in (tmp_path / rec.run_id / "metrics.csv").read_text().splitlines()[0]
    again = RunRecord.load(tmp_path / rec.run_id)
    assert again.privacy == rec.privacy and again.membership_audit == rec.membership_audit


def test_target_epsilon_calibrates_the_smallest_noise_before_training(tmp_path: Path) -> None:
    rec = run(toy_config(privacy={**FIXED, "noise_multiplier": None, "target_epsilon": 3.0}), tmp_path)
    z = rec.privacy["noise_multiplier"]
    assert z == pytest.approx(client_noise_for_target(3.0, 0.5, 4, 1e-3))
    acc = ClientLevelAccountant(0.5, z, 1e-3)
    assert rec.privacy["epsilon"] <= 3.0 and acc.epsilon(4) == pytest.approx(rec.privacy["epsilon"])
    assert ClientLevelAccountant(0.5, z * (1 - 1e-3), 1e-3).epsilon(4) > 3.0  # any less noise misses the target
    assert rec.privacy["target_epsilon"] == 3.0 and rec.config["privacy"]["target_epsilon"] == 3.0


@pytest.mark.parametrize(("target", "message"), [
    (1e-3, r"target_epsilon=0.001 is unreachable .* even noise_multiplier=100 "),
    (1e4, r"target_epsilon=10000 is met already at noise_multiplier=0.1"),
    (-1.0, r"target_epsilon=-1.0 must be a finite number > 0"),
])
def test_bad_or_unreachable_targets_fail_at_config_time(target: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        toy_config(privacy={**FIXED, "noise_multiplier": None, "target_epsilon": target})
    with pytest.raises(ValueError, match="exactly one of noise_multiplier .* and target_epsilon"):
        toy_config(privacy={**FIXED, "target_epsilon": 3.0})


# ------------------------------------------------------------------ records that leak nothing
@pytest.mark.parametrize("privacy", [FIXED, ADAPTIVE, DPSGD], ids=["fixed", "adaptive", "dp_sgd"])
def test_dp_records_hold_no_ids_losses_counts_or_seed(tmp_path: Path, privacy: dict) -> None:
    sampling = "uniform" if privacy is DPSGD else "poisson"
    rec = run(toy_config(privacy=privacy, sampling=sampling, dropout=0.2), tmp_path)
    run_dir = tmp_path / rec.run_id
    stored = json.loads((run_dir / "record.json").read_text())
    model_bytes = rec.bytes_down // (3 * 4)
    for row in stored["rounds"]:
        assert row["clients"] == [] and row["rejected_clients"] == [] and row["train_loss"] is None
        assert not set(NONPRIVATE_ROUND_KEYS) & set(row["privacy"])
        assert row["bytes_down"] == 3 * model_bytes and row["bytes_up"] == round(3 * 0.8 * model_bytes)
        assert row["wall_time_s"] == pytest.approx(rec.wall_time_s / 4)
    seed = secret_seed(run_dir)
    published = (run_dir / "record.json").read_text() + (run_dir / "metrics.csv").read_text()
    assert str(seed) not in published and "noise_seed\": \"secret" in published
    assert "train_loss,bytes_up" in (run_dir / "metrics.csv").read_text()  # the column is there, empty
    side = json.loads((run_dir / NONPRIVATE_FILENAME).read_text())
    assert side["warning"].startswith("NOT COVERED") and len(side["rounds"]) == 4
    assert any(r["clients"] for r in side["rounds"]) and all(r["train_loss"] is not None for r in side["rounds"] if r["clients"])


def test_the_noise_is_not_derivable_from_the_config(tmp_path: Path) -> None:
    cfg = toy_config(privacy=FIXED)
    a, b = run(cfg, tmp_path / "a"), run(cfg, tmp_path / "b")
    assert secret_seed(tmp_path / "a" / a.run_id) != secret_seed(tmp_path / "b" / b.run_id)
    wa = ckpt.load_checkpoint(tmp_path / "a" / a.run_id).weights
    wb = ckpt.load_checkpoint(tmp_path / "b" / b.run_id).weights
    assert not all(torch.equal(wa[k], wb[k]) for k in wa)  # same config and seed, other noise


def fixed_draws(monkeypatch: pytest.MonkeyPatch, values: list[int]) -> None:
    draws: Iterator[int] = iter(values)
    monkeypatch.setattr(secrets, "randbits", lambda bits: next(draws))


@pytest.mark.parametrize("privacy", [ADAPTIVE, DPSGD], ids=["adaptive", "dp_sgd"])
def test_dp_run_resumes_bit_identically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, privacy: dict) -> None:
    # The uninterrupted and the cut run draw the same secret; the resumed process draws another one,
    # so it matches only by restoring the checkpoint's secret.
    fixed_draws(monkeypatch, [1234, 1234, 98765])
    cfg = toy_config(privacy=privacy, algorithm="fedadam", algorithm_params={"server_lr": 0.05})
    full = run(cfg, tmp_path / "full")

    class Killed(Exception):
        pass

    def kill(result: object) -> None:
        if result.round == 2:  # type: ignore[attr-defined]
            raise Killed

    with pytest.raises(Killed):
        run(cfg, tmp_path / "cut", on_round_end=kill)
    resumed = run(cfg, tmp_path / "cut", resume=True)
    assert [r.privacy for r in resumed.rounds] == [r.privacy for r in full.rounds]
    assert resumed.final_metrics == full.final_metrics
    wf = ckpt.load_checkpoint(tmp_path / "full" / full.run_id).weights
    wr = ckpt.load_checkpoint(tmp_path / "cut" / full.run_id).weights
    assert all(torch.equal(wf[k], wr[k]) for k in wf)
    side_full = json.loads((tmp_path / "full" / full.run_id / NONPRIVATE_FILENAME).read_text())["rounds"]
    side_cut = json.loads((tmp_path / "cut" / full.run_id / NONPRIVATE_FILENAME).read_text())["rounds"]
    assert [r["clients"] for r in side_full] == [r["clients"] for r in side_cut]


def test_heavy_noise_hurts_and_plain_run_is_unchanged_by_the_feature_code(tmp_path: Path) -> None:
    plain = run(toy_config(), tmp_path / "plain")
    assert plain.privacy is None and all(r.privacy is None for r in plain.rounds)
    assert not (tmp_path / "plain" / plain.run_id / NONPRIVATE_FILENAME).exists()
    noisy = run(toy_config(privacy={**FIXED, "noise_multiplier": 50.0}), tmp_path / "noisy")
    assert noisy.final_metrics["loss"] > plain.final_metrics["loss"]
    assert noisy.privacy["epsilon"] < 0.5


# ------------------------------------------------------------------ example level
def test_dp_sgd_run_reports_the_worst_clients_epsilon(tmp_path: Path) -> None:
    from fednlp_bench.sampling.policies import select_clients

    cfg = toy_config(privacy=DPSGD, sampling="uniform", rounds=3)
    rec = run(cfg, tmp_path)
    sizes = toy_partition(ToyTask(n_train=84).load()["train"], cfg.partition).sizes()
    # Who took part is public for DP-SGD (the run seed); each participation is ceil(n/8) steps at q = 1/ceil(n/8).
    taken: dict[int, int] = {}
    for rnd in range(1, 4):
        for c in select_clients("uniform", {}, 6, 3, rnd, cfg.seed, sizes):
            taken[c] = taken.get(c, 0) + 1
    worst_rdp, worst_pld = 0.0, 0.0
    for c, times in taken.items():
        batches = int(np.ceil(sizes[c] / 8))
        event = dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(1 / batches, dp_accounting.GaussianDpEvent(1.1)), times * batches)
        rdp, pld = dp_accounting.rdp.RdpAccountant(), dp_accounting.pld.PLDAccountant()
        rdp.compose(event)
        pld.compose(event)
        worst_rdp, worst_pld = max(worst_rdp, rdp.get_epsilon(1e-3)), max(worst_pld, pld.get_epsilon(1e-3))
    p = rec.privacy
    assert p["level"] == "example" and p["epsilon_rdp"] == pytest.approx(worst_rdp, rel=1e-9)
    assert p["epsilon_pld"] == pytest.approx(worst_pld, rel=1e-9)
    assert [r.privacy["epsilon"] for r in rec.rounds] == sorted(r.privacy["epsilon"] for r in rec.rounds)
    assert rec.final_metrics["accuracy"] >= 0.0


def test_dp_sgd_refuses_what_its_accounting_does_not_cover() -> None:
    with pytest.raises(ValueError, match="'fedprox' has a client procedure"):
        toy_config(privacy=DPSGD, algorithm="fedprox", algorithm_params={"mu": 0.1})
    with pytest.raises(ValueError, match="'centralized' is centralized"):
        toy_config(privacy=DPSGD, algorithm="centralized")
    with pytest.raises(ValueError, match="dp_sgd needs precision: fp32"):
        toy_config(privacy=DPSGD, precision="bf16")
    toy_config(privacy=DPSGD, sampling="uniform", algorithm="fedmedian")  # server aggregation is post-processing
