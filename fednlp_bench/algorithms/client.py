"""The client side of an FL algorithm: hooks a Strategy supplies around the engine's local training loop.

Flower lets a client run arbitrary code; here the engine owns the loop (data
order, optimizer, NaN rejection, compute options) so every algorithm is timed
and seeded the same way, and an algorithm only says what is *different* on
its clients. A :class:`ClientProcedure` is called at four points::

    on_fit_start(ctx)                 once, after the global weights are loaded
    for each local step:
        loss = task loss + loss_term(ctx)          (None: no extra term)
        loss.backward(); after_backward(ctx)       (gradients present; edit p.grad)
        optimizer.step(); ctx.steps += 1
    on_fit_end(ctx) -> payload        extra tensors/scalars uploaded with the delta

``ctx.instructions`` is what the strategy sent this client this round
(``Strategy.configure_round``); ``ctx.state`` is this client's persistent
state (e.g. SCAFFOLD's control variate): the engine loads it from disk before
``on_fit_start`` and stores it after ``on_fit_end`` (only for procedures with
``stateful = True``), so memory stays O(model) for any number of clients and a
resumed run continues with the same states. Tensor payloads in both
directions are counted in the round's bytes.

Procedures compose: :class:`Composed` runs several in order (e.g. an
algorithm plus a wrapper that clips its update), which is why every hook
works on the shared context rather than returning a new model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Sequence

import torch

#: Named float tensors: the global model, a client delta, a control variate.
Weights = dict[str, torch.Tensor]


@dataclass
class FitContext:
    """Everything a client hook may read or change during one client's local training."""

    client_id: int
    rnd: int
    model: torch.nn.Module
    #: trainable parameters by name (the tensors an algorithm corrects or regularises).
    params: dict[str, torch.nn.Parameter]
    #: the weights this client started from (read only).
    global_weights: Weights
    #: what the strategy sent this client this round (scalars and tensors).
    instructions: Mapping[str, Any]
    #: this client's persistent state; mutate or replace entries in place (kept on disk by the engine).
    state: dict[str, torch.Tensor]
    #: client learning rate of the local optimizer.
    lr: float
    #: training examples (features) of this client.
    num_examples: int
    #: mean task loss over the client's rows at the current weights (one no-grad pass); for q-FFL-style weights.
    evaluate_loss: Callable[[], float]
    #: optimizer steps taken so far (the trainer increments it after each step).
    steps: int = 0
    #: free space for a procedure's own per-fit values (not persisted).
    scratch: dict[str, Any] = field(default_factory=dict)

    def instruction(self, key: str) -> Any:
        """A required instruction; a missing one names the key (a strategy/procedure mismatch)."""
        if key not in self.instructions:
            raise KeyError(f"client procedure needs instruction {key!r}; the strategy sent {sorted(self.instructions)}")
        return self.instructions[key]


class ClientProcedure:
    """Base class: every hook does nothing, so a procedure overrides only what its algorithm changes."""

    #: Instruction keys this procedure reads; a strategy sending any other key fails before training.
    instructions: ClassVar[tuple[str, ...]] = ()
    #: True when the procedure keeps per-client state in ``ctx.state`` (the engine then stores it on disk).
    stateful: ClassVar[bool] = False

    def on_fit_start(self, ctx: FitContext) -> None:
        """Called once after the global weights are loaded, before the first step."""

    def loss_term(self, ctx: FitContext) -> torch.Tensor | None:
        """An extra differentiable term added to the task loss at every step (None: none)."""
        return None

    def after_backward(self, ctx: FitContext) -> None:
        """Called at every step after ``backward()``, before ``optimizer.step()``: edit ``p.grad`` here."""

    def on_fit_end(self, ctx: FitContext) -> dict[str, Any]:
        """Extra upload (tensors, dicts of tensors, scalars) returned as ``ClientResult.payload``."""
        return {}


class Composed(ClientProcedure):
    """Several procedures in order: hooks run first to last, loss terms add up, payloads merge (later wins)."""

    def __init__(self, parts: Sequence[ClientProcedure]) -> None:
        self.parts = list(parts)

    @property  # type: ignore[override]
    def instructions(self) -> tuple[str, ...]:  # noqa: D401 - mirrors the class attribute
        return tuple(k for p in self.parts for k in p.instructions)

    @property  # type: ignore[override]
    def stateful(self) -> bool:
        return any(p.stateful for p in self.parts)

    def on_fit_start(self, ctx: FitContext) -> None:
        for p in self.parts:
            p.on_fit_start(ctx)

    def loss_term(self, ctx: FitContext) -> torch.Tensor | None:
        terms = [t for t in (p.loss_term(ctx) for p in self.parts) if t is not None]
        return None if not terms else torch.stack(terms).sum() if len(terms) > 1 else terms[0]

    def after_backward(self, ctx: FitContext) -> None:
        for p in self.parts:
            p.after_backward(ctx)

    def on_fit_end(self, ctx: FitContext) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for p in self.parts:
            out.update(p.on_fit_end(ctx))
        return out


def payload_bytes(payload: Any, bytes_per_value: int = 4) -> int:
    """Bytes of the tensors in a payload (nested dicts/lists); scalars ride along uncounted."""
    if isinstance(payload, torch.Tensor):
        return int(payload.numel()) * bytes_per_value
    if isinstance(payload, Mapping):
        return sum(payload_bytes(v, bytes_per_value) for v in payload.values())
    if isinstance(payload, (list, tuple)):
        return sum(payload_bytes(v, bytes_per_value) for v in payload)
    return 0


def zeros_like_params(ctx: FitContext) -> Weights:
    """Float32 zeros shaped like the trainable parameters (a fresh control variate or gradient memory)."""
    return {n: torch.zeros_like(p, dtype=torch.float32) for n, p in ctx.params.items()}
