"""The result record: the only thing a leaderboard is ever built from.

A record must let anyone trace a published number to the exact run that made
it and re-run it, so it carries the full config, seed, partition identity,
package versions, git commit and hardware next to the per-round metrics.
Validation is strict on purpose: a record that would put a NaN, a missing
field or an old layout into a published table is refused with the file named.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from fednlp_bench.atomic import atomic_write_text

SCHEMA_VERSION = 1
RECORD_FILENAME = "record.json"
METRICS_FILENAME = "metrics.csv"


class RecordError(ValueError):
    """A record file is malformed; the message names the file and the problem."""


@dataclass
class RoundResult:
    """What happened in one round (or one centralized 'round' of equal budget)."""

    round: int
    clients: list[int]
    train_loss: float | None
    metrics: dict[str, float]  # empty when the round was not evaluated
    bytes_up: int
    bytes_down: int
    wall_time_s: float
    rejected_clients: list[int] = field(default_factory=list)
    #: DP runs: epsilon so far, clip norm, noise std, clipped fraction (fednlp_bench/privacy).
    privacy: dict[str, Any] | None = None


@dataclass
class RunRecord:
    run_id: str
    created: str
    task: str
    algorithm: str
    seed: int
    #: Everything needed to re-run: task/model/data, partition, algorithm params, budget.
    config: dict[str, Any]
    #: sha256 of the canonical config without the seed; (config_hash, seed) identifies a run.
    config_hash: str
    #: scheme, params, num_clients, seed, dataset fingerprint and file content hash.
    partition: dict[str, Any]
    primary_metric: str
    #: Metrics of the *final* model on the *test* split (evaluated once, after the last round);
    #: what leaderboards report. ``rounds[i].metrics`` are validation metrics.
    final_metrics: dict[str, float]
    rounds: list[RoundResult]
    wall_time_s: float
    bytes_up: int
    bytes_down: int
    versions: dict[str, str]
    git_commit: str | None
    hardware: dict[str, Any]
    schema_version: int = SCHEMA_VERSION
    #: Optional features (absent in records of runs that did not use them):
    #: DP mechanism, accountant and final epsilon;
    privacy: dict[str, Any] | None = None
    #: membership inference on the final model, example and client level (fednlp_bench/audit; version 2);
    membership_audit: dict[str, Any] | None = None
    #: canary exposure of the final model (fednlp_bench/audit/canary.py);
    canary: dict[str, Any] | None = None
    #: counterfactual fairness of the final model (fednlp_bench/fairness);
    fairness: dict[str, Any] | None = None
    #: how clients were sampled and their updates weighted (federated runs);
    population: dict[str, Any] | None = None
    #: per-client metric of the final model on each client's local test rows, and its summary;
    client_eval: dict[str, Any] | None = None
    #: continual setting: arrival of rows, and one row (metrics) per period.
    continual: dict[str, Any] | None = None
    #: How test was evaluated: split, rows, and (``test_best_round``) the best-validation round's
    #: ``{round, validation, test}``. None in records made before validation splits existed.
    test: dict[str, Any] | None = None
    #: The data actually used: source, rows per split, skipped rows per split, validation origin.
    data: dict[str, Any] | None = None
    #: Reference baselines scored on the same splits (generation: ``lead``, first k words).
    baselines: dict[str, Any] | None = None
    #: Rounds after which the run was resumed from its checkpoint (``[2]``: killed after round 2, continued
    #: from round 3); ``[]``: it ran in one go. None in records made before this field existed.
    resumed_after: list[int] | None = None

    # ------------------------------------------------------------------ io
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in _OPTIONAL:
            if data[name] is None:
                del data[name]
        for row in data["rounds"]:
            if row.get("privacy") is None:
                row.pop("privacy", None)
        return data

    def save(self, run_dir: str | os.PathLike[str]) -> Path:
        """Write ``record.json`` and ``metrics.csv`` atomically (no half-written record on a crash)."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        validate_record_dict(self.to_dict(), source=str(run_dir / RECORD_FILENAME))
        atomic_write_text(run_dir / RECORD_FILENAME, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        atomic_write_text(run_dir / METRICS_FILENAME, self.metrics_csv())
        return run_dir / RECORD_FILENAME

    def metrics_csv(self) -> str:
        names = sorted({k for r in self.rounds for k in r.metrics})
        private = any(r.privacy for r in self.rounds)
        header = ["round", "train_loss", "bytes_up", "bytes_down", "wall_time_s", *names] + (["epsilon"] if private else [])
        lines = [",".join(header)]
        for r in self.rounds:
            loss = "" if r.train_loss is None else repr(r.train_loss)
            row = [str(r.round), loss, str(r.bytes_up), str(r.bytes_down), f"{r.wall_time_s:.4f}"]
            row += ["" if n not in r.metrics else repr(r.metrics[n]) for n in names]
            if private:
                eps = (r.privacy or {}).get("epsilon")
                row.append("" if eps is None else repr(eps))
            lines.append(",".join(row))
        return "\n".join(lines) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> "RunRecord":
        validate_record_dict(data, source)
        values = dict(data)
        values["rounds"] = [RoundResult(**r) for r in data["rounds"]]
        return cls(**values)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "RunRecord":
        path = Path(path)
        if path.is_dir():
            path = path / RECORD_FILENAME
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as err:
            raise RecordError(f"{path}: no such record file") from err
        except json.JSONDecodeError as err:
            raise RecordError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err
        if not isinstance(data, dict):
            raise RecordError(f"{path}: a record must be a JSON object, got {type(data).__name__}")
        return cls.from_dict(data, source=str(path))


def config_hash(config: dict[str, Any]) -> str:
    """Hash of a run config, ignoring the seed, so repeated seeds of one setting share it.

    Fields added later (precision, trainable, ...) count only when they differ
    from their default, so a record made before they existed keeps its hash.
    """
    from fednlp_bench.config import FIELDS_ADDED_LATER

    canonical = {
        k: v for k, v in config.items()
        if k != "seed" and not (k in FIELDS_ADDED_LATER and v == FIELDS_ADDED_LATER[k])
    }
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, default=str).encode()).hexdigest()


#: Fields added after schema 1 was published; records written before them stay valid.
_OPTIONAL = ("privacy", "membership_audit", "canary", "fairness", "population", "client_eval", "continual", "test",
             "data", "baselines", "resumed_after")
_FIELDS = {f.name for f in fields(RunRecord)}
_REQUIRED = _FIELDS - set(_OPTIONAL)
_ROUND_REQUIRED = {f.name for f in fields(RoundResult) if f.default is MISSING and f.default_factory is MISSING}


def validate_record_dict(data: dict[str, Any], source: str) -> None:
    """Raise :class:`RecordError` naming ``source`` if the record cannot be published."""
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RecordError(
            f"{source}: schema_version {version!r} is not supported (expected {SCHEMA_VERSION}); "
            "re-run the experiment with this version of fednlp-bench"
        )
    missing = sorted(_REQUIRED - data.keys())
    if missing:
        raise RecordError(f"{source}: missing field(s) {missing}")
    unknown = sorted(data.keys() - _FIELDS)
    if unknown:
        raise RecordError(f"{source}: unknown field(s) {unknown}")
    if not isinstance(data["rounds"], list) or not data["rounds"]:
        raise RecordError(f"{source}: 'rounds' must be a non-empty list")
    for i, r in enumerate(data["rounds"]):
        if not isinstance(r, dict):
            raise RecordError(f"{source}: rounds[{i}] must be an object")
        lost = sorted(_ROUND_REQUIRED - r.keys())
        if lost:
            raise RecordError(f"{source}: rounds[{i}] is missing field(s) {lost}")
        _check_finite(r["metrics"], f"{source}: rounds[{i}].metrics")
        eps = (r.get("privacy") or {}).get("epsilon")
        if eps is not None and (not isinstance(eps, (int, float)) or not math.isfinite(eps)):
            raise RecordError(f"{source}: rounds[{i}].privacy.epsilon = {eps!r} is not a finite number")
    _check_finite(data["final_metrics"], f"{source}: final_metrics")
    if data["primary_metric"] not in data["final_metrics"]:
        raise RecordError(
            f"{source}: primary metric {data['primary_metric']!r} is not in final_metrics "
            f"{sorted(data['final_metrics'])}"
        )
    resumed = data.get("resumed_after")
    if resumed is not None and (not isinstance(resumed, list) or not all(
            isinstance(r, int) and not isinstance(r, bool) and r >= 0 for r in resumed)):
        raise RecordError(f"{source}: resumed_after = {resumed!r} must be a list of round numbers")
    test = data.get("test")
    if test is not None:
        if not isinstance(test, dict):
            raise RecordError(f"{source}: 'test' must be an object")
        best = test.get("best_round")
        if best is not None:
            _check_finite(best.get("test"), f"{source}: test.best_round.test")
            _check_finite(best.get("validation"), f"{source}: test.best_round.validation")
    if data["config_hash"] != config_hash(data["config"]):
        raise RecordError(f"{source}: config_hash does not match the config (the record was edited)")


def _check_finite(metrics: Any, where: str) -> None:
    if not isinstance(metrics, dict):
        raise RecordError(f"{where} must be an object of metric -> number")
    for name, value in metrics.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise RecordError(f"{where}[{name!r}] = {value!r} is not a finite number")
