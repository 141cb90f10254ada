"""Running the rounds of a prepared run: sample -> configure -> train -> aggregate -> evaluate -> checkpoint.

The centralized baseline goes through the same loop as one virtual client
holding the union of all client data, with the per-round budget FedAvg
spends in expectation, so the gap compares like with like.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from fednlp_bench import progress as report
from fednlp_bench.algorithms.base import Weights
from fednlp_bench.algorithms.client import payload_bytes
from fednlp_bench.compute.device import cuda_rng_states
from fednlp_bench.engine.run import checkpoint as ckpt
from fednlp_bench.engine.eval.schedule import evaluates_round
from fednlp_bench.engine.client.model_state import ClientUpdateRejected, all_finite, non_finite_names
from fednlp_bench.engine.run.prepare import PreparedRun
from fednlp_bench.sampling.seeds import apply_dropout, central_seed
from fednlp_bench.engine.eval.finite import NonFiniteModelError
from fednlp_bench.engine.eval.validation import evaluate
from fednlp_bench.results.record import RoundResult

log = logging.getLogger("fednlp_bench.engine")

RoundCallback = Callable[[RoundResult], None]


@dataclass
class RoundWork:
    """What one training round produced, before evaluation and checkpointing."""

    weights: Weights
    clients: list[int]
    rejected: list[int]
    train_loss: float | None
    bytes_up: int
    bytes_down: int


def run_rounds(run: PreparedRun, on_round_end: RoundCallback | None = None, progress: bool | None = None) -> None:
    """Rounds ``run.start_round .. config.rounds``; each ends with a checkpoint, so a kill loses one round at most."""
    config = run.config
    run.run_dir.mkdir(parents=True, exist_ok=True)
    if run.start_round == 1:
        save_checkpoint(run, 0)
    reporter = report.current()
    rounds = range(run.start_round, config.rounds + 1)
    bar: Any = rounds
    if reporter is not None and reporter.bars:
        bar = tqdm(rounds, initial=run.start_round - 1, total=config.rounds, unit="round",
                   desc=f"{config.algorithm} rounds", file=reporter.stream)
    report.phase(f"training {config.rounds - run.start_round + 1} round(s) "
                 f"({'centralized' if run.strategy.centralized else f'{config.clients_per_round} clients/round'})")
    started = time.perf_counter()
    for rnd in bar:
        t0 = time.perf_counter()
        report.activity(f"training round {rnd}/{config.rounds}")
        step = centralized_round(run, rnd) if run.strategy.centralized else federated_round(run, rnd)
        if not all_finite(step.weights.values()):
            bad = non_finite_names(step.weights)
            raise NonFiniteModelError(nonfinite_message(run, rnd, f"{len(bad)} tensor(s) non-finite, e.g. {bad[0]!r}"))
        run.global_weights = step.weights
        due = evaluates_round(rnd, config.rounds, config.eval_every) or run.run_features.must_evaluate(rnd)
        metrics = evaluate(run, rnd) if due else {}
        row = RoundResult(
            round=rnd,
            clients=[int(c) for c in step.clients],
            train_loss=None if step.train_loss is None else float(step.train_loss),
            metrics=metrics,
            bytes_up=int(step.bytes_up),
            bytes_down=int(step.bytes_down),
            wall_time_s=time.perf_counter() - t0,
            rejected_clients=[int(c) for c in step.rejected],
            privacy=None if run.strategy.centralized else run.run_features.round_privacy(rnd, run.strategy),
        )
        run.rounds.append(row)
        run.run_features.round_done(row)  # the audit's record of trained rows, saved before the checkpoint
        save_checkpoint(run, rnd)
        run.client_states.commit(rnd)  # per-client states follow the checkpoint (see client_state.py)
        primary = run.task.primary_metric
        if primary in metrics and bar is not rounds:
            bar.set_postfix({primary: f"{metrics[primary]:.4f}"})
        if reporter is not None:
            elapsed = time.perf_counter() - started
            done = rnd - run.start_round + 1
            left = config.rounds - rnd
            reporter.round_line(
                rnd, config.rounds, 1 if run.strategy.centralized else len(step.clients), row.train_loss,
                (primary, metrics[primary]) if primary in metrics else None,
                elapsed, elapsed / done * left if left else None,
            )
        if on_round_end is not None:
            on_round_end(row)
    if bar is not rounds:
        bar.close()


def federated_round(run: PreparedRun, rnd: int) -> RoundWork:
    config, strategy = run.config, run.strategy
    sampled = run.run_features.select(rnd)
    clients, dropped = apply_dropout(sampled, config.dropout, rnd, config.seed)
    if dropped:
        log.info("round %d: clients %s dropped out", rnd, dropped)
    instructions = strategy.configure_round(rnd, clients)
    outcome = run.backend.run_round(rnd, instructions, run.global_weights, config.seed)
    rejected = sorted(outcome.rejected)
    loss: float | None = None
    if outcome.results:
        n = sum(r.num_examples for r in outcome.results)
        loss = sum(r.loss * r.num_examples for r in outcome.results) / n
    if outcome.results or getattr(strategy, "aggregates_empty_rounds", False):  # DP releases noise regardless
        weights = strategy.aggregate(rnd, run.global_weights, outcome.results)
    else:
        log.warning("round %d: no client update survived; the global model is unchanged", rnd)
        weights = run.global_weights
    model_bytes = run.trainer.state.num_bytes
    return RoundWork(
        weights=weights,
        clients=clients,
        rejected=rejected,
        train_loss=loss,
        # Rejected clients did upload; dropped clients had already downloaded the model (not their instructions).
        bytes_up=(len(outcome.results) + len(rejected)) * model_bytes + sum(payload_bytes(r.payload) for r in outcome.results),
        bytes_down=len(sampled) * model_bytes + sum(payload_bytes(instructions[c]) for c in clients),
    )


def centralized_round(run: PreparedRun, rnd: int) -> RoundWork:
    assert run.central_opt is not None
    try:
        result = run.trainer.train(
            -1, run.union_rows, run.global_weights, {}, central_seed(run.config.seed, rnd),
            optimizer=run.central_opt, num_steps=run.central_steps,
        )
    except ClientUpdateRejected as err:  # the only "client": nothing to fall back on
        raise NonFiniteModelError(nonfinite_message(run, rnd, str(err))) from err
    weights = run.strategy.aggregate(rnd, run.global_weights, [result])
    return RoundWork(weights=weights, clients=[], rejected=[], train_loss=result.loss, bytes_up=0, bytes_down=0)


def nonfinite_message(run: PreparedRun, rnd: int, detail: str) -> str:
    return (
        f"round {rnd}: the global model became non-finite ({detail}); the run stopped. "
        f"The last good checkpoint (round {rnd - 1}) is kept in {ckpt.checkpoint_dir(Path(run.run_dir))}. "
        f"Lower lr (now {run.config.lr}) or the algorithm's server_lr and start a new run."
    )


def save_checkpoint(run: PreparedRun, rnd: int) -> None:
    extra = {"rng/torch": torch.get_rng_state()}
    cuda_states = cuda_rng_states()
    if cuda_states is not None:
        extra["rng/cuda"] = cuda_states
    meta: dict[str, Any] = {
        "config": run.config.to_dict(),
        "partition": dict(run.partition_info),
        "rounds": [asdict(r) for r in run.rounds],
        "created": run.created,
        "strategy": run.strategy.name,
        "resumed_after": list(run.resumed_after),
    }
    if run.central_opt is not None:
        tensors, plain = ckpt.optimizer_state_to_flat(run.central_opt)
        extra.update(tensors)
        meta["central_optimizer"] = plain
    ckpt.save_checkpoint(run.run_dir, rnd, run.global_weights, run.strategy.state_dict(), meta, extra,
                         keep_all=run.keep_all_checkpoints)
