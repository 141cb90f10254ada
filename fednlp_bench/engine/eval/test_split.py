"""The test split: evaluated once, after the last round, never during training.

Rounds are scored on the validation split (what curves, early stopping and
any tuning may read). At the end the final model is scored on test
(``record.final_metrics``, what leaderboards report) and, with
``test_best_round``, so is the round whose validation score was best: its
weights are kept on disk while the run goes (``best_validation.pt``, so a
resumed run still has them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from fednlp_bench.algorithms.base import Weights
from fednlp_bench.engine.eval.finite import finite_metrics
from fednlp_bench.results.record import RoundResult

BEST_WEIGHTS_FILE = "best_validation.pt"


def keep_if_best(run_dir: Path, rnd: int, metrics: Mapping[str, float], earlier: list[RoundResult],
                 metric: str, weights: Weights) -> None:
    """Save this round's weights when its validation score beats every earlier round's (ties: the earlier)."""
    scores = [r.metrics[metric] for r in earlier if metric in r.metrics]
    if metric in metrics and (not scores or metrics[metric] > max(scores)):
        tmp = run_dir / f".{BEST_WEIGHTS_FILE}.tmp"
        torch.save({"round": rnd, "weights": {k: v.detach().cpu() for k, v in weights.items()}}, tmp)
        tmp.replace(run_dir / BEST_WEIGHTS_FILE)


def evaluate_test(run: Any, batch_size: int) -> tuple[dict[str, float], dict[str, Any]]:
    """(final model's test metrics, the record's ``test`` entry) for a run whose rounds are done."""
    task, model, state = run.task, run.trainer.model, run.trainer.state
    features = run.test_features
    state.load(run.global_weights)
    last = run.rounds[-1].round
    with run.compute.precision.autocast():
        final = finite_metrics(task.evaluate(model, run.test_raw, features, batch_size=batch_size), last)
    info: dict[str, Any] = {"split": "test", "rows": len(run.test_raw), "model": "final round", "best_round": None}
    if run.config.test_best_round:
        metric = task.primary_metric
        scored = [r for r in run.rounds if metric in r.metrics]
        if scored:
            best = max(scored, key=lambda r: (r.metrics[metric], -r.round))
            if best.round == last:
                test = dict(final)
            else:
                saved = torch.load(Path(run.run_dir) / BEST_WEIGHTS_FILE, weights_only=True)
                if int(saved["round"]) != best.round:
                    raise RuntimeError(f"{run.run_dir}/{BEST_WEIGHTS_FILE} holds round {saved['round']}, expected {best.round}")
                state.load(saved["weights"])
                with run.compute.precision.autocast():
                    test = finite_metrics(task.evaluate(model, run.test_raw, features, batch_size=batch_size), best.round)
                state.load(run.global_weights)
            info["best_round"] = {"round": best.round, "validation": dict(best.metrics), "test": test}
    return final, info
