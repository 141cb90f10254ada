"""The optional trust features of one run, behind a few calls the runner makes.

``RunFeatures`` gathers client-level DP (fednlp_bench/privacy), the audits
(membership inference and canaries: fednlp_bench/audit, engine/eval/audit.py),
counterfactual fairness (fednlp_bench/fairness), per-client evaluation
(client_eval.py), client sampling and aggregation weights (sampling_policies.py,
aggregation_weights.py) and the continual setting (populations.py), so the
round loop stays one loop: the runner asks it which clients take part, which
rows a client holds this round, whether to evaluate, what to add to a round row
and what to add to the record. With every feature off it reproduces the plain
runner exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fednlp_bench.algorithms.base import Strategy, Weights
from fednlp_bench.algorithms.registry import is_centralized
from fednlp_bench.audit.tracking import BatchTracker
from fednlp_bench.config import RunConfig
from fednlp_bench.engine.server.aggregation_weights import WeightedAggregation
from fednlp_bench.engine.client.data import ClientData
from fednlp_bench.engine.eval.client_eval import evaluate_clients
from fednlp_bench.engine.eval.local_test import describe, draw_local_sets, strata_for
from fednlp_bench.engine.eval.trust_plans import FairnessPlan
from fednlp_bench.sampling.policies import make_policy
from fednlp_bench.privacy.records import public_rounds, write_nonprivate
from fednlp_bench.privacy.run_privacy import RunPrivacy


class RunFeatures:
    """Per-run state of the optional features; built after the partition, before any training."""

    def __init__(self, config: RunConfig, data: ClientData, train_raw: Any) -> None:
        self.config = config
        self.train_raw = train_raw
        #: Which rows each client trains on, per round (shared with the client side: engine/client/data.py).
        self.data = data
        self.split, self.client_params, self.client_rows = data.split, data.client_params, data.client_rows
        self.audit, self.held_out, self.canary = data.audit, data.held_out, data.canary
        self.partition, self.population = data.partition, data.population
        self.policy = make_policy(config.sampling, config.sampling_params)
        self.fairness = None if config.fairness is None else FairnessPlan(config.fairness)
        self._static_sizes = self._eligible(self.partition.sizes())
        self.tracker: BatchTracker | None = None
        self.initial_weights: Weights | None = None
        self.round = 1
        #: DP: secret seed, calibrated noise, accountant (fednlp_bench/privacy/run_privacy.py); target_epsilon is
        #: calibrated here, before tokenizing or training.
        self.privacy = None if config.privacy is None else RunPrivacy(config, self._static_sizes, self._select)

    def _eligible(self, sizes: np.ndarray) -> np.ndarray:
        """Sizes as sampling sees them: the audit's held-out clients hold nothing."""
        sizes = np.array(sizes, dtype=np.int64)
        sizes[self.held_out] = 0
        return sizes

    # ------------------------------------------------------------ preparation
    def extra_features(self, task: Any, test_raw: Any) -> list[Any]:
        """Inputs the final model will see besides the splits (canary candidates, swapped texts): cache them too."""
        extra = [] if self.canary is None else self.canary.extra_features(task)
        if self.fairness is not None:
            extra += self.fairness.prepare(task, test_raw, self.train_raw if self.split is not None else None)
        return extra

    def attach(self, trainer: Any, run_dir: str | Path) -> None:
        """Watch the trainer's batches (audits) and keep the initial weights (the audit's reference)."""
        if self.audit is None and self.canary is None:
            return
        watch = trainer.rows_for(self.canary.raw_rows) if self.canary is not None else []
        self.tracker = BatchTracker(run_dir, watch)
        trainer.batch_observer = self.tracker.observe
        if self.audit is not None:
            self.initial_weights = trainer.state.get()

    # ------------------------------------------------------------ strategy
    def wrap_strategy(self, strategy: Strategy) -> Any:
        if self.privacy is not None:
            return self.privacy.wrap(strategy)
        mode = self.config.effective_aggregation_weights()
        if mode == "size" or strategy.centralized:
            return strategy
        return WeightedAggregation(strategy, mode, self.round_design, self.config.dropout)

    def round_design(self, rnd: int) -> tuple[np.ndarray, np.ndarray]:
        """(sizes, inclusion probabilities) of every client in round ``rnd`` (inverse-probability weighting)."""
        sizes = self.sizes(rnd)
        pi = self.policy.inclusion(sizes, self.config.clients_per_round)
        assert pi is not None  # config validation refuses inverse_probability without exact inclusion
        return sizes, pi

    def attach_trainer(self, trainer: Any, compute: Any) -> None:
        """DP-SGD: the trainer's local loop becomes the private one (other runs: nothing).

        Each canary copy is a training example of its own (its own example index), and the bound covers it as one.
        """
        if self.privacy is not None:
            canaries = 0 if self.canary is None else len(self.canary.raw_rows)
            self.privacy.attach_trainer(trainer, compute.cache, len(self.train_raw) + canaries)

    # ------------------------------------------------------------ rounds
    def sizes(self, rnd: int) -> np.ndarray:
        """Sizes as sampling sees them in round ``rnd`` (the audit's held-out clients hold nothing)."""
        return self._static_sizes if self.data.period(rnd) is None else self._eligible(self.data.sizes(rnd))

    def select(self, rnd: int) -> list[int]:
        self.round = rnd
        return self._select(rnd, self.config.seed if self.privacy is None else self.privacy.selection_seed())

    def _select(self, rnd: int, seed: int) -> list[int]:
        return self.policy.select(self.sizes(rnd).astype(np.float64), self.config.clients_per_round, rnd, seed)

    def must_evaluate(self, rnd: int) -> bool:
        return self.population is not None and self.population.spec.is_period_end(rnd)

    def round_privacy(self, rnd: int, strategy: Any) -> dict[str, Any] | None:
        return None if self.privacy is None else self.privacy.round_row(rnd, strategy)

    def record_rounds(self, rounds: list[Any], run_dir: Any, model_bytes: int) -> list[Any]:
        """The round rows a record publishes: DP runs keep only released values (the rest: a marked side file)."""
        if self.privacy is None:
            return rounds
        write_nonprivate(run_dir, rounds)
        return public_rounds(rounds, clients_per_round=self.config.clients_per_round, model_bytes=model_bytes,
                             dropout=float(self.config.dropout))

    def round_done(self, row: Any) -> None:
        """After a round's aggregate, before its checkpoint: commit the batches of the updates that were used."""
        if self.tracker is not None:
            if is_centralized(self.config.algorithm):  # one virtual client (-1) on the union of every client
                accepted = [-1]
            else:
                accepted = [c for c in row.clients if c not in set(row.rejected_clients)]
            self.tracker.commit(row.round, accepted)

    # ------------------------------------------------------------ the record
    def finish(self, task: Any, model: Any, trainer: Any, eval_features: Any, rounds: list[Any],
               batch_size: int, central_steps: int = 1, test_raw: Any = None) -> dict[str, Any]:
        """Record fields of the features in use (audits, fairness and per-client metrics run on the final model)."""
        extra: dict[str, Any] = {}
        if self.privacy is not None:
            extra["privacy"] = self.privacy.record_section(len(rounds))
        final = trainer.state.get()
        if self.canary is not None:
            assert self.tracker is not None
            extra["canary"] = self.canary.report(trainer, self.tracker, batch_size)
        if self.audit is not None:
            extra["membership_audit"] = self._audit(trainer, eval_features, final, batch_size, central_steps)
        if self.privacy is not None:
            from fednlp_bench.engine.eval.audit import redact_participation

            for name in ("canary", "membership_audit"):
                if name in extra:
                    extra[name] = redact_participation(name, extra[name])
        if self.fairness is not None:
            extra["fairness"] = self.fairness.report(task, model, batch_size, self._fairness_groups(test_raw))
        if self.client_params is not None:
            extra["client_eval"] = self._client_eval(task, model, batch_size, test_raw)
        if self.population is not None:
            extra["continual"] = self._continual(rounds)
        if not is_centralized(self.config.algorithm):
            extra["population"] = self._population()
        return extra

    def _client_eval(self, task: Any, model: Any, batch_size: int, test_raw: Any) -> dict[str, Any]:
        """Per-client metrics on the hold-out of each client, or on rows drawn from test with its mixture."""
        params = self.client_params
        assert params is not None
        if self.split is not None:
            return evaluate_clients(task, model, self.train_raw, self.split.test,
                                    np.array([len(r) for r in self.split.train]), batch_size, params,
                                    self.split.describe())
        sets, strata, seed = self._test_local_sets(test_raw)
        return evaluate_clients(task, model, test_raw, sets, np.array([len(r) for r in self.client_rows]), batch_size,
                                params, describe(sets, strata, params.rows, seed))

    def _test_local_sets(self, test_raw: Any) -> tuple[list[np.ndarray], Any, int]:
        """Each client's local rows drawn from test with its own mixture (seeded by the partition), and the strata."""
        if test_raw is None:
            raise ValueError("client_eval_params.source: test needs the test split at the end of the run")
        assert self.client_params is not None
        seed = int(self.config.partition["seed"])
        strata = strata_for(self.config.partition, self.train_raw, test_raw)
        return draw_local_sets(self.client_rows, strata, self.client_params.rows, seed), strata, seed

    def _fairness_groups(self, test_raw: Any) -> tuple[str, Any] | None:
        """The per-client groups fairness is reported for: client_eval's local sets, in the split they index."""
        if self.client_params is None:
            return None
        if self.split is not None:
            return "train", self.split.test
        return "test", self._test_local_sets(test_raw)[0]

    def _audit(self, trainer: Any, eval_features: Any, final: Weights, batch_size: int, central_steps: int) -> dict[str, Any]:
        from fednlp_bench.engine.eval.audit import membership_audit, reference_weights

        assert self.audit is not None and self.tracker is not None and self.split is not None
        assert self.initial_weights is not None
        reference, info = reference_weights(self.audit, trainer, eval_features, self.initial_weights, self.config,
                                            central_steps, train_rows=int(self._static_sizes.sum()))
        exclude = trainer.rows_for(self.canary.raw_rows) if self.canary is not None else np.array([], dtype=np.int64)
        report = membership_audit(self.audit, trainer=trainer, tracker=self.tracker, train_rows=self.split.train,
                                  test_rows=self.split.test, exclude=exclude, final=final, reference=reference,
                                  reference_info=info, seed=self.config.seed, batch_size=batch_size)
        report["holdout_clients"] = int(len(self.held_out))
        return report

    def _continual(self, rounds: list[Any]) -> dict[str, Any]:
        assert self.population is not None
        spec = self.population.spec
        return {
            **self.population.describe(),
            "rows": [
                {"period": p, "last_round": p * spec.rounds_per_period,
                 "clients_with_data": int((self.population.sizes(p) > 0).sum()),
                 "rows_available": int(self.population.sizes(p).sum()),
                 "metrics": dict(_round(rounds, p * spec.rounds_per_period).metrics)}
                for p in range(1, spec.periods + 1)
            ],
        }

    def _population(self) -> dict[str, Any]:
        """How clients were chosen and their updates weighted (a table must not have to guess a default)."""
        exact = self.policy.inclusion(self._static_sizes, self.config.clients_per_round) is not None
        return {"sampling": self.config.sampling, "sampling_params": dict(self.policy.values),
                "aggregation_weights": "dp_fixed_denominator" if self.privacy is not None
                else self.config.effective_aggregation_weights(),
                "exact_inclusion": bool(exact), "held_out_clients": int(len(self.held_out))}


def _round(rounds: list[Any], number: int) -> Any:
    for r in rounds:
        if r.round == number:
            return r
    raise ValueError(f"round {number} is missing from the run's rounds")

