"""``attention_dropout``: the run's attention-probability dropout reaches every attention block, and only those."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fednlp_bench.compute.attention_dropout import set_attention_dropout
from fednlp_bench.compute.precision import Precision
from fednlp_bench.compute.setup import build_compute
from fednlp_bench.config import RunConfig
from fednlp_bench.results.record import config_hash
from fednlp_bench.tasks import get_task


def _attention_ps(model: nn.Module) -> list[float]:
    return [m.dropout.p for m in model.modules() if type(m).__name__.endswith("SelfAttention")]


def _hidden_ps(model: nn.Module) -> list[float]:
    return [m.dropout.p for m in model.modules() if type(m).__name__ in {"BertSelfOutput", "BertOutput"}]


@pytest.mark.usefixtures("offline_task_env")
def test_attention_dropout_changes_the_training_forward_pass_and_nothing_else() -> None:
    task = get_task("classification", model="tiny", max_length=32)
    torch.manual_seed(0)
    model = task.build_model()
    assert set(_attention_ps(model)) == {0.1} and set(_hidden_ps(model)) == {0.1}
    batch = {"input_ids": torch.randint(5, 100, (4, 32)), "attention_mask": torch.ones(4, 32, dtype=torch.long)}

    def train_equals_eval() -> bool:
        with torch.no_grad():
            model.eval()
            plain = model(**batch).logits
            model.train()
            torch.manual_seed(1)
            return torch.allclose(model(**batch).logits, plain, atol=1e-6)

    for module in model.modules():  # isolate the attention dropout: hidden and classifier dropout off
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    assert set_attention_dropout(model, 0.5) == 2  # one per layer of the 2-layer model
    assert not train_equals_eval()
    set_attention_dropout(model, 0.0)
    assert train_equals_eval()
    assert model.config.attention_probs_dropout_prob == 0.0


@pytest.mark.usefixtures("offline_task_env")
def test_the_run_field_reaches_the_model_and_keeps_old_hashes() -> None:
    task = get_task("qa", model="tiny", max_length=64)
    config = RunConfig.from_dict({"task": "qa", "model": "tiny", "attention_dropout": 0.0})
    compute = build_compute(task, config, torch.device("cpu"), Precision("fp32"))
    assert set(_attention_ps(compute.model)) == {0.0} and set(_hidden_ps(compute.model)) == {0.1}
    default = build_compute(task, RunConfig.from_dict({"task": "qa", "model": "tiny"}), torch.device("cpu"),
                            Precision("fp32"))
    assert set(_attention_ps(default.model)) == {0.1}
    old = {k: v for k, v in RunConfig().to_dict().items() if k != "attention_dropout"}
    assert config_hash({**old, "attention_dropout": None}) == config_hash(old)
    assert config_hash({**old, "attention_dropout": 0.0}) != config_hash(old)


def test_a_model_without_bert_attention_blocks_is_refused() -> None:
    with pytest.raises(ValueError, match=r"attention_dropout=0.0 needs a BERT-family model.*remove attention_dropout"):
        set_attention_dropout(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1)), 0.0)
    assert set_attention_dropout(nn.Sequential(nn.Linear(2, 2)), None) == 0
