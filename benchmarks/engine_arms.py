"""The two arms bench_engine.py and diag_engine_steps.py compare, on identical batches.

Why a module of its own: the overhead benchmark and its diagnostic must measure the same loop, so both build
the engine the same way (a LocalTrainer over 20News, FedAvg, the in-process backend), run a FedAvg round
exactly as the runner does, and replay that round's batches as a plain centralized loop.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator

import numpy as np
import torch

from fednlp_bench.engine.client.model_state import all_finite


def build(model: str, max_train: int, max_length: int, num_clients: int, batch_size: int, local_steps: int) -> dict[str, Any]:
    from fednlp_bench.algorithms.registry import create_strategy
    from fednlp_bench.engine.client.trainer import LocalTrainer
    from fednlp_bench.engine.server.simulator import InProcessBackend
    from fednlp_bench.partitioners import partition_dataset
    from fednlp_bench.tasks import get_task

    task = get_task("classification", model=model, data="20news", max_length=max_length, max_train_examples=max_train,
                    max_eval_examples=50, seed=0)
    train = task.load()["train"]
    part = partition_dataset(train, scheme="iid", num_clients=num_clients, seed=0, min_size=1)
    features = task.preprocess(train, train=True)
    torch.manual_seed(0)
    net = task.build_model()
    trainer = LocalTrainer(task, net, features, batch_size=batch_size, lr=1e-4, optimizer="adamw",
                           local_epochs=None, local_steps=local_steps)
    backend = InProcessBackend(trainer, lambda cid, rnd: trainer.rows_for(part.indices(cid)), progress=False)
    return {"task": task, "part": part, "trainer": trainer, "backend": backend, "strategy": create_strategy("fedavg")}


def fedavg_round(env: dict[str, Any], weights: dict[str, torch.Tensor], rnd: int, k: int) -> dict[str, torch.Tensor]:
    """Exactly what the runner does in a federated round, minus evaluation and checkpoint."""
    from fednlp_bench.sampling.seeds import sample_clients

    strategy, part = env["strategy"], env["part"]
    clients = sample_clients(part.num_clients, k, rnd, 0)
    outcome = env["backend"].run_round(rnd, strategy.configure_round(rnd, clients), weights, 0)
    new = strategy.aggregate(rnd, weights, outcome.results)
    assert all_finite(new.values())
    return new


def round_batches(env: dict[str, Any], rnd: int, k: int) -> list[np.ndarray]:
    """The row batches a FedAvg round's clients draw, in the order they train (the engine's own batching)."""
    from fednlp_bench.sampling.seeds import client_seed, sample_clients

    trainer, part = env["trainer"], env["part"]
    batches: list[np.ndarray] = []
    for cid in sample_clients(part.num_clients, k, rnd, 0):
        rng = np.random.default_rng(client_seed(0, rnd, cid))
        batches += list(trainer._batches(trainer.rows_for(part.indices(cid)), rng, trainer.local_epochs,
                                         trainer.local_steps))
    return batches


@contextlib.contextmanager
def batch_source(trainer: Any, replay: list[np.ndarray] | None = None, record: list[np.ndarray] | None = None) -> Iterator[None]:
    """Make the trainer replay ``replay`` as its batches, or record the batches it draws into ``record``."""
    original = trainer._batches

    def patched(rows: np.ndarray, rng: np.random.Generator, epochs: int | None, steps: int | None) -> Iterator[np.ndarray]:
        if replay is not None:
            yield from replay
            return
        for batch in original(rows, rng, epochs, steps):
            if record is not None:
                record.append(batch)
            yield batch

    trainer._batches = patched
    try:
        yield
    finally:
        del trainer._batches


def central_steps(env: dict[str, Any], weights: dict[str, torch.Tensor], rnd: int, batches: list[np.ndarray],
                  optimizer: torch.optim.Optimizer) -> None:
    """The same batches as the FedAvg round, as a plain training loop: one optimizer, no per-client work."""
    trainer = env["trainer"]
    rows = np.unique(np.concatenate(batches))
    with batch_source(trainer, replay=batches):
        trainer.train(-1, rows, weights, {}, seed=rnd, optimizer=optimizer, num_steps=len(batches), load_weights=False)


def bookkeeping(env: dict[str, Any], weights: dict[str, torch.Tensor], k: int) -> float:
    """Seconds of the engine's own per-round work with the training steps left out.

    Per client: load the global weights, reset the client optimizer, compute the
    delta and check it is finite; per round: sampling, aggregation, the global
    finiteness check. Timed directly, this is far less noisy than the
    difference of two long training loops on a shared machine.
    """
    from fednlp_bench.algorithms.base import ClientResult
    from fednlp_bench.sampling.seeds import sample_clients

    trainer, strategy = env["trainer"], env["strategy"]
    t0 = time.perf_counter()
    clients = sample_clients(env["part"].num_clients, k, 1, 0)
    strategy.configure_round(1, clients)
    results = []
    for cid in clients:
        trainer.rows_for(env["part"].indices(cid))
        trainer.state.load(weights)
        trainer.client_optimizer()  # the engine's per-client optimizer reset (buffers zeroed in place)
        delta = trainer.state.delta_from(weights)
        assert all_finite(delta.values())
        results.append(ClientResult(cid, delta, 10, 1, 0.0))
    new = strategy.aggregate(1, weights, results)
    assert all_finite(new.values())
    return time.perf_counter() - t0
