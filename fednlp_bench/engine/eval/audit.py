"""The audits of a finished run, on the engine's objects: membership inference (example and client level) and canaries.

fednlp_bench/audit holds the attacks and their statistics on plain arrays;
this module picks the rows (from the batch tracker, the client_eval split and
the canary plan), computes the losses under the final and the reference model,
and returns the record sections. Each section says what it read, and holds
aggregates only (no row or client ids).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from fednlp_bench.algorithms.base import Weights
from fednlp_bench.audit.canary import exposure_report
from fednlp_bench.audit.membership import choose_rows, example_level_attacks, per_example_losses
from fednlp_bench.audit.spec import AuditSpec, CanarySpec
from fednlp_bench.audit.statistics import attack_report
from fednlp_bench.audit.tracking import BatchTracker
from fednlp_bench.engine.client.trainer import LocalTrainer
from fednlp_bench.sampling.seeds import central_seed

_CLIENT_ROWS_STREAM = 10
_REFERENCE_ROUND = 10**6  # a seed stream no real round uses


def reference_weights(spec: AuditSpec, trainer: LocalTrainer, eval_features: Any, initial: Weights, config: Any,
                      central_steps: int, train_rows: int) -> tuple[Weights, dict[str, Any]]:
    """The calibrated attack's reference model and how it was made; leaves the model holding the reference.

    The population reference is trained as long per row as the target: its steps give the validation rows the
    epochs the run gives its ``train_rows`` (rounds x the centralized equal budget's examples per round). Equal
    steps on a pool 10x smaller would overfit it for 10x the epochs, and its losses would measure that, not how
    hard a row is.
    """
    if spec.reference == "initial":
        trainer.state.load(initial)
        return initial, {"kind": "initial", "description": "the model the run started from (round 0), "
                                                           "which never saw any training row"}
    rows = np.arange(len(eval_features))
    epochs = int(config.rounds) * int(central_steps) * int(config.batch_size) / max(int(train_rows), 1)
    steps = max(1, int(np.ceil(epochs * len(rows) / int(config.batch_size))))
    ref = LocalTrainer(trainer.task, trainer.model, eval_features, batch_size=config.batch_size, lr=config.lr,
                       optimizer=config.optimizer, local_epochs=None, local_steps=steps, precision=trainer.precision,
                       batching=config.batching)
    ref.train(-1, rows, initial, {}, central_seed(config.seed, _REFERENCE_ROUND), optimizer=ref.make_optimizer(),
              num_steps=steps)
    return trainer.state.get(), {
        "kind": "population",
        "description": "trained from the initial model on the validation split (rows no audited side holds) for "
                       "the target's epochs per row: same optimizer, lr and batch size",
        "rows": int(len(rows)), "steps": steps, "epochs": round(epochs, 4),
    }


def _losses(trainer: LocalTrainer, weights: Weights, rows: np.ndarray, batch_size: int) -> dict[int, float]:
    trainer.state.load(weights)
    unique = np.unique(rows)
    values = per_example_losses(trainer.task, trainer.model, trainer.features, unique, batch_size)
    return dict(zip(unique.tolist(), values.tolist()))


def client_audit_rows(client_rows: Sequence[np.ndarray], per_client: int, seed: int) -> list[np.ndarray]:
    """Up to ``per_client`` raw rows of each client, a seeded sample (the client-level score's rows)."""
    out = []
    for cid, rows in enumerate(client_rows):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), _CLIENT_ROWS_STREAM, cid]))
        rows = np.asarray(rows, dtype=np.int64)
        out.append(np.sort(rng.choice(rows, size=min(per_client, len(rows)), replace=False)) if len(rows) else rows)
    return out


def membership_audit(spec: AuditSpec, *, trainer: LocalTrainer, tracker: BatchTracker, train_rows: Sequence[np.ndarray],
                     test_rows: Sequence[np.ndarray], exclude: np.ndarray, final: Weights, reference: Weights,
                     reference_info: dict[str, Any], seed: int, batch_size: int) -> dict[str, Any]:
    """Example- and client-level attacks on the final model; ``*_rows`` are raw rows per client (client_eval split)."""
    participants = tracker.participants()
    everyone = -1 in participants  # the centralized baseline trains on the union of every client
    took_part = set(range(len(train_rows))) if everyone else participants
    members_pool = np.setdiff1d(tracker.trained_rows(), exclude)
    held_out = [np.asarray(test_rows[c]) for c in sorted(took_part) if c < len(test_rows)]
    others_pool = trainer.rows_for(np.concatenate(held_out)) if held_out else np.array([], dtype=np.int64)
    members, others = choose_rows(members_pool, others_pool, spec.examples, seed)
    per_client = [np.setdiff1d(trainer.rows_for(r), exclude) for r in client_audit_rows(train_rows, spec.client_rows, seed)]
    needed = np.concatenate([members, others, *per_client])
    target, ref = _losses(trainer, final, needed, batch_size), _losses(trainer, reference, needed, batch_size)
    trainer.state.load(final)

    def arrays(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.array([target[r] for r in rows.tolist()]), np.array([ref[r] for r in rows.tolist()])

    (t_in, r_in), (t_out, r_out) = arrays(members), arrays(others)
    example = example_level_attacks((t_in, t_out), (r_in, r_out), spec.bootstrap, seed)
    client = client_level_attack(per_client, took_part, arrays, spec.bootstrap, seed)
    headline = example["calibrated"]
    return {
        "version": 2,
        "headline_attack": "calibrated",
        "auc": headline["auc"], "auc_ci95": headline["auc_ci95"], "tpr_at_fpr": headline["tpr_at_fpr"],
        "client_auc": client.get("auc"), "client_auc_ci95": client.get("auc_ci95"),
        "example_level": example,
        "client_level": client,
        "members": {"source": "feature rows that were in a training batch of an aggregated update (tracked per step)",
                    "pool": int(len(members_pool)), "sampled": int(len(members))},
        "nonmembers": {"source": "client_eval local test rows of the clients that took part (never trained on; "
                                 "not the test split)", "pool": int(len(others_pool)), "sampled": int(len(others))},
        "reference": reference_info,
        "excluded_rows": int(len(exclude)),
        "seed": int(seed),
        "spec": spec.to_dict(),
    }


def client_level_attack(per_client: Sequence[np.ndarray], took_part: set[int], arrays: Any, resamples: int,
                        seed: int) -> dict[str, Any]:
    """Did client u take part? Score u by its rows' mean calibrated score; AUC of participants against the others."""
    scores: dict[bool, list[float]] = {True: [], False: []}
    loss_scores: dict[bool, list[float]] = {True: [], False: []}
    for cid, rows in enumerate(per_client):
        if not len(rows):
            continue
        t, r = arrays(rows)
        scores[cid in took_part].append(float(np.mean(r - t)))
        loss_scores[cid in took_part].append(float(np.mean(-t)))
    base = {"score": "mean over the client's local-train rows (up to client_rows) of reference loss - target loss",
            "participating": len(scores[True]), "not_participating": len(scores[False])}
    if not scores[True] or not scores[False]:
        return {**base, "auc": None, "auc_ci95": None,
                "reason": "every client took part (or none did); set membership_audit.holdout_clients"}
    report = attack_report(scores[True], scores[False], resamples, seed)
    report["loss_only_auc"] = attack_report(loss_scores[True], loss_scores[False], 0, seed)["auc"]
    return {**base, **report}


def canary_exposure(spec: CanarySpec, *, trainer: LocalTrainer, canary_rows: np.ndarray, candidate_features: Any,
                    tracker: BatchTracker, client: int, planned_rounds: int, batch_size: int) -> dict[str, Any]:
    """Exposure of every canary under the final model (the model holds the final weights)."""
    model = trainer.model
    canary_losses = per_example_losses(trainer.task, model, trainer.features, canary_rows, batch_size)
    candidate_losses = per_example_losses(trainer.task, model, candidate_features, np.arange(len(candidate_features)),
                                          batch_size)
    # Copies of one canary share its secret: score each canary once (its first copy).
    first = canary_losses[:: spec.repeats] if spec.repeats > 1 else canary_losses
    return {
        **exposure_report(spec, first.tolist(), candidate_losses.tolist()),
        "client": int(client),
        "client_rounds_planned": int(planned_rounds),
        "client_rounds_trained": len(tracker.rounds_of(client)),
        "canary_rows_in_batches": tracker.watched_count(),
        "spec": spec.to_dict(),
    }


#: Counts that depend on which clients took part (not covered by epsilon): left out of DP records.
PARTICIPATION_FIELDS = {
    "membership_audit": (("members", "pool"), ("nonmembers", "pool"), ("client_level", "participating"),
                         ("client_level", "not_participating")),
    "canary": (("client_rounds_planned",), ("client_rounds_trained",), ("canary_rows_in_batches",)),
}


def redact_participation(name: str, section: dict[str, Any]) -> dict[str, Any]:
    """A DP record's audit section without the participation counts (the attack figures stay: they are the point).

    The audit itself is an evaluation by someone who holds the training data, so
    its figures are never covered by epsilon; but how many rows or clients took
    part, or how often the canary client did, is exactly what client-level DP
    hides, so those counts are not published. They go in the list ``redacted``.
    """
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in section.items()}
    removed = []
    for path in PARTICIPATION_FIELDS[name]:
        holder = out
        for key in path[:-1]:
            holder = holder.get(key) or {}
        if path[-1] in holder:
            holder[path[-1]] = None
            removed.append(".".join(path))
    out["redacted"] = removed
    return out
