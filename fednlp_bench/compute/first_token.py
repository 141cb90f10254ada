"""The last encoder layer computed for the first token only, where the task head reads nothing else.

A sequence classifier reads the encoder's output at one position: BERT's
pooler and RoBERTa's head both take ``hidden_states[:, 0]``. The other
positions' outputs of the *last* layer feed nothing, yet a full layer spends
most of its work on them (the query, output and feed-forward products of
every token). Computing that layer for the first token only - its query
against every token's keys and values, with the same attention mask - gives
the same first-token output up to the float summation order (a test checks
outputs and gradients against the full layer) at about a ninth of the layer's
forward and backward cost on MiniLM at 128 tokens (``benchmarks/bench_first_token.py``).

The encoder then returns a last hidden state of length 1, which is all the
head reads. Where the last layer is a cached frozen layer (``top_layers`` with
``layers: 0`` and the cache), its output comes from the cache and nothing is
patched; a layer whose structure is not BERT's (``attention.self.query`` ...,
``feed_forward_chunk``) is left as it is.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from fednlp_bench.compute.trainable import TrainableSetup, encoder_stack

log = logging.getLogger("fednlp_bench.compute")

_BERT_LAYER_PARTS = ("attention", "intermediate", "output", "feed_forward_chunk")
_SELF_ATTENTION_PARTS = ("query", "key", "value", "attention_head_size", "scaling", "dropout", "config")


def _is_bert_layer(layer: torch.nn.Module) -> bool:
    attention = getattr(layer, "attention", None)
    self_attention = getattr(attention, "self", None)
    return (all(hasattr(layer, name) for name in _BERT_LAYER_PARTS) and hasattr(attention, "output")
            and all(hasattr(self_attention, name) for name in _SELF_ATTENTION_PARTS)
            and not getattr(layer, "add_cross_attention", False))


def _first_query_row(mask: torch.Tensor | None) -> torch.Tensor | None:
    """The mask row of the first query (an encoder's mask is the same key mask on every query row)."""
    if mask is not None and mask.dim() == 4 and mask.shape[-2] != 1:
        return mask[:, :, :1, :]
    return mask


def first_token_layer_forward(layer: torch.nn.Module, hidden_states: torch.Tensor,
                              attention_mask: torch.Tensor | None) -> torch.Tensor:
    """BertLayer's forward for position 0 only: shape (batch, 1, hidden)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.bert.modeling_bert import eager_attention_forward

    attention = layer.attention.self
    batch, length = hidden_states.shape[:2]
    first = hidden_states[:, :1]
    head = attention.attention_head_size
    query = attention.query(first).view(batch, 1, -1, head).transpose(1, 2)
    key = attention.key(hidden_states).view(batch, length, -1, head).transpose(1, 2)
    value = attention.value(hidden_states).view(batch, length, -1, head).transpose(1, 2)
    interface = ALL_ATTENTION_FUNCTIONS.get_interface(attention.config._attn_implementation, eager_attention_forward)
    context, _ = interface(attention, query, key, value, _first_query_row(attention_mask),
                           dropout=0.0 if not attention.training else attention.dropout.p, scaling=attention.scaling)
    context = context.reshape(batch, 1, -1).contiguous()
    return layer.feed_forward_chunk(layer.attention.output(context, first))


def install_first_token_top(task: Any, setup: TrainableSetup) -> bool:
    """Patch the last encoder layer of a first-token task; whether it was patched."""
    model_type = getattr(getattr(setup.model, "config", None), "model_type", None)
    if model_type not in getattr(task, "first_token_model_types", ()):
        return False
    try:
        layers = encoder_stack(setup.model).layers
    except ValueError:
        return False
    if len(layers) == 0 or (setup.wants_cache and setup.frozen_layers >= len(layers)):
        return False
    layer = layers[len(layers) - 1]
    if not _is_bert_layer(layer):
        log.info("first-token top layer: %s is not a BERT layer; the full layer runs", type(layer).__name__)
        return False
    full_forward = layer.forward

    def forward(hidden_states: torch.Tensor, attention_mask: Any = None, *args: Any, **kwargs: Any) -> torch.Tensor:
        if attention_mask is not None and not isinstance(attention_mask, torch.Tensor):
            return full_forward(hidden_states, attention_mask, *args, **kwargs)[:, :1]  # e.g. a flex BlockMask
        return first_token_layer_forward(layer, hidden_states, attention_mask)

    layer.forward = forward  # type: ignore[method-assign]
    return True
