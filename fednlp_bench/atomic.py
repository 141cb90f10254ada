"""The one atomic file write of the project: records, checkpoints, tables, partitions, plots.

Files are read by other tools and by ``--resume``; a crash mid-write must leave
the old file or none, never half of one. The data goes to a temp file in the
same folder, is flushed and fsynced, gets the permissions a plain ``open``
would give (mkstemp makes 0600), and is renamed into place.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[Any]], Any], binary: bool = True) -> Path:
    """Call ``write(fileobj)`` on a temp file next to ``path``; move it into place only on success."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": ""})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """``atomic_write`` of one string (UTF-8)."""
    return atomic_write(path, lambda fh: fh.write(text), binary=False)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, lambda fh: fh.write(data))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class AllOrNothing:
    """Files a command writes together: if the command fails, the ones it created are removed again.

    Each file is written atomically on its own; this makes a *set* of outputs (a partition and its PNG,
    a table and its curves) all-or-nothing, so a failed command leaves no new files behind. Files that
    existed before are left as they are (an atomic rewrite either replaced them whole or not at all).
    """

    def __init__(self, *paths: str | os.PathLike[str]) -> None:
        self._new = [Path(p) for p in paths if not Path(p).exists()]

    def add(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        if not path.exists():
            self._new.append(path)
        return path

    def __enter__(self) -> "AllOrNothing":
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            for path in self._new:
                path.unlink(missing_ok=True)
