"""The first-token last layer gives a classifier the full layer's logits and gradients, and patches only there."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertForTokenClassification

from fednlp_bench.compute.first_token import install_first_token_top
from fednlp_bench.compute.trainable import apply_trainable
from fednlp_bench.tasks.classification import ClassificationTask
from fednlp_bench.tasks.tagging import TaggingTask


def tiny_classifier(attn: str) -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=64, num_labels=5, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, attn_implementation=attn)
    return BertForSequenceClassification(config)


def batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 100, (6, 12), generator=g)
    mask = torch.ones_like(ids)
    for row, length in enumerate([12, 9, 5, 12, 3, 7]):  # padded rows: the key mask must reach the first query
        mask[row, length:] = 0
        ids[row, length:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 2, 3, 4, 0])}


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("mode,params", [("full", {}), ("top_layers", {"layers": 1, "cache": False}),
                                         ("top_layers", {"layers": 2, "cache": True})])
def test_logits_and_gradients_equal_the_full_last_layer(attn: str, mode: str, params: dict) -> None:
    reference = apply_trainable(tiny_classifier(attn), mode, params)
    patched = apply_trainable(copy.deepcopy(reference.model), mode, params)
    assert install_first_token_top(ClassificationTask, patched)
    outs = []
    for setup in (reference, patched):
        setup.model.train()
        setup.model.zero_grad()
        out = setup.model(**batch())
        out.loss.backward()
        outs.append(out)
    assert torch.allclose(outs[0].logits, outs[1].logits, atol=1e-6)
    ref_grads = {n: p.grad for n, p in reference.model.named_parameters() if p.requires_grad}
    new_grads = {n: p.grad for n, p in patched.model.named_parameters() if p.requires_grad}
    assert ref_grads.keys() == new_grads.keys() and ref_grads
    for name, grad in ref_grads.items():
        assert torch.allclose(grad, new_grads[name], atol=1e-6), name
    # The patched layer really skips the other positions: the encoder's last state has length 1.
    hidden = patched.model.bert(input_ids=batch()["input_ids"], attention_mask=batch()["attention_mask"])
    assert hidden.last_hidden_state.shape[1] == 1


def test_nothing_is_patched_where_a_head_reads_every_token_or_the_last_layer_is_cached() -> None:
    tagger = apply_trainable(BertForTokenClassification(tiny_classifier("sdpa").config), "full", {})
    assert not install_first_token_top(TaggingTask, tagger)
    head_only = apply_trainable(tiny_classifier("sdpa"), "top_layers", {"layers": 0, "cache": True})
    assert not install_first_token_top(ClassificationTask, head_only)
    live_head_only = apply_trainable(tiny_classifier("sdpa"), "top_layers", {"layers": 0, "cache": False})
    assert install_first_token_top(ClassificationTask, live_head_only)
