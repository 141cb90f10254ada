"""How a suite executes its runs: how many at once, threads and GPU per worker, time budget, or list only.

The stage logic (``suite/stages.py``) decides *which* runs are due and in
what order; it hands each batch to ``dispatch.execute_runs``. How that batch is
executed is this object, set once by ``fednlp-bench suite`` for the whole
call (:func:`using`) so that every ``execute_runs`` call of any stage sees it
without the stage code passing it along. The default (one run at a time in
the suite's own process) is what a library caller gets.
"""

from __future__ import annotations

import contextvars
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from fednlp_bench.compute.device import available_cores


@dataclass(frozen=True)
class Slot:
    """One worker: its number (1-based), torch threads and GPU (None: the device the run picks)."""

    number: int
    threads: int
    gpu: int | None


@dataclass(frozen=True)
class Execution:
    """``jobs`` runs at once; ``threads`` per worker (None: the machine's cores / jobs); ``gpus`` to spread over.

    ``deadline`` (``time.monotonic()`` value): no run starts that its estimated
    length would carry past it, and runs still going then are stopped (they
    resume from their last checkpoint next time); a run's estimated length is
    the mean of this call's finished runs (none yet: it starts). ``lister`` (``--list-runs``)
    makes the first non-empty batch a listing instead of an execution.
    """

    jobs: int = 1
    threads: int | None = None
    gpus: tuple[int, ...] = ()
    deadline: float | None = None
    lister: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.jobs, int) or self.jobs < 1:
            raise ValueError(f"--jobs {self.jobs!r} must be a positive integer (runs at once)")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"--threads {self.threads!r} must be a positive integer (torch threads per run)")
        if any(not isinstance(g, int) or g < 0 for g in self.gpus):
            raise ValueError(f"--gpus {','.join(map(str, self.gpus))}: give GPU indexes such as 0,1")

    @property
    def in_workers(self) -> bool:
        """Runs go to worker processes: several at once, or a deadline that must be able to stop a run."""
        return self.jobs > 1 or self.deadline is not None or bool(self.gpus)

    def slots(self) -> list[Slot]:
        threads = self.threads or max(1, available_cores() // self.jobs)
        gpus = list(self.gpus)
        return [Slot(i + 1, threads, gpus[i % len(gpus)] if gpus else None) for i in range(self.jobs)]

    def may_start(self, mean_run_s: float | None) -> bool:
        """Whether a run started now is expected to finish before the deadline."""
        if self.deadline is None:
            return True
        return time.monotonic() + (mean_run_s or 0.0) <= self.deadline

    def past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def seconds_to_deadline(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())


def parse_gpus(text: str | None) -> tuple[int, ...]:
    """``"0,1"`` -> ``(0, 1)``; a bad entry is a one-line error naming it."""
    if not text:
        return ()
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise ValueError(f"--gpus {text!r}: {part!r} is not a GPU index; give e.g. --gpus 0,1")
        out.append(int(part))
    if len(set(out)) != len(out):
        raise ValueError(f"--gpus {text!r} repeats a GPU; give each index once")
    return tuple(out)


_CURRENT: contextvars.ContextVar[Execution] = contextvars.ContextVar("suite_execution", default=Execution())


def current() -> Execution:
    """The execution set by the enclosing :func:`using` (one run at a time, in process, when none)."""
    return _CURRENT.get()


@contextmanager
def using(execution: Execution) -> Iterator[Execution]:
    """Make ``execution`` how every ``execute_runs`` call inside the block runs its batch."""
    token = _CURRENT.set(execution)
    try:
        yield execution
    finally:
        _CURRENT.reset(token)
