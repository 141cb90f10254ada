"""A bert2bert with a copy distribution: the pointer-generator head of See et al. (2017).

Why: with only an *encoder* pretrained (MiniLM), a warm-started bert2bert
must learn to write English from the training set, and on a CPU budget it
does not get there (ROUGE-L 0.07 on AESLC after 4.6k examples, against 0.35
for the lead baseline). Subject lines are largely made of words of the
e-mail, so letting the decoder point at source tokens gives it the lead
baseline's strength from the first rounds and leaves the vocabulary softmax
for what is not in the source.

At each target step t the model mixes two distributions over the vocabulary:

    p(w) = g_t * softmax(vocab logits)_w + (1 - g_t) * sum_{i: src_i = w} a_{t,i}

where ``a_t`` is a single-head attention of the decoder state over the
encoder's last hidden states (masked to real tokens) and ``g_t =
sigmoid(W [decoder state; context])``. The loss is the NLL of the label under
``p``, computed from p at the label alone (:meth:`label_log_probs`); decoding is
greedy on ``p``. The two new layers (``copy_query``,
``copy_gate``) start random and belong to the task head
(:func:`fednlp_bench.compute.trainable.head_parameter_names`), so every
trainable mode trains them.

``decoder_layers`` keeps only the bottom N layers of the warm-started decoder:
the decoder is trained in full by every partial mode (its cross-attention is
new), so its depth is what a generation step costs.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
from torch import nn
from transformers import EncoderDecoderModel
from transformers.modeling_outputs import Seq2SeqLMOutput
from transformers.models.encoder_decoder.modeling_encoder_decoder import shift_tokens_right

IGNORE = -100


def truncate_decoder(model: EncoderDecoderModel, layers: int) -> None:
    """Keep the decoder's bottom ``layers`` layers (BERT-family decoders: ``decoder.bert.encoder.layer``)."""
    stack = getattr(getattr(getattr(model.decoder, "base_model", None), "encoder", None), "layer", None)
    if not isinstance(stack, nn.ModuleList):
        raise ValueError(f"decoder_layers needs a BERT-family decoder; {type(model.decoder).__name__} has no layer list")
    if not 1 <= layers <= len(stack):
        raise ValueError(f"decoder_layers={layers} must be in 1..{len(stack)} (the warm-started decoder's depth)")
    del stack[layers:]
    model.config.decoder.num_hidden_layers = layers


class PointerGeneratorEncoderDecoder(EncoderDecoderModel):
    """``EncoderDecoderModel`` whose output distribution mixes the LM head with copying from the source."""

    def __init__(self, config: Any = None, encoder: Any = None, decoder: Any = None) -> None:
        super().__init__(config=config, encoder=encoder, decoder=decoder)
        dec_width, enc_width = self.config.decoder.hidden_size, self.config.encoder.hidden_size
        self.copy_query = nn.Linear(dec_width, enc_width)
        self.copy_gate = nn.Linear(dec_width + enc_width, 1)
        if not hasattr(self.decoder, "cls") or hasattr(self, "enc_to_dec_proj"):
            raise ValueError("the pointer-generator needs a BERT-family decoder (an LM head `cls`) as wide as its encoder")
        std = getattr(self.config.decoder, "initializer_range", 0.02)
        for layer in (self.copy_query, self.copy_gate):
            nn.init.normal_(layer.weight, std=std)
            nn.init.zeros_(layer.bias)

    # ------------------------------------------------------------ the mixture
    def _decode(self, decoder_input_ids: torch.Tensor, memory: torch.Tensor, source_mask: torch.Tensor,
                last_only: bool = False, cache: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(vocabulary logits, decoder states) at every (or only the last) target position.

        With ``cache`` (a transformers ``EncoderDecoderCache``), ``decoder_input_ids``
        holds only the new tokens and the cache, updated in place, holds the rest.
        """
        base = self.decoder.base_model
        if cache is None:
            mask = (decoder_input_ids != self.config.pad_token_id).long()
            extra: dict[str, Any] = {"use_cache": False}
        else:
            mask = torch.ones(decoder_input_ids.shape[0], cache.get_seq_length() + decoder_input_ids.shape[1],
                              dtype=torch.long, device=decoder_input_ids.device)
            extra = {"use_cache": True, "cache": cache}
        states = base(
            input_ids=decoder_input_ids,
            attention_mask=mask,
            encoder_hidden_states=memory,
            encoder_attention_mask=source_mask,
            return_dict=True,
            **extra,
        ).last_hidden_state
        if last_only:
            states = states[:, -1:]
        return self.decoder.cls(states), states

    def _copy_parts(self, states: torch.Tensor, memory: torch.Tensor,
                    source_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(attention over the source (B, T, S), generate gate g (B, T, 1)), in fp32."""
        states, memory = states.float(), memory.float()
        scores = self.copy_query(states) @ memory.transpose(1, 2) / math.sqrt(memory.shape[-1])
        scores = scores.masked_fill(~source_mask.bool()[:, None, :], torch.finfo(scores.dtype).min)
        attention = scores.softmax(dim=-1)
        context = attention @ memory
        return attention, torch.sigmoid(self.copy_gate(torch.cat([states, context], dim=-1)))

    def log_probs(self, vocab_logits: torch.Tensor, states: torch.Tensor, memory: torch.Tensor,
                  source_ids: torch.Tensor, source_mask: torch.Tensor) -> torch.Tensor:
        """log p(w) of the generate/copy mixture over the whole vocabulary, shape (batch, target, vocab)."""
        attention, generate = self._copy_parts(states, memory, source_mask)
        vocab_logits = vocab_logits.float()
        copy = torch.zeros_like(vocab_logits).scatter_add_(
            2, source_ids[:, None, :].expand(-1, attention.shape[1], -1), attention
        )
        mixed = generate * vocab_logits.softmax(dim=-1) + (1.0 - generate) * copy
        return mixed.clamp_min(1e-12).log()

    def label_log_probs(self, vocab_logits: torch.Tensor, states: torch.Tensor, memory: torch.Tensor,
                        source_ids: torch.Tensor, source_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """log p(label) of the mixture, shape (batch, target): :meth:`log_probs` gathered at the labels.

        Why: the loss needs p at one word per position, and the copy term at
        that word is the attention on the source positions that hold it. So
        the (batch, target, vocab) mixture, its softmax, log and their
        gradients, several passes over tensors of 30k floats per token that
        cost as much as the LM head itself, reduce to one log-sum-exp.
        """
        attention, generate = self._copy_parts(states, memory, source_mask)
        vocab_logits, target = vocab_logits.float(), labels.clamp_min(0)
        vocab_p = (vocab_logits.gather(2, target[..., None])[..., 0] - vocab_logits.logsumexp(dim=-1)).exp()
        copy = (attention * (source_ids[:, None, :] == target[..., None])).sum(dim=-1)
        mixed = generate[..., 0] * vocab_p + (1.0 - generate[..., 0]) * copy
        return mixed.clamp_min(1e-12).log()

    def _memory(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                token_type_ids: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        memory = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                              return_dict=True).last_hidden_state
        return memory, attention_mask

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, decoder_input_ids: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, output_distribution: bool | None = None,
                **unused: Any) -> Seq2SeqLMOutput:
        """Loss (with ``labels``) and, without labels or with ``output_distribution``, ``logits`` = log p (B, T, V)."""
        if input_ids is None:
            raise ValueError("the pointer-generator needs input_ids (it copies source tokens by id)")
        memory, mask = self._memory(input_ids, attention_mask, token_type_ids)
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("give labels or decoder_input_ids")
            decoder_input_ids = shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)
        logits, states = self._decode(decoder_input_ids, memory, mask)
        loss = log_p = None
        if labels is not None:
            label_log_p = self.label_log_probs(logits, states, memory, input_ids, mask, labels)
            keep = labels != IGNORE
            loss = -(label_log_p * keep).sum() / keep.sum()
        if labels is None or output_distribution:
            log_p = self.log_probs(logits, states, memory, input_ids, mask)
        return Seq2SeqLMOutput(loss=loss, logits=log_p)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,  # type: ignore[override]
                 max_new_tokens: int = 32, num_beams: int = 1, do_sample: bool = False,
                 token_type_ids: torch.Tensor | None = None, use_cache: bool = True, **unused: Any) -> torch.Tensor:
        """Greedy decoding on the mixture; returns [start] + tokens, padded after each row's eos.

        ``use_cache`` keeps the decoder's keys and values between steps (each step then
        runs one token instead of the whole prefix: same tokens, tested).
        """
        if num_beams != 1 or do_sample:
            raise ValueError(f"the pointer-generator decodes greedily; num_beams={num_beams}, do_sample={do_sample} "
                             f"are not supported (set num_beams: 1)")
        memory, mask = self._memory(input_ids, attention_mask, token_type_ids)
        pad, eos = self.config.pad_token_id, self.config.eos_token_id
        out = torch.full((input_ids.shape[0], 1), self.config.decoder_start_token_id, device=input_ids.device)
        finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        cache = self._new_cache() if use_cache else None
        for _ in range(max_new_tokens):
            new_tokens = out if cache is None or cache.get_seq_length() == 0 else out[:, -1:]
            logits, states = self._decode(new_tokens, memory, mask, last_only=True, cache=cache)
            step = self.log_probs(logits, states, memory, input_ids, mask)[:, -1].argmax(dim=-1)
            step = step.masked_fill(finished, pad)
            out = torch.cat([out, step[:, None]], dim=1)
            finished |= step == eos
            if bool(finished.all()):
                break
        return out

    def _new_cache(self) -> Any:
        """A key/value cache for the decoder, or ``None`` where this transformers version takes none by ``cache``."""
        if "cache" not in inspect.signature(self.decoder.base_model.forward).parameters:
            return None
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        config = self.config.decoder
        return EncoderDecoderCache(DynamicCache(config=config), DynamicCache(config=config))
