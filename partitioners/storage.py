"""Saving and loading partitions: JSON (readable) or npz (compact), always with a content hash.

Writes are atomic (temp file in the target folder + ``os.replace``) so a crash
or a bad value never leaves a half-written partition behind. Loading recomputes
the hash, so an edited or truncated file is refused instead of silently giving
clients the wrong rows, and (when the caller passes the dataset fingerprint) a
partition made for other data is refused too.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fednlp_bench.partitioners.errors import PartitionError, PartitionFileError, PartitionMismatchError
from fednlp_bench.partitioners.partition import Partition, PartitionSpec

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


def atomic_write(path: str | os.PathLike[str], write: Callable[[Any], None], binary: bool = True) -> None:
    """Call ``write(fileobj)`` on a temp file next to ``path`` and move it into place only on success."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_partition(partition: Partition, path: str | os.PathLike[str]) -> None:
    path = check_output_path(path)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "spec": partition.spec.to_dict(),
        "content_hash": partition.content_hash,
    }
    flat, offsets = partition.arrays()
    if path.suffix.lower() == ".json":
        doc = dict(header)
        doc["clients"] = [partition.indices(c).tolist() for c in range(partition.num_clients)]

        def write_json(fh: Any) -> None:
            json.dump(doc, fh, separators=(",", ":"))
            fh.write("\n")

        atomic_write(path, write_json, binary=False)
    else:

        def write_npz(fh: Any) -> None:
            # A file object (not a name) stops numpy from appending a second ".npz".
            np.savez_compressed(fh, flat=flat, offsets=offsets, header=np.array(json.dumps(header)))

        atomic_write(path, write_npz)


def load_partition(path: str | os.PathLike[str], fingerprint: str | None = None) -> Partition:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"partition file {str(path)!r} not found; create it with `fednlp-bench partition`")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise PartitionFileError(f"partition file {str(path)!r} must end in .json or .npz")
    try:
        header, build = _read_json(path) if suffix == ".json" else _read_npz(path)
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise PartitionFileError(f"not a fednlp-bench partition (format marker {FORMAT!r} missing)")
        if header.get("version") != VERSION:
            raise PartitionFileError(f"unsupported partition file version {header.get('version')!r} (this code reads {VERSION})")
        spec = PartitionSpec.from_dict(header.get("spec"))
        stored_hash = header.get("content_hash")
        partition = build(spec)
    except PartitionFileError as err:
        raise PartitionFileError(f"corrupt partition file {str(path)!r}: {err}; {_REGENERATE}") from None
    except (PartitionError, ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise PartitionFileError(
            f"corrupt partition file {str(path)!r}: {type(err).__name__}: {err}; {_REGENERATE}"
        ) from None
    if partition.content_hash != stored_hash:
        raise PartitionFileError(
            f"partition file {str(path)!r} fails its content hash (stored {str(stored_hash)[:12]}..., "
            f"computed {partition.content_hash[:12]}...): it was modified or corrupted; {_REGENERATE}"
        )
    if fingerprint is not None:
        check_fingerprint(partition, fingerprint, source=str(path))
    return partition


def check_fingerprint(partition: Partition, fingerprint: str, source: str = "partition") -> None:
    """Refuse a partition made for other data (different ``dataset_fingerprint``)."""
    if partition.spec.fingerprint != fingerprint:
        raise PartitionMismatchError(
            f"{source} was made for another dataset (fingerprint {partition.spec.fingerprint[:12]}..., "
            f"{partition.spec.num_rows} rows) but this dataset has fingerprint {fingerprint[:12]}...; "
            f"re-partition this data with `fednlp-bench partition` (same scheme and seed)"
        )


def _read_json(path: Path) -> tuple[dict[str, Any], Callable[[PartitionSpec], Partition]]:
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
    return doc, lambda spec: Partition.from_client_lists(spec, clients)


def _read_npz(path: Path) -> tuple[dict[str, Any], Callable[[PartitionSpec], Partition]]:
    data = path.read_bytes()
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        missing = {"flat", "offsets", "header"} - set(npz.files)
        if missing:
            raise PartitionFileError(f"npz lacks arrays {sorted(missing)}")
        flat, offsets, header = npz["flat"], npz["offsets"], json.loads(str(npz["header"]))
    for name, arr in (("flat", flat), ("offsets", offsets)):
        if arr.dtype.kind not in "iu":
            raise PartitionFileError(f"array {name!r} has dtype {arr.dtype}, expected integers")
    return header, lambda spec: Partition(spec, flat, offsets)
