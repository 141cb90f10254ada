"""A frozen-cache build borrows the threads of the processes blocked on its lock, and only theirs."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fednlp_bench.compute import cache_threads
from fednlp_bench.compute.cache_threads import BorrowedThreads, build_lock, lent_threads


WAITER = """
import sys, torch
from pathlib import Path
from fednlp_bench.compute.cache_threads import build_lock
torch.set_num_threads(3)
with build_lock(Path(sys.argv[1])):
    print("held", flush=True)
"""


def _dead_pid() -> int:
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=time.sleep, args=(0,))
    p.start()
    p.join()
    return int(p.pid)


def test_a_blocked_waiter_lends_its_threads_and_stops_lending_once_it_holds_the_lock(tmp_path: Path) -> None:
    lock = tmp_path / ".abc.lock"
    with build_lock(lock):
        assert lent_threads(lock) == 0
        waiter = subprocess.Popen([sys.executable, "-c", WAITER, str(lock)], stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while lent_threads(lock) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lent_threads(lock) == 3
        assert waiter.poll() is None  # still blocked
    out, _ = waiter.communicate(timeout=60)
    assert waiter.returncode == 0 and out.strip() == "held"
    assert lent_threads(lock) == 0
    assert list(tmp_path.glob(".abc.lock.wait.*")) == []


def test_a_blocked_waiter_says_on_its_heartbeat_that_it_waits_and_lends(tmp_path: Path) -> None:
    """Not the last 'caching ... 100%' of its previous split: a 25-minute wait must say what it waits for."""
    lock = tmp_path / ".abc.lock"
    script = WAITER.replace("with build_lock", "from fednlp_bench import progress\n"
                            "with progress.reporting(bars=False, heartbeat_s=0.2), build_lock")
    with build_lock(lock):
        waiter = subprocess.Popen([sys.executable, "-c", script, str(lock)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while lent_threads(lock) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # several heartbeats
    _, err = waiter.communicate(timeout=60)
    assert "waiting for another process to finish this frozen-layer cache (lending it 3 thread(s))" in err, err


def test_markers_of_dead_processes_and_of_this_process_are_not_counted(tmp_path: Path) -> None:
    lock = tmp_path / ".abc.lock"
    (tmp_path / f".abc.lock.wait.{_dead_pid()}").write_text("4")
    (tmp_path / f".abc.lock.wait.{os.getpid()}").write_text("4")
    (tmp_path / ".other.lock.wait.1").write_text("4")  # pid 1 is alive, but waits on another cache
    assert lent_threads(lock) == 0
    (tmp_path / ".abc.lock.wait.1").write_text("2")
    assert lent_threads(lock) == 2


def test_borrowed_threads_are_capped_by_the_usable_cores_and_restored(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    lock = tmp_path / ".abc.lock"
    own = torch.get_num_threads()
    monkeypatch.setattr(cache_threads, "_usable_cores", lambda: own + 1)
    threads = BorrowedThreads(lock)
    assert threads.update() == own
    (tmp_path / ".abc.lock.wait.1").write_text("5")
    try:
        assert threads.update() == own + 1
        assert torch.get_num_threads() == own + 1
    finally:
        threads.restore()
    assert torch.get_num_threads() == own
