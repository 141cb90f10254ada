"""``leaderboard --plan ... --verify-per-task``: re-run one record per task and check it reproduces.

One record per task shows each task's pipeline (data, model, metric) is
reproducible; re-running all of them would cost the whole tier again. The
record chosen is the task's fastest finished run of a published cell
(smallest ``wall_time_s``, ties by run id), so verification stays cheap and
its choice is deterministic.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from fednlp_bench.leaderboard.records import LoadedRecord
from fednlp_bench.leaderboard.tier_cells import TierTask
from fednlp_bench.suite.verify import DEFAULT_TOLERANCE, Runner, VerifyResult, save_verification, verify_record


@dataclass
class TaskVerification:
    task: str
    record: LoadedRecord | None
    result: VerifyResult | None

    @property
    def passed(self) -> bool:
        return self.result is not None and self.result.passed


def fastest_record(task: TierTask) -> LoadedRecord | None:
    """The finished cell run with the smallest wall time (ties: run id); None when nothing is done."""
    return min(task.records, key=lambda i: (i.record.wall_time_s, i.record.run_id), default=None)


def verify_per_task(tasks: list[TierTask], out_dir: str | Path, *, tolerance: float = DEFAULT_TOLERANCE,
                    runner: Runner | None = None, stream: TextIO | None = None) -> list[TaskVerification]:
    """Verify each task's fastest record, save each result to ``<out>/verification.json`` and print it."""
    stream = stream or sys.stdout
    out = []
    for task in tasks:
        item = fastest_record(task)
        if item is None:
            print(f"{task.task}: no finished run to verify (run the suite first) -> NOT VERIFIED", file=stream)
            out.append(TaskVerification(task.task, None, None))
            continue
        print(f"{task.task}: verifying {item.record.run_id} (fastest finished run, {item.record.wall_time_s:.1f} s)",
              file=stream)
        result = verify_record(item, tolerance=tolerance, runner=runner)
        print(result.report(), file=stream)
        save_verification(result, out_dir)
        print(f"{task.task}: {item.record.run_id} -> {'REPRODUCED' if result.passed else 'NOT REPRODUCED'}",
              file=stream)
        out.append(TaskVerification(task.task, item, result))
    return out
