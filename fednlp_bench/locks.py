"""Advisory file locks (``fcntl.flock``) for work that two processes must not do at once.

A suite with ``--jobs N``, two suites on one runs folder, or a suite beside a
scheduler's ``fednlp-bench run`` jobs could start the same run twice (two
processes training into one run folder) or build the same frozen-bottom cache
twice. ``flock`` locks belong to the open file: the kernel drops them when the
holder exits or is killed, so a killed suite never leaves a stale lock behind.
"""

from __future__ import annotations

import errno
import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class LockBusy(RuntimeError):
    """Another live process holds the lock; the message names it (pid) and the lock file."""


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        return "another process"
    return f"process {text}" if text else "another process"


@contextmanager
def exclusive(path: str | os.PathLike[str], *, wait: bool) -> Iterator[Path]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block.

    ``wait=False`` raises :class:`LockBusy` at once when another process holds
    it (the suite then skips that run); ``wait=True`` blocks until it is free
    (a cache build: the second process waits and then reads the first one's files).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise LockBusy(f"{path} is held by {_holder(path)}") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
