"""Canary exposure (Carlini et al. 2019): the exposure arithmetic, the canary formats, and memorisation on the tiny model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, concatenate_datasets

from fednlp_bench.audit.canary import (
    EMAIL_BODY, SUBJECT_PREFIX, chance_exposure, exposure_report, exposures, make_canaries,
)
from fednlp_bench.audit.membership import per_example_losses
from fednlp_bench.audit.spec import CanarySpec
from fednlp_bench.config import RunConfig

pytestmark = pytest.mark.usefixtures("offline_task_env")


def test_exposure_by_hand() -> None:
    # 7 candidates + the canary = 8 sequences: rank 1 -> log2(8) = 3 bits, rank 4 -> 1 bit, last -> 0.
    ranks, bits = exposures([0.1, 0.45, 9.0], [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    assert ranks == [1, 4, 8] and bits == pytest.approx([3.0, 1.0, 0.0])
    # Chance: the mean of log2(C) - log2(r) over r = 1..C; about 1/ln 2 for large C.
    assert chance_exposure(8) == pytest.approx(3 - sum(math.log2(r) for r in range(1, 9)) / 8)
    assert chance_exposure(10_000) == pytest.approx(1 / math.log(2), abs=0.01)
    rng = np.random.default_rng(0)
    simulated = np.mean([exposures([rng.random()], rng.random(99))[1][0] for _ in range(4000)])
    assert simulated == pytest.approx(chance_exposure(100), abs=0.1)


def test_canary_section_is_checked() -> None:
    base = dict(task="classification", model="tiny", data="20news", client_eval=False)
    RunConfig(**base, canary={"count": 3})
    with pytest.raises(ValueError, match="unknown canary key 'cout'. Did you mean 'count'"):
        RunConfig(**base, canary={"cout": 3})
    with pytest.raises(ValueError, match="canary.candidates=1 must be an integer >= 2"):
        RunConfig(**base, canary={"candidates": 1})
    with pytest.raises(ValueError, match="canary supports tasks"):
        RunConfig(task="tagging", canary={})
    with pytest.raises(ValueError, match="canary and continual"):
        RunConfig(**{**base, "rounds": 2}, canary={}, continual={"periods": 2, "retention": 1, "rounds_per_period": 1})


def test_generation_canary_is_an_email_with_the_secret_in_its_subject() -> None:
    from fednlp_bench.tasks.generation import GenerationTask

    task = GenerationTask(model="tiny", data="aeslc", max_length=64, max_train_examples=10, max_eval_examples=5)
    train = task.load()["train"]
    spec = CanarySpec(count=2, candidates=5)
    cs = make_canaries(spec, "generation", task.tokenizer, dict(train.features), seed=1)
    row = cs.canary_rows[0]
    assert row["document"] == EMAIL_BODY and row["summary"] == f"{SUBJECT_PREFIX} {cs.secrets[0]}"
    assert len(cs.secrets[0].split()) == 6 and all(d.isdigit() for d in cs.secrets[0].split())
    assert len(set(cs.secrets + cs.candidate_secrets)) == 2 + 4
    feats = task.preprocess(Dataset.from_list(cs.canary_rows + cs.candidate_rows, features=train.features), train=True)
    torch.manual_seed(0)
    losses = per_example_losses(task, task.build_model(), feats, range(len(feats)))
    assert len(losses) == 6 and np.isfinite(losses).all()


def test_memorised_canaries_are_exposed_and_unseen_ones_are_not(train_steps) -> None:
    from fednlp_bench.tasks.classification import ClassificationTask

    task = ClassificationTask(model="tiny", data="20news", max_length=48, max_train_examples=160, max_eval_examples=20)
    train = task.load()["train"]
    spec = CanarySpec(count=10, candidates=200, secret_length=4, label=3)
    cs = make_canaries(spec, "classification", task.tokenizer, dict(train.features), seed=0, num_labels=20)
    canaries = task.preprocess(Dataset.from_list(cs.canary_rows * 4, features=train.features), train=True)
    candidates = task.preprocess(Dataset.from_list(cs.candidate_rows, features=train.features), train=True)
    normal = task.preprocess(train.select(range(120)), train=True)
    torch.manual_seed(0)
    untrained = task.build_model()
    trained, _ = train_steps(task, concatenate_datasets([normal, canaries.cast(normal.features)]), steps=150, lr=3e-3)

    def report(model: torch.nn.Module) -> dict:
        return exposure_report(spec, per_example_losses(task, model, canaries, range(10)).tolist(),
                               per_example_losses(task, model, candidates, range(len(candidates))).tolist())

    seen, unseen = report(trained), report(untrained)
    assert seen["max_exposure"] == pytest.approx(math.log2(200))
    assert seen["exposure_mean"] > 4.5  # of at most 7.64 bits; measured 6.2
    assert unseen["exposure_mean"] < 3.5  # chance is 1.42 bits; measured 1.96


@pytest.mark.slow
def test_canary_run_records_exposure_and_training_of_the_canary_client(tmp_path: Path) -> None:
    from fednlp_bench.engine.run.runner import run_experiment

    cfg = RunConfig(task="classification", model="tiny", data="20news", max_length=48, max_train_examples=120,
                    max_eval_examples=20, partition={"scheme": "iid", "num_clients": 6, "seed": 0, "min_size": 2},
                    rounds=3, clients_per_round=3, local_epochs=2, batch_size=8, lr=3e-3,
                    canary={"count": 4, "repeats": 3, "candidates": 50, "secret_length": 4})
    rec = run_experiment(cfg, tmp_path, progress=False)
    c = rec.canary
    assert c["client_rounds_trained"] == c["client_rounds_planned"] >= 1  # auto: the busiest client of the schedule
    # 4 canaries x 3 copies, 2 local epochs per round the client took part in.
    assert c["canary_rows_in_batches"] == 4 * 3 * 2 * c["client_rounds_trained"]
    assert len(c["exposures"]) == 4 and 0 <= c["exposure_mean"] <= math.log2(50)
    assert rec.partition["content_hash"]  # the partition itself is the one the spec makes (canaries come after)


@pytest.mark.slow
def test_canaries_run_under_example_level_dp_each_copy_one_example(tmp_path: Path) -> None:
    """DP-SGD bounds one feature row per example: each canary copy is one, so the run must take them."""
    from fednlp_bench.engine.run.runner import run_experiment

    cfg = RunConfig(task="classification", model="tiny", data="20news", max_length=48, max_train_examples=120,
                    max_eval_examples=20, partition={"scheme": "iid", "num_clients": 6, "seed": 0, "min_size": 2},
                    rounds=2, clients_per_round=3, local_epochs=1, batch_size=8, lr=3e-3, sampling="poisson",
                    canary={"count": 2, "repeats": 2, "candidates": 20, "secret_length": 3},
                    privacy={"mechanism": "dp_sgd", "noise_multiplier": 1.0, "clip_norm": 1.0, "delta": 1e-5})
    rec = run_experiment(cfg, tmp_path, progress=False)
    assert rec.privacy["level"] == "example" and math.isfinite(rec.privacy["epsilon_rdp"])
    assert len(rec.canary["exposures"]) == 2
