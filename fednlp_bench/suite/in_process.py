"""``--jobs 1``: the suite's runs one after the other in its own process, with progress and an ETA.

The same locked call as a worker makes (``run_one.run_locked``), so a record
does not depend on which executor ran it.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any, Sequence, TextIO

from fednlp_bench.suite.run_one import RunBusy, Runner, run_locked


def run_in_process(todo: Sequence[Any], runs_dir: str | Path, runner: Runner, keep_checkpoints: str,
                   stream: TextIO, threads: int | None) -> list[Any]:
    """Run ``todo`` one after the other here; a failing run stops the batch, a run another process holds is skipped."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    start = time.perf_counter()
    finished = []
    for i, run in enumerate(todo, start=1):
        t0 = time.perf_counter()
        print(f"[{i}/{len(todo)}] {run.label} ...", file=stream, flush=True)
        try:
            record = run_locked(runner, copy.deepcopy(run.config), Path(runs_dir), keep_checkpoints)
        except RunBusy as err:
            print(f"[{i}/{len(todo)}] {err}", file=stream, flush=True)
            continue
        except Exception as err:
            raise RuntimeError(
                f"suite stopped at run {i}/{len(todo)} ({run.label}): {err}. The {len(finished)} finished run(s) "
                f"are recorded in {runs_dir}; fix the problem and run the same command to continue"
            ) from err
        finished.append(run)
        took = time.perf_counter() - t0
        metric = record.final_metrics.get(record.primary_metric)
        elapsed = time.perf_counter() - start
        eta = elapsed / len(finished) * (len(todo) - i)
        print(f"[{i}/{len(todo)}] done in {took:.1f} s: {record.primary_metric}={metric:.4f} "
              f"(run {record.run_id}); elapsed {elapsed:.0f} s, {len(todo) - i} left, ETA {eta:.0f} s",
              file=stream, flush=True)
        if (record.config_hash, record.seed) != run.key:
            print(f"warning: the engine recorded a different config than planned for {run.label} "
                  f"({json.dumps(record.config, sort_keys=True)[:200]}...); a re-run of the suite will not "
                  "recognise it as done", file=stream)
    return finished
