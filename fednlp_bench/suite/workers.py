"""``fednlp-bench suite --jobs N``: N independent runs at once, each in a fresh worker process.

Why processes, one per run: torch's CPU threads, CUDA contexts and memory
belong to a process, so a run of the cpu tier's shape (one trained layer over
a cached bottom) that gains little from a second thread can give its core to
another run instead, and a run that dies (out of memory, a segfault) takes
only itself down. Workers start with ``spawn`` (no forked torch state) and get
``OMP_NUM_THREADS`` = their thread share (torch reads it at import) and, with
``--gpus``, ``CUDA_VISIBLE_DEVICES`` = their GPU, before torch is imported.

What does not change with N: each run is the same call as in the suite's own
process (``run_one.run_locked``), so its record is the same (metrics bit for
bit at equal threads per run; tested); runs start in the order the stage
gives, and the stage's next selection waits until the whole batch is back.
Each worker writes its output to ``<runs_dir>/.suite/logs/<run id>.log``
(deleted when the run succeeds, its tail printed when it fails); this
process prints one line per start and finish with runs done / left and an
ETA, and every 30 s the last log line of each running run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
import traceback
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Iterator, Sequence, TextIO

from fednlp_bench.engine.run.run_id import run_id_of
from fednlp_bench.progress import HEARTBEAT_S, Reporter, format_seconds
from fednlp_bench.suite.execution import Execution, Slot
from fednlp_bench.suite.run_one import RunBusy, Runner, engine_run, housekeeping_dir, run_locked

LOG_TAIL_LINES = 15


@dataclass
class _Active:
    position: int
    run: Any  # spec.PlannedRun (config, label, key)
    slot: Slot
    process: Any
    conn: Connection
    log: Path
    started: float = field(default_factory=time.monotonic)


@dataclass
class _Tally:
    total: int
    jobs: int
    begun: float = field(default_factory=time.monotonic)
    done: list[int] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)

    def mean_run_s(self) -> float | None:
        return sum(self.durations) / len(self.durations) if self.durations else None

    def eta(self, waiting: int, active: list[_Active]) -> str:
        mean = self.mean_run_s()
        if mean is None:
            return "ETA after the first finished run"
        now = time.monotonic()
        running_left = sum(max(0.0, mean - (now - a.started)) for a in active)
        seconds = (waiting * mean + running_left) / max(1, min(self.jobs, waiting + len(active)))
        return f"ETA {format_seconds(seconds)}"


def run_parallel(todo: Sequence[Any], runs_dir: str | Path, *, runner: Runner | None, keep_checkpoints: str,
                 stream: TextIO, execution: Execution) -> list[Any]:
    """Run ``todo`` in worker processes, ``execution.jobs`` at a time; return the runs that finished (in order).

    A failing run stops new starts; the runs already going finish, then the
    error names the failed run(s) and their logs. A run another process holds
    (a second suite on this runs folder) is skipped, not failed. At the
    deadline the running runs are stopped; they resume from their checkpoints.
    """
    if runner is not None and not _picklable(runner):
        raise ValueError(f"--jobs {execution.jobs}: the runner {runner!r} cannot be sent to a worker process")
    ctx = mp.get_context("spawn")
    out = Reporter(bars=False, stream=stream, heartbeat_s=0)
    tally = _Tally(len(todo), execution.jobs)
    waiting: deque[tuple[int, Any]] = deque(enumerate(todo))
    free = execution.slots()
    active: dict[Connection, _Active] = {}
    out.line(f"running {len(todo)} run(s), {execution.jobs} at a time ({free[0].threads} thread(s) each"
             f"{', GPUs ' + ','.join(map(str, execution.gpus)) if execution.gpus else ''})")
    try:
        while waiting or active:
            while free and waiting and not tally.failed and execution.may_start(tally.mean_run_s()):
                position, run = waiting.popleft()
                item = _start(ctx, position, run, free.pop(0), runs_dir, runner, keep_checkpoints)
                active[item.conn] = item
                out.line(f"[{position + 1}/{len(todo)} started] {run.label} (worker {item.slot.number}; "
                         f"log {item.log})")
            if not active:
                break  # nothing may start: a failure, or the budget would not fit another run
            to_deadline = execution.seconds_to_deadline()
            ready = wait(list(active), timeout=HEARTBEAT_S if to_deadline is None else min(HEARTBEAT_S, to_deadline))
            for conn in ready:
                item = active.pop(conn)
                free.append(item.slot)
                _collect(item, tally, out, len(waiting), list(active.values()), runs_dir)
            if execution.past_deadline() and active:
                _stop_all(active, tally, out)
            elif not ready:
                _heartbeat(out, tally, len(waiting), list(active.values()))
    except BaseException:
        _stop_all(active, tally, out)
        raise
    _summary(out, tally, len(waiting), execution, runs_dir)
    finished = sorted(tally.done)
    return [todo[i] for i in finished]


def _picklable(obj: Any) -> bool:
    import pickle

    try:
        pickle.dumps(obj)
    except Exception:
        return False
    return True


@contextmanager
def _child_environment(slot: Slot) -> Iterator[None]:
    """The environment a spawned worker inherits: its thread share and GPU, fixed before it imports torch."""
    values = {"OMP_NUM_THREADS": str(slot.threads), "MKL_NUM_THREADS": str(slot.threads)}
    if slot.gpu is not None:
        values["CUDA_VISIBLE_DEVICES"] = str(slot.gpu)
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _start(ctx: Any, position: int, run: Any, slot: Slot, runs_dir: str | Path, runner: Runner | None,
           keep_checkpoints: str) -> _Active:
    log = housekeeping_dir(runs_dir, "logs") / f"{run_id_of(run.config)}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=worker_main, name=f"fednlp-suite-worker-{slot.number}",
                          args=(send, run.config, str(runs_dir), runner, keep_checkpoints, str(log)))
    with _child_environment(slot):
        process.start()
    send.close()
    return _Active(position, run, slot, process, receive, log)


def worker_main(conn: Connection, config: dict[str, Any], runs_dir: str, runner: Runner | None,
                keep_checkpoints: str, log: str) -> None:
    """The worker process: output to its log, one locked run, one message back.

    Its thread share came with the environment (``OMP_NUM_THREADS``), which torch reads when the run imports it.
    """
    _die_with_parent()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    try:
        record = run_locked(runner or engine_run, config, runs_dir, keep_checkpoints)
        value = record.final_metrics.get(record.primary_metric)
        conn.send(("ok", {"run_id": record.run_id, "metric": record.primary_metric, "value": value,
                          "key": [record.config_hash, record.seed]}))
    except RunBusy as err:
        conn.send(("busy", str(err)))
    except BaseException as err:  # reported to the suite, which stops starting new runs
        traceback.print_exc()
        conn.send(("error", f"{type(err).__name__}: {err}"))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        conn.close()


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker when the suite process dies (even by SIGKILL), so no orphan trains on.

    The run stops between two checkpoints at worst and resumes on the next call.
    """
    import ctypes
    import signal

    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        pass


def _collect(item: _Active, tally: _Tally, out: Reporter, waiting: int, active: list[_Active],
             runs_dir: str | Path) -> None:
    try:
        status, payload = item.conn.recv()
    except EOFError:
        item.process.join(timeout=30)
        code = item.process.exitcode
        status, payload = "error", (f"the worker process died (exit code {code}"
                                    f"{'; killed, e.g. out of memory' if code is not None and code < 0 else ''})")
    item.process.join(timeout=60)
    item.conn.close()
    took = time.monotonic() - item.started
    where = f"[{len(tally.done) + 1}/{tally.total} done]"
    if status == "ok":
        tally.done.append(item.position)
        tally.durations.append(took)
        item.log.unlink(missing_ok=True)
        if tuple(payload["key"]) != tuple(item.run.key):
            out.line(f"warning: the engine recorded a different config than planned for {item.run.label}; a re-run "
                     "of the suite will not recognise it as done")
        value = payload["value"]
        shown = f"{payload['metric']}={value:.4f}" if isinstance(value, float) else payload["metric"]
        out.line(f"{where} {item.run.label}: {shown} in {format_seconds(took)} (run {payload['run_id']}); "
                 f"{len(active)} running, {waiting} waiting; {tally.eta(waiting, active)}")
    elif status == "busy":
        tally.busy.append(item.run.label)
        item.log.unlink(missing_ok=True)
        out.line(f"skipped {item.run.label}: {payload}")
    else:
        tally.failed.append(f"{item.run.label}: {payload} (log: {item.log})")
        out.line(f"FAILED {item.run.label} after {format_seconds(took)}: {payload}; last lines of {item.log}:\n"
                 + _tail(item.log))


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        text = []
    return "\n".join(f"    {line}" for line in text[-lines:]) if text else "    (starting)"


def _heartbeat(out: Reporter, tally: _Tally, waiting: int, active: list[_Active]) -> None:
    now = time.monotonic()
    parts = [f"{a.run.label} ({format_seconds(now - a.started)}: {_tail(a.log, 1).strip()[:120]})" for a in active]
    out.line(f"{len(tally.done)}/{tally.total} done, {len(active)} running, {waiting} waiting; "
             f"{tally.eta(waiting, active)}; running: " + "; ".join(parts))


def _stop_all(active: dict[Connection, _Active], tally: _Tally, out: Reporter) -> None:
    """Stop the running workers (deadline, Ctrl-C, an error here); their last checkpoint stays for resuming."""
    for item in active.values():
        if item.process.is_alive():
            item.process.terminate()
    for item in active.values():
        item.process.join(timeout=60)
        if item.process.is_alive():
            item.process.kill()
            item.process.join()
        item.conn.close()
        tally.interrupted.append(item.run.label)
        out.line(f"stopped {item.run.label} after {format_seconds(time.monotonic() - item.started)}; it resumes "
                 f"from its last checkpoint on the next call (log: {item.log})")
    active.clear()


def _summary(out: Reporter, tally: _Tally, waiting: int, execution: Execution, runs_dir: str | Path) -> None:
    took = format_seconds(time.monotonic() - tally.begun)
    out.line(f"{len(tally.done)}/{tally.total} run(s) finished in {took}; {len(tally.interrupted)} stopped, "
             f"{waiting} not started, {len(tally.busy)} held by another process")
    if tally.failed:
        listing = "; ".join(tally.failed)
        raise RuntimeError(
            f"suite stopped: {len(tally.failed)} run(s) failed ({listing}). The {len(tally.done)} finished run(s) "
            f"are recorded in {runs_dir}; fix the problem and run the same command to continue")
    if execution.deadline is not None and (tally.interrupted or waiting):
        out.line(f"time budget reached: {len(tally.interrupted) + waiting} run(s) of this batch left for the next "
                 "call (stopped runs resume from their checkpoints)")
