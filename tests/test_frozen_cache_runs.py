"""The frozen-bottom cache through the engine: cached equals live, reuse, refusal of unknown inputs, progress,
rows copied from other cache files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fednlp_bench.compute.setup import attach_frozen_cache
from fednlp_bench.config import RunConfig
from fednlp_bench.engine.run import checkpoint as ckpt

from compute_slice import SLICE, prepared, run_slice


@pytest.fixture(scope="module")
def env(offline_task_env: Path) -> Path:
    return offline_task_env


def test_cached_and_uncached_runs_give_equal_metrics(env: Path, tmp_path: Path) -> None:
    live = run_slice(tmp_path, "live", trainable="top_layers", trainable_params={"layers": 1}, rounds=2)
    cached = run_slice(tmp_path, "cached", trainable="top_layers", trainable_params={"layers": 1, "cache": True}, rounds=2)
    assert cached.hardware["frozen_cache_bytes"] > 0 and "frozen_cache_bytes" not in live.hardware
    assert list((tmp_path / "frozen").glob("*.npy")) and list((tmp_path / "frozen").glob("*.json"))
    for a, b in zip(live.rounds, cached.rounds):
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-5)
        assert a.metrics.keys() == b.metrics.keys()
        for key in a.metrics:
            assert a.metrics[key] == pytest.approx(b.metrics[key], rel=1e-5, abs=1e-6), key
    w_live = ckpt.load_checkpoint(tmp_path / "live" / live.run_id).weights
    w_cached = ckpt.load_checkpoint(tmp_path / "cached" / cached.run_id).weights
    for name in w_live:
        torch.testing.assert_close(w_live[name], w_cached[name], rtol=1e-4, atol=1e-5)


def test_cache_is_reused_and_unknown_inputs_are_refused(env: Path, tmp_path: Path) -> None:
    config = RunConfig.from_dict({**SLICE, "trainable": "top_layers", "trainable_params": {"layers": 1, "cache": True}})
    task, compute, feats = prepared(config)
    first = attach_frozen_cache(compute, task, [feats], tmp_path)
    assert first is not None and first.size_bytes == sum(p.stat().st_size for p in tmp_path.glob("*.npy"))
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.npy")}
    _, compute2, feats2 = prepared(config)
    attach_frozen_cache(compute2, task, [feats2], tmp_path)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.npy")} == mtimes  # loaded, not recomputed
    with pytest.raises(KeyError, match="not in the frozen-bottom cache"):
        compute2.model(input_ids=torch.tensor([[101, 7, 8, 102]]), attention_mask=torch.ones(1, 4, dtype=torch.long))


def test_a_cache_build_reports_rows_done_and_an_eta_to_the_heartbeat(env: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from fednlp_bench import progress

    seen: list[str] = []
    monkeypatch.setattr(progress, "activity", seen.append)
    config = RunConfig.from_dict({**SLICE, "trainable": "top_layers", "trainable_params": {"layers": 1, "cache": True}})
    task, compute, feats = prepared(config)
    attach_frozen_cache(compute, task, [feats], tmp_path)
    n = len(feats)
    assert len(seen) == -(-n // 32)  # one update per build batch
    assert seen[-1].startswith(f"caching the frozen layers' hidden states: {n:,} of {n:,} rows of this split (100%)")
    assert "ETA 0s" in seen[-1] and "thread(s)" in seen[-1]


def test_rows_of_a_shorter_cached_split_batch_with_longer_rows_exactly(env: Path, tmp_path: Path) -> None:
    """Canaries and swapped texts are cached in their own (narrower) files but batched with the train split."""
    from datasets import Dataset

    config = RunConfig.from_dict({**SLICE, "trainable": "top_layers", "trainable_params": {"layers": 1, "cache": True}})
    task, compute, feats = prepared(config)
    short = task.preprocess(Dataset.from_dict({"id": ["s"], "text": ["tiny words"], "label": [1], "partition_key": [1],
                                               "author": [""], "organization": [""], "article_number": [None]}), True)
    rows = [dict(zip(feats.column_names, v)) for v in zip(*(feats[:3][c] for c in feats.column_names))]
    batch = task.collate(rows + [short[0]])
    assert batch["input_ids"].shape[1] > len(short[0]["input_ids"])
    model = compute.model.eval()
    with torch.no_grad():
        live = model(**batch).logits
        cache = attach_frozen_cache(compute, task, [feats, short], tmp_path)
        cached = model(**batch).logits
    assert cache is not None and cache.files[1].array.shape[1] < batch["input_ids"].shape[1]
    torch.testing.assert_close(cached, live, rtol=1e-5, atol=1e-6)


def _built(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(computed, copied) of every cache file the test builds."""
    from fednlp_bench.compute import frozen_cache

    counts: list[tuple[int, int]] = []
    original = frozen_cache.compute_states

    def counted(*args: Any, **kwargs: Any) -> tuple[int, int]:
        counts.append(original(*args, **kwargs))
        return counts[-1]

    monkeypatch.setattr(frozen_cache, "compute_states", counted)
    return counts


def test_a_new_split_copies_the_rows_other_cache_files_hold_and_computes_only_the_rest(
        env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each seed's 20News train split is a new split sharing most rows with the others: copy those."""
    config = RunConfig.from_dict({**SLICE, "trainable": "top_layers", "trainable_params": {"layers": 1, "cache": True}})
    task, compute, feats = prepared(config)
    n = len(feats)
    first, second = feats.select(range(0, 2 * n // 3)), feats.select(range(n // 3, n))
    counts = _built(monkeypatch)
    attach_frozen_cache(compute, task, [first], tmp_path / "shared")
    cache = attach_frozen_cache(prepared(config)[1], task, [second], tmp_path / "shared")
    overlap = 2 * n // 3 - n // 3
    assert counts == [(len(first), 0), (len(second) - overlap, overlap)]
    assert len(list((tmp_path / "shared").glob("*.rowkeys"))) == 2
    _, fresh_compute, _ = prepared(config)
    fresh = attach_frozen_cache(fresh_compute, task, [second], tmp_path / "fresh")
    assert counts[-1] == (len(second), 0)
    assert cache is not None and fresh is not None
    np.testing.assert_allclose(np.asarray(cache.files[0].array), np.asarray(fresh.files[0].array), rtol=1e-5, atol=1e-5)


def test_rows_are_not_copied_from_a_narrower_cache_file(env: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A narrower file lacks the padding states past its width, which a wider split's rows carry."""
    config = RunConfig.from_dict({**SLICE, "task": "tagging", "data": "wnut17", "max_length": 64, "trainable": "top_layers",
                                  "trainable_params": {"layers": 1, "cache": True}})
    task, compute, feats = prepared(config)
    lengths = np.array([len(ids) for ids in feats["input_ids"]])
    short = feats.select(np.flatnonzero(lengths < lengths.max()).tolist())
    assert 0 < len(short) < len(feats)
    counts = _built(monkeypatch)
    attach_frozen_cache(compute, task, [short], tmp_path)
    attach_frozen_cache(prepared(config)[1], task, [feats], tmp_path)
    assert counts == [(len(short), 0), (len(feats), 0)]


def test_a_cache_file_built_before_sidecars_gets_one_when_loaded(env: Path, tmp_path: Path) -> None:
    from fednlp_bench.compute.cache_reuse import row_digests

    config = RunConfig.from_dict({**SLICE, "trainable": "top_layers", "trainable_params": {"layers": 1, "cache": True}})
    task, compute, feats = prepared(config)
    attach_frozen_cache(compute, task, [feats], tmp_path)
    (sidecar,) = tmp_path.glob("*.rowkeys")
    sidecar.unlink()
    attach_frozen_cache(prepared(config)[1], task, [feats], tmp_path)
    np.testing.assert_array_equal(np.load(sidecar), row_digests(feats, task.tokenizer.pad_token_id))
