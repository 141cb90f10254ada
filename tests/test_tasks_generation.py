"""Generation: AESLC (offline default) and 20News messages -> subject line with a bert2bert EncoderDecoder."""

from __future__ import annotations

from typing import Any


import numpy as np
import pytest
import torch

from fednlp_bench.tasks import get_task
from fednlp_bench.tasks.base import Task

pytestmark = pytest.mark.usefixtures("offline_task_env")


@pytest.fixture(scope="module")
def tiny_task() -> Task:
    task = get_task("generation", model="tiny", data="20news", max_length=48, max_target_length=16,
                    max_train_examples=200, max_eval_examples=40, skip_invalid_rows=True)
    task.load()
    return task


def test_subject_lines_from_real_messages(tiny_task: Task) -> None:
    task = tiny_task
    train = task.load()["train"]
    assert {"id", "text", "document", "summary", "partition_key"} <= set(train.column_names)
    assert set(train["partition_key"]) == {-1}
    assert not any(s.lower().startswith("re:") for s in train["summary"])
    assert all(s.strip() and d.strip() for s, d in zip(train["summary"], train["document"]))
    assert task.skipped["train"] == 16  # 20News train messages with an empty body (skipping was allowed)
    assert not any(d.startswith("Subject:") for d in train["document"])


def test_labels_drop_cls_and_end_with_sep(tiny_task: Task) -> None:
    task = tiny_task
    tok = task.tokenizer
    split = task.load()["train"]
    feats = task.preprocess(split, train=True)
    for i in range(20):
        labels = feats[i]["labels"]
        assert labels[0] != tok.cls_token_id and labels[-1] == tok.sep_token_id
        assert len(labels) <= task.max_target_length
        if len(labels) < task.max_target_length:
            assert tok.decode(labels, skip_special_tokens=True) == tok.decode(tok(split[i]["summary"])["input_ids"], skip_special_tokens=True)
    batch = task.collate([feats[0], feats[1]])
    assert (batch["labels"] == -100).any() or len(feats[0]["labels"]) == len(feats[1]["labels"])


def test_tiny_bert2bert_config_and_determinism(tiny_task: Task) -> None:
    task = tiny_task
    torch.manual_seed(0)
    a = task.build_model()
    torch.manual_seed(0)
    b = task.build_model()
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert a.config.decoder_start_token_id == task.tokenizer.cls_token_id
    assert a.generation_config.eos_token_id == task.tokenizer.sep_token_id
    assert a.config.decoder.add_cross_attention and a.config.decoder.is_decoder


def memorise_eight(task: Task, train_steps) -> tuple[torch.nn.Module, Any, Any]:
    """Train on 8 real examples until the loss falls below 30%; return the model, the rows and their eval features."""
    split = task.load()["train"].select(range(8))
    model, losses = train_steps(task, task.preprocess(split, train=True), steps=60, lr=1e-2, batch_size=8)
    assert losses[-1] < 0.3 * losses[0]
    return model, split, task.preprocess(split, train=False)


def test_tiny_model_memorises_subjects_and_generates_them(tiny_task: Task, train_steps) -> None:
    """Overfitting 8 real examples checks the whole loop: shifted labels, decoder start, generate, ROUGE."""
    model, split, eval_feats = memorise_eight(tiny_task, train_steps)
    model.train()
    result = tiny_task.evaluate(model, split, eval_feats, batch_size=8)
    assert model.training
    assert result["rougeL"] > 0.5, result
    assert result["rouge1"] >= result["rouge2"]


@pytest.mark.slow
def test_minilm_bert2bert_improves_on_held_out_subjects(train_steps) -> None:
    """Held-out token loss (the perplexity ROUGE follows) must fall well; ROUGE itself needs far
    more steps than CI affords (a freshly joined bert2bert first emits one frequent subject for
    every input), so ROUGE is checked for shape here and for correctness in the memorisation test."""
    task = get_task("generation", data="20news", max_length=48, max_target_length=12, max_train_examples=400,
                    max_eval_examples=24, skip_invalid_rows=True)
    splits = task.load()
    feats = task.preprocess(splits["train"], train=True)
    test_feats = task.preprocess(splits["test"], train=False)
    torch.manual_seed(0)
    before = task.evaluate(task.build_model(), splits["test"], test_feats, batch_size=24)
    model, losses = train_steps(task, feats, steps=25, lr=2e-4, batch_size=8)
    after = task.evaluate(model, splits["test"], test_feats, batch_size=24)
    print("slow:", before, after, losses[:5], losses[-5:])
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 2.0
    assert after["loss"] < before["loss"] - 2.0  # ~10.9 -> ~7.0 nats per token
    assert all(0.0 <= after[k] <= 1.0 for k in ("rouge1", "rouge2", "rougeL"))
    outputs = task.generate(model, test_feats.select(range(4)), batch_size=4)
    assert len(outputs) == 4 and all(isinstance(o, str) for o in outputs)


# ------------------------------------------------------------------ pointer-generator and decoder depth
@pytest.fixture(scope="module")
def pointer_task() -> Task:
    task = get_task("generation", model="tiny", max_length=48, max_target_length=16, max_train_examples=64,
                    max_eval_examples=16, pointer=True, decoder_layers=1)
    task.load()
    return task


def test_pointer_mixture_is_a_distribution_that_can_only_copy_source_tokens(pointer_task: Task) -> None:
    from fednlp_bench.tasks.pointer_generator import PointerGeneratorEncoderDecoder

    task = pointer_task
    torch.manual_seed(0)
    model = task.build_model()
    assert isinstance(model, PointerGeneratorEncoderDecoder)
    assert len(model.decoder.bert.encoder.layer) == 1 and model.config.decoder.num_hidden_layers == 1
    feats = task.preprocess(task.load()["train"].select(range(4)), train=True)
    batch = task.collate([feats[i] for i in range(4)])
    model.eval()
    with torch.no_grad():
        out = model(**batch, output_distribution=True)
        assert model(**batch).logits is None  # the loss alone skips the (batch, target, vocab) mixture
        probs = out.logits.exp()
        assert torch.allclose(probs.sum(-1), torch.ones_like(probs.sum(-1)), atol=1e-4)
        # Force the gate to "copy only": all mass must sit on tokens of that row's (unpadded) source.
        model.copy_gate.bias.fill_(-1e4)
        copy_only = model(**batch, output_distribution=True).logits.exp()
    for row in range(4):
        source = set(batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist())
        mass = copy_only[row][:, sorted(source)].sum(-1)
        assert torch.allclose(mass, torch.ones_like(mass), atol=1e-4)
    nll = -out.logits.gather(2, batch["labels"].clamp_min(0)[..., None])[..., 0]
    keep = batch["labels"] != -100
    assert float(out.loss) == pytest.approx(float(nll[keep].mean()), rel=1e-5)


def test_pointer_loss_from_the_label_alone_has_the_full_mixtures_gradient(pointer_task: Task) -> None:
    """The gathered loss (training and validation) and the NLL read off the full mixture: same value, same step."""
    task = pointer_task
    torch.manual_seed(1)
    model = task.build_model()
    feats = task.preprocess(task.load()["train"].select(range(6)), train=True)
    batch = task.collate([feats[i] for i in range(6)])
    model.train()

    def grads(full: bool) -> tuple[float, dict[str, torch.Tensor]]:
        model.zero_grad()
        torch.manual_seed(2)  # the same dropout masks in both passes
        out = model(**batch, output_distribution=full)
        if full:
            keep = batch["labels"] != -100
            nll = -out.logits.gather(2, batch["labels"].clamp_min(0)[..., None])[..., 0]
            loss = nll[keep].mean()
        else:
            loss = out.loss
        loss.backward()
        return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    full_loss, full_grads = grads(True)
    gathered_loss, gathered_grads = grads(False)
    assert gathered_loss == pytest.approx(full_loss, rel=1e-5)
    assert full_grads.keys() == gathered_grads.keys() and "copy_gate.weight" in full_grads
    for name, grad in full_grads.items():
        assert torch.allclose(gathered_grads[name], grad, rtol=1e-4, atol=1e-6), name


def test_pointer_model_memorises_and_generates_greedily(pointer_task: Task, train_steps) -> None:
    task = pointer_task
    model, split, eval_feats = memorise_eight(task, train_steps)
    result = task.evaluate(model, split, eval_feats, batch_size=8)
    assert result["rougeL"] > 0.5, result
    # The key/value cache changes the cost of a decoding step, not its tokens.
    batch = task.collate([eval_feats[i] for i in range(8)])
    model.eval()
    args = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=12)
    assert model._new_cache() is not None
    assert torch.equal(model.generate(**args, use_cache=True), model.generate(**args, use_cache=False))
    from fednlp_bench.compute.trainable import head_parameter_names

    assert {"copy_query.weight", "copy_gate.weight"} <= set(head_parameter_names(model))


def test_pointer_and_decoder_layers_are_checked_before_work() -> None:
    with pytest.raises(ValueError, match="decoder_layers=0"):
        get_task("generation", model="tiny", decoder_layers=0)
    with pytest.raises(ValueError, match="num_beams: 1"):
        get_task("generation", model="tiny", pointer=True, num_beams=4)
    with pytest.raises(ValueError, match="pointer='yes'"):
        get_task("generation", model="tiny", pointer="yes")
    with pytest.raises(ValueError, match=r"decoder_layers=5 must be in 1\.\.2"):
        get_task("generation", model="tiny", decoder_layers=5)
