"""The validation split: scored on every evaluated round (what curves, convergence and tuning read).

Test is never read here (engine/eval/test_split.py scores it once, at the end);
with ``test_best_round`` the weights of the best validation round so far are
kept on disk for that final test evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fednlp_bench import progress as report
from fednlp_bench.engine.eval.finite import finite_metrics
from fednlp_bench.engine.eval.test_split import keep_if_best

#: Batch size of every evaluation pass (validation, test, per-client, audits).
EVAL_BATCH_SIZE = 64


def evaluate(run: Any, rnd: int) -> dict[str, float]:
    """Validation metrics of this round's global model (test is only read at the end: test_split.py)."""
    report.phase(f"evaluating round {rnd} on {len(run.eval_raw):,} examples")
    run.trainer.state.load(run.global_weights)
    with run.compute.precision.autocast():
        raw = run.task.evaluate(run.trainer.model, run.eval_raw, run.eval_features, batch_size=EVAL_BATCH_SIZE)
    metrics = finite_metrics(raw, rnd)
    if run.config.test_best_round:
        keep_if_best(Path(run.run_dir), rnd, metrics, run.rounds, run.task.primary_metric, run.global_weights)
    return metrics
