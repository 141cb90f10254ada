"""Example-level membership inference: the loss threshold and its calibrated, reference-model form.

* Loss threshold (Yeom et al. 2018, "Privacy Risk in Machine Learning"): the
  attacker guesses "member" when the model's loss on an example is low; the
  score is -loss. Models fit their training data better than unseen data, so
  the loss separates the two to the extent the model memorises.
* Calibrated (difficulty-calibrated, Watson et al. 2022; the offline variant
  of LiRA, Carlini et al. 2022, with one reference model): some examples are
  simply easy, so the score is how much lower the target's loss is than that
  of a reference model that never saw the row: reference loss - target loss.
  The reference is built in fednlp_bench/engine/eval/audit.py.

Members are rows that were actually in a training batch of an update that
reached the global model (fednlp_bench/audit/tracking.py); non-members are
held-out rows of the same clients (their client_eval local test rows), never
the test split. Both sides are subsampled to the same size with a fixed seed.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from fednlp_bench.audit.statistics import attack_report

_AUDIT_STREAM = 7
IGNORE_INDEX = -100


@torch.no_grad()
def per_example_losses(task: Any, model: torch.nn.Module, features: Any, rows: Sequence[int], batch_size: int = 64) -> np.ndarray:
    """Loss of every given feature row (token tasks: mean over labelled tokens).

    Uses the logits when the model returns them with labels of matching shape
    (classification, tagging); otherwise runs one row at a time and takes the
    model's own loss (QA, generation).
    """
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    names = list(features.column_names)
    out: list[float] = []
    rows = [int(r) for r in rows]
    try:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            cols = features[chunk]
            batch = task.collate([dict(zip(names, values)) for values in zip(*(cols[n] for n in names))])
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            result = model(**batch)
            logits, labels = getattr(result, "logits", None), batch.get("labels")
            if isinstance(logits, torch.Tensor) and isinstance(labels, torch.Tensor) and logits.dim() == labels.dim() + 1:
                losses = torch.nn.functional.cross_entropy(
                    logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none",
                    ignore_index=IGNORE_INDEX,
                ).reshape(labels.shape)
                if labels.dim() == 1:
                    out.extend(losses.tolist())
                else:
                    mask = (labels != IGNORE_INDEX).float()
                    out.extend(((losses * mask).sum(1) / mask.sum(1).clamp(min=1)).tolist())
            else:
                for row in chunk:
                    single = task.collate([dict(zip(names, (features[row][n] for n in names)))])
                    single = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in single.items()}
                    out.append(float(model(**single).loss))
    finally:
        model.train(was)
    values = np.asarray(out, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError("membership audit: a per-example loss is non-finite; the model diverged")
    return values


def loss_threshold_attack(member_losses: Sequence[float], nonmember_losses: Sequence[float],
                          threshold: float | None = None) -> dict[str, Any]:
    """AUC of "lower loss = member" and the accuracy at ``threshold`` (default: mean member loss, Yeom's choice)."""
    members = np.asarray(member_losses, dtype=np.float64)
    others = np.asarray(nonmember_losses, dtype=np.float64)
    if len(members) == 0 or len(others) == 0:
        raise ValueError(f"the attack needs members and non-members, got {len(members)} and {len(others)}")
    labels = np.concatenate([np.ones(len(members)), np.zeros(len(others))])
    scores = -np.concatenate([members, others])
    tau = float(members.mean()) if threshold is None else float(threshold)
    guesses = np.concatenate([members, others]) <= tau
    # Balanced accuracy, so unequal group sizes cannot inflate it.
    acc = 0.5 * (float(guesses[labels == 1].mean()) + float((~guesses[labels == 0]).mean()))
    return {
        "attack": "loss_threshold (Yeom et al. 2018)",
        "auc": float(roc_auc_score(labels, scores)),
        "threshold": tau,
        "balanced_accuracy": acc,
        "advantage": 2.0 * acc - 1.0,
        "members": int(len(members)),
        "nonmembers": int(len(others)),
        "member_loss_mean": float(members.mean()),
        "nonmember_loss_mean": float(others.mean()),
    }


def choose_rows(member_rows: np.ndarray, nonmember_rows: np.ndarray, max_examples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Equal-size, seeded samples of both groups (at most ``max_examples`` each)."""
    n = min(len(member_rows), len(nonmember_rows), int(max_examples))
    if n < 1:
        raise ValueError(
            f"membership audit needs members and non-members; got {len(member_rows)} member and "
            f"{len(nonmember_rows)} non-member rows"
        )
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _AUDIT_STREAM]))
    members = np.sort(rng.choice(np.asarray(member_rows), size=n, replace=False))
    others = np.sort(rng.choice(np.asarray(nonmember_rows), size=n, replace=False))
    return members, others


def example_level_attacks(target: tuple[np.ndarray, np.ndarray], reference: tuple[np.ndarray, np.ndarray],
                          resamples: int, seed: int) -> dict[str, Any]:
    """Both attacks from (member, non-member) losses under the target and the reference model."""
    (t_in, t_out), (r_in, r_out) = target, reference
    threshold = loss_threshold_attack(t_in, t_out)
    loss_report = {**attack_report(-t_in, -t_out, resamples, seed), **{
        k: threshold[k] for k in ("threshold", "balanced_accuracy", "advantage", "member_loss_mean", "nonmember_loss_mean")
    }}
    calibrated = attack_report(r_in - t_in, r_out - t_out, resamples, seed)
    calibrated["reference_member_loss_mean"] = float(r_in.mean())
    calibrated["reference_nonmember_loss_mean"] = float(r_out.mean())
    return {"loss_threshold": loss_report, "calibrated": calibrated}
