"""Per-example gradients of a model's trainable parameters, vectorised with ``torch.func`` (vmap over grad).

DP-SGD needs every example's own gradient so each can be clipped before the
sum. A loop of single-example backward passes would cost one pass per
example; ``vmap(grad(loss_of_one_example))`` computes them all in one
batched pass. What a batched pass cannot do inside vmap is branch on data, so:

* the 2-D padding mask becomes the additive 4-D mask (0 where attended, the
  dtype's minimum where padded) the model would build; a 4-D mask is used as
  given by transformers, with no data-dependent "is any token padded?" check;
* attention runs in the eager implementation: torch.func has no batching rule
  for the CPU flash-attention backward (it would fall back to a per-example loop);
* with ``top_layers`` + ``cache`` the frozen bottom's cached states are looked up
  for the whole batch outside vmap (a NumPy lookup) and handed to each example,
  so only the trainable top layers run per example: the cpu tier's fast path.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping

import torch
from torch.func import functional_call, grad, vmap

Grads = dict[str, torch.Tensor]


class PerExampleGradients:
    """``(per-example gradients by parameter name, per-example losses)`` for one collated batch."""

    def __init__(self, model: torch.nn.Module, cache: Any | None = None) -> None:
        self.model = model
        self.cache = cache
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        if not self.names:
            raise ValueError("DP-SGD needs trainable parameters; the model has none")
        set_eager = getattr(model, "set_attn_implementation", None)
        if callable(set_eager) and getattr(getattr(model, "config", None), "_attn_implementation", "eager") != "eager":
            set_eager("eager")

    def __call__(self, batch: Mapping[str, Any]) -> tuple[Grads, torch.Tensor]:
        tensors = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
        fixed = {k: v for k, v in batch.items() if not isinstance(v, torch.Tensor)}
        boundary = None
        if self.cache is not None:
            boundary = self.cache.lookup(tensors["input_ids"], tensors.get("token_type_ids"))
        mask = tensors.get("attention_mask")
        if mask is not None and mask.dim() == 2:
            tensors["attention_mask"] = additive_mask(mask)
        params = {n: p.detach() for n, p in self.model.named_parameters() if p.requires_grad}
        per_example = vmap(grad(self._loss_of_one, has_aux=True),
                           in_dims=(None, 0, None if boundary is None else 0, None), randomness="different")
        grads, losses = per_example(params, tensors, boundary, fixed)
        return grads, losses

    def _loss_of_one(self, params: Grads, example: Grads, boundary: torch.Tensor | None,
                     fixed: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = {k: v.unsqueeze(0) for k, v in example.items()}
        with self._serving(None if boundary is None else boundary.unsqueeze(0)):
            loss = functional_call(self.model, params, args=(), kwargs={**inputs, **fixed}).loss
        return loss, loss.detach()

    @contextlib.contextmanager
    def _serving(self, states: torch.Tensor | None) -> Iterator[None]:
        """With the cache: the embeddings return this example's cached boundary states (the bottom passes them on)."""
        if states is None:
            yield
            return
        module = self.cache.setup.stack.embeddings
        previous = module.__dict__.get("forward")
        module.forward = lambda *args, **kwargs: states  # type: ignore[method-assign]
        try:
            yield
        finally:
            if previous is None:
                del module.forward
            else:
                module.forward = previous  # type: ignore[method-assign]


def additive_mask(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(batch, 1, 1, length) additive attention mask from a (batch, length) 0/1 padding mask."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def clipped_sum(grads: Grads, clip_norm: float) -> tuple[Grads, torch.Tensor]:
    """(sum over examples of each gradient scaled to joint L2 norm <= clip_norm, the examples' norms).

    The norm is over all trainable tensors together (each tensor's norm in its dtype, their squares summed in
    float64, without a float64 copy of the gradients), as client-level DP clips a whole delta: each example's
    contribution to the sum is bounded by ``clip_norm``.
    """
    squares = sum(torch.linalg.vector_norm(g.flatten(1), dim=1).double().pow(2) for g in grads.values())
    norms = squares.sqrt()
    scale = (clip_norm / norms.clamp_min(1e-12)).clamp(max=1.0)
    summed = {n: torch.einsum("b,b...->...", scale.to(g.dtype), g) for n, g in grads.items()}
    return summed, norms
