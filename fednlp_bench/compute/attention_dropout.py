"""The dropout on attention probabilities, set for a run (``attention_dropout``) instead of the model's default.

Why: in training, a non-zero attention dropout makes PyTorch's fused CPU
attention fall back to the unfused path, which materializes the
(batch, heads, length, length) probabilities, draws a Bernoulli mask of that
size and multiplies it in, forward and backward. At SQuAD's 256 tokens that
is the largest cost of a trained layer (``benchmarks/bench_attention_dropout.py``).
Dropout on the hidden states, the other half of BERT's regularization, stays
as the model declares it.
"""

from __future__ import annotations

from torch import nn

#: BERT-family attention blocks whose ``dropout`` is the attention-probability dropout (self and cross attention).
_ATTENTION_SUFFIXES = ("SelfAttention", "CrossAttention")


def set_attention_dropout(model: nn.Module, p: float | None) -> int:
    """Set the attention-probability dropout of every attention block to ``p``; returns how many were set.

    ``None`` keeps the model's own value. A model without BERT-family
    attention blocks cannot honour the field, so it is an error, not a no-op.
    """
    if p is None:
        return 0
    blocks = [m for m in model.modules()
              if type(m).__name__.endswith(_ATTENTION_SUFFIXES) and isinstance(getattr(m, "dropout", None), nn.Dropout)]
    if not blocks:
        raise ValueError(f"attention_dropout={p} needs a BERT-family model (attention blocks with a `dropout`); "
                         f"{type(model).__name__} has none: remove attention_dropout")
    for block in blocks:
        block.dropout.p = float(p)
    for config in _configs(model):
        if hasattr(config, "attention_probs_dropout_prob"):
            config.attention_probs_dropout_prob = float(p)
    return len(blocks)


def _configs(model: nn.Module) -> list:
    """The model's config and, for an encoder-decoder, its encoder's and decoder's."""
    config = getattr(model, "config", None)
    if config is None:
        return []
    return [config] + [getattr(config, part) for part in ("encoder", "decoder") if hasattr(config, part)]
