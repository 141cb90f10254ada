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
