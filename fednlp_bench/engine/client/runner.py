"""One client's turn: load its persistent state, train with the algorithm's procedure, stage the new state.

Backends (in-process and the FedML client processes) call
:meth:`ClientRunner.train` exactly as they would call ``LocalTrainer.train``;
this wrapper adds only the algorithm's client procedure and the on-disk
state, so the trainer stays free of both.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from fednlp_bench.algorithms.base import ClientResult, Weights
from fednlp_bench.algorithms.client import ClientProcedure
from fednlp_bench.engine.client.state import ClientStateStore
from fednlp_bench.engine.client.trainer import LocalTrainer


class ClientRunner:
    """``trainer`` + the strategy's ``procedure`` + the run's ``store`` of per-client state."""

    def __init__(self, trainer: LocalTrainer, procedure: ClientProcedure | None, store: ClientStateStore | None) -> None:
        if procedure is not None and procedure.stateful and store is None:
            raise ValueError(f"{type(procedure).__name__} keeps per-client state but no state store was given")
        self.trainer = trainer
        self.procedure = procedure
        self.store = store

    def train(
        self, client_id: int, rows: np.ndarray, global_weights: Weights, instructions: Mapping[str, Any] | None,
        seed: int, *, rnd: int = 0,
    ) -> ClientResult:
        stateful = self.procedure is not None and self.procedure.stateful
        state = self.store.load(client_id) if stateful and self.store is not None else {}
        state = {k: v.to(self.trainer.device) for k, v in state.items()}  # stored on the CPU
        result = self.trainer.train(client_id, rows, global_weights, instructions, seed,
                                    procedure=self.procedure, state=state, rnd=rnd)
        if stateful and self.store is not None:  # a rejected update raised above: its state is not kept
            self.store.stage(rnd, client_id, state)
        return result
