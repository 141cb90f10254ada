"""Example-level DP-SGD as the clients' local training (``privacy.mechanism: dp_sgd``; Abadi et al. 2016).

Each local step of client i, with q_i and the number of steps from
``example_accountant.local_schedule`` (what the accountant composes):

    batch   = each of the client's rows independently with probability q_i (Poisson; may be empty)
    g_j     = gradient of example j's own loss                        (torch.func, per_example.py)
    g       = (sum_j g_j * min(1, C / ||g_j||) + N(0, (z C)^2 I)) / (q_i * n_i)
    optimizer step with g                                              (AdamW/SGD: post-processing)

The denominator is the *expected* batch size, fixed in advance, so the step's
sensitivity is C / (q_i n_i) whatever the batch drew. Batches and noise come
from the run's secret seed, keyed by (round, client), so no record can
regenerate them and a resumed run repeats them exactly.

The trainer calls :meth:`ExampleDP.train_client` instead of its plain loop
(``LocalTrainer.example_dp``); the client's delta then goes to the server as
usual, and any aggregation of DP outputs is post-processing.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from fednlp_bench.algorithms.client import FitContext
from fednlp_bench.engine.client.model_state import ClientUpdateRejected
from fednlp_bench.privacy.example_accountant import local_schedule
from fednlp_bench.privacy.per_example import PerExampleGradients, clipped_sum
from fednlp_bench.privacy.secret import DPSGD_STREAM, PrivateSeed

Collate = Callable[[np.ndarray], dict[str, Any]]


class ExampleDP:
    """The DP-SGD local loop of every client of a run (one object, shared model)."""

    def __init__(self, gradients: PerExampleGradients, *, noise_multiplier: float, clip_norm: float, batch_size: int,
                 local_epochs: int | None, local_steps: int | None, noise_seed: PrivateSeed) -> None:
        if noise_multiplier <= 0 or clip_norm <= 0:
            raise ValueError(f"DP-SGD needs noise_multiplier > 0 and clip_norm > 0, got {noise_multiplier}, {clip_norm}")
        self.gradients = gradients
        self.noise_multiplier = float(noise_multiplier)
        self.clip_norm = float(clip_norm)
        self.batch_size = int(batch_size)
        self.local_epochs = local_epochs
        self.local_steps = local_steps
        self.noise_seed = noise_seed

    def schedule(self, rows: int) -> tuple[float, int]:
        """(q, steps) of a client with ``rows`` rows: the accountant's definition."""
        return local_schedule(rows, self.batch_size, self.local_epochs, self.local_steps)

    def train_client(self, ctx: FitContext, optimizer: torch.optim.Optimizer, rows: np.ndarray,
                     collate: Collate, observer: Callable[[int, np.ndarray], None] | None = None) -> tuple[float, int]:
        """All of one client's DP-SGD steps; returns (sum of per-example losses, examples seen) for diagnostics.

        ``observer`` sees every Poisson batch, so the membership audit's members are the rows that really trained.
        """
        q, steps = self.schedule(len(rows))
        expected = q * len(rows)
        picks = self.noise_seed.numpy_generator(DPSGD_STREAM, ctx.rnd, ctx.client_id, 0)
        noise = self.noise_seed.torch_generator(DPSGD_STREAM, ctx.rnd, ctx.client_id, 1)
        loss_sum, seen = 0.0, 0
        for _ in range(steps):
            batch_rows = rows[picks.random(len(rows)) < q]
            if observer is not None:
                observer(ctx.client_id, batch_rows)
            loss_sum += self._step(ctx, optimizer, batch_rows, collate, expected, noise)
            seen += len(batch_rows)
        return loss_sum, seen

    def _step(self, ctx: FitContext, optimizer: torch.optim.Optimizer, batch_rows: np.ndarray, collate: Collate,
              expected: float, noise: torch.Generator) -> float:
        summed: dict[str, torch.Tensor] = {}
        loss_sum = 0.0
        if len(batch_rows):
            grads, losses = self.gradients(collate(batch_rows))
            if not bool(torch.isfinite(losses).all()):
                raise ClientUpdateRejected(
                    f"client {ctx.client_id}: non-finite per-example training loss at local step {ctx.steps + 1}"
                )
            summed, _ = clipped_sum(grads, self.clip_norm)
            loss_sum = float(losses.sum())
        std = self.noise_multiplier * self.clip_norm
        for name, param in ctx.params.items():
            draw = torch.randn(param.shape, generator=noise, dtype=torch.float32).to(param.device)
            total = draw * std if name not in summed else summed[name].to(torch.float32) + draw * std
            param.grad = (total / expected).to(param.dtype)
        optimizer.step()
        ctx.steps += 1
        return loss_sum
