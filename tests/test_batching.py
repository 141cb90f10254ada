"""Local batching: ``random`` draws what the engine always drew; ``length`` uses every row once per epoch,
in batches of similar length, and pads far fewer tokens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fednlp_bench.config import RunConfig
from fednlp_bench.engine.client.batching import MEGABATCH_BATCHES, epoch_batches, local_batches
from fednlp_bench.engine.client.trainer import LocalTrainer
from fednlp_bench.results.record import config_hash
from fednlp_bench.tasks import get_task
from fednlp_bench.testing.entity_qa import write_entity_qa


def padded_token_ratio(batches: list[np.ndarray], lengths: np.ndarray) -> float:
    """Tokens the batches cost when each is padded to its longest row, over the tokens they hold (>= 1)."""
    padded = sum(int(lengths[b].max()) * len(b) for b in batches if len(b))
    real = sum(int(lengths[b].sum()) for b in batches)
    return padded / max(real, 1)


def squad_like_lengths(n: int, seed: int = 0) -> np.ndarray:
    """Window lengths shaped like SQuAD's at max_length 256: most 60-250, an eighth cut at 256."""
    rng = np.random.default_rng(seed)
    lengths = rng.normal(150, 45, n).clip(40, 256).astype(np.int64)
    lengths[rng.random(n) < 0.12] = 256
    return lengths


def test_random_batching_is_the_engines_old_draw_exactly() -> None:
    rows = np.arange(37) * 3
    for seed in range(5):
        old = np.random.default_rng(seed).permutation(rows)
        expected = [old[i : i + 8] for i in range(0, len(old), 8)]
        got = epoch_batches(rows, np.random.default_rng(seed), 8, "random", None)
        assert [b.tolist() for b in got] == [b.tolist() for b in expected]


def test_length_batching_uses_every_row_once_per_epoch_and_pads_far_less() -> None:
    lengths = squad_like_lengths(2000)
    rows = np.arange(2000)
    rng = np.random.default_rng(0)
    grouped = epoch_batches(rows, rng, 16, "length", lengths)
    assert sorted(np.concatenate(grouped).tolist()) == rows.tolist()
    # One partial batch at most per megabatch of 50 batches.
    assert sum(len(b) < 16 for b in grouped) <= -(-2000 // (16 * MEGABATCH_BATCHES))
    random = epoch_batches(rows, np.random.default_rng(0), 16, "random", None)
    assert padded_token_ratio(random, lengths) > 1.4
    assert padded_token_ratio(grouped, lengths) < 1.02
    # The short tail batches do not all come last: the batch order is shuffled.
    maxima = [int(lengths[b].max()) for b in grouped]
    assert maxima != sorted(maxima, reverse=True)


def test_length_batching_is_seeded_and_varies_with_the_seed() -> None:
    lengths = squad_like_lengths(300)
    rows = np.arange(300)
    a = epoch_batches(rows, np.random.default_rng(1), 16, "length", lengths)
    b = epoch_batches(rows, np.random.default_rng(1), 16, "length", lengths)
    c = epoch_batches(rows, np.random.default_rng(2), 16, "length", lengths)
    assert [x.tolist() for x in a] == [x.tolist() for x in b]
    assert [x.tolist() for x in a] != [x.tolist() for x in c]


def test_local_steps_give_exactly_that_many_batches_over_repeated_passes() -> None:
    lengths = squad_like_lengths(40)
    batches = list(local_batches(np.arange(40), np.random.default_rng(0), 16, "length", lengths, None, 7))
    assert len(batches) == 7  # 3 per pass (16, 16, 8): passes repeat
    assert sorted(np.concatenate(batches[:3]).tolist()) == list(range(40))


def test_bad_batching_values_are_refused_before_any_work() -> None:
    with pytest.raises(ValueError, match="batching='sorted'"):
        RunConfig.from_dict({"batching": "sorted"})
    with pytest.raises(ValueError, match="dp_sgd draws its own Poisson batches.*set batching: random"):
        RunConfig.from_dict({"batching": "length", "backend": "inprocess", "partition": {"scheme": "iid"},
                             "privacy": {"mechanism": "dp_sgd", "noise_multiplier": 1.0, "clip_norm": 1.0,
                                                     "delta": 1e-5}})


def test_random_batching_keeps_every_old_config_hash() -> None:
    old = RunConfig.from_dict({"rounds": 3}).to_dict()
    del old["batching"]  # a record written before the field existed
    assert config_hash(RunConfig.from_dict({"rounds": 3}).to_dict()) == config_hash(old)
    assert config_hash(RunConfig.from_dict({"rounds": 3, "batching": "length"}).to_dict()) != config_hash(old)


@pytest.mark.usefixtures("offline_task_env")
def test_a_qa_client_trains_on_length_batches_of_its_real_windows(tmp_path: Path, offline_task_env: Path) -> None:
    write_entity_qa(offline_task_env / "wnut17", tmp_path)
    task = get_task("qa", model="tiny", data=str(tmp_path), max_length=48, doc_stride=12, max_train_examples=300)
    feats = task.preprocess(task.load()["train"], train=True)
    lengths = np.array([len(ids) for ids in feats["input_ids"]])
    losses = {}
    for batching in ("random", "length"):
        torch.manual_seed(0)
        trainer = LocalTrainer(task, task.build_model(), feats, batch_size=16, lr=1e-3, local_epochs=1,
                               batching=batching)
        seen: list[np.ndarray] = []
        trainer.batch_observer = lambda client, rows: seen.append(np.asarray(rows))
        result = trainer.train(0, np.arange(len(feats)), trainer.state.get(), {}, seed=3)
        assert sorted(np.concatenate(seen).tolist()) == list(range(len(feats)))
        losses[batching] = (result.loss, padded_token_ratio(seen, lengths))
    assert losses["length"][1] < 1.05 < losses["random"][1]
    assert np.isfinite(losses["length"][0]) and losses["length"][0] != losses["random"][0]  # other batches, other steps
