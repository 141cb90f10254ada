"""The optional trust features of one run, behind a few calls the runner makes.

``RunFeatures`` gathers client-level DP (fednlp_bench/privacy), the membership
audit (fednlp_bench/audit), per-client evaluation (client_eval.py) and client
populations (populations.py) so the round loop stays one loop: the runner asks
it which clients take part, which rows a client holds this round, whether to
evaluate, what to add to a round row, and what to add to the record.
With every feature off it reproduces the plain runner exactly.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from fednlp_bench.algorithms.base import Strategy
from fednlp_bench.config import RunConfig
from fednlp_bench.engine.client_eval import ClientSplit, evaluate_clients, split_clients
from fednlp_bench.engine.populations import ContinualPopulation, ContinualSpec, find_time_column, select_clients
from fednlp_bench.privacy.records import public_rounds, write_nonprivate
from fednlp_bench.privacy.run_privacy import RunPrivacy


class TrainingView:
    """A partition restricted to each client's local-train rows (what FL trains on with client_eval)."""

    def __init__(self, part: Any, rows: list[np.ndarray]) -> None:
        self._part = part
        self._rows = rows
        self.num_clients = len(rows)
        self.content_hash = part.content_hash
        self.spec = part.spec

    def indices(self, cid: int) -> np.ndarray:
        return self._rows[cid]

    def sizes(self) -> np.ndarray:
        return np.array([len(r) for r in self._rows], dtype=np.int64)


class RunFeatures:
    """Per-run state of the optional features; built after the partition, before any training."""

    def __init__(self, config: RunConfig, part: Any, train_raw: Any) -> None:
        self.config = config
        self.train_raw = train_raw
        rows = [np.asarray(part.indices(c), dtype=np.int64) for c in range(part.num_clients)]
        self.split: ClientSplit | None = None
        if config.client_eval:
            self.split = split_clients(rows, int(config.partition["seed"]))
            rows = self.split.train
        self.partition = TrainingView(part, rows) if self.split is not None else part
        self.population: ContinualPopulation | None = None
        if config.continual is not None:
            spec = ContinualSpec.from_dict(config.continual)
            column = find_time_column(train_raw.column_names, spec.time_column)
            times = np.asarray(train_raw[column], dtype=object) if column else None
            self.population = ContinualPopulation(spec, rows, int(config.partition["seed"]), times, column)
        self._static_sizes = self.partition.sizes()
        self.round = 1
        #: DP: secret seed, calibrated noise, accountant (fednlp_bench/privacy/run_privacy.py); target_epsilon is
        #: calibrated here, before tokenizing or training.
        self.privacy = None if config.privacy is None else RunPrivacy(config, self._static_sizes, self._select)

    # ------------------------------------------------------------ strategy
    def wrap_strategy(self, strategy: Strategy) -> Any:
        return strategy if self.privacy is None else self.privacy.wrap(strategy)

    def attach_trainer(self, trainer: Any, compute: Any) -> None:
        """DP-SGD: the trainer's local loop becomes the private one (other runs: nothing)."""
        if self.privacy is not None:
            self.privacy.attach_trainer(trainer, compute.cache, len(self.train_raw))

    # ------------------------------------------------------------ rounds
    def period(self, rnd: int) -> int | None:
        return None if self.population is None else self.population.spec.period_of_round(rnd)

    def sizes(self, rnd: int) -> np.ndarray:
        period = self.period(rnd)
        return self._static_sizes if period is None else self.population.sizes(period)  # type: ignore[union-attr]

    def select(self, rnd: int) -> list[int]:
        self.round = rnd
        return self._select(rnd, self.config.seed if self.privacy is None else self.privacy.selection_seed())

    def _select(self, rnd: int, seed: int) -> list[int]:
        cfg = self.config
        return select_clients(cfg.sampling, cfg.sampling_params, self.partition.num_clients, cfg.clients_per_round,
                              rnd, seed, self.sizes(rnd))

    def client_indices(self, cid: int) -> np.ndarray:
        """Raw train rows client ``cid`` holds in the round last passed to :meth:`select`."""
        return self._rows_at(cid, self.round)

    def _rows_at(self, cid: int, rnd: int) -> np.ndarray:
        period = self.period(rnd)
        return self.partition.indices(cid) if period is None else self.population.indices(cid, period)  # type: ignore[union-attr]

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

    # ------------------------------------------------------------ the record
    def finish(self, task: Any, model: Any, trainer: Any, eval_features: Any, rounds: list[Any],
               batch_size: int) -> dict[str, Any]:
        """Record fields of the features in use (audit and per-client metrics run on the final model)."""
        extra: dict[str, Any] = {}
        if self.privacy is not None:
            extra["privacy"] = self.privacy.record_section(len(rounds))
        if self.config.mia_examples is not None:
            from fednlp_bench.audit.membership import run_membership_audit

            took_part = sorted({c for r in rounds for c in r.clients if c not in set(r.rejected_clients)})
            held = [self._rows_at(c, r.round) for r in rounds for c in r.clients if c not in set(r.rejected_clients)]
            member_raw = np.unique(np.concatenate(held)) if held else np.array([], dtype=np.int64)
            if self.split is not None:  # the clients' own held-out rows: the members' exact distribution
                held_out = np.concatenate(self.split.test)
                audit = run_membership_audit(
                    task, model, trainer.features, trainer.rows_for(member_raw), trainer.features,
                    self.config.mia_examples, self.config.seed, batch_size, nonmember_rows=trainer.rows_for(held_out),
                )
                audit["nonmember_source"] = "client_eval local test rows"
            else:
                audit = run_membership_audit(
                    task, model, trainer.features, trainer.rows_for(member_raw), eval_features,
                    self.config.mia_examples, self.config.seed, batch_size,
                )
                audit["nonmember_source"] = "evaluation split"
            extra["membership_audit"] = audit
            extra["membership_audit"]["clients_in_members"] = len(took_part)
        if self.split is not None:
            extra["client_eval"] = evaluate_clients(task, model, self.train_raw, self.split, self.partition.sizes(), batch_size)
        if self.population is not None:
            spec = self.population.spec
            extra["continual"] = {
                **self.population.describe(),
                "rows": [
                    {"period": p, "last_round": p * spec.rounds_per_period,
                     "clients_with_data": int((self.population.sizes(p) > 0).sum()),
                     "rows_available": int(self.population.sizes(p).sum()),
                     "metrics": dict(_round(rounds, p * spec.rounds_per_period).metrics)}
                    for p in range(1, spec.periods + 1)
                ],
            }
        return extra


def _round(rounds: list[Any], number: int) -> Any:
    for r in rounds:
        if r.round == number:
            return r
    raise ValueError(f"round {number} is missing from the run's rounds")


def summary_columns(record: Mapping[str, Any]) -> dict[str, float | None]:
    """epsilon, attack AUC and worst-10% of a record dict (None where the feature was off)."""
    privacy = record.get("privacy") or {}
    audit = record.get("membership_audit") or {}
    client = (record.get("client_eval") or {}).get("summary") or {}
    return {"epsilon": privacy.get("epsilon"), "mia_auc": audit.get("auc"), "worst_10pct": client.get("worst_10pct")}
