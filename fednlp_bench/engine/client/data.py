"""Which raw train rows each client holds in a round: one answer for the in-process run and the FedML clients.

A client's rows are its partition rows, less its ``client_eval`` hold-out
(which it never trains on), plus the canaries planted on it (in-process
only), restricted in the continual setting to the periods it still keeps.
:class:`ClientData` computes that from the config, the partition and the
train split alone, so a FedML client process that builds it from the same
inputs trains on exactly the rows the in-process simulator would.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fednlp_bench.audit.spec import AuditSpec
from fednlp_bench.config_sections import ClientEvalParams, ContinualSpec
from fednlp_bench.engine.eval.client_eval import ClientSplit, split_clients
from fednlp_bench.engine.eval.trust_plans import CanaryPlan, holdout_clients
from fednlp_bench.engine.server.populations import ContinualPopulation, arrival_keys


class TrainingView:
    """A partition restricted to what FL trains on: each client's local-train rows (client_eval) plus canaries."""

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


class ClientData:
    """Every client's training rows per round, from (config, partition, train split[, task for canaries])."""

    def __init__(self, config: Any, part: Any, train_raw: Any, task: Any = None) -> None:
        rows = [np.asarray(part.indices(c), dtype=np.int64) for c in range(part.num_clients)]
        self.split: ClientSplit | None = None
        self.client_params = ClientEvalParams.from_dict(config.client_eval_params) if config.client_eval else None
        if self.client_params is not None and self.client_params.source == "holdout":
            self.split = split_clients(rows, int(config.partition["seed"]))
            rows = self.split.train
        #: Each client's own rows (no canaries): what its local test mixture is measured on.
        self.client_rows = list(rows)
        self.audit = None if config.membership_audit is None else AuditSpec.from_dict(config.membership_audit)
        self.held_out = holdout_clients(len(rows), self.audit.holdout_clients if self.audit else 0, config.seed)
        self.canary: CanaryPlan | None = None
        if config.canary is not None:
            self.canary = CanaryPlan(config, task, train_raw, rows, self.held_out)
            rows = self.canary.insert(rows)
        self.partition = TrainingView(part, rows) if (self.split is not None or self.canary) else part
        self.population: ContinualPopulation | None = None
        if config.continual is not None:
            spec = ContinualSpec.from_dict(config.continual)
            times, source = arrival_keys(train_raw, spec)
            self.population = ContinualPopulation(spec, rows, int(config.partition["seed"]), times, source)

    def period(self, rnd: int) -> int | None:
        """The continual period of round ``rnd`` (None outside the continual setting)."""
        return None if self.population is None else self.population.spec.period_of_round(rnd)

    def sizes(self, rnd: int) -> np.ndarray:
        """Rows each client holds in round ``rnd``."""
        period = self.period(rnd)
        return self.partition.sizes() if period is None else self.population.sizes(period)  # type: ignore[union-attr]

    def indices(self, cid: int, rnd: int) -> np.ndarray:
        """Raw train rows client ``cid`` trains on in round ``rnd``."""
        period = self.period(rnd)
        return self.partition.indices(cid) if period is None else self.population.indices(cid, period)  # type: ignore[union-attr]

    def train_features(self, task: Any, features: Any) -> Any:
        """The trainer's features: the train split's, plus the canaries' appended (their raw rows follow the split's)."""
        return features if self.canary is None else self.canary.append_features(task, features)
