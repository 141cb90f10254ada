"""Sentence embeddings for feature-based partitions, cached on disk.

Mean-pooled last hidden states of any Hugging Face encoder (default: the
offline MiniLM, which is a sentence-transformers model trained for exactly
this pooling), L2-normalised so k-means on them clusters by cosine
similarity. Embedding a split is the only slow step of partitioning, so the
result is cached under ``fednlp_bench.paths.cache_dir()/embeddings`` keyed by
the dataset fingerprint, a hash of the texts themselves (a task may change its
text preprocessing without changing row ids), the model and ``max_length``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from fednlp_bench.atomic import atomic_write
from fednlp_bench.hf_quiet import quiet_transformers
from fednlp_bench.paths import DEFAULT_MODEL, cache_dir, resolve_model_name


def texts_hash(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def embedding_cache_path(fingerprint: str, texts: Sequence[str], model: str, max_length: int) -> Path:
    key = json.dumps(
        {"fingerprint": fingerprint, "texts": texts_hash(texts), "model": model, "max_length": max_length},
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return cache_dir() / "embeddings" / f"{digest}.npy"


def embed_texts(
    texts: Sequence[str],
    model: str = DEFAULT_MODEL,
    max_length: int = 128,
    batch_size: int = 64,
    progress: bool = False,
) -> np.ndarray:
    """``(len(texts), hidden)`` float32 L2-normalised mean-pooled embeddings (no cache)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    name = resolve_model_name(model)
    with quiet_transformers():  # no weight-loading bar in logs: the caller reports the embedding phase
        tokenizer = AutoTokenizer.from_pretrained(name)
        encoder = AutoModel.from_pretrained(name)
    encoder.eval()
    # Length-sorted batches waste less compute on padding; results are put back in input order.
    order = np.argsort([len(t) for t in texts], kind="stable")
    out: np.ndarray | None = None
    batches = range(0, len(texts), batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=f"embedding {len(texts)} texts", unit="batch")
    with torch.inference_mode():
        for start in batches:
            idx = order[start : start + batch_size]
            enc = tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            )
            hidden = encoder(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            if out is None:
                out = np.empty((len(texts), pooled.shape[-1]), dtype=np.float32)
            out[idx] = pooled.float().numpy()
    assert out is not None
    return out


def cached_embeddings(
    texts: Sequence[str],
    fingerprint: str,
    model: str = DEFAULT_MODEL,
    max_length: int = 128,
    batch_size: int = 64,
    progress: bool = False,
) -> np.ndarray:
    """:func:`embed_texts` with an on-disk cache; a re-run loads instead of re-embedding."""
    path = embedding_cache_path(fingerprint, texts, model, max_length)
    if path.is_file():
        try:
            cached = np.load(path, allow_pickle=False)
            if cached.shape[0] == len(texts):
                return cached
        except (OSError, ValueError):
            pass  # unreadable cache entry: recompute and overwrite
    vectors = embed_texts(texts, model=model, max_length=max_length, batch_size=batch_size, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: np.save(fh, vectors, allow_pickle=False))
    return vectors
