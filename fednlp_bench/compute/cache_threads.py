"""Threads for a frozen-bottom cache build, lent by the processes that wait for it.

Suite workers (``--jobs N --threads 1``) that need the same cache block on its
lock while one of them builds it; a blocked worker's core would sit idle for
the whole build (about 25 minutes for 20News' train split on one thread). So a
waiter leaves a marker file (its pid) beside the lock, and the builder, between
batches, runs with its own threads plus one per live waiter, capped at the
cores it may use. A waiter that dies leaves a marker whose pid is gone; it is
not counted. The states differ from a one-thread build only by the float
summation order of the matrix products (last bits), as between any two thread
counts; the cache's key does not include threads.
"""

from __future__ import annotations

import os
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

import torch

from fednlp_bench import progress
from fednlp_bench.compute.device import available_cores as _usable_cores
from fednlp_bench.locks import LockBusy, exclusive


def _marker_prefix(lock: Path) -> str:
    return f"{lock.name}.wait."


@contextmanager
def waiting_on(lock: Path) -> Iterator[None]:
    """Mark this process as waiting for the build behind ``lock`` (its core is free to borrow)."""
    marker = lock.parent / f"{_marker_prefix(lock)}{os.getpid()}"
    marker.write_text(str(torch.get_num_threads()))
    try:
        yield
    finally:
        marker.unlink(missing_ok=True)


@contextmanager
def build_lock(lock: Path) -> Iterator[None]:
    """Hold ``lock``; while another process holds it, wait marked as a lender of this process's threads."""
    stack = ExitStack()
    try:
        stack.enter_context(exclusive(lock, wait=False))
    except LockBusy:
        progress.activity(f"waiting for another process to finish this frozen-layer cache "
                          f"(lending it {torch.get_num_threads()} thread(s))")
        with waiting_on(lock):
            stack.enter_context(exclusive(lock, wait=True))
    with stack:
        yield


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True  # also on PermissionError: the process exists


def lent_threads(lock: Path) -> int:
    """Threads the live waiters of ``lock`` lend (their own thread counts, from their markers)."""
    total = 0
    for marker in lock.parent.glob(f"{_marker_prefix(lock)}*"):
        pid = marker.name.rsplit(".", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid() or not _alive(int(pid)):
            continue
        try:
            total += max(1, int(marker.read_text().strip() or 1))
        except (OSError, ValueError):
            continue  # a marker being written or removed this instant: count it at the next batch
    return total


class BorrowedThreads:
    """Set torch's threads to own + lent (at most the usable cores) before each batch; restore at the end."""

    def __init__(self, lock: Path) -> None:
        self.lock = lock
        self.own = torch.get_num_threads()
        self.current = self.own

    def update(self) -> int:
        wanted = min(_usable_cores(), self.own + lent_threads(self.lock))
        wanted = max(wanted, self.own)
        if wanted != self.current:
            torch.set_num_threads(wanted)
            self.current = wanted
        return wanted

    def restore(self) -> None:
        if self.current != self.own:
            torch.set_num_threads(self.own)
            self.current = self.own
