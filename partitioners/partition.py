"""The result of partitioning: an immutable client -> row-indices mapping plus its spec.

Stored as one flat index array and client offsets (CSR layout) rather than a
list of lists: a million rows stay one contiguous int64 buffer that hashes,
saves and slices without Python loops.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import numpy as np

from fednlp_bench.partitioners.errors import PartitionError

#: Keys of :meth:`PartitionSpec.to_dict`, in order.
SPEC_KEYS = ("scheme", "num_clients", "seed", "min_size", "params", "fingerprint", "num_rows")


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


@dataclass(frozen=True)
class PartitionSpec:
    """Everything needed to regenerate a partition: scheme, its parameters, seed and the data it was made for."""

    scheme: str
    num_clients: int
    seed: int
    min_size: int
    params: Mapping[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    num_rows: int = 0

    def __post_init__(self) -> None:
        # Freeze a private copy so later edits to the caller's dict cannot change a hashed spec.
        params = json.loads(_canonical_json(dict(self.params)))
        object.__setattr__(self, "params", params)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "num_clients": int(self.num_clients),
            "seed": int(self.seed),
            "min_size": int(self.min_size),
            "params": json.loads(_canonical_json(self.params)),
            "fingerprint": self.fingerprint,
            "num_rows": int(self.num_rows),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PartitionSpec":
        if not isinstance(d, Mapping):
            raise PartitionError(f"partition spec must be a mapping, got {type(d).__name__}")
        missing = [k for k in SPEC_KEYS if k not in d]
        if missing:
            raise PartitionError(f"partition spec lacks {missing}; it needs {list(SPEC_KEYS)}")
        ints = {}
        for key in ("num_clients", "seed", "min_size", "num_rows"):
            value = d[key]
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise PartitionError(f"partition spec field {key!r} must be an integer, got {value!r}")
            ints[key] = int(value)
        if not isinstance(d["params"], Mapping):
            raise PartitionError(f"partition spec field 'params' must be a mapping, got {d['params']!r}")
        return cls(
            scheme=str(d["scheme"]),
            params=dict(d["params"]),
            fingerprint=str(d["fingerprint"]),
            **ints,
        )


class Partition:
    """Immutable mapping client id -> sorted int64 row indices, with the :class:`PartitionSpec` that made it.

    Every row of the dataset belongs to exactly one client (checked on
    construction), so ``sum(sizes()) == spec.num_rows``.
    """

    __slots__ = ("_spec", "_flat", "_offsets", "_hash")

    def __init__(self, spec: PartitionSpec, flat: np.ndarray, offsets: np.ndarray, _validate: bool = True) -> None:
        flat = np.ascontiguousarray(flat, dtype=np.int64)
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        if _validate:
            _validate_layout(spec, flat, offsets)
        elif flat.size != spec.num_rows or offsets.size != spec.num_clients + 1:  # pragma: no cover - internal bug
            raise PartitionError("internal error: partition arrays do not match the spec")
        flat.setflags(write=False)
        offsets.setflags(write=False)
        self._spec = spec
        self._flat = flat
        self._offsets = offsets
        self._hash: str | None = None

    # ----- construction -----------------------------------------------------
    @classmethod
    def from_assignment(cls, spec: PartitionSpec, client_of_row: np.ndarray) -> "Partition":
        """Build from one client id per row (what the schemes compute)."""
        client_of_row = np.asarray(client_of_row)
        if client_of_row.shape != (spec.num_rows,):
            raise PartitionError(f"assignment has shape {client_of_row.shape}, expected ({spec.num_rows},)")
        n_clients = spec.num_clients
        if client_of_row.size and (client_of_row.min() < 0 or client_of_row.max() >= n_clients):
            raise PartitionError(f"assignment uses client ids outside [0, {n_clients})")
        # A stable sort keeps rows ascending inside each client; 16-bit keys take numpy's radix sort.
        key_dtype = np.int16 if n_clients <= np.iinfo(np.int16).max else np.int32
        flat = np.argsort(client_of_row.astype(key_dtype, copy=False), kind="stable").astype(np.int64, copy=False)
        offsets = np.zeros(n_clients + 1, dtype=np.int64)
        np.cumsum(np.bincount(client_of_row, minlength=n_clients), out=offsets[1:])
        # A stable sort of one in-range client id per row is a valid layout by construction:
        # skip the O(n) re-validation (files and hand-made lists are still validated).
        return cls(spec, flat, offsets, _validate=False)

    @classmethod
    def from_client_lists(cls, spec: PartitionSpec, clients: list[Any]) -> "Partition":
        """Build from one index list per client (sorted here)."""
        if len(clients) != spec.num_clients:
            raise PartitionError(f"got {len(clients)} client index lists, spec says num_clients={spec.num_clients}")
        arrays = [np.sort(np.asarray(c, dtype=np.int64)) for c in clients]
        offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum([a.size for a in arrays], out=offsets[1:])
        flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
        return cls(spec, flat, offsets)

    # ----- access -----------------------------------------------------------
    @property
    def spec(self) -> PartitionSpec:
        return self._spec

    @property
    def num_clients(self) -> int:
        return self._spec.num_clients

    @property
    def num_rows(self) -> int:
        return self._spec.num_rows

    def indices(self, client_id: int) -> np.ndarray:
        """Sorted int64 row indices of one client (a read-only view)."""
        if isinstance(client_id, bool) or not isinstance(client_id, (int, np.integer)):
            raise TypeError(f"client id must be an int, got {client_id!r}")
        if not 0 <= client_id < self.num_clients:
            raise IndexError(f"client id {client_id} out of range [0, {self.num_clients})")
        return self._flat[self._offsets[client_id] : self._offsets[client_id + 1]]

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.indices(c) for c in range(self.num_clients))

    def __len__(self) -> int:
        return self.num_clients

    def sizes(self) -> np.ndarray:
        """Number of rows per client (int64)."""
        return np.diff(self._offsets)

    def client_of_row(self) -> np.ndarray:
        """Inverse mapping: the client id of every row."""
        out = np.empty(self.num_rows, dtype=np.int64)
        out[self._flat] = np.repeat(np.arange(self.num_clients, dtype=np.int64), self.sizes())
        return out

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The read-only ``(flat, offsets)`` CSR arrays (what the npz format stores)."""
        return self._flat, self._offsets

    # ----- identity ---------------------------------------------------------
    @property
    def content_hash(self) -> str:
        """sha256 over the canonical spec and the index arrays; equal hash <=> equal partition."""
        if self._hash is None:
            h = hashlib.sha256()
            h.update(b"fednlp-bench-partition-v1\n")
            h.update(_canonical_json(self._spec.to_dict()).encode())
            h.update(b"\n")
            h.update(self._offsets.astype("<i8", copy=False).tobytes())
            h.update(self._flat.astype("<i8", copy=False).tobytes())
            self._hash = h.hexdigest()
        return self._hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Partition):
            return NotImplemented
        return self.content_hash == other.content_hash

    def __hash__(self) -> int:
        return hash(self.content_hash)

    def __repr__(self) -> str:
        s = self.sizes()
        return (
            f"Partition(scheme={self._spec.scheme!r}, num_clients={self.num_clients}, num_rows={self.num_rows}, "
            f"sizes min/max={int(s.min()) if s.size else 0}/{int(s.max()) if s.size else 0}, "
            f"hash={self.content_hash[:12]})"
        )

    # ----- persistence ------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically as ``.json`` (readable) or ``.npz`` (compact; use it above ~200k rows)."""
        from fednlp_bench.partitioners.storage import write_partition_file

        flat, offsets = self.arrays()
        write_partition_file(path, {"spec": self.spec.to_dict(), "content_hash": self.content_hash}, flat, offsets)

    @classmethod
    def load(cls, path: str | os.PathLike[str], fingerprint: str | None = None) -> "Partition":
        """Read a saved partition; verifies its content hash and, if given, the dataset fingerprint."""
        from fednlp_bench.partitioners import storage

        header, flat, offsets = storage.read_partition_file(path)
        try:
            partition = cls(PartitionSpec.from_dict(header.get("spec")), flat, offsets)
        except (ValueError, TypeError, KeyError) as err:
            raise storage.corrupt_file_error(path, err) from None
        storage.check_hash(header.get("content_hash"), partition.content_hash, path)
        if fingerprint is not None:
            storage.check_fingerprint(partition.spec, fingerprint, source=str(path))
        return partition


def _validate_layout(spec: PartitionSpec, flat: np.ndarray, offsets: np.ndarray) -> None:
    """Every row exactly once, indices sorted per client: the invariant the rest of the code relies on."""
    n, k = spec.num_rows, spec.num_clients
    if flat.ndim != 1 or offsets.ndim != 1:
        raise PartitionError("partition arrays must be one-dimensional")
    if offsets.size != k + 1 or offsets[0] != 0 or offsets[-1] != flat.size:
        raise PartitionError(f"partition offsets do not describe {k} clients over {flat.size} indices")
    if np.any(np.diff(offsets) < 0):
        raise PartitionError("partition offsets are not non-decreasing")
    if flat.size != n:
        raise PartitionError(f"partition holds {flat.size} indices but the spec says num_rows={n}")
    if n == 0:
        return
    if flat.min() < 0 or flat.max() >= n:
        raise PartitionError(f"partition has row indices outside [0, {n})")
    if np.any(np.bincount(flat, minlength=n) != 1):
        raise PartitionError("partition does not assign every row to exactly one client")
    # Sorted inside each client: a descent may only happen at a client boundary.
    descents = np.nonzero(np.diff(flat) <= 0)[0] + 1
    if descents.size and not np.all(np.isin(descents, offsets)):
        raise PartitionError("partition row indices are not sorted within each client")
