"""Frozen-bottom cache for ``trainable: top_layers`` with ``cache: true``.

With the embeddings and the bottom layers frozen (and in eval mode), their
output for a given input never changes during a run, so computing it at every
step is wasted work: on a CPU it is most of the work. This module computes
the hidden states at the frozen/trainable boundary once per (frozen weights,
data fingerprint, max_length, precision), stores them on disk as a
memory-mapped ``.npy`` array (one per features split), and then patches the
model so its embeddings return the cached states and its bottom layers pass
them through: training and evaluation run only the top layers.

Lookup is by *content*: the key of a row is its token ids (trailing padding
stripped) and token types. So every caller that feeds the model (the trainer's
batches, each task's own evaluation loop, ``generate``) gets the right rows in
any order and any batch padding, and an input that is not in the cache is an
error, never a silent recompute. The states of padding positions depend only
on their position and the real tokens, so rows are stored padded to the
longest row and sliced to each batch's width.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from datasets import Dataset

from fednlp_bench.atomic import atomic_write_text
from fednlp_bench.compute.cache_reuse import digests_path, row_digests, row_key, write_digests
from fednlp_bench.compute.cache_threads import BorrowedThreads, build_lock
from fednlp_bench.compute.frozen_build import compute_states, probe_returns_tuple
from fednlp_bench.compute.precision import Precision
from fednlp_bench.compute.trainable import TrainableSetup

log = logging.getLogger("fednlp_bench.compute")

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    from fednlp_bench.paths import cache_dir

    return cache_dir() / "frozen_bottom"


def frozen_digest(setup: TrainableSetup) -> str:
    """sha256 of the frozen bottom's tensors (names, shapes, bytes): the model part of the cache key."""
    h = hashlib.sha256()
    for module in setup.bottom_modules():
        for name, t in module.state_dict().items():
            t = t.detach().cpu().contiguous()
            h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes())
    return h.hexdigest()


@dataclass
class CacheFile:
    path: Path
    array: np.ndarray  # (rows, width, hidden) float32, memory-mapped read-only


class FrozenBottomCache:
    """Cached boundary hidden states for some features splits, attachable to the model that made them."""

    def __init__(self, setup: TrainableSetup, files: list[CacheFile], keys: dict[bytes, tuple[int, int]], pad_id: int,
                 layer_returns_tuple: bool) -> None:
        self.setup = setup
        self.files = files
        self.keys = keys
        self.pad_id = pad_id
        self.layer_returns_tuple = layer_returns_tuple
        self._saved: list[tuple[torch.nn.Module, Any]] = []

    @property
    def size_bytes(self) -> int:
        return sum(f.path.stat().st_size for f in self.files)

    @property
    def paths(self) -> list[Path]:
        return [f.path for f in self.files]

    # ------------------------------------------------------------ build
    @classmethod
    def build(
        cls,
        setup: TrainableSetup,
        features: Sequence[Dataset],
        *,
        pad_id: int,
        max_length: int,
        precision: Precision,
        folder: str | os.PathLike[str] | None = None,
    ) -> "FrozenBottomCache":
        """Load or compute the cache of every split in ``features`` (computed ones are written atomically)."""
        if setup.stack is None:
            raise ValueError("the frozen-bottom cache needs trainable: top_layers")
        folder = Path(folder) if folder is not None else default_cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        digest = frozen_digest(setup)
        files: list[CacheFile] = []
        keys: dict[bytes, tuple[int, int]] = {}
        # Whether a layer returns a tuple is the model's property, not the data's: probe it once per build.
        first = next((f for f in features if len(f) and "input_ids" in f.column_names), None)
        returns_tuple = False if first is None else probe_returns_tuple(setup, first, pad_id, precision)
        for feats in features:
            missing = [k for k in ("input_ids",) if k not in feats.column_names]
            if missing:
                raise ValueError(f"the frozen-bottom cache needs an 'input_ids' column; features have {feats.column_names}")
            spec = {
                "version": CACHE_VERSION,
                "frozen": digest,
                "frozen_layers": setup.frozen_layers,
                "data": feats._fingerprint,
                "rows": len(feats),
                "max_length": int(max_length),
                "precision": precision.name,
                "model": type(setup.model).__name__,
            }
            path = _ensure_file(setup, feats, folder, spec, pad_id, precision)
            array = np.load(path, mmap_mode="r")
            if array.shape[0] != len(feats):
                raise ValueError(f"frozen-bottom cache {path} has {array.shape[0]} rows, the data {len(feats)}; delete it")
            file_index = len(files)
            files.append(CacheFile(path=path, array=array))
            types = feats["token_type_ids"] if "token_type_ids" in feats.column_names else None
            for row, ids in enumerate(feats["input_ids"]):
                keys.setdefault(row_key(np.asarray(ids), None if types is None else np.asarray(types[row]), pad_id),
                                (file_index, row))
        cache = cls(setup, files, keys, pad_id, returns_tuple)
        log.info("frozen-bottom cache: %d file(s), %.1f MiB in %s", len(files), cache.size_bytes / 2**20, folder)
        return cache

    # ------------------------------------------------------------ use
    def lookup(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        """Cached boundary states for a batch, shape (batch, width, hidden), on the batch's device."""
        ids = input_ids.detach().cpu().numpy()
        types = None if token_type_ids is None else token_type_ids.detach().cpu().numpy()
        width = ids.shape[1]
        hidden = self.files[0].array.shape[2]
        out = np.empty((ids.shape[0], width, hidden), dtype=np.float32)
        for j in range(ids.shape[0]):
            hit = self.keys.get(row_key(ids[j], None if types is None else types[j], self.pad_id))
            if hit is None:
                raise KeyError(
                    "an input of the model is not in the frozen-bottom cache (the cache covers the run's train and "
                    "evaluation features only); run without trainable_params.cache to feed other data"
                )
            array = self.files[hit[0]].array
            # A row from a file of shorter rows (canaries, swapped texts batched with the train split) has no
            # states past its file's width; those positions are padding of this row, masked out as attention
            # keys and never read as outputs, so zeros there leave every real position's output unchanged.
            n = min(width, array.shape[1])
            out[j, :n] = array[hit[1], :n]
            out[j, n:] = 0.0
        return torch.from_numpy(out).to(input_ids.device)

    def attach(self) -> None:
        """Patch the model: embeddings return cached states, bottom layers pass them through."""
        if self._saved:
            return
        stack = self.setup.stack
        assert stack is not None
        cache = self

        def embeddings_forward(input_ids: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
                               position_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                               **kwargs: Any) -> torch.Tensor:
            if input_ids is None or inputs_embeds is not None or position_ids is not None or kwargs.get("cache_length"):
                raise ValueError("the frozen-bottom cache serves plain input_ids only (no inputs_embeds/position_ids)")
            return cache.lookup(input_ids, token_type_ids)

        def passthrough(hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            return (hidden_states,) if cache.layer_returns_tuple else hidden_states

        targets = [(stack.embeddings, embeddings_forward)]
        targets += [(layer, passthrough) for layer in list(stack.layers)[: self.setup.frozen_layers]]
        for module, fn in targets:
            self._saved.append((module, module.__dict__.get("forward")))
            module.forward = fn  # type: ignore[method-assign]

    def detach(self) -> None:
        """Undo :meth:`attach` (the frozen bottom runs live again)."""
        for module, previous in self._saved:
            if previous is None:
                del module.forward
            else:
                module.forward = previous  # type: ignore[method-assign]
        self._saved = []


def _ensure_file(setup: TrainableSetup, feats: Dataset, folder: Path, spec: dict[str, Any], pad_id: int,
                 precision: Precision) -> Path:
    """The split's cache file, built under its lock if absent (suite workers may need it at once: one builds it
    with the waiters' threads, the others wait and read)."""
    name = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]
    path = folder / f"{name}.npy"
    if path.is_file():
        if not digests_path(path).is_file():  # built before files had a keys sidecar: later builds may copy
            write_digests(path, row_digests(feats, pad_id))
        return path
    lock = folder / f".{name}.lock"
    with build_lock(lock):
        if not path.is_file():
            computed, copied = compute_states(setup, feats, path, pad_id, precision, BorrowedThreads(lock), spec)
            log.info("frozen-bottom cache %s: %d row(s) computed, %d copied from other cache files",
                     path.name, computed, copied)
            atomic_write_text(folder / f"{name}.json", json.dumps({**spec, "bytes": path.stat().st_size}, indent=1))
    return path
