"""Backends run a round's clients; the in-process simulator runs them one after another.

A backend takes the selected clients and their instructions, runs local
training for each and hands back the results. The in-process backend is
sequential and reuses one model object, so a run is deterministic for a seed
and its memory does not depend on how many clients exist. A multi-process
backend (e.g. FedML) would implement the same ``run_round``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

import numpy as np
from tqdm.auto import tqdm

from fednlp_bench import progress as report
from fednlp_bench.algorithms.base import ClientResult, Weights
from fednlp_bench.engine.client.runner import ClientRunner
from fednlp_bench.engine.client.trainer import LocalTrainer
from fednlp_bench.engine.client.model_state import ClientUpdateRejected
from fednlp_bench.sampling.seeds import client_seed

log = logging.getLogger("fednlp_bench.engine")


@dataclass
class RoundOutcome:
    results: list[ClientResult]
    rejected: dict[int, str] = field(default_factory=dict)


class Backend(Protocol):
    name: str

    def run_round(
        self, rnd: int, instructions: Mapping[int, Mapping[str, Any]], global_weights: Weights, seed: int
    ) -> RoundOutcome: ...


class InProcessBackend:
    """Sequential, deterministic clients in this process on one shared model."""

    name = "inprocess"

    def __init__(self, trainer: LocalTrainer | ClientRunner, client_rows: Callable[[int, int], np.ndarray],
                 progress: bool | None = None) -> None:
        self.trainer = trainer
        self.client_rows = client_rows
        self.progress = progress

    def run_round(
        self, rnd: int, instructions: Mapping[int, Mapping[str, Any]], global_weights: Weights, seed: int
    ) -> RoundOutcome:
        outcome = RoundOutcome(results=[])
        clients = list(instructions)
        reporter = report.current()
        bar: Any = clients
        if reporter is not None:
            bar = reporter.bar(clients, desc=f"round {rnd} clients", unit="client", leave=False)
        elif self.progress:
            bar = tqdm(clients, desc=f"round {rnd} clients", unit="client", leave=False)
        for i, cid in enumerate(bar, start=1):
            report.activity(f"training round {rnd}: client {cid} ({i}/{len(clients)})")
            try:
                result = self.trainer.train(
                    cid, self.client_rows(cid, rnd), global_weights, instructions[cid], client_seed(seed, rnd, cid), rnd=rnd
                )
            except ClientUpdateRejected as err:
                log.warning("round %d: rejected update of client %d: %s", rnd, cid, err)
                outcome.rejected[cid] = str(err)
                continue
            outcome.results.append(result)
        return outcome

