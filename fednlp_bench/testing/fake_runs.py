"""A stand-in for the engine in suite tests that a worker process can import (tests' own modules it cannot).

It writes a valid record under the engine's run id whose metrics follow from
the config alone (a flat validation curve, so every cell converges), and logs every call (pid, start, end) to
``<runs_dir>/calls.jsonl`` so a test can check that runs overlapped in time,
that no run was made twice, and which process made each.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fednlp_bench.engine.run.run_id import run_id_of
from fednlp_bench.results.record import RoundResult, RunRecord, config_hash

CALLS_FILENAME = "calls.jsonl"


def score(config: dict[str, Any]) -> float:
    """A deterministic value in [0, 1) from the config and seed."""
    digest = hashlib.sha256((config_hash(config) + str(config["seed"])).encode()).hexdigest()
    return int(digest[:6], 16) / 0xFFFFFF


@dataclass(frozen=True)
class FakeEngine:
    """``runner(config, runs_dir)``; sleeps ``seconds`` per run; raises at once for a config whose lr is ``fail_lr``."""

    seconds: float = 0.0
    fail_lr: float | None = None

    def __call__(self, config: dict[str, Any], runs_dir: Path) -> RunRecord:
        start = time.time()
        if self.fail_lr is not None and config.get("lr") == self.fail_lr:
            raise RuntimeError(f"client 3 produced a NaN loss (lr={self.fail_lr})")
        time.sleep(self.seconds)
        metric = "accuracy" if config["task"] == "classification" else "f1"
        value = score(config)
        record = RunRecord(
            run_id=run_id_of(config), created="2026-11-27T00:00:00", task=config["task"],
            algorithm=config["algorithm"], seed=config["seed"], config=config, config_hash=config_hash(config),
            partition={**config["partition"], "content_hash": "c" * 64}, primary_metric=metric,
            final_metrics={metric: value},
            rounds=[RoundResult(round=r, clients=[0], train_loss=1.0, metrics={metric: value},
                                bytes_up=1, bytes_down=1, wall_time_s=0.1) for r in range(1, int(config["rounds"]) + 1)],
            wall_time_s=self.seconds, bytes_up=2, bytes_down=2, versions={}, git_commit=None, hardware={})
        record.save(Path(runs_dir) / record.run_id)
        _log_call(Path(runs_dir), {"run_id": record.run_id, "pid": os.getpid(), "start": start, "end": time.time(),
                                   "threads_env": os.environ.get("OMP_NUM_THREADS"),
                                   "gpu_env": os.environ.get("CUDA_VISIBLE_DEVICES")})
        return record


def _log_call(runs_dir: Path, entry: dict[str, Any]) -> None:
    with (runs_dir / CALLS_FILENAME).open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write(json.dumps(entry) + "\n")


def calls(runs_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    path = Path(runs_dir) / CALLS_FILENAME
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
