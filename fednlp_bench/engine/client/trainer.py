"""The client side: E local epochs (or S local steps) of the task's model on one client's rows.

One model object serves every client: the trainer copies the global weights
into it, trains, and returns ``local - global``. Nothing per client outlives
its turn except the returned delta (and the algorithm's per-client state,
which ``engine/client/state.py`` keeps on disk), so memory does not grow with
the number of clients (only with clients *per round*). The trainer knows no
algorithm: an algorithm's client side is a ``ClientProcedure`` whose hooks
run inside :meth:`LocalTrainer._step`, the one per-step loop.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from datasets import Dataset

from fednlp_bench.algorithms.base import ClientResult, Weights
from fednlp_bench.algorithms.client import ClientProcedure, FitContext
from fednlp_bench.compute.host_memory import configure_host_memory
from fednlp_bench.compute.precision import Precision
from fednlp_bench.engine.client.batching import BATCHINGS, local_batches
from fednlp_bench.engine.client.model_state import ClientUpdateRejected, ModelState, all_finite, non_finite_names
from fednlp_bench.tasks.base import Task

log = logging.getLogger("fednlp_bench.engine")

class LocalTrainer:
    """Runs local training for any client on a shared model object."""

    def __init__(
        self,
        task: Task,
        model: torch.nn.Module,
        features: Dataset,
        *,
        batch_size: int,
        lr: float,
        optimizer: str = "adamw",
        local_epochs: int | None = 1,
        local_steps: int | None = None,
        precision: Precision | None = None,
        batching: str = "random",
    ) -> None:
        if (local_epochs is None) == (local_steps is None):
            raise ValueError("give exactly one of local_epochs and local_steps")
        if "example_index" not in features.column_names:
            raise ValueError(
                f"task {task.name!r}: preprocessed features lack the 'example_index' column "
                f"(columns: {features.column_names}); see tasks/base.py"
            )
        if optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer={optimizer!r}; choose 'sgd' or 'adamw'")
        if batching not in BATCHINGS or (batching == "length" and "input_ids" not in features.column_names):
            raise ValueError(f"batching={batching!r}: choose one of {BATCHINGS} ('length' needs an 'input_ids' column; "
                             f"features have {features.column_names})")
        configure_host_memory()  # freed memory stays for the next client's steps (compute/host_memory.py)
        self.task = task
        self.model = model
        self.state = ModelState(model)
        self.features = features
        self.columns = [c for c in features.column_names]
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer_name = optimizer
        self.local_epochs = local_epochs
        self.local_steps = local_steps
        self.batching = batching
        #: tokens per feature row (features are unpadded), for ``batching: length`` (engine/client/batching.py)
        self._lengths = (np.fromiter((len(ids) for ids in features["input_ids"]), dtype=np.int64, count=len(features))
                         if batching == "length" else None)
        example_index = np.asarray(features["example_index"], dtype=np.int64)
        self._order = np.argsort(example_index, kind="stable")
        self._sorted_examples = example_index[self._order]
        self.device = next(model.parameters()).device
        self.precision = precision if precision is not None else Precision("fp32", self.device)
        #: Called with (client id, feature rows) for every training batch (the membership audit's tracker).
        self.batch_observer: Callable[[int, np.ndarray], None] | None = None
        #: Example-level DP (``privacy.mechanism: dp_sgd``): an object whose ``train_client`` replaces the plain
        #: local loop (fednlp_bench/privacy/dpsgd.py); None trains plainly.
        self.example_dp: Any = None

    # ------------------------------------------------------------- data
    def rows_for(self, example_indices: np.ndarray) -> np.ndarray:
        """Feature rows that came from the given raw-split rows (QA contexts may give several)."""
        idx = np.asarray(example_indices, dtype=np.int64)
        mask = np.isin(self._sorted_examples, idx)
        return np.sort(self._order[mask])

    def _collate(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        cols = self.features[rows.tolist()]
        names = list(cols)
        batch = self.task.collate([dict(zip(names, values)) for values in zip(*(cols[n] for n in names))])
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def _batches(self, rows: np.ndarray, rng: np.random.Generator, epochs: int | None, steps: int | None) -> Iterator[np.ndarray]:
        return local_batches(rows, rng, self.batch_size, self.batching, self._lengths, epochs, steps)

    def make_optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(params, lr=self.lr)
        return torch.optim.AdamW(params, lr=self.lr)

    def client_optimizer(self) -> torch.optim.Optimizer:
        """An optimizer in its initial state for the next client, reusing the last client's buffers.

        A fresh AdamW allocates two model-sized state tensors at its first step
        and frees them after the client: per client that is ~2x the model in
        new pages (faulted in and zero-filled by the OS) plus the free. Zeroing
        the same buffers in place gives the identical initial state (step 0,
        zero moments) without that allocator churn.
        """
        opt = getattr(self, "_client_opt", None)
        if opt is None:
            opt = self._client_opt = self.make_optimizer()
            return opt
        for state in opt.state.values():
            for value in state.values():
                if isinstance(value, torch.Tensor):
                    value.zero_()
        return opt

    @torch.no_grad()
    def mean_loss(self, rows: np.ndarray) -> float:
        """Mean task loss over ``rows`` at the current weights, in eval mode (q-FFL's F_k(w))."""
        was = self.model.training
        self.model.eval()
        total, seen = 0.0, 0
        for i in range(0, len(rows), self.batch_size):
            part = rows[i : i + self.batch_size]
            with self.precision.autocast():
                total += float(self.model(**self._collate(part)).loss) * len(part)
            seen += len(part)
        self.model.train(was)
        return total / max(seen, 1)

    # ------------------------------------------------------------ train
    def train(
        self,
        client_id: int,
        rows: np.ndarray,
        global_weights: Weights,
        instructions: Mapping[str, Any] | None,
        seed: int,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        num_steps: int | None = None,
        load_weights: bool = True,
        procedure: ClientProcedure | None = None,
        state: dict[str, torch.Tensor] | None = None,
        rnd: int = 0,
    ) -> ClientResult:
        """Train from ``global_weights`` on ``rows`` and return the delta (plus the procedure's payload).

        ``procedure`` is the algorithm's client side (hooks around the loop
        below; ``state`` is its persistent per-client state, which the caller
        loads and stores). ``optimizer``/``num_steps`` let the centralized
        baseline keep one optimizer across rounds and fix its per-round step
        budget. Raises :class:`ClientUpdateRejected` on a non-finite loss or update.
        """
        instructions = _read_instructions(instructions, procedure)
        if len(rows) == 0:
            raise ClientUpdateRejected(f"client {client_id} has no training rows")
        if load_weights:
            self.state.load(global_weights)
        model = self.model
        model.train()
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        opt = optimizer if optimizer is not None else self.client_optimizer()
        ctx = FitContext(
            client_id=client_id, rnd=rnd, model=model,
            params={n: p for n, p in model.named_parameters() if p.requires_grad},
            global_weights=global_weights, instructions=instructions, state=state if state is not None else {},
            lr=self.lr, num_examples=int(len(rows)), evaluate_loss=lambda: self.mean_loss(rows),
        )
        if procedure is not None:
            procedure.on_fit_start(ctx)
        epochs, steps = (None, num_steps) if num_steps is not None else (self.local_epochs, self.local_steps)
        loss_sum, seen = 0.0, 0
        if self.example_dp is not None:  # DP-SGD: Poisson batches from its own secret generator, clipped + noised steps
            loss_sum, seen = self.example_dp.train_client(ctx, opt, rows, self._collate, self.batch_observer)
        else:
            for batch_rows in self._batches(rows, rng, epochs, steps):
                loss_sum += self._step(ctx, opt, procedure, batch_rows) * len(batch_rows)
                seen += len(batch_rows)
        payload = procedure.on_fit_end(ctx) if procedure is not None else {}
        delta = self.state.delta_from(global_weights)
        if not all_finite(delta.values()) or not all_finite(_tensors(payload)):
            bad = non_finite_names(delta) or ["payload"]
            raise ClientUpdateRejected(f"client {client_id}: update of {bad[0]!r} is non-finite")
        return ClientResult(client_id=client_id, delta=delta, num_examples=int(len(rows)), num_steps=ctx.steps,
                            loss=loss_sum / max(seen, 1), payload=payload)

    def _step(self, ctx: FitContext, opt: torch.optim.Optimizer, procedure: ClientProcedure | None,
              batch_rows: np.ndarray) -> float:
        """One local step: the only place a client's loss, backward pass, hooks and optimizer meet."""
        if self.batch_observer is not None:
            self.batch_observer(ctx.client_id, batch_rows)
        batch = self._collate(batch_rows)
        opt.zero_grad(set_to_none=True)
        with self.precision.autocast():
            loss = self.model(**batch).loss
        value = float(loss.detach())
        if not math.isfinite(value):
            raise ClientUpdateRejected(f"client {ctx.client_id}: non-finite training loss {value} at local step {ctx.steps + 1}")
        if procedure is not None:
            extra = procedure.loss_term(ctx)
            if extra is not None:
                loss = loss + extra
        self.precision.backward(loss, opt)  # fp16: scaled, then unscaled, so the hooks see true gradients
        if procedure is not None:
            with torch.no_grad():
                procedure.after_backward(ctx)
        self.precision.step(opt)
        ctx.steps += 1
        return value


def _tensors(payload: Any) -> list[torch.Tensor]:
    if isinstance(payload, torch.Tensor):
        return [payload]
    if isinstance(payload, Mapping):
        return [t for v in payload.values() for t in _tensors(v)]
    if isinstance(payload, (list, tuple)):
        return [t for v in payload for t in _tensors(v)]
    return []


def _read_instructions(instructions: Mapping[str, Any] | None, procedure: ClientProcedure | None) -> dict[str, Any]:
    """The server's instructions for this client; one that no client procedure reads is a bug, not ignored."""
    instructions = dict(instructions or {})
    known = procedure.instructions if procedure is not None else ()
    unknown = [k for k in instructions if k not in known]
    if unknown:
        raise ValueError(f"client instruction(s) {unknown} are read by no client procedure; it reads: {list(known)}")
    return instructions
