"""What an attack's scores say: ROC AUC with a bootstrap interval, and the true-positive rate at low false-positive rates.

An AUC near 0.5 from a few hundred examples says little on its own: at 200
members and 200 non-members its 95% band is about +-0.057. So every AUC comes
with a stratified bootstrap percentile interval (members and non-members
resampled separately, the sizes of both kept). Carlini et al. (2022, "Membership
Inference Attacks From First Principles") argue that an attack matters when it
is confident about a few examples, so the TPR at 1% and 0.1% FPR is reported
too; with n non-members the smallest FPR above 0 is 1/n, which the report states
(``fpr_resolution``): below it, "TPR at FPR x" is the TPR at zero false positives.
Higher score = "member" throughout.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score, roc_curve

#: FPRs at which the TPR is reported (record keys "0.01", "0.001").
LOW_FPRS = (0.01, 0.001)
_BOOTSTRAP_STREAM = 8


def _labels_scores(members: np.ndarray, others: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([np.ones(len(members)), np.zeros(len(others))]), np.concatenate([members, others])


def auc(member_scores: Sequence[float], nonmember_scores: Sequence[float]) -> float:
    labels, scores = _labels_scores(np.asarray(member_scores, float), np.asarray(nonmember_scores, float))
    return float(roc_auc_score(labels, scores))


def bootstrap_auc_interval(member_scores: Sequence[float], nonmember_scores: Sequence[float], resamples: int,
                           seed: int, level: float = 0.95) -> list[float] | None:
    """Percentile interval of the AUC over stratified bootstrap resamples (None for 0 resamples)."""
    if resamples <= 0:
        return None
    m = np.asarray(member_scores, dtype=np.float64)
    o = np.asarray(nonmember_scores, dtype=np.float64)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _BOOTSTRAP_STREAM]))
    values = np.empty(resamples)
    chunk = max(1, 200_000 // (len(m) + len(o)))
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        both = np.concatenate([m[rng.integers(0, len(m), (b, len(m)))], o[rng.integers(0, len(o), (b, len(o)))]], axis=1)
        ranks = rankdata(both, axis=1)  # ties get their mean rank: the Mann-Whitney form of roc_auc_score
        values[start : start + b] = (ranks[:, : len(m)].sum(1) - len(m) * (len(m) + 1) / 2) / (len(m) * len(o))
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return [float(lo), float(hi)]


def tpr_at_fpr(member_scores: Sequence[float], nonmember_scores: Sequence[float],
               fprs: Sequence[float] = LOW_FPRS) -> dict[str, float]:
    """Highest TPR among thresholds whose FPR is at most each of ``fprs`` (sklearn's ROC curve)."""
    labels, scores = _labels_scores(np.asarray(member_scores, float), np.asarray(nonmember_scores, float))
    fpr, tpr, _ = roc_curve(labels, scores)
    return {f"{f:g}": float(tpr[fpr <= f + 1e-12].max()) for f in fprs}


def attack_report(member_scores: Sequence[float], nonmember_scores: Sequence[float], resamples: int,
                  seed: int) -> dict[str, Any]:
    """AUC, its bootstrap 95% interval, TPR at the low FPRs and the sizes behind them."""
    m = np.asarray(member_scores, dtype=np.float64)
    o = np.asarray(nonmember_scores, dtype=np.float64)
    if len(m) == 0 or len(o) == 0:
        raise ValueError(f"an attack needs members and non-members, got {len(m)} and {len(o)}")
    if not (np.isfinite(m).all() and np.isfinite(o).all()):
        raise ValueError("an attack score is not finite; the model or its reference diverged")
    return {
        "auc": auc(m, o),
        "auc_ci95": bootstrap_auc_interval(m, o, resamples, seed),
        "tpr_at_fpr": tpr_at_fpr(m, o),
        "fpr_resolution": 1.0 / len(o),
        "members": int(len(m)),
        "nonmembers": int(len(o)),
        "bootstrap_resamples": int(resamples),
    }
