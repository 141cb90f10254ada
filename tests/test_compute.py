"""The compute layer: precision, trainable modes (top layers, LoRA, BitFit), bytes, checkpoints (tiny BERT, CPU)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, EncoderDecoderConfig, EncoderDecoderModel

from fednlp_bench import cli
from fednlp_bench.algorithms.registry import create_strategy
from fednlp_bench.compute.precision import Precision, check_precision
from fednlp_bench.compute.trainable import apply_trainable, head_parameter_names, lora_target_names
from fednlp_bench.config import RunConfig
from fednlp_bench.engine.run import checkpoint as ckpt
from fednlp_bench.engine.client.trainer import LocalTrainer
from fednlp_bench.engine.run.runner import run_experiment
from fednlp_bench.results.record import config_hash
from fednlp_bench.tasks.models import tiny_bert_config

from compute_slice import SLICE, prepared, run_slice
VOCAB = 128


def tiny_classifier(layers: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(tiny_bert_config(VOCAB, num_hidden_layers=layers, num_labels=3))


def tiny_bert2bert() -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = EncoderDecoderConfig.from_encoder_decoder_configs(
        tiny_bert_config(VOCAB), tiny_bert_config(VOCAB, is_decoder=True, add_cross_attention=True)
    )
    return EncoderDecoderModel(config=cfg)


# ------------------------------------------------------------------ precision and config
def test_precision_errors_and_bf16_autocast() -> None:
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        check_precision("fp16", torch.device("cpu"))
    with pytest.raises(ValueError, match="precision='fp8' is not supported"):
        RunConfig(precision="fp8")
    bf16 = Precision("bf16", "cpu")
    a = torch.randn(4, 4)
    with bf16.autocast():
        assert (a @ a).dtype == torch.bfloat16
    with Precision("fp32", "cpu").autocast():
        assert (a @ a).dtype == torch.float32


def test_trainable_config_errors_name_the_fix() -> None:
    with pytest.raises(ValueError, match=r"trainable='lroa' is not supported\. Did you mean 'lora'\?"):
        RunConfig(trainable="lroa")
    with pytest.raises(ValueError, match=r"trainable mode 'lora' has no parameter 'rank'.*Its parameters: r, alpha"):
        RunConfig(trainable="lora", trainable_params={"rank": 8})
    with pytest.raises(ValueError, match=r"needs trainable_params \['layers'\]"):
        RunConfig(trainable="top_layers")
    with pytest.raises(ValueError, match="trainable_params.layers=-1 must be >= 0"):
        RunConfig(trainable="top_layers", trainable_params={"layers": -1})
    with pytest.raises(ValueError, match="cache='yes' must be true or false"):
        RunConfig(trainable="top_layers", trainable_params={"layers": 1, "cache": "yes"})


def test_records_without_the_new_fields_load_and_keep_their_hash() -> None:
    old = RunConfig().to_dict()
    for key in ("precision", "trainable", "trainable_params"):
        old.pop(key)
    cfg = RunConfig.from_dict(old)
    assert (cfg.precision, cfg.trainable, cfg.trainable_params) == ("fp32", "full", {})
    assert config_hash(old) == config_hash(cfg.to_dict())
    assert config_hash(cfg.replace(precision="bf16").to_dict()) != config_hash(cfg.to_dict())
    lora = cfg.replace(trainable="lora")
    assert config_hash(lora.to_dict()) != config_hash(lora.replace(trainable_params={"r": 4}).to_dict())


# ------------------------------------------------------------------ trainable modes on a model
def test_model_dependent_trainable_errors() -> None:
    with pytest.raises(ValueError, match=r"layers=4 is above the depth .*3 encoder layers\); choose 0..3"):
        apply_trainable(tiny_classifier(3), "top_layers", {"layers": 4})
    with pytest.raises(ValueError, match=r"\['qkv'\] not found .* valid module names: \[.*'query'.*'value'"):
        apply_trainable(tiny_classifier(), "lora", {"target_modules": ["qkv"]})
    assert {"query", "key", "value", "dense", "classifier"} <= set(lora_target_names(tiny_classifier()))


def test_modes_choose_the_expected_tensors() -> None:
    top = apply_trainable(tiny_classifier(3), "top_layers", {"layers": 1})
    names = {n for n, p in top.model.named_parameters() if p.requires_grad}
    assert names and all(n.startswith(("bert.encoder.layer.2.", "bert.pooler.", "classifier.")) for n in names)
    assert any(n.startswith("bert.encoder.layer.2.") for n in names)
    bitfit = apply_trainable(tiny_classifier(), "bitfit", {})
    names = {n for n, p in bitfit.model.named_parameters() if p.requires_grad}
    assert names == {n for n, _ in bitfit.model.named_parameters() if n.endswith(".bias") or n.startswith("classifier.")}
    lora = apply_trainable(tiny_classifier(), "lora", {"r": 2})
    names = {n for n, p in lora.model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in names) and any(n.endswith("classifier.weight") for n in names)
    assert all("lora_" in n or "classifier" in n for n in names)
    assert lora.num_trainable < 0.2 * lora.num_total


def test_bert2bert_lora_targets_and_head() -> None:
    """Generation is a bert2bert EncoderDecoderModel: its encoder/decoder attention names work as LoRA targets."""
    model = tiny_bert2bert()
    head = head_parameter_names(model)
    assert any(".crossattention." in n for n in head) and any(n.startswith("decoder.cls.") for n in head)
    setup = apply_trainable(model, "lora", {"r": 2, "target_modules": ["query", "value"]})
    lora_names = [n for n, p in setup.model.named_parameters() if p.requires_grad and "lora_A" in n]
    assert any(".encoder.encoder.layer." in n for n in lora_names) and any(".decoder." in n for n in lora_names)
    top = apply_trainable(tiny_bert2bert(), "top_layers", {"layers": 1})
    frozen = {n for n, p in top.model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("encoder.embeddings.", "encoder.encoder.layer.0.", "decoder.bert.embeddings."))
                          for n in frozen)
    # The decoder's embeddings are frozen, and with them the LM head's tied output projection; the rest trains.
    model = top.model
    assert "decoder.bert.embeddings.word_embeddings.weight" in frozen
    assert model.decoder.cls.predictions.decoder.weight is model.decoder.bert.embeddings.word_embeddings.weight
    trains = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"decoder.cls.predictions.bias", "decoder.cls.predictions.transform.dense.weight"} <= trains
    assert any(n.startswith("decoder.bert.encoder.layer.") for n in trains)
    assert any(n.startswith("encoder.encoder.layer.1.") for n in trains)


# ------------------------------------------------------------------ through the engine, on a 20News slice
@pytest.fixture(scope="module")
def env(offline_task_env: Path) -> Path:
    return offline_task_env


def test_top_layers_leaves_frozen_tensors_bit_identical(env: Path) -> None:
    config = RunConfig.from_dict({**SLICE, "trainable": "top_layers", "trainable_params": {"layers": 1}})
    task, compute, feats = prepared(config)
    model = compute.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = LocalTrainer(task, model, feats, batch_size=8, lr=1e-2, optimizer="adamw", local_epochs=None, local_steps=3)
    assert set(trainer.state.names) == {n for n, p in model.named_parameters() if p.requires_grad}
    result = trainer.train(0, np.arange(len(feats)), trainer.state.get(), {}, seed=0)
    assert set(result.delta) == set(trainer.state.names)
    for name, p in model.named_parameters():
        if p.requires_grad:
            continue
        assert torch.equal(p, before[name]), name  # bit for bit
    assert not torch.equal(model.classifier.weight, before["classifier.weight"])


def test_bytes_match_trainable_parameters_and_checkpoint_holds_only_them(env: Path, tmp_path: Path) -> None:
    full = run_slice(tmp_path, "full")
    lora = run_slice(tmp_path, "lora", trainable="lora", trainable_params={"r": 2}, algorithm="fedadam",
                     algorithm_params={"server_lr": 1e-2})
    for record in (full, lora):
        n = record.hardware["trainable_parameters"]
        assert record.rounds[0].bytes_up == 2 * 4 * n and record.rounds[0].bytes_down == 2 * 4 * n
    assert lora.hardware["trainable_parameters"] < full.hardware["trainable_parameters"] / 10
    point = ckpt.load_checkpoint(tmp_path / "lora" / lora.run_id)
    assert sum(t.numel() for t in point.weights.values()) == lora.hardware["trainable_parameters"]
    assert all("lora_" in k or "classifier" in k for k in point.weights)
    moments = [k for k, v in point.server_state.items() if isinstance(v, torch.Tensor)]
    assert moments and all(any(k.endswith(w) for w in point.weights) for k in moments)  # FedAdam: trainable only


def test_bf16_run_finishes_with_finite_metrics(env: Path, tmp_path: Path) -> None:
    record = run_slice(tmp_path, "bf16", precision="bf16", trainable="top_layers",
                       trainable_params={"layers": 1, "cache": True})
    assert record.config["precision"] == "bf16"
    assert record.final_metrics and all(math.isfinite(v) for v in record.final_metrics.values())
    assert math.isfinite(record.rounds[0].train_loss)
    data = json.loads((tmp_path / "bf16" / record.run_id / "record.json").read_text())
    assert data["hardware"]["device"] == "cpu"


def test_lora_fedavg_one_client_equals_centralized_lora_step_for_step(env: Path) -> None:
    """FedAvg with one client and full participation, one local step per round == a plain LoRA training loop."""
    config = RunConfig.from_dict({**SLICE, "trainable": "lora", "trainable_params": {"r": 4, "alpha": 8},
                                  "optimizer": "sgd", "lr": 0.5})
    task, compute, feats = prepared(config)
    model = compute.model
    trainer = LocalTrainer(task, model, feats, batch_size=8, lr=0.5, optimizer="sgd", local_epochs=None, local_steps=1)
    strategy = create_strategy("fedavg")
    rows = np.arange(len(feats))
    init = trainer.state.get()

    # Centralized: one optimizer over the trainable (LoRA + head) parameters, the same batches and dropout seeds.
    _, central, _ = prepared(config)
    central_model = central.model
    central_model.train()
    central_opt = torch.optim.SGD([p for p in central_model.parameters() if p.requires_grad], lr=0.5)
    named = dict(central_model.named_parameters())

    weights = init
    for rnd in range(1, 4):
        seed = 100 + rnd
        result = trainer.train(0, rows, weights, {}, seed=seed)
        weights = strategy.aggregate(rnd, weights, [result])

        torch.manual_seed(seed)
        batch_rows = next(trainer._batches(rows, np.random.default_rng(seed), None, 1))
        central_opt.zero_grad()
        central_model(**trainer._collate(batch_rows)).loss.backward()
        central_opt.step()
        moved = 0
        for name, value in weights.items():
            torch.testing.assert_close(value, named[name].detach(), rtol=1e-5, atol=1e-6)
            moved += int(not torch.equal(value, init[name]))
        assert moved > 0
    assert any("lora_B" in n and not torch.equal(weights[n], init[n]) for n in weights)  # the adapters trained


def test_reused_client_optimizer_equals_a_fresh_one() -> None:
    """The trainer zeroes one AdamW's buffers per client instead of allocating new ones: same numbers."""
    from fednlp_bench.testing.toy import ToyTask

    task = ToyTask(n_train=40, hidden=8)
    feats = task.preprocess(task.load()["train"], train=True)

    def trainer() -> LocalTrainer:
        torch.manual_seed(0)
        return LocalTrainer(task, task.build_model(), feats, batch_size=8, lr=0.05, optimizer="adamw",
                            local_epochs=None, local_steps=3)

    reused = trainer()
    start = reused.state.get()
    reused.train(0, np.arange(0, 20), start, {}, seed=1)
    second = reused.train(1, np.arange(20, 40), start, {}, seed=2)
    fresh = trainer().train(1, np.arange(20, 40), start, {}, seed=2)
    for name in fresh.delta:
        assert torch.equal(second.delta[name], fresh.delta[name]), name


def test_lora_run_with_trainable_only_checkpoints_resumes_exactly(env: Path, tmp_path: Path) -> None:
    """The checkpoint holds only LoRA + head tensors (and FedAdam moments); a resumed run rebuilds the rest."""
    changes = dict(trainable="lora", trainable_params={"r": 2}, algorithm="fedadam",
                   algorithm_params={"server_lr": 1e-2}, rounds=2)
    full = run_slice(tmp_path, "full", **changes)

    class Killed(Exception):
        pass

    def kill_after_one(result: Any) -> None:
        if result.round == 1:
            raise Killed

    cfg = RunConfig.from_dict({**SLICE, **changes})
    with pytest.raises(Killed):
        run_experiment(cfg, tmp_path / "cut", progress=False, on_round_end=kill_after_one)
    resumed = run_experiment(cfg, tmp_path / "cut", progress=False, resume=True, device="cpu")
    assert [r.metrics for r in resumed.rounds] == [r.metrics for r in full.rounds]
    assert [r.train_loss for r in resumed.rounds] == [r.train_loss for r in full.rounds]
    wf = ckpt.load_checkpoint(tmp_path / "full" / full.run_id).weights
    wr = ckpt.load_checkpoint(tmp_path / "cut" / resumed.run_id).weights
    assert wf.keys() == wr.keys() and all(torch.equal(wf[k], wr[k]) for k in wf)


def test_cli_flags_fill_the_config_and_run_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fednlp_bench.commands.run import compute_options, config_dict_from_args

    args = cli.build_parser().parse_args([
        "run", "--config", str(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"),
        "--precision", "bf16", "--trainable", "top_layers", "--trainable-param", "layers=2",
        "--trainable-param", "cache=true", "--device", "cpu", "--frozen-cache-dir", str(tmp_path),
    ])
    data, _ = config_dict_from_args(args)
    cfg = RunConfig.from_dict(data)
    assert (cfg.precision, cfg.trainable, cfg.trainable_params) == ("bf16", "top_layers", {"layers": 2, "cache": True})
    assert compute_options(args) == {"device": "cpu", "frozen_cache_dir": str(tmp_path)}
    # A mode's missing parameter is refused before any work, with the fix.
    code = cli.main(["run", "--task", "classification", "--model", "tiny",
                     "--trainable", "top_layers", "--runs-dir", str(tmp_path / "runs")])
    assert code == 2 and "needs trainable_params ['layers']" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
@pytest.mark.parametrize("task,max_length", [("tagging", 32), ("qa", 128), ("generation", 32)])
def test_every_task_runs_cached_equal_to_live_and_with_lora(env: Path, tmp_path: Path, task: str, max_length: int) -> None:
    """Each head reads the top encoder output differently (per token, start/end, cross-attention): all cache-safe."""
    base = dict(task=task, data=None, max_length=max_length, max_train_examples=16, max_eval_examples=4, rounds=1)
    live = run_slice(tmp_path, "live", **base, trainable="top_layers", trainable_params={"layers": 1})
    cached = run_slice(tmp_path, "cached", **base, trainable="top_layers", trainable_params={"layers": 1, "cache": True})
    assert live.rounds[0].train_loss == pytest.approx(cached.rounds[0].train_loss, rel=1e-5)
    for key, value in live.final_metrics.items():
        assert cached.final_metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    lora = run_slice(tmp_path, "lora", **base, trainable="lora", trainable_params={"r": 2})
    full_n = live.hardware["total_parameters"]
    assert lora.hardware["trainable_parameters"] < full_n / 4
    assert lora.rounds[0].bytes_up == 2 * 4 * lora.hardware["trainable_parameters"]
    assert all(math.isfinite(v) for v in lora.final_metrics.values())
