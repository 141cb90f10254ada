"""Partition files on disk: JSON (readable) or npz (compact), always with a content hash.

This module knows only the file formats (header dict + client row arrays); it
never builds a :class:`~fednlp_bench.partitioners.partition.Partition`, so
``Partition.save/load`` can call it without an import cycle. Writes are
atomic (``fednlp_bench.atomic``) so a crash or a bad value never leaves a
half-written partition behind; ``Partition.load`` recomputes the hash, so an
edited or truncated file is refused instead of silently giving clients the
wrong rows.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from fednlp_bench.atomic import atomic_write
from fednlp_bench.partitioners.errors import PartitionError, PartitionFileError, PartitionMismatchError

FORMAT = "fednlp-bench/partition"
VERSION = 1
SUFFIXES = (".json", ".npz")
#: Above this many rows JSON gets slow and large; the CLI suggests ``.npz``.
JSON_ROW_LIMIT = 200_000

_REGENERATE = "regenerate it with `fednlp-bench partition`"


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """Validate an output path up front (suffix, existing folder) so bad values fail before any work."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise PartitionError(f"partition file {str(path)!r} must end in .json or .npz (npz for large data)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise PartitionError(f"folder {str(parent)!r} for partition file {str(path)!r} does not exist; create it first")
    if path.is_dir():
        raise PartitionError(f"partition output {str(path)!r} is a folder; give a file name ending in .json or .npz")
    return path


def write_partition_file(path: str | os.PathLike[str], header: dict[str, Any], flat: np.ndarray, offsets: np.ndarray) -> None:
    """Write ``header`` and the client rows (``flat[offsets[c]:offsets[c+1]]``) as .json or .npz."""
    path = check_output_path(path)
    header = {"format": FORMAT, "version": VERSION, **header}
    if path.suffix.lower() == ".json":
        doc = dict(header)
        doc["clients"] = [flat[offsets[c] : offsets[c + 1]].tolist() for c in range(len(offsets) - 1)]

        def write_json(fh: Any) -> None:
            json.dump(doc, fh, separators=(",", ":"))
            fh.write("\n")

        atomic_write(path, write_json, binary=False)
    else:

        def write_npz(fh: Any) -> None:
            # A file object (not a name) stops numpy from appending a second ".npz".
            np.savez_compressed(fh, flat=flat, offsets=offsets, header=np.array(json.dumps(header)))

        atomic_write(path, write_npz)


def read_partition_file(path: str | os.PathLike[str]) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """(header, flat, offsets) of a partition file; unreadable or foreign files raise ``PartitionFileError``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"partition file {str(path)!r} not found; create it with `fednlp-bench partition`")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise PartitionFileError(f"partition file {str(path)!r} must end in .json or .npz")
    try:
        header, flat, offsets = _read_json(path) if suffix == ".json" else _read_npz(path)
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise PartitionFileError(f"not a fednlp-bench partition (format marker {FORMAT!r} missing)")
        if header.get("version") != VERSION:
            raise PartitionFileError(f"unsupported partition file version {header.get('version')!r} (this code reads {VERSION})")
    except Exception as err:  # noqa: BLE001 - any failure to parse is one "corrupt file" error
        raise corrupt_file_error(path, err) from None
    return header, flat, offsets


def corrupt_file_error(path: str | os.PathLike[str], err: Exception) -> PartitionFileError:
    """The one message for a damaged partition file, naming the fix."""
    detail = str(err) if isinstance(err, PartitionFileError) else f"{type(err).__name__}: {err}"
    return PartitionFileError(f"corrupt partition file {str(path)!r}: {detail}; {_REGENERATE}")


def check_hash(stored: Any, computed: str, path: str | os.PathLike[str]) -> None:
    if computed != stored:
        raise PartitionFileError(
            f"partition file {str(path)!r} fails its content hash (stored {str(stored)[:12]}..., "
            f"computed {computed[:12]}...): it was modified or corrupted; {_REGENERATE}"
        )


def check_fingerprint(spec: Any, fingerprint: str, source: str = "partition") -> None:
    """Refuse a partition made for other data (different ``dataset_fingerprint``); ``spec`` is its PartitionSpec."""
    if spec.fingerprint != fingerprint:
        raise PartitionMismatchError(
            f"{source} was made for another dataset (fingerprint {spec.fingerprint[:12]}..., "
            f"{spec.num_rows} rows) but this dataset has fingerprint {fingerprint[:12]}...; "
            f"re-partition this data with `fednlp-bench partition` (same scheme and seed)"
        )


def _read_json(path: Path) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise PartitionFileError(f"not a fednlp-bench partition (format marker {FORMAT!r} missing)")
    if not isinstance(doc.get("clients"), list):
        raise PartitionFileError("no 'clients' list")
    clients = doc["clients"]
    for c in clients:
        if not isinstance(c, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in c):
            raise PartitionFileError("'clients' must be lists of integer row indices")
    arrays = [np.sort(np.asarray(c, dtype=np.int64)) for c in clients]
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum([a.size for a in arrays], out=offsets[1:])
    flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
    return doc, flat, offsets


def _read_npz(path: Path) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    data = path.read_bytes()
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        missing = {"flat", "offsets", "header"} - set(npz.files)
        if missing:
            raise PartitionFileError(f"npz lacks arrays {sorted(missing)}")
        flat, offsets, header = npz["flat"], npz["offsets"], json.loads(str(npz["header"]))
    for name, arr in (("flat", flat), ("offsets", offsets)):
        if arr.dtype.kind not in "iu":
            raise PartitionFileError(f"array {name!r} has dtype {arr.dtype}, expected integers")
    return header, flat, offsets
