"""One client setup for every backend: a client's model, data, trainer and procedure from the run's inputs.

The in-process simulator (engine/run/prepare.py) and each FedML client
process (backends/fedml/client.py) call :func:`prepare_client` with the same
config, task and partition, so both train every client on the same rows
(:class:`~fednlp_bench.engine.client.data.ClientData`: client_eval hold-outs
and continual periods included), from the same model under the same seed,
with the same trainable mode, frozen-bottom cache and client procedure.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from fednlp_bench.compute.precision import Precision
from fednlp_bench.compute.setup import Compute, attach_frozen_cache, build_compute
from fednlp_bench.engine.client.data import ClientData
from fednlp_bench.engine.client.runner import ClientRunner
from fednlp_bench.engine.client.state import ClientStateStore
from fednlp_bench.engine.client.trainer import LocalTrainer


@dataclass
class ClientSetup:
    """What runs a client's turn: its rows per round, the model and trainer, and the procedure host."""

    data: ClientData
    compute: Compute
    trainer: LocalTrainer
    runner: ClientRunner
    _rows: dict[int, np.ndarray] = field(default_factory=dict)

    def rows(self, cid: int, rnd: int) -> np.ndarray:
        """Feature rows client ``cid`` trains on in round ``rnd`` (the same every round outside continual)."""
        if self.data.period(rnd) is not None:
            return self.trainer.rows_for(self.data.indices(cid, rnd))
        if cid not in self._rows:
            self._rows[cid] = self.trainer.rows_for(self.data.indices(cid, rnd))
        return self._rows[cid]


def prepare_client(
    config: Any,
    task: Any,
    train_raw: Any,
    partition: Any,
    run_dir: str | os.PathLike[str],
    *,
    procedure: Any,
    device: torch.device,
    precision: Precision,
    compute: Compute | None = None,
    data: ClientData | None = None,
    train_features: Any = None,
    cached: Sequence[Any] = (),
    frozen_cache_dir: str | os.PathLike[str] | None = None,
) -> ClientSetup:
    """Build the client side of a run.

    ``compute`` and ``data`` may be given when the caller built them already
    (the in-process run builds the model before partitioning, so a bad
    trainable setting fails first; its features need the same ClientData);
    ``train_features`` is the tokenized train split (tokenized here when
    None); ``cached`` are further inputs the frozen-bottom cache must hold
    (the in-process run's validation and test features). ``procedure`` is the
    strategy's client procedure (``strategy.make_client()``).
    """
    compute = compute if compute is not None else build_compute(task, config, device, precision)
    data = data if data is not None else ClientData(config, partition, train_raw, task)
    if train_features is None:
        train_features = task.preprocess(train_raw, train=True)
    attach_frozen_cache(compute, task, [train_features, *cached], frozen_cache_dir)
    trainer = LocalTrainer(
        task, compute.model, data.train_features(task, train_features), batch_size=config.batch_size, lr=config.lr,
        optimizer=config.optimizer, local_epochs=config.local_epochs, local_steps=config.local_steps,
        precision=precision, batching=config.batching,
    )
    runner = ClientRunner(trainer, procedure, ClientStateStore(Path(run_dir)))
    return ClientSetup(data, compute, trainer, runner)
