"""Rows a new frozen-cache file can copy from the cache files already built, instead of computing them.

Each seed of a 20News cell holds out its own validation rows, so each seed's
train split is a new features split, and a new 10,182-row cache file (about
ten minutes on one thread); yet every one of its rows is a row of seed 0's
train or validation split, whose boundary states are already on disk. Every cache
file therefore gets a sidecar of its rows' content keys (``<name>.rowkeys``,
a 16-byte BLAKE2 digest of the row's token ids and types), and a build copies
the states of the rows it finds in a compatible file (same frozen weights,
layers, model, precision, max_length and cache version) and computes only the
rest.

A row's states are a function of its tokens: every real position, and every
padding position up to the width it was stored at (a padding position's state
depends on its position and the real tokens only). So a row is copied only
from a file at least as wide as the new one; copied states differ from
computed ones by the float summation order of the batch they were computed
in, as between two thread counts.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from datasets import Dataset

#: The cache spec fields two files must share for their rows' states to be interchangeable.
COMPATIBLE = ("version", "frozen", "frozen_layers", "max_length", "precision", "model")
DIGEST_BYTES = 16


def row_key(ids: np.ndarray, types: np.ndarray | None, pad_id: int) -> bytes:
    """The content key of one row: its token ids with trailing padding stripped, and non-zero token types."""
    real = np.flatnonzero(np.asarray(ids) != pad_id)
    n = int(real[-1]) + 1 if len(real) else 0
    key = np.asarray(ids[:n], dtype=np.int64).tobytes()
    # Absent token types mean all zeros to BERT's embeddings (``generate`` passes none).
    if types is not None and np.any(np.asarray(types[:n]) != 0):
        key += b"|" + np.asarray(types[:n], dtype=np.int64).tobytes()
    return key


def row_digests(feats: Dataset, pad_id: int) -> np.ndarray:
    """(rows, 16) uint8: the BLAKE2 digest of every row's content key."""
    types = feats["token_type_ids"] if "token_type_ids" in feats.column_names else None
    out = np.empty((len(feats), DIGEST_BYTES), dtype=np.uint8)
    for i, ids in enumerate(feats["input_ids"]):
        key = row_key(np.asarray(ids), None if types is None else np.asarray(types[i]), pad_id)
        out[i] = np.frombuffer(hashlib.blake2b(key, digest_size=DIGEST_BYTES).digest(), dtype=np.uint8)
    return out


def digests_path(cache_file: Path) -> Path:
    """Not ``*.npy``: a glob for the cache files must not pick their sidecars."""
    return cache_file.with_name(f"{cache_file.stem}.rowkeys")


def write_digests(cache_file: Path, digests: np.ndarray) -> None:
    """The sidecar, written atomically (a killed build leaves none)."""
    target = digests_path(cache_file)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            np.save(out, digests)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def known_rows(folder: Path, spec: Mapping[str, Any], digests: np.ndarray, width: int) -> dict[int, tuple[Path, int]]:
    """Rows of the new split (by index) whose states a finished, compatible, wide-enough file holds: -> (file, row)."""
    wanted: dict[bytes, list[int]] = {}
    for i, d in enumerate(digests):
        wanted.setdefault(bytes(d), []).append(i)  # a row may occur twice in a split: both copies are found
    found: dict[int, tuple[Path, int]] = {}
    for meta in sorted(folder.glob("*.json")):
        other = meta.with_suffix(".npy")
        sidecar = digests_path(other)
        try:
            info = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        if any(info.get(k) != spec.get(k) for k in COMPATIBLE) or not other.is_file() or not sidecar.is_file():
            continue
        if np.load(other, mmap_mode="r").shape[1] < width:
            continue
        for row, d in enumerate(np.load(sidecar)):
            for index in wanted.pop(bytes(d), ()):
                found[index] = (other, row)
        if not wanted:
            break
    return found
