"""Loss-threshold membership inference (Yeom et al. 2018) against hand-computed AUCs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fednlp_bench.audit.membership import choose_rows, loss_threshold_attack, per_example_losses
from fednlp_bench.testing.toy import ToyTask


def test_auc_and_threshold_accuracy_by_hand() -> None:
    # Members' losses [0.1, 0.2, 0.9], non-members [0.3, 0.8]: pairs where member loss < non-member: 2+2+0 = 4 of 6.
    out = loss_threshold_attack([0.1, 0.2, 0.9], [0.3, 0.8])
    assert out["auc"] == pytest.approx(4 / 6)
    assert out["threshold"] == pytest.approx(0.4)  # mean member loss
    # loss <= 0.4: members 2/3 right, non-members 1/2 right -> balanced accuracy 7/12.
    assert out["balanced_accuracy"] == pytest.approx(7 / 12)
    assert loss_threshold_attack([0.1, 0.2], [0.5, 0.6])["auc"] == 1.0
    assert loss_threshold_attack([0.5, 0.5], [0.5, 0.5])["auc"] == 0.5


def test_per_example_losses_match_cross_entropy() -> None:
    task = ToyTask(n_train=20)
    feats = task.preprocess(task.load()["train"], train=True)
    torch.manual_seed(0)
    model = task.build_model()
    losses = per_example_losses(task, model, feats, [0, 3, 5], batch_size=2)
    batch = task.collate([feats[i] for i in (0, 3, 5)])
    expected = torch.nn.functional.cross_entropy(model(**batch).logits, batch["labels"], reduction="none")
    np.testing.assert_allclose(losses, expected.detach().numpy(), rtol=1e-5)


def test_rows_are_equal_size_seeded_samples() -> None:
    m, o = choose_rows(np.arange(100), np.arange(30), 50, seed=1)
    assert len(m) == len(o) == 30
    m2, _ = choose_rows(np.arange(100), np.arange(30), 50, seed=1)
    assert m.tolist() == m2.tolist()
    with pytest.raises(ValueError, match="needs members and non-members"):
        choose_rows(np.arange(0), np.arange(30), 50, seed=1)


# ------------------------------------------------------------------ statistics
def test_tpr_at_low_fpr_by_hand() -> None:
    from fednlp_bench.audit.statistics import attack_report, tpr_at_fpr

    members, others = [3.0, 4.0, 5.0], [0.0, 1.0, 2.0, 3.5]
    # No false positive above 3.5: members 4 and 5 are caught, TPR 2/3; at FPR 1/4 also 3 > 2: TPR 1.
    assert tpr_at_fpr(members, others, (0.001, 0.25)) == {"0.001": pytest.approx(2 / 3), "0.25": 1.0}
    report = attack_report(members, others, resamples=200, seed=0)
    assert report["auc"] == pytest.approx(11 / 12) and report["fpr_resolution"] == 0.25
    lo, hi = report["auc_ci95"]
    assert lo <= report["auc"] <= hi <= 1.0
    assert attack_report([5.0, 6.0], [1.0, 2.0], 100, 0)["auc_ci95"] == [1.0, 1.0]  # perfect in every resample


def test_bootstrap_interval_has_the_width_of_200_examples_per_side() -> None:
    """No leakage at 200 + 200 examples: the interval contains 0.5 and is about +-0.057 wide (the audit's old blind spot)."""
    from fednlp_bench.audit.statistics import attack_report

    rng = np.random.default_rng(0)
    report = attack_report(rng.normal(size=200), rng.normal(size=200), resamples=2000, seed=1)
    lo, hi = report["auc_ci95"]
    assert lo < 0.5 < hi and 0.09 < hi - lo < 0.14


def test_bootstrap_auc_matches_sklearn_on_ties() -> None:
    from sklearn.metrics import roc_auc_score

    from fednlp_bench.audit.statistics import bootstrap_auc_interval

    m, o = np.array([1.0, 1.0, 2.0]), np.array([1.0, 0.0])
    # One resample that is the sample itself reproduces roc_auc_score (ties count one half).
    assert roc_auc_score([1, 1, 1, 0, 0], np.concatenate([m, o])) == pytest.approx(5 / 6)
    lo, hi = bootstrap_auc_interval(m, o, 500, 3)
    assert 0.0 <= lo <= 5 / 6 <= hi <= 1.0


# ------------------------------------------------------------------ tracking
def test_tracker_commits_only_aggregated_updates_and_survives_a_restart(tmp_path) -> None:
    from fednlp_bench.audit.tracking import BatchTracker

    t = BatchTracker(tmp_path, watch=[7])
    t.observe(0, np.array([1, 2]))
    t.observe(0, np.array([2, 7]))
    t.observe(1, np.array([5, 7]))  # client 1's update is rejected below
    t.commit(1, accepted=[0])
    assert t.trained_rows().tolist() == [1, 2, 7] and t.participants() == {0} and t.watched_count() == 1
    t.observe(1, np.array([8]))
    t.commit(2, accepted=[1])
    again = BatchTracker(tmp_path, watch=[7])  # a resumed run reads what was committed
    assert again.trained_rows().tolist() == [1, 2, 7, 8] and again.rounds_of(1) == [2]
    again.observe(3, np.array([9]))
    again.commit(2, accepted=[3])  # round 2 re-run after a resume replaces its entry
    assert again.trained_rows().tolist() == [1, 2, 7, 9] and again.participants() == {0, 3}


# ------------------------------------------------------------------ the attacks on the tiny model
@pytest.fixture(scope="module")
def tiny_20news(offline_task_env):
    from fednlp_bench.tasks.classification import ClassificationTask

    task = ClassificationTask(model="tiny", data="20news", max_length=48, max_train_examples=160, max_eval_examples=20)
    feats = task.preprocess(task.load()["train"], train=True)
    return task, feats


def test_overfit_model_leaks_and_untrained_model_does_not(tiny_20news, train_steps) -> None:
    from fednlp_bench.audit.membership import example_level_attacks
    from fednlp_bench.audit.statistics import attack_report

    task, feats = tiny_20news
    members, others = np.arange(0, 64), np.arange(64, 128)
    torch.manual_seed(0)
    untrained = task.build_model()
    member_feats = feats.select(members.tolist())
    overfit, _ = train_steps(task, member_feats, steps=250, lr=3e-3)  # ~60 epochs over 64 rows

    def loss(model):
        return per_example_losses(task, model, feats, members), per_example_losses(task, model, feats, others)

    ref = loss(untrained)
    trained = example_level_attacks(loss(overfit), ref, resamples=300, seed=0)
    assert trained["loss_threshold"]["member_loss_mean"] < 0.5 * trained["loss_threshold"]["nonmember_loss_mean"]
    for attack in ("loss_threshold", "calibrated"):
        assert trained[attack]["auc"] > 0.85 and trained[attack]["auc_ci95"][0] > 0.75, trained[attack]
    assert trained["loss_threshold"]["tpr_at_fpr"]["0.01"] > 0.3
    # The untrained model's loss says nothing about membership: AUC about 0.5, with 0.5 inside its interval.
    chance = attack_report(-ref[0], -ref[1], 300, 0)
    assert abs(chance["auc"] - 0.5) < 0.15 and chance["auc_ci95"][0] < 0.5 < chance["auc_ci95"][1]


def test_audit_section_is_checked_before_any_work() -> None:
    from fednlp_bench.config import RunConfig

    cfg = RunConfig(client_eval=True, membership_audit={"examples": 2e2, "reference": "population"})
    assert cfg.membership_audit == {"examples": 2e2, "reference": "population"}
    from fednlp_bench.audit.spec import AuditSpec

    assert AuditSpec.from_dict(cfg.membership_audit).examples == 200  # an integral float is the integer
    with pytest.raises(ValueError, match="set client_eval: true"):
        RunConfig(membership_audit={"examples": 10})
    with pytest.raises(ValueError, match="reference='shadow' is not supported"):
        RunConfig(client_eval=True, membership_audit={"reference": "shadow"})
    with pytest.raises(ValueError, match="mia_examples is now membership_audit"):
        RunConfig.from_dict({"mia_examples": 10})
    with pytest.raises(ValueError, match="holdout_clients=8 leaves fewer than clients_per_round=5"):
        RunConfig(client_eval=True, membership_audit={"holdout_clients": 8})
