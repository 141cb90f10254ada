"""From a ``datasets.Dataset`` to the plain numpy columns the schemes work on.

Columns are read through Arrow (never row by row in Python), which is what
keeps a million-row partition in the tens of milliseconds, and the dataset
fingerprint is computed from the same Arrow buffers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from fednlp_bench.partitioners.errors import PartitionError

_FINGERPRINT_VERSION = b"fednlp-bench-fingerprint-v1"


@dataclass(frozen=True)
class ColumnData:
    """What a scheme may look at: row count, integer label codes, texts, group codes.

    ``labels``/``groups`` are dense codes ``0..K-1`` (``label_names[k]`` is the
    original value as text); a scheme declares in ``needs`` which it uses.
    """

    num_rows: int
    fingerprint: str = ""
    labels: np.ndarray | None = None
    label_names: tuple[str, ...] = ()
    texts: Sequence[str] | None = None
    groups: np.ndarray | None = None
    group_names: tuple[str, ...] = ()

    @classmethod
    def from_labels(cls, labels: Sequence[Any] | np.ndarray, fingerprint: str = "") -> "ColumnData":
        """Convenience for arrays already in memory (benchmarks, tests)."""
        codes, names = encode_values(pa.chunked_array([pa.array(np.asarray(labels))]), "labels")
        return cls(num_rows=len(codes), fingerprint=fingerprint, labels=codes, label_names=names)


def require_columns(dataset: Any, columns: dict[str, str]) -> None:
    """``columns`` maps a role ("label column") to a column name; each must exist."""
    available = list(dataset.column_names)
    for role, name in columns.items():
        if name not in available:
            raise PartitionError(
                f"{role} {name!r} is not in the dataset; available columns: {available} "
                f"(choose one with --{role.replace(' ', '-')} / {role.replace(' ', '_')}=...)"
            )


def arrow_column(dataset: Any, name: str) -> pa.ChunkedArray:
    """One column as Arrow, honouring any ``select``/``shuffle`` indices mapping of the dataset."""
    col = dataset.with_format("arrow")[name]
    if isinstance(col, pa.Array):
        col = pa.chunked_array([col])
    return col


def encode_values(col: pa.ChunkedArray, what: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map label/group values (ints or strings) to dense codes in sorted order of the values."""
    if col.null_count:
        raise PartitionError(f"{what} column has {col.null_count} missing values; fill or drop those rows first")
    typ = col.type
    if pa.types.is_integer(typ) or pa.types.is_boolean(typ):
        values = col.to_numpy().astype(np.int64, copy=False)
        if values.size == 0:
            return values, ()
        lo, hi = int(values.min()), int(values.max())
        if lo == 0 and hi < 1 << 20:
            present = np.bincount(values, minlength=hi + 1) > 0
            if present.all():  # already dense codes 0..K-1 (the usual class ids): nothing to remap
                return values, tuple(str(u) for u in range(hi + 1))
        if hi - lo <= 4 * values.size + 1024:
            # Counting instead of sorting: O(n) for the usual small label range.
            shifted = values - lo
            present = np.bincount(shifted, minlength=hi - lo + 1) > 0
            lookup = np.cumsum(present) - 1
            uniques = np.nonzero(present)[0] + lo
            return lookup[shifted].astype(np.int64), tuple(str(u) for u in uniques)
        uniques, codes = np.unique(values, return_inverse=True)
        return codes.astype(np.int64), tuple(str(u) for u in uniques)
    if pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_dictionary(typ):
        arr = col.combine_chunks()
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        encoded = arr.dictionary_encode()
        dictionary = [str(v) for v in encoded.dictionary.to_pylist()]
        raw_codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        order = np.argsort(np.array(dictionary, dtype=object), kind="stable")
        rank = np.empty(len(dictionary), dtype=np.int64)
        rank[order] = np.arange(len(dictionary))
        used = np.zeros(len(dictionary), dtype=bool)
        used[raw_codes] = True
        # Dense codes over the values that occur, in sorted order (like np.unique).
        dense = np.cumsum(used[order]) - 1
        codes = dense[rank[raw_codes]]
        names = tuple(dictionary[i] for i in order if used[i])
        return codes.astype(np.int64), names
    if pa.types.is_floating(typ):
        uniques, codes = np.unique(col.to_numpy(), return_inverse=True)
        return codes.astype(np.int64), tuple(str(u) for u in uniques)
    raise PartitionError(f"{what} column has type {typ}; use a column of integers or strings")


def dataset_fingerprint(dataset: Any) -> str:
    """sha256 identifying the rows of a split: over the ``id`` column if present, else every column.

    Ids are what a task guarantees stable, so a partition stays valid across
    text preprocessing changes but not across a different sample of rows.
    """
    names = ["id"] if "id" in dataset.column_names else sorted(dataset.column_names)
    h = hashlib.sha256()
    h.update(_FINGERPRINT_VERSION + f"|rows={len(dataset)}|".encode())
    for name in names:
        h.update(f"column={name}|".encode())
        _hash_column(h, arrow_column(dataset, name))
    return h.hexdigest()


def _hash_column(h: "hashlib._Hash", col: pa.ChunkedArray) -> None:
    typ = col.type
    if col.null_count == 0 and (pa.types.is_integer(typ) or pa.types.is_boolean(typ)):
        values = col.to_numpy().astype(np.int64, copy=False)
        # Hash at the narrowest width that holds the values (tagged): the same numbers hash the same
        # whatever their stored type, and class ids hash 8x less data than as int64.
        lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
        for code in ("<i1", "<i2", "<i4", "<i8"):
            info = np.iinfo(np.dtype(code))
            if info.min <= lo and hi <= info.max:
                break
        h.update(f"int:{code}:".encode())
        h.update(values.astype(code).tobytes())
        return
    if col.null_count == 0 and (pa.types.is_string(typ) or pa.types.is_large_string(typ)):
        # Canonical bytes independent of chunking: rebased int64 offsets + the UTF-8 data they span.
        arr = col.cast(pa.large_string()).combine_chunks()
        if isinstance(arr, pa.ChunkedArray):  # pragma: no cover
            arr = arr.combine_chunks()
        _, offsets_buf, data_buf = arr.buffers()
        offsets = np.frombuffer(offsets_buf, dtype="<i8", count=len(arr) + 1, offset=arr.offset * 8)
        start, end = int(offsets[0]), int(offsets[-1])
        h.update(b"str:")
        h.update((offsets - start).astype("<i8", copy=False).tobytes())
        if data_buf is not None:
            h.update(memoryview(data_buf)[start:end])
        return
    h.update(b"json:")
    h.update(json.dumps(col.to_pylist(), sort_keys=True, default=str, ensure_ascii=False).encode())
