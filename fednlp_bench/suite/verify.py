"""Re-run one published record from its stored config and check it reproduces.

A table is only trustworthy if its records can be regenerated. ``verify``
feeds the record's exact ``config`` to its backend (``backends.launch.run_config_dict``,
imported lazily so tables build without torch) in a throw-away runs folder
and compares every final metric and the primary metric at every evaluated
round.

Tolerance: absolute, default ``1e-6``. The in-process engine is deterministic
on CPU for a fixed seed and thread count, so a re-run on the same machine and
package versions gives the same floats (1e-6 only absorbs float formatting);
on other hardware, thread counts or library versions, results can drift by
more, so pass e.g. ``--tolerance 1e-3`` and say so when publishing. The
partition content hash must match exactly: a different hash means different
data, and then no metric comparison is meaningful.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from fednlp_bench.leaderboard.records import LoadedRecord
from fednlp_bench.atomic import atomic_write_text
from fednlp_bench.leaderboard.verification import VERIFICATION_FILE
from fednlp_bench.results.record import RunRecord

DEFAULT_TOLERANCE = 1e-6
Runner = Callable[[dict[str, Any], Path], RunRecord]


@dataclass
class Comparison:
    name: str
    original: float | None
    rerun: float | None
    tolerance: float

    @property
    def diff(self) -> float | None:
        if self.original is None or self.rerun is None:
            return None
        return abs(self.original - self.rerun)

    @property
    def ok(self) -> bool:
        return self.diff is not None and self.diff <= self.tolerance


@dataclass
class VerifyResult:
    run_id: str
    record_path: str
    tolerance: float
    comparisons: list[Comparison] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems and bool(self.comparisons) and all(c.ok for c in self.comparisons)

    @property
    def max_abs_diff(self) -> float:
        diffs = [c.diff for c in self.comparisons if c.diff is not None]
        return max(diffs) if diffs else float("inf")

    def report(self) -> str:
        lines = [f"verify {self.run_id} ({self.record_path}), tolerance abs {self.tolerance:g}",
                 f"{'metric':<32} {'original':>14} {'re-run':>14} {'|diff|':>10}  ok"]
        for c in self.comparisons:
            orig = "missing" if c.original is None else f"{c.original:.8f}"
            new = "missing" if c.rerun is None else f"{c.rerun:.8f}"
            diff = "-" if c.diff is None else f"{c.diff:.2e}"
            lines.append(f"{c.name:<32} {orig:>14} {new:>14} {diff:>10}  {'yes' if c.ok else 'NO'}")
        lines += [f"problem: {p}" for p in self.problems]
        verdict = "REPRODUCED" if self.passed else "NOT REPRODUCED"
        lines.append(f"{verdict}: {sum(c.ok for c in self.comparisons)}/{len(self.comparisons)} metrics within "
                     f"tolerance, max |diff| {self.max_abs_diff:.3g}")
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "record": self.record_path, "passed": self.passed,
                "tolerance": self.tolerance, "max_abs_diff": self.max_abs_diff,
                "n_compared": len(self.comparisons), "problems": list(self.problems),
                "comparisons": [asdict(c) for c in self.comparisons]}


def _load_runner() -> Runner:
    try:
        from fednlp_bench.backends.launch import run_config_dict
    except ImportError as err:  # pragma: no cover - depends on the engine being installed
        raise ValueError(f"--verify needs the FL engine (fednlp_bench.backends.launch): {err}") from err
    return run_config_dict


def compare_records(original: RunRecord, rerun: RunRecord, tolerance: float) -> tuple[list[Comparison], list[str]]:
    """Final metrics, and the primary metric at every round the original evaluated."""
    comparisons = [Comparison(f"final {name}", float(value), _get(rerun.final_metrics, name), tolerance)
                   for name, value in sorted(original.final_metrics.items())]
    new_rounds = {r.round: r for r in rerun.rounds}
    metric = original.primary_metric
    for r in original.rounds:
        if metric in r.metrics:
            other = new_rounds.get(r.round)
            comparisons.append(Comparison(f"round {r.round} {metric}", float(r.metrics[metric]),
                                          None if other is None else _get(other.metrics, metric), tolerance))
    problems = []
    if rerun.config_hash != original.config_hash:
        problems.append("the re-run's config hash differs: the engine changed the config it was given")
    old_hash, new_hash = original.partition.get("content_hash"), rerun.partition.get("content_hash")
    if old_hash and new_hash and old_hash != new_hash:
        problems.append(f"partition content hash differs ({old_hash[:12]} vs {new_hash[:12]}): "
                        "different data or partitioner, metrics are not comparable")
    return comparisons, problems


def _get(metrics: dict[str, float], name: str) -> float | None:
    value = metrics.get(name)
    return None if value is None else float(value)


def verify_record(item: LoadedRecord, tolerance: float = DEFAULT_TOLERANCE, runner: Runner | None = None,
                  workdir: str | Path | None = None) -> VerifyResult:
    """Re-run ``item``'s config in a temporary runs folder and compare against it."""
    if not tolerance >= 0:
        raise ValueError(f"--tolerance {tolerance!r} must be a non-negative number, e.g. 1e-6")
    runner = runner or _load_runner()
    original = item.record
    with tempfile.TemporaryDirectory(prefix="fednlp-verify-", dir=workdir) as tmp:
        rerun = runner(json.loads(json.dumps(original.config)), Path(tmp))
    comparisons, problems = compare_records(original, rerun, tolerance)
    return VerifyResult(original.run_id, Path(os.path.relpath(item.path.resolve())).as_posix(), tolerance,
                        comparisons, problems)


def save_verification(result: VerifyResult, out_dir: str | Path) -> Path:
    """Keep the latest verification per run id in ``<out>/verification.json`` (cited by the README)."""
    path = Path(out_dir) / VERIFICATION_FILE
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            data = {}
    data[result.run_id] = result.summary()
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
